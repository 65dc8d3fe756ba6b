package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// appendAudit writes e unless it is the zero event some callers pass when
// nothing needs recording.
func (s *sqlStore) appendAudit(ctx context.Context, q db, e AuditEvent) error {
	if e.Type == "" {
		return nil
	}
	var detail any
	if e.Detail != nil {
		b, err := json.Marshal(e.Detail)
		if err != nil {
			return fmt.Errorf("audit detail: %w", err)
		}
		detail = string(b)
	}
	_, err := q.exec(ctx, `INSERT INTO audit_events (time, type, actor_id, target_id, ip, user_agent, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		s.encodeTime(nowOr(e.Time)), e.Type, e.ActorID, e.TargetID, e.IP, e.UserAgent, detail)
	if err != nil {
		return fmt.Errorf("append audit event %s: %w", e.Type, err)
	}
	return nil
}

// AppendAudit records one event.
func (s *sqlStore) AppendAudit(ctx context.Context, e AuditEvent) error {
	if e.Type == "" {
		return errors.New("append audit event: empty type")
	}
	return s.appendAudit(ctx, s.db, e)
}

// scanAudit reads detail as text, which the JSONB of PostgreSQL casts to.
func scanAudit(row scanner) (AuditEvent, error) {
	var (
		e      AuditEvent
		detail *string
	)
	if err := row.Scan(&e.ID, timeCol{&e.Time}, &e.Type, &e.ActorID, &e.TargetID, &e.IP, &e.UserAgent, &detail); err != nil {
		return AuditEvent{}, err
	}
	if detail != nil {
		if err := json.Unmarshal([]byte(*detail), &e.Detail); err != nil {
			return AuditEvent{}, fmt.Errorf("event %d detail: %w", e.ID, err)
		}
	}
	return e, nil
}

// ListAudit returns events newest first.
func (s *sqlStore) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	var w where
	if f.UserID != "" {
		w.add("(actor_id = ? OR target_id = ?)", f.UserID, f.UserID)
	}
	if f.Type != "" {
		w.add("type = ?", f.Type)
	}
	if f.Before > 0 {
		w.add("id < ?", f.Before)
	}
	out, err := queryAll(ctx, s.db, scanAudit,
		`SELECT id, time, type, actor_id, target_id, ip, user_agent, CAST(detail AS TEXT) FROM audit_events`+
			w.String()+` ORDER BY id DESC LIMIT `+w.next(), append(w.args, pageLimit(f.Limit, 50, 200))...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}
