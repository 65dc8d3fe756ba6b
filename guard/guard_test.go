package guard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/devidp"
	"github.com/gatehouse/gatehouse/guard"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/store"
)

const (
	publicURL = "http://gatehouse.test"
	issuer    = publicURL + "/dev-idp"
	htmlType  = "text/html; charset=utf-8"
	// A cookie value of the right shape that no session was ever issued for.
	unknownSessionValue = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
)

// fixture is a real runtime (SQLite in a temp dir, real keys and policy) with
// a guard in front of a recording upstream.
type fixture struct {
	t  testing.TB
	rt *core.Runtime
	g  *guard.Guard
}

func newFixture(t testing.TB, policyPaths ...string) *fixture {
	return newFixtureWith(t, core.Options{PolicyPaths: policyPaths})
}

// newFixtureWith is newFixture with some options of the caller's.
func newFixtureWith(t testing.TB, o core.Options) *fixture {
	t.Helper()
	dir := t.TempDir()
	rt, err := core.Open(context.Background(), core.Options{
		PolicyPaths:  o.PolicyPaths,
		MaxStaleness: o.MaxStaleness,
		PublicURL:    publicURL,
		APIPrefix:    "/api",
		PagesPrefix:  "/gatehouse",
		Store:        &core.StoreConfig{Driver: "sqlite", DSN: filepath.Join(dir, "gatehouse.db")},
		SecretFile:   filepath.Join(dir, "secret"),
		DevIdP:       &devidp.Config{Users: []devidp.User{{Email: "alice@example.com", Name: "Alice"}}},
	})
	if err != nil {
		t.Fatalf("open runtime: %v", err)
	}
	// Close may report the store as already closed by a fail-closed test.
	t.Cleanup(func() { _ = rt.Close() })
	g, err := guard.New(context.Background(), rt, guard.Options{ErrorPage: pages.ErrorPage(rt)})
	if err != nil {
		t.Fatalf("new guard: %v", err)
	}
	return &fixture{t: t, rt: rt, g: g}
}

// login records a first sign-in, as the OIDC callback would.
func (f *fixture) login(email string, bootstrapAdmin bool) store.User {
	f.t.Helper()
	u, err := f.rt.Store.RecordLogin(context.Background(), store.LoginInfo{
		Issuer: issuer, Subject: "sub-" + email, Email: email, Name: strings.Split(email, "@")[0],
		BootstrapAdmin: bootstrapAdmin,
	})
	if err != nil {
		f.t.Fatalf("record login of %s: %v", email, err)
	}
	return u
}

func (f *fixture) admin() store.User {
	f.t.Helper()
	u := f.login("root@example.com", true)
	if u.Status != store.StatusActive || u.Role != "admin" {
		f.t.Fatalf("bootstrap admin is %s/%s, want active/admin", u.Status, u.Role)
	}
	return u
}

// userWithStatus returns a user in the given status. Statuses other than
// pending are set after the admin exists, so the store's last-admin rule never
// gets in the way.
func (f *fixture) userWithStatus(email, status string) store.User {
	f.t.Helper()
	u := f.login(email, false)
	if status == store.StatusPending {
		return u
	}
	f.admin()
	u, err := f.rt.Store.SetUserStatus(context.Background(), u.ID, status, store.AuditEvent{})
	if err != nil {
		f.t.Fatalf("set status of %s: %v", email, err)
	}
	return u
}

// approve grants u access through an access request, as a reviewer would.
func (f *fixture) approve(u store.User, role string, expires *time.Time) store.User {
	f.t.Helper()
	ctx := context.Background()
	reviewer := f.admin()
	req, err := f.rt.Store.CreateAccessRequest(ctx, store.AccessRequest{
		User: store.RequestUser{ID: u.ID}, Purpose: "testing", RequestedRole: role,
	}, store.AuditEvent{})
	if err != nil {
		f.t.Fatalf("create access request: %v", err)
	}
	if _, err := f.rt.Store.DecideAccessRequest(ctx, store.Decision{
		RequestID: req.ID, Approve: true, Role: role, ReviewerID: reviewer.ID, ExpiresAt: expires,
	}); err != nil {
		f.t.Fatalf("approve access request: %v", err)
	}
	u, err = f.rt.Store.GetUser(ctx, u.ID)
	if err != nil {
		f.t.Fatalf("get user: %v", err)
	}
	return u
}

