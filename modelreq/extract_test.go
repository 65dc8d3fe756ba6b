package modelreq

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

func TestExtractBytes(t *testing.T) {
	tests := []struct {
		name      string
		keys      []string
		body      string
		wantModel string
		wantFound bool
		wantErr   error
	}{
		{name: "plain model", body: `{"model":"llama3","messages":[{"role":"user","content":"hi"}]}`, wantModel: "llama3", wantFound: true},
		{name: "whitespace everywhere", body: " \r\n\t{ \"model\" :\n\"gpt-4o\" , \"n\" : 1 }\n", wantModel: "gpt-4o", wantFound: true},
		{name: "model last", body: `{"stream":true,"temperature":0.2,"model":"qwen2.5:7b"}`, wantModel: "qwen2.5:7b", wantFound: true},
		{name: "empty string model", body: `{"model":""}`, wantModel: "", wantFound: true},
		{name: "missing model", body: `{"messages":[]}`, wantFound: false},
		{name: "empty object", body: `{}`, wantFound: false},
		{name: "nested model in array and object is ignored", body: `{"messages":[{"model":"evil"}],"options":{"model":"evil","x":[{"model":1}]}}`, wantFound: false},
		{name: "nested model before top-level model", body: `{"options":{"model":"evil"},"model":"good"}`, wantModel: "good", wantFound: true},
		{name: "key differing in case is model, as encoding/json reads it", body: `{"Model":"gpt-4"}`, wantModel: "gpt-4", wantFound: true},
		{name: "keys differing in case with different models", body: `{"model":"llama3","Model":"gpt-4"}`, wantErr: ErrAmbiguousModel},
		{name: "upper-case key with a different model", body: `{"model":"llama3","MODEL":"gpt-4"}`, wantErr: ErrAmbiguousModel},
		{name: "escaped upper-case key with a different model", body: `{"model":"llama3","\u004dODEL":"gpt-4"}`, wantErr: ErrAmbiguousModel},
		{name: "keys differing in case with the same model", body: `{"model":"llama3","MoDeL":"llama3"}`, wantModel: "llama3", wantFound: true},
		{name: "Ollama's name key", keys: []string{"model", "name"}, body: `{"name":"gpt-4"}`, wantModel: "gpt-4", wantFound: true},
		{name: "Ollama's name and model disagree", keys: []string{"model", "name"}, body: `{"model":"llama3","Name":"gpt-4"}`, wantErr: ErrAmbiguousModel},
		{name: "name is no model key elsewhere", body: `{"model":"llama3","name":"gpt-4"}`, wantModel: "llama3", wantFound: true},
		{name: "key with extra space is not model", body: `{"model ":"evil"," model":"evil"}`, wantFound: false},
		{name: "escaped key is model", body: `{"mod\u0065l":"evil"}`, wantModel: "evil", wantFound: true},
		{name: "fully escaped key is model", body: `{"\u006d\u006F\u0064\u0065\u006c":"evil"}`, wantModel: "evil", wantFound: true},
		{name: "escaped key unescaping to something else", body: `{"mode\u006c\u0000":"x","model":"ok"}`, wantModel: "ok", wantFound: true},
		{name: "escaped value", body: `{"model":"\u006c\u006c\u0061ma3"}`, wantModel: "llama3", wantFound: true},
		{name: "escaped solidus in value", body: `{"model":"org\/model:tag"}`, wantModel: "org/model:tag", wantFound: true},
		{name: "short escapes in value", body: `{"model":"a\"b\\c\b\f\n\r\t"}`, wantModel: "a\"b\\c\b\f\n\r\t", wantFound: true},
		{name: "surrogate pair in value", body: `{"model":"m\ud83d\ude00"}`, wantModel: "m😀", wantFound: true},
		{name: "raw UTF-8 in value", body: `{"model":"modèle-😀"}`, wantModel: "modèle-😀", wantFound: true},
		{name: "repeated model", body: `{"model":"llama3","model":"evil"}`, wantErr: ErrAmbiguousModel},
		{name: "repeated model with the same value", body: `{"model":"llama3","x":1,"model":"llama3"}`, wantModel: "llama3", wantFound: true},
		{name: "repeated model with the same value escaped", body: `{"model":"llama3","model":"ll\u0061ma3"}`, wantModel: "llama3", wantFound: true},
		{name: "repeated model via escaped key", body: `{"model":"llama3","mod\u0065l":"evil"}`, wantErr: ErrAmbiguousModel},
		{name: "null model", body: `{"model":null}`, wantErr: ErrAmbiguousModel},
		{name: "number model", body: `{"model":3}`, wantErr: ErrAmbiguousModel},
		{name: "boolean model", body: `{"model":true}`, wantErr: ErrAmbiguousModel},
		{name: "object model", body: `{"model":{"name":"llama3"}}`, wantErr: ErrAmbiguousModel},
		{name: "array model", body: `{"model":["llama3"]}`, wantErr: ErrAmbiguousModel},
		{name: "non-string model then string model", body: `{"model":null,"model":"llama3"}`, wantErr: ErrAmbiguousModel},
		{name: "lone high surrogate in model", body: `{"model":"a\ud800"}`, wantErr: ErrAmbiguousModel},
		{name: "lone low surrogate in model", body: `{"model":"a\udc00b"}`, wantErr: ErrAmbiguousModel},
		{name: "high surrogate followed by non-surrogate", body: `{"model":"\ud800\u0041"}`, wantErr: ErrAmbiguousModel},
		{name: "lone surrogate elsewhere is accepted", body: `{"content":"\ud800","model":"a"}`, wantModel: "a", wantFound: true},
		{name: "empty body", body: ``, wantErr: ErrInvalidJSON},
		{name: "whitespace only", body: " \n ", wantErr: ErrInvalidJSON},
		{name: "top-level array", body: `[{"model":"llama3"}]`, wantErr: ErrInvalidJSON},
		{name: "top-level string", body: `"model"`, wantErr: ErrInvalidJSON},
		{name: "top-level null", body: `null`, wantErr: ErrInvalidJSON},
		{name: "unterminated object", body: `{"model":"llama3"`, wantErr: ErrInvalidJSON},
		{name: "unterminated string", body: `{"model":"llama3}`, wantErr: ErrInvalidJSON},
		{name: "trailing comma", body: `{"model":"llama3",}`, wantErr: ErrInvalidJSON},
		{name: "missing colon", body: `{"model" "llama3"}`, wantErr: ErrInvalidJSON},
		{name: "unquoted key", body: `{model:"llama3"}`, wantErr: ErrInvalidJSON},
		{name: "single quotes", body: `{'model':'llama3'}`, wantErr: ErrInvalidJSON},
		{name: "trailing garbage", body: `{"model":"llama3"}x`, wantErr: ErrInvalidJSON},
		{name: "second object after the first", body: `{"model":"llama3"}{"model":"evil"}`, wantErr: ErrInvalidJSON},
		{name: "trailing NUL", body: "{\"model\":\"llama3\"}\x00", wantErr: ErrInvalidJSON},
		{name: "byte order mark", body: "\ufeff{\"model\":\"llama3\"}", wantErr: ErrInvalidJSON},
		{name: "invalid UTF-8 in model", body: "{\"model\":\"llama\xff3\"}", wantErr: ErrInvalidJSON},
		{name: "invalid UTF-8 in another member", body: "{\"content\":\"\xc3\x28\",\"model\":\"llama3\"}", wantErr: ErrInvalidJSON},
		{name: "UTF-8 encoded surrogate", body: "{\"model\":\"\xed\xa0\x80\"}", wantErr: ErrInvalidJSON},
		{name: "overlong UTF-8", body: "{\"model\":\"\xc0\xaf\"}", wantErr: ErrInvalidJSON},
		{name: "raw control character in string", body: "{\"model\":\"a\nb\"}", wantErr: ErrInvalidJSON},
		{name: "unknown escape", body: `{"model":"a\x41"}`, wantErr: ErrInvalidJSON},
		{name: "short unicode escape", body: `{"model":"\u006"}`, wantErr: ErrInvalidJSON},
		{name: "leading zero number", body: `{"n":01,"model":"a"}`, wantErr: ErrInvalidJSON},
		{name: "number without fraction digits", body: `{"n":1.,"model":"a"}`, wantErr: ErrInvalidJSON},
		{name: "number without exponent digits", body: `{"n":1e+,"model":"a"}`, wantErr: ErrInvalidJSON},
		{name: "plus sign number", body: `{"n":+1,"model":"a"}`, wantErr: ErrInvalidJSON},
		{name: "NaN", body: `{"n":NaN,"model":"a"}`, wantErr: ErrInvalidJSON},
		{name: "valid numbers", body: `{"a":-0,"b":-0.5e+10,"c":1E-3,"d":[0,12.25e2],"model":"a"}`, wantModel: "a", wantFound: true},
		{name: "literals", body: `{"a":true,"b":false,"c":null,"d":[true,false,null],"model":"a"}`, wantModel: "a", wantFound: true},
		{name: "misspelt literal", body: `{"a":nul,"model":"a"}`, wantErr: ErrInvalidJSON},
		{name: "array closed by brace", body: `{"a":[1},"model":"a"}`, wantErr: ErrInvalidJSON},
		{name: "invalid JSON wins over ambiguity", body: `{"model":1,"model":"a"`, wantErr: ErrInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, found, err := ExtractBytes([]byte(tt.body), tt.keys)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if model != tt.wantModel || found != tt.wantFound {
				t.Errorf("got (%q, %v), want (%q, %v)", model, found, tt.wantModel, tt.wantFound)
			}
		})
	}
}

