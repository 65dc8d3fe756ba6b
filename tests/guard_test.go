package tests

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// activeClient signs email in and has alice approve them as a user.
func activeClient(t *testing.T, in *instance, email string) *client {
	t.Helper()
	return clientWithRole(t, in, email, "user")
}

// clientWithRole signs email in and, unless it is the bootstrap admin, has
// alice approve their access request with role.
func clientWithRole(t *testing.T, in *instance, email, role string) *client {
	t.Helper()
	c := in.newClient()
	c.signIn(email, "")
	if email == alice {
		return c
	}
	req := c.do("POST", "/api/auth/request-access", map[string]any{"purpose": "tests"})
	if req.StatusCode != http.StatusCreated {
		t.Fatalf("request access for %s: %d %s", email, req.StatusCode, req.body)
	}
	admin := in.newClient()
	admin.signIn(alice, "")
	ok := admin.do("PUT", "/api/access/"+req.json(t)["id"].(string)+"/approve", map[string]any{"role": role})
	if ok.StatusCode != http.StatusOK {
		t.Fatalf("approve %s as %s: %d %s", email, role, ok.StatusCode, ok.body)
	}
	return c
}

// userID is the caller's own user ID.
func (c *client) userID() string {
	c.t.Helper()
	return c.get("/api/auth/me").json(c.t)["user"].(map[string]any)["id"].(string)
}

