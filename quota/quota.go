// Package quota holds Gatehouse's usage limits exactly under concurrency and
// across instances (spec §8): a request reserves its estimate in every
// window of every bucket it counts against before it goes on, and the
// reservation is settled with the real count when the answer ends. The
// check and the reservation are one atomic step — a Lua script in Redis
// when Redis is configured, a mutex in the instance otherwise — so admitted
// reservations never add up to more than a limit; only the difference
// between an estimate and the real count can pass it. core imports it; it
// imports nothing of Gatehouse.
package quota

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Limits are the quotas of a role, a user or a token. Zero means no limit.
type Limits struct {
	RequestsPerMinute  int64 `json:"requests_per_minute,omitempty"`
	TokensPerMinute    int64 `json:"tokens_per_minute,omitempty"`
	TokensPerDay       int64 `json:"tokens_per_day,omitempty"`
	TokensPerMonth     int64 `json:"tokens_per_month,omitempty"`
	ConcurrentRequests int64 `json:"concurrent_requests,omitempty"`
}

// IsZero reports whether l limits nothing.
func (l Limits) IsZero() bool { return l == Limits{} }

// Validate refuses negative limits.
func (l Limits) Validate() error {
	for _, w := range l.windows() {
		if w.limit < 0 {
			return fmt.Errorf("%s must not be negative", w.window.name())
		}
	}
	return nil
}

// Narrow is the tighter of l and o in every limit (zero: no limit).
func (l Limits) Narrow(o Limits) Limits {
	n := func(a, b int64) int64 {
		switch {
		case a == 0:
			return b
		case b == 0 || a < b:
			return a
		}
		return b
	}
	return Limits{
		RequestsPerMinute:  n(l.RequestsPerMinute, o.RequestsPerMinute),
		TokensPerMinute:    n(l.TokensPerMinute, o.TokensPerMinute),
		TokensPerDay:       n(l.TokensPerDay, o.TokensPerDay),
		TokensPerMonth:     n(l.TokensPerMonth, o.TokensPerMonth),
		ConcurrentRequests: n(l.ConcurrentRequests, o.ConcurrentRequests),
	}
}

// Within reports whether l is never wider than bound: every limit bound sets,
// l sets too, no higher.
func (l Limits) Within(bound Limits) bool { return l.Narrow(bound) == l }

// Window is one of the counters a limit applies to.
type Window int

// The windows.
const (
	RequestsMinute Window = iota
	TokensMinute
	TokensDay
	TokensMonth
	Concurrent
)

func (w Window) name() string {
	return [...]string{"requests_per_minute", "tokens_per_minute", "tokens_per_day", "tokens_per_month", "concurrent_requests"}[w]
}

// String is the limit's name, as in Limits' JSON.
func (w Window) String() string { return w.name() }

// PerMinute reports whether w resets within a minute (a rate limit, OpenAI's
// rate_limit_exceeded) rather than a day or month (insufficient_quota).
func (w Window) PerMinute() bool { return w == RequestsMinute || w == TokensMinute || w == Concurrent }

type windowLimit struct {
	window Window
	limit  int64
}

func (l Limits) windows() [5]windowLimit {
	return [5]windowLimit{
		{RequestsMinute, l.RequestsPerMinute}, {TokensMinute, l.TokensPerMinute}, {TokensDay, l.TokensPerDay},
		{TokensMonth, l.TokensPerMonth}, {Concurrent, l.ConcurrentRequests},
	}
}

// start is the beginning of the window of w that holds now, and its end.
func (w Window) bounds(now time.Time) (start, end time.Time) {
	now = now.UTC()
	switch w {
	case TokensDay:
		start = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	case TokensMonth:
		start = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	case Concurrent:
		return time.Time{}, now.Add(time.Minute) // no window; held until released
	}
	start = now.Truncate(time.Minute)
	return start, start.Add(time.Minute)
}

// Bucket is one set of counters a request counts against: a user's (with
// the limits of their role narrowed by their own), a token's.
type Bucket struct {
	Key    string // "user:<id>", "token:<jti>"
	Limits Limits
}

// Exceeded is a refused reservation: the first limit it would pass.
type Exceeded struct {
	Bucket string
	Window Window
	Limit  int64
	Used   int64
	Reset  time.Time // when the window starts over
}

func (e *Exceeded) Error() string {
	return fmt.Sprintf("%s: %s of %d reached (%d used)", e.Bucket, e.Window, e.Limit, e.Used)
}

// ErrUnavailable wraps a failure to reach the counters.
var ErrUnavailable = errors.New("quota counters unavailable")

// Status is what is left of one bucket's limits after a reservation, for
// the x-ratelimit-* headers.
type Status struct {
	Window    Window
	Limit     int64
	Remaining int64
	Reset     time.Time
}

// counter is one counter a reservation touched.
type counter struct {
	bucket string
	key    string // backend key: bucket, window, window start
	delta  int64  // what the reservation added
	limit  int64
	start  time.Time // when its window began (zero for concurrent requests)
	end    time.Time // when the counter may be forgotten
	win    Window
}

