package policy

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gobwas/glob"
)

// Route kinds of the route table (spec §6a). A request that matches no route
// is of kind KindOther.
const (
	KindModel      = "model"       // the request names a model; the model must be allowed
	KindListing    = "listing"     // a model listing, filtered to the caller's models
	KindModelInfo  = "model_info"  // one model's details; 404 unless the model is allowed
	KindModelAdmin = "model_admin" // pulls, deletes, creates models: providers:manage
	KindBatch      = "batch"       // batches, files, fine-tuning: batches:use
	KindOther      = "other"       // anything else: system:access
)

// Where a route's model is read from.
const (
	ModelFromBody      = "body"      // a JSON object's member (keys compared case-folded)
	ModelFromMultipart = "multipart" // a multipart/form-data field
	ModelFromQuery     = "query"     // a query parameter
	ModelFromPath      = "path"      // the path segments the pattern's wildcard covers
	ModelFromNone      = "none"      // the route names no model the guard reads
)

// Route is one entry of the route table, data.gatehouse.config.routes. Its key
// is "METHOD /path": the method in upper case or "*" for any, the path as
// matched (cleaned, percent-decoded, folded to lower case) and possibly a glob
// with "/" as separator ("*" within a segment, "**" across segments), matched
// the way Rego's glob.match(pattern, ["/"], path) does. The Rego rules and
// the guard both read this table; TestRouteTableAgreesWithPolicy holds them to
// the same answer.
type Route struct {
	Key  string `json:"-"`
	Kind string `json:"kind"`
	// Chat routes also need chat:use.
	Chat bool `json:"chat,omitempty"`
	// ModelFrom is where the model is read (default: body for model routes,
	// none otherwise).
	ModelFrom string `json:"model_from,omitempty"`
	// ModelKeys name the model in a body, a form or a query (default
	// ["model"]; Ollama's routes also take "name").
	ModelKeys []string `json:"model_keys,omitempty"`
	// ModelOptional lets a model route through without a model (the backend
	// then uses one the caller chose earlier, such as an assistant's).
	ModelOptional bool `json:"model_optional,omitempty"`

	// modelSegments is how many path segments precede the model (ModelFromPath).
	modelSegments int
}

// RouteTable classifies backend requests. It is built from the policy data
// once per engine and safe for concurrent use.
type RouteTable struct {
	exact    map[routeKey]*Route // "METHOD /path" and "* /path"
	patterns []patternRoute      // in order of precedence
}

type routeKey struct{ method, path string }

type patternRoute struct {
	method string
	prefix string // the literal start of the pattern, checked before the glob
	glob   *glob.Pattern
	route  *Route
}

// Match returns the route of a request, nil for KindOther. method is upper
// case, folded is FoldPath of the cleaned path. Precedence: the exact key with
// the method, then with "*", then the pattern with the longest path (the same
// length: a named method before "*", then the key's order).
func (t *RouteTable) Match(method, folded string) *Route {
	if r := t.exact[routeKey{method, folded}]; r != nil {
		return r
	}
	if r := t.exact[routeKey{"*", folded}]; r != nil {
		return r
	}
	for _, p := range t.patterns {
		if (p.method == "*" || p.method == method) && strings.HasPrefix(folded, p.prefix) && p.glob.Match(folded) {
			return p.route
		}
	}
	return nil
}

