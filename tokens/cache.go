package tokens

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxCacheShards bounds lock striping; with fewer, concurrent hits on the
// guard's cores would contend on one read lock's counter.
const maxCacheShards = 64

// cache remembers verified tokens by their exact bytes, so that a repeated
// token costs a hash and a map lookup instead of a signature check. It holds
// only tokens that passed every check; a hit re-checks the time window.
type cache struct {
	// seed is random per process, so nobody can craft tokens that collide
	// into one shard; a hit still compares the whole token.
	seed     maphash.Seed
	mask     uint64
	perShard int
	shards   []cacheShard
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[uint64]*cacheEntry
	// byJTI finds the entries to drop when a token is revoked.
	byJTI map[string][]uint64
	// nextExpiry is no later than the earliest validUntil of the entries, so
	// a full shard is swept only when something may have expired.
	nextExpiry time.Time
	_          [64]byte // keeps neighbouring shards' locks off one cache line
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
	shards := 1
	for shards*2 <= min(size, maxCacheShards) {
		shards *= 2
	}
	c := &cache{
		seed:     maphash.MakeSeed(),
		mask:     uint64(shards - 1),
		perShard: size / shards,
		shards:   make([]cacheShard, shards),
	}
	for i := range c.shards {
		c.shards[i].reset()
	}
	return c
}

func (s *cacheShard) reset() {
	s.entries = map[uint64]*cacheEntry{}
	s.byJTI = map[string][]uint64{}
	s.nextExpiry = time.Time{}
}

func (c *cache) get(token string) *cacheEntry {
	h := maphash.String(c.seed, token)
	s := &c.shards[h&c.mask]
	s.mu.RLock()
	e := s.entries[h]
	s.mu.RUnlock()
	if e == nil || e.token != token {
		return nil
	}
	return e
}

func (c *cache) put(token string, e *cacheEntry, now time.Time) {
	h := maphash.String(c.seed, token)
	s := &c.shards[h&c.mask]
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.entries[h]; ok {
		s.remove(h, old)
	} else if len(s.entries) >= c.perShard {
		s.makeRoom(now, c.perShard)
	}
	s.entries[h] = e
	s.byJTI[e.claims.ID] = append(s.byJTI[e.claims.ID], h)
	if s.nextExpiry.IsZero() || e.validUntil.Before(s.nextExpiry) {
		s.nextExpiry = e.validUntil
	}
}

// makeRoom drops the expired entries, or else an arbitrary one: Go randomizes
// map iteration, and a random victim cannot be steered like an LRU's.
func (s *cacheShard) makeRoom(now time.Time, limit int) {
	if !now.Before(s.nextExpiry) {
		s.nextExpiry = time.Time{}
		for h, e := range s.entries {
			if !now.Before(e.validUntil) {
				s.remove(h, e)
			} else if s.nextExpiry.IsZero() || e.validUntil.Before(s.nextExpiry) {
				s.nextExpiry = e.validUntil
			}
		}
	}
	for h, e := range s.entries {
		if len(s.entries) < limit {
			break
		}
		s.remove(h, e)
	}
}

func (s *cacheShard) remove(h uint64, e *cacheEntry) {
	delete(s.entries, h)
	jti := e.claims.ID
	rest := slices.DeleteFunc(s.byJTI[jti], func(x uint64) bool { return x == h })
	if len(rest) == 0 {
		delete(s.byJTI, jti)
	} else {
		s.byJTI[jti] = rest
	}
}

func (c *cache) forget(jti string) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, h := range s.byJTI[jti] {
			delete(s.entries, h)
		}
		delete(s.byJTI, jti)
		s.mu.Unlock()
	}
}

func (c *cache) purge() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.reset()
		s.mu.Unlock()
	}
}

// len counts the cached tokens, for tests.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}

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
