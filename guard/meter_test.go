package guard

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse/gatehouse/core"
)

// newTestTap is a tap over w for a model request of requestBytes, as meter
// sets it up; the records it makes land in got.
func newTestTap(w http.ResponseWriter, requestBytes int64, dropUsageChunk bool, got *[]core.Usage) *tap {
	return &tap{w: w, meter: records{got}, count: true,
		requestBytes: requestBytes, dropUsageChunk: dropUsageChunk,
		usage: core.Usage{Time: time.Now(), UserID: "u1", RouteKind: "model", Model: "llama3"}}
}

// records keeps the records a tap makes.
type records struct{ got *[]core.Usage }

func (r records) Meter(u core.Usage) { *r.got = append(*r.got, u) }

// sseChunk is one OpenAI stream event.
func sseChunk(data string) string { return "data: " + data + "\n\n" }

const (
	contentChunk = `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}`
	finishChunk  = `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`
	usageChunk   = `{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}`
)

func TestTapMetersAnswers(t *testing.T) {
	openAIStream := []string{sseChunk(contentChunk), sseChunk(contentChunk), sseChunk(finishChunk), sseChunk(usageChunk), "data: [DONE]\n\n"}
	tests := []struct {
		name        string
		contentType string
		status      int
		writes      []string // what the backend sends, write by write
		drop        bool     // the guard asked for the usage chunk
		want        core.Usage
		client      string // what the client sees; default: every write
	}{
		{name: "OpenAI JSON usage", contentType: "application/json",
			writes: []string{`{"id":"x","choices":[{"message":{"content":"hello"}}],`, `"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}` + "\n"},
			want:   core.Usage{PromptTokens: 12, CompletionTokens: 30, TotalTokens: 42}},
		{name: "OpenAI usage with details, pretty-printed", contentType: "application/json",
			writes: []string{"{\n  \"choices\": [],\n  \"usage\": {\n    \"prompt_tokens\": 19,\n    \"prompt_tokens_details\": {\"cached_tokens\": 0, \"audio_tokens\": null},\n    \"note\": \"a } in a string\",\n    \"completion_tokens\": 10,\n    \"total_tokens\": 29\n  },\n  \"system_fingerprint\": \"fp\"\n}\n"},
			want:   core.Usage{PromptTokens: 19, CompletionTokens: 10, TotalTokens: 29}},
		{name: "a usage object cut off: the earlier complete one counts", contentType: "text/event-stream",
			writes: []string{sseChunk(usageChunk), `data: {"choices":[],"usage":{"prompt_tokens":500,`},
			want:   core.Usage{PromptTokens: 11, CompletionTokens: 7, TotalTokens: 18}},
		{name: "OpenAI embeddings usage without completion tokens", contentType: "application/json",
			writes: []string{`{"object":"list","data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":5,"total_tokens":5}}`},
			want:   core.Usage{PromptTokens: 5, TotalTokens: 5}},
		{name: "Responses API input and output tokens", contentType: "application/json",
			writes: []string{`{"id":"r","output":[],"usage":{"input_tokens":3,"output_tokens":4}}`},
			want:   core.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}},
		{name: "Anthropic JSON with cached prompt tokens: they count as prompt", contentType: "application/json",
			writes: []string{`{"id":"msg_1","type":"message","content":[],"usage":{"input_tokens":4,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":9}}`},
			want:   core.Usage{PromptTokens: 2104, CompletionTokens: 9, TotalTokens: 2113}},
		{name: "SSE with usage the client asked for: every chunk passes", contentType: "text/event-stream",
			writes: openAIStream,
			want:   core.Usage{PromptTokens: 11, CompletionTokens: 7, TotalTokens: 18}},
		{name: "SSE with usage the guard asked for: the usage chunk is dropped", contentType: "text/event-stream", drop: true,
			writes: openAIStream,
			want:   core.Usage{PromptTokens: 11, CompletionTokens: 7, TotalTokens: 18},
			client: sseChunk(contentChunk) + sseChunk(contentChunk) + sseChunk(finishChunk) + "data: [DONE]\n\n"},
		{name: "SSE events split across writes, CRLF lines", contentType: "text/event-stream; charset=utf-8", drop: true,
			writes: splitEvery(strings.ReplaceAll(strings.Join(openAIStream, ""), "\n", "\r\n"), 7),
			want:   core.Usage{PromptTokens: 11, CompletionTokens: 7, TotalTokens: 18},
			client: strings.ReplaceAll(sseChunk(contentChunk)+sseChunk(contentChunk)+sseChunk(finishChunk)+"data: [DONE]\n\n", "\n", "\r\n")},
		{name: "Ollama JSON", contentType: "application/json",
			writes: []string{`{"model":"llama3","message":{"role":"assistant","content":"hi"},"done":true,"total_duration":5,"prompt_eval_count":26,"prompt_eval_duration":1,"eval_count":298,"eval_duration":4}`},
			want:   core.Usage{PromptTokens: 26, CompletionTokens: 298, TotalTokens: 324}},
		{name: "Ollama NDJSON stream: the final done object", contentType: "application/x-ndjson",
			writes: []string{
				`{"model":"llama3","message":{"content":"a"},"done":false}` + "\n",
				`{"model":"llama3","message":{"content":"b"},"done":false}` + "\n",
				`{"model":"llama3","message":{"content":""},"done":true,"done_reason":"stop","prompt_eval_count":9,"eval_count":2}` + "\n",
			},
			want: core.Usage{PromptTokens: 9, CompletionTokens: 2, TotalTokens: 11}},
		{name: "Ollama embed: prompt only", contentType: "application/json",
			writes: []string{`{"model":"m","embeddings":[[0.1]],"total_duration":1,"prompt_eval_count":8}`},
			want:   core.Usage{PromptTokens: 8, TotalTokens: 8}},
		{name: "no usage: estimated from the sizes", contentType: "application/json",
			writes: []string{`{"answer":"0123456789"}`}, // 23 bytes: 6 tokens; the 40-byte request: 10
			want:   core.Usage{PromptTokens: 10, CompletionTokens: 6, TotalTokens: 16, Estimated: true}},
		{name: "usage written inside a string is not the answer's", contentType: "application/json",
			writes: []string{`{"content":"say \"usage\": {\"prompt_tokens\": 999}"}`}, // 53 bytes
			want:   core.Usage{PromptTokens: 10, CompletionTokens: 14, TotalTokens: 24, Estimated: true}},
		{name: "SSE whose usage is null throughout: estimated", contentType: "text/event-stream", drop: true,
			writes: []string{sseChunk(contentChunk)}, // 134 bytes
			want:   core.Usage{PromptTokens: 10, CompletionTokens: 34, TotalTokens: 44, Estimated: true}},
		{name: "an error answer counts no tokens", contentType: "application/json", status: http.StatusBadRequest,
			writes: []string{`{"error":{"message":"bad"}}`},
			want:   core.Usage{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			var got []core.Usage
			tp := newTestTap(rec, 40, tc.drop, &got)
			tp.Header().Set("Content-Type", tc.contentType)
			status := tc.status
			if status == 0 {
				status = http.StatusOK
			}
			tp.WriteHeader(status)
			for _, w := range tc.writes {
				if n, err := tp.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			tp.finish(nil)
			if len(got) != 1 {
				t.Fatalf("%d records, want 1", len(got))
			}
			u := got[0]
			tc.want.Status = status
			if u.PromptTokens != tc.want.PromptTokens || u.CompletionTokens != tc.want.CompletionTokens ||
				u.TotalTokens != tc.want.TotalTokens || u.Estimated != tc.want.Estimated || u.Status != tc.want.Status {
				t.Errorf("metered status %d, tokens %d+%d=%d estimated %v;\nwant status %d, tokens %d+%d=%d estimated %v",
					u.Status, u.PromptTokens, u.CompletionTokens, u.TotalTokens, u.Estimated,
					tc.want.Status, tc.want.PromptTokens, tc.want.CompletionTokens, tc.want.TotalTokens, tc.want.Estimated)
			}
			if u.UserID != "u1" || u.Model != "llama3" || u.RouteKind != "model" {
				t.Errorf("record %+v lost the request's identity", u)
			}
			want := tc.client
			if want == "" {
				want = strings.Join(tc.writes, "")
			}
			if rec.Body.String() != want {
				t.Errorf("client saw\n%q\nwant\n%q", rec.Body.String(), want)
			}
		})
	}
}

