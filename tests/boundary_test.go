package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The attacks of spec §6a, each sent through a real Caddy with Gatehouse in
// front of a backend that parses the way the named real server does. Every
// test asserts what the backend acted on, not only what the client saw.

// boundaryTokens are alice's admin token and three of bob's: one limited to
// llama3*, one whose scope is only system:access, and one limited to
// mistral that may use models but not chat.
type boundaryTokens struct {
	admin, llama, systemOnly, mistralModelsOnly string
}

func newBoundaryTokens(t *testing.T, in *instance) boundaryTokens {
	t.Helper()
	bobC := activeClient(t, in, bob)
	aliceC := in.newClient()
	aliceC.signIn(alice, "")
	return boundaryTokens{
		admin:      createToken(t, aliceC, map[string]any{"name": "admin", "kind": "personal"})["token"].(string),
		llama:      createToken(t, bobC, map[string]any{"name": "llama only", "kind": "personal", "models": []string{"llama3*"}})["token"].(string),
		systemOnly: createToken(t, bobC, map[string]any{"name": "system only", "kind": "personal", "permissions": []string{"system:access"}})["token"].(string),
		mistralModelsOnly: createToken(t, bobC, map[string]any{"name": "models only", "kind": "personal",
			"permissions": []string{"models:use"}, "models": []string{"mistral"}})["token"].(string),
	}
}

// expectIdentity checks that an allowed request reached the backend with
// every identity header and an assertion that verifies against the JWKS.
func expectIdentity(t *testing.T, in *instance, s served, email, role string) {
	t.Helper()
	for _, h := range []string{"X-Gatehouse-User-Id", "X-Gatehouse-User-Email", "X-Gatehouse-Role", "X-Gatehouse-Assertion"} {
		if s.Header.Get(h) == "" {
			t.Fatalf("%s %s reached the backend without %s: %v", s.Method, s.Path, h, s.Header)
		}
	}
	if got := s.Header.Get("X-Gatehouse-User-Email"); got != email {
		t.Fatalf("backend saw email %q, want %q", got, email)
	}
	verifyAssertion(t, in, s.Header.Get("X-Gatehouse-Assertion"), s.Header.Get("X-Gatehouse-User-Id"), email, role)
}

// TestH2CUpgradeCannotSmuggleRequests: a backend that upgrades on
// "Upgrade: h2c" and then serves HTTP/2 on the connection must never get the
// upgrade, or every later stream would skip the guard (item 1 of issue 7).
func TestH2CUpgradeCannotSmuggleRequests(t *testing.T) {
	be := &h2cBackend{}
	in := startInstance(t, instanceConfig{upstream: listen(t, be)})
	tok := newBoundaryTokens(t, in)
	host := strings.TrimPrefix(in.URL, "http://")

	t.Run("h2c upgrade on an allowed request", func(t *testing.T) {
		be.reset()
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /hello HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
			"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n", host, tok.llama)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// What the old guard let happen: streams on the upgraded
			// connection carry no credentials and forge the identity.
			smuggleHTTP2(t, &bufferedConn{Conn: conn, r: br}, host)
		} else {
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":"upgrade_not_allowed"`) {
				t.Errorf("status %d %s, want 400 upgrade_not_allowed", resp.StatusCode, body)
			}
		}
		for _, s := range be.all() {
			t.Errorf("the backend acted on %s %s over %s (model %q, role header %q)", s.Method, s.Path, s.Proto, s.Model, s.Header.Get("X-Gatehouse-Role"))
		}
	})

	t.Run("every upgrade but a websocket GET is refused", func(t *testing.T) {
		be.reset()
		for _, tc := range []struct{ method, headers string }{
			{"GET", "Connection: Upgrade\r\nUpgrade: h2c\r\n"},
			{"GET", "Upgrade: h2c\r\n"}, // h11 upgrades without Connection: Upgrade
			{"GET", "Connection: Upgrade\r\nUpgrade: TLS/1.2\r\n"},
			{"GET", "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n"},
			{"GET", "Connection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n"},
			{"POST", "Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n"},
		} {
			status, body := rawRequest(t, in, fmt.Sprintf("%s /hello HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n%sConnection: close\r\n\r\n",
				tc.method, host, tok.llama, tc.headers))
			if status != http.StatusBadRequest || !strings.Contains(body, `"code":"upgrade_not_allowed"`) {
				t.Errorf("%s with %q: status %d %s, want 400 upgrade_not_allowed", tc.method, tc.headers, status, body)
			}
		}
		status, body := rawRequest(t, in, fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", in.cfg.upstream, host, tok.admin))
		if status != http.StatusBadRequest || !strings.Contains(body, `"code":"upgrade_not_allowed"`) {
			t.Errorf("CONNECT: status %d %s, want 400 upgrade_not_allowed", status, body)
		}
		for _, s := range be.all() {
			t.Errorf("the backend acted on %s %s over %s", s.Method, s.Path, s.Proto)
		}
	})

	t.Run("HTTP2-Settings never reaches the backend", func(t *testing.T) {
		be.reset()
		resp := bearer(t, in, "GET", "/hello", tok.llama, nil, "HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", resp.StatusCode, resp.body)
		}
		got := be.all()
		if len(got) != 1 || got[0].Header.Get("HTTP2-Settings") != "" {
			t.Fatalf("backend saw %+v, want one request without HTTP2-Settings", got)
		}
	})
}