// Routes returns the table's routes, sorted by key.
func (t *RouteTable) Routes() []*Route {
	out := make([]*Route, 0, len(t.exact)+len(t.patterns))
	for _, r := range t.exact {
		out = append(out, r)
	}
	for _, p := range t.patterns {
		out = append(out, p.route)
	}
	slices.SortFunc(out, func(a, b *Route) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// ModelFromCleanPath returns the model a ModelFromPath route names: the segments
// of the cleaned (not folded) path after the pattern's literal ones.
func (r *Route) ModelFromCleanPath(cleaned string) string {
	rest := strings.TrimPrefix(cleaned, "/")
	for range r.modelSegments {
		_, after, ok := strings.Cut(rest, "/")
		if !ok {
			return ""
		}
		rest = after
	}
	return rest
}

var routeKinds = map[string]bool{
	KindModel: true, KindListing: true, KindModelInfo: true, KindModelAdmin: true, KindBatch: true, KindOther: true,
}

var modelSources = map[string]bool{
	ModelFromBody: true, ModelFromMultipart: true, ModelFromQuery: true, ModelFromPath: true, ModelFromNone: true,
}

// newRouteTable checks and compiles the routes of the policy data.
func newRouteTable(raw map[string]any) (*RouteTable, error) {
	t := &RouteTable{exact: map[routeKey]*Route{}}
	type ranked struct {
		p       patternRoute
		pathLen int
		key     string
	}
	var patterns []ranked
	for key, v := range raw {
		r, err := parseRoute(key, v)
		if err != nil {
			return nil, fmt.Errorf("policy data: route %q: %w", key, err)
		}
		method, p, _ := strings.Cut(key, " ")
		if !strings.Contains(p, "*") {
			t.exact[routeKey{method, p}] = r
			continue
		}
		g, err := glob.Compile(p, '/')
		if err != nil {
			return nil, fmt.Errorf("policy data: route %q: %w", key, err)
		}
		prefix := p[:strings.IndexAny(p, `*?[{\`)]
		patterns = append(patterns, ranked{patternRoute{method, prefix, g, r}, utf8.RuneCountInString(p), key})
	}
	// The Rego rule takes min([-len(path), method == "*", key]) of the matches.
	slices.SortFunc(patterns, func(a, b ranked) int {
		return cmp.Or(
			cmp.Compare(b.pathLen, a.pathLen),
			compareBool(a.p.method == "*", b.p.method == "*"),
			strings.Compare(a.key, b.key),
		)
	})
	for _, p := range patterns {
		t.patterns = append(t.patterns, p.p)
	}
	return t, nil
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	default:
		return 1
	}
}

func parseRoute(key string, v any) (*Route, error) {
	method, p, ok := strings.Cut(key, " ")
	if !ok || !validMethod(method) || !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t") {
		return nil, fmt.Errorf(`the key must be "METHOD /path" (method upper case or *)`)
	}
	if p != FoldPath(p) || (!strings.Contains(p, "*") && path.Clean(p) != p) {
		return nil, fmt.Errorf("the path must be cleaned and lower case, as requests are matched on it")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not an object")
	}
	r := &Route{Key: key}
	var err error
	if r.Kind, err = stringField(obj, "kind"); err != nil {
		return nil, err
	}
	if !routeKinds[r.Kind] {
		return nil, fmt.Errorf("unknown kind %q", r.Kind)
	}
	if r.ModelFrom, err = stringField(obj, "model_from"); err != nil {
		return nil, err
	}
	if r.ModelFrom == "" {
		r.ModelFrom = ModelFromNone
		if r.Kind == KindModel {
			r.ModelFrom = ModelFromBody
		}
	}
	if !modelSources[r.ModelFrom] {
		return nil, fmt.Errorf("unknown model_from %q", r.ModelFrom)
	}
	needsModel := r.Kind == KindModel || r.Kind == KindModelInfo
	if needsModel != (r.ModelFrom != ModelFromNone) {
		return nil, fmt.Errorf("kind %s with model_from %s: model and model_info routes read a model, others none", r.Kind, r.ModelFrom)
	}
	if r.Chat, err = boolField(obj, "chat"); err != nil {
		return nil, err
	}
	if r.ModelOptional, err = boolField(obj, "model_optional"); err != nil {
		return nil, err
	}
	if keys, ok := obj["model_keys"]; ok {
		list, ok := keys.([]any)
		if !ok || len(list) == 0 {
			return nil, fmt.Errorf("model_keys must be a non-empty list of strings")
		}
		for _, k := range list {
			s, ok := k.(string)
			if !ok || s == "" {
				return nil, fmt.Errorf("model_keys must be a non-empty list of strings")
			}
			r.ModelKeys = append(r.ModelKeys, s)
		}
	} else {
		r.ModelKeys = []string{"model"}
	}
	if r.ModelFrom == ModelFromPath {
		prefix, _, _ := strings.Cut(p, "*")
		if !strings.HasSuffix(prefix, "/") || !strings.HasSuffix(p, "/**") || strings.Count(p, "*") != 2 {
			return nil, fmt.Errorf(`model_from path needs a path ending in "/**" with no other wildcard`)
		}
		r.modelSegments = strings.Count(prefix, "/") - 1
	}
	return r, nil
}

func validMethod(m string) bool {
	if m == "*" {
		return true
	}
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

func stringField(obj map[string]any, name string) (string, error) {
	v, ok := obj[name]
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s must be a string", name)
	}
	return s, nil
}

func boolField(obj map[string]any, name string) (bool, error) {
	v, ok := obj[name]
	if !ok {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%s must be true or false", name)
	}
	return b, nil
}

// FoldPath folds a cleaned path for route matching: every character to the
// lower case of its Unicode case-folding orbit, so "/V1/MODELS" and
// "/v1/modelſ" (U+017F folds to s) match "/v1/models" as a case-insensitive
// backend router would.
func FoldPath(p string) string {
	ascii := true
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			ascii = false
		}
	}
	if ascii {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for _, r := range p {
		b.WriteRune(foldRune(r))
	}
	return b.String()
}

// foldRune maps r to the lower case of the smallest rune of its folding orbit:
// K (U+212A), K and k all become k; ſ (U+017F), S and s become s.
func foldRune(r rune) rune {
	smallest := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		smallest = min(smallest, f)
	}
	return unicode.ToLower(smallest)
}
