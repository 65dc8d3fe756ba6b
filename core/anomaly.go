package core

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/internal/lru"
	"github.com/gatehouse/gatehouse/notify"
	"github.com/gatehouse/gatehouse/store"
)

// Access patterns (spec §8): the runtime counts, in memory and per instance,
// what the places that already see them hand it — refusals (AuditDenial),
// bearer requests (identifyBearer), metered requests (Meter), failed sign-ins
// (the callback) — and reports what crosses a threshold of the settings as
// an audit event `anomaly.<kind>`, notified to the admins. Counting is a
// cache lookup; the audit write and the outbox are a worker's, so nothing of
// it is on a request's way. A subject is reported at most once per window.

// Kinds of security events; the audit type is "anomaly." + kind.
const (
	AnomalyRefusalBurst  = "refusal_burst"
	AnomalyTokenManyIPs  = "token_many_ips"
	AnomalyFirstModelUse = "first_model_use"
	AnomalyLoginFailures = "login_failures"
	AnomalyUsageSpike    = "usage_spike"
)

// AnomalySettings are the thresholds of the security events, the settings
// document's "anomalies"; an absent field keeps its default.
type AnomalySettings struct {
	// RefusalBurst: more than Count refusals of one subject within Window.
	RefusalBurst *AnomalyThreshold `json:"refusal_burst,omitempty"`
	// TokenManyIPs: one token used from more than Count client addresses within Window.
	TokenManyIPs *AnomalyThreshold `json:"token_many_ips,omitempty"`
	// LoginFailures: Count failed sign-ins in a row from one client address
	// (a success from it starts over); Window is how long a streak is remembered.
	LoginFailures *AnomalyThreshold `json:"login_failures,omitempty"`
	// FirstModelUse reports a user's first use of a model; off unless true.
	FirstModelUse *bool `json:"first_model_use,omitempty"`
	// UsageSpike: a user's tokens within a window far above their own
	// baseline (anomaly_spike.go).
	UsageSpike *UsageSpikeThreshold `json:"usage_spike,omitempty"`
}

// AnomalyThreshold is one detector's threshold.
type AnomalyThreshold struct {
	Count    int    `json:"count,omitempty"`  // 0: the default
	Window   string `json:"window,omitempty"` // a duration ("1m", "10m"); "": the default
	Disabled bool   `json:"disabled,omitempty"`
}

// Defaults of the thresholds.
var (
	defaultRefusalBurst  = anomalyLimit{count: 20, window: time.Minute}
	defaultTokenManyIPs  = anomalyLimit{count: 5, window: 10 * time.Minute}
	defaultLoginFailures = anomalyLimit{count: 5, window: time.Hour}
)

const (
	maxAnomalyCount  = 1_000_000
	maxAnomalyWindow = 7 * 24 * time.Hour
	// maxTrackedAnomalies bounds each detector's memory; past it the least
	// recently seen subjects are forgotten.
	maxTrackedAnomalies = 10_000
	// maxTrackedModelUses bounds the (user, model) pairs remembered as seen.
	maxTrackedModelUses = 50_000
	// anomalyBacklog is how many findings wait for the worker; more are dropped and logged.
	anomalyBacklog = 256
	// maxAnomalyAdmins bounds the emails of one security event.
	maxAnomalyAdmins = 100
)

func (t *AnomalyThreshold) validate(name string) error {
	if t == nil {
		return nil
	}
	if t.Count < 0 || t.Count > maxAnomalyCount {
		return fmt.Errorf("%w: anomalies.%s.count must be from 1 to %d (0 keeps the default)", ErrInvalidSettings, name, maxAnomalyCount)
	}
	if t.Window != "" {
		d, err := caddy.ParseDuration(t.Window)
		if err != nil || d < time.Second || d > maxAnomalyWindow {
			return fmt.Errorf("%w: anomalies.%s.window must be a duration from 1s to 7d, not %q", ErrInvalidSettings, name, t.Window)
		}
	}
	return nil
}

