package core

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

var (
	// ErrNoCredentials means the request carries neither a session cookie nor a bearer token.
	ErrNoCredentials = errors.New("no credentials")
	// ErrInvalidCredentials means the credentials are unknown, expired, revoked or malformed.
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrUnavailable means Gatehouse could not decide (store or policy failing): refuse with 503.
	ErrUnavailable = errors.New("unavailable")
)

// Subject is who a request acts as.
type Subject struct {
	User    store.User
	Auth    string // "session" or "token"
	Session *store.Session
	Token   *TokenInfo
}

// Identify finds the request's subject. A failing store is ErrUnavailable,
// never an anonymous request.
func (rt *Runtime) Identify(r *http.Request) (*Subject, error) {
	ctx := r.Context()
	if auth := r.Header.Get("Authorization"); auth != "" {
		return rt.identifyBearer(ctx, auth)
	}
	sess, err := rt.Sessions.Lookup(ctx, r)
	switch {
	case errors.Is(err, identity.ErrNoSession):
		return nil, ErrNoCredentials
	case errors.Is(err, identity.ErrSessionInvalid):
		return nil, fmt.Errorf("%w: %v", ErrInvalidCredentials, err)
	case err != nil:
		return nil, fmt.Errorf("%w: session lookup: %v", ErrUnavailable, err)
	}
	user, err := rt.User(ctx, sess.UserID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%w: user of session is gone", ErrInvalidCredentials)
	case err != nil:
		return nil, fmt.Errorf("%w: user lookup: %v", ErrUnavailable, err)
	}
	user, err = rt.applyGrantExpiry(ctx, user)
	if err != nil {
		return nil, err
	}
	return &Subject{User: user, Auth: "session", Session: &sess}, nil
}

// applyGrantExpiry moves a user whose temporary grant has ended back to pending.
func (rt *Runtime) applyGrantExpiry(ctx context.Context, u store.User) (store.User, error) {
	now := time.Now()
	if u.Status != store.StatusActive || u.AccessExpiresAt == nil || u.AccessExpiresAt.After(now) {
		return u, nil
	}
	updated, err := rt.Store.ExpireAccess(ctx, u.ID, now)
	if err != nil {
		return u, fmt.Errorf("%w: expire access: %v", ErrUnavailable, err)
	}
	rt.Audit(ctx, nil, AuditEvent{Type: "access.expired", TargetID: u.ID})
	rt.userChanged(ctx, &updated, u.ID, "")
	return updated, nil
}

// DecisionRequest is what the policy is asked about.
type DecisionRequest struct {
	Subject *Subject
	// Method is the method the backend will act on, when it is not r.Method
	// (an HTTP/2 websocket's CONNECT reaches it as a GET).
	Method string
	// Path and PathFolded are CleanPath(r.URL.Path) and its folding, when the
	// caller has worked them out already (the guard has).
	Path, PathFolded string
	APIRoute         string // "" for backend requests
	Target           *policy.Target
	Change           *policy.Change
	Model            *string
}

// Decide asks the policy. Any error is ErrUnavailable: the caller refuses.
// Backend decisions of a cacheable policy are remembered.
func (rt *Runtime) Decide(r *http.Request, d DecisionRequest) (policy.Decision, error) {
	engine := rt.Policy()
	reqPath, folded := d.Path, d.PathFolded
	if reqPath == "" {
		reqPath, folded = CleanPath(r.URL.Path), ""
	}
	method := d.Method
	if method == "" {
		method = strings.ToUpper(r.Method)
	}
	cacheable := d.APIRoute == "" && d.Target == nil && d.Change == nil && engine.Cacheable()
	var key decisionKey
	if cacheable {
		key = newDecisionKey(d.Subject, method, reqPath, d.Model)
		if dec, ok := rt.decisions.get(engine, key); ok {
			return dec, nil
		}
	}
	if folded == "" {
		folded = policy.FoldPath(reqPath)
	}
	in := &policy.Input{
		Request: policy.Request{
			Method:     method,
			Path:       reqPath,
			PathFolded: folded,
			Host:       r.Host,
			Query:      r.URL.RawQuery,
			Headers:    lowerHeaders(r.Header),
		},
		Target: d.Target,
		Change: d.Change,
		Model:  d.Model,
		NowNS:  time.Now().UnixNano(),
	}
	if d.APIRoute != "" {
		route := d.APIRoute
		in.APIRoute = &route
	}
	if s := d.Subject; s != nil {
		in.Subject = &policy.Subject{
			ID:     s.User.ID,
			Email:  s.User.Email,
			Name:   s.User.Name,
			Role:   s.User.Role,
			Status: s.User.Status,
			Auth:   s.Auth,
		}
		if t := s.Token; t != nil {
			in.Subject.Token = &policy.Token{ID: t.ID, Kind: t.Kind, Scope: t.Scope, Models: t.Models}
		}
	}
	dec, err := engine.Decide(r.Context(), in)
	if err != nil {
		return policy.Decision{}, fmt.Errorf("%w: policy: %v", ErrUnavailable, err)
	}
	if cacheable {
		rt.decisions.put(engine, key, dec)
	}
	return dec, nil
}

