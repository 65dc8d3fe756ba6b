package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// callers of the authorization matrix, in column order.
var matrixCallers = []string{"anonymous", "pending", "denied", "suspended", "user", "manager", "admin"}

// Shorthands for the usual refusals.
const (
	unauth    = "401 unauthenticated"
	pendingR  = "403 access_required"
	deniedR   = "403 access_denied"
	suspended = "403 account_suspended"
	forbidden = "403 forbidden"
)

// TestAuthorizationMatrix calls every API route, the pages and backend routes
// as each kind of caller and checks the exact status and error code.
func TestAuthorizationMatrix(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	user := activeClient(t, in, bob)
	manager := clientWithRole(t, in, frank, "manager")
	target := activeClient(t, in, grace)
	targetID := target.userID()

	deniedC := in.newClient()
	deniedC.signIn(dave, "")
	req := deniedC.do("POST", "/api/auth/request-access", map[string]any{"purpose": "matrix"}).json(t)
	if r := admin.do("PUT", "/api/access/"+req["id"].(string)+"/deny", map[string]any{"comment": "no"}); r.StatusCode != http.StatusOK {
		t.Fatalf("deny dave: %d %s", r.StatusCode, r.body)
	}
	suspendedC := activeClient(t, in, carol)
	if r := admin.do("PUT", "/api/users/"+suspendedC.userID()+"/status", map[string]any{"status": "suspended", "reason": "matrix"}); r.StatusCode != http.StatusOK {
		t.Fatalf("suspend carol: %d %s", r.StatusCode, r.body)
	}
	suspendedC = in.newClient()
	suspendedC.signIn(carol, "")
	pendingC := in.newClient()
	pendingC.signIn(erin, "")
	anon := in.newClient()
	callers := map[string]*client{"anonymous": anon, "pending": pendingC, "denied": deniedC, "suspended": suspendedC,
		"user": user, "manager": manager, "admin": admin}

	const unknownID = "00000000-0000-7000-8000-000000000000"
	html := []string{"Accept", "text/html"}
	rows := []struct {
		method, path string
		body         any
		headers      []string
		want         [7]string // anonymous, pending, denied, suspended, user, manager, admin
	}{
		{"GET", "/api/health", nil, nil, [7]string{"200", "200", "200", "200", "200", "200", "200"}},
		{"GET", "/.well-known/jwks.json", nil, nil, [7]string{"200", "200", "200", "200", "200", "200", "200"}},
		{"GET", "/api/auth/login", nil, nil, [7]string{"303", "303", "303", "303", "303", "303", "303"}},
		{"GET", "/api/auth/callback", nil, nil, [7]string{"400 login_state_invalid", "400 login_state_invalid", "400 login_state_invalid", "400 login_state_invalid", "400 login_state_invalid", "400 login_state_invalid", "400 login_state_invalid"}},
		{"GET", "/api/auth/me", nil, nil, [7]string{unauth, "200", "200", "200", "200", "200", "200"}},
		{"GET", "/api/auth/request-access", nil, nil, [7]string{unauth, "404 not_found", "200", "200", "200", "200", "404 not_found"}},
		{"POST", "/api/auth/request-access", "{}", nil, [7]string{unauth, "400 validation_failed", "400 validation_failed", "400 validation_failed", "409 already_active", "409 already_active", "409 already_active"}},
		{"POST", "/api/auth/refresh", nil, nil, [7]string{unauth, "200", "200", "200", "200", "200", "200"}},
		{"GET", "/api/access/requests", nil, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, "200", "200"}},
		{"GET", "/api/access/requests?status=all", nil, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, "200", "200"}},
		{"PUT", "/api/access/" + unknownID + "/approve", "{}", nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, "404 not_found", "404 not_found"}},
		{"PUT", "/api/access/" + unknownID + "/deny", "{}", nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, "404 not_found", "404 not_found"}},
		{"GET", "/api/users", nil, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, "200", "200"}},
		{"GET", "/api/users/" + targetID, nil, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, "200", "200"}},
		{"GET", "/api/users/" + unknownID, nil, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, "404 not_found", "404 not_found"}},
		{"PUT", "/api/users/" + targetID + "/role", `{"role":"user"}`, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, forbidden, "200"}},
		{"PUT", "/api/users/" + targetID + "/status", `{"status":"active"}`, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, "200", "200"}},
		{"PUT", "/api/users/" + targetID + "/limits", `{}`, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, forbidden, "200"}},
		{"DELETE", "/api/users/" + unknownID, nil, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, forbidden, "404 not_found"}},
		{"GET", "/api/users/" + targetID + "/activity", nil, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, "200", "200"}},
		{"GET", "/api/audit", nil, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, forbidden, "200"}},
		{"GET", "/api/settings", nil, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, forbidden, "200"}},
		{"PUT", "/api/settings", `{"roles":{}}`, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, forbidden, "428 precondition_required"}},
		{"PUT", "/api/settings/roles/x", `{"rank":"x"}`, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, forbidden, "400 invalid_json"}},
		{"DELETE", "/api/settings/roles/ghost", nil, nil, [7]string{unauth, pendingR, deniedR, suspended, forbidden, forbidden, "404 not_found"}},
		{"GET", "/v1/models", nil, nil, [7]string{unauth, pendingR, deniedR, suspended, "200", "200", "200"}},
		{"POST", "/v1/chat/completions", `{"model":"llama3","messages":[]}`, nil, [7]string{unauth, pendingR, deniedR, suspended, "200", "200", "200"}},
		{"POST", "/api/chat", `{"model":"llama3"}`, nil, [7]string{unauth, pendingR, deniedR, suspended, "200", "200", "200"}},
		{"GET", "/some/backend/page", nil, nil, [7]string{unauth, pendingR, deniedR, suspended, "200", "200", "200"}},
		{"GET", "/some/backend/page", nil, html, [7]string{"303", "303", "403", "403", "200", "200", "200"}},
		{"GET", "/gatehouse/request-access", nil, html, [7]string{"303", "200", "200", "200", "200", "200", "200"}},
		{"GET", "/gatehouse/admin", nil, html, [7]string{"303", "303", "403", "403", "403", "200", "200"}},
		{"GET", "/api/auth/nonexistent", nil, nil, [7]string{"404 not_found", "404 not_found", "404 not_found", "404 not_found", "404 not_found", "404 not_found", "404 not_found"}},
		// Last: signing out ends each caller's session.
		{"POST", "/api/auth/logout", nil, nil, [7]string{"204", "204", "204", "204", "204", "204", "204"}},
	}
	for _, row := range rows {
		for i, who := range matrixCallers {
			want := row.want[i]
			t.Run(fmt.Sprintf("%s %s %s as %s", row.method, row.path, strings.Join(row.headers, "="), who), func(t *testing.T) {
				resp := callers[who].do(row.method, row.path, row.body, row.headers...)
				got := fmt.Sprint(resp.StatusCode)
				if strings.Contains(want, " ") {
					// Ollama routes answer the problem as application/json with
					// Ollama's "error" string (spec §6a).
					ct := resp.Header.Get("Content-Type")
					ollama := ct == "application/json" && strings.HasPrefix(row.path, "/api/")
					if ct != "application/problem+json" && !ollama {
						t.Fatalf("status %d content type %q, want a problem: %s", resp.StatusCode, ct, resp.body)
					}
					if p := resp.json(t); ollama && p["error"] != p["detail"] {
						t.Fatalf("Ollama route: error %v, want the detail %v", p["error"], p["detail"])
					}
					got += " " + fmt.Sprint(resp.json(t)["code"])
				}
				if got != want {
					t.Fatalf("got %q, want %q: %s", got, want, resp.body)
				}
			})
		}
	}
}

