package store_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/storetest"
)

func openSQLite(t *testing.T, path string) *store.SQLite {
	t.Helper()
	s, err := store.OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatalf("OpenSQLite(%s): %v", path, err)
	}
	return s
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := openSQLite(t, filepath.Join(t.TempDir(), "gatehouse.db"))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestSQLiteCreatesParentDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	s := openSQLite(t, filepath.Join(dir, "gatehouse.db"))
	defer s.Close()
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("parent directory: %v", err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Fatalf("parent directory mode = %o, want 700", perm)
	}
}

func TestSQLiteUnwritablePath(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
	}{
		{"parent is a file", filepath.Join(file, "sub", "gatehouse.db")},
		{"path is a directory", dir},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := store.OpenSQLite(t.Context(), tc.path)
			if err == nil {
				s.Close()
				t.Fatalf("OpenSQLite(%s) succeeded", tc.path)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("error %q does not name the path %s", err, tc.path)
			}
		})
	}
}

// Data written before a restart is there after it, and reopening applies no
// migration twice.
func TestSQLiteReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	s := openSQLite(t, path)
	u, err := s.RecordLogin(ctx, store.LoginInfo{Issuer: "i", Subject: "s", Email: "ann@example.com", BootstrapAdmin: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutSetting(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, store.Session{ID: "sess", UserID: u.ID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for range 2 {
		s = openSQLite(t, path)
		got, err := s.GetUser(ctx, u.ID)
		if err != nil || !reflect.DeepEqual(got, u) {
			t.Fatalf("user after reopen = %+v, %v; want %+v", got, err, u)
		}
		if v, err := s.GetSetting(ctx, "k"); err != nil || string(v) != "v" {
			t.Fatalf("setting after reopen = %q, %v; want v", v, err)
		}
		if _, err := s.GetSession(ctx, "sess"); err != nil {
			t.Fatalf("session after reopen: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSQLiteMigrationsAppliedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	for range 3 {
		openSQLite(t, path).Close()
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var applied, distinct int
	if err := db.QueryRow(`SELECT count(*), count(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0`).Scan(&applied, &distinct); err != nil {
		t.Fatal(err)
	}
	if applied != distinct || applied == 0 {
		t.Fatalf("goose_db_version holds %d applications of %d versions, want each version once", applied, distinct)
	}
}
