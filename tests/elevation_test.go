package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// Temporary elevation (spec §10): an active user asks for a higher role for
// a while, a reviewer who may grant it approves or denies, and the role
// falls back on its own when the time is up — unless someone set it
// meanwhile.

// role is the caller's role as GET /api/auth/me tells it.
func (c *client) role() string {
	c.t.Helper()
	return c.get("/api/auth/me").json(c.t)["user"].(map[string]any)["role"].(string)
}

// elevationEvents are the audit events of type about userID, as the admin reads them.
func elevationEvents(t *testing.T, admin *client, typ, userID string) []map[string]any {
	t.Helper()
	resp := admin.get("/api/audit?type=" + typ + "&user_id=" + userID)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/audit?type=%s: %d %s", typ, resp.StatusCode, resp.body)
	}
	var out []map[string]any
	for _, e := range resp.json(t)["events"].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

// elevationWebhook waits for the delivery of event about the elevation id.
func elevationWebhook(t *testing.T, hook *webhookReceiver, event, id string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		hook.mu.Lock()
		got := slices.Clone(hook.deliveries)
		hook.mu.Unlock()
		for _, d := range got {
			var body map[string]any
			if err := json.Unmarshal(d.body, &body); err != nil {
				t.Fatalf("webhook body %s: %v", d.body, err)
			}
			if e, _ := body["elevation"].(map[string]any); body["event"] == event && e["id"] == id {
				return e
			}
		}
	}
	t.Fatalf("no webhook delivery of %s about elevation %s", event, id)
	return nil
}

