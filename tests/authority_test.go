package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/store"
)

// Changes of authority that must hold whichever way they were made (spec §3a),
// as a user and an operator see them through a real instance.

// TestLeavingActiveEndsTokensAndSessions: a suspension revokes the user's
// tokens and ends their sessions; reactivation revives neither (item 5 of issue 8).
func TestLeavingActiveEndsTokensAndSessions(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	bobID := bobC.userID()
	tok := createToken(t, bobC, map[string]any{"name": "laptop", "kind": "personal"})["token"].(string)
	if got := bearerStatus(t, in, tok, "/v1/models"); got != http.StatusOK {
		t.Fatalf("token before the suspension: %d", got)
	}
	if r := admin.do("PUT", "/api/users/"+bobID+"/status", map[string]any{"status": "suspended", "reason": "left the team"}); r.StatusCode != http.StatusOK {
		t.Fatalf("suspend: %d %s", r.StatusCode, r.body)
	}
	expectProblem(t, bearer(t, in, "GET", "/v1/models", tok, nil), http.StatusUnauthorized, "invalid_token")
	if r := admin.do("PUT", "/api/users/"+bobID+"/status", map[string]any{"status": "active"}); r.StatusCode != http.StatusOK {
		t.Fatalf("reactivate: %d %s", r.StatusCode, r.body)
	}
	expectProblem(t, bearer(t, in, "GET", "/v1/models", tok, nil), http.StatusUnauthorized, "invalid_token")
	expectProblem(t, bobC.get("/v1/models"), http.StatusUnauthorized, "invalid_token")
	// Bob signs in again and makes a new token; the old one stays dead.
	bobC.signIn(bob, "")
	fresh := createToken(t, bobC, map[string]any{"name": "laptop again", "kind": "personal"})["token"].(string)
	if got := bearerStatus(t, in, fresh, "/v1/models"); got != http.StatusOK {
		t.Fatalf("new token after reactivation: %d", got)
	}
	list := bobC.get("/api/tokens").json(t)["tokens"].([]any)
	revokedSeen := false
	for _, tk := range list {
		m := tk.(map[string]any)
		if m["name"] == "laptop" && m["revoked_at"] != nil {
			revokedSeen = true
		}
	}
	if !revokedSeen {
		t.Fatalf("the old token is not listed as revoked: %v", list)
	}
	events := admin.get("/api/audit?type=token.revoked").json(t)["events"].([]any)
	if len(events) != 1 || !strings.Contains(mustJSON(t, events[0]), `"reason":"user_suspended"`) {
		t.Fatalf("token.revoked audit events = %v, want one with reason user_suspended", events)
	}
}

// TestSystemTokensFollowTheirCreator: a system token is revoked when its
// creator is demoted below tokens:system, suspended or deleted (item 4).
func TestSystemTokensFollowTheirCreator(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	alic := in.newClient()
	alic.signIn(alice, "")
	frankC := clientWithRole(t, in, frank, "admin")
	frankID := frankC.userID()
	mint := func(c *client, name string) string {
		return createToken(t, c, map[string]any{"name": name, "kind": "system", "permissions": []string{"system:access", "models:use"}})["token"].(string)
	}
	byFrank := []string{mint(frankC, "ci-1"), mint(frankC, "ci-2")}
	byAlice := mint(alic, "alice's ci")
	for _, tok := range append(byFrank, byAlice) {
		if got := bearerStatus(t, in, tok, "/v1/models"); got != http.StatusOK {
			t.Fatalf("system token before: %d", got)
		}
	}
	// Demoted to manager: no tokens:system any more.
	if r := alic.do("PUT", "/api/users/"+frankID+"/role", map[string]any{"role": "manager"}); r.StatusCode != http.StatusOK {
		t.Fatalf("demote: %d %s", r.StatusCode, r.body)
	}
	for _, tok := range byFrank {
		expectProblem(t, bearer(t, in, "GET", "/v1/models", tok, nil), http.StatusUnauthorized, "invalid_token")
	}
	if got := bearerStatus(t, in, byAlice, "/v1/models"); got != http.StatusOK {
		t.Fatalf("another admin's system token: %d, want it untouched", got)
	}
	reasons := alic.get("/api/audit?type=token.revoked").json(t)["events"].([]any)
	if len(reasons) != 2 || !strings.Contains(mustJSON(t, reasons), `"reason":"creator_lost_rights"`) {
		t.Fatalf("audit = %v, want two token.revoked with reason creator_lost_rights", reasons)
	}

	// Promoted again, frank mints one more; deleting him ends it.
	if r := alic.do("PUT", "/api/users/"+frankID+"/role", map[string]any{"role": "admin"}); r.StatusCode != http.StatusOK {
		t.Fatalf("promote: %d %s", r.StatusCode, r.body)
	}
	frankC.signIn(frank, "")
	later := mint(frankC, "ci-3")
	if r := alic.do("DELETE", "/api/users/"+frankID, nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.StatusCode, r.body)
	}
	expectProblem(t, bearer(t, in, "GET", "/v1/models", later, nil), http.StatusUnauthorized, "invalid_token")
	// The reproduction: a deleted admin's system token could promote a user.
	bobC := activeClient(t, in, bob)
	r := bearer(t, in, "PUT", "/api/users/"+bobC.userID()+"/role", later, map[string]any{"role": "admin"})
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("role change with the deleted creator's token: %d %s", r.StatusCode, r.body)
	}
}

