package tests

import (
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHTTPSCookiesAreSecureWithHostPrefix: with an https public_url the
// cookies carry Secure and the __Host- prefix (spec §2).
func TestHTTPSCookiesAreSecureWithHostPrefix(t *testing.T) {
	in := startInstance(t, instanceConfig{https: true})
	c := in.newClient()
	login := c.get("/api/auth/login")
	lc := findLoginCookie(login.Response, "__Host-gatehouse_login")
	if lc == nil || !lc.Secure || !lc.HttpOnly || lc.Path != "/" || lc.Domain != "" || lc.SameSite != http.SameSiteLaxMode {
		t.Fatalf("login-state cookie = %+v (Set-Cookie %q)", lc, login.Header.Values("Set-Cookie"))
	}
	var session *http.Cookie
	c.http.Transport = &cookieRecorder{base: insecureClient.Transport, fn: func(ck *http.Cookie) {
		if ck.Name == "__Host-gatehouse_session" && ck.MaxAge >= 0 && ck.Value != "" {
			session = ck
		}
	}}
	c.signIn(alice, "")
	if session == nil || !session.Secure || !session.HttpOnly || session.Path != "/" || session.Domain != "" || session.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie = %+v", session)
	}
	if r := c.get("/api/auth/me"); r.StatusCode != http.StatusOK {
		t.Fatalf("me over https: %d %s", r.StatusCode, r.body)
	}
	// The plain name is not accepted in its place.
	plain := in.newClient()
	plain.setCookie("gatehouse_session", session.Value)
	expectProblem(t, plain.get("/api/auth/me"), http.StatusUnauthorized, "unauthenticated")
}

// TestStartsWhileTheIdentityProviderIsDown: an IdP that is unreachable at
// start does not stop Gatehouse; sign-in answers 503 until the IdP answers.
func TestStartsWhileTheIdentityProviderIsDown(t *testing.T) {
	idpPort := freePort(t)
	idpURL := "http://127.0.0.1:" + itoa(idpPort)
	in := startInstance(t, instanceConfig{oidcIssuer: idpURL + "/dev-idp"})

	resp := in.newClient().get("/api/auth/login", "Accept", "application/json")
	expectProblem(t, resp, http.StatusServiceUnavailable, "idp_unavailable")
	page := in.newClient().get("/api/auth/login", "Accept", "text/html")
	if page.StatusCode != http.StatusServiceUnavailable || !strings.Contains(page.text(), "identity provider") {
		t.Fatalf("browser login while the IdP is down: %d\n%s", page.StatusCode, page.body)
	}
	// The guard still answers everything else (health, refusals).
	if r := in.newClient().get("/api/health"); r.StatusCode != http.StatusOK {
		t.Fatalf("health: %d", r.StatusCode)
	}
	expectProblem(t, in.newClient().get("/v1/models"), http.StatusUnauthorized, "unauthenticated")

	// Now the IdP comes up (another Gatehouse's development provider on the
	// issuer's port); within the retry interval sign-in starts working.
	idp := &instance{t: t, dir: t.TempDir(), port: idpPort, URL: idpURL, backend: newBackend(t)}
	idp.start()
	t.Cleanup(idp.stop)
	waitFor(t, 10*time.Second, "sign-in after the IdP came up", func() string {
		r := in.newClient().get("/api/auth/login", "Accept", "application/json")
		if r.StatusCode != http.StatusOK {
			return r.text()
		}
		if u, _ := r.json(t)["authorize_url"].(string); !strings.HasPrefix(u, idpURL+"/dev-idp/") {
			return "authorize_url " + u
		}
		return ""
	})
}

// TestPolicyReloadsWithCaddyReload: editing a policy file and running
// `caddy reload` changes decisions without a restart.
func TestPolicyReloadsWithCaddyReload(t *testing.T) {
	adminPort := freePort(t)
	in := startInstance(t, instanceConfig{
		adminPort:   adminPort,
		extraGlobal: "\t\tpolicy rules.rego",
		files:       map[string]string{"rules.rego": "package gatehouse.ext\n\ndeny contains \"closed: /a\" if input.request.path == \"/a\"\n"},
	})
	bobC := activeClient(t, in, bob)
	expectProblem(t, bobC.get("/a"), http.StatusForbidden, "forbidden")
	if r := bobC.get("/b"); r.StatusCode != http.StatusOK {
		t.Fatalf("/b before reload: %d", r.StatusCode)
	}
	rules := "package gatehouse.ext\n\ndeny contains \"closed: /b\" if input.request.path == \"/b\"\n"
	if err := os.WriteFile(filepath.Join(in.dir, "rules.rego"), []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	reload := exec.Command(caddyBin, "reload", "--config", filepath.Join(in.dir, "Caddyfile"), "--adapter", "caddyfile",
		"--address", "localhost:"+itoa(adminPort), "--force")
	reload.Dir = in.dir
	if out, err := reload.CombinedOutput(); err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
	if r := bobC.get("/a"); r.StatusCode != http.StatusOK {
		t.Fatalf("/a after reload: %d %s", r.StatusCode, r.body)
	}
	expectProblem(t, bobC.get("/b"), http.StatusForbidden, "forbidden")

	// A broken policy is refused by the reload, and the running one stays.
	if err := os.WriteFile(filepath.Join(in.dir, "rules.rego"), []byte("package gatehouse.ext\n\ndeny contains x if {\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := exec.Command(caddyBin, "reload", "--config", filepath.Join(in.dir, "Caddyfile"), "--adapter", "caddyfile",
		"--address", "localhost:"+itoa(adminPort), "--force")
	broken.Dir = in.dir
	if out, err := broken.CombinedOutput(); err == nil || !strings.Contains(string(out), "rules.rego") {
		t.Fatalf("reload with a broken policy: err %v\n%s", err, out)
	}
	expectProblem(t, bobC.get("/b"), http.StatusForbidden, "forbidden")
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestConfigurablePrefixes: with api_prefix and pages_prefix moved, Gatehouse
// answers there, and the default paths belong to the backend (behind the guard).
func TestConfigurablePrefixes(t *testing.T) {
	in := startInstance(t, instanceConfig{apiPrefix: "/gh-api", extraGlobal: "\t\tapi_prefix /gh-api\n\t\tpages_prefix /gh"})
	c := in.newClient()
	if r := c.get("/gh-api/health"); r.StatusCode != http.StatusOK {
		t.Fatalf("/gh-api/health: %d", r.StatusCode)
	}
	expectProblem(t, c.get("/api/health"), http.StatusUnauthorized, "unauthenticated")
	expectRedirect(t, c.get("/v1/models", "Accept", "text/html"), "/gh-api/auth/login?rd=")
	login := c.get("/gh-api/auth/login", "Accept", "application/json")
	if login.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %s", login.StatusCode, login.body)
	}
	u, _ := url.Parse(login.json(t)["authorize_url"].(string))
	if got := u.Query().Get("redirect_uri"); got != in.URL+"/gh-api/auth/callback" {
		t.Fatalf("redirect_uri = %q", got)
	}
	expectRedirect(t, c.get("/gh/request-access", "Accept", "text/html"), "/gh-api/auth/login?rd=")
}
