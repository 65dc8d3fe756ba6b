package quota

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/testclock"
)

func TestLimitsNarrowAndWithin(t *testing.T) {
	role := Limits{TokensPerDay: 100_000, RequestsPerMinute: 60}
	user := Limits{TokensPerDay: 50_000, ConcurrentRequests: 2}
	got := role.Narrow(user)
	want := Limits{TokensPerDay: 50_000, RequestsPerMinute: 60, ConcurrentRequests: 2}
	if got != want {
		t.Fatalf("Narrow = %+v, want %+v", got, want)
	}
	for _, tt := range []struct {
		l, bound Limits
		within   bool
	}{
		{Limits{TokensPerDay: 10}, Limits{TokensPerDay: 100}, true},
		{Limits{TokensPerDay: 1000}, Limits{TokensPerDay: 100}, false},
		{Limits{}, Limits{TokensPerDay: 100}, false}, // no limit is wider than any
		{Limits{TokensPerDay: 10, RequestsPerMinute: 5}, Limits{}, true},
	} {
		if got := tt.l.Within(tt.bound); got != tt.within {
			t.Errorf("%+v.Within(%+v) = %v, want %v", tt.l, tt.bound, got, tt.within)
		}
	}
	if err := (Limits{TokensPerMinute: -1}).Validate(); err == nil {
		t.Error("a negative limit validated")
	}
}

// backends runs f against the local counters and against Redis (the
// machine's, under a key prefix of this test's own).
func backends(t *testing.T, f func(t *testing.T, c *Counters, clock *testclock.Clock)) {
	t.Run("local", func(t *testing.T) {
		clock := testclock.New(time.Date(2026, 12, 1, 10, 0, 30, 0, time.UTC))
		f(t, NewLocal(clock.Now, nil), clock)
	})
	t.Run("redis", func(t *testing.T) {
		rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		t.Cleanup(func() { _ = rdb.Close() })
		if err := rdb.Ping(t.Context()).Err(); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("Redis at 127.0.0.1:6379 is required in CI: %v", err)
			}
			t.Skipf("no Redis at 127.0.0.1:6379: %v", err)
		}
		prefix := fmt.Sprintf("gatehouse-test:%s:%d:", t.Name(), time.Now().UnixNano())
		t.Cleanup(func() {
			keys, _ := rdb.Keys(context.Background(), prefix+"*").Result()
			if len(keys) > 0 {
				rdb.Del(context.Background(), keys...)
			}
		})
		// Redis expires keys on its own clock: the windows start now.
		clock := testclock.New(time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second))
		f(t, NewRedis(rdb, prefix, clock.Now), clock)
	})
}

func TestReserveHoldsEveryLimit(t *testing.T) {
	backends(t, func(t *testing.T, c *Counters, clock *testclock.Clock) {
		ctx := t.Context()
		user := Bucket{Key: "user:u1", Limits: Limits{RequestsPerMinute: 3, TokensPerDay: 1000}}
		for i := range 3 {
			r, err := c.Reserve(ctx, []Bucket{user}, 100)
			if err != nil {
				t.Fatalf("request %d: %v", i+1, err)
			}
			if err := r.Settle(ctx, 100); err != nil {
				t.Fatal(err)
			}
		}
		_, err := c.Reserve(ctx, []Bucket{user}, 100)
		var ex *Exceeded
		if !errors.As(err, &ex) || ex.Window != RequestsMinute || ex.Limit != 3 || ex.Used != 3 || ex.Bucket != "user:u1" {
			t.Fatalf("fourth request in a minute: %v, want requests_per_minute exceeded", err)
		}
		if want := clock.Now().Truncate(time.Minute).Add(time.Minute); !ex.Reset.Equal(want) {
			t.Errorf("reset %v, want %v", ex.Reset, want)
		}
		// The next minute allows requests again, and the day counts on.
		clock.Advance(time.Minute)
		r, err := c.Reserve(ctx, []Bucket{user}, 600)
		if err != nil {
			t.Fatal(err)
		}
		// 300 + 600 reserved of 1000: a request estimated at 200 would pass the day.
		if _, err := c.Reserve(ctx, []Bucket{user}, 200); !errors.As(err, &ex) || ex.Window != TokensDay || ex.Used != 900 {
			t.Fatalf("past the day's tokens: %v", err)
		}
		// Settled at its real count, the room comes back.
		if err := r.Settle(ctx, 50); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Reserve(ctx, []Bucket{user}, 200); err != nil {
			t.Fatalf("after the settlement: %v", err)
		}
	})
}

func TestConcurrentSlotsAreReleased(t *testing.T) {
	backends(t, func(t *testing.T, c *Counters, _ *testclock.Clock) {
		ctx := t.Context()
		b := []Bucket{{Key: "token:t1", Limits: Limits{ConcurrentRequests: 2}}}
		r1, err := c.Reserve(ctx, b, 10)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Reserve(ctx, b, 10); err != nil {
			t.Fatal(err)
		}
		var ex *Exceeded
		if _, err := c.Reserve(ctx, b, 10); !errors.As(err, &ex) || ex.Window != Concurrent {
			t.Fatalf("a third concurrent request: %v", err)
		}
		if err := r1.Settle(ctx, 10); err != nil {
			t.Fatal(err)
		}
		_ = r1.Settle(ctx, 10) // a second settlement changes nothing
		if _, err := c.Reserve(ctx, b, 10); err != nil {
			t.Fatalf("after one ended: %v", err)
		}
		if _, err := c.Reserve(ctx, b, 10); !errors.As(err, &ex) {
			t.Fatalf("the slot was released twice: %v", err)
		}
	})
}