// TestElevationRequestedApprovedAndExpired: bob asks for manager for 2h
// (checked: a role above his, that exists, 5m to 24h, a reason, one at a
// time); the reviewers are told; a manager may not grant manager, bob may
// not approve his own, the admin approves; bob is a manager until the end.
// An elevation whose time is up (seeded in the store) falls back on its own:
// the role, the audit event by system, the webhook and the email.
func TestElevationRequestedApprovedAndExpired(t *testing.T) {
	hook, mb := newWebhookReceiver(t), newMailbox(t)
	in := notifiedInstance(t, hook, mb, "")
	bobC := activeClient(t, in, bob)
	frankC := clientWithRole(t, in, frank, "manager")
	aliceC := in.newClient()
	aliceC.signIn(alice, "")
	bobID := bobC.userID()

	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		{"his own role", map[string]any{"role": "user", "duration": "2h", "reason": "r"}},
		{"an unknown role", map[string]any{"role": "ghost", "duration": "2h", "reason": "r"}},
		{"under 5 minutes", map[string]any{"role": "manager", "duration": "4m", "reason": "r"}},
		{"over 24 hours", map[string]any{"role": "manager", "duration": "25h", "reason": "r"}},
		{"no duration", map[string]any{"role": "manager", "reason": "r"}},
		{"no reason", map[string]any{"role": "manager", "duration": "2h"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectProblem(t, bobC.do("POST", "/api/elevations", tc.body), http.StatusBadRequest, "validation_failed")
		})
	}
	expectProblem(t, in.newClient().do("POST", "/api/elevations", map[string]any{}), http.StatusUnauthorized, "unauthenticated")

	created := bobC.do("POST", "/api/elevations", map[string]any{"role": "manager", "duration": "2h", "reason": "incident 42"})
	if created.StatusCode != http.StatusCreated {
		t.Fatalf("request elevation: %d %s", created.StatusCode, created.body)
	}
	e := created.json(t)
	id := e["id"].(string)
	if e["status"] != "pending" || e["from_role"] != "user" || e["role"] != "manager" || e["duration_seconds"] != float64(7200) ||
		e["reason"] != "incident 42" || e["user"].(map[string]any)["email"] != bob || e["expires_at"] != nil {
		t.Fatalf("created elevation = %v", e)
	}
	expectProblem(t, bobC.do("POST", "/api/elevations", map[string]any{"role": "admin", "duration": "1h", "reason": "again"}),
		http.StatusConflict, "elevation_open")

	// The reviewers are told; bob, the requester, is not.
	if sent := elevationWebhook(t, hook, "elevation.requested", id); sent["role"] != "manager" || sent["status"] != "pending" {
		t.Fatalf("elevation.requested webhook = %v", sent)
	}
	told := mailsWith(t, mb, "requests a higher role", 2, 15*time.Second)
	var to []string
	for _, m := range told {
		to = append(to, m.to...)
		if !strings.Contains(m.data, "incident 42") || !strings.Contains(m.data, in.URL+"/gatehouse/admin#elevations") {
			t.Errorf("email to %v lacks the reason or the link:\n%s", m.to, m.data)
		}
	}
	slices.Sort(to)
	if want := []string{alice, frank}; !slices.Equal(to, want) {
		t.Fatalf("the elevation was emailed to %v, want %v", to, want)
	}

	// Listing: bob reads his own; a reviewer everyone's; bob not another's.
	if own := bobC.get("/api/elevations").json(t)["elevations"].([]any); len(own) != 1 || own[0].(map[string]any)["id"] != id {
		t.Fatalf("bob's elevations = %v", own)
	}
	if pending := frankC.get("/api/elevations?status=pending").json(t)["elevations"].([]any); len(pending) != 1 || pending[0].(map[string]any)["id"] != id {
		t.Fatalf("pending elevations as the manager sees them = %v", pending)
	}
	expectProblem(t, bobC.get("/api/elevations?user_id="+frankC.userID()), http.StatusForbidden, "forbidden")
	expectProblem(t, frankC.get("/api/elevations?status=held"), http.StatusBadRequest, "validation_failed")

	// Only a reviewer who may grant manager decides; never the requester.
	expectProblem(t, frankC.do("PUT", "/api/elevations/"+id+"/approve", map[string]any{"comment": "sure"}), http.StatusForbidden, "forbidden")
	expectProblem(t, bobC.do("PUT", "/api/elevations/"+id+"/approve", map[string]any{}), http.StatusForbidden, "forbidden")
	expectProblem(t, aliceC.do("PUT", "/api/elevations/missing/approve", map[string]any{}), http.StatusNotFound, "not_found")
	if got := bobC.role(); got != "user" {
		t.Fatalf("bob's role before approval = %s, want user", got)
	}

	approvedAt := time.Now()
	resp := aliceC.do("PUT", "/api/elevations/"+id+"/approve", map[string]any{"comment": "for the incident"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("approve: %d %s", resp.StatusCode, resp.body)
	}
	approved := resp.json(t)
	end, err := time.Parse(time.RFC3339Nano, approved["expires_at"].(string))
	if err != nil || approved["status"] != "approved" || approved["comment"] != "for the incident" ||
		approved["reviewed_by"].(map[string]any)["email"] != alice || end.Sub(approvedAt) < 2*time.Hour-time.Minute || end.Sub(approvedAt) > 2*time.Hour+time.Minute {
		t.Fatalf("approved elevation = %v, want approved by alice for 2h", approved)
	}
	expectProblem(t, aliceC.do("PUT", "/api/elevations/"+id+"/deny", map[string]any{"comment": "late"}), http.StatusConflict, "not_pending")
	if got := bobC.role(); got != "manager" {
		t.Fatalf("bob's role after approval = %s, want manager", got)
	}
	if resp := bobC.get("/api/users"); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob as a manager lists users: %d %s", resp.StatusCode, resp.body)
	}
	expectProblem(t, bobC.do("POST", "/api/elevations", map[string]any{"role": "admin", "duration": "1h", "reason": "more"}),
		http.StatusConflict, "elevation_open")
	if sent := elevationWebhook(t, hook, "elevation.approved", id); sent["status"] != "approved" || sent["comment"] != "for the incident" {
		t.Fatalf("elevation.approved webhook = %v", sent)
	}
	mailsWith(t, mb, "Your elevation was approved", 1, 15*time.Second)
	for typ, actor := range map[string]string{"access.elevation_requested": bobID, "access.elevation_approved": aliceC.userID()} {
		events := elevationEvents(t, aliceC, typ, bobID)
		if len(events) != 1 || events[0]["actor_id"] != actor || events[0]["target_id"] != bobID ||
			events[0]["detail"].(map[string]any)["elevation_id"] != id {
			t.Fatalf("%s events = %v, want one by %s about bob", typ, events, actor)
		}
	}

	// Carol's elevation, approved an hour ago for ten minutes, is over: the
	// worker (every two seconds) gives her back her role.
	carolC := activeClient(t, in, carol)
	carolID := carolC.userID()
	var seeded store.Elevation
	withStore(t, in, func(st store.Store) {
		ctx := context.Background()
		e, err := st.CreateElevation(ctx, store.Elevation{User: store.RequestUser{ID: carolID}, FromRole: "user", Role: "manager",
			DurationSeconds: 600, Reason: "last night's deploy", CreatedAt: time.Now().Add(-2 * time.Hour)}, store.AuditEvent{})
		if err != nil {
			t.Fatalf("seeding carol's elevation: %v", err)
		}
		if seeded, err = st.DecideElevation(ctx, store.ElevationDecision{ID: e.ID, Approve: true, FromRole: "user",
			ReviewerID: aliceC.userID(), Now: time.Now().Add(-time.Hour)}); err != nil {
			t.Fatalf("seeding carol's approval: %v", err)
		}
	})
	var mine map[string]any
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		mine = carolC.get("/api/elevations").json(t)["elevations"].([]any)[0].(map[string]any)
		if mine["status"] != "approved" || time.Now().After(deadline) {
			break
		}
	}
	if mine["id"] != seeded.ID || mine["status"] != "expired" || mine["ended_at"] == nil {
		t.Fatalf("carol's elevation after its end = %v, want expired", mine)
	}
	if got := carolC.role(); got != "user" {
		t.Fatalf("carol's role after her elevation = %s, want user", got)
	}
	events := elevationEvents(t, aliceC, "access.elevation_expired", carolID)
	if len(events) != 1 || events[0]["actor_id"] != "system" || events[0]["detail"].(map[string]any)["restored"] != true {
		t.Fatalf("access.elevation_expired events = %v, want one by system, restored", events)
	}
	if sent := elevationWebhook(t, hook, "elevation.expired", seeded.ID); sent["status"] != "expired" {
		t.Fatalf("elevation.expired webhook = %v", sent)
	}
	if told := mailsWith(t, mb, "Your elevation ended", 1, 15*time.Second); !slices.Equal(told[0].to, []string{carol}) {
		t.Fatalf("expiry email to %v, want %s", told[0].to, carol)
	}
	if got := bobC.role(); got != "manager" {
		t.Fatalf("bob's role, whose elevation is not over = %s, want manager", got)
	}
}

