package quota

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewLocal keeps the counters in this instance: exact for one instance.
// seed, when not nil, gives a day's or a month's counter the tokens already
// used in it (the stored usage) the first time the instance counts it, so
// that a restart does not start those windows over.
func NewLocal(now func() time.Time, seed Seed) *Counters {
	return &Counters{backend: &local{m: map[string]localCounter{}, now: now, seed: seed}, now: now}
}

// Seed is the tokens a bucket ("user:<id>", "token:<jti>") used from start
// to now.
type Seed func(ctx context.Context, bucket string, start time.Time) (int64, error)

// NewRedis keeps the counters in Redis, shared by every instance that uses
// it, under keys that start with prefix.
func NewRedis(rdb redis.UniversalClient, prefix string, now func() time.Time) *Counters {
	return &Counters{backend: &redisBackend{rdb: rdb, prefix: prefix}, now: now}
}

type localCounter struct {
	value int64
	end   time.Time
	held  bool // a concurrent-requests counter: kept while a slot is held
}

type local struct {
	mu    sync.Mutex
	m     map[string]localCounter
	now   func() time.Time
	sweep time.Time
	seed  Seed
}

// seedMissing gives the day and month counters of cs this instance has not
// counted yet what the seed says was used in their window. It reads
// outside the lock; a counter another request created meanwhile is kept.
func (l *local) seedMissing(ctx context.Context, cs []counter) error {
	if l.seed == nil {
		return nil
	}
	var missing []counter
	l.mu.Lock()
	for _, c := range cs {
		if _, ok := l.m[c.key]; !ok && (c.win == TokensDay || c.win == TokensMonth) {
			missing = append(missing, c)
		}
	}
	l.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	used := make([]int64, len(missing))
	for i, c := range missing {
		n, err := l.seed(ctx, c.bucket, c.start)
		if err != nil {
			return fmt.Errorf("reading the tokens %s used since %s: %w", c.bucket, c.start.Format(time.RFC3339), err)
		}
		used[i] = n
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, c := range missing {
		if _, ok := l.m[c.key]; !ok {
			l.m[c.key] = localCounter{value: used[i], end: c.end}
		}
	}
	return nil
}

func (l *local) reserve(ctx context.Context, cs []counter) (int, int64, []int64, error) {
	if err := l.seedMissing(ctx, cs); err != nil {
		return 0, 0, nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.forgetEnded(now)
	for i, c := range cs {
		if v := l.m[c.key].value; v+c.delta > c.limit {
			return i, v, nil, nil
		}
	}
	remaining := make([]int64, len(cs))
	for i, c := range cs {
		v := l.m[c.key]
		v.value += c.delta
		v.end, v.held = c.end, c.win == Concurrent
		l.m[c.key] = v
		remaining[i] = c.limit - v.value
	}
	return -1, 0, remaining, nil
}

func (l *local) adjust(_ context.Context, cs []counter) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cs {
		v, ok := l.m[c.key]
		if !ok {
			continue // its window ended meanwhile
		}
		v.value += c.delta
		l.m[c.key] = v
	}
	return nil
}

func (l *local) peek(ctx context.Context, cs []counter) ([]int64, error) {
	if err := l.seedMissing(ctx, cs); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = l.m[c.key].value
	}
	return out, nil
}

// forgetEnded drops the counters of windows that ended, once a minute.
func (l *local) forgetEnded(now time.Time) {
	if now.Before(l.sweep) {
		return
	}
	l.sweep = now.Add(time.Minute)
	for k, v := range l.m {
		if v.end.Before(now) && (!v.held || v.value <= 0) {
			delete(l.m, k)
		}
	}
}

// reserveScript checks every counter, then adds to all or to none: one
// script, so Redis runs it without any other command in between. KEYS are
// the counters; ARGV holds, per counter, delta, limit and the expiry in
// Unix milliseconds. It returns {index+1, used} for the first counter that
// would pass its limit, or {0, remaining…}.
var reserveScript = redis.NewScript(`
local n = #KEYS
for i = 1, n do
  local v = tonumber(redis.call("GET", KEYS[i]) or "0")
  if v + tonumber(ARGV[3*i-2]) > tonumber(ARGV[3*i-1]) then
    return {i, v}
  end
end
local out = {0}
for i = 1, n do
  local v = redis.call("INCRBY", KEYS[i], ARGV[3*i-2])
  redis.call("PEXPIREAT", KEYS[i], ARGV[3*i])
  out[i+1] = tonumber(ARGV[3*i-1]) - v
end
return out
`)

// adjustScript adds deltas to counters that still exist (a settlement after
// its window ended changes nothing).
var adjustScript = redis.NewScript(`
for i = 1, #KEYS do
  if redis.call("EXISTS", KEYS[i]) == 1 then
    redis.call("INCRBY", KEYS[i], ARGV[i])
  end
end
return 0
`)

type redisBackend struct {
	rdb    redis.UniversalClient
	prefix string
}

// keyOf puts every counter of one bucket in one hash slot (Redis Cluster).
func (r *redisBackend) keyOf(c counter) string {
	return r.prefix + "{" + c.bucket + "}" + c.key[len(c.bucket):]
}

func (r *redisBackend) reserve(ctx context.Context, cs []counter) (int, int64, []int64, error) {
	keys := make([]string, len(cs))
	args := make([]any, 0, 3*len(cs))
	for i, c := range cs {
		keys[i] = r.keyOf(c)
		// A window's counter outlives it by a minute (late settlements);
		// a concurrent slot a crashed request never released, by ten.
		end := c.end.Add(time.Minute)
		if c.win == Concurrent {
			end = c.end.Add(10 * time.Minute)
		}
		args = append(args, c.delta, c.limit, end.UnixMilli())
	}
	out, err := reserveScript.Run(ctx, r.rdb, keys, args...).Int64Slice()
	if err != nil {
		return 0, 0, nil, err
	}
	if out[0] > 0 {
		return int(out[0]) - 1, out[1], nil, nil
	}
	return -1, 0, out[1:], nil
}

func (r *redisBackend) adjust(ctx context.Context, cs []counter) error {
	keys := make([]string, len(cs))
	args := make([]any, len(cs))
	for i, c := range cs {
		keys[i] = r.keyOf(c)
		args[i] = strconv.FormatInt(c.delta, 10)
	}
	return adjustScript.Run(ctx, r.rdb, keys, args...).Err()
}

func (r *redisBackend) peek(ctx context.Context, cs []counter) ([]int64, error) {
	keys := make([]string, len(cs))
	for i, c := range cs {
		keys[i] = r.keyOf(c)
	}
	// One GET per key: with Redis Cluster they may live in several slots.
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]int64, len(cs))
	for i, cmd := range cmds {
		if n, err := cmd.Int64(); err == nil {
			out[i] = n
		}
	}
	return out, nil
}
