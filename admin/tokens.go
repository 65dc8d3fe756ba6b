package admin

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/modelreq"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

// tokenInput is the body of POST /api/tokens.
type tokenInput struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	UserID      string   `json:"user_id"`
	Permissions []string `json:"permissions"`
	Models      []string `json:"models"`
	ExpiresIn   string   `json:"expires_in"`
}

// createdToken is the one response that holds the token string.
type createdToken struct {
	store.APIToken
	Token string `json:"token"`
}

// sessionOnly refuses token management with a bearer token: a leaked token
// must not be able to mint or list others.
func sessionOnly(w http.ResponseWriter, sub *core.Subject) bool {
	if sub.Auth != "session" {
		writeProblem(w, problem(http.StatusForbidden, "session_required", "Session required", "API tokens are managed from a signed-in session"))
		return false
	}
	return true
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request, route string) {
	var in tokenInput
	if err := decodeJSON(w, r, &in, false); err != nil {
		a.writeError(w, r, err)
		return
	}
	tok, err := a.newTokenFor(w, r, route, in)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if tok == nil {
		return // refused, answered
	}
	w.Header().Set("Location", a.apiPath("/api/tokens/")+tok.ID)
	writeJSON(w, http.StatusCreated, tok)
}

// newTokenFor checks and grants a token request. A nil token with a nil error
// means the request was refused and answered.
func (a *API) newTokenFor(w http.ResponseWriter, r *http.Request, route string, in tokenInput) (*createdToken, error) {
	ctx := r.Context()
	switch {
	case in.Name == "" || utf8.RuneCountInString(in.Name) > maxShortChars:
		return nil, validation(fmt.Sprintf("name is required and at most %d characters", maxShortChars))
	case in.Kind != store.TokenPersonal && in.Kind != store.TokenUser && in.Kind != store.TokenSystem:
		return nil, validation(`kind must be "personal", "user" or "system"`)
	case len(in.Permissions) > 100 || len(in.Models) > 100:
		return nil, validation("at most 100 permissions and 100 models")
	}
	for _, m := range in.Models {
		if err := modelreq.ValidGlob(m); err != nil || m == "" {
			return nil, validation(fmt.Sprintf("model pattern %q is not a valid glob", m))
		}
	}
	life, err := core.ParseLifetime(in.ExpiresIn)
	if err != nil {
		return nil, validation(err.Error())
	}

	change := &policy.Change{TokenKind: in.Kind}
	var target *policy.Target
	var subject *store.User
	if in.Kind == store.TokenUser {
		if in.UserID == "" {
			return nil, validation("user tokens need user_id")
		}
		if _, ok := a.authorize(w, r, route, nil, change); !ok {
			return nil, nil
		}
		u, err := a.rt.Store.GetUser(ctx, in.UserID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFound("user")
		}
		if err != nil {
			return nil, err
		}
		if u.Status != store.StatusActive {
			return nil, conflict("user_not_active", "tokens can only be made for active users")
		}
		subject = &u
		target = &policy.Target{ID: u.ID, Role: u.Role, Status: u.Status}
	} else if in.UserID != "" {
		return nil, validation(in.Kind + " tokens take no user_id")
	}
	sub, ok := a.authorize(w, r, route, target, change)
	if !ok {
		return nil, nil
	}
	if !sessionOnly(w, sub) {
		return nil, nil
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
		ExpiresIn: life, Allowed: allowed, Role: role,
	})
	if errors.Is(err, core.ErrTokenRequest) {
		return nil, validation(err.Error())
	}
	if err != nil {
		return nil, err
	}
	return &createdToken{APIToken: meta, Token: raw}, nil
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request, route string) {
	ctx := r.Context()
	q := r.URL.Query()
	kind, userID := q.Get("kind"), q.Get("user_id")
	switch kind {
	case "", store.TokenPersonal, store.TokenUser, store.TokenSystem:
	default:
		writeProblem(w, validation(`kind must be "personal", "user" or "system"`))
		return
	}
	var target *policy.Target
	var change *policy.Change
	if kind == store.TokenSystem {
		change = &policy.Change{TokenKind: store.TokenSystem}
	}
	sub, ok := a.authorize(w, r, route, nil, change)
	if !ok || !sessionOnly(w, sub) {
		return
	}
	f := store.TokenFilter{Kind: kind}
	switch {
	case kind == store.TokenSystem:
		if userID != "" {
			writeProblem(w, validation("system tokens belong to no user"))
			return
		}
	case userID != "" && userID != sub.User.ID:
		u, err := a.rt.Store.GetUser(ctx, userID)
		if errors.Is(err, store.ErrNotFound) {
			writeProblem(w, notFound("user"))
			return
		}
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		target = &policy.Target{ID: u.ID, Role: u.Role, Status: u.Status}
		if _, ok := a.authorize(w, r, route, target, change); !ok {
			return
		}
		f.UserID = u.ID
	default:
		f.UserID = sub.User.ID
	}
	list, err := a.rt.ListTokens(ctx, f)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []store.APIToken{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": list})
}

func (a *API) deleteToken(w http.ResponseWriter, r *http.Request, route string) {
	revoked, err := a.revokeTokenByID(w, r, route, r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if revoked {
		w.WriteHeader(http.StatusNoContent)
	}
}

// revokeTokenByID checks and revokes a token. False with a nil error means
// the policy refused and the response is written.
func (a *API) revokeTokenByID(w http.ResponseWriter, r *http.Request, route, id string) (bool, error) {
	sub, ok := a.authorize(w, r, route, nil, nil)
	if !ok {
		return false, nil
	}
	ctx := r.Context()
	t, err := a.rt.Token(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, notFound("token")
	}
	if err != nil {
		return false, err
	}
	// A token the caller may not revoke is not shown to exist: 404, as for an
	// unknown ID.
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
			return false, uerr
		}
		dec, err = a.rt.Decide(r, core.DecisionRequest{Subject: sub, APIRoute: route, Target: target})
	default:
		dec.Allow = true
	}
	if err != nil {
		return false, err
	}
	if !dec.Allow {
		a.rt.AuditDenial(r, sub, dec.Code, dec.Reason)
		return false, notFound("token")
	}
	if err := a.rt.RevokeToken(ctx, r, sub, t); err != nil {
		return false, err
	}
	return true, nil
}

func (a *API) rotateKeys(w http.ResponseWriter, r *http.Request, route string) {
	sub, ok := a.authorize(w, r, route, nil, nil)
	if !ok {
		return
	}
	kid, err := a.rt.RotateKeys(r.Context(), r, sub)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"kid": kid, "rotated_at": time.Now().UTC()})
}
