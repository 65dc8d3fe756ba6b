package notify

import (
	"context"
	"github.com/gatehouse/gatehouse/internal/testclock"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/storetest"
)

// testOutbox is what these tests need from the store: the outbox methods of
// store.Store and nothing else, so that they can run against the real SQLite
// store by changing newTestOutbox alone.
type testOutbox interface {
	Outbox
	EnqueueOutbox(ctx context.Context, msgs ...store.OutboxMessage) error
	DueOutbox(ctx context.Context, now time.Time, limit int) ([]store.OutboxMessage, error)
}

// newTestOutbox returns an empty outbox: a real SQLite store in a temp dir.
func newTestOutbox(t *testing.T) testOutbox { return storetest.OpenSQLite(t) }

// undelivered reads every undelivered message through the Outbox interface,
// keyed by id.
func undelivered(t *testing.T, o testOutbox) map[string]store.OutboxMessage {
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
type testClock = testclock.Clock

// newTestClock stands at a whole second, since webhook timestamps are unix seconds.
func newTestClock() *testClock { return testclock.New(time.Now().UTC().Truncate(time.Second)) }

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
