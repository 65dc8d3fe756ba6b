package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"net/mail"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/store"
)

// The reviewers are told of a new access request, and its requester of its
// expiry (spec §10, "Reviewers are told"), through the same outbox as the
// decisions.

// Webhook events of a request's life besides its decision.
const (
	EventCreated = "access_request.created"
	EventExpired = "access_request.expired"
)

// CreatedEvent is a new access request. ReviewURL is the dashboard page
// where it is reviewed.
type CreatedEvent struct {
	Request   store.AccessRequest
	ReviewURL string
}

// createdRequest is the request as a reviewer's webhook receives it.
type createdRequest struct {
	ID            string    `json:"id"`
	UserID        string    `json:"user_id"`
	Email         string    `json:"email"`
	Name          string    `json:"name"`
	Team          string    `json:"team"`
	Purpose       string    `json:"purpose"`
	RequestedRole string    `json:"requested_role"`
	CreatedAt     time.Time `json:"created_at"`
}

// createdWebhookBody is the JSON a receiver gets for a new request.
type createdWebhookBody struct {
	Event         string         `json:"event"`
	AccessRequest createdRequest `json:"access_request"`
	ReviewURL     string         `json:"review_url"`
}

// CreatedMessages returns the outbox messages announcing a new request: one
// per configured webhook, then, when SMTP is configured, one email to each
// well-formed address of reviewers. All are due at now.
func (c Config) CreatedMessages(ev CreatedEvent, reviewers []string, now time.Time) ([]store.OutboxMessage, error) {
	req := ev.Request
	if req.ID == "" {
		return nil, errors.New("notification for an access request without id")
	}
	now = now.UTC()
	var msgs []store.OutboxMessage
	if len(c.Webhooks) > 0 {
		body, err := json.Marshal(createdWebhookBody{Event: EventCreated, ReviewURL: ev.ReviewURL, AccessRequest: createdRequest{
			ID: req.ID, UserID: req.User.ID, Email: req.User.Email, Name: requesterName(req), Team: req.Team,
			Purpose: req.Purpose, RequestedRole: req.RequestedRole, CreatedAt: req.CreatedAt.UTC(),
		}})
		if err != nil {
			return nil, fmt.Errorf("encode webhook body for request %s: %w", req.ID, err)
		}
		for i, wh := range c.Webhooks {
			m, err := outboxMessage(ChannelWebhook, webhookPayload{WebhookIndex: i, WebhookURL: wh.URL, Event: EventCreated, Body: body}, now)
			if err != nil {
				return nil, fmt.Errorf("webhook notification for request %s: %w", req.ID, err)
			}
			msgs = append(msgs, m)
		}
	}
	if c.SMTP != nil && len(reviewers) > 0 {
		var text bytes.Buffer
		if err := createdTextTemplate.Execute(&text, createdEmailData{
			Who: requesterName(req), Email: req.User.Email, Team: req.Team, Role: req.RequestedRole,
			Purpose: strings.TrimSpace(req.Purpose), Link: ev.ReviewURL,
		}); err != nil {
			return nil, fmt.Errorf("render email for request %s: %w", req.ID, err)
		}
		subject := "Gatehouse: " + oneLine(firstNonEmpty(requesterName(req), req.User.Email)) + " requests access"
		for _, to := range reviewers {
			addr, err := mail.ParseAddress(to)
			if err != nil {
				continue // it would fail on every retry
			}
			m, err := outboxMessage(ChannelEmail, emailPayload{RequestID: req.ID, Event: EventCreated, To: addr.Address,
				Subject: subject, Text: text.String()}, now)
			if err != nil {
				return nil, fmt.Errorf("email notification for request %s: %w", req.ID, err)
			}
			msgs = append(msgs, m)
		}
	}
	return msgs, nil
}

