package core

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse/gatehouse/notify"
	"github.com/gatehouse/gatehouse/store"
)

// openNotifying opens a runtime that emails through an SMTP relay nobody
// delivers to (its worker is not started) and has one webhook.
func openNotifying(t *testing.T, ttl time.Duration) *Runtime {
	t.Helper()
	o := testOptions(t.TempDir())
	o.Notify = &notify.Config{
		Webhooks: []notify.WebhookConfig{{URL: "https://hooks.example.com/gatehouse", Secret: "s"}},
		SMTP:     &notify.SMTPConfig{Host: "smtp.example.com", From: "gatehouse@example.com"},
	}
	o.RequestTTL = caddy.Duration(ttl)
	rt, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return rt
}

// person signs email in and gives them role and status.
func person(t *testing.T, rt *Runtime, email, role, status string) store.User {
	t.Helper()
	ctx := t.Context()
	u, err := rt.Store.RecordLogin(ctx, store.LoginInfo{Issuer: "https://idp.test", Subject: email, Email: email, Name: email, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if role != u.Role {
		if u, err = rt.Store.SetUserRole(ctx, u.ID, role, store.AuditEvent{}); err != nil {
			t.Fatal(err)
		}
	}
	if status != u.Status {
		if u, err = rt.Store.SetUserStatus(ctx, u.ID, status, store.AuditEvent{}); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// emailsTo are the recipients of the queued emails of event.
func emailsTo(t *testing.T, rt *Runtime, event string) []string {
	t.Helper()
	due, err := rt.Store.DueOutbox(t.Context(), time.Now().Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	var to []string
	for _, m := range due {
		var p struct{ Event, To string }
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if m.Channel == notify.ChannelEmail && p.Event == event {
			to = append(to, p.To)
		}
	}
	slices.Sort(to)
	return to
}

// TestNewRequestEmailsEveryRoleThatMayReview: the reviewers are the active
// users of every role the policy gives access:review — a custom role of the
// settings too — and nobody else.
func TestNewRequestEmailsEveryRoleThatMayReview(t *testing.T) {
	rt := openNotifying(t, 0)
	ctx := t.Context()
	root := person(t, rt, "root@example.com", "admin", store.StatusActive)
	person(t, rt, "mona@example.com", "manager", store.StatusActive)
	person(t, rt, "sam@example.com", "manager", store.StatusSuspended)
	person(t, rt, "uma@example.com", "user", store.StatusActive)
	_, version, err := rt.CurrentSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.ReplaceSettings(ctx, nil, &Subject{User: root}, Settings{Roles: map[string]RoleSetting{
		"lead":    {Rank: 15, Inherits: []string{"user"}, Permissions: []string{"access:review"}},
		"analyst": {Rank: 12, Inherits: []string{"user"}, Permissions: []string{"users:activity"}},
	}}, version); err != nil {
		t.Fatal(err)
	}
	person(t, rt, "lee@example.com", "lead", store.StatusActive)
	person(t, rt, "ann@example.com", "analyst", store.StatusActive)
	newcomer := person(t, rt, "new@example.com", "user", store.StatusPending)

	req, err := rt.CreateAccessRequest(ctx, nil, &Subject{User: newcomer}, store.AccessRequest{Purpose: "chat", RequestedRole: "user"})
	if err != nil {
		t.Fatal(err)
	}
	if req.Status != store.RequestPending || req.User.Email != newcomer.Email {
		t.Fatalf("created %+v, want a pending request of %s", req, newcomer.Email)
	}
	want := []string{"lee@example.com", "mona@example.com", "root@example.com"}
	if got := emailsTo(t, rt, notify.EventCreated); !slices.Equal(got, want) {
		t.Fatalf("the new request was emailed to %v, want %v", got, want)
	}
	if _, err := rt.CreateAccessRequest(ctx, nil, &Subject{User: newcomer}, store.AccessRequest{Purpose: "again"}); err == nil {
		t.Fatal("a second pending request was accepted")
	}
	if got := emailsTo(t, rt, notify.EventCreated); !slices.Equal(got, want) {
		t.Fatalf("a refused request queued emails: %v", got)
	}
}

// TestExpireRequestsPastRequestTTL: the worker expires what waited longer
// than request_ttl, audits it by system and tells the requester.
func TestExpireRequestsPastRequestTTL(t *testing.T) {
	rt := openNotifying(t, time.Hour)
	ctx := t.Context()
	oldie := person(t, rt, "old@example.com", "user", store.StatusPending)
	fresh := person(t, rt, "fresh@example.com", "user", store.StatusPending)
	old, err := rt.Store.CreateAccessRequest(ctx, store.AccessRequest{User: store.RequestUser{ID: oldie.ID}, CreatedAt: time.Now().Add(-61 * time.Minute)}, store.AuditEvent{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Store.CreateAccessRequest(ctx, store.AccessRequest{User: store.RequestUser{ID: fresh.ID}, CreatedAt: time.Now().Add(-59 * time.Minute)}, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}

	rt.expireRequests(ctx)
	for id, want := range map[string]string{oldie.ID: store.RequestExpired, fresh.ID: store.RequestPending} {
		if r, err := rt.Store.LatestAccessRequest(ctx, id); err != nil || r.Status != want {
			t.Errorf("request of %s: %s, %v; want %s", id, r.Status, err, want)
		}
	}
	events, err := rt.Store.ListAudit(ctx, store.AuditFilter{Type: AuditRequestExpired})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].ActorID != ActorSystem || events[0].TargetID != oldie.ID || events[0].Detail["request_id"] != old.ID {
		t.Fatalf("audit %+v, want one %s by system about %s", events, AuditRequestExpired, old.ID)
	}
	if got := emailsTo(t, rt, notify.EventExpired); !slices.Equal(got, []string{"old@example.com"}) {
		t.Fatalf("the expiry was emailed to %v, want the requester", got)
	}
	if rt.requestTTL() != time.Hour || (&Runtime{}).requestTTL() != DefaultRequestTTL {
		t.Fatalf("request_ttl %s (default %s), want 1h (30d)", rt.requestTTL(), (&Runtime{}).requestTTL())
	}
}
