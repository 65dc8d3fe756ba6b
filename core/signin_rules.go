package core

import (
	"encoding/json"
	"fmt"

	"github.com/gatehouse/gatehouse/policy"
)

// SignInRule is one rule of the settings' sign_in_rules (spec §10): claims
// of a sign-in mapped to a role, and whether a first sign-in is approved at
// once, waits for review, or is refused. The rules become policy data
// (data.gatehouse.config.sign_in_rules), which rego/signin.rego reads; the
// first rule whose every condition holds decides.
type SignInRule struct {
	Name string `json:"name,omitempty"`
	// Conditions; a rule with none matches everyone.
	Provider    string `json:"provider,omitempty"`     // the provider's configured name
	EmailDomain string `json:"email_domain,omitempty"` // of the verified email
	Claim       string `json:"claim,omitempty"`        // a claim of the ID token or userinfo
	// Value the claim must equal or, for a list, hold; absent: the claim is
	// present and not false or null. A string, a number or a boolean.
	Value any `json:"value,omitempty"`
	// Decision is approve, review or refuse.
	Decision string `json:"decision"`
	// Role is granted on approval and followed with Sync.
	Role string `json:"role,omitempty"`
	// Sync makes an active person's role follow the rule at every sign-in;
	// a person whose synced role no rule gives any more goes back to user.
	Sync bool `json:"sync,omitempty"`
}

const (
	maxSignInRules   = 200
	maxSignInRuleLen = 256
)

// validateSignInRules checks the rules' shape; the roles they name are
// checked against the compiled policy (checkSignInRoles).
func validateSignInRules(rules []SignInRule) error {
	if len(rules) > maxSignInRules {
		return fmt.Errorf("%w: at most %d sign_in_rules", ErrInvalidSettings, maxSignInRules)
	}
	for i, r := range rules {
		at := fmt.Sprintf("sign_in_rules[%d]", i)
		if r.Name != "" {
			at += " (" + r.Name + ")"
		}
		for _, s := range []string{r.Name, r.Provider, r.EmailDomain, r.Claim, r.Role} {
			if len(s) > maxSignInRuleLen {
				return fmt.Errorf("%w: %s: a field is longer than %d characters", ErrInvalidSettings, at, maxSignInRuleLen)
			}
		}
		switch r.Value.(type) {
		case nil, string, float64, bool:
		default:
			return fmt.Errorf("%w: %s: value must be a string, a number or a boolean", ErrInvalidSettings, at)
		}
		if r.Value != nil && r.Claim == "" {
			return fmt.Errorf("%w: %s: value needs the claim it is compared with", ErrInvalidSettings, at)
		}
		switch r.Decision {
		case policy.SignInApprove:
			if r.Role == "" {
				return fmt.Errorf("%w: %s: approve needs the role to grant", ErrInvalidSettings, at)
			}
		case policy.SignInReview, policy.SignInRefuse:
		default:
			return fmt.Errorf("%w: %s: decision must be approve, review or refuse, not %q", ErrInvalidSettings, at, r.Decision)
		}
		if r.Sync && r.Role == "" {
			return fmt.Errorf("%w: %s: sync needs the role to follow", ErrInvalidSettings, at)
		}
		if r.Sync && r.Decision == policy.SignInRefuse {
			return fmt.Errorf("%w: %s: a refusing rule cannot sync a role", ErrInvalidSettings, at)
		}
	}
	return nil
}

// checkSignInRoles refuses rules whose role the policy does not define, or
// whose provider is not configured.
func (rt *Runtime) checkSignInRoles(e *policy.Engine, rules []SignInRule) error {
	for i, r := range rules {
		if r.Role != "" && !e.RoleExists(r.Role) {
			return fmt.Errorf("%w: sign_in_rules[%d]: unknown role %q", ErrInvalidSettings, i, r.Role)
		}
		if r.Provider != "" && len(rt.providers) > 0 && rt.Provider(r.Provider) == nil {
			return fmt.Errorf("%w: sign_in_rules[%d]: no provider is named %q", ErrInvalidSettings, i, r.Provider)
		}
	}
	return nil
}

// signInRulesData is the rules as policy data.
func signInRulesData(rules []SignInRule) ([]any, error) {
	raw, err := json.Marshal(rules)
	if err != nil {
		return nil, err
	}
	var out []any
	return out, json.Unmarshal(raw, &out)
}
