package actions

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/refusal"
	"github.com/gatehouse/gatehouse/store"
)

// AccessRequest is what a person asks for: the body of POST
// /api/auth/request-access and the request-access form.
type AccessRequest struct {
	Purpose       string `json:"purpose"`
	Name          string `json:"name"`
	Team          string `json:"team"`
	RequestedRole string `json:"requested_role"`
}

// Review is a reviewer's decision: the body of PUT /api/access/{id}/approve
// and /deny, and the dashboard's review forms.
type Review struct {
	Role      string     `json:"role"`
	Comment   string     `json:"comment"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// RequestAccess checks and stores the caller's request under route.
func (a *Actions) RequestAccess(r *http.Request, route string, in AccessRequest) (store.AccessRequest, error) {
	sub, err := a.MayRequestAccess(r, route)
	if err != nil {
		return store.AccessRequest{}, err
	}
	switch {
	case in.Purpose == "":
		return store.AccessRequest{}, refusal.Validation("purpose is required")
	case utf8.RuneCountInString(in.Purpose) > maxPurposeChars:
		return store.AccessRequest{}, refusal.Validation(fmt.Sprintf("purpose must be at most %d characters", maxPurposeChars))
	case utf8.RuneCountInString(in.Name) > maxShortChars || utf8.RuneCountInString(in.Team) > maxShortChars:
		return store.AccessRequest{}, refusal.Validation(fmt.Sprintf("name and team must be at most %d characters", maxShortChars))
	}
	if in.RequestedRole == "" {
		in.RequestedRole = "user"
	}
	if !a.rt.Policy().RoleExists(in.RequestedRole) {
		return store.AccessRequest{}, refusal.Validation(fmt.Sprintf("unknown role %q", in.RequestedRole))
	}
	if in.Name == "" {
		in.Name = sub.User.Name
	}
	req, err := a.rt.CreateAccessRequest(r.Context(), r, sub, store.AccessRequest{
		Name:          in.Name,
		Team:          in.Team,
		Purpose:       in.Purpose,
		RequestedRole: in.RequestedRole,
	})
	if errors.Is(err, store.ErrConflict) {
		return store.AccessRequest{}, refusal.Conflict("already_pending", "you already have a pending access request")
	}
	if err != nil {
		return store.AccessRequest{}, fmt.Errorf("create access request: %w", err)
	}
	return req, nil
}

// MayRequestAccess is the caller when they may ask for access under route.
// The API asks it before it reads the body, so a stranger learns nothing
// from the body's validation.
func (a *Actions) MayRequestAccess(r *http.Request, route string) (*core.Subject, error) {
	// An active user asking again is a conflict with their state (409), not a
	// policy refusal, so that case is answered before the policy is asked.
	if sub, _, err := a.Identify(r); err == nil && sub != nil && sub.User.Status == store.StatusActive {
		return nil, errAlreadyActive
	}
	sub, err := a.Authorize(r, route, nil, nil)
	if err != nil {
		return nil, err
	}
	if sub.User.Status == store.StatusActive {
		return nil, errAlreadyActive
	}
	return sub, nil
}

var errAlreadyActive = refusal.Conflict("already_active", "you already have access")

// OwnRequest is the caller's latest access request.
func (a *Actions) OwnRequest(r *http.Request, route string) (store.AccessRequest, error) {
	sub, err := a.Authorize(r, route, nil, nil)
	if err != nil {
		return store.AccessRequest{}, err
	}
	req, err := a.rt.Store.LatestAccessRequest(r.Context(), sub.User.ID)
	if errors.Is(err, store.ErrNotFound) {
		return store.AccessRequest{}, refusal.NotFound("access request")
	}
	return req, err
}

// DecideAccessRequest checks and applies a reviewer's decision on request id.
func (a *Actions) DecideAccessRequest(r *http.Request, route, id string, approve bool, in Review) (store.AccessRequest, error) {
	ctx := r.Context()
	if !approve && (in.Role != "" || in.ExpiresAt != nil) {
		return store.AccessRequest{}, refusal.Validation("a denial takes only a comment")
	}
	req, requester, err := loadForReview(a, r, route, "access request", id, a.rt.Store.GetAccessRequest,
		func(req store.AccessRequest) string { return req.User.ID })
	if err != nil {
		return store.AccessRequest{}, err
	}
	if approve && in.Role == "" {
		in.Role = "user"
	}
	change := &policy.Change{Status: store.StatusDenied}
	if approve {
		change = &policy.Change{Role: in.Role, Status: store.StatusActive}
	}
	sub, err := a.Authorize(r, route, &policy.Target{ID: requester.ID, Role: requester.Role, Status: requester.Status}, change)
	if err != nil {
		return store.AccessRequest{}, err
	}
	now := time.Now().UTC()
	if err := in.check(a.rt.Policy(), approve, now); err != nil {
		return store.AccessRequest{}, err
	}
	if req.Status != store.RequestPending {
		return store.AccessRequest{}, refusal.Conflict("not_pending", "this request was already "+req.Status)
	}
	result, err := a.rt.DecideAccess(ctx, r, sub, req, core.AccessDecision{
		Approve: approve, Role: in.Role, Comment: in.Comment, ExpiresAt: in.ExpiresAt, Now: now,
	})
	switch {
	case errors.Is(err, store.ErrConflict):
		return store.AccessRequest{}, refusal.Conflict("not_pending", "this request was decided by someone else in the meantime")
	case errors.Is(err, store.ErrNotFound):
		return store.AccessRequest{}, refusal.NotFound("access request")
	}
	return result, err
}

// check validates a review and puts its expiry in UTC.
func (in *Review) check(engine *policy.Engine, approve bool, now time.Time) error {
	if approve && !engine.RoleExists(in.Role) {
		return refusal.Validation(fmt.Sprintf("unknown role %q", in.Role))
	}
	if utf8.RuneCountInString(in.Comment) > maxCommentChars {
		return refusal.Validation(fmt.Sprintf("comment must be at most %d characters", maxCommentChars))
	}
	if in.ExpiresAt != nil {
		if !in.ExpiresAt.After(now) {
			return refusal.Validation("expires_at must be in the future")
		}
		t := in.ExpiresAt.UTC()
		in.ExpiresAt = &t
	}
	return nil
}

// AccessRequests lists requests by status ("" is pending; "all").
func (a *Actions) AccessRequests(r *http.Request, route, status string) ([]store.AccessRequest, error) {
	if _, err := a.Authorize(r, route, nil, nil); err != nil {
		return nil, err
	}
	switch status {
	case "":
		status = store.RequestPending
	case store.RequestPending, store.RequestApproved, store.RequestDenied, store.RequestExpired, "all":
	default:
		return nil, refusal.Validation("status must be pending, approved, denied, expired or all")
	}
	reqs, err := a.rt.Store.ListAccessRequests(r.Context(), status)
	if reqs == nil {
		reqs = []store.AccessRequest{}
	}
	return reqs, err
}

// loadForReview loads what a reviewer decides on (an access request, an
// elevation) and its requester. An unknown id is a 404 only for a caller
// the route allows, so that an outsider cannot probe which IDs exist.
func loadForReview[T any](a *Actions, r *http.Request, route, what, id string,
	get func(context.Context, string) (T, error), requesterOf func(T) string) (T, store.User, error) {
	var none T
	item, err := get(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		if _, err := a.Authorize(r, route, nil, nil); err != nil {
			return none, store.User{}, err
		}
		return none, store.User{}, refusal.NotFound(what)
	}
	if err != nil {
		return none, store.User{}, fmt.Errorf("load %s %s: %w", what, id, err)
	}
	requester, err := a.rt.Store.GetUser(r.Context(), requesterOf(item))
	if err != nil {
		return none, store.User{}, fmt.Errorf("load the requester of %s %s: %w", what, id, err)
	}
	return item, requester, nil
}
