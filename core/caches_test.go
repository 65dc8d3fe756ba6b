package core

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/devidp"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

func openTestRuntime(t *testing.T) *Runtime {
	t.Helper()
	dir := t.TempDir()
	rt, err := Open(context.Background(), Options{
		PublicURL: "http://gatehouse.test", APIPrefix: "/api", PagesPrefix: "/gatehouse",
		Store: &StoreConfig{Driver: "sqlite", DSN: filepath.Join(dir, "gatehouse.db")}, SecretFile: filepath.Join(dir, "secret"),
		DevIdP: &devidp.Config{Users: []devidp.User{{Email: "alice@example.com"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return rt
}

// TestRevocationViewOnlyGrows: a revocation learned over Redis while a store
// read was under way is kept, whatever that read returned; only an expired
// token leaves the view (item 6 of issue 8).
func TestRevocationViewOnlyGrows(t *testing.T) {
	rt := openTestRuntime(t)
	ctx := context.Background()
	// Announced by another instance; the store read below started before it
	// was committed, so it does not list it.
	rt.apply(ctx, fanoutEvent{Kind: "revoke", ID: "announced", Exp: time.Now().Add(time.Hour).Unix()})
	for _, full := range []bool{true, false} {
		if full {
			rt.revoked.fullAt = time.Time{}
		}
		if err := rt.syncRevocations(ctx); err != nil {
			t.Fatal(err)
		}
		if !rt.revoked.revoked("announced") {
			t.Fatalf("a store read (full=%v) dropped a revocation learned over Redis", full)
		}
	}
	// An expired token leaves at the next full read.
	rt.revoked.add("expired", time.Now().Add(-time.Second))
	rt.revoked.fullAt = time.Time{}
	if err := rt.syncRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	if rt.revoked.revoked("expired") || !rt.revoked.revoked("announced") {
		t.Fatalf("after a full read: expired kept %v, announced kept %v", rt.revoked.revoked("expired"), rt.revoked.revoked("announced"))
	}
	// Revocations committed by another instance arrive by the incremental read.
	u, err := rt.Store.RecordLogin(ctx, store.LoginInfo{Issuer: "i", Subject: "s", Email: "bob@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if _, err := rt.Store.CreateToken(ctx, store.APIToken{ID: "elsewhere", Kind: store.TokenPersonal, UserID: u.ID, CreatedBy: u.ID,
		Scope: []string{"chat:use"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Store.RevokeToken(ctx, "elsewhere", now, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	if err := rt.syncRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	if !rt.revoked.revoked("elsewhere") {
		t.Fatal("the incremental read missed a revocation committed meanwhile")
	}
}

// TestInvalidStoredSettingsStartWithoutTheirCustomRoles: a settings document
// an older version accepted (a role out-ranking admin) does not keep
// Gatehouse from starting; the role is left out, failing closed, and the
// built-in roles' model restrictions stay.
func TestInvalidStoredSettingsStartWithoutTheirCustomRoles(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	old := `{"roles":{"boss":{"rank":999,"inherits":["admin"],"permissions":["x"]},"user":{"models":["llama3*"]}}}`
	if err := st.PutSetting(context.Background(), settingsKey, []byte(old)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	rt, err := Open(context.Background(), Options{
		PublicURL: "http://gatehouse.test", APIPrefix: "/api", PagesPrefix: "/gatehouse",
		Store: &StoreConfig{Driver: "sqlite", DSN: filepath.Join(dir, "gatehouse.db")}, SecretFile: filepath.Join(dir, "secret"),
		DevIdP: &devidp.Config{Users: []devidp.User{{Email: "alice@example.com"}}},
	})
	if err != nil {
		t.Fatalf("start with settings an older version stored: %v", err)
	}
	defer rt.Close()
	if rt.Policy().RoleExists("boss") {
		t.Fatal("the invalid custom role was kept")
	}
	perms, err := rt.Policy().Permissions(context.Background(), "boss")
	if err != nil || len(perms) != 0 {
		t.Fatalf("holders of the dropped role have %v (%v), want no permissions", perms, err)
	}
	model := "gpt-4"
	req := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	dec, err := rt.Decide(req, DecisionRequest{Subject: &Subject{User: store.User{ID: "u", Role: "user", Status: store.StatusActive}, Auth: "session"}, Model: &model})
	if err != nil || dec.Allow {
		t.Fatalf("a user's model restriction was lost: %+v %v", dec, err)
	}
}

// TestDecisionCacheServesOnlyTheEngineThatDecided: a new policy or new
// settings start afresh, and a full cache makes room instead of emptying
// itself.
func TestDecisionCacheServesOnlyTheEngineThatDecided(t *testing.T) {
	c := newDecisionCache()
	oldEngine, newEngine := new(policy.Engine), new(policy.Engine)
	key := decisionKey{userID: "u", role: "user", method: "GET", path: "/v1/models"}
	c.put(oldEngine, key, policy.Decision{Allow: true})
	if d, ok := c.get(oldEngine, key); !ok || !d.Allow {
		t.Fatalf("get = %+v, %v; want the stored allow", d, ok)
	}
	if d, ok := c.get(newEngine, key); ok {
		t.Fatalf("a new engine was served the old one's decision %+v", d)
	}
	c.put(newEngine, key, policy.Decision{Code: "forbidden"})
	if d, ok := c.get(oldEngine, key); ok {
		t.Fatalf("the old engine's decision %+v outlived the switch", d)
	}
	for i := range decisionCacheMax + 100 {
		c.put(newEngine, decisionKey{userID: fmt.Sprint("user-", i), method: "GET", path: "/v1/models"}, policy.Decision{Allow: true})
	}
	if n := c.entries.Len(); n > decisionCacheMax {
		t.Fatalf("the cache holds %d decisions, more than %d", n, decisionCacheMax)
	}
	last := decisionKey{userID: fmt.Sprint("user-", decisionCacheMax+99), method: "GET", path: "/v1/models"}
	if _, ok := c.get(newEngine, last); !ok {
		t.Fatal("the newest decision is gone: the full cache emptied itself")
	}
}
