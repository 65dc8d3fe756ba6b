package tokens_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/gatehouse/gatehouse/tokens"
)

func TestMintedTokenVerifies(t *testing.T) {
	f := newFixture(t, "ES256")
	c := f.claims()
	token := f.mint(t, c)

	got, err := f.verifier.Verify(token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := c
	want.ClientID = c.ID
	want.NotBefore = c.IssuedAt
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Verify = %+v\nwant %+v", got, want)
	}
}

// TestMintedTokenThroughJWKS reads a minted token the way an upstream does,
// with jwx's JWT parser and the published JWKS only, and checks the header
// and the payload byte for byte against spec §5.
func TestMintedTokenThroughJWKS(t *testing.T) {
	f := newFixture(t, "ES256")
	c := f.claims()
	token, err := tokens.Mint(f.ring, testIssuer, []string{"llm-gateway", "gatehouse"}, c)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}

	set, err := jwk.Parse(f.ring.JWKS())
	if err != nil {
		t.Fatalf("parse JWKS: %v", err)
	}
	parsed, err := jwt.Parse([]byte(token), jwt.WithKeySet(set), jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(f.clock.Now)), jwt.WithIssuer(testIssuer), jwt.WithAudience("gatehouse"))
	if err != nil {
		t.Fatalf("jwt.Parse through the JWKS: %v", err)
	}
	if parsed.JwtID() != c.ID || parsed.Subject() != c.Subject || !parsed.Expiration().Equal(c.ExpiresAt) {
		t.Fatalf("jwt.Parse: jti %q sub %q exp %s", parsed.JwtID(), parsed.Subject(), parsed.Expiration())
	}

	parts := strings.Split(token, ".")
	var header map[string]any
	if err := json.Unmarshal(mustDecode(t, parts[0]), &header); err != nil {
		t.Fatal(err)
	}
	wantHeader := map[string]any{"alg": jwa.ES256.String(), "typ": "at+jwt", "kid": f.ring.CurrentKID()}
	if !reflect.DeepEqual(header, wantHeader) {
		t.Fatalf("header = %v, want %v", header, wantHeader)
	}

	var payload map[string]any
	if err := json.Unmarshal(mustDecode(t, parts[1]), &payload); err != nil {
		t.Fatal(err)
	}
	iat := float64(c.IssuedAt.Unix())
	wantPayload := map[string]any{
		"iss":        testIssuer,
		"sub":        c.Subject,
		"aud":        []any{"gatehouse", "llm-gateway"},
		"iat":        iat,
		"nbf":        iat,
		"exp":        float64(c.ExpiresAt.Unix()),
		"jti":        c.ID,
		"client_id":  c.ID,
		"token_kind": "personal",
		"role":       "member",
		"scope":      "models:use tokens:personal",
		"models":     []any{"llama3*", "gpt-4o"},
		"email":      "alice@example.com",
		"name":       "Alice Example",
	}
	if !reflect.DeepEqual(payload, wantPayload) {
		t.Fatalf("payload = %v\nwant      %v", payload, wantPayload)
	}
}

func TestMintOmitsAbsentOptionalClaims(t *testing.T) {
	f := newFixture(t, "ES256")
	c := f.claims()
	c.Kind, c.Subject = tokens.KindSystem, "system:"+c.ID
	c.Email, c.Name, c.Models, c.Scope = "", "", nil, nil
	token := f.mint(t, c)

	var payload map[string]any
	if err := json.Unmarshal(mustDecode(t, strings.Split(token, ".")[1]), &payload); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"models", "email", "name"} {
		if v, ok := payload[name]; ok {
			t.Errorf("claim %s = %v, want it absent", name, v)
		}
	}
	if payload["scope"] != "" {
		t.Errorf(`scope = %v, want ""`, payload["scope"])
	}

	got, err := f.verifier.Verify(token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Models != nil || len(got.Scope) != 0 || got.Email != "" || got.Name != "" {
		t.Fatalf("Verify = models %#v scope %#v email %q name %q, want nil models (every model) and empty rest",
			got.Models, got.Scope, got.Email, got.Name)
	}
}

// An empty models list allows no model at all, which is not the same as an
// absent one: the distinction must survive minting and verifying.
func TestMintKeepsEmptyModelsList(t *testing.T) {
	f := newFixture(t, "ES256")
	c := f.claims()
	c.Models = []string{}
	token := f.mint(t, c)

	if payload := string(mustDecode(t, strings.Split(token, ".")[1])); !strings.Contains(payload, `"models":[]`) {
		t.Fatalf("payload %s has no empty models array", payload)
	}
	got, err := f.verifier.Verify(token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Models == nil || len(got.Models) != 0 {
		t.Fatalf("Models = %#v, want an empty, non-nil list", got.Models)
	}
}

func TestMintRefusesClaimsVerifyWouldRefuse(t *testing.T) {
	f := newFixture(t, "ES256")
	for _, tc := range []struct {
		name      string
		issuer    string
		audiences []string
		change    func(*tokens.Claims)
	}{
		{name: "no issuer", change: func(*tokens.Claims) {}},
		{name: "no ID", issuer: testIssuer, change: func(c *tokens.Claims) { c.ID = "" }},
		{name: "no subject", issuer: testIssuer, change: func(c *tokens.Claims) { c.Subject = "" }},
		{name: "unknown kind", issuer: testIssuer, change: func(c *tokens.Claims) { c.Kind = "admin" }},
		{name: "no issue time", issuer: testIssuer, change: func(c *tokens.Claims) { c.IssuedAt = time.Time{} }},
		{name: "expiry not after issue", issuer: testIssuer, change: func(c *tokens.Claims) { c.ExpiresAt = c.IssuedAt.Add(999 * time.Millisecond) }},
		{name: "empty audience", issuer: testIssuer, audiences: []string{""}, change: func(*tokens.Claims) {}},
		{name: "permission with a space", issuer: testIssuer, change: func(c *tokens.Claims) { c.Scope = []string{"models:use tokens:system"} }},
		{name: "empty permission", issuer: testIssuer, change: func(c *tokens.Claims) { c.Scope = []string{""} }},
		{name: "empty model pattern", issuer: testIssuer, change: func(c *tokens.Claims) { c.Models = []string{""} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.claims()
			tc.change(&c)
			token, err := tokens.Mint(f.ring, tc.issuer, tc.audiences, c)
			if err == nil || token != "" {
				t.Fatalf("Mint = %q, %v; want an error", token, err)
			}
		})
	}
}

type failingSigner struct{}

var errSignerDown = errors.New("signer down")

func (failingSigner) Sign(map[string]any, string) (string, error) { return "", errSignerDown }

func TestMintReportsSignerFailure(t *testing.T) {
	f := newFixture(t, "ES256")
	if _, err := tokens.Mint(failingSigner{}, testIssuer, nil, f.claims()); !errors.Is(err, errSignerDown) {
		t.Fatalf("Mint error = %v, want it to wrap the signer's", err)
	}
}
