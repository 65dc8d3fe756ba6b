package tokens_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/gatehouse/gatehouse/keys"
	"github.com/gatehouse/gatehouse/tokens"
)

func es256Signer(t testing.TB, key *ecdsa.PrivateKey) func([]byte) []byte {
	return func(input []byte) []byte {
		digest := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	}
}

func rs256Signer(t testing.TB, key *rsa.PrivateKey) func([]byte) []byte {
	return func(input []byte) []byte {
		digest := sha256.Sum256(input)
		sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

func hs256Signer(key []byte) func([]byte) []byte {
	return func(input []byte) []byte {
		mac := hmac.New(sha256.New, key)
		mac.Write(input)
		return mac.Sum(nil)
	}
}

// publicKeyPEM is the ring's public key as the PEM an attacker would feed
// to a verifier that lets the header choose HS256.
func publicKeyPEM(t *testing.T, f *fixture) []byte {
	t.Helper()
	key, _, ok := f.ring.PublicKey(f.ring.CurrentKID())
	if !ok {
		t.Fatal("ring has no current public key")
	}
	raw, err := jwk.PublicRawKeyOf(key)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// withClaim returns m with name set to value, or deleted when value is nil.
func withClaim(m map[string]any, name string, value any) map[string]any {
	if value == nil {
		delete(m, name)
	} else {
		m[name] = value
	}
	return m
}

// TestVerifyRefuses lists the tokens a verifier must refuse, with the reason
// it gives; every refusal wraps ErrInvalidToken and returns no claims.
func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t, "ES256")
	kid := f.ring.CurrentKID()
	now := f.clock.Now()
	otherEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idp := newRing(t, "ES256", f.clock) // an identity provider's keys
	header := func(alg string, extra ...any) map[string]any {
		h := map[string]any{"alg": alg, "typ": "at+jwt", "kid": kid}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i].(string)] = extra[i+1]
		}
		return h
	}
	valid := f.mint(t, f.claims())
	parts := strings.Split(valid, ".")

	for _, tc := range []struct {
		name   string
		token  func(t *testing.T) string
		reason string
	}{
		// Encoding.
		{"empty", func(*testing.T) string { return "" }, "not a compact JWS"},
		{"garbage", func(*testing.T) string { return "not a token" }, "not a compact JWS"},
		{"three dots", func(*testing.T) string { return "..." }, "not a compact JWS"},
		{"two dots", func(*testing.T) string { return ".." }, "not a compact JWS"},
		{"two parts", func(*testing.T) string { return parts[0] + "." + parts[1] }, "not a compact JWS"},
		{"four parts", func(*testing.T) string { return valid + "." + parts[2] }, "not a compact JWS"},
		{"oversized garbage", func(*testing.T) string { return strings.Repeat("a", 10<<10) }, "too long"},
		{"oversized validly signed token", func(t *testing.T) string {
			c := f.claims()
			c.Name = strings.Repeat("n", 10<<10)
			return f.mint(t, c)
		}, "too long"},
		{"line break in payload", func(*testing.T) string {
			return parts[0] + "." + parts[1][:10] + "\n" + parts[1][10:] + "." + parts[2]
		}, "not a compact JWS"},
		{"padded signature", func(*testing.T) string { return valid + "==" }, "not a compact JWS"},
		{"signature spelled with non-zero trailing bits", func(t *testing.T) string {
			// The last of 86 characters carries 4 padding bits: flipping
			// one keeps the decoded signature, so only a strict decoder
			// notices that the token string was changed.
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			last := strings.IndexByte(alphabet, valid[len(valid)-1])
			altered := valid[:len(valid)-1] + string(alphabet[last^1])
			a, _ := base64.RawURLEncoding.DecodeString(strings.Split(altered, ".")[2])
			if string(a) != string(mustDecode(t, parts[2])) {
				t.Fatal("altered signature does not decode to the original")
			}
			return altered
		}, "signature is not canonical base64url"},
		{"header not base64url", func(*testing.T) string { return "e30=." + parts[1] + "." + parts[2] }, "not a compact JWS"},
		{"header not JSON", func(*testing.T) string { return b64([]byte("alg")) + "." + parts[1] + "." + parts[2] }, "header is not a JSON object"},
		{"header null", func(*testing.T) string { return b64([]byte("null")) + "." + parts[1] + "." + parts[2] }, "header is not a JSON object"},

		// Header, checked before any cryptography.
		{"alg none without signature", func(t *testing.T) string {
			return compact(t, header("none"), f.claimsMap(), nil)
		}, "not a compact JWS"},
		{"alg none with a signature", func(t *testing.T) string {
			return compact(t, header("none"), f.claimsMap(), func([]byte) []byte { return []byte("x") })
		}, "alg is not the key's algorithm"},
		{"HS256 keyed with the public key PEM", func(t *testing.T) string {
			return compact(t, header("HS256"), f.claimsMap(), hs256Signer(publicKeyPEM(t, f)))
		}, "alg is not the key's algorithm"},
		{"HS256 keyed with the JWKS", func(t *testing.T) string {
			return compact(t, header("HS256"), f.claimsMap(), hs256Signer(f.ring.JWKS()))
		}, "alg is not the key's algorithm"},
		{"RS256 signature under an ES256 kid", func(t *testing.T) string {
			return compact(t, header("RS256"), f.claimsMap(), rs256Signer(t, otherRSA))
		}, "alg is not the key's algorithm"},
		{"ES384 header for an ES256 key", func(t *testing.T) string {
			return compact(t, header("ES384"), f.claimsMap(), es256Signer(t, otherEC))
		}, "alg is not the key's algorithm"},
		{"unknown kid", func(t *testing.T) string {
			h := header("ES256")
			h["kid"] = "not-a-gatehouse-key"
			return compact(t, h, f.claimsMap(), es256Signer(t, otherEC))
		}, "unknown kid"},
		{"no kid", func(t *testing.T) string {
			h := header("ES256")
			delete(h, "kid")
			return compact(t, h, f.claimsMap(), es256Signer(t, otherEC))
		}, "header has no kid"},
		{"numeric kid", func(t *testing.T) string {
			return compact(t, header("ES256", "kid", 7), f.claimsMap(), es256Signer(t, otherEC))
		}, "header has no kid"},
		{"no alg", func(t *testing.T) string {
			h := header("ES256")
			delete(h, "alg")
			return compact(t, h, f.claimsMap(), es256Signer(t, otherEC))
		}, "header has no alg"},
		{"crit header", func(t *testing.T) string {
			return compact(t, header("ES256", "crit", []string{"exp"}, "exp", 1), f.claimsMap(), es256Signer(t, otherEC))
		}, "header has a parameter other than alg, kid and typ"},
		{"jku header", func(t *testing.T) string {
			return compact(t, header("ES256", "jku", "https://evil.example/jwks"), f.claimsMap(), es256Signer(t, otherEC))
		}, "header has a parameter other than alg, kid and typ"},
		{"jwk header", func(t *testing.T) string {
			return compact(t, header("ES256", "jwk", map[string]any{"kty": "EC"}), f.claimsMap(), es256Signer(t, otherEC))
		}, "header has a parameter other than alg, kid and typ"},
		{"x5u header", func(t *testing.T) string {
			return compact(t, header("ES256", "x5u", "https://evil.example/cert"), f.claimsMap(), es256Signer(t, otherEC))
		}, "header has a parameter other than alg, kid and typ"},
		{"x5c header", func(t *testing.T) string {
			return compact(t, header("ES256", "x5c", []string{"MIIB"}), f.claimsMap(), es256Signer(t, otherEC))
		}, "header has a parameter other than alg, kid and typ"},
		{"b64 false header", func(t *testing.T) string {
			return compact(t, header("ES256", "b64", false), f.claimsMap(), es256Signer(t, otherEC))
		}, "header has a parameter other than alg, kid and typ"},
		{"typ JWT: an upstream assertion", func(t *testing.T) string {
			assertion, err := f.ring.Assertion(testIssuer, "gatehouse", "alice", "alice@example.com", "member", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return assertion
		}, "typ is not at+jwt"},
		{"typ JWT over API token claims", func(t *testing.T) string { return f.sign(t, f.claimsMap(), "JWT") }, "typ is not at+jwt"},
		{"no typ", func(t *testing.T) string { return f.sign(t, f.claimsMap(), "") }, "typ is not at+jwt"},
		{"IdP ID token", func(t *testing.T) string {
			token, err := idp.Sign(map[string]any{
				"iss": "https://idp.example", "aud": "gatehouse-client", "sub": "alice", "nonce": "n-0S6",
				"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "email": "alice@example.com",
			}, "JWT")
			if err != nil {
				t.Fatal(err)
			}
			return token
		}, "typ is not at+jwt"},
		{"IdP access token", func(t *testing.T) string {
			token, err := idp.Sign(withClaim(f.claimsMap(), "iss", "https://idp.example"), "at+jwt")
			if err != nil {
				t.Fatal(err)
			}
			return token
		}, "unknown kid"},

		// Signature.
		{"payload tampered, signature kept", func(t *testing.T) string {
			var claims map[string]any
			if err := json.Unmarshal(mustDecode(t, parts[1]), &claims); err != nil {
				t.Fatal(err)
			}
			claims["role"] = "admin"
			payload, _ := json.Marshal(claims)
			return parts[0] + "." + b64(payload) + "." + parts[2]
		}, "bad signature"},
		{"signed by an unrelated key under the ring's kid", func(t *testing.T) string {
			return compact(t, header("ES256"), f.claimsMap(), es256Signer(t, otherEC))
		}, "bad signature"},
		{"signature of another token", func(t *testing.T) string {
			c := f.claims()
			c.ID = "another-token"
			other := f.mint(t, c)
			return parts[0] + "." + parts[1] + "." + strings.Split(other, ".")[2]
		}, "bad signature"},

		// Claims.
		{"wrong issuer", func(t *testing.T) string {
			token, err := tokens.Mint(f.ring, "https://other.example", nil, f.claims())
			if err != nil {
				t.Fatal(err)
			}
			return token
		}, "wrong issuer"},
		{"no issuer", func(t *testing.T) string { return f.sign(t, withClaim(f.claimsMap(), "iss", nil), "at+jwt") }, "wrong issuer"},
		{"wrong audience", func(t *testing.T) string {
			return f.sign(t, withClaim(f.claimsMap(), "aud", []string{"other-service"}), "at+jwt")
		}, "wrong audience"},
		{"no audience", func(t *testing.T) string { return f.sign(t, withClaim(f.claimsMap(), "aud", nil), "at+jwt") }, "wrong audience"},
		{"expired beyond the skew", func(t *testing.T) string {
			c := f.claims()
			c.IssuedAt, c.ExpiresAt = now.Add(-time.Hour), now.Add(-31*time.Second)
			return f.mint(t, c)
		}, "expired"},
		{"expiring exactly at now-skew", func(t *testing.T) string {
			c := f.claims()
			c.IssuedAt, c.ExpiresAt = now.Add(-time.Hour), now.Add(-30*time.Second)
			return f.mint(t, c)
		}, "expired"},
		{"nbf beyond the skew", func(t *testing.T) string {
			return f.sign(t, withClaim(f.claimsMap(), "nbf", now.Add(31*time.Second).Unix()), "at+jwt")
		}, "not yet valid"},
		{"issued beyond the skew", func(t *testing.T) string {
			c := f.claims()
			c.IssuedAt = now.Add(31 * time.Second)
			return f.mint(t, c)
		}, "not yet valid"},
		{"no exp", func(t *testing.T) string { return f.sign(t, withClaim(f.claimsMap(), "exp", nil), "at+jwt") }, "exp, nbf or iat missing or not a NumericDate"},
		{"no iat", func(t *testing.T) string { return f.sign(t, withClaim(f.claimsMap(), "iat", nil), "at+jwt") }, "exp, nbf or iat missing or not a NumericDate"},
		{"exp as a string", func(t *testing.T) string {
			return f.sign(t, withClaim(f.claimsMap(), "exp", "4102444800"), "at+jwt")
		}, "exp, nbf or iat missing or not a NumericDate"},
		{"no jti", func(t *testing.T) string { return f.sign(t, withClaim(f.claimsMap(), "jti", nil), "at+jwt") }, "jti missing or not equal to client_id"},
		{"jti not client_id", func(t *testing.T) string {
			return f.sign(t, withClaim(f.claimsMap(), "client_id", "tok-2"), "at+jwt")
		}, "jti missing or not equal to client_id"},
		{"no sub", func(t *testing.T) string { return f.sign(t, withClaim(f.claimsMap(), "sub", nil), "at+jwt") }, "sub missing"},
		{"unknown token_kind", func(t *testing.T) string {
			return f.sign(t, withClaim(f.claimsMap(), "token_kind", "admin"), "at+jwt")
		}, "token_kind is not personal, user or system"},
		{"scope as an array", func(t *testing.T) string {
			return f.sign(t, withClaim(f.claimsMap(), "scope", []string{"models:use"}), "at+jwt")
		}, "scope missing or not a string"},
		{"no scope", func(t *testing.T) string { return f.sign(t, withClaim(f.claimsMap(), "scope", nil), "at+jwt") }, "scope missing or not a string"},
		{"models null", func(t *testing.T) string {
			return f.sign(t, withClaim(f.claimsMap(), "models", json.RawMessage("null")), "at+jwt")
		}, "models is not an array of strings"},
		{"models as a string", func(t *testing.T) string {
			return f.sign(t, withClaim(f.claimsMap(), "models", "gpt-4o"), "at+jwt")
		}, "models is not an array of strings"},
		{"role as a number", func(t *testing.T) string {
			return f.sign(t, withClaim(f.claimsMap(), "role", 1), "at+jwt")
		}, "claims are not a JSON object of the expected types"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := tc.token(t)
			claims, err := f.verifier.Verify(token)
			if !errors.Is(err, tokens.ErrInvalidToken) {
				t.Fatalf("Verify error = %v, want ErrInvalidToken", err)
			}
			if want := "invalid token: " + tc.reason; err.Error() != want {
				t.Errorf("Verify error = %q, want %q", err, want)
			}
			if claims.ID != "" || claims.Subject != "" || claims.Scope != nil {
				t.Errorf("Verify returned claims %+v with its refusal", claims)
			}
		})
	}
}

