package policy

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

func newEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	e, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func ptr(s string) *string { return &s }

func apiCall(route string) *Input {
	method, path, _ := strings.Cut(route, " ")
	return &Input{Request: Request{Method: method, Path: path, Host: "gw.test"}, APIRoute: ptr(route)}
}

func backendCall(method, path string) *Input {
	return &Input{Request: Request{Method: method, Path: path, PathFolded: FoldPath(path), Host: "gw.test", Headers: map[string]string{"accept": "application/json"}}}
}

func session(role, status string) *Subject {
	return &Subject{ID: role + "-" + status, Email: role + "@example.com", Role: role, Status: status, Auth: AuthSession}
}

func bearer(role string, scope, models []string) *Subject {
	s := session(role, "active")
	s.Auth = AuthToken
	s.Token = &Token{ID: "tok-1", Kind: "personal", Scope: scope, Models: models}
	return s
}

func with(in *Input, subject *Subject) *Input {
	c := *in
	c.Subject = subject
	return &c
}

func decide(t *testing.T, e *Engine, in *Input) Decision {
	t.Helper()
	d, err := e.Decide(t.Context(), in)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	return d
}

// TestDecisionMatrix pins the code every kind of caller gets on a sample of
// routes; "" means allowed.
func TestDecisionMatrix(t *testing.T) {
	e := newEngine(t, Options{})
	callers := []struct {
		name    string
		subject *Subject
	}{
		{"anonymous", nil},
		{"pending", session("user", "pending")},
		{"denied", session("user", "denied")},
		{"suspended", session("manager", "suspended")},
		{"user", session("user", "active")},
		{"manager", session("manager", "active")},
		{"admin", session("admin", "active")},
	}
	const (
		unauth    = CodeUnauthenticated
		required  = CodeAccessRequired
		suspended = CodeAccountSuspended
		denied    = CodeAccessDenied
		forbidden = CodeForbidden
	)
	tests := []struct {
		request *Input
		// codes in the order of callers
		codes [7]string
	}{
		{apiCall("GET /api/health"), [7]string{"", "", "", "", "", "", ""}},
		{apiCall("GET /api/auth/login"), [7]string{"", "", "", "", "", "", ""}},
		{apiCall("GET /.well-known/jwks.json"), [7]string{"", "", "", "", "", "", ""}},
		{apiCall("GET /api/auth/me"), [7]string{unauth, "", "", "", "", "", ""}},
		{apiCall("POST /api/auth/logout"), [7]string{unauth, "", "", "", "", "", ""}},
		{apiCall("POST /api/auth/request-access"), [7]string{unauth, "", "", "", forbidden, forbidden, forbidden}},
		{apiCall("GET /gatehouse/request-access"), [7]string{unauth, "", "", "", "", "", ""}},
		{apiCall("GET /api/users"), [7]string{unauth, required, denied, suspended, forbidden, "", ""}},
		{apiCall("GET /api/users/{id}/activity"), [7]string{unauth, required, denied, suspended, forbidden, "", ""}},
		{apiCall("PUT /api/access/{id}/deny"), [7]string{unauth, required, denied, suspended, forbidden, "", ""}},
		{apiCall("PUT /api/users/{id}/role"), [7]string{unauth, required, denied, suspended, forbidden, forbidden, ""}},
		{apiCall("DELETE /api/users/{id}"), [7]string{unauth, required, denied, suspended, forbidden, forbidden, ""}},
		{apiCall("GET /api/settings"), [7]string{unauth, required, denied, suspended, forbidden, forbidden, ""}},
		{apiCall("GET /api/audit"), [7]string{unauth, required, denied, suspended, forbidden, forbidden, ""}},
		{apiCall("GET /api/tokens"), [7]string{unauth, required, denied, suspended, "", "", ""}},
		{apiCall("GET /api/not-a-route"), [7]string{unauth, required, denied, suspended, forbidden, forbidden, forbidden}},
		{backendCall("POST", "/v1/embeddings"), [7]string{unauth, required, denied, suspended, "", "", ""}},
		{backendCall("POST", "/v1/chat/completions"), [7]string{unauth, required, denied, suspended, "", "", ""}},
		{backendCall("GET", "/admin"), [7]string{unauth, required, denied, suspended, "", "", ""}},
		// A backend path that looks like a Gatehouse API route is still a backend route.
		{backendCall("GET", "/api/health"), [7]string{unauth, required, denied, suspended, "", "", ""}},
	}
	for _, tt := range tests {
		for i, caller := range callers {
			name := tt.request.Request.Method + " " + tt.request.Request.Path + "/" + caller.name
			if tt.request.APIRoute == nil {
				name = "backend " + name
			}
			t.Run(name, func(t *testing.T) {
				got := decide(t, e, with(tt.request, caller.subject))
				want := tt.codes[i]
				if got.Allow != (want == "") || got.Code != want {
					t.Errorf("got allow=%v code=%q (%s), want code %q", got.Allow, got.Code, got.Reason, want)
				}
			})
		}
	}
}

