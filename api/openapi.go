package api

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"strings"
)

// openAPIJSON is the OpenAPI 3.1 document of the API, written beside the
// routes: TestOpenAPIDocumentsEveryRoute holds it to the route list, and the
// end-to-end suite validates every answer of the API against it.
//
//go:embed openapi.json
var openAPIJSON []byte

// openAPIDocument is the document as served under apiPrefix: its paths
// under /api move under the configured prefix; /.well-known stays.
func openAPIDocument(apiPrefix string) []byte {
	if apiPrefix == "/api" {
		return openAPIJSON
	}
	var doc map[string]any
	if err := json.Unmarshal(openAPIJSON, &doc); err != nil {
		panic("api/openapi.json: " + err.Error()) // embedded and tested: cannot happen
	}
	paths, _ := doc["paths"].(map[string]any)
	moved := make(map[string]any, len(paths))
	for p, item := range paths {
		if rest, ok := strings.CutPrefix(p, "/api/"); ok {
			p = apiPrefix + "/" + rest
		}
		moved[p] = item
	}
	doc["paths"] = moved
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic("api/openapi.json: " + err.Error())
	}
	return out
}

// openAPI is GET /api/openapi.json, public unless the policy says otherwise.
func (a *API) openAPI(w http.ResponseWriter, r *http.Request, route string) error {
	if _, err := a.acts.Authorize(r, route, nil, nil); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(a.openapi)
	return nil
}