func TestVerifyAccepts(t *testing.T) {
	f := newFixture(t, "ES256")
	now := f.clock.Now()
	for _, tc := range []struct {
		name  string
		token func(t *testing.T) string
	}{
		{"typ application/at+jwt", func(t *testing.T) string { return f.sign(t, f.claimsMap(), "application/at+jwt") }},
		{"typ in upper case", func(t *testing.T) string { return f.sign(t, f.claimsMap(), "AT+JWT") }},
		{"aud as a single string", func(t *testing.T) string {
			return f.sign(t, withClaim(f.claimsMap(), "aud", "gatehouse"), "at+jwt")
		}},
		{"fractional NumericDates", func(t *testing.T) string {
			m := f.claimsMap()
			m["iat"], m["exp"] = float64(now.Unix())+0.5, float64(now.Unix())+60.25
			return f.sign(t, m, "at+jwt")
		}},
		{"expired within the skew", func(t *testing.T) string {
			c := f.claims()
			c.IssuedAt, c.ExpiresAt = now.Add(-time.Hour), now.Add(-29*time.Second)
			return f.mint(t, c)
		}},
		{"issued and valid from within the skew", func(t *testing.T) string {
			c := f.claims()
			c.IssuedAt = now.Add(30 * time.Second)
			return f.mint(t, c)
		}},
		{"unknown extra claims", func(t *testing.T) string {
			return f.sign(t, withClaim(f.claimsMap(), "cnf", map[string]any{"x5t#S256": "abc"}), "at+jwt")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.verifier.Verify(tc.token(t)); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestVerifierAudienceAndIssuerConfig(t *testing.T) {
	f := newFixture(t, "ES256")
	withExtra, err := tokens.Mint(f.ring, testIssuer, []string{"llm-gateway"}, f.claims())
	if err != nil {
		t.Fatal(err)
	}
	plain := f.mint(t, f.claims())

	gateway := tokens.NewVerifier(f.ring, tokens.VerifierConfig{Issuer: testIssuer, Audience: "llm-gateway", Now: f.clock.Now})
	if _, err := gateway.Verify(withExtra); err != nil {
		t.Errorf("verifier of audience llm-gateway refused a token for it: %v", err)
	}
	if _, err := gateway.Verify(plain); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Errorf("verifier of audience llm-gateway accepted a token for gatehouse only: %v", err)
	}

	noIssuer := tokens.NewVerifier(f.ring, tokens.VerifierConfig{Now: f.clock.Now})
	if _, err := noIssuer.Verify(plain); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Errorf("verifier without an issuer accepted a token: %v", err)
	}
}

func TestVerifyAcrossAlgorithmsAndRotation(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			f := newFixture(t, alg)
			before := f.mint(t, f.claims())
			if _, alg2, _ := f.ring.PublicKey(f.ring.CurrentKID()); alg2 != alg {
				t.Fatalf("ring signs with %s, want %s", alg2, alg)
			}
			if _, err := f.verifier.Verify(before); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			f.clock.Advance(keys.DefaultPrepublish) // the next key may sign
			if _, err := f.ring.Rotate(t.Context()); err != nil {
				t.Fatal(err)
			}
			f.verifier.Purge()
			after := f.mint(t, f.claims())
			for name, token := range map[string]string{"before rotation": before, "after rotation": after} {
				if _, err := f.verifier.Verify(token); err != nil {
					t.Errorf("token minted %s: Verify: %v", name, err)
				}
			}
		})
	}
}
