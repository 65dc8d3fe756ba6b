package notify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/store"
)

// Outbox is the part of store.Store the worker needs.
type Outbox interface {
	ClaimOutbox(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]store.OutboxMessage, error)
	MarkOutboxDelivered(ctx context.Context, id string, at time.Time) error
	MarkOutboxFailed(ctx context.Context, id string, next time.Time, lastErr string) error
}

// Worker defaults.
const (
	DefaultPollInterval = 5 * time.Second
	DefaultBackoffBase  = 10 * time.Second
	DefaultBackoffCap   = time.Hour
	// BatchSize is how many due messages one pass takes.
	BatchSize = 50
	// parallelDeliveries bounds how many receivers one pass talks to at once,
	// so one slow receiver delays the others by at most one attempt timeout.
	parallelDeliveries = 4
	// markTimeout bounds recording a delivery that completed during shutdown.
	markTimeout = 5 * time.Second
	// claimLease is how long a pass holds the messages it claimed: longer than
	// the pass can take (every attempt of the batch timing out, in turn), so a
	// message goes to one instance at a time; after a crash another instance
	// takes it over once the lease lapses.
	claimLease = (BatchSize/parallelDeliveries+1)*attemptTimeout + 2*markTimeout
	// maxErrorLen keeps a chatty SMTP reply from bloating the outbox row.
	maxErrorLen = 1000
)

// Worker delivers due outbox messages. It holds no store lock or transaction
// while it talks to receivers: a pass claims a batch, delivers it, then records
// each outcome. Workers of several instances share one outbox.
type Worker struct {
	cfg          Config
	outbox       Outbox
	logger       *zap.Logger
	client       *http.Client
	now          func() time.Time
	pollInterval time.Duration
	backoffBase  time.Duration
	backoffCap   time.Duration
	results      func(channel string, delivered bool) // nil: not counted

	wake chan struct{}
	// pass serializes DeliverDue so that Run and a direct caller never send
	// the same message twice at once.
	pass sync.Mutex
}

// Option adjusts a Worker.
type Option func(*Worker)

// WithPollInterval sets how often Run looks for due messages without a Wake.
func WithPollInterval(d time.Duration) Option {
	return func(w *Worker) {
		if d > 0 {
			w.pollInterval = d
		}
	}
}

// WithHTTPClient replaces the webhook HTTP client. Each attempt is still
// bounded by a 10 s context deadline.
func WithHTTPClient(c *http.Client) Option {
	return func(w *Worker) {
		if c != nil {
			w.client = c
		}
	}
}

// WithClock replaces time.Now, for tests that step through back-off.
func WithClock(now func() time.Time) Option {
	return func(w *Worker) {
		if now != nil {
			w.now = now
		}
	}
}

// WithResults has every delivery attempt reported to fn (for metrics).
func WithResults(fn func(channel string, delivered bool)) Option {
	return func(w *Worker) { w.results = fn }
}

// WithBackoff sets the first retry delay and the longest one.
func WithBackoff(base, limit time.Duration) Option {
	return func(w *Worker) {
		if base > 0 {
			w.backoffBase = base
		}
		if limit > 0 {
			w.backoffCap = limit
		}
	}
}

// NewWorker returns a worker delivering for cfg from outbox. It starts
// nothing: call Run.
func NewWorker(cfg Config, outbox Outbox, logger *zap.Logger, opts ...Option) *Worker {
	if logger == nil {
		logger = zap.NewNop()
	}
	w := &Worker{
		cfg:          cfg,
		outbox:       outbox,
		logger:       logger,
		client:       newHTTPClient(),
		now:          time.Now,
		pollInterval: DefaultPollInterval,
		backoffBase:  DefaultBackoffBase,
		backoffCap:   DefaultBackoffCap,
		wake:         make(chan struct{}, 1),
	}
	for _, opt := range opts {
		opt(w)
	}
	if w.backoffBase > w.backoffCap {
		w.backoffBase = w.backoffCap
	}
	return w
}

// Run delivers due messages until ctx is done: at start, every poll interval,
// after a Wake, and straight away again after a full batch.
func (w *Worker) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.wake:
		}
		delivered, failed, err := w.DeliverDue(ctx)
		if err != nil && ctx.Err() == nil {
			w.logger.Error("notification outbox pass failed", zap.Error(err))
		}
		next := w.pollInterval
		if delivered+failed >= BatchSize && err == nil {
			next = 0
		}
		timer.Reset(next)
	}
}

