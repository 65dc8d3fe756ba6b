package tests

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// webhookReceiver records every delivery it gets.
type webhookReceiver struct {
	*httptest.Server
	mu         sync.Mutex
	deliveries []delivery
	delay      time.Duration // how long it takes to answer, like a busy receiver
}

type delivery struct {
	header http.Header
	body   []byte
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	wr := &webhookReceiver{}
	wr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		time.Sleep(wr.delay)
		wr.mu.Lock()
		wr.deliveries = append(wr.deliveries, delivery{header: r.Header.Clone(), body: body})
		wr.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(wr.Close)
	return wr
}

// wait returns the deliveries once there are at least n, or fails after timeout.
func (wr *webhookReceiver) wait(t *testing.T, n int, timeout time.Duration) []delivery {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		wr.mu.Lock()
		got := append([]delivery(nil), wr.deliveries...)
		wr.mu.Unlock()
		if len(got) >= n {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("webhook: fewer than %d deliveries after %s", n, timeout)
	return nil
}

// mailbox is a real SMTP server (go-smtp) that keeps every message.
type mailbox struct {
	addr     string
	mu       sync.Mutex
	messages []mail
}

type mail struct {
	from string
	to   []string
	data string
}

func newMailbox(t *testing.T) *mailbox {
	mb := &mailbox{}
	srv := smtp.NewServer(mb)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mb.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return mb
}

func (mb *mailbox) NewSession(*smtp.Conn) (smtp.Session, error) { return &mailSession{mb: mb}, nil }

func (mb *mailbox) wait(t *testing.T, n int, timeout time.Duration) []mail {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		mb.mu.Lock()
		got := append([]mail(nil), mb.messages...)
		mb.mu.Unlock()
		if len(got) >= n {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("smtp: fewer than %d messages after %s", n, timeout)
	return nil
}

type mailSession struct {
	mb  *mailbox
	cur mail
}

func (s *mailSession) AuthMechanisms() []string { return nil }
func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	s.cur.from = from
	return nil
}
func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}
func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = string(b)
	s.mb.mu.Lock()
	s.mb.messages = append(s.mb.messages, s.cur)
	s.mb.mu.Unlock()
	s.cur = mail{}
	return nil
}
func (s *mailSession) Reset()        { s.cur = mail{} }
func (s *mailSession) Logout() error { return nil }
