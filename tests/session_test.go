package tests

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// TestSessionCookieFlags: the cookie holds an opaque ID with HttpOnly and SameSite=Lax.
func TestSessionCookieFlags(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	c := in.newClient()
	login := c.get("/api/auth/login")
	loginCookie := findLoginCookie(login.Response, "gatehouse_login")
	if loginCookie == nil || !loginCookie.HttpOnly || loginCookie.SameSite != http.SameSiteLaxMode || loginCookie.MaxAge <= 0 {
		t.Fatalf("login-state cookie = %+v", loginCookie)
	}
	if strings.Contains(loginCookie.Value, "evil") || len(loginCookie.Value) < 40 {
		t.Fatalf("login-state cookie is not sealed: %q", loginCookie.Value)
	}

	// Capture the callback's Set-Cookie by signing in with a recording transport.
	var sessionSet *http.Cookie
	c.http.Transport = recordCookies(func(ck *http.Cookie) {
		if ck.Name == sessionCookie && ck.MaxAge >= 0 && ck.Value != "" {
			sessionSet = ck
		}
	})
	c.signIn(bob, "")
	if sessionSet == nil {
		t.Fatal("no session cookie set at the callback")
	}
	if !sessionSet.HttpOnly || sessionSet.SameSite != http.SameSiteLaxMode || sessionSet.Path != "/" || sessionSet.Domain != "" || sessionSet.Secure {
		t.Fatalf("session cookie flags = %+v (http public_url: no Secure)", sessionSet)
	}
	if len(sessionSet.Value) < 43 || strings.Contains(sessionSet.Value, bob) {
		t.Fatalf("session cookie value %q is not an opaque random ID", sessionSet.Value)
	}
}

// TestTwoSignInsAtOnce: two tabs of one browser signing in at once both
// land where they started, whichever callback comes first, and a failed
// callback clears only its own flow (issue 10: one login-state cookie served
// every flow, so the second sign-in broke the first).
func TestTwoSignInsAtOnce(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	c := in.newClient()
	first := c.beginSignIn(bob, "/first")
	second := c.beginSignIn(bob, "/second")
	// A forged callback fails without touching the two real flows.
	if r := c.get("/api/auth/callback?state=forged-state-0123456789&code=x", "Accept", "text/html"); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged callback: %d", r.StatusCode)
	}
	if got := c.finishSignIn(first); got != "/gatehouse/request-access" {
		t.Fatalf("the first tab's sign-in lands on %q", got)
	}
	if got := c.finishSignIn(second); got != "/gatehouse/request-access" {
		t.Fatalf("the second tab's sign-in lands on %q", got)
	}
	if r := c.get("/api/auth/me"); r.StatusCode != http.StatusOK {
		t.Fatalf("signed in after both: %d %s", r.StatusCode, r.body)
	}
	// Sign-ins under way are bounded: many started, few cookies kept.
	for range 10 {
		c.get("/api/auth/login", "Accept", "text/html")
	}
	u, _ := url.Parse(in.URL)
	n := 0
	for _, ck := range c.http.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, "gatehouse_login_") {
			n++
		}
	}
	if n == 0 || n > 4 {
		t.Fatalf("%d login-state cookies after ten sign-ins started, want 1 to 4", n)
	}
}

// TestLoginRedirectOnlyToLocalPaths: rd is honoured only for local paths.
func TestLoginRedirectOnlyToLocalPaths(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	cases := map[string]string{
		"//evil.example":       "/",
		`/\evil.example`:       "/",
		"https://evil.example": "/",
		"/v1/models?x=1":       "/v1/models?x=1",
	}
	for rd, want := range cases {
		t.Run(rd, func(t *testing.T) {
			c := in.newClient()
			if got := c.signIn(alice, rd); got != want {
				t.Fatalf("rd %q: redirected to %q, want %q", rd, got, want)
			}
		})
	}
	t.Run("JSON clients get the authorize URL", func(t *testing.T) {
		resp := in.newClient().get("/api/auth/login?rd=/x", "Accept", "application/json")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		u, err := url.Parse(resp.json(t)["authorize_url"].(string))
		if err != nil || !strings.HasSuffix(u.Path, "/authorize") {
			t.Fatalf("authorize_url = %v", resp.json(t)["authorize_url"])
		}
		q := u.Query()
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" || q.Get("nonce") == "" {
			t.Fatalf("authorize_url lacks PKCE S256, state or nonce: %s", u)
		}
	})
}

