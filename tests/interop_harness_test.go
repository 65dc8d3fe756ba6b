package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The interop suite (issue 10) runs Gatehouse against software nobody here
// wrote: panva's certified oidc-provider as the IdP, the official openai and
// ollama npm clients, and panva's jose as a backend verifying what Gatehouse
// signs. The Node side lives in tests/interop (pinned by its lockfile); this
// file starts it and the stand-in model backend.

const interopDir = "interop"

var (
	interopInstall    sync.Once
	interopInstallErr error
)

// requireNode makes sure node and npm are there and tests/interop's packages
// are installed (npm ci, once, when node_modules is missing or older than the
// lockfile). Without them the test skips, except in CI, where a missing
// toolchain must not turn the interop suite into a silent pass.
func requireNode(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required in CI for the interop suite: %v (apt-get install -y nodejs npm)", tool, err)
			}
			t.Skipf("%s is not installed (apt-get install -y nodejs npm); skipping the interop test", tool)
		}
	}
	interopInstall.Do(func() {
		if interopInstallErr = checkNodeVersion(); interopInstallErr != nil {
			return
		}
		if !interopDepsInstalled() {
			cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
			cmd.Dir = interopDir
			out, err := cmd.CombinedOutput()
			if err != nil {
				interopInstallErr = fmt.Errorf("npm ci in tests/interop: %v\n%s", err, out)
			}
		}
	})
	if interopInstallErr != nil {
		t.Fatal(interopInstallErr)
	}
}

// minNode is the oldest Node.js the pinned packages run on (package.json's
// engines): jose 6 needs the Web Crypto global, which Node 18 lacks.
var minNode = [2]int{20, 19}

func checkNodeVersion() error {
	out, err := exec.Command("node", "-p", "process.versions.node").Output()
	if err != nil {
		return fmt.Errorf("node -p process.versions.node: %w", err)
	}
	var major, minor int
	version := strings.TrimSpace(string(out))
	if _, err := fmt.Sscanf(version, "%d.%d", &major, &minor); err != nil {
		return fmt.Errorf("node version %q: %w", version, err)
	}
	if major < minNode[0] || major == minNode[0] && minor < minNode[1] {
		return fmt.Errorf("the interop suite needs Node.js %d.%d or later (tests/interop/package.json engines); this is %s", minNode[0], minNode[1], version)
	}
	return nil
}

// interopDepsInstalled reports whether node_modules matches the lockfile as
// far as npm's own record of the install tells.
func interopDepsInstalled() bool {
	installed, err := os.Stat(filepath.Join(interopDir, "node_modules", ".package-lock.json"))
	if err != nil {
		return false
	}
	lock, err := os.Stat(filepath.Join(interopDir, "package-lock.json"))
	return err == nil && !installed.ModTime().Before(lock.ModTime())
}

// nodeScript is a command running one of tests/interop's scripts.
func nodeScript(ctx context.Context, script string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = interopDir
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// clientCall is one call made through an official SDK by clients.mjs.
type clientCall struct {
	ID      string `json:"id"`
	SDK     string `json:"sdk"` // openai | ollama
	Op      string `json:"op"`
	BaseURL string `json:"base_url"`
	Token   string `json:"token"`
	Model   string `json:"model,omitempty"`
	Input   string `json:"input,omitempty"`
}

// clientResult is what the SDK returned, or the error it raised as the SDK
// shows it to the developer.
type clientResult struct {
	OK        bool      `json:"ok"`
	IDs       []string  `json:"ids"`       // openai models.list
	Names     []string  `json:"names"`     // ollama list
	Model     string    `json:"model"`     // chat, embeddings
	Content   string    `json:"content"`   // chat
	Deltas    []string  `json:"deltas"`    // openai chat.stream, chat.stream_usage
	Chunks    int       `json:"chunks"`    // openai chat.stream, chat.stream_usage: every chunk the SDK yielded
	Usage     *sdkUsage `json:"usage"`     // openai chat.stream, chat.stream_usage: a chunk's usage
	Embedding []float64 `json:"embedding"` // openai embeddings

	Name    string          `json:"name"`   // the error's class
	Status  int             `json:"status"` // openai status, ollama status_code
	Code    string          `json:"code"`
	Type    string          `json:"type"`
	Param   string          `json:"param"`
	Message string          `json:"message"`
	Error   json.RawMessage `json:"error"` // openai: the error object; ollama: the message
}

// sdkUsage is OpenAI's usage object as the SDK hands it over.
type sdkUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// streamOptions is what a streaming chat request asks of the stream.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// runClients makes every call in one Node process and returns the results by id.
func runClients(t *testing.T, calls []clientCall) map[string]clientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	input, err := json.Marshal(map[string]any{"calls": calls})
	if err != nil {
		t.Fatal(err)
	}
	cmd := nodeScript(ctx, "clients.mjs")
	cmd.Stdin = bytes.NewReader(input)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node clients.mjs: %v\nstderr:\n%s", err, stderr.String())
	}
	results := map[string]clientResult{}
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
		t.Fatalf("clients.mjs printed no JSON: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	for _, c := range calls {
		if _, ok := results[c.ID]; !ok {
			t.Fatalf("clients.mjs has no result for %s; stderr:\n%s", c.ID, stderr.String())
		}
	}
	return results
}

