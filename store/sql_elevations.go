package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

const elevationSelect = `SELECT e.id, e.user_id, u.email, u.name, e.from_role, e.role, e.duration_seconds, e.reason,
	e.status, e.comment, e.reviewed_by, rv.email, rv.name, e.created_at, e.decided_at, e.expires_at, e.ended_at
	FROM elevation_requests e
	JOIN users u ON u.id = e.user_id
	LEFT JOIN users rv ON rv.id = e.reviewed_by`

func scanElevation(row scanner) (Elevation, error) {
	var (
		e                           Elevation
		reviewer, revEmail, revName sql.NullString
	)
	err := row.Scan(&e.ID, &e.User.ID, &e.User.Email, &e.User.Name, &e.FromRole, &e.Role, &e.DurationSeconds, &e.Reason,
		&e.Status, &e.Comment, &reviewer, &revEmail, &revName,
		timeCol{&e.CreatedAt}, nullTimeCol{&e.DecidedAt}, nullTimeCol{&e.ExpiresAt}, nullTimeCol{&e.EndedAt})
	if err != nil {
		return Elevation{}, err
	}
	if reviewer.Valid {
		e.ReviewedBy = &RequestUser{ID: reviewer.String, Email: revEmail.String, Name: revName.String}
	}
	return e, nil
}

func getElevation(ctx context.Context, q db, id string) (Elevation, error) {
	e, err := scanElevation(q.queryRow(ctx, elevationSelect+` WHERE e.id = $1`, id))
	if err != nil {
		return Elevation{}, fmt.Errorf("get elevation %s: %w", id, err)
	}
	return e, nil
}

// CreateElevation records a pending elevation with its audit event and its
// outbox messages; ErrConflict while the user has one pending or approved.
func (s *sqlStore) CreateElevation(ctx context.Context, e Elevation, audit AuditEvent, outbox ...OutboxMessage) (Elevation, error) {
	if e.ID == "" {
		e.ID = uuid.Must(uuid.NewV7()).String()
	}
	var out Elevation
	err := s.inTx(ctx, func(tx db) error {
		if _, err := getUser(ctx, tx, e.User.ID); err != nil {
			return err
		}
		// The partial unique index, not a prior SELECT, is what rejects a
		// second open elevation, so concurrent requests are safe too.
		if _, err := tx.exec(ctx, `INSERT INTO elevation_requests
			(id, user_id, from_role, role, duration_seconds, reason, status, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)`,
			e.ID, e.User.ID, e.FromRole, e.Role, e.DurationSeconds, e.Reason, s.encodeTime(nowOr(e.CreatedAt))); err != nil {
			return err
		}
		if err := s.recordChange(ctx, tx, audit, outbox); err != nil {
			return err
		}
		var err error
		out, err = getElevation(ctx, tx, e.ID)
		return err
	})
	if err != nil {
		return Elevation{}, fmt.Errorf("create elevation for user %s: %w", e.User.ID, err)
	}
	return out, nil
}

// GetElevation returns the elevation with id.
func (s *sqlStore) GetElevation(ctx context.Context, id string) (Elevation, error) {
	return getElevation(ctx, s.db, id)
}

// ListElevations lists the elevations f selects, oldest first.
func (s *sqlStore) ListElevations(ctx context.Context, f ElevationFilter) ([]Elevation, error) {
	var w where
	if f.UserID != "" {
		w.add("e.user_id = ?", f.UserID)
	}
	if f.Status != "" {
		w.add("e.status = ?", f.Status)
	}
	out, err := queryAll(ctx, s.db, scanElevation, elevationSelect+w.String()+` ORDER BY e.created_at, e.id`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("list elevations: %w", err)
	}
	return out, nil
}

