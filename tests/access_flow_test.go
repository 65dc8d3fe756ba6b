package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/notify"
)

// TestRequestAccessFlow walks the README's walk-through: a new person signs
// in, requests access, an admin approves with a comment, the person is told
// (API, webhook, email) and reaches the backend.
func TestRequestAccessFlow(t *testing.T) {
	hook := newWebhookReceiver(t)
	mb := newMailbox(t)
	host, port, _ := strings.Cut(mb.addr, ":")
	in := startInstance(t, instanceConfig{extraGlobal: fmt.Sprintf(`
		notify {
			webhook %s/hook hook-secret-123
			smtp {
				host %s
				port %s
				from gatehouse@example.com
				tls none
			}
		}`, hook.URL, host, port)})

	bobC := in.newClient()
	if dest := bobC.signIn(bob, "/chat"); dest != "/gatehouse/request-access" {
		t.Fatalf("new user lands on %q, want the request-access page", dest)
	}
	me := bobC.get("/api/auth/me").json(t)
	user := me["user"].(map[string]any)
	if user["email"] != bob || user["status"] != "pending" || user["role"] != "user" {
		t.Fatalf("me = %v, want bob pending user", user)
	}
	if perms := user["permissions"].([]any); len(perms) != 0 {
		t.Errorf("pending user has permissions %v, want none", perms)
	}
	if me["access_request"] != nil {
		t.Errorf("access_request = %v before any request, want null", me["access_request"])
	}

	// Not approved yet: API clients get 403 access_required, browsers the page.
	resp := bobC.get("/v1/models")
	expectProblem(t, resp, http.StatusForbidden, "access_required")
	resp = bobC.get("/", "Accept", "text/html")
	expectRedirect(t, resp, "/gatehouse/request-access")
	expectProblem(t, bobC.get("/api/auth/request-access"), http.StatusNotFound, "not_found")

	created := bobC.do("POST", "/api/auth/request-access", map[string]any{
		"purpose": "evaluate llama3 for support answers", "team": "support", "name": "Bob B.",
	})
	if created.StatusCode != http.StatusCreated {
		t.Fatalf("request access: %d %s", created.StatusCode, created.body)
	}
	req := created.json(t)
	if req["status"] != "pending" || req["purpose"] != "evaluate llama3 for support answers" || req["requested_role"] != "user" ||
		req["user"].(map[string]any)["email"] != bob || req["team"] != "support" {
		t.Fatalf("created request = %v", req)
	}
	expectProblem(t, bobC.do("POST", "/api/auth/request-access", map[string]any{"purpose": "again"}), http.StatusConflict, "already_pending")

	aliceC := in.newClient()
	if dest := aliceC.signIn(alice, "/chat"); dest != "/chat" {
		t.Fatalf("bootstrap admin lands on %q, want rd /chat", dest)
	}
	list := aliceC.get("/api/access/requests").json(t)
	reqs := list["requests"].([]any)
	if len(reqs) != 1 || reqs[0].(map[string]any)["id"] != req["id"] {
		t.Fatalf("pending requests = %v, want bob's", reqs)
	}
	// Bob may not review (not even his own request).
	expectProblem(t, bobC.get("/api/access/requests"), http.StatusForbidden, "access_required")

	approved := aliceC.do("PUT", "/api/access/"+req["id"].(string)+"/approve", map[string]any{"role": "user", "comment": "welcome aboard"})
	if approved.StatusCode != http.StatusOK {
		t.Fatalf("approve: %d %s", approved.StatusCode, approved.body)
	}
	dec := approved.json(t)
	if dec["status"] != "approved" || dec["role"] != "user" || dec["comment"] != "welcome aboard" ||
		dec["reviewed_by"].(map[string]any)["email"] != alice || dec["decided_at"] == nil {
		t.Fatalf("approved request = %v", dec)
	}
	expectProblem(t, aliceC.do("PUT", "/api/access/"+req["id"].(string)+"/deny", map[string]any{"comment": "too late"}), http.StatusConflict, "not_pending")

	// Bob is told: on the API and the page...
	mine := bobC.get("/api/auth/request-access").json(t)
	if mine["status"] != "approved" || mine["comment"] != "welcome aboard" {
		t.Fatalf("bob's request = %v", mine)
	}
	page := bobC.get("/gatehouse/request-access", "Accept", "text/html")
	if page.StatusCode != http.StatusOK || !strings.Contains(page.text(), "welcome aboard") || !strings.Contains(page.text(), "approved") {
		t.Fatalf("request-access page does not show the decision: %d\n%s", page.StatusCode, page.body)
	}
	// ...by a signed webhook (after the reviewers' access_request.created)...
	var d delivery
	for _, got := range hook.wait(t, 2, 15*time.Second) {
		if got.header.Get("X-Gatehouse-Event") == "access_request.approved" {
			d = got
		}
	}
	if err := notify.VerifyWebhook("hook-secret-123", d.header, d.body, time.Now(), 5*time.Minute); err != nil {
		t.Fatalf("webhook signature: %v", err)
	}
	var event map[string]any
	if err := json.Unmarshal(d.body, &event); err != nil {
		t.Fatal(err)
	}
	if event["event"] != "access_request.approved" || event["request"].(map[string]any)["comment"] != "welcome aboard" {
		t.Fatalf("webhook event = %s", d.body)
	}
	// ...and by email.
	m := mb.wait(t, 1, 15*time.Second)[0]
	if len(m.to) != 1 || m.to[0] != bob || !strings.Contains(m.data, "welcome aboard") || !strings.Contains(m.data, "approved") {
		t.Fatalf("email to %v:\n%s", m.to, m.data)
	}

	// Bob now reaches the backend with his identity.
	resp = bobC.get("/v1/models")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("approved user: %d %s", resp.StatusCode, resp.body)
	}
	headers := resp.json(t)["headers"].(map[string]any)
	if headers["X-Gatehouse-User-Email"] != bob || headers["X-Gatehouse-Role"] != "user" || headers["X-Gatehouse-User-Id"] != user["id"] {
		t.Fatalf("identity headers upstream = %v", headers)
	}
	// A request made after approval is refused with 409.
	expectProblem(t, bobC.do("POST", "/api/auth/request-access", map[string]any{"purpose": "more"}), http.StatusConflict, "already_active")
}