// ExpiredMessages returns the outbox messages telling of a request that
// expired unreviewed, as a denial is told: one per configured webhook (the
// request as it reads expired), then one email to the requester when SMTP is
// configured and their address is well-formed. All are due at now.
func (c Config) ExpiredMessages(req store.AccessRequest, now time.Time) ([]store.OutboxMessage, error) {
	if req.ID == "" {
		return nil, errors.New("notification for an access request without id")
	}
	req.Status = store.RequestExpired
	now = now.UTC()
	var msgs []store.OutboxMessage
	if len(c.Webhooks) > 0 {
		body, err := json.Marshal(webhookBody{Event: EventExpired, Request: req})
		if err != nil {
			return nil, fmt.Errorf("encode webhook body for request %s: %w", req.ID, err)
		}
		for i, wh := range c.Webhooks {
			m, err := outboxMessage(ChannelWebhook, webhookPayload{WebhookIndex: i, WebhookURL: wh.URL, Event: EventExpired, Body: body}, now)
			if err != nil {
				return nil, fmt.Errorf("webhook notification for request %s: %w", req.ID, err)
			}
			msgs = append(msgs, m)
		}
	}
	if c.SMTP != nil && req.User.Email != "" {
		// An address that does not parse would fail on every retry; the
		// requester still sees the expiry on the request-access page.
		if addr, err := mail.ParseAddress(req.User.Email); err == nil {
			data := expiredEmailData{Name: requesterName(req), Submitted: req.CreatedAt.UTC().Format("2006-01-02 15:04 UTC"), Link: c.requestAccessLink()}
			var text, html bytes.Buffer
			if err := expiredTextTemplate.Execute(&text, data); err != nil {
				return nil, fmt.Errorf("render email for request %s: %w", req.ID, err)
			}
			if err := expiredHTMLTemplate.Execute(&html, data); err != nil {
				return nil, fmt.Errorf("render email for request %s: %w", req.ID, err)
			}
			m, err := outboxMessage(ChannelEmail, emailPayload{RequestID: req.ID, Event: EventExpired, To: addr.Address,
				Subject: "Your access request expired", Text: text.String(), HTML: html.String()}, now)
			if err != nil {
				return nil, fmt.Errorf("email notification for request %s: %w", req.ID, err)
			}
			msgs = append(msgs, m)
		}
	}
	return msgs, nil
}

// outboxMessage is payload queued on channel, due at now.
func outboxMessage(channel string, payload any, now time.Time) (store.OutboxMessage, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return store.OutboxMessage{}, fmt.Errorf("encode %s payload: %w", channel, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return store.OutboxMessage{}, fmt.Errorf("outbox id: %w", err)
	}
	return store.OutboxMessage{ID: id.String(), Channel: channel, Payload: raw, NextAttemptAt: now, CreatedAt: now}, nil
}

// requesterName is the name the request gives, else the requester's own.
func requesterName(req store.AccessRequest) string {
	return firstNonEmpty(req.Name, req.User.Name)
}

// oneLine keeps a person's name from breaking an email header.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, unicode.IsControl), " ")
}

type createdEmailData struct {
	Who, Email, Team, Role, Purpose, Link string
}

const createdText = `Hello,

{{with .Who}}{{.}} ({{$.Email}}){{else}}{{.Email}}{{end}} requests access to Gatehouse.
{{with .Team}}
Team: {{.}}{{end}}
Requested role: {{.Role}}

Purpose:
{{.Purpose}}
{{with .Link}}
Review it: {{.}}
{{end}}`

type expiredEmailData struct {
	Name, Submitted, Link string
}

const expiredText = `Hello{{with .Name}} {{.}}{{end}},

Your access request of {{.Submitted}} expired: nobody reviewed it in time.
You may ask again.
{{with .Link}}
Ask again: {{.}}
{{end}}`

const expiredHTML = `<!DOCTYPE html>
<html><body>
<p>Hello{{with .Name}} {{.}}{{end}},</p>
<p>Your access request of {{.Submitted}} <strong>expired</strong>: nobody reviewed it in time. You may ask again.</p>
{{with .Link}}<p><a href="{{.}}">Ask again</a></p>
{{end}}</body></html>
`

var (
	createdTextTemplate = texttemplate.Must(texttemplate.New("created").Parse(createdText))
	expiredTextTemplate = texttemplate.Must(texttemplate.New("expired").Parse(expiredText))
	expiredHTMLTemplate = htmltemplate.Must(htmltemplate.New("expired").Parse(expiredHTML))
)
