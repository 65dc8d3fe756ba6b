package keys

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/gatehouse/gatehouse/store"
)

// SigningKeyPurpose is the Sealer purpose under which the ring's private keys
// are sealed; NewRing's sealer should be Secret.Sealer(SigningKeyPurpose).
const SigningKeyPurpose = "signing-keys"

// DefaultMaxTokenLifetime is the longest life of an API token (system tokens,
// spec §5), and so how long a retired key stays published by default.
const DefaultMaxTokenLifetime = 365 * 24 * time.Hour

// KeyStore is the subset of store.Store the key ring needs.
type KeyStore interface {
	PutSigningKey(ctx context.Context, k store.SigningKey) error
	ListSigningKeys(ctx context.Context, now time.Time) ([]store.SigningKey, error)
	RetireSigningKey(ctx context.Context, id string, at, publishUntil time.Time) error
}

// RingConfig selects how the ring signs.
type RingConfig struct {
	// Algorithm is "ES256" (default), "EdDSA" or "RS256". Symmetric algorithms
	// are refused: their key would be the published verification key.
	Algorithm string
	// MaxTokenLifetime is how long a retired key's public half stays
	// published: the longest life of a token it may have signed. Default
	// DefaultMaxTokenLifetime.
	MaxTokenLifetime time.Duration
}

func (c RingConfig) algorithm() (jwa.SignatureAlgorithm, error) {
	if c.Algorithm == "" {
		return jwa.ES256, nil
	}
	alg, ok := supportedAlgorithms[c.Algorithm]
	if !ok {
		return "", fmt.Errorf("signing algorithm %q is not supported: use ES256, EdDSA or RS256", c.Algorithm)
	}
	return alg, nil
}

// Ring is Gatehouse's set of signing keys: one current key that signs, and
// the retired keys whose public halves stay published until every token they
// signed has expired. Private keys are stored sealed and exist in clear only
// in this process.
//
// Sign, JWKS, PublicKey and CurrentKID read an immutable snapshot through an
// atomic pointer, so they are safe for concurrent use and never wait for
// Reload or Rotate.
type Ring struct {
	store            KeyStore
	sealer           *Sealer
	alg              jwa.SignatureAlgorithm
	maxTokenLifetime time.Duration
	now              func() time.Time

	mu sync.Mutex // serializes Reload and Rotate
	// opened caches unsealed keys by kid so that a periodic Reload only
	// unseals keys it has not seen. Guarded by mu.
	opened map[string]*keyMaterial
	snap   atomic.Pointer[snapshot]
}

// publishedKey is a key as of the last read of the store.
type publishedKey struct {
	*keyMaterial
	createdAt    time.Time
	retired      bool
	publishUntil time.Time // zero: published as long as it is current
}

type snapshot struct {
	current   *keyMaterial
	published []publishedKey // current first, then newest first
	jwks      []byte
	// nextExpiry is the earliest publishUntil among published keys (zero if
	// none), when the snapshot must drop a key even if nobody reloads it.
	nextExpiry time.Time
}

// errNoActiveKey means the store holds no key that may sign.
var errNoActiveKey = errors.New("no active signing key in the store")

