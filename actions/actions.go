// Package actions holds what a caller can do through Gatehouse's HTTP API or
// its pages, checked: each action identifies the caller, asks the policy
// under the API route it belongs to, validates its input and applies the
// change through core. It returns its result or an error — a
// *refusal.Problem for every refusal, anything else when a dependency failed
// — and writes nothing, so the API answers with problem+json and the pages
// with HTML from the same outcome, and a page can never do what the API
// would refuse. The api and pages packages import it; it imports neither.
package actions

import (
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/refusal"
)

// MaxBodyBytes bounds every request body the API or a page form reads.
const MaxBodyBytes = 64 << 10

// Bounds of free text, in characters.
const (
	maxPurposeChars = 2000
	maxCommentChars = 2000
	maxShortChars   = 200
)

// Actions runs the checked operations against one runtime.
type Actions struct {
	rt *core.Runtime
}

// New returns the actions of rt.
func New(rt *core.Runtime) *Actions { return &Actions{rt: rt} }

// Identify returns the caller (nil when anonymous) and whether the request
// carried credentials that turned out invalid. An error means the caller
// could not be checked (the store failed).
func (a *Actions) Identify(r *http.Request) (sub *core.Subject, invalid bool, err error) {
	sub, err = a.rt.Identify(r)
	switch {
	case errors.Is(err, core.ErrNoCredentials):
		return nil, false, nil
	case errors.Is(err, core.ErrInvalidCredentials):
		return nil, true, nil
	}
	return sub, false, err
}

// Authorize identifies the caller and asks the policy about route (a
// canonical "METHOD /api/…" pattern), with the user acted on and the change
// when there are any. A refusal is a *refusal.Problem: 401 unauthenticated
// or invalid_token for an anonymous caller, 403 with the policy's code
// otherwise (and audited).
func (a *Actions) Authorize(r *http.Request, route string, target *policy.Target, change *policy.Change) (*core.Subject, error) {
	sub, invalid, err := a.Identify(r)
	if err != nil {
		return nil, err
	}
	dec, err := a.rt.Decide(r, core.DecisionRequest{Subject: sub, APIRoute: route, Target: target, Change: change})
	if err != nil {
		return nil, err
	}
	if dec.Allow {
		a.rt.AuditBreakGlassRequest(r, sub)
		return sub, nil
	}
	return nil, a.refuse(r, sub, invalid, dec)
}

// Allowed asks the policy without recording a refusal: pages use it to
// decide what to show, and the action itself asks again when it is taken.
// A route that needs a step-up counts as allowed: its link is shown, and
// following it asks for the stronger sign-in.
func (a *Actions) Allowed(r *http.Request, sub *core.Subject, route string, target *policy.Target, change *policy.Change) bool {
	dec, err := a.rt.Decide(r, core.DecisionRequest{Subject: sub, APIRoute: route, Target: target, Change: change})
	return err == nil && (dec.Allow || dec.Code == policy.CodeInsufficientAuthentication)
}

func (a *Actions) refuse(r *http.Request, sub *core.Subject, invalid bool, dec policy.Decision) *refusal.Problem {
	if sub == nil {
		if invalid {
			return InvalidCredentials("the session or token is unknown, expired or revoked")
		}
		return refusal.New(http.StatusUnauthorized, "unauthenticated", "Authentication required", "sign in first")
	}
	a.rt.AuditDenial(r, sub, dec.Code, dec.Reason)
	if dec.Code == policy.CodeInsufficientAuthentication && dec.StepUp != nil {
		return refusal.InsufficientAuthentication(dec.StepUp.Name, dec.Reason, dec.StepUp.ACR, dec.StepUp.MaxAgeS)
	}
	code := dec.Code
	if code == "" || code == "unauthenticated" {
		code = "forbidden"
	}
	detail := dec.Reason
	if detail == "" {
		detail = "the policy does not allow this request"
	}
	return refusal.Forbidden(code, detail)
}

// InvalidCredentials is 401 invalid_token.
func InvalidCredentials(detail string) *refusal.Problem {
	return refusal.New(http.StatusUnauthorized, "invalid_token", "Invalid credentials", detail)
}
