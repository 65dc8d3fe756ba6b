package policy

import (
	"context"
	"fmt"

	"github.com/open-policy-agent/opa/v1/rego"
)

// The sign-in rules (rego/signin.rego) decide what a sign-in means for a
// person's access from their claims: approved at once with a role, left for
// review, or refused; and whether an active person's role follows the rule
// at every sign-in (sync). A module in package gatehouse.signin replaces
// the default rules.

// Sign-in verdicts.
const (
	SignInApprove = "approve"
	SignInReview  = "review"
	SignInRefuse  = "refuse"
)

// SignInInput is what the rules see of a sign-in.
type SignInInput struct {
	Provider      string         `json:"provider"`
	Email         string         `json:"email"`
	EmailVerified bool           `json:"email_verified"`
	Claims        map[string]any `json:"claims"` // the ID token's and userinfo's
}

// SignInDecision is the rules' answer. Rule names the rule that decided
// ("" when none matched).
type SignInDecision struct {
	Decision string `json:"decision"`
	Role     string `json:"role"`
	Sync     bool   `json:"sync"`
	Rule     string `json:"rule"`
}

// SignIn evaluates the sign-in rules. A decision of the wrong shape, or one
// that grants a role the policy does not know, is an error: the caller
// leaves the person for review.
func (e *Engine) SignIn(ctx context.Context, in SignInInput) (SignInDecision, error) {
	if in.Claims == nil {
		in.Claims = map[string]any{}
	}
	rs, err := e.signIn.Eval(ctx, rego.EvalInput(in))
	if err != nil {
		return SignInDecision{}, fmt.Errorf("evaluate sign-in rules: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return SignInDecision{}, fmt.Errorf("%s: %w", signInQuery, ErrBadDecision)
	}
	obj, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return SignInDecision{}, fmt.Errorf("%s is not an object: %w", signInQuery, ErrBadDecision)
	}
	var d SignInDecision
	d.Decision, _ = obj["decision"].(string)
	d.Role, _ = obj["role"].(string)
	d.Sync, _ = obj["sync"].(bool)
	d.Rule, _ = obj["rule"].(string)
	switch d.Decision {
	case SignInApprove:
		if !e.RoleExists(d.Role) {
			return SignInDecision{}, fmt.Errorf("sign-in rule %q approves with role %q, which the policy does not define: %w", d.Rule, d.Role, ErrBadDecision)
		}
	case SignInReview, SignInRefuse:
	default:
		return SignInDecision{}, fmt.Errorf("sign-in rule %q decides %q, not approve, review or refuse: %w", d.Rule, d.Decision, ErrBadDecision)
	}
	if d.Sync && !e.RoleExists(d.Role) {
		return SignInDecision{}, fmt.Errorf("sign-in rule %q syncs to role %q, which the policy does not define: %w", d.Rule, d.Role, ErrBadDecision)
	}
	return d, nil
}
