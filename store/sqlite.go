package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/sqlite/*.sql
var sqliteMigrations embed.FS

// SQLite is the embedded single-process backend.
type SQLite struct {
	sqlStore
}

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
	st := &SQLite{sqlStore{db: sqliteDB{db}, dialect: sqliteDialect{db}}}
	st.SetCallTimeout(DefaultCallTimeout)
	return st, nil
}

// BackupTo writes a consistent copy of the database to path, which must not
// exist (VACUUM INTO): a snapshot of one read transaction, taken while other
// connections, other processes too, keep writing.
func (s *SQLite) BackupTo(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("backup to %s: the file exists", path)
	}
	if _, err := s.dialect.(sqliteDialect).db.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return fmt.Errorf("backup to %s: %w", path, err)
	}
	return nil
}

// sqliteDialect relies on SQLite's single writer: with _txlock=immediate every
// write transaction runs alone, which serializes what PostgreSQL must lock.
type sqliteDialect struct {
	db *sql.DB
}

// sqliteTime is the one layout times are stored in: fixed width, so that
// comparing and sorting the TEXT columns follows time order; microseconds,
// as PostgreSQL keeps them.
const sqliteTime = "2006-01-02T15:04:05.000000Z"

func (sqliteDialect) encodeTime(t time.Time) any {
	return t.UTC().Truncate(time.Microsecond).Format(sqliteTime)
}

func (d sqliteDialect) inTx(ctx context.Context, fn func(tx db) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(sqliteDB{tx}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", sqliteErr(err))
	}
	return nil
}

func (sqliteDialect) lockAdmins(context.Context, db) error { return nil }

func (sqliteDialect) skipLocked() string { return "" }

func (sqliteDialect) forShare() string { return "" }

// timeBucket cuts the fixed-width text of sqliteTime.
func (sqliteDialect) timeBucket(column, unit string) string {
	if unit == "day" {
		return "substr(" + column + ", 1, 10) || 'T00:00:00Z'"
	}
	return "substr(" + column + ", 1, 13) || ':00:00Z'"
}

func (d sqliteDialect) ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping sqlite: %w", err)
	}
	return nil
}

func (d sqliteDialect) close() error { return d.db.Close() }

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

// sqlConn is what both *sql.DB and *sql.Tx offer.
type sqlConn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// sqliteDB adapts a database/sql pool or transaction to db.
type sqliteDB struct {
	conn sqlConn
}

func (d sqliteDB) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := d.conn.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, sqliteErr(err)
	}
	return res.RowsAffected()
}

func (d sqliteDB) queryRow(ctx context.Context, query string, args ...any) scanner {
	return sqliteRow{d.conn.QueryRowContext(ctx, query, args...)}
}

func (d sqliteDB) query(ctx context.Context, query string, args ...any) (rowsIter, error) {
	r, err := d.conn.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, sqliteErr(err)
	}
	return sqliteRows{r}, nil
}

func (d sqliteDB) execEach(ctx context.Context, query string, argLists [][]any) error {
	stmt, err := d.conn.PrepareContext(ctx, query)
	if err != nil {
		return sqliteErr(err)
	}
	defer stmt.Close()
	for _, args := range argLists {
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			return sqliteErr(err)
		}
	}
	return nil
}

type sqliteRow struct{ row *sql.Row }

func (r sqliteRow) Scan(dest ...any) error { return sqliteErr(r.row.Scan(dest...)) }

// sqliteRows drops the error of Close, as pgx.Rows does: what went wrong
// while reading is reported by Err.
type sqliteRows struct{ *sql.Rows }

func (r sqliteRows) Close() { r.Rows.Close() }

var _ Store = (*SQLite)(nil)

var _ TokenStore = (*SQLite)(nil)