// Validate reports a threshold that is out of range or a window that does not parse.
func (a *AnomalySettings) Validate() error {
	if a == nil {
		return nil
	}
	for _, t := range []struct {
		name string
		t    *AnomalyThreshold
	}{{AnomalyRefusalBurst, a.RefusalBurst}, {AnomalyTokenManyIPs, a.TokenManyIPs}, {AnomalyLoginFailures, a.LoginFailures}} {
		if err := t.t.validate(t.name); err != nil {
			return err
		}
	}
	return a.UsageSpike.validate()
}

// anomalyLimit is a threshold in force; count 0 is off.
type anomalyLimit struct {
	count  int
	window time.Duration
}

type anomalyLimits struct {
	refusalBurst, tokenManyIPs, loginFailures anomalyLimit
	firstModelUse                             bool
	usageSpike                                spikeLimit
}

func (t *AnomalyThreshold) limit(def anomalyLimit) anomalyLimit {
	if t == nil {
		return def
	}
	if t.Disabled {
		return anomalyLimit{}
	}
	if t.Count > 0 {
		def.count = t.Count
	}
	if d, err := caddy.ParseDuration(t.Window); err == nil && t.Window != "" {
		def.window = d
	}
	return def
}

func limitsOf(a *AnomalySettings) *anomalyLimits {
	if a == nil {
		a = &AnomalySettings{}
	}
	return &anomalyLimits{
		refusalBurst:  a.RefusalBurst.limit(defaultRefusalBurst),
		tokenManyIPs:  a.TokenManyIPs.limit(defaultTokenManyIPs),
		loginFailures: a.LoginFailures.limit(defaultLoginFailures),
		firstModelUse: a.FirstModelUse != nil && *a.FirstModelUse,
		usageSpike:    a.UsageSpike.limit(),
	}
}

// Anomaly is one finding, as the worker records it.
type Anomaly struct {
	Kind    string
	UserID  string // the subject; "" when only the client address is known
	TokenID string
	Model   string
	IP      string
	Count   int
	Window  time.Duration
	Time    time.Time
	// Baseline and Factor are a usage spike's: the user's usual tokens in
	// a window like this one, and the multiple of it that was passed.
	Baseline int64
	Factor   int
}

// detail is the audit detail and the notification's.
func (a Anomaly) detail() map[string]any {
	d := map[string]any{"subject": a.subject(), "count": a.Count}
	if a.Window > 0 {
		d["window"] = a.Window.String()
	}
	if a.Kind == AnomalyUsageSpike {
		d["baseline"], d["factor"] = a.Baseline, a.Factor
	}
	for k, v := range map[string]string{"user_id": a.UserID, "token_id": a.TokenID, "model": a.Model, "ip": a.IP} {
		if v != "" {
			d[k] = v
		}
	}
	return d
}

func (a Anomaly) subject() string {
	switch {
	case a.TokenID != "":
		return a.TokenID
	case a.UserID != "":
		return a.UserID
	}
	return a.IP
}

type anomalyKey struct{ kind, subject string }

type modelUse struct{ userID, model string }

// tokenAddresses are the client addresses a token came from in one window,
// at most the threshold plus one.
type tokenAddresses struct {
	mu    sync.Mutex
	addrs map[string]struct{}
}

// anomalies is the runtime's detector; a nil one (a Runtime a test built
// by hand) detects nothing.
type anomalies struct {
	limits   atomic.Pointer[anomalyLimits]
	counts   *lru.Cache[anomalyKey, *atomic.Int64] // a window's count, expiring with it
	addrs    *lru.Cache[string, *tokenAddresses]   // by token ID, expiring with the window
	models   *lru.Cache[modelUse, struct{}]        // (user, model) pairs seen
	reported *lru.Cache[anomalyKey, struct{}]      // until the window of the last report ends
	found    chan Anomaly
	now      func() time.Time
	// spikeChecked is when the usage spike worker last looked (its own).
	spikeChecked time.Time
}

