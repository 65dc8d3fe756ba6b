package tests

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A response in flight ends within a second once what allowed it ends
// (spec §7a; item 9 of issue 8): the backend streams an event every 100 ms
// for a minute, and the client sees the stream stop.

type stream struct {
	events chan string
	ended  chan time.Time
}

// openStream starts a streaming request and reads it in the background.
func openStream(t *testing.T, in *instance, method, path, body string, headers ...string) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, method, in.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := insecureClient.Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("%s %s: status %d", method, path, resp.StatusCode)
	}
	s := &stream{events: make(chan string, 1000), ended: make(chan time.Time, 1)}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "data: ") {
				s.events <- line
			}
		}
		s.ended <- time.Now()
	}()
	select {
	case <-s.events:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s %s: no event within 5s", method, path)
	}
	return s
}

// expectCutWithin fails unless the stream ended within d of since.
func (s *stream) expectCutWithin(t *testing.T, since time.Time, d time.Duration, what string) {
	t.Helper()
	select {
	case at := <-s.ended:
		took := at.Sub(since)
		if took > d {
			t.Fatalf("%s: the stream ended %s after, want within %s", what, took.Round(time.Millisecond), d)
		}
		t.Logf("%s: stream cut after %s", what, took.Round(time.Millisecond))
	case <-time.After(d + 2*time.Second):
		t.Fatalf("%s: the stream still flows %s after", what, d+2*time.Second)
	}
}

func TestStreamsEndWithTheirAuthority(t *testing.T) {
	in := startInstance(t, instanceConfig{guardBlock: "\t\tmodel_routes \"POST /sse\""})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	bobID := bobC.userID()
	const long = "/sse?n=600"

	t.Run("token revoked", func(t *testing.T) {
		tok := createToken(t, bobC, map[string]any{"name": "stream", "kind": "personal"})
		s := openStream(t, in, "GET", long, "", "Authorization", "Bearer "+tok["token"].(string))
		start := time.Now()
		if r := bobC.do("DELETE", "/api/tokens/"+tok["id"].(string), nil); r.StatusCode != http.StatusNoContent {
			t.Fatalf("revoke: %d", r.StatusCode)
		}
		s.expectCutWithin(t, start, time.Second, "revocation")
	})
	t.Run("session logged out", func(t *testing.T) {
		c := in.newClient()
		c.signIn(bob, "")
		s := openStream(t, in, "GET", long, "", "Cookie", sessionCookie+"="+c.cookie(sessionCookie))
		start := time.Now()
		if r := c.do("POST", "/api/auth/logout", nil); r.StatusCode != http.StatusNoContent {
			t.Fatalf("logout: %d", r.StatusCode)
		}
		s.expectCutWithin(t, start, time.Second, "logout")
	})
	t.Run("model no longer allowed", func(t *testing.T) {
		tok := createToken(t, bobC, map[string]any{"name": "chat", "kind": "personal"})["token"].(string)
		s := openStream(t, in, "POST", long, `{"model":"llama3"}`, "Authorization", "Bearer "+tok, "Content-Type", "application/json")
		start := time.Now()
		if r := admin.do("PUT", "/api/settings/roles/user", map[string]any{"models": []string{"mistral"}}); r.StatusCode != http.StatusOK {
			t.Fatalf("restrict models: %d %s", r.StatusCode, r.body)
		}
		s.expectCutWithin(t, start, time.Second, "model restriction")
		admin.do("DELETE", "/api/settings/roles/user", nil)
	})
	t.Run("user suspended", func(t *testing.T) {
		tok := createToken(t, bobC, map[string]any{"name": "stream 2", "kind": "personal"})["token"].(string)
		s := openStream(t, in, "GET", long, "", "Authorization", "Bearer "+tok)
		start := time.Now()
		if r := admin.do("PUT", "/api/users/"+bobID+"/status", map[string]any{"status": "suspended"}); r.StatusCode != http.StatusOK {
			t.Fatalf("suspend: %d", r.StatusCode)
		}
		s.expectCutWithin(t, start, time.Second, "suspension")
	})
	events := admin.get("/api/audit?type=stream.cut").json(t)["events"].([]any)
	reasons := mustJSON(t, events)
	for _, want := range []string{"token_revoked", "session_ended", "permission_lost"} {
		if !strings.Contains(reasons, want) {
			t.Errorf("stream.cut audit events lack reason %s: %s", want, reasons)
		}
	}
}

// TestStreamEndsWhenLoggedOutOnAnotherInstance: the logout is made on A and
// the stream runs through B, with no Redis (item 11 with item 9).
func TestStreamEndsWhenLoggedOutOnAnotherInstance(t *testing.T) {
	ins := threeInstances(t, "")
	c := ins[0].newClient()
	c.signIn(bob, "")
	admin := ins[0].newClient()
	admin.signIn(alice, "")
	if r := admin.do("GET", "/api/users", nil); r.StatusCode != http.StatusOK {
		t.Fatal(r.StatusCode)
	}
	req := c.do("POST", "/api/auth/request-access", map[string]any{"purpose": "streams"}).json(t)
	admin.do("PUT", "/api/access/"+req["id"].(string)+"/approve", map[string]any{"role": "user"})
	cookie := sessionCookie + "=" + c.cookie(sessionCookie)
	s := openStream(t, ins[1], "GET", "/sse?n=600", "", "Cookie", cookie)
	// A plain request on C keeps C's session cache warm: the logout must not
	// wait for it to expire.
	other := ins[2].newClient()
	other.setCookie(sessionCookie, c.cookie(sessionCookie))
	if r := other.get("/anything"); r.StatusCode != http.StatusOK {
		t.Fatalf("session on C: %d", r.StatusCode)
	}
	start := time.Now()
	if r := c.do("POST", "/api/auth/logout", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	s.expectCutWithin(t, start, time.Second, "logout on another instance")
	waitFor(t, time.Second, "the logged-out cookie on C", func() string {
		if r := other.get("/anything"); r.StatusCode != http.StatusUnauthorized {
			return http.StatusText(r.StatusCode)
		}
		return ""
	})
}
