package admin

import (
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

// accessRequestInput is the body of POST /api/auth/request-access.
type accessRequestInput struct {
	Purpose       string `json:"purpose"`
	Name          string `json:"name"`
	Team          string `json:"team"`
	RequestedRole string `json:"requested_role"`
}

// decisionInput is the body of PUT /api/access/{id}/approve and /deny.
type decisionInput struct {
	Role      string     `json:"role"`
	Comment   string     `json:"comment"`
	ExpiresAt *time.Time `json:"expires_at"`
}

const (
	maxPurposeChars = 2000
	maxCommentChars = 2000
	maxShortChars   = 200
)

func (a *API) getOwnRequest(w http.ResponseWriter, r *http.Request, route string) {
	sub, ok := a.authorize(w, r, route, nil, nil)
	if !ok {
		return
	}
	req, err := a.rt.Store.LatestAccessRequest(r.Context(), sub.User.ID)
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, notFound("access request"))
		return
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, req)
}

func (a *API) postOwnRequest(w http.ResponseWriter, r *http.Request, route string) {
	// An active user asking again is a conflict with their state (409), not a
	// policy refusal, so that case is answered before the policy is asked.
	if sub, _, err := a.identify(r); err == nil && sub != nil && sub.User.Status == store.StatusActive {
		writeProblem(w, conflict("already_active", "you already have access"))
		return
	}
	sub, ok := a.authorize(w, r, route, nil, nil)
	if !ok {
		return
	}
	var in accessRequestInput
	if err := decodeJSON(w, r, &in, false); err != nil {
		a.writeError(w, r, err)
		return
	}
	req, err := a.createAccessRequest(r, sub, in)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", a.apiPath("/api/auth/request-access"))
	writeJSON(w, http.StatusCreated, req)
}

// createAccessRequest validates and stores the caller's request.
func (a *API) createAccessRequest(r *http.Request, sub *core.Subject, in accessRequestInput) (store.AccessRequest, error) {
	if sub.User.Status == store.StatusActive {
		return store.AccessRequest{}, conflict("already_active", "you already have access")
	}
	switch {
	case in.Purpose == "":
		return store.AccessRequest{}, validation("purpose is required")
	case utf8.RuneCountInString(in.Purpose) > maxPurposeChars:
		return store.AccessRequest{}, validation(fmt.Sprintf("purpose must be at most %d characters", maxPurposeChars))
	case utf8.RuneCountInString(in.Name) > maxShortChars || utf8.RuneCountInString(in.Team) > maxShortChars:
		return store.AccessRequest{}, validation(fmt.Sprintf("name and team must be at most %d characters", maxShortChars))
	}
	if in.RequestedRole == "" {
		in.RequestedRole = "user"
	}
	if !a.rt.Policy().RoleExists(in.RequestedRole) {
		return store.AccessRequest{}, validation(fmt.Sprintf("unknown role %q", in.RequestedRole))
	}
	if in.Name == "" {
		in.Name = sub.User.Name
	}
	audit := a.rt.StoreEvent(r, core.AuditEvent{Type: "access.requested", ActorID: sub.User.ID, TargetID: sub.User.ID,
		Detail: map[string]any{"requested_role": in.RequestedRole}})
	req, err := a.rt.Store.CreateAccessRequest(r.Context(), store.AccessRequest{
		User:          store.RequestUser{ID: sub.User.ID},
		Name:          in.Name,
		Team:          in.Team,
		Purpose:       in.Purpose,
		RequestedRole: in.RequestedRole,
		Status:        store.RequestPending,
		CreatedAt:     time.Now().UTC(),
	}, audit)
	if errors.Is(err, store.ErrConflict) {
		return store.AccessRequest{}, conflict("already_pending", "you already have a pending access request")
	}
	if err != nil {
		return store.AccessRequest{}, fmt.Errorf("create access request: %w", err)
	}
	a.rt.LogEvent(audit)
	return req, nil
}

func validation(detail string) *Problem {
	return problem(http.StatusBadRequest, "validation_failed", "Validation failed", detail)
}