func TestTokenScopeIntersectsRole(t *testing.T) {
	e := newEngine(t, Options{})
	tests := []struct {
		name      string
		subject   *Subject
		request   *Input
		wantAllow bool
	}{
		{"scope grants a permission of the role", bearer("user", []string{"models:use"}, nil), backendCall("POST", "/v1/embeddings"), true},
		{"scope without the route's permission", bearer("user", []string{"models:use"}, nil), backendCall("GET", "/"), false},
		{"chat needs chat:use in scope", bearer("user", []string{"models:use"}, nil), backendCall("POST", "/v1/chat/completions"), false},
		{"scope beyond the role grants nothing", bearer("user", []string{"config:manage"}, nil), apiCall("GET /api/audit"), false},
		{"demoted admin's token loses admin power", bearer("manager", []string{"config:manage", "users:manage"}, nil), apiCall("GET /api/audit"), false},
		{"admin token with the scope", bearer("admin", []string{"config:manage"}, nil), apiCall("GET /api/audit"), true},
		{"token without scope", bearer("admin", nil, nil), backendCall("GET", "/"), false},
		{"session ignores the display permissions", &Subject{ID: "u", Role: "user", Status: "active", Auth: AuthSession, Permissions: []string{"config:manage"}}, apiCall("GET /api/audit"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decide(t, e, with(tt.request, tt.subject))
			if got.Allow != tt.wantAllow {
				t.Fatalf("allow = %v (%s %s), want %v", got.Allow, got.Code, got.Reason, tt.wantAllow)
			}
			if !got.Allow && got.Code != CodeForbidden {
				t.Errorf("code = %q, want %q", got.Code, CodeForbidden)
			}
		})
	}
}

func TestModelGlobs(t *testing.T) {
	e := newEngine(t, Options{Data: map[string]any{
		"roles": map[string]any{"user": map[string]any{"models": []any{"llama3*", "qwen2.5:*"}}},
	}})
	tests := []struct {
		name    string
		subject *Subject
		model   string
		want    string
	}{
		{"role glob matches across dots", session("user", "active"), "llama3.1:8b", ""},
		{"second role glob", session("user", "active"), "qwen2.5:7b", ""},
		{"model outside the role's globs", session("user", "active"), "gpt-4o", CodeModelNotAllowed},
		{"role without globs uses every model", session("manager", "active"), "gpt-4o", ""},
		{"token and role globs both match", bearer("user", []string{"models:use", "chat:use"}, []string{"llama3.1*"}), "llama3.1:8b", ""},
		{"token glob narrows the role's", bearer("user", []string{"models:use", "chat:use"}, []string{"llama3.1*"}), "llama3.2:1b", CodeModelNotAllowed},
		{"token glob cannot widen the role's", bearer("user", []string{"models:use", "chat:use"}, []string{"*"}), "gpt-4o", CodeModelNotAllowed},
		{"token with empty models uses the role's", bearer("user", []string{"models:use", "chat:use"}, []string{}), "llama3", ""},
		{"token globs for an unrestricted role", bearer("admin", []string{"models:use", "chat:use"}, []string{"gpt-*"}), "claude", CodeModelNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := with(backendCall("POST", "/v1/chat/completions"), tt.subject)
			in.Model = ptr(tt.model)
			got := decide(t, e, in)
			if got.Allow != (tt.want == "") || got.Code != tt.want {
				t.Errorf("got allow=%v code=%q (%s), want code %q", got.Allow, got.Code, got.Reason, tt.want)
			}
		})
	}
}

