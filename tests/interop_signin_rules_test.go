package tests

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// signInAtIdP signs c in through the provider idp of Gatehouse as username,
// the way a browser would: Gatehouse's login, the IdP's form (oidc-provider
// in idp.mjs) unless its session of an earlier sign-in answers at once, its
// redirects back, the callback. It returns the Gatehouse path it ends on.
func signInAtIdP(t *testing.T, c *client, idp, username, rd string) string {
	t.Helper()
	follow := &http.Client{Jar: c.jar, Timeout: 15 * time.Second}
	q := url.Values{"idp": {idp}}
	if rd != "" {
		q.Set("rd", rd)
	}
	resp, err := follow.Get(c.in.URL + "/api/auth/login?" + q.Encode())
	if err != nil {
		t.Fatalf("signing in %s at %s: %v", username, idp, err)
	}
	resp.Body.Close()
	form := resp.Request.URL
	if strings.HasPrefix(form.String(), c.in.URL+"/") {
		return form.Path // the IdP's session signed the person in again at once
	}
	if !strings.HasPrefix(form.Path, "/interaction/") {
		t.Fatalf("signing in %s at %s: landed on %s, not the IdP's form", username, idp, form)
	}
	resp, err = follow.PostForm(form.String()+"/login", url.Values{"username": {username}})
	if err != nil {
		t.Fatalf("posting %s's sign-in at %s: %v", username, idp, err)
	}
	resp.Body.Close()
	if got := resp.Request.URL; !strings.HasPrefix(got.String(), c.in.URL+"/") {
		t.Fatalf("after signing in %s at %s the browser is at %s, not Gatehouse", username, idp, got)
	}
	return resp.Request.URL.Path
}

// corpAccounts are the first provider's people, with groups.
const corpAccounts = `{
	"alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice Admin", "groups": []},
	"bob":   {"email": "bob@corp.example", "email_verified": true, "name": "Bob Builder", "groups": ["staff"]},
	"carol": {"email": "carol@corp.example", "email_verified": true, "name": "Carol Clerk", "groups": ["staff", "gh-managers"]},
	"dave":  {"email": "dave@corp.example", "email_verified": true, "name": "Dave Doe", "groups": ["staff"], "employee_type": "contractor"}
}`