// TestUserManagementGuardrails checks each rule of spec §3 through the API.
func TestUserManagementGuardrails(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	aliceID := admin.userID()
	manager := clientWithRole(t, in, frank, "manager")
	managerID := manager.userID()
	user := activeClient(t, in, bob)
	userID := user.userID()
	otherManager := clientWithRole(t, in, carol, "manager")
	otherManagerID := otherManager.userID()

	t.Run("a manager cannot promote itself to admin", func(t *testing.T) {
		expectProblem(t, manager.do("PUT", "/api/users/"+managerID+"/role", map[string]any{"role": "admin"}), http.StatusForbidden, "forbidden")
	})
	t.Run("a manager cannot promote another user to admin", func(t *testing.T) {
		expectProblem(t, manager.do("PUT", "/api/users/"+userID+"/role", map[string]any{"role": "admin"}), http.StatusForbidden, "forbidden")
	})
	t.Run("a manager cannot grant admin through an approval", func(t *testing.T) {
		pending := in.newClient()
		pending.signIn(dave, "")
		req := pending.do("POST", "/api/auth/request-access", map[string]any{"purpose": "wants admin", "requested_role": "admin"}).json(t)
		expectProblem(t, manager.do("PUT", "/api/access/"+req["id"].(string)+"/approve", map[string]any{"role": "admin"}), http.StatusForbidden, "forbidden")
		// Nor its own (spec §3a: only roles ranked below the caller's).
		expectProblem(t, manager.do("PUT", "/api/access/"+req["id"].(string)+"/approve", map[string]any{"role": "manager"}), http.StatusForbidden, "forbidden")
		ok := manager.do("PUT", "/api/access/"+req["id"].(string)+"/approve", map[string]any{"role": "user"})
		if ok.StatusCode != http.StatusOK || ok.json(t)["role"] != "user" {
			t.Fatalf("manager approving as user: %d %s", ok.StatusCode, ok.body)
		}
	})
	t.Run("a manager acts only on users below it", func(t *testing.T) {
		expectProblem(t, manager.do("PUT", "/api/users/"+aliceID+"/status", map[string]any{"status": "suspended"}), http.StatusForbidden, "forbidden")
		expectProblem(t, manager.do("PUT", "/api/users/"+otherManagerID+"/status", map[string]any{"status": "suspended"}), http.StatusForbidden, "forbidden")
		expectProblem(t, manager.do("PUT", "/api/users/"+managerID+"/status", map[string]any{"status": "suspended"}), http.StatusForbidden, "forbidden")
		expectProblem(t, manager.get("/api/users/"+aliceID+"/activity"), http.StatusForbidden, "forbidden")
	})
	t.Run("suspension ends the user's sessions at once", func(t *testing.T) {
		if r := user.get("/v1/models"); r.StatusCode != http.StatusOK {
			t.Fatalf("before: %d", r.StatusCode)
		}
		resp := manager.do("PUT", "/api/users/"+userID+"/status", map[string]any{"status": "suspended", "reason": "left the team"})
		if resp.StatusCode != http.StatusOK || resp.json(t)["status"] != "suspended" {
			t.Fatalf("suspend: %d %s", resp.StatusCode, resp.body)
		}
		expectProblem(t, user.get("/v1/models"), http.StatusUnauthorized, "invalid_token")
		again := in.newClient()
		again.signIn(bob, "")
		expectProblem(t, again.get("/v1/models"), http.StatusForbidden, "account_suspended")
		back := manager.do("PUT", "/api/users/"+userID+"/status", map[string]any{"status": "active"})
		if back.StatusCode != http.StatusOK {
			t.Fatalf("reactivate: %d %s", back.StatusCode, back.body)
		}
		if r := again.get("/v1/models"); r.StatusCode != http.StatusOK {
			t.Fatalf("after reactivation: %d %s", r.StatusCode, r.body)
		}
	})
	t.Run("status values are checked", func(t *testing.T) {
		expectProblem(t, manager.do("PUT", "/api/users/"+userID+"/status", map[string]any{"status": "denied"}), http.StatusBadRequest, "validation_failed")
		expectProblem(t, admin.do("PUT", "/api/users/"+userID+"/role", map[string]any{"role": "emperor"}), http.StatusBadRequest, "validation_failed")
	})
	t.Run("the last active admin cannot be demoted, suspended or delete itself", func(t *testing.T) {
		expectProblem(t, admin.do("PUT", "/api/users/"+aliceID+"/role", map[string]any{"role": "manager"}), http.StatusConflict, "last_admin")
		expectProblem(t, admin.do("PUT", "/api/users/"+aliceID+"/status", map[string]any{"status": "suspended"}), http.StatusConflict, "last_admin")
		expectProblem(t, admin.do("DELETE", "/api/users/"+aliceID, nil), http.StatusConflict, "self")
		if me := admin.get("/api/auth/me").json(t)["user"].(map[string]any); me["role"] != "admin" || me["status"] != "active" {
			t.Fatalf("alice after refused changes: %v", me)
		}
	})
	t.Run("with a second admin, the first can be demoted", func(t *testing.T) {
		if r := admin.do("PUT", "/api/users/"+otherManagerID+"/role", map[string]any{"role": "admin"}); r.StatusCode != http.StatusOK {
			t.Fatalf("promote carol: %d %s", r.StatusCode, r.body)
		}
		if r := otherManager.do("PUT", "/api/users/"+aliceID+"/role", map[string]any{"role": "manager"}); r.StatusCode != http.StatusOK {
			t.Fatalf("carol demotes alice: %d %s", r.StatusCode, r.body)
		}
		if r := otherManager.do("PUT", "/api/users/"+aliceID+"/role", map[string]any{"role": "admin"}); r.StatusCode != http.StatusOK {
			t.Fatalf("carol restores alice: %d %s", r.StatusCode, r.body)
		}
	})
	t.Run("deletion ends sessions and keeps the audit history", func(t *testing.T) {
		victim := activeClient(t, in, grace)
		victimID := victim.userID()
		if r := admin.do("DELETE", "/api/users/"+victimID, nil); r.StatusCode != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.StatusCode, r.body)
		}
		expectProblem(t, victim.get("/v1/models"), http.StatusUnauthorized, "invalid_token")
		expectProblem(t, admin.get("/api/users/"+victimID), http.StatusNotFound, "not_found")
		events := admin.get("/api/audit?user_id=" + victimID).json(t)["events"].([]any)
		types := map[string]bool{}
		for _, e := range events {
			types[e.(map[string]any)["type"].(string)] = true
		}
		for _, want := range []string{"user.deleted", "access.approved", "login"} {
			if !types[want] {
				t.Errorf("audit of the deleted user lacks %s: %v", want, types)
			}
		}
	})
}