// Wake asks Run for a pass now, typically right after an enqueue. It never
// blocks; wakes that arrive during a pass coalesce into one more pass.
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// DeliverDue makes one pass: it delivers up to BatchSize due messages and
// records each outcome. err reports the store failing, not a receiver.
func (w *Worker) DeliverDue(ctx context.Context) (delivered, failed int, err error) {
	w.pass.Lock()
	defer w.pass.Unlock()

	msgs, err := w.outbox.ClaimOutbox(ctx, w.now(), BatchSize, claimLease)
	if err != nil {
		return 0, 0, fmt.Errorf("read due notifications: %w", err)
	}

	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, parallelDeliveries)
	)
	for _, msg := range msgs {
		if ctx.Err() != nil {
			break // shutting down: the rest stays due for the next start
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			result, markErr := w.deliverOne(ctx, msg)
			if w.results != nil && result != resultInterrupted {
				w.results(msg.Channel, result == resultDelivered)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case markErr != nil:
				errs = append(errs, markErr)
			case result == resultDelivered:
				delivered++
			case result == resultFailed:
				failed++
			}
		})
	}
	wg.Wait()
	return delivered, failed, errors.Join(errs...)
}

type result int

const (
	resultDelivered result = iota
	resultFailed
	// resultInterrupted is an attempt cut short by shutdown, recorded as nothing.
	resultInterrupted
)

// deliverOne attempts msg and records the outcome in the outbox.
func (w *Worker) deliverOne(ctx context.Context, msg store.OutboxMessage) (result, error) {
	var err error
	switch msg.Channel {
	case ChannelWebhook:
		err = w.deliverWebhook(ctx, msg)
	case ChannelEmail:
		err = w.deliverEmail(ctx, msg)
	default:
		err = retryAtCap(fmt.Errorf("unknown notification channel %q", msg.Channel))
	}
	now := w.now()
	if err == nil {
		// Recorded even when shutdown began meanwhile, or the receiver would
		// get it again after the restart.
		markCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
		defer cancel()
		if err := w.outbox.MarkOutboxDelivered(markCtx, msg.ID, now); err != nil {
			// The message will be sent again; receivers de-duplicate on its id.
			return resultDelivered, fmt.Errorf("mark notification %s delivered: %w", msg.ID, err)
		}
		return resultDelivered, nil
	}
	if ctx.Err() != nil {
		// Shutting down: the attempt did not really fail, so leave the
		// message due for the next start instead of pushing it back.
		return resultInterrupted, nil
	}

	delay := w.backoff(msg.Attempts)
	var capped atCapError
	if errors.As(err, &capped) {
		delay = w.backoffCap
	}
	next := now.Add(delay)
	w.logger.Warn("notification delivery failed",
		zap.String("id", msg.ID),
		zap.String("channel", msg.Channel),
		zap.Int("attempt", msg.Attempts+1),
		zap.Time("next_attempt", next),
		zap.Error(err))
	if err := w.outbox.MarkOutboxFailed(ctx, msg.ID, next, truncate(err.Error(), maxErrorLen)); err != nil {
		return resultFailed, fmt.Errorf("mark notification %s failed: %w", msg.ID, err)
	}
	return resultFailed, nil
}

// atCapError is a failure that retrying soon cannot fix — a webhook or
// channel that left the config, a payload that cannot be sent as stored. The
// message waits at the back-off cap, since a config reload may bring its
// receiver back.
type atCapError struct{ error }

func (e atCapError) Unwrap() error { return e.error }

func retryAtCap(err error) error { return atCapError{err} }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// backoff is the delay after a message's (attempts+1)th failure: base
// doubling per attempt, ±10% jitter so retries of a burst spread out, never
// more than the cap.
func (w *Worker) backoff(attempts int) time.Duration {
	d := w.backoffBase
	for i := 0; i < attempts && d < w.backoffCap; i++ {
		d *= 2
	}
	d = time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
	return min(d, w.backoffCap)
}

// A store.Store is an Outbox.
var _ Outbox = store.Store(nil)