func newAnomalies() *anomalies {
	a := &anomalies{
		counts:   lru.New[anomalyKey, *atomic.Int64](maxTrackedAnomalies, nil),
		addrs:    lru.New[string, *tokenAddresses](maxTrackedAnomalies, nil),
		models:   lru.New[modelUse, struct{}](maxTrackedModelUses, nil),
		reported: lru.New[anomalyKey, struct{}](maxTrackedAnomalies, nil),
		found:    make(chan Anomaly, anomalyBacklog),
		now:      time.Now,
	}
	a.limits.Store(limitsOf(nil))
	return a
}

// configure switches to the thresholds of s (every settings switch).
func (a *anomalies) configure(s *AnomalySettings) {
	if a != nil {
		a.limits.Store(limitsOf(s))
	}
}

// count adds one to k's count in the window that began with its first
// event, and returns the sum.
func (a *anomalies) count(k anomalyKey, window time.Duration, now time.Time) int64 {
	n, ok := a.counts.Get(k, now)
	if !ok {
		fresh := new(atomic.Int64)
		if a.counts.PutIfAbsent(k, fresh, now.Add(window), now) {
			n = fresh
		} else if n, ok = a.counts.Get(k, now); !ok {
			n = fresh // evicted meanwhile: count this one alone
		}
	}
	return n.Add(1)
}

// report queues f unless its subject was reported within the window.
func (a *anomalies) report(f Anomaly, window time.Duration) {
	until := f.Time.Add(window)
	if window <= 0 {
		until = time.Time{} // once for as long as it is remembered
	}
	if !a.reported.PutIfAbsent(anomalyKey{f.Kind, f.subject() + "\x00" + f.Model}, struct{}{}, until, f.Time) {
		return
	}
	select {
	case a.found <- f:
	default: // the worker is far behind; the log still has it
	}
}

// refusal counts a refusal of userID.
func (a *anomalies) refusal(userID string) {
	if a == nil {
		return
	}
	l := a.limits.Load().refusalBurst
	if l.count == 0 || userID == "" {
		return
	}
	now := a.now()
	if n := a.count(anomalyKey{AnomalyRefusalBurst, userID}, l.window, now); n > int64(l.count) {
		a.report(Anomaly{Kind: AnomalyRefusalBurst, UserID: userID, Count: int(n), Window: l.window, Time: now}, l.window)
	}
}

// tokenUse notes that tokenID of userID came from ip.
func (a *anomalies) tokenUse(userID, tokenID, ip string) {
	if a == nil {
		return
	}
	l := a.limits.Load().tokenManyIPs
	if l.count == 0 || tokenID == "" || ip == "" {
		return
	}
	now := a.now()
	t, ok := a.addrs.Get(tokenID, now)
	if !ok {
		fresh := &tokenAddresses{addrs: make(map[string]struct{}, 2)}
		if a.addrs.PutIfAbsent(tokenID, fresh, now.Add(l.window), now) {
			t = fresh
		} else if t, ok = a.addrs.Get(tokenID, now); !ok {
			t = fresh
		}
	}
	t.mu.Lock()
	if _, seen := t.addrs[ip]; seen || len(t.addrs) > l.count {
		t.mu.Unlock()
		return
	}
	t.addrs[ip] = struct{}{}
	n := len(t.addrs)
	t.mu.Unlock()
	if n > l.count {
		a.report(Anomaly{Kind: AnomalyTokenManyIPs, UserID: userID, TokenID: tokenID, IP: ip, Count: n, Window: l.window, Time: now}, l.window)
	}
}

// modelUse notes that userID used model; the first time is reported when
// first_model_use is on.
func (a *anomalies) modelUse(userID, model string) {
	if a == nil {
		return
	}
	if !a.limits.Load().firstModelUse || userID == "" || model == "" {
		return
	}
	now := a.now()
	if a.models.PutIfAbsent(modelUse{userID, model}, struct{}{}, time.Time{}, now) {
		a.report(Anomaly{Kind: AnomalyFirstModelUse, UserID: userID, Model: model, Count: 1, Time: now}, 0)
	}
}

