package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/sqlite/*.sql
var sqliteMigrations embed.FS

// SQLite is the embedded single-process backend. Queries use $N placeholders,
// which SQLite accepts as well, so the PostgreSQL backend can share their shape.
type SQLite struct {
	db *sql.DB
}

// sqliteTime is the one layout times are stored in: fixed width, so that
// comparing and sorting the TEXT columns follows time order; microseconds,
// as PostgreSQL keeps them.
const sqliteTime = "2006-01-02T15:04:05.000000Z"

// OpenSQLite opens (creating if needed) the database file at path and brings
// its schema up to date.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	if path == "" || strings.Contains(path, "?") {
		return nil, fmt.Errorf("open sqlite store %q: path must be a file name without '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open sqlite store %s: create directory: %w", path, err)
	}
	// _txlock=immediate takes the write lock at BEGIN, so concurrent write
	// transactions queue on busy_timeout instead of failing with SQLITE_BUSY
	// when a read lock would have to be upgraded.
	dsn := path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	if err := migrate(ctx, db, goose.DialectSQLite3, sqliteMigrations, "migrations/sqlite"); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	return &SQLite{db: db}, nil
}

func migrate(ctx context.Context, db *sql.DB, dialect goose.Dialect, files embed.FS, dir string, opts ...goose.ProviderOption) error {
	fsys, err := fs.Sub(files, dir)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(dialect, db, fsys, append(opts, goose.WithDisableGlobalRegistry(true))...)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	return nil
}

// Ping reports whether the database answers.
func (s *SQLite) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping sqlite: %w", err)
	}
	return nil
}

// Close releases the database.
func (s *SQLite) Close() error { return s.db.Close() }

func (s *SQLite) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", sqliteErr(err))
	}
	return nil
}

// sqliteErr translates driver errors into the store's sentinels, keeping the
// original error in the chain.
func sqliteErr(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %w", ErrConflict, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w: referenced record: %w", ErrNotFound, err)
		}
	}
	return err
}

// queryer is what both *sql.DB and *sql.Tx offer.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// --- time encoding ---

func encTime(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(sqliteTime) }

func encTimePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return encTime(*t)
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

// nullTimeCol scans a nullable time column into a *time.Time.
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

// --- users ---

const userColumns = `id, issuer, subject, email, name, role, status, created_at, last_login_at, access_expires_at`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Issuer, &u.Subject, &u.Email, &u.Name, &u.Role, &u.Status,
		timeCol{&u.CreatedAt}, nullTimeCol{&u.LastLoginAt}, nullTimeCol{&u.AccessExpiresAt})
	return u, err
}

func getUser(ctx context.Context, q queryer, id string) (User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return User{}, fmt.Errorf("get user %s: %w", id, sqliteErr(err))
	}
	return u, nil
}

// RecordLogin creates or refreshes the user signing in.
func (s *SQLite) RecordLogin(ctx context.Context, info LoginInfo) (User, error) {
	now := encTime(nowOr(info.Now))
	var u User
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		role, status := "user", StatusPending
		if info.BootstrapAdmin {
			role, status = "admin", StatusActive
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (id, issuer, subject, email, name, role, status, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (issuer, subject) DO NOTHING`,
			uuid.Must(uuid.NewV7()).String(), info.Issuer, info.Subject, info.Email, info.Name, role, status, now); err != nil {
			return sqliteErr(err)
		}
		if info.BootstrapAdmin {
			if _, err := tx.ExecContext(ctx, `UPDATE users SET role = 'admin', status = 'active', access_expires_at = NULL
				WHERE issuer = $1 AND subject = $2 AND status = 'pending'`, info.Issuer, info.Subject); err != nil {
				return err
			}
		}
		row := tx.QueryRowContext(ctx, `UPDATE users SET email = $1, name = $2, last_login_at = $3
			WHERE issuer = $4 AND subject = $5 RETURNING `+userColumns,
			info.Email, info.Name, now, info.Issuer, info.Subject)
		var err error
		u, err = scanUser(row)
		return sqliteErr(err)
	})
	if err != nil {
		return User{}, fmt.Errorf("record login: %w", err)
	}
	return u, nil
}

// GetUser returns the user with id.
func (s *SQLite) GetUser(ctx context.Context, id string) (User, error) {
	return getUser(ctx, s.db, id)
}

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

// ListUsers pages through users in ID (creation) order.
func (s *SQLite) ListUsers(ctx context.Context, f UserFilter) ([]User, string, error) {
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
	rows, err := s.db.QueryContext(ctx, q, append(w.args, limit+1)...)
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

// keepAnAdmin refuses, with ErrConflict, a change that turns the user u into
// something other than an active admin when no other active admin exists.
// It must run inside the write transaction that makes the change.
func keepAnAdmin(ctx context.Context, tx *sql.Tx, u User, role, status string) error {
	if u.Role != "admin" || u.Status != StatusActive || (role == "admin" && status == StatusActive) {
		return nil
	}
	var others int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE role = 'admin' AND status = 'active' AND id <> $1`,
		u.ID).Scan(&others); err != nil {
		return err
	}
	if others == 0 {
		return fmt.Errorf("%w: %s is the last active admin", ErrConflict, u.ID)
	}
	return nil
}

// SetUserRole changes a user's role, keeping at least one active admin.
func (s *SQLite) SetUserRole(ctx context.Context, id, role string, audit AuditEvent) (User, error) {
	if role == "" {
		return User{}, fmt.Errorf("set role of user %s: empty role", id)
	}
	var u User
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := keepAnAdmin(ctx, tx, cur, role, cur.Status); err != nil {
			return err
		}
		u, err = scanUser(tx.QueryRowContext(ctx, `UPDATE users SET role = $1 WHERE id = $2 RETURNING `+userColumns, role, id))
		if err != nil {
			return sqliteErr(err)
		}
		return appendAudit(ctx, tx, audit)
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
func (s *SQLite) SetUserStatus(ctx context.Context, id, status string, audit AuditEvent) (User, error) {
	if !validStatus(status) {
		return User{}, fmt.Errorf("set status of user %s: invalid status %q", id, status)
	}
	var u User
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getUser(ctx, tx, id)
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
		} else if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = $1`, id); err != nil {
			return err
		}
		u, err = scanUser(tx.QueryRowContext(ctx, q, status, id))
		if err != nil {
			return sqliteErr(err)
		}
		return appendAudit(ctx, tx, audit)
	})
	if err != nil {
		return User{}, fmt.Errorf("set status of user %s: %w", id, err)
	}
	return u, nil
}

// ExpireAccess moves an active user whose grant ended back to pending.
func (s *SQLite) ExpireAccess(ctx context.Context, id string, now time.Time) (User, error) {
	var u User
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE users SET status = 'pending', access_expires_at = NULL
			WHERE id = $1 AND status = 'active' AND access_expires_at IS NOT NULL AND access_expires_at <= $2`,
			id, encTime(now)); err != nil {
			return err
		}
		var err error
		u, err = getUser(ctx, tx, id)
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
func (s *SQLite) DeleteUser(ctx context.Context, id string, audit AuditEvent) error {
	deletedAt := encTime(nowOr(audit.Time))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getUser(ctx, tx, id)
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
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL`,
			deletedAt, id); err != nil {
			return err
		}
		return appendAudit(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("delete user %s: %w", id, err)
	}
	return nil
}

// --- sessions ---

// CreateSession stores a new session.
func (s *SQLite) CreateSession(ctx context.Context, sess Session) error {
	if err := insertSession(ctx, s.db, sess); err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

func insertSession(ctx context.Context, q queryer, sess Session) error {
	_, err := q.ExecContext(ctx, `INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, id_token_hint)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		sess.ID, sess.UserID, encTime(sess.CreatedAt), encTime(sess.LastSeenAt), encTime(sess.ExpiresAt), sess.IDTokenHint)
	return sqliteErr(err)
}

// GetSession returns the session with id.
func (s *SQLite) GetSession(ctx context.Context, id string) (Session, error) {
	var sess Session
	err := s.db.QueryRowContext(ctx, `SELECT id, user_id, created_at, last_seen_at, expires_at, id_token_hint
		FROM sessions WHERE id = $1`, id).Scan(&sess.ID, &sess.UserID,
		timeCol{&sess.CreatedAt}, timeCol{&sess.LastSeenAt}, timeCol{&sess.ExpiresAt}, &sess.IDTokenHint)
	if err != nil {
		return Session{}, fmt.Errorf("get session: %w", sqliteErr(err))
	}
	return sess, nil
}

// TouchSession records activity on a session.
func (s *SQLite) TouchSession(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE sessions SET last_seen_at = $1 WHERE id = $2`, encTime(at), id)
	if err := affectedOne(res, err); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// affectedOne turns "no row changed" into ErrNotFound.
func affectedOne(res sql.Result, err error) error {
	if err != nil {
		return sqliteErr(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// RotateSession replaces oldID by next; ErrNotFound when oldID is gone.
func (s *SQLite) RotateSession(ctx context.Context, oldID string, next Session) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE id = $1`, oldID)
		if err := affectedOne(res, err); err != nil {
			return err
		}
		return insertSession(ctx, tx, next)
	})
	if err != nil {
		return fmt.Errorf("rotate session: %w", err)
	}
	return nil
}

// DeleteSession removes a session; removing one that is gone is not an error.
func (s *SQLite) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteUserSessions signs a user out everywhere.
func (s *SQLite) DeleteUserSessions(ctx context.Context, userID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("delete sessions of user %s: %w", userID, err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions whose absolute lifetime ended.
func (s *SQLite) DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= $1`, encTime(now))
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	n, err := res.RowsAffected()
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

func scanRequest(row interface{ Scan(...any) error }) (AccessRequest, error) {
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

func getRequest(ctx context.Context, q queryer, id string) (AccessRequest, error) {
	r, err := scanRequest(q.QueryRowContext(ctx, requestSelect+` WHERE r.id = $1`, id))
	if err != nil {
		return AccessRequest{}, fmt.Errorf("get access request %s: %w", id, sqliteErr(err))
	}
	return r, nil
}

// CreateAccessRequest records a pending request; ErrConflict while the user
// already has one.
func (s *SQLite) CreateAccessRequest(ctx context.Context, r AccessRequest, audit AuditEvent) (AccessRequest, error) {
	if r.ID == "" {
		r.ID = uuid.Must(uuid.NewV7()).String()
	}
	var out AccessRequest
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := getUser(ctx, tx, r.User.ID); err != nil {
			return err
		}
		// The partial unique index, not a prior SELECT, is what rejects a
		// second pending request, so concurrent submissions are safe too.
		if _, err := tx.ExecContext(ctx, `INSERT INTO access_requests
			(id, user_id, name, team, purpose, requested_role, status, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)`,
			r.ID, r.User.ID, r.Name, r.Team, r.Purpose, r.RequestedRole, encTime(nowOr(r.CreatedAt))); err != nil {
			return sqliteErr(err)
		}
		if err := appendAudit(ctx, tx, audit); err != nil {
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
func (s *SQLite) GetAccessRequest(ctx context.Context, id string) (AccessRequest, error) {
	return getRequest(ctx, s.db, id)
}

// LatestAccessRequest returns the user's most recent request.
func (s *SQLite) LatestAccessRequest(ctx context.Context, userID string) (AccessRequest, error) {
	r, err := scanRequest(s.db.QueryRowContext(ctx, requestSelect+
		` WHERE r.user_id = $1 ORDER BY r.created_at DESC, r.id DESC LIMIT 1`, userID))
	if err != nil {
		return AccessRequest{}, fmt.Errorf("latest access request of user %s: %w", userID, sqliteErr(err))
	}
	return r, nil
}

// ListAccessRequests lists requests with status ("" or "all": every one), oldest first.
func (s *SQLite) ListAccessRequests(ctx context.Context, status string) ([]AccessRequest, error) {
	var w where
	if status != "" && status != "all" {
		w.add("r.status = ?", status)
	}
	rows, err := s.db.QueryContext(ctx, requestSelect+w.String()+` ORDER BY r.created_at, r.id`, w.args...)
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
func (s *SQLite) DecideAccessRequest(ctx context.Context, d Decision) (AccessRequest, error) {
	now := nowOr(d.Now)
	var out AccessRequest
	err := s.inTx(ctx, func(tx *sql.Tx) error {
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
		res, err := tx.ExecContext(ctx, `UPDATE access_requests
			SET status = $1, role = $2, comment = $3, reviewed_by = $4, decided_at = $5, expires_at = $6
			WHERE id = $7 AND status = 'pending'`,
			status, role, d.Comment, d.ReviewerID, encTime(now), encTimePtr(expires), d.RequestID)
		if err := affectedOne(res, err); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w: request is no longer pending", ErrConflict)
			}
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET role = $1, status = $2, access_expires_at = $3 WHERE id = $4`,
			userRole, userStatus, encTimePtr(expires), user.ID); err != nil {
			return err
		}
		if err := enqueueOutbox(ctx, tx, d.Outbox...); err != nil {
			return err
		}
		if err := appendAudit(ctx, tx, d.Audit); err != nil {
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
func appendAudit(ctx context.Context, q queryer, e AuditEvent) error {
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
	_, err := q.ExecContext(ctx, `INSERT INTO audit_events (time, type, actor_id, target_id, ip, user_agent, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		encTime(nowOr(e.Time)), e.Type, e.ActorID, e.TargetID, e.IP, e.UserAgent, detail)
	if err != nil {
		return fmt.Errorf("append audit event %s: %w", e.Type, err)
	}
	return nil
}

// AppendAudit records one event.
func (s *SQLite) AppendAudit(ctx context.Context, e AuditEvent) error {
	if e.Type == "" {
		return errors.New("append audit event: empty type")
	}
	return appendAudit(ctx, s.db, e)
}

// ListAudit returns events newest first.
func (s *SQLite) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
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
	q := `SELECT id, time, type, actor_id, target_id, ip, user_agent, detail FROM audit_events` +
		w.String() + ` ORDER BY id DESC LIMIT ` + w.next()
	rows, err := s.db.QueryContext(ctx, q, append(w.args, pageLimit(f.Limit, 50, 200))...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	out := []AuditEvent{}
	for rows.Next() {
		var (
			e      AuditEvent
			detail sql.NullString
		)
		if err := rows.Scan(&e.ID, timeCol{&e.Time}, &e.Type, &e.ActorID, &e.TargetID, &e.IP, &e.UserAgent, &detail); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		if detail.Valid {
			if err := json.Unmarshal([]byte(detail.String), &e.Detail); err != nil {
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

func enqueueOutbox(ctx context.Context, q queryer, msgs ...OutboxMessage) error {
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
		if _, err := q.ExecContext(ctx, `INSERT INTO outbox (id, channel, payload, attempts, next_attempt_at, created_at, delivered_at, last_error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			m.ID, m.Channel, payload, m.Attempts, encTime(next), encTime(created), encTimePtr(m.DeliveredAt), m.LastError); err != nil {
			return fmt.Errorf("enqueue %s message: %w", m.Channel, sqliteErr(err))
		}
	}
	return nil
}

// EnqueueOutbox adds messages for delivery, all or none.
func (s *SQLite) EnqueueOutbox(ctx context.Context, msgs ...OutboxMessage) error {
	if err := s.inTx(ctx, func(tx *sql.Tx) error { return enqueueOutbox(ctx, tx, msgs...) }); err != nil {
		return fmt.Errorf("enqueue outbox: %w", err)
	}
	return nil
}

// DueOutbox returns undelivered messages whose NextAttemptAt ≤ now, oldest first.
func (s *SQLite) DueOutbox(ctx context.Context, now time.Time, limit int) ([]OutboxMessage, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, channel, payload, attempts, next_attempt_at, created_at, delivered_at, last_error
		FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY created_at, id LIMIT $2`,
		encTime(now), pageLimit(limit, 50, 1000))
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
func (s *SQLite) MarkOutboxDelivered(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE outbox SET delivered_at = $1 WHERE id = $2`, encTime(at), id)
	if err := affectedOne(res, err); err != nil {
		return fmt.Errorf("mark outbox message %s delivered: %w", id, err)
	}
	return nil
}

// MarkOutboxFailed counts a failed attempt and schedules the next.
func (s *SQLite) MarkOutboxFailed(ctx context.Context, id string, next time.Time, lastErr string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2
		WHERE id = $3`, encTime(next), lastErr, id)
	if err := affectedOne(res, err); err != nil {
		return fmt.Errorf("mark outbox message %s failed: %w", id, err)
	}
	return nil
}

// --- signing keys ---

// PutSigningKey stores a new key; ErrConflict when its ID exists.
func (s *SQLite) PutSigningKey(ctx context.Context, k SigningKey) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO signing_keys (id, algorithm, private_sealed, public_jwk, created_at, retired_at, publish_until)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.ID, k.Algorithm, k.PrivateSealed, k.PublicJWK, encTime(nowOr(k.CreatedAt)), encTimePtr(k.RetiredAt), encTimePtr(k.PublishUntil))
	if err != nil {
		return fmt.Errorf("put signing key %s: %w", k.ID, sqliteErr(err))
	}
	return nil
}

// ListSigningKeys returns every key still to be published, newest first.
func (s *SQLite) ListSigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, algorithm, private_sealed, public_jwk, created_at, retired_at, publish_until
		FROM signing_keys WHERE publish_until IS NULL OR publish_until > $1 ORDER BY created_at DESC, id DESC`, encTime(now))
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
func (s *SQLite) RetireSigningKey(ctx context.Context, id string, at, publishUntil time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE signing_keys SET retired_at = $1, publish_until = $2 WHERE id = $3`,
		encTime(at), encTime(publishUntil), id)
	if err := affectedOne(res, err); err != nil {
		return fmt.Errorf("retire signing key %s: %w", id, err)
	}
	return nil
}

// --- settings ---

// GetSetting returns the value stored under key.
func (s *SQLite) GetSetting(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v); err != nil {
		return nil, fmt.Errorf("get setting %s: %w", key, sqliteErr(err))
	}
	return v, nil
}

// PutSetting stores value under key, replacing any previous one.
func (s *SQLite) PutSetting(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	return nil
}

// --- API tokens ---

// tokenColumns reads the JSON lists as text, which both backends can cast to.
const tokenColumns = `id, name, kind, COALESCE(user_id, ''), created_by, CAST(scope AS TEXT), CAST(models AS TEXT),
	created_at, expires_at, last_used_at, revoked_at`

func scanToken(row interface{ Scan(...any) error }) (APIToken, error) {
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
func tokenArgs(t APIToken) ([]any, error) {
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
	return []any{t.ID, t.Name, t.Kind, userID, t.CreatedBy, scopeJSON, models}, nil
}

const insertToken = `INSERT INTO api_tokens (id, name, kind, user_id, created_by, scope, models, created_at, expires_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`

func getToken(ctx context.Context, q queryer, id string) (APIToken, error) {
	t, err := scanToken(q.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = $1`, id))
	if err != nil {
		return APIToken{}, fmt.Errorf("get token %s: %w", id, sqliteErr(err))
	}
	return t, nil
}

// CreateToken stores a token's metadata with its audit event; ErrConflict
// when the ID exists, ErrNotFound when the subject user does not.
func (s *SQLite) CreateToken(ctx context.Context, t APIToken, audit AuditEvent) (APIToken, error) {
	args, err := tokenArgs(t)
	if err != nil {
		return APIToken{}, fmt.Errorf("create token: %w", err)
	}
	args = append(args, encTime(nowOr(t.CreatedAt)), encTime(t.ExpiresAt))
	var out APIToken
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		// The single writer keeps DeleteUser from slipping in between this
		// check and the insert, which would leave a live token of a deleted user.
		if t.UserID != "" {
			if _, err := getUser(ctx, tx, t.UserID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, insertToken, args...); err != nil {
			return sqliteErr(err)
		}
		if err := appendAudit(ctx, tx, audit); err != nil {
			return err
		}
		stored, err := getToken(ctx, tx, t.ID)
		out = stored
		return err
	})
	if err != nil {
		return APIToken{}, fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return out, nil
}

// GetToken returns the token with id.
func (s *SQLite) GetToken(ctx context.Context, id string) (APIToken, error) {
	return getToken(ctx, s.db, id)
}

// tokenWhere turns a filter into conditions; at encodes a time for the backend.
func tokenWhere(f TokenFilter, at func(time.Time) any) *where {
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
		w.add("revoked_at IS NULL AND expires_at > ?", at(nowOr(f.Now)))
	}
	return &w
}

const tokenOrder = ` ORDER BY created_at DESC, id DESC`

// ListTokens returns the tokens f selects, newest first.
func (s *SQLite) ListTokens(ctx context.Context, f TokenFilter) ([]APIToken, error) {
	w := tokenWhere(f, func(t time.Time) any { return encTime(t) })
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens`+w.String()+tokenOrder, w.args...)
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
// stays and only it is audited.
func (s *SQLite) RevokeToken(ctx context.Context, id string, at time.Time, audit AuditEvent) (APIToken, error) {
	var out APIToken
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`,
			encTime(at), id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 1 {
			if err := appendAudit(ctx, tx, audit); err != nil {
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

const revokedTokensQuery = `SELECT id, expires_at, revoked_at FROM api_tokens
	WHERE revoked_at IS NOT NULL AND expires_at > $1 ORDER BY revoked_at, id`

// RevokedTokens lists the revoked tokens that have not expired by now.
func (s *SQLite) RevokedTokens(ctx context.Context, now time.Time) ([]RevokedToken, error) {
	rows, err := s.db.QueryContext(ctx, revokedTokensQuery, encTime(now))
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

// markTokenUsed never moves last_used_at back: batches from several
// instances may arrive out of order.
const markTokenUsed = `UPDATE api_tokens SET last_used_at = $1
	WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)`

// MarkTokensUsed records last-use times in one transaction; unknown IDs are ignored.
func (s *SQLite) MarkTokensUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, markTokenUsed)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for id, at := range used {
			if _, err := stmt.ExecContext(ctx, encTime(at), id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark %d tokens used: %w", len(used), err)
	}
	return nil
}

var _ Store = (*SQLite)(nil)

var _ TokenStore = (*SQLite)(nil)
