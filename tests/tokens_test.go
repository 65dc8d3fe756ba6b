package tests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/gatehouse/gatehouse/keys"
	"github.com/gatehouse/gatehouse/store"
)

// createToken asks the API for a token and returns the response body (with "token").
func createToken(t *testing.T, c *client, body map[string]any) map[string]any {
	t.Helper()
	resp := c.do("POST", "/api/tokens", body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create token %v: %d %s", body, resp.StatusCode, resp.body)
	}
	return resp.json(t)
}

// bearer sends a request with a bearer token and no cookies.
func bearer(t *testing.T, in *instance, method, path, token string, body any, headers ...string) *response {
	t.Helper()
	return in.newClient().do(method, path, body, append([]string{"Authorization", "Bearer " + token}, headers...)...)
}

// TestTokenIsAStandardJWT: the issued token verifies against the published
// JWKS with jwx alone, and carries the header and claims of spec §5.
func TestTokenIsAStandardJWT(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	bobC := activeClient(t, in, bob)
	bobID := bobC.userID()
	created := createToken(t, bobC, map[string]any{"name": "laptop", "kind": "personal", "models": []string{"llama3*"}, "expires_in": "720h"})
	raw := created["token"].(string)

	header := decodeSegment(t, raw, 0)
	if header["alg"] != "ES256" || header["typ"] != "at+jwt" || header["kid"] == "" {
		t.Fatalf("header = %v", header)
	}
	set, err := jwk.Parse(in.newClient().get("/.well-known/jwks.json").body)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := set.LookupKeyID(header["kid"].(string)); !ok {
		t.Fatalf("kid %v is not published", header["kid"])
	}
	tok, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set), jwt.WithValidate(true), jwt.WithIssuer(in.URL), jwt.WithAudience("gatehouse"))
	if err != nil {
		t.Fatalf("token does not verify against the JWKS: %v", err)
	}
	claims, _ := tok.AsMap(context.Background())
	wantScope := "chat:use models:use settings:self system:access tokens:personal"
	if claims["sub"] != bobID || claims["jti"] != created["id"] || claims["client_id"] != created["id"] ||
		claims["token_kind"] != "personal" || claims["role"] != "user" || claims["scope"] != wantScope ||
		fmt.Sprint(claims["models"]) != "[llama3*]" {
		t.Fatalf("claims = %v", claims)
	}
	// A user's token carries no email or name: the guard reads the current
	// user, so they would only lengthen every request.
	if _, ok := claims["email"]; ok {
		t.Fatalf("the token carries the email: %v", claims)
	}
	if _, ok := claims["name"]; ok {
		t.Fatalf("the token carries the name: %v", claims)
	}
	if life := tok.Expiration().Sub(tok.IssuedAt()); life != 720*time.Hour || !tok.NotBefore().Equal(tok.IssuedAt()) {
		t.Fatalf("life %s, nbf %s, iat %s", life, tok.NotBefore(), tok.IssuedAt())
	}

	// The token works on the backend, which never sees it.
	resp := bearer(t, in, "GET", "/anything", raw, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bearer request: %d %s", resp.StatusCode, resp.body)
	}
	up, _ := in.backend.lastRequest()
	if up.Header.Get("Authorization") != "" || up.Header.Get("X-Gatehouse-Token-Id") != created["id"] || up.Header.Get("X-Gatehouse-User-Id") != bobID {
		t.Fatalf("upstream Authorization %q, Token-Id %q, User-Id %q", up.Header.Get("Authorization"), up.Header.Get("X-Gatehouse-Token-Id"), up.Header.Get("X-Gatehouse-User-Id"))
	}
	verifyAssertion(t, in, up.Header.Get("X-Gatehouse-Assertion"), bobID, bob, "user")

	// Listing shows metadata, never the token.
	list := bobC.get("/api/tokens")
	if strings.Contains(list.text(), raw) || strings.Contains(list.text(), `"token"`) {
		t.Fatalf("token listing leaks the token: %s", list.body)
	}
	entries := list.json(t)["tokens"].([]any)
	if len(entries) != 1 || entries[0].(map[string]any)["name"] != "laptop" || entries[0].(map[string]any)["revoked_at"] != nil {
		t.Fatalf("tokens = %v", entries)
	}
}

