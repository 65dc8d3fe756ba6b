package core

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/metrics"
)

// countEvery is how often the store figures of the metrics (outbox backlog,
// active sessions) are counted: by a worker, never per request or scrape.
const countEvery = 5 * time.Second

// newMetrics makes the runtime's collectors; the Caddy app registers them.
// The caches the runtime makes in Open are read only once it is open.
func (rt *Runtime) newMetrics(redis bool) *metrics.Set {
	return metrics.New(metrics.Sources{
		Caches: map[string]func() (uint64, uint64){
			"users":      rt.users.Stats,
			"decisions":  rt.decisions.entries.Stats,
			"assertions": rt.assertions.Stats,
			"tokens": func() (uint64, uint64) {
				if !rt.isOpen() {
					return 0, 0
				}
				return rt.tokens.CacheStats()
			},
			"sessions": func() (uint64, uint64) {
				if !rt.isOpen() {
					return 0, 0
				}
				return rt.Sessions.CacheStats()
			},
		},
		RevocationAge: func() time.Duration {
			if !rt.isOpen() {
				return 0
			}
			return rt.revoked.age(time.Now())
		},
		MaxStaleness: rt.maxStaleness,
		Fanout:       redis,
	})
}

// Metrics is the runtime's collectors, for the Caddy app to register and for
// the parts that count (logins, metering, quotas).
func (rt *Runtime) Metrics() *metrics.Set { return rt.metrics }

// countForMetrics counts the outbox backlog and the active sessions in the store.
func (rt *Runtime) countForMetrics(ctx context.Context) {
	if err := rt.storeCounts(ctx); err != nil && !errors.Is(err, context.Canceled) {
		rt.Logger.Warn("counting the outbox and the sessions for metrics", zap.Error(err))
	}
}

func (rt *Runtime) storeCounts(ctx context.Context) error {
	backlog, err := rt.Store.OutboxBacklog(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	active, err := rt.Store.CountActiveSessions(ctx, now, now.Add(-rt.Sessions.IdleTimeout()))
	if err != nil {
		return err
	}
	rt.metrics.StoreCounts(backlog, active)
	return nil
}
