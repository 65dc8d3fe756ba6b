package metrics

import (
	"maps"
	"sync"
	"sync/atomic"
)

// bounded resolves label values to their collectors once: the first limit
// distinct keys get their own, every later key shares its overflow key's, so
// no label grows past limit series however many values traffic brings. A
// key seen before costs one map read and allocates nothing.
type bounded[K comparable, V any] struct {
	seen     atomic.Pointer[map[K]V] // replaced, never changed
	mu       sync.Mutex              // serializes replacing seen
	limit    int
	resolve  func(K) V
	overflow func(K) K
}

func newBounded[K comparable, V any](limit int, resolve func(K) V, overflow func(K) K) *bounded[K, V] {
	b := &bounded[K, V]{limit: limit, resolve: resolve, overflow: overflow}
	b.seen.Store(&map[K]V{})
	return b
}

func (b *bounded[K, V]) get(k K) V {
	if v, ok := (*b.seen.Load())[k]; ok {
		return v
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := *b.seen.Load()
	if v, ok := seen[k]; ok {
		return v
	}
	if len(seen) >= b.limit {
		// Past the bound: the overflow key's collector, resolved once and
		// kept beside the others (k itself is not kept).
		k = b.overflow(k)
		if v, ok := seen[k]; ok {
			return v
		}
	}
	v := b.resolve(k)
	next := maps.Clone(seen)
	next[k] = v
	b.seen.Store(&next)
	return v
}