// TestUserListingFiltersAndPages: status, role, q and cursor pagination.
func TestUserListingFiltersAndPages(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	activeClient(t, in, bob)
	clientWithRole(t, in, frank, "manager")
	for _, email := range []string{carol, dave, erin} {
		in.newClient().signIn(email, "")
	}
	emails := func(resp *response) []string {
		var out []string
		for _, u := range resp.json(t)["users"].([]any) {
			out = append(out, u.(map[string]any)["email"].(string))
		}
		return out
	}
	if got := emails(admin.get("/api/users?status=pending")); strings.Join(got, ",") != "carol@example.com,dave@example.com,erin@example.com" {
		t.Fatalf("pending users = %v", got)
	}
	if got := emails(admin.get("/api/users?role=manager")); strings.Join(got, ",") != frank {
		t.Fatalf("managers = %v", got)
	}
	if got := emails(admin.get("/api/users?q=BOB")); strings.Join(got, ",") != bob {
		t.Fatalf("q=BOB = %v", got)
	}
	var all []string
	cursor := ""
	for page := 0; page < 10; page++ {
		resp := admin.get("/api/users?limit=2&cursor=" + cursor).json(t)
		for _, u := range resp["users"].([]any) {
			all = append(all, u.(map[string]any)["email"].(string))
		}
		if resp["next_cursor"] == nil {
			break
		}
		cursor = resp["next_cursor"].(string)
	}
	if len(all) != 6 || all[0] != alice {
		t.Fatalf("paged users = %v, want all 6 in sign-in order", all)
	}
	expectProblem(t, admin.get("/api/users?limit=0"), http.StatusBadRequest, "validation_failed")
	expectProblem(t, admin.get("/api/users?status=bogus"), http.StatusBadRequest, "validation_failed")
}

