package notify

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestVerifyWebhook(t *testing.T) {
	const secret = "whsec-test"
	body := []byte(approvedBody)
	sent := time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC)
	signed := func(ts time.Time, secret string, body []byte) http.Header {
		h := http.Header{}
		unix := strconv.FormatInt(ts.Unix(), 10)
		h.Set(HeaderTimestamp, unix)
		h.Set(HeaderSignature, Sign(secret, unix, body))
		return h
	}
	tests := []struct {
		name    string
		secret  string
		header  http.Header
		body    []byte
		now     time.Time
		wantErr error
	}{
		{"genuine", secret, signed(sent, secret, body), body, sent.Add(30 * time.Second), nil},
		{"genuine at the edge of tolerance", secret, signed(sent, secret, body), body, sent.Add(5 * time.Minute), nil},
		{"tampered body", secret, signed(sent, secret, body), []byte(strings.Replace(approvedBody, `"role":"user"`, `"role":"admin"`, 1)), sent, ErrInvalidSignature},
		{"wrong secret", "another-secret", signed(sent, secret, body), body, sent, ErrInvalidSignature},
		{"stale timestamp", secret, signed(sent, secret, body), body, sent.Add(5*time.Minute + time.Second), ErrStaleTimestamp},
		{"timestamp from the future", secret, signed(sent.Add(time.Hour), secret, body), body, sent, ErrStaleTimestamp},
		{"timestamp swapped for a fresh one", secret, func() http.Header {
			h := signed(sent, secret, body)
			h.Set(HeaderTimestamp, strconv.FormatInt(sent.Add(time.Hour).Unix(), 10))
			return h
		}(), body, sent.Add(time.Hour), ErrInvalidSignature},
		{"no signature", secret, func() http.Header { h := signed(sent, secret, body); h.Del(HeaderSignature); return h }(), body, sent, ErrInvalidSignature},
		{"signature without sha256 prefix", secret, func() http.Header {
			h := signed(sent, secret, body)
			h.Set(HeaderSignature, strings.TrimPrefix(h.Get(HeaderSignature), "sha256="))
			return h
		}(), body, sent, ErrInvalidSignature},
		{"no timestamp", secret, func() http.Header { h := signed(sent, secret, body); h.Del(HeaderTimestamp); return h }(), body, sent, ErrInvalidSignature},
		{"empty secret", "", signed(sent, "", body), body, sent, ErrInvalidSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyWebhook(tt.secret, tt.header, tt.body, tt.now, 0)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("VerifyWebhook() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// received is one request a test webhook receiver got.
type received struct {
	header http.Header
	body   string
	err    error // VerifyWebhook's verdict
}

// receiver is a real HTTP webhook endpoint that verifies every request it
// gets and answers with the next status of its script (200 once the script
// runs out).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	got      []received
	statuses []int
	arrived  chan struct{}
}

func newReceiver(t *testing.T, secret string, clock func() time.Time, statuses ...int) *receiver {
	t.Helper()
	r := &receiver{statuses: statuses, arrived: make(chan struct{}, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{
			header: req.Header.Clone(),
			body:   string(body),
			err:    VerifyWebhook(secret, req.Header, body, clock(), time.Minute),
		})
		status := http.StatusOK
		if len(r.statuses) > 0 {
			status, r.statuses = r.statuses[0], r.statuses[1:]
		}
		r.mu.Unlock()
		if status >= 300 && status < 400 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
		r.arrived <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func TestWebhookDeliveredSignedWithEventHeaders(t *testing.T) {
	ctx := context.Background()
	clk := newTestClock()
	rcv := newReceiver(t, "secret-a", clk.Now)
	cfg := Config{Webhooks: []WebhookConfig{{URL: rcv.URL + "/hooks/gatehouse", Secret: "secret-a"}}}
	outbox := newTestOutbox(t)
	msgs := outboxMessages(t, cfg, clk.Now())
	enqueue(t, outbox, msgs...)

	delivered, failed, err := NewWorker(cfg, outbox, nil, WithClock(clk.Now)).DeliverDue(ctx)
	if err != nil || delivered != 1 || failed != 0 {
		t.Fatalf("DeliverDue = %d delivered, %d failed, %v; want 1, 0, nil", delivered, failed, err)
	}
	got := rcv.requests()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(got))
	}
	if got[0].err != nil {
		t.Errorf("receiver rejected the signature: %v", got[0].err)
	}
	if got[0].body != approvedBody {
		t.Errorf("body =\n%s\nwant\n%s", got[0].body, approvedBody)
	}
	wantHeaders := map[string]string{
		"Content-Type":  "application/json",
		HeaderEvent:     EventApproved,
		HeaderDelivery:  msgs[0].ID,
		HeaderTimestamp: strconv.FormatInt(clk.Now().Unix(), 10),
	}
	for name, want := range wantHeaders {
		if v := got[0].header.Get(name); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}
	if left := undelivered(t, outbox); len(left) != 0 {
		t.Errorf("outbox still holds %d undelivered messages", len(left))
	}
}

func TestWebhookRetriedWithGrowingBackoffUntilDelivered(t *testing.T) {
	ctx := context.Background()
	clk := newTestClock()
	rcv := newReceiver(t, "secret-a", clk.Now, http.StatusServiceUnavailable, http.StatusInternalServerError)
	cfg := Config{Webhooks: []WebhookConfig{{URL: rcv.URL, Secret: "secret-a"}}}
	outbox := newTestOutbox(t)
	msg := outboxMessages(t, cfg, clk.Now())[0]
	enqueue(t, outbox, msg)
	w := NewWorker(cfg, outbox, nil, WithClock(clk.Now))

	pass := func(wantDelivered, wantFailed int) {
		t.Helper()
		delivered, failed, err := w.DeliverDue(ctx)
		if err != nil || delivered != wantDelivered || failed != wantFailed {
			t.Fatalf("DeliverDue = %d delivered, %d failed, %v; want %d, %d, nil", delivered, failed, err, wantDelivered, wantFailed)
		}
	}
	host := "http://" + rcv.Listener.Addr().String()

	start := clk.Now()
	pass(0, 1)
	first := undelivered(t, outbox)[msg.ID]
	if first.Attempts != 1 || first.LastError != "webhook "+host+": HTTP 503 Service Unavailable" {
		t.Errorf("after first failure: attempts %d, last error %q", first.Attempts, first.LastError)
	}
	firstDelay := first.NextAttemptAt.Sub(start)
	if firstDelay < 9*time.Second || firstDelay > 11*time.Second {
		t.Errorf("first retry after %s, want 10s ±10%%", firstDelay)
	}

	clk.Set(first.NextAttemptAt.Add(-time.Second))
	pass(0, 0) // not due yet

	clk.Set(first.NextAttemptAt)
	pass(0, 1)
	second := undelivered(t, outbox)[msg.ID]
	if second.Attempts != 2 || second.LastError != "webhook "+host+": HTTP 500 Internal Server Error" {
		t.Errorf("after second failure: attempts %d, last error %q", second.Attempts, second.LastError)
	}
	secondDelay := second.NextAttemptAt.Sub(first.NextAttemptAt)
	if secondDelay < 18*time.Second || secondDelay > 22*time.Second || secondDelay <= firstDelay {
		t.Errorf("second retry after %s (first after %s), want 20s ±10%%", secondDelay, firstDelay)
	}

	clk.Set(second.NextAttemptAt)
	pass(1, 0)
	if left := undelivered(t, outbox); len(left) != 0 {
		t.Errorf("outbox still holds %v after delivery", left)
	}
	got := rcv.requests()
	if len(got) != 3 {
		t.Fatalf("receiver got %d requests, want 3", len(got))
	}
	for i, r := range got {
		if r.err != nil || r.header.Get(HeaderDelivery) != msg.ID || r.body != approvedBody {
			t.Errorf("attempt %d: verify %v, delivery id %q, body changed %v", i+1, r.err, r.header.Get(HeaderDelivery), r.body != approvedBody)
		}
	}
}

func TestWebhookOnlyTwoHundredsCountAsDelivered(t *testing.T) {
	tests := []struct {
		status        int
		wantDelivered bool
	}{
		{http.StatusOK, true},
		{http.StatusAccepted, true},
		{http.StatusNoContent, true},
		{http.StatusTemporaryRedirect, false}, // not followed: the signed body stays with the receiver we trust
		{http.StatusFound, false},
		{http.StatusBadRequest, false},
		{http.StatusUnauthorized, false},
		{http.StatusNotFound, false},
		{http.StatusBadGateway, false},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			clk := newTestClock()
			rcv := newReceiver(t, "s", clk.Now, tt.status)
			cfg := Config{Webhooks: []WebhookConfig{{URL: rcv.URL, Secret: "s"}}}
			outbox := newTestOutbox(t)
			enqueue(t, outbox, outboxMessages(t, cfg, clk.Now())...)
			delivered, failed, err := NewWorker(cfg, outbox, nil, WithClock(clk.Now)).DeliverDue(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if (delivered == 1) != tt.wantDelivered || delivered+failed != 1 {
				t.Errorf("status %d: %d delivered, %d failed; want delivered=%v", tt.status, delivered, failed, tt.wantDelivered)
			}
			if n := len(rcv.requests()); n != 1 {
				t.Errorf("receiver got %d requests, want exactly 1 (no redirect followed)", n)
			}
		})
	}
}

func TestWebhookErrorsNeverRecordURLSecrets(t *testing.T) {
	clk := newTestClock()
	rcv := newReceiver(t, "s", clk.Now, http.StatusInternalServerError)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := closed.Addr().String()
	closed.Close()

	const token = "/services/T0001/B0001/XoXbSeCrEt?key=hunter2"
	cfg := Config{Webhooks: []WebhookConfig{
		{URL: rcv.URL + token, Secret: "signing-secret"},
		{URL: "http://" + downAddr + token, Secret: "signing-secret"},
	}}
	outbox := newTestOutbox(t)
	msgs := outboxMessages(t, cfg, clk.Now())
	enqueue(t, outbox, msgs...)
	_, failed, err := NewWorker(cfg, outbox, nil, WithClock(clk.Now)).DeliverDue(context.Background())
	if err != nil || failed != 2 {
		t.Fatalf("DeliverDue: %d failed, %v; want 2 failed", failed, err)
	}
	left := undelivered(t, outbox)
	wantPrefix := map[string]string{
		msgs[0].ID: "webhook http://" + rcv.Listener.Addr().String() + ": HTTP 500",
		msgs[1].ID: "webhook http://" + downAddr + ": dial tcp " + downAddr + ": connect: connection refused",
	}
	for id, want := range wantPrefix {
		lastErr := left[id].LastError
		if !strings.HasPrefix(lastErr, want) {
			t.Errorf("last error %q, want prefix %q", lastErr, want)
		}
		for _, secret := range []string{"XoXbSeCrEt", "hunter2", "signing-secret"} {
			if strings.Contains(lastErr, secret) {
				t.Errorf("last error %q reveals %q", lastErr, secret)
			}
		}
	}
}

func TestWebhookSecretAndPositionComeFromCurrentConfig(t *testing.T) {
	clk := newTestClock()
	rcv := newReceiver(t, "rotated-secret", clk.Now)
	hook := WebhookConfig{URL: rcv.URL + "/b", Secret: "old-secret"}
	enqueuedWith := Config{Webhooks: []WebhookConfig{{URL: "https://gone.example.com/a", Secret: "a"}, hook}}
	outbox := newTestOutbox(t)
	msgs := outboxMessages(t, enqueuedWith, clk.Now())
	enqueue(t, outbox, msgs[1])

	// The config was edited since: the hook moved to index 0 and its secret rotated.
	current := Config{Webhooks: []WebhookConfig{{URL: hook.URL, Secret: "rotated-secret"}}}
	delivered, _, err := NewWorker(current, outbox, nil, WithClock(clk.Now)).DeliverDue(context.Background())
	if err != nil || delivered != 1 {
		t.Fatalf("DeliverDue: %d delivered, %v; want 1", delivered, err)
	}
	if got := rcv.requests(); len(got) != 1 || got[0].err != nil {
		t.Fatalf("receiver verdicts: %+v", got)
	}
}
