package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/notify"
	"github.com/gatehouse/gatehouse/store"
)

// Reviewers are told (spec §10): a new access request reaches every webhook
// as access_request.created and every reviewer by email; a request left
// pending past request_ttl expires, and its requester may ask again.

// The events as a receiver reads them.
const (
	eventCreated = "access_request.created"
	eventExpired = "access_request.expired"
)

// notifiedInstance is an instance whose webhook and SMTP relay are hook and mb.
func notifiedInstance(t *testing.T, hook *webhookReceiver, mb *mailbox, extra string) *instance {
	t.Helper()
	host, port, _ := strings.Cut(mb.addr, ":")
	return startInstance(t, instanceConfig{extraGlobal: fmt.Sprintf(`
		%s
		notify {
			webhook %s/hook hook-secret-123
			smtp {
				host %s
				port %s
				from gatehouse@example.com
				tls none
			}
		}`, extra, hook.URL, host, port)})
}

// TestReviewersAreToldOfANewRequest: a new person's request reaches the
// webhook as access_request.created (signed, with the request and the
// dashboard's link) and an email to the manager and the admin, but not to a
// plain user.
func TestReviewersAreToldOfANewRequest(t *testing.T) {
	hook, mb := newWebhookReceiver(t), newMailbox(t)
	in := notifiedInstance(t, hook, mb, "")
	clientWithRole(t, in, frank, "manager")
	activeClient(t, in, bob)

	carolC := in.newClient()
	carolC.signIn(carol, "")
	resp := carolC.do("POST", "/api/auth/request-access", map[string]any{"purpose": "summarise support tickets", "team": "support"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("request access: %d %s", resp.StatusCode, resp.body)
	}
	req := resp.json(t)
	reviewURL := in.URL + "/gatehouse/admin#requests"

	d, body := webhookEvent(t, hook, eventCreated, carol)
	if err := notify.VerifyWebhook("hook-secret-123", d.header, d.body, time.Now(), 5*time.Minute); err != nil {
		t.Fatalf("webhook signature: %v", err)
	}
	sent := body["access_request"].(map[string]any)
	want := map[string]any{
		"id": req["id"], "user_id": carolC.userID(), "email": carol, "name": "Carol Clerk", "team": "support",
		"purpose": "summarise support tickets", "requested_role": "user", "created_at": req["created_at"],
	}
	for k, v := range want {
		if sent[k] != v {
			t.Errorf("webhook access_request.%s = %v, want %v", k, sent[k], v)
		}
	}
	if d.header.Get(notify.HeaderEvent) != eventCreated || body["review_url"] != reviewURL {
		t.Fatalf("webhook %s with review_url %v, want %s and %s", d.header.Get(notify.HeaderEvent), body["review_url"], eventCreated, reviewURL)
	}

	const subject = "Subject: Gatehouse: Carol Clerk requests access"
	told := mailsWith(t, mb, subject, 2, 15*time.Second)
	var to []string
	for _, m := range told {
		to = append(to, m.to...)
		if !strings.Contains(m.data, "summarise support tickets") || !strings.Contains(m.data, reviewURL) || !strings.Contains(m.data, carol) {
			t.Errorf("email to %v does not hold the purpose, the requester and the link %s:\n%s", m.to, reviewURL, m.data)
		}
	}
	slices.Sort(to)
	if want := []string{alice, frank}; !slices.Equal(to, want) {
		t.Fatalf("the request was emailed to %v, want the admin and the manager %v", to, want)
	}
	// The messages of one request are queued together: by now a third
	// would have arrived as well.
	time.Sleep(time.Second)
	if got := mailsWith(t, mb, subject, 0, 0); len(got) != 2 {
		var all [][]string
		for _, m := range got {
			all = append(all, m.to)
		}
		t.Fatalf("the request was emailed to %v, want only %s and %s (not the user %s)", all, alice, frank, bob)
	}
}

// TestReviewersRequestExpiresAfterRequestTTL: with request_ttl 1h, a request
// pending for two hours expires (audited by system, its requester told by
// webhook and email, shown on the page), a fresh one stays pending, and the
// requester may ask again.
func TestReviewersRequestExpiresAfterRequestTTL(t *testing.T) {
	hook, mb := newWebhookReceiver(t), newMailbox(t)
	in := notifiedInstance(t, hook, mb, "request_ttl 1h")
	graceC := in.newClient()
	graceC.signIn(grace, "")
	graceID := graceC.userID()
	erinC := in.newClient()
	erinC.signIn(erin, "")
	if resp := erinC.do("POST", "/api/auth/request-access", map[string]any{"purpose": "fresh"}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("erin's request: %d %s", resp.StatusCode, resp.body)
	}
	var old store.AccessRequest
	withStore(t, in, func(st store.Store) {
		var err error
		old, err = st.CreateAccessRequest(context.Background(), store.AccessRequest{User: store.RequestUser{ID: graceID},
			Name: "Grace Target", Purpose: "an old project", RequestedRole: "user", CreatedAt: time.Now().Add(-2 * time.Hour)}, store.AuditEvent{})
		if err != nil {
			t.Fatalf("seeding a request of two hours ago: %v", err)
		}
	})

	// The expiry worker passes every minute.
	var mine map[string]any
	for deadline := time.Now().Add(90 * time.Second); ; {
		mine = graceC.get("/api/auth/request-access").json(t)
		if mine["status"] != store.RequestPending || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if mine["id"] != old.ID || mine["status"] != "expired" || mine["decided_at"] == nil || mine["reviewed_by"] != nil {
		t.Fatalf("grace's request after request_ttl = %v, want it expired, reviewed by nobody", mine)
	}
	if fresh := erinC.get("/api/auth/request-access").json(t); fresh["status"] != store.RequestPending {
		t.Fatalf("erin's fresh request = %v, want still pending", fresh)
	}

	admin := in.newClient()
	admin.signIn(alice, "")
	events := admin.get("/api/audit?type=access_request.expired").json(t)["events"].([]any)
	if len(events) != 1 {
		t.Fatalf("%d access_request.expired events, want 1: %v", len(events), events)
	}
	ev := events[0].(map[string]any)
	if ev["actor_id"] != "system" || ev["target_id"] != graceID || ev["detail"].(map[string]any)["request_id"] != old.ID {
		t.Fatalf("audit event %v, want actor system, target %s, request %s", ev, graceID, old.ID)
	}
	expired := admin.get("/api/access/requests?status=expired").json(t)["requests"].([]any)
	if len(expired) != 1 || expired[0].(map[string]any)["id"] != old.ID {
		t.Fatalf("GET /api/access/requests?status=expired = %v, want grace's request", expired)
	}

	_, body := webhookEvent(t, hook, eventExpired, grace)
	if r := body["request"].(map[string]any); r["id"] != old.ID || r["status"] != "expired" {
		t.Fatalf("webhook request %v, want grace's, expired", r)
	}
	told := mailsWith(t, mb, "Subject: Your access request expired", 1, 15*time.Second)
	if len(told) != 1 || !slices.Equal(told[0].to, []string{grace}) || !strings.Contains(told[0].data, in.URL+"/gatehouse/request-access") {
		t.Fatalf("expiry email to %v, want one to %s with the request-access link:\n%s", told[0].to, grace, told[0].data)
	}

	page := graceC.get("/gatehouse/request-access", "Accept", "text/html")
	for _, want := range []string{`id="request-expired"`, `status-expired`, `id="request-form"`} {
		if page.StatusCode != http.StatusOK || !strings.Contains(page.text(), want) {
			t.Fatalf("request-access page lacks %s: %d\n%s", want, page.StatusCode, page.body)
		}
	}
	again := graceC.do("POST", "/api/auth/request-access", map[string]any{"purpose": "a new project"})
	if again.StatusCode != http.StatusCreated || again.json(t)["status"] != store.RequestPending {
		t.Fatalf("asking again after expiry: %d %s", again.StatusCode, again.body)
	}
}

// webhookEvent waits for the delivery of event about the request of email.
func webhookEvent(t *testing.T, hook *webhookReceiver, event, email string) (delivery, map[string]any) {
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
			if body["event"] != event {
				continue
			}
			req, _ := body["access_request"].(map[string]any)
			if req == nil {
				req, _ = body["request"].(map[string]any)["user"].(map[string]any)
			}
			if req["email"] == email {
				return d, body
			}
		}
	}
	t.Fatalf("no webhook delivery of %s about %s", event, email)
	return delivery{}, nil
}

// mailsWith waits until at least n messages hold line, for at most timeout,
// and returns them.
func mailsWith(t *testing.T, mb *mailbox, line string, n int, timeout time.Duration) []mail {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		mb.mu.Lock()
		var got []mail
		for _, m := range mb.messages {
			if strings.Contains(m.data, line) {
				got = append(got, m)
			}
		}
		mb.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) < n {
				t.Fatalf("smtp: %d messages with %q after %s, want %d", len(got), line, timeout, n)
			}
			return got
		}
	}
}
