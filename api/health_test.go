package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/gatehouse/gatehouse/api"
	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/devidp"
)

// TestHealthFollowsTheStore: 200 while the store answers, 503 once it does not.
func TestHealthFollowsTheStore(t *testing.T) {
	dir := t.TempDir()
	rt, err := core.Open(context.Background(), core.Options{
		PublicURL: "http://gatehouse.test", APIPrefix: "/api", PagesPrefix: "/gatehouse",
		Store: &core.StoreConfig{Driver: "sqlite", DSN: filepath.Join(dir, "g.db")}, SecretFile: filepath.Join(dir, "key"),
		DevIdP: &devidp.Config{Users: []devidp.User{{Email: "a@example.com"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	a := api.New(rt, nil)
	health := func() (int, string) {
		w := httptest.NewRecorder()
		if !a.Serve(w, httptest.NewRequest("GET", "/api/health", nil)) {
			t.Fatal("/api/health was not served by the API")
		}
		var body struct{ Status string }
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		return w.Code, body.Status
	}
	if code, status := health(); code != http.StatusOK || status != "ok" {
		t.Fatalf("healthy store: %d %q", code, status)
	}
	rt.Store.Close()
	if code, status := health(); code != http.StatusServiceUnavailable || status != "unavailable" {
		t.Fatalf("closed store: %d %q", code, status)
	}
	// A route of the backend is not the API's.
	if a.Serve(httptest.NewRecorder(), httptest.NewRequest("POST", "/api/chat", nil)) {
		t.Fatal("the API answered a backend route (/api/chat)")
	}
}
