package notify

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

const approvedBody = `{"event":"access_request.approved","request":{"id":"0195a0c4-0000-7000-8000-000000000001",` +
	`"user":{"id":"u-ada","email":"ada@example.com","name":"Ada Lovelace"},"name":"Ada Lovelace","team":"Research",` +
	`"purpose":"Evaluate models","requested_role":"user","status":"approved","role":"user","comment":"Welcome aboard",` +
	`"reviewed_by":{"id":"u-grace","email":"grace@example.com","name":"Grace Hopper"},"created_at":"2025-03-01T09:00:00Z",` +
	`"decided_at":"2025-03-01T11:00:00Z","expires_at":"2025-06-01T00:00:00Z"}}`

const deniedBody = `{"event":"access_request.denied","request":{"id":"0195a0c4-0000-7000-8000-000000000001",` +
	`"user":{"id":"u-ada","email":"ada@example.com","name":"Ada Lovelace"},"name":"Ada Lovelace","team":"Research",` +
	`"purpose":"Evaluate models","requested_role":"user","status":"denied","role":"","comment":"Please ask your team lead first",` +
	`"reviewed_by":{"id":"u-grace","email":"grace@example.com","name":"Grace Hopper"},"created_at":"2025-03-01T09:00:00Z",` +
	`"decided_at":"2025-03-01T11:00:00Z","expires_at":null}}`

const approvedText = `Hello Ada Lovelace,

Your access request was approved.

Role: user
Access expires: 2025-06-01 00:00 UTC

Comment from the reviewer:
Welcome aboard

See your request: https://chat.example.com/gatehouse/request-access
`

const deniedText = `Hello Ada Lovelace,

Your access request was denied.

Comment from the reviewer:
Please ask your team lead first

See your request: https://chat.example.com/gatehouse/request-access
`

var (
	hookA = WebhookConfig{URL: "https://hooks.example.com/a", Secret: "secret-a"}
	hookB = WebhookConfig{URL: "https://ops.example.net/gatehouse?team=7", Secret: "secret-b"}
	relay = &SMTPConfig{Host: "smtp.example.com", From: "gatehouse@example.com", Password: "smtp-password"}
)