func TestExtractBytesFindsModelAfterLargePrefix(t *testing.T) {
	filler := strings.Repeat(`{"role":"user","content":"padding \"model\":\"ok\" text"},`, 900*1024/50)
	body := `{"messages":[` + filler + `{"role":"user","content":"hi"}],"model":"forbidden-model"}`
	if len(body) < 900*1024 {
		t.Fatalf("test body is only %d bytes", len(body))
	}
	model, found, err := ExtractBytes([]byte(body), nil)
	if err != nil || !found || model != "forbidden-model" {
		t.Fatalf("got (%q, %v, %v), want forbidden-model", model, found, err)
	}
}

// The nesting limit is encoding/json's, so what one accepts the other does.
func TestExtractBytesNestingLimit(t *testing.T) {
	nested := func(depth int) []byte {
		inner := depth - 1 // the top-level object is one level
		return []byte(`{"model":"a","x":` + strings.Repeat("[", inner) + strings.Repeat("]", inner) + `}`)
	}
	if _, found, err := ExtractBytes(nested(10000), nil); err != nil || !found {
		t.Errorf("depth 10000: found=%v err=%v, want the model", found, err)
	}
	if _, _, err := ExtractBytes(nested(10001), nil); !errors.Is(err, ErrInvalidJSON) {
		t.Errorf("depth 10001: err=%v, want ErrInvalidJSON", err)
	}
}