// TestActivityAndAudit: events carry actor, target, time, IP and user agent.
func TestActivityAndAudit(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	bobID := bobC.userID()
	bobC.get("/api/access/requests") // a policy denial
	admin.do("PUT", "/api/users/"+bobID+"/status", map[string]any{"status": "suspended", "reason": "audit test"})

	events := admin.get("/api/users/" + bobID + "/activity").json(t)["events"].([]any)
	byType := map[string]map[string]any{}
	for _, e := range events {
		ev := e.(map[string]any)
		if _, seen := byType[ev["type"].(string)]; !seen {
			byType[ev["type"].(string)] = ev
		}
	}
	for _, want := range []string{"login", "access.requested", "access.approved", "policy.denied", "user.status_changed"} {
		ev, ok := byType[want]
		if !ok {
			t.Fatalf("activity lacks %s: %v", want, events)
		}
		if ev["ip"] != "127.0.0.1" || ev["user_agent"] == "" || ev["time"] == "" {
			t.Errorf("%s event lacks ip/user agent/time: %v", want, ev)
		}
	}
	if ev := byType["user.status_changed"]; ev["target_id"] != bobID || ev["actor_id"] == bobID || ev["detail"].(map[string]any)["reason"] != "audit test" {
		t.Errorf("status change event = %v", ev)
	}
	// Filters and pages.
	onlyLogins := admin.get("/api/audit?type=login").json(t)["events"].([]any)
	for _, e := range onlyLogins {
		if e.(map[string]any)["type"] != "login" {
			t.Fatalf("type filter returned %v", e)
		}
	}
	first := admin.get("/api/audit?limit=1").json(t)
	second := admin.get("/api/audit?limit=1&before=" + first["next_cursor"].(string)).json(t)
	a, b := first["events"].([]any)[0].(map[string]any), second["events"].([]any)[0].(map[string]any)
	if a["id"].(float64) <= b["id"].(float64) {
		t.Fatalf("pages not newest first: %v then %v", a["id"], b["id"])
	}
	// A failed sign-in is recorded too.
	in.newClient().get("/api/auth/callback?state=x&code=y")
	if got := admin.get("/api/audit?type=login.failed").json(t)["events"].([]any); len(got) == 0 {
		t.Fatal("failed sign-in not audited")
	}
}

