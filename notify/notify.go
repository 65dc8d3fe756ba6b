// Package notify tells a requester that a manager decided their access
// request. Messages are written to the store's outbox in the same transaction
// as the decision, and a Worker delivers them afterwards — as signed webhooks
// and SMTP email — retrying with back-off, so a crash between the decision and
// the delivery loses nothing. Delivery is at-least-once: webhook receivers
// de-duplicate on the X-Gatehouse-Delivery header. core imports it, and the
// Caddy module for its configuration types; it imports only store. The
// admins are told of security events (anomaly.go) through the same outbox.
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
	URL string `json:"url"`
	// Secret keys the HMAC-SHA256 signature. It is never written to the outbox,
	// so rotating it in config takes effect for messages already queued.
	Secret string `json:"secret"`
}

// Validate reports a receiver that could never be delivered to.
func (c *WebhookConfig) Validate() error {
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook %q must be an http(s) URL", c.URL)
	}
	if c.Secret == "" {
		return fmt.Errorf("webhook %q needs a secret", c.URL)
	}
	return nil
}

// ExpandPlaceholders passes each configured string through expand.
func (c *WebhookConfig) ExpandPlaceholders(expand func(string) string) {
	c.URL = expand(c.URL)
	c.Secret = expand(c.Secret)
}

// SMTPConfig is the mail relay that sends email notifications.
type SMTPConfig struct {
	Host     string `json:"host"`
	Port     int    `json:"port,omitempty"` // 0: 587 for starttls, 465 for tls, 25 for none
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	From     string `json:"from"`
	// TLS is "starttls" (the default; the server must offer it), "tls"
	// (implicit TLS) or "none" (plain, for local relays and tests).
	TLS string `json:"tls,omitempty"`
}

// Validate reports a relay that could never send.
func (c *SMTPConfig) Validate() error {
	if c.Host == "" || c.From == "" {
		return errors.New("smtp needs host and from")
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return fmt.Errorf("smtp: from %q: %w", c.From, err)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("smtp: bad port %d", c.Port)
	}
	switch c.TLS {
	case "", TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return fmt.Errorf("smtp: tls must be starttls, tls or none, not %q", c.TLS)
	}
	return nil
}

// ExpandPlaceholders passes each configured string through expand.
func (c *SMTPConfig) ExpandPlaceholders(expand func(string) string) {
	c.Host = expand(c.Host)
	c.Username = expand(c.Username)
	c.Password = expand(c.Password)
	c.From = expand(c.From)
	c.TLS = expand(c.TLS)
}

// Config selects the notifiers. The zero value notifies nobody. Its JSON is
// what Gatehouse's notify block configures; the runtime fills in the rest.
type Config struct {
	Webhooks []WebhookConfig `json:"webhooks,omitempty"`
	SMTP     *SMTPConfig     `json:"smtp,omitempty"`
	// PublicURL is Gatehouse's external base URL, for links in messages.
	PublicURL string `json:"-"`
	// RequestAccessPath is the request-access page; DefaultRequestAccessPath when empty.
	RequestAccessPath string `json:"-"`
}

// ExpandPlaceholders passes each configured string through expand.
func (c *Config) ExpandPlaceholders(expand func(string) string) {
	for i := range c.Webhooks {
		c.Webhooks[i].ExpandPlaceholders(expand)
	}
	if c.SMTP != nil {
		c.SMTP.ExpandPlaceholders(expand)
	}
}

// Validate reports configuration that could never deliver.
func (c Config) Validate() error {
	for _, w := range c.Webhooks {
		if err := w.Validate(); err != nil {
			return err
		}
	}
	if c.SMTP != nil {
		return c.SMTP.Validate()
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
