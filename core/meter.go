package core

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/store"
)

// Every request the guard allows is metered, and every refusal it makes for
// a known subject is counted (spec §8), without a store write per request:
// the guard hands the meter one Usage when a request ends, the meter adds it
// to its minute in memory, and a worker writes the minutes through
// store.AddUsage once a second. The store adds counts to what it holds, so a
// minute written in several flushes, or by several instances, sums up.

// Usage is one finished request, as the guard meters it.
type Usage struct {
	Time      time.Time // when the request arrived
	UserID    string
	TokenID   string // "" for a session
	TokenKind string
	Role      string
	Model     string // "" when the request named none
	RouteKind string // policy.Kind*
	Status    int    // the answer's status; ≥ 400 counts as an error
	Latency   time.Duration
	// PromptTokens, CompletionTokens and TotalTokens are the backend's
	// count, or an estimate from the body sizes when Estimated.
	PromptTokens, CompletionTokens, TotalTokens int64
	Estimated                                   bool
	// Denied is a refusal by the guard: it counts as denied, not as a request.
	Denied bool
}

const (
	// meterFlushEvery is how often the meter writes; the spec allows at
	// most one flush a second per instance.
	meterFlushEvery = time.Second
	// meterMaxKeys bounds the minutes held in memory between two flushes
	// (a few hundred bytes each). Only a store failing for long, or more
	// distinct users × tokens × models in one second than this, reaches it;
	// usage past it is dropped and the drop logged.
	meterMaxKeys = 50_000
)

// meterKey is the store's key of a usage minute; role and token kind are the
// latest seen, as the store keeps them.
type meterKey struct {
	minute                            int64 // Unix minutes
	userID, tokenID, model, routeKind string
}

type meter struct {
	mu      sync.Mutex
	minutes map[meterKey]*store.UsageMinute
	dropped int64 // records dropped since the last flush, the map being full
}

// Meter records one finished request. It takes a lock and updates a map: the
// store is written by the flush worker.
func (rt *Runtime) Meter(u Usage) {
	if !u.Denied {
		rt.metrics.TokensMetered(u.Model, u.PromptTokens, u.CompletionTokens)
		if u.Status < 400 {
			rt.anomalies.modelUse(u.UserID, u.Model)
		}
	}
	m := rt.meter
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addLocked(u)
}

func (m *meter) addLocked(u Usage) {
	k := meterKey{minute: u.Time.Unix() / 60, userID: u.UserID, tokenID: u.TokenID, model: u.Model, routeKind: u.RouteKind}
	e := m.minutes[k]
	if e == nil {
		if len(m.minutes) >= meterMaxKeys {
			m.dropped++
			return
		}
		if m.minutes == nil {
			m.minutes = make(map[meterKey]*store.UsageMinute)
		}
		e = &store.UsageMinute{Minute: time.Unix(k.minute*60, 0).UTC(), UserID: u.UserID, TokenID: u.TokenID,
			Model: u.Model, RouteKind: u.RouteKind}
		m.minutes[k] = e
	}
	e.TokenKind, e.Role = u.TokenKind, u.Role
	if u.Denied {
		e.Denied++
		if u.Status == http.StatusTooManyRequests {
			e.QuotaHits++ // only a quota refuses with 429
		}
		return
	}
	e.Requests++
	if u.Status >= 400 {
		e.Errors++
	}
	e.PromptTokens += u.PromptTokens
	e.CompletionTokens += u.CompletionTokens
	e.TotalTokens += u.TotalTokens
	if u.Estimated {
		e.Estimated++
	}
	e.LatencyMS += u.Latency.Milliseconds()
}

// take empties the meter and returns what it held.
func (m *meter) take() (minutes []store.UsageMinute, dropped int64) {
	m.mu.Lock()
	held, dropped := m.minutes, m.dropped
	m.minutes, m.dropped = nil, 0
	m.mu.Unlock()
	minutes = make([]store.UsageMinute, 0, len(held))
	for _, e := range held {
		minutes = append(minutes, *e)
	}
	return minutes, dropped
}

// giveBack puts minutes a flush could not write back into the meter, to be
// written by the next one; what no longer fits is dropped.
func (m *meter) giveBack(minutes []store.UsageMinute) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, g := range minutes {
		k := meterKey{minute: g.Minute.Unix() / 60, userID: g.UserID, tokenID: g.TokenID, model: g.Model, routeKind: g.RouteKind}
		e := m.minutes[k]
		if e == nil {
			if len(m.minutes) >= meterMaxKeys {
				m.dropped += g.Requests + g.Denied
				continue
			}
			if m.minutes == nil {
				m.minutes = make(map[meterKey]*store.UsageMinute)
			}
			held := g
			m.minutes[k] = &held
			continue
		}
		// The record taken later has the newer role and kind.
		e.Add(g)
	}
}

// flush writes what the meter holds to st. When the store fails, the
// minutes are kept for the next flush, and their number is returned with
// the error.
func (m *meter) flush(ctx context.Context, st store.UsageStore) (int, error) {
	minutes, dropped := m.take()
	if dropped > 0 {
		caddy.Log().Named("gatehouse").Warn("usage meter full: requests were not metered (is the store failing?)",
			zap.Int64("dropped", dropped), zap.Int("max_keys", meterMaxKeys))
	}
	if len(minutes) == 0 {
		return 0, nil
	}
	if err := st.AddUsage(ctx, minutes); err != nil {
		m.giveBack(minutes)
		return len(minutes), err
	}
	return 0, nil
}

// flushUsage writes what the meter holds, keeping it when the store fails.
func (rt *Runtime) flushUsage(ctx context.Context) {
	if n, err := rt.meter.flush(ctx, rt.Store); err != nil {
		rt.Logger.Warn("writing usage; keeping it for the next flush", zap.Int("minutes", n), zap.Error(err))
	}
}

// DefaultUsageRetention is how long usage minutes are kept when
// usage_retention is not set.
const DefaultUsageRetention = 90 * 24 * time.Hour

// pruneUsage deletes the usage minutes older than the retention.
func (rt *Runtime) pruneUsage(ctx context.Context) {
	n, err := rt.Store.DeleteUsageBefore(ctx, time.Now().Add(-rt.usageRetention))
	switch {
	case err != nil:
		rt.Logger.Warn("deleting old usage", zap.Error(err))
	case n > 0:
		rt.Logger.Debug("deleted old usage", zap.Int64("minutes", n), zap.Duration("retention", rt.usageRetention))
	}
}
