package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// regoRouteKey classifies a request with the Rego rules, as the decision does.
func regoRouteKey(t testing.TB, overlay map[string]any) func(method, path string) string {
	t.Helper()
	data, _, err := loadData(overlay)
	if err != nil {
		t.Fatal(err)
	}
	pq, err := rego.New(
		rego.Query("data.gatehouse.authz.route_key"),
		rego.Module("authz.rego", defaultPolicy),
		rego.Store(inmem.NewFromObject(data)),
	).PrepareForEval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return func(method, path string) string {
		in := &Input{Request: Request{Method: method, Path: path, PathFolded: FoldPath(path)}}
		rs, err := pq.Eval(context.Background(), rego.EvalParsedInput(in.astValue()))
		if err != nil {
			panic(fmt.Sprintf("%s %s: %v", method, path, err))
		}
		if len(rs) == 0 {
			return ""
		}
		return rs[0].Expressions[0].Value.(string)
	}
}

// samplePaths turns every route key into concrete requests, plus requests
// around them, so the guard's and the policy's classification meet on each.
func samplePaths(table *RouteTable) [][2]string {
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	var out [][2]string
	for _, r := range table.Routes() {
		_, p, _ := strings.Cut(r.Key, " ")
		for _, concrete := range []string{
			strings.ReplaceAll(strings.ReplaceAll(p, "**", "a/b"), "*", "x"),
			strings.ReplaceAll(strings.ReplaceAll(p, "**", "m"), "*", "y"),
			strings.ReplaceAll(p, "*", ""),
			strings.ToUpper(strings.ReplaceAll(p, "*", "z")),
			strings.ReplaceAll(p, "*", "x") + "/more",
		} {
			for _, m := range methods {
				out = append(out, [2]string{m, concrete})
			}
		}
	}
	for _, p := range []string{
		"/", "/admin", "/v1", "/v1/models/org/secret-model", "/v1/models/ft:gpt-4o:org:x", "/api/blobs/sha256-abc",
		"/v1/threads/t1/runs", "/v1/threads/runs", "/v1/messages/batches/b1/results", "/v1/fine_tuning/jobs/j/events",
		"/v1/assistants", "/v1/assistants/a1", "/v1/assistants/a1/files", "/V1/CHAT/COMPLETIONS", "/v1/chat/completionſ",
		"/api/version", "/api/chat/x", "/v2/rerank", "/rerank",
	} {
		for _, m := range methods {
			out = append(out, [2]string{m, p})
		}
	}
	return out
}

// TestRouteTableAgreesWithPolicy holds the guard (RouteTable.Match) and the
// Rego rules (route_key) to the same classification of every request, with
// the default table and with routes a Caddyfile adds.
func TestRouteTableAgreesWithPolicy(t *testing.T) {
	overlays := map[string]map[string]any{
		"default": nil,
		"with Caddyfile routes": {"routes": map[string]any{
			"POST /custom/generate":  map[string]any{"kind": "model"},
			"GET /custom/models":     map[string]any{"kind": "listing"},
			"* /v1/models/special/*": map[string]any{"kind": "model_admin"},
			"GET /v1/*/completions":  map[string]any{"kind": "batch"},
		}},
	}
	for name, overlay := range overlays {
		t.Run(name, func(t *testing.T) {
			e := newEngine(t, Options{Data: overlay})
			policyKey := regoRouteKey(t, overlay)
			samples := samplePaths(e.Routes())
			for _, s := range samples {
				method, path := s[0], s[1]
				guardKey := ""
				if r := e.Routes().Match(method, FoldPath(path)); r != nil {
					guardKey = r.Key
				}
				if got := policyKey(method, path); got != guardKey {
					t.Errorf("%s %s: the guard classifies it as %q, the policy as %q", method, path, guardKey, got)
				}
			}
			if len(samples) < 500 {
				t.Fatalf("only %d samples", len(samples))
			}
		})
	}
}

