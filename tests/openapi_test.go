package tests

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// The OpenAPI document (api/openapi.json) is the contract of every answer
// the API gives: client.do hands each response to a path under the API's
// prefix (and the two /.well-known documents) to checkOpenAPI, which finds
// its route and validates the status, the content type and the body. A
// status the document does not list fails too. Failures are collected per
// test and reported once each, with how often they happened, when the test
// ends.

var openAPI struct {
	once     sync.Once
	doc      *openapi3.T
	router   routers.Router
	segments []string // the first segments under /api that Gatehouse owns
	err      error
}

func loadOpenAPIContract() {
	data, err := os.ReadFile("../api/openapi.json")
	if err != nil {
		openAPI.err = err
		return
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		openAPI.err = fmt.Errorf("load api/openapi.json: %w", err)
		return
	}
	if err := doc.Validate(context.Background()); err != nil {
		openAPI.err = fmt.Errorf("api/openapi.json: %w", err)
		return
	}
	if openAPI.router, err = gorillamux.NewRouter(doc); err != nil {
		openAPI.err = fmt.Errorf("api/openapi.json routes: %w", err)
		return
	}
	openAPI.doc = doc
	for path := range doc.Paths.Map() {
		if rest, ok := strings.CutPrefix(path, "/api/"); ok {
			seg, _, _ := strings.Cut(rest, "/")
			if !slices.Contains(openAPI.segments, seg) {
				openAPI.segments = append(openAPI.segments, seg)
			}
		}
	}
	// The sign-in routes answer a browser's failures with a page.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
}

// contractFailures are a test's failed validations, by message.
var contractFailures = struct {
	sync.Mutex
	byTest map[*testing.T]map[string]int
}{byTest: map[*testing.T]map[string]int{}}

func (c *client) contractFailed(msg string) {
	contractFailures.Lock()
	defer contractFailures.Unlock()
	failures := contractFailures.byTest[c.t]
	if failures == nil {
		failures = map[string]int{}
		contractFailures.byTest[c.t] = failures
		t := c.t
		t.Cleanup(func() {
			contractFailures.Lock()
			defer contractFailures.Unlock()
			msgs := make([]string, 0, len(failures))
			for m := range failures {
				msgs = append(msgs, m)
			}
			sort.Strings(msgs)
			for _, m := range msgs {
				t.Errorf("answer not as api/openapi.json says (%d×): %s", failures[m], m)
			}
			delete(contractFailures.byTest, t)
		})
	}
	failures[msg]++
}

// canonicalAPIPath is path as the document names it (under /api), and
// whether it is Gatehouse's to document at all: a backend's own paths under
// the prefix (Ollama's /api/chat) and the pages are not.
func (c *client) canonicalAPIPath(path string) (string, bool) {
	if path == "/.well-known/jwks.json" || path == "/.well-known/openid-configuration" {
		return path, true
	}
	prefix := cmp.Or(c.in.cfg.apiPrefix, "/api")
	rest, ok := strings.CutPrefix(path, prefix+"/")
	if !ok {
		return "", false
	}
	seg, _, _ := strings.Cut(rest, "/")
	return "/api/" + rest, slices.Contains(openAPI.segments, seg)
}

// checkOpenAPI validates one answer of the API against the document.
func (c *client) checkOpenAPI(req *http.Request, resp *http.Response, body []byte) {
	openAPI.once.Do(loadOpenAPIContract)
	if openAPI.err != nil {
		c.t.Fatalf("OpenAPI contract: %v", openAPI.err)
	}
	path, ours := c.canonicalAPIPath(req.URL.Path)
	if !ours {
		return
	}
	at := fmt.Sprintf("%s %s → %d", req.Method, path, resp.StatusCode)
	canon := req.Clone(context.Background())
	canon.URL.Path, canon.URL.RawPath = path, ""
	canon.Host, canon.URL.Host = "", ""
	route, params, err := openAPI.router.FindRoute(canon)
	if err != nil {
		// Gatehouse answers a path of its own that no route has (or another
		// method) with 404 not_found: no route, nothing to document.
		if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			return
		}
		c.contractFailed(fmt.Sprintf("%s: no such operation in the document (%v)", at, err))
		return
	}
	at = fmt.Sprintf("%s %s → %d", req.Method, route.Path, resp.StatusCode) // one message per route, whatever its IDs
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: canon, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		c.contractFailed(fmt.Sprintf("%s (%s): %s", at, resp.Header.Get("Content-Type"), contractError(err)))
	}
}

// contractError says what failed without the whole schema kin-openapi
// prints: the reason and where in the body.
func contractError(err error) string {
	var multi openapi3.MultiError
	if errors.As(err, &multi) {
		msgs := make([]string, 0, len(multi))
		for _, e := range multi {
			msgs = append(msgs, contractError(e))
		}
		return strings.Join(msgs, "; ")
	}
	var schemaErr *openapi3.SchemaError
	if errors.As(err, &schemaErr) {
		return fmt.Sprintf("body at /%s: %s", strings.Join(schemaErr.JSONPointer(), "/"), schemaErr.Reason)
	}
	var respErr *openapi3filter.ResponseError
	if errors.As(err, &respErr) && respErr.Err != nil {
		return respErr.Reason + ": " + contractError(respErr.Err)
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}