func TestActingOnUsers(t *testing.T) {
	e := newEngine(t, Options{})
	tests := []struct {
		name   string
		route  string
		caller string
		target *Target
		change *Change
		want   string
	}{
		{"manager suspends a user", "PUT /api/users/{id}/status", "manager", &Target{ID: "t", Role: "user", Status: "active"}, &Change{Status: "suspended"}, ""},
		{"manager cannot suspend a manager", "PUT /api/users/{id}/status", "manager", &Target{ID: "t", Role: "manager", Status: "active"}, &Change{Status: "suspended"}, CodeForbidden},
		{"admin suspends another admin", "PUT /api/users/{id}/status", "admin", &Target{ID: "t", Role: "admin", Status: "active"}, &Change{Status: "suspended"}, ""},
		{"manager cannot approve as manager", "PUT /api/access/{id}/approve", "manager", &Target{ID: "t", Role: "user", Status: "pending"}, &Change{Role: "manager"}, CodeForbidden},
		{"manager approves as user", "PUT /api/access/{id}/approve", "manager", &Target{ID: "t", Role: "user", Status: "pending"}, &Change{Role: "user"}, ""},
		{"manager cannot approve as admin", "PUT /api/access/{id}/approve", "manager", &Target{ID: "t", Role: "user", Status: "pending"}, &Change{Role: "admin"}, CodeForbidden},
		{"admin grants admin", "PUT /api/users/{id}/role", "admin", &Target{ID: "t", Role: "user", Status: "active"}, &Change{Role: "admin"}, ""},
		{"unknown role cannot be granted", "PUT /api/users/{id}/role", "admin", &Target{ID: "t", Role: "user", Status: "active"}, &Change{Role: "root"}, CodeForbidden},
		{"manager creates a user token for a user", "POST /api/tokens", "manager", &Target{ID: "t", Role: "user", Status: "active"}, &Change{TokenKind: "user"}, ""},
		{"user cannot create a system token", "POST /api/tokens", "user", nil, &Change{TokenKind: "system"}, CodeForbidden},
		{"user cannot create a token for another user", "POST /api/tokens", "user", &Target{ID: "t", Role: "user", Status: "active"}, &Change{TokenKind: "user"}, CodeForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := with(apiCall(tt.route), session(tt.caller, "active"))
			in.Target, in.Change = tt.target, tt.change
			got := decide(t, e, in)
			if got.Allow != (tt.want == "") || got.Code != tt.want {
				t.Errorf("got allow=%v code=%q (%s), want code %q", got.Allow, got.Code, got.Reason, tt.want)
			}
		})
	}
}

func TestPermissionsAndRoles(t *testing.T) {
	e := newEngine(t, Options{})
	got, err := e.Permissions(t.Context(), "manager")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"access:review", "batches:use", "chat:use", "models:use", "settings:self", "system:access", "tokens:personal", "tokens:user", "users:activity", "users:manage"}
	if !slices.Equal(got, want) {
		t.Errorf("Permissions(manager) = %v, want %v", got, want)
	}
	if got, err := e.Permissions(t.Context(), "nobody"); err != nil || len(got) != 0 {
		t.Errorf("Permissions(nobody) = %v, %v; want none", got, err)
	}
	roles := e.Roles()
	if len(roles) != 3 || !(roles["user"] < roles["manager"] && roles["manager"] < roles["admin"]) {
		t.Errorf("Roles() = %v, want user < manager < admin", roles)
	}
	roles["user"] = 99 // callers get a copy
	if e.Roles()["user"] == 99 {
		t.Error("Roles() exposes the engine's map")
	}
	if !e.RoleExists("admin") || e.RoleExists("root") {
		t.Error("RoleExists: want admin known and root unknown")
	}
}