// Reservation is what a request holds between Reserve and Settle.
type Reservation struct {
	backend  backend
	counters []counter
	estimate int64
	Status   []Status // per limited window of the first bucket, for headers
	settled  bool
}

// Counters keep the reservations of one Gatehouse (one instance with the
// local backend, all instances sharing a Redis with the Redis backend).
type Counters struct {
	backend backend
	now     func() time.Time
}

type backend interface {
	// reserve adds every counter's delta if none would pass its limit,
	// atomically; else it returns the index of the first that would, with
	// its current value.
	reserve(ctx context.Context, cs []counter) (exceeded int, used int64, remaining []int64, err error)
	// adjust adds deltas (settlements, releases) without a check.
	adjust(ctx context.Context, cs []counter) error
	// peek reads the counters' current values.
	peek(ctx context.Context, cs []counter) ([]int64, error)
}

// Reserve reserves one request and estimate tokens in every limited window
// of the buckets. It returns *Exceeded when a limit would be passed, an
// error wrapping ErrUnavailable when the counters cannot be reached.
func (c *Counters) Reserve(ctx context.Context, buckets []Bucket, estimate int64) (*Reservation, error) {
	now := c.now()
	cs := countersOf(buckets, estimate, now)
	res := &Reservation{backend: c.backend, counters: cs, estimate: estimate}
	if len(cs) == 0 {
		return res, nil
	}
	i, used, remaining, err := c.backend.reserve(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if i >= 0 {
		reset := cs[i].end
		if cs[i].win == Concurrent {
			reset = now.Add(time.Second)
		}
		return nil, &Exceeded{Bucket: cs[i].bucket, Window: cs[i].win, Limit: cs[i].limit, Used: used, Reset: reset}
	}
	res.Status = make([]Status, 0, len(cs))
	for j, ct := range cs {
		if ct.win == Concurrent {
			continue
		}
		res.Status = append(res.Status, Status{Window: ct.win, Limit: ct.limit, Remaining: max(remaining[j], 0), Reset: ct.end})
	}
	return res, nil
}

// countersOf are the counters of every limited window of the buckets, each
// with what a request of estimate tokens adds to it.
func countersOf(buckets []Bucket, estimate int64, now time.Time) []counter {
	n := 0
	for _, b := range buckets {
		for _, w := range b.Limits.windows() {
			if w.limit != 0 {
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	cs := make([]counter, 0, n)
	var buf [96]byte // a key is built here and copied once, into its string
	for _, b := range buckets {
		for _, w := range b.Limits.windows() {
			if w.limit == 0 {
				continue
			}
			start, end := w.window.bounds(now)
			delta := estimate
			if w.window == RequestsMinute || w.window == Concurrent {
				delta = 1
			}
			k := strconv.AppendInt(append(append(buf[:0], b.Key...), ':'), int64(w.window), 10)
			if w.window != Concurrent {
				k = strconv.AppendInt(append(k, ':'), start.Unix(), 10)
			}
			cs = append(cs, counter{bucket: b.Key, key: string(k), delta: delta, limit: w.limit, start: start, end: end, win: w.window})
		}
	}
	return cs
}

// Left is what remains of every limited window of the buckets now: for
// each window the tightest of the buckets.
func (c *Counters) Left(ctx context.Context, buckets []Bucket) ([]Status, error) {
	now := c.now()
	cs := countersOf(buckets, 0, now)
	if len(cs) == 0 {
		return nil, nil
	}
	used, err := c.backend.peek(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	byWindow := map[Window]Status{}
	var order []Window
	for i, ct := range cs {
		st := Status{Window: ct.win, Limit: ct.limit, Remaining: max(ct.limit-used[i], 0), Reset: ct.end}
		prev, seen := byWindow[ct.win]
		if !seen {
			order = append(order, ct.win)
		}
		if !seen || st.Remaining < prev.Remaining {
			byWindow[ct.win] = st
		}
	}
	out := make([]Status, 0, len(order))
	for _, w := range order {
		out = append(out, byWindow[w])
	}
	return out, nil
}

// Settle replaces the reservation's token estimate by the real count and
// releases its concurrent slot. It is safe to call once; later calls do
// nothing.
func (r *Reservation) Settle(ctx context.Context, actualTokens int64) error {
	if r == nil || r.settled || len(r.counters) == 0 {
		return nil
	}
	r.settled = true
	// The reservation is settled once: its counters become the adjustments.
	adj := r.counters[:0]
	for _, ct := range r.counters {
		switch ct.win {
		case Concurrent:
			ct.delta = -1
		case RequestsMinute:
			continue
		default:
			ct.delta = actualTokens - r.estimate
			if ct.delta == 0 {
				continue
			}
		}
		adj = append(adj, ct)
	}
	r.counters = nil
	if len(adj) == 0 {
		return nil
	}
	return r.backend.adjust(ctx, adj)
}

// Shared reports whether the counters are shared by several instances (in
// Redis): reaching them then takes a network call that needs a deadline.
func (c *Counters) Shared() bool {
	_, local := c.backend.(*local)
	return !local
}

// Estimate is the tokens the reservation holds.
func (r *Reservation) Estimate() int64 { return r.estimate }
