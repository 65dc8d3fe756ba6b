package gatehouse.authz_test

# Break-glass (spec §10): any active user may ask to invoke it (the handler
# checks named-or-code); listing and acknowledging grants is config:manage.

test_break_glass_invoke_is_for_any_active_user if {
	outcome(signed(api("POST /api/break-glass"), person("user", "active"))) == allowed
	outcome(signed(api("POST /api/break-glass"), person("admin", "active"))) == allowed
	outcome(signed(api("POST /api/break-glass"), person("user", "pending"))) == deny("access_required")
	outcome(signed(api("POST /api/break-glass"), person("user", "suspended"))) == deny("account_suspended")
	outcome(api("POST /api/break-glass")) == deny("unauthenticated")
}

test_break_glass_grants_are_for_config_managers if {
	every route in ["GET /api/break-glass", "POST /api/break-glass/{id}/acknowledge"] {
		outcome(signed(api(route), person("user", "active"))) == deny("forbidden")
		outcome(signed(api(route), person("manager", "active"))) == deny("forbidden")
		outcome(signed(api(route), person("admin", "active"))) == allowed
	}
}
