package actions

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/refusal"
	"github.com/gatehouse/gatehouse/store"
)

// ElevationRequest is what an active user asks for: the body of POST
// /api/elevations and the account page's form. Duration is a Go duration
// ("2h", "90m") between core.MinElevation and core.MaxElevation.
type ElevationRequest struct {
	Role     string `json:"role"`
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
}

// ElevationReview is a reviewer's decision: the body of PUT
// /api/elevations/{id}/approve and /deny, and the dashboard's forms.
type ElevationReview struct {
	Comment string `json:"comment"`
}

// ElevationsEveryone is the target of listing every user's elevations: it
// has no role, so no rank stands in the way; the route's target permission
// (access:review) still does.
var ElevationsEveryone = &policy.Target{}

var elevationStatuses = []string{store.ElevationPending, store.ElevationApproved, store.ElevationDenied, store.ElevationExpired, store.ElevationEnded}

// RequestElevation checks and stores the caller's request under route: a
// role that exists and ranks above theirs, for a duration within bounds,
// with a reason; 409 while they have one pending or held.
func (a *Actions) RequestElevation(r *http.Request, route string, in ElevationRequest) (store.Elevation, error) {
	sub, err := a.Authorize(r, route, nil, nil)
	if err != nil {
		return store.Elevation{}, err
	}
	ranks := a.rt.Policy().Roles()
	rank, exists := ranks[in.Role]
	switch {
	case in.Role == "":
		return store.Elevation{}, refusal.Validation("role is required")
	case !exists:
		return store.Elevation{}, refusal.Validation(fmt.Sprintf("unknown role %q", in.Role))
	case rank <= ranks[sub.User.Role]:
		return store.Elevation{}, refusal.Validation(fmt.Sprintf("role %s does not rank above your role %s", in.Role, sub.User.Role))
	case in.Reason == "":
		return store.Elevation{}, refusal.Validation("reason is required")
	case utf8.RuneCountInString(in.Reason) > maxPurposeChars:
		return store.Elevation{}, refusal.Validation(fmt.Sprintf("reason must be at most %d characters", maxPurposeChars))
	}
	d, err := time.ParseDuration(in.Duration)
	if err != nil || d < core.MinElevation || d > core.MaxElevation || d%time.Second != 0 {
		return store.Elevation{}, refusal.Validation(fmt.Sprintf("duration must be whole seconds between %s and %s, like \"2h\"", core.MinElevation, core.MaxElevation))
	}
	e, err := a.rt.RequestElevation(r.Context(), r, sub, store.Elevation{Role: in.Role, DurationSeconds: int64(d / time.Second), Reason: in.Reason})
	if errors.Is(err, store.ErrConflict) {
		return store.Elevation{}, refusal.Conflict("elevation_open", "you already have an elevation pending or held")
	}
	if err != nil {
		return store.Elevation{}, fmt.Errorf("request elevation: %w", err)
	}
	return e, nil
}

// Elevations lists elevations given GET /api/elevations's query parameters:
// status (any when absent) and user_id. Without user_id the answer is
// everyone's when the caller may review them, their own otherwise; another
// user's needs the policy's leave with that user as the target.
func (a *Actions) Elevations(r *http.Request, route string, params url.Values) ([]store.Elevation, error) {
	sub, err := a.Authorize(r, route, nil, nil)
	if err != nil {
		return nil, err
	}
	for name := range params {
		if name != "status" && name != "user_id" {
			return nil, refusal.Validation(fmt.Sprintf("unknown parameter %q: use status or user_id", name))
		}
	}
	f := store.ElevationFilter{Status: params.Get("status"), UserID: params.Get("user_id")}
	if f.Status != "" && !slices.Contains(elevationStatuses, f.Status) {
		return nil, refusal.Validation("status must be pending, approved, denied, expired or ended")
	}
	switch {
	case f.UserID == "":
		if !a.Allowed(r, sub, route, ElevationsEveryone, nil) {
			f.UserID = sub.User.ID
		}
	case f.UserID != sub.User.ID:
		u, err := a.rt.Store.GetUser(r.Context(), f.UserID)
		target := &policy.Target{ID: f.UserID}
		switch {
		case err == nil:
			target.Role, target.Status = u.Role, u.Status
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		if _, err := a.Authorize(r, route, target, nil); err != nil {
			return nil, err
		}
	}
	list, err := a.rt.Store.ListElevations(r.Context(), f)
	if list == nil {
		list = []store.Elevation{}
	}
	return list, err
}

// MayReviewElevations reports whether sub may list everyone's elevations,
// for pages deciding what to show.
func (a *Actions) MayReviewElevations(r *http.Request, sub *core.Subject, route string) bool {
	return a.Allowed(r, sub, route, ElevationsEveryone, nil)
}

// DecideElevation checks and applies a reviewer's decision on elevation id.
// The reviewer must be allowed to grant its role to its requester, as for an
// access request (the policy's change.role), and may not decide their own.
func (a *Actions) DecideElevation(r *http.Request, route, id string, approve bool, in ElevationReview) (store.Elevation, error) {
	ctx := r.Context()
	e, requester, err := loadForReview(a, r, route, "elevation", id, a.rt.Store.GetElevation,
		func(e store.Elevation) string { return e.User.ID })
	if err != nil {
		return store.Elevation{}, err
	}
	// A denial takes nothing away, but only someone who could approve may
	// decide, so that a manager cannot turn down a request meant for admins.
	sub, err := a.Authorize(r, route, &policy.Target{ID: requester.ID, Role: requester.Role, Status: requester.Status},
		&policy.Change{Role: e.Role, Status: requester.Status})
	if err != nil {
		return store.Elevation{}, err
	}
	if sub.User.ID == requester.ID {
		return store.Elevation{}, refusal.Forbidden("forbidden", "you cannot review your own elevation")
	}
	if utf8.RuneCountInString(in.Comment) > maxCommentChars {
		return store.Elevation{}, refusal.Validation(fmt.Sprintf("comment must be at most %d characters", maxCommentChars))
	}
	if e.Status != store.ElevationPending {
		return store.Elevation{}, refusal.Conflict("not_pending", "this elevation was already "+e.Status)
	}
	if approve {
		ranks := a.rt.Policy().Roles()
		switch {
		case requester.Status != store.StatusActive:
			return store.Elevation{}, refusal.Conflict("requester_inactive", "the requester's account is "+requester.Status)
		case ranks[e.Role] <= ranks[requester.Role]:
			return store.Elevation{}, refusal.Conflict("not_above", fmt.Sprintf("the requester's role is now %s, not below %s", requester.Role, e.Role))
		}
	}
	result, err := a.rt.DecideElevation(ctx, r, sub, e, core.ElevationDecision{
		Approve: approve, Comment: in.Comment, FromRole: requester.Role, Now: time.Now().UTC().Truncate(time.Microsecond),
	})
	switch {
	case errors.Is(err, store.ErrConflict):
		return store.Elevation{}, refusal.Conflict("not_pending", "this elevation was decided, or the requester's role changed, in the meantime")
	case errors.Is(err, store.ErrNotFound):
		return store.Elevation{}, refusal.NotFound("elevation")
	}
	return result, err
}
