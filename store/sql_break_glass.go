package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

const grantSelect = `SELECT g.id, g.user_id, u.email, u.name, g.role, g.reason, g.code_used,
	g.created_at, g.expires_at, g.ended_at, g.acknowledged_by, a.email, a.name, g.acknowledged_at
	FROM break_glass_grants g
	JOIN users u ON u.id = g.user_id
	LEFT JOIN users a ON a.id = g.acknowledged_by`

func scanGrant(row scanner) (BreakGlassGrant, error) {
	var (
		g                    BreakGlassGrant
		ackBy, ackEm, ackNam sql.NullString
	)
	err := row.Scan(&g.ID, &g.User.ID, &g.User.Email, &g.User.Name, &g.Role, &g.Reason, &g.CodeUsed,
		timeCol{&g.CreatedAt}, timeCol{&g.ExpiresAt}, nullTimeCol{&g.EndedAt}, &ackBy, &ackEm, &ackNam, nullTimeCol{&g.AcknowledgedAt})
	if err != nil {
		return BreakGlassGrant{}, err
	}
	if ackBy.Valid {
		g.AcknowledgedBy = &RequestUser{ID: ackBy.String, Email: ackEm.String, Name: ackNam.String}
	}
	return g, nil
}

func getGrant(ctx context.Context, q db, id string) (BreakGlassGrant, error) {
	g, err := scanGrant(q.queryRow(ctx, grantSelect+` WHERE g.id = $1`, id))
	if err != nil {
		return BreakGlassGrant{}, fmt.Errorf("get break-glass grant %s: %w", id, err)
	}
	return g, nil
}

// SealBreakGlassCode stores a new code's hash with its audit event.
func (s *sqlStore) SealBreakGlassCode(ctx context.Context, hash string, at time.Time, audit AuditEvent) error {
	err := s.inTx(ctx, func(tx db) error {
		if _, err := tx.exec(ctx, `INSERT INTO break_glass_codes (hash, created_at) VALUES ($1, $2)`, hash, s.encodeTime(at)); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("seal break-glass code: %w", err)
	}
	return nil
}

// CreateBreakGlassGrant records a grant, using its code if any.
func (s *sqlStore) CreateBreakGlassGrant(ctx context.Context, g BreakGlassGrant, codeHash string, audit AuditEvent, outbox ...OutboxMessage) (BreakGlassGrant, error) {
	var out BreakGlassGrant
	err := s.inTx(ctx, func(tx db) error {
		if _, err := getUser(ctx, tx, g.User.ID); err != nil {
			return err
		}
		if codeHash != "" {
			n, err := tx.exec(ctx, `UPDATE break_glass_codes SET used_at = $2, used_by = $3 WHERE hash = $1 AND used_at IS NULL`,
				codeHash, s.encodeTime(g.CreatedAt), g.User.ID)
			if err := affectedOne(n, err); err != nil {
				return fmt.Errorf("code: %w", err)
			}
		}
		// The partial unique index, not a prior SELECT, refuses a second
		// grant not ended, so concurrent invocations are safe too.
		if _, err := tx.exec(ctx, `INSERT INTO break_glass_grants
			(id, user_id, role, reason, code_used, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			g.ID, g.User.ID, g.Role, g.Reason, codeHash != "", s.encodeTime(g.CreatedAt), s.encodeTime(g.ExpiresAt)); err != nil {
			return err
		}
		if err := s.recordChange(ctx, tx, audit, outbox); err != nil {
			return err
		}
		var err error
		out, err = getGrant(ctx, tx, g.ID)
		return err
	})
	if err != nil {
		return BreakGlassGrant{}, fmt.Errorf("create break-glass grant for user %s: %w", g.User.ID, err)
	}
	return out, nil
}

// GetBreakGlassGrant returns the grant with id.
func (s *sqlStore) GetBreakGlassGrant(ctx context.Context, id string) (BreakGlassGrant, error) {
	return getGrant(ctx, s.db, id)
}

// ListBreakGlassGrants lists grants, newest first.
func (s *sqlStore) ListBreakGlassGrants(ctx context.Context, f BreakGlassFilter) ([]BreakGlassGrant, error) {
	var w where
	if f.Active {
		w.add("g.ended_at IS NULL AND g.expires_at > ?", s.encodeTime(nowOr(f.Now)))
	}
	if f.Unacknowledged {
		w.add("g.acknowledged_at IS NULL")
	}
	limit := pageLimit(f.Limit, 500, 500)
	out, err := queryAll(ctx, s.db, scanGrant, grantSelect+w.String()+fmt.Sprintf(` ORDER BY g.created_at DESC, g.id DESC LIMIT %d`, limit), w.args...)
	if err != nil {
		return nil, fmt.Errorf("list break-glass grants: %w", err)
	}
	return out, nil
}

// AcknowledgeBreakGlassGrant records the acknowledgement once.
func (s *sqlStore) AcknowledgeBreakGlassGrant(ctx context.Context, id, byUserID string, at time.Time, audit AuditEvent) (BreakGlassGrant, error) {
	var out BreakGlassGrant
	err := s.inTx(ctx, func(tx db) error {
		n, err := tx.exec(ctx, `UPDATE break_glass_grants SET acknowledged_by = $2, acknowledged_at = $3
			WHERE id = $1 AND acknowledged_at IS NULL`, id, byUserID, s.encodeTime(at))
		if err != nil {
			return err
		}
		if n == 0 {
			if _, err := getGrant(ctx, tx, id); err != nil {
				return err
			}
			return fmt.Errorf("%w: acknowledged already", ErrConflict)
		}
		if err := s.appendAudit(ctx, tx, audit); err != nil {
			return err
		}
		out, err = getGrant(ctx, tx, id)
		return err
	})
	if err != nil {
		return BreakGlassGrant{}, fmt.Errorf("acknowledge break-glass grant %s: %w", id, err)
	}
	return out, nil
}

// EndBreakGlassGrants ends the expired grants, each audited.
func (s *sqlStore) EndBreakGlassGrants(ctx context.Context, now time.Time, limit int, audit func(BreakGlassGrant) AuditEvent) ([]BreakGlassGrant, error) {
	var ended []BreakGlassGrant
	err := s.inTx(ctx, func(tx db) error {
		ended = nil
		due, err := queryAll(ctx, tx, scanGrant, grantSelect+
			fmt.Sprintf(` WHERE g.ended_at IS NULL AND g.expires_at <= $1 ORDER BY g.expires_at, g.id LIMIT %d`, pageLimit(limit, 100, 500)),
			s.encodeTime(now))
		if err != nil {
			return err
		}
		for _, g := range due {
			// Another instance may have ended it since the SELECT.
			n, err := tx.exec(ctx, `UPDATE break_glass_grants SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL`, g.ID, s.encodeTime(now))
			if err != nil {
				return err
			}
			if n == 0 {
				continue
			}
			t := now.UTC().Truncate(time.Microsecond)
			g.EndedAt = &t
			if err := s.appendAudit(ctx, tx, audit(g)); err != nil {
				return err
			}
			ended = append(ended, g)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("end break-glass grants: %w", err)
	}
	return ended, nil
}