// smuggleHTTP2 speaks HTTP/2 on an upgraded connection: a chat request for a
// model the token may not use, with no credentials and a forged role.
func smuggleHTTP2(t *testing.T, conn net.Conn, host string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":authority", host}, {":path", "/v1/chat/completions"},
		{"content-type", "application/json"}, {"x-gatehouse-role", "admin"},
	} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hdr.Bytes(), EndHeaders: true})
	fr.WriteData(3, true, []byte(`{"model":"gpt-4"}`))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			if f.StreamID == 3 && f.StreamEnded() {
				return
			}
		case *http2.GoAwayFrame:
			return
		}
	}
}

// TestCaseInsensitiveBackendGetsNoMoreThanAllowed: behind an Express-style
// router, the path's case or spelling never changes what the policy decided
// on (item 2 of issue 7).
func TestCaseInsensitiveBackendGetsNoMoreThanAllowed(t *testing.T) {
	be := &expressBackend{}
	in := startInstance(t, instanceConfig{
		upstream:    listen(t, be),
		extraGlobal: "\t\tpolicy no_admin.rego",
		files: map[string]string{"no_admin.rego": `package gatehouse.ext

# As the README shows: compare the folded path, which holds for /ADMIN and /%61dmin.
deny contains "the admin area is closed" if {
	input.request.path_folded == "/admin"
}
`},
	})
	tok := newBoundaryTokens(t, in)
	host := strings.TrimPrefix(in.URL, "http://")

	refusals := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"upper-case chat path, forbidden model", "POST", "/V1/CHAT/COMPLETIONS", tok.llama, `{"model":"gpt-4"}`, 403, "model_not_allowed"},
		{"mixed-case chat path, forbidden model", "POST", "/v1/Chat/Completions/", tok.llama, `{"model":"gpt-4"}`, 403, "model_not_allowed"},
		{"upper-case chat path with only system:access", "POST", "/V1/CHAT/COMPLETIONS", tok.systemOnly, `{"model":"llama3"}`, 403, "forbidden"},
		{"chat without chat:use", "POST", "/V1/chat/completions", tok.mistralModelsOnly, `{"model":"mistral"}`, 403, "forbidden"},
		{"upper-case embeddings, forbidden model", "POST", "/V1/EMBEDDINGS", tok.llama, `{"model":"gpt-4"}`, 403, "model_not_allowed"},
		{"extension rule in capitals", "GET", "/ADMIN", tok.admin, "", 403, "forbidden"},
		{"extension rule percent-encoded", "GET", "/%61dmin", tok.admin, "", 403, "forbidden"},
		{"extension rule with a trailing slash", "GET", "/Admin/", tok.admin, "", 403, "forbidden"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			be.reset()
			var body any
			if tc.body != "" {
				body = tc.body
			}
			expectProblem(t, bearer(t, in, tc.method, tc.path, tc.token, body), tc.status, tc.code)
			for _, s := range be.all() {
				t.Errorf("the backend acted on %s %s (model %q)", s.Method, s.Path, s.Model)
			}
		})
	}

	t.Run("upper-case listing is filtered", func(t *testing.T) {
		be.reset()
		resp := bearer(t, in, "GET", "/V1/MODELS", tok.llama, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", resp.StatusCode, resp.body)
		}
		if got := listedModels(t, resp); got != "llama3,llama3.1:8b" {
			t.Fatalf("listed %s, want only the llama3 models", got)
		}
	})

	t.Run("allowed request reaches the backend with the identity", func(t *testing.T) {
		be.reset()
		resp := bearer(t, in, "POST", "/V1/Chat/Completions", tok.llama, `{"model":"llama3"}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", resp.StatusCode, resp.body)
		}
		got := be.all()
		if len(got) != 1 || got[0].Model != "llama3" {
			t.Fatalf("backend served %+v, want llama3 once", got)
		}
		expectIdentity(t, in, got[0], bob, "user")
	})

	// Sent byte for byte: clients would fix the method's case or escape a
	// backslash before it left.
	ambiguous := []struct{ name, requestLine string }{
		{"lower-case method", "post /v1/chat/completions HTTP/1.1"},
		{"unknown method", "BREW /v1/chat/completions HTTP/1.1"},
		{"semicolon parameter", "POST /v1/chat/completions;x HTTP/1.1"},
		{"semicolon in a segment", "GET /admin;/x HTTP/1.1"},
		{"encoded dot segment", "GET /x/%2e%2e/admin HTTP/1.1"},
		{"encoded dot", "POST /v1/chat/completions/%2e HTTP/1.1"},
		{"trailing dot", "GET /admin. HTTP/1.1"},
		{"trailing encoded space", "GET /admin%20 HTTP/1.1"},
		{"backslash", "GET /x\\..\\admin HTTP/1.1"},
		{"encoded backslash", "POST /v1%5cchat/completions HTTP/1.1"},
		{"encoded slash", "POST /v1%2Fchat%2Fcompletions HTTP/1.1"},
		{"NUL", "GET /admin%00 HTTP/1.1"},
		{"double encoding", "GET /%2561dmin HTTP/1.1"},
	}
	for _, tc := range ambiguous {
		t.Run("ambiguous: "+tc.name, func(t *testing.T) {
			be.reset()
			body := `{"model":"gpt-4"}`
			status, resp := rawRequest(t, in, fmt.Sprintf("%s\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
				tc.requestLine, host, tok.llama, len(body), body))
			if status != http.StatusBadRequest || !strings.Contains(resp, `"code":"ambiguous_request"`) {
				t.Errorf("%q: status %d %s, want 400 ambiguous_request", tc.requestLine, status, resp)
			}
			for _, s := range be.all() {
				t.Errorf("the backend acted on %s %s (model %q)", s.Method, s.Path, s.Model)
			}
		})
	}
}

// TestAmbiguousPathsCanBeAllowed: allow_ambiguous_paths passes them, still
// classified on the folded path.
func TestAmbiguousPathsCanBeAllowed(t *testing.T) {
	be := &expressBackend{}
	in := startInstance(t, instanceConfig{upstream: listen(t, be), guardBlock: "\t\tallow_ambiguous_paths"})
	tok := newBoundaryTokens(t, in)
	host := strings.TrimPrefix(in.URL, "http://")
	body := `{"model":"gpt-4"}`
	send := func(requestLine, body string) (int, string) {
		return rawRequest(t, in, fmt.Sprintf("%s\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			requestLine, host, tok.llama, len(body), body))
	}
	if status, resp := send("post /V1/chat/completions HTTP/1.1", body); status != http.StatusForbidden || !strings.Contains(resp, "model_not_allowed") {
		t.Errorf("lower-case method, forbidden model: status %d %s, want 403 model_not_allowed", status, resp)
	}
	if status, resp := send("GET /v1/models;x HTTP/1.1", ""); status != http.StatusNotFound {
		t.Errorf("semicolon path: status %d %s, want it passed (the backend answers 404)", status, resp)
	}
	if len(be.all()) != 0 {
		t.Errorf("backend acted on %+v", be.all())
	}
}

// TestModelKeysAsGoDecodesThem: a backend decoding with encoding/json (Ollama)
// reads "Model", "MODEL" and "\u004dODEL" as the model, and "name" on its
// routes (item 3 of issue 7, and Ollama's routes of item 5).
func TestModelKeysAsGoDecodesThem(t *testing.T) {
	be := &ollamaBackend{}
	in := startInstance(t, instanceConfig{upstream: listen(t, be)})
	tok := newBoundaryTokens(t, in)
	cases := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"two cases of model", "POST", "/api/chat", tok.llama, `{"model":"llama3","Model":"gpt-4"}`, 400, "ambiguous_model"},
		{"upper-case model", "POST", "/api/chat", tok.llama, `{"model":"llama3","MODEL":"gpt-4"}`, 400, "ambiguous_model"},
		{"escaped upper-case model", "POST", "/api/generate", tok.llama, `{"model":"llama3","\u004dODEL":"gpt-4"}`, 400, "ambiguous_model"},
		{"only a capitalised model", "POST", "/api/chat", tok.llama, `{"Model":"gpt-4"}`, 403, "model_not_allowed"},
		{"name disagreeing with model", "POST", "/api/generate", tok.llama, `{"model":"llama3","name":"gpt-4"}`, 400, "ambiguous_model"},
		{"name alone", "POST", "/api/show", tok.llama, `{"name":"gpt-4"}`, 403, "model_not_allowed"},
		{"show", "POST", "/api/show", tok.llama, `{"model":"gpt-4"}`, 403, "model_not_allowed"},
		{"old embeddings route", "POST", "/api/embeddings", tok.llama, `{"model":"gpt-4","prompt":"x"}`, 403, "model_not_allowed"},
		{"an empty model", "POST", "/api/chat", tok.llama, `{"model":""}`, 400, "model_required"},
		{"OpenAI route on Ollama, two cases", "POST", "/v1/chat/completions", tok.llama, `{"model":"llama3","Model":"gpt-4"}`, 400, "ambiguous_model"},
		{"a user cannot pull", "POST", "/api/pull", tok.llama, `{"model":"llama3"}`, 403, "forbidden"},
		{"a user cannot push", "POST", "/api/push", tok.llama, `{"model":"llama3"}`, 403, "forbidden"},
		{"a user cannot create", "POST", "/api/create", tok.llama, `{"model":"llama3","from":"llama3"}`, 403, "forbidden"},
		{"a user cannot copy", "POST", "/api/copy", tok.llama, `{"source":"llama3","destination":"x"}`, 403, "forbidden"},
		{"a user cannot delete", "DELETE", "/api/delete", tok.llama, `{"model":"llama3"}`, 403, "forbidden"},
		{"a user cannot upload blobs", "POST", "/api/blobs/sha256-abc", tok.llama, `x`, 403, "forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			be.reset()
			expectProblem(t, bearer(t, in, tc.method, tc.path, tc.token, tc.body), tc.status, tc.code)
			for _, s := range be.all() {
				t.Errorf("the backend acted on %s %s with model %q", s.Method, s.Path, s.Model)
			}
		})
	}
	t.Run("the same model in two cases passes", func(t *testing.T) {
		be.reset()
		resp := bearer(t, in, "POST", "/api/chat", tok.llama, `{"model":"llama3","Model":"llama3"}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", resp.StatusCode, resp.body)
		}
		got := be.all()
		if len(got) != 1 || got[0].Model != "llama3" {
			t.Fatalf("backend served %+v", got)
		}
		expectIdentity(t, in, got[0], bob, "user")
	})
	t.Run("an admin may pull", func(t *testing.T) {
		be.reset()
		resp := bearer(t, in, "POST", "/api/pull", tok.admin, `{"model":"llama3"}`)
		if resp.StatusCode != http.StatusOK || len(be.all()) != 1 {
			t.Fatalf("status %d %s, backend %+v", resp.StatusCode, resp.body, be.all())
		}
		expectIdentity(t, in, be.all()[0], alice, "admin")
	})
}