func (a *API) listRequests(w http.ResponseWriter, r *http.Request, route string) {
	if _, ok := a.authorize(w, r, route, nil, nil); !ok {
		return
	}
	status := r.URL.Query().Get("status")
	switch status {
	case "":
		status = store.RequestPending
	case store.RequestPending, store.RequestApproved, store.RequestDenied, "all":
	default:
		writeProblem(w, validation("status must be pending, approved, denied or all"))
		return
	}
	reqs, err := a.rt.Store.ListAccessRequests(r.Context(), status)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if reqs == nil {
		reqs = []store.AccessRequest{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": reqs})
}

func (a *API) approve(w http.ResponseWriter, r *http.Request, route string) {
	a.decide(w, r, route, true)
}

func (a *API) deny(w http.ResponseWriter, r *http.Request, route string) {
	a.decide(w, r, route, false)
}

func (a *API) decide(w http.ResponseWriter, r *http.Request, route string, approve bool) {
	var in decisionInput
	if err := decodeJSON(w, r, &in, true); err != nil {
		a.writeError(w, r, err)
		return
	}
	if !approve && (in.Role != "" || in.ExpiresAt != nil) {
		writeProblem(w, validation("a denial takes only a comment"))
		return
	}
	req, err := a.decideAccessRequest(w, r, route, r.PathValue("id"), approve, in)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if req == nil {
		return // refused by the policy, already answered
	}
	writeJSON(w, http.StatusOK, req)
}

// decideAccessRequest checks and applies a reviewer's decision. A nil request
// with a nil error means the policy refused and the response is written.
func (a *API) decideAccessRequest(w http.ResponseWriter, r *http.Request, route, id string, approve bool, in decisionInput) (*store.AccessRequest, error) {
	ctx := r.Context()
	req, err := a.rt.Store.GetAccessRequest(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		// Authorize first so an outsider cannot probe which IDs exist.
		if _, ok := a.authorize(w, r, route, nil, nil); !ok {
			return nil, nil
		}
		return nil, notFound("access request")
	}
	if err != nil {
		return nil, fmt.Errorf("load access request %s: %w", id, err)
	}
	requester, err := a.rt.Store.GetUser(ctx, req.User.ID)
	if err != nil {
		return nil, fmt.Errorf("load requester of %s: %w", id, err)
	}
	if approve && in.Role == "" {
		in.Role = "user"
	}
	var change *policy.Change
	if approve {
		change = &policy.Change{Role: in.Role, Status: store.StatusActive}
	} else {
		change = &policy.Change{Status: store.StatusDenied}
	}
	sub, ok := a.authorize(w, r, route, &policy.Target{ID: requester.ID, Role: requester.Role, Status: requester.Status}, change)
	if !ok {
		return nil, nil
	}
	if approve && !a.rt.Policy().RoleExists(in.Role) {
		return nil, validation(fmt.Sprintf("unknown role %q", in.Role))
	}
	if utf8.RuneCountInString(in.Comment) > maxCommentChars {
		return nil, validation(fmt.Sprintf("comment must be at most %d characters", maxCommentChars))
	}
	now := time.Now().UTC()
	if in.ExpiresAt != nil {
		if !in.ExpiresAt.After(now) {
			return nil, validation("expires_at must be in the future")
		}
		t := in.ExpiresAt.UTC()
		in.ExpiresAt = &t
	}
	if req.Status != store.RequestPending {
		return nil, conflict("not_pending", "this request was already "+req.Status)
	}

	result, err := a.rt.DecideAccess(ctx, r, sub, req, core.AccessDecision{
		Approve: approve, Role: in.Role, Comment: in.Comment, ExpiresAt: in.ExpiresAt, Now: now,
	})
	switch {
	case errors.Is(err, store.ErrConflict):
		return nil, conflict("not_pending", "this request was decided by someone else in the meantime")
	case errors.Is(err, store.ErrNotFound):
		return nil, notFound("access request")
	case err != nil:
		return nil, err
	}
	return &result, nil
}