func TestDataOverlayAddsRole(t *testing.T) {
	e := newEngine(t, Options{Data: map[string]any{
		"roles": map[string]any{
			"analyst": map[string]any{"rank": 15, "inherits": []string{"user"}, "permissions": []string{"usage:view"}},
		},
		"api_routes": map[string]any{"GET /api/usage": []string{"usage:view"}},
	}})
	got, err := e.Permissions(t.Context(), "analyst")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"chat:use", "models:use", "settings:self", "system:access", "tokens:personal", "usage:view"}
	if !slices.Equal(got, want) {
		t.Errorf("Permissions(analyst) = %v, want %v", got, want)
	}
	if e.Roles()["analyst"] != 15 || !e.RoleExists("analyst") {
		t.Errorf("Roles() = %v, want analyst at 15", e.Roles())
	}
	for _, tt := range []struct {
		role, route string
		wantAllow   bool
	}{
		{"analyst", "GET /api/usage", true},
		{"user", "GET /api/usage", false},
		{"manager", "GET /api/usage", false},
		// the overlay merges into the default routes rather than replacing them
		{"manager", "GET /api/users", true},
	} {
		if got := decide(t, e, with(apiCall(tt.route), session(tt.role, "active"))); got.Allow != tt.wantAllow {
			t.Errorf("%s %s: allow = %v (%s), want %v", tt.role, tt.route, got.Allow, got.Reason, tt.wantAllow)
		}
	}
	// a manager ranks above the analyst and so may act on one
	in := with(apiCall("PUT /api/users/{id}/status"), session("manager", "active"))
	in.Target = &Target{ID: "a", Role: "analyst", Status: "active"}
	if got := decide(t, e, in); !got.Allow {
		t.Errorf("manager acting on analyst: %+v, want allowed", got)
	}
}

func TestDataOverlayWithoutRankIsRefused(t *testing.T) {
	_, err := New(t.Context(), Options{Data: map[string]any{
		"roles": map[string]any{"analyst": map[string]any{"permissions": []string{"usage:view"}}},
	}})
	if err == nil || !strings.Contains(err.Error(), `role "analyst" has no numeric rank`) {
		t.Fatalf("New: %v, want a missing-rank error", err)
	}
}

func writePolicy(t *testing.T, dir, name, src string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBrokenExtraPolicyFailsNew(t *testing.T) {
	tests := []struct {
		name, src, wantInError string
	}{
		{"syntax error", "package gatehouse.ext\n\ndeny contains msg if {\n\tmsg := \n}\n", "broken.rego:5"},
		{"type error", "package gatehouse.ext\n\ndeny contains msg if {\n\tmsg := concat(1, 2)\n}\n", "broken.rego:4"},
		{"unsafe variable", "package gatehouse.ext\n\ndeny contains msg if {\n\tx > 1\n\tmsg := \"no\"\n}\n", "broken.rego:4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writePolicy(t, t.TempDir(), "broken.rego", tt.src)
			_, err := New(t.Context(), Options{Paths: []string{path}})
			if err == nil || !strings.Contains(err.Error(), tt.wantInError) {
				t.Fatalf("New: %v, want an error naming %s", err, tt.wantInError)
			}
		})
	}
}