// TestConnectionHeaderCannotDropTheIdentity: naming the identity headers in
// Connection would make the proxy delete them (item 4 of issue 7).
func TestConnectionHeaderCannotDropTheIdentity(t *testing.T) {
	be := &expressBackend{}
	in := startInstance(t, instanceConfig{upstream: listen(t, be)})
	tok := newBoundaryTokens(t, in)
	for _, conn := range []string{
		"X-Gatehouse-User-Id, X-Gatehouse-User-Email, X-Gatehouse-Role, X-Gatehouse-Assertion",
		"keep-alive, x-gatehouse-assertion",
		"X-Gatehouse-Token-Id, Authorization, Cookie, X-Original-URL",
	} {
		be.reset()
		resp := bearer(t, in, "POST", "/v1/chat/completions", tok.llama, `{"model":"llama3"}`, "Connection", conn)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Connection %q: status %d %s", conn, resp.StatusCode, resp.body)
		}
		got := be.all()
		if len(got) != 1 {
			t.Fatalf("backend served %+v", got)
		}
		expectIdentity(t, in, got[0], bob, "user")
		if got[0].Header.Get("X-Gatehouse-Token-Id") == "" {
			t.Fatalf("Connection %q: no X-Gatehouse-Token-Id upstream", conn)
		}
	}
	t.Run("forged identity headers never arrive, however spelt", func(t *testing.T) {
		be.reset()
		resp := bearer(t, in, "POST", "/v1/chat/completions", tok.llama, `{"model":"llama3"}`,
			"X-Gatehouse-Role", "admin", "X_Gatehouse_Role", "admin", "x-gatehouse-user-email", "alice@example.com")
		if resp.StatusCode != http.StatusOK || len(be.all()) != 1 {
			t.Fatalf("status %d %s", resp.StatusCode, resp.body)
		}
		got := be.all()[0].Header
		if v := got.Values("X-Gatehouse-Role"); len(v) != 1 || v[0] != "user" {
			t.Errorf("X-Gatehouse-Role upstream = %q, want only user", v)
		}
		if v := got.Values("X_gatehouse_role"); len(v) != 0 {
			t.Errorf("X_Gatehouse_Role reached the backend: %q", v)
		}
		expectIdentity(t, in, be.all()[0], bob, "user")
	})
	t.Run("override headers are removed", func(t *testing.T) {
		be.reset()
		overrides := []string{"X-Original-URL", "/admin", "X-Rewrite-URL", "/admin", "X-Forwarded-Uri", "/admin",
			"X-HTTP-Method-Override", "DELETE", "X-Method-Override", "DELETE", "X-HTTP-Method", "DELETE", "X_Original_URL", "/admin"}
		resp := bearer(t, in, "POST", "/v1/chat/completions", tok.llama, `{"model":"llama3"}`, overrides...)
		if resp.StatusCode != http.StatusOK || len(be.all()) != 1 {
			t.Fatalf("status %d %s", resp.StatusCode, resp.body)
		}
		for i := 0; i < len(overrides); i += 2 {
			if v := be.all()[0].Header.Get(overrides[i]); v != "" {
				t.Errorf("%s reached the backend: %q", overrides[i], v)
			}
		}
	})
}