func TestRouteKinds(t *testing.T) {
	e := newEngine(t, Options{})
	tests := []struct {
		method, path string
		kind, from   string
		chat         bool
	}{
		{"POST", "/v1/chat/completions", KindModel, ModelFromBody, true},
		{"POST", "/V1/CHAT/COMPLETIONS", KindModel, ModelFromBody, true},
		{"POST", "/v1/Chat/Completionſ", KindModel, ModelFromBody, true},
		{"POST", "/v1/images/generations", KindModel, ModelFromBody, false},
		{"POST", "/v1/audio/transcriptions", KindModel, ModelFromMultipart, false},
		{"POST", "/v1/images/edits", KindModel, ModelFromMultipart, false},
		{"POST", "/v1/messages", KindModel, ModelFromBody, true},
		{"POST", "/v1/rerank", KindModel, ModelFromBody, false},
		{"POST", "/v2/rerank", KindModel, ModelFromBody, false},
		{"POST", "/v1/moderations", KindModel, ModelFromBody, false},
		{"GET", "/v1/realtime", KindModel, ModelFromQuery, true},
		{"POST", "/api/embeddings", KindModel, ModelFromBody, false},
		{"POST", "/api/show", KindModel, ModelFromBody, false},
		{"POST", "/api/chat", KindModel, ModelFromBody, true},
		{"GET", "/v1/models", KindListing, ModelFromNone, false},
		{"GET", "/V1/MODELS", KindListing, ModelFromNone, false},
		{"GET", "/api/tags", KindListing, ModelFromNone, false},
		{"GET", "/api/ps", KindListing, ModelFromNone, false},
		{"GET", "/v1/models/gpt-4", KindModelInfo, ModelFromPath, false},
		{"GET", "/v1/models/org/secret-model", KindModelInfo, ModelFromPath, false},
		{"DELETE", "/v1/models/ft:gpt-4o:org", KindModelAdmin, ModelFromNone, false},
		{"POST", "/api/pull", KindModelAdmin, ModelFromNone, false},
		{"DELETE", "/api/delete", KindModelAdmin, ModelFromNone, false},
		{"POST", "/api/create", KindModelAdmin, ModelFromNone, false},
		{"POST", "/api/copy", KindModelAdmin, ModelFromNone, false},
		{"POST", "/api/push", KindModelAdmin, ModelFromNone, false},
		{"HEAD", "/api/blobs/sha256-abc", KindModelAdmin, ModelFromNone, false},
		{"POST", "/v1/load_lora_adapter", KindModelAdmin, ModelFromNone, false},
		{"POST", "/v1/batches", KindBatch, ModelFromNone, false},
		{"GET", "/v1/batches/b1", KindBatch, ModelFromNone, false},
		{"POST", "/v1/files", KindBatch, ModelFromNone, false},
		{"GET", "/v1/files/f1/content", KindBatch, ModelFromNone, false},
		{"POST", "/v1/fine_tuning/jobs", KindBatch, ModelFromNone, false},
	}
	for _, tt := range tests {
		r := e.Routes().Match(tt.method, FoldPath(tt.path))
		if r == nil {
			t.Errorf("%s %s: unclassified, want %s", tt.method, tt.path, tt.kind)
			continue
		}
		if r.Kind != tt.kind || r.ModelFrom != tt.from || r.Chat != tt.chat {
			t.Errorf("%s %s: %+v, want kind %s from %s chat %v", tt.method, tt.path, r, tt.kind, tt.from, tt.chat)
		}
	}
	for _, unclassified := range [][2]string{{"GET", "/"}, {"GET", "/api/version"}, {"POST", "/v1/models"}, {"GET", "/v1/chat/completions"}} {
		if r := e.Routes().Match(unclassified[0], unclassified[1]); r != nil {
			t.Errorf("%v: %s, want unclassified (other)", unclassified, r.Key)
		}
	}
	ollama := e.Routes().Match("POST", "/api/generate")
	if strings.Join(ollama.ModelKeys, ",") != "model,name" {
		t.Errorf("Ollama's generate reads model keys %v, want model and name", ollama.ModelKeys)
	}
	if got := e.Routes().Match("GET", "/v1/models/org/x").ModelFromCleanPath("/v1/models/Org/X"); got != "Org/X" {
		t.Errorf("model from path = %q, want Org/X (case kept)", got)
	}
	if got := e.Routes().Match("GET", "/v1/models/x").ModelFromCleanPath("/V1/modelſ/gpt-4"); got != "gpt-4" {
		t.Errorf("model from a folded prefix = %q, want gpt-4", got)
	}
}

