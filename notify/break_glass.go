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

// Break-glass (spec §10): every admin hears at once, through every
// notifier, that someone invoked emergency access.

// EventBreakGlassInvoked is the webhook event of an invocation.
const EventBreakGlassInvoked = "break_glass.invoked"

// BreakGlassEvent is an invoked emergency grant. DashboardURL is where it
// is acknowledged.
type BreakGlassEvent struct {
	Grant        store.BreakGlassGrant
	DashboardURL string
}

// breakGlassGrant is the grant as a webhook receiver gets it.
type breakGlassGrant struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Reason    string    `json:"reason"`
	CodeUsed  bool      `json:"code_used"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

type breakGlassWebhookBody struct {
	Event        string          `json:"event"`
	BreakGlass   breakGlassGrant `json:"break_glass"`
	DashboardURL string          `json:"dashboard_url"`
}

// BreakGlassMessages returns the outbox messages announcing an invoked
// grant: one per configured webhook, then, when SMTP is configured, one
// email to each well-formed address of admins. All are due at now.
func (c Config) BreakGlassMessages(ev BreakGlassEvent, admins []string, now time.Time) ([]store.OutboxMessage, error) {
	g := ev.Grant
	if g.ID == "" {
		return nil, errors.New("notification of a break-glass grant without id")
	}
	now = now.UTC()
	var msgs []store.OutboxMessage
	if len(c.Webhooks) > 0 {
		body, err := json.Marshal(breakGlassWebhookBody{Event: EventBreakGlassInvoked, DashboardURL: ev.DashboardURL, BreakGlass: breakGlassGrant{
			ID: g.ID, UserID: g.User.ID, Email: g.User.Email, Name: g.User.Name, Role: g.Role, Reason: g.Reason,
			CodeUsed: g.CodeUsed, CreatedAt: g.CreatedAt.UTC(), ExpiresAt: g.ExpiresAt.UTC(),
		}})
		if err != nil {
			return nil, fmt.Errorf("encode webhook body of break-glass grant %s: %w", g.ID, err)
		}
		for i, wh := range c.Webhooks {
			m, err := outboxMessage(ChannelWebhook, webhookPayload{WebhookIndex: i, WebhookURL: wh.URL, Event: EventBreakGlassInvoked, Body: body}, now)
			if err != nil {
				return nil, fmt.Errorf("webhook notification of break-glass grant %s: %w", g.ID, err)
			}
			msgs = append(msgs, m)
		}
	}
	if c.SMTP != nil && len(admins) > 0 {
		var text bytes.Buffer
		if err := breakGlassTextTemplate.Execute(&text, breakGlassEmailData{
			Who: oneLine(firstNonEmpty(g.User.Name, g.User.Email)), Email: g.User.Email, Role: g.Role, Reason: g.Reason,
			Until: g.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"), CodeUsed: g.CodeUsed, Link: ev.DashboardURL,
		}); err != nil {
			return nil, fmt.Errorf("render email of break-glass grant %s: %w", g.ID, err)
		}
		subject := "Gatehouse: emergency access invoked by " + oneLine(g.User.Email)
		for _, to := range admins {
			addr, err := mail.ParseAddress(to)
			if err != nil {
				continue // it would fail on every retry
			}
			m, err := outboxMessage(ChannelEmail, emailPayload{Event: EventBreakGlassInvoked, To: addr.Address, Subject: subject, Text: text.String()}, now)
			if err != nil {
				return nil, fmt.Errorf("email notification of break-glass grant %s: %w", g.ID, err)
			}
			msgs = append(msgs, m)
		}
	}
	return msgs, nil
}

type breakGlassEmailData struct {
	Who, Email, Role, Reason, Until, Link string
	CodeUsed                              bool
}

const breakGlassText = `Hello,

{{.Who}} ({{.Email}}) invoked break-glass emergency access{{if .CodeUsed}} with a sealed one-time code{{end}}.
They hold the role {{.Role}} until {{.Until}}; every request of their session is audited.

Reason:
{{.Reason}}

Another admin must acknowledge it{{with .Link}}: {{.}}{{end}}
`

var breakGlassTextTemplate = texttemplate.Must(texttemplate.New("break_glass").Parse(breakGlassText))
