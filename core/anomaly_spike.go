package core

import (
	"context"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/store"
)

// Usage far above a user's own baseline (spec §8, anomaly.usage_spike) is
// read from the stored usage, not counted in memory: the store holds what
// every instance metered, and the days a baseline needs. A worker compares,
// every window/60 (from 1 s to 1 min), each user's tokens in the last window
// with their mean tokens per window over the baseline period before it, and
// reports a user whose tokens pass factor × that mean and min_tokens. A user
// with no usage in the baseline period has no baseline and is not reported
// (a new user's first busy hour is not an anomaly). Every instance checks; the audit log says whether
// one already reported the user within the window.

// UsageSpikeThreshold is anomalies.usage_spike of the settings.
type UsageSpikeThreshold struct {
	// Factor: report tokens above Factor × the baseline (default 10).
	Factor int `json:"factor,omitempty"`
	// Window is the period compared (default "1h").
	Window string `json:"window,omitempty"`
	// Baseline is the period before the window the mean is taken over
	// (default "7d").
	Baseline string `json:"baseline,omitempty"`
	// MinTokens: a window with fewer tokens is never reported (default 10000).
	MinTokens int64 `json:"min_tokens,omitempty"`
	Disabled  bool  `json:"disabled,omitempty"`
}

// spikeLimit is the usage spike detector in force; factor 0 is off.
type spikeLimit struct {
	factor           int
	window, baseline time.Duration
	minTokens        int64
}

var defaultUsageSpike = spikeLimit{factor: 10, window: time.Hour, baseline: 7 * 24 * time.Hour, minTokens: 10_000}

const (
	maxSpikeFactor = 1_000_000
	// maxSpikeBaseline is the longest baseline: the default usage retention.
	maxSpikeBaseline = 90 * 24 * time.Hour
	// maxSpikeUsers bounds the users one check looks at, the busiest first.
	maxSpikeUsers = 1000
)

func (t *UsageSpikeThreshold) validate() error {
	if t == nil {
		return nil
	}
	if t.Factor < 0 || t.Factor > maxSpikeFactor {
		return fmt.Errorf("%w: anomalies.usage_spike.factor must be from 1 to %d (0 keeps the default)", ErrInvalidSettings, maxSpikeFactor)
	}
	if t.MinTokens < 0 {
		return fmt.Errorf("%w: anomalies.usage_spike.min_tokens must not be negative", ErrInvalidSettings)
	}
	window := defaultUsageSpike.window
	if t.Window != "" {
		d, err := caddy.ParseDuration(t.Window)
		if err != nil || d < time.Minute || d > maxAnomalyWindow {
			return fmt.Errorf("%w: anomalies.usage_spike.window must be a duration from 1m to 7d, not %q", ErrInvalidSettings, t.Window)
		}
		window = d
	}
	if t.Baseline != "" {
		d, err := caddy.ParseDuration(t.Baseline)
		if err != nil || d < window || d > maxSpikeBaseline {
			return fmt.Errorf("%w: anomalies.usage_spike.baseline must be a duration from the window (%s) to 90d, not %q", ErrInvalidSettings, window, t.Baseline)
		}
	}
	return nil
}

func (t *UsageSpikeThreshold) limit() spikeLimit {
	l := defaultUsageSpike
	if t == nil {
		return l
	}
	if t.Disabled {
		return spikeLimit{}
	}
	if t.Factor > 0 {
		l.factor = t.Factor
	}
	if t.MinTokens > 0 {
		l.minTokens = t.MinTokens
	}
	if d, err := caddy.ParseDuration(t.Window); err == nil && t.Window != "" {
		l.window = d
	}
	if d, err := caddy.ParseDuration(t.Baseline); err == nil && t.Baseline != "" {
		l.baseline = d
	}
	return l
}

// every is how often the detector looks: a sixtieth of the window, from 1 s
// to a minute.
func (l spikeLimit) every() time.Duration { return min(max(l.window/60, time.Second), time.Minute) }

// checkUsageSpikes runs every second and looks when its interval has passed.
func (rt *Runtime) checkUsageSpikes(ctx context.Context) {
	a := rt.anomalies
	if a == nil {
		return
	}
	l := a.limits.Load().usageSpike
	now := a.now()
	if l.factor == 0 || now.Sub(a.spikeChecked) < l.every() {
		return
	}
	a.spikeChecked = now
	start := now.Add(-l.window)
	rows, err := rt.Store.QueryUsage(ctx, store.UsageQuery{From: start, GroupBy: "user"})
	if err != nil {
		rt.Logger.Warn("reading usage for usage spikes", zap.Error(err))
		return
	}
	for i, row := range rows {
		if i == maxSpikeUsers || row.TotalTokens < l.minTokens {
			break // largest first
		}
		before, err := rt.Store.QueryUsage(ctx, store.UsageQuery{UserID: row.Key, From: start.Add(-l.baseline), To: start, GroupBy: "user"})
		if err != nil {
			rt.Logger.Warn("reading a user's usage baseline", zap.Error(err))
			return
		}
		var past int64
		for _, b := range before {
			past += b.TotalTokens
		}
		if past == 0 {
			continue // no baseline to be far above
		}
		// The mean per window over the baseline period.
		baseline := int64(float64(past) * float64(l.window) / float64(l.baseline))
		if row.TotalTokens <= int64(l.factor)*baseline {
			continue
		}
		a.report(Anomaly{Kind: AnomalyUsageSpike, UserID: row.Key, Count: int(row.TotalTokens),
			Window: l.window, Time: now, Baseline: baseline, Factor: l.factor}, l.window)
	}
}

// spikeReported reports whether the audit log has a usage spike of f's user
// within the window, from any instance.
func (rt *Runtime) spikeReported(ctx context.Context, f Anomaly) bool {
	evs, err := rt.Store.ListAudit(ctx, store.AuditFilter{UserID: f.UserID, Type: "anomaly." + AnomalyUsageSpike, Limit: 1})
	if err != nil {
		rt.Logger.Warn("reading the audit log for an earlier usage spike", zap.Error(err))
		return false
	}
	return len(evs) > 0 && evs[0].Time.After(f.Time.Add(-f.Window))
}