func TestExtraDenyRuleIsEnforced(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, "after_hours.rego", `package gatehouse.ext

deny contains "chat is closed after hours" if {
	input.request.headers["x-after-hours"] == "1"
	input.subject.role != "admin"
}
`)
	// Tests beside the policy are never loaded into the engine.
	writePolicy(t, dir, "after_hours_test.rego", "this is not rego")
	e := newEngine(t, Options{Paths: []string{dir}})

	closed := backendCall("POST", "/v1/chat/completions")
	closed.Request.Headers = map[string]string{"x-after-hours": "1"}
	want := Decision{Allow: false, Code: CodeForbidden, Reason: "chat is closed after hours"}
	if got := decide(t, e, with(closed, session("user", "active"))); got != want {
		t.Errorf("user after hours: %+v, want %+v", got, want)
	}
	if got := decide(t, e, with(closed, session("admin", "active"))); !got.Allow {
		t.Errorf("admin after hours: %+v, want allowed", got)
	}
	if got := decide(t, e, with(backendCall("POST", "/v1/chat/completions"), session("user", "active"))); !got.Allow {
		t.Errorf("user in hours: %+v, want allowed", got)
	}
	if got := decide(t, e, with(closed, session("user", "pending"))); got.Code != CodeAccessRequired {
		t.Errorf("pending user after hours: %+v, want %s first", got, CodeAccessRequired)
	}
}

func TestReplacementPolicy(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, "authz.rego", `package gatehouse.authz

default decision := {"allow": false, "code": "forbidden", "reason": "read-only gateway"}

decision := {"allow": true, "code": "", "reason": "reads are open"} if input.request.method == "GET"

permissions := {"system:access"}
`)
	e := newEngine(t, Options{Paths: []string{dir}})
	if got := decide(t, e, backendCall("GET", "/v1/models")); got != (Decision{Allow: true, Reason: "reads are open"}) {
		t.Errorf("anonymous GET: %+v, want the replacement's allow", got)
	}
	want := Decision{Code: CodeForbidden, Reason: "read-only gateway"}
	if got := decide(t, e, with(backendCall("POST", "/v1/chat/completions"), session("admin", "active"))); got != want {
		t.Errorf("admin POST: %+v, want %+v", got, want)
	}
	if got, err := e.Permissions(t.Context(), "admin"); err != nil || !slices.Equal(got, []string{"system:access"}) {
		t.Errorf("Permissions(admin) = %v, %v; want the replacement's", got, err)
	}
}

