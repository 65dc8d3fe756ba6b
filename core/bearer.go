package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/tokens"
)

// TokenInfo is the API token a request carries.
type TokenInfo struct {
	ID     string
	Kind   string
	Scope  []string
	Models []string // nil: every model the role may use
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
	info := &TokenInfo{ID: claims.ID, Kind: claims.Kind, Scope: claims.Scope, Models: claims.Models}
	rt.usage.mark(claims.ID, now)

	if claims.Kind == store.TokenSystem {
		// A system token acts for the system, not for a person: its role is
		// the one it was minted with, its scope never grows, and revoking it
		// is how it is ended.
		return &Subject{
			User: store.User{ID: claims.Subject, Email: claims.Email, Name: claims.Name, Role: claims.Role, Status: store.StatusActive},
			Auth: "token", Token: info,
		}, nil
	}
	user, err := rt.User(ctx, claims.Subject)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%w: the token's user is gone", ErrInvalidCredentials)
	case err != nil:
		return nil, fmt.Errorf("%w: user lookup: %v", ErrUnavailable, err)
	}
	user, err = rt.applyGrantExpiry(ctx, user)
	if err != nil {
		return nil, err
	}
	return &Subject{User: user, Auth: "token", Token: info}, nil
}

// IsBearer reports whether the request carries an Authorization header: such
// a request is judged by it alone, never by a cookie it also carries.
func IsBearer(r *http.Request) bool {
	return r.Header.Get("Authorization") != ""
}

// decisionKey is everything a cacheable policy reads for a backend request.
func decisionKey(s *Subject, method, path string, model *string) string {
	var b strings.Builder
	b.Grow(160 + len(path))
	if s != nil {
		b.WriteString(s.User.ID)
		b.WriteByte(0)
		b.WriteString(s.User.Role)
		b.WriteByte(0)
		b.WriteString(s.User.Status)
		b.WriteByte(0)
		b.WriteString(s.Auth)
		b.WriteByte(0)
		b.WriteString(s.User.Email)
		b.WriteByte(0)
		b.WriteString(s.User.Name)
		b.WriteByte(0)
		if s.Token != nil {
			// A token's scope and models are fixed by its ID.
			b.WriteString(s.Token.ID)
		}
	}
	b.WriteByte(0)
	b.WriteString(method)
	b.WriteByte(0)
	b.WriteString(path)
	b.WriteByte(0)
	if model != nil {
		b.WriteByte(1)
		b.WriteString(*model)
	}
	return b.String()
}