// TestSessionFixation: a cookie planted before sign-in never becomes the session.
func TestSessionFixation(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	victim := in.newClient()
	planted := "cGxhbnRlZC1ieS1hbi1hdHRhY2tlci0zMi1ieXRlcy1sb25n"
	victim.setCookie(sessionCookie, planted)
	victim.signIn(alice, "")
	got := victim.cookie(sessionCookie)
	if got == "" || got == planted {
		t.Fatalf("session cookie after sign-in = %q, want a fresh ID", got)
	}
	attacker := in.newClient()
	attacker.setCookie(sessionCookie, planted)
	expectProblem(t, attacker.get("/api/auth/me"), http.StatusUnauthorized, "invalid_token")

	// A second sign-in in the same browser rotates the ID too.
	first := victim.cookie(sessionCookie)
	victim.signIn(alice, "")
	if second := victim.cookie(sessionCookie); second == first {
		t.Fatal("signing in again kept the same session ID")
	}
	stale := in.newClient()
	stale.setCookie(sessionCookie, first)
	expectProblem(t, stale.get("/api/auth/me"), http.StatusUnauthorized, "invalid_token")
}

// TestRefreshAndLogoutInvalidateTheOldCookie.
func TestRefreshAndLogoutInvalidateTheOldCookie(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	c := in.newClient()
	c.signIn(alice, "")
	old := c.cookie(sessionCookie)

	resp := c.do("POST", "/api/auth/refresh", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %s", resp.StatusCode, resp.body)
	}
	body := resp.json(t)
	if body["user"].(map[string]any)["email"] != alice {
		t.Fatalf("refresh body = %v", body)
	}
	if exp, err := time.Parse(time.RFC3339, body["expires_at"].(string)); err != nil || !exp.After(time.Now()) {
		t.Fatalf("expires_at = %v", body["expires_at"])
	}
	rotated := c.cookie(sessionCookie)
	if rotated == "" || rotated == old {
		t.Fatal("refresh did not rotate the session cookie")
	}
	replay := in.newClient()
	replay.setCookie(sessionCookie, old)
	expectProblem(t, replay.get("/api/auth/me"), http.StatusUnauthorized, "invalid_token")
	expectProblem(t, replay.do("POST", "/api/auth/refresh", nil), http.StatusUnauthorized, "invalid_token")
	if c.get("/api/auth/me").StatusCode != http.StatusOK {
		t.Fatal("the rotated cookie does not work")
	}

	out := c.do("POST", "/api/auth/logout", nil)
	if out.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d %s", out.StatusCode, out.body)
	}
	if ck := findSetCookie(out.Response, sessionCookie); ck == nil || ck.MaxAge >= 0 {
		t.Fatalf("logout did not clear the cookie: %+v", ck)
	}
	after := in.newClient()
	after.setCookie(sessionCookie, rotated)
	expectProblem(t, after.get("/api/auth/me"), http.StatusUnauthorized, "invalid_token")

	// A form post (the pages' sign-out button) is answered with a page that
	// goes on at once (meta refresh) to the IdP's end-session endpoint, with
	// the ID token as a hint and the public URL to come back to. A 303 there
	// would be blocked by the pages' CSP form-action 'self' (issue 10), which
	// stays as strict as it was.
	form := in.newClient()
	form.signIn(alice, "")
	fout := form.do("POST", "/api/auth/logout", url.Values{})
	if csp := fout.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self'") {
		t.Fatalf("sign-out page CSP %q", csp)
	}
	refresh := regexp.MustCompile(`<meta http-equiv="refresh" content="0; url=([^"]+)">`).FindStringSubmatch(fout.text())
	if fout.StatusCode != http.StatusOK || refresh == nil || !strings.Contains(fout.text(), `id="continue"`) {
		t.Fatalf("form logout: %d, Location %q\n%s", fout.StatusCode, fout.Header.Get("Location"), fout.body)
	}
	loc, _ := url.Parse(html.UnescapeString(refresh[1]))
	if loc == nil || !strings.HasPrefix(loc.String(), in.URL+"/dev-idp/") ||
		loc.Query().Get("id_token_hint") == "" || loc.Query().Get("post_logout_redirect_uri") != in.URL+"/" {
		t.Fatalf("form logout continues to %q", refresh[1])
	}
	end := form.get(loc.String())
	if end.StatusCode/100 != 3 || !strings.HasPrefix(end.Header.Get("Location"), in.URL+"/") {
		t.Fatalf("the IdP's end-session endpoint answered %d, Location %q", end.StatusCode, end.Header.Get("Location"))
	}
}

