package tests

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// meteredBackend answers like OpenAI and Ollama do, with known token counts,
// and records what the chat requests asked for.
type meteredBackend struct {
	addr string
	mu   sync.Mutex
	asks []streamAsk // per streaming chat request, in order
}

// streamAsk is what a streaming chat request said about usage.
type streamAsk struct {
	StreamOptions json.RawMessage `json:"stream_options"`
}

// The counts the stand-ins report.
const (
	openAIPrompt, openAICompletion = 7, 5
	ollamaPrompt, ollamaCompletion = 9, 4
	// Anthropic's stream reports the input tokens in message_start and the
	// output tokens in message_delta.
	anthropicPrompt, anthropicCompletion = 23, 17
	// embeddingAnswer reports no usage: its tokens are estimated.
	embeddingAnswer = `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,0.25]}],"model":"nomic-embed"}` + "\n"
)

func startMeteredBackend(t *testing.T) *meteredBackend {
	b := &meteredBackend{}
	b.addr = listen(t, http.HandlerFunc(b.serve))
	return b
}

// openAIEvents are the events of the stand-in's chat stream; usageAsked
// adds the last chunk OpenAI sends for stream_options.include_usage.
func openAIEvents(usageAsked bool) []string {
	chunk := func(choices string) string {
		return `data: {"id":"chatcmpl-m","object":"chat.completion.chunk","created":1,"model":"llama3","choices":[` + choices + "]}\n\n"
	}
	events := []string{
		chunk(`{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}`),
		chunk(`{"index":0,"delta":{"content":"metered "},"finish_reason":null}`),
		chunk(`{"index":0,"delta":{"content":"answer"},"finish_reason":null}`),
		chunk(`{"index":0,"delta":{},"finish_reason":"stop"}`),
	}
	if usageAsked {
		events = append(events, fmt.Sprintf(`data: {"id":"chatcmpl-m","object":"chat.completion.chunk","created":1,"model":"llama3","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`+"\n\n",
			openAIPrompt, openAICompletion, openAIPrompt+openAICompletion))
	}
	return append(events, "data: [DONE]\n\n")
}

