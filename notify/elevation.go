package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	texttemplate "text/template"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// Temporary elevation (spec §10) is told through the same outbox as the
// access requests: a new one to the webhooks and the reviewers, its decision
// and its end to the webhooks and the requester.

// Webhook events of an elevation.
const (
	EventElevationRequested = "elevation.requested"
	EventElevationApproved  = "elevation.approved"
	EventElevationDenied    = "elevation.denied"
	EventElevationExpired   = "elevation.expired"
)

// ElevationEvent is what happened to an elevation: Event is one of the
// EventElevation names, Elevation the record as it reads afterwards, To the
// addresses emailed (the reviewers of a new one, else the requester) and
// Link the page where it is reviewed or read.
type ElevationEvent struct {
	Event     string
	Elevation store.Elevation
	To        []string
	Link      string
}

// elevationWebhookBody is the JSON a receiver gets.
type elevationWebhookBody struct {
	Event     string          `json:"event"`
	Elevation store.Elevation `json:"elevation"`
	Link      string          `json:"link,omitempty"`
}

// ElevationMessages returns the outbox messages of ev: one per configured
// webhook, then, when SMTP is configured, one email to each well-formed
// address of ev.To. All are due at now.
func (c Config) ElevationMessages(ev ElevationEvent, now time.Time) ([]store.OutboxMessage, error) {
	e := ev.Elevation
	if e.ID == "" {
		return nil, errors.New("notification for an elevation without id")
	}
	subject, ok := elevationSubjects[ev.Event]
	if !ok {
		return nil, fmt.Errorf("unknown elevation event %q", ev.Event)
	}
	now = now.UTC()
	var msgs []store.OutboxMessage
	if len(c.Webhooks) > 0 {
		body, err := json.Marshal(elevationWebhookBody{Event: ev.Event, Elevation: e, Link: ev.Link})
		if err != nil {
			return nil, fmt.Errorf("encode webhook body for elevation %s: %w", e.ID, err)
		}
		for i, wh := range c.Webhooks {
			m, err := outboxMessage(ChannelWebhook, webhookPayload{WebhookIndex: i, WebhookURL: wh.URL, Event: ev.Event, Body: body}, now)
			if err != nil {
				return nil, fmt.Errorf("webhook notification for elevation %s: %w", e.ID, err)
			}
			msgs = append(msgs, m)
		}
	}
	if c.SMTP != nil && len(ev.To) > 0 {
		data := elevationEmailData{Event: ev.Event, Who: firstNonEmpty(e.User.Name, e.User.Email), Email: e.User.Email,
			From: e.FromRole, Role: e.Role, Duration: (time.Duration(e.DurationSeconds) * time.Second).String(),
			Reason: e.Reason, Comment: e.Comment, Link: ev.Link}
		if e.ExpiresAt != nil {
			data.Until = e.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC")
		}
		var text bytes.Buffer
		if err := elevationTextTemplate.Execute(&text, data); err != nil {
			return nil, fmt.Errorf("render email for elevation %s: %w", e.ID, err)
		}
		if ev.Event == EventElevationRequested {
			subject = "Gatehouse: " + oneLine(data.Who) + subject
		}
		for _, to := range ev.To {
			addr, err := mail.ParseAddress(to)
			if err != nil {
				continue // it would fail on every retry
			}
			m, err := outboxMessage(ChannelEmail, emailPayload{RequestID: e.ID, Event: ev.Event, To: addr.Address,
				Subject: subject, Text: text.String()}, now)
			if err != nil {
				return nil, fmt.Errorf("email notification for elevation %s: %w", e.ID, err)
			}
			msgs = append(msgs, m)
		}
	}
	return msgs, nil
}

// elevationSubjects are the emails' subjects; a new request's follows the
// requester's name.
var elevationSubjects = map[string]string{
	EventElevationRequested: " requests a higher role",
	EventElevationApproved:  "Your elevation was approved",
	EventElevationDenied:    "Your elevation was denied",
	EventElevationExpired:   "Your elevation ended",
}

type elevationEmailData struct {
	Event, Who, Email, From, Role, Duration, Until, Reason, Comment, Link string
}

const elevationText = `Hello,
{{if eq .Event "elevation.requested"}}
{{.Who}} ({{.Email}}) asks to hold the role {{.Role}} (now {{.From}}) for {{.Duration}}.

Reason:
{{.Reason}}
{{with .Link}}
Review it: {{.}}
{{end}}{{else if eq .Event "elevation.approved"}}
You hold the role {{.Role}} until {{.Until}}; then your role is {{.From}} again.
{{with .Comment}}
Comment: {{.}}
{{end}}{{else if eq .Event "elevation.denied"}}
Your request for the role {{.Role}} was denied.
{{with .Comment}}
Comment: {{.}}
{{end}}{{else}}
Your elevation to {{.Role}} ended; your role is {{.From}} again unless someone set it in the meantime.
{{end}}{{if ne .Event "elevation.requested"}}{{with .Link}}
Your account: {{.}}
{{end}}{{end}}`

var elevationTextTemplate = texttemplate.Must(texttemplate.New("elevation").Parse(elevationText))
