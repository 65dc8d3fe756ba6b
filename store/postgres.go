package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/postgres/*.sql
var postgresMigrations embed.FS

// Postgres is the shared backend for several Gatehouse instances. It runs the
// same queries as SQLite; the differences are native time and JSON types and
// explicit locking where SQLite's single writer serializes for free.
type Postgres struct {
	sqlStore
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
	st := &Postgres{sqlStore{db: pgDB{pool}, dialect: postgresDialect{pool}}}
	st.SetCallTimeout(DefaultCallTimeout)
	return st, nil
}

type postgresDialect struct {
	pool *pgxpool.Pool
}

// encodeTime truncates rather than letting PostgreSQL round, so both backends
// keep the same instant.
func (postgresDialect) encodeTime(t time.Time) any { return t.UTC().Truncate(time.Microsecond) }

func (d postgresDialect) inTx(ctx context.Context, fn func(tx db) error) error {
	return pgErr(pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error { return fn(pgDB{tx}) }))
}

// lockAdmins takes a transaction-scoped advisory lock, which serializes the
// admin-changing transactions of every instance. These are rare
// administrative writes.
func (postgresDialect) lockAdmins(ctx context.Context, tx db) error {
	_, err := tx.exec(ctx, `SELECT pg_advisory_xact_lock(7243011)`)
	return err
}

func (postgresDialect) skipLocked() string { return " FOR UPDATE SKIP LOCKED" }

func (postgresDialect) forShare() string { return " FOR SHARE" }

func (postgresDialect) timeBucket(column, unit string) string {
	if unit == "day" {
		return "to_char(" + column + ` AT TIME ZONE 'UTC', 'YYYY-MM-DD"T00:00:00Z"')`
	}
	return "to_char(" + column + ` AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24":00:00Z"')`
}

func (d postgresDialect) ping(ctx context.Context) error {
	if err := d.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

func (d postgresDialect) close() error {
	d.pool.Close()
	return nil
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

// pgConn is what both *pgxpool.Pool and pgx.Tx offer.
type pgConn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// pgDB adapts a pgx pool or transaction to db.
type pgDB struct {
	conn pgConn
}

func (d pgDB) exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := d.conn.Exec(ctx, sql, args...)
	if err != nil {
		return 0, pgErr(err)
	}
	return tag.RowsAffected(), nil
}

func (d pgDB) queryRow(ctx context.Context, sql string, args ...any) scanner {
	return pgRow{d.conn.QueryRow(ctx, sql, args...)}
}

func (d pgDB) query(ctx context.Context, sql string, args ...any) (rowsIter, error) {
	r, err := d.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, pgErr(err)
	}
	return r, nil
}

// execEach sends every statement in one round trip.
func (d pgDB) execEach(ctx context.Context, sql string, argLists [][]any) error {
	var batch pgx.Batch
	for _, args := range argLists {
		batch.Queue(sql, args...)
	}
	return pgErr(d.conn.SendBatch(ctx, &batch).Close())
}

type pgRow struct{ row pgx.Row }

func (r pgRow) Scan(dest ...any) error { return pgErr(r.row.Scan(dest...)) }

var _ Store = (*Postgres)(nil)

var _ TokenStore = (*Postgres)(nil)
