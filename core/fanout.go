package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// With Redis, a change made on one instance reaches the others at once over
// pub/sub; the store is then re-read less often, as a backstop. Each instance
// hears its own heartbeat through the channel; when it has not for
// heartbeatTimeout (Redis down, hung or restarting), it treats announcements
// as lost: it re-reads the store at once and then polls it as often as
// without Redis, so a change still crosses over within a second.
const (
	fanoutChannel = "gatehouse:events"

	pollRevocations      = 500 * time.Millisecond
	pollRevocationsRedis = 5 * time.Second
	cacheUsers           = 500 * time.Millisecond
	cacheUsersRedis      = 5 * time.Second
	publishTimeout       = time.Second

	heartbeatEvery   = 150 * time.Millisecond
	heartbeatTimeout = 500 * time.Millisecond
)

// fanoutEvent is one change announced to the other instances.
type fanoutEvent struct {
	Kind string `json:"kind"` // revoke, revocations, user, session, settings, keys, break_glass
	ID   string `json:"id,omitempty"`
	Exp  int64  `json:"exp,omitempty"` // revoke: the token's expiry (unix seconds)
	From string `json:"from"`          // the announcing instance, which skips its own events
}

type fanout struct {
	rdb       *redis.Client // shared by the runtimes of this process (shared.go)
	release   func()
	instance  string
	outbox    chan fanoutEvent // announcements waiting for the publisher
	lastHeard atomic.Int64     // unix nanoseconds of the last own heartbeat heard back
	healthy   atomic.Bool      // whether announcements can be relied on now
}

func newFanout(url string) (*fanout, error) {
	rdb, release, err := acquireRedis(url)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		release()
		return nil, err
	}
	return &fanout{rdb: rdb, release: release, instance: hex.EncodeToString(id), outbox: make(chan fanoutEvent, 1024)}, nil
}

// announce queues a change for the other instances. It never blocks or
// fails the caller: the change is already in the store, and the backstop
// resync carries it if Redis is away or the queue is full.
func (rt *Runtime) announce(ev fanoutEvent) {
	if rt.fanout == nil {
		return
	}
	ev.From = rt.fanout.instance
	select {
	case rt.fanout.outbox <- ev:
	default:
	}
}

// publish sends queued announcements, and a heartbeat every heartbeatEvery,
// until ctx ends.
func (rt *Runtime) publish(ctx context.Context) {
	beat := time.NewTicker(heartbeatEvery)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			payload, _ := json.Marshal(fanoutEvent{Kind: "heartbeat", From: rt.fanout.instance})
			pctx, cancel := context.WithTimeout(ctx, heartbeatTimeout)
			_ = rt.fanout.rdb.Publish(pctx, fanoutChannel, payload).Err()
			cancel()
		case ev := <-rt.fanout.outbox:
			payload, _ := json.Marshal(ev)
			pctx, cancel := context.WithTimeout(ctx, publishTimeout)
			err := rt.fanout.rdb.Publish(pctx, fanoutChannel, payload).Err()
			cancel()
			if err != nil && ctx.Err() == nil {
				rt.Logger.Warn("announcing a change over redis failed; other instances will see it at their next resync",
					zap.String("kind", ev.Kind), zap.Error(err))
			}
		}
	}
}

// listen applies the other instances' announcements until ctx ends. go-redis
// reconnects and resubscribes by itself when Redis comes back.
func (rt *Runtime) listen(ctx context.Context) {
	sub := rt.fanout.rdb.Subscribe(ctx, fanoutChannel)
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			var ev fanoutEvent
			if err := json.Unmarshal([]byte(msg.Payload), &ev); err != nil {
				continue
			}
			if ev.From == rt.fanout.instance {
				if ev.Kind == "heartbeat" {
					rt.fanout.lastHeard.Store(time.Now().UnixNano())
				}
				continue
			}
			rt.apply(ctx, ev)
		}
	}
}

// fanoutHealthy reports whether announcements reach this instance now.
func (rt *Runtime) fanoutHealthy() bool {
	return rt.fanout != nil && rt.fanout.healthy.Load()
}

// watchFanout follows the heartbeat. When it stops, announcements made since
// may be lost: the caches go, and the store is read at once; the periodic
// reads then run at their rates without Redis. When it comes back, the store
// is read once more for what was announced while this instance was away.
func (rt *Runtime) watchFanout(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		heard := time.Since(time.Unix(0, rt.fanout.lastHeard.Load())) < heartbeatTimeout
		if heard == rt.fanout.healthy.Load() {
			continue
		}
		rt.fanout.healthy.Store(heard)
		rt.metrics.FanoutHealthy(heard)
		if heard {
			rt.Logger.Info("redis announcements are back; store reads return to their backstop rate")
		} else {
			rt.Logger.Warn("redis announcements are not arriving; reading the store every half second until they do")
		}
		rt.catchUp(ctx)
	}
}

// catchUp re-reads from the store everything announcements carry.
func (rt *Runtime) catchUp(ctx context.Context) {
	rt.forgetAllUsers()
	rt.refreshRevocations(ctx)
	rt.reloadKeys(ctx)
	rt.checkSettings(ctx)
	rt.followBreakGlass(ctx)
	rt.recheckInflight()
}

func (rt *Runtime) apply(ctx context.Context, ev fanoutEvent) {
	defer rt.recheckInflight()
	switch ev.Kind {
	case "revoke":
		rt.revoked.add(ev.ID, time.Unix(ev.Exp, 0))
		rt.tokens.Forget(ev.ID)
	case "revocations":
		rt.refreshRevocations(ctx)
	case "user":
		rt.forgetUser(ev.ID)
	case "session":
		rt.Sessions.Forget(ev.ID)
	case "settings":
		if err := rt.loadPolicy(ctx); err != nil {
			rt.Logger.Error("settings announced over redis do not make a valid policy; keeping the previous one", zap.Error(err))
		}
	case "break_glass":
		if err := rt.loadBreakGlass(ctx); err != nil {
			rt.Logger.Warn("reading the break-glass grants after an announcement", zap.Error(err))
		}
	case "keys":
		if err := rt.Keys.Reload(ctx); err != nil {
			rt.Logger.Warn("reloading signing keys after an announcement", zap.Error(err))
		}
	}
}