// TestElevationDeniedAndRoleChangedMeanwhile: a denial leaves the role and
// lets the user ask again; an admin who sets the role of a user holding an
// elevation ends it, so its end does not undo the role they set.
func TestElevationDeniedAndRoleChangedMeanwhile(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	bobC := activeClient(t, in, bob)
	aliceC := in.newClient()
	aliceC.signIn(alice, "")
	bobID := bobC.userID()
	ask := func() string {
		t.Helper()
		resp := bobC.do("POST", "/api/elevations", map[string]any{"role": "admin", "duration": "30m", "reason": "rotate keys"})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("request elevation: %d %s", resp.StatusCode, resp.body)
		}
		return resp.json(t)["id"].(string)
	}

	first := ask()
	resp := aliceC.do("PUT", "/api/elevations/"+first+"/deny", map[string]any{"comment": "not today"})
	if resp.StatusCode != http.StatusOK || resp.json(t)["status"] != "denied" {
		t.Fatalf("deny: %d %s", resp.StatusCode, resp.body)
	}
	if got := bobC.role(); got != "user" {
		t.Fatalf("bob's role after the denial = %s, want user", got)
	}
	if events := elevationEvents(t, aliceC, "access.elevation_denied", bobID); len(events) != 1 ||
		events[0]["detail"].(map[string]any)["comment"] != "not today" {
		t.Fatalf("access.elevation_denied events = %v", events)
	}

	second := ask()
	if resp := aliceC.do("PUT", "/api/elevations/"+second+"/approve", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("approve: %d %s", resp.StatusCode, resp.body)
	}
	if got := bobC.role(); got != "admin" {
		t.Fatalf("bob's role after approval = %s, want admin", got)
	}
	if resp := aliceC.do("PUT", "/api/users/"+bobID+"/role", map[string]any{"role": "manager"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("set bob's role: %d %s", resp.StatusCode, resp.body)
	}
	list := aliceC.get("/api/elevations?user_id=" + bobID + "&status=ended").json(t)["elevations"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["id"] != second || list[0].(map[string]any)["ended_at"] == nil {
		t.Fatalf("bob's ended elevations = %v, want the one held when his role was set", list)
	}
	if got := bobC.role(); got != "manager" {
		t.Fatalf("bob's role = %s, want manager as the admin set it", got)
	}
}

// TestElevationPages: the account page's form asks (post/redirect/get) and
// shows the pending elevation; the dashboard lists it with its forms, and
// approving there shows the elevation's end on the account page.
func TestElevationPages(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	bobC := activeClient(t, in, bob)
	aliceC := in.newClient()
	aliceC.signIn(alice, "")

	page := bobC.get("/gatehouse/account", "Accept", "text/html")
	if page.StatusCode != http.StatusOK || !strings.Contains(page.text(), `id="elevation-form"`) ||
		!strings.Contains(page.text(), `<option value="manager">`) || strings.Contains(page.text(), `<option value="user">`) {
		t.Fatalf("account page lacks the elevation form with the roles above user: %d\n%s", page.StatusCode, page.body)
	}
	resp := bobC.do("POST", "/gatehouse/account/elevation", url.Values{"role": {"manager"}, "duration": {"1h"}, "reason": {"quarterly review"}})
	expectRedirect(t, resp, "/gatehouse/account?notice=elevation_requested")
	page = bobC.get("/gatehouse/account", "Accept", "text/html")
	for _, want := range []string{`id="elevation-pending"`, "quarterly review", "1h0m0s"} {
		if !strings.Contains(page.text(), want) {
			t.Fatalf("account page lacks %s:\n%s", want, page.body)
		}
	}
	if strings.Contains(page.text(), `id="elevation-form"`) {
		t.Fatalf("account page offers another elevation while one is pending:\n%s", page.body)
	}
	bad := bobC.do("POST", "/gatehouse/account/elevation", url.Values{"role": {"admin"}, "duration": {"1h"}, "reason": {"again"}})
	if bad.StatusCode != http.StatusConflict || !strings.Contains(bad.text(), "pending or held") {
		t.Fatalf("a second request from the page: %d\n%s", bad.StatusCode, bad.body)
	}

	id := bobC.get("/api/elevations").json(t)["elevations"].([]any)[0].(map[string]any)["id"].(string)
	dash := aliceC.get("/gatehouse/admin", "Accept", "text/html")
	for _, want := range []string{`id="elevation-` + id + `"`, `/gatehouse/admin/elevations/` + id + `/approve`, `/gatehouse/admin/elevations/` + id + `/deny`, "quarterly review"} {
		if dash.StatusCode != http.StatusOK || !strings.Contains(dash.text(), want) {
			t.Fatalf("dashboard lacks %s: %d\n%s", want, dash.StatusCode, dash.body)
		}
	}
	resp = aliceC.do("POST", "/gatehouse/admin/elevations/"+id+"/approve", url.Values{"comment": {"ok"}})
	expectRedirect(t, resp, "/gatehouse/admin?notice=elevation_approved")
	page = bobC.get("/gatehouse/account", "Accept", "text/html")
	if !strings.Contains(page.text(), `id="elevation-approved"`) || !strings.Contains(page.text(), `id="elevation-end"`) ||
		!strings.Contains(page.text(), `id="profile-role">manager<`) {
		t.Fatalf("account page after approval lacks the held elevation and its end:\n%s", page.body)
	}
	if dash := aliceC.get("/gatehouse/admin", "Accept", "text/html"); !strings.Contains(dash.text(), `id="no-elevations"`) {
		t.Fatalf("dashboard still lists the decided elevation:\n%s", dash.body)
	}
}
