package lru

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// byPrefix groups "a/1", "a/2" … as "a".
func byPrefix(v string) string { group, _, _ := strings.Cut(v, "/"); return group }

func mustHold(t *testing.T, c *Cache[string, string], keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := c.Peek(k); !ok {
			t.Errorf("%s was dropped", k)
		}
	}
}

func mustNotHold(t *testing.T, c *Cache[string, string], keys ...string) {
	t.Helper()
	for _, k := range keys {
		if v, ok := c.Peek(k); ok {
			t.Errorf("%s is still held (%q)", k, v)
		}
	}
}

func TestCacheStaysWithinItsSizeAndNeverEmptiesItself(t *testing.T) {
	for _, size := range []int{1, 3, 64, 127, 128, 1000, 100_000} {
		c := New[int, int](size, nil)
		for i := range 3 * size {
			c.Put(i, i, time.Time{}, base)
			if i > 1000 && i%1000 != 0 {
				continue // counting is slow under -race
			}
			if n := c.Len(); n > size {
				t.Fatalf("size %d: cache holds %d values", size, n)
			}
		}
		// Every shard is full: the cache lost at most the rounding of
		// size into shards.
		if n, want := c.Len(), size-len(c.shards)+1; n < want {
			t.Errorf("size %d: cache holds %d values after %d insertions, want at least %d", size, n, 3*size, want)
		}
		if _, ok := c.Get(3*size-1, base); !ok {
			t.Errorf("size %d: the newest value was dropped", size)
		}
	}
}

func TestSmallCacheIsOneExactShard(t *testing.T) {
	for size, want := range map[int]int{1: 1, 127: 1, 128: 2, 1000: 8, 10_000: 64, 100_000: 64} {
		if c := New[int, int](size, nil); len(c.shards) != want {
			t.Errorf("size %d: %d shards, want %d", size, len(c.shards), want)
		}
	}
}

func TestExpiredValueIsNotServed(t *testing.T) {
	c := New[string, string](8, nil)
	c.Put("k", "v", base.Add(time.Minute), base)
	c.Put("forever", "v", time.Time{}, base)
	for _, tc := range []struct {
		key  string
		at   time.Time
		want bool
	}{
		{"k", base, true},
		{"k", base.Add(time.Minute - time.Nanosecond), true},
		{"k", base.Add(time.Minute), false},
		{"forever", base.Add(100 * 365 * 24 * time.Hour), true},
		{"unknown", base, false},
	} {
		if v, ok := c.Get(tc.key, tc.at); ok != tc.want || ok && v != "v" {
			t.Errorf("Get(%s) at %v = %q, %v; want found %v", tc.key, tc.at.Sub(base), v, ok, tc.want)
		}
	}
	// Peek serves the expired value, for a caller that judges it itself.
	if v, ok := c.Peek("k"); !ok || v != "v" {
		t.Errorf("Peek of an expired value = %q, %v", v, ok)
	}
}

func TestFullCacheDropsExpiredValuesFirst(t *testing.T) {
	c := New[string, string](4, byPrefix)
	c.Put("short-1", "s/1", base.Add(time.Minute), base)
	c.Put("long-1", "l/1", base.Add(time.Hour), base)
	c.Put("short-2", "s/2", base.Add(time.Minute), base)
	c.Put("long-2", "l/2", base.Add(time.Hour), base)

	later := base.Add(2 * time.Minute)
	c.Put("new-1", "n/1", base.Add(time.Hour), later)
	c.Put("new-2", "n/2", base.Add(time.Hour), later)
	mustHold(t, c, "long-1", "long-2", "new-1", "new-2")
	mustNotHold(t, c, "short-1", "short-2")
	if n := len(c.shards[0].groups); n != 2 {
		t.Errorf("group index has %d groups, want 2 (l and n)", n)
	}
}

func TestEvictionKeepsRecentlyUsedValues(t *testing.T) {
	c := New[string, string](4, nil)
	for _, k := range []string{"a", "b", "c", "d"} {
		c.Put(k, k, time.Time{}, base)
	}
	c.Get("a", base) // the oldest, but in use
	c.Put("e", "e", time.Time{}, base)
	mustHold(t, c, "a", "c", "d", "e")
	mustNotHold(t, c, "b")

	c.Put("f", "f", time.Time{}, base)
	mustNotHold(t, c, "c")

	// A value read between insertions survives a flood of others.
	for i := range 100 {
		c.Put(fmt.Sprint("flood-", i), "", time.Time{}, base)
		if _, ok := c.Get("a", base); !ok {
			t.Fatalf("a value in use was evicted by the %d-th new value", i+1)
		}
	}
}

