// Package policy makes every Gatehouse allow/deny decision by evaluating Rego
// in-process with embedded OPA. The default policy (rego/authz.rego) and its
// data (rego/data.json) are compiled into the binary; Options add rules, replace
// the policy or overlay the data. The route table of the data is read here
// for the guard too (routes.go). core, guard, actions and pages import it;
// it imports nothing of Gatehouse.
package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

//go:embed rego/authz.rego
var defaultPolicy string

//go:embed rego/data.json
var defaultData []byte

//go:embed rego/signin.rego
var defaultSignInPolicy string

const (
	decisionQuery    = "data.gatehouse.authz.decision"
	permissionsQuery = "data.gatehouse.authz.permissions"
	authzPackage     = "data.gatehouse.authz"
	signInQuery      = "data.gatehouse.signin.decision"
	signInPackage    = "data.gatehouse.signin"
	extDenyQuery     = "data.gatehouse.ext.deny"
	extPackage       = "data.gatehouse.ext"
)

// Decision codes (spec §6). An allowed decision has an empty code.
const (
	CodeUnauthenticated  = "unauthenticated"
	CodeAccessRequired   = "access_required"
	CodeAccountSuspended = "account_suspended"
	CodeAccessDenied     = "access_denied"
	CodeForbidden        = "forbidden"
	CodeModelNotAllowed  = "model_not_allowed"
	CodeModelNotFound    = "model_not_found" // a model_info route for a model the caller may not use
)

// Subject.Auth values.
const (
	AuthSession = "session"
	AuthToken   = "token"
)

// ErrBadDecision means the policy gave no decision or one of the wrong shape;
// callers must refuse the request (503), never let it through.
var ErrBadDecision = errors.New("policy decision undefined or malformed")

// Options configure an Engine beyond the embedded default policy.
type Options struct {
	// Paths are extra .rego files or directories (not recursive; *_test.rego
	// skipped). A module in package gatehouse.authz replaces the default policy.
	Paths []string
	// Files, when set, are the extra policy files already read (ReadFiles),
	// and Paths is not read again.
	Files *Files
	// Data is merged over the default data under data.gatehouse.config:
	// objects merge key by key, any other value replaces the default.
	Data map[string]any
}

