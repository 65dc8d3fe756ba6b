// Package notify tells a requester that a manager decided their access
// request. Messages are written to the store's outbox in the same transaction
// as the decision, and a Worker delivers them afterwards — as signed webhooks
// and SMTP email — retrying with back-off, so a crash between the decision and
// the delivery loses nothing. Delivery is at-least-once: webhook receivers
// de-duplicate on the X-Gatehouse-Delivery header. Only core imports it; it
// imports only store.
package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/store"
)

// Outbox channels.
const (
	ChannelWebhook = "webhook"
	ChannelEmail   = "email"
)

// Decisions a DecisionEvent carries.
const (
	DecisionApproved = store.RequestApproved
	DecisionDenied   = store.RequestDenied
)

// Webhook event names, sent as "event" in the body and as X-Gatehouse-Event.
const (
	EventApproved = "access_request.approved"
	EventDenied   = "access_request.denied"
)

// DefaultRequestAccessPath is where the request-access page lives unless the
// pages prefix is configured otherwise.
const DefaultRequestAccessPath = "/gatehouse/request-access"

// SMTP TLS modes.
const (
	TLSStartTLS = "starttls"
	TLSImplicit = "tls"
	TLSNone     = "none"
)

// WebhookConfig is one webhook receiver.
type WebhookConfig struct {
	URL string
	// Secret keys the HMAC-SHA256 signature. It is never written to the outbox,
	// so rotating it in config takes effect for messages already queued.
	Secret string
}

// SMTPConfig is the mail relay that sends email notifications.
type SMTPConfig struct {
	Host     string
	Port     int // 0: 587 for starttls, 465 for tls, 25 for none
	Username string
	Password string
	From     string
	// TLS is "starttls" (the default; the server must offer it), "tls"
	// (implicit TLS) or "none" (plain, for local relays and tests).
	TLS string
}

// Config selects the notifiers. The zero value notifies nobody.
type Config struct {
	Webhooks []WebhookConfig
	SMTP     *SMTPConfig
	// PublicURL is Gatehouse's external base URL, for links in messages.
	PublicURL string
	// RequestAccessPath is the request-access page; DefaultRequestAccessPath when empty.
	RequestAccessPath string
}

// Validate reports configuration that could never deliver.
func (c Config) Validate() error {
	for i, wh := range c.Webhooks {
		u, err := url.Parse(wh.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("webhook %d: url must be an absolute http or https URL", i)
		}
		if wh.Secret == "" {
			return fmt.Errorf("webhook %d (%s): secret is required", i, redactURL(wh.URL))
		}
	}
	if s := c.SMTP; s != nil {
		if s.Host == "" {
			return errors.New("smtp: host is required")
		}
		if s.Port < 0 || s.Port > 65535 {
			return fmt.Errorf("smtp: port %d out of range", s.Port)
		}
		if _, err := mail.ParseAddress(s.From); err != nil {
			return fmt.Errorf("smtp: from %q: %w", s.From, err)
		}
		switch s.TLS {
		case "", TLSStartTLS, TLSImplicit, TLSNone:
		default:
			return fmt.Errorf("smtp: tls must be starttls, tls or none, not %q", s.TLS)
		}
	}
	return nil
}

// DecisionEvent is what happened to an access request. Request is the record
// as it reads after the decision (role, comment, reviewer, expiry filled in):
// the messages are built before the decision is stored, so that both are
// written in one transaction.
type DecisionEvent struct {
	Request  store.AccessRequest
	Decision string // DecisionApproved or DecisionDenied
}

// webhookPayload is what the outbox keeps for one webhook delivery. The body
// is fixed at enqueue time so every retry sends the same bytes; the secret is
// looked up by URL at delivery time and never stored.
type webhookPayload struct {
	WebhookIndex int             `json:"webhook_index"`
	WebhookURL   string          `json:"webhook_url"`
	Event        string          `json:"event"`
	Body         json.RawMessage `json:"body"`
}

// webhookBody is the JSON a receiver gets.
type webhookBody struct {
	Event   string              `json:"event"`
	Request store.AccessRequest `json:"request"`
}

// emailPayload is a rendered email; the relay and sender address come from
// config at delivery time.
type emailPayload struct {
	RequestID string `json:"request_id"`
	Event     string `json:"event"`
	To        string `json:"to"`
	Subject   string `json:"subject"`
	Text      string `json:"text"`
	HTML      string `json:"html"`
}

// Messages returns the outbox messages announcing ev: one per configured
// webhook, in config order, then one email to the requester when SMTP is
// configured and the requester's address is known and well-formed. All are
// due at now.
func (c Config) Messages(ev DecisionEvent, now time.Time) ([]store.OutboxMessage, error) {
	event, err := eventName(ev.Decision)
	if err != nil {
		return nil, err
	}
	if ev.Request.ID == "" {
		return nil, errors.New("notification for an access request without id")
	}
	req := ev.Request
	req.Status = ev.Decision
	now = now.UTC()

	var msgs []store.OutboxMessage
	add := func(channel string, payload any) error {
		raw, err := json.Marshal(payload)
		if err != nil {
			return fmt.Errorf("encode %s notification for request %s: %w", channel, req.ID, err)
		}
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("outbox id: %w", err)
		}
		msgs = append(msgs, store.OutboxMessage{
			ID:            id.String(),
			Channel:       channel,
			Payload:       raw,
			NextAttemptAt: now,
			CreatedAt:     now,
		})
		return nil
	}

	if len(c.Webhooks) > 0 {
		body, err := json.Marshal(webhookBody{Event: event, Request: req})
		if err != nil {
			return nil, fmt.Errorf("encode webhook body for request %s: %w", req.ID, err)
		}
		for i, wh := range c.Webhooks {
			if err := add(ChannelWebhook, webhookPayload{WebhookIndex: i, WebhookURL: wh.URL, Event: event, Body: body}); err != nil {
				return nil, err
			}
		}
	}

	if c.SMTP != nil && req.User.Email != "" {
		// An address that does not parse would fail on every retry; the
		// requester still sees the decision on the request-access page.
		if addr, err := mail.ParseAddress(req.User.Email); err == nil {
			email, err := renderEmail(req, ev.Decision, c.requestAccessLink())
			if err != nil {
				return nil, fmt.Errorf("render email for request %s: %w", req.ID, err)
			}
			email.RequestID = req.ID
			email.Event = event
			email.To = addr.Address
			if err := add(ChannelEmail, email); err != nil {
				return nil, err
			}
		}
	}
	return msgs, nil
}

func eventName(decision string) (string, error) {
	switch decision {
	case DecisionApproved:
		return EventApproved, nil
	case DecisionDenied:
		return EventDenied, nil
	default:
		return "", fmt.Errorf("decision must be %q or %q, not %q", DecisionApproved, DecisionDenied, decision)
	}
}

// requestAccessLink is where the requester reads the decision; "" without a
// public URL, since a relative link is useless in an email.
func (c Config) requestAccessLink() string {
	if c.PublicURL == "" {
		return ""
	}
	path := c.RequestAccessPath
	if path == "" {
		path = DefaultRequestAccessPath
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return strings.TrimRight(c.PublicURL, "/") + path
}

// redactURL keeps only scheme and host: webhook URLs often carry a token in
// their path or query (Slack, Teams), which must not reach logs or the outbox
// error column.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid url)"
	}
	return u.Scheme + "://" + u.Host
}
