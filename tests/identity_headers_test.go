package tests

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestIdentityHeadersAreASiteOption: a site sends the backend only the
// identity headers it names (the assertion only when named), none with
// `identity_headers none`, and a caller's own X-Gatehouse-* headers never
// pass either way.
func TestIdentityHeadersAreASiteOption(t *testing.T) {
	for _, tc := range []struct {
		name, option string
		want         []string // X-Gatehouse-* headers the backend sees
	}{
		{"all by default", "", []string{"X-Gatehouse-Assertion", "X-Gatehouse-Role", "X-Gatehouse-User-Email", "X-Gatehouse-User-Id"}},
		{"the user id and role", "\t\tidentity_headers user_id role", []string{"X-Gatehouse-Role", "X-Gatehouse-User-Id"}},
		{"none", "\t\tidentity_headers none", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := startInstance(t, instanceConfig{guardBlock: tc.option})
			bobC := activeClient(t, in, bob)
			if r := bobC.get("/anything", "X-Gatehouse-Role", "admin", "X-Gatehouse-Assertion", "forged"); r.StatusCode != http.StatusOK {
				t.Fatalf("GET /anything: %d %s", r.StatusCode, r.body)
			}
			req, _ := in.backend.lastRequest()
			var got []string
			for name := range req.Header {
				if strings.HasPrefix(name, "X-Gatehouse-") {
					got = append(got, name)
				}
			}
			slices.Sort(got)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("the backend got %v, want %v", got, tc.want)
			}
			if v := req.Header.Get("X-Gatehouse-Role"); v != "" && v != "user" {
				t.Fatalf("X-Gatehouse-Role %q reached the backend: the caller's own header passed", v)
			}
		})
	}
}