func TestExtractLimit(t *testing.T) {
	const limit = 64
	exact := `{"model":"llama3","pad":"` + strings.Repeat("x", limit-27) + `"}`
	if len(exact) != limit {
		t.Fatalf("exact body is %d bytes, want %d", len(exact), limit)
	}
	over := exact + " "
	tests := []struct {
		name          string
		body          string
		contentLength int64
		wantErr       error
		wantReadAtMax int64
	}{
		{name: "exactly the limit with Content-Length", body: exact, contentLength: int64(len(exact))},
		{name: "exactly the limit without Content-Length", body: exact, contentLength: -1},
		{name: "over the limit by Content-Length is refused unread", body: over, contentLength: int64(len(over)), wantErr: ErrBodyTooLarge, wantReadAtMax: 0},
		{name: "over the limit without Content-Length reads limit+1", body: over, contentLength: -1, wantErr: ErrBodyTooLarge, wantReadAtMax: limit + 1},
		{name: "body longer than its Content-Length", body: over + strings.Repeat(" ", 100), contentLength: 10, wantErr: ErrBodyTooLarge, wantReadAtMax: limit + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counter := &countingReader{r: strings.NewReader(tt.body)}
			r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
			r.Body = io.NopCloser(counter)
			r.ContentLength = tt.contentLength
			model, found, err := Extract(r, limit, nil)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if counter.n > tt.wantReadAtMax {
					t.Errorf("read %d bytes, want at most %d", counter.n, tt.wantReadAtMax)
				}
				return
			}
			if err != nil || !found || model != "llama3" {
				t.Fatalf("got (%q, %v, %v), want llama3", model, found, err)
			}
			assertBody(t, r, tt.body)
		})
	}
}

