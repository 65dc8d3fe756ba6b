package store

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/pressly/goose/v3"
)

// sqlStore is the Store of both SQL backends, written once: SQLite and
// PostgreSQL accept the same $N placeholders and SQL, and what they do
// differently is left to the dialect. Every driver error reaching it has
// already become ErrNotFound or ErrConflict where it means one.
type sqlStore struct {
	db db // the pool, for statements outside a transaction
	dialect
	timeout time.Duration // bounds every statement and transaction (bounded.go)
}

// db is what the shared methods need of a pool or a transaction; each backend
// adapts its driver's handles to it and translates the driver's errors.
type db interface {
	exec(ctx context.Context, query string, args ...any) (rowsAffected int64, err error)
	queryRow(ctx context.Context, query string, args ...any) scanner
	query(ctx context.Context, query string, args ...any) (rowsIter, error)
	// execEach runs query once per argument list, in order, in as few round
	// trips as the driver allows.
	execEach(ctx context.Context, query string, argLists [][]any) error
}

type scanner interface {
	Scan(dest ...any) error
}

type rowsIter interface {
	scanner
	Next() bool
	Err() error
	Close()
}

// dialect is what one database does its own way.
type dialect interface {
	// encodeTime turns t into an argument for the backend's time columns.
	encodeTime(t time.Time) any
	// inTx runs fn in a transaction that commits when fn returns nil.
	inTx(ctx context.Context, fn func(tx db) error) error
	// lockAdmins serializes, until tx ends, the transactions that may change
	// who is an active admin, so that the last-admin check cannot race.
	lockAdmins(ctx context.Context, tx db) error
	// forShare ends a SELECT whose rows must not be deleted by another
	// transaction before tx ends.
	forShare() string
	// skipLocked ends a SELECT of rows to claim: rows another transaction is
	// claiming are passed over instead of waited for.
	skipLocked() string
	ping(ctx context.Context) error
	close() error
}

func migrate(ctx context.Context, conn *sql.DB, gooseDialect goose.Dialect, files embed.FS, dir string, opts ...goose.ProviderOption) error {
	fsys, err := fs.Sub(files, dir)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(gooseDialect, conn, fsys, append(opts, goose.WithDisableGlobalRegistry(true))...)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	return nil
}

// Close releases the database.
func (s *sqlStore) Close() error { return s.close() }

// queryAll returns every row of a query, scanned by scan; no rows give an
// empty, non-nil slice.
func queryAll[T any](ctx context.Context, q db, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// affectedOne turns "no row changed" into ErrNotFound.
func affectedOne(n int64, err error) error {
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// --- time encoding ---

func (s *sqlStore) encodeTimePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return s.encodeTime(*t)
}

func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// timeCol scans a NOT NULL time column.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(v any) error {
	var p *time.Time
	if err := (nullTimeCol{&p}).Scan(v); err != nil {
		return err
	}
	if p == nil {
		return errors.New("unexpected NULL time")
	}
	*c.t = *p
	return nil
}

// nullTimeCol scans a nullable time column into a *time.Time: PostgreSQL
// hands over a time.Time, SQLite the text encodeTime wrote.
type nullTimeCol struct{ t **time.Time }

func (c nullTimeCol) Scan(v any) error {
	var s string
	switch v := v.(type) {
	case nil:
		*c.t = nil
		return nil
	case time.Time:
		t := v.UTC()
		*c.t = &t
		return nil
	case string:
		s = v
	case []byte:
		s = string(v)
	default:
		return fmt.Errorf("unexpected time value of type %T", v)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("parse stored time %q: %w", s, err)
	}
	t = t.UTC()
	*c.t = &t
	return nil
}

// --- queries ---

func pageLimit(n, def, max int) int {
	if n <= 0 {
		return def
	}
	return min(n, max)
}

// likeEscape makes s match literally inside a LIKE pattern with ESCAPE '\'.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// where collects AND-ed conditions with numbered placeholders.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", fmt.Sprintf("$%d", len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

