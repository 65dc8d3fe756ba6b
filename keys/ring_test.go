package keys_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gatehouse/gatehouse/internal/testclock"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/gatehouse/gatehouse/keys"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/storetest"
)

// newTestStore opens an empty SQLite store, the real backend, in the test's
// temporary directory.
func newTestStore(t testing.TB) *store.SQLite { return storetest.OpenSQLite(t) }

// storedKeys returns every signing key in st, retired or not: listing as of
// the zero time leaves none out.
func storedKeys(t *testing.T, st *store.SQLite) []store.SigningKey {
	t.Helper()
	all, err := st.ListSigningKeys(context.Background(), time.Time{})
	if err != nil {
		t.Fatalf("list stored keys: %v", err)
	}
	return all
}

func storedKey(t *testing.T, st *store.SQLite, id string) store.SigningKey {
	t.Helper()
	for _, k := range storedKeys(t, st) {
		if k.ID == id {
			return k
		}
	}
	t.Fatalf("store has no key %s", id)
	return store.SigningKey{}
}

// fakeClock is the injected clock of the code under test.
type fakeClock = testclock.Clock

func newFakeClock() *fakeClock { return testclock.New(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)) }

func signingSealer(t testing.TB) *keys.Sealer {
	return mustSecret(t, testSecret).Sealer(keys.SigningKeyPurpose)
}

func mustRing(t testing.TB, ks keys.KeyStore, cfg keys.RingConfig, clock *fakeClock) *keys.Ring {
	t.Helper()
	ring, err := keys.NewRing(context.Background(), ks, signingSealer(t), cfg, clock.Now)
	if err != nil {
		t.Fatalf("NewRing: %v", err)
	}
	return ring
}

// verifyWithJWKS checks token the way an upstream would: only through the
// published JWKS document. It returns the payload and the protected header.
func verifyWithJWKS(t *testing.T, ring *keys.Ring, token string) ([]byte, jws.Headers) {
	t.Helper()
	set, err := jwk.Parse(ring.JWKS())
	if err != nil {
		t.Fatalf("parse JWKS: %v", err)
	}
	payload, err := jws.Verify([]byte(token), jws.WithKeySet(set))
	if err != nil {
		t.Fatalf("verify through JWKS: %v", err)
	}
	msg, err := jws.Parse([]byte(token))
	if err != nil {
		t.Fatal(err)
	}
	return payload, msg.Signatures()[0].ProtectedHeaders()
}

func jwksKIDs(t *testing.T, ring *keys.Ring) []string {
	t.Helper()
	var doc struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(ring.JWKS(), &doc); err != nil {
		t.Fatalf("decode JWKS: %v", err)
	}
	var kids []string
	for _, k := range doc.Keys {
		kids = append(kids, k.KID)
	}
	return kids
}

