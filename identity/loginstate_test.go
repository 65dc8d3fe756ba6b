package identity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// gcmSealer is a minimal AES-GCM Sealer, like the one the keys package provides.
type gcmSealer struct{ aead cipher.AEAD }

func newGCMSealer(t testing.TB) gcmSealer {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return gcmSealer{aead}
}

func (s gcmSealer) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plaintext, aad), nil
}

func (s gcmSealer) Open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed value too short")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], aad)
}

func testLoginState(now time.Time) LoginState {
	return LoginState{
		State:    "state-" + strings.Repeat("s", 37),
		Nonce:    "nonce-" + strings.Repeat("n", 37),
		Verifier: "verifier-" + strings.Repeat("v", 34),
		Redirect: "/v1/models?x=1",
		Expires:  now.Add(10 * time.Minute).Truncate(time.Second).UTC(),
	}
}

func TestLoginCookieRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		secure   bool
		wantName string
		wantSet  string
	}{
		{true, "__Host-gatehouse_login_state-ssssssssss", "; Path=/; Max-Age=600; HttpOnly; Secure; SameSite=Lax"},
		{false, "gatehouse_login_state-ssssssssss", "; Path=/; Max-Age=600; HttpOnly; SameSite=Lax"},
	} {
		t.Run(tc.wantName, func(t *testing.T) {
			sealer := newGCMSealer(t)
			now := time.Now()
			ls := testLoginState(now)
			c, err := SealLoginState(sealer, ls, tc.secure)
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.wantName + "=" + c.Value + tc.wantSet; c.String() != want {
				t.Errorf("Set-Cookie = %q\nwant        %q", c.String(), want)
			}
			for _, secret := range []string{ls.Verifier, ls.Nonce, ls.Redirect, "verifier"} {
				if strings.Contains(c.Value, secret) {
					t.Errorf("cookie value shows %q in the clear", secret)
				}
			}
			got, err := OpenLoginState(sealer, requestWithCookie(c), tc.secure, ls.State, now)
			if err != nil {
				t.Fatal(err)
			}
			if got != ls {
				t.Errorf("OpenLoginState = %+v\nwant             %+v", got, ls)
			}
			wantClear := tc.wantName + "=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
			if tc.secure {
				wantClear = tc.wantName + "=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"
			}
			if got := ClearLoginCookie(tc.secure, ls.State).String(); got != wantClear {
				t.Errorf("ClearLoginCookie = %q, want %q", got, wantClear)
			}
		})
	}
}

