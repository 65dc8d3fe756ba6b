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

// DefaultPrepublish is how long the next key is published before it may sign
// (key_prepublish).
const DefaultPrepublish = 10 * time.Minute

// MinPrepublish is the shortest prepublish time: the next key must be in the
// JWKS for the max-age the set is served with (CacheMaxAge, at least a
// second) plus the second another instance may take to publish it.
const MinPrepublish = 2 * time.Second

// maxCacheAge caps the JWKS max-age, so that a withdrawn key is not trusted
// from a cache for long.
const maxCacheAge = 5 * time.Minute

// CacheMaxAge is the max-age the JWKS is served with for a prepublish time:
// half of it, at most five minutes, in whole seconds. A verifier that caches
// the set no longer than that has fetched the next key before it signs.
func CacheMaxAge(prepublish time.Duration) time.Duration {
	return min(maxCacheAge, prepublish/2).Truncate(time.Second)
}

// KeyStore is the subset of store.Store the key ring needs.
type KeyStore interface {
	PutSigningKey(ctx context.Context, k store.SigningKey) error
	ListSigningKeys(ctx context.Context, now time.Time) ([]store.SigningKey, error)
	RetireSigningKey(ctx context.Context, id string, at, publishUntil time.Time) error
	PromoteSigningKey(ctx context.Context, id string, at, publishUntil time.Time, next *store.SigningKey) ([]string, error)
	ReplaceSigningKeys(ctx context.Context, fresh []store.SigningKey, at time.Time, actorID string) ([]string, int, error)
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
	// Prepublish is how long the next key is published before Rotate may
	// make it sign; at least MinPrepublish. Default DefaultPrepublish.
	Prepublish time.Duration
	// OnWithdraw, when set, is called with the kids of keys that left the
	// ring before their publication ended (replaced by Replace, here or on
	// another instance), so that what was verified with them can be dropped.
	OnWithdraw func(kids []string)
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

// Ring is Gatehouse's set of signing keys: the current key that signs, the
// next key, published for the prepublish time before it may sign, so that
// verifiers caching the JWKS know it by then, and the retired keys whose
// public halves stay published until every token they signed has expired.
// Private keys are stored sealed and exist in clear only in this process.
// The store is the truth: every instance's ring reloads from it.
//
// Sign, JWKS, PublicKey and CurrentKID read an immutable snapshot through an
// atomic pointer, so they are safe for concurrent use and never wait for
// Reload, Rotate or Replace.
type Ring struct {
	store            KeyStore
	sealer           *Sealer
	alg              jwa.SignatureAlgorithm
	maxTokenLifetime time.Duration
	prepublish       time.Duration
	onWithdraw       func(kids []string)
	now              func() time.Time

	mu sync.Mutex // serializes Reload, Rotate and Replace
	// opened caches unsealed keys by kid so that a periodic Reload only
	// unseals keys it has not seen. Guarded by mu.
	opened map[string]*keyMaterial
	snap   atomic.Pointer[snapshot]
}

// publishedKey is a key as of the last read of the store.
type publishedKey struct {
	*keyMaterial
	createdAt    time.Time // published from
	activatedAt  time.Time // signs from; zero while it waits
	retired      bool
	publishUntil time.Time // zero: published as long as it signs or waits
}

func (k publishedKey) signs() bool { return !k.activatedAt.IsZero() && !k.retired }
func (k publishedKey) waits() bool { return k.activatedAt.IsZero() && !k.retired }

// rank orders keys: those that sign, those that wait, retired ones.
func (k publishedKey) rank() int {
	switch {
	case k.signs():
		return 0
	case k.waits():
		return 1
	}
	return 2
}

type snapshot struct {
	current *keyMaterial
	// next is the waiting key Rotate promotes: the one published longest.
	// Nil when none waits.
	next      *publishedKey
	published []publishedKey // current first, then the waiting keys, then retired ones
	jwks      []byte
	// nextExpiry is the earliest publishUntil among published keys (zero if
	// none), when the snapshot must drop a key even if nobody reloads it.
	nextExpiry time.Time
}

// errNoActiveKey means the store holds no key that may sign.
var errNoActiveKey = errors.New("no active signing key in the store")

// NotReadyError is Rotate's answer while the next key has been published for
// less than the prepublish time: promoting it then would sign with a key that
// verifiers caching the JWKS may not have.
type NotReadyError struct {
	KID         string    // the next key
	PublishedAt time.Time // when it was published
	ReadyAt     time.Time // when Rotate may promote it
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("the next signing key %s has been in the JWKS since %s and may sign from %s",
		e.KID, e.PublishedAt.Format(time.RFC3339), e.ReadyAt.Format(time.RFC3339))
}

// Rotation is the outcome of Rotate or Replace.
type Rotation struct {
	KID         string    // the key that signs now
	NextKID     string    // the key published to sign next
	NextReadyAt time.Time // when Rotate may promote it
	// Retired are the keys that stopped signing; they stay published until
	// their tokens have expired.
	Retired []string
	// Withdrawn are the keys Replace took out of the JWKS at once, and
	// RevokedTokens the number of live API tokens they had signed.
	Withdrawn     []string
	RevokedTokens int
}

// NewRing loads the signing keys from ks. On a first start it creates the
// current key, which signs at once, and the next key; later it makes sure a
// next key of the configured algorithm is published, so that a changed
// algorithm takes effect at the next rotation while tokens signed before
// stay verifiable. now is the clock (time.Now when nil).
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
	prepublish := cfg.Prepublish
	switch {
	case prepublish == 0:
		prepublish = DefaultPrepublish
	case prepublish < MinPrepublish:
		return nil, fmt.Errorf("prepublish time %s is shorter than %s", prepublish, MinPrepublish)
	}
	if now == nil {
		now = time.Now
	}
	r := &Ring{
		store:            ks,
		sealer:           sealer,
		alg:              alg,
		maxTokenLifetime: lifetime,
		prepublish:       prepublish,
		onWithdraw:       cfg.OnWithdraw,
		now:              now,
		opened:           map[string]*keyMaterial{},
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	err = r.reloadLocked(ctx)
	if errors.Is(err, errNoActiveKey) {
		// Nothing signed yet that a verifier could hold: the first key signs
		// at once.
		err = r.addKeyLocked(ctx, true)
	}
	if err == nil {
		err = r.ensureNextLocked(ctx)
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

// Rotate promotes the next key, once it has been published for the
// prepublish time, and publishes a new next key; the keys that signed before
// are retired and stay published for MaxTokenLifetime. Before that it
// changes nothing and returns a *NotReadyError. Of instances rotating at
// once the store lets one promote; the others get a *NotReadyError for the
// key it published.
func (r *Ring) Rotate(ctx context.Context) (Rotation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rot, err := r.rotateLocked(ctx)
	if err != nil {
		return Rotation{}, fmt.Errorf("rotate signing key: %w", err)
	}
	return rot, nil
}

func (r *Ring) rotateLocked(ctx context.Context) (Rotation, error) {
	// Decide on the store's view rather than ours, so that a key another
	// instance promoted or published since our last reload counts.
	if err := r.reloadLocked(ctx); err != nil {
		return Rotation{}, err
	}
	now := r.now().UTC()
	s := r.snap.Load()
	if s.next == nil {
		// Nothing waits (another instance's configuration withdrew it, say):
		// publish a key now; it may sign after the prepublish time.
		if err := r.addKeyLocked(ctx, false); err != nil {
			return Rotation{}, err
		}
		return Rotation{}, r.notReady(r.snap.Load())
	}
	next := *s.next
	if now.Before(next.createdAt.Add(r.prepublish)) {
		return Rotation{}, r.notReady(s)
	}

	var fresh *store.SigningKey
	if !s.waitsBesides(next.kid, r.alg) {
		rec, material, err := newSigningKey(r.alg, r.sealer, now)
		if err != nil {
			return Rotation{}, err
		}
		r.opened[rec.ID] = material
		fresh = &rec
	}
	retired, err := r.store.PromoteSigningKey(ctx, next.kid, now, now.Add(r.maxTokenLifetime), fresh)
	if errors.Is(err, store.ErrConflict) {
		// Another instance promoted it (or replaced it) first; what waits
		// now has only just been published.
		if err := r.reloadLocked(ctx); err != nil {
			return Rotation{}, err
		}
		return Rotation{}, r.notReady(r.snap.Load())
	}
	if err != nil {
		return Rotation{}, err // the store's error names the operation
	}
	if err := r.reloadLocked(ctx); err != nil {
		return Rotation{}, err
	}
	rot := r.rotation()
	rot.Retired = retired
	return rot, nil
}

// Replace puts fresh keys in place of the ones that sign or wait, for a key
// that may have leaked: the new current key signs at once and a new next key
// is published. The replaced keys leave the JWKS at once and every live API
// token they signed is revoked in the store, audited as done by actorID.
// Verifiers holding an older copy of the JWKS refuse the new key's
// signatures until they fetch it again.
func (r *Ring) Replace(ctx context.Context, actorID string) (Rotation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now().UTC()
	current, currentMaterial, err := newSigningKey(r.alg, r.sealer, now)
	if err != nil {
		return Rotation{}, fmt.Errorf("replace signing keys: %w", err)
	}
	current.ActivatedAt = &now
	next, nextMaterial, err := newSigningKey(r.alg, r.sealer, now)
	if err != nil {
		return Rotation{}, fmt.Errorf("replace signing keys: %w", err)
	}
	withdrawn, revoked, err := r.store.ReplaceSigningKeys(ctx, []store.SigningKey{current, next}, now, actorID)
	if err != nil {
		return Rotation{}, err // the store's error names the operation
	}
	r.opened[current.ID], r.opened[next.ID] = currentMaterial, nextMaterial
	if err := r.reloadLocked(ctx); err != nil {
		return Rotation{}, fmt.Errorf("replace signing keys: %w", err)
	}
	rot := r.rotation()
	rot.Withdrawn, rot.RevokedTokens = withdrawn, revoked
	return rot, nil
}

// addKeyLocked stores a new key of the configured algorithm, signing at once
// when active, waiting otherwise, and reloads.
func (r *Ring) addKeyLocked(ctx context.Context, active bool) error {
	now := r.now().UTC()
	rec, material, err := newSigningKey(r.alg, r.sealer, now)
	if err != nil {
		return err
	}
	if active {
		rec.ActivatedAt = &now
	}
	if err := r.store.PutSigningKey(ctx, rec); err != nil {
		return fmt.Errorf("store signing key %s: %w", rec.ID, err)
	}
	r.opened[rec.ID] = material
	return r.reloadLocked(ctx)
}

// ensureNextLocked publishes a next key of the configured algorithm when
// none waits. A waiting key of another algorithm (signing_algorithm changed)
// has signed nothing, so it is withdrawn at once.
func (r *Ring) ensureNextLocked(ctx context.Context) error {
	s := r.snap.Load()
	if s.waitsBesides("", r.alg) {
		return nil
	}
	now := r.now().UTC()
	for _, k := range s.published {
		if k.waits() {
			if err := r.store.RetireSigningKey(ctx, k.kid, now, now); err != nil {
				return fmt.Errorf("withdraw waiting key %s of algorithm %s: %w", k.kid, k.alg, err)
			}
		}
	}
	return r.addKeyLocked(ctx, false)
}

func (r *Ring) notReady(s *snapshot) error {
	if s.next == nil {
		return errors.New("no next signing key is published")
	}
	return &NotReadyError{KID: s.next.kid, PublishedAt: s.next.createdAt, ReadyAt: s.next.createdAt.Add(r.prepublish)}
}

// rotation describes the ring as it is now.
func (r *Ring) rotation() Rotation {
	s := r.snap.Load()
	rot := Rotation{KID: s.current.kid}
	if s.next != nil {
		rot.NextKID, rot.NextReadyAt = s.next.kid, s.next.createdAt.Add(r.prepublish)
	}
	return rot
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
		if rec.ActivatedAt != nil {
			key.activatedAt = *rec.ActivatedAt
		}
		if rec.PublishUntil != nil {
			key.publishUntil = *rec.PublishUntil
		}
		keys = append(keys, key)
	}

	// The latest activated key signs: two sign only briefly, when instances
	// start for the first time at once. The waiting key published longest is
	// the next; retired keys follow, newest first.
	slices.SortStableFunc(keys, func(a, b publishedKey) int {
		if c := cmp.Compare(a.rank(), b.rank()); c != 0 {
			return c
		}
		switch a.rank() {
		case 0:
			return cmp.Or(b.activatedAt.Compare(a.activatedAt), b.createdAt.Compare(a.createdAt), cmp.Compare(b.kid, a.kid))
		case 1:
			return cmp.Or(a.createdAt.Compare(b.createdAt), cmp.Compare(a.kid, b.kid))
		}
		return cmp.Or(b.createdAt.Compare(a.createdAt), cmp.Compare(b.kid, a.kid))
	})
	if len(keys) == 0 || !keys[0].signs() {
		return errNoActiveKey
	}
	snap, err := newSnapshot(keys)
	if err != nil {
		return err
	}

	// A key that left before its publication ended was withdrawn.
	var withdrawn []string
	if prev := r.snap.Load(); prev != nil {
		for _, k := range prev.published {
			if opened[k.kid] == nil && (k.publishUntil.IsZero() || now.Before(k.publishUntil)) {
				withdrawn = append(withdrawn, k.kid)
			}
		}
	}
	r.opened = opened
	r.snap.Store(snap)
	if len(withdrawn) > 0 && r.onWithdraw != nil {
		r.onWithdraw(withdrawn)
	}
	return nil
}

func newSnapshot(keys []publishedKey) (*snapshot, error) {
	s := &snapshot{current: keys[0].keyMaterial, published: keys}
	doc := struct {
		Keys []jwk.Key `json:"keys"`
	}{Keys: make([]jwk.Key, len(keys))}
	for i, k := range keys {
		doc.Keys[i] = k.public
		if k.waits() && s.next == nil {
			s.next = &keys[i]
		}
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

// waitsBesides reports whether a key other than kid waits to sign with alg.
func (s *snapshot) waitsBesides(kid string, alg jwa.SignatureAlgorithm) bool {
	for _, k := range s.published {
		if k.waits() && k.kid != kid && k.alg == alg {
			return true
		}
	}
	return false
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

// Next returns the kid of the published next key and when Rotate may
// promote it; ok is false when no key waits.
func (r *Ring) Next() (kid string, readyAt time.Time, ok bool) {
	s := r.snap.Load()
	if s.next == nil {
		return "", time.Time{}, false
	}
	return s.next.kid, s.next.createdAt.Add(r.prepublish), true
}

// CacheMaxAge is how long a verifier may cache the JWKS (CacheMaxAge of the
// prepublish time).
func (r *Ring) CacheMaxAge() time.Duration { return CacheMaxAge(r.prepublish) }

// Algorithms lists the algorithms of the published keys, current key's first.
func (r *Ring) Algorithms() []string {
	var algs []string
	for _, k := range r.published().published {
		if !slices.Contains(algs, k.alg.String()) {
			algs = append(algs, k.alg.String())
		}
	}
	return algs
}

// JWKS returns the published public keys as a JSON Web Key Set: the current
// key, the next key, then retired ones. The slice is shared: callers must
// not modify it.
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

// KeyIDOf returns the kid in the protected header of a compact JWS, such as
// one Sign returned: which key signed it.
func KeyIDOf(token string) (string, error) {
	msg, err := jws.Parse([]byte(token))
	if err != nil {
		return "", fmt.Errorf("parse signed token: %w", err)
	}
	sigs := msg.Signatures()
	if len(sigs) != 1 {
		return "", fmt.Errorf("signed token has %d signatures, want 1", len(sigs))
	}
	return sigs[0].ProtectedHeaders().KeyID(), nil
}