// oidcProvider is oidc-provider running as the organisation's IdP.
type oidcProvider struct {
	Issuer string
	admin  string
	kid    string // the signing key it publishes now
	logs   *syncBuffer
}

// reserveIssuer picks the port the IdP will listen on, so that Gatehouse can
// be configured with its issuer before the IdP, which needs Gatehouse's
// redirect URIs, starts. Gatehouse discovers the IdP on first use.
func reserveIssuer(t *testing.T) (port int, issuer string) {
	port = freePort(t)
	return port, fmt.Sprintf("http://127.0.0.1:%d", port)
}

// startOIDCProvider starts idp.mjs on port with the client gatehouse/secret
// registered for gh's callback and post-logout page (more idp.mjs options in
// args); it stops when the test ends.
func startOIDCProvider(t *testing.T, port int, secret string, gh *instance, args ...string) *oidcProvider {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &oidcProvider{logs: new(syncBuffer)}
	cmd := nodeScript(ctx, "idp.mjs", append([]string{
		"--port", fmt.Sprint(port),
		"--admin-port", fmt.Sprint(freePort(t)),
		"--client-id", "gatehouse",
		"--client-secret", secret,
		"--redirect-uri", gh.URL + "/api/auth/callback",
		"--post-logout-redirect-uri", gh.URL + "/",
	}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.Stderr = p.logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("oidc-provider logs:\n%s", p.logs.String())
		}
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadBytes('\n')
		if err != nil {
			ready <- fmt.Errorf("reading its first line: %w", err)
			return
		}
		var hello struct{ Issuer, Admin, Kid string }
		if err := json.Unmarshal(line, &hello); err != nil {
			ready <- fmt.Errorf("first line %q: %w", line, err)
			return
		}
		p.Issuer, p.admin, p.kid = hello.Issuer, hello.Admin, hello.Kid
		ready <- nil
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("oidc-provider did not start: %v\n%s", err, p.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("oidc-provider did not start within 20s:\n%s", p.logs.String())
	}
	return p
}

// rotateKeys has the IdP replace its signing key; the old key leaves its JWKS.
func (p *oidcProvider) rotateKeys(t *testing.T) {
	t.Helper()
	resp, err := insecureClient.Post(p.admin+"/rotate", "application/json", nil)
	if err != nil {
		t.Fatalf("rotating the IdP's keys: %v", err)
	}
	defer resp.Body.Close()
	var out struct{ Kid, Retired string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Kid == "" {
		t.Fatalf("rotating the IdP's keys: status %d, %v", resp.StatusCode, err)
	}
	if out.Retired != p.kid {
		t.Fatalf("the IdP retired key %s, want %s", out.Retired, p.kid)
	}
	p.kid = out.Kid
}

// syncBuffer is a bytes.Buffer that a process may write while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startModelBackend serves a stand-in that answers like the servers users
// put behind Gatehouse — OpenAI's API (models, chat plain and streaming,
// embeddings in both encodings) and Ollama's (/api/chat, /api/tags) — plus a
// home page for browsers and /whoami, which shows what Gatehouse passed on.
// It returns the address for reverse_proxy.
func startModelBackend(t *testing.T) string {
	t.Helper()
	return listen(t, http.HandlerFunc(serveModelBackend))
}

// backendReply is what the stand-in answers to a chat: the last message,
// and who Gatehouse said was asking.
func backendReply(r *http.Request, prompt string) string {
	return fmt.Sprintf("You said %q as %s", prompt, r.Header.Get("X-Gatehouse-User-Email"))
}

// backendEmbedding is exact in float32, so the base64 encoding decodes to it.
var backendEmbedding = []float32{0.25, -0.5, 1, 0.125}

func serveModelBackend(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Model          string         `json:"model"`
		Stream         *bool          `json:"stream"`
		StreamOptions  *streamOptions `json:"stream_options"`
		EncodingFormat string         `json:"encoding_format"`
		Messages       []struct {
			Content string `json:"content"`
		} `json:"messages"`
	}
	if r.Method == http.MethodPost {
		_ = json.NewDecoder(r.Body).Decode(&body)
	}
	prompt := ""
	if n := len(body.Messages); n > 0 {
		prompt = body.Messages[n-1].Content
	}
	writeJSON := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	created := time.Now().Unix()
	switch r.Method + " " + r.URL.Path {
	case "GET /":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>Stand-in model backend</title><h1>Stand-in model backend</h1><p id=\"who\">You reached the backend as %s (%s).</p>",
			html.EscapeString(r.Header.Get("X-Gatehouse-User-Email")), html.EscapeString(r.Header.Get("X-Gatehouse-Role")))
	case "GET /whoami":
		writeJSON(map[string]string{
			"email":     r.Header.Get("X-Gatehouse-User-Email"),
			"role":      r.Header.Get("X-Gatehouse-Role"),
			"assertion": r.Header.Get("X-Gatehouse-Assertion"),
		})
	case "GET /v1/models":
		var data []map[string]any
		for _, id := range backendModels {
			data = append(data, map[string]any{"id": id, "object": "model", "created": created, "owned_by": "stand-in"})
		}
		writeJSON(map[string]any{"object": "list", "data": data})
	case "POST /v1/chat/completions":
		reply := backendReply(r, prompt)
		if body.Stream == nil || !*body.Stream {
			writeJSON(map[string]any{
				"id": "chatcmpl-standin", "object": "chat.completion", "created": created, "model": body.Model,
				"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
					"message": map[string]any{"role": "assistant", "content": reply}}},
				"usage": map[string]int{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
			})
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		flusher := w.(http.Flusher)
		chunk := func(delta map[string]any, finish any) {
			data, _ := json.Marshal(map[string]any{
				"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": created, "model": body.Model,
				"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
			})
			fmt.Fprintf(w, "data: %s\n\n", data)
			flusher.Flush()
		}
		chunk(map[string]any{"role": "assistant", "content": ""}, nil)
		for _, word := range strings.SplitAfter(reply, " ") {
			chunk(map[string]any{"content": word}, nil)
			time.Sleep(20 * time.Millisecond)
		}
		chunk(map[string]any{}, "stop")
		if body.StreamOptions != nil && body.StreamOptions.IncludeUsage {
			// As OpenAI does: one more chunk, with no choices.
			data, _ := json.Marshal(map[string]any{
				"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": created, "model": body.Model,
				"choices": []any{}, "usage": map[string]int{"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
			})
			fmt.Fprintf(w, "data: %s\n\n", data)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
		flusher.Flush()
	case "POST /v1/embeddings":
		var embedding any = backendEmbedding
		if body.EncodingFormat == "base64" {
			raw := make([]byte, 4*len(backendEmbedding))
			for i, f := range backendEmbedding {
				binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
			}
			embedding = base64.StdEncoding.EncodeToString(raw)
		}
		writeJSON(map[string]any{
			"object": "list", "model": body.Model,
			"data":  []any{map[string]any{"object": "embedding", "index": 0, "embedding": embedding}},
			"usage": map[string]int{"prompt_tokens": 1, "total_tokens": 1},
		})
	case "POST /api/chat":
		msg := map[string]any{
			"model": body.Model, "created_at": time.Now().UTC().Format(time.RFC3339Nano),
			"message": map[string]string{"role": "assistant", "content": backendReply(r, prompt)},
			"done":    true, "done_reason": "stop",
		}
		if body.Stream == nil || *body.Stream {
			w.Header().Set("Content-Type", "application/x-ndjson")
		} else {
			w.Header().Set("Content-Type", "application/json")
		}
		_ = json.NewEncoder(w).Encode(msg)
	case "GET /api/tags":
		var models []map[string]any
		for _, id := range backendModels {
			models = append(models, map[string]any{"name": id, "model": id, "size": 1, "digest": "sha256:standin",
				"modified_at": time.Now().UTC().Format(time.RFC3339), "details": map[string]any{"format": "gguf", "family": "standin"}})
		}
		writeJSON(map[string]any{"models": models})
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"message": "the stand-in has no " + r.Method + " " + r.URL.Path}})
	}
}