func splitEvery(s string, n int) []string {
	var parts []string
	for len(s) > n {
		parts = append(parts, s[:n])
		s = s[n:]
	}
	return append(parts, s)
}

// TestTapPassesEventsAsTheyComplete: while dropping the usage chunk, each
// event reaches the client with the write that completes it, and flushes
// go through.
func TestTapPassesEventsAsTheyComplete(t *testing.T) {
	rec := httptest.NewRecorder()
	var got []core.Usage
	tp := newTestTap(rec, 0, true, &got)
	tp.Header().Set("Content-Type", "text/event-stream")
	tp.Header().Set("Content-Length", "999")
	tp.WriteHeader(http.StatusOK)
	if rec.Header().Get("Content-Length") != "" {
		t.Error("a filtered stream kept the backend's Content-Length")
	}
	first := sseChunk(contentChunk)
	tp.Write([]byte(first[:10]))
	if rec.Body.Len() != 0 {
		t.Fatalf("half an event reached the client: %q", rec.Body.String())
	}
	tp.Write([]byte(first[10:]))
	if err := http.NewResponseController(tp).Flush(); err != nil {
		t.Fatal(err)
	}
	if rec.Body.String() != first || !rec.Flushed {
		t.Fatalf("after the event's end: client has %q (flushed %v), want the event, flushed", rec.Body.String(), rec.Flushed)
	}
	tp.Write([]byte(sseChunk(usageChunk)))
	if rec.Body.String() != first {
		t.Fatalf("the usage chunk reached the client: %q", rec.Body.String())
	}
	tp.Write([]byte("data: [DONE]\n\n"))
	if want := first + "data: [DONE]\n\n"; rec.Body.String() != want {
		t.Fatalf("client has %q, want %q", rec.Body.String(), want)
	}
	tp.finish(nil)
	if got[0].TotalTokens != 18 {
		t.Errorf("metered %d tokens, want 18", got[0].TotalTokens)
	}
}