// TestCustomPermissionSetWithoutRestart: an admin adds "analyst" = user + usage:view at run time.
func TestCustomPermissionSetWithoutRestart(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	settings := map[string]any{"roles": map[string]any{
		"analyst": map[string]any{"rank": 15, "inherits": []string{"user"}, "permissions": []string{"usage:view"}},
	}}
	if r := putSettings(admin, settings); r.StatusCode != http.StatusOK {
		t.Fatalf("put settings: %d %s", r.StatusCode, r.body)
	}
	got := admin.get("/api/settings").json(t)
	if got["roles"].(map[string]any)["analyst"].(map[string]any)["rank"] != float64(15) {
		t.Fatalf("settings = %v", got)
	}
	analyst := clientWithRole(t, in, bob, "analyst")
	me := analyst.get("/api/auth/me").json(t)["user"].(map[string]any)
	perms := fmt.Sprint(me["permissions"])
	if me["role"] != "analyst" || !strings.Contains(perms, "usage:view") || !strings.Contains(perms, "models:use") || strings.Contains(perms, "users:manage") {
		t.Fatalf("analyst = %v", me)
	}
	if r := analyst.get("/v1/models"); r.StatusCode != http.StatusOK {
		t.Fatalf("analyst on the backend: %d", r.StatusCode)
	}
	// Invalid sets are refused and change nothing.
	expectProblem(t, putSettings(admin, map[string]any{"roles": map[string]any{"x": map[string]any{"rank": 5, "inherits": []string{"ghost"}}}}), http.StatusBadRequest, "validation_failed")
	expectProblem(t, putSettings(admin, map[string]any{"roles": map[string]any{"user": map[string]any{"permissions": []string{"config:manage"}}}}), http.StatusBadRequest, "validation_failed")
	expectProblem(t, putSettings(admin, `{"roles":{"x":{"rank":"high"}}}`), http.StatusBadRequest, "invalid_json")
	if r := analyst.get("/api/auth/me").json(t)["user"].(map[string]any); !strings.Contains(fmt.Sprint(r["permissions"]), "usage:view") {
		t.Fatalf("a refused change altered the policy: %v", r)
	}
	// And the set survives a restart.
	in.restart()
	if r := analyst.get("/api/auth/me").json(t)["user"].(map[string]any); !strings.Contains(fmt.Sprint(r["permissions"]), "usage:view") {
		t.Fatalf("after restart: %v", r)
	}
}

