package gatehouse.authz_test

# Temporary elevation (spec §10): any active user may ask and read their own;
# reading everyone's and deciding needs access:review, and deciding the right
# to grant the role, as for an access request.

test_any_active_user_requests_an_elevation if {
	outcome(on("POST /api/elevations", person("user", "active"), null, null)) == allowed
	outcome(on("GET /api/elevations", person("user", "active"), null, null)) == allowed
	outcome(on("POST /api/elevations", person("user", "pending"), null, null)) == deny("access_required")
	outcome(on("POST /api/elevations", person("user", "suspended"), null, null)) == deny("account_suspended")
	outcome(api("POST /api/elevations")) == deny("unauthenticated")
}

test_everyones_elevations_need_access_review if {
	everyone := {"id": "", "role": "", "status": ""}
	outcome(on("GET /api/elevations", person("manager", "active"), everyone, null)) == allowed
	outcome(on("GET /api/elevations", person("user", "active"), everyone, null)) == deny("forbidden")
}

test_deciding_an_elevation_needs_the_right_to_grant_its_role if {
	outcome(on("PUT /api/elevations/{id}/approve", person("user", "active"), tgt("user"), {"role": "manager"})) == deny("forbidden")
	outcome(on("PUT /api/elevations/{id}/approve", person("manager", "active"), tgt("user"), {"role": "manager"})) == deny("forbidden")
	outcome(on("PUT /api/elevations/{id}/deny", person("manager", "active"), tgt("user"), {"role": "admin"})) == deny("forbidden")
	outcome(on("PUT /api/elevations/{id}/approve", person("admin", "active"), tgt("user"), {"role": "manager"})) == allowed
	outcome(on("PUT /api/elevations/{id}/approve", person("admin", "active"), tgt("manager"), {"role": "admin"})) == allowed
}
