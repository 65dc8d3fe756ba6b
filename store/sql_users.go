package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/quota"
)

// userColumns reads limits as text, which both backends can cast to.
const userColumns = `id, issuer, subject, email, name, role, status, created_at, last_login_at, access_expires_at, CAST(limits AS TEXT), provider`

func scanUser(row scanner) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Issuer, &u.Subject, &u.Email, &u.Name, &u.Role, &u.Status,
		timeCol{&u.CreatedAt}, nullTimeCol{&u.LastLoginAt}, nullTimeCol{&u.AccessExpiresAt}, jsonCol[*quota.Limits]{&u.Limits, "limits"}, &u.Provider)
	return u, err
}

func getUser(ctx context.Context, q db, id string) (User, error) {
	u, err := scanUser(q.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return User{}, fmt.Errorf("get user %s: %w", id, err)
	}
	return u, nil
}

// RecordLogin creates or refreshes the user signing in.
func (s *sqlStore) RecordLogin(ctx context.Context, info LoginInfo) (User, error) {
	now := s.encodeTime(nowOr(info.Now))
	var u User
	err := s.inTx(ctx, func(tx db) error {
		if _, err := tx.exec(ctx, `INSERT INTO users (id, issuer, subject, email, name, role, status, created_at, provider)
			VALUES ($1, $2, $3, $4, $5, 'user', 'pending', $6, $7) ON CONFLICT (issuer, subject) DO NOTHING`,
			uuid.Must(uuid.NewV7()).String(), info.Issuer, info.Subject, info.Email, info.Name, now, info.Provider); err != nil {
			return err
		}
		if info.BootstrapAdmin && info.Email != "" {
			if err := s.grantBootstrap(ctx, tx, info, now); err != nil {
				return err
			}
		}
		var err error
		u, err = scanUser(tx.queryRow(ctx, `UPDATE users SET email = $1, name = $2, last_login_at = $3, provider = $6
			WHERE issuer = $4 AND subject = $5 RETURNING `+userColumns,
			info.Email, info.Name, now, info.Issuer, info.Subject, info.Provider))
		return err
	})
	if err != nil {
		return User{}, fmt.Errorf("record login: %w", err)
	}
	return u, nil
}

// grantBootstrap makes the signing-in user an active admin when it is pending
// and its email has never been granted bootstrap_admin; the grant is recorded
// in the same transaction, so it happens once per email.
func (s *sqlStore) grantBootstrap(ctx context.Context, tx db, info LoginInfo, now any) error {
	var id, status string
	if err := tx.queryRow(ctx, `SELECT id, status FROM users WHERE issuer = $1 AND subject = $2`,
		info.Issuer, info.Subject).Scan(&id, &status); err != nil {
		return err
	}
	if status != StatusPending {
		return nil
	}
	n, err := tx.exec(ctx, `INSERT INTO bootstrap_grants (email, issuer, subject, user_id, granted_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING`,
		strings.ToLower(info.Email), info.Issuer, info.Subject, id, now)
	if err != nil || n == 0 {
		return err
	}
	_, err = tx.exec(ctx, `UPDATE users SET role = 'admin', status = 'active', access_expires_at = NULL WHERE id = $1`, id)
	return err
}

// GetUser returns the user with id.
func (s *sqlStore) GetUser(ctx context.Context, id string) (User, error) {
	return getUser(ctx, s.db, id)
}

// ListUsers pages through users in ID (creation) order.
func (s *sqlStore) ListUsers(ctx context.Context, f UserFilter) ([]User, string, error) {
	limit := pageLimit(f.Limit, 50, 200)
	var w where
	if f.Status != "" {
		w.add("status = ?", f.Status)
	}
	if f.Role != "" {
		w.add("role = ?", f.Role)
	}
	if f.Query != "" {
		p := "%" + likeEscape(strings.ToLower(f.Query)) + "%"
		w.add(`(lower(email) LIKE ? ESCAPE '\' OR lower(name) LIKE ? ESCAPE '\')`, p, p)
	}
	if f.Cursor != "" {
		w.add("id > ?", f.Cursor)
	}
	users, err := queryAll(ctx, s.db, scanUser,
		`SELECT `+userColumns+` FROM users`+w.String()+` ORDER BY id LIMIT `+w.next(), append(w.args, limit+1)...)
	if err != nil {
		return nil, "", fmt.Errorf("list users: %w", err)
	}
	var next string
	if len(users) > limit {
		users = users[:limit]
		next = users[limit-1].ID
	}
	return users, next, nil
}

// keepAnAdmin refuses, with ErrConflict, a change that turns the user u into
// something other than an active admin when no other active admin exists.
// The caller holds lockAdmins.
func keepAnAdmin(ctx context.Context, tx db, u User, role, status string) error {
	if u.Role != "admin" || u.Status != StatusActive || (role == "admin" && status == StatusActive) {
		return nil
	}
	var others int
	if err := tx.queryRow(ctx, `SELECT count(*) FROM users WHERE role = 'admin' AND status = 'active' AND id <> $1`,
		u.ID).Scan(&others); err != nil {
		return err
	}
	if others == 0 {
		return fmt.Errorf("%w: %s is the last active admin", ErrConflict, u.ID)
	}
	return nil
}

