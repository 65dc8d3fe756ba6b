package tokens

import (
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/lru"
)

// cache remembers verified tokens by their exact bytes, so that a repeated
// token costs a hash and a map lookup instead of a signature check. It holds
// only tokens that passed every check; a hit re-checks the time window.
type cache struct {
	entries *lru.Cache[string, *cacheEntry] // grouped by jti, for revocation
}

// cacheEntry is immutable once stored, so a hit reads it without the lock.
type cacheEntry struct {
	token  string
	claims Claims
	// The token passes the time checks of Verify exactly within
	// [validFrom, validUntil).
	validFrom, validUntil time.Time
}

func newCacheEntry(token string, c Claims, skew time.Duration) *cacheEntry {
	from := c.NotBefore
	if c.IssuedAt.After(from) {
		from = c.IssuedAt
	}
	return &cacheEntry{
		// The caller's string may share a larger buffer (a whole header).
		token:      strings.Clone(token),
		claims:     c,
		validFrom:  from.Add(-skew),
		validUntil: c.ExpiresAt.Add(skew),
	}
}

func (e *cacheEntry) validAt(now time.Time) bool {
	return !now.Before(e.validFrom) && now.Before(e.validUntil)
}

func newCache(size int) *cache {
	return &cache{entries: lru.New[string](size, func(e *cacheEntry) string { return e.claims.ID })}
}

// get returns the entry of token even once it has expired: Verify refuses an
// expired token from its entry, without checking the signature again.
func (c *cache) get(token string) *cacheEntry {
	e, _ := c.entries.Peek(token)
	return e
}

// put keys the entry by e.token, its own copy of token. A full cache drops
// the expired tokens first.
func (c *cache) put(token string, e *cacheEntry, now time.Time) {
	c.entries.Put(e.token, e, e.validUntil, now)
}

// forget drops every spelling of a revoked token.
func (c *cache) forget(jti string) { c.entries.RemoveGroup(jti) }

func (c *cache) purge() { c.entries.Purge() }

// CacheStats counts the lookups of verified tokens that the cache answered
// (hits) and that needed a signature check (misses).
func (v *Verifier) CacheStats() (hits, misses uint64) {
	if v.cache == nil {
		return 0, 0
	}
	return v.cache.entries.Stats()
}

// len counts the cached tokens, for tests.
func (c *cache) len() int { return c.entries.Len() }

// clone gives the caller slices of its own, so that nobody can change what
// the cache serves next; one allocation holds both.
func (c Claims) clone() Claims {
	n := len(c.Scope) + len(c.Models)
	if n == 0 {
		return c // nil or empty slices of capacity 0: appending copies them
	}
	buf := make([]string, n)
	k := copy(buf, c.Scope)
	if k > 0 {
		c.Scope = buf[:k:k]
	}
	if len(c.Models) > 0 {
		copy(buf[k:], c.Models)
		c.Models = buf[k:]
	}
	return c
}