// TestReservationsHoldUnderConcurrency: of many requests at once, exactly
// as many as the limit allows are admitted.
func TestReservationsHoldUnderConcurrency(t *testing.T) {
	backends(t, func(t *testing.T, c *Counters, _ *testclock.Clock) {
		b := []Bucket{{Key: "user:busy", Limits: Limits{TokensPerMinute: 1000}}, {Key: "token:busy", Limits: Limits{RequestsPerMinute: 500}}}
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				if _, err := c.Reserve(context.Background(), b, 100); err == nil {
					admitted.Add(1)
				} else if !errors.As(err, new(*Exceeded)) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if got := admitted.Load(); got != 10 {
			t.Fatalf("%d of 64 requests of 100 tokens admitted under 1000 tokens/min, want 10", got)
		}
	})
}

func TestUnreachableRedisIsUnavailable(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	c := NewRedis(rdb, "x:", time.Now)
	if _, err := c.Reserve(t.Context(), []Bucket{{Key: "user:u", Limits: Limits{RequestsPerMinute: 1}}}, 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Reserve = %v, want ErrUnavailable", err)
	}
	// Nothing limited: nothing to reach.
	if _, err := c.Reserve(t.Context(), []Bucket{{Key: "user:u"}}, 1); err != nil {
		t.Fatalf("no limits: %v", err)
	}
}

func TestLeftIsTheTightestBucket(t *testing.T) {
	backends(t, func(t *testing.T, c *Counters, _ *testclock.Clock) {
		ctx := t.Context()
		b := []Bucket{{Key: "user:l", Limits: Limits{TokensPerDay: 1000, RequestsPerMinute: 10}}, {Key: "token:l", Limits: Limits{TokensPerDay: 300}}}
		r, err := c.Reserve(ctx, b, 100)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Settle(ctx, 120); err != nil {
			t.Fatal(err)
		}
		left, err := c.Left(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		got := map[Window]int64{}
		for _, s := range left {
			got[s.Window] = s.Remaining
		}
		if got[RequestsMinute] != 9 || got[TokensDay] != 180 || len(got) != 2 {
			t.Fatalf("left %+v, want 9 requests and 180 tokens (the token's day)", left)
		}
	})
}

// BenchmarkReserveSettle is the price of a limited request's reservation
// and settlement on the instance's counters.
func BenchmarkReserveSettle(b *testing.B) {
	c := NewLocal(time.Now, nil)
	buckets := []Bucket{{Key: "user:u", Limits: Limits{RequestsPerMinute: 1 << 40, TokensPerDay: 1 << 50}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r, err := c.Reserve(ctx, buckets, 100)
		if err != nil {
			b.Fatal(err)
		}
		_ = r.Settle(ctx, 90)
	}
}

// BenchmarkReserveSettleRedis is the same against the machine's Redis: two
// round trips.
func BenchmarkReserveSettleRedis(b *testing.B) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		b.Skip(err)
	}
	c := NewRedis(rdb, fmt.Sprintf("gatehouse-bench:%d:", time.Now().UnixNano()), time.Now)
	buckets := []Bucket{{Key: "user:u", Limits: Limits{RequestsPerMinute: 1 << 40, TokensPerDay: 1 << 50}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r, err := c.Reserve(ctx, buckets, 100)
		if err != nil {
			b.Fatal(err)
		}
		_ = r.Settle(ctx, 90)
	}
}

// TestLocalSeedsDayAndMonthFromTheStore: the first time the local counters
// count a bucket's day and month, they start from what the seed says was
// used in each window (once per window); per-minute windows start at 0; a
// seed that fails refuses with ErrUnavailable.
func TestLocalSeedsDayAndMonthFromTheStore(t *testing.T) {
	clock := testclock.New(time.Date(2026, 12, 1, 10, 0, 30, 0, time.UTC))
	var asked []string
	var fail error
	seed := func(_ context.Context, bucket string, start time.Time) (int64, error) {
		asked = append(asked, bucket+" "+start.Format(time.RFC3339))
		if fail != nil {
			return 0, fail
		}
		if start.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
			return 900, nil // today is the month's first day: day and month both saw 900
		}
		return 0, nil
	}
	c := NewLocal(clock.Now, seed)
	b := []Bucket{{Key: "user:ann", Limits: Limits{TokensPerDay: 1000, TokensPerMonth: 5000, TokensPerMinute: 200}}}
	res, err := c.Reserve(t.Context(), b, 100)
	if err != nil {
		t.Fatalf("100 tokens over 900 used of 1000 a day: %v", err)
	}
	left := map[Window]int64{}
	for _, st := range res.Status {
		left[st.Window] = st.Remaining
	}
	if want := map[Window]int64{TokensMinute: 100, TokensDay: 0, TokensMonth: 4000}; fmt.Sprint(left) != fmt.Sprint(want) {
		t.Fatalf("remaining %v, want tokens/min 100, tokens/day 0, tokens/month 4000", left)
	}
	var ex *Exceeded
	if _, err := c.Reserve(t.Context(), b, 1); !errors.As(err, &ex) || ex.Window != TokensDay || ex.Used != 1000 {
		t.Fatalf("one more token: %v, want tokens_per_day exceeded at 1000", err)
	}
	if want := "[user:ann 2026-12-01T00:00:00Z user:ann 2026-12-01T00:00:00Z]"; fmt.Sprint(asked) != want {
		t.Fatalf("seeded %v, want the day and the month once each: %s", asked, want)
	}
	fail = errors.New("store down")
	if _, err := c.Reserve(t.Context(), []Bucket{{Key: "token:t1", Limits: Limits{TokensPerDay: 10}}}, 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a failing seed: %v, want ErrUnavailable", err)
	}
}
