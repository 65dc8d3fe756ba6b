package keys_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/gatehouse/gatehouse/keys"
)

const (
	testIssuer   = "https://chat.example.com"
	testAudience = "http://127.0.0.1:11434"
)

// parseAssertion validates an assertion the way an upstream would: against
// the JWKS, with its own issuer, audience and clock.
func parseAssertion(t *testing.T, ring *keys.Ring, clock *fakeClock, token string) jwt.Token {
	t.Helper()
	set, err := jwk.Parse(ring.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse([]byte(token),
		jwt.WithKeySet(set),
		jwt.WithIssuer(testIssuer),
		jwt.WithAudience(testAudience),
		jwt.WithClock(jwt.ClockFunc(clock.Now)),
	)
	if err != nil {
		t.Fatalf("upstream refuses the assertion: %v", err)
	}
	return parsed
}

func decodeSegment(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAssertionCarriesIdentity(t *testing.T) {
	clock := newFakeClock()
	ring := mustRing(t, newTestStore(t), keys.RingConfig{}, clock)
	now := clock.Now().Unix()

	token, err := ring.Assertion(testIssuer, testAudience, "u-42", "alice@example.com", "admin", 30*time.Second)
	if err != nil {
		t.Fatalf("Assertion: %v", err)
	}
	parsed := parseAssertion(t, ring, clock, token)

	header := decodeSegment(t, token, 0)
	if len(header) != 3 || header["typ"] != "JWT" || header["alg"] != "ES256" || header["kid"] != ring.CurrentKID() {
		t.Fatalf("header = %v, want typ JWT, alg ES256, kid %s", header, ring.CurrentKID())
	}
	claims := decodeSegment(t, token, 1)
	jti, _ := claims["jti"].(string)
	if raw, err := base64.RawURLEncoding.DecodeString(jti); err != nil || len(raw) != 12 {
		t.Fatalf("jti = %q, want 12 random bytes, base64url", jti)
	}
	want := map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "u-42",
		"email": "alice@example.com", "role": "admin",
		"iat": float64(now), "exp": float64(now + 30),
		"jti": jti,
	}
	if len(claims) != len(want) {
		t.Fatalf("claims = %v, want %v", claims, want)
	}
	for name, value := range want {
		if claims[name] != value {
			t.Fatalf("claim %s = %v, want %v (all claims %v)", name, claims[name], value, claims)
		}
	}
	if parsed.Subject() != "u-42" || parsed.Expiration().Unix() != now+30 {
		t.Fatalf("upstream sees sub %q exp %d", parsed.Subject(), parsed.Expiration().Unix())
	}

	clock.Advance(31 * time.Second)
	set, _ := jwk.Parse(ring.JWKS())
	if _, err := jwt.Parse([]byte(token), jwt.WithKeySet(set), jwt.WithClock(jwt.ClockFunc(clock.Now))); err == nil {
		t.Fatal("the upstream accepts the assertion after it expired")
	}
}

func TestAssertionLifetimeIsCappedAtOneMinute(t *testing.T) {
	clock := newFakeClock()
	ring := mustRing(t, newTestStore(t), keys.RingConfig{}, clock)
	for _, tc := range []struct {
		name    string
		ttl     time.Duration
		seconds float64
	}{
		{"under the cap", 10 * time.Second, 10},
		{"at the cap", time.Minute, 60},
		{"over the cap", time.Hour, 60},
		{"zero means the cap", 0, 60},
		{"negative means the cap", -time.Second, 60},
		{"fractions round up", 1500 * time.Millisecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token, err := ring.Assertion(testIssuer, testAudience, "u-1", "a@example.com", "user", tc.ttl)
			if err != nil {
				t.Fatal(err)
			}
			claims := decodeSegment(t, token, 1)
			if got := claims["exp"].(float64) - claims["iat"].(float64); got != tc.seconds {
				t.Fatalf("exp - iat = %v s, want %v s", got, tc.seconds)
			}
		})
	}
}

func TestAssertionOmitsEmptyEmailAndRole(t *testing.T) {
	clock := newFakeClock()
	ring := mustRing(t, newTestStore(t), keys.RingConfig{}, clock)
	token, err := ring.Assertion(testIssuer, testAudience, "system:t-1", "", "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	parseAssertion(t, ring, clock, token)
	claims := decodeSegment(t, token, 1)
	if _, ok := claims["email"]; ok {
		t.Fatalf("claims = %v, want no email", claims)
	}
	if _, ok := claims["role"]; ok {
		t.Fatalf("claims = %v, want no role", claims)
	}
}

func TestAssertionIDsAreUnique(t *testing.T) {
	ring := mustRing(t, newTestStore(t), keys.RingConfig{}, newFakeClock())
	seen := map[any]bool{}
	for range 100 {
		token, err := ring.Assertion(testIssuer, testAudience, "u-1", "", "user", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		jti := decodeSegment(t, token, 1)["jti"]
		if seen[jti] {
			t.Fatalf("jti %v issued twice", jti)
		}
		seen[jti] = true
	}
}

func TestAssertionRequiresIssuerAudienceAndSubject(t *testing.T) {
	ring := mustRing(t, newTestStore(t), keys.RingConfig{}, newFakeClock())
	for _, tc := range []struct{ name, iss, aud, sub string }{
		{"no issuer", "", testAudience, "u-1"},
		{"no audience", testIssuer, "", "u-1"},
		{"no subject", testIssuer, testAudience, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token, err := ring.Assertion(tc.iss, tc.aud, tc.sub, "a@example.com", "user", time.Minute)
			if token != "" || err == nil || err.Error() != "assertion: issuer, audience and subject are required" {
				t.Fatalf("Assertion = %q, %v", token, err)
			}
		})
	}
}

func BenchmarkAssertion(b *testing.B) {
	ring := mustRing(b, newTestStore(b), keys.RingConfig{}, newFakeClock())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ring.Assertion(testIssuer, testAudience, "u-42", "alice@example.com", "admin", time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	})
}
