# Gatehouse sign-in rules (spec §10): what a sign-in through an OpenID
# provider means for the person's access, decided from their claims.
#
# The rules are data (data.gatehouse.config.sign_in_rules, from the
# settings): the first rule whose every condition holds decides. A rule's
# conditions are any of provider (the configured provider's name),
# email_domain (the verified email's domain, any case), and claim with value
# (the claim equals value, or is a list holding it) or claim alone (present,
# not false or null). A person no rule matches waits for review.
#
# decision is {"decision": "approve" | "review" | "refuse", "role", "sync",
# "rule"}: approve activates a pending person with role at once; refuse
# denies them; sync makes an active person's role follow the rule at every
# sign-in.
package gatehouse.signin

default decision := {"decision": "review", "role": "", "sync": false, "rule": ""}

rules := object.get(data.gatehouse.config, "sign_in_rules", [])

decision := {
	"decision": rule.decision,
	"role": object.get(rule, "role", ""),
	"sync": object.get(rule, "sync", false),
	"rule": object.get(rule, "name", sprintf("#%d", [first])),
} if {
	first := min(matching)
	rule := rules[first]
}

matching contains i if {
	some i, rule in rules
	provider_matches(rule)
	domain_matches(rule)
	claim_matches(rule)
}

provider_matches(rule) if not rule.provider

provider_matches(rule) if rule.provider == input.provider

domain_matches(rule) if not rule.email_domain

domain_matches(rule) if {
	input.email_verified
	endswith(lower(input.email), concat("", ["@", lower(rule.email_domain)]))
}

claim_matches(rule) if not rule.claim

# A claim without a value: present, and not false or null.
claim_matches(rule) if {
	not "value" in object.keys(rule)
	value := input.claims[rule.claim]
	not value in {false, null}
}

claim_matches(rule) if input.claims[rule.claim] == rule.value

claim_matches(rule) if {
	is_array(input.claims[rule.claim])
	rule.value in input.claims[rule.claim]
}
