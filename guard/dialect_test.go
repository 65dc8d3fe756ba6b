package guard_test

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestGuardRefusalsSpeakTheClientsDialect: a refusal on an OpenAI route
// carries OpenAI's error object and one under /api/ Ollama's error string as
// application/json, beside the problem fields, so the official SDKs show
// Gatehouse's message and code (spec §6a); elsewhere it is the problem alone.
func TestGuardRefusalsSpeakTheClientsDialect(t *testing.T) {
	f := newFixture(t)
	detail := "sign in or send a valid bearer token"
	for _, tt := range []struct {
		method, path, contentType string
		wantError                 any
	}{
		{"POST", "/v1/chat/completions", "application/problem+json",
			map[string]any{"message": detail, "type": "authentication_error", "code": "unauthenticated", "param": nil}},
		{"POST", "/V1/Embeddings", "application/problem+json",
			map[string]any{"message": detail, "type": "authentication_error", "code": "unauthenticated", "param": nil}},
		{"POST", "/pooling", "application/problem+json",
			map[string]any{"message": detail, "type": "authentication_error", "code": "unauthenticated", "param": nil}},
		{"POST", "/api/chat", "application/json", detail},
		{"GET", "/api/tags", "application/json", detail},
		{"GET", "/version", "application/problem+json", nil},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := newRequest(tt.method, tt.path)
			r.Header.Set("Accept", "application/json")
			w, up := f.serve(r)
			if up.calls != 0 || w.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, upstream called %d times", w.Code, up.calls)
			}
			if got := w.Header().Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
			}
			var body map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %s: %v", w.Body, err)
			}
			if body["code"] != "unauthenticated" || body["detail"] != detail || body["status"] != float64(401) {
				t.Errorf("problem fields missing: %s", w.Body)
			}
			got, present := body["error"]
			if tt.wantError == nil {
				if present {
					t.Errorf("a plain route got an error member: %s", w.Body)
				}
				return
			}
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(tt.wantError)
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("error = %s, want %s", gotJSON, wantJSON)
			}
		})
	}
}
