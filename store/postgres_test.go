package store_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/storetest"
)

const postgresURL = "postgres://postgres@127.0.0.1:5432/test"

// postgresServer connects to the test server, or skips (fails in CI) when it
// cannot be reached.
func postgresServer(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, postgresURL)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL at %s unreachable: %v", postgresURL, err)
		}
		t.Skipf("PostgreSQL at %s unreachable, skipping (set CI to make this a failure): %v", postgresURL, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// openPostgres opens a store in a schema of its own, dropped when t ends.
func openPostgres(t *testing.T, admin *pgx.Conn) *store.Postgres {
	t.Helper()
	schema := "gatehouse_test_" + uuid.NewString()[:8]
	if _, err := admin.Exec(t.Context(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	s, err := store.OpenPostgres(t.Context(), fmt.Sprintf("%s?search_path=%s", postgresURL, schema))
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPostgresConformance(t *testing.T) {
	admin := postgresServer(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openPostgres(t, admin) })
}

func TestPostgresUnreachable(t *testing.T) {
	_, err := store.OpenPostgres(t.Context(), "postgres://postgres@127.0.0.1:1/test?connect_timeout=2")
	if err == nil {
		t.Fatal("OpenPostgres on a closed port succeeded")
	}
}
