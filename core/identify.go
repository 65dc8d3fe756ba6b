package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/metrics"
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
	// BreakGlass is the session's active emergency grant (breakglass.go);
	// User.Role is then the grant's role when it ranks higher.
	BreakGlass *store.BreakGlassGrant
}

// Identify finds the request's subject. A failing store is ErrUnavailable,
// never an anonymous request.
func (rt *Runtime) Identify(r *http.Request) (*Subject, error) {
	ctx := r.Context()
	if auth := r.Header.Get("Authorization"); auth != "" {
		defer rt.metrics.ObserveIdentify(metrics.Token, time.Now())
		return rt.identifyBearer(ctx, auth)
	}
	defer rt.metrics.ObserveIdentify(metrics.Session, time.Now())
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
	sub := &Subject{User: user, Auth: "session", Session: &sess}
	rt.applyBreakGlass(sub)
	return sub, nil
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
