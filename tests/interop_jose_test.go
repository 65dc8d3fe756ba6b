package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestInteropJoseVerifiesTokensAndAssertions is a backend written with
// panva's jose: it verifies Gatehouse's API tokens and the
// X-Gatehouse-Assertion through createRemoteJWKSet on
// /.well-known/jwks.json, and finds the keys from the issuer alone through
// /.well-known/openid-configuration.
func TestInteropJoseVerifiesTokensAndAssertions(t *testing.T) {
	requireNode(t)
	in := startInstance(t, instanceConfig{upstream: startModelBackend(t)})
	bobC := activeClient(t, in, bob)
	v := startJose(t)
	jwksURL := in.URL + "/.well-known/jwks.json"
	v.do(t, map[string]any{"op": "jwks", "set": "published", "url": jwksURL}).require(t, "creating the remote key set")
	token := createToken(t, bobC, map[string]any{"name": "laptop", "kind": "personal"})["token"].(string)

	t.Run("an API token verifies against the JWKS", func(t *testing.T) {
		a := v.verifyToken(t, in, "published", token).require(t, "verifying the token")
		if a.Payload["sub"] != bobC.userID() || a.Payload["token_kind"] != "personal" || a.Payload["role"] != "user" {
			t.Errorf("verified claims %v, want Bob's personal token", a.Payload)
		}
	})
	t.Run("the upstream assertion verifies against the JWKS", func(t *testing.T) {
		a := v.verifyAssertion(t, in, "published", assertionFor(t, in, token)).require(t, "verifying the assertion")
		if a.Payload["email"] != bob || a.Payload["role"] != "user" {
			t.Errorf("verified claims %v, want Bob as user", a.Payload)
		}
	})
	t.Run("the discovery document leads to the keys", func(t *testing.T) {
		d := v.do(t, map[string]any{"op": "discover", "set": "discovered", "issuer": in.URL}).require(t, "discovering the keys")
		if d.Issuer != in.URL || d.JWKSURI != jwksURL {
			t.Errorf("discovery says issuer %q, jwks_uri %q; want %q and %q", d.Issuer, d.JWKSURI, in.URL, jwksURL)
		}
		v.verifyAssertion(t, in, "discovered", assertionFor(t, in, token)).require(t, "verifying the assertion with the discovered keys")
	})
}

// TestInteropJoseVerifiesAcrossKeyRotation: jose keeps the key set it
// fetched (it refetches an unknown kid at most every 30 s), so spec §7a's
// staged rotation must hold for it — the next key is in the JWKS before
// anything is signed with it, and what is signed right after POST
// /api/keys/rotate verifies with the set fetched before. key_prepublish is
// made short so the test need not wait the default 10 minutes.
func TestInteropJoseVerifiesAcrossKeyRotation(t *testing.T) {
	requireNode(t)
	in := startInstance(t, instanceConfig{upstream: startModelBackend(t), extraGlobal: "\t\tkey_prepublish 2s"})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	v := startJose(t)
	v.do(t, map[string]any{"op": "jwks", "set": "before", "url": in.URL + "/.well-known/jwks.json"}).require(t, "creating the remote key set")

	before := createToken(t, bobC, map[string]any{"name": "before rotation", "kind": "personal"})["token"].(string)
	v.verifyToken(t, in, "before", before).require(t, "verifying a token before the rotation")
	v.verifyAssertion(t, in, "before", assertionFor(t, in, before)).require(t, "verifying an assertion before the rotation")

	rotateSigningKey(t, admin)
	after := createToken(t, bobC, map[string]any{"name": "after rotation", "kind": "personal"})["token"].(string)
	if kid, old := decodeSegment(t, after, 0)["kid"], decodeSegment(t, before, 0)["kid"]; kid == old {
		t.Fatalf("after the rotation tokens are still signed with key %v", kid)
	}
	// A system token is a subject Gatehouse has made no assertion for yet,
	// so its assertion is signed after the rotation too.
	system := createToken(t, admin, map[string]any{"name": "ci", "kind": "system", "permissions": []string{"system:access", "models:use"}})["token"].(string)

	t.Run("a token signed right after the rotation verifies with the keys fetched before it", func(t *testing.T) {
		v.verifyToken(t, in, "before", after).require(t, "verifying the new token with the key set fetched before the rotation")
	})
	t.Run("an assertion signed right after the rotation verifies with the keys fetched before it", func(t *testing.T) {
		v.verifyAssertion(t, in, "before", assertionFor(t, in, system)).require(t, "verifying the new assertion with the key set fetched before the rotation")
	})
	t.Run("a token signed before the rotation still verifies", func(t *testing.T) {
		v.verifyToken(t, in, "before", before).require(t, "verifying the old token after the rotation")
	})
}

