package policy

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestSignInRulesFromData: rules in the data decide through the engine, and
// a decision the engine cannot act on is an error, not an approval.
func TestSignInRulesFromData(t *testing.T) {
	rules := []any{
		map[string]any{"name": "admins", "claim": "groups", "value": "gh-admins", "role": "admin", "decision": "approve", "sync": true},
		map[string]any{"name": "ghosts", "claim": "groups", "value": "ghosts", "role": "ghost", "decision": "approve"},
		map[string]any{"name": "odd", "claim": "groups", "value": "odd", "decision": "maybe"},
	}
	e, err := New(t.Context(), Options{Data: map[string]any{"sign_in_rules": rules}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.SignIn(t.Context(), SignInInput{Provider: "corp", Email: "a@corp.example", EmailVerified: true,
		Claims: map[string]any{"groups": []any{"gh-admins"}}})
	if err != nil || d != (SignInDecision{Decision: SignInApprove, Role: "admin", Sync: true, Rule: "admins"}) {
		t.Fatalf("a member of gh-admins: %+v, %v", d, err)
	}
	if d, err := e.SignIn(t.Context(), SignInInput{Claims: nil}); err != nil || d.Decision != SignInReview || d.Rule != "" {
		t.Fatalf("no claims: %+v, %v; want review by no rule", d, err)
	}
	for _, group := range []string{"ghosts", "odd"} {
		if d, err := e.SignIn(t.Context(), SignInInput{Claims: map[string]any{"groups": []any{group}}}); !errors.Is(err, ErrBadDecision) {
			t.Errorf("rule %s: %+v, %v; want ErrBadDecision", group, d, err)
		}
	}
}

// TestStepUpRidesOnTheDecision: a step-up rule of the data comes back with
// an allowed session decision, numbers and lists intact.
func TestStepUpRidesOnTheDecision(t *testing.T) {
	rules := []any{map[string]any{"name": "admin-api", "permissions": []any{"config:manage"}, "acr": []any{"urn:gh:mfa"}, "amr": []any{"otp"}, "max_age_s": 900}}
	e, err := New(t.Context(), Options{Data: map[string]any{"step_up": rules}})
	if err != nil {
		t.Fatal(err)
	}
	route := "PUT /api/users/{id}/role"
	in := &Input{Request: Request{Method: "PUT", Path: "/api/users/x/role", PathFolded: "/api/users/x/role"}, APIRoute: &route,
		Subject: &Subject{ID: "a", Role: "admin", Status: "active", Auth: AuthSession, AuthContext: &AuthContext{ACR: "urn:gh:mfa"}}}
	d, err := e.Decide(t.Context(), in)
	if err != nil || !d.Allow || d.StepUp == nil {
		t.Fatalf("decision %+v, %v; want allowed with a step-up", d, err)
	}
	if want := (StepUp{Name: "admin-api", ACR: []string{"urn:gh:mfa"}, AMR: []string{"otp"}, MaxAgeS: 900}); fmt.Sprint(*d.StepUp) != fmt.Sprint(want) {
		t.Fatalf("step-up %+v, want %+v", *d.StepUp, want)
	}
	if !e.Cacheable() {
		t.Error("the default policy with step-up rules is not cacheable")
	}
}

// TestRolePermissionClosure: each role's closure, worked out once, holds
// what it inherits transitively and survives a cycle in custom data.
func TestRolePermissionClosure(t *testing.T) {
	got := rolePermissionClosure(map[string]any{"roles": map[string]any{
		"a": map[string]any{"permissions": []any{"p:a"}, "inherits": []any{"b"}},
		"b": map[string]any{"permissions": []any{"p:b"}, "inherits": []any{"c", "a"}},
		"c": map[string]any{"permissions": []any{"p:c"}},
	}})
	// Sets, so that a decision reads them as they are (is_set in authz.rego).
	want := `map[a:{"p:a", "p:b", "p:c"} b:{"p:a", "p:b", "p:c"} c:{"p:c"}]`
	if fmt.Sprint(got) != want {
		t.Fatalf("closure %v, want %v", got, want)
	}
	e, err := New(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	perms, err := e.Permissions(t.Context(), "admin")
	if err != nil || !slices.Contains(perms, "chat:use") || !slices.Contains(perms, "access:review") || !slices.Contains(perms, "config:manage") {
		t.Fatalf("admin's permissions %v, %v; want user's, manager's and its own", perms, err)
	}
}
