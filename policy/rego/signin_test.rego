package gatehouse.signin_test

import data.gatehouse.signin

rules := [
	{"name": "admins", "provider": "corp", "claim": "groups", "value": "gatehouse-admins", "role": "admin", "decision": "approve", "sync": true},
	{"name": "contractors", "claim": "employee_type", "value": "contractor", "decision": "refuse"},
	{"name": "staff", "provider": "corp", "email_domain": "Corp.Example", "role": "user", "decision": "approve"},
	{"name": "partners", "claim": "partner_id", "role": "user", "decision": "review"},
]

person(provider, email, claims) := {"provider": provider, "email": email, "email_verified": true, "claims": claims}

decide(who) := d if {
	d := signin.decision with input as who with data.gatehouse.config.sign_in_rules as rules
}

test_a_group_in_a_list_claim_approves_with_its_role if {
	d := decide(person("corp", "ann@corp.example", {"groups": ["staff", "gatehouse-admins"]}))
	d == {"decision": "approve", "role": "admin", "sync": true, "rule": "admins"}
}

test_the_group_at_another_provider_does_not_count if {
	d := decide(person("partners", "ann@corp.example", {"groups": ["gatehouse-admins"]}))
	d.decision == "review"
	d.rule == ""
}

test_a_claim_equal_to_the_value_refuses if {
	d := decide(person("corp", "cy@corp.example", {"employee_type": "contractor"}))
	d.decision == "refuse"
	d.rule == "contractors"
}

test_the_first_matching_rule_decides if {
	# contractors comes before staff
	d := decide(person("corp", "cy@corp.example", {"employee_type": "contractor", "groups": []}))
	d.rule == "contractors"
}

test_an_email_domain_matches_in_any_case if {
	d := decide(person("corp", "Bo@CORP.example", {}))
	d == {"decision": "approve", "role": "user", "sync": false, "rule": "staff"}
}

test_an_unverified_email_does_not_match_a_domain if {
	d := decide({"provider": "corp", "email": "bo@corp.example", "email_verified": false, "claims": {}})
	d.decision == "review"
}

test_a_subdomain_is_not_the_domain if {
	d := decide(person("corp", "eve@evil-corp.example", {}))
	d.decision == "review"
}

test_a_claim_without_value_needs_it_present_and_not_false if {
	decide(person("partners", "p@x.example", {"partner_id": "p-17"})).rule == "partners"
	decide(person("partners", "p@x.example", {"partner_id": false})).rule == ""
	decide(person("partners", "p@x.example", {"partner_id": null})).rule == ""
	decide(person("partners", "p@x.example", {})).rule == ""
}

test_no_rules_waits_for_review if {
	d := signin.decision with input as person("corp", "ann@corp.example", {"groups": ["gatehouse-admins"]})
	d == {"decision": "review", "role": "", "sync": false, "rule": ""}
}

test_a_rule_without_a_name_is_named_by_its_place if {
	d := signin.decision with input as person("corp", "a@b.example", {"x": true})
		with data.gatehouse.config.sign_in_rules as [{"claim": "y", "decision": "refuse"}, {"claim": "x", "decision": "refuse"}]
	d.rule == "#1"
}
