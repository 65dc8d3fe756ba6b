package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gatehouse/gatehouse/store"
)

// OpenSQLite opens an empty SQLite store, the real embedded backend, in the
// test's temporary directory, and closes it when the test ends. Other
// packages' tests use it instead of a test double.
func OpenSQLite(t testing.TB) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "gatehouse.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
