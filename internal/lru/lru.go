// Package lru is the bounded cache behind every cache of Gatehouse (verified
// tokens, sessions, users, decisions, assertions, the denial throttle). A
// full cache never empties itself: it drops its expired entries, then the
// least recently used. Any package may import it; it imports only the
// standard library.
package lru

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Lock striping: at most maxShards stripes, of at least minShardSize
// entries each, so that a small cache evicts in one order and a large one
// does not make the guard's cores contend on one lock.
const (
	maxShards    = 64
	minShardSize = 64
)

// Cache is a bounded map whose entries may expire. Reads share a lock and
// only mark the entry as used; when a shard is full, a Put drops the expired
// entries (when one may have expired) and then evicts the oldest entry that
// was not used since it last came up for eviction (the CLOCK approximation of
// LRU). It is safe for concurrent use.
type Cache[K comparable, V any] struct {
	// seed is random per process, so nobody can craft keys that collide
	// into one shard; a hit still compares the whole key.
	seed     maphash.Seed
	mask     uint64
	perShard int
	group    func(V) string // nil: no groups
	shards   []shard[K, V]
}

type shard[K comparable, V any] struct {
	mu sync.RWMutex
	// hits and misses sit beside the lock, on the line a read writes anyway.
	hits, misses atomic.Uint64
	entries      map[uint64]*entry[K, V] // by the key's hash
	groups       map[string]*entry[K, V] // first entry of each group; nil without groups
	// recent is the sentinel of a ring of the entries, newest first:
	// recent.next is the newest, recent.prev the next to come up for eviction.
	recent entry[K, V]
	// nextExpiry is no later than the earliest expiry of the entries, so a
	// full shard is swept only when something may have expired.
	nextExpiry time.Time
	_          [64]byte // keeps neighbouring shards' locks off one cache line
}

// entry is immutable once stored but for used and its links, so a hit reads
// its key and value without the lock.
type entry[K comparable, V any] struct {
	hash    uint64
	key     K
	value   V
	expires time.Time // zero: never
	group   string
	used    atomic.Bool // read since it last came up for eviction

	prev, next           *entry[K, V] // the shard's ring
	groupPrev, groupNext *entry[K, V] // the entries of the same group
}

func (e *entry[K, V]) liveAt(now time.Time) bool {
	return e.expires.IsZero() || now.Before(e.expires)
}

// New returns a cache of at most size entries (at least one). When group is
// not nil it names each value's group (a token's ID, a session's user), and
// RemoveGroup drops a whole group at the cost of its own size.
func New[K comparable, V any](size int, group func(V) string) *Cache[K, V] {
	size = max(size, 1)
	shards := 1
	for shards*2 <= maxShards && shards*2*minShardSize <= size {
		shards *= 2
	}
	c := &Cache[K, V]{
		seed:     maphash.MakeSeed(),
		mask:     uint64(shards - 1),
		perShard: size / shards,
		group:    group,
		shards:   make([]shard[K, V], shards),
	}
	for i := range c.shards {
		c.shards[i].reset(group != nil)
	}
	return c
}

func (s *shard[K, V]) reset(grouped bool) {
	s.entries = map[uint64]*entry[K, V]{}
	s.groups = nil
	if grouped {
		s.groups = map[string]*entry[K, V]{}
	}
	s.recent.prev, s.recent.next = &s.recent, &s.recent
	s.nextExpiry = time.Time{}
}

func (c *Cache[K, V]) locate(key K) (*shard[K, V], uint64) {
	h := maphash.Comparable(c.seed, key)
	return &c.shards[h&c.mask], h
}

// Get returns the value stored under key if it has not expired at now.
func (c *Cache[K, V]) Get(key K, now time.Time) (V, bool) {
	s, e := c.find(key)
	if e == nil || !e.liveAt(now) {
		s.misses.Add(1)
		var zero V
		return zero, false
	}
	s.hits.Add(1)
	return e.value, true
}

// Peek returns the value stored under key even if it has expired, for a
// caller that judges the value itself (the verifier refuses an expired token
// from its entry, without checking its signature again).
func (c *Cache[K, V]) Peek(key K) (V, bool) {
	s, e := c.find(key)
	if e == nil {
		s.misses.Add(1)
		var zero V
		return zero, false
	}
	s.hits.Add(1)
	return e.value, true
}

func (c *Cache[K, V]) find(key K) (*shard[K, V], *entry[K, V]) {
	s, h := c.locate(key)
	s.mu.RLock()
	e := s.entries[h]
	s.mu.RUnlock()
	if e == nil || e.key != key {
		return s, nil
	}
	if !e.used.Load() { // a store only on the first read since eviction last looked
		e.used.Store(true)
	}
	return s, e
}