// rotateSigningKey asks for a staged rotation as an operator would: while
// the next key has not been published for key_prepublish, Gatehouse answers
// 409 with Retry-After, and the operator tries again then.
func rotateSigningKey(t *testing.T, admin *client) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp := admin.do("POST", "/api/keys/rotate", nil)
		if resp.StatusCode == http.StatusOK {
			return
		}
		wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != http.StatusConflict || err != nil || time.Now().Add(time.Duration(wait)*time.Second).After(deadline) {
			t.Fatalf("POST /api/keys/rotate: %d (Retry-After %q) %s", resp.StatusCode, resp.Header.Get("Retry-After"), resp.body)
		}
		time.Sleep(time.Duration(wait) * time.Second)
	}
}

// assertionFor is the assertion the backend receives on a request made with token.
func assertionFor(t *testing.T, in *instance, token string) string {
	t.Helper()
	resp := bearer(t, in, "GET", "/whoami", token, nil)
	var who struct{ Assertion string }
	if err := json.Unmarshal(resp.body, &who); resp.StatusCode != http.StatusOK || err != nil || who.Assertion == "" {
		t.Fatalf("GET /whoami: %d %s: no assertion reached the backend", resp.StatusCode, resp.body)
	}
	return who.Assertion
}

// verifyToken checks token as an API token of in (spec §5: typ at+jwt, aud gatehouse).
func (v *joseVerifier) verifyToken(t *testing.T, in *instance, set, token string) joseAnswer {
	t.Helper()
	return v.do(t, map[string]any{"op": "verify", "set": set, "token": token, "issuer": in.URL, "audience": "gatehouse", "typ": "at+jwt"})
}

// verifyAssertion checks an upstream assertion of in (iss and aud public_url, typ JWT).
func (v *joseVerifier) verifyAssertion(t *testing.T, in *instance, set, assertion string) joseAnswer {
	t.Helper()
	return v.do(t, map[string]any{"op": "verify", "set": set, "token": assertion, "issuer": in.URL, "audience": in.URL, "typ": "JWT"})
}

// joseVerifier is one jose.mjs process: its key sets live as long as it does.
type joseVerifier struct {
	in  io.Writer
	out *bufio.Reader
}

type joseAnswer struct {
	OK      bool           `json:"ok"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Header  map[string]any `json:"header"`
	Payload map[string]any `json:"payload"`
	Issuer  string         `json:"issuer"`
	JWKSURI string         `json:"jwks_uri"`
}

// require fails the test with jose's own error when the answer is one.
func (a joseAnswer) require(t *testing.T, step string) joseAnswer {
	t.Helper()
	if !a.OK {
		t.Fatalf("%s: jose says %s: %s", step, a.Code, a.Message)
	}
	return a
}

func startJose(t *testing.T) *joseVerifier {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := nodeScript(ctx, "jose.mjs")
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Closing stdin ends the script; the context is the backstop.
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel()
			<-done
		}
		cancel()
		if t.Failed() && stderr.String() != "" {
			t.Logf("jose.mjs stderr:\n%s", stderr.String())
		}
	})
	return &joseVerifier{in: stdin, out: bufio.NewReader(stdout)}
}

// do sends one request and waits for its answer.
func (v *joseVerifier) do(t *testing.T, req map[string]any) joseAnswer {
	t.Helper()
	line, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.in.Write(append(line, '\n')); err != nil {
		t.Fatalf("writing to jose.mjs: %v", err)
	}
	type result struct {
		line []byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		l, err := v.out.ReadBytes('\n')
		got <- result{l, err}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("reading from jose.mjs: %v", r.err)
		}
		var a joseAnswer
		if err := json.Unmarshal(r.line, &a); err != nil {
			t.Fatalf("jose.mjs answered %q: %v", r.line, err)
		}
		return a
	case <-time.After(20 * time.Second):
		t.Fatalf("jose.mjs did not answer %s within 20s", line)
	}
	return joseAnswer{}
}