// TestDeniedUserIsToldAndRefused: a denial reaches the requester with the comment and ends access.
func TestDeniedUserIsToldAndRefused(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	carolC := in.newClient()
	carolC.signIn(carol, "")
	req := carolC.do("POST", "/api/auth/request-access", map[string]any{"purpose": "curious"}).json(t)
	aliceC := in.newClient()
	aliceC.signIn(alice, "")
	resp := aliceC.do("PUT", "/api/access/"+req["id"].(string)+"/deny", map[string]any{"comment": "not this quarter"})
	if resp.StatusCode != http.StatusOK || resp.json(t)["status"] != "denied" {
		t.Fatalf("deny: %d %s", resp.StatusCode, resp.body)
	}
	mine := carolC.get("/api/auth/request-access").json(t)
	if mine["status"] != "denied" || mine["comment"] != "not this quarter" {
		t.Fatalf("carol's request = %v", mine)
	}
	expectProblem(t, carolC.get("/v1/models"), http.StatusForbidden, "access_denied")
	page := carolC.get("/v1/models", "Accept", "text/html")
	if page.StatusCode != http.StatusForbidden || !strings.Contains(page.text(), "<html") {
		t.Fatalf("denied browser: %d, want the 403 page\n%s", page.StatusCode, page.body)
	}
	// A denied person may ask again.
	again := carolC.do("POST", "/api/auth/request-access", map[string]any{"purpose": "new project next quarter"})
	if again.StatusCode != http.StatusCreated {
		t.Fatalf("request after denial: %d %s", again.StatusCode, again.body)
	}
}