func TestOpenLoginStateRefuses(t *testing.T) {
	sealer := newGCMSealer(t)
	now := time.Now()
	good, err := SealLoginState(sealer, testLoginState(now), false)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(good.Value)
	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)/2] ^= 0x01
	fromOtherKey, _ := SealLoginState(newGCMSealer(t), testLoginState(now), false)
	// A value sealed for the https cookie name must not open as the http one,
	// nor one flow's as another's.
	underOtherName, _ := SealLoginState(sealer, testLoginState(now), true)
	otherFlow := testLoginState(now)
	otherFlow.State = "other-" + strings.Repeat("o", 37)
	ofOtherFlow, _ := SealLoginState(sealer, otherFlow, false)
	const name = "gatehouse_login_state-ssssssssss"

	for _, tc := range []struct {
		name   string
		cookie *http.Cookie
		now    time.Time
		want   error
	}{
		{"missing", nil, now, ErrLoginStateMissing},
		{"empty", &http.Cookie{Name: name}, now, ErrLoginStateMissing},
		{"only the https cookie", &http.Cookie{Name: "__Host-" + name, Value: good.Value}, now, ErrLoginStateMissing},
		{"only another flow's cookie", ofOtherFlow, now, ErrLoginStateMissing},
		{"one bit flipped", &http.Cookie{Name: name, Value: base64.RawURLEncoding.EncodeToString(flipped)}, now, ErrLoginStateInvalid},
		{"truncated", &http.Cookie{Name: name, Value: good.Value[:len(good.Value)-4]}, now, ErrLoginStateInvalid},
		{"not base64", &http.Cookie{Name: name, Value: "%%%"}, now, ErrLoginStateInvalid},
		{"sealed under another key", &http.Cookie{Name: name, Value: fromOtherKey.Value}, now, ErrLoginStateInvalid},
		{"sealed for the other cookie name", &http.Cookie{Name: name, Value: underOtherName.Value}, now, ErrLoginStateInvalid},
		{"sealed for another flow", &http.Cookie{Name: name, Value: ofOtherFlow.Value}, now, ErrLoginStateInvalid},
		{"expired", good, now.Add(10 * time.Minute), ErrLoginStateExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenLoginState(sealer, requestWithCookie(tc.cookie), false, testLoginState(now).State, tc.now)
			if !errors.Is(err, tc.want) {
				t.Errorf("error = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := OpenLoginState(sealer, requestWithCookie(good), false, testLoginState(now).State, now.Add(9*time.Minute)); err != nil {
		t.Errorf("nine minutes in: %v, want the login state", err)
	}
}

func TestCheckState(t *testing.T) {
	ls := testLoginState(time.Now())
	for _, tc := range []struct {
		name, state string
		want        error
	}{
		{"matching", ls.State, nil},
		{"different", "state-" + strings.Repeat("x", 37), ErrLoginStateMismatch},
		{"prefix", ls.State[:10], ErrLoginStateMismatch},
		{"empty", "", ErrLoginStateMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckState(ls, tc.state); !errors.Is(err, tc.want) {
				t.Errorf("CheckState = %v, want %v", err, tc.want)
			}
		})
	}
	if err := CheckState(LoginState{}, ""); !errors.Is(err, ErrLoginStateMismatch) {
		t.Errorf("empty login state and empty parameter: %v, want ErrLoginStateMismatch", err)
	}
}

// The callback reads the cookie the login handler set, through a real
// browser-style round trip of Set-Cookie and Cookie headers.
func TestLoginCookieThroughHTTP(t *testing.T) {
	sealer := newGCMSealer(t)
	ls := testLoginState(time.Now())
	rec := httptest.NewRecorder()
	c, err := SealLoginState(sealer, ls, false)
	if err != nil {
		t.Fatal(err)
	}
	http.SetCookie(rec, c)
	r := httptest.NewRequest(http.MethodGet, "/api/auth/callback?state="+ls.State, nil)
	for _, c := range rec.Result().Cookies() {
		r.AddCookie(c)
	}
	got, err := OpenLoginState(sealer, r, false, r.URL.Query().Get("state"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckState(got, r.URL.Query().Get("state")); err != nil {
		t.Errorf("CheckState: %v", err)
	}
}

// TestLoginFlowsAreBounded: each sign-in under way keeps its own cookie, and
// a new one clears the expired, the unreadable and the oldest beyond
// MaxLoginFlows-1.
func TestLoginFlowsAreBounded(t *testing.T) {
	sealer := newGCMSealer(t)
	now := time.Now()
	r := httptest.NewRequest("GET", "/api/auth/login", nil)
	var names []string
	for i := range MaxLoginFlows + 1 {
		ls := testLoginState(now.Add(time.Duration(i) * time.Second))
		ls.State = fmt.Sprintf("flow%02d-", i) + strings.Repeat("x", 36)
		c, err := SealLoginState(sealer, ls, false)
		if err != nil {
			t.Fatal(err)
		}
		r.AddCookie(c)
		names = append(names, c.Name)
	}
	expired := testLoginState(now.Add(-time.Hour))
	expired.State = "expired-" + strings.Repeat("e", 35)
	old, _ := SealLoginState(sealer, expired, false)
	r.AddCookie(old)
	r.AddCookie(&http.Cookie{Name: "gatehouse_login_garbage", Value: "%%%"})
	r.AddCookie(&http.Cookie{Name: "gatehouse_session", Value: "not a login"})

	var cleared []string
	for _, c := range StaleLoginCookies(sealer, r, false, now) {
		if c.MaxAge >= 0 {
			t.Errorf("%s is not a deletion: %s", c.Name, c)
		}
		cleared = append(cleared, c.Name)
	}
	slices.Sort(cleared)
	want := []string{names[0], names[1], old.Name, "gatehouse_login_garbage"}
	slices.Sort(want)
	if !slices.Equal(cleared, want) {
		t.Errorf("cleared %v, want %v (the expired, the unreadable and the two oldest of %d)", cleared, want, MaxLoginFlows+1)
	}
}