// TestInteropSignInRules: the settings' sign_in_rules map the claims of two
// real providers to roles and verdicts: a group approves at once with a
// role, a claim refuses, a person no rule matches waits for review, a sync
// rule's role follows the group at every sign-in (and a removed group
// demotes), and each decision is audited with the actor policy.
func TestInteropSignInRules(t *testing.T) {
	requireNode(t)
	corpPort, corpIssuer := reserveIssuer(t)
	partnersPort, partnersIssuer := reserveIssuer(t)
	in := startInstance(t, instanceConfig{upstream: startModelBackend(t), idpBlock: fmt.Sprintf(`oidc corp {
			issuer %s
			client_id gatehouse
			client_secret s3cret
		}
		oidc partners {
			issuer %s
			client_id gatehouse
			client_secret s3cret
		}`, corpIssuer, partnersIssuer)})
	startOIDCProvider(t, corpPort, idpClientSecret, in, "--accounts", corpAccounts)
	startOIDCProvider(t, partnersPort, idpClientSecret, in, "--accounts", partnerAccounts)

	admin := in.newClient()
	if path := signInAtIdP(t, admin, "corp", "alice", "/gatehouse/admin"); path != "/gatehouse/admin" {
		t.Fatalf("the bootstrap admin landed on %s", path)
	}
	rules := []any{
		map[string]any{"name": "managers", "provider": "corp", "claim": "groups", "value": "gh-managers", "role": "manager", "decision": "approve", "sync": true},
		map[string]any{"name": "contractors", "claim": "employee_type", "value": "contractor", "decision": "refuse"},
		map[string]any{"name": "staff", "provider": "corp", "claim": "groups", "value": "staff", "role": "user", "decision": "approve"},
	}
	for _, bad := range []map[string]any{
		{"claim": "groups", "value": "x", "decision": "approve"},                   // approve without a role
		{"claim": "groups", "value": "x", "role": "wizard", "decision": "approve"}, // an unknown role
		{"provider": "nope", "decision": "refuse"},                                 // an unknown provider
		{"claim": "groups", "decision": "maybe"},
	} {
		expectProblem(t, putSettings(admin, map[string]any{"roles": map[string]any{}, "sign_in_rules": []any{bad}}), http.StatusBadRequest, "validation_failed")
	}
	if resp := putSettings(admin, map[string]any{"roles": map[string]any{}, "sign_in_rules": rules}); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /api/settings: %d %s", resp.StatusCode, resp.body)
	}

	me := func(c *client) map[string]any {
		t.Helper()
		return c.get("/api/auth/me").json(t)["user"].(map[string]any)
	}

	t.Run("a group approves at once with its role", func(t *testing.T) {
		bobC := in.newClient()
		if path := signInAtIdP(t, bobC, "corp", "bob", "/gatehouse/account"); path != "/gatehouse/account" {
			t.Fatalf("bob landed on %s, want his account page (approved)", path)
		}
		u := me(bobC)
		if u["status"] != "active" || u["role"] != "user" || u["provider"] != "corp" {
			t.Fatalf("bob is %v, want an active user of corp", u)
		}
		evs := auditEvents(t, admin, "access.approved", u["id"].(string))
		if len(evs) != 1 || evs[0]["actor_id"] != "policy" || evs[0]["detail"].(map[string]any)["rule"] != "staff" {
			t.Fatalf("bob's approval audit %v, want one by policy, rule staff", evs)
		}
	})

	t.Run("a claim refuses", func(t *testing.T) {
		daveC := in.newClient()
		if path := signInAtIdP(t, daveC, "corp", "dave", "/"); path != "/gatehouse/request-access" {
			t.Fatalf("dave landed on %s, want the request-access page", path)
		}
		if u := me(daveC); u["status"] != "denied" {
			t.Fatalf("dave is %v, want denied", u)
		}
		page := daveC.get("/gatehouse/request-access", "Accept", "text/html").text()
		if !strings.Contains(page, "contractors") {
			t.Errorf("the denied person's page does not name the rule:\n%s", page)
		}
	})

	t.Run("no rule matches: review", func(t *testing.T) {
		patC := in.newClient()
		if path := signInAtIdP(t, patC, "partners", "pat", "/"); path != "/gatehouse/request-access" {
			t.Fatalf("pat landed on %s, want the request-access page", path)
		}
		if u := me(patC); u["status"] != "pending" || u["provider"] != "partners" {
			t.Fatalf("pat is %v, want pending, of partners", u)
		}
	})

	t.Run("a sync rule's role follows the group", func(t *testing.T) {
		carolC := in.newClient()
		signInAtIdP(t, carolC, "corp", "carol", "/gatehouse/account")
		u := me(carolC)
		if u["status"] != "active" || u["role"] != "manager" {
			t.Fatalf("carol is %v, want an active manager", u)
		}
		carolID := u["id"].(string)
		// An admin makes her a user; her next sign-in, still in gh-managers,
		// makes her a manager again.
		if r := admin.do("PUT", "/api/users/"+carolID+"/role", map[string]any{"role": "user"}); r.StatusCode != http.StatusOK {
			t.Fatalf("PUT role: %d %s", r.StatusCode, r.body)
		}
		signInAtIdP(t, carolC, "corp", "carol", "/gatehouse/account")
		if u := me(carolC); u["role"] != "manager" {
			t.Fatalf("after signing in again carol is %v, want manager (sync)", u["role"])
		}
		// Without the managers rule her group no longer gives the role: she
		// is demoted to user at the next sign-in.
		if resp := putSettings(admin, map[string]any{"roles": map[string]any{}, "sign_in_rules": rules[1:]}); resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT /api/settings: %d %s", resp.StatusCode, resp.body)
		}
		signInAtIdP(t, carolC, "corp", "carol", "/gatehouse/account")
		if u := me(carolC); u["role"] != "user" {
			t.Fatalf("after the managers rule went, carol is %v, want user", u["role"])
		}
		evs := auditEvents(t, admin, "user.role_changed", carolID)
		if len(evs) < 2 || evs[0]["actor_id"] != "policy" || evs[0]["detail"].(map[string]any)["to"] != "user" {
			t.Fatalf("carol's role changes %v, want the last by policy, to user", evs)
		}
	})
}

// auditEvents are the audit events of type about user (newest first).
func auditEvents(t *testing.T, admin *client, typ, userID string) []map[string]any {
	t.Helper()
	resp := admin.get("/api/audit?type=" + url.QueryEscape(typ) + "&user_id=" + url.QueryEscape(userID))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/audit: %d %s", resp.StatusCode, resp.body)
	}
	var out []map[string]any
	for _, e := range resp.json(t)["events"].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}
