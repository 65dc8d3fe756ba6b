package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/keys"
	"github.com/gatehouse/gatehouse/store"
)

// TestInteropOfficialSDKs calls Gatehouse through the official openai and
// ollama npm clients, as a developer with a Gatehouse token would, and checks
// what each SDK hands back — results, and for refusals the status, code and
// message the SDK's error shows (spec §6a). Every call runs in one Node
// process; the subtests read its results.
func TestInteropOfficialSDKs(t *testing.T) {
	requireNode(t)
	in := startInstance(t, instanceConfig{upstream: startModelBackend(t)})
	bobC := activeClient(t, in, bob)

	// Bob's laptop token may use the llama3 family only.
	laptop := createToken(t, bobC, map[string]any{"name": "laptop", "kind": "personal", "models": []string{"llama3*"}})["token"].(string)
	revoked := createToken(t, bobC, map[string]any{"name": "lost phone", "kind": "personal"})
	if r := bobC.do("DELETE", "/api/tokens/"+revoked["id"].(string), nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("revoking the token: %d %s", r.StatusCode, r.body)
	}
	expired := expiredCopy(t, in, laptop)

	// What Gatehouse says, read without an SDK: each SDK must show it.
	refusalDetail := func(path, token string, body any) string {
		t.Helper()
		resp := bearer(t, in, "POST", path, token, body)
		var p struct{ Detail string }
		if err := json.Unmarshal(resp.body, &p); err != nil || p.Detail == "" {
			t.Fatalf("POST %s: %d %s: no problem detail", path, resp.StatusCode, resp.body)
		}
		return p.Detail
	}
	chat := func(model string) map[string]any {
		return map[string]any{"model": model, "messages": []any{map[string]string{"role": "user", "content": "hi"}}}
	}
	modelRefusal := refusalDetail("/v1/chat/completions", laptop, chat("gpt-4o"))
	ollamaRefusal := refusalDetail("/api/chat", laptop, chat("gpt-4o"))
	tokenRefusal := refusalDetail("/v1/chat/completions", "not-a-token", chat("llama3"))

	openai := func(id, op, token, model string) clientCall {
		return clientCall{ID: id, SDK: "openai", Op: op, BaseURL: in.URL, Token: token, Model: model, Input: "hello there"}
	}
	ollama := func(id, op, token, model string) clientCall {
		return clientCall{ID: id, SDK: "ollama", Op: op, BaseURL: in.URL, Token: token, Model: model, Input: "hello there"}
	}
	res := runClients(t, []clientCall{
		openai("models", "models.list", laptop, ""),
		openai("chat", "chat", laptop, "llama3"),
		openai("stream", "chat.stream", laptop, "llama3.1:8b"),
		openai("stream usage", "chat.stream_usage", laptop, "llama3"),
		openai("embeddings", "embeddings", laptop, "llama3"),
		openai("disallowed", "chat", laptop, "gpt-4o"),
		openai("revoked", "chat", revoked["token"].(string), "llama3"),
		openai("expired", "models.list", expired, ""),
		ollama("ollama chat", "chat", laptop, "llama3"),
		ollama("ollama tags", "list", laptop, ""),
		ollama("ollama disallowed", "chat", laptop, "gpt-4o"),
	})
	reply := `You said "hello there" as ` + bob
	ok := func(t *testing.T, id string) clientResult {
		t.Helper()
		r := res[id]
		if !r.OK {
			t.Fatalf("the SDK raised %s: status %d, code %q, message %q", r.Name, r.Status, r.Code, r.Message)
		}
		return r
	}
	// sdkError checks the error the openai SDK raised: its status, its code
	// and a message that carries Gatehouse's.
	sdkError := func(t *testing.T, id string, status int, code, message string) {
		t.Helper()
		r := res[id]
		if r.OK {
			t.Fatalf("the SDK returned a result, want a %d error", status)
		}
		if r.Status != status || r.Code != code || !strings.Contains(r.Message, message) {
			t.Errorf("the SDK's %s shows status %d, code %q, message %q;\nwant status %d, code %q, a message with Gatehouse's %q",
				r.Name, r.Status, r.Code, r.Message, status, code, message)
		}
	}

	t.Run("openai models.list shows only the models the token may use", func(t *testing.T) {
		if got, want := ok(t, "models").IDs, []string{"llama3", "llama3.1:8b"}; !slices.Equal(got, want) {
			t.Errorf("models.list = %v, want %v", got, want)
		}
	})
	t.Run("openai chat completion reaches the backend as the token's user", func(t *testing.T) {
		if r := ok(t, "chat"); r.Content != reply || r.Model != "llama3" {
			t.Errorf("chat = %q from %q, want %q from llama3", r.Content, r.Model, reply)
		}
	})
	// The stand-in sends a role chunk, one per word and a finish chunk, and
	// the usage chunk only when asked for it.
	backendChunks := len(strings.SplitAfter(reply, " ")) + 2
	t.Run("openai streaming chat arrives in chunks", func(t *testing.T) {
		r := ok(t, "stream")
		if r.Content != reply || len(r.Deltas) < 3 {
			t.Errorf("stream = %q in %d chunks, want %q in several", r.Content, len(r.Deltas), reply)
		}
	})
	t.Run("openai streaming chat shows exactly the chunks asked for, without the usage Gatehouse metered", func(t *testing.T) {
		if r := ok(t, "stream"); r.Chunks != backendChunks || r.Usage != nil {
			t.Errorf("the SDK yielded %d chunks (usage %+v), want the backend's %d and no usage", r.Chunks, r.Usage, backendChunks)
		}
	})
	t.Run("openai streaming chat with include_usage shows the usage chunk", func(t *testing.T) {
		r := ok(t, "stream usage")
		want := sdkUsage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}
		if r.Content != reply || r.Chunks != backendChunks+1 || r.Usage == nil || *r.Usage != want {
			t.Errorf("the SDK yielded %q in %d chunks with usage %+v, want %q in %d with %+v", r.Content, r.Chunks, r.Usage, reply, backendChunks+1, want)
		}
	})
	t.Run("openai embeddings decode to the backend's vector", func(t *testing.T) {
		r := ok(t, "embeddings")
		want := []float64{0.25, -0.5, 1, 0.125}
		if !slices.Equal(r.Embedding, want) {
			t.Errorf("embedding = %v, want %v", r.Embedding, want)
		}
	})
	t.Run("openai disallowed model shows Gatehouse's code and message", func(t *testing.T) {
		sdkError(t, "disallowed", http.StatusForbidden, "model_not_allowed", modelRefusal)
		if r := res["disallowed"]; r.Param != "model" {
			t.Errorf("the SDK's error names param %q, want model", r.Param)
		}
	})
	t.Run("openai revoked token is invalid_token", func(t *testing.T) {
		sdkError(t, "revoked", http.StatusUnauthorized, "invalid_token", tokenRefusal)
	})
	t.Run("openai expired token is invalid_token", func(t *testing.T) {
		sdkError(t, "expired", http.StatusUnauthorized, "invalid_token", tokenRefusal)
	})
	t.Run("ollama chat reaches the backend", func(t *testing.T) {
		if r := ok(t, "ollama chat"); r.Content != reply {
			t.Errorf("chat = %q, want %q", r.Content, reply)
		}
	})
	t.Run("ollama list shows only the models the token may use", func(t *testing.T) {
		if got, want := ok(t, "ollama tags").Names, []string{"llama3", "llama3.1:8b"}; !slices.Equal(got, want) {
			t.Errorf("list = %v, want %v", got, want)
		}
	})
	t.Run("ollama refusal shows Gatehouse's message", func(t *testing.T) {
		r := res["ollama disallowed"]
		if r.OK {
			t.Fatal("the client returned a result, want a 403 error")
		}
		var shown string
		_ = json.Unmarshal(r.Error, &shown)
		if r.Status != http.StatusForbidden || shown != ollamaRefusal {
			t.Errorf("the ollama client's %s shows status %d, error %q;\nwant 403 and Gatehouse's message %q", r.Name, r.Status, shown, ollamaRefusal)
		}
	})
}

// expiredCopy returns token as Gatehouse issued it, re-signed with
// Gatehouse's own key with a lifetime that ended an hour ago (beyond any
// clock skew), as the token would be once its time ran out.
func expiredCopy(t *testing.T, in *instance, token string) string {
	t.Helper()
	claims := decodeSegment(t, token, 1)
	past := time.Now().Add(-2 * time.Hour)
	claims["iat"], claims["nbf"], claims["exp"] = past.Unix(), past.Unix(), past.Add(time.Hour).Unix()
	var ring *keys.Ring
	withStore(t, in, func(st store.Store) {
		secret, _, err := keys.LoadOrCreateSecretFile(filepath.Join(in.dir, "data", "gatehouse.key"))
		if err != nil {
			t.Fatal(err)
		}
		ring, err = keys.NewRing(context.Background(), st, secret.Sealer(keys.SigningKeyPurpose), keys.RingConfig{}, time.Now)
		if err != nil {
			t.Fatal(err)
		}
	})
	signed, err := ring.Sign(claims, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}
	return signed
}
