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
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/gatehouse/gatehouse/internal/testclock"
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
	return verifyWithSet(t, ring.JWKS(), token)
}

// verifyWithSet checks token against a JWKS document fetched earlier, as a
// verifier that caches the set does.
func verifyWithSet(t *testing.T, jwks []byte, token string) ([]byte, jws.Headers) {
	t.Helper()
	set, err := jwk.Parse(jwks)
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
	nextKID, readyAt, ok := ring.Next()
	if n := len(storedKeys(t, ks)); n != 2 || !ok || nextKID == kid {
		t.Fatalf("store holds %d keys, next key %q (%v); want the current key and a next key", n, nextKID, ok)
	}
	rec := storedKey(t, ks, kid)
	if rec.Algorithm != "ES256" || !rec.CreatedAt.Equal(clock.Now()) || rec.ActivatedAt == nil || !rec.ActivatedAt.Equal(clock.Now()) ||
		rec.RetiredAt != nil || rec.PublishUntil != nil {
		t.Fatalf("stored key = {alg %s, created %s, activated %v, retired %v, until %v}, want an ES256 key signing since now",
			rec.Algorithm, rec.CreatedAt, rec.ActivatedAt, rec.RetiredAt, rec.PublishUntil)
	}
	next := storedKey(t, ks, nextKID)
	if next.Algorithm != "ES256" || !next.CreatedAt.Equal(clock.Now()) || next.ActivatedAt != nil || next.RetiredAt != nil || next.PublishUntil != nil {
		t.Fatalf("stored next key = {alg %s, created %s, activated %v, retired %v, until %v}, want an ES256 key waiting since now",
			next.Algorithm, next.CreatedAt, next.ActivatedAt, next.RetiredAt, next.PublishUntil)
	}
	if want := clock.Now().Add(keys.DefaultPrepublish); !readyAt.Equal(want) {
		t.Fatalf("next key ready at %s, want %s (published now + key_prepublish)", readyAt, want)
	}
	if got := jwksKIDs(t, ring); !slices.Equal(got, []string{kid, nextKID}) {
		t.Fatalf("JWKS kids = %v, want the current then the next key %v", got, []string{kid, nextKID})
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
	if n := len(storedKeys(t, ks)); second.CurrentKID() != first.CurrentKID() || n != 2 {
		t.Fatalf("second ring uses kid %s with %d stored keys, want the stored kid %s and its next key", second.CurrentKID(), n, first.CurrentKID())
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
	if n := len(storedKeys(t, ks)); n != 2 {
		t.Fatalf("store holds %d keys, want the original two only", n)
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
			nextKID, _, _ := ring.Next()
			for i, kid := range []string{ring.CurrentKID(), nextKID} {
				published, _ := set.Key(i)
				if set.Len() != 2 || published.KeyType() != tc.kty || published.Algorithm() != tc.alg || published.KeyUsage() != "sig" || published.KeyID() != kid {
					t.Fatalf("JWKS = %s, want the current and the next key, public %s keys with kid, alg %s and use sig", ring.JWKS(), tc.kty, tc.alg)
				}
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

// rotateWhenReady moves the clock to when the next key may sign and rotates.
func rotateWhenReady(t *testing.T, ring *keys.Ring, clock *fakeClock) keys.Rotation {
	t.Helper()
	_, readyAt, ok := ring.Next()
	if !ok {
		t.Fatal("no next key is published")
	}
	if d := readyAt.Sub(clock.Now()); d > 0 {
		clock.Advance(d)
	}
	rot, err := ring.Rotate(context.Background())
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	return rot
}

// systemToken stores the metadata of a live system token signed by kid.
func systemToken(t *testing.T, ks *store.SQLite, id, kid string, now time.Time) {
	t.Helper()
	tok := store.APIToken{ID: id, Name: id, Kind: store.TokenSystem, CreatedBy: "admin-1", Scope: []string{"models:use"},
		CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour), KeyID: kid}
	if _, err := ks.CreateToken(context.Background(), tok, store.AuditEvent{Type: "token.created"}); err != nil {
		t.Fatal(err)
	}
}

// The finding of issue 10: a backend that cached the JWKS before a rotation
// must verify what is signed right after it.
func TestTokenSignedRightAfterRotationVerifiesWithJWKSFetchedBefore(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	ring := mustRing(t, ks, keys.RingConfig{}, clock)
	other := mustRing(t, ks, keys.RingConfig{}, clock) // the instance the backend fetched the JWKS from
	fetchedBefore := bytes.Clone(other.JWKS())
	oldKID := ring.CurrentKID()
	nextKID, _, _ := ring.Next()

	clock.Advance(keys.DefaultPrepublish)
	rot, err := ring.Rotate(context.Background())
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if rot.KID != nextKID || ring.CurrentKID() != nextKID || !slices.Equal(rot.Retired, []string{oldKID}) {
		t.Fatalf("Rotate = %+v, current %s; want the published next key %s to sign and %s retired", rot, ring.CurrentKID(), nextKID, oldKID)
	}
	token, err := ring.Sign(map[string]any{"sub": "alice"}, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}
	assertion, err := ring.Assertion("https://chat.example.com", "https://chat.example.com", "u-1", "", "user", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for name, signed := range map[string]string{"token": token, "assertion": assertion} {
		if _, headers := verifyWithSet(t, fetchedBefore, signed); headers.KeyID() != nextKID {
			t.Fatalf("%s signed after the rotation has kid %s, want %s", name, headers.KeyID(), nextKID)
		}
	}
}

func TestRotateRetiresOldKeyAndPublishesItUntilTokensExpire(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	const lifetime = 90 * 24 * time.Hour
	ring := mustRing(t, ks, keys.RingConfig{MaxTokenLifetime: lifetime}, clock)
	other := mustRing(t, ks, keys.RingConfig{MaxTokenLifetime: lifetime}, clock) // a second instance
	oldKID := ring.CurrentKID()
	promotedKID, _, _ := ring.Next()
	oldToken, err := ring.Sign(map[string]any{"sub": "alice"}, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}

	rot := rotateWhenReady(t, ring, clock)
	rotatedAt := clock.Now()
	if rot.KID != promotedKID || rot.NextKID == "" || rot.NextKID == promotedKID || !rot.NextReadyAt.Equal(rotatedAt.Add(keys.DefaultPrepublish)) {
		t.Fatalf("Rotate = %+v; want %s promoted and a new next key ready at %s", rot, promotedKID, rotatedAt.Add(keys.DefaultPrepublish))
	}
	old := storedKey(t, ks, oldKID)
	if old.RetiredAt == nil || !old.RetiredAt.Equal(rotatedAt) || old.PublishUntil == nil || !old.PublishUntil.Equal(rotatedAt.Add(lifetime)) {
		t.Fatalf("old key retired at %v, published until %v; want %s and %s", old.RetiredAt, old.PublishUntil, rotatedAt, rotatedAt.Add(lifetime))
	}
	if rec := storedKey(t, ks, promotedKID); rec.ActivatedAt == nil || !rec.ActivatedAt.Equal(rotatedAt) || rec.RetiredAt != nil || rec.PublishUntil != nil {
		t.Fatalf("promoted key activated %v, retired %v; want signing since %s", rec.ActivatedAt, rec.RetiredAt, rotatedAt)
	}
	if rec := storedKey(t, ks, rot.NextKID); rec.ActivatedAt != nil || rec.RetiredAt != nil || !rec.CreatedAt.Equal(rotatedAt) {
		t.Fatalf("new next key = %+v, want waiting since %s", rec, rotatedAt)
	}

	newToken, err := ring.Sign(map[string]any{"sub": "bob"}, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}
	if _, headers := verifyWithJWKS(t, ring, newToken); headers.KeyID() != promotedKID {
		t.Fatalf("token signed after rotation has kid %s, want %s", headers.KeyID(), promotedKID)
	}
	verifyWithJWKS(t, ring, oldToken)
	if got, want := jwksKIDs(t, ring), []string{promotedKID, rot.NextKID, oldKID}; !slices.Equal(got, want) {
		t.Fatalf("JWKS kids = %v, want current, next, retired %v", got, want)
	}

	// The other instance signs with the old key until it reloads.
	if other.CurrentKID() != oldKID {
		t.Fatalf("other instance switched keys before reloading")
	}
	if err := other.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if other.CurrentKID() != promotedKID || string(other.JWKS()) != string(ring.JWKS()) {
		t.Fatalf("after Reload other instance uses %s and publishes %v", other.CurrentKID(), jwksKIDs(t, other))
	}

	// The retired key goes when the last token it may have signed has expired,
	// whether or not anyone reloads.
	clock.Advance(lifetime - time.Second)
	if _, _, ok := ring.PublicKey(oldKID); !ok || len(jwksKIDs(t, ring)) != 3 {
		t.Fatal("retired key unpublished before its publish-until time")
	}
	clock.Advance(time.Second)
	for name, r := range map[string]*keys.Ring{"rotating instance": ring, "other instance": other} {
		if got, want := jwksKIDs(t, r), []string{promotedKID, rot.NextKID}; !slices.Equal(got, want) {
			t.Fatalf("%s: JWKS kids at publish-until = %v, want %v", name, got, want)
		}
		if _, _, ok := r.PublicKey(oldKID); ok {
			t.Fatalf("%s: PublicKey still finds the retired key", name)
		}
	}
	if err := ring.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := jwksKIDs(t, ring), []string{promotedKID, rot.NextKID}; !slices.Equal(got, want) {
		t.Fatalf("JWKS kids after reload = %v, want %v", got, want)
	}
}

func TestRotateBeforeThePrepublishTimeIsRefused(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	const prepublish = 15 * time.Minute
	ring := mustRing(t, ks, keys.RingConfig{Prepublish: prepublish}, clock)
	publishedAt := clock.Now()
	current := ring.CurrentKID()
	nextKID, readyAt, _ := ring.Next()
	if !readyAt.Equal(publishedAt.Add(prepublish)) {
		t.Fatalf("next key ready at %s, want %s", readyAt, publishedAt.Add(prepublish))
	}

	clock.Advance(prepublish - time.Second)
	stored := storedKeys(t, ks)
	_, err := ring.Rotate(context.Background())
	var notReady *keys.NotReadyError
	if !errors.As(err, &notReady) || notReady.KID != nextKID || !notReady.PublishedAt.Equal(publishedAt) || !notReady.ReadyAt.Equal(readyAt) {
		t.Fatalf("Rotate %s early: err = %v, want a NotReadyError for %s ready at %s", time.Second, err, nextKID, readyAt)
	}
	if want := "may sign from " + readyAt.Format(time.RFC3339); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	if !reflect.DeepEqual(storedKeys(t, ks), stored) || ring.CurrentKID() != current {
		t.Fatal("a refused rotation changed the keys")
	}

	clock.Advance(time.Second)
	rot, err := ring.Rotate(context.Background())
	if err != nil || rot.KID != nextKID {
		t.Fatalf("Rotate at the ready time = %+v, %v; want %s to sign", rot, err, nextKID)
	}
	// The key it published must wait its turn too.
	if _, err := ring.Rotate(context.Background()); !errors.As(err, &notReady) || notReady.KID != rot.NextKID || !notReady.ReadyAt.Equal(clock.Now().Add(prepublish)) {
		t.Fatalf("second Rotate at once: err = %v, want a NotReadyError for %s", err, rot.NextKID)
	}
}

func TestConcurrentRotationsPromoteTheNextKeyOnce(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	a := mustRing(t, ks, keys.RingConfig{}, clock)
	b := mustRing(t, ks, keys.RingConfig{}, clock)
	rotA := rotateWhenReady(t, a, clock)
	// b has not reloaded and rotates on its own view: the store has promoted
	// that key already, and the key now waiting was only just published.
	_, err := b.Rotate(context.Background())
	var notReady *keys.NotReadyError
	if !errors.As(err, &notReady) || notReady.KID != rotA.NextKID {
		t.Fatalf("second instance's Rotate: err = %v, want a NotReadyError for %s", err, rotA.NextKID)
	}
	var signing, waiting int
	for _, k := range storedKeys(t, ks) {
		switch {
		case k.RetiredAt != nil:
		case k.ActivatedAt != nil:
			signing++
		default:
			waiting++
		}
	}
	if signing != 1 || waiting != 1 || a.CurrentKID() != rotA.KID || b.CurrentKID() != rotA.KID {
		t.Fatalf("%d signing and %d waiting keys, instances sign with %s and %s; want one of each and both %s",
			signing, waiting, a.CurrentKID(), b.CurrentKID(), rotA.KID)
	}
}

func TestReplaceWithdrawsKeysAndRevokesTheTokensTheySigned(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	var mu sync.Mutex
	withdrawnHere, withdrawnThere := []string{}, []string{}
	record := func(into *[]string) func([]string) {
		return func(kids []string) {
			mu.Lock()
			defer mu.Unlock()
			*into = append(*into, kids...)
		}
	}
	ring := mustRing(t, ks, keys.RingConfig{OnWithdraw: record(&withdrawnHere)}, clock)
	other := mustRing(t, ks, keys.RingConfig{OnWithdraw: record(&withdrawnThere)}, clock)
	retiredKID := ring.CurrentKID()
	rotateWhenReady(t, ring, clock)
	leakedKID := ring.CurrentKID()
	leakedNext, _, _ := ring.Next()
	leakedToken, _ := ring.Sign(map[string]any{"sub": "alice"}, "at+jwt")
	systemToken(t, ks, "t-leaked-1", leakedKID, clock.Now())
	systemToken(t, ks, "t-leaked-2", leakedKID, clock.Now())
	systemToken(t, ks, "t-retired", retiredKID, clock.Now())
	if err := other.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Minute)
	replacedAt := clock.Now()
	rot, err := ring.Replace(context.Background(), "admin-1")
	if err != nil {
		t.Fatalf("Replace: %v", err)
	}
	if fresh := []string{rot.KID, rot.NextKID}; slices.ContainsFunc(fresh, func(k string) bool { return k == "" || k == leakedKID || k == leakedNext || k == retiredKID }) {
		t.Fatalf("Replace = %+v, want fresh keys", rot)
	}
	slices.Sort(rot.Withdrawn)
	want := []string{leakedKID, leakedNext}
	slices.Sort(want)
	if !slices.Equal(rot.Withdrawn, want) || rot.RevokedTokens != 2 {
		t.Fatalf("Replace withdrew %v and revoked %d tokens, want %v and the 2 tokens of %s", rot.Withdrawn, rot.RevokedTokens, want, leakedKID)
	}
	// The fresh key signs at once; the replaced keys are gone from the JWKS
	// at once; the retired key stays for the tokens it signed.
	if ring.CurrentKID() != rot.KID || !slices.Equal(jwksKIDs(t, ring), []string{rot.KID, rot.NextKID, retiredKID}) {
		t.Fatalf("after Replace the ring signs with %s and publishes %v", ring.CurrentKID(), jwksKIDs(t, ring))
	}
	if _, _, ok := ring.PublicKey(leakedKID); ok {
		t.Fatal("PublicKey still finds the replaced key")
	}
	set, _ := jwk.Parse(ring.JWKS())
	if _, err := jws.Verify([]byte(leakedToken), jws.WithKeySet(set)); err == nil {
		t.Fatal("a token of the replaced key verifies through the JWKS")
	}
	for id, revoked := range map[string]bool{"t-leaked-1": true, "t-leaked-2": true, "t-retired": false} {
		tok, err := ks.GetToken(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.RevokedAt != nil && tok.RevokedAt.Equal(replacedAt); got != revoked {
			t.Fatalf("token %s revoked at %v, want revoked at %s: %v", id, tok.RevokedAt, replacedAt, revoked)
		}
	}
	events, err := ks.ListAudit(context.Background(), store.AuditFilter{Type: "token.revoked"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || events[0].ActorID != "admin-1" || events[0].Detail["reason"] != "key_withdrawn" {
		t.Fatalf("audit = %+v, want two token.revoked events by admin-1 with reason key_withdrawn", events)
	}

	// Both instances learn of the withdrawal, the other one at its reload,
	// so that they can forget what the replaced keys verified.
	mu.Lock()
	here := slices.Sorted(slices.Values(withdrawnHere))
	mu.Unlock()
	if !slices.Equal(here, want) {
		t.Fatalf("OnWithdraw here got %v, want %v", here, want)
	}
	if err := other.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	there := slices.Sorted(slices.Values(withdrawnThere))
	mu.Unlock()
	if !slices.Equal(there, want) || other.CurrentKID() != rot.KID {
		t.Fatalf("other instance: OnWithdraw got %v and signs with %s, want %v and %s", there, other.CurrentKID(), want, rot.KID)
	}
}

func TestNewRingReplacesANextKeyOfAnotherAlgorithm(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	es := mustRing(t, ks, keys.RingConfig{Algorithm: "ES256"}, clock)
	token, _ := es.Sign(map[string]any{"sub": "alice"}, "at+jwt")
	esNext, _, _ := es.Next()

	clock.Advance(time.Hour)
	ed := mustRing(t, ks, keys.RingConfig{Algorithm: "EdDSA", MaxTokenLifetime: 24 * time.Hour}, clock)
	// Switching at once would sign with a key no verifier has fetched.
	if ed.CurrentKID() != es.CurrentKID() {
		t.Fatal("changing the algorithm switched the signing key at once")
	}
	edNext, readyAt, _ := ed.Next()
	if _, alg, _ := ed.PublicKey(edNext); alg != "EdDSA" || !readyAt.Equal(clock.Now().Add(keys.DefaultPrepublish)) {
		t.Fatalf("next key signs %s, ready at %s; want an EdDSA key published now", alg, readyAt)
	}
	if until := storedKey(t, ks, esNext).PublishUntil; until == nil || !until.Equal(clock.Now()) || slices.Contains(jwksKIDs(t, ed), esNext) {
		t.Fatalf("the ES256 next key, which signed nothing, is published until %v; want withdrawn now", until)
	}

	rot := rotateWhenReady(t, ed, clock)
	if _, alg, _ := ed.PublicKey(ed.CurrentKID()); rot.KID != edNext || alg != "EdDSA" {
		t.Fatalf("after rotation the ring signs %s with %s, want %s with EdDSA", alg, ed.CurrentKID(), edNext)
	}
	if until := storedKey(t, ks, es.CurrentKID()).PublishUntil; until == nil || !until.Equal(clock.Now().Add(24*time.Hour)) {
		t.Fatalf("old ES256 key published until %v, want %s", until, clock.Now().Add(24*time.Hour))
	}
	verifyWithJWKS(t, ed, token)
}

// A store from before staged rotation holds a signing key and no next key.
func TestANextKeyIsPublishedWhenNoneWaits(t *testing.T) {
	ks, clock := newTestStore(t), newFakeClock()
	ring := mustRing(t, ks, keys.RingConfig{}, clock)
	current := ring.CurrentKID()
	next, _, _ := ring.Next()
	if err := ks.RetireSigningKey(context.Background(), next, clock.Now(), clock.Now()); err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Hour)
	restarted := mustRing(t, ks, keys.RingConfig{}, clock)
	published, readyAt, ok := restarted.Next()
	if restarted.CurrentKID() != current || !ok || published == next || !readyAt.Equal(clock.Now().Add(keys.DefaultPrepublish)) {
		t.Fatalf("restarted ring signs with %s, next %q ready at %s; want %s and a new next key", restarted.CurrentKID(), published, readyAt, current)
	}

	// Rotating without a waiting key publishes one and refuses for now.
	if err := ks.RetireSigningKey(context.Background(), published, clock.Now(), clock.Now()); err != nil {
		t.Fatal(err)
	}
	_, err := restarted.Rotate(context.Background())
	var notReady *keys.NotReadyError
	if !errors.As(err, &notReady) || notReady.KID == published || !notReady.ReadyAt.Equal(clock.Now().Add(keys.DefaultPrepublish)) || restarted.CurrentKID() != current {
		t.Fatalf("Rotate with no next key: err = %v, signs with %s; want a NotReadyError for a key published now", err, restarted.CurrentKID())
	}
}

func TestCacheMaxAgeIsHalfThePrepublishTimeAtMostFiveMinutes(t *testing.T) {
	for _, tc := range []struct{ prepublish, want time.Duration }{
		{keys.DefaultPrepublish, 5 * time.Minute},
		{time.Hour, 5 * time.Minute},
		{9 * time.Minute, 4*time.Minute + 30*time.Second},
		{keys.MinPrepublish, time.Second},
		{3 * time.Second, time.Second},
	} {
		if got := keys.CacheMaxAge(tc.prepublish); got != tc.want || got > tc.prepublish-time.Second {
			t.Errorf("CacheMaxAge(%s) = %s, want %s", tc.prepublish, got, tc.want)
		}
	}
	ring := mustRing(t, newTestStore(t), keys.RingConfig{Prepublish: 8 * time.Second}, newFakeClock())
	if got := ring.CacheMaxAge(); got != 4*time.Second {
		t.Errorf("ring's CacheMaxAge = %s, want 4s", got)
	}
}

func TestNewRingRefusesAShortPrepublishTime(t *testing.T) {
	for _, d := range []time.Duration{time.Second, -time.Minute} {
		_, err := keys.NewRing(context.Background(), newTestStore(t), signingSealer(t), keys.RingConfig{Prepublish: d}, nil)
		if want := fmt.Sprintf("prepublish time %s is shorter than 2s", d); err == nil || err.Error() != want {
			t.Errorf("NewRing(Prepublish %s) error = %v, want %q", d, err, want)
		}
	}
}

func TestKeyIDOfNamesTheSigningKey(t *testing.T) {
	ring := mustRing(t, newTestStore(t), keys.RingConfig{}, newFakeClock())
	token, _ := ring.Sign(map[string]any{}, "at+jwt")
	if kid, err := keys.KeyIDOf(token); err != nil || kid != ring.CurrentKID() {
		t.Fatalf("KeyIDOf = %q, %v; want %s", kid, err, ring.CurrentKID())
	}
	if _, err := keys.KeyIDOf("not a token"); err == nil {
		t.Fatal("KeyIDOf accepted garbage")
	}
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
		clock.Advance(keys.DefaultPrepublish)
		rot, err := ring.Rotate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		kids[rot.KID] = true
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Every key that signed, and the next one.
	if len(kids) != rotations+1 || len(jwksKIDs(t, ring)) != rotations+2 {
		t.Fatalf("%d distinct kids, %d published; want %d and %d", len(kids), len(jwksKIDs(t, ring)), rotations+1, rotations+2)
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
