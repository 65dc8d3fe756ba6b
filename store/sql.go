package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

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
	// timeBucket is an SQL expression for the start of the "day" or "hour"
	// of a time column, as RFC 3339 text in UTC.
	timeBucket(column, unit string) string
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

// jsonCol scans a nullable JSON column into *v (a list, the limits); NULL
// gives the zero value. what names the column's kind in errors.
type jsonCol[T any] struct {
	v    *T
	what string
}

func (c jsonCol[T]) Scan(v any) error {
	var b []byte
	switch v := v.(type) {
	case nil:
		var zero T
		*c.v = zero
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("unexpected %s value of type %T", c.what, v)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("parse stored %s %q: %w", c.what, b, err)
	}
	*c.v = out
	return nil
}
