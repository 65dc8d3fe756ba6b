package policy

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// astValue builds the input document directly as an AST value: going through
// JSON (what rego.EvalInput does for structs) costs more than the rest of the
// conversion on the guard's hot path. It must produce the same document as
// json.Marshal(in).
func (in *Input) astValue() ast.Value {
	return ast.NewObject(
		item("request", ast.NewTerm(in.Request.astValue())),
		item("subject", subjectTerm(in.Subject)),
		item("model", optionalString(in.Model)),
		item("api_route", optionalString(in.APIRoute)),
		item("route", optionalString(in.Route)),
		item("target", targetTerm(in.Target)),
		item("change", changeTerm(in.Change)),
		item("now_ns", ast.InternedTerm(in.NowNS)),
	)
}

// withRoute is in with Route filled in from the table for a backend
// request that has none, so that the rules need not match the table's
// patterns themselves.
func (in *Input) withRoute(t *RouteTable) *Input {
	if in.APIRoute != nil || in.Route != nil {
		return in
	}
	matched := *in
	key := ""
	if r := t.Match(in.Request.Method, in.Request.PathFolded); r != nil {
		key = r.Key
	}
	matched.Route = &key
	return &matched
}

func (r *Request) astValue() ast.Value {
	headers := ast.InternedNullTerm
	if r.Headers != nil {
		obj := ast.NewObject()
		for name, value := range r.Headers {
			obj.Insert(ast.StringTerm(name), ast.StringTerm(value))
		}
		headers = ast.NewTerm(obj)
	}
	return ast.NewObject(
		item("method", ast.StringTerm(r.Method)),
		item("path", ast.StringTerm(r.Path)),
		item("path_folded", ast.StringTerm(r.PathFolded)),
		item("host", ast.StringTerm(r.Host)),
		item("query", ast.StringTerm(r.Query)),
		item("headers", headers),
	)
}

func subjectTerm(s *Subject) *ast.Term {
	if s == nil {
		return ast.InternedNullTerm
	}
	return ast.NewTerm(ast.NewObject(
		item("id", ast.StringTerm(s.ID)),
		item("email", ast.StringTerm(s.Email)),
		item("name", ast.StringTerm(s.Name)),
		item("role", ast.StringTerm(s.Role)),
		item("status", ast.StringTerm(s.Status)),
		item("permissions", stringsTerm(s.Permissions)),
		item("auth", ast.StringTerm(s.Auth)),
		item("token", tokenTerm(s.Token)),
		item("auth_context", authContextTerm(s.AuthContext)),
	))
}

func authContextTerm(a *AuthContext) *ast.Term {
	if a == nil {
		return ast.InternedNullTerm
	}
	return ast.NewTerm(ast.NewObject(
		item("acr", ast.StringTerm(a.ACR)),
		item("amr", stringsTerm(a.AMR)),
		item("auth_time", ast.InternedTerm(a.AuthTime)),
	))
}

func tokenTerm(t *Token) *ast.Term {
	if t == nil {
		return ast.InternedNullTerm
	}
	return ast.NewTerm(ast.NewObject(
		item("id", ast.StringTerm(t.ID)),
		item("kind", ast.StringTerm(t.Kind)),
		item("scope", stringsTerm(t.Scope)),
		item("models", stringsTerm(t.Models)),
	))
}

func targetTerm(t *Target) *ast.Term {
	if t == nil {
		return ast.InternedNullTerm
	}
	return ast.NewTerm(ast.NewObject(
		item("id", ast.StringTerm(t.ID)),
		item("role", ast.StringTerm(t.Role)),
		item("status", ast.StringTerm(t.Status)),
	))
}

// changeTerm leaves out empty fields, as Change's omitempty tags do.
func changeTerm(c *Change) *ast.Term {
	if c == nil {
		return ast.InternedNullTerm
	}
	obj := ast.NewObject()
	for _, f := range [...]struct{ key, value string }{
		{"role", c.Role}, {"status", c.Status}, {"token_kind", c.TokenKind},
	} {
		if f.value != "" {
			obj.Insert(ast.InternedTerm(f.key), ast.StringTerm(f.value))
		}
	}
	return ast.NewTerm(obj)
}

func optionalString(s *string) *ast.Term {
	if s == nil {
		return ast.InternedNullTerm
	}
	return ast.StringTerm(*s)
}

// stringsTerm maps a nil slice to null, as encoding/json does.
func stringsTerm(ss []string) *ast.Term {
	if ss == nil {
		return ast.InternedNullTerm
	}
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}

func item(key string, value *ast.Term) [2]*ast.Term {
	return ast.Item(ast.InternedTerm(key), value)
}