// TestConcurrentDecisionsExactlyOneWins races approvals and denials of one request.
func TestConcurrentDecisionsExactlyOneWins(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	daveC := in.newClient()
	daveC.signIn(dave, "")
	req := daveC.do("POST", "/api/auth/request-access", map[string]any{"purpose": "race"}).json(t)
	aliceC := in.newClient()
	aliceC.signIn(alice, "")

	const n = 16
	statuses := make([]int, n)
	bodies := make([]map[string]any, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			verb, body := "approve", map[string]any{"comment": fmt.Sprint("approver ", i)}
			if i%2 == 1 {
				verb, body = "deny", map[string]any{"comment": fmt.Sprint("denier ", i)}
			}
			resp := aliceC.do("PUT", "/api/access/"+req["id"].(string)+"/"+verb, body)
			statuses[i] = resp.StatusCode
			_ = json.Unmarshal(resp.body, &bodies[i])
		}(i)
	}
	wg.Wait()
	winners := 0
	var winner map[string]any
	for i, s := range statuses {
		switch s {
		case http.StatusOK:
			winners++
			winner = bodies[i]
		case http.StatusConflict:
			if bodies[i]["code"] != "not_pending" {
				t.Errorf("loser %d: code %v, want not_pending", i, bodies[i]["code"])
			}
		default:
			t.Errorf("call %d: status %d (%v)", i, s, bodies[i])
		}
	}
	if winners != 1 {
		t.Fatalf("%d winners, want exactly 1 (statuses %v)", winners, statuses)
	}
	stored := daveC.get("/api/auth/request-access").json(t)
	if stored["status"] != winner["status"] || stored["comment"] != winner["comment"] {
		t.Fatalf("stored %v/%v, winner %v/%v", stored["status"], stored["comment"], winner["status"], winner["comment"])
	}
	wantUser := map[string]string{"approved": "active", "denied": "denied"}[winner["status"].(string)]
	if got := daveC.get("/api/auth/me").json(t)["user"].(map[string]any)["status"]; got != wantUser {
		t.Fatalf("dave's status %v after %v, want %s", got, winner["status"], wantUser)
	}
}

func expectProblem(t *testing.T, resp *response, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, resp.body)
	}
	// The guard answers the backend's routes in its clients' dialect too
	// (spec §6a): Ollama's error string as application/json under /api/,
	// OpenAI's error object under /v1/. Gatehouse's own /api routes and every
	// other path answer the problem alone.
	ct, path := resp.Header.Get("Content-Type"), resp.Request.URL.Path
	wantCT := "application/problem+json"
	if ct == "application/json" && strings.HasPrefix(path, "/api/") {
		wantCT = ct // an Ollama route; the body is checked below
	}
	if ct != wantCT {
		t.Fatalf("%s %s: content type %q, want application/problem+json", resp.Request.Method, path, ct)
	}
	p := resp.json(t)
	if p["code"] != code || p["status"] != float64(status) || p["title"] == "" || p["type"] == "" {
		t.Fatalf("%s %s: problem %v, want code %s", resp.Request.Method, path, p, code)
	}
	switch e := p["error"].(type) {
	case nil:
		if ct == "application/json" || strings.HasPrefix(path, "/v1/") {
			t.Fatalf("%s %s: no error member for the client's SDK: %v", resp.Request.Method, path, p)
		}
	case string:
		if ct != "application/json" || e != p["detail"] {
			t.Fatalf("%s %s: Ollama error %q as %s, want the detail as application/json", resp.Request.Method, path, e, ct)
		}
	case map[string]any:
		if e["code"] != code || e["message"] != p["detail"] || e["type"] == "" {
			t.Fatalf("%s %s: OpenAI error %v, want code %s and the detail as message", resp.Request.Method, path, e, code)
		}
	}
}

func expectRedirect(t *testing.T, resp *response, wantPrefix string) {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%s %s: status %d, want 303: %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, resp.body)
	}
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, wantPrefix) {
		t.Fatalf("%s %s: Location %q, want prefix %q", resp.Request.Method, resp.Request.URL, loc, wantPrefix)
	}
}
