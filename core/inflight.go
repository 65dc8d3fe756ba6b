package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/store"
)

// A response in flight (SSE, chunked streaming, a websocket) is cut within a
// second once the authority that allowed it ends (spec §7a): its token is
// revoked, its session ends, or its user is suspended, deleted or loses the
// permission. The guard tracks every request it lets through; a watcher
// re-checks them and cancels the request's context, which makes Caddy's
// reverse proxy close the upstream and the client's response.

// inflightCheckEvery is how often requests in flight are re-checked; with
// the store read directly while Redis is not announcing changes, a cut
// follows a change within about this much.
const inflightCheckEvery = 300 * time.Millisecond

// ErrAuthorityEnded is the cause of a cut request's context.
var ErrAuthorityEnded = errors.New("the credential or permission that allowed the request has ended")

type inflight struct {
	mu      sync.Mutex
	next    uint64
	entries map[uint64]*inflightEntry
	wake    chan struct{}
}

type inflightEntry struct {
	r      *http.Request // &snap
	dec    DecisionRequest
	cancel context.CancelCauseFunc
	// snap and its URL live in the entry: one allocation for all three.
	snap http.Request
	url  url.URL
}

// Track registers a request the policy allowed until done is called, and
// returns it with a context that is cancelled when its authority ends.
func (rt *Runtime) Track(r *http.Request, d DecisionRequest) (tracked *http.Request, done func()) {
	ctx, cancel := context.WithCancelCause(r.Context())
	tracked = r.WithContext(ctx)
	e := &inflightEntry{dec: d, cancel: cancel}
	e.snapshot(tracked, !rt.Policy().Cacheable())
	rt.inflight.mu.Lock()
	if rt.inflight.entries == nil {
		rt.inflight.entries = make(map[uint64]*inflightEntry)
	}
	rt.inflight.next++
	id := rt.inflight.next
	rt.inflight.entries[id] = e
	rt.inflight.mu.Unlock()
	return tracked, func() {
		rt.inflight.mu.Lock()
		delete(rt.inflight.entries, id)
		rt.inflight.mu.Unlock()
		cancel(nil)
	}
}

// snapshot keeps what the watcher decides on again: the request as allowed,
// which handlers after the guard (rewrite, request_header) may change in
// place. Its headers are kept only for a policy that reads them.
func (e *inflightEntry) snapshot(r *http.Request, withHeaders bool) {
	e.snap = *r
	e.url = *r.URL
	e.snap.URL = &e.url
	e.snap.Header = nil
	if withHeaders {
		e.snap.Header = r.Header.Clone()
	}
	e.r = &e.snap
}

// recheckInflight asks the watcher for a pass now (a change of authority
// happened here or was announced).
func (rt *Runtime) recheckInflight() {
	select {
	case rt.inflight.wake <- struct{}{}:
	default:
	}
}

// watchInflight re-checks the requests in flight until ctx ends.
func (rt *Runtime) watchInflight(ctx context.Context) {
	t := time.NewTicker(inflightCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-rt.inflight.wake:
		}
		rt.checkInflight(ctx)
	}
}

// checkInflight cuts every request in flight whose authority ended. Sessions
// and users are read from the store while Redis is not announcing their
// changes (each once per pass), from the caches otherwise. A request whose
// check fails for a store error is left running: the store being down ends
// nobody's authority.
func (rt *Runtime) checkInflight(ctx context.Context) {
	rt.inflight.mu.Lock()
	entries := make([]*inflightEntry, 0, len(rt.inflight.entries))
	for _, e := range rt.inflight.entries {
		entries = append(entries, e)
	}
	rt.inflight.mu.Unlock()
	if len(entries) == 0 {
		return
	}
	fresh := !rt.fanoutHealthy()
	sessions := map[string]bool{}
	users := map[string]*store.User{} // nil: deleted
	for _, e := range entries {
		if e.r.Context().Err() != nil {
			continue
		}
		reason, err := rt.authorityEnded(ctx, e, fresh, sessions, users)
		if err != nil {
			rt.Logger.Debug("re-checking a request in flight", zap.Error(err))
			continue
		}
		if reason == "" {
			continue
		}
		e.cancel(fmt.Errorf("%w: %s", ErrAuthorityEnded, reason))
		sub := e.dec.Subject
		detail := map[string]any{"reason": reason, "method": e.r.Method, "path": e.r.URL.Path}
		if sub.Token != nil {
			detail["token_id"] = sub.Token.ID
		}
		rt.Audit(ctx, e.r, AuditEvent{Type: "stream.cut", ActorID: sub.User.ID, TargetID: sub.User.ID, Detail: detail})
	}
}

// authorityEnded says why e may no longer go on, or "" when it may.
func (rt *Runtime) authorityEnded(ctx context.Context, e *inflightEntry, fresh bool, sessions map[string]bool, users map[string]*store.User) (string, error) {
	sub := e.dec.Subject
	if sub.Token != nil && rt.revoked.revoked(sub.Token.ID) {
		return "token_revoked", nil
	}
	if sub.Session != nil {
		alive, seen := sessions[sub.Session.ID]
		if !seen {
			var err error
			if alive, err = rt.Sessions.Alive(ctx, sub.Session.ID, fresh); err != nil {
				return "", err
			}
			sessions[sub.Session.ID] = alive
		}
		if !alive {
			return "session_ended", nil
		}
	}
	current := sub.User
	if sub.Token == nil || sub.Token.Kind != store.TokenSystem {
		u, seen := users[sub.User.ID]
		if !seen {
			var err error
			if u, err = rt.currentUser(ctx, sub.User.ID, fresh); err != nil {
				return "", err
			}
			users[sub.User.ID] = u
		}
		if u == nil {
			return "user_deleted", nil
		}
		if u.Status != store.StatusActive {
			return "user_" + u.Status, nil
		}
		current = *u
	}
	now := *sub
	now.User, now.BreakGlass = current, nil
	rt.applyBreakGlass(&now)
	d := e.dec
	d.Subject = &now
	dec, err := rt.Decide(e.r, d)
	if err != nil {
		return "", err
	}
	if !dec.Allow {
		return "permission_lost", nil
	}
	return "", nil
}

// currentUser reads a user (nil when deleted), from the store when fresh.
func (rt *Runtime) currentUser(ctx context.Context, id string, fresh bool) (*store.User, error) {
	var (
		u   store.User
		err error
	)
	if fresh {
		u, err = rt.Store.GetUser(ctx, id)
	} else {
		u, err = rt.User(ctx, id)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &u, nil
}
