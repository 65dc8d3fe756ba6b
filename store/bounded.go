package store

import (
	"context"
	"time"
)

// DefaultCallTimeout bounds every store call unless SetCallTimeout says
// otherwise: a database that hangs (a frozen PostgreSQL) makes a request fail
// with 503, never wait for as long as the database does.
const DefaultCallTimeout = 2 * time.Second

// SetCallTimeout bounds every statement and every transaction of the store;
// 0 means DefaultCallTimeout. Call it before the store is shared.
func (s *sqlStore) SetCallTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultCallTimeout
	}
	s.timeout = d
	if b, ok := s.db.(boundedDB); ok {
		s.db = b.db
	}
	s.db = boundedDB{db: s.db, timeout: d}
}

// bound gives ctx the store's deadline (an earlier one of the caller's stays).
func (s *sqlStore) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return withTimeout(ctx, s.timeout)
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// inTx runs fn in a transaction bounded as a whole.
func (s *sqlStore) inTx(ctx context.Context, fn func(tx db) error) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.dialect.inTx(ctx, fn)
}

// Ping reports whether the database answers, within the call timeout.
func (s *sqlStore) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.ping(ctx)
}

// boundedDB bounds each statement run outside a transaction.
type boundedDB struct {
	db
	timeout time.Duration
}

func (b boundedDB) exec(ctx context.Context, query string, args ...any) (int64, error) {
	ctx, cancel := withTimeout(ctx, b.timeout)
	defer cancel()
	return b.db.exec(ctx, query, args...)
}

func (b boundedDB) queryRow(ctx context.Context, query string, args ...any) scanner {
	ctx, cancel := withTimeout(ctx, b.timeout)
	return cancelScanner{b.db.queryRow(ctx, query, args...), cancel}
}

func (b boundedDB) query(ctx context.Context, query string, args ...any) (rowsIter, error) {
	ctx, cancel := withTimeout(ctx, b.timeout)
	rows, err := b.db.query(ctx, query, args...)
	if err != nil {
		cancel()
		return nil, err
	}
	return cancelRows{rows, cancel}, nil
}

func (b boundedDB) execEach(ctx context.Context, query string, argLists [][]any) error {
	ctx, cancel := withTimeout(ctx, b.timeout)
	defer cancel()
	return b.db.execEach(ctx, query, argLists)
}

// cancelScanner ends the statement's deadline once the row is read.
type cancelScanner struct {
	scanner
	cancel context.CancelFunc
}

func (c cancelScanner) Scan(dest ...any) error {
	defer c.cancel()
	return c.scanner.Scan(dest...)
}

// cancelRows ends the statement's deadline when the rows are closed.
type cancelRows struct {
	rowsIter
	cancel context.CancelFunc
}

func (c cancelRows) Close() {
	c.rowsIter.Close()
	c.cancel()
}
