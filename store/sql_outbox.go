package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// recordChange writes what a change leaves behind — its audit event and the
// outbox messages that tell of it — in the change's own transaction tx, so
// that the change, its record and its notifications commit together.
func (s *sqlStore) recordChange(ctx context.Context, tx db, audit AuditEvent, outbox []OutboxMessage) error {
	if err := s.enqueueOutbox(ctx, tx, outbox...); err != nil {
		return err
	}
	return s.appendAudit(ctx, tx, audit)
}

func (s *sqlStore) enqueueOutbox(ctx context.Context, q db, msgs ...OutboxMessage) error {
	for _, m := range msgs {
		if m.ID == "" {
			m.ID = uuid.Must(uuid.NewV7()).String()
		}
		created := nowOr(m.CreatedAt)
		next := m.NextAttemptAt
		if next.IsZero() {
			next = created
		}
		payload := m.Payload
		if payload == nil {
			payload = []byte{}
		}
		if _, err := q.exec(ctx, `INSERT INTO outbox (id, channel, payload, attempts, next_attempt_at, created_at, delivered_at, last_error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			m.ID, m.Channel, payload, m.Attempts, s.encodeTime(next), s.encodeTime(created), s.encodeTimePtr(m.DeliveredAt), m.LastError); err != nil {
			return fmt.Errorf("enqueue %s message: %w", m.Channel, err)
		}
	}
	return nil
}

// EnqueueOutbox adds messages for delivery, all or none.
func (s *sqlStore) EnqueueOutbox(ctx context.Context, msgs ...OutboxMessage) error {
	if err := s.inTx(ctx, func(tx db) error { return s.enqueueOutbox(ctx, tx, msgs...) }); err != nil {
		return fmt.Errorf("enqueue outbox: %w", err)
	}
	return nil
}

func scanOutbox(row scanner) (OutboxMessage, error) {
	var m OutboxMessage
	err := row.Scan(&m.ID, &m.Channel, &m.Payload, &m.Attempts, timeCol{&m.NextAttemptAt}, timeCol{&m.CreatedAt},
		nullTimeCol{&m.DeliveredAt}, &m.LastError)
	return m, err
}

// DueOutbox returns undelivered messages whose NextAttemptAt ≤ now, oldest first.
func (s *sqlStore) DueOutbox(ctx context.Context, now time.Time, limit int) ([]OutboxMessage, error) {
	out, err := queryAll(ctx, s.db, scanOutbox, `SELECT id, channel, payload, attempts, next_attempt_at, created_at, delivered_at, last_error
		FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY created_at, id LIMIT $2`,
		s.encodeTime(now), pageLimit(limit, 50, 1000))
	if err != nil {
		return nil, fmt.Errorf("due outbox: %w", err)
	}
	return out, nil
}

// ClaimOutbox claims up to limit due messages that no live claim holds, for
// lease, oldest first: concurrent passes on several instances never get the
// same message, and a claim left by a crashed instance lapses.
func (s *sqlStore) ClaimOutbox(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]OutboxMessage, error) {
	out, err := queryAll(ctx, s.db, scanOutbox, `UPDATE outbox SET claimed_until = $2 WHERE id IN (
			SELECT id FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1
				AND (claimed_until IS NULL OR claimed_until <= $1)
			ORDER BY created_at, id LIMIT $3`+s.skipLocked()+`)
		RETURNING id, channel, payload, attempts, next_attempt_at, created_at, delivered_at, last_error`,
		s.encodeTime(now), s.encodeTime(now.Add(lease)), pageLimit(limit, 50, 1000))
	if err != nil {
		return nil, fmt.Errorf("claim outbox: %w", err)
	}
	slices.SortFunc(out, func(a, b OutboxMessage) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// MarkOutboxDelivered takes a message out of the queue.
func (s *sqlStore) MarkOutboxDelivered(ctx context.Context, id string, at time.Time) error {
	if err := affectedOne(s.db.exec(ctx, `UPDATE outbox SET delivered_at = $1, claimed_until = NULL WHERE id = $2`, s.encodeTime(at), id)); err != nil {
		return fmt.Errorf("mark outbox message %s delivered: %w", id, err)
	}
	return nil
}

// MarkOutboxFailed counts a failed attempt and schedules the next.
func (s *sqlStore) MarkOutboxFailed(ctx context.Context, id string, next time.Time, lastErr string) error {
	if err := affectedOne(s.db.exec(ctx, `UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2,
		claimed_until = NULL WHERE id = $3`, s.encodeTime(next), lastErr, id)); err != nil {
		return fmt.Errorf("mark outbox message %s failed: %w", id, err)
	}
	return nil
}

// OutboxBacklog counts the messages not delivered yet.
func (s *sqlStore) OutboxBacklog(ctx context.Context) (int, error) {
	var n int
	if err := s.db.queryRow(ctx, `SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count outbox backlog: %w", err)
	}
	return n, nil
}
