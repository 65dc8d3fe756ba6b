package core

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/internal/lru"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

// userCache keeps users for the hot path. Local changes invalidate at once.
type userCache struct {
	*lru.Cache[string, store.User]
}

const (
	maxCachedUsers  = 100000
	maxUserCacheTTL = max(cacheUsers, cacheUsersRedis)
)

func newUserCache() userCache { return userCache{lru.New[string, store.User](maxCachedUsers, nil)} }

// User returns the user, from memory when fresh enough.
func (rt *Runtime) User(ctx context.Context, id string) (store.User, error) {
	now := time.Now()
	// Kept for the longer TTL, a record is read with the TTL of the moment:
	// asked as of that much later, the cache finds it expired (and counts a
	// miss) once it is older than the TTL.
	if u, ok := rt.users.Get(id, now.Add(maxUserCacheTTL-rt.userCacheTTL())); ok {
		return u, nil
	}
	u, err := rt.Store.GetUser(ctx, id)
	if err != nil {
		return u, err
	}
	rt.users.Put(id, u, now.Add(maxUserCacheTTL), now)
	return u, nil
}

// InvalidateUser drops a changed user from the caches so the next request
// sees the change.
func (rt *Runtime) InvalidateUser(id string) {
	rt.forgetUser(id)
	rt.announce(fanoutEvent{Kind: "user", ID: id})
}

// userCacheTTL is how long a user record is trusted: longer while Redis
// announces changes.
func (rt *Runtime) userCacheTTL() time.Duration {
	if rt.fanoutHealthy() {
		return cacheUsersRedis
	}
	return cacheUsers
}

// forgetAllUsers drops every cached user and session.
func (rt *Runtime) forgetAllUsers() {
	rt.users.Purge()
	rt.Sessions.ForgetAll()
}

func (rt *Runtime) forgetUser(id string) {
	rt.users.Remove(id)
	rt.Sessions.ForgetUser(id)
}

// revocations is the in-memory list of revoked, unexpired token IDs. It only
// grows, but for entries whose token has expired: a revocation once learned,
// from this instance, over Redis or from the store, is never forgotten.
type revocations struct {
	mu       sync.RWMutex
	ids      map[string]time.Time // jti → token expiry
	syncedAt time.Time            // when the last store read that succeeded began
	fullAt   time.Time            // when the last full read began
}

func (rv *revocations) revoked(jti string) bool {
	rv.mu.RLock()
	_, ok := rv.ids[jti]
	rv.mu.RUnlock()
	return ok
}

func (rv *revocations) add(jti string, expires time.Time) {
	rv.mu.Lock()
	if rv.ids == nil {
		rv.ids = make(map[string]time.Time)
	}
	rv.ids[jti] = expires
	rv.mu.Unlock()
}

func (rv *revocations) age(now time.Time) time.Duration {
	rv.mu.RLock()
	defer rv.mu.RUnlock()
	return now.Sub(rv.syncedAt)
}

// Reading the revocation list: the tokens revoked since the last read, less
// revocationOverlap for transactions that commit late and instance clocks
// that differ; and all of it every fullRevocationRead.
const (
	revocationOverlap  = time.Minute
	fullRevocationRead = 5 * time.Minute
)

// syncRevocations merges the store's revocation list into memory.
func (rt *Runtime) syncRevocations(ctx context.Context) error {
	now := time.Now()
	rt.revoked.mu.RLock()
	since, fullAt := rt.revoked.syncedAt, rt.revoked.fullAt
	rt.revoked.mu.RUnlock()
	full := fullAt.IsZero() || now.Sub(fullAt) >= fullRevocationRead
	var (
		list []store.RevokedToken
		err  error
	)
	if full {
		list, err = rt.Store.RevokedTokens(ctx, now)
	} else {
		list, err = rt.Store.RevokedTokensSince(ctx, now, since.Add(-revocationOverlap))
	}
	if err != nil {
		return err
	}
	rt.revoked.mu.Lock()
	defer rt.revoked.mu.Unlock()
	if rt.revoked.ids == nil {
		rt.revoked.ids = make(map[string]time.Time, len(list))
	}
	learned := false
	for _, r := range list {
		if _, known := rt.revoked.ids[r.ID]; !known {
			rt.tokens.Forget(r.ID)
			rt.revoked.ids[r.ID] = r.ExpiresAt
			learned = true
		}
	}
	if learned {
		defer rt.recheckInflight()
	}
	if full {
		for id, exp := range rt.revoked.ids {
			if !exp.After(now) {
				delete(rt.revoked.ids, id) // an expired token is refused by its exp alone
			}
		}
		rt.revoked.fullAt = now
	}
	if now.After(rt.revoked.syncedAt) {
		rt.revoked.syncedAt = now
	}
	return nil
}

// refreshRevocations keeps the revocation list fresh: a token revoked on
// another instance is refused here within a second.
func (rt *Runtime) refreshRevocations(ctx context.Context) {
	if err := rt.syncRevocations(ctx); err != nil && !errors.Is(err, context.Canceled) {
		rt.Logger.Warn("refreshing the revocation list", zap.Error(err))
	}
}

// reloadKeys picks up keys rotated on another instance, so tokens they sign
// verify here within a second (or at once, announced over Redis).
func (rt *Runtime) reloadKeys(ctx context.Context) {
	if err := rt.Keys.Reload(ctx); err != nil && !errors.Is(err, context.Canceled) {
		rt.Logger.Warn("reloading signing keys", zap.Error(err))
	}
}

// tokenUsage batches last-used times so the hot path never writes to the store.
type tokenUsage struct {
	mu   sync.Mutex
	used map[string]time.Time
}

func (u *tokenUsage) mark(jti string, at time.Time) {
	u.mu.Lock()
	if u.used == nil {
		u.used = make(map[string]time.Time)
	}
	u.used[jti] = at
	u.mu.Unlock()
}

func (u *tokenUsage) take() map[string]time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := u.used
	u.used = nil
	return out
}

func (rt *Runtime) writeTokenUsage(ctx context.Context) {
	used := rt.usage.take()
	if len(used) == 0 {
		return
	}
	if err := rt.Store.MarkTokensUsed(ctx, used); err != nil {
		rt.Logger.Warn("recording token use", zap.Error(err))
	}
}

// decisionCache remembers backend decisions of a cacheable policy, keyed by
// everything such a policy reads, and by the engine (a new policy or new
// settings start afresh).
type decisionCache struct {
	// engine is the engine of the latest put: the entries of an older one
	// are dropped rather than kept until evicted.
	engine  atomic.Pointer[policy.Engine]
	entries *lru.Cache[engineDecisionKey, policy.Decision]
}

type engineDecisionKey struct {
	engine *policy.Engine
	decisionKey
}

const decisionCacheMax = 50000

func newDecisionCache() decisionCache {
	return decisionCache{entries: lru.New[engineDecisionKey, policy.Decision](decisionCacheMax, nil)}
}

// Decisions never expire: they change only with the engine.
func (c *decisionCache) get(e *policy.Engine, key decisionKey) (policy.Decision, bool) {
	return c.entries.Peek(engineDecisionKey{e, key})
}

func (c *decisionCache) put(e *policy.Engine, key decisionKey, d policy.Decision) {
	if c.engine.Swap(e) != e {
		c.entries.Purge()
	}
	c.entries.Put(engineDecisionKey{e, key}, d, time.Time{}, time.Time{})
}
