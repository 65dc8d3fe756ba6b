package notify

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// testOutbox is what these tests need from the store: the outbox methods of
// store.Store and nothing else, so that they can run against the real SQLite
// store by changing newTestOutbox alone.
type testOutbox interface {
	Outbox
	EnqueueOutbox(ctx context.Context, msgs ...store.OutboxMessage) error
}

// newTestOutbox returns an empty outbox.
//
// TEST DOUBLE: the SQLite store is being written at the same time as this
// package, so until it lands the tests use memOutbox below. The lead will
// switch this function to a real store in t.TempDir().
func newTestOutbox(t *testing.T) testOutbox {
	t.Helper()
	return &memOutbox{}
}

// memOutbox is a TEST DOUBLE of store.Store's outbox methods (EnqueueOutbox,
// DueOutbox, MarkOutboxDelivered, MarkOutboxFailed) with the semantics the
// store documents: due means undelivered with NextAttemptAt ≤ now, oldest
// first; a failure counts an attempt and reschedules.
type memOutbox struct {
	mu   sync.Mutex
	msgs []store.OutboxMessage
}

func (o *memOutbox) EnqueueOutbox(_ context.Context, msgs ...store.OutboxMessage) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.msgs = append(o.msgs, msgs...)
	return nil
}

func (o *memOutbox) DueOutbox(_ context.Context, now time.Time, limit int) ([]store.OutboxMessage, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var due []store.OutboxMessage
	for _, m := range o.msgs {
		if m.DeliveredAt == nil && !m.NextAttemptAt.After(now) {
			due = append(due, m)
		}
	}
	slices.SortStableFunc(due, func(a, b store.OutboxMessage) int { return a.CreatedAt.Compare(b.CreatedAt) })
	if len(due) > limit {
		due = due[:limit]
	}
	return due, nil
}

func (o *memOutbox) MarkOutboxDelivered(_ context.Context, id string, at time.Time) error {
	return o.update(id, func(m *store.OutboxMessage) {
		at := at
		m.DeliveredAt = &at
	})
}

func (o *memOutbox) MarkOutboxFailed(_ context.Context, id string, next time.Time, lastErr string) error {
	return o.update(id, func(m *store.OutboxMessage) {
		m.Attempts++
		m.NextAttemptAt = next
		m.LastError = lastErr
	})
}

func (o *memOutbox) update(id string, f func(*store.OutboxMessage)) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := range o.msgs {
		if o.msgs[i].ID == id {
			f(&o.msgs[i])
			return nil
		}
	}
	return fmt.Errorf("outbox message %s: %w", id, store.ErrNotFound)
}

// undelivered reads every undelivered message through the Outbox interface,
// keyed by id.
func undelivered(t *testing.T, o Outbox) map[string]store.OutboxMessage {
	t.Helper()
	msgs, err := o.DueOutbox(context.Background(), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), 10000)
	if err != nil {
		t.Fatalf("DueOutbox: %v", err)
	}
	byID := make(map[string]store.OutboxMessage, len(msgs))
	for _, m := range msgs {
		byID[m.ID] = m
	}
	return byID
}

func enqueue(t *testing.T, o testOutbox, msgs ...store.OutboxMessage) {
	t.Helper()
	if err := o.EnqueueOutbox(context.Background(), msgs...); err != nil {
		t.Fatalf("EnqueueOutbox: %v", err)
	}
}

// testClock is a settable clock for stepping through back-off.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	// Whole seconds, since webhook timestamps are unix seconds.
	return &testClock{now: time.Now().UTC().Truncate(time.Second)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *testClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// decidedRequest is an access request as it reads after approval.
func decidedRequest() store.AccessRequest {
	created := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	decided := time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC)
	expires := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	return store.AccessRequest{
		ID:            "0195a0c4-0000-7000-8000-000000000001",
		User:          store.RequestUser{ID: "u-ada", Email: "ada@example.com", Name: "Ada Lovelace"},
		Name:          "Ada Lovelace",
		Team:          "Research",
		Purpose:       "Evaluate models",
		RequestedRole: "user",
		Status:        store.RequestPending,
		Role:          "user",
		Comment:       "Welcome aboard",
		ReviewedBy:    &store.RequestUser{ID: "u-grace", Email: "grace@example.com", Name: "Grace Hopper"},
		CreatedAt:     created,
		DecidedAt:     &decided,
		ExpiresAt:     &expires,
	}
}

// deniedRequest is an access request as it reads after denial.
func deniedRequest() store.AccessRequest {
	r := decidedRequest()
	r.Role = ""
	r.ExpiresAt = nil
	r.Comment = "Please ask your team lead first"
	return r
}

// outboxMessages builds the messages cfg would enqueue for approving decidedRequest.
func outboxMessages(t *testing.T, cfg Config, now time.Time) []store.OutboxMessage {
	t.Helper()
	msgs, err := cfg.Messages(DecisionEvent{Request: decidedRequest(), Decision: DecisionApproved}, now)
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	// Distinct creation times keep DueOutbox's oldest-first order deterministic.
	for i := range msgs {
		msgs[i].CreatedAt = msgs[i].CreatedAt.Add(time.Duration(i) * time.Millisecond)
	}
	return msgs
}