// TestCrossSitePostRefused: a cookie-authenticated state change from another site is refused.
func TestCrossSitePostRefused(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	c := in.newClient()
	c.signIn(erin, "")
	resp := c.do("POST", "/api/auth/request-access", map[string]any{"purpose": "csrf"},
		"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	expectProblem(t, resp, http.StatusForbidden, "cross_site")
	resp = c.do("POST", "/gatehouse/request-access", url.Values{"purpose": {"csrf"}}, "Origin", "https://evil.example")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site form post: %d", resp.StatusCode)
	}
	expectProblem(t, c.get("/api/auth/request-access"), http.StatusNotFound, "not_found")
	// Same-origin browsers and non-browser clients pass.
	ok := c.do("POST", "/api/auth/request-access", map[string]any{"purpose": "legit"}, "Sec-Fetch-Site", "same-origin", "Origin", in.URL)
	if ok.StatusCode != http.StatusCreated {
		t.Fatalf("same-origin post: %d %s", ok.StatusCode, ok.body)
	}
}

// TestBadRequestBodies: malformed, oversized and wrongly typed bodies get problem+json.
func TestBadRequestBodies(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	c := in.newClient()
	c.signIn(erin, "")
	expectProblem(t, c.do("POST", "/api/auth/request-access", `{"purpose": `), http.StatusBadRequest, "invalid_json")
	expectProblem(t, c.do("POST", "/api/auth/request-access", `{"purpose":"x"} {"again":1}`), http.StatusBadRequest, "invalid_json")
	expectProblem(t, c.do("POST", "/api/auth/request-access", `{"purpose":"x","admin":true}`), http.StatusBadRequest, "invalid_json")
	expectProblem(t, c.do("POST", "/api/auth/request-access", `{"purpose":42}`), http.StatusBadRequest, "invalid_json")
	expectProblem(t, c.do("POST", "/api/auth/request-access", `{"team":"x"}`), http.StatusBadRequest, "validation_failed")
	expectProblem(t, c.do("POST", "/api/auth/request-access", map[string]any{"purpose": strings.Repeat("é", 2001)}), http.StatusBadRequest, "validation_failed")
	expectProblem(t, c.do("POST", "/api/auth/request-access", map[string]any{"purpose": "x", "requested_role": "emperor"}), http.StatusBadRequest, "validation_failed")
	expectProblem(t, c.do("POST", "/api/auth/request-access", `{"purpose":"`+strings.Repeat("a", 70<<10)+`"}`), http.StatusRequestEntityTooLarge, "body_too_large")
	expectProblem(t, c.do("POST", "/api/auth/request-access", `purpose=x`, "Content-Type", "text/plain"), http.StatusUnsupportedMediaType, "unsupported_media_type")
	// Nothing was stored by any of them.
	expectProblem(t, c.get("/api/auth/request-access"), http.StatusNotFound, "not_found")
}