func TestReplacementWithBadDecisionIsRefused(t *testing.T) {
	tests := []struct{ name, rules string }{
		{"undefined for anonymous requests", `decision := {"allow": true, "code": "", "reason": ""} if input.subject != null`},
		{"not an object", `decision := true`},
		{"allow not a boolean", `decision := {"allow": "yes", "code": "", "reason": ""}`},
		{"missing reason", `decision := {"allow": true, "code": ""}`},
		{"deny without a code", `decision := {"allow": false, "code": "", "reason": "no"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writePolicy(t, t.TempDir(), "authz.rego", "package gatehouse.authz\n\n"+tt.rules+"\n")
			_, err := New(t.Context(), Options{Paths: []string{path}})
			if !errors.Is(err, ErrBadDecision) {
				t.Fatalf("New: %v, want ErrBadDecision", err)
			}
		})
	}
}

func TestMissingPolicyPathFailsNew(t *testing.T) {
	if _, err := New(t.Context(), Options{Paths: []string{filepath.Join(t.TempDir(), "absent")}}); err == nil {
		t.Fatal("New with a missing path succeeded")
	}
}

// The hand-built AST input must be the document json.Marshal gives, or the
// policy would see something other than what the README and tests describe.
func TestInputASTMatchesJSON(t *testing.T) {
	full := &Input{
		Request:  Request{Method: "POST", Path: "/v1/chat/completions", Host: "gw", Query: "a=1", Headers: map[string]string{"accept": "*/*", "x-a": "b"}},
		Subject:  &Subject{ID: "u", Email: "e", Name: "n", Role: "user", Status: "active", Permissions: []string{"p"}, Auth: AuthToken, Token: &Token{ID: "t", Kind: "personal", Scope: []string{"s"}, Models: []string{}}},
		Model:    ptr("m"),
		APIRoute: ptr("GET /api/users"),
		Target:   &Target{ID: "t", Role: "user", Status: "pending"},
		Change:   &Change{Role: "manager", TokenKind: "user"},
		NowNS:    1_700_000_000_123_456_789,
	}
	for name, in := range map[string]*Input{"full": full, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			raw, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ast.ValueFromReader(strings.NewReader(string(raw)))
			if err != nil {
				t.Fatal(err)
			}
			if got := in.astValue(); got.Compare(want) != 0 {
				t.Errorf("AST input\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestConcurrentDecide(t *testing.T) {
	e := newEngine(t, Options{})
	cases := []struct {
		in   *Input
		want string
	}{
		{with(backendCall("GET", "/"), session("user", "active")), ""},
		{with(apiCall("GET /api/users"), session("user", "active")), CodeForbidden},
		{with(backendCall("GET", "/"), session("user", "pending")), CodeAccessRequired},
		{backendCall("GET", "/"), CodeUnauthenticated},
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				c := cases[(g+i)%len(cases)]
				d, err := e.Decide(context.Background(), c.in)
				if err != nil || d.Code != c.want {
					t.Errorf("Decide = %+v, %v; want code %q", d, err, c.want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkDecide(b *testing.B) {
	e := newEngine(b, Options{})
	backend := with(backendCall("POST", "/v1/chat/completions"), bearer("user", []string{"models:use", "chat:use"}, []string{"llama3*"}))
	backend.Model = ptr("llama3.1:8b")
	backend.Request.Headers = map[string]string{"accept": "application/json", "content-type": "application/json", "user-agent": "bench"}
	// A chat UI's page: no exact route, so every pattern of the table is tried.
	unrouted := with(backendCall("GET", "/assets/index.js"), session("user", "active"))
	api := with(apiCall("PUT /api/users/{id}/status"), session("manager", "active"))
	api.Target = &Target{ID: "t", Role: "user", Status: "active"}
	api.Change = &Change{Status: "suspended"}
	for _, bc := range []struct {
		name string
		in   *Input
	}{{"backend", backend}, {"backend_unrouted", unrouted}, {"api", api}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d, err := e.Decide(b.Context(), bc.in); err != nil || !d.Allow {
					b.Fatalf("Decide = %+v, %v", d, err)
				}
			}
		})
	}
	// A policy split in two (an extension reads a header): what each request
	// pays once the default rules' part is cached.
	b.Run("extensions_of_a_split_policy", func(b *testing.B) {
		dir := b.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "ext.rego"), []byte("package gatehouse.ext\n\ndeny contains \"blocked\" if input.request.headers[\"x-block\"] == \"1\"\n"), 0o600); err != nil {
			b.Fatal(err)
		}
		split := newEngine(b, Options{Paths: []string{dir}})
		base, err := split.DecideBase(b.Context(), backend)
		if err != nil || !split.Split() {
			b.Fatalf("DecideBase = %+v, %v; split %v", base, err, split.Split())
		}
		b.ReportAllocs()
		for b.Loop() {
			if d, err := split.WithExtensions(b.Context(), backend, base); err != nil || !d.Allow {
				b.Fatalf("WithExtensions = %+v, %v", d, err)
			}
		}
	})
	// The same backend request given as a Go struct, as rego.EvalInput does it:
	// the baseline that astValue is measured against.
	b.Run("backend_via_EvalInput", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.decision.Eval(b.Context(), rego.EvalInput(backend)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestCacheableOnlyWhenThePolicyReadsTheKeyedInputs(t *testing.T) {
	tests := []struct {
		name   string
		module string // extra module; "" for the default policy alone
		want   bool
	}{
		{"default policy", "", true},
		{"rule on the path", "package gatehouse.ext\n\ndeny contains \"x\" if input.request.path == \"/x\"\n", true},
		{"rule on a header", "package gatehouse.ext\n\ndeny contains \"x\" if input.request.headers[\"x-a\"] == \"1\"\n", false},
		{"rule on the query", "package gatehouse.ext\n\ndeny contains \"x\" if contains(input.request.query, \"a\")\n", false},
		{"rule on the host", "package gatehouse.ext\n\ndeny contains \"x\" if input.request.host == \"h\"\n", false},
		{"rule on the clock", "package gatehouse.ext\n\ndeny contains \"x\" if input.now_ns > 0\n", false},
		{"rule on time.now_ns", "package gatehouse.ext\n\ndeny contains \"x\" if time.now_ns() > 0\n", false},
		{"rule on the whole request", "package gatehouse.ext\n\nr := input.request\n\ndeny contains \"x\" if r.headers.a\n", false},
		{"dynamic key into the request", "package gatehouse.ext\n\ndeny contains \"x\" if {\n\tsome k\n\tinput.request[k] == \"h\"\n}\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var paths []string
			if tc.module != "" {
				p := filepath.Join(t.TempDir(), "ext.rego")
				if err := os.WriteFile(p, []byte(tc.module), 0o600); err != nil {
					t.Fatal(err)
				}
				paths = []string{p}
			}
			e, err := New(context.Background(), Options{Paths: paths})
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Cacheable(); got != tc.want {
				t.Fatalf("Cacheable() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSplitDecisionsAgreeWithTheWholePolicy: with extension rules that read
// a header, the default rules' part (cacheable) completed by the extensions
// gives what the whole policy gives, request by request.
func TestSplitDecisionsAgreeWithTheWholePolicy(t *testing.T) {
	dir := t.TempDir()
	ext := "package gatehouse.ext\n\ndeny contains \"blocked by header\" if input.request.headers[\"x-block\"] == \"1\"\n\ndeny contains \"no pulls at night\" if {\n\tinput.request.headers[\"x-night\"] == \"1\"\n\tinput.request.path_folded == \"/api/pull\"\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "ext.rego"), []byte(ext), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Options{Paths: []string{dir}})
	if e.Cacheable() || !e.Split() {
		t.Fatalf("Cacheable() = %v, Split() = %v; want false, true", e.Cacheable(), e.Split())
	}
	chat := with(backendCall("POST", "/v1/chat/completions"), bearer("user", []string{"models:use", "chat:use"}, []string{"llama3*"}))
	chat.Model = ptr("llama3.1:8b")
	otherModel := with(backendCall("POST", "/v1/chat/completions"), bearer("user", []string{"models:use", "chat:use"}, []string{"llama3*"}))
	otherModel.Model = ptr("gpt-4")
	var inputs []*Input
	for _, headers := range []map[string]string{{}, {"x-block": "1"}, {"x-night": "1"}, {"x-block": "1", "x-night": "1"}} {
		for _, in := range []*Input{
			chat, otherModel,
			with(backendCall("GET", "/"), session("user", "active")),
			with(backendCall("GET", "/"), session("user", "pending")),
			backendCall("GET", "/"),
			with(backendCall("POST", "/api/pull"), session("admin", "active")),
			with(backendCall("POST", "/api/pull"), session("user", "active")),
		} {
			c := *in
			c.Request.Headers = headers
			inputs = append(inputs, &c)
		}
	}
	denied := 0
	for _, in := range inputs {
		whole, err := e.Decide(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		base, err := e.DecideBase(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.WithExtensions(t.Context(), in, base)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, whole) {
			t.Errorf("%s %s %v: split %+v, whole %+v", in.Request.Method, in.Request.Path, in.Request.Headers, got, whole)
		}
		if got.Reason == "blocked by header; no pulls at night" {
			denied++
		}
	}
	if denied != 1 {
		t.Errorf("%d decisions denied by both extension rules, want 1 (admin's pull with both headers)", denied)
	}
}

// A module outside the extension packages (here one that replaces the
// default rules) keeps the decision whole.
func TestNoSplitWithAReplacedPolicy(t *testing.T) {
	dir := t.TempDir()
	mod := "package gatehouse.authz\n\ndefault decision := {\"allow\": false, \"code\": \"forbidden\", \"reason\": \"x\"}\n\ndecision := {\"allow\": true, \"code\": \"\", \"reason\": \"ok\"} if input.request.headers[\"x-ok\"] == \"1\"\n"
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(mod), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := New(t.Context(), Options{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	if e.Cacheable() || e.Split() {
		t.Fatalf("Cacheable() = %v, Split() = %v; want false, false", e.Cacheable(), e.Split())
	}
}
