package identity

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Login-state errors. The callback answers all of them by starting over.
var (
	ErrLoginStateMissing  = errors.New("login state cookie missing")
	ErrLoginStateInvalid  = errors.New("login state cookie invalid")
	ErrLoginStateExpired  = errors.New("login state expired")
	ErrLoginStateMismatch = errors.New("state parameter does not match the login")
)

// Sealer encrypts and authenticates; the keys package implements it with
// AES-GCM under the master secret.
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// LoginCookieName is the base name of the login-state cookies; the __Host-
// prefix makes browsers refuse them unless Secure, host-only and Path=/.
func LoginCookieName(secure bool) string {
	if secure {
		return "__Host-gatehouse_login"
	}
	return "gatehouse_login"
}

// MaxLoginFlows bounds the sign-ins one browser can have under way at once
// (tabs): a new one beyond it drops the oldest.
const MaxLoginFlows = 4

// flowKeyLength is how much of the state names a flow's cookie.
const flowKeyLength = 16

// loginCookieName is the cookie of the flow whose state is state: one cookie
// per sign-in under way, as oauth2-proxy keeps one CSRF cookie per request,
// so two tabs signing in at once do not overwrite each other's state and a
// failed callback clears only its own.
func loginCookieName(secure bool, state string) string {
	if len(state) > flowKeyLength {
		state = state[:flowKeyLength]
	}
	return LoginCookieName(secure) + "_" + state
}

// sealedLoginState is the cookie's plaintext; the field names are short
// because the whole cookie must fit comfortably in a header.
type sealedLoginState struct {
	Provider string  `json:"p,omitempty"`
	StepUp   *StepUp `json:"u,omitempty"`
	State    string  `json:"s"`
	Nonce    string  `json:"n"`
	Verifier string  `json:"v"`
	Redirect string  `json:"r"`
	Expires  int64   `json:"e"` // Unix seconds
}

// SealLoginState returns the cookie that carries ls to the callback. It is
// sealed so the browser can neither read the PKCE verifier nor change the
// redirect; the cookie name is the associated data, so a value sealed for
// another purpose under the same key is refused.
func SealLoginState(s Sealer, ls LoginState, secure bool) (*http.Cookie, error) {
	plaintext, err := json.Marshal(sealedLoginState{
		Provider: ls.Provider,
		StepUp:   ls.StepUp,
		State:    ls.State,
		Nonce:    ls.Nonce,
		Verifier: ls.Verifier,
		Redirect: ls.Redirect,
		Expires:  ls.Expires.Unix(),
	})
	if err != nil {
		return nil, fmt.Errorf("encode login state: %w", err)
	}
	name := loginCookieName(secure, ls.State)
	sealed, err := s.Seal(plaintext, []byte(name))
	if err != nil {
		return nil, fmt.Errorf("seal login state: %w", err)
	}
	return &http.Cookie{
		Name:     name,
		Value:    base64.RawURLEncoding.EncodeToString(sealed),
		Path:     "/",
		MaxAge:   int(loginStateLifetime / time.Second),
		Secure:   secure,
		HttpOnly: true,
		// Lax, not Strict: the IdP's redirect back is a cross-site top-level
		// navigation, which must still carry this cookie.
		SameSite: http.SameSiteLaxMode,
	}, nil
}

// OpenLoginState reads the login-state cookie of the flow whose callback
// carries state. Errors wrap ErrLoginStateMissing, ErrLoginStateInvalid
// (tampered, malformed, sealed under another key or for another flow) or
// ErrLoginStateExpired.
func OpenLoginState(s Sealer, r *http.Request, secure bool, state string, now time.Time) (LoginState, error) {
	if state == "" {
		return LoginState{}, ErrLoginStateMissing
	}
	c, err := r.Cookie(loginCookieName(secure, state))
	if err != nil || c.Value == "" {
		return LoginState{}, ErrLoginStateMissing
	}
	return openLoginCookie(s, c, now)
}

func openLoginCookie(s Sealer, c *http.Cookie, now time.Time) (LoginState, error) {
	sealed, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return LoginState{}, fmt.Errorf("%w: not base64url", ErrLoginStateInvalid)
	}
	plaintext, err := s.Open(sealed, []byte(c.Name))
	if err != nil {
		return LoginState{}, fmt.Errorf("%w: %w", ErrLoginStateInvalid, err)
	}
	var sls sealedLoginState
	if err := json.Unmarshal(plaintext, &sls); err != nil {
		return LoginState{}, fmt.Errorf("%w: decode: %w", ErrLoginStateInvalid, err)
	}
	ls := LoginState{
		Provider: sls.Provider,
		StepUp:   sls.StepUp,
		State:    sls.State,
		Nonce:    sls.Nonce,
		Verifier: sls.Verifier,
		Redirect: sls.Redirect,
		Expires:  time.Unix(sls.Expires, 0).UTC(),
	}
	// The cookie's Max-Age is only a request to the browser; the sealed expiry
	// is what actually bounds a login.
	if !now.Before(ls.Expires) {
		return LoginState{}, ErrLoginStateExpired
	}
	return ls, nil
}

// ClearLoginCookie deletes the login-state cookie of the flow of state, once
// its callback used it (or failed).
func ClearLoginCookie(secure bool, state string) *http.Cookie {
	return clearCookie(loginCookieName(secure, state), secure)
}

func clearCookie(name string, secure bool) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Path:     "/",
		MaxAge:   -1,
		Secure:   secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// StaleLoginCookies are the deletions to send with a new sign-in: the flows
// of r that are unreadable or expired, and the oldest beyond
// MaxLoginFlows-1, so that with the new one at most MaxLoginFlows remain.
func StaleLoginCookies(s Sealer, r *http.Request, secure bool, now time.Time) []*http.Cookie {
	prefix := LoginCookieName(secure) + "_"
	type flow struct {
		name    string
		expires time.Time
	}
	var live []flow
	var out []*http.Cookie
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, prefix) {
			continue
		}
		ls, err := openLoginCookie(s, c, now)
		if err != nil {
			out = append(out, clearCookie(c.Name, secure))
			continue
		}
		live = append(live, flow{c.Name, ls.Expires})
	}
	slices.SortFunc(live, func(a, b flow) int { return a.expires.Compare(b.expires) })
	for len(live) > MaxLoginFlows-1 {
		out = append(out, clearCookie(live[0].name, secure))
		live = live[1:]
	}
	return out
}

// CheckState compares the callback's state parameter with the one the login
// began with, in constant time.
func CheckState(ls LoginState, state string) error {
	if ls.State == "" || subtle.ConstantTimeCompare([]byte(ls.State), []byte(state)) != 1 {
		return ErrLoginStateMismatch
	}
	return nil
}