// session signs u in and returns the session cookie.
func (f *fixture) session(u store.User) *http.Cookie {
	f.t.Helper()
	c, _, err := f.rt.Sessions.Create(context.Background(), u.ID, "", store.AuthContext{})
	if err != nil {
		f.t.Fatalf("create session: %v", err)
	}
	return c
}

// upstream records what the protected backend receives.
type upstream struct {
	calls int
	req   *http.Request
}

func (u *upstream) next(w http.ResponseWriter, r *http.Request) error {
	u.calls++
	u.req = r
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// serve runs r through the guard, failing the test if Serve returns an error:
// the guard answers every refusal itself.
func (f *fixture) serve(r *http.Request) (*httptest.ResponseRecorder, *upstream) {
	f.t.Helper()
	up := &upstream{}
	w := httptest.NewRecorder()
	if err := f.g.Serve(w, r, up.next); err != nil {
		f.t.Fatalf("Serve returned %v", err)
	}
	return w, up
}

type reqOpt func(*http.Request)

func browser(r *http.Request) {
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
}

func apiClient(r *http.Request) { r.Header.Set("Accept", "application/json") }

func withCookie(c *http.Cookie) reqOpt { return func(r *http.Request) { r.AddCookie(c) } }

func withHeader(name, value string) reqOpt {
	return func(r *http.Request) { r.Header[name] = append(r.Header[name], value) }
}

func newRequest(method, target string, opts ...reqOpt) *http.Request {
	var body io.Reader
	if method != http.MethodGet && method != http.MethodHead {
		body = strings.NewReader(`{"model":"llama3","messages":[]}`)
	}
	r := httptest.NewRequest(method, publicURL+target, body)
	for _, o := range opts {
		o(r)
	}
	return r
}

// want is what a client sees of a refusal.
type want struct {
	status          int
	location        string
	wwwAuthenticate string
	contentType     string
	code            string // problem JSON code; "" when the answer is not a problem
	clearsCookie    bool
}

func checkRefusal(t *testing.T, w *httptest.ResponseRecorder, up *upstream, wt want) {
	t.Helper()
	if up.calls != 0 {
		t.Errorf("upstream called %d times; a refused request must not pass", up.calls)
	}
	res := w.Result()
	if res.StatusCode != wt.status {
		t.Errorf("status = %d, want %d; body %s", res.StatusCode, wt.status, w.Body)
	}
	if got := res.Header.Get("Location"); got != wt.location {
		t.Errorf("Location = %q, want %q", got, wt.location)
	}
	if got := res.Header.Get("WWW-Authenticate"); got != wt.wwwAuthenticate {
		t.Errorf("WWW-Authenticate = %q, want %q", got, wt.wwwAuthenticate)
	}
	if wt.contentType != "" {
		if got := res.Header.Get("Content-Type"); got != wt.contentType {
			t.Errorf("Content-Type = %q, want %q", got, wt.contentType)
		}
	}
	if wt.code != "" {
		var p struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
			Type   string `json:"type"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatalf("problem body %q: %v", w.Body, err)
		}
		if p.Code != wt.code || p.Status != wt.status || p.Type != "urn:gatehouse:problem:"+wt.code {
			t.Errorf("problem = %+v, want code %q status %d", p, wt.code, wt.status)
		}
	}
	cleared := false
	for _, c := range res.Cookies() {
		if c.Name == "gatehouse_session" {
			cleared = c.MaxAge < 0 && c.Value == ""
		}
	}
	if cleared != wt.clearsCookie {
		t.Errorf("session cookie cleared = %v, want %v (Set-Cookie %q)", cleared, wt.clearsCookie, res.Header.Values("Set-Cookie"))
	}
}

func TestGuardRefusesUnauthenticated(t *testing.T) {
	f := newFixture(t)
	malformed := &http.Cookie{Name: "gatehouse_session", Value: "not-a-session"}
	unknown := &http.Cookie{Name: "gatehouse_session", Value: unknownSessionValue}
	// An Authorization header is refused even beside a valid session: API
	// tokens do not exist yet, and ignoring it would pass an unchecked credential.
	valid := f.session(f.approve(f.login("bob@example.com", false), "user", nil))

	const invalidChallenge = `Bearer realm="gatehouse", error="invalid_token"`
	tests := []struct {
		name   string
		method string
		target string
		opts   []reqOpt
		want   want
	}{
		{
			name: "browser without credentials is sent to sign in and back", method: "GET",
			target: "/chat/c/42?tab=a%20b&x=1", opts: []reqOpt{browser},
			want: want{status: 303, location: "/api/auth/login?rd=%2Fchat%2Fc%2F42%3Ftab%3Da%2520b%26x%3D1"},
		},
		{
			name: "API client without credentials gets a bearer challenge", method: "GET",
			target: "/version", opts: []reqOpt{apiClient},
			want: want{status: 401, wwwAuthenticate: `Bearer realm="gatehouse"`,
				contentType: "application/problem+json", code: "unauthenticated"},
		},
		{
			name: "browser POST without credentials is an API refusal, not a redirect", method: "POST",
			target: "/v1/chat/completions", opts: []reqOpt{browser},
			want: want{status: 401, wwwAuthenticate: `Bearer realm="gatehouse"`,
				contentType: "application/problem+json", code: "unauthenticated"},
		},
		{
			name: "empty session cookie counts as no credentials", method: "GET", target: "/version",
			opts: []reqOpt{withCookie(&http.Cookie{Name: "gatehouse_session", Value: ""})},
			want: want{status: 401, wwwAuthenticate: `Bearer realm="gatehouse"`,
				contentType: "application/problem+json", code: "unauthenticated"},
		},
		{
			name: "browser with an unknown session is sent to sign in and the cookie cleared", method: "GET",
			target: "/", opts: []reqOpt{browser, withCookie(unknown)},
			want: want{status: 303, location: "/api/auth/login?rd=%2F", clearsCookie: true},
		},
		{
			name: "browser with a malformed session cookie is sent to sign in and the cookie cleared", method: "GET",
			target: "/", opts: []reqOpt{browser, withCookie(malformed)},
			want: want{status: 303, location: "/api/auth/login?rd=%2F", clearsCookie: true},
		},
		{
			name: "API client with an unknown session gets invalid_token", method: "GET",
			target: "/version", opts: []reqOpt{withCookie(unknown)},
			want: want{status: 401, wwwAuthenticate: invalidChallenge,
				contentType: "application/problem+json", code: "invalid_token"},
		},
		{
			name: "API client with a malformed session cookie gets invalid_token", method: "POST",
			target: "/v1/chat/completions", opts: []reqOpt{withCookie(malformed)},
			want: want{status: 401, wwwAuthenticate: invalidChallenge,
				contentType: "application/problem+json", code: "invalid_token"},
		},
		{
			name: "bearer token Gatehouse did not sign is invalid", method: "GET", target: "/version",
			opts: []reqOpt{withHeader("Authorization", "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln")},
			want: want{status: 401, wwwAuthenticate: invalidChallenge,
				contentType: "application/problem+json", code: "invalid_token"},
		},
		{
			name: "basic credentials are refused", method: "GET", target: "/version",
			opts: []reqOpt{withHeader("Authorization", "Basic YWxpY2U6c2VjcmV0")},
			want: want{status: 401, wwwAuthenticate: invalidChallenge,
				contentType: "application/problem+json", code: "invalid_token"},
		},
		{
			name: "an Authorization header beside a valid session is still refused", method: "GET",
			target: "/version", opts: []reqOpt{withCookie(valid), withHeader("Authorization", "Bearer x")},
			want: want{status: 401, wwwAuthenticate: invalidChallenge,
				contentType: "application/problem+json", code: "invalid_token"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, up := f.serve(newRequest(tt.method, tt.target, tt.opts...))
			checkRefusal(t, w, up, tt.want)
		})
	}
}

func TestGuardRefusesEndedSessions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.approve(f.login("bob@example.com", false), "user", nil)

	// The guard reads the runtime's sessions at request time, so a clock the
	// test controls shows the guard's view of lifetimes without sleeping.
	start := time.Now()
	now := start
	f.rt.Sessions = identity.NewSessions(f.rt.Store, identity.SessionConfig{}, func() time.Time { return now })

	idle := f.session(u)
	longLived := f.session(u)
	revoked := f.session(u)
	if err := f.rt.Sessions.Destroy(ctx, newRequest("GET", "/", withCookie(revoked))); err != nil {
		t.Fatalf("destroy session: %v", err)
	}
	carol := f.approve(f.login("carol@example.com", false), "user", nil)
	ofDeletedUser := f.session(carol)
	if err := f.rt.Store.DeleteUser(ctx, carol.ID, store.AuditEvent{}); err != nil {
		t.Fatalf("delete user: %v", err)
	}

	refused := func(t *testing.T, c *http.Cookie) {
		t.Helper()
		w, up := f.serve(newRequest("GET", "/version", withCookie(c)))
		checkRefusal(t, w, up, want{status: 401, wwwAuthenticate: `Bearer realm="gatehouse", error="invalid_token"`,
			contentType: "application/problem+json", code: "invalid_token"})
	}
	// useLongLived requests often enough that the session never idles out.
	const step = 110 * time.Minute
	useLongLived := func(until time.Duration) {
		for {
			if w, _ := f.serve(newRequest("GET", "/version", withCookie(longLived))); w.Code != http.StatusNoContent {
				t.Fatalf("session in use %v after sign-in: status %d, want it to pass", now.Sub(start), w.Code)
			}
			if now.Sub(start)+step >= until {
				return
			}
			now = now.Add(step)
		}
	}

	useLongLived(2 * time.Hour)
	now = start.Add(2*time.Hour + time.Minute) // past the 2h idle timeout, well within the 24h lifetime
	t.Run("idle past the timeout", func(t *testing.T) { refused(t, idle) })
	t.Run("revoked", func(t *testing.T) { refused(t, revoked) })
	t.Run("of a deleted user", func(t *testing.T) { refused(t, ofDeletedUser) })

	useLongLived(24 * time.Hour)
	now = start.Add(24 * time.Hour) // the absolute lifetime ends, though the session was used under 2h ago
	t.Run("past its lifetime", func(t *testing.T) { refused(t, longLived) })
}

func TestGuardRefusesUsersWithoutAccess(t *testing.T) {
	f := newFixture(t)
	pending := f.session(f.userWithStatus("pat@example.com", store.StatusPending))
	suspended := f.session(f.userWithStatus("sue@example.com", store.StatusSuspended))
	denied := f.session(f.userWithStatus("dan@example.com", store.StatusDenied))
	// A role the policy data does not know has no permissions at all.
	noRole := f.approve(f.login("nora@example.com", false), "user", nil)
	if _, err := f.rt.Store.SetUserRole(context.Background(), noRole.ID, "visitor", store.AuditEvent{}); err != nil {
		t.Fatalf("set role: %v", err)
	}
	forbidden := f.session(noRole)

	tests := []struct {
		name   string
		cookie *http.Cookie
		opts   []reqOpt
		method string
		want   want
	}{
		{name: "pending browser is sent to request access", cookie: pending, opts: []reqOpt{browser}, method: "GET",
			want: want{status: 303, location: "/gatehouse/request-access"}},
		{name: "pending API client gets access_required", cookie: pending, opts: []reqOpt{apiClient}, method: "GET",
			want: want{status: 403, contentType: "application/problem+json", code: "access_required"}},
		{name: "pending browser POST gets access_required", cookie: pending, opts: []reqOpt{browser}, method: "POST",
			want: want{status: 403, contentType: "application/problem+json", code: "access_required"}},
		{name: "suspended API client gets account_suspended", cookie: suspended, method: "GET",
			want: want{status: 403, contentType: "application/problem+json", code: "account_suspended"}},
		{name: "suspended browser gets a 403 page", cookie: suspended, opts: []reqOpt{browser}, method: "GET",
			want: want{status: 403, contentType: htmlType}},
		{name: "denied API client gets access_denied", cookie: denied, method: "POST",
			want: want{status: 403, contentType: "application/problem+json", code: "access_denied"}},
		{name: "denied browser gets a 403 page", cookie: denied, opts: []reqOpt{browser}, method: "GET",
			want: want{status: 403, contentType: htmlType}},
		{name: "active user the policy refuses gets forbidden", cookie: forbidden, method: "GET",
			want: want{status: 403, contentType: "application/problem+json", code: "forbidden"}},
		{name: "active user the policy refuses gets a 403 page in the browser", cookie: forbidden, opts: []reqOpt{browser}, method: "GET",
			want: want{status: 403, contentType: htmlType}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]reqOpt{withCookie(tt.cookie)}, tt.opts...)
			w, up := f.serve(newRequest(tt.method, "/v1/chat/completions", opts...))
			checkRefusal(t, w, up, tt.want)
		})
	}

	t.Run("refusals are audited", func(t *testing.T) {
		evs, err := f.rt.Store.ListAudit(context.Background(), store.AuditFilter{Type: "policy.denied", Limit: 100})
		if err != nil {
			t.Fatalf("list audit: %v", err)
		}
		codes := map[string]int{}
		for _, e := range evs {
			codes[e.Detail["code"].(string)]++
		}
		// The redirect of a pending browser is a refusal too; the same refusal
		// (subject, code, method, path) repeated within a minute is stored once,
		// so the browser and API GETs of one user count once.
		wantCodes := map[string]int{"access_required": 2, "account_suspended": 1, "access_denied": 2, "forbidden": 1}
		for code, n := range wantCodes {
			if codes[code] != n {
				t.Errorf("policy.denied events with code %s = %d, want %d (all: %v)", code, codes[code], n, codes)
			}
		}
	})
}

func TestGuardExpiredTemporaryGrantFallsBackToPending(t *testing.T) {
	f := newFixture(t)
	ended := time.Now().Add(-time.Second)
	u := f.approve(f.login("tim@example.com", false), "user", &ended)
	if u.Status != store.StatusActive || u.AccessExpiresAt == nil {
		t.Fatalf("approved user is %s with grant end %v, want active with an end", u.Status, u.AccessExpiresAt)
	}
	c := f.session(u)

	w, up := f.serve(newRequest("GET", "/version", withCookie(c)))
	checkRefusal(t, w, up, want{status: 403, contentType: "application/problem+json", code: "access_required"})

	got, err := f.rt.Store.GetUser(context.Background(), u.ID)
	if err != nil {
		t.Fatalf("get user: %v", err)
	}
	if got.Status != store.StatusPending || got.AccessExpiresAt != nil {
		t.Errorf("user after the grant ended is %s with grant end %v, want pending with none", got.Status, got.AccessExpiresAt)
	}

	// Leaving active ends the sessions (spec §3a): the browser signs in again,
	// and then lands on the request-access page.
	w, up = f.serve(newRequest("GET", "/version", withCookie(c), browser))
	checkRefusal(t, w, up, want{status: 303, location: "/api/auth/login?rd=%2Fversion", clearsCookie: true})
	w, up = f.serve(newRequest("GET", "/version", withCookie(f.session(got)), browser))
	checkRefusal(t, w, up, want{status: 303, location: "/gatehouse/request-access"})
}

func TestGuardGrantNotYetEndedPasses(t *testing.T) {
	f := newFixture(t)
	ends := time.Now().Add(time.Hour)
	u := f.approve(f.login("tim@example.com", false), "user", &ends)
	w, up := f.serve(newRequest("GET", "/version", withCookie(f.session(u))))
	if w.Code != http.StatusNoContent || up.calls != 1 {
		t.Fatalf("status %d, upstream calls %d; want the request passed once", w.Code, up.calls)
	}
}

func TestGuardPassesAllowedRequestWithIdentity(t *testing.T) {
	f := newFixture(t)
	bob := f.approve(f.login("bob@example.com", false), "manager", nil)
	c := f.session(bob)

	r := newRequest("POST", "/v1/chat/completions?stream=true", withCookie(c),
		withHeader("x-gatehouse-user-id", "attacker"),
		withHeader("X-GATEHOUSE-ROLE", "admin"),
		withHeader("X-Gatehouse-User-Email", "root@example.com"),
		withHeader("X-Gatehouse-Whatever", "x"),
		withHeader("X-Gatehouse-Token-Id", "tok"),
		withHeader("X-Gatehouse-Assertion", "forged"),
		withHeader("X-Other", "kept"),
	)
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))

	w, up := f.serve(r)
	if up.calls != 1 {
		t.Fatalf("upstream called %d times, want 1; status %d body %s", up.calls, w.Code, w.Body)
	}
	if w.Code != http.StatusNoContent {
		t.Errorf("client status = %d, want the upstream's 204", w.Code)
	}
	if got := w.Header().Get("Set-Cookie"); got != "" {
		t.Errorf("passed request set a cookie: %q", got)
	}

	h := up.req.Header
	wantHeaders := map[string]string{
		guard.HeaderUserID:    bob.ID,
		guard.HeaderUserEmail: "bob@example.com",
		guard.HeaderRole:      "manager",
	}
	for name, v := range wantHeaders {
		if got := h.Values(name); len(got) != 1 || got[0] != v {
			t.Errorf("upstream %s = %q, want exactly %q", name, got, v)
		}
	}
	for name := range h {
		lower := strings.ToLower(name)
		if !strings.HasPrefix(lower, "x-gatehouse-") {
			continue
		}
		switch name {
		case guard.HeaderUserID, guard.HeaderUserEmail, guard.HeaderRole, guard.HeaderAssertion:
		default:
			t.Errorf("upstream received incoming header %s: %q", name, h[name])
		}
	}
	if got := h.Get("X-Other"); got != "kept" {
		t.Errorf("unrelated header X-Other = %q, want it kept", got)
	}
	if up.req.URL.RequestURI() != "/v1/chat/completions?stream=true" || up.req.Method != "POST" {
		t.Errorf("upstream got %s %s, want the request unchanged", up.req.Method, up.req.URL.RequestURI())
	}
	if body, _ := io.ReadAll(up.req.Body); string(body) != `{"model":"llama3","messages":[]}` {
		t.Errorf("upstream body = %q, want it unchanged", body)
	}

	for ph, v := range map[string]string{
		"http.auth.user.id": bob.ID, "http.auth.user.email": "bob@example.com", "http.auth.user.role": "manager",
	} {
		if got, ok := repl.GetString(ph); !ok || got != v {
			t.Errorf("placeholder {%s} = %q (set %v), want %q", ph, got, ok, v)
		}
	}

	t.Run("assertion verifies against the published JWKS", func(t *testing.T) {
		assertion := h.Get(guard.HeaderAssertion)
		if vals := h.Values(guard.HeaderAssertion); len(vals) != 1 || assertion == "forged" {
			t.Fatalf("upstream assertion headers = %q, want one Gatehouse-signed value", vals)
		}
		set, err := jwk.Parse(f.rt.Keys.JWKS())
		if err != nil {
			t.Fatalf("parse JWKS: %v", err)
		}
		tok, err := jwt.Parse([]byte(assertion), jwt.WithKeySet(set), jwt.WithValidate(true),
			jwt.WithIssuer(publicURL), jwt.WithAudience(publicURL), jwt.WithSubject(bob.ID))
		if err != nil {
			t.Fatalf("assertion does not verify: %v", err)
		}
		if life := tok.Expiration().Sub(tok.IssuedAt()); life <= 0 || life > 60*time.Second {
			t.Errorf("assertion lives %v, want (0, 60s]", life)
		}
		for claim, v := range map[string]string{"email": "bob@example.com", "role": "manager"} {
			if got, _ := tok.Get(claim); got != v {
				t.Errorf("assertion claim %s = %v, want %q", claim, got, v)
			}
		}
	})

	t.Run("assertion of another key set does not verify", func(t *testing.T) {
		other := newFixture(t)
		set, err := jwk.Parse(other.rt.Keys.JWKS())
		if err != nil {
			t.Fatalf("parse JWKS: %v", err)
		}
		if _, err := jwt.Parse([]byte(h.Get(guard.HeaderAssertion)), jwt.WithKeySet(set)); err == nil {
			t.Errorf("assertion verified against another instance's keys")
		}
	})
}

func TestGuardKeepsOnlyTheBackendsCookies(t *testing.T) {
	f := newFixture(t)
	c := f.session(f.approve(f.login("bob@example.com", false), "user", nil))
	sess := "gatehouse_session=" + c.Value

	tests := []struct {
		name    string
		cookies []string // Cookie header lines as the client sent them
		// want is what the upstream must see, its lines joined as HTTP/2
		// cookie crumbs are (RFC 9113 §8.2.3); nil = no Cookie header.
		want []string
	}{
		{name: "only the session cookie", cookies: []string{sess}, want: nil},
		{name: "session cookie between the backend's", cookies: []string{"theme=dark; " + sess + "; csrftoken=abc123"},
			want: []string{"theme=dark; csrftoken=abc123"}},
		{name: "session cookie first", cookies: []string{sess + "; a=1"}, want: []string{"a=1"}},
		{name: "login state cookie of an interrupted sign-in is dropped too",
			cookies: []string{"a=1; " + identity.LoginCookieName(false) + "=state; " + sess}, want: []string{"a=1"}},
		{name: "values with base64 padding and JSON-ish bytes", cookies: []string{sess + "; jwt=eyJ0.eyJ1.c2ln==; prefs={a:1}"},
			want: []string{"jwt=eyJ0.eyJ1.c2ln==; prefs={a:1}"}},
		{name: "quoted value stays quoted", cookies: []string{sess + `; q="v"`}, want: []string{`q="v"`}},
		{name: "value with a space or comma is not re-quoted", cookies: []string{sess + "; list=a,b; s=x y"},
			want: []string{"list=a,b; s=x y"}},
		{name: "cookie Go cannot parse still reaches the backend", cookies: []string{sess + "; name=caf\u00e9"},
			want: []string{"name=caf\u00e9"}},
		{name: "a cookie named like a prefix of the session cookie stays",
			cookies: []string{"gatehouse=1; " + sess + "; gatehouse_session_x=2"}, want: []string{"gatehouse=1; gatehouse_session_x=2"}},
		{name: "HTTP/2 cookie crumbs, one per line", cookies: []string{"a=1", sess, "b=2"}, want: []string{"a=1", "b=2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRequest("GET", "/", withHeader("Cookie", tt.cookies[0]))
			for _, line := range tt.cookies[1:] {
				r.Header.Add("Cookie", line)
			}
			w, up := f.serve(r)
			if up.calls != 1 {
				t.Fatalf("upstream called %d times, want 1; status %d", up.calls, w.Code)
			}
			got := up.req.Header.Values("Cookie")
			if (len(got) == 0) != (len(tt.want) == 0) ||
				strings.Join(got, "; ") != strings.Join(tt.want, "; ") {
				t.Errorf("upstream Cookie = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestGuardRefusesCrossSiteUnsafeRequests(t *testing.T) {
	f := newFixture(t)
	c := f.session(f.approve(f.login("bob@example.com", false), "user", nil))

	tests := []struct {
		name   string
		method string
		opts   []reqOpt
		pass   bool
	}{
		{name: "cross-site POST", method: "POST", opts: []reqOpt{withHeader("Sec-Fetch-Site", "cross-site")}},
		{name: "same-site POST from a sibling origin", method: "POST", opts: []reqOpt{withHeader("Sec-Fetch-Site", "same-site")}},
		{name: "cross-site DELETE", method: "DELETE", opts: []reqOpt{withHeader("Sec-Fetch-Site", "cross-site")}},
		{name: "POST from a foreign Origin without Sec-Fetch-Site", method: "POST",
			opts: []reqOpt{withHeader("Origin", "https://evil.example")}},
		{name: "POST with neither Origin nor Sec-Fetch-Site (non-browser client)", method: "POST", pass: true},
		{name: "same-origin POST", method: "POST", opts: []reqOpt{withHeader("Sec-Fetch-Site", "same-origin")}, pass: true},
		{name: "POST from the public origin", method: "POST", opts: []reqOpt{withHeader("Origin", publicURL)}, pass: true},
		{name: "user-initiated navigation POST", method: "POST", opts: []reqOpt{withHeader("Sec-Fetch-Site", "none")}, pass: true},
		{name: "cross-site GET is safe", method: "GET", opts: []reqOpt{withHeader("Sec-Fetch-Site", "cross-site")}, pass: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, up := f.serve(newRequest(tt.method, "/v1/chat/completions", append([]reqOpt{withCookie(c)}, tt.opts...)...))
			if tt.pass {
				if up.calls != 1 || w.Code != http.StatusNoContent {
					t.Errorf("status %d, upstream calls %d; want the request passed; body %s", w.Code, up.calls, w.Body)
				}
				return
			}
			checkRefusal(t, w, up, want{status: 403, contentType: "application/problem+json", code: "cross_site"})
		})
	}
}

func TestGuardFailsClosedWhenTheStoreFails(t *testing.T) {
	f := newFixture(t)
	c := f.session(f.approve(f.login("bob@example.com", false), "user", nil))
	if err := f.rt.Store.Close(); err != nil {
		t.Fatalf("close store: %v", err)
	}

	tests := []struct {
		name string
		req  *http.Request
		want want
	}{
		{name: "API client", req: newRequest("POST", "/v1/chat/completions", withCookie(c)),
			want: want{status: 503, contentType: "application/problem+json", code: "unavailable"}},
		{name: "browser", req: newRequest("GET", "/", withCookie(c), browser),
			want: want{status: 503, contentType: htmlType}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, up := f.serve(tt.req)
			checkRefusal(t, w, up, tt.want)
			if got := w.Header().Get("Retry-After"); got == "" {
				t.Errorf("Retry-After missing on 503")
			}
			if got := w.Header().Get("WWW-Authenticate"); got != "" {
				t.Errorf("503 carries WWW-Authenticate %q; an outage must not look like bad credentials", got)
			}
		})
	}

	t.Run("anonymous requests are still refused as unauthenticated", func(t *testing.T) {
		w, up := f.serve(newRequest("GET", "/version"))
		checkRefusal(t, w, up, want{status: 401, wwwAuthenticate: `Bearer realm="gatehouse"`,
			contentType: "application/problem+json", code: "unauthenticated"})
	})
}

// TestGuardRefusesBearerTokensWhenTheRevocationListIsStale: an instance that
// cannot confirm its revocation list is fresh refuses bearer tokens with 503,
// and accepts them again once the list is refreshed.
func TestGuardRefusesBearerTokensWhenTheRevocationListIsStale(t *testing.T) {
	f := newFixtureWith(t, core.Options{MaxStaleness: caddy.Duration(300 * time.Millisecond)})
	raw := f.token(f.approve(f.login("bob@example.com", false), "user", nil))
	bearer := func() *httptest.ResponseRecorder {
		w, _ := f.serve(newRequest("GET", "/version", withHeader("Authorization", "Bearer "+raw)))
		return w
	}
	if w := bearer(); w.Code != http.StatusNoContent { // the recording upstream answers 204
		t.Fatalf("fresh list: status %d %s", w.Code, w.Body)
	}
	// The runtime is not started, so nothing refreshes the list.
	time.Sleep(400 * time.Millisecond)
	w := bearer()
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"code":"unavailable"`) {
		t.Fatalf("stale list: status %d %s, want 503 unavailable", w.Code, w.Body)
	}
	// Sessions do not depend on the list.
	c := f.session(f.approve(f.login("carol@example.com", false), "user", nil))
	if w, _ := f.serve(newRequest("GET", "/version", withCookie(c))); w.Code != http.StatusNoContent {
		t.Fatalf("session while the list is stale: %d", w.Code)
	}
	f.rt.Start(context.Background()) // refreshes every 0.5 s
	deadline := time.Now().Add(3 * time.Second)
	for bearer().Code != http.StatusNoContent {
		if time.Now().After(deadline) {
			t.Fatal("bearer tokens still refused after the list was refreshed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGuardRefusesAnOversizedListing: a model listing is buffered to be
// filtered only up to a bound; past it the answer is 502, never the
// unfiltered list and never an unbounded buffer.
func TestGuardRefusesAnOversizedListing(t *testing.T) {
	f := newFixture(t)
	raw := f.token(f.approve(f.login("bob@example.com", false), "user", nil))
	big := func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[`)
		entry := `{"id":"gpt-4o","object":"model","owned_by":"x"},`
		chunk := strings.Repeat(entry, 1<<16/len(entry))
		for written := 0; written < 20<<20; written += len(chunk) {
			if _, err := io.WriteString(w, chunk); err != nil {
				return nil // the guard stopped taking it
			}
		}
		io.WriteString(w, `{"id":"last"}]}`)
		return nil
	}
	w := httptest.NewRecorder()
	if err := f.g.Serve(w, newRequest("GET", "/v1/models", withHeader("Authorization", "Bearer "+raw)), big); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), `"code":"bad_listing"`) || w.Body.Len() > 4096 {
		t.Fatalf("status %d, %d bytes: %.200s; want a short 502 bad_listing", w.Code, w.Body.Len(), w.Body)
	}
}

// A policy whose extension rules read a header has the rest of each backend
// decision cached and the extensions asked on every request: the header
// decides request by request, and a cached allow never lets a blocked
// request through (nor a cached deny block an allowed one).
func TestHeaderReadingExtensionsDecideEveryRequest(t *testing.T) {
	rule := filepath.Join(t.TempDir(), "ext.rego")
	if err := os.WriteFile(rule, []byte("package gatehouse.ext\n\ndeny contains \"blocked by x-block\" if input.request.headers[\"x-block\"] == \"1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, rule)
	if !f.rt.Policy().Split() {
		t.Fatal("a policy whose only extension reads a header should be split")
	}
	c := f.session(f.approve(f.login("bob@example.com", false), "user", nil))
	for i, block := range []bool{false, true, false, true, true, false} {
		opts := []reqOpt{apiClient, withCookie(c)}
		if block {
			opts = append(opts, withHeader("X-Block", "1"))
		}
		w, up := f.serve(newRequest(http.MethodGet, publicURL+"/v1/models", opts...))
		switch {
		case block && (w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "blocked by x-block") || up.calls != 0):
			t.Fatalf("request %d with x-block: %d %s (upstream called %d times), want 403 naming the rule", i, w.Code, w.Body, up.calls)
		case !block && (w.Code != http.StatusNoContent || up.calls != 1):
			t.Fatalf("request %d without x-block: %d %s, want it passed upstream", i, w.Code, w.Body)
		}
	}
}
