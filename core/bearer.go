package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/tokens"

	"github.com/gatehouse/gatehouse/quota"
)

// TokenInfo is the API token a request carries.
type TokenInfo struct {
	ID     string
	Kind   string
	Scope  []string
	Models []string // nil: every model the role may use
	// Limits are the token's own quotas, nil when it has none.
	Limits *quota.Limits
}

// identifyBearer validates a Gatehouse API token: signature and claims
// (cached by the verifier), then the revocation list and the subject's
// current status and role, all from memory on the hot path.
func (rt *Runtime) identifyBearer(ctx context.Context, header string) (*Subject, error) {
	raw, ok := tokens.ParseBearer(header)
	if !ok {
		return nil, fmt.Errorf("%w: malformed authorization header", ErrInvalidCredentials)
	}
	now := time.Now()
	// Fail closed: with a revocation list older than max_staleness a revoked
	// token could pass, so no bearer token passes.
	if age := rt.revoked.age(now); age > rt.maxStaleness {
		return nil, fmt.Errorf("%w: revocation list is %s old", ErrUnavailable, age.Round(time.Second))
	}
	claims, err := rt.tokens.Verify(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCredentials, err)
	}
	if rt.revoked.revoked(claims.ID) {
		return nil, fmt.Errorf("%w: token %s is revoked", ErrInvalidCredentials, claims.ID)
	}
	// One allocation for the subject and its token.
	bs := &bearerSubject{tok: TokenInfo{ID: claims.ID, Kind: claims.Kind, Scope: claims.Scope, Models: claims.Models, Limits: claims.Limits}}
	bs.Auth, bs.Token = "token", &bs.tok
	rt.usage.mark(claims.ID, now)
	rt.anomalies.tokenUse(claims.Subject, claims.ID, clientIPOf(ctx))

	if claims.Kind == store.TokenSystem {
		// A system token acts for the system, not for a person: its role is
		// the one it was minted with, its scope never grows, and revoking it
		// is how it is ended.
		bs.User = store.User{ID: claims.Subject, Email: claims.Email, Name: claims.Name, Role: claims.Role, Status: store.StatusActive}
		return &bs.Subject, nil
	}
	user, err := rt.User(ctx, claims.Subject)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%w: the token's user is gone", ErrInvalidCredentials)
	case err != nil:
		return nil, fmt.Errorf("%w: user lookup: %v", ErrUnavailable, err)
	}
	bs.User, err = rt.applyGrantExpiry(ctx, user)
	if err != nil {
		return nil, err
	}
	return &bs.Subject, nil
}

type bearerSubject struct {
	Subject
	tok TokenInfo
}

// IsBearer reports whether the request carries an Authorization header: such
// a request is judged by it alone, never by a cookie it also carries.
func IsBearer(r *http.Request) bool {
	return r.Header.Get("Authorization") != ""
}

// decisionKey is everything a cacheable policy reads for a backend request.
// A token's scope and models are fixed by its ID.
type decisionKey struct {
	userID, role, status, auth, email, name, tokenID string
	method, path, model                              string
	hasModel, anonymous                              bool
}

func newDecisionKey(s *Subject, method, path string, model *string) decisionKey {
	k := decisionKey{method: method, path: path, anonymous: s == nil}
	if s != nil {
		k.userID, k.role, k.status, k.auth, k.email, k.name = s.User.ID, s.User.Role, s.User.Status, s.Auth, s.User.Email, s.User.Name
		if s.Token != nil {
			k.tokenID = s.Token.ID
		}
	}
	if model != nil {
		k.model, k.hasModel = *model, true
	}
	return k
}