// lockAdminsAndGetUser starts a change that may alter who is an active admin:
// the user is read under lockAdmins, so that keepAnAdmin judges the current state.
func (s *sqlStore) lockAdminsAndGetUser(ctx context.Context, tx db, id string) (User, error) {
	if err := s.lockAdmins(ctx, tx); err != nil {
		return User{}, err
	}
	return getUser(ctx, tx, id)
}

// SetUserRole changes a user's role, keeping at least one active admin.
func (s *sqlStore) SetUserRole(ctx context.Context, id, role string, audit AuditEvent) (User, error) {
	if role == "" {
		return User{}, fmt.Errorf("set role of user %s: empty role", id)
	}
	var u User
	err := s.inTx(ctx, func(tx db) error {
		cur, err := s.lockAdminsAndGetUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := keepAnAdmin(ctx, tx, cur, role, cur.Status); err != nil {
			return err
		}
		u, err = scanUser(tx.queryRow(ctx, `UPDATE users SET role = $1 WHERE id = $2 RETURNING `+userColumns, role, id))
		if err != nil {
			return err
		}
		if err := s.endElevations(ctx, tx, id, nowOr(audit.Time)); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, audit)
	})
	if err != nil {
		return User{}, fmt.Errorf("set role of user %s: %w", id, err)
	}
	return u, nil
}

func validStatus(status string) bool {
	switch status {
	case StatusPending, StatusActive, StatusSuspended, StatusDenied:
		return true
	}
	return false
}

// SetUserStatus changes a user's status, keeping at least one active admin;
// leaving active ends the user's sessions.
func (s *sqlStore) SetUserStatus(ctx context.Context, id, status string, audit AuditEvent) (User, error) {
	if !validStatus(status) {
		return User{}, fmt.Errorf("set status of user %s: invalid status %q", id, status)
	}
	var u User
	err := s.inTx(ctx, func(tx db) error {
		cur, err := s.lockAdminsAndGetUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := keepAnAdmin(ctx, tx, cur, cur.Role, status); err != nil {
			return err
		}
		q := `UPDATE users SET status = $1 WHERE id = $2 RETURNING ` + userColumns
		if status == StatusActive {
			// A status set by hand is permanent; only an approval grants a temporary one.
			q = `UPDATE users SET status = $1, access_expires_at = NULL WHERE id = $2 RETURNING ` + userColumns
		} else if err := s.endAccess(ctx, tx, id, nowOr(audit.Time), audit.ActorID, "user_"+status); err != nil {
			return err
		}
		u, err = scanUser(tx.queryRow(ctx, q, status, id))
		if err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, audit)
	})
	if err != nil {
		return User{}, fmt.Errorf("set status of user %s: %w", id, err)
	}
	return u, nil
}

// ExpireAccess moves an active user whose grant ended back to pending.
func (s *sqlStore) ExpireAccess(ctx context.Context, id string, now time.Time) (User, error) {
	var u User
	err := s.inTx(ctx, func(tx db) error {
		n, err := tx.exec(ctx, `UPDATE users SET status = 'pending', access_expires_at = NULL
			WHERE id = $1 AND status = 'active' AND access_expires_at IS NOT NULL AND access_expires_at <= $2`,
			id, s.encodeTime(now))
		if err != nil {
			return err
		}
		if n == 1 {
			if err := s.endAccess(ctx, tx, id, now, "", "access_expired"); err != nil {
				return err
			}
		}
		u, err = getUser(ctx, tx, id)
		return err
	})
	if err != nil {
		return User{}, fmt.Errorf("expire access of user %s: %w", id, err)
	}
	return u, nil
}

// endAccess ends what a user leaving active held: their sessions, and their
// API tokens, each revocation audited with the reason.
func (s *sqlStore) endAccess(ctx context.Context, tx db, userID string, at time.Time, actorID, reason string) error {
	if _, err := tx.exec(ctx, `DELETE FROM sessions WHERE user_id = $1`, userID); err != nil {
		return err
	}
	_, err := s.revokeTokens(ctx, tx, `user_id = $2`, userID, at, actorID, reason)
	return err
}

// DeleteUser removes a user with their sessions and access requests and
// revokes their API tokens as of the audit event's time; the audit trail and
// the token records stay.
func (s *sqlStore) DeleteUser(ctx context.Context, id string, audit AuditEvent) error {
	err := s.inTx(ctx, func(tx db) error {
		cur, err := s.lockAdminsAndGetUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := keepAnAdmin(ctx, tx, cur, "", ""); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM sessions WHERE user_id = $1`,
			`DELETE FROM access_requests WHERE user_id = $1`,
			`DELETE FROM users WHERE id = $1`,
		} {
			if _, err := tx.exec(ctx, q, id); err != nil {
				return err
			}
		}
		// Revoking after the user row is deleted matters in PostgreSQL: that
		// DELETE waits for a CreateToken holding the row FOR SHARE, and this
		// statement's fresh snapshot then sees the token it committed.
		at := nowOr(audit.Time)
		if _, err := s.revokeTokens(ctx, tx, `user_id = $2`, id, at, audit.ActorID, "user_deleted"); err != nil {
			return err
		}
		if _, err := s.revokeTokens(ctx, tx, `kind = 'system' AND created_by = $2`, id, at, audit.ActorID, "creator_lost_rights"); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("delete user %s: %w", id, err)
	}
	return nil
}
