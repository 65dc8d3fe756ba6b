package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/store"
)

// AnomalyEventPrefix starts the webhook event of a security event:
// "anomaly.refusal_burst", "anomaly.token_many_ips" and so on.
const AnomalyEventPrefix = "anomaly."

// AnomalyEvent is a security event for the admins (spec §8, access
// patterns): Kind is "refusal_burst", "token_many_ips", "first_model_use",
// "login_failures" or "usage_spike"; Detail is what the audit event records.
type AnomalyEvent struct {
	Kind   string         `json:"kind"`
	Time   time.Time      `json:"time"`
	Detail map[string]any `json:"detail"`
}

// anomalyWebhookBody is the JSON a receiver gets for a security event.
type anomalyWebhookBody struct {
	Event   string       `json:"event"`
	Anomaly AnomalyEvent `json:"anomaly"`
}

// AnomalyMessages returns the outbox messages announcing ev: one per
// configured webhook, then, when SMTP is configured, one email to each
// well-formed address of admins. All are due at now.
func (c Config) AnomalyMessages(ev AnomalyEvent, admins []string, now time.Time) ([]store.OutboxMessage, error) {
	if ev.Kind == "" {
		return nil, errors.New("security event without a kind")
	}
	event := AnomalyEventPrefix + ev.Kind
	now = now.UTC()
	ev.Time = ev.Time.UTC()
	var msgs []store.OutboxMessage
	add := func(channel string, payload any) error {
		raw, err := json.Marshal(payload)
		if err != nil {
			return fmt.Errorf("encode %s notification of %s: %w", channel, event, err)
		}
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("outbox id: %w", err)
		}
		msgs = append(msgs, store.OutboxMessage{ID: id.String(), Channel: channel, Payload: raw, NextAttemptAt: now, CreatedAt: now})
		return nil
	}
	if len(c.Webhooks) > 0 {
		body, err := json.Marshal(anomalyWebhookBody{Event: event, Anomaly: ev})
		if err != nil {
			return nil, fmt.Errorf("encode webhook body of %s: %w", event, err)
		}
		for i, wh := range c.Webhooks {
			if err := add(ChannelWebhook, webhookPayload{WebhookIndex: i, WebhookURL: wh.URL, Event: event, Body: body}); err != nil {
				return nil, err
			}
		}
	}
	if c.SMTP != nil {
		text := anomalyText(ev)
		for _, to := range admins {
			addr, err := mail.ParseAddress(to)
			if err != nil {
				continue // it would fail on every retry
			}
			if err := add(ChannelEmail, emailPayload{Event: event, To: addr.Address,
				Subject: "Gatehouse security event: " + ev.Kind, Text: text}); err != nil {
				return nil, err
			}
		}
	}
	return msgs, nil
}

// anomalyText is the plain-text email of a security event: its kind, time
// and detail, one "key: value" line each, in a stable order.
func anomalyText(ev AnomalyEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Gatehouse recorded a security event: %s\nTime: %s\n\n", ev.Kind, ev.Time.Format("2006-01-02 15:04:05 UTC"))
	for _, k := range slices.Sorted(maps.Keys(ev.Detail)) {
		fmt.Fprintf(&b, "%s: %v\n", k, ev.Detail[k])
	}
	b.WriteString("\nThe audit log has it as anomaly." + ev.Kind + ".\n")
	return b.String()
}
