package core

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse/gatehouse/store"
)

func TestBreakGlassConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  BreakGlassConfig
		ok   bool
	}{
		{"defaults", BreakGlassConfig{}, true},
		{"named users and 4h", BreakGlassConfig{Users: []string{"a@example.com"}, Role: "admin", TTL: caddy.Duration(4 * time.Hour)}, true},
		{"longer than 4h", BreakGlassConfig{TTL: caddy.Duration(5 * time.Hour)}, false},
		{"shorter than 1m", BreakGlassConfig{TTL: caddy.Duration(time.Second)}, false},
		{"a user that is no email", BreakGlassConfig{Users: []string{"alice"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestBreakGlassGrantsInMemory(t *testing.T) {
	now := time.Now()
	clock := now
	b := breakGlassGrants{now: func() time.Time { return clock }}
	if _, ok := b.of("u1"); ok {
		t.Fatal("a grant before any was read")
	}
	b.add(store.BreakGlassGrant{ID: "g1", User: store.RequestUser{ID: "u1"}, ExpiresAt: now.Add(time.Hour)})
	if g, ok := b.of("u1"); !ok || g.ID != "g1" {
		t.Fatalf("of(u1) = %v, %v; want g1", g, ok)
	}
	clock = now.Add(time.Hour)
	if _, ok := b.of("u1"); ok {
		t.Fatal("a grant past its expiry still counts before the worker reads again")
	}
	if lost := b.set(nil); len(lost) != 1 || lost[0] != "u1" {
		t.Fatalf("set(nil) lost %v, want [u1]", lost)
	}
}
