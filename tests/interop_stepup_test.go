package tests

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// idpStep follows path on Gatehouse like a browser (redirects followed) and,
// whenever the IdP shows its sign-in form or its one-time-code form, fills
// it in as username (with the code when asked). It returns the last page.
func idpStep(t *testing.T, c *client, path, username string) (*http.Response, string) {
	t.Helper()
	follow := &http.Client{Jar: c.jar, Timeout: 15 * time.Second}
	resp, err := follow.Get(c.in.URL + path)
	for step := 0; err == nil && step < 4; step++ {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(body)
		here := resp.Request.URL.String()
		switch {
		case strings.Contains(page, `id="login-form"`):
			resp, err = follow.PostForm(strings.TrimSuffix(here, "/login")+"/login", url.Values{"username": {username}})
		case strings.Contains(page, `id="otp-form"`):
			resp, err = follow.PostForm(strings.TrimSuffix(here, "/login")+"/otp", url.Values{"username": {username}, "otp": {"123456"}})
		default:
			return resp, page
		}
	}
	if err != nil {
		t.Fatalf("following %s as %s: %v", path, username, err)
	}
	t.Fatalf("following %s as %s: the IdP kept asking", path, username)
	return nil, ""
}

// TestInteropStepUp: step_up rules make routes and permissions need a
// stronger sign-in. Against oidc-provider, which adds a one-time code (and
// says acr urn:gatehouse:mfa, amr pwd otp) only when asked with acr_values:
// an API call gets RFC 9470's 401, a browser is sent back to the provider
// with acr_values and prompt=login, signs in with the code and gets the
// page; a rule the provider cannot meet ends on an error page, not a loop.
func TestInteropStepUp(t *testing.T) {
	requireNode(t)
	port, issuer := reserveIssuer(t)
	in := startInstance(t, instanceConfig{upstream: startModelBackend(t), idpBlock: fmt.Sprintf(`oidc corp {
			issuer %s
			client_id gatehouse
			client_secret s3cret
		}`, issuer)})
	startOIDCProvider(t, port, idpClientSecret, in)

	admin := in.newClient()
	if resp, _ := idpStep(t, admin, "/api/auth/login?rd=/gatehouse/account", "alice"); resp.Request.URL.Path != "/gatehouse/account" {
		t.Fatalf("alice's first sign-in ended on %s", resp.Request.URL)
	}
	if a := admin.get("/api/auth/me"); a.StatusCode != http.StatusOK {
		t.Fatalf("me: %d %s", a.StatusCode, a.body)
	}
	bad := []map[string]any{
		{"name": "x", "acr": []string{"a"}},                                    // covers nothing
		{"name": "x", "permissions": []string{"config:manage"}},                // requires nothing
		{"name": "x", "routes": []string{"GET /api/*"}, "max_age": "5s"},       // too short
		{"name": "", "routes": []string{"GET /api/*"}, "amr": []string{"otp"}}, // unnamed
	}
	for _, b := range bad {
		expectProblem(t, putSettings(admin, map[string]any{"roles": map[string]any{}, "step_up": []any{b}}), http.StatusBadRequest, "validation_failed")
	}
	rules := []any{
		map[string]any{"name": "admin-api", "permissions": []string{"config:manage"}, "acr": []string{"urn:gatehouse:mfa"}, "max_age": "1h"},
		map[string]any{"name": "dashboard", "routes": []string{"GET /gatehouse/admin"}, "amr": []string{"otp"}},
		map[string]any{"name": "hardware", "routes": []string{"GET /api/usage/limits"}, "acr": []string{"urn:gatehouse:hardware-key"}},
	}
	if resp := putSettings(admin, map[string]any{"roles": map[string]any{}, "step_up": rules}); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /api/settings: %d %s", resp.StatusCode, resp.body)
	}

	t.Run("an API call gets RFC 9470's 401", func(t *testing.T) {
		r := admin.get("/api/audit")
		expectProblem(t, r, http.StatusUnauthorized, "insufficient_user_authentication")
		ch := r.Header.Get("WWW-Authenticate")
		for _, want := range []string{`error="insufficient_user_authentication"`, `acr_values="urn:gatehouse:mfa"`, `max_age=3600`} {
			if !strings.Contains(ch, want) {
				t.Errorf("WWW-Authenticate %q lacks %s", ch, want)
			}
		}
		// What the rule does not cover still works.
		if r := admin.get("/api/users"); r.StatusCode != http.StatusOK {
			t.Errorf("GET /api/users (no step-up): %d %s", r.StatusCode, r.body)
		}
	})

	t.Run("a browser is sent back to the provider and steps up", func(t *testing.T) {
		r := admin.get("/gatehouse/admin", "Accept", "text/html")
		loc := r.Header.Get("Location")
		if r.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "step_up=dashboard") || !strings.Contains(loc, "idp=corp") {
			t.Fatalf("the dashboard without a second factor: %d Location %q, want a step-up sign-in at corp", r.StatusCode, loc)
		}
		// Gatehouse asks the provider for the factor and a fresh sign-in.
		login := admin.get(strings.TrimPrefix(loc, in.URL))
		authz, _ := url.Parse(login.Header.Get("Location"))
		if q := authz.Query(); q.Get("prompt") != "login" {
			t.Fatalf("the authorization request %s, want prompt=login", authz)
		}
		// The dashboard rule asks for amr otp only: no acr_values, so this
		// IdP does not ask for the code, and the sign-in comes back short.
		resp, page := idpStep(t, admin, "/api/auth/login?idp=corp&step_up=dashboard&rd=/gatehouse/admin", "alice")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "did not confirm") {
			t.Fatalf("a step-up the IdP did not meet: %d %s\n%s", resp.StatusCode, resp.Request.URL, page)
		}
		// With acr_values (the admin API's rule), it does: the code, then the page.
		resp, page = idpStep(t, admin, "/api/auth/login?idp=corp&step_up=admin-api&rd=/gatehouse/admin", "alice")
		if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/gatehouse/admin" {
			t.Fatalf("after the step-up with the code: %d %s\n%s", resp.StatusCode, resp.Request.URL, page)
		}
		if r := admin.get("/api/audit"); r.StatusCode != http.StatusOK {
			t.Fatalf("the admin API after the step-up: %d %s", r.StatusCode, r.body)
		}
		if r := admin.get("/gatehouse/admin", "Accept", "text/html"); r.StatusCode != http.StatusOK {
			t.Fatalf("the dashboard after the step-up (amr otp): %d %s", r.StatusCode, r.body)
		}
	})

	t.Run("a rule the provider cannot meet ends on an error page", func(t *testing.T) {
		expectProblem(t, admin.get("/api/usage/limits"), http.StatusUnauthorized, "insufficient_user_authentication")
		resp, page := idpStep(t, admin, "/api/auth/login?idp=corp&step_up=hardware&rd=/api/usage/limits", "alice")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "urn:gatehouse:hardware-key") {
			t.Fatalf("a step-up nobody can meet: %d %s\n%s", resp.StatusCode, resp.Request.URL, page)
		}
		// The earlier, stronger session is kept.
		if r := admin.get("/api/audit"); r.StatusCode != http.StatusOK {
			t.Fatalf("the failed step-up cost the session: %d", r.StatusCode)
		}
	})
}