// TestBootstrapAdminAppliesOnce: a deleted bootstrap admin who signs in again
// is a new, pending user (item 3).
func TestBootstrapAdminAppliesOnce(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	first := in.newClient()
	if dest := first.signIn(alice, "/"); dest != "/" {
		t.Fatalf("bootstrap admin's first sign-in lands on %s", dest)
	}
	aliceID := first.userID()
	frankC := clientWithRole(t, in, frank, "admin")
	if r := frankC.do("DELETE", "/api/users/"+aliceID, nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete alice: %d %s", r.StatusCode, r.body)
	}
	again := in.newClient()
	if dest := again.signIn(alice, "/"); dest != "/gatehouse/request-access" {
		t.Fatalf("the deleted bootstrap admin signing in again lands on %s, want the request-access page", dest)
	}
	me := again.get("/api/auth/me").json(t)["user"].(map[string]any)
	if me["status"] != "pending" || me["id"] == aliceID {
		t.Fatalf("alice again = %v, want a new pending user", me)
	}
	withStore(t, in, func(st store.Store) {
		u, err := st.GetUser(context.Background(), me["id"].(string))
		if err != nil || u.Role == "admin" {
			t.Fatalf("stored user %+v (%v), want no admin", u, err)
		}
	})
}

// TestTokenDetailsAreTheCallersOwn: /me with a token lists the token's
// effective permissions, a token of someone else's answers 404 like an
// unknown one, and an expires_in too large to represent is refused (minor
// items of issue 8).
func TestTokenDetailsAreTheCallersOwn(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	bobC := activeClient(t, in, bob)
	carolC := activeClient(t, in, carol)
	scoped := createToken(t, bobC, map[string]any{"name": "models only", "kind": "personal", "permissions": []string{"models:use"}})
	me := bearer(t, in, "GET", "/api/auth/me", scoped["token"].(string), nil).json(t)["user"].(map[string]any)
	if got := mustJSON(t, me["permissions"]); got != `["models:use"]` {
		t.Fatalf("/me with a scoped token lists %s, want only models:use", got)
	}
	carolTok := createToken(t, carolC, map[string]any{"name": "carol's", "kind": "personal"})
	foreign := bobC.do("DELETE", "/api/tokens/"+carolTok["id"].(string), nil)
	unknown := bobC.do("DELETE", "/api/tokens/01900000-0000-7000-8000-000000000000", nil)
	expectProblem(t, foreign, http.StatusNotFound, "not_found")
	expectProblem(t, unknown, http.StatusNotFound, "not_found")
	if foreign.text() != unknown.text() {
		t.Fatalf("a foreign token answers %s, an unknown one %s: they must not be told apart", foreign.body, unknown.body)
	}
	if got := bearerStatus(t, in, carolTok["token"].(string), "/v1/models"); got != http.StatusOK {
		t.Fatalf("carol's token after bob's attempt: %d", got)
	}
	for _, life := range []string{"213504d", "9999999999d", "2562048h"} {
		expectProblem(t, bobC.do("POST", "/api/tokens", map[string]any{"name": "x", "kind": "personal", "expires_in": life}), http.StatusBadRequest, "validation_failed")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// putSettings replaces the settings document with If-Match of its current ETag.
func putSettings(c *client, body any) *response {
	c.t.Helper()
	etag := c.get("/api/settings").Header.Get("ETag")
	if etag == "" {
		c.t.Fatal("GET /api/settings answered no ETag")
	}
	return c.do("PUT", "/api/settings", body, "If-Match", etag)
}

// TestRoleRanksHold: a custom role can neither inherit admin nor out-rank it,
// and a manager cannot grant a role with permissions the manager lacks
// (item 1 of issue 8).
func TestRoleRanksHold(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	for _, tc := range []struct {
		name string
		role map[string]any
		want string
	}{
		{"inherits admin", map[string]any{"rank": 15, "inherits": []string{"admin"}}, "cannot inherit admin"},
		{"out-ranks admin", map[string]any{"rank": 999, "inherits": []string{"user"}}, "below admin's"},
		{"ranks below what it inherits", map[string]any{"rank": 15, "inherits": []string{"manager"}}, `above \"manager\"'s`},
	} {
		r := admin.do("PUT", "/api/settings/roles/boss", tc.role)
		expectProblem(t, r, http.StatusBadRequest, "validation_failed")
		if !strings.Contains(r.text(), tc.want) {
			t.Errorf("%s: %s, want a reason naming %s", tc.name, r.body, tc.want)
		}
	}
	if r := admin.do("PUT", "/api/settings/roles/ops", map[string]any{"rank": 15, "inherits": []string{"user"}, "permissions": []string{"config:manage"}}); r.StatusCode != http.StatusOK {
		t.Fatalf("add ops: %d %s", r.StatusCode, r.body)
	}
	frankC := clientWithRole(t, in, frank, "manager")
	erinC := in.newClient()
	erinC.signIn(erin, "")
	req := erinC.do("POST", "/api/auth/request-access", map[string]any{"purpose": "ops work"}).json(t)
	// ops ranks below manager but gives config:manage, which managers lack.
	expectProblem(t, frankC.do("PUT", "/api/access/"+req["id"].(string)+"/approve", map[string]any{"role": "ops"}), http.StatusForbidden, "forbidden")
	expectProblem(t, frankC.do("PUT", "/api/access/"+req["id"].(string)+"/approve", map[string]any{"role": "manager"}), http.StatusForbidden, "forbidden")
	if r := frankC.do("PUT", "/api/access/"+req["id"].(string)+"/approve", map[string]any{"role": "user"}); r.StatusCode != http.StatusOK {
		t.Fatalf("manager approves as user: %d %s", r.StatusCode, r.body)
	}
}

// TestSettingsNeverLoseAChange: the settings document is replaced only with
// If-Match of its current version; per-role changes from two admins at once
// both land; a role users hold cannot be deleted; a user whose role is gone
// can still be managed (item 2 of issue 8).
func TestSettingsNeverLoseAChange(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	alic := in.newClient()
	alic.signIn(alice, "")
	frankC := clientWithRole(t, in, frank, "admin")

	for _, body := range []string{`null`, `{}`, `{"roles":null}`, `[]`} {
		r := alic.do("PUT", "/api/settings", body, "If-Match", alic.get("/api/settings").Header.Get("ETag"))
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("PUT %s: %d %s, want 400", body, r.StatusCode, r.body)
		}
	}
	expectProblem(t, alic.do("PUT", "/api/settings", `{"roles":{}}`), http.StatusPreconditionRequired, "precondition_required")
	stale := alic.get("/api/settings").Header.Get("ETag")
	if r := putSettings(frankC, map[string]any{"roles": map[string]any{"user": map[string]any{"models": []string{"llama3*"}}}}); r.StatusCode != http.StatusOK {
		t.Fatalf("frank's save: %d %s", r.StatusCode, r.body)
	}
	expectProblem(t, alic.do("PUT", "/api/settings", `{"roles":{}}`, "If-Match", stale), http.StatusPreconditionFailed, "settings_conflict")
	if got := mustJSON(t, alic.get("/api/settings").json(t)["roles"]); got != `{"user":{"models":["llama3*"]}}` {
		t.Fatalf("a refused save changed the settings: %s", got)
	}

	// Two admins saving different roles at the same moment, ten times over.
	for round := range 10 {
		var wg sync.WaitGroup
		for _, c := range []struct {
			cl   *client
			name string
		}{{alic, fmt.Sprintf("a%d", round)}, {frankC, fmt.Sprintf("f%d", round)}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := c.cl.do("PUT", "/api/settings/roles/"+c.name, map[string]any{"rank": 12, "inherits": []string{"user"}}); r.StatusCode != http.StatusOK {
					t.Errorf("save %s: %d %s", c.name, r.StatusCode, r.body)
				}
			}()
		}
		wg.Wait()
	}
	roles := alic.get("/api/settings").json(t)["roles"].(map[string]any)
	for round := range 10 {
		for _, name := range []string{fmt.Sprintf("a%d", round), fmt.Sprintf("f%d", round)} {
			if roles[name] == nil {
				t.Errorf("role %s was lost", name)
			}
		}
	}

	// A role users hold stays until they are given another.
	bobC := clientWithRole(t, in, bob, "a0")
	bobID := bobC.userID()
	expectProblem(t, alic.do("DELETE", "/api/settings/roles/a0", nil), http.StatusConflict, "role_in_use")
	if r := alic.do("PUT", "/api/users/"+bobID+"/role", map[string]any{"role": "user"}); r.StatusCode != http.StatusOK {
		t.Fatalf("move bob: %d %s", r.StatusCode, r.body)
	}
	if r := alic.do("DELETE", "/api/settings/roles/a0", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("delete a0: %d %s", r.StatusCode, r.body)
	}

	// A user left with a role that no longer exists ranks lowest: a manager
	// can still suspend them.
	withStore(t, in, func(st store.Store) {
		if _, err := st.SetUserRole(context.Background(), bobID, "ghost", store.AuditEvent{}); err != nil {
			t.Fatal(err)
		}
	})
	graceC := clientWithRole(t, in, grace, "manager")
	if r := graceC.do("PUT", "/api/users/"+bobID+"/status", map[string]any{"status": "suspended"}); r.StatusCode != http.StatusOK {
		t.Fatalf("a manager suspends a user whose role is gone: %d %s", r.StatusCode, r.body)
	}
}