func TestMessagesOnePerChannel(t *testing.T) {
	now := time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC)
	type wantHook struct {
		index int
		url   string
	}
	tests := []struct {
		name      string
		decision  string
		request   store.AccessRequest
		webhooks  []WebhookConfig
		smtp      *SMTPConfig
		wantHooks []wantHook
		wantBody  string
		wantEmail *emailPayload
	}{
		{name: "approved, nothing configured", decision: DecisionApproved, request: decidedRequest()},
		{name: "denied, nothing configured", decision: DecisionDenied, request: deniedRequest()},
		{
			name: "approved, one webhook", decision: DecisionApproved, request: decidedRequest(),
			webhooks: []WebhookConfig{hookA}, wantHooks: []wantHook{{0, hookA.URL}}, wantBody: approvedBody,
		},
		{
			name: "denied, one webhook", decision: DecisionDenied, request: deniedRequest(),
			webhooks: []WebhookConfig{hookA}, wantHooks: []wantHook{{0, hookA.URL}}, wantBody: deniedBody,
		},
		{
			name: "approved, two webhooks", decision: DecisionApproved, request: decidedRequest(),
			webhooks: []WebhookConfig{hookA, hookB}, wantHooks: []wantHook{{0, hookA.URL}, {1, hookB.URL}}, wantBody: approvedBody,
		},
		{
			name: "denied, two webhooks", decision: DecisionDenied, request: deniedRequest(),
			webhooks: []WebhookConfig{hookA, hookB}, wantHooks: []wantHook{{0, hookA.URL}, {1, hookB.URL}}, wantBody: deniedBody,
		},
		{
			name: "approved, email only", decision: DecisionApproved, request: decidedRequest(), smtp: relay,
			wantEmail: &emailPayload{Event: EventApproved, Subject: "Your access request was approved", Text: approvedText},
		},
		{
			name: "denied, email only", decision: DecisionDenied, request: deniedRequest(), smtp: relay,
			wantEmail: &emailPayload{Event: EventDenied, Subject: "Your access request was denied", Text: deniedText},
		},
		{
			name: "approved, one webhook and email", decision: DecisionApproved, request: decidedRequest(),
			webhooks: []WebhookConfig{hookA}, smtp: relay,
			wantHooks: []wantHook{{0, hookA.URL}}, wantBody: approvedBody,
			wantEmail: &emailPayload{Event: EventApproved, Subject: "Your access request was approved", Text: approvedText},
		},
		{
			name: "denied, two webhooks and email", decision: DecisionDenied, request: deniedRequest(),
			webhooks: []WebhookConfig{hookA, hookB}, smtp: relay,
			wantHooks: []wantHook{{0, hookA.URL}, {1, hookB.URL}}, wantBody: deniedBody,
			wantEmail: &emailPayload{Event: EventDenied, Subject: "Your access request was denied", Text: deniedText},
		},
		{
			name: "approved, two webhooks and email, requester without email", decision: DecisionApproved,
			request:  func() store.AccessRequest { r := decidedRequest(); r.User.Email = ""; return r }(),
			webhooks: []WebhookConfig{hookA, hookB}, smtp: relay,
			wantHooks: []wantHook{{0, hookA.URL}, {1, hookB.URL}},
			wantBody:  strings.Replace(approvedBody, `"email":"ada@example.com"`, `"email":""`, 1),
		},
		{
			name: "approved, email, malformed requester address", decision: DecisionApproved,
			request: func() store.AccessRequest { r := decidedRequest(); r.User.Email = "not an address"; return r }(),
			smtp:    relay,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Webhooks: tt.webhooks, SMTP: tt.smtp, PublicURL: "https://chat.example.com/"}
			msgs, err := cfg.Messages(DecisionEvent{Request: tt.request, Decision: tt.decision}, now)
			if err != nil {
				t.Fatalf("Messages: %v", err)
			}
			wantCount := len(tt.wantHooks)
			if tt.wantEmail != nil {
				wantCount++
			}
			if len(msgs) != wantCount {
				t.Fatalf("got %d messages, want %d: %+v", len(msgs), wantCount, msgs)
			}

			ids := map[string]bool{}
			for _, m := range msgs {
				if m.ID == "" || ids[m.ID] {
					t.Errorf("message id %q is empty or repeated", m.ID)
				}
				ids[m.ID] = true
				if !m.CreatedAt.Equal(now) || !m.NextAttemptAt.Equal(now) || m.Attempts != 0 || m.DeliveredAt != nil || m.LastError != "" {
					t.Errorf("message %s is not a fresh message due now: %+v", m.ID, m)
				}
				for _, secret := range []string{hookA.Secret, hookB.Secret, relay.Password} {
					if bytes.Contains(m.Payload, []byte(secret)) {
						t.Errorf("payload of %s message holds a secret: %s", m.Channel, m.Payload)
					}
				}
			}

			for i, want := range tt.wantHooks {
				m := msgs[i]
				if m.Channel != ChannelWebhook {
					t.Fatalf("message %d channel = %q, want webhook", i, m.Channel)
				}
				var p webhookPayload
				if err := json.Unmarshal(m.Payload, &p); err != nil {
					t.Fatalf("webhook payload: %v", err)
				}
				wantEvent := EventApproved
				if tt.decision == DecisionDenied {
					wantEvent = EventDenied
				}
				if p.WebhookIndex != want.index || p.WebhookURL != want.url || p.Event != wantEvent {
					t.Errorf("webhook payload = index %d url %q event %q, want %d %q %q", p.WebhookIndex, p.WebhookURL, p.Event, want.index, want.url, wantEvent)
				}
				if string(p.Body) != tt.wantBody {
					t.Errorf("webhook body =\n%s\nwant\n%s", p.Body, tt.wantBody)
				}
			}

			if tt.wantEmail != nil {
				m := msgs[len(msgs)-1]
				if m.Channel != ChannelEmail {
					t.Fatalf("last message channel = %q, want email", m.Channel)
				}
				var p emailPayload
				if err := json.Unmarshal(m.Payload, &p); err != nil {
					t.Fatalf("email payload: %v", err)
				}
				if p.To != "ada@example.com" || p.RequestID != tt.request.ID || p.Event != tt.wantEmail.Event || p.Subject != tt.wantEmail.Subject {
					t.Errorf("email = to %q request %q event %q subject %q", p.To, p.RequestID, p.Event, p.Subject)
				}
				if p.Text != tt.wantEmail.Text {
					t.Errorf("email text =\n%s\nwant\n%s", p.Text, tt.wantEmail.Text)
				}
				if !strings.Contains(p.HTML, `<a href="https://chat.example.com/gatehouse/request-access">`) {
					t.Errorf("email html lacks the request-access link:\n%s", p.HTML)
				}
			}
		})
	}
}