// TestEveryModelRouteIsClassified: the OpenAI, Anthropic, vLLM and Ollama
// routes that name a model are checked, model details are hidden, and model
// administration and batches need their permissions (item 5 of issue 7).
func TestEveryModelRouteIsClassified(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	tok := newBoundaryTokens(t, in)
	multipartBody := func(model string) (string, string) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		mw.WriteField("model", model)
		fw, _ := mw.CreateFormFile("file", "a.wav")
		fw.Write([]byte("RIFF...."))
		mw.Close()
		return buf.String(), mw.FormDataContentType()
	}
	forbiddenAudio, audioType := multipartBody("whisper-1")
	allowedAudio, allowedAudioType := multipartBody("llama3-whisper")
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code                     string
	}{
		{"images", "POST", "/v1/images/generations", `{"model":"dall-e-3","prompt":"x"}`, nil, 403, "model_not_allowed"},
		{"audio transcription (multipart)", "POST", "/v1/audio/transcriptions", forbiddenAudio, []string{"Content-Type", audioType}, 403, "model_not_allowed"},
		{"audio translation (multipart)", "POST", "/v1/audio/translations", forbiddenAudio, []string{"Content-Type", audioType}, 403, "model_not_allowed"},
		{"speech", "POST", "/v1/audio/speech", `{"model":"tts-1","input":"x"}`, nil, 403, "model_not_allowed"},
		{"Anthropic messages", "POST", "/v1/messages", `{"model":"claude-3","max_tokens":5}`, nil, 403, "model_not_allowed"},
		{"vLLM rerank", "POST", "/v1/rerank", `{"model":"bge","query":"x"}`, nil, 403, "model_not_allowed"},
		{"vLLM rerank v2", "POST", "/v2/rerank", `{"model":"bge","query":"x"}`, nil, 403, "model_not_allowed"},
		{"vLLM score", "POST", "/v1/score", `{"model":"bge"}`, nil, 403, "model_not_allowed"},
		{"vLLM tokenize", "POST", "/tokenize", `{"model":"mistral","prompt":"x"}`, nil, 403, "model_not_allowed"},
		{"moderations", "POST", "/v1/moderations", `{"model":"omni-moderation-latest","input":"x"}`, nil, 403, "model_not_allowed"},
		{"moderations without a model", "POST", "/v1/moderations", `{"input":"x"}`, nil, 400, "model_required"},
		{"realtime", "GET", "/v1/realtime?model=gpt-4o-realtime", "", nil, 403, "model_not_allowed"},
		{"realtime without a model", "GET", "/v1/realtime", "", nil, 400, "model_required"},
		{"realtime with two models", "GET", "/v1/realtime?model=llama3&Model=gpt-4o", "", nil, 400, "ambiguous_model"},
		{"assistants", "POST", "/v1/assistants", `{"model":"gpt-4o"}`, nil, 403, "model_not_allowed"},
		{"thread run overriding the model", "POST", "/v1/threads/t1/runs", `{"assistant_id":"a","model":"gpt-4o"}`, nil, 403, "model_not_allowed"},
		{"model details outside the caller's list", "GET", "/v1/models/gpt-4o", "", nil, 404, "model_not_found"},
		{"model details with a slash", "GET", "/v1/models/org/secret-model", "", nil, 404, "model_not_found"},
		{"batches", "POST", "/v1/batches", `{"input_file_id":"f"}`, nil, 403, "forbidden"},
		{"files", "POST", "/v1/files", `x`, nil, 403, "forbidden"},
		{"fine-tuning", "POST", "/v1/fine_tuning/jobs", `{"model":"gpt-4o-mini"}`, nil, 403, "forbidden"},
		{"deleting a fine-tuned model", "DELETE", "/v1/models/ft:gpt-4o:org", "", nil, 403, "forbidden"},
		{"LoRA load", "POST", "/v1/load_lora_adapter", `{"lora_name":"x"}`, nil, 403, "forbidden"},
		{"Ollama show", "POST", "/api/show", `{"model":"gpt-4o"}`, nil, 403, "model_not_allowed"},
		{"Ollama embeddings", "POST", "/api/embeddings", `{"model":"gpt-4o"}`, nil, 403, "model_not_allowed"},
		{"Ollama pull", "POST", "/api/pull", `{"model":"llama3"}`, nil, 403, "forbidden"},
		{"Ollama delete", "DELETE", "/api/delete", `{"model":"llama3"}`, nil, 403, "forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := in.backend.lastRequest()
			var body any
			if tc.body != "" {
				body = tc.body
			}
			expectProblem(t, bearer(t, in, tc.method, tc.path, tok.llama, body, tc.headers...), tc.status, tc.code)
			if after, _ := in.backend.lastRequest(); after != before {
				t.Errorf("the backend got %s %s", after.Method, after.URL)
			}
		})
	}
	allowed := []struct {
		name, method, path, token, body string
		headers                         []string
	}{
		{"allowed audio model", "POST", "/v1/audio/transcriptions", tok.llama, allowedAudio, []string{"Content-Type", allowedAudioType}},
		{"allowed realtime model", "GET", "/v1/realtime?model=llama3", tok.llama, "", nil},
		{"allowed model details", "GET", "/v1/models/llama3.1:8b", tok.llama, "", nil},
		{"thread run with the assistant's model", "POST", "/v1/threads/t1/runs", tok.llama, `{"assistant_id":"a"}`, nil},
		{"an admin runs batches", "POST", "/v1/batches", tok.admin, `{"input_file_id":"f"}`, nil},
		{"an admin pulls", "POST", "/api/pull", tok.admin, `{"model":"llama3"}`, nil},
	}
	for _, tc := range allowed {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			resp := bearer(t, in, tc.method, tc.path, tc.token, body, tc.headers...)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %s", resp.StatusCode, resp.body)
			}
			got, gotBody := in.backend.lastRequest()
			if got.URL.RequestURI() != tc.path || string(gotBody) != tc.body {
				t.Fatalf("backend got %s %q, want %s %q byte for byte", got.URL.RequestURI(), gotBody, tc.path, tc.body)
			}
		})
	}
}