// TestRouteKindPermissions: what each kind needs (spec §6a), through the decision.
func TestRouteKindPermissions(t *testing.T) {
	e := newEngine(t, Options{})
	llama := []string{"llama3*"}
	userScope := []string{"system:access", "models:use", "chat:use"}
	tests := []struct {
		name     string
		subject  *Subject
		method   string
		path     string
		model    string
		wantCode string
	}{
		{"chat with an allowed model", bearer("user", userScope, llama), "POST", "/v1/chat/completions", "llama3", ""},
		{"chat in capitals with a forbidden model", bearer("user", userScope, llama), "POST", "/V1/CHAT/COMPLETIONS", "gpt-4", CodeModelNotAllowed},
		{"chat with only system:access", bearer("user", []string{"system:access"}, nil), "POST", "/V1/CHAT/COMPLETIONS", "llama3", CodeForbidden},
		{"images with a forbidden model", bearer("user", userScope, llama), "POST", "/v1/images/generations", "dall-e-3", CodeModelNotAllowed},
		{"Anthropic messages need chat:use", bearer("user", []string{"models:use"}, nil), "POST", "/v1/messages", "claude", CodeForbidden},
		{"model info of an allowed model", bearer("user", userScope, llama), "GET", "/v1/models/llama3", "llama3", ""},
		{"model info of a forbidden model is not found", bearer("user", userScope, llama), "GET", "/v1/models/gpt-4", "gpt-4", CodeModelNotFound},
		{"a user cannot pull models", session("user", "active"), "POST", "/api/pull", "", CodeForbidden},
		{"a user cannot delete models", session("user", "active"), "DELETE", "/API/DELETE", "", CodeForbidden},
		{"a manager cannot pull models", session("manager", "active"), "POST", "/api/pull", "", CodeForbidden},
		{"an admin pulls models", session("admin", "active"), "POST", "/api/pull", "", ""},
		{"a user cannot run batches", session("user", "active"), "POST", "/v1/batches", "", CodeForbidden},
		{"a user cannot upload files", session("user", "active"), "POST", "/v1/files", "", CodeForbidden},
		{"a manager runs batches", session("manager", "active"), "POST", "/v1/batches", "", ""},
		{"other routes need system:access", bearer("user", []string{"models:use"}, nil), "GET", "/", "", CodeForbidden},
		{"other routes with system:access", bearer("user", []string{"system:access"}, nil), "GET", "/", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := with(backendCall(tt.method, tt.path), tt.subject)
			if tt.model != "" {
				in.Model = ptr(tt.model)
			}
			got := decide(t, e, in)
			if got.Allow != (tt.wantCode == "") || got.Code != tt.wantCode {
				t.Errorf("got allow=%v code=%q (%s), want code %q", got.Allow, got.Code, got.Reason, tt.wantCode)
			}
		})
	}
}

func TestRouteTableRefusesBadRoutes(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		route any
		want  string
	}{
		{"lower-case method", "post /x", map[string]any{"kind": "model"}, `"METHOD /path"`},
		{"no path", "POST", map[string]any{"kind": "model"}, `"METHOD /path"`},
		{"upper-case path never matches", "POST /V1/X", map[string]any{"kind": "model"}, "lower case"},
		{"unclean path never matches", "POST /v1/x/", map[string]any{"kind": "model"}, "cleaned"},
		{"unknown kind", "POST /x", map[string]any{"kind": "chat"}, `unknown kind "chat"`},
		{"listing reading a model", "GET /x", map[string]any{"kind": "listing", "model_from": "body"}, "read a model"},
		{"model from nowhere", "POST /x", map[string]any{"kind": "model", "model_from": "none"}, "read a model"},
		{"model from a path without **", "GET /m/*", map[string]any{"kind": "model_info", "model_from": "path"}, `"/**"`},
		{"empty model keys", "POST /x", map[string]any{"kind": "model", "model_keys": []any{}}, "model_keys"},
		{"bad glob", "POST /x/[*", map[string]any{"kind": "model"}, "route"},
		{"not an object", "POST /x", "model", "not an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(t.Context(), Options{Data: map[string]any{"routes": map[string]any{tt.key: tt.route}}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error with %s", err, tt.want)
			}
		})
	}
}

func TestFoldPath(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/models":           "/v1/models",
		"/V1/Models":           "/v1/models",
		"/v1/modelſ":           "/v1/models", // U+017F LATIN SMALL LETTER LONG S folds to s
		"/v1/\u212Aey":         "/v1/key",    // U+212A KELVIN SIGN folds to k
		"/Straße":              "/straße",
		"/ÉCOLE":               "/école",
		"/v1/chat/completions": "/v1/chat/completions",
	} {
		if got := FoldPath(in); got != want {
			t.Errorf("FoldPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzRouteTableAgreesWithPolicy feeds arbitrary methods and paths to both
// classifications; seeds are in testdata/fuzz/FuzzRouteTableAgreesWithPolicy.
func FuzzRouteTableAgreesWithPolicy(f *testing.F) {
	for _, s := range [][2]string{
		{"POST", "/v1/chat/completions"}, {"GET", "/v1/models/a/b"}, {"DELETE", "/v1/files/x"},
		{"POST", "/v1/threads/t/runs"}, {"GET", "/API/BLOBS/x"}, {"PATCH", "/"}, {"GET", "/v1/modelſ/x"},
	} {
		f.Add(s[0], s[1])
	}
	e := newEngine(f, Options{})
	policyKey := regoRouteKey(f, nil)
	f.Fuzz(func(t *testing.T, method, path string) {
		if !utf8.ValidString(method) || !utf8.ValidString(path) {
			return // the guard sees only valid UTF-8 after percent-decoding it refuses otherwise
		}
		method = strings.ToUpper(method)
		path = "/" + strings.TrimPrefix(path, "/")
		guardKey := ""
		if r := e.Routes().Match(method, FoldPath(path)); r != nil {
			guardKey = r.Key
		}
		if got := policyKey(method, path); got != guardKey {
			t.Fatalf("%s %q: the guard classifies it as %q, the policy as %q", method, path, guardKey, got)
		}
	})
}
