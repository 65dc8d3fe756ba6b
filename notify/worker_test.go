package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

func TestUndeliverableMessagesWaitAtTheCap(t *testing.T) {
	clk := newTestClock()
	now := clk.Now()
	rcv := newReceiver(t, "s", clk.Now)
	current := Config{Webhooks: []WebhookConfig{{URL: rcv.URL + "/current", Secret: "s"}}}
	removedHook := Config{Webhooks: []WebhookConfig{{URL: "https://old.example.com/hook?token=abc", Secret: "s"}}, SMTP: relay}
	queued := outboxMessages(t, removedHook, now) // one webhook, one email

	tests := []struct {
		name    string
		msg     store.OutboxMessage
		wantErr string
	}{
		{"webhook no longer configured", queued[0], "webhook 0 (https://old.example.com) is no longer configured"},
		{"email without smtp configured", queued[1], "email notifications are not configured (smtp)"},
		{"unknown channel", store.OutboxMessage{ID: "m-sms", Channel: "sms", Payload: []byte(`{}`)}, `unknown notification channel "sms"`},
		{"corrupt webhook payload", store.OutboxMessage{ID: "m-corrupt", Channel: ChannelWebhook, Payload: []byte(`{"body":`)},
			"decode webhook payload: unexpected end of JSON input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outbox := newTestOutbox(t)
			msg := tt.msg
			msg.CreatedAt, msg.NextAttemptAt, msg.Attempts = now, now, 3
			enqueue(t, outbox, msg)

			delivered, failed, err := NewWorker(current, outbox, nil, WithClock(clk.Now)).DeliverDue(context.Background())
			if err != nil || delivered != 0 || failed != 1 {
				t.Fatalf("DeliverDue = %d delivered, %d failed, %v; want 0, 1, nil", delivered, failed, err)
			}
			got := undelivered(t, outbox)[msg.ID]
			if got.LastError != tt.wantErr {
				t.Errorf("last error %q, want %q", got.LastError, tt.wantErr)
			}
			if want := now.Add(DefaultBackoffCap); !got.NextAttemptAt.Equal(want) || got.Attempts != 4 {
				t.Errorf("next attempt %s (attempt %d), want %s (attempt 4)", got.NextAttemptAt, got.Attempts, want)
			}
		})
	}
	if n := len(rcv.requests()); n != 0 {
		t.Errorf("the configured webhook got %d requests meant for another", n)
	}
}

func TestBackoffDoublesWithJitterUpToTheCap(t *testing.T) {
	w := NewWorker(Config{}, newTestOutbox(t), nil)
	tests := []struct {
		attempts int
		nominal  time.Duration
	}{
		{0, 10 * time.Second},
		{1, 20 * time.Second},
		{2, 40 * time.Second},
		{5, 320 * time.Second},
		{8, 2560 * time.Second},
		{9, time.Hour},
		{40, time.Hour},
		{1 << 30, time.Hour},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.attempts), func(t *testing.T) {
			lo := time.Duration(float64(tt.nominal) * 0.9)
			hi := min(time.Duration(float64(tt.nominal)*1.1), time.Hour)
			for range 100 {
				if d := w.backoff(tt.attempts); d < lo || d > hi {
					t.Fatalf("backoff(%d) = %s, want within [%s, %s]", tt.attempts, d, lo, hi)
				}
			}
		})
	}
}

func TestOnePassTakesAtMostABatch(t *testing.T) {
	clk := newTestClock()
	rcv := newReceiver(t, "s", clk.Now)
	cfg := Config{Webhooks: []WebhookConfig{{URL: rcv.URL, Secret: "s"}}}
	outbox := newTestOutbox(t)
	for i := range BatchSize + 10 {
		msgs := outboxMessages(t, cfg, clk.Now().Add(time.Duration(i)*time.Millisecond))
		enqueue(t, outbox, msgs...)
	}
	w := NewWorker(cfg, outbox, nil, WithClock(clk.Now))
	clk.Advance(time.Second)
	for _, want := range []int{BatchSize, 10, 0} {
		delivered, failed, err := w.DeliverDue(context.Background())
		if err != nil || delivered != want || failed != 0 {
			t.Fatalf("DeliverDue = %d delivered, %d failed, %v; want %d, 0, nil", delivered, failed, err, want)
		}
	}
}