// TestTemporaryGrantExpires: an approval with expires_at ends; the user falls back to pending.
func TestTemporaryGrantExpires(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := in.newClient()
	bobC.signIn(bob, "")
	req := bobC.do("POST", "/api/auth/request-access", map[string]any{"purpose": "a short trial"}).json(t)
	expires := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano)
	ok := admin.do("PUT", "/api/access/"+req["id"].(string)+"/approve", map[string]any{"expires_at": expires})
	if ok.StatusCode != http.StatusOK || ok.json(t)["expires_at"] == nil {
		t.Fatalf("approve with expiry: %d %s", ok.StatusCode, ok.body)
	}
	if r := bobC.get("/v1/models"); r.StatusCode != http.StatusOK {
		t.Fatalf("during the grant: %d %s", r.StatusCode, r.body)
	}
	time.Sleep(time.Until(mustTime(t, expires)) + 300*time.Millisecond)
	expectProblem(t, bobC.get("/v1/models"), http.StatusForbidden, "access_required")
	// Leaving active ends the session (spec §3a): bob signs in again and is pending.
	expectProblem(t, bobC.get("/api/auth/me"), http.StatusUnauthorized, "invalid_token")
	bobC.signIn(bob, "")
	if me := bobC.get("/api/auth/me").json(t)["user"].(map[string]any); me["status"] != "pending" {
		t.Fatalf("after expiry bob is %v, want pending", me["status"])
	}
	withStore(t, in, func(st store.Store) {
		u, err := st.GetUser(context.Background(), bobC.userID())
		if err != nil || u.Status != store.StatusPending {
			t.Fatalf("stored status %q (%v), want pending", u.Status, err)
		}
	})
	expectProblem(t, admin.do("PUT", "/api/access/"+req["id"].(string)+"/approve", map[string]any{}), http.StatusConflict, "not_pending")
	past := admin.do("PUT", "/api/users/"+bobC.userID()+"/status", map[string]any{"status": "active"})
	if past.StatusCode != http.StatusOK {
		t.Fatalf("re-activate: %d", past.StatusCode)
	}
}

func mustTime(t *testing.T, s string) time.Time {
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// TestBrokenPolicyRefusesToStart: a policy file that does not compile stops Caddy with the compiler's message.
func TestBrokenPolicyRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "broken.rego"), []byte("package gatehouse.ext\n\ndeny contains msg if {\n\tmsg := \n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "{\n\tadmin off\n\tgatehouse {\n\t\tpublic_url http://127.0.0.1:1\n\t\tpolicy broken.rego\n\t\tdev_idp {\n\t\t\tuser a@example.com\n\t\t}\n\t}\n}\nhttp://127.0.0.1:1 {\n\tgatehouse_api\n\tgatehouse\n\trespond ok\n}\n"
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyBin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("caddy started with a broken policy:\n%s", out)
	}
	if !strings.Contains(string(out), "policy") || !strings.Contains(string(out), "broken.rego:") {
		t.Fatalf("error does not name the policy file and line:\n%s", out)
	}
}

// TestPolicyEvaluationErrorIsUnavailable: a policy that fails at run time
// answers 503, never an allow.
func TestPolicyEvaluationErrorIsUnavailable(t *testing.T) {
	rules := `package gatehouse.ext

# Two values for one complete rule: OPA's conflict error, at run time only.
level := 1 if input.request.path == "/boom"

level := 2 if input.request.path == "/boom"

deny contains sprintf("level %v", [level]) if level > 5
`
	in := startInstance(t, instanceConfig{extraGlobal: "\t\tpolicy rules.rego", files: map[string]string{"rules.rego": rules}})
	bobC := activeClient(t, in, bob)
	if r := bobC.get("/fine"); r.StatusCode != http.StatusOK {
		t.Fatalf("/fine: %d %s", r.StatusCode, r.body)
	}
	resp := bobC.get("/boom")
	expectProblem(t, resp, http.StatusServiceUnavailable, "unavailable")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	up, _ := in.backend.lastRequest()
	if up != nil && up.URL.Path == "/boom" {
		t.Fatal("the request reached the backend")
	}
	page := bobC.get("/boom", "Accept", "text/html")
	if page.StatusCode != http.StatusServiceUnavailable || !strings.Contains(page.text(), "<html") {
		t.Fatalf("browser: %d %s", page.StatusCode, page.body)
	}
}