// Put stores value under key until expires (zero: until evicted); now is
// the time by which a full shard judges its entries expired.
func (c *Cache[K, V]) Put(key K, value V, expires, now time.Time) {
	s, h := c.locate(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	c.store(s, h, key, value, expires, now)
}

// PutIfAbsent is Put unless an unexpired value is stored under key already;
// it reports whether it stored value.
func (c *Cache[K, V]) PutIfAbsent(key K, value V, expires, now time.Time) bool {
	s, h := c.locate(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entries[h]; e != nil && e.key == key && e.liveAt(now) {
		return false
	}
	c.store(s, h, key, value, expires, now)
	return true
}

func (c *Cache[K, V]) store(s *shard[K, V], h uint64, key K, value V, expires, now time.Time) {
	if old := s.entries[h]; old != nil {
		s.remove(old) // the same key, or one whose hash collides: a cache may forget it
	} else if len(s.entries) >= c.perShard {
		s.makeRoom(now, c.perShard)
	}
	e := &entry[K, V]{hash: h, key: key, value: value, expires: expires}
	s.entries[h] = e
	s.pushFront(e)
	if c.group != nil {
		e.group = c.group(value)
		if first := s.groups[e.group]; first != nil {
			e.groupNext, first.groupPrev = first, e
		}
		s.groups[e.group] = e
	}
	if !expires.IsZero() && (s.nextExpiry.IsZero() || expires.Before(s.nextExpiry)) {
		s.nextExpiry = expires
	}
}

// makeRoom drops the expired entries, if any may have expired, and then
// evicts until there is room for one more. An entry used since it last came
// up is spared once and goes back to the front: what a client keeps using
// stays, whatever a flood of other keys does.
func (s *shard[K, V]) makeRoom(now time.Time, limit int) {
	if !s.nextExpiry.IsZero() && !now.Before(s.nextExpiry) {
		s.nextExpiry = time.Time{}
		for e := s.recent.next; e != &s.recent; {
			next := e.next
			if !e.liveAt(now) {
				s.remove(e)
			} else if !e.expires.IsZero() && (s.nextExpiry.IsZero() || e.expires.Before(s.nextExpiry)) {
				s.nextExpiry = e.expires
			}
			e = next
		}
	}
	for len(s.entries) >= limit {
		e := s.recent.prev
		if !e.used.Load() {
			s.remove(e)
			continue
		}
		e.used.Store(false)
		s.unlink(e)
		s.pushFront(e)
	}
}

func (s *shard[K, V]) pushFront(e *entry[K, V]) {
	e.prev, e.next = &s.recent, s.recent.next
	e.next.prev, s.recent.next = e, e
}

func (s *shard[K, V]) unlink(e *entry[K, V]) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *shard[K, V]) remove(e *entry[K, V]) {
	delete(s.entries, e.hash)
	s.unlink(e)
	if s.groups == nil {
		return
	}
	switch {
	case e.groupPrev != nil:
		e.groupPrev.groupNext = e.groupNext
	case e.groupNext != nil:
		s.groups[e.group] = e.groupNext
	default:
		delete(s.groups, e.group)
	}
	if e.groupNext != nil {
		e.groupNext.groupPrev = e.groupPrev
	}
	e.groupPrev, e.groupNext = nil, nil
}

// Remove drops the value stored under key.
func (c *Cache[K, V]) Remove(key K) {
	s, h := c.locate(key)
	s.mu.Lock()
	if e := s.entries[h]; e != nil && e.key == key {
		s.remove(e)
	}
	s.mu.Unlock()
}

// RemoveGroup drops every value of the group (see New).
func (c *Cache[K, V]) RemoveGroup(group string) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for e := s.groups[group]; e != nil; {
			next := e.groupNext
			s.remove(e)
			e = next
		}
		s.mu.Unlock()
	}
}

// Purge drops every value.
func (c *Cache[K, V]) Purge() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.reset(c.group != nil)
		s.mu.Unlock()
	}
}

// Stats counts the reads of Get and Peek so far that found a value (hits)
// and that did not (misses).
func (c *Cache[K, V]) Stats() (hits, misses uint64) {
	for i := range c.shards {
		hits += c.shards[i].hits.Load()
		misses += c.shards[i].misses.Load()
	}
	return hits, misses
}

// Len counts the values stored, expired or not.
func (c *Cache[K, V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}