// DecideElevation applies a reviewer's decision, the user's new role, the
// outbox messages and the audit event in one transaction.
func (s *sqlStore) DecideElevation(ctx context.Context, d ElevationDecision) (Elevation, error) {
	now := nowOr(d.Now)
	var out Elevation
	err := s.inTx(ctx, func(tx db) error {
		if err := s.lockAdmins(ctx, tx); err != nil {
			return err
		}
		e, err := getElevation(ctx, tx, d.ID)
		if err != nil {
			return err
		}
		if e.Status != ElevationPending {
			return fmt.Errorf("%w: elevation is %s", ErrConflict, e.Status)
		}
		status, fromRole, expires := ElevationDenied, e.FromRole, (*time.Time)(nil)
		if d.Approve {
			user, err := getUser(ctx, tx, e.User.ID)
			if err != nil {
				return err
			}
			if user.Role != d.FromRole {
				return fmt.Errorf("%w: the user's role is now %s", ErrConflict, user.Role)
			}
			if err := keepAnAdmin(ctx, tx, user, e.Role, user.Status); err != nil {
				return err
			}
			end := now.Add(time.Duration(e.DurationSeconds) * time.Second)
			status, fromRole, expires = ElevationApproved, user.Role, &end
			if _, err := tx.exec(ctx, `UPDATE users SET role = $1 WHERE id = $2`, e.Role, user.ID); err != nil {
				return err
			}
		}
		// The status guard makes the decision safe even where the read above
		// did not lock the row.
		err = affectedOne(tx.exec(ctx, `UPDATE elevation_requests
			SET status = $1, from_role = $2, comment = $3, reviewed_by = $4, decided_at = $5, expires_at = $6
			WHERE id = $7 AND status = 'pending'`,
			status, fromRole, d.Comment, d.ReviewerID, s.encodeTime(now), s.encodeTimePtr(expires), d.ID))
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: elevation is no longer pending", ErrConflict)
		}
		if err != nil {
			return err
		}
		if err := s.recordChange(ctx, tx, d.Audit, d.Outbox); err != nil {
			return err
		}
		out, err = getElevation(ctx, tx, d.ID)
		return err
	})
	if err != nil {
		return Elevation{}, fmt.Errorf("decide elevation %s: %w", d.ID, err)
	}
	return out, nil
}

// ExpireElevations ends the approved elevations due by now, each in a
// transaction of its own with what follow returns for it: one ended in the
// meantime is passed over, not an error, and so is one whose fall back would
// leave no active admin.
func (s *sqlStore) ExpireElevations(ctx context.Context, now time.Time, limit int,
	follow func(Elevation) (RequestExpiry, error)) ([]Elevation, error) {
	now = nowOr(now)
	ids, err := queryAll(ctx, s.db, scanID, `SELECT id FROM elevation_requests
		WHERE status = 'approved' AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2`,
		s.encodeTime(now), pageLimit(limit, 100, 1000))
	if err != nil {
		return nil, fmt.Errorf("list elevations due by %s: %w", now.UTC().Format(time.RFC3339), err)
	}
	var ended []Elevation
	for _, id := range ids {
		var out Elevation
		err := s.inTx(ctx, func(tx db) error {
			if err := s.lockAdmins(ctx, tx); err != nil {
				return err
			}
			e, err := getElevation(ctx, tx, id)
			if err != nil {
				return err
			}
			user, err := getUser(ctx, tx, e.User.ID)
			if err != nil {
				return err
			}
			status := ElevationEnded
			if user.Role == e.Role {
				status = ElevationExpired
				if err := keepAnAdmin(ctx, tx, user, e.FromRole, user.Status); err != nil {
					return err
				}
			}
			// The status guard leaves an elevation ended in the meantime, or
			// by another instance, as it is.
			err = affectedOne(tx.exec(ctx, `UPDATE elevation_requests SET status = $1, ended_at = $2
				WHERE id = $3 AND status = 'approved'`, status, s.encodeTime(now), id))
			if err != nil {
				return err
			}
			if status == ElevationExpired {
				if _, err := tx.exec(ctx, `UPDATE users SET role = $1 WHERE id = $2`, e.FromRole, user.ID); err != nil {
					return err
				}
			}
			if out, err = getElevation(ctx, tx, id); err != nil {
				return err
			}
			var then RequestExpiry
			if follow != nil {
				if then, err = follow(out); err != nil {
					return err
				}
			}
			return s.recordChange(ctx, tx, then.Audit, then.Outbox)
		})
		switch {
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict):
			continue // no longer approved, or the last active admin
		case err != nil:
			return ended, fmt.Errorf("expire elevation %s: %w", id, err)
		}
		ended = append(ended, out)
	}
	return ended, nil
}

// endElevations ends the user's approved elevation within tx, because
// someone set their role: the expiry must not undo it.
func (s *sqlStore) endElevations(ctx context.Context, tx db, userID string, at time.Time) error {
	_, err := tx.exec(ctx, `UPDATE elevation_requests SET status = 'ended', ended_at = $1
		WHERE user_id = $2 AND status = 'approved'`, s.encodeTime(at), userID)
	return err
}
