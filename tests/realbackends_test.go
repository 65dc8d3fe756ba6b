package tests

import (
	"bufio"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/http2"
)

// Backends that parse requests the way real servers do, for the attacks of
// spec §6a. Each records what it acted on, so a test can assert that it never
// acted on more than the policy allowed.

// served is one request a backend acted on.
type served struct {
	Method, Path string // as the backend's router saw them
	Model        string // the model it would have run
	Proto        string // HTTP/1.1, or HTTP/2.0 on a smuggled connection
	Header       http.Header
}

type servedLog struct {
	mu   sync.Mutex
	reqs []served
}

func (l *servedLog) add(s served) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, s)
}

func (l *servedLog) all() []served {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]served(nil), l.reqs...)
}

func (l *servedLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = nil
}

// listen serves h on a free loopback port until the test ends.
func listen(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// expressBackend routes like an Express app with the default router: paths
// match case-insensitively, a trailing slash is ignored, and the body is read
// with JSON.parse (keys case-sensitive, the last duplicate wins).
type expressBackend struct {
	servedLog
}

func (b *expressBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route := strings.ToUpper(r.Method) + " " + strings.TrimSuffix(strings.ToLower(r.URL.Path), "/")
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	switch route {
	case "POST /v1/chat/completions", "POST /v1/embeddings":
		var req map[string]any // JSON.parse: exact keys, the last one wins
		_ = json.Unmarshal(body, &req)
		model, _ := req["model"].(string)
		b.add(served{Method: r.Method, Path: r.URL.Path, Model: model, Proto: r.Proto, Header: r.Header.Clone()})
		fmt.Fprintf(w, `{"object":"chat.completion","model":%q,"choices":[]}`, model)
	case "GET /v1/models":
		b.add(served{Method: r.Method, Path: r.URL.Path, Proto: r.Proto, Header: r.Header.Clone()})
		var data []map[string]any
		for _, id := range backendModels {
			data = append(data, map[string]any{"id": id, "object": "model", "owned_by": "test"})
		}
		json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data})
	case "GET /admin":
		b.add(served{Method: r.Method, Path: r.URL.Path, Proto: r.Proto, Header: r.Header.Clone()})
		fmt.Fprint(w, `{"area":"admin"}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":"not found"}`)
	}
}

// ollamaBackend decodes requests as Ollama does, with Go's encoding/json into
// structs (through gin): keys match struct fields case-insensitively and the
// last one wins; the deprecated "name" stands in for "model".
type ollamaBackend struct {
	servedLog
}

func (b *ollamaBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model string `json:"model"`
		Name  string `json:"name"`
	}
	switch r.URL.Path {
	case "/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show", "/api/pull", "/api/push",
		"/api/create", "/api/delete", "/v1/chat/completions":
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
	case "/api/copy", "/api/version", "/api/tags", "/api/ps":
	default:
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		return
	}
	model := cmp.Or(req.Model, req.Name)
	b.add(served{Method: r.Method, Path: r.URL.Path, Model: model, Proto: r.Proto, Header: r.Header.Clone()})
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"model":%q,"done":true}`, model)
}

// h2cBackend upgrades to HTTP/2 on any "Upgrade: h2c", whether or not the
// Connection header names it (Hypercorn's h11 rule), and then serves every
// HTTP/2 stream on that connection; plain HTTP/1.1 requests are served too.
type h2cBackend struct {
	servedLog
}

func (b *h2cBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Upgrade"), "h2c") {
		b.upgrade(w, r)
		return
	}
	b.serve(w, r)
}

func (b *h2cBackend) serve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model string `json:"model"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	b.add(served{Method: r.Method, Path: r.URL.Path, Model: req.Model, Proto: r.Proto, Header: r.Header.Clone()})
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"served":%q,"model":%q,"role":%q}`, r.URL.Path, req.Model, r.Header.Get("X-Gatehouse-Role"))
}

func (b *h2cBackend) upgrade(w http.ResponseWriter, r *http.Request) {
	settings, _ := base64.RawURLEncoding.DecodeString(strings.TrimRight(r.Header.Get("HTTP2-Settings"), "="))
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
	rw.Flush()
	b.add(served{Method: r.Method, Path: r.URL.Path, Proto: "h2c upgrade", Header: r.Header.Clone()})
	// ServeConn with UpgradeRequest is what serving an upgraded connection
	// takes; net/http has no h2c upgrade of its own to offer instead.
	//lint:ignore SA1019 the deprecated API is the one that serves an h2c upgrade
	(&http2.Server{}).ServeConn(&bufferedConn{Conn: conn, r: rw.Reader}, &http2.ServeConnOpts{
		Handler:        http.HandlerFunc(b.serve),
		UpgradeRequest: r,
		Settings:       settings,
	})
}

// bufferedConn reads first what the HTTP/1 server had already buffered.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// rawRequest sends exactly the given request bytes to the instance and
// returns the status code and body of the answer: clients would normalise
// what the attacks depend on (a lower-case method, a backslash).
func rawRequest(t *testing.T, in *instance, req string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
