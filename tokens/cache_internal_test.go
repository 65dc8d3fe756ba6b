package tokens

import (
	"fmt"
	"testing"
	"time"
)

func TestCacheStaysWithinItsSize(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, size := range []int{1, 3, 64, 1000} {
		c := newCache(size)
		for i := range 3 * size {
			id := fmt.Sprintf("tok-%d", i)
			claims := Claims{ID: id, IssuedAt: base, NotBefore: base, ExpiresAt: base.Add(time.Hour)}
			c.put(id+".token", newCacheEntry(id+".token", claims, 0), base)
			if n := c.len(); n > size {
				t.Fatalf("size %d: cache holds %d tokens", size, n)
			}
		}
		if n := c.len(); n < size/2 {
			t.Errorf("size %d: cache holds only %d tokens after %d insertions", size, n, 3*size)
		}
	}
}

func TestFullCacheEvictsExpiredTokensFirst(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newCache(4) // one shard of four
	put := func(id string, exp, now time.Time) {
		claims := Claims{ID: id, IssuedAt: base, NotBefore: base, ExpiresAt: exp}
		c.put(id, newCacheEntry(id, claims, 0), now)
	}
	put("short-1", base.Add(time.Minute), base)
	put("long-1", base.Add(time.Hour), base)
	put("short-2", base.Add(time.Minute), base)
	put("long-2", base.Add(time.Hour), base)

	later := base.Add(2 * time.Minute)
	put("new-1", base.Add(time.Hour), later)
	put("new-2", base.Add(time.Hour), later)
	for _, id := range []string{"long-1", "long-2", "new-1", "new-2"} {
		if c.get(id) == nil {
			t.Errorf("live token %s was evicted while expired ones were cached", id)
		}
	}
	for _, id := range []string{"short-1", "short-2"} {
		if c.get(id) != nil {
			t.Errorf("expired token %s is still cached", id)
		}
	}
	// The jti index kept step with the evictions (internal/lru checks the
	// index itself): forgetting an evicted token drops nothing else.
	c.forget("short-1")
	c.forget("long-1")
	if n := c.len(); n != 3 || c.get("long-1") != nil {
		t.Errorf("after forgetting an evicted and a live token, %d tokens are cached (long-1 kept: %v), want 3", n, c.get("long-1") != nil)
	}
}
