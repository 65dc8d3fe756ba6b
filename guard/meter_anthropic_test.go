package guard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/core"
)

// anthropicEvent is one event of an Anthropic Messages stream.
func anthropicEvent(name, data string) string { return "event: " + name + "\ndata: " + data + "\n\n" }

// The usage objects of Anthropic's message_start and message_delta events.
const (
	anthropicStartUsage = `{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}`
	// anthropicDeltaUsage is what message_delta has always sent: the output
	// tokens only.
	anthropicDeltaUsage = `{"output_tokens":15}`
)

// anthropicStream is POST /v1/messages with "stream": true as the API sends
// it, one event a write: message_start with the input tokens, a text block
// of deltas content_block_delta events each carrying text, message_delta
// with deltaUsage, message_stop.
func anthropicStream(deltas int, text, deltaUsage string) []string {
	events := []string{
		anthropicEvent("message_start", `{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":`+anthropicStartUsage+`}}`),
		anthropicEvent("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`),
		anthropicEvent("ping", `{"type": "ping"}`),
	}
	for range deltas {
		events = append(events, anthropicEvent("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"`+text+`"}}`))
	}
	return append(events,
		anthropicEvent("content_block_stop", `{"type":"content_block_stop","index":0}`),
		anthropicEvent("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":`+deltaUsage+`}`),
		anthropicEvent("message_stop", `{"type":"message_stop"}`))
}

// TestTapMetersAnthropicStreams: an Anthropic stream reports its input
// tokens in message_start and its output tokens in message_delta; the tap
// counts both, however far apart they are and however the stream is
// written.
func TestTapMetersAnthropicStreams(t *testing.T) {
	long := anthropicStream(2000, "word ", anthropicDeltaUsage) // ≈ 220 KiB: message_start is long gone from the tail
	if n := len(strings.Join(long, "")); n < 3*tailSize {
		t.Fatalf("the long stream is %d bytes, want over %d", n, 3*tailSize)
	}
	tests := []struct {
		name   string
		writes []string
		want   core.Usage
	}{
		{name: "short: output tokens in message_delta, input in message_start",
			writes: anthropicStream(3, "Hello", anthropicDeltaUsage),
			want:   core.Usage{PromptTokens: 25, CompletionTokens: 15, TotalTokens: 40}},
		{name: "message_delta repeating the input tokens (newer API versions)",
			writes: anthropicStream(3, "Hello", `{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":15}`),
			want:   core.Usage{PromptTokens: 25, CompletionTokens: 15, TotalTokens: 40}},
		{name: "message_delta with null input tokens",
			writes: anthropicStream(3, "Hello", `{"input_tokens":null,"cache_creation_input_tokens":null,"cache_read_input_tokens":null,"output_tokens":15}`),
			want:   core.Usage{PromptTokens: 25, CompletionTokens: 15, TotalTokens: 40}},
		{name: "long, one event a write",
			writes: long,
			want:   core.Usage{PromptTokens: 25, CompletionTokens: 15, TotalTokens: 40}},
		{name: "long, in one write",
			writes: []string{strings.Join(long, "")},
			want:   core.Usage{PromptTokens: 25, CompletionTokens: 15, TotalTokens: 40}},
		{name: "long, in writes of 7 bytes, CRLF lines",
			writes: splitEvery(strings.ReplaceAll(strings.Join(long, ""), "\n", "\r\n"), 7),
			want:   core.Usage{PromptTokens: 25, CompletionTokens: 15, TotalTokens: 40}},
		{name: "long, message_start split across writes",
			writes: append(splitEvery(long[0], 100), long[1:]...),
			want:   core.Usage{PromptTokens: 25, CompletionTokens: 15, TotalTokens: 40}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			var got []core.Usage
			tp := newTestTap(rec, 40, false, &got)
			tp.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
			tp.WriteHeader(http.StatusOK)
			for _, w := range tc.writes {
				if n, err := tp.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			tp.finish(nil)
			if len(got) != 1 {
				t.Fatalf("%d records, want 1", len(got))
			}
			if u := got[0]; u.PromptTokens != tc.want.PromptTokens || u.CompletionTokens != tc.want.CompletionTokens ||
				u.TotalTokens != tc.want.TotalTokens || u.Estimated {
				t.Errorf("metered tokens %d+%d=%d estimated %v, want %d+%d=%d from the backend",
					u.PromptTokens, u.CompletionTokens, u.TotalTokens, u.Estimated,
					tc.want.PromptTokens, tc.want.CompletionTokens, tc.want.TotalTokens)
			}
			if want := strings.Join(tc.writes, ""); rec.Body.String() != want {
				t.Errorf("the client saw %d bytes, want the %d the backend sent", rec.Body.Len(), len(want))
			}
		})
	}
}

// BenchmarkTapStreamLong: 500 content chunks (past the tail's size), the
// finish chunk, the usage chunk the guard asked for (dropped) and [DONE].
func BenchmarkTapStreamLong(b *testing.B) {
	var writes [][]byte
	for range 500 {
		writes = append(writes, []byte(sseChunk(contentChunk)))
	}
	writes = append(writes, []byte(sseChunk(finishChunk)), []byte(sseChunk(usageChunk)), []byte("data: [DONE]\n\n"))
	benchTap(b, "text/event-stream", true, writes)
}

// BenchmarkTapAnthropicStream: a short Anthropic stream, 10 text deltas.
func BenchmarkTapAnthropicStream(b *testing.B) {
	benchTap(b, "text/event-stream", false, byteWrites(anthropicStream(10, "Hello there", anthropicDeltaUsage)))
}

// BenchmarkTapAnthropicStreamLong: 500 text deltas, past the tail's size.
func BenchmarkTapAnthropicStreamLong(b *testing.B) {
	benchTap(b, "text/event-stream", false, byteWrites(anthropicStream(500, "a sentence of forty bytes or thereabouts", anthropicDeltaUsage)))
}

func byteWrites(writes []string) [][]byte {
	out := make([][]byte, len(writes))
	for i, w := range writes {
		out[i] = []byte(w)
	}
	return out
}
