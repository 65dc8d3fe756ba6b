package guard

import (
	"net/http"
	"net/textproto"
	"testing"
)

// Headers set from one array must stay apart: a handler after the guard that
// adds a value to one must not overwrite the next.
func TestHeaderValuesDoNotAlias(t *testing.T) {
	h := http.Header{}
	var vals headerValues
	vals.set(h, HeaderUserID, "u1")
	vals.set(h, HeaderRole, "user")
	h.Add(HeaderUserID, "spoofed")
	if got := h.Values(HeaderRole); len(got) != 1 || got[0] != "user" {
		t.Fatalf("role header = %q after an Add to the user id, want [user]", got)
	}
	if got := h.Values(HeaderUserID); len(got) != 2 || got[0] != "u1" {
		t.Fatalf("user id header = %q", got)
	}
}

// headerValues.set does not canonicalize: every key the guard passes it must
// already be canonical, or net/http's Get would not find it.
func TestHeaderKeysAreCanonical(t *testing.T) {
	for _, k := range []string{HeaderUserID, HeaderUserEmail, HeaderRole, HeaderTokenID, HeaderAssertion,
		"X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests",
		"X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens"} {
		if c := textproto.CanonicalMIMEHeaderKey(k); c != k {
			t.Errorf("%q is not canonical (%q)", k, c)
		}
	}
}
