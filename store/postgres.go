package store

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/postgres/*.sql
var postgresMigrations embed.FS

// Postgres is the shared backend for several Gatehouse instances. Its queries
// and transactions follow the SQLite backend's one for one; the differences
// are native time and JSON types and explicit locking where SQLite's single
// writer serialized for free.
type Postgres struct {
	pool *pgxpool.Pool
}

// OpenPostgres connects to the database at url and brings its schema up to date.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	// Instances starting together must not run the same migration twice.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	err = migrate(ctx, db, goose.DialectPostgres, postgresMigrations, "migrations/postgres", goose.WithSessionLocker(locker))
	db.Close()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	return &Postgres{pool: pool}, nil
}

// Ping reports whether the database answers.
func (s *Postgres) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// Close releases the pool.
func (s *Postgres) Close() error {
	s.pool.Close()
	return nil
}

func (s *Postgres) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgErr(pgx.BeginFunc(ctx, s.pool, fn))
}

// lockAdmins serializes, across instances, the transactions that may change
// who is an active admin, so the last-admin check cannot race. These are rare
// administrative writes; SQLite gets the same effect from its single writer.
func lockAdmins(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7243011)`)
	return err
}

// pgErr translates driver errors into the store's sentinels, keeping the
// original error in the chain.
func pgErr(err error) error {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%w: %w", ErrConflict, err)
		case "23503": // foreign_key_violation
			return fmt.Errorf("%w: referenced record: %w", ErrNotFound, err)
		}
	}
	return err
}

// pgQueryer is what both *pgxpool.Pool and pgx.Tx offer.
type pgQueryer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgTime truncates rather than letting PostgreSQL round, so both backends
// keep the same instant.
func pgTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func pgTimePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return pgTime(*t)
}

// pgAffectedOne turns "no row changed" into ErrNotFound.
func pgAffectedOne(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return pgErr(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// --- users ---

func pgGetUser(ctx context.Context, q pgQueryer, id string) (User, error) {
	u, err := scanUser(q.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return User{}, fmt.Errorf("get user %s: %w", id, pgErr(err))
	}
	return u, nil
}

// RecordLogin creates or refreshes the user signing in.
func (s *Postgres) RecordLogin(ctx context.Context, info LoginInfo) (User, error) {
	now := pgTime(nowOr(info.Now))
	var u User
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		role, status := "user", StatusPending
		if info.BootstrapAdmin {
			role, status = "admin", StatusActive
		}
		if _, err := tx.Exec(ctx, `INSERT INTO users (id, issuer, subject, email, name, role, status, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (issuer, subject) DO NOTHING`,
			uuid.Must(uuid.NewV7()).String(), info.Issuer, info.Subject, info.Email, info.Name, role, status, now); err != nil {
			return pgErr(err)
		}
		if info.BootstrapAdmin {
			if _, err := tx.Exec(ctx, `UPDATE users SET role = 'admin', status = 'active', access_expires_at = NULL
				WHERE issuer = $1 AND subject = $2 AND status = 'pending'`, info.Issuer, info.Subject); err != nil {
				return err
			}
		}
		row := tx.QueryRow(ctx, `UPDATE users SET email = $1, name = $2, last_login_at = $3
			WHERE issuer = $4 AND subject = $5 RETURNING `+userColumns,
			info.Email, info.Name, now, info.Issuer, info.Subject)
		var err error
		u, err = scanUser(row)
		return pgErr(err)
	})
	if err != nil {
		return User{}, fmt.Errorf("record login: %w", err)
	}
	return u, nil
}

// GetUser returns the user with id.
func (s *Postgres) GetUser(ctx context.Context, id string) (User, error) {
	return pgGetUser(ctx, s.pool, id)
}

// ListUsers pages through users in ID (creation) order.
func (s *Postgres) ListUsers(ctx context.Context, f UserFilter) ([]User, string, error) {
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
	q := `SELECT ` + userColumns + ` FROM users` + w.String() + ` ORDER BY id LIMIT ` + w.next()
	rows, err := s.pool.Query(ctx, q, append(w.args, limit+1)...)
	if err != nil {
		return nil, "", fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	users := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list users: %w", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list users: %w", err)
	}
	var next string
	if len(users) > limit {
		users = users[:limit]
		next = users[limit-1].ID
	}
	return users, next, nil
}

// pgKeepAnAdmin refuses, with ErrConflict, a change that turns the user u into
// something other than an active admin when no other active admin exists.
// The caller holds lockAdmins.
func pgKeepAnAdmin(ctx context.Context, tx pgx.Tx, u User, role, status string) error {
	if u.Role != "admin" || u.Status != StatusActive || (role == "admin" && status == StatusActive) {
		return nil
	}
	var others int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM users WHERE role = 'admin' AND status = 'active' AND id <> $1`,
		u.ID).Scan(&others); err != nil {
		return err
	}
	if others == 0 {
		return fmt.Errorf("%w: %s is the last active admin", ErrConflict, u.ID)
	}
	return nil
}

// SetUserRole changes a user's role, keeping at least one active admin.
func (s *Postgres) SetUserRole(ctx context.Context, id, role string, audit AuditEvent) (User, error) {
	if role == "" {
		return User{}, fmt.Errorf("set role of user %s: empty role", id)
	}
	var u User
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockAdmins(ctx, tx); err != nil {
			return err
		}
		cur, err := pgGetUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := pgKeepAnAdmin(ctx, tx, cur, role, cur.Status); err != nil {
			return err
		}
		u, err = scanUser(tx.QueryRow(ctx, `UPDATE users SET role = $1 WHERE id = $2 RETURNING `+userColumns, role, id))
		if err != nil {
			return pgErr(err)
		}
		return pgAppendAudit(ctx, tx, audit)
	})
	if err != nil {
		return User{}, fmt.Errorf("set role of user %s: %w", id, err)
	}
	return u, nil
}

// SetUserStatus changes a user's status, keeping at least one active admin;
// leaving active ends the user's sessions.
func (s *Postgres) SetUserStatus(ctx context.Context, id, status string, audit AuditEvent) (User, error) {
	if !validStatus(status) {
		return User{}, fmt.Errorf("set status of user %s: invalid status %q", id, status)
	}
	var u User
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockAdmins(ctx, tx); err != nil {
			return err
		}
		cur, err := pgGetUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := pgKeepAnAdmin(ctx, tx, cur, cur.Role, status); err != nil {
			return err
		}
		q := `UPDATE users SET status = $1 WHERE id = $2 RETURNING ` + userColumns
		if status == StatusActive {
			// A status set by hand is permanent; only an approval grants a temporary one.
			q = `UPDATE users SET status = $1, access_expires_at = NULL WHERE id = $2 RETURNING ` + userColumns
		} else if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1`, id); err != nil {
			return err
		}
		u, err = scanUser(tx.QueryRow(ctx, q, status, id))
		if err != nil {
			return pgErr(err)
		}
		return pgAppendAudit(ctx, tx, audit)
	})
	if err != nil {
		return User{}, fmt.Errorf("set status of user %s: %w", id, err)
	}
	return u, nil
}

// ExpireAccess moves an active user whose grant ended back to pending.
func (s *Postgres) ExpireAccess(ctx context.Context, id string, now time.Time) (User, error) {
	var u User
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE users SET status = 'pending', access_expires_at = NULL
			WHERE id = $1 AND status = 'active' AND access_expires_at IS NOT NULL AND access_expires_at <= $2`,
			id, pgTime(now)); err != nil {
			return err
		}
		var err error
		u, err = pgGetUser(ctx, tx, id)
		return err
	})
	if err != nil {
		return User{}, fmt.Errorf("expire access of user %s: %w", id, err)
	}
	return u, nil
}

// DeleteUser removes a user with their sessions and access requests and
// revokes their API tokens as of the audit event's time; the audit trail and
// the token records stay.
func (s *Postgres) DeleteUser(ctx context.Context, id string, audit AuditEvent) error {
	deletedAt := pgTime(nowOr(audit.Time))
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockAdmins(ctx, tx); err != nil {
			return err
		}
		cur, err := pgGetUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := pgKeepAnAdmin(ctx, tx, cur, "", ""); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM sessions WHERE user_id = $1`,
			`DELETE FROM access_requests WHERE user_id = $1`,
			`DELETE FROM users WHERE id = $1`,
		} {
			if _, err := tx.Exec(ctx, q, id); err != nil {
				return err
			}
		}
		// Revoking after the user row is deleted matters: that DELETE waits
		// for a CreateToken holding the row FOR SHARE, and this statement's
		// fresh snapshot then sees the token it committed.
		if _, err := tx.Exec(ctx, `UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL`,
			deletedAt, id); err != nil {
			return err
		}
		return pgAppendAudit(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("delete user %s: %w", id, err)
	}
	return nil
}

// --- sessions ---

// CreateSession stores a new session.
func (s *Postgres) CreateSession(ctx context.Context, sess Session) error {
	if err := pgInsertSession(ctx, s.pool, sess); err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

func pgInsertSession(ctx context.Context, q pgQueryer, sess Session) error {
	_, err := q.Exec(ctx, `INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, id_token_hint)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		sess.ID, sess.UserID, pgTime(sess.CreatedAt), pgTime(sess.LastSeenAt), pgTime(sess.ExpiresAt), sess.IDTokenHint)
	return pgErr(err)
}

// GetSession returns the session with id.
func (s *Postgres) GetSession(ctx context.Context, id string) (Session, error) {
	var sess Session
	err := s.pool.QueryRow(ctx, `SELECT id, user_id, created_at, last_seen_at, expires_at, id_token_hint
		FROM sessions WHERE id = $1`, id).Scan(&sess.ID, &sess.UserID,
		timeCol{&sess.CreatedAt}, timeCol{&sess.LastSeenAt}, timeCol{&sess.ExpiresAt}, &sess.IDTokenHint)
	if err != nil {
		return Session{}, fmt.Errorf("get session: %w", pgErr(err))
	}
	return sess, nil
}

// TouchSession records activity on a session.
func (s *Postgres) TouchSession(ctx context.Context, id string, at time.Time) error {
	res, err := s.pool.Exec(ctx, `UPDATE sessions SET last_seen_at = $1 WHERE id = $2`, pgTime(at), id)
	if err := pgAffectedOne(res, err); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// RotateSession replaces oldID by next; ErrNotFound when oldID is gone.
func (s *Postgres) RotateSession(ctx context.Context, oldID string, next Session) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM sessions WHERE id = $1`, oldID)
		if err := pgAffectedOne(res, err); err != nil {
			return err
		}
		return pgInsertSession(ctx, tx, next)
	})
	if err != nil {
		return fmt.Errorf("rotate session: %w", err)
	}
	return nil
}

// DeleteSession removes a session; removing one that is gone is not an error.
func (s *Postgres) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteUserSessions signs a user out everywhere.
func (s *Postgres) DeleteUserSessions(ctx context.Context, userID string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("delete sessions of user %s: %w", userID, err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions whose absolute lifetime ended.
func (s *Postgres) DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error) {
	res, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE expires_at <= $1`, pgTime(now))
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return int(res.RowsAffected()), nil
}

// --- access requests ---

func pgGetRequest(ctx context.Context, q pgQueryer, id string) (AccessRequest, error) {
	r, err := scanRequest(q.QueryRow(ctx, requestSelect+` WHERE r.id = $1`, id))
	if err != nil {
		return AccessRequest{}, fmt.Errorf("get access request %s: %w", id, pgErr(err))
	}
	return r, nil
}

// CreateAccessRequest records a pending request; ErrConflict while the user
// already has one.
func (s *Postgres) CreateAccessRequest(ctx context.Context, r AccessRequest, audit AuditEvent) (AccessRequest, error) {
	if r.ID == "" {
		r.ID = uuid.Must(uuid.NewV7()).String()
	}
	var out AccessRequest
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := pgGetUser(ctx, tx, r.User.ID); err != nil {
			return err
		}
		// The partial unique index, not a prior SELECT, is what rejects a
		// second pending request, so concurrent submissions are safe too.
		if _, err := tx.Exec(ctx, `INSERT INTO access_requests
			(id, user_id, name, team, purpose, requested_role, status, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)`,
			r.ID, r.User.ID, r.Name, r.Team, r.Purpose, r.RequestedRole, pgTime(nowOr(r.CreatedAt))); err != nil {
			return pgErr(err)
		}
		if err := pgAppendAudit(ctx, tx, audit); err != nil {
			return err
		}
		var err error
		out, err = pgGetRequest(ctx, tx, r.ID)
		return err
	})
	if err != nil {
		return AccessRequest{}, fmt.Errorf("create access request for user %s: %w", r.User.ID, err)
	}
	return out, nil
}

// GetAccessRequest returns the request with id.
func (s *Postgres) GetAccessRequest(ctx context.Context, id string) (AccessRequest, error) {
	return pgGetRequest(ctx, s.pool, id)
}

// LatestAccessRequest returns the user's most recent request.
func (s *Postgres) LatestAccessRequest(ctx context.Context, userID string) (AccessRequest, error) {
	r, err := scanRequest(s.pool.QueryRow(ctx, requestSelect+
		` WHERE r.user_id = $1 ORDER BY r.created_at DESC, r.id DESC LIMIT 1`, userID))
	if err != nil {
		return AccessRequest{}, fmt.Errorf("latest access request of user %s: %w", userID, pgErr(err))
	}
	return r, nil
}

// ListAccessRequests lists requests with status ("" or "all": every one), oldest first.
func (s *Postgres) ListAccessRequests(ctx context.Context, status string) ([]AccessRequest, error) {
	var w where
	if status != "" && status != "all" {
		w.add("r.status = ?", status)
	}
	rows, err := s.pool.Query(ctx, requestSelect+w.String()+` ORDER BY r.created_at, r.id`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("list access requests: %w", err)
	}
	defer rows.Close()
	out := []AccessRequest{}
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("list access requests: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list access requests: %w", err)
	}
	return out, nil
}

// DecideAccessRequest applies a reviewer's decision, the user's new status,
// the outbox messages and the audit event in one transaction.
func (s *Postgres) DecideAccessRequest(ctx context.Context, d Decision) (AccessRequest, error) {
	now := nowOr(d.Now)
	var out AccessRequest
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockAdmins(ctx, tx); err != nil {
			return err
		}
		req, err := pgGetRequest(ctx, tx, d.RequestID)
		if err != nil {
			return err
		}
		if req.Status != RequestPending {
			return fmt.Errorf("%w: request is %s", ErrConflict, req.Status)
		}
		user, err := pgGetUser(ctx, tx, req.User.ID)
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
		if err := pgKeepAnAdmin(ctx, tx, user, userRole, userStatus); err != nil {
			return err
		}
		// The status guard makes the decision safe even where the read above
		// did not lock the row.
		res, err := tx.Exec(ctx, `UPDATE access_requests
			SET status = $1, role = $2, comment = $3, reviewed_by = $4, decided_at = $5, expires_at = $6
			WHERE id = $7 AND status = 'pending'`,
			status, role, d.Comment, d.ReviewerID, pgTime(now), pgTimePtr(expires), d.RequestID)
		if err := pgAffectedOne(res, err); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w: request is no longer pending", ErrConflict)
			}
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET role = $1, status = $2, access_expires_at = $3 WHERE id = $4`,
			userRole, userStatus, pgTimePtr(expires), user.ID); err != nil {
			return err
		}
		if err := pgEnqueueOutbox(ctx, tx, d.Outbox...); err != nil {
			return err
		}
		if err := pgAppendAudit(ctx, tx, d.Audit); err != nil {
			return err
		}
		out, err = pgGetRequest(ctx, tx, d.RequestID)
		return err
	})
	if err != nil {
		return AccessRequest{}, fmt.Errorf("decide access request %s: %w", d.RequestID, err)
	}
	return out, nil
}

// --- audit ---

// appendAudit writes e unless it is the zero event some callers pass when
// nothing needs recording.
func pgAppendAudit(ctx context.Context, q pgQueryer, e AuditEvent) error {
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
	_, err := q.Exec(ctx, `INSERT INTO audit_events (time, type, actor_id, target_id, ip, user_agent, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		pgTime(nowOr(e.Time)), e.Type, e.ActorID, e.TargetID, e.IP, e.UserAgent, detail)
	if err != nil {
		return fmt.Errorf("append audit event %s: %w", e.Type, err)
	}
	return nil
}

// AppendAudit records one event.
func (s *Postgres) AppendAudit(ctx context.Context, e AuditEvent) error {
	if e.Type == "" {
		return errors.New("append audit event: empty type")
	}
	return pgAppendAudit(ctx, s.pool, e)
}

// ListAudit returns events newest first.
func (s *Postgres) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
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
	q := `SELECT id, time, type, actor_id, target_id, ip, user_agent, detail::text FROM audit_events` +
		w.String() + ` ORDER BY id DESC LIMIT ` + w.next()
	rows, err := s.pool.Query(ctx, q, append(w.args, pageLimit(f.Limit, 50, 200))...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	out := []AuditEvent{}
	for rows.Next() {
		var (
			e      AuditEvent
			detail *string
		)
		if err := rows.Scan(&e.ID, timeCol{&e.Time}, &e.Type, &e.ActorID, &e.TargetID, &e.IP, &e.UserAgent, &detail); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		if detail != nil {
			if err := json.Unmarshal([]byte(*detail), &e.Detail); err != nil {
				return nil, fmt.Errorf("list audit: event %d detail: %w", e.ID, err)
			}
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}

// --- outbox ---

func pgEnqueueOutbox(ctx context.Context, q pgQueryer, msgs ...OutboxMessage) error {
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
		if _, err := q.Exec(ctx, `INSERT INTO outbox (id, channel, payload, attempts, next_attempt_at, created_at, delivered_at, last_error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			m.ID, m.Channel, payload, m.Attempts, pgTime(next), pgTime(created), pgTimePtr(m.DeliveredAt), m.LastError); err != nil {
			return fmt.Errorf("enqueue %s message: %w", m.Channel, pgErr(err))
		}
	}
	return nil
}

// EnqueueOutbox adds messages for delivery, all or none.
func (s *Postgres) EnqueueOutbox(ctx context.Context, msgs ...OutboxMessage) error {
	if err := s.inTx(ctx, func(tx pgx.Tx) error { return pgEnqueueOutbox(ctx, tx, msgs...) }); err != nil {
		return fmt.Errorf("enqueue outbox: %w", err)
	}
	return nil
}

// DueOutbox returns undelivered messages whose NextAttemptAt ≤ now, oldest first.
func (s *Postgres) DueOutbox(ctx context.Context, now time.Time, limit int) ([]OutboxMessage, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, channel, payload, attempts, next_attempt_at, created_at, delivered_at, last_error
		FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY created_at, id LIMIT $2`,
		pgTime(now), pageLimit(limit, 50, 1000))
	if err != nil {
		return nil, fmt.Errorf("due outbox: %w", err)
	}
	defer rows.Close()
	out := []OutboxMessage{}
	for rows.Next() {
		var m OutboxMessage
		if err := rows.Scan(&m.ID, &m.Channel, &m.Payload, &m.Attempts, timeCol{&m.NextAttemptAt}, timeCol{&m.CreatedAt},
			nullTimeCol{&m.DeliveredAt}, &m.LastError); err != nil {
			return nil, fmt.Errorf("due outbox: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("due outbox: %w", err)
	}
	return out, nil
}

// MarkOutboxDelivered takes a message out of the queue.
func (s *Postgres) MarkOutboxDelivered(ctx context.Context, id string, at time.Time) error {
	res, err := s.pool.Exec(ctx, `UPDATE outbox SET delivered_at = $1 WHERE id = $2`, pgTime(at), id)
	if err := pgAffectedOne(res, err); err != nil {
		return fmt.Errorf("mark outbox message %s delivered: %w", id, err)
	}
	return nil
}

// MarkOutboxFailed counts a failed attempt and schedules the next.
func (s *Postgres) MarkOutboxFailed(ctx context.Context, id string, next time.Time, lastErr string) error {
	res, err := s.pool.Exec(ctx, `UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2
		WHERE id = $3`, pgTime(next), lastErr, id)
	if err := pgAffectedOne(res, err); err != nil {
		return fmt.Errorf("mark outbox message %s failed: %w", id, err)
	}
	return nil
}

// --- signing keys ---

// PutSigningKey stores a new key; ErrConflict when its ID exists.
func (s *Postgres) PutSigningKey(ctx context.Context, k SigningKey) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO signing_keys (id, algorithm, private_sealed, public_jwk, created_at, retired_at, publish_until)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.ID, k.Algorithm, k.PrivateSealed, k.PublicJWK, pgTime(nowOr(k.CreatedAt)), pgTimePtr(k.RetiredAt), pgTimePtr(k.PublishUntil))
	if err != nil {
		return fmt.Errorf("put signing key %s: %w", k.ID, pgErr(err))
	}
	return nil
}

// ListSigningKeys returns every key still to be published, newest first.
func (s *Postgres) ListSigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, algorithm, private_sealed, public_jwk, created_at, retired_at, publish_until
		FROM signing_keys WHERE publish_until IS NULL OR publish_until > $1 ORDER BY created_at DESC, id DESC`, pgTime(now))
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	defer rows.Close()
	out := []SigningKey{}
	for rows.Next() {
		var k SigningKey
		if err := rows.Scan(&k.ID, &k.Algorithm, &k.PrivateSealed, &k.PublicJWK, timeCol{&k.CreatedAt},
			nullTimeCol{&k.RetiredAt}, nullTimeCol{&k.PublishUntil}); err != nil {
			return nil, fmt.Errorf("list signing keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	return out, nil
}

// RetireSigningKey stops a key signing and schedules the end of its publication.
func (s *Postgres) RetireSigningKey(ctx context.Context, id string, at, publishUntil time.Time) error {
	res, err := s.pool.Exec(ctx, `UPDATE signing_keys SET retired_at = $1, publish_until = $2 WHERE id = $3`,
		pgTime(at), pgTime(publishUntil), id)
	if err := pgAffectedOne(res, err); err != nil {
		return fmt.Errorf("retire signing key %s: %w", id, err)
	}
	return nil
}

// --- settings ---

// GetSetting returns the value stored under key.
func (s *Postgres) GetSetting(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	if err := s.pool.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v); err != nil {
		return nil, fmt.Errorf("get setting %s: %w", key, pgErr(err))
	}
	return v, nil
}

// PutSetting stores value under key, replacing any previous one.
func (s *Postgres) PutSetting(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	return nil
}

// --- API tokens ---

func pgGetToken(ctx context.Context, q pgQueryer, id string) (APIToken, error) {
	t, err := scanToken(q.QueryRow(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = $1`, id))
	if err != nil {
		return APIToken{}, fmt.Errorf("get token %s: %w", id, pgErr(err))
	}
	return t, nil
}

// CreateToken stores a token's metadata with its audit event; ErrConflict
// when the ID exists, ErrNotFound when the subject user does not.
func (s *Postgres) CreateToken(ctx context.Context, t APIToken, audit AuditEvent) (APIToken, error) {
	args, err := tokenArgs(t)
	if err != nil {
		return APIToken{}, fmt.Errorf("create token: %w", err)
	}
	args = append(args, pgTime(nowOr(t.CreatedAt)), pgTime(t.ExpiresAt))
	var out APIToken
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// FOR SHARE holds off a concurrent DeleteUser until this token is
		// committed, so that DeleteUser revokes it; after a committed
		// deletion the row is gone and the token is refused.
		if t.UserID != "" {
			var one int
			if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR SHARE`, t.UserID).Scan(&one); err != nil {
				return fmt.Errorf("user %s: %w", t.UserID, pgErr(err))
			}
		}
		if _, err := tx.Exec(ctx, insertToken, args...); err != nil {
			return pgErr(err)
		}
		if err := pgAppendAudit(ctx, tx, audit); err != nil {
			return err
		}
		stored, err := pgGetToken(ctx, tx, t.ID)
		out = stored
		return err
	})
	if err != nil {
		return APIToken{}, fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return out, nil
}

// GetToken returns the token with id.
func (s *Postgres) GetToken(ctx context.Context, id string) (APIToken, error) {
	return pgGetToken(ctx, s.pool, id)
}

// ListTokens returns the tokens f selects, newest first.
func (s *Postgres) ListTokens(ctx context.Context, f TokenFilter) ([]APIToken, error) {
	w := tokenWhere(f, func(t time.Time) any { return pgTime(t) })
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens`+w.String()+tokenOrder, w.args...)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	out := []APIToken{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// RevokeToken revokes a token at the given time; the first revocation's time
// stays and only it is audited. A concurrent second revocation waits for the
// row lock, then finds revoked_at set and changes nothing.
func (s *Postgres) RevokeToken(ctx context.Context, id string, at time.Time, audit AuditEvent) (APIToken, error) {
	var out APIToken
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`,
			pgTime(at), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			if err := pgAppendAudit(ctx, tx, audit); err != nil {
				return err
			}
		}
		out, err = pgGetToken(ctx, tx, id)
		return err
	})
	if err != nil {
		return APIToken{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return out, nil
}

// RevokedTokens lists the revoked tokens that have not expired by now.
func (s *Postgres) RevokedTokens(ctx context.Context, now time.Time) ([]RevokedToken, error) {
	rows, err := s.pool.Query(ctx, revokedTokensQuery, pgTime(now))
	if err != nil {
		return nil, fmt.Errorf("revoked tokens: %w", err)
	}
	defer rows.Close()
	out := []RevokedToken{}
	for rows.Next() {
		var r RevokedToken
		if err := rows.Scan(&r.ID, timeCol{&r.ExpiresAt}, timeCol{&r.RevokedAt}); err != nil {
			return nil, fmt.Errorf("revoked tokens: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("revoked tokens: %w", err)
	}
	return out, nil
}

// MarkTokensUsed records last-use times in one transaction and one round
// trip; unknown IDs are ignored.
func (s *Postgres) MarkTokensUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	// Rows are locked in ID order, so that batches from several instances
	// touching the same tokens cannot deadlock.
	var batch pgx.Batch
	for _, id := range slices.Sorted(maps.Keys(used)) {
		batch.Queue(markTokenUsed, pgTime(used[id]), id)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error { return tx.SendBatch(ctx, &batch).Close() })
	if err != nil {
		return fmt.Errorf("mark %d tokens used: %w", len(used), err)
	}
	return nil
}

var _ Store = (*Postgres)(nil)

var _ TokenStore = (*Postgres)(nil)