// NewRing loads the signing keys from ks. When there is no active key yet it
// creates one; when the active key's algorithm is not the configured one it
// rotates to a key that has it, so a changed configuration takes effect while
// tokens signed before stay verifiable. now is the clock (time.Now when nil).
func NewRing(ctx context.Context, ks KeyStore, sealer *Sealer, cfg RingConfig, now func() time.Time) (*Ring, error) {
	alg, err := cfg.algorithm()
	if err != nil {
		return nil, err
	}
	lifetime := cfg.MaxTokenLifetime
	switch {
	case lifetime == 0:
		lifetime = DefaultMaxTokenLifetime
	case lifetime < 0:
		return nil, fmt.Errorf("max token lifetime %s is negative", lifetime)
	}
	if now == nil {
		now = time.Now
	}
	r := &Ring{
		store:            ks,
		sealer:           sealer,
		alg:              alg,
		maxTokenLifetime: lifetime,
		now:              now,
		opened:           map[string]*keyMaterial{},
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	err = r.reloadLocked(ctx)
	switch {
	case errors.Is(err, errNoActiveKey):
		_, err = r.rotateLocked(ctx)
	case err == nil && r.snap.Load().current.alg != alg:
		_, err = r.rotateLocked(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	return r, nil
}

// Reload re-reads the keys from the store, to pick up a rotation made by
// another instance. On error the ring keeps its previous keys.
func (r *Ring) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.reloadLocked(ctx); err != nil {
		return fmt.Errorf("reload signing keys: %w", err)
	}
	return nil
}

// Rotate makes a new key current. Every other active key is retired and
// stays published for MaxTokenLifetime.
func (r *Ring) Rotate(ctx context.Context) (kid string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kid, err = r.rotateLocked(ctx)
	if err != nil {
		return "", fmt.Errorf("rotate signing key: %w", err)
	}
	return kid, nil
}

func (r *Ring) rotateLocked(ctx context.Context) (string, error) {
	now := r.now().UTC()
	rec, material, err := newSigningKey(r.alg, r.sealer, now)
	if err != nil {
		return "", err
	}
	if err := r.store.PutSigningKey(ctx, rec); err != nil {
		return "", fmt.Errorf("store signing key %s: %w", rec.ID, err)
	}
	r.opened[rec.ID] = material

	// Retire from the store's view rather than ours, so that a key another
	// instance made current since our last reload is retired too.
	recs, err := r.store.ListSigningKeys(ctx, now)
	if err != nil {
		return "", err // the store's error names the operation
	}
	publishUntil := now.Add(r.maxTokenLifetime)
	for _, old := range recs {
		if old.ID == rec.ID || old.RetiredAt != nil {
			continue
		}
		if err := r.store.RetireSigningKey(ctx, old.ID, now, publishUntil); err != nil {
			return "", fmt.Errorf("retire signing key %s: %w", old.ID, err)
		}
	}
	if err := r.reloadLocked(ctx); err != nil {
		return "", err
	}
	return rec.ID, nil
}

func (r *Ring) reloadLocked(ctx context.Context) error {
	now := r.now().UTC()
	recs, err := r.store.ListSigningKeys(ctx, now)
	if err != nil {
		return err // the store's error names the operation
	}

	opened := make(map[string]*keyMaterial, len(recs))
	keys := make([]publishedKey, 0, len(recs))
	for _, rec := range recs {
		if rec.PublishUntil != nil && !now.Before(*rec.PublishUntil) {
			continue
		}
		material := r.opened[rec.ID]
		if material == nil {
			material, err = openSigningKey(rec, r.sealer)
			if err != nil {
				return err
			}
		}
		opened[rec.ID] = material
		key := publishedKey{keyMaterial: material, createdAt: rec.CreatedAt, retired: rec.RetiredAt != nil}
		if rec.PublishUntil != nil {
			key.publishUntil = *rec.PublishUntil
		}
		keys = append(keys, key)
	}

	// Active keys first, then newest first: the first key signs. Two active
	// keys exist only briefly, when instances rotate at the same time.
	slices.SortStableFunc(keys, func(a, b publishedKey) int {
		if a.retired != b.retired {
			if a.retired {
				return 1
			}
			return -1
		}
		return cmp.Or(b.createdAt.Compare(a.createdAt), cmp.Compare(b.kid, a.kid))
	})
	if len(keys) == 0 || keys[0].retired {
		return errNoActiveKey
	}
	snap, err := newSnapshot(keys)
	if err != nil {
		return err
	}
	r.opened = opened
	r.snap.Store(snap)
	return nil
}

func newSnapshot(keys []publishedKey) (*snapshot, error) {
	s := &snapshot{current: keys[0].keyMaterial, published: keys}
	doc := struct {
		Keys []jwk.Key `json:"keys"`
	}{Keys: make([]jwk.Key, len(keys))}
	for i, k := range keys {
		doc.Keys[i] = k.public
		if i > 0 && !k.publishUntil.IsZero() && (s.nextExpiry.IsZero() || k.publishUntil.Before(s.nextExpiry)) {
			s.nextExpiry = k.publishUntil
		}
	}
	jwks, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode JWKS: %w", err)
	}
	s.jwks = jwks
	return s, nil
}

// published returns the snapshot without the keys whose publication ended,
// so that a retired key disappears on time even between reloads.
func (r *Ring) published() *snapshot {
	s := r.snap.Load()
	if s.nextExpiry.IsZero() {
		return s
	}
	now := r.now()
	if now.Before(s.nextExpiry) {
		return s
	}
	keys := slices.DeleteFunc(slices.Clone(s.published), func(k publishedKey) bool {
		// The signing key stays whatever the store said: its tokens must verify.
		return k.keyMaterial != s.current && !k.publishUntil.IsZero() && !now.Before(k.publishUntil)
	})
	pruned, err := newSnapshot(keys)
	if err != nil {
		// Encoding a subset of keys that encoded before cannot fail; serving
		// the expired key until the next reload is the harmless fallback.
		return s
	}
	// Losing the race to a Reload is fine: that snapshot is at least as new.
	r.snap.CompareAndSwap(s, pruned)
	return pruned
}

// CurrentKID returns the kid of the key that signs.
func (r *Ring) CurrentKID() string {
	return r.snap.Load().current.kid
}

// JWKS returns the published public keys as a JSON Web Key Set, current key
// first. The slice is shared: callers must not modify it.
func (r *Ring) JWKS() []byte {
	return r.published().jwks
}

// PublicKey returns the published key kid and the algorithm it signs with.
// Verifiers must use that algorithm, never the one a token's header names.
// The key is shared: callers must not modify it.
func (r *Ring) PublicKey(kid string) (jwk.Key, string, bool) {
	for _, k := range r.published().published {
		if k.kid == kid {
			return k.public, k.alg.String(), true
		}
	}
	return nil, "", false
}

// Sign serializes claims as the payload of a compact JWS signed with the
// current key; the protected header holds alg, kid and, unless empty, typ.
func (r *Ring) Sign(claims map[string]any, typ string) (string, error) {
	current := r.snap.Load().current
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign: encode claims: %w", err)
	}
	headers := jws.NewHeaders()
	if err := headers.Set(jws.KeyIDKey, current.kid); err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	if typ != "" {
		if err := headers.Set(jws.TypeKey, typ); err != nil {
			return "", fmt.Errorf("sign: %w", err)
		}
	}
	token, err := jws.Sign(payload, jws.WithKey(current.alg, current.private, jws.WithProtectedHeaders(headers)))
	if err != nil {
		return "", fmt.Errorf("sign with key %s: %w", current.kid, err)
	}
	return string(token), nil
}