func TestRemoveGroupDropsTheWholeGroupOnly(t *testing.T) {
	c := New[string, string](1000, byPrefix) // several shards
	for i := range 50 {
		c.Put(fmt.Sprint("alice-", i), fmt.Sprint("alice/", i), time.Time{}, base)
		c.Put(fmt.Sprint("bob-", i), fmt.Sprint("bob/", i), time.Time{}, base)
	}
	// A value stored again under another group leaves its old group.
	c.Put("alice-0", "carol/0", time.Time{}, base)
	c.Remove("alice-1")
	c.RemoveGroup("alice")
	c.RemoveGroup("nobody")
	if n := c.Len(); n != 51 {
		t.Errorf("after RemoveGroup, %d values are left, want 51", n)
	}
	mustHold(t, c, "alice-0", "bob-0", "bob-49")
	mustNotHold(t, c, "alice-2", "alice-49")
	for i := range c.shards {
		if _, ok := c.shards[i].groups["alice"]; ok {
			t.Fatalf("shard %d still indexes the removed group", i)
		}
	}
	c.RemoveGroup("bob")
	c.RemoveGroup("carol")
	if n := c.Len(); n != 0 {
		t.Errorf("%d values left after removing every group", n)
	}
}

func TestPutIfAbsentKeepsALiveValue(t *testing.T) {
	c := New[string, string](8, nil)
	steps := []struct {
		at   time.Duration
		want bool
	}{{0, true}, {time.Second, false}, {time.Minute - time.Nanosecond, false}, {time.Minute, true}, {time.Minute + time.Second, false}}
	for _, s := range steps {
		now := base.Add(s.at)
		if got := c.PutIfAbsent("k", fmt.Sprint(s.at), now.Add(time.Minute), now); got != s.want {
			t.Errorf("PutIfAbsent at %v = %v, want %v", s.at, got, s.want)
		}
	}
	if v, _ := c.Peek("k"); v != fmt.Sprint(time.Minute) {
		t.Errorf("value = %q, want the one stored at 1m0s", v)
	}
}

func TestRemoveAndPurge(t *testing.T) {
	c := New[string, string](1000, byPrefix)
	for i := range 100 {
		c.Put(fmt.Sprint(i), fmt.Sprint("g/", i), time.Time{}, base)
	}
	c.Remove("7")
	c.Remove("unknown")
	mustNotHold(t, c, "7")
	mustHold(t, c, "6", "8")
	c.Purge()
	if n := c.Len(); n != 0 {
		t.Fatalf("%d values after Purge", n)
	}
	c.Put("7", "g/7", time.Time{}, base)
	c.RemoveGroup("g")
	mustNotHold(t, c, "7")
}

func TestConcurrentUse(t *testing.T) {
	c := New[string, string](200, byPrefix)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				key := fmt.Sprint(i % 300)
				now := base.Add(time.Duration(i) * time.Millisecond)
				switch i % 10 {
				case 0:
					c.PutIfAbsent(key, fmt.Sprint(w%3, "/", key), now.Add(time.Second), now)
				case 1:
					c.Remove(key)
				case 2:
					c.RemoveGroup(fmt.Sprint(w % 3))
				case 3:
					if i%500 == 3 {
						c.Purge()
					}
				default:
					c.Put(key, fmt.Sprint(w%3, "/", key), now.Add(time.Second), now)
				}
				if v, ok := c.Get(key, now); ok && !strings.HasSuffix(v, "/"+key) {
					t.Errorf("Get(%s) = %q, the value of another key", key, v)
					return
				}
				if n := c.Len(); n > 200 {
					t.Errorf("cache holds %d values, more than its size", n)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestStatsCountHitsAndMisses(t *testing.T) {
	c := New[string, int](1000, nil)
	now := time.Now()
	c.Put("live", 1, now.Add(time.Minute), now)
	c.Put("expired", 2, now.Add(-time.Second), now)
	c.Get("live", now)    // hit
	c.Get("expired", now) // miss: expired
	c.Get("absent", now)  // miss
	c.Peek("expired")     // hit: Peek serves expired entries
	c.Peek("absent")      // miss
	if hits, misses := c.Stats(); hits != 2 || misses != 3 {
		t.Fatalf("Stats = %d hits, %d misses; want 2, 3", hits, misses)
	}
}
