package tokens_test

import (
	"crypto/elliptic"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/tokens"
)

func mustVerify(t *testing.T, v *tokens.Verifier, token string) tokens.Claims {
	t.Helper()
	c, err := v.Verify(token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return c
}

func TestCacheHitSkipsKeyLookupAndReturnsTheSameClaims(t *testing.T) {
	f := newFixture(t, "ES256")
	token := f.mint(t, f.claims())

	first := mustVerify(t, f.verifier, token)
	second := mustVerify(t, f.verifier, token)
	if calls := f.keys.calls.Load(); calls != 1 {
		t.Fatalf("KeySource called %d times for two verifications of one token, want 1", calls)
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("cache hit = %+v\nfirst     = %+v", second, first)
	}
}

func TestCachedClaimsBelongToTheCaller(t *testing.T) {
	f := newFixture(t, "ES256")
	token := f.mint(t, f.claims())

	first := mustVerify(t, f.verifier, token)
	first.Scope[0], first.Models[0] = "admin:all", "*"
	_ = append(first.Scope, "tokens:system")
	second := mustVerify(t, f.verifier, token)
	second.Scope = append(second.Scope, "tokens:system")

	third := mustVerify(t, f.verifier, token)
	if want := []string{"models:use", "tokens:personal"}; !reflect.DeepEqual(third.Scope, want) {
		t.Fatalf("Scope after callers changed theirs = %v, want %v", third.Scope, want)
	}
	if want := []string{"llama3*", "gpt-4o"}; !reflect.DeepEqual(third.Models, want) {
		t.Fatalf("Models after callers changed theirs = %v, want %v", third.Models, want)
	}
}

// A hit applies the same time window as a fresh verification: a cached token
// is refused from the moment a fresh check would refuse it.
func TestCachedTokenIsRefusedOnceExpired(t *testing.T) {
	f := newFixture(t, "ES256")
	c := f.claims()
	c.ExpiresAt = c.IssuedAt.Add(time.Hour)
	token := f.mint(t, c)
	mustVerify(t, f.verifier, token)

	f.clock.Set(c.ExpiresAt.Add(29 * time.Second))
	mustVerify(t, f.verifier, token)

	f.clock.Set(c.ExpiresAt.Add(30 * time.Second))
	if _, err := f.verifier.Verify(token); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Fatalf("Verify at exp+skew = %v, want ErrInvalidToken", err)
	}
	if calls := f.keys.calls.Load(); calls != 1 {
		t.Fatalf("KeySource called %d times, want 1: the refusal must come from the cache entry", calls)
	}

	// Back in time the entry serves again: the cache decides by the clock,
	// not by what it saw last.
	f.clock.Set(c.IssuedAt)
	mustVerify(t, f.verifier, token)
}

func TestCachedTokenIsRefusedBeforeItsValidity(t *testing.T) {
	f := newFixture(t, "ES256")
	c := f.claims()
	token := f.mint(t, c)
	mustVerify(t, f.verifier, token)

	f.clock.Set(c.IssuedAt.Add(-31 * time.Second)) // the clock was stepped back
	if _, err := f.verifier.Verify(token); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Fatalf("Verify before nbf-skew = %v, want ErrInvalidToken", err)
	}
}

func TestForgetDropsOnlyThatToken(t *testing.T) {
	f := newFixture(t, "ES256")
	revoked, kept := f.claims(), f.claims()
	kept.ID = "0195f1e2-7c3a-7d41-9b2e-5a6c7d8e9f02"
	revokedToken, keptToken := f.mint(t, revoked), f.mint(t, kept)
	mustVerify(t, f.verifier, revokedToken)
	mustVerify(t, f.verifier, keptToken)

	f.verifier.Forget(revoked.ID)
	f.verifier.Forget("never-cached")
	mustVerify(t, f.verifier, keptToken)
	if calls := f.keys.calls.Load(); calls != 2 {
		t.Fatalf("KeySource calls = %d, want 2: Forget dropped the other token", calls)
	}
	mustVerify(t, f.verifier, revokedToken)
	if calls := f.keys.calls.Load(); calls != 3 {
		t.Fatalf("KeySource calls = %d, want 3: Forget kept the revoked token cached", calls)
	}
}