// brokenOutbox is a store that cannot be read.
type brokenOutbox struct{ testOutbox }

var errDatabaseLocked = errors.New("database is locked")

func (brokenOutbox) ClaimOutbox(context.Context, time.Time, int, time.Duration) ([]store.OutboxMessage, error) {
	return nil, errDatabaseLocked
}

func TestPassReportsAStoreFailure(t *testing.T) {
	_, _, err := NewWorker(Config{}, brokenOutbox{newTestOutbox(t)}, nil).DeliverDue(context.Background())
	if !errors.Is(err, errDatabaseLocked) || err.Error() != "read due notifications: database is locked" {
		t.Errorf("DeliverDue error = %v, want read due notifications: database is locked", err)
	}
}

// passSignal reports every ClaimOutbox call, i.e. the start of every pass.
type passSignal struct {
	testOutbox
	passes chan struct{}
}

func (o passSignal) ClaimOutbox(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]store.OutboxMessage, error) {
	msgs, err := o.testOutbox.ClaimOutbox(ctx, now, limit, lease)
	select {
	case o.passes <- struct{}{}:
	default:
	}
	return msgs, err
}

func TestRunDeliversOnWakeAndStopsWithContext(t *testing.T) {
	rcv := newReceiver(t, "s", time.Now)
	cfg := Config{Webhooks: []WebhookConfig{{URL: rcv.URL, Secret: "s"}}}
	outbox := passSignal{newTestOutbox(t), make(chan struct{}, 10)}
	// An hour between polls: anything delivered within the test came from Wake.
	w := NewWorker(cfg, outbox, nil, WithPollInterval(time.Hour))

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(stopped)
	}()

	select {
	case <-outbox.passes:
	case <-time.After(5 * time.Second):
		t.Fatal("Run made no pass at start")
	}
	msgs := outboxMessages(t, cfg, time.Now())
	enqueue(t, outbox, msgs...)
	w.Wake()
	w.Wake() // coalesces; never blocks

	select {
	case <-rcv.arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("Wake did not lead to a delivery")
	}
	if got := rcv.requests(); got[0].header.Get(HeaderDelivery) != msgs[0].ID || got[0].err != nil {
		t.Errorf("delivered %q (verify: %v), want %q", got[0].header.Get(HeaderDelivery), got[0].err, msgs[0].ID)
	}

	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func TestRunDrainsABacklogWithoutWaitingForThePoll(t *testing.T) {
	rcv := newReceiver(t, "s", time.Now)
	cfg := Config{Webhooks: []WebhookConfig{{URL: rcv.URL, Secret: "s"}}}
	outbox := newTestOutbox(t)
	start := time.Now().Add(-time.Minute)
	for i := range BatchSize + 5 {
		enqueue(t, outbox, outboxMessages(t, cfg, start.Add(time.Duration(i)*time.Millisecond))...)
	}
	w := NewWorker(cfg, outbox, nil, WithPollInterval(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)

	for i := range BatchSize + 5 {
		select {
		case <-rcv.arrived:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d messages delivered", i, BatchSize+5)
		}
	}
}

func TestShutdownDoesNotCountAsAFailedAttempt(t *testing.T) {
	clk := newTestClock()
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cancel() // the process is stopping while this delivery is in flight
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release) // before Close, which waits for the handler
	cfg := Config{Webhooks: []WebhookConfig{{URL: hung.URL, Secret: "s"}}}
	outbox := newTestOutbox(t)
	msg := outboxMessages(t, cfg, clk.Now())[0]
	enqueue(t, outbox, msg)

	delivered, failed, err := NewWorker(cfg, outbox, nil, WithClock(clk.Now)).DeliverDue(ctx)
	if err != nil || delivered != 0 || failed != 0 {
		t.Fatalf("DeliverDue = %d delivered, %d failed, %v; want 0, 0, nil", delivered, failed, err)
	}
	got := undelivered(t, outbox)[msg.ID]
	if got.Attempts != 0 || !got.NextAttemptAt.Equal(msg.NextAttemptAt) || got.LastError != "" {
		t.Errorf("message after shutdown: attempts %d, next %s, error %q; want untouched", got.Attempts, got.NextAttemptAt, got.LastError)
	}
}