func (w *where) next() string { return fmt.Sprintf("$%d", len(w.args)+1) }

// --- users ---

const userColumns = `id, issuer, subject, email, name, role, status, created_at, last_login_at, access_expires_at`

func scanUser(row scanner) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Issuer, &u.Subject, &u.Email, &u.Name, &u.Role, &u.Status,
		timeCol{&u.CreatedAt}, nullTimeCol{&u.LastLoginAt}, nullTimeCol{&u.AccessExpiresAt})
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
		if _, err := tx.exec(ctx, `INSERT INTO users (id, issuer, subject, email, name, role, status, created_at)
			VALUES ($1, $2, $3, $4, $5, 'user', 'pending', $6) ON CONFLICT (issuer, subject) DO NOTHING`,
			uuid.Must(uuid.NewV7()).String(), info.Issuer, info.Subject, info.Email, info.Name, now); err != nil {
			return err
		}
		if info.BootstrapAdmin && info.Email != "" {
			if err := s.grantBootstrap(ctx, tx, info, now); err != nil {
				return err
			}
		}
		var err error
		u, err = scanUser(tx.queryRow(ctx, `UPDATE users SET email = $1, name = $2, last_login_at = $3
			WHERE issuer = $4 AND subject = $5 RETURNING `+userColumns,
			info.Email, info.Name, now, info.Issuer, info.Subject))
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

// revokeTokens revokes the live tokens matching where ($2 is arg) and audits
// each as token.revoked.
func (s *sqlStore) revokeTokens(ctx context.Context, tx db, where, arg string, at time.Time, actorID, reason string) (int, error) {
	type revoked struct{ id, kind, name, userID string }
	list, err := queryAll(ctx, tx, func(row scanner) (revoked, error) {
		var r revoked
		var userID *string
		err := row.Scan(&r.id, &r.kind, &r.name, &userID)
		if userID != nil {
			r.userID = *userID
		}
		return r, err
	}, `UPDATE api_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND `+where+` RETURNING id, kind, name, user_id`,
		s.encodeTime(at), arg)
	if err != nil {
		return 0, fmt.Errorf("revoke tokens: %w", err)
	}
	for _, r := range list {
		if err := s.appendAudit(ctx, tx, AuditEvent{Time: at, Type: "token.revoked", ActorID: actorID, TargetID: r.userID,
			Detail: map[string]any{"token_id": r.id, "kind": r.kind, "name": r.name, "reason": reason}}); err != nil {
			return 0, err
		}
	}
	return len(list), nil
}