// anthropicEvents are the events of the stand-in's Messages stream, as the
// Anthropic API sends them: message_start (with the input tokens), a text
// block of deltas text deltas, message_delta (with the output tokens only),
// message_stop.
func anthropicEvents(model string, deltas int) []string {
	event := func(name, data string) string { return "event: " + name + "\ndata: " + data + "\n\n" }
	events := []string{
		event("message_start", fmt.Sprintf(`{"type":"message_start","message":{"id":"msg_01m","type":"message","role":"assistant","model":%q,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":%d,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}`, model, anthropicPrompt)),
		event("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`),
		event("ping", `{"type": "ping"}`),
	}
	for range deltas {
		events = append(events, event("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"metered "}}`))
	}
	return append(events,
		event("content_block_stop", `{"type":"content_block_stop","index":0}`),
		event("message_delta", fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":%d}}`, anthropicCompletion)),
		event("message_stop", `{"type":"message_stop"}`))
}

// anthropicDeltas is how many text deltas the stand-in streams for a model:
// a long stream puts its message_start far behind the 64 KiB the guard
// keeps of an answer's end.
func anthropicDeltas(model string) int {
	if model == "claude-long" {
		return 2000
	}
	return 3
}

func (b *meteredBackend) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var req struct {
		Model         string `json:"model"`
		Stream        *bool  `json:"stream"`
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	_ = json.Unmarshal(raw, &req)
	streaming := req.Stream != nil && *req.Stream
	flusher := w.(http.Flusher)
	switch r.URL.Path {
	case "/v1/chat/completions":
		if !streaming {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"chatcmpl-m","object":"chat.completion","model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"metered answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`+"\n",
				req.Model, openAIPrompt, openAICompletion, openAIPrompt+openAICompletion)
			return
		}
		var ask streamAsk
		_ = json.Unmarshal(raw, &ask)
		b.mu.Lock()
		b.asks = append(b.asks, ask)
		b.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range openAIEvents(req.StreamOptions != nil && req.StreamOptions.IncludeUsage) {
			io.WriteString(w, ev)
			flusher.Flush()
			time.Sleep(5 * time.Millisecond)
		}
	case "/api/chat":
		final := fmt.Sprintf(`{"model":%q,"created_at":"2030-01-02T03:04:05Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":1000,"prompt_eval_count":%d,"eval_count":%d}`+"\n",
			req.Model, ollamaPrompt, ollamaCompletion)
		if req.Stream != nil && !*req.Stream { // Ollama streams unless told not to
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, final)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		for _, word := range []string{"metered ", "answer"} {
			fmt.Fprintf(w, `{"model":%q,"created_at":"2030-01-02T03:04:05Z","message":{"role":"assistant","content":%q},"done":false}`+"\n", req.Model, word)
			flusher.Flush()
		}
		io.WriteString(w, final)
	case "/v1/messages":
		if !streaming {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"msg_01m","type":"message","role":"assistant","model":%q,"content":[{"type":"text","text":"metered answer"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":%d,"output_tokens":%d}}`+"\n",
				req.Model, anthropicPrompt, anthropicCompletion)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range anthropicEvents(req.Model, anthropicDeltas(req.Model)) {
			io.WriteString(w, ev)
			flusher.Flush()
		}
	case "/v1/embeddings":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, embeddingAnswer)
	default:
		http.NotFound(w, r)
	}
}

func (b *meteredBackend) streamAsks() []streamAsk {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]streamAsk(nil), b.asks...)
}

// usageByModel polls the instance's store until its usage by model is want
// (the meter writes once a second), and fails with what it holds otherwise.
func usageByModel(t *testing.T, in *instance, want map[string]store.UsageRow) {
	t.Helper()
	var got map[string]store.UsageRow
	deadline := time.Now().Add(5 * time.Second)
	for {
		withStore(t, in, func(st store.Store) {
			rows, err := st.QueryUsage(context.Background(), store.UsageQuery{GroupBy: "model"})
			if err != nil {
				t.Fatal(err)
			}
			got = map[string]store.UsageRow{}
			for _, r := range rows {
				got[r.Key] = r
			}
		})
		if maps.Equal(got, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("usage by model:\n got %+v\nwant %+v", got, want)
	}
}

// estimatedRequests reads the estimated count of a model's minutes straight
// from the SQLite file.
func estimatedRequests(t *testing.T, in *instance, model string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(in.dir, "data", "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow(`SELECT COALESCE(SUM(estimated), 0) FROM usage_minutes WHERE model = ?`, model).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMeterCountsWhatBackendsReport: requests through Gatehouse to an
// OpenAI-shaped and an Ollama-shaped backend land in the store's minutes
// with exactly the tokens the backends reported — JSON, SSE (the usage chunk
// asked for by Gatehouse, and dropped from what the client sees), Ollama
// JSON and NDJSON — an answer without usage is estimated and flagged, and a
// refusal counts as denied (spec §8).
func TestMeterCountsWhatBackendsReport(t *testing.T) {
	be := startMeteredBackend(t)
	in := startInstance(t, instanceConfig{upstream: be.addr})
	bobC := activeClient(t, in, bob)
	token := createToken(t, bobC, map[string]any{"name": "metered", "kind": "personal", "models": []string{"llama3*", "mistral", "nomic-embed"}})["token"].(string)
	messages := []map[string]string{{"role": "user", "content": "count me"}}
	post := func(path string, body map[string]any) *response {
		t.Helper()
		return bearer(t, in, "POST", path, token, mustJSON(t, body))
	}

	if r := post("/v1/chat/completions", map[string]any{"model": "llama3", "messages": messages}); r.StatusCode != http.StatusOK ||
		!strings.Contains(r.text(), `"total_tokens":12`) {
		t.Fatalf("JSON chat: %d %s", r.StatusCode, r.body)
	}
	t.Run("a stream the client asked no usage of shows no usage chunk", func(t *testing.T) {
		r := post("/v1/chat/completions", map[string]any{"model": "llama3", "messages": messages, "stream": true})
		if want := strings.Join(openAIEvents(false), ""); r.StatusCode != http.StatusOK || r.text() != want {
			t.Fatalf("client saw %d\n%s\nwant exactly\n%s", r.StatusCode, r.body, want)
		}
		if asks := be.streamAsks(); len(asks) != 1 || string(asks[0].StreamOptions) != `{"include_usage":true}` {
			t.Fatalf("the backend was asked %+v, want stream_options {\"include_usage\":true}", asks)
		}
	})
	t.Run("a stream the client asked usage of shows it", func(t *testing.T) {
		r := post("/v1/chat/completions", map[string]any{"model": "llama3.1:8b", "messages": messages, "stream": true,
			"stream_options": map[string]bool{"include_usage": true}})
		if want := strings.Join(openAIEvents(true), ""); r.StatusCode != http.StatusOK || r.text() != want {
			t.Fatalf("client saw %d\n%s\nwant exactly\n%s", r.StatusCode, r.body, want)
		}
	})
	if r := post("/api/chat", map[string]any{"model": "mistral", "messages": messages}); r.StatusCode != http.StatusOK ||
		strings.Count(r.text(), "\n") != 3 {
		t.Fatalf("Ollama NDJSON chat: %d %s", r.StatusCode, r.body)
	}
	if r := post("/api/chat", map[string]any{"model": "mistral", "messages": messages, "stream": false}); r.StatusCode != http.StatusOK {
		t.Fatalf("Ollama JSON chat: %d %s", r.StatusCode, r.body)
	}
	embedRequest := mustJSON(t, map[string]any{"model": "nomic-embed", "input": "count me"})
	if r := bearer(t, in, "POST", "/v1/embeddings", token, embedRequest); r.StatusCode != http.StatusOK || r.text() != embeddingAnswer {
		t.Fatalf("embeddings: %d %s", r.StatusCode, r.body)
	}
	if r := post("/v1/chat/completions", map[string]any{"model": "gpt-4o", "messages": messages}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("a model the token may not use: %d %s", r.StatusCode, r.body)
	}

	estimatedPrompt, estimatedCompletion := int64(len(embedRequest)+3)/4, int64(len(embeddingAnswer)+3)/4
	usageByModel(t, in, map[string]store.UsageRow{
		"llama3":      {Key: "llama3", Requests: 2, PromptTokens: 2 * openAIPrompt, CompletionTokens: 2 * openAICompletion, TotalTokens: 2 * (openAIPrompt + openAICompletion)},
		"llama3.1:8b": {Key: "llama3.1:8b", Requests: 1, PromptTokens: openAIPrompt, CompletionTokens: openAICompletion, TotalTokens: openAIPrompt + openAICompletion},
		"mistral":     {Key: "mistral", Requests: 2, PromptTokens: 2 * ollamaPrompt, CompletionTokens: 2 * ollamaCompletion, TotalTokens: 2 * (ollamaPrompt + ollamaCompletion)},
		"nomic-embed": {Key: "nomic-embed", Requests: 1, PromptTokens: estimatedPrompt, CompletionTokens: estimatedCompletion, TotalTokens: estimatedPrompt + estimatedCompletion},
		"gpt-4o":      {Key: "gpt-4o", Denied: 1},
	})
	for model, want := range map[string]int64{"nomic-embed": 1, "llama3": 0, "mistral": 0} {
		if n := estimatedRequests(t, in, model); n != want {
			t.Errorf("%s: %d requests flagged estimated, want %d", model, n, want)
		}
	}
}

// TestMeterStreamUsageOff: with meter_stream_usage off the request reaches
// the backend as the client sent it, and its tokens are estimated.
func TestMeterStreamUsageOff(t *testing.T) {
	be := startMeteredBackend(t)
	in := startInstance(t, instanceConfig{upstream: be.addr, guardBlock: "\t\tmeter_stream_usage off"})
	bobC := activeClient(t, in, bob)
	token := createToken(t, bobC, map[string]any{"name": "metered", "kind": "personal"})["token"].(string)
	body := mustJSON(t, map[string]any{"model": "llama3", "messages": []map[string]string{{"role": "user", "content": "hi"}}, "stream": true})
	r := bearer(t, in, "POST", "/v1/chat/completions", token, body)
	want := strings.Join(openAIEvents(false), "")
	if r.StatusCode != http.StatusOK || r.text() != want {
		t.Fatalf("client saw %d\n%s\nwant exactly\n%s", r.StatusCode, r.body, want)
	}
	if asks := be.streamAsks(); len(asks) != 1 || asks[0].StreamOptions != nil {
		t.Fatalf("the backend was asked %+v, want no stream_options", asks)
	}
	prompt, completion := int64(len(body)+3)/4, int64(len(want)+3)/4
	usageByModel(t, in, map[string]store.UsageRow{
		"llama3": {Key: "llama3", Requests: 1, PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion},
	})
	if n := estimatedRequests(t, in, "llama3"); n != 1 {
		t.Errorf("%d requests flagged estimated, want 1", n)
	}
}

// TestMeterCountsAnthropicStreams: an Anthropic Messages stream through
// Gatehouse reaches the client unchanged, and the usage API shows exactly
// the input tokens of its message_start and the output tokens of its
// message_delta, however long the stream (spec §8).
func TestMeterCountsAnthropicStreams(t *testing.T) {
	be := startMeteredBackend(t)
	in := startInstance(t, instanceConfig{upstream: be.addr})
	bobC := activeClient(t, in, bob)
	token := createToken(t, bobC, map[string]any{"name": "metered", "kind": "personal"})["token"].(string)
	messages := []map[string]string{{"role": "user", "content": "count me"}}
	for _, model := range []string{"claude-short", "claude-long"} {
		body := map[string]any{"model": model, "max_tokens": 1024, "messages": messages, "stream": true}
		r := bearer(t, in, "POST", "/v1/messages", token, mustJSON(t, body), "anthropic-version", "2023-06-01")
		if want := strings.Join(anthropicEvents(model, anthropicDeltas(model)), ""); r.StatusCode != http.StatusOK || r.text() != want {
			t.Fatalf("%s stream: the client saw %d, %d bytes; want 200 and exactly the %d bytes the backend sent", model, r.StatusCode, len(r.body), len(want))
		}
	}
	body := map[string]any{"model": "claude-json", "max_tokens": 1024, "messages": messages}
	if r := bearer(t, in, "POST", "/v1/messages", token, mustJSON(t, body), "anthropic-version", "2023-06-01"); r.StatusCode != http.StatusOK {
		t.Fatalf("JSON message: %d %s", r.StatusCode, r.body)
	}

	want := map[string]string{}
	for _, model := range []string{"claude-short", "claude-long", "claude-json"} {
		want[model] = fmt.Sprintf("requests 1, tokens %d+%d=%d", anthropicPrompt, anthropicCompletion, anthropicPrompt+anthropicCompletion)
	}
	waitFor(t, 5*time.Second, "the Anthropic tokens in GET /api/usage?group_by=model", func() string {
		resp := bobC.get("/api/usage?group_by=model")
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("%d %s", resp.StatusCode, resp.body)
		}
		var page struct {
			Rows []struct {
				Key              string `json:"key"`
				Requests         int64  `json:"requests"`
				PromptTokens     int64  `json:"prompt_tokens"`
				CompletionTokens int64  `json:"completion_tokens"`
				TotalTokens      int64  `json:"total_tokens"`
			} `json:"rows"`
		}
		if err := json.Unmarshal(resp.body, &page); err != nil {
			return err.Error()
		}
		got := map[string]string{}
		for _, row := range page.Rows {
			got[row.Key] = fmt.Sprintf("requests %d, tokens %d+%d=%d", row.Requests, row.PromptTokens, row.CompletionTokens, row.TotalTokens)
		}
		if !maps.Equal(got, want) {
			return fmt.Sprintf("got %v, want %v", got, want)
		}
		return ""
	})
	if n := estimatedRequests(t, in, "claude-long"); n != 0 {
		t.Errorf("claude-long: %d requests flagged estimated, want 0", n)
	}
}