// CleanPath is the path the policy and the guard's routes see: "//secret",
// "/secret/" and "/a/../secret" are all "/secret", so a rule or a model route
// cannot be stepped around by spelling the path differently. The request
// itself goes upstream unchanged.
func CleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p)
}

func lowerHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if strings.EqualFold(k, "Cookie") || strings.EqualFold(k, "Authorization") {
			continue // credentials never reach the policy input
		}
		out[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	return out
}

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

// Assertion returns the X-Gatehouse-Assertion for the subject, reusing one
// that still has at least half its life so the hot path rarely signs.
func (rt *Runtime) Assertion(s *Subject) (string, error) {
	key := assertionKey{s.User.ID, s.User.Role, s.User.Email, rt.Keys.CurrentKID()}
	now := time.Now()
	if tok, ok := rt.assertions.get(key, now); ok {
		return tok, nil
	}
	tok, err := rt.Keys.Assertion(rt.PublicURL.String(), rt.PublicURL.String(), s.User.ID, s.User.Email, s.User.Role, AssertionTTL)
	if err != nil {
		return "", fmt.Errorf("%w: sign assertion: %v", ErrUnavailable, err)
	}
	rt.assertions.put(key, tok, now.Add(AssertionTTL/2))
	return tok, nil
}

// AssertionTTL is the life of an upstream assertion.
const AssertionTTL = 60 * time.Second

type assertionCache struct {
	mu sync.Mutex
	m  map[assertionKey]cachedAssertion
}

type assertionKey struct{ userID, role, email, kid string }

type cachedAssertion struct {
	token    string
	reuseTil time.Time
}

func (c *assertionCache) get(key assertionKey, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.m[key]
	if !ok || !now.Before(a.reuseTil) {
		return "", false
	}
	return a.token, true
}

func (c *assertionCache) put(key assertionKey, token string, reuseTil time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 10000 {
		c.m = make(map[assertionKey]cachedAssertion) // bounded: start over rather than grow
	}
	c.m[key] = cachedAssertion{token: token, reuseTil: reuseTil}
}

// denialThrottle keeps a caller who repeats a refused request from writing an
// audit row each time: the first refusal of a (subject, code, method, path) in
// a minute is stored, every one is logged.
type denialThrottle struct {
	mu   sync.Mutex
	seen map[denialKey]time.Time
}

type denialKey struct{ subject, code, method, path string }

const denialWindow = time.Minute

func (d *denialThrottle) first(k denialKey, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if last, ok := d.seen[k]; ok && now.Sub(last) < denialWindow {
		return false
	}
	if d.seen == nil || len(d.seen) > 10000 {
		d.seen = make(map[denialKey]time.Time) // bounded: start over rather than grow
	}
	d.seen[k] = now
	return true
}

// AuditDenial records a policy refusal of a signed-in subject.
func (rt *Runtime) AuditDenial(r *http.Request, s *Subject, code, reason string) {
	path := CleanPath(r.URL.Path)
	ev := rt.StoreEvent(r, AuditEvent{Type: "policy.denied", ActorID: s.User.ID,
		Detail: map[string]any{"code": code, "reason": reason, "method": r.Method, "path": path}})
	rt.LogEvent(ev)
	if !rt.denials.first(denialKey{s.User.ID, code, r.Method, path}, ev.Time) {
		return
	}
	if err := rt.Store.AppendAudit(r.Context(), ev); err != nil {
		rt.Logger.Error("storing audit event", zap.String("type", ev.Type), zap.Error(err))
	}
}
