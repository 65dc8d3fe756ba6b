package notify

import (
	"bytes"
	"context"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"net"
	netmail "net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// mailSink is a real SMTP server (go-smtp) that keeps every message it accepts.
type mailSink struct {
	addr string
	// insecurePlainAuth offers AUTH PLAIN without TLS, as a careless relay would.
	insecurePlainAuth bool
	mu                sync.Mutex
	msgs              []sunkMail
	logins            []string
}

type sunkMail struct {
	from string
	to   []string
	data []byte
}

func startMailSink(t *testing.T, addr string, insecurePlainAuth bool) *mailSink {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen for smtp: %v", err)
	}
	sink := &mailSink{addr: l.Addr().String(), insecurePlainAuth: insecurePlainAuth}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: sink}, nil
	}))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.AllowInsecureAuth = insecurePlainAuth
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sink
}

func (s *mailSink) received() []sunkMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunkMail(nil), s.msgs...)
}

func (s *mailSink) loginAttempts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logins...)
}

type sinkSession struct {
	sink *mailSink
	cur  sunkMail
}

func (s *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	s.cur = sunkMail{from: from}
	return nil
}

func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = data
	s.sink.mu.Lock()
	s.sink.msgs = append(s.sink.msgs, s.cur)
	s.sink.mu.Unlock()
	return nil
}

func (s *sinkSession) AuthMechanisms() []string {
	if s.sink.insecurePlainAuth {
		return []string{sasl.Plain}
	}
	return nil
}

func (s *sinkSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		s.sink.mu.Lock()
		defer s.sink.mu.Unlock()
		s.sink.logins = append(s.sink.logins, username+":"+password)
		return nil
	}), nil
}

func (s *sinkSession) Reset()        { s.cur = sunkMail{} }
func (s *sinkSession) Logout() error { return nil }

// parsedMail is a received message as a mail client shows it.
type parsedMail struct {
	header netmail.Header
	text   string
	html   string
}

func parseMail(t *testing.T, data []byte) parsedMail {
	t.Helper()
	m, err := netmail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse mail: %v", err)
	}
	mediaType, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type %q, want multipart/alternative (%v)", m.Header.Get("Content-Type"), err)
	}
	out := parsedMail{header: m.Header}
	parts := multipart.NewReader(m.Body, params["boundary"])
	for {
		// NextPart decodes quoted-printable for us.
		p, err := parts.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("mail part: %v", err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("read mail part: %v", err)
		}
		text := strings.ReplaceAll(string(body), "\r\n", "\n")
		switch ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct {
		case "text/plain":
			out.text = text
		case "text/html":
			out.html = text
		}
	}
	return out
}

func localRelay(addr string) *SMTPConfig {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return &SMTPConfig{Host: host, Port: p, From: "Gatehouse <gatehouse@example.com>", TLS: TLSNone}
}

func TestEmailDeliveredToRequester(t *testing.T) {
	sink := startMailSink(t, "127.0.0.1:0", false)
	clk := newTestClock()
	cfg := Config{SMTP: localRelay(sink.addr), PublicURL: "https://chat.example.com"}
	outbox := newTestOutbox(t)
	enqueue(t, outbox, outboxMessages(t, cfg, clk.Now())...)

	delivered, failed, err := NewWorker(cfg, outbox, nil, WithClock(clk.Now)).DeliverDue(context.Background())
	if err != nil || delivered != 1 || failed != 0 {
		t.Fatalf("DeliverDue = %d delivered, %d failed, %v; want 1, 0, nil", delivered, failed, err)
	}
	got := sink.received()
	if len(got) != 1 {
		t.Fatalf("relay got %d messages, want 1", len(got))
	}
	if got[0].from != "gatehouse@example.com" || len(got[0].to) != 1 || got[0].to[0] != "ada@example.com" {
		t.Errorf("envelope from %q to %q, want gatehouse@example.com to [ada@example.com]", got[0].from, got[0].to)
	}
	m := parseMail(t, got[0].data)
	if to := m.header.Get("To"); to != "<ada@example.com>" {
		t.Errorf("To: %q", to)
	}
	if subject := m.header.Get("Subject"); subject != "Your access request was approved" {
		t.Errorf("Subject: %q", subject)
	}
	if m.text != approvedText {
		t.Errorf("plain-text body =\n%s\nwant\n%s", m.text, approvedText)
	}
	if !strings.Contains(m.html, "<blockquote style=\"white-space: pre-wrap\">Welcome aboard</blockquote>") {
		t.Errorf("html body lacks the comment:\n%s", m.html)
	}
	if left := undelivered(t, outbox); len(left) != 0 {
		t.Errorf("outbox still holds %d undelivered messages", len(left))
	}
}