// TestTapHugeAnswerStaysBounded: a 64 MiB answer passes through while the
// tap keeps a fixed tail, and its usage at the very end is still found.
func TestTapHugeAnswerStaysBounded(t *testing.T) {
	var got []core.Usage
	tp := newTestTap(discard{http.Header{}}, 100, true, &got)
	tp.Header().Set("Content-Type", "text/event-stream")
	tp.WriteHeader(http.StatusOK)
	event := []byte(sseChunk(contentChunk))
	block := []byte(strings.Repeat(string(event), (32<<10)/len(event)))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var sent int64
	for sent < 64<<20 {
		tp.Write(block)
		sent += int64(len(block))
	}
	tp.Write([]byte(sseChunk(usageChunk) + "data: [DONE]\n\n"))
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Errorf("passing %d MiB allocated %d KiB", sent>>20, grew>>10)
	}
	if n := cap(*tp.tail); n != tailSize {
		t.Errorf("tail capacity %d, want %d", n, tailSize)
	}
	tp.finish(nil)
	if u := got[0]; u.TotalTokens != 18 || u.Estimated {
		t.Errorf("metered %d tokens (estimated %v), want 18 from the backend", u.TotalTokens, u.Estimated)
	}
}

type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}
func (d discard) Flush()                      {}

// TestTapHijack: an upgrade through the tap reaches the connection and is
// metered as 101 without tokens.
func TestTapHijack(t *testing.T) {
	var got []core.Usage
	metered := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(metered)
		tp := newTestTap(w, 0, false, &got)
		conn, rw, err := http.NewResponseController(tp).Hijack()
		if err != nil {
			t.Errorf("Hijack through the tap: %v", err)
			return
		}
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello")
		rw.Flush()
		conn.Close()
		tp.finish(nil)
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(br) // after a 101 the connection is the body
	if resp.StatusCode != http.StatusSwitchingProtocols || string(body) != "hello" {
		t.Fatalf("upgrade answered %d %q", resp.StatusCode, body)
	}
	<-metered
	if len(got) != 1 || got[0].Status != http.StatusSwitchingProtocols || got[0].TotalTokens != 0 || got[0].Estimated {
		t.Fatalf("metered %+v, want one 101 without tokens", got)
	}
}