// TestStateSurvivesRestart: users, sessions, requests and decisions outlive the process.
func TestStateSurvivesRestart(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	bobC := in.newClient()
	bobC.signIn(bob, "")
	req := bobC.do("POST", "/api/auth/request-access", map[string]any{"purpose": "persist"}).json(t)
	aliceC := in.newClient()
	aliceC.signIn(alice, "")
	jwksBefore := in.newClient().get("/.well-known/jwks.json").text()

	in.restart()

	if got := aliceC.get("/api/access/requests").json(t)["requests"].([]any); len(got) != 1 || got[0].(map[string]any)["id"] != req["id"] {
		t.Fatalf("pending requests after restart = %v", got)
	}
	if resp := aliceC.do("PUT", "/api/access/"+req["id"].(string)+"/approve", map[string]any{"comment": "after restart"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("approve after restart: %d %s", resp.StatusCode, resp.body)
	}
	in.restart()
	if resp := bobC.get("/v1/models"); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob after restarts: %d %s", resp.StatusCode, resp.body)
	}
	if mine := bobC.get("/api/auth/request-access").json(t); mine["comment"] != "after restart" {
		t.Fatalf("request after restart = %v", mine)
	}
	if jwksAfter := in.newClient().get("/.well-known/jwks.json").text(); jwksAfter != jwksBefore {
		t.Fatalf("signing keys changed across restart:\n%s\n%s", jwksBefore, jwksAfter)
	}
}

// TestHealth answers 200 while the store answers.
func TestHealth(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	resp := in.newClient().get("/api/health")
	if resp.StatusCode != http.StatusOK || resp.json(t)["status"] != "ok" {
		t.Fatalf("health: %d %s", resp.StatusCode, resp.body)
	}
}

// verifyAssertion checks X-Gatehouse-Assertion against the published JWKS with jwx.
func verifyAssertion(t *testing.T, in *instance, token, sub, email, role string) {
	t.Helper()
	set, err := jwk.Parse(in.newClient().get("/.well-known/jwks.json").body)
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	msg, err := jws.Parse([]byte(token))
	if err != nil {
		t.Fatalf("assertion: %v", err)
	}
	if alg := msg.Signatures()[0].ProtectedHeaders().Algorithm().String(); alg != "ES256" {
		t.Fatalf("assertion alg = %s, want ES256", alg)
	}
	tok, err := jwt.Parse([]byte(token), jwt.WithKeySet(set), jwt.WithValidate(true), jwt.WithIssuer(in.URL), jwt.WithAudience(in.URL))
	if err != nil {
		t.Fatalf("assertion does not verify against the JWKS: %v", err)
	}
	if tok.Subject() != sub || tok.Expiration().Sub(tok.IssuedAt()) > 60*time.Second {
		t.Fatalf("assertion sub %q life %s", tok.Subject(), tok.Expiration().Sub(tok.IssuedAt()))
	}
	gotEmail, _ := tok.Get("email")
	gotRole, _ := tok.Get("role")
	if gotEmail != email || gotRole != role {
		t.Fatalf("assertion email %v role %v", gotEmail, gotRole)
	}
}

// findLoginCookie is the login-state cookie a sign-in set: one per flow,
// named base_<state prefix>.
func findLoginCookie(resp *http.Response, base string) *http.Cookie {
	for _, ck := range resp.Cookies() {
		if strings.HasPrefix(ck.Name, base+"_") && ck.MaxAge > 0 {
			return ck
		}
	}
	return nil
}

func findSetCookie(resp *http.Response, name string) *http.Cookie {
	for _, ck := range resp.Cookies() {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}

type cookieRecorder struct {
	base http.RoundTripper
	fn   func(*http.Cookie)
}

func recordCookies(fn func(*http.Cookie)) http.RoundTripper {
	return &cookieRecorder{base: http.DefaultTransport, fn: fn}
}

func (r *cookieRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err == nil {
		for _, ck := range resp.Cookies() {
			r.fn(ck)
		}
	}
	return resp, err
}