func TestExtractNeverReadsUnboundedBody(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	counter := &countingReader{r: endless{}}
	r.Body = io.NopCloser(counter)
	r.ContentLength = -1
	if _, _, err := Extract(r, 1<<20, nil); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("err = %v, want ErrBodyTooLarge", err)
	}
	if counter.n != 1<<20+1 {
		t.Errorf("read %d bytes, want %d", counter.n, 1<<20+1)
	}
}

func TestExtractRestoresBody(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantModel string
		wantFound bool
		wantErr   error
	}{
		{name: "model found", body: `{"model":"llama3", "messages" : [ ] }`, wantModel: "llama3", wantFound: true},
		{name: "no model", body: `{"input":"hello"}`},
		{name: "ambiguous model", body: `{"model":"a","model":"b"}`, wantErr: ErrAmbiguousModel},
		{name: "invalid JSON", body: `{"model":`, wantErr: ErrInvalidJSON},
	}
	for _, tt := range tests {
		for _, chunked := range []bool{false, true} {
			name := tt.name + map[bool]string{false: " with Content-Length", true: " chunked"}[chunked]
			t.Run(name, func(t *testing.T) {
				r := httptest.NewRequest(http.MethodPost, "/api/chat", strings.NewReader(tt.body))
				if chunked {
					r.ContentLength = -1
					r.TransferEncoding = []string{"chunked"}
				}
				model, found, err := Extract(r, 1<<20, nil)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if model != tt.wantModel || found != tt.wantFound {
					t.Errorf("got (%q, %v), want (%q, %v)", model, found, tt.wantModel, tt.wantFound)
				}
				if r.TransferEncoding != nil {
					t.Errorf("TransferEncoding = %v, want nil now the length is known", r.TransferEncoding)
				}
				assertBody(t, r, tt.body)
			})
		}
	}
}

func TestExtractEmptyBody(t *testing.T) {
	for name, body := range map[string]io.ReadCloser{"nil": nil, "http.NoBody": http.NoBody, "empty reader": io.NopCloser(strings.NewReader(""))} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/embeddings", nil)
			r.Body = body
			r.ContentLength = -1
			if _, _, err := Extract(r, 1024, nil); !errors.Is(err, ErrInvalidJSON) {
				t.Fatalf("err = %v, want ErrInvalidJSON", err)
			}
			if r.Body != http.NoBody || r.ContentLength != 0 {
				t.Errorf("Body = %T, ContentLength = %d; want http.NoBody, 0", r.Body, r.ContentLength)
			}
		})
	}
}

func TestExtractReadError(t *testing.T) {
	errBroken := errors.New("connection reset")
	r := httptest.NewRequest(http.MethodPost, "/v1/completions", nil)
	r.Body = io.NopCloser(io.MultiReader(strings.NewReader(`{"model":`), errReader{errBroken}))
	r.ContentLength = -1
	_, _, err := Extract(r, 1024, nil)
	if !errors.Is(err, errBroken) {
		t.Fatalf("err = %v, want it to wrap %v", err, errBroken)
	}
}

// TestExtractProxiesIdenticalBody runs the real path: a client request (with
// a length or chunked) reaches a server that extracts the model and proxies to
// an upstream, which must receive the very bytes the client sent.
func TestExtractProxiesIdenticalBody(t *testing.T) {
	type received struct {
		body          string
		contentLength int64
	}
	upstreamGot := make(chan received, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream read: %v", err)
		}
		upstreamGot <- received{string(b), r.ContentLength}
	}))
	defer upstream.Close()
	upstreamURL, err := url.Parse(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(upstreamURL)
	guardGot := make(chan string, 1)
	guard := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		model, _, err := Extract(r, 1<<20, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		guardGot <- model
		proxy.ServeHTTP(w, r)
	}))
	defer guard.Close()

	body := `{"model":"mod\u0065l-x" ,"messages":[{"role":"user","content":"caf` + "\u00e9" + ` \ud83d\ude00"}],` + "\n\t" + `"stream":false}`
	for _, chunked := range []bool{false, true} {
		var reqBody io.Reader = strings.NewReader(body)
		if chunked {
			// Hiding the length makes the client send the body chunked.
			reqBody = io.MultiReader(reqBody)
		}
		resp, err := http.Post(guard.URL+"/v1/chat/completions", "application/json", reqBody)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("chunked=%v: status %d", chunked, resp.StatusCode)
		}
		if model := <-guardGot; model != "model-x" {
			t.Errorf("chunked=%v: model %q, want model-x", chunked, model)
		}
		got := <-upstreamGot
		if got.body != body {
			t.Errorf("chunked=%v: upstream body\n%q\nwant\n%q", chunked, got.body, body)
		}
		if got.contentLength != int64(len(body)) {
			t.Errorf("chunked=%v: upstream ContentLength %d, want %d", chunked, got.contentLength, len(body))
		}
	}
}

