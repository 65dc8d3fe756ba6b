package core

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/internal/lru"
	"github.com/gatehouse/gatehouse/store"
)

// AuditEvent is an event to record; time, IP and user agent are filled in.
type AuditEvent struct {
	Type     string
	ActorID  string
	TargetID string
	Detail   map[string]any
}

// StoreEvent completes e with the request's client IP and user agent.
func (rt *Runtime) StoreEvent(r *http.Request, e AuditEvent) store.AuditEvent {
	ev := store.AuditEvent{
		Time:     time.Now().UTC(),
		Type:     e.Type,
		ActorID:  e.ActorID,
		TargetID: e.TargetID,
		Detail:   e.Detail,
	}
	if r != nil {
		ev.IP = ClientIP(r)
		ev.UserAgent = r.UserAgent()
	}
	return ev
}

// Audit records a security event in the store and the log. A failure to store
// is logged, not returned: the event already happened.
func (rt *Runtime) Audit(ctx context.Context, r *http.Request, e AuditEvent) {
	ev := rt.StoreEvent(r, e)
	rt.LogEvent(ev)
	if err := rt.Store.AppendAudit(ctx, ev); err != nil {
		rt.Logger.Error("storing audit event", zap.String("type", ev.Type), zap.Error(err))
	}
}

// LogEvent writes an audit event to Caddy's log.
func (rt *Runtime) LogEvent(ev store.AuditEvent) {
	if ce := rt.Logger.Check(zap.InfoLevel, "audit"); ce != nil {
		ce.Write(zap.String("event", ev.Type), zap.String("actor", ev.ActorID), zap.String("target", ev.TargetID),
			zap.String("ip", ev.IP), zap.String("user_agent", ev.UserAgent), zap.Any("detail", ev.Detail))
	}
}

// ClientIP is Caddy's view of the client address (honouring trusted proxies).
func ClientIP(r *http.Request) string {
	if v, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && v != "" {
		return v
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// denialThrottle keeps a caller who repeats a refused request from writing an
// audit row each time: the first refusal of a (subject, code, method, path) in
// a minute is stored, every one is logged.
type denialThrottle struct {
	seen *lru.Cache[denialKey, struct{}] // until a minute after the stored refusal
}

type denialKey struct{ subject, code, method, path string }

const (
	denialWindow      = time.Minute
	maxTrackedDenials = 10000
)

func newDenialThrottle() denialThrottle {
	return denialThrottle{seen: lru.New[denialKey, struct{}](maxTrackedDenials, nil)}
}

func (d denialThrottle) first(k denialKey, now time.Time) bool {
	return d.seen.PutIfAbsent(k, struct{}{}, now.Add(denialWindow), now)
}

// AuditDenial records a policy refusal of a signed-in subject.
func (rt *Runtime) AuditDenial(r *http.Request, s *Subject, code, reason string) {
	path := CleanPath(r.URL.Path)
	ev := rt.StoreEvent(r, AuditEvent{Type: "policy.denied", ActorID: s.User.ID,
		Detail: map[string]any{"code": code, "reason": reason, "method": r.Method, "path": path}})
	rt.LogEvent(ev)
	rt.anomalies.refusal(s.User.ID)
	if !rt.denials.first(denialKey{s.User.ID, code, r.Method, path}, ev.Time) {
		return
	}
	if err := rt.Store.AppendAudit(r.Context(), ev); err != nil {
		rt.Logger.Error("storing audit event", zap.String("type", ev.Type), zap.Error(err))
	}
}