func TestMessagesRejectsBadEvents(t *testing.T) {
	cfg := Config{Webhooks: []WebhookConfig{hookA}}
	noID := decidedRequest()
	noID.ID = ""
	tests := []struct {
		name string
		ev   DecisionEvent
		want string
	}{
		{"pending is not a decision", DecisionEvent{Request: decidedRequest(), Decision: store.RequestPending},
			`decision must be "approved" or "denied", not "pending"`},
		{"empty decision", DecisionEvent{Request: decidedRequest()},
			`decision must be "approved" or "denied", not ""`},
		{"request without id", DecisionEvent{Request: noID, Decision: DecisionApproved},
			"notification for an access request without id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := cfg.Messages(tt.ev, time.Now())
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Messages error = %v, want %q", err, tt.want)
			}
			if msgs != nil {
				t.Errorf("Messages returned %d messages with an error", len(msgs))
			}
		})
	}
}

func TestEmailEscapesHTMLAndKeepsPlainText(t *testing.T) {
	req := decidedRequest()
	req.Name = `Ada "<script>alert(1)</script>"`
	req.Comment = "Welcome <b>aboard</b> & enjoy\nsecond line"
	cfg := Config{SMTP: relay, PublicURL: "https://chat.example.com", RequestAccessPath: "/portal/request-access"}
	msgs, err := cfg.Messages(DecisionEvent{Request: req, Decision: DecisionApproved}, time.Now())
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	var p emailPayload
	if err := json.Unmarshal(msgs[0].Payload, &p); err != nil {
		t.Fatalf("email payload: %v", err)
	}
	for _, want := range []string{
		`<p>Hello Ada &#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;,</p>`,
		"Welcome &lt;b&gt;aboard&lt;/b&gt; &amp; enjoy\nsecond line</blockquote>",
		`<a href="https://chat.example.com/portal/request-access">`,
	} {
		if !strings.Contains(p.HTML, want) {
			t.Errorf("html lacks %q:\n%s", want, p.HTML)
		}
	}
	if strings.Contains(p.HTML, "<script>") || strings.Contains(p.HTML, "<b>") {
		t.Errorf("html carries unescaped markup:\n%s", p.HTML)
	}
	for _, want := range []string{
		`Hello Ada "<script>alert(1)</script>",`,
		"Welcome <b>aboard</b> & enjoy\nsecond line\n",
		"See your request: https://chat.example.com/portal/request-access\n",
	} {
		if !strings.Contains(p.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, p.Text)
		}
	}
}

func TestEmailWithoutExpiryOrPublicURL(t *testing.T) {
	req := decidedRequest()
	req.ExpiresAt = nil
	req.Comment = ""
	msgs, err := Config{SMTP: relay}.Messages(DecisionEvent{Request: req, Decision: DecisionApproved}, time.Now())
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	var p emailPayload
	if err := json.Unmarshal(msgs[0].Payload, &p); err != nil {
		t.Fatalf("email payload: %v", err)
	}
	want := "Hello Ada Lovelace,\n\nYour access request was approved.\n\nRole: user\nAccess does not expire.\n"
	if p.Text != want {
		t.Errorf("text =\n%q\nwant\n%q", p.Text, want)
	}
	if strings.Contains(p.HTML, "<a ") {
		t.Errorf("html links nowhere without a public URL:\n%s", p.HTML)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty config", Config{}, ""},
		{"complete config", Config{Webhooks: []WebhookConfig{hookA, hookB}, SMTP: &SMTPConfig{Host: "smtp.example.com", From: "Gatehouse <gatehouse@example.com>", TLS: TLSImplicit}}, ""},
		{"relative webhook url", Config{Webhooks: []WebhookConfig{{URL: "/hook", Secret: "s"}}}, `webhook "/hook" must be an http(s) URL`},
		{"webhook without secret", Config{Webhooks: []WebhookConfig{hookA, {URL: "https://hooks.example.com/x?token=t"}}}, `webhook "https://hooks.example.com/x?token=t" needs a secret`},
		{"smtp without host", Config{SMTP: &SMTPConfig{From: "a@example.com"}}, "smtp needs host and from"},
		{"smtp without from", Config{SMTP: &SMTPConfig{Host: "smtp.example.com"}}, "smtp needs host and from"},
		{"smtp with a bad from", Config{SMTP: &SMTPConfig{Host: "smtp.example.com", From: "gatehouse at example"}}, `smtp: from "gatehouse at example": mail: no angle-addr`},
		{"smtp with unknown tls", Config{SMTP: &SMTPConfig{Host: "smtp.example.com", From: "a@example.com", TLS: "ssl"}}, `smtp: tls must be starttls, tls or none, not "ssl"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
		})
	}
}
