package modelreq

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func TestIncludeStreamUsage(t *testing.T) {
	tests := []struct {
		name, body string
		want       string // "" when the body is left as it is
	}{
		{"a streaming chat gets stream_options",
			`{"model":"m","stream":true,"messages":[]}`,
			`{"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[]}`},
		{"whitespace before the object",
			" \n{ \"stream\" : true }",
			" \n{\"stream_options\":{\"include_usage\":true}, \"stream\" : true }"},
		{"stream_options without include_usage gets it",
			`{"stream":true,"stream_options":{"include_obfuscation":false}}`,
			`{"stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false}}`},
		{"empty stream_options gets it",
			`{"stream":true,"stream_options":{ }}`,
			`{"stream":true,"stream_options":{"include_usage":true }}`},
		{"an escaped stream key is the stream key", `{"str\u0065am":true}`,
			`{"stream_options":{"include_usage":true},"str\u0065am":true}`},
		{"the last stream counts", `{"stream":false,"stream":true}`,
			`{"stream_options":{"include_usage":true},"stream":false,"stream":true}`},
		{"the client asked for usage", `{"stream":true,"stream_options":{"include_usage":true}}`, ""},
		{"the client declined usage", `{"stream":true,"stream_options":{"include_usage":false}}`, ""},
		{"null stream_options is the client's", `{"stream":true,"stream_options":null}`, ""},
		{"not streaming", `{"model":"m","stream":false}`, ""},
		{"stream not a boolean", `{"stream":"true"}`, ""},
		{"stream only in another case", `{"Stream":true}`, ""},
		{"the last stream is false", `{"stream":true,"stream":false}`, ""},
		{"stream nested", `{"options":{"stream":true}}`, ""},
		{"not an object", `[{"stream":true}]`, ""},
		{"broken JSON", `{"stream":true`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(tc.body))
			r.Header.Set("Content-Length", strconv.Itoa(len(tc.body)))
			if _, err := ReadBody(r, 1<<20); err != nil {
				t.Fatal(err)
			}
			added := IncludeStreamUsage(r)
			want := tc.want
			if want == "" {
				want = tc.body
			}
			if added != (tc.want != "") {
				t.Errorf("IncludeStreamUsage = %v, want %v", added, tc.want != "")
			}
			assertBody(t, r, want)
			if got := r.Header.Get("Content-Length"); got != strconv.Itoa(len(want)) {
				t.Errorf("Content-Length header %s, want %d", got, len(want))
			}
			if added && !json.Valid([]byte(want)) {
				t.Errorf("rewritten body is not JSON: %s", want)
			}
		})
	}
}

func TestIncludeStreamUsageNeedsTheBodyRead(t *testing.T) {
	body := `{"stream":true}`
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
	if IncludeStreamUsage(r) {
		t.Fatal("a body never read was rewritten")
	}
	if _, err := ReadBody(r, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r.Body, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	if IncludeStreamUsage(r) {
		t.Fatal("a body partly consumed was rewritten")
	}
}

func BenchmarkIncludeStreamUsage(b *testing.B) {
	body := `{"model":"llama3","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write one sentence about the sea, please, in the style of a weather report for sailors."}],"stream":true,"temperature":0.7,"max_tokens":128}`
	b.ReportAllocs()
	for b.Loop() {
		r := &http.Request{Method: http.MethodPost, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
		if _, err := ReadBody(r, 1<<20); err != nil {
			b.Fatal(err)
		}
		if !IncludeStreamUsage(r) {
			b.Fatal("not rewritten")
		}
	}
}

func TestMaxCompletion(t *testing.T) {
	for _, tt := range []struct {
		body string
		want int64
	}{
		{`{"model":"m","max_tokens":100}`, 100},
		{`{"max_completion_tokens":42,"messages":[{"max_tokens":9}]}`, 42},
		{`{"max_output_tokens": 7}`, 7},
		{`{"model":"llama3","options":{"temperature":0,"num_predict":64}}`, 64},
		{`{"max_tokens":0}`, 0},
		{`{"max_tokens":-5}`, 0},
		{`{"max_tokens":"100"}`, 0},
		{`{"messages":[]}`, 0},
		{`not json`, 0},
	} {
		got, ok := MaxCompletion([]byte(tt.body))
		if got != tt.want || ok != (tt.want > 0) {
			t.Errorf("MaxCompletion(%s) = %d, %v; want %d", tt.body, got, ok, tt.want)
		}
	}
}