// Decision is the policy's answer for one request.
type Decision struct {
	Allow  bool   `json:"allow"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
	// StepUp is the authentication context an allowed session request
	// needs (data.gatehouse.config.step_up); the runtime checks it.
	StepUp *StepUp `json:"step_up,omitempty"`
}

// StepUp is a rule of data.gatehouse.config.step_up: one of ACR, every AMR
// value, and a sign-in at most MaxAgeS seconds old.
type StepUp struct {
	Name    string   `json:"name"`
	ACR     []string `json:"acr,omitempty"`
	AMR     []string `json:"amr,omitempty"`
	MaxAgeS int64    `json:"max_age_s,omitempty"`
}

// CodeInsufficientAuthentication refuses a session whose sign-in does not
// meet a step-up rule (RFC 9470).
const CodeInsufficientAuthentication = "insufficient_user_authentication"

// Input is what the policy sees of a request (spec §6 plus Target and Change).
type Input struct {
	Request Request  `json:"request"`
	Subject *Subject `json:"subject"`
	Model   *string  `json:"model"`
	// APIRoute is the matched API route pattern with the configured prefix
	// replaced by /api (pages: by /gatehouse), e.g. "GET /api/users/{id}";
	// nil for backend requests.
	APIRoute *string `json:"api_route"`
	// Route is the key of the backend route the request matches in the
	// route table, "" for none; nil for API routes. Decide fills it in when
	// it is nil, from the engine's table, so that the rules need not match
	// the table's patterns themselves.
	Route *string `json:"route"`
	// Target is the user an API call acts on; nil when the caller acts on itself.
	Target *Target `json:"target"`
	// Change is what the call wants to set.
	Change *Change `json:"change"`
	NowNS  int64   `json:"now_ns"`
}

// Request is the HTTP request being decided.
type Request struct {
	// Method is in upper case.
	Method string `json:"method"`
	// Path is cleaned and percent-decoded; PathFolded is FoldPath(Path), what
	// routes and the default rules match on.
	Path       string `json:"path"`
	PathFolded string `json:"path_folded"`
	Host       string `json:"host"`
	Query      string `json:"query"`
	// Headers are keyed by lower-case name.
	Headers map[string]string `json:"headers"`
}

// Subject is the signed-in caller.
type Subject struct {
	ID     string `json:"id"`
	Email  string `json:"email"`
	Name   string `json:"name"`
	Role   string `json:"role"`
	Status string `json:"status"`
	// Permissions is for display only: the policy computes its own.
	Permissions []string `json:"permissions"`
	Auth        string   `json:"auth"`
	Token       *Token   `json:"token"`
	// AuthContext is how a session's sign-in was authenticated; null for
	// a token.
	AuthContext *AuthContext `json:"auth_context"`
}

// AuthContext is a session's authentication (spec §10): the ID token's acr
// and amr, and auth_time in Unix seconds (0: unknown).
type AuthContext struct {
	ACR      string   `json:"acr"`
	AMR      []string `json:"amr"`
	AuthTime int64    `json:"auth_time"`
}

// Token describes the bearer token a subject authenticated with.
type Token struct {
	ID     string   `json:"id"`
	Kind   string   `json:"kind"`
	Scope  []string `json:"scope"`
	Models []string `json:"models"`
}

// Target is the user an API call acts on.
type Target struct {
	ID     string `json:"id"`
	Role   string `json:"role"`
	Status string `json:"status"`
}

// Change is what an API call wants to set. Role is checked against the
// caller's rank (role changes, approvals); TokenKind ("personal", "user",
// "system") requires the matching tokens:* permission (token creation and
// revocation).
type Change struct {
	Role      string `json:"role,omitempty"`
	Status    string `json:"status,omitempty"`
	TokenKind string `json:"token_kind,omitempty"`
}

// Engine evaluates the compiled policy. It is safe for concurrent use; build
// a new Engine to change policy or data.
type Engine struct {
	decision    rego.PreparedEvalQuery
	permissions rego.PreparedEvalQuery
	signIn      rego.PreparedEvalQuery
	roles       map[string]int
	routes      *RouteTable
	stepUp      map[string]*StepUp // data.gatehouse.config.step_up by name
	cacheable   bool
	// split: the default rules are cacheable but extension rules are not;
	// base is the default rules alone and ext data.gatehouse.ext.deny.
	split     bool
	base, ext rego.PreparedEvalQuery
}

// New compiles the policy, prepares its queries once and checks that the
// decision is well formed for probe requests, so a broken policy fails at
// startup instead of on the first request.
func New(ctx context.Context, opts Options) (*Engine, error) {
	data, config, err := loadData(opts.Data)
	if err != nil {
		return nil, err
	}
	roles, err := roleRanks(config)
	if err != nil {
		return nil, err
	}
	data["gatehouse"].(map[string]any)["derived"] = map[string]any{"role_permissions": rolePermissionClosure(config)}
	rawRoutes, ok := config["routes"].(map[string]any)
	if !ok {
		return nil, errors.New("policy data: routes is not an object")
	}
	routes, err := newRouteTable(rawRoutes)
	if err != nil {
		return nil, err
	}

	files := opts.Files
	if files == nil {
		if files, err = ReadFiles(opts.Paths); err != nil {
			return nil, err
		}
	}
	modules, err := files.parse()
	if err != nil {
		return nil, err
	}
	extensionsOnly := !slices.ContainsFunc(modules, func(m *ast.Module) bool { return !isExtensionModule(m) })
	if !slices.ContainsFunc(modules, isAuthzModule) {
		m, err := parseModule("authz.rego", defaultPolicy)
		if err != nil {
			return nil, fmt.Errorf("embedded policy: %w", err)
		}
		modules = append(modules, m)
	}
	if !slices.ContainsFunc(modules, isSignInModule) {
		m, err := parseModule("signin.rego", defaultSignInPolicy)
		if err != nil {
			return nil, fmt.Errorf("embedded sign-in policy: %w", err)
		}
		modules = append(modules, m)
	}
	compiler := ast.NewCompiler()
	compiler.Compile(moduleMap(modules))
	if compiler.Failed() {
		return nil, fmt.Errorf("compile policy: %w", compiler.Errors)
	}

	// No JSON round trip on write: the derived permission sets stay sets.
	store := inmem.NewFromObjectWithOpts(data, inmem.OptReturnASTValuesOnRead(true), inmem.OptRoundTripOnWrite(false))
	prepare := func(query string) (rego.PreparedEvalQuery, error) {
		pq, err := rego.New(rego.Query(query), rego.Compiler(compiler), rego.Store(store)).PrepareForEval(ctx)
		if err != nil {
			return pq, fmt.Errorf("prepare %s: %w", query, err)
		}
		return pq, nil
	}
	stepUp, err := stepUpRules(config)
	if err != nil {
		return nil, err
	}
	e := &Engine{roles: roles, routes: routes, stepUp: stepUp, cacheable: decisionsCacheable(modules)}
	if e.decision, err = prepare(decisionQuery); err != nil {
		return nil, err
	}
	// With the default rules and extension rules alone, the extensions are
	// asked last (their deny comes just before the allow), so a policy whose
	// extensions read headers or the clock still has the rest of a backend
	// decision cached: only the extensions are evaluated per request.
	if defaults := modules[len(files.names):]; !e.cacheable && extensionsOnly && decisionsCacheable(defaults) {
		baseCompiler := ast.NewCompiler()
		if baseCompiler.Compile(moduleMap(defaults)); baseCompiler.Failed() {
			return nil, fmt.Errorf("compile default policy: %w", baseCompiler.Errors)
		}
		if e.base, err = rego.New(rego.Query(decisionQuery), rego.Compiler(baseCompiler), rego.Store(store)).PrepareForEval(ctx); err != nil {
			return nil, fmt.Errorf("prepare %s: %w", decisionQuery, err)
		}
		if e.ext, err = prepare(extDenyQuery); err != nil {
			return nil, err
		}
		e.split = true
	}
	if e.permissions, err = prepare(permissionsQuery); err != nil {
		return nil, err
	}
	if e.signIn, err = prepare(signInQuery); err != nil {
		return nil, err
	}
	for _, probe := range probes() {
		if _, err := e.Decide(ctx, probe); err != nil {
			return nil, fmt.Errorf("policy refused: %s %s: %w", probe.Request.Method, probe.Request.Path, err)
		}
	}
	return e, nil
}

// Cacheable reports whether a decision depends only on the subject, the method,
// the path and the model: true when no module reads the request's headers,
// query or host, the clock (now_ns or time.now_ns), or passes input.request or
// the whole input around. Callers may then cache backend decisions keyed by
// those inputs (and this engine).
func (e *Engine) Cacheable() bool { return e.cacheable }

// uncacheableInputs are input paths that vary per request beyond the cache key.
var uncacheableInputs = map[string]bool{"headers": true, "query": true, "host": true}

func decisionsCacheable(modules []*ast.Module) bool {
	cacheable := true
	for _, m := range modules {
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if r.HasPrefix(ast.Ref{ast.VarTerm("time"), ast.StringTerm("now_ns")}) {
				cacheable = false
			}
			if !r[0].Equal(ast.InputRootDocument) {
				return false
			}
			switch {
			case len(r) == 1:
				cacheable = false // the whole input
			case r[1].Value.Compare(ast.String("now_ns")) == 0:
				cacheable = false
			case r[1].Value.Compare(ast.String("subject")) == 0 && len(r) > 2 && r[2].Value.Compare(ast.String("auth_context")) == 0:
				cacheable = false // differs from session to session of one subject
			case r[1].Value.Compare(ast.String("request")) == 0:
				if len(r) == 2 {
					cacheable = false
				} else if key, ok := r[2].Value.(ast.String); !ok || uncacheableInputs[string(key)] {
					cacheable = false
				}
			}
			return false
		})
	}
	return cacheable
}

// Split reports whether a backend decision comes in two parts, because only
// extension rules (package gatehouse.ext) read what a cache key does not
// hold: DecideBase, which callers may cache as they would when Cacheable,
// and WithExtensions, which they evaluate on every request.
func (e *Engine) Split() bool { return e.split }

// DecideBase is a backend request's decision by the default rules alone, as
// if no extension denied; with an engine that is not Split, it is Decide.
func (e *Engine) DecideBase(ctx context.Context, in *Input) (Decision, error) {
	if !e.split {
		return e.Decide(ctx, in)
	}
	return e.eval(ctx, e.base, in)
}

// WithExtensions completes a DecideBase decision: an allowed one is denied
// (forbidden, the reasons sorted and joined) when an extension denies, as
// the default rules' last branch before the allow does.
func (e *Engine) WithExtensions(ctx context.Context, in *Input, base Decision) (Decision, error) {
	if !e.split || !base.Allow {
		return base, nil
	}
	rs, err := e.ext.Eval(ctx, rego.EvalParsedInput(in.withRoute(e.routes).astValue()))
	if err != nil {
		return Decision{}, fmt.Errorf("evaluate policy: %w", err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return base, nil // no deny rule: nothing denies
	}
	set, ok := rs[0].Expressions[0].Value.([]any)
	if !ok {
		return Decision{}, fmt.Errorf("%s is %T, not a set: %w", extDenyQuery, rs[0].Expressions[0].Value, ErrBadDecision)
	}
	if len(set) == 0 {
		return base, nil
	}
	reasons := make([]string, 0, len(set))
	for _, v := range set {
		r, ok := v.(string)
		if !ok {
			return Decision{}, fmt.Errorf("%s holds %T, not a string: %w", extDenyQuery, v, ErrBadDecision)
		}
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	return Decision{Allow: false, Code: CodeForbidden, Reason: strings.Join(reasons, "; ")}, nil
}

// Decide evaluates the policy for one request. Any error means the request
// must be refused as unavailable.
func (e *Engine) Decide(ctx context.Context, in *Input) (Decision, error) {
	return e.eval(ctx, e.decision, in)
}

func (e *Engine) eval(ctx context.Context, q rego.PreparedEvalQuery, in *Input) (Decision, error) {
	rs, err := q.Eval(ctx, rego.EvalParsedInput(in.withRoute(e.routes).astValue()))
	if err != nil {
		return Decision{}, fmt.Errorf("evaluate policy: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, fmt.Errorf("%s: %w", decisionQuery, ErrBadDecision)
	}
	return parseDecision(rs[0].Expressions[0].Value)
}

// stepUpRules reads data.gatehouse.config.step_up by name.
func stepUpRules(config map[string]any) (map[string]*StepUp, error) {
	list, _ := config["step_up"].([]any)
	out := make(map[string]*StepUp, len(list))
	for i, v := range list {
		raw, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("policy data: step_up[%d] is not an object", i)
		}
		su, err := parseStepUp(raw)
		if err != nil {
			return nil, fmt.Errorf("policy data: step_up[%d]: %v", i, err)
		}
		out[su.Name] = su
	}
	return out, nil
}

// StepUpRule is the step-up rule named name.
func (e *Engine) StepUpRule(name string) (*StepUp, bool) {
	su, ok := e.stepUp[name]
	return su, ok
}

func parseStepUp(raw map[string]any) (*StepUp, error) {
	su := &StepUp{}
	su.Name, _ = raw["name"].(string)
	strs := func(key string) ([]string, error) {
		v, ok := raw[key]
		if !ok {
			return nil, nil
		}
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s is not a list", key)
		}
		out := make([]string, 0, len(list))
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s holds a %T", key, e)
			}
			out = append(out, s)
		}
		return out, nil
	}
	var err error
	if su.ACR, err = strs("acr"); err != nil {
		return nil, err
	}
	if su.AMR, err = strs("amr"); err != nil {
		return nil, err
	}
	switch v := raw["max_age_s"].(type) {
	case nil:
	case json.Number:
		if su.MaxAgeS, err = v.Int64(); err != nil {
			return nil, fmt.Errorf("max_age_s: %v", err)
		}
	case float64:
		su.MaxAgeS = int64(v)
	default:
		return nil, fmt.Errorf("max_age_s is a %T, not a number", v)
	}
	return su, nil
}

func parseDecision(v any) (Decision, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return Decision{}, fmt.Errorf("%s is %T, not an object: %w", decisionQuery, v, ErrBadDecision)
	}
	var d Decision
	if d.Allow, ok = obj["allow"].(bool); !ok {
		return Decision{}, fmt.Errorf("%s.allow is not a boolean: %w", decisionQuery, ErrBadDecision)
	}
	if d.Code, ok = obj["code"].(string); !ok {
		return Decision{}, fmt.Errorf("%s.code is not a string: %w", decisionQuery, ErrBadDecision)
	}
	if d.Reason, ok = obj["reason"].(string); !ok {
		return Decision{}, fmt.Errorf("%s.reason is not a string: %w", decisionQuery, ErrBadDecision)
	}
	if raw, ok := obj["step_up"].(map[string]any); ok && d.Allow {
		su, err := parseStepUp(raw)
		if err != nil {
			return Decision{}, fmt.Errorf("%s.step_up: %v: %w", decisionQuery, err, ErrBadDecision)
		}
		d.StepUp = su
	}
	// A deny without a code cannot be turned into the response spec §6 promises.
	if !d.Allow && d.Code == "" {
		return Decision{}, fmt.Errorf("%s denies without a code: %w", decisionQuery, ErrBadDecision)
	}
	return d, nil
}

// Permissions returns the sorted effective permissions of a role signed in
// with a session (a token's scope narrows them further).
func (e *Engine) Permissions(ctx context.Context, role string) ([]string, error) {
	in := ast.NewObject(ast.Item(ast.InternedTerm("subject"), ast.NewTerm(ast.NewObject(
		ast.Item(ast.InternedTerm("role"), ast.StringTerm(role)),
		ast.Item(ast.InternedTerm("status"), ast.StringTerm("active")),
		ast.Item(ast.InternedTerm("auth"), ast.StringTerm(AuthSession)),
	))))
	rs, err := e.permissions.Eval(ctx, rego.EvalParsedInput(in))
	if err != nil {
		return nil, fmt.Errorf("evaluate permissions of role %q: %w", role, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, fmt.Errorf("%s undefined for role %q", permissionsQuery, role)
	}
	set, ok := rs[0].Expressions[0].Value.([]any)
	if !ok {
		return nil, fmt.Errorf("%s is %T, not a set", permissionsQuery, rs[0].Expressions[0].Value)
	}
	perms := make([]string, 0, len(set))
	for _, p := range set {
		s, ok := p.(string)
		if !ok {
			return nil, fmt.Errorf("%s holds %T, not a string", permissionsQuery, p)
		}
		perms = append(perms, s)
	}
	slices.Sort(perms)
	return perms, nil
}

// Routes is the route table of the policy data, the one the Rego rules read.
func (e *Engine) Routes() *RouteTable { return e.routes }

// Roles returns each role's rank from the policy data.
func (e *Engine) Roles() map[string]int {
	return maps.Clone(e.roles)
}

// Rank is role's rank in the policy data, 0 for a role it does not define.
func (e *Engine) Rank(role string) int { return e.roles[role] }

// RoleExists reports whether the policy data defines role.
func (e *Engine) RoleExists(role string) bool {
	_, ok := e.roles[role]
	return ok
}

// probes are requests every policy must answer with a well-formed decision.
func probes() []*Input {
	health := "GET /api/health"
	return []*Input{
		{Request: Request{Method: "GET", Path: "/api/health"}, APIRoute: &health},
		{Request: Request{Method: "GET", Path: "/", PathFolded: "/"}},
	}
}

// loadData merges the overlay over the embedded data and normalises it
// through JSON so the store holds only JSON types.
func loadData(overlay map[string]any) (data, config map[string]any, err error) {
	if err := json.Unmarshal(defaultData, &data); err != nil {
		return nil, nil, fmt.Errorf("embedded data: %w", err)
	}
	config = data["gatehouse"].(map[string]any)["config"].(map[string]any)
	mergeInto(config, overlay)
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, nil, fmt.Errorf("policy data overlay: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	data = nil
	if err := dec.Decode(&data); err != nil {
		return nil, nil, fmt.Errorf("policy data overlay: %w", err)
	}
	return data, data["gatehouse"].(map[string]any)["config"].(map[string]any), nil
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		sub, srcIsObject := v.(map[string]any)
		cur, dstIsObject := dst[k].(map[string]any)
		if srcIsObject && dstIsObject {
			mergeInto(cur, sub)
			continue
		}
		dst[k] = v
	}
}

// rolePermissionClosure is each role's permissions with every role it
// inherits, transitively (cycles tolerated), worked out once per engine so
// that a decision reads them instead of walking the role graph
// (data.gatehouse.derived.role_permissions, read by authz.rego).
func rolePermissionClosure(config map[string]any) map[string]any {
	roles, _ := config["roles"].(map[string]any)
	strs := func(v any) []string {
		list, _ := v.([]any)
		out := make([]string, 0, len(list))
		for _, e := range list {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	out := make(map[string]any, len(roles))
	for name := range roles {
		seen, perms := map[string]bool{}, map[string]bool{}
		queue := []string{name}
		for len(queue) > 0 {
			r := queue[0]
			queue = queue[1:]
			if seen[r] {
				continue
			}
			seen[r] = true
			role, _ := roles[r].(map[string]any)
			for _, p := range strs(role["permissions"]) {
				perms[p] = true
			}
			queue = append(queue, strs(role["inherits"])...)
		}
		set := ast.NewSet()
		for p := range perms {
			set.Add(ast.StringTerm(p))
		}
		out[name] = set
	}
	return out
}

func roleRanks(config map[string]any) (map[string]int, error) {
	roles, ok := config["roles"].(map[string]any)
	if !ok {
		return nil, errors.New("policy data: roles is not an object")
	}
	ranks := make(map[string]int, len(roles))
	for name, r := range roles {
		role, ok := r.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("policy data: role %q is not an object", name)
		}
		n, ok := role["rank"].(json.Number)
		if !ok {
			return nil, fmt.Errorf("policy data: role %q has no numeric rank", name)
		}
		rank, err := n.Int64()
		if err != nil {
			return nil, fmt.Errorf("policy data: role %q rank: %w", name, err)
		}
		ranks[name] = int(rank)
	}
	return ranks, nil
}

// Files are the extra policy files of some paths, read at one moment: an
// Engine is compiled from them, and their digest tells whoever watches the
// paths that a file changed.
type Files struct {
	names   []string
	sources []string
	digest  string
}

// ReadFiles reads the .rego files that paths name: files, or the files of
// directories (not recursive). *_test.rego files are skipped: tests run under
// `opa test`, never inside the guard.
func ReadFiles(paths []string) (*Files, error) {
	var names []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("policy path: %w", err)
		}
		if !info.IsDir() {
			names = append(names, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("policy path: %w", err)
		}
		for _, entry := range entries {
			if entry.Type().IsRegular() && strings.HasSuffix(entry.Name(), ".rego") {
				names = append(names, filepath.Join(p, entry.Name()))
			}
		}
	}
	f := &Files{}
	h := sha256.New()
	for _, name := range names {
		if strings.HasSuffix(name, "_test.rego") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("policy file: %w", err)
		}
		// Length-prefixed, so that no two sets of files hash alike.
		fmt.Fprintf(h, "%d:%s%d:", len(name), name, len(src))
		h.Write(src)
		f.names = append(f.names, name)
		f.sources = append(f.sources, string(src))
	}
	f.digest = hex.EncodeToString(h.Sum(nil))
	return f, nil
}

// Digest identifies the files' names and contents.
func (f *Files) Digest() string { return f.digest }

// Names are the files read, in the order they were read.
func (f *Files) Names() []string { return slices.Clone(f.names) }

func (f *Files) parse() ([]*ast.Module, error) {
	modules := make([]*ast.Module, 0, len(f.names))
	for i, name := range f.names {
		m, err := parseModule(name, f.sources[i])
		if err != nil {
			return nil, err
		}
		modules = append(modules, m)
	}
	return modules, nil
}

func parseModule(name, src string) (*ast.Module, error) {
	m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	return m, nil
}

func isAuthzModule(m *ast.Module) bool {
	return m.Package.Path.String() == authzPackage
}

// isExtensionModule: a module of package gatehouse.ext or below it, or of
// a package outside data.gatehouse (a helper the extensions import).
func isExtensionModule(m *ast.Module) bool {
	p := m.Package.Path.String()
	return p == extPackage || strings.HasPrefix(p, extPackage+".") || !strings.HasPrefix(p, "data.gatehouse.") && p != "data.gatehouse"
}

func isSignInModule(m *ast.Module) bool {
	return m.Package.Path.String() == signInPackage
}

// moduleMap keys modules by file name so compiler messages point at the file;
// several modules may share one package.
func moduleMap(modules []*ast.Module) map[string]*ast.Module {
	out := make(map[string]*ast.Module, len(modules))
	for i, m := range modules {
		name := m.Package.Location.File
		if _, taken := out[name]; taken || name == "" {
			name = fmt.Sprintf("%s#%d", name, i)
		}
		out[name] = m
	}
	return out
}
