package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
	"time"

	mail "github.com/wneessen/go-mail"

	"github.com/gatehouse/gatehouse/store"
)

// emailData feeds both the plain-text and the HTML template, so the two
// alternatives always say the same thing.
type emailData struct {
	Name      string
	Approved  bool
	Role      string
	ExpiresAt string
	Comment   string
	Link      string
}

const textEmail = `Hello{{with .Name}} {{.}}{{end}},

Your access request was {{if .Approved}}approved{{else}}denied{{end}}.
{{if .Approved}}
Role: {{.Role}}
{{if .ExpiresAt}}Access expires: {{.ExpiresAt}}{{else}}Access does not expire.{{end}}
{{end}}{{with .Comment}}
Comment from the reviewer:
{{.}}
{{end}}{{with .Link}}
See your request: {{.}}
{{end}}`

const htmlEmail = `<!DOCTYPE html>
<html><body>
<p>Hello{{with .Name}} {{.}}{{end}},</p>
<p>Your access request was <strong>{{if .Approved}}approved{{else}}denied{{end}}</strong>.</p>
{{if .Approved}}<p>Role: {{.Role}}<br>
{{if .ExpiresAt}}Access expires: {{.ExpiresAt}}{{else}}Access does not expire.{{end}}</p>
{{end}}{{with .Comment}}<p>Comment from the reviewer:</p>
<blockquote style="white-space: pre-wrap">{{.}}</blockquote>
{{end}}{{with .Link}}<p><a href="{{.}}">See your request</a></p>
{{end}}</body></html>
`

var (
	textEmailTemplate = texttemplate.Must(texttemplate.New("text").Parse(textEmail))
	// html/template escapes every value by context, so a comment or name
	// cannot inject markup and the link cannot become a javascript: URL.
	htmlEmailTemplate = htmltemplate.Must(htmltemplate.New("html").Parse(htmlEmail))
)

func renderEmail(req store.AccessRequest, decision, link string) (emailPayload, error) {
	data := emailData{
		Name:     firstNonEmpty(req.Name, req.User.Name),
		Approved: decision == DecisionApproved,
		Role:     firstNonEmpty(req.Role, req.RequestedRole),
		Comment:  strings.TrimSpace(req.Comment),
		Link:     link,
	}
	if req.ExpiresAt != nil {
		data.ExpiresAt = req.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC")
	}
	var text, html bytes.Buffer
	if err := textEmailTemplate.Execute(&text, data); err != nil {
		return emailPayload{}, fmt.Errorf("text body: %w", err)
	}
	if err := htmlEmailTemplate.Execute(&html, data); err != nil {
		return emailPayload{}, fmt.Errorf("html body: %w", err)
	}
	return emailPayload{
		Subject: "Your access request was " + decision,
		Text:    text.String(),
		HTML:    html.String(),
	}, nil
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// deliverEmail sends one outbox email through the configured relay.
func (w *Worker) deliverEmail(ctx context.Context, msg store.OutboxMessage) error {
	cfg := w.cfg.SMTP
	if cfg == nil {
		return retryAtCap(errors.New("email notifications are not configured (smtp)"))
	}
	var p emailPayload
	if err := json.Unmarshal(msg.Payload, &p); err != nil {
		return retryAtCap(fmt.Errorf("decode email payload: %w", err))
	}

	m := mail.NewMsg()
	if err := m.From(cfg.From); err != nil {
		return retryAtCap(fmt.Errorf("smtp from address: %w", err))
	}
	if err := m.To(p.To); err != nil {
		return retryAtCap(fmt.Errorf("recipient address: %w", err))
	}
	m.Subject(p.Subject)
	m.SetDate()
	m.SetMessageID()
	m.SetBodyString(mail.TypeTextPlain, p.Text)
	if p.HTML != "" {
		m.AddAlternativeString(mail.TypeTextHTML, p.HTML)
	}

	client, err := newSMTPClient(cfg)
	if err != nil {
		return retryAtCap(err)
	}
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	if err := client.DialAndSendWithContext(ctx, m); err != nil {
		return fmt.Errorf("smtp %s: %w", client.ServerAddr(), err)
	}
	return nil
}

func newSMTPClient(cfg *SMTPConfig) (*mail.Client, error) {
	opts := []mail.Option{mail.WithTimeout(attemptTimeout)}
	port := cfg.Port
	switch cfg.TLS {
	case "", TLSStartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
		if port == 0 {
			port = mail.DefaultPortTLS
		}
	case TLSImplicit:
		opts = append(opts, mail.WithSSL())
		if port == 0 {
			port = mail.DefaultPortSSL
		}
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
		if port == 0 {
			port = mail.DefaultPort
		}
	default:
		return nil, fmt.Errorf("smtp: unknown tls mode %q", cfg.TLS)
	}
	opts = append(opts, mail.WithPort(port))
	if cfg.Username != "" {
		// Auto-discovery picks the strongest mechanism the server offers and
		// refuses plain-text mechanisms on an unencrypted connection.
		opts = append(opts,
			mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(cfg.Username),
			mail.WithPassword(cfg.Password))
	}
	client, err := mail.NewClient(cfg.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("smtp client for %s: %w", cfg.Host, err)
	}
	return client, nil
}

// attemptTimeout bounds one delivery attempt, so a hung receiver cannot stall a pass.
const attemptTimeout = 10 * time.Second
