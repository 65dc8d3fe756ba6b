package actions

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/modelreq"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/refusal"
	"github.com/gatehouse/gatehouse/store"

	"github.com/gatehouse/gatehouse/quota"
)

// TokenRequest is the body of POST /api/tokens and the token forms.
type TokenRequest struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	UserID      string   `json:"user_id"`
	Permissions []string `json:"permissions"`
	Models      []string `json:"models"`
	ExpiresIn   string   `json:"expires_in"`
	// Limits are the token's own quotas, never wider than the role's.
	Limits *quota.Limits `json:"limits"`
}

// CreatedToken is the one answer that holds the token string.
type CreatedToken struct {
	store.APIToken
	Token string `json:"token"`
}

// sessionOnly refuses token management with a bearer token: a leaked token
// must not be able to mint or list others.
func sessionOnly(sub *core.Subject) error {
	if sub.Auth != policy.AuthSession {
		return refusal.Forbidden("session_required", "API tokens are managed from a signed-in session")
	}
	return nil
}

// CreateToken checks and grants a token request.
func (a *Actions) CreateToken(r *http.Request, route string, in TokenRequest) (*CreatedToken, error) {
	ctx := r.Context()
	switch {
	case in.Name == "" || utf8.RuneCountInString(in.Name) > maxShortChars:
		return nil, refusal.Validation(fmt.Sprintf("name is required and at most %d characters", maxShortChars))
	case in.Kind != store.TokenPersonal && in.Kind != store.TokenUser && in.Kind != store.TokenSystem:
		return nil, refusal.Validation(`kind must be "personal", "user" or "system"`)
	case len(in.Permissions) > 100 || len(in.Models) > 100:
		return nil, refusal.Validation("at most 100 permissions and 100 models")
	}
	for _, m := range in.Models {
		if err := modelreq.ValidGlob(m); err != nil || m == "" {
			return nil, refusal.Validation(fmt.Sprintf("model pattern %q is not a valid glob", m))
		}
	}
	life, err := core.ParseLifetime(in.ExpiresIn)
	if err != nil {
		return nil, refusal.Validation(err.Error())
	}

	change := &policy.Change{TokenKind: in.Kind}
	var target *policy.Target
	var subject *store.User
	if in.Kind == store.TokenUser {
		if in.UserID == "" {
			return nil, refusal.Validation("user tokens need user_id")
		}
		if _, err := a.Authorize(r, route, nil, change); err != nil {
			return nil, err
		}
		u, err := a.rt.Store.GetUser(ctx, in.UserID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, refusal.NotFound("user")
		}
		if err != nil {
			return nil, err
		}
		if u.Status != store.StatusActive {
			return nil, refusal.Conflict("user_not_active", "tokens can only be made for active users")
		}
		subject = &u
		target = &policy.Target{ID: u.ID, Role: u.Role, Status: u.Status}
	} else if in.UserID != "" {
		return nil, refusal.Validation(in.Kind + " tokens take no user_id")
	}
	sub, err := a.Authorize(r, route, target, change)
	if err != nil {
		return nil, err
	}
	if err := sessionOnly(sub); err != nil {
		return nil, err
	}
	allowed, err := a.rt.Policy().Permissions(ctx, sub.User.Role)
	if err != nil {
		return nil, err
	}
	role := sub.User.Role
	switch in.Kind {
	case store.TokenPersonal:
		subject = &sub.User
	case store.TokenUser:
		theirs, err := a.rt.Policy().Permissions(ctx, subject.Role)
		if err != nil {
			return nil, err
		}
		allowed = slices.DeleteFunc(allowed, func(p string) bool { return !slices.Contains(theirs, p) })
		role = subject.Role
	}
	raw, meta, err := a.rt.CreateToken(ctx, r, sub, core.NewToken{
		Name: in.Name, Kind: in.Kind, Subject: subject, Permissions: in.Permissions, Models: in.Models,
		ExpiresIn: life, Allowed: allowed, Role: role, Limits: in.Limits,
	})
	if errors.Is(err, core.ErrTokenRequest) {
		return nil, refusal.Validation(err.Error())
	}
	if err != nil {
		return nil, err
	}
	return &CreatedToken{APIToken: meta, Token: raw}, nil
}

// Tokens lists the tokens the caller may see: their own, a user's
// (?user_id=) or the system tokens (?kind=system).
func (a *Actions) Tokens(r *http.Request, route, kind, userID string) ([]store.APIToken, error) {
	ctx := r.Context()
	switch kind {
	case "", store.TokenPersonal, store.TokenUser, store.TokenSystem:
	default:
		return nil, refusal.Validation(`kind must be "personal", "user" or "system"`)
	}
	var change *policy.Change
	if kind == store.TokenSystem {
		change = &policy.Change{TokenKind: store.TokenSystem}
	}
	sub, err := a.Authorize(r, route, nil, change)
	if err != nil {
		return nil, err
	}
	if err := sessionOnly(sub); err != nil {
		return nil, err
	}
	f := store.TokenFilter{Kind: kind}
	switch {
	case kind == store.TokenSystem:
		if userID != "" {
			return nil, refusal.Validation("system tokens belong to no user")
		}
	case userID != "" && userID != sub.User.ID:
		u, err := a.rt.Store.GetUser(ctx, userID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, refusal.NotFound("user")
		}
		if err != nil {
			return nil, err
		}
		if _, err := a.Authorize(r, route, &policy.Target{ID: u.ID, Role: u.Role, Status: u.Status}, change); err != nil {
			return nil, err
		}
		f.UserID = u.ID
	default:
		f.UserID = sub.User.ID
	}
	list, err := a.rt.ListTokens(ctx, f)
	if list == nil {
		list = []store.APIToken{}
	}
	return list, err
}

// RevokeToken checks and revokes token id. A token the caller may not
// revoke is not shown to exist: 404, as for an unknown ID.
func (a *Actions) RevokeToken(r *http.Request, route, id string) error {
	sub, err := a.Authorize(r, route, nil, nil)
	if err != nil {
		return err
	}
	ctx := r.Context()
	t, err := a.rt.Token(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return refusal.NotFound("token")
	}
	if err != nil {
		return err
	}
	var dec policy.Decision
	switch {
	case t.Kind == store.TokenSystem:
		dec, err = a.rt.Decide(r, core.DecisionRequest{Subject: sub, APIRoute: route, Change: &policy.Change{TokenKind: store.TokenSystem}})
	case t.UserID != sub.User.ID:
		u, uerr := a.rt.Store.GetUser(ctx, t.UserID)
		target := &policy.Target{ID: t.UserID}
		if uerr == nil {
			target.Role, target.Status = u.Role, u.Status
		} else if !errors.Is(uerr, store.ErrNotFound) {
			return uerr
		}
		dec, err = a.rt.Decide(r, core.DecisionRequest{Subject: sub, APIRoute: route, Target: target})
	default:
		dec.Allow = true
	}
	if err != nil {
		return err
	}
	if !dec.Allow {
		a.rt.AuditDenial(r, sub, dec.Code, dec.Reason)
		return refusal.NotFound("token")
	}
	return a.rt.RevokeToken(ctx, r, sub, t)
}
