package core

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/quota"
	"github.com/gatehouse/gatehouse/store"
)

func TestParseLifetime(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"", 0, false},
		{"720h", 720 * time.Hour, false},
		{"90d", 90 * 24 * time.Hour, false},
		{"1h30m", 90 * time.Minute, false},
		{"0d", 0, true},
		{"-1h", 0, true},
		{"0s", 0, true},
		{"soon", 0, true},
		{"1.5d", 0, true},
		{"d", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseLifetime(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseLifetime(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestValidateSettings(t *testing.T) {
	tests := []struct {
		name  string
		roles map[string]RoleSetting
		want  string // "" = valid
	}{
		{"none", nil, ""},
		{"custom role", map[string]RoleSetting{"analyst": {Rank: 15, Inherits: []string{"user"}, Permissions: []string{"usage:view"}}}, ""},
		{"models on a built-in role", map[string]RoleSetting{"user": {Models: []string{"llama3*"}}}, ""},
		{"limits on a built-in role", map[string]RoleSetting{"user": {Limits: &quota.Limits{TokensPerDay: 100_000}}}, ""},
		{"negative limits", map[string]RoleSetting{"user": {Limits: &quota.Limits{TokensPerMinute: -5}}}, `role "user": tokens_per_minute must not be negative`},
		{"permissions on a built-in role", map[string]RoleSetting{"user": {Permissions: []string{"config:manage"}}}, `built-in role "user" may only be given models and limits`},
		{"rank on a built-in role", map[string]RoleSetting{"admin": {Rank: 99}}, `built-in role "admin"`},
		{"custom role without rank", map[string]RoleSetting{"analyst": {}}, "needs a positive rank"},
		{"rank at admin's", map[string]RoleSetting{"boss": {Rank: 30}}, "needs a rank below admin's (30)"},
		{"rank above admin's", map[string]RoleSetting{"boss": {Rank: 999}}, "needs a rank below admin's (30)"},
		{"inheriting admin", map[string]RoleSetting{"boss": {Rank: 15, Inherits: []string{"admin"}}}, "cannot inherit admin"},
		{"inheriting admin at a high rank", map[string]RoleSetting{"boss": {Rank: 29, Inherits: []string{"admin"}}}, "cannot inherit admin"},
		{"ranked below what it inherits", map[string]RoleSetting{"lead": {Rank: 15, Inherits: []string{"manager"}}}, `needs a rank above "manager"'s (20)`},
		{"ranked like what it inherits", map[string]RoleSetting{"lead": {Rank: 20, Inherits: []string{"manager"}}}, `needs a rank above "manager"'s (20)`},
		{"ranked below a custom parent", map[string]RoleSetting{"a": {Rank: 15, Inherits: []string{"user"}}, "b": {Rank: 12, Inherits: []string{"a"}}}, `role "b" needs a rank above "a"'s (15)`},
		{"a chain of custom roles", map[string]RoleSetting{"a": {Rank: 15, Inherits: []string{"user"}}, "b": {Rank: 18, Inherits: []string{"a"}}}, ""},
		{"empty name", map[string]RoleSetting{"": {Rank: 5}}, "1 to 64 characters"},
		{"empty permission", map[string]RoleSetting{"x": {Rank: 5, Permissions: []string{""}}}, "empty or overlong permission"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&Runtime{}).buildPolicy(t.Context(), Settings{Roles: tc.roles})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidSettings) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrInvalidSettings containing %q", err, tc.want)
			}
		})
	}
}

// TestDecisionKeyCoversEveryInputTheCachedPolicyReads: two requests share a
// cached decision only when subject, token, method, path and model agree.
func TestDecisionKeyCoversEveryInputTheCachedPolicyReads(t *testing.T) {
	model := func(s string) *string { return &s }
	base := &Subject{User: store.User{ID: "u1", Role: "user", Status: "active", Email: "a@x", Name: "A"}, Auth: "token",
		Token: &TokenInfo{ID: "t1"}}
	key := newDecisionKey(base, "POST", "/v1/chat/completions", model("llama3"))
	if newDecisionKey(base, "POST", "/v1/chat/completions", model("llama3")) != key {
		t.Fatal("equal inputs give different keys")
	}
	variants := map[string]decisionKey{
		"role":      newDecisionKey(&Subject{User: store.User{ID: "u1", Role: "manager", Status: "active", Email: "a@x", Name: "A"}, Auth: "token", Token: &TokenInfo{ID: "t1"}}, "POST", "/v1/chat/completions", model("llama3")),
		"status":    newDecisionKey(&Subject{User: store.User{ID: "u1", Role: "user", Status: "suspended", Email: "a@x", Name: "A"}, Auth: "token", Token: &TokenInfo{ID: "t1"}}, "POST", "/v1/chat/completions", model("llama3")),
		"token":     newDecisionKey(&Subject{User: store.User{ID: "u1", Role: "user", Status: "active", Email: "a@x", Name: "A"}, Auth: "token", Token: &TokenInfo{ID: "t2"}}, "POST", "/v1/chat/completions", model("llama3")),
		"auth":      newDecisionKey(&Subject{User: store.User{ID: "u1", Role: "user", Status: "active", Email: "a@x", Name: "A"}, Auth: "session"}, "POST", "/v1/chat/completions", model("llama3")),
		"method":    newDecisionKey(base, "GET", "/v1/chat/completions", model("llama3")),
		"path":      newDecisionKey(base, "POST", "/v1/completions", model("llama3")),
		"model":     newDecisionKey(base, "POST", "/v1/chat/completions", model("mistral")),
		"no model":  newDecisionKey(base, "POST", "/v1/chat/completions", nil),
		"empty":     newDecisionKey(base, "POST", "/v1/chat/completions", model("")),
		"anonymous": newDecisionKey(nil, "POST", "/v1/chat/completions", model("llama3")),
	}
	seen := map[decisionKey]string{key: "base"}
	for name, k := range variants {
		if other, dup := seen[k]; dup {
			t.Errorf("%s gives the same key as %s", name, other)
		}
		seen[k] = name
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/chat/completions":      "/v1/chat/completions",
		"//v1/chat/completions":     "/v1/chat/completions",
		"/v1/chat/completions/":     "/v1/chat/completions",
		"/v1//chat/./completions":   "/v1/chat/completions",
		"/v1/x/../chat/completions": "/v1/chat/completions",
		"/../../secret":             "/secret",
		"":                          "/",
		"secret":                    "/secret",
	} {
		if got := CleanPath(in); got != want {
			t.Errorf("CleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}