func TestNewRingCreatesSealedFirstKey(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	ring := mustRing(t, ks, keys.RingConfig{}, clock)

	kid := ring.CurrentKID()
	if n := len(storedKeys(t, ks)); n != 1 {
		t.Fatalf("store holds %d keys, want 1", n)
	}
	rec := storedKey(t, ks, kid)
	if rec.Algorithm != "ES256" || !rec.CreatedAt.Equal(clock.Now()) || rec.RetiredAt != nil || rec.PublishUntil != nil {
		t.Fatalf("stored key = {alg %s, created %s, retired %v, until %v}, want an active ES256 key created now",
			rec.Algorithm, rec.CreatedAt, rec.RetiredAt, rec.PublishUntil)
	}

	public, err := jwk.ParseKey(rec.PublicJWK)
	if err != nil {
		t.Fatalf("stored public JWK: %v", err)
	}
	if public.KeyID() != kid || public.Algorithm() != jwa.ES256 || public.KeyUsage() != "sig" {
		t.Fatalf("stored public JWK has kid %q alg %q use %q, want %q ES256 sig", public.KeyID(), public.Algorithm(), public.KeyUsage(), kid)
	}
	if bytes.Contains(rec.PublicJWK, []byte(`"d"`)) {
		t.Fatalf("stored public JWK has a private part: %s", rec.PublicJWK)
	}
	thumbprint, _ := public.Thumbprint(crypto.SHA256)
	if want := base64.RawURLEncoding.EncodeToString(thumbprint); kid != want {
		t.Fatalf("kid = %q, want the key's RFC 7638 thumbprint %q", kid, want)
	}

	// The private key is in the store only sealed, bound to its kid.
	der, err := signingSealer(t).Open(rec.PrivateSealed, []byte(kid))
	if err != nil {
		t.Fatalf("unseal stored private key with aad = kid: %v", err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatalf("sealed private key is not PKCS #8: %v", err)
	}
	private := parsed.(*ecdsa.PrivateKey)
	d, err := private.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, form := range [][]byte{d, []byte(base64.RawURLEncoding.EncodeToString(d)), []byte(base64.StdEncoding.EncodeToString(d))} {
		if bytes.Contains(rec.PrivateSealed, form) {
			t.Fatal("sealed private key contains the private scalar D")
		}
	}
	if _, err := signingSealer(t).Open(rec.PrivateSealed, []byte("other-kid")); !errors.Is(err, keys.ErrUnsealFailed) {
		t.Fatalf("unseal under another kid: err = %v, want ErrUnsealFailed", err)
	}
}

func TestNewRingLoadsStoredKey(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	first := mustRing(t, ks, keys.RingConfig{}, clock)
	token, err := first.Sign(map[string]any{"sub": "alice"}, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Hour)
	second := mustRing(t, ks, keys.RingConfig{}, clock)
	if n := len(storedKeys(t, ks)); second.CurrentKID() != first.CurrentKID() || n != 1 {
		t.Fatalf("second ring uses kid %s with %d stored keys, want the stored kid %s", second.CurrentKID(), n, first.CurrentKID())
	}
	if string(second.JWKS()) != string(first.JWKS()) {
		t.Fatalf("JWKS differ between instances:\n%s\n%s", first.JWKS(), second.JWKS())
	}
	verifyWithJWKS(t, second, token)
}

func TestNewRingWithAnotherSecretFails(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	mustRing(t, ks, keys.RingConfig{}, clock)

	other := mustSecret(t, "a different master secret of sufficient length").Sealer(keys.SigningKeyPurpose)
	ring, err := keys.NewRing(context.Background(), ks, other, keys.RingConfig{}, clock.Now)
	if ring != nil || !errors.Is(err, keys.ErrUnsealFailed) {
		t.Fatalf("NewRing = %v, %v; want nil and ErrUnsealFailed", ring, err)
	}
	if !strings.Contains(err.Error(), "the master secret is not the one it was stored with") {
		t.Fatalf("error %q does not say the secret changed", err)
	}
	if n := len(storedKeys(t, ks)); n != 1 {
		t.Fatalf("store holds %d keys, want the original key only", n)
	}
}

func TestNewRingRefusesStoredPublicKeyThatIsNotTheSealedKeys(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	kid := mustRing(t, ks, keys.RingConfig{}, clock).CurrentKID()

	// Someone with write access to the store, but not the secret, swaps in a
	// public key of their own: the tampered store holds the genuine sealed
	// private key next to the attacker's public key.
	_, attackerKey, _ := ed25519.GenerateKey(nil)
	forged, _ := jwk.FromRaw(attackerKey.Public())
	_ = forged.Set(jwk.KeyIDKey, kid)
	forgedJSON, _ := json.Marshal(forged)
	rec := storedKey(t, ks, kid)
	rec.PublicJWK = forgedJSON
	tampered := newTestStore(t)
	if err := tampered.PutSigningKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}

	_, err := keys.NewRing(context.Background(), tampered, signingSealer(t), keys.RingConfig{}, clock.Now)
	if err == nil || !strings.Contains(err.Error(), "signing key "+kid+": stored public key does not match its private key") {
		t.Fatalf("NewRing error = %v, want a mismatch error", err)
	}
}

func TestNewRingRefusesUnsupportedAlgorithms(t *testing.T) {
	for _, alg := range []string{"none", "HS256", "HS512", "PS256", "ES384", "es256"} {
		t.Run(alg, func(t *testing.T) {
			ks := newTestStore(t)
			_, err := keys.NewRing(context.Background(), ks, signingSealer(t), keys.RingConfig{Algorithm: alg}, newFakeClock().Now)
			want := fmt.Sprintf("signing algorithm %q is not supported: use ES256, EdDSA or RS256", alg)
			if err == nil || err.Error() != want {
				t.Fatalf("NewRing error = %v, want %q", err, want)
			}
			if len(storedKeys(t, ks)) != 0 {
				t.Fatal("a refused configuration stored a key")
			}
		})
	}
}

