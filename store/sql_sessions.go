package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// CreateSession stores a new session.
func (s *sqlStore) CreateSession(ctx context.Context, sess Session) error {
	if err := s.insertSession(ctx, s.db, sess); err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

func (s *sqlStore) insertSession(ctx context.Context, q db, sess Session) error {
	var authTime *time.Time
	if !sess.Auth.AuthTime.IsZero() {
		authTime = &sess.Auth.AuthTime
	}
	_, err := q.exec(ctx, `INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, id_token_hint, acr, amr, auth_time)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		sess.ID, sess.UserID, s.encodeTime(sess.CreatedAt), s.encodeTime(sess.LastSeenAt), s.encodeTime(sess.ExpiresAt), sess.IDTokenHint,
		sess.Auth.ACR, strings.Join(sess.Auth.AMR, " "), s.encodeTimePtr(authTime))
	return err
}

// GetSession returns the session with id.
func (s *sqlStore) GetSession(ctx context.Context, id string) (Session, error) {
	var sess Session
	var amr string
	var authTime *time.Time
	err := s.db.queryRow(ctx, `SELECT id, user_id, created_at, last_seen_at, expires_at, id_token_hint, acr, amr, auth_time
		FROM sessions WHERE id = $1`, id).Scan(&sess.ID, &sess.UserID,
		timeCol{&sess.CreatedAt}, timeCol{&sess.LastSeenAt}, timeCol{&sess.ExpiresAt}, &sess.IDTokenHint,
		&sess.Auth.ACR, &amr, nullTimeCol{&authTime})
	if err != nil {
		return Session{}, fmt.Errorf("get session: %w", err)
	}
	if amr != "" {
		sess.Auth.AMR = strings.Fields(amr)
	}
	if authTime != nil {
		sess.Auth.AuthTime = *authTime
	}
	return sess, nil
}

// TouchSession records activity on a session.
func (s *sqlStore) TouchSession(ctx context.Context, id string, at time.Time) error {
	if err := affectedOne(s.db.exec(ctx, `UPDATE sessions SET last_seen_at = $1 WHERE id = $2`, s.encodeTime(at), id)); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// RotateSession replaces oldID by next; ErrNotFound when oldID is gone.
func (s *sqlStore) RotateSession(ctx context.Context, oldID string, next Session) error {
	err := s.inTx(ctx, func(tx db) error {
		if err := affectedOne(tx.exec(ctx, `DELETE FROM sessions WHERE id = $1`, oldID)); err != nil {
			return err
		}
		return s.insertSession(ctx, tx, next)
	})
	if err != nil {
		return fmt.Errorf("rotate session: %w", err)
	}
	return nil
}

// DeleteSession removes a session; removing one that is gone is not an error.
func (s *sqlStore) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.db.exec(ctx, `DELETE FROM sessions WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteUserSessions signs a user out everywhere.
func (s *sqlStore) DeleteUserSessions(ctx context.Context, userID string) error {
	if _, err := s.db.exec(ctx, `DELETE FROM sessions WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("delete sessions of user %s: %w", userID, err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions whose absolute lifetime ended.
func (s *sqlStore) DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error) {
	n, err := s.db.exec(ctx, `DELETE FROM sessions WHERE expires_at <= $1`, s.encodeTime(now))
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return int(n), nil
}

// CountActiveSessions counts the sessions unexpired at now and seen since seenSince.
func (s *sqlStore) CountActiveSessions(ctx context.Context, now, seenSince time.Time) (int, error) {
	var n int
	if err := s.db.queryRow(ctx, `SELECT COUNT(*) FROM sessions WHERE expires_at > $1 AND last_seen_at >= $2`,
		s.encodeTime(now), s.encodeTime(seenSince)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count active sessions: %w", err)
	}
	return n, nil
}