// RevokeSystemTokensOf revokes the live system tokens a user created.
func (s *sqlStore) RevokeSystemTokensOf(ctx context.Context, creatorID string, at time.Time, actorID, reason string) (int, error) {
	var n int
	err := s.inTx(ctx, func(tx db) error {
		var err error
		n, err = s.revokeTokens(ctx, tx, `kind = 'system' AND created_by = $2`, creatorID, at, actorID, reason)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("revoke system tokens of %s: %w", creatorID, err)
	}
	return n, nil
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

// --- sessions ---

// CreateSession stores a new session.
func (s *sqlStore) CreateSession(ctx context.Context, sess Session) error {
	if err := s.insertSession(ctx, s.db, sess); err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

func (s *sqlStore) insertSession(ctx context.Context, q db, sess Session) error {
	_, err := q.exec(ctx, `INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, id_token_hint)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		sess.ID, sess.UserID, s.encodeTime(sess.CreatedAt), s.encodeTime(sess.LastSeenAt), s.encodeTime(sess.ExpiresAt), sess.IDTokenHint)
	return err
}

// GetSession returns the session with id.
func (s *sqlStore) GetSession(ctx context.Context, id string) (Session, error) {
	var sess Session
	err := s.db.queryRow(ctx, `SELECT id, user_id, created_at, last_seen_at, expires_at, id_token_hint
		FROM sessions WHERE id = $1`, id).Scan(&sess.ID, &sess.UserID,
		timeCol{&sess.CreatedAt}, timeCol{&sess.LastSeenAt}, timeCol{&sess.ExpiresAt}, &sess.IDTokenHint)
	if err != nil {
		return Session{}, fmt.Errorf("get session: %w", err)
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

// --- access requests ---

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

// CreateAccessRequest records a pending request; ErrConflict while the user
// already has one.
func (s *sqlStore) CreateAccessRequest(ctx context.Context, r AccessRequest, audit AuditEvent) (AccessRequest, error) {
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
		if err := s.appendAudit(ctx, tx, audit); err != nil {
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
		if err := s.enqueueOutbox(ctx, tx, d.Outbox...); err != nil {
			return err
		}
		if err := s.appendAudit(ctx, tx, d.Audit); err != nil {
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

// --- audit ---

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

// --- outbox ---

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

// --- signing keys ---

// PutSigningKey stores a new key; ErrConflict when its ID exists.
func (s *sqlStore) PutSigningKey(ctx context.Context, k SigningKey) error {
	_, err := s.db.exec(ctx, `INSERT INTO signing_keys (id, algorithm, private_sealed, public_jwk, created_at, retired_at, publish_until)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.ID, k.Algorithm, k.PrivateSealed, k.PublicJWK, s.encodeTime(nowOr(k.CreatedAt)), s.encodeTimePtr(k.RetiredAt), s.encodeTimePtr(k.PublishUntil))
	if err != nil {
		return fmt.Errorf("put signing key %s: %w", k.ID, err)
	}
	return nil
}

func scanSigningKey(row scanner) (SigningKey, error) {
	var k SigningKey
	err := row.Scan(&k.ID, &k.Algorithm, &k.PrivateSealed, &k.PublicJWK, timeCol{&k.CreatedAt},
		nullTimeCol{&k.RetiredAt}, nullTimeCol{&k.PublishUntil})
	return k, err
}

// ListSigningKeys returns every key still to be published, newest first.
func (s *sqlStore) ListSigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error) {
	out, err := queryAll(ctx, s.db, scanSigningKey, `SELECT id, algorithm, private_sealed, public_jwk, created_at, retired_at, publish_until
		FROM signing_keys WHERE publish_until IS NULL OR publish_until > $1 ORDER BY created_at DESC, id DESC`, s.encodeTime(now))
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	return out, nil
}

// RetireSigningKey stops a key signing and schedules the end of its publication.
func (s *sqlStore) RetireSigningKey(ctx context.Context, id string, at, publishUntil time.Time) error {
	if err := affectedOne(s.db.exec(ctx, `UPDATE signing_keys SET retired_at = $1, publish_until = $2 WHERE id = $3`,
		s.encodeTime(at), s.encodeTime(publishUntil), id)); err != nil {
		return fmt.Errorf("retire signing key %s: %w", id, err)
	}
	return nil
}

// --- settings ---

// GetSetting returns the value stored under key.
func (s *sqlStore) GetSetting(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	if err := s.db.queryRow(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v); err != nil {
		return nil, fmt.Errorf("get setting %s: %w", key, err)
	}
	return v, nil
}

// PutSetting stores value under key, replacing any previous one.
// PutSettingIf replaces key's value only while it still is expected (nil:
// the key is absent); otherwise ErrConflict. One statement, so concurrent
// writers from any instance cannot both win.
func (s *sqlStore) PutSettingIf(ctx context.Context, key string, expected, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	var (
		n   int64
		err error
	)
	if expected == nil {
		n, err = s.db.exec(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, value)
	} else {
		n, err = s.db.exec(ctx, `UPDATE settings SET value = $1 WHERE key = $2 AND value = $3`, value, key, expected)
	}
	if err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	if n == 0 {
		return fmt.Errorf("put setting %s: changed meanwhile: %w", key, ErrConflict)
	}
	return nil
}

func (s *sqlStore) PutSetting(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	if _, err := s.db.exec(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	return nil
}

// --- API tokens ---

// tokenColumns reads the JSON lists as text, which both backends can cast to.
const tokenColumns = `id, name, kind, COALESCE(user_id, ''), created_by, CAST(scope AS TEXT), CAST(models AS TEXT),
	created_at, expires_at, last_used_at, revoked_at`

func scanToken(row scanner) (APIToken, error) {
	var t APIToken
	err := row.Scan(&t.ID, &t.Name, &t.Kind, &t.UserID, &t.CreatedBy, stringsCol{&t.Scope}, stringsCol{&t.Models},
		timeCol{&t.CreatedAt}, timeCol{&t.ExpiresAt}, nullTimeCol{&t.LastUsedAt}, nullTimeCol{&t.RevokedAt})
	return t, err
}

// encStrings stores a list as a JSON array; nil stays NULL, so that "no list"
// (every model) and "an empty list" (no model) remain different.
func encStrings(v []string) (any, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// stringsCol scans a JSON array column; NULL gives nil.
type stringsCol struct{ v *[]string }

func (c stringsCol) Scan(v any) error {
	var b []byte
	switch v := v.(type) {
	case nil:
		*c.v = nil
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("unexpected JSON list value of type %T", v)
	}
	var out []string
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("parse stored list %q: %w", b, err)
	}
	*c.v = out
	return nil
}

// tokenArgs validates t and returns the values of an api_tokens INSERT, in
// column order; user_id and models stay NULL when empty.
func (s *sqlStore) tokenArgs(t APIToken) ([]any, error) {
	if t.ID == "" {
		return nil, errors.New("empty token ID")
	}
	scope := t.Scope
	if scope == nil {
		scope = []string{}
	}
	scopeJSON, err := encStrings(scope)
	if err != nil {
		return nil, fmt.Errorf("token scope: %w", err)
	}
	models, err := encStrings(t.Models)
	if err != nil {
		return nil, fmt.Errorf("token models: %w", err)
	}
	var userID any
	if t.UserID != "" {
		userID = t.UserID
	}
	return []any{t.ID, t.Name, t.Kind, userID, t.CreatedBy, scopeJSON, models,
		s.encodeTime(nowOr(t.CreatedAt)), s.encodeTime(t.ExpiresAt)}, nil
}

func getToken(ctx context.Context, q db, id string) (APIToken, error) {
	t, err := scanToken(q.queryRow(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = $1`, id))
	if err != nil {
		return APIToken{}, fmt.Errorf("get token %s: %w", id, err)
	}
	return t, nil
}

// CreateToken stores a token's metadata with its audit event; ErrConflict
// when the ID exists, ErrNotFound when the subject user does not.
func (s *sqlStore) CreateToken(ctx context.Context, t APIToken, audit AuditEvent) (APIToken, error) {
	args, err := s.tokenArgs(t)
	if err != nil {
		return APIToken{}, fmt.Errorf("create token: %w", err)
	}
	var out APIToken
	err = s.inTx(ctx, func(tx db) error {
		// The user's row is held until commit (SQLite's single writer holds
		// everything), so that a concurrent DeleteUser cannot slip in between
		// this check and the insert and leave a live token of a deleted user:
		// it waits, then revokes the token; after a committed deletion the
		// token is refused.
		if t.UserID != "" {
			var one int
			if err := tx.queryRow(ctx, `SELECT 1 FROM users WHERE id = $1`+s.forShare(), t.UserID).Scan(&one); err != nil {
				return fmt.Errorf("user %s: %w", t.UserID, err)
			}
		}
		if _, err := tx.exec(ctx, `INSERT INTO api_tokens (id, name, kind, user_id, created_by, scope, models, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, args...); err != nil {
			return err
		}
		if err := s.appendAudit(ctx, tx, audit); err != nil {
			return err
		}
		out, err = getToken(ctx, tx, t.ID)
		return err
	})
	if err != nil {
		return APIToken{}, fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return out, nil
}

// GetToken returns the token with id.
func (s *sqlStore) GetToken(ctx context.Context, id string) (APIToken, error) {
	return getToken(ctx, s.db, id)
}

// ListTokens returns the tokens f selects, newest first.
func (s *sqlStore) ListTokens(ctx context.Context, f TokenFilter) ([]APIToken, error) {
	var w where
	if f.UserID != "" {
		w.add("user_id = ?", f.UserID)
	}
	if f.CreatedBy != "" {
		w.add("created_by = ?", f.CreatedBy)
	}
	if f.Kind != "" {
		w.add("kind = ?", f.Kind)
	}
	if f.Active {
		w.add("revoked_at IS NULL AND expires_at > ?", s.encodeTime(nowOr(f.Now)))
	}
	out, err := queryAll(ctx, s.db, scanToken,
		`SELECT `+tokenColumns+` FROM api_tokens`+w.String()+` ORDER BY created_at DESC, id DESC`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// RevokeToken revokes a token at the given time; the first revocation's time
// stays and only it is audited. A concurrent second revocation waits for the
// first to commit, then finds revoked_at set and changes nothing.
func (s *sqlStore) RevokeToken(ctx context.Context, id string, at time.Time, audit AuditEvent) (APIToken, error) {
	var out APIToken
	err := s.inTx(ctx, func(tx db) error {
		n, err := tx.exec(ctx, `UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`,
			s.encodeTime(at), id)
		if err != nil {
			return err
		}
		if n == 1 {
			if err := s.appendAudit(ctx, tx, audit); err != nil {
				return err
			}
		}
		out, err = getToken(ctx, tx, id)
		return err
	})
	if err != nil {
		return APIToken{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return out, nil
}

func scanRevoked(row scanner) (RevokedToken, error) {
	var r RevokedToken
	err := row.Scan(&r.ID, timeCol{&r.ExpiresAt}, timeCol{&r.RevokedAt})
	return r, err
}

// RevokedTokens lists the revoked tokens that have not expired by now.
func (s *sqlStore) RevokedTokens(ctx context.Context, now time.Time) ([]RevokedToken, error) {
	out, err := queryAll(ctx, s.db, scanRevoked, `SELECT id, expires_at, revoked_at FROM api_tokens
		WHERE revoked_at IS NOT NULL AND expires_at > $1 ORDER BY revoked_at, id`, s.encodeTime(now))
	if err != nil {
		return nil, fmt.Errorf("revoked tokens: %w", err)
	}
	return out, nil
}

// RevokedTokensSince lists the tokens revoked at or after since that have not
// expired by now.
func (s *sqlStore) RevokedTokensSince(ctx context.Context, now, since time.Time) ([]RevokedToken, error) {
	out, err := queryAll(ctx, s.db, scanRevoked, `SELECT id, expires_at, revoked_at FROM api_tokens
		WHERE revoked_at IS NOT NULL AND revoked_at >= $1 AND expires_at > $2 ORDER BY revoked_at, id`,
		s.encodeTime(since), s.encodeTime(now))
	if err != nil {
		return nil, fmt.Errorf("revoked tokens since %s: %w", since.Format(time.RFC3339), err)
	}
	return out, nil
}

// MarkTokensUsed records last-use times in one transaction; unknown IDs are
// ignored.
func (s *sqlStore) MarkTokensUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	// Rows are locked in ID order, so that batches from several instances
	// touching the same tokens cannot deadlock.
	var argLists [][]any
	for _, id := range slices.Sorted(maps.Keys(used)) {
		argLists = append(argLists, []any{s.encodeTime(used[id]), id})
	}
	// last_used_at never moves back: batches from several instances may
	// arrive out of order.
	err := s.inTx(ctx, func(tx db) error {
		return tx.execEach(ctx, `UPDATE api_tokens SET last_used_at = $1
			WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)`, argLists)
	})
	if err != nil {
		return fmt.Errorf("mark %d tokens used: %w", len(used), err)
	}
	return nil
}