func TestSignedTokensVerifyThroughJWKS(t *testing.T) {
	for _, tc := range []struct {
		config string
		alg    jwa.SignatureAlgorithm
		kty    jwa.KeyType
		public any
	}{
		{"", jwa.ES256, jwa.EC, &ecdsa.PublicKey{}},
		{"ES256", jwa.ES256, jwa.EC, &ecdsa.PublicKey{}},
		{"EdDSA", jwa.EdDSA, jwa.OKP, ed25519.PublicKey{}},
		{"RS256", jwa.RS256, jwa.RSA, &rsa.PublicKey{}},
	} {
		t.Run(string(tc.alg)+"/config "+tc.config, func(t *testing.T) {
			ks := newTestStore(t)
			ring := mustRing(t, ks, keys.RingConfig{Algorithm: tc.config}, newFakeClock())
			if rec := storedKey(t, ks, ring.CurrentKID()); rec.Algorithm != tc.alg.String() {
				t.Fatalf("stored algorithm %q, want %q", rec.Algorithm, tc.alg)
			}

			claims := map[string]any{"sub": "alice", "scope": "chat:use", "exp": 1893456000}
			token, err := ring.Sign(claims, "at+jwt")
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			payload, headers := verifyWithJWKS(t, ring, token)
			var got map[string]any
			if err := json.Unmarshal(payload, &got); err != nil {
				t.Fatal(err)
			}
			if got["sub"] != "alice" || got["scope"] != "chat:use" || got["exp"] != 1893456000.0 || len(got) != 3 {
				t.Fatalf("verified payload = %v, want the signed claims", got)
			}
			if headers.Algorithm() != tc.alg || headers.KeyID() != ring.CurrentKID() || headers.Type() != "at+jwt" {
				t.Fatalf("header alg=%q kid=%q typ=%q, want %q %q at+jwt", headers.Algorithm(), headers.KeyID(), headers.Type(), tc.alg, ring.CurrentKID())
			}

			set, _ := jwk.Parse(ring.JWKS())
			published, _ := set.Key(0)
			if set.Len() != 1 || published.KeyType() != tc.kty || published.Algorithm() != tc.alg || published.KeyUsage() != "sig" || published.KeyID() != ring.CurrentKID() {
				t.Fatalf("JWKS = %s, want one public %s key with kid, alg %s and use sig", ring.JWKS(), tc.kty, tc.alg)
			}
			if bytes.Contains(ring.JWKS(), []byte(`"d"`)) || bytes.Contains(ring.JWKS(), []byte(`"p"`)) {
				t.Fatalf("JWKS publishes private parts: %s", ring.JWKS())
			}

			key, alg, ok := ring.PublicKey(ring.CurrentKID())
			if !ok || alg != tc.alg.String() {
				t.Fatalf("PublicKey = %v, %q, %v; want the key and %s", key, alg, ok, tc.alg)
			}
			if _, err := jws.Verify([]byte(token), jws.WithKey(jwa.SignatureAlgorithm(alg), key)); err != nil {
				t.Fatalf("verify with PublicKey: %v", err)
			}
			var raw any
			if err := key.Raw(&raw); err != nil || fmt.Sprintf("%T", raw) != fmt.Sprintf("%T", tc.public) {
				t.Fatalf("PublicKey holds a %T (%v), want a %T", raw, err, tc.public)
			}
			if _, _, ok := ring.PublicKey("unknown"); ok {
				t.Fatal("PublicKey found an unknown kid")
			}
		})
	}
}

