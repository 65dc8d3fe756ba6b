package core

import (
	"fmt"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/policy"
)

// Step-up (spec §10): the settings' step_up rules name routes or
// permissions that need a stronger sign-in of a session — an acr, amr
// values, a recent authentication. They are policy data; the policy puts
// the rule that applies on an allowed decision, and Decide compares it with
// the session's authentication (kept from the ID token) and the clock. A
// session short of it is refused with insufficient_user_authentication: an
// API caller gets RFC 9470's 401, a browser is sent back to the provider
// with acr_values, max_age and prompt=login. Tokens are not asked: they are
// minted by a person already signed in.

// StepUpRule is one rule of the settings' step_up.
type StepUpRule struct {
	Name string `json:"name"`
	// Routes are globs over "METHOD /path" (API routes as their pattern,
	// "PUT /api/users/{id}/role"; backend requests as the folded path).
	Routes []string `json:"routes,omitempty"`
	// Permissions: the rule applies to a request that needs any of them.
	Permissions []string `json:"permissions,omitempty"`
	ACR         []string `json:"acr,omitempty"`     // any one of them
	AMR         []string `json:"amr,omitempty"`     // every one of them
	MaxAge      string   `json:"max_age,omitempty"` // a duration: the sign-in at most this old
}

const (
	maxStepUpRules  = 50
	minStepUpMaxAge = time.Minute
	maxStepUpMaxAge = 30 * 24 * time.Hour
)

func validateStepUpRules(rules []StepUpRule) error {
	if len(rules) > maxStepUpRules {
		return fmt.Errorf("%w: at most %d step_up rules", ErrInvalidSettings, maxStepUpRules)
	}
	names := map[string]bool{}
	for i, r := range rules {
		at := fmt.Sprintf("step_up[%d]", i)
		switch {
		case r.Name == "" || len(r.Name) > 64:
			return fmt.Errorf("%w: %s: a name of 1 to 64 characters is required", ErrInvalidSettings, at)
		case names[r.Name]:
			return fmt.Errorf("%w: %s: the name %q is used twice", ErrInvalidSettings, at, r.Name)
		case len(r.Routes) == 0 && len(r.Permissions) == 0:
			return fmt.Errorf("%w: %s (%s): name the routes or permissions it covers", ErrInvalidSettings, at, r.Name)
		case len(r.ACR) == 0 && len(r.AMR) == 0 && r.MaxAge == "":
			return fmt.Errorf("%w: %s (%s): require an acr, amr values or a max_age", ErrInvalidSettings, at, r.Name)
		}
		names[r.Name] = true
		if r.MaxAge != "" {
			d, err := caddy.ParseDuration(r.MaxAge)
			if err != nil || d < minStepUpMaxAge || d > maxStepUpMaxAge {
				return fmt.Errorf("%w: %s (%s): max_age must be a duration from 1m to 30d, not %q", ErrInvalidSettings, at, r.Name, r.MaxAge)
			}
		}
	}
	return nil
}

// stepUpData is the rules as policy data (max_age in seconds).
func stepUpData(rules []StepUpRule) []any {
	out := make([]any, 0, len(rules))
	for _, r := range rules {
		m := map[string]any{"name": r.Name}
		for k, v := range map[string][]string{"routes": r.Routes, "permissions": r.Permissions, "acr": r.ACR, "amr": r.AMR} {
			if len(v) > 0 {
				m[k] = v
			}
		}
		if d, err := caddy.ParseDuration(r.MaxAge); err == nil && r.MaxAge != "" {
			m["max_age_s"] = int64(d / time.Second)
		}
		out = append(out, m)
	}
	return out
}

// StepUpOf is the sign-in a step-up rule asks for.
func StepUpOf(su *policy.StepUp) *identity.StepUp {
	if su == nil {
		return nil
	}
	return &identity.StepUp{Rule: su.Name, ACR: su.ACR, AMR: su.AMR, MaxAge: time.Duration(su.MaxAgeS) * time.Second}
}

// StepUpRule is the current policy's step-up rule named name.
func (rt *Runtime) StepUpRule(name string) *identity.StepUp {
	su, ok := rt.Policy().StepUpRule(name)
	if !ok {
		return nil
	}
	return StepUpOf(su)
}

// enforceStepUp turns an allowed decision that needs more of the session's
// sign-in than it has into insufficient_user_authentication.
func enforceStepUp(dec policy.Decision, s *Subject, now time.Time) policy.Decision {
	if !dec.Allow || dec.StepUp == nil || s == nil || s.Session == nil {
		return dec
	}
	a := s.Session.Auth
	ok, missing := StepUpOf(dec.StepUp).Satisfied(a.ACR, a.AMR, a.AuthTime, now)
	if ok {
		return dec
	}
	return policy.Decision{Code: policy.CodeInsufficientAuthentication, StepUp: dec.StepUp,
		Reason: "this needs " + missing + " (step-up " + dec.StepUp.Name + "); sign in again"}
}

// authContextOf is the policy input's view of a session's sign-in.
func authContextOf(s *Subject) *policy.AuthContext {
	if s == nil || s.Session == nil || s.Auth != policy.AuthSession {
		return nil
	}
	a := s.Session.Auth
	ac := &policy.AuthContext{ACR: a.ACR, AMR: a.AMR}
	if !a.AuthTime.IsZero() {
		ac.AuthTime = a.AuthTime.Unix()
	}
	if ac.AMR == nil {
		ac.AMR = []string{}
	}
	return ac
}

// StepUpLoginURL is the login URL that signs who in again, at their own
// provider, for the step-up rule, and comes back to rd.
func (rt *Runtime) StepUpLoginURL(who *Subject, rule, rd string) string {
	q := url.Values{"rd": {rd}, "step_up": {rule}}
	if who != nil {
		if rp := rt.ProviderOf(who.User.Issuer); rp != nil {
			q.Set("idp", rp.Name())
		}
	}
	return rt.APIPrefix + "/auth/login?" + q.Encode()
}
