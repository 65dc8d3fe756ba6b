package actions

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/refusal"
	"github.com/gatehouse/gatehouse/store"
)

// BreakGlassInvocation is what a caller sends to invoke emergency access.
type BreakGlassInvocation struct {
	Reason string `json:"reason"`
	Code   string `json:"code"` // a sealed one-time code; needed unless the caller is a named user
}

// InvokeBreakGlass checks and applies an invocation of emergency access by
// the caller's own signed-in session: an API token cannot invoke it, and
// the caller must be a named user or bring an unused sealed code (403).
func (a *Actions) InvokeBreakGlass(r *http.Request, route string, in BreakGlassInvocation) (store.BreakGlassGrant, error) {
	sub, err := a.Authorize(r, route, nil, nil)
	if err != nil {
		return store.BreakGlassGrant{}, err
	}
	if sub.Auth != "session" {
		return store.BreakGlassGrant{}, refusal.Forbidden("session_required", "emergency access is invoked from a signed-in session, not with an API token")
	}
	reason := strings.TrimSpace(in.Reason)
	switch n := utf8.RuneCountInString(reason); {
	case n < core.MinBreakGlassReason:
		return store.BreakGlassGrant{}, refusal.Validation(fmt.Sprintf("reason is required: at least %d characters saying why", core.MinBreakGlassReason))
	case n > maxCommentChars:
		return store.BreakGlassGrant{}, refusal.Validation(fmt.Sprintf("reason must be at most %d characters", maxCommentChars))
	}
	if len(in.Code) > maxShortChars {
		return store.BreakGlassGrant{}, refusal.Validation("code is not a break-glass code")
	}
	g, err := a.rt.InvokeBreakGlass(r.Context(), r, sub, reason, in.Code)
	switch {
	case errors.Is(err, core.ErrBreakGlassNotAllowed):
		a.rt.AuditDenial(r, sub, "break_glass_not_allowed", err.Error())
		return store.BreakGlassGrant{}, refusal.Forbidden("break_glass_not_allowed",
			"only the users named in break_glass may invoke emergency access without a code, and a sealed code works once")
	case errors.Is(err, store.ErrConflict):
		return store.BreakGlassGrant{}, refusal.Conflict("break_glass_active", "you already hold emergency access")
	}
	return g, err
}

// BreakGlassGrants lists the grants no other admin has acknowledged yet.
func (a *Actions) BreakGlassGrants(r *http.Request, route string) ([]store.BreakGlassGrant, error) {
	if _, err := a.Authorize(r, route, nil, nil); err != nil {
		return nil, err
	}
	return a.rt.BreakGlassGrants(r.Context())
}

// AcknowledgeBreakGlass checks and records the caller's acknowledgement of
// grant id; its invoker cannot acknowledge it (403).
func (a *Actions) AcknowledgeBreakGlass(r *http.Request, route, id string) (store.BreakGlassGrant, error) {
	sub, err := a.Authorize(r, route, nil, nil)
	if err != nil {
		return store.BreakGlassGrant{}, err
	}
	g, err := a.rt.AcknowledgeBreakGlass(r.Context(), r, sub, id)
	switch {
	case errors.Is(err, core.ErrBreakGlassOwnGrant):
		a.rt.AuditDenial(r, sub, "own_grant", err.Error())
		return store.BreakGlassGrant{}, refusal.Forbidden("own_grant", "another admin must acknowledge your emergency access")
	case errors.Is(err, store.ErrNotFound):
		return store.BreakGlassGrant{}, refusal.NotFound("break-glass grant")
	case errors.Is(err, store.ErrConflict):
		return store.BreakGlassGrant{}, refusal.Conflict("acknowledged", "the grant was acknowledged already")
	}
	return g, err
}
