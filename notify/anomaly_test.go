package notify

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// TestAnomalyMessagesOnePerWebhookAndAdmin: every webhook gets the event
// `anomaly.<kind>` with its detail; every admin with a well-formed address
// gets a plain-text email.
func TestAnomalyMessagesOnePerWebhookAndAdmin(t *testing.T) {
	c := Config{
		Webhooks: []WebhookConfig{{URL: "https://a.example/hook", Secret: "s1"}, {URL: "https://b.example/hook", Secret: "s2"}},
		SMTP:     &SMTPConfig{Host: "smtp.example", From: "gatehouse@example.com"},
	}
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ev := AnomalyEvent{Kind: "refusal_burst", Time: at, Detail: map[string]any{"subject": "u-1", "count": 21, "window": "1m0s"}}
	msgs, err := c.AnomalyMessages(ev, []string{"root@example.com", "not an address", "Ops <ops@example.com>"}, at)
	if err != nil {
		t.Fatal(err)
	}
	var channels []string
	for _, m := range msgs {
		channels = append(channels, m.Channel)
		if !m.NextAttemptAt.Equal(at) || m.ID == "" {
			t.Errorf("message %+v is not due at %v with an id", m, at)
		}
	}
	if want := []string{ChannelWebhook, ChannelWebhook, ChannelEmail, ChannelEmail}; !slices.Equal(channels, want) {
		t.Fatalf("channels %v, want %v", channels, want)
	}
	var wh webhookPayload
	if err := json.Unmarshal(msgs[1].Payload, &wh); err != nil {
		t.Fatal(err)
	}
	const wantBody = `{"event":"anomaly.refusal_burst","anomaly":{"kind":"refusal_burst","time":"2026-01-01T12:00:00Z","detail":{"count":21,"subject":"u-1","window":"1m0s"}}}`
	if wh.Event != "anomaly.refusal_burst" || wh.WebhookIndex != 1 || wh.WebhookURL != "https://b.example/hook" || string(wh.Body) != wantBody {
		t.Fatalf("webhook payload %+v with body %s, want event anomaly.refusal_burst to b.example, body %s", wh, wh.Body, wantBody)
	}
	var email emailPayload
	if err := json.Unmarshal(msgs[3].Payload, &email); err != nil {
		t.Fatal(err)
	}
	const wantText = "Gatehouse recorded a security event: refusal_burst\nTime: 2026-01-01 12:00:00 UTC\n\n" +
		"count: 21\nsubject: u-1\nwindow: 1m0s\n\nThe audit log has it as anomaly.refusal_burst.\n"
	if email.To != "ops@example.com" || email.Event != "anomaly.refusal_burst" || email.Subject != "Gatehouse security event: refusal_burst" || email.Text != wantText {
		t.Fatalf("email %+v, want one to ops@example.com with text %q", email, wantText)
	}
}

// TestAnomalyMessagesWithoutNotifiers: nothing configured, nothing queued;
// a kind is required.
func TestAnomalyMessagesWithoutNotifiers(t *testing.T) {
	msgs, err := Config{}.AnomalyMessages(AnomalyEvent{Kind: "login_failures"}, []string{"root@example.com"}, time.Now())
	if err != nil || len(msgs) != 0 {
		t.Fatalf("got %d messages, %v; want none", len(msgs), err)
	}
	if _, err := (Config{}).AnomalyMessages(AnomalyEvent{}, nil, time.Now()); err == nil {
		t.Fatal("an event without a kind was accepted")
	}
}
