package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

const requestSelect = `SELECT r.id, r.user_id, u.email, u.name, r.name, r.team, r.purpose, r.requested_role,
	r.status, r.role, r.comment, r.reviewed_by, rv.email, rv.name, r.created_at, r.decided_at, r.expires_at
	FROM access_requests r
	JOIN users u ON u.id = r.user_id
	LEFT JOIN users rv ON rv.id = r.reviewed_by`

func scanRequest(row scanner) (AccessRequest, error) {
	var (
		r                           AccessRequest
		reviewer, revEmail, revName sql.NullString
	)
	err := row.Scan(&r.ID, &r.User.ID, &r.User.Email, &r.User.Name, &r.Name, &r.Team, &r.Purpose, &r.RequestedRole,
		&r.Status, &r.Role, &r.Comment, &reviewer, &revEmail, &revName,
		timeCol{&r.CreatedAt}, nullTimeCol{&r.DecidedAt}, nullTimeCol{&r.ExpiresAt})
	if err != nil {
		return AccessRequest{}, err
	}
	if reviewer.Valid {
		r.ReviewedBy = &RequestUser{ID: reviewer.String, Email: revEmail.String, Name: revName.String}
	}
	return r, nil
}

func getRequest(ctx context.Context, q db, id string) (AccessRequest, error) {
	r, err := scanRequest(q.queryRow(ctx, requestSelect+` WHERE r.id = $1`, id))
	if err != nil {
		return AccessRequest{}, fmt.Errorf("get access request %s: %w", id, err)
	}
	return r, nil
}

// CreateAccessRequest records a pending request with its audit event and its
// outbox messages; ErrConflict while the user already has one.
func (s *sqlStore) CreateAccessRequest(ctx context.Context, r AccessRequest, audit AuditEvent, outbox ...OutboxMessage) (AccessRequest, error) {
	if r.ID == "" {
		r.ID = uuid.Must(uuid.NewV7()).String()
	}
	var out AccessRequest
	err := s.inTx(ctx, func(tx db) error {
		if _, err := getUser(ctx, tx, r.User.ID); err != nil {
			return err
		}
		// The partial unique index, not a prior SELECT, is what rejects a
		// second pending request, so concurrent submissions are safe too.
		if _, err := tx.exec(ctx, `INSERT INTO access_requests
			(id, user_id, name, team, purpose, requested_role, status, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)`,
			r.ID, r.User.ID, r.Name, r.Team, r.Purpose, r.RequestedRole, s.encodeTime(nowOr(r.CreatedAt))); err != nil {
			return err
		}
		if err := s.recordChange(ctx, tx, audit, outbox); err != nil {
			return err
		}
		var err error
		out, err = getRequest(ctx, tx, r.ID)
		return err
	})
	if err != nil {
		return AccessRequest{}, fmt.Errorf("create access request for user %s: %w", r.User.ID, err)
	}
	return out, nil
}

// GetAccessRequest returns the request with id.
func (s *sqlStore) GetAccessRequest(ctx context.Context, id string) (AccessRequest, error) {
	return getRequest(ctx, s.db, id)
}

// LatestAccessRequest returns the user's most recent request.
func (s *sqlStore) LatestAccessRequest(ctx context.Context, userID string) (AccessRequest, error) {
	r, err := scanRequest(s.db.queryRow(ctx, requestSelect+
		` WHERE r.user_id = $1 ORDER BY r.created_at DESC, r.id DESC LIMIT 1`, userID))
	if err != nil {
		return AccessRequest{}, fmt.Errorf("latest access request of user %s: %w", userID, err)
	}
	return r, nil
}

// ListAccessRequests lists requests with status ("" or "all": every one), oldest first.
func (s *sqlStore) ListAccessRequests(ctx context.Context, status string) ([]AccessRequest, error) {
	var w where
	if status != "" && status != "all" {
		w.add("r.status = ?", status)
	}
	out, err := queryAll(ctx, s.db, scanRequest, requestSelect+w.String()+` ORDER BY r.created_at, r.id`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("list access requests: %w", err)
	}
	return out, nil
}

