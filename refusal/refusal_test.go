package refusal

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWriteProblem(t *testing.T) {
	w := httptest.NewRecorder()
	WriteProblem(w, http.StatusBadRequest, "ambiguous_request", "Ambiguous request", "the path has a ;")
	if w.Code != 400 || w.Header().Get("Content-Type") != "application/problem+json" || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, headers %v", w.Code, w.Header())
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "urn:gatehouse:problem:ambiguous_request", "title": "Ambiguous request", "status": float64(400),
		"detail": "the path has a ;", "code": "ambiguous_request"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestPlainErrorPageEscapes(t *testing.T) {
	w := httptest.NewRecorder()
	PlainErrorPage(w, http.StatusForbidden, "Forbidden", `<script>alert(1)</script>`)
	if w.Code != 403 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, type %s", w.Code, w.Header().Get("Content-Type"))
	}
	if strings.Contains(w.Body.String(), "<script>") || !strings.Contains(w.Body.String(), "&lt;script&gt;") {
		t.Fatalf("message not escaped: %s", w.Body)
	}
}
