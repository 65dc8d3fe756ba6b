package guard_test

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// chatBody is a typical chat request (≈250 bytes).
const chatBody = `{"model":"llama3","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write one sentence about the sea, please, in the style of a weather report for sailors."}],"temperature":0.7,"max_tokens":128}`

// chatAnswer is an OpenAI chat completion with its usage.
var chatAnswer = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"llama3","choices":[{"index":0,"message":{"role":"assistant","content":"Sea state moderate, swell from the west, visibility good."},"finish_reason":"stop"}],"usage":{"prompt_tokens":41,"completion_tokens":14,"total_tokens":55}}`)

// streamEvents is a streamed answer, as bytes the way reverse_proxy writes
// it: 20 content chunks, the finish chunk, the usage chunk the guard asks
// for, and [DONE].
var streamEvents = func() [][]byte {
	var ev []string
	for range 20 {
		ev = append(ev, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"llama3","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}`+"\n\n")
	}
	ev = append(ev,
		`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"llama3","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n",
		`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"llama3","choices":[],"usage":{"prompt_tokens":41,"completion_tokens":20,"total_tokens":61}}`+"\n\n",
		"data: [DONE]\n\n")
	out := make([][]byte, len(ev))
	for i, e := range ev {
		out[i] = []byte(e)
	}
	return out
}()

func benchChat(b *testing.B, body string, limited bool, answer func(w http.ResponseWriter)) {
	f := newFixture(b)
	u := f.approve(f.login("bob@example.com", false), "user", nil)
	raw := f.token(u)
	if limited {
		raw = f.limitedToken(u)
	}
	target, _ := url.Parse(publicURL + "/v1/chat/completions")
	next := func(w http.ResponseWriter, r *http.Request) error {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return err
		}
		answer(w)
		return nil
	}
	w := flushingDiscard{&discardWriter{h: http.Header{}}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		w.status = 0
		r := benchRequest(target, "")
		r.Method = http.MethodPost
		r.Header["Authorization"] = []string{"Bearer " + raw}
		r.Header["Content-Length"] = []string{strconv.Itoa(len(body))}
		r.Body, r.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
		if err := f.g.Serve(w, r, next); err != nil || w.status != http.StatusOK {
			b.Fatalf("status %d, err %v", w.status, err)
		}
	}
}

// flushingDiscard is a discardWriter that flushes, as a server's does.
type flushingDiscard struct{ *discardWriter }

func (flushingDiscard) Flush() {}

// BenchmarkGuardBearerChat is the hot path of a model request: a cached
// bearer token, the model read from the body, a JSON answer whose usage the
// tap reads.
func BenchmarkGuardBearerChat(b *testing.B) {
	benchChat(b, chatBody, false, writeChatAnswer)
}

// BenchmarkGuardBearerChatQuota is BenchmarkGuardBearerChat with the quota
// checks on (the role's and the token's limits), as the load script runs it.
func BenchmarkGuardBearerChatQuota(b *testing.B) {
	benchChat(b, chatBody, true, writeChatAnswer)
}

func writeChatAnswer(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(chatAnswer)
}

// BenchmarkGuardBearerChatStream streams 23 events, written and flushed one
// by one; with metering the guard asks for the usage chunk and drops it.
func BenchmarkGuardBearerChatStream(b *testing.B) {
	body := strings.Replace(chatBody, `"temperature"`, `"stream":true,"temperature"`, 1)
	benchChat(b, body, false, func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, ev := range streamEvents {
			w.Write(ev)
			http.NewResponseController(w).Flush()
		}
	})
}