func TestSignWithoutTypOmitsHeader(t *testing.T) {
	ring := mustRing(t, newTestStore(t), keys.RingConfig{}, newFakeClock())
	token, err := ring.Sign(map[string]any{}, "")
	if err != nil {
		t.Fatal(err)
	}
	header, _, _ := strings.Cut(token, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(header)
	var got map[string]any
	_ = json.Unmarshal(raw, &got)
	if len(got) != 2 || got["alg"] != "ES256" || got["kid"] != ring.CurrentKID() {
		t.Fatalf("protected header = %s, want only alg and kid", raw)
	}
}

func TestRotateRetiresOldKeyAndPublishesItUntilTokensExpire(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	const lifetime = 90 * 24 * time.Hour
	ring := mustRing(t, ks, keys.RingConfig{MaxTokenLifetime: lifetime}, clock)
	other := mustRing(t, ks, keys.RingConfig{MaxTokenLifetime: lifetime}, clock) // a second instance
	oldKID := ring.CurrentKID()
	oldToken, err := ring.Sign(map[string]any{"sub": "alice"}, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Minute)
	rotatedAt := clock.Now()
	newKID, err := ring.Rotate(context.Background())
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if newKID == oldKID || ring.CurrentKID() != newKID {
		t.Fatalf("after Rotate current kid = %s (returned %s), old %s; want a new current key", ring.CurrentKID(), newKID, oldKID)
	}
	old := storedKey(t, ks, oldKID)
	if old.RetiredAt == nil || !old.RetiredAt.Equal(rotatedAt) || old.PublishUntil == nil || !old.PublishUntil.Equal(rotatedAt.Add(lifetime)) {
		t.Fatalf("old key retired at %v, published until %v; want %s and %s", old.RetiredAt, old.PublishUntil, rotatedAt, rotatedAt.Add(lifetime))
	}
	if rec := storedKey(t, ks, newKID); rec.RetiredAt != nil || rec.PublishUntil != nil {
		t.Fatal("the new key is stored as retired")
	}

	newToken, err := ring.Sign(map[string]any{"sub": "bob"}, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}
	if _, headers := verifyWithJWKS(t, ring, newToken); headers.KeyID() != newKID {
		t.Fatalf("token signed after rotation has kid %s, want %s", headers.KeyID(), newKID)
	}
	verifyWithJWKS(t, ring, oldToken)
	if got := jwksKIDs(t, ring); !slices.Equal(got, []string{newKID, oldKID}) {
		t.Fatalf("JWKS kids = %v, want current then retired %v", got, []string{newKID, oldKID})
	}

	// The other instance signs with the old key until it reloads.
	if other.CurrentKID() != oldKID {
		t.Fatalf("other instance switched keys before reloading")
	}
	if err := other.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if other.CurrentKID() != newKID || !slices.Equal(jwksKIDs(t, other), []string{newKID, oldKID}) {
		t.Fatalf("after Reload other instance uses %s and publishes %v", other.CurrentKID(), jwksKIDs(t, other))
	}

	// The retired key goes when the last token it may have signed has expired,
	// whether or not anyone reloads.
	clock.Advance(lifetime - time.Second)
	if _, _, ok := ring.PublicKey(oldKID); !ok || len(jwksKIDs(t, ring)) != 2 {
		t.Fatal("retired key unpublished before its publish-until time")
	}
	clock.Advance(time.Second)
	for name, r := range map[string]*keys.Ring{"rotating instance": ring, "other instance": other} {
		if got := jwksKIDs(t, r); !slices.Equal(got, []string{newKID}) {
			t.Fatalf("%s: JWKS kids at publish-until = %v, want only %s", name, got, newKID)
		}
		if _, _, ok := r.PublicKey(oldKID); ok {
			t.Fatalf("%s: PublicKey still finds the retired key", name)
		}
	}
	if err := ring.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := jwksKIDs(t, ring); !slices.Equal(got, []string{newKID}) {
		t.Fatalf("JWKS kids after reload = %v, want only %s", got, newKID)
	}
}

func TestRotateRetiresKeysOtherInstancesMadeCurrent(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	a := mustRing(t, ks, keys.RingConfig{}, clock)
	b := mustRing(t, ks, keys.RingConfig{}, clock)
	clock.Advance(time.Second)
	kidA, err := a.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// b has not reloaded and rotates on its own view.
	clock.Advance(time.Second)
	kidB, err := b.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if storedKey(t, ks, kidA).RetiredAt == nil {
		t.Fatal("the key another instance made current is still active")
	}
	if err := a.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.CurrentKID() != kidB || b.CurrentKID() != kidB {
		t.Fatalf("instances sign with %s and %s, want both %s", a.CurrentKID(), b.CurrentKID(), kidB)
	}
}

func TestNewRingRotatesWhenConfiguredAlgorithmChanges(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	es := mustRing(t, ks, keys.RingConfig{Algorithm: "ES256"}, clock)
	token, _ := es.Sign(map[string]any{"sub": "alice"}, "at+jwt")

	clock.Advance(time.Hour)
	ed := mustRing(t, ks, keys.RingConfig{Algorithm: "EdDSA", MaxTokenLifetime: 24 * time.Hour}, clock)
	if ed.CurrentKID() == es.CurrentKID() {
		t.Fatal("changing the algorithm kept the old key current")
	}
	if _, alg, _ := ed.PublicKey(ed.CurrentKID()); alg != "EdDSA" {
		t.Fatalf("current key signs %s, want EdDSA", alg)
	}
	if until := storedKey(t, ks, es.CurrentKID()).PublishUntil; until == nil || !until.Equal(clock.Now().Add(24*time.Hour)) {
		t.Fatalf("old ES256 key published until %v, want %s", until, clock.Now().Add(24*time.Hour))
	}
	verifyWithJWKS(t, ed, token)
}

func TestReloadKeepsKeysWhenStoreFails(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	ring := mustRing(t, ks, keys.RingConfig{}, clock)
	kid, jwks := ring.CurrentKID(), string(ring.JWKS())

	// The database goes away under the running ring.
	if err := ks.Close(); err != nil {
		t.Fatal(err)
	}
	_, storeErr := ks.ListSigningKeys(context.Background(), clock.Now())
	if storeErr == nil {
		t.Fatal("a closed store listed keys")
	}
	err := ring.Reload(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "reload signing keys: ") || !strings.HasSuffix(err.Error(), storeErr.Error()) {
		t.Fatalf("Reload error = %v, want the store's error %q under \"reload signing keys\"", err, storeErr)
	}
	if ring.CurrentKID() != kid || string(ring.JWKS()) != jwks {
		t.Fatal("a failed reload changed the ring")
	}
	if _, err := ring.Sign(map[string]any{}, "JWT"); err != nil {
		t.Fatalf("Sign after a failed reload: %v", err)
	}
}

func TestNewRingRefusesNegativeLifetime(t *testing.T) {
	_, err := keys.NewRing(context.Background(), newTestStore(t), signingSealer(t), keys.RingConfig{MaxTokenLifetime: -time.Hour}, nil)
	if err == nil || err.Error() != "max token lifetime -1h0m0s is negative" {
		t.Fatalf("NewRing error = %v", err)
	}
}

func TestSignDuringRotateIsSafe(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	ring := mustRing(t, ks, keys.RingConfig{}, clock)
	const rotations = 5

	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				token, err := ring.Sign(map[string]any{"n": i}, "at+jwt")
				if err != nil {
					errs <- err
					return
				}
				msg, err := jws.Parse([]byte(token))
				if err != nil {
					errs <- err
					return
				}
				kid := msg.Signatures()[0].ProtectedHeaders().KeyID()
				key, alg, ok := ring.PublicKey(kid)
				if !ok {
					errs <- fmt.Errorf("kid %s of a fresh token is not published", kid)
					return
				}
				if _, err := jws.Verify([]byte(token), jws.WithKey(jwa.SignatureAlgorithm(alg), key)); err != nil {
					errs <- err
					return
				}
				_ = ring.JWKS()
			}
		}()
	}
	kids := map[string]bool{ring.CurrentKID(): true}
	for range rotations {
		clock.Advance(time.Second)
		kid, err := ring.Rotate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		kids[kid] = true
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(kids) != rotations+1 || len(jwksKIDs(t, ring)) != rotations+1 {
		t.Fatalf("%d distinct kids, %d published; want %d", len(kids), len(jwksKIDs(t, ring)), rotations+1)
	}
}

func BenchmarkSign(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		b.Run(alg, func(b *testing.B) {
			ring := mustRing(b, newTestStore(b), keys.RingConfig{Algorithm: alg}, newFakeClock())
			claims := map[string]any{"iss": "https://chat.example.com", "sub": "u-1", "scope": "chat:use models:list", "exp": 1893456000}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := ring.Sign(claims, "at+jwt"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
