package api

import (
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/devidp"
)

// wellKnownRoutes are served beside the route list, outside the api_prefix.
var wellKnownRoutes = []string{"GET /.well-known/jwks.json", "GET /.well-known/openid-configuration"}

func loadOpenAPI(t *testing.T, data []byte) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	return doc
}

// TestOpenAPIDocumentIsValid: the document is valid OpenAPI 3.1.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := loadOpenAPI(t, openAPIJSON)
	if !doc.IsOpenAPI31OrLater() || !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi is %q, want 3.1.x", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not valid OpenAPI 3.1: %v", err)
	}
}

// TestOpenAPIDocumentsEveryRoute: every route of the route list has its
// path and method in the document, and the document has nothing else.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t, openAPIJSON)
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	var served []string
	for _, rt := range (&API{}).routes() {
		served = append(served, rt.pattern)
	}
	served = append(served, wellKnownRoutes...)
	slices.Sort(documented)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in api/openapi.json", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("api/openapi.json documents %s, which no route serves", r)
		}
	}
}

// TestOpenAPIIsServed: GET <api_prefix>/openapi.json answers the document,
// to anyone, as JSON, with its paths under the configured prefix.
func TestOpenAPIIsServed(t *testing.T) {
	for _, prefix := range []string{"/api", "/gh-api"} {
		t.Run(prefix, func(t *testing.T) {
			dir := t.TempDir()
			rt, err := core.Open(context.Background(), core.Options{
				PublicURL: "http://gatehouse.test", APIPrefix: prefix, PagesPrefix: "/gatehouse",
				Store: &core.StoreConfig{Driver: "sqlite", DSN: filepath.Join(dir, "g.db")}, SecretFile: filepath.Join(dir, "key"),
				DevIdP: &devidp.Config{Users: []devidp.User{{Email: "a@example.com"}}},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rt.Close() })
			w := httptest.NewRecorder()
			if !New(rt, nil).Serve(w, httptest.NewRequest("GET", prefix+"/openapi.json", nil)) {
				t.Fatalf("%s/openapi.json was not served by the API", prefix)
			}
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if mt, _, _ := mime.ParseMediaType(w.Header().Get("Content-Type")); mt != "application/json" {
				t.Fatalf("Content-Type %q, want application/json", w.Header().Get("Content-Type"))
			}
			if !json.Valid(w.Body.Bytes()) {
				t.Fatal("the answer is not JSON")
			}
			doc := loadOpenAPI(t, w.Body.Bytes())
			if err := doc.Validate(context.Background()); err != nil {
				t.Fatalf("served document is not valid: %v", err)
			}
			for _, p := range []string{prefix + "/users/{id}", prefix + "/openapi.json", "/.well-known/jwks.json"} {
				if doc.Paths.Value(p) == nil {
					t.Errorf("served document has no path %s", p)
				}
			}
			if prefix != "/api" && doc.Paths.Value("/api/users") != nil {
				t.Error("served document still names /api/users under another api_prefix")
			}
		})
	}
}
