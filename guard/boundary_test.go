package guard

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

// parse reads a request as Go's HTTP/1.1 server (and so Caddy) does.
func parse(t *testing.T, raw string) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\nHost: gw.test\r\n\r\n")))
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	return r
}

func TestCheckAmbiguous(t *testing.T) {
	tests := []struct {
		requestLine string
		ambiguous   bool
	}{
		{"GET / HTTP/1.1", false},
		{"POST /v1/chat/completions HTTP/1.1", false},
		{"POST /V1/Chat/Completions/ HTTP/1.1", false}, // folded and cleaned, not ambiguous
		{"GET //v1//models HTTP/1.1", false},
		{"GET /v1/models/llama3.1:8b HTTP/1.1", false}, // a dot inside a segment
		{"GET /v1/models/org%2Fmodel%3Atag HTTP/1.1", true},
		{"GET /%61dmin HTTP/1.1", false},
		{"GET /caf%C3%A9 HTTP/1.1", false},
		{"GET /search?q=a;b HTTP/1.1", false}, // the query is not the path
		{"post /v1/chat/completions HTTP/1.1", true},
		{"Get / HTTP/1.1", true},
		{"BREW / HTTP/1.1", true},
		{"PROPFIND / HTTP/1.1", true},
		{"GET /admin;x HTTP/1.1", true},
		{"GET /admin%3Bx HTTP/1.1", true},
		{"GET /x\\admin HTTP/1.1", true},
		{"GET /x%5Cadmin HTTP/1.1", true},
		{"GET /x%5cadmin HTTP/1.1", true},
		{"GET /x%2Fadmin HTTP/1.1", true},
		{"GET /x%2fadmin HTTP/1.1", true},
		{"GET /admin%00 HTTP/1.1", true},
		{"GET /admin%0a HTTP/1.1", true},
		{"GET /admin%7F HTTP/1.1", true},
		{"GET /admin. HTTP/1.1", true},
		{"GET /admin%2e HTTP/1.1", true},
		{"GET /admin%20 HTTP/1.1", true},
		{"GET /admin%20/x HTTP/1.1", true},
		{"GET /./admin HTTP/1.1", true},
		{"GET /x/../admin HTTP/1.1", true},
		{"GET /x/%2e%2e/admin HTTP/1.1", true},
		{"GET /%2561dmin HTTP/1.1", true},
		{"GET /100%25 HTTP/1.1", false}, // a literal percent sign that decodes to nothing more
	}
	for _, tt := range tests {
		r := parse(t, tt.requestLine)
		if got := checkAmbiguous(r) != nil; got != tt.ambiguous {
			t.Errorf("%q: ambiguous = %v, want %v", tt.requestLine, got, tt.ambiguous)
		}
	}
}

func TestCheckUpgrade(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		headers map[string][]string
		refused bool
	}{
		{"no upgrade", "GET", nil, false},
		{"websocket GET", "GET", map[string][]string{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, false},
		{"websocket GET in capitals", "GET", map[string][]string{"Connection": {"upgrade"}, "Upgrade": {"WebSocket"}}, false},
		{"websocket POST", "POST", map[string][]string{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, true},
		{"h2c", "GET", map[string][]string{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}}, true},
		{"h2c without Connection", "GET", map[string][]string{"Upgrade": {"h2c"}}, true},
		{"TLS", "GET", map[string][]string{"Connection": {"Upgrade"}, "Upgrade": {"TLS/1.2"}}, true},
		{"two protocols", "GET", map[string][]string{"Upgrade": {"websocket, h2c"}}, true},
		{"two Upgrade lines", "GET", map[string][]string{"Upgrade": {"websocket", "h2c"}}, true},
		{"CONNECT", "CONNECT", nil, true},
	}
	for _, tt := range tests {
		r, _ := http.NewRequest(tt.method, "http://gw.test/ws", nil)
		for k, v := range tt.headers {
			r.Header[k] = v
		}
		if got := checkUpgrade(r) != nil; got != tt.refused {
			t.Errorf("%s: refused = %v, want %v", tt.name, got, tt.refused)
		}
	}
	// An HTTP/2 websocket (extended CONNECT) is a websocket GET to the backend.
	r, _ := http.NewRequest("CONNECT", "http://gw.test/v1/realtime?model=x", nil)
	r.ProtoMajor = 2
	r.Header.Set(":protocol", "websocket")
	if checkUpgrade(r) != nil || requestMethod(r) != "GET" {
		t.Errorf("extended CONNECT websocket: refused or method %s, want a GET", requestMethod(r))
	}
	r.Header.Set(":protocol", "h2c")
	if checkUpgrade(r) == nil {
		t.Errorf("extended CONNECT of another protocol passed")
	}
}

func TestSanitizeHeaders(t *testing.T) {
	h := http.Header{
		"Connection":             {"keep-alive, X-Gatehouse-Assertion, Authorization", "cookie, Upgrade, x-http-method-override, HTTP2-Settings"},
		"X-Gatehouse-Role":       {"admin"},
		"X-GATEHOUSE-USER-ID":    {"forged"},
		"X_gatehouse_role":       {"admin"}, // a WSGI server reads it as X-Gatehouse-Role
		"X_original_url":         {"/admin"},
		"X-Original-Url":         {"/admin"},
		"X-Rewrite-Url":          {"/admin"},
		"X-Forwarded-Uri":        {"/admin"},
		"X-Http-Method-Override": {"DELETE"},
		"X-Method-Override":      {"DELETE"},
		"X-Http-Method":          {"DELETE"},
		"Http2-Settings":         {"AAMAAABkAAQAoAAAAAIAAAAA"},
		"Upgrade":                {"websocket"},
		"Accept":                 {"application/json"},
	}
	sanitizeHeaders(h)
	want := http.Header{
		"Connection": {"keep-alive, Upgrade"},
		"Upgrade":    {"websocket"},
		"Accept":     {"application/json"},
	}
	if len(h) != len(want) {
		t.Fatalf("headers %v, want %v", h, want)
	}
	for k, v := range want {
		if strings.Join(h[k], "|") != strings.Join(v, "|") {
			t.Errorf("%s = %q, want %q", k, h[k], v)
		}
	}
	only := http.Header{"Connection": {"X-Gatehouse-Role"}}
	sanitizeHeaders(only)
	if _, ok := only["Connection"]; ok {
		t.Errorf("a Connection header naming only protected headers was kept: %v", only)
	}
}