func TestEmailRelayDownIsRetried(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	clk := newTestClock()
	cfg := Config{SMTP: localRelay(addr), PublicURL: "https://chat.example.com"}
	outbox := newTestOutbox(t)
	msg := outboxMessages(t, cfg, clk.Now())[0]
	enqueue(t, outbox, msg)
	w := NewWorker(cfg, outbox, nil, WithClock(clk.Now))

	start := clk.Now()
	delivered, failed, err := w.DeliverDue(context.Background())
	if err != nil || delivered != 0 || failed != 1 {
		t.Fatalf("DeliverDue with relay down = %d delivered, %d failed, %v; want 0, 1, nil", delivered, failed, err)
	}
	failedMsg := undelivered(t, outbox)[msg.ID]
	wantErr := "smtp " + addr + ": dial failed: "
	if failedMsg.Attempts != 1 || !strings.HasPrefix(failedMsg.LastError, wantErr) || !strings.Contains(failedMsg.LastError, "connection refused") {
		t.Errorf("attempts %d, last error %q; want 1 and %q…connection refused", failedMsg.Attempts, failedMsg.LastError, wantErr)
	}
	if delay := failedMsg.NextAttemptAt.Sub(start); delay < 9*time.Second || delay > 11*time.Second {
		t.Errorf("retry after %s, want 10s ±10%%", delay)
	}

	sink := startMailSink(t, addr, false) // the relay comes back
	clk.Set(failedMsg.NextAttemptAt)
	delivered, failed, err = w.DeliverDue(context.Background())
	if err != nil || delivered != 1 || failed != 0 {
		t.Fatalf("DeliverDue after relay is back = %d delivered, %d failed, %v; want 1, 0, nil", delivered, failed, err)
	}
	if n := len(sink.received()); n != 1 {
		t.Errorf("relay got %d messages, want 1", n)
	}
}

func TestEmailRefusesInsecureRelays(t *testing.T) {
	tests := []struct {
		name              string
		tls               string
		username          string
		insecurePlainAuth bool
		wantErr           string
	}{
		{
			name: "starttls is the default and is required", tls: "",
			wantErr: `dial failed: STARTTLS mode set to: "TLSMandatory", but target host does not support STARTTLS`,
		},
		{
			name: "credentials are never sent over a plain connection", tls: TLSNone,
			username: "gatehouse", insecurePlainAuth: true,
			wantErr: "dial failed: SMTP Auth autodiscover was not able to detect a supported authentication mechanism",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := startMailSink(t, "127.0.0.1:0", tt.insecurePlainAuth)
			clk := newTestClock()
			cfg := Config{SMTP: localRelay(sink.addr)}
			cfg.SMTP.TLS = tt.tls
			cfg.SMTP.Username, cfg.SMTP.Password = tt.username, "relay-password"
			outbox := newTestOutbox(t)
			msg := outboxMessages(t, cfg, clk.Now())[0]
			enqueue(t, outbox, msg)

			_, failed, err := NewWorker(cfg, outbox, nil, WithClock(clk.Now)).DeliverDue(context.Background())
			if err != nil || failed != 1 {
				t.Fatalf("DeliverDue = %d failed, %v; want 1 failed", failed, err)
			}
			if got, want := undelivered(t, outbox)[msg.ID].LastError, "smtp "+sink.addr+": "+tt.wantErr; got != want {
				t.Errorf("last error %q, want %q", got, want)
			}
			if n := len(sink.received()); n != 0 {
				t.Errorf("relay accepted %d messages", n)
			}
			if logins := sink.loginAttempts(); len(logins) != 0 {
				t.Errorf("relay saw logins %q", logins)
			}
		})
	}
}