// assertBody checks r carries want, readable once from Body and again from
// GetBody, with a matching ContentLength.
func assertBody(t *testing.T, r *http.Request, want string) {
	t.Helper()
	if r.ContentLength != int64(len(want)) {
		t.Errorf("ContentLength = %d, want %d", r.ContentLength, len(want))
	}
	got, err := io.ReadAll(r.Body)
	if err != nil || string(got) != want {
		t.Errorf("Body = %q, %v; want %q", got, err, want)
	}
	if r.GetBody == nil {
		t.Fatal("GetBody is nil")
	}
	for range 2 {
		rc, err := r.GetBody()
		if err != nil {
			t.Fatalf("GetBody: %v", err)
		}
		again, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(again) != want {
			t.Errorf("GetBody body = %q, %v; want %q", again, err, want)
		}
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// reusableBody lets the benchmark hand out a body without allocating, so only
// Extract's own allocations are counted.
type reusableBody struct{ bytes.Reader }

func (*reusableBody) Close() error { return nil }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// chatBody is a typical OpenAI chat completion request (about 2 KB).
var chatBody = []byte(`{
  "model": "llama3.1:8b-instruct-q4_K_M",
  "messages": [
    {"role": "system", "content": "You are a helpful assistant. Answer concisely and cite the documents you were given when you use them. If you do not know, say so."},
    {"role": "user", "content": "Summarise the attached incident report in three bullet points and say which team should own the follow-up."},
    {"role": "assistant", "content": "- The nightly export job failed on 3 June because the disk holding its temporary files filled up.\n- Retries made it worse: each retry left another partial file behind.\n- Customers saw stale dashboards for about six hours.\nThe data platform team should own the follow-up."},
    {"role": "user", "content": "Draft the follow-up ticket. Include acceptance criteria and mention the \"cleanup on retry\" change explicitly. Keep it under 150 words, use markdown, and don't invent dates that are not in the report."}
  ],
  "temperature": 0.2,
  "top_p": 0.95,
  "max_tokens": 512,
  "stream": true,
  "stream_options": {"include_usage": true},
  "tools": [
    {"type": "function", "function": {"name": "create_ticket", "description": "Create a ticket in the tracker", "parameters": {"type": "object", "properties": {"title": {"type": "string"}, "body": {"type": "string"}, "team": {"type": "string", "enum": ["data-platform", "sre", "frontend"]}}, "required": ["title", "body", "team"]}}}
  ],
  "tool_choice": "auto",
  "user": "user-5f1c2b"
}`)

func BenchmarkExtract(b *testing.B) {
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	src := &reusableBody{}
	b.SetBytes(int64(len(chatBody)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(chatBody)
		r.Body = src
		r.ContentLength = int64(len(chatBody))
		if model, _, err := Extract(r, 1<<20, nil); err != nil || model != "llama3.1:8b-instruct-q4_K_M" {
			b.Fatalf("got %q, %v", model, err)
		}
	}
}

func BenchmarkExtractBytes(b *testing.B) {
	b.SetBytes(int64(len(chatBody)))
	b.ReportAllocs()
	for b.Loop() {
		if model, _, err := ExtractBytes(chatBody, nil); err != nil || model != "llama3.1:8b-instruct-q4_K_M" {
			b.Fatalf("got %q, %v", model, err)
		}
	}
}