// withStore opens the instance's SQLite store beside the running process.
func withStore(t *testing.T, in *instance, fn func(store.Store)) {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(in.dir, "data", "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fn(st)
}

// TestGuardTable checks every row of spec §6's table.
func TestGuardTable(t *testing.T) {
	in := startInstance(t, instanceConfig{
		extraGlobal: "\t\tpolicy " + "extra.rego",
		files: map[string]string{"extra.rego": `package gatehouse.ext

deny contains "the /secret area is closed" if input.request.path_folded == "/secret"
`},
	})
	anon := in.newClient()
	pending := in.newClient()
	pending.signIn(erin, "")
	active := activeClient(t, in, bob)
	suspended := activeClient(t, in, carol)
	withStore(t, in, func(st store.Store) {
		me := suspended.get("/api/auth/me").json(t)["user"].(map[string]any)
		if _, err := st.SetUserStatus(context.Background(), me["id"].(string), store.StatusSuspended, store.AuditEvent{}); err != nil {
			t.Fatal(err)
		}
	})
	// Suspension ended carol's sessions; sign her in again to see the suspended row.
	suspended = in.newClient()
	suspended.signIn(carol, "")
	// A browser that is sent to sign in also loses the bad cookie, so every
	// check gets a fresh one.
	unknownSession := func() *client {
		c := in.newClient()
		c.setCookie(sessionCookie, "bm90LWEtc2Vzc2lvbi1hdC1hbGwtbm90LWEtc2Vzc2lvbg")
		return c
	}

	html := []string{"Accept", "text/html"}
	t.Run("no credentials, browser", func(t *testing.T) {
		expectRedirect(t, anon.get("/v1/models?x=1", html...), "/api/auth/login?rd="+url.QueryEscape("/v1/models?x=1"))
	})
	t.Run("no credentials, API", func(t *testing.T) {
		resp := anon.get("/v1/models")
		expectProblem(t, resp, http.StatusUnauthorized, "unauthenticated")
		if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="gatehouse"` {
			t.Fatalf("WWW-Authenticate = %q", got)
		}
	})
	t.Run("unknown session, browser", func(t *testing.T) {
		resp := unknownSession().get("/v1/models", html...)
		expectRedirect(t, resp, "/api/auth/login?rd=")
		if ck := findSetCookie(resp.Response, sessionCookie); ck == nil || ck.MaxAge >= 0 {
			t.Fatalf("the unknown session cookie was not cleared: %+v", ck)
		}
	})
	t.Run("unknown session, API", func(t *testing.T) {
		resp := unknownSession().get("/v1/models")
		expectProblem(t, resp, http.StatusUnauthorized, "invalid_token")
		if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="gatehouse", error="invalid_token"` {
			t.Fatalf("WWW-Authenticate = %q", got)
		}
	})
	t.Run("bearer token not issued by Gatehouse", func(t *testing.T) {
		expectProblem(t, anon.get("/v1/models", "Authorization", "Bearer not.a.token"), http.StatusUnauthorized, "invalid_token")
	})
	t.Run("signed in, not approved, browser", func(t *testing.T) {
		expectRedirect(t, pending.get("/v1/models", html...), "/gatehouse/request-access")
	})
	t.Run("signed in, not approved, API", func(t *testing.T) {
		expectProblem(t, pending.get("/v1/models"), http.StatusForbidden, "access_required")
	})
	t.Run("suspended, browser", func(t *testing.T) {
		resp := suspended.get("/v1/models", html...)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("status %d %s, want the 403 page", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
	t.Run("suspended, API", func(t *testing.T) {
		expectProblem(t, suspended.get("/v1/models"), http.StatusForbidden, "account_suspended")
	})
	t.Run("policy says no, API", func(t *testing.T) {
		resp := active.get("/secret")
		expectProblem(t, resp, http.StatusForbidden, "forbidden")
		if !strings.Contains(resp.text(), "the /secret area is closed") {
			t.Fatalf("reason missing: %s", resp.body)
		}
	})
	t.Run("policy says no, whatever the path's spelling", func(t *testing.T) {
		for _, p := range []string{"//secret", "/secret/", "/%73ecret", "/SECRET", "/%53ecret"} {
			resp := active.get(p)
			expectProblem(t, resp, http.StatusForbidden, "forbidden")
		}
		// Dot segments are read differently by different backends (spec §6a).
		for _, p := range []string{"/./secret", "/x/../secret"} {
			expectProblem(t, active.get(p), http.StatusBadRequest, "ambiguous_request")
		}
	})
	t.Run("policy says no, browser", func(t *testing.T) {
		resp := active.get("/secret", html...)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.text(), "the /secret area is closed") {
			t.Fatalf("status %d, want the 403 page with the reason:\n%s", resp.StatusCode, resp.body)
		}
	})
	t.Run("allowed", func(t *testing.T) {
		resp := active.get("/v1/models")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, resp.body)
		}
	})
}

// TestBackendSeesOnlyGatehouseIdentity: spoofed X-Gatehouse-* headers are
// dropped, identity headers and a verifiable assertion are set, and
// Gatehouse's own cookie never reaches the upstream.
func TestBackendSeesOnlyGatehouseIdentity(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	c := activeClient(t, in, bob)
	c.setCookie("backend_pref", "dark")
	resp := c.get("/anything",
		"X-Gatehouse-User-Id", "spoofed-id",
		"X-Gatehouse-Role", "admin",
		"x-gatehouse-anything", "spoofed",
		"X-Gatehouse-Token-Id", "spoofed-token")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, resp.body)
	}
	up, _ := in.backend.lastRequest()
	if up.Header.Get("X-Gatehouse-Role") != "user" || up.Header.Get("X-Gatehouse-User-Email") != bob {
		t.Fatalf("identity headers: role %q email %q", up.Header.Get("X-Gatehouse-Role"), up.Header.Get("X-Gatehouse-User-Email"))
	}
	if id := up.Header.Get("X-Gatehouse-User-Id"); id == "spoofed-id" || id == "" {
		t.Fatalf("X-Gatehouse-User-Id = %q", id)
	}
	for _, h := range []string{"X-Gatehouse-Anything", "X-Gatehouse-Token-Id"} {
		if v := up.Header.Get(h); v != "" {
			t.Errorf("%s reached the upstream: %q", h, v)
		}
	}
	cookies := up.Header.Get("Cookie")
	if strings.Contains(cookies, sessionCookie) || !strings.Contains(cookies, "backend_pref=dark") {
		t.Fatalf("upstream Cookie = %q, want only the backend's cookie", cookies)
	}
	verifyAssertion(t, in, up.Header.Get("X-Gatehouse-Assertion"), up.Header.Get("X-Gatehouse-User-Id"), bob, "user")
}