// DecideAccessRequest applies a reviewer's decision, the user's new status,
// the outbox messages and the audit event in one transaction.
func (s *sqlStore) DecideAccessRequest(ctx context.Context, d Decision) (AccessRequest, error) {
	now := nowOr(d.Now)
	var out AccessRequest
	err := s.inTx(ctx, func(tx db) error {
		if err := s.lockAdmins(ctx, tx); err != nil {
			return err
		}
		req, err := getRequest(ctx, tx, d.RequestID)
		if err != nil {
			return err
		}
		if req.Status != RequestPending {
			return fmt.Errorf("%w: request is %s", ErrConflict, req.Status)
		}
		user, err := getUser(ctx, tx, req.User.ID)
		if err != nil {
			return err
		}
		status, role, userStatus, expires := RequestDenied, "", StatusDenied, (*time.Time)(nil)
		if d.Approve {
			status, role, userStatus, expires = RequestApproved, d.Role, StatusActive, d.ExpiresAt
			if role == "" {
				role = req.RequestedRole
			}
			if role == "" {
				role = "user"
			}
		}
		userRole := user.Role
		if d.Approve {
			userRole = role
		}
		if err := keepAnAdmin(ctx, tx, user, userRole, userStatus); err != nil {
			return err
		}
		// The status guard makes the decision safe even where the read above
		// did not lock the row.
		err = affectedOne(tx.exec(ctx, `UPDATE access_requests
			SET status = $1, role = $2, comment = $3, reviewed_by = $4, decided_at = $5, expires_at = $6
			WHERE id = $7 AND status = 'pending'`,
			status, role, d.Comment, d.ReviewerID, s.encodeTime(now), s.encodeTimePtr(expires), d.RequestID))
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: request is no longer pending", ErrConflict)
		}
		if err != nil {
			return err
		}
		if _, err := tx.exec(ctx, `UPDATE users SET role = $1, status = $2, access_expires_at = $3 WHERE id = $4`,
			userRole, userStatus, s.encodeTimePtr(expires), user.ID); err != nil {
			return err
		}
		if err := s.recordChange(ctx, tx, d.Audit, d.Outbox); err != nil {
			return err
		}
		out, err = getRequest(ctx, tx, d.RequestID)
		return err
	})
	if err != nil {
		return AccessRequest{}, fmt.Errorf("decide access request %s: %w", d.RequestID, err)
	}
	return out, nil
}

// ExpireAccessRequests expires the requests left pending since before
// cutoff, each in a transaction of its own with what follow returns for it:
// a request decided in the meantime is passed over, not an error.
func (s *sqlStore) ExpireAccessRequests(ctx context.Context, cutoff, now time.Time, limit int,
	follow func(AccessRequest) (RequestExpiry, error)) ([]AccessRequest, error) {
	ids, err := queryAll(ctx, s.db, scanID, `SELECT id FROM access_requests
		WHERE status = 'pending' AND created_at < $1 ORDER BY created_at, id LIMIT $2`,
		s.encodeTime(cutoff), pageLimit(limit, 100, 1000))
	if err != nil {
		return nil, fmt.Errorf("list access requests pending since before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
	}
	now = nowOr(now)
	var expired []AccessRequest
	for _, id := range ids {
		var out AccessRequest
		err := s.inTx(ctx, func(tx db) error {
			// The status guard leaves a request decided in the meantime, or
			// expired by another instance, as it is.
			err := affectedOne(tx.exec(ctx, `UPDATE access_requests SET status = 'expired', decided_at = $1
				WHERE id = $2 AND status = 'pending'`, s.encodeTime(now), id))
			if err != nil {
				return err
			}
			if out, err = getRequest(ctx, tx, id); err != nil {
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
		case errors.Is(err, ErrNotFound):
			continue // no longer pending
		case err != nil:
			return expired, fmt.Errorf("expire access request %s: %w", id, err)
		}
		expired = append(expired, out)
	}
	return expired, nil
}
