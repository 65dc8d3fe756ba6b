package tokens_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"github.com/gatehouse/gatehouse/internal/testclock"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/gatehouse/gatehouse/keys"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/storetest"
	"github.com/gatehouse/gatehouse/tokens"
)

const (
	testSecret = "0123456789abcdef0123456789abcdef"
	testIssuer = "https://gatehouse.example"
)

// newTestStore opens an empty SQLite store, the real backend, in the test's
// temporary directory.
func newTestStore(t testing.TB) *store.SQLite { return storetest.OpenSQLite(t) }

// fakeClock is the injected clock of the code under test.
type fakeClock = testclock.Clock

func newFakeClock() *fakeClock { return testclock.New(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)) }

func newRing(t testing.TB, alg string, clock *fakeClock) *keys.Ring {
	t.Helper()
	secret, err := keys.SecretFromString(testSecret)
	if err != nil {
		t.Fatalf("SecretFromString: %v", err)
	}
	ring, err := keys.NewRing(context.Background(), newTestStore(t), secret.Sealer(keys.SigningKeyPurpose),
		keys.RingConfig{Algorithm: alg}, clock.Now)
	if err != nil {
		t.Fatalf("NewRing(%s): %v", alg, err)
	}
	return ring
}

// countingKeys counts the key lookups of a verifier: a cache hit makes none.
type countingKeys struct {
	source tokens.KeySource
	calls  atomic.Int64
}

func (k *countingKeys) PublicKey(kid string) (jwk.Key, string, bool) {
	k.calls.Add(1)
	return k.source.PublicKey(kid)
}

// fixture is a ring, a verifier of its tokens and their shared clock.
type fixture struct {
	clock    *fakeClock
	ring     *keys.Ring
	keys     *countingKeys
	verifier *tokens.Verifier
}

func newFixture(t testing.TB, alg string) *fixture {
	t.Helper()
	clock := newFakeClock()
	ring := newRing(t, alg, clock)
	counting := &countingKeys{source: ring}
	return &fixture{
		clock:    clock,
		ring:     ring,
		keys:     counting,
		verifier: tokens.NewVerifier(counting, tokens.VerifierConfig{Issuer: testIssuer, Now: clock.Now}),
	}
}

// claims returns the claims of a typical personal token issued now.
func (f *fixture) claims() tokens.Claims {
	now := f.clock.Now()
	return tokens.Claims{
		ID:        "0195f1e2-7c3a-7d41-9b2e-5a6c7d8e9f01",
		Subject:   "0195f1e2-0000-7000-8000-00000000a11c",
		Kind:      tokens.KindPersonal,
		Role:      "member",
		Email:     "alice@example.com",
		Name:      "Alice Example",
		Scope:     []string{"models:use", "tokens:personal"},
		Models:    []string{"llama3*", "gpt-4o"},
		IssuedAt:  now,
		ExpiresAt: now.Add(90 * 24 * time.Hour),
	}
}

func (f *fixture) mint(t testing.TB, c tokens.Claims) string {
	t.Helper()
	token, err := tokens.Mint(f.ring, testIssuer, nil, c)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return token
}

// claimsMap is the payload of a valid token as a map, for tests that sign
// variations of it with the ring directly.
func (f *fixture) claimsMap() map[string]any {
	now := f.clock.Now().Unix()
	return map[string]any{
		"iss":        testIssuer,
		"sub":        "0195f1e2-0000-7000-8000-00000000a11c",
		"aud":        []string{"gatehouse"},
		"iat":        now,
		"nbf":        now,
		"exp":        now + 3600,
		"jti":        "tok-1",
		"client_id":  "tok-1",
		"token_kind": "personal",
		"role":       "member",
		"scope":      "models:use",
	}
}

func (f *fixture) sign(t testing.TB, claims map[string]any, typ string) string {
	t.Helper()
	token, err := f.ring.Sign(claims, typ)
	if err != nil {
		t.Fatalf("ring.Sign: %v", err)
	}
	return token
}

// compact assembles a JWS by hand from a header, a payload and a signing
// function over the signing input; sign nil leaves the signature empty.
func compact(t testing.TB, header, payload map[string]any, sign func(input []byte) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(p)
	if sign == nil {
		return input + "."
	}
	return input + "." + b64(sign([]byte(input)))
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustDecode(t testing.TB, part string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatalf("decode %q: %v", part, err)
	}
	return b
}