// TestCaddyfileRoutesJoinThePolicyTable: a model route added in the Caddyfile
// is one the policy knows too (item 6 of issue 7).
func TestCaddyfileRoutesJoinThePolicyTable(t *testing.T) {
	in := startInstance(t, instanceConfig{guardBlock: "\t\tmodel_routes \"POST /custom/Generate\"\n\t\tlisting_routes \"GET /custom/models\""})
	tok := newBoundaryTokens(t, in)
	expectProblem(t, bearer(t, in, "POST", "/custom/generate", tok.systemOnly, `{"model":"llama3"}`), 403, "forbidden")
	expectProblem(t, bearer(t, in, "POST", "/CUSTOM/GENERATE", tok.llama, `{"model":"gpt-4"}`), 403, "model_not_allowed")
	expectProblem(t, bearer(t, in, "POST", "/custom/generate", tok.llama, `{"messages":[]}`), 400, "model_required")
	if resp := bearer(t, in, "POST", "/custom/generate", tok.mistralModelsOnly, `{"model":"mistral"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("a models:use token on a Caddyfile model route: status %d %s", resp.StatusCode, resp.body)
	}
	if resp := bearer(t, in, "POST", "/custom/generate", tok.llama, `{"model":"llama3"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("allowed model: status %d %s", resp.StatusCode, resp.body)
	}
	// A listing route's answer is filtered or refused, never passed as it is.
	expectProblem(t, bearer(t, in, "GET", "/custom/models", tok.llama, nil), 502, "bad_listing")
	// The default table still holds next to the added routes.
	expectProblem(t, bearer(t, in, "POST", "/v1/chat/completions", tok.llama, `{"model":"gpt-4"}`), 403, "model_not_allowed")
}