// loginFailed counts a failed sign-in from ip.
func (a *anomalies) loginFailed(ip string) {
	if a == nil {
		return
	}
	l := a.limits.Load().loginFailures
	if l.count == 0 || ip == "" {
		return
	}
	now := a.now()
	if n := a.count(anomalyKey{AnomalyLoginFailures, ip}, l.window, now); n >= int64(l.count) {
		a.report(Anomaly{Kind: AnomalyLoginFailures, IP: ip, Count: int(n), Window: l.window, Time: now}, l.window)
	}
}

// loginSucceeded ends the streak of failures from ip.
func (a *anomalies) loginSucceeded(ip string) {
	if a == nil {
		return
	}
	a.counts.Remove(anomalyKey{AnomalyLoginFailures, ip})
}

// LoginFailed counts a failed sign-in of r toward anomaly.login_failures.
func (rt *Runtime) LoginFailed(r *http.Request) { rt.anomalies.loginFailed(ClientIP(r)) }

// LoginSucceeded starts the count of failed sign-ins from r's address over.
func (rt *Runtime) LoginSucceeded(r *http.Request) { rt.anomalies.loginSucceeded(ClientIP(r)) }

// clientIPOf is ClientIP for code that holds only the request's context.
func clientIPOf(ctx context.Context) string {
	ip, _ := caddyhttp.GetVar(ctx, caddyhttp.ClientIPVarKey).(string)
	return ip
}

// reportAnomalies records and notifies the findings until ctx ends.
func (rt *Runtime) reportAnomalies(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-rt.anomalies.found:
			rt.recordAnomaly(ctx, f)
		}
	}
}

// recordAnomaly stores f as an audit event and queues its notifications.
func (rt *Runtime) recordAnomaly(ctx context.Context, f Anomaly) {
	if f.Kind == AnomalyFirstModelUse && rt.usedBefore(ctx, f) {
		return // this instance had not seen it, the store had
	}
	if f.Kind == AnomalyUsageSpike && rt.spikeReported(ctx, f) {
		return // another instance reported it within the window
	}
	detail := f.detail()
	ev := rt.StoreEvent(nil, AuditEvent{Type: "anomaly." + f.Kind, ActorID: f.UserID, Detail: detail})
	ev.Time, ev.IP = f.Time.UTC(), f.IP
	rt.LogEvent(ev)
	if err := rt.Store.AppendAudit(ctx, ev); err != nil {
		rt.Logger.Error("storing audit event", zap.String("type", ev.Type), zap.Error(err))
	}
	var admins []string
	if rt.Notify.SMTP != nil {
		users, _, err := rt.Store.ListUsers(ctx, store.UserFilter{Role: "admin", Status: store.StatusActive, Limit: maxAnomalyAdmins})
		if err != nil {
			rt.Logger.Warn("listing the admins to notify of a security event", zap.String("type", ev.Type), zap.Error(err))
		}
		for _, u := range users {
			admins = append(admins, u.Email)
		}
	}
	msgs, err := rt.Notify.AnomalyMessages(notify.AnomalyEvent{Kind: f.Kind, Time: f.Time, Detail: detail}, admins, time.Now())
	if err == nil && len(msgs) > 0 {
		err = rt.Store.EnqueueOutbox(ctx, msgs...)
	}
	if err != nil {
		rt.Logger.Error("queueing the notifications of a security event", zap.String("type", ev.Type), zap.Error(err))
		return
	}
	if len(msgs) > 0 && rt.notifier != nil {
		rt.notifier.Wake()
	}
}

// usedBefore reports whether the store holds usage of f's user and model
// from before the minute of f: a model first seen by this instance (or since
// its start) may be old to the user.
func (rt *Runtime) usedBefore(ctx context.Context, f Anomaly) bool {
	rows, err := rt.Store.QueryUsage(ctx, store.UsageQuery{UserID: f.UserID, Model: f.Model,
		From: f.Time.Add(-rt.usageRetention), To: f.Time.Truncate(time.Minute), GroupBy: "model"})
	if err != nil {
		rt.Logger.Warn("reading usage for a first use of a model", zap.Error(err))
		return false
	}
	for _, r := range rows {
		if r.Requests > 0 {
			return true
		}
	}
	return false
}
