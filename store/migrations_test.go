package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/gatehouse/gatehouse/store"
)

// legacyStore is a database migrated to the schema before staged key
// rotation (version 5), and how to open it as a store at the latest schema.
type legacyStore struct {
	db     *sql.DB
	encode func(time.Time) any
	open   func(t *testing.T) store.Store
}

func migrateTo(t *testing.T, db *sql.DB, dialect goose.Dialect, dir string, version int64) {
	t.Helper()
	p, err := goose.NewProvider(dialect, db, os.DirFS(dir), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(t.Context(), version); err != nil {
		t.Fatalf("migrate to %d: %v", version, err)
	}
}

// Keys and tokens stored before staged rotation: every key signed from its
// creation, and a token was signed by the newest key of its time.
func TestStagedKeysMigrationKeepsStoredKeysAndTokens(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)
	backends := map[string]func(t *testing.T) legacyStore{
		"sqlite": func(t *testing.T) legacyStore {
			path := filepath.Join(t.TempDir(), "gatehouse.db")
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			migrateTo(t, db, goose.DialectSQLite3, "migrations/sqlite", 5)
			return legacyStore{db: db,
				encode: func(v time.Time) any { return v.UTC().Format("2006-01-02T15:04:05.000000Z") },
				open:   func(t *testing.T) store.Store { return openSQLite(t, path) }}
		},
		"postgres": func(t *testing.T) legacyStore {
			admin := postgresServer(t)
			schema := fmt.Sprintf("gatehouse_migration_%d", time.Now().UnixNano())
			if _, err := admin.Exec(t.Context(), "CREATE SCHEMA "+schema); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
			url := postgresURL + "?search_path=" + schema
			db, err := sql.Open("pgx", url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			migrateTo(t, db, goose.DialectPostgres, "migrations/postgres", 5)
			return legacyStore{db: db,
				encode: func(v time.Time) any { return v },
				open: func(t *testing.T) store.Store {
					s, err := store.OpenPostgres(t.Context(), url)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					return s
				}}
		},
	}
	for name, legacy := range backends {
		t.Run(name, func(t *testing.T) {
			l := legacy(t)
			exec := func(q string, args ...any) {
				t.Helper()
				if _, err := l.db.ExecContext(t.Context(), q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			exec(`INSERT INTO signing_keys (id, algorithm, private_sealed, public_jwk, created_at, retired_at, publish_until)
				VALUES ('old', 'ES256', 'x', '{}', $1, $2, $3)`, l.encode(t0), l.encode(t0.Add(time.Hour)), l.encode(t0.Add(24*time.Hour)))
			exec(`INSERT INTO signing_keys (id, algorithm, private_sealed, public_jwk, created_at)
				VALUES ('current', 'ES256', 'x', '{}', $1)`, l.encode(t0.Add(time.Hour)))
			for id, created := range map[string]time.Time{"by-old": t0.Add(30 * time.Minute), "by-current": t0.Add(2 * time.Hour)} {
				exec(`INSERT INTO api_tokens (id, kind, created_by, scope, created_at, expires_at)
					VALUES ($1, 'system', 'creator', '[]', $2, $3)`, id, l.encode(created), l.encode(created.Add(24*time.Hour)))
			}

			s := l.open(t)
			keys, err := s.ListSigningKeys(t.Context(), t0)
			if err != nil {
				t.Fatal(err)
			}
			activated := map[string]time.Time{}
			for _, k := range keys {
				if k.ActivatedAt != nil {
					activated[k.ID] = *k.ActivatedAt
				}
			}
			if len(keys) != 2 || !activated["old"].Equal(t0) || !activated["current"].Equal(t0.Add(time.Hour)) {
				t.Fatalf("keys after migration activated %v, want each since its creation", activated)
			}
			for id, kid := range map[string]string{"by-old": "old", "by-current": "current"} {
				tok, err := s.GetToken(t.Context(), id)
				if err != nil || tok.KeyID != kid {
					t.Fatalf("token %s after migration: KeyID %q, %v; want %s", id, tok.KeyID, err, kid)
				}
			}
		})
	}
}