// TestStreamingAndUpgradesPassThrough: SSE events arrive one by one and a
// protocol upgrade (websocket) works through the guard.
func TestStreamingAndUpgradesPassThrough(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	c := activeClient(t, in, bob)

	req, _ := http.NewRequest("GET", in.URL+"/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sse: status %d", resp.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	start := time.Now()
	first, err := r.ReadString('\n')
	if err != nil || first != "data: event 1\n" {
		t.Fatalf("first event %q, %v", first, err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("first event took %s: the stream was buffered", time.Since(start))
	}
	rest, _ := io.ReadAll(r)
	if !strings.Contains(string(rest), "data: event 3") {
		t.Fatalf("stream ended early: %q", rest)
	}

	wsReq, _ := http.NewRequest("GET", in.URL+"/ws", nil)
	wsReq.Header.Set("Connection", "Upgrade")
	wsReq.Header.Set("Upgrade", "websocket")
	// A client without a timeout: only then is a 101 body writable.
	wsClient := &http.Client{Jar: c.jar}
	wsResp, err := wsClient.Do(wsReq)
	if err != nil {
		t.Fatal(err)
	}
	if wsResp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(wsResp.Body)
		t.Fatalf("upgrade: status %d %s", wsResp.StatusCode, body)
	}
	conn := wsResp.Body.(io.ReadWriteCloser)
	defer conn.Close()
	if _, err := conn.Write([]byte("hello through the guard\n")); err != nil {
		t.Fatal(err)
	}
	echo, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || echo != "HELLO THROUGH THE GUARD\n" {
		t.Fatalf("echo %q, %v", echo, err)
	}

	anonReq, _ := http.NewRequest("GET", in.URL+"/ws", nil)
	anonReq.Header.Set("Connection", "Upgrade")
	anonReq.Header.Set("Upgrade", "websocket")
	anonResp, err := http.DefaultClient.Do(anonReq)
	if err != nil {
		t.Fatal(err)
	}
	anonResp.Body.Close()
	if anonResp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous upgrade: status %d, want 401", anonResp.StatusCode)
	}
}

// TestBadConfigRefusesToStart: each mistake stops Caddy with a message naming the directive.
func TestBadConfigRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	// A regular file where the store's directory should be: unwritable even for root.
	notADir := filepath.Join(dir, "not-a-dir")
	if err := os.WriteFile(notADir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	site := "\n}\nhttp://127.0.0.1:1 {\n\tgatehouse_api\n\tgatehouse\n\trespond ok\n}\n"
	devIdP := "\t\tdev_idp {\n\t\t\tuser a@example.com\n\t\t}\n"
	cases := []struct {
		name   string
		global string
		want   string
	}{
		{"missing public_url", "{\n\tadmin off\n\tgatehouse {\n" + devIdP + "\t}", "public_url is required"},
		{"oidc without issuer", "{\n\tadmin off\n\tgatehouse {\n\t\tpublic_url http://127.0.0.1:1\n\t\toidc {\n\t\t\tclient_id x\n\t\t}\n\t}", "oidc: issuer is required"},
		{"unknown subdirective", "{\n\tadmin off\n\tgatehouse {\n\t\tpublic_url http://127.0.0.1:1\n\t\tfrobnicate yes\n" + devIdP + "\t}", "unrecognized subdirective frobnicate"},
		{"unwritable store path", "{\n\tadmin off\n\tgatehouse {\n\t\tpublic_url http://127.0.0.1:1\n\t\tstore sqlite " + filepath.Join(notADir, "g.db") + "\n" + devIdP + "\t}", "store"},
		{"short secret", "{\n\tadmin off\n\tgatehouse {\n\t\tpublic_url http://127.0.0.1:1\n\t\tsecret short\n" + devIdP + "\t}", "secret must be at least 32 characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".Caddyfile")
			if err := os.WriteFile(path, []byte(tc.global+site), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(caddyBin, "validate", "--config", path, "--adapter", "caddyfile")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("caddy validate accepted the config:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("error does not say %q:\n%s", tc.want, out)
			}
		})
	}
}

// TestListModules: the binary carries the three Gatehouse modules.
func TestListModules(t *testing.T) {
	out, err := exec.Command(caddyBin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, m := range []string{"gatehouse", "http.handlers.gatehouse", "http.handlers.gatehouse_api"} {
		found := false
		for _, line := range strings.Split(string(out), "\n") {
			if strings.TrimSpace(line) == m {
				found = true
			}
		}
		if !found {
			t.Errorf("module %s missing from list-modules", m)
		}
	}
}
