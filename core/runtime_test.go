package core

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse/gatehouse/devidp"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

func testOptions(dir string) Options {
	return Options{
		PublicURL: "http://gatehouse.test", APIPrefix: "/api", PagesPrefix: "/gatehouse",
		Store: &StoreConfig{Driver: "sqlite", DSN: filepath.Join(dir, "data", "gatehouse.db")}, SecretFile: filepath.Join(dir, "data", "secret"),
		DevIdP: &devidp.Config{Users: []devidp.User{{Email: "alice@example.com"}}},
	}
}

// TestNewWritesNothingAndOpenDoes: New (what `caddy validate` runs) leaves
// the data directory alone; Open creates the store and the secret.
func TestNewWritesNothingAndOpenDoes(t *testing.T) {
	dir := t.TempDir()
	rt, err := New(t.Context(), testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("New wrote %v", entries)
	}
	if err := rt.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gatehouse.db", "secret"} {
		if _, err := os.Stat(filepath.Join(dir, "data", name)); err != nil {
			t.Errorf("after Open: %v", err)
		}
	}
}

// TestReadyWaitsForOpen: a request that arrives before Open waits for it,
// and is ErrUnavailable when it does not come.
func TestReadyWaitsForOpen(t *testing.T) {
	rt, err := New(t.Context(), testOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := rt.Ready(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ready before Open: %v, want ErrUnavailable", err)
	}
	ready := make(chan error, 1)
	go func() { ready <- rt.Ready(t.Context()) }()
	time.Sleep(20 * time.Millisecond)
	if err := rt.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-ready; err != nil {
		t.Fatalf("Ready once opened: %v", err)
	}
}

// TestChangedPolicyFileSwitchesThePolicy: an edited policy file is picked up
// by the watcher; a broken one keeps the running policy and is logged with
// the compiler's file:line once.
func TestChangedPolicyFileSwitchesThePolicy(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.rego")
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(rules, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("package gatehouse.ext\n\ndeny contains \"closed: /a\" if input.request.path == \"/a\"\n")
	core, logs := observer.New(zapcore.InfoLevel)
	o := testOptions(dir)
	o.PolicyPaths = []string{rules}
	o.Logger = zap.New(core)
	rt, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	admin := &Subject{Auth: "session"}
	admin.User.Role, admin.User.Status = "admin", "active"
	allowed := func(path string) bool {
		t.Helper()
		d, err := rt.Decide(httptest.NewRequest("GET", path, nil), DecisionRequest{Subject: admin})
		if err != nil {
			t.Fatal(err)
		}
		return d.Allow
	}
	if allowed("/a") || !allowed("/b") {
		t.Fatal("before the edit: want /a denied and /b allowed")
	}

	write("package gatehouse.ext\n\ndeny contains \"closed: /b\" if input.request.path == \"/b\"\n")
	rt.checkPolicyFiles(t.Context())
	if !allowed("/a") || allowed("/b") {
		t.Fatal("after the edit: want /a allowed and /b denied")
	}
	if logs.FilterField(zap.String("event", "policy.reloaded")).Len() != 1 {
		t.Errorf("no policy.reloaded audit event; logs: %v", logs.All())
	}

	write("package gatehouse.ext\n\ndeny contains msg if {\n\tmsg := \n}\n")
	rt.checkPolicyFiles(t.Context())
	rt.checkPolicyFiles(t.Context())
	if !allowed("/a") || allowed("/b") {
		t.Fatal("after a broken edit: want the previous policy")
	}
	broken := logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(broken) != 1 || !strings.Contains(broken[0].ContextMap()["error"].(string), "rules.rego:5") {
		t.Fatalf("want one error naming rules.rego:5, got %v", broken)
	}
}

// The route the guard matched is handed to the policy only while the
// table it came from is the current engine's: a decision made again under
// another policy (the in-flight watcher's) matches the path afresh.
func TestDecideUsesTheCallersRouteOnlyFromTheCurrentTable(t *testing.T) {
	rt, err := Open(t.Context(), testOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	current := rt.Policy().Routes()
	pull := current.Match("POST", "/api/pull") // model_admin: providers:manage, which a user lacks
	other, err := policy.New(t.Context(), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A subject per case: the decision cache is keyed by subject, method and
	// path, which the guard's route always agrees with.
	n := 0
	decide := func(d DecisionRequest) policy.Decision {
		t.Helper()
		n++
		d.Subject = &Subject{Auth: "session", User: store.User{ID: fmt.Sprint("u", n), Role: "user", Status: store.StatusActive}}
		dec, err := rt.Decide(httptest.NewRequest("GET", "/", nil), d)
		if err != nil {
			t.Fatal(err)
		}
		return dec
	}
	if d := decide(DecisionRequest{Route: pull, Routes: current}); d.Allow {
		t.Fatalf("GET / as the pull route from the current table: %+v, want it decided as a pull (forbidden)", d)
	}
	if d := decide(DecisionRequest{Route: pull, Routes: other.Routes()}); !d.Allow {
		t.Fatalf("GET / with a route from another engine's table: %+v, want it matched afresh (allowed)", d)
	}
	if d := decide(DecisionRequest{}); !d.Allow {
		t.Fatalf("GET / without a route: %+v, want allowed", d)
	}
}