// An ECDSA signature (r, s) has a twin (r, n−s) that verifies too, so one
// token can be spelled two ways that the cache holds apart. Forget must drop
// both; the caller's revocation check by jti covers both anyway.
func TestForgetDropsEverySpellingOfAToken(t *testing.T) {
	f := newFixture(t, "ES256")
	c := f.claims()
	token := f.mint(t, c)
	parts := strings.Split(token, ".")
	sig := mustDecode(t, parts[2])
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	twinSig := append(sig[:32:32], s.FillBytes(make([]byte, 32))...)
	twin := parts[0] + "." + parts[1] + "." + b64(twinSig)

	mustVerify(t, f.verifier, token)
	mustVerify(t, f.verifier, twin)
	f.verifier.Forget(c.ID)
	mustVerify(t, f.verifier, token)
	mustVerify(t, f.verifier, twin)
	if calls := f.keys.calls.Load(); calls != 4 {
		t.Fatalf("KeySource calls = %d, want 4: both spellings verified, forgotten, verified afresh", calls)
	}
}

func TestPurgeDropsEveryToken(t *testing.T) {
	f := newFixture(t, "ES256")
	token := f.mint(t, f.claims())
	mustVerify(t, f.verifier, token)
	f.verifier.Purge()
	mustVerify(t, f.verifier, token)
	if calls := f.keys.calls.Load(); calls != 2 {
		t.Fatalf("KeySource calls = %d, want 2", calls)
	}
}

func TestRefusedTokenIsNotCached(t *testing.T) {
	f := newFixture(t, "ES256")
	parts := strings.Split(f.mint(t, f.claims()), ".")
	other := f.claims()
	other.ID = "other"
	forged := parts[0] + "." + strings.Split(f.mint(t, other), ".")[1] + "." + parts[2]

	for i := range 2 {
		if _, err := f.verifier.Verify(forged); !errors.Is(err, tokens.ErrInvalidToken) {
			t.Fatalf("Verify #%d of a forged token = %v, want ErrInvalidToken", i+1, err)
		}
	}
	if calls := f.keys.calls.Load(); calls != 2 {
		t.Fatalf("KeySource calls = %d, want 2: each refusal checks afresh", calls)
	}
}

func TestVerifierWithoutCache(t *testing.T) {
	f := newFixture(t, "ES256")
	v := tokens.NewVerifier(f.keys, tokens.VerifierConfig{Issuer: testIssuer, CacheSize: -1, Now: f.clock.Now})
	token := f.mint(t, f.claims())
	mustVerify(t, v, token)
	mustVerify(t, v, token)
	v.Forget("x")
	v.Purge()
	if calls := f.keys.calls.Load(); calls != 2 {
		t.Fatalf("KeySource calls = %d, want 2", calls)
	}
}

func TestConcurrentVerify(t *testing.T) {
	f := newFixture(t, "ES256")
	v := tokens.NewVerifier(f.keys, tokens.VerifierConfig{Issuer: testIssuer, CacheSize: 8, Now: f.clock.Now})
	var good []string
	for i := range 16 {
		c := f.claims()
		c.ID = fmt.Sprintf("tok-%d", i)
		good = append(good, f.mint(t, c))
	}
	bad := good[0][:len(good[0])-2] + "AA"

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				token := good[(w+i)%len(good)]
				c, err := v.Verify(token)
				if err != nil || c.ID != fmt.Sprintf("tok-%d", (w+i)%len(good)) {
					errs <- fmt.Errorf("Verify(good) = %q, %v", c.ID, err)
					return
				}
				if _, err := v.Verify(bad); err == nil {
					errs <- errors.New("Verify(bad) succeeded")
					return
				}
				switch i % 50 {
				case 10:
					v.Forget(c.ID)
				case 20:
					v.Purge()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