// TestForgedTokensRefused: every forgery gets 401 invalid_token.
func TestForgedTokensRefused(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	bobC := activeClient(t, in, bob)
	bobID := bobC.userID()
	valid := createToken(t, bobC, map[string]any{"name": "ok", "kind": "personal"})["token"].(string)
	header := decodeSegment(t, valid, 0)
	kid := header["kid"].(string)
	parts := strings.Split(valid, ".")

	// A ring over the instance's own store and secret signs tokens with the
	// real key, so claim checks are tested apart from the signature.
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
	now := time.Now()
	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{"iss": in.URL, "sub": bobID, "aud": []string{"gatehouse"}, "iat": now.Unix(), "nbf": now.Unix(),
			"exp": now.Add(time.Hour).Unix(), "jti": "forged-1", "client_id": "forged-1", "token_kind": "personal",
			"role": "admin", "scope": "system:access models:use"}
		edit(c)
		return c
	}
	signed := func(edit func(map[string]any)) string {
		tok, err := ring.Sign(claims(edit), "at+jwt")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// The control: the same construction with nothing wrong passes, so each
	// refusal below is for the one thing changed.
	if r := bearer(t, in, "GET", "/anything", signed(func(map[string]any) {}), nil); r.StatusCode != http.StatusOK {
		t.Fatalf("control token: %d %s", r.StatusCode, r.body)
	}

	b64 := func(v any) string {
		data, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(data)
	}
	payload := claims(func(map[string]any) {})
	none := b64(map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid}) + "." + b64(payload) + "."
	hsHeader := b64(map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": kid}) + "." + b64(payload)
	mac := hmac.New(sha256.New, in.newClient().get("/.well-known/jwks.json").body)
	mac.Write([]byte(hsHeader))
	hs256 := hsHeader + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	tamperedClaims := decodeSegment(t, valid, 1)
	tamperedClaims["role"] = "admin"
	tamperedClaims["scope"] = "config:manage system:access"
	tampered := parts[0] + "." + b64(tamperedClaims) + "." + parts[2]

	foreignKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signForeign := func(kid, typ, iss string) string {
		k, _ := jwk.FromRaw(foreignKey)
		_ = k.Set(jwk.KeyIDKey, kid)
		hdr := jws.NewHeaders()
		_ = hdr.Set("typ", typ)
		c := claims(func(c map[string]any) { c["iss"] = iss })
		data, _ := json.Marshal(c)
		out, err := jws.Sign(data, jws.WithKey(jwa.ES256, k, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}

	cases := map[string]string{
		"alg none":                        none,
		"HS256 keyed with the public key": hs256,
		"tampered payload":                tampered,
		"unknown kid":                     signForeign("not-a-gatehouse-key", "at+jwt", in.URL),
		"foreign key claiming our kid":    signForeign(kid, "at+jwt", in.URL),
		"identity provider token":         signForeign("idp-key-1", "JWT", in.URL+"/dev-idp"),
		"wrong iss":                       signed(func(c map[string]any) { c["iss"] = "https://evil.example" }),
		"wrong aud":                       signed(func(c map[string]any) { c["aud"] = []string{"someone-else"} }),
		"expired":                         signed(func(c map[string]any) { c["exp"] = now.Add(-10 * time.Minute).Unix() }),
		"nbf in the future":               signed(func(c map[string]any) { c["nbf"] = now.Add(10 * time.Minute).Unix() }),
		"no jti":                          signed(func(c map[string]any) { delete(c, "jti") }),
		"garbage":                         "definitely-not-a-jwt",
		"three dots":                      "...",
		"oversized":                       strings.Repeat("a", 5000) + "." + strings.Repeat("b", 5000) + ".c",
	}
	assertion, err := ring.Assertion(in.URL, in.URL, bobID, bob, "user", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cases["an upstream assertion replayed as a token"] = assertion
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			resp := bearer(t, in, "GET", "/anything", tok, nil)
			expectProblem(t, resp, http.StatusUnauthorized, "invalid_token")
			if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="gatehouse", error="invalid_token"` {
				t.Fatalf("WWW-Authenticate = %q", got)
			}
		})
	}
	t.Run("malformed authorization headers", func(t *testing.T) {
		for _, h := range []string{"Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a b", "bearer\t" + valid} {
			expectProblem(t, in.newClient().get("/anything", "Authorization", h), http.StatusUnauthorized, "invalid_token")
		}
	})
}

// TestRevocationAndAccountChangesTakeEffectAtOnce.
func TestRevocationAndAccountChangesTakeEffectAtOnce(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	frankC := clientWithRole(t, in, frank, "manager")

	tok := createToken(t, bobC, map[string]any{"name": "revoke me", "kind": "personal"})
	if r := bearer(t, in, "GET", "/anything", tok["token"].(string), nil); r.StatusCode != http.StatusOK {
		t.Fatalf("before revocation: %d", r.StatusCode)
	}
	start := time.Now()
	if r := bobC.do("DELETE", "/api/tokens/"+tok["id"].(string), nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", r.StatusCode, r.body)
	}
	expectProblem(t, bearer(t, in, "GET", "/anything", tok["token"].(string), nil), http.StatusUnauthorized, "invalid_token")
	if took := time.Since(start); took > time.Second {
		t.Fatalf("revocation took %s", took)
	}
	listed := bobC.get("/api/tokens").json(t)["tokens"].([]any)[0].(map[string]any)
	if listed["revoked_at"] == nil {
		t.Fatalf("listing does not show the revocation: %v", listed)
	}
	if r := bobC.do("DELETE", "/api/tokens/"+tok["id"].(string), nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("revoking twice: %d", r.StatusCode)
	}

	// A demoted manager's token loses the manager's powers at once.
	mtok := createToken(t, frankC, map[string]any{"name": "ops", "kind": "personal"})["token"].(string)
	if r := bearer(t, in, "GET", "/api/users", mtok, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("manager token on /api/users: %d %s", r.StatusCode, r.body)
	}
	if r := admin.do("PUT", "/api/users/"+frankC.userID()+"/role", map[string]any{"role": "user"}); r.StatusCode != http.StatusOK {
		t.Fatalf("demote: %d", r.StatusCode)
	}
	expectProblem(t, bearer(t, in, "GET", "/api/users", mtok, nil), http.StatusForbidden, "forbidden")
	if r := bearer(t, in, "GET", "/anything", mtok, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("demoted user's token on the backend: %d", r.StatusCode)
	}

	// A suspended user's tokens are revoked at once and stay so after
	// reactivation (spec §3a).
	btok := createToken(t, bobC, map[string]any{"name": "second", "kind": "personal"})["token"].(string)
	bobID := bobC.userID()
	admin.do("PUT", "/api/users/"+bobID+"/status", map[string]any{"status": "suspended"})
	expectProblem(t, bearer(t, in, "GET", "/anything", btok, nil), http.StatusUnauthorized, "invalid_token")
	admin.do("PUT", "/api/users/"+bobID+"/status", map[string]any{"status": "active"})
	expectProblem(t, bearer(t, in, "GET", "/anything", btok, nil), http.StatusUnauthorized, "invalid_token")

	// Deleting the user revokes the tokens.
	if r := admin.do("DELETE", "/api/users/"+bobID, nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", r.StatusCode)
	}
	expectProblem(t, bearer(t, in, "GET", "/anything", btok, nil), http.StatusUnauthorized, "invalid_token")
}

// TestKeyRotationKeepsOldTokens: old tokens stay valid, new ones use the new key.
func TestKeyRotationKeepsOldTokens(t *testing.T) {
	in := startInstance(t, instanceConfig{extraGlobal: quickPrepublish})
	admin := in.newClient()
	admin.signIn(alice, "")
	before := createToken(t, admin, map[string]any{"name": "before", "kind": "personal"})["token"].(string)
	oldKid := decodeSegment(t, before, 0)["kid"]

	expectProblem(t, activeClient(t, in, bob).do("POST", "/api/keys/rotate", nil), http.StatusForbidden, "forbidden")
	rot := rotateSigningKeys(t, admin)
	if rot["kid"] == oldKid {
		t.Fatalf("rotate: %v", rot)
	}
	after := createToken(t, admin, map[string]any{"name": "after", "kind": "personal"})["token"].(string)
	newKid := decodeSegment(t, after, 0)["kid"]
	if newKid == oldKid || newKid != rot["kid"] {
		t.Fatalf("new token kid %v, old %v, rotated to %v", newKid, oldKid, rot["kid"])
	}
	for name, tok := range map[string]string{"old": before, "new": after} {
		if r := bearer(t, in, "GET", "/anything", tok, nil); r.StatusCode != http.StatusOK {
			t.Fatalf("%s token after rotation: %d %s", name, r.StatusCode, r.body)
		}
	}
	set, _ := jwk.Parse(in.newClient().get("/.well-known/jwks.json").body)
	_, hasOld := set.LookupKeyID(oldKid.(string))
	_, hasNew := set.LookupKeyID(newKid.(string))
	if !hasOld || !hasNew {
		t.Fatalf("JWKS lacks a key: old %v new %v", hasOld, hasNew)
	}
	in.restart()
	if r := bearer(t, in, "GET", "/anything", before, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("old token after restart: %d", r.StatusCode)
	}
}

// TestTokenCreationRules: who may create which kind, and permissions only narrow.
func TestTokenCreationRules(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	aliceID := admin.userID()
	bobC := activeClient(t, in, bob)
	bobID := bobC.userID()
	manager := clientWithRole(t, in, frank, "manager")
	pending := in.newClient()
	pending.signIn(erin, "")

	expectProblem(t, pending.do("POST", "/api/tokens", map[string]any{"name": "x", "kind": "personal"}), http.StatusForbidden, "access_required")
	expectProblem(t, bobC.do("POST", "/api/tokens", map[string]any{"name": "x", "kind": "user", "user_id": aliceID}), http.StatusForbidden, "forbidden")
	expectProblem(t, bobC.do("POST", "/api/tokens", map[string]any{"name": "x", "kind": "system"}), http.StatusForbidden, "forbidden")
	expectProblem(t, manager.do("POST", "/api/tokens", map[string]any{"name": "x", "kind": "system"}), http.StatusForbidden, "forbidden")
	expectProblem(t, manager.do("POST", "/api/tokens", map[string]any{"name": "x", "kind": "user", "user_id": aliceID}), http.StatusForbidden, "forbidden")
	expectProblem(t, bobC.do("POST", "/api/tokens", map[string]any{"name": "x", "kind": "personal", "permissions": []string{"users:manage"}}), http.StatusBadRequest, "validation_failed")
	expectProblem(t, bobC.do("POST", "/api/tokens", map[string]any{"name": "x", "kind": "personal", "expires_in": "91d"}), http.StatusBadRequest, "validation_failed")
	expectProblem(t, bobC.do("POST", "/api/tokens", map[string]any{"name": "x", "kind": "personal", "models": []string{"llama[3"}}), http.StatusBadRequest, "validation_failed")
	expectProblem(t, bobC.do("POST", "/api/tokens", map[string]any{"name": "", "kind": "personal"}), http.StatusBadRequest, "validation_failed")
	expectProblem(t, bobC.do("POST", "/api/tokens", map[string]any{"name": "x", "kind": "root"}), http.StatusBadRequest, "validation_failed")
	expectProblem(t, bobC.do("POST", "/api/tokens", `{"name":"x","kind":"personal","admin":true}`), http.StatusBadRequest, "invalid_json")

	narrow := createToken(t, bobC, map[string]any{"name": "narrow", "kind": "personal", "permissions": []string{"models:use"}})
	if fmt.Sprint(narrow["scope"]) != "[models:use]" {
		t.Fatalf("narrowed scope = %v", narrow["scope"])
	}
	// A token cannot manage tokens, even with the permission.
	full := createToken(t, bobC, map[string]any{"name": "full", "kind": "personal"})["token"].(string)
	expectProblem(t, bearer(t, in, "POST", "/api/tokens", full, map[string]any{"name": "child", "kind": "personal"}), http.StatusForbidden, "session_required")

	// A manager makes a user token for a user below it: scope ⊆ theirs ∩ the manager's.
	ut := createToken(t, manager, map[string]any{"name": "for bob", "kind": "user", "user_id": bobID, "permissions": []string{"models:use", "chat:use"}})
	if ut["user_id"] != bobID || ut["kind"] != "user" {
		t.Fatalf("user token = %v", ut)
	}
	if sub := decodeSegment(t, ut["token"].(string), 1)["sub"]; sub != bobID {
		t.Fatalf("user token sub = %v", sub)
	}
	expectProblem(t, manager.do("POST", "/api/tokens", map[string]any{"name": "x", "kind": "user", "user_id": bobID, "permissions": []string{"users:manage"}}), http.StatusBadRequest, "validation_failed")

	sys := createToken(t, admin, map[string]any{"name": "ci", "kind": "system", "permissions": []string{"system:access", "models:use"}, "expires_in": "365d"})
	if sub := decodeSegment(t, sys["token"].(string), 1)["sub"]; sub != "system:"+sys["id"].(string) {
		t.Fatalf("system token sub = %v", sub)
	}
	if r := bearer(t, in, "GET", "/anything", sys["token"].(string), nil); r.StatusCode != http.StatusOK {
		t.Fatalf("system token: %d %s", r.StatusCode, r.body)
	}

	// Listing rules.
	if got := manager.get("/api/tokens?user_id=" + bobID).json(t)["tokens"].([]any); len(got) != 3 {
		t.Fatalf("manager lists bob's tokens: %d, want 3", len(got))
	}
	expectProblem(t, bobC.get("/api/tokens?user_id="+aliceID), http.StatusForbidden, "forbidden")
	expectProblem(t, manager.get("/api/tokens?kind=system"), http.StatusForbidden, "forbidden")
	if got := admin.get("/api/tokens?kind=system").json(t)["tokens"].([]any); len(got) != 1 {
		t.Fatalf("system tokens: %v", got)
	}
	// Revocation rights: bob cannot revoke the system token; the manager can revoke bob's.
	// A token the caller may not revoke answers like an unknown one.
	expectProblem(t, bobC.do("DELETE", "/api/tokens/"+sys["id"].(string), nil), http.StatusNotFound, "not_found")
	if r := manager.do("DELETE", "/api/tokens/"+ut["id"].(string), nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("manager revokes bob's token: %d %s", r.StatusCode, r.body)
	}
	expectProblem(t, bobC.do("DELETE", "/api/tokens/00000000-0000-7000-8000-000000000000", nil), http.StatusNotFound, "not_found")
}

// TestTokenLimitsListed: a token's own limits, given at creation, are kept
// with it: GET /api/tokens lists them, and the token tables of the account
// page and the dashboard show them readably ("—" for a token without).
func TestTokenLimitsListed(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)

	limits := map[string]any{"tokens_per_day": 100000.0, "requests_per_minute": 60.0}
	limited := createToken(t, bobC, map[string]any{"name": "nightly", "kind": "personal", "limits": limits})
	if fmt.Sprint(limited["limits"]) != fmt.Sprint(limits) {
		t.Errorf("created token's limits = %v, want %v", limited["limits"], limits)
	}
	plain := createToken(t, bobC, map[string]any{"name": "plain", "kind": "personal"})
	zero := createToken(t, bobC, map[string]any{"name": "zero", "kind": "personal", "limits": map[string]any{}})

	listed := map[string]map[string]any{}
	for _, tok := range bobC.get("/api/tokens").json(t)["tokens"].([]any) {
		listed[tok.(map[string]any)["id"].(string)] = tok.(map[string]any)
	}
	if got := listed[limited["id"].(string)]["limits"]; fmt.Sprint(got) != fmt.Sprint(limits) {
		t.Errorf("GET /api/tokens: nightly's limits = %v, want %v", got, limits)
	}
	for _, none := range []map[string]any{plain, zero} {
		if got, ok := listed[none["id"].(string)]["limits"]; ok {
			t.Errorf("GET /api/tokens: %s's limits = %v, want none listed", none["name"], got)
		}
	}

	account := bobC.get("/gatehouse/account")
	if account.StatusCode != http.StatusOK {
		t.Fatalf("GET /gatehouse/account: %d %s", account.StatusCode, account.body)
	}
	for _, tc := range []struct {
		tok  map[string]any
		want string
	}{
		{limited, `<td class="limits">requests/min 60, tokens/day 100000</td>`},
		{plain, `<td class="limits"><small>—</small></td>`},
		{zero, `<td class="limits"><small>—</small></td>`},
	} {
		if row := tokenRowHTML(t, account, tc.tok["id"].(string)); !strings.Contains(row, tc.want) {
			t.Errorf("account page row of %s does not show %s:\n%s", tc.tok["name"], tc.want, row)
		}
	}

	sys := createToken(t, admin, map[string]any{"name": "batch", "kind": "system", "permissions": []string{"models:use"},
		"limits": map[string]any{"tokens_per_month": 2000000, "concurrent_requests": 4}})
	want := `<td class="limits">tokens/month 2000000, concurrent requests 4</td>`
	if row := tokenRowHTML(t, admin.get("/gatehouse/admin"), sys["id"].(string)); !strings.Contains(row, want) {
		t.Errorf("dashboard row of the system token does not show %s:\n%s", want, row)
	}
}

// tokenRowHTML is the row of token id in a page's token table.
func tokenRowHTML(t *testing.T, page *response, id string) string {
	t.Helper()
	start := strings.Index(page.text(), `id="token-`+id+`"`)
	if start < 0 {
		t.Fatalf("no row of token %s on the page (status %d):\n%s", id, page.StatusCode, page.body)
	}
	row, _, _ := strings.Cut(page.text()[start:], "</tr>")
	return row
}

// TestModelRestrictions: token model globs, the body reaching the upstream
// byte for byte, ambiguous bodies and filtered listings.
func TestModelRestrictions(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	bobC := activeClient(t, in, bob)
	tok := createToken(t, bobC, map[string]any{"name": "llama only", "kind": "personal", "models": []string{"llama3*"}})["token"].(string)

	allowed := `{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi \u00e9"}],"stream":false}`
	resp := bearer(t, in, "POST", "/v1/chat/completions", tok, allowed)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("allowed model: %d %s", resp.StatusCode, resp.body)
	}
	if _, body := in.backend.lastRequest(); string(body) != allowed {
		t.Fatalf("upstream body differs:\n%q\n%q", body, allowed)
	}
	bigPrefix := `{"messages":[{"role":"user","content":"` + strings.Repeat("x", 900<<10) + `"}],"model":"mistral"}`
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"refused model", `{"model":"mistral","messages":[]}`, 403, "model_not_allowed"},
		{"repeated model key", `{"model":"llama3","model":"mistral"}`, 400, "ambiguous_model"},
		{"escaped key", `{"mod\u0065l":"mistral"}`, 403, "model_not_allowed"},
		{"escaped key repeating the model", `{"model":"llama3","mod\u0065l":"mistral"}`, 400, "ambiguous_model"},
		{"escaped value", `{"model":"\u006distral"}`, 403, "model_not_allowed"},
		{"non-string model", `{"model":["llama3"]}`, 400, "ambiguous_model"},
		{"no model", `{"messages":[]}`, 400, "model_required"},
		{"not JSON", `model=llama3`, 400, "invalid_json"},
		{"disallowed model behind a large prefix", bigPrefix, 403, "model_not_allowed"},
		{"over the size bound", `{"model":"llama3","pad":"` + strings.Repeat("y", 9<<20) + `"}`, 413, "body_too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectProblem(t, bearer(t, in, "POST", "/v1/chat/completions", tok, tc.body), tc.status, tc.code)
		})
	}
	t.Run("model routes cannot be stepped around by the path's spelling", func(t *testing.T) {
		for _, p := range []string{"//v1/chat/completions", "/v1/chat/completions/", "/v1/chat/%63ompletions", "/V1/Chat/Completions"} {
			expectProblem(t, bearer(t, in, "POST", p, tok, `{"model":"mistral"}`), http.StatusForbidden, "model_not_allowed")
		}
		for _, p := range []string{"/v1/./chat/completions", "/v1/x/../chat/completions"} {
			expectProblem(t, bearer(t, in, "POST", p, tok, `{"model":"mistral"}`), http.StatusBadRequest, "ambiguous_request")
		}
	})
	t.Run("escaped allowed value passes", func(t *testing.T) {
		body := `{"model":"\u006clama3"}`
		if r := bearer(t, in, "POST", "/api/generate", tok, body); r.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", r.StatusCode, r.body)
		}
		if _, got := in.backend.lastRequest(); string(got) != body {
			t.Fatalf("upstream body %q", got)
		}
	})
	t.Run("listings are filtered", func(t *testing.T) {
		if got := listedModels(t, bearer(t, in, "GET", "/v1/models", tok, nil)); got != "llama3,llama3.1:8b" {
			t.Fatalf("/v1/models ids = %v", got)
		}
		if got := listedModels(t, bearer(t, in, "GET", "/api/tags", tok, nil)); got != "llama3,llama3.1:8b" {
			t.Fatalf("/api/tags names = %v", got)
		}
		// A session sees every model its role may use.
		if got := listedModels(t, bobC.get("/v1/models")); got != strings.Join(backendModels, ",") {
			t.Fatalf("session listing = %v", got)
		}
	})
	t.Run("role model restrictions from settings apply to sessions", func(t *testing.T) {
		admin := in.newClient()
		admin.signIn(alice, "")
		if r := putSettings(admin, map[string]any{"roles": map[string]any{"user": map[string]any{"models": []string{"mistral", "gpt-*"}}}}); r.StatusCode != http.StatusOK {
			t.Fatalf("settings: %d %s", r.StatusCode, r.body)
		}
		if got := listedModels(t, bobC.get("/v1/models")); got != "mistral,gpt-4o" {
			t.Fatalf("session listing under role models = %v", got)
		}
		expectProblem(t, bobC.do("POST", "/v1/chat/completions", `{"model":"llama3"}`), http.StatusForbidden, "model_not_allowed")
		// The token's own globs and the role's both apply: nothing is left.
		expectProblem(t, bearer(t, in, "POST", "/v1/chat/completions", tok, `{"model":"mistral"}`), http.StatusForbidden, "model_not_allowed")
	})
}

// decodeSegment decodes part i (0 header, 1 payload) of a compact JWS.
func decodeSegment(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", token)
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// listedModels is the comma-joined model names of a 200 listing response, in
// the OpenAI ("data[].id") or Ollama ("models[].name") format.
func listedModels(t *testing.T, resp *response) string {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("listing: status %d %s", resp.StatusCode, resp.body)
	}
	var l struct {
		Data   []struct{ ID string }   `json:"data"`
		Models []struct{ Name string } `json:"models"`
	}
	if err := json.Unmarshal(resp.body, &l); err != nil {
		t.Fatalf("listing is not JSON: %v: %s", err, resp.body)
	}
	var names []string
	for _, m := range l.Data {
		names = append(names, m.ID)
	}
	for _, m := range l.Models {
		names = append(names, m.Name)
	}
	return strings.Join(names, ",")
}