// TestTapStatusOfAnError: a handler that fails before answering (the proxy
// cannot reach the backend) is metered with its error's status.
func TestTapStatusOfAnError(t *testing.T) {
	var got []core.Usage
	tp := newTestTap(httptest.NewRecorder(), 10, false, &got)
	tp.finish(caddyhttp.Error(http.StatusBadGateway, io.ErrUnexpectedEOF))
	if got[0].Status != http.StatusBadGateway || got[0].TotalTokens != 0 {
		t.Fatalf("metered %+v, want 502 without tokens", got[0])
	}
}

type nopMeter struct{}

func (nopMeter) Meter(core.Usage) {}

// benchTap measures what metering adds to one answer: the tap's writes and
// its finish (the guard's share, without the request).
func benchTap(b *testing.B, contentType string, drop bool, writes [][]byte) {
	w := discard{http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		tp := &tap{w: w, meter: nopMeter{}, count: true, requestBytes: 250, dropUsageChunk: drop,
			usage: core.Usage{Time: time.Now(), UserID: "u1", RouteKind: "model", Model: "llama3"}}
		tp.Header().Set("Content-Type", contentType)
		tp.WriteHeader(http.StatusOK)
		for _, p := range writes {
			tp.Write(p)
			tp.Flush()
		}
		if u := tp.finish(nil); u.TotalTokens == 0 || u.Estimated {
			b.Fatalf("metered %+v", u)
		}
	}
}

func BenchmarkTapJSON(b *testing.B) {
	benchTap(b, "application/json", false, [][]byte{[]byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"llama3","choices":[{"index":0,"message":{"role":"assistant","content":"Sea state moderate, swell from the west, visibility good."},"finish_reason":"stop"}],"usage":{"prompt_tokens":41,"completion_tokens":14,"total_tokens":55}}`)})
}

// BenchmarkTapStream: 20 content chunks, the finish chunk, the usage chunk
// the guard asked for (dropped) and [DONE], one write and flush each.
func BenchmarkTapStream(b *testing.B) {
	var writes [][]byte
	for range 20 {
		writes = append(writes, []byte(sseChunk(contentChunk)))
	}
	writes = append(writes, []byte(sseChunk(finishChunk)), []byte(sseChunk(usageChunk)), []byte("data: [DONE]\n\n"))
	benchTap(b, "text/event-stream", true, writes)
}

// TestEndsAtEventAgreesWithEventEnd: when endsAtEvent says a write is whole
// events, eventEnd's scan ends its last event exactly at the write's end
// (every string of up to 10 bytes of 'a', CR and LF), so passing the write
// whole passes what the scan would have.
func TestEndsAtEventAgreesWithEventEnd(t *testing.T) {
	alphabet := []byte("a\r\n")
	var check func(b []byte)
	check = func(b []byte) {
		if endsAtEvent(b) {
			i := 0
			for n := eventEnd(b[i:]); n >= 0; n = eventEnd(b[i:]) {
				i += n
			}
			if i != len(b) {
				t.Errorf("endsAtEvent(%q) but eventEnd's events end at %d", b, i)
			}
		}
		if len(b) < 10 {
			for _, c := range alphabet {
				check(append(b, c))
			}
		}
	}
	check(nil)
	for _, w := range []string{sseChunk(contentChunk), strings.ReplaceAll(sseChunk(contentChunk), "\n", "\r\n"), "data: [DONE]\n\n"} {
		if !endsAtEvent([]byte(w)) {
			t.Errorf("endsAtEvent(%q) = false, want the write passed whole", w)
		}
	}
}

// TestReadUsageAllocatesNothing: reading a usage object with members that
// are no counts (details objects, strings, nulls) allocates nothing.
func TestReadUsageAllocatesNothing(t *testing.T) {
	answer := []byte(`{"choices":[],"usage":{"prompt_tokens":19,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":null},"completion_tokens":10,"completion_tokens_details":{"reasoning_tokens":0},"total_tokens":29,"service_tier":"default"}}`)
	var n tokenCount
	var ok bool
	if allocs := testing.AllocsPerRun(100, func() { n, ok = readUsage(answer) }); allocs != 0 {
		t.Errorf("readUsage allocated %v times", allocs)
	}
	if !ok || n.prompt != 19 || n.completion != 10 || n.total != 29 {
		t.Errorf("readUsage = %+v, %v; want 19+10=29", n, ok)
	}
}
