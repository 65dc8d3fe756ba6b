package gatehouse.authz_test

import data.gatehouse.authz

# --- fixtures ----------------------------------------------------------------

api(route) := {
	"request": {"method": split(route, " ")[0], "path": split(route, " ")[1], "host": "gw.test", "query": "", "headers": {}},
	"subject": null, "model": null, "api_route": route, "target": null, "change": null, "now_ns": 0,
}

backend(method, path) := {
	"request": {"method": method, "path": path, "path_folded": lower(path), "host": "gw.test", "query": "", "headers": {}},
	"subject": null, "model": null, "api_route": null, "target": null, "change": null, "now_ns": 0,
}

person(role, status) := {
	"id": concat("-", [role, status]), "email": "p@example.com", "name": "P",
	"role": role, "status": status, "permissions": [], "auth": "session", "token": null,
}

bearer(role, scope, models) := object.union(person(role, "active"), {
	"auth": "token",
	"token": {"id": "tok-1", "kind": "personal", "scope": scope, "models": models},
})

signed(req, subject) := object.union(req, {"subject": subject})

chat_request(subject, model) := object.union(backend("POST", "/v1/chat/completions"), {"subject": subject, "model": model})

allowed := {"allow": true, "code": ""}

deny(code) := {"allow": false, "code": code}

# outcome drops the reason so tests pin only allow and code.
outcome(req) := object.remove(d, ["reason"]) if {
	d := authz.decision with input as req
}

# --- public routes -------------------------------------------------------------

test_public_routes_allow_anyone if {
	every route in ["GET /api/auth/login", "POST /api/auth/login", "GET /api/auth/callback", "GET /api/health", "GET /api/openapi.json", "GET /.well-known/jwks.json"] {
		outcome(api(route)) == allowed
		outcome(signed(api(route), person("user", "suspended"))) == allowed
	}
}

# --- unauthenticated -----------------------------------------------------------

test_anonymous_api_call_is_unauthenticated if {
	outcome(api("GET /api/users")) == deny("unauthenticated")
	outcome(api("GET /api/auth/me")) == deny("unauthenticated")
}

test_anonymous_backend_request_is_unauthenticated if {
	outcome(backend("GET", "/")) == deny("unauthenticated")
}

test_missing_subject_key_is_unauthenticated if {
	outcome(object.remove(backend("GET", "/"), ["subject"])) == deny("unauthenticated")
}

# --- account status ------------------------------------------------------------

test_pending_user_needs_access if {
	outcome(signed(backend("GET", "/"), person("user", "pending"))) == deny("access_required")
	outcome(signed(api("GET /api/tokens"), person("user", "pending"))) == deny("access_required")
}

test_suspended_user_is_refused if {
	outcome(signed(backend("GET", "/"), person("admin", "suspended"))) == deny("account_suspended")
}

test_denied_user_is_refused if {
	outcome(signed(backend("GET", "/"), person("user", "denied"))) == deny("access_denied")
}

test_unknown_status_is_forbidden if {
	outcome(signed(backend("GET", "/"), person("user", "frozen"))) == deny("forbidden")
}

test_inactive_users_may_use_the_not_active_routes if {
	every status in ["pending", "suspended", "denied"] {
		every route in ["GET /api/auth/me", "POST /api/auth/logout", "POST /api/auth/refresh", "GET /api/auth/request-access", "POST /api/auth/request-access", "GET /gatehouse/request-access"] {
			outcome(signed(api(route), person("user", status))) == allowed
		}
	}
}

test_active_user_cannot_request_access_again if {
	outcome(signed(api("POST /api/auth/request-access"), person("user", "active"))) == deny("forbidden")
	outcome(signed(api("GET /api/auth/request-access"), person("user", "active"))) == allowed
}

# --- permissions ---------------------------------------------------------------

test_role_permissions_inherit if {
	authz.permissions == {"system:access", "models:use", "chat:use", "settings:self", "tokens:personal"} with input as signed(api("GET /api/auth/me"), person("user", "active"))
	count(authz.permissions) == 10 with input as signed(api("GET /api/auth/me"), person("manager", "active"))
	count(authz.permissions) == 14 with input as signed(api("GET /api/auth/me"), person("admin", "active"))
	"tokens:system" in authz.permissions with input as signed(api("GET /api/auth/me"), person("admin", "active"))
}

test_permissions_ignore_the_input_list if {
	subject := object.union(person("user", "active"), {"permissions": ["config:manage"]})
	not "config:manage" in authz.permissions with input as signed(api("GET /api/auth/me"), subject)
	outcome(signed(api("GET /api/audit"), subject)) == deny("forbidden")
}

test_anonymous_has_no_permissions if {
	authz.permissions == set() with input as api("GET /api/auth/me")
}

test_unknown_role_has_no_permissions if {
	outcome(signed(backend("GET", "/"), person("intern", "active"))) == deny("forbidden")
}

test_route_permissions_by_role if {
	outcome(signed(api("GET /api/users"), person("user", "active"))) == deny("forbidden")
	outcome(signed(api("GET /api/users"), person("manager", "active"))) == allowed
	outcome(signed(api("PUT /api/access/{id}/approve"), person("manager", "active"))) == allowed
	outcome(signed(api("GET /api/settings"), person("manager", "active"))) == deny("forbidden")
	outcome(signed(api("GET /api/settings"), person("admin", "active"))) == allowed
	outcome(signed(api("POST /api/keys/rotate"), person("admin", "active"))) == allowed
}

test_unknown_api_route_is_forbidden if {
	outcome(signed(api("GET /api/secrets"), person("admin", "active"))) == deny("forbidden")
}

test_backend_routes_need_their_permission if {
	user := person("user", "active")
	outcome(signed(backend("GET", "/anything"), user)) == allowed
	outcome(chat_request(user, null)) == allowed
	outcome(signed(backend("GET", "/anything"), bearer("user", ["models:use"], []))) == deny("forbidden")
	outcome(signed(backend("POST", "/v1/embeddings"), bearer("user", ["models:use"], []))) == allowed
	outcome(chat_request(bearer("user", ["models:use"], []), null)) == deny("forbidden")
	outcome(chat_request(bearer("user", ["models:use", "chat:use"], []), null)) == allowed
}

test_token_scope_intersects_role if {
	# a token cannot carry more than the subject's role has now
	authz.permissions == {"models:use"} with input as signed(backend("GET", "/"), bearer("user", ["models:use", "config:manage"], []))
	outcome(signed(api("GET /api/audit"), bearer("user", ["config:manage"], []))) == deny("forbidden")
	outcome(signed(api("GET /api/audit"), bearer("admin", ["config:manage"], []))) == allowed
	outcome(signed(api("GET /api/users"), bearer("admin", ["config:manage"], []))) == deny("forbidden")
}

test_token_without_scope_has_no_permissions if {
	outcome(signed(backend("GET", "/"), bearer("admin", null, null))) == deny("forbidden")
}

# --- spec §3: acting on users and granting roles ---------------------------------

on(route, caller, target, change) := object.union(signed(api(route), caller), {"target": target, "change": change})

tgt(role) := {"id": "t", "role": role, "status": "active"}

test_caller_acts_only_below_its_rank if {
	outcome(on("PUT /api/users/{id}/status", person("manager", "active"), tgt("user"), {"status": "suspended"})) == allowed
	outcome(on("PUT /api/users/{id}/status", person("manager", "active"), tgt("manager"), {"status": "suspended"})) == deny("forbidden")
	outcome(on("PUT /api/users/{id}/status", person("manager", "active"), tgt("admin"), {"status": "suspended"})) == deny("forbidden")
}

test_admin_acts_on_everyone if {
	outcome(on("PUT /api/users/{id}/status", person("admin", "active"), tgt("admin"), {"status": "suspended"})) == allowed
	outcome(on("DELETE /api/users/{id}", person("admin", "active"), tgt("admin"), null)) == allowed
}

test_target_without_role_ranks_lowest if {
	outcome(on("PUT /api/access/{id}/approve", person("manager", "active"), {"id": "t", "role": "", "status": "pending"}, {"role": "user"})) == allowed
}

test_target_with_a_deleted_role_ranks_lowest if {
	# Reviewers can still manage a user whose role was removed (spec §3a).
	outcome(on("GET /api/users/{id}", person("admin", "active"), tgt("ghost"), null)) == allowed
	outcome(on("PUT /api/users/{id}/status", person("manager", "active"), tgt("ghost"), {"status": "suspended"})) == allowed
}

test_nobody_grants_a_role_above_their_own if {
	outcome(on("PUT /api/access/{id}/approve", person("manager", "active"), tgt("user"), {"role": "user"})) == allowed
	outcome(on("PUT /api/access/{id}/approve", person("manager", "active"), tgt("user"), {"role": "manager"})) == deny("forbidden")
	outcome(on("PUT /api/access/{id}/approve", person("manager", "active"), tgt("user"), {"role": "admin"})) == deny("forbidden")
	outcome(on("PUT /api/users/{id}/role", person("admin", "active"), tgt("user"), {"role": "admin"})) == allowed
}

test_a_granted_role_gives_only_what_the_caller_holds if {
	roles := object.union(data.gatehouse.config.roles, {"ops": {"rank": 15, "inherits": ["user"], "permissions": ["config:manage"]}})
	outcome(on("PUT /api/access/{id}/approve", person("manager", "active"), tgt("user"), {"role": "ops"})) == deny("forbidden") with data.gatehouse.config.roles as roles
	outcome(on("PUT /api/access/{id}/approve", person("admin", "active"), tgt("user"), {"role": "ops"})) == allowed with data.gatehouse.config.roles as roles
}

test_unknown_role_cannot_be_granted if {
	outcome(on("PUT /api/users/{id}/role", person("admin", "active"), tgt("user"), {"role": "root"})) == deny("forbidden")
}

test_only_admins_change_roles if {
	outcome(on("PUT /api/users/{id}/role", person("manager", "active"), tgt("user"), {"role": "user"})) == deny("forbidden")
}

test_token_kinds_need_their_permission if {
	outcome(on("POST /api/tokens", person("user", "active"), null, {"token_kind": "personal"})) == allowed
	outcome(on("POST /api/tokens", person("user", "active"), null, {"token_kind": "system"})) == deny("forbidden")
	outcome(on("POST /api/tokens", person("admin", "active"), null, {"token_kind": "system"})) == allowed
	outcome(on("POST /api/tokens", person("admin", "active"), null, {"token_kind": "bogus"})) == deny("forbidden")
}

test_tokens_for_another_user_need_tokens_user if {
	outcome(on("POST /api/tokens", person("manager", "active"), tgt("user"), {"token_kind": "user"})) == allowed
	outcome(on("POST /api/tokens", bearer("manager", ["tokens:personal"], []), tgt("user"), null)) == deny("forbidden")
	outcome(on("DELETE /api/tokens/{id}", person("manager", "active"), tgt("user"), null)) == allowed
	outcome(on("DELETE /api/tokens/{id}", person("manager", "active"), tgt("manager"), null)) == deny("forbidden")
}

# Usage: one's own for anyone active; another user's, or everyone's (a target
# without an ID or a role), needs users:activity and the usual rank.
everyone := {"id": "", "role": "", "status": ""}

test_own_usage_for_anyone_active if {
	outcome(on("GET /api/usage", person("user", "active"), null, null)) == allowed
	outcome(on("GET /api/usage/limits", person("user", "active"), null, null)) == allowed
	outcome(on("GET /api/usage", bearer("user", ["models:use"], []), null, null)) == allowed
	outcome(on("GET /api/usage", person("user", "pending"), null, null)) == deny("access_required")
}

test_usage_of_others_needs_users_activity if {
	outcome(on("GET /api/usage", person("user", "active"), tgt("user"), null)) == deny("forbidden")
	outcome(on("GET /api/usage", person("user", "active"), everyone, null)) == deny("forbidden")
	outcome(on("GET /api/usage", person("manager", "active"), tgt("user"), null)) == allowed
	outcome(on("GET /api/usage", person("manager", "active"), everyone, null)) == allowed
	outcome(on("GET /api/usage", person("manager", "active"), tgt("admin"), null)) == deny("forbidden")
	outcome(on("GET /api/usage", bearer("manager", ["models:use"], []), everyone, null)) == deny("forbidden")
	outcome(on("GET /api/usage", person("admin", "active"), tgt("admin"), null)) == allowed
}

# --- models --------------------------------------------------------------------

test_any_model_without_globs if {
	outcome(chat_request(person("user", "active"), "llama3.1:8b")) == allowed
	outcome(chat_request(bearer("user", ["models:use", "chat:use"], []), "anything")) == allowed
}

test_token_models_limit_the_model if {
	tok := bearer("user", ["models:use", "chat:use"], ["llama3*", "qwen2.5:*"])
	outcome(chat_request(tok, "llama3.1:8b")) == allowed
	outcome(chat_request(tok, "qwen2.5:7b")) == allowed
	outcome(chat_request(tok, "gpt-4o")) == deny("model_not_allowed")
}

test_role_models_limit_the_model if {
	roles := object.union(data.gatehouse.config.roles, {"user": object.union(data.gatehouse.config.roles.user, {"models": ["small-*"]})})
	outcome(chat_request(person("user", "active"), "small-1")) == allowed with data.gatehouse.config.roles as roles
	outcome(chat_request(person("user", "active"), "big-1")) == deny("model_not_allowed") with data.gatehouse.config.roles as roles

	# model globs are not inherited
	outcome(chat_request(person("manager", "active"), "big-1")) == allowed with data.gatehouse.config.roles as roles

	# token and role globs must both match
	tok := bearer("user", ["models:use", "chat:use"], ["*-1"])
	outcome(chat_request(tok, "small-1")) == allowed with data.gatehouse.config.roles as roles
	outcome(chat_request(tok, "big-1")) == deny("model_not_allowed") with data.gatehouse.config.roles as roles
}

test_permission_is_checked_before_the_model if {
	outcome(chat_request(bearer("user", ["chat:use"], ["other"]), "llama3")) == deny("forbidden")
}

# --- extensions ------------------------------------------------------------------

test_extra_deny_rules_forbid_with_their_reason if {
	d := authz.decision with input as signed(backend("GET", "/"), person("admin", "active"))
		with data.gatehouse.ext.deny as {"maintenance window", "b-rule"}
	d == {"allow": false, "code": "forbidden", "reason": "b-rule; maintenance window"}
	a := authz.decision with input as signed(api("GET /api/users"), person("admin", "active"))
		with data.gatehouse.ext.deny as {"maintenance window"}
	a == {"allow": false, "code": "forbidden", "reason": "maintenance window"}
}

test_extra_deny_rules_do_not_block_public_routes if {
	outcome(api("GET /api/health")) == allowed with data.gatehouse.ext.deny as {"maintenance window"}
}

test_status_codes_win_over_extra_deny_rules if {
	outcome(signed(backend("GET", "/"), person("user", "pending"))) == deny("access_required") with data.gatehouse.ext.deny as {"x"}
}

test_custom_role_from_data if {
	roles := object.union(data.gatehouse.config.roles, {"analyst": {"rank": 15, "inherits": ["user"], "permissions": ["usage:view"]}})
	"usage:view" in authz.permissions with input as signed(backend("GET", "/"), person("analyst", "active")) with data.gatehouse.config.roles as roles
	"chat:use" in authz.permissions with input as signed(backend("GET", "/"), person("analyst", "active")) with data.gatehouse.config.roles as roles
	outcome(on("GET /api/users/{id}", person("admin", "active"), tgt("analyst"), null)) == allowed with data.gatehouse.config.roles as roles
}

test_backend_paths_never_match_api_routes if {
	# Ollama serves its own /api/...; only api_route names Gatehouse's API.
	outcome(backend("GET", "/api/health")) == deny("unauthenticated")
	outcome(signed(backend("GET", "/api/auth/me"), person("user", "pending"))) == deny("access_required")
	outcome(chat_request(bearer("user", ["models:use"], []), null)) == deny("forbidden")
	outcome(signed(backend("POST", "/api/chat"), bearer("user", ["models:use", "chat:use"], []))) == allowed
}

# --- the route table (spec §6a) --------------------------------------------------

route_of(method, path) := kind if {
	kind := authz.route_kind with input as backend(method, path)
}

test_routes_match_on_the_folded_path if {
	route_of("POST", "/V1/CHAT/COMPLETIONS") == "model"
	authz.route.chat with input as backend("POST", "/V1/Chat/Completions")
	route_of("GET", "/V1/MODELS") == "listing"
	route_of("GET", "/API/TAGS") == "listing"
}

test_route_kinds_cover_the_backends if {
	route_of("POST", "/v1/images/generations") == "model"
	route_of("POST", "/v1/audio/transcriptions") == "model"
	route_of("POST", "/v1/messages") == "model"
	route_of("POST", "/v2/rerank") == "model"
	route_of("GET", "/v1/realtime") == "model"
	route_of("POST", "/api/show") == "model"
	route_of("GET", "/api/ps") == "listing"
	route_of("GET", "/v1/models/org/secret-model") == "model_info"
	route_of("POST", "/api/pull") == "model_admin"
	route_of("DELETE", "/api/delete") == "model_admin"
	route_of("HEAD", "/api/blobs/sha256-x") == "model_admin"
	route_of("POST", "/v1/unload_lora_adapter") == "model_admin"
	route_of("GET", "/v1/batches/b1") == "batch"
	route_of("DELETE", "/v1/files/f1") == "batch"
	route_of("POST", "/v1/fine_tuning/jobs") == "batch"
	route_of("GET", "/") == "other"
	route_of("GET", "/v1/chat/completions") == "other"
}

test_longest_pattern_wins if {
	routes := object.union(data.gatehouse.config.routes, {"* /v1/models/special/**": {"kind": "model_admin"}})
	authz.route_kind == "model_admin" with input as backend("GET", "/v1/models/special/x") with data.gatehouse.config.routes as routes
	authz.route_kind == "model_info" with input as backend("GET", "/v1/models/other") with data.gatehouse.config.routes as routes
}

test_model_info_hides_forbidden_models if {
	info := object.union(backend("GET", "/v1/models/gpt-4"), {"subject": bearer("user", ["models:use"], ["llama3*"]), "model": "gpt-4"})
	outcome(info) == deny("model_not_found")
	outcome(object.union(info, {"model": "llama3"})) == allowed
}

test_model_admin_needs_providers_manage if {
	outcome(signed(backend("POST", "/api/pull"), person("user", "active"))) == deny("forbidden")
	outcome(signed(backend("POST", "/api/pull"), person("manager", "active"))) == deny("forbidden")
	outcome(signed(backend("POST", "/api/pull"), person("admin", "active"))) == allowed
	outcome(signed(backend("POST", "/API/PULL"), person("user", "active"))) == deny("forbidden")
}

test_batches_need_batches_use if {
	outcome(signed(backend("POST", "/v1/batches"), person("user", "active"))) == deny("forbidden")
	outcome(signed(backend("POST", "/v1/batches"), person("manager", "active"))) == allowed
}

test_added_model_route_needs_models_use if {
	routes := object.union(data.gatehouse.config.routes, {"POST /custom/generate": {"kind": "model"}})
	req := object.union(backend("POST", "/custom/generate"), {"model": "llama3"})
	outcome(signed(req, bearer("user", ["system:access"], []))) == deny("forbidden") with data.gatehouse.config.routes as routes
	outcome(signed(req, bearer("user", ["models:use"], []))) == allowed with data.gatehouse.config.routes as routes
}

# --- step-up -------------------------------------------------------------------

step_up_rules := [
	{"name": "admin-api", "permissions": ["config:manage"], "amr": ["mfa"], "max_age_s": 900},
	{"name": "chat", "routes": ["POST /v1/chat/*"], "acr": ["urn:gh:mfa"]},
]

decide_with_step_up(req) := d if {
	d := authz.decision with input as req with data.gatehouse.config.step_up as step_up_rules
}

test_a_permission_rule_rides_on_the_allowed_decision if {
	d := decide_with_step_up(signed(api("PUT /api/users/{id}/role"), person("admin", "active")))
	d.allow
	d.step_up.name == "admin-api"
}

test_a_route_rule_matches_the_backend_path if {
	d := decide_with_step_up(chat_request(person("user", "active"), "llama3"))
	d.allow
	d.step_up.name == "chat"
}

test_a_request_no_rule_covers_has_no_step_up if {
	d := decide_with_step_up(signed(api("GET /api/auth/me"), person("user", "active")))
	d.allow
	not d.step_up
}

test_a_token_is_not_asked_to_step_up if {
	d := decide_with_step_up(object.union(chat_request(bearer("user", ["models:use", "chat:use"], ["*"]), "llama3"), {}))
	d.allow
	not d.step_up
}

test_a_refusal_carries_no_step_up if {
	d := decide_with_step_up(signed(api("PUT /api/users/{id}/role"), person("user", "active")))
	not d.allow
	not d.step_up
}

# --- the engine's role closure ---------------------------------------------------

test_a_role_closure_the_engine_worked_out_is_read_as_is if {
	perms := authz.permissions with input as signed(backend("GET", "/"), person("user", "active"))
		with data.gatehouse.derived.role_permissions as {"user": {"models:use", "only:this"}}
	perms == {"models:use", "only:this"}
}

test_a_role_missing_from_the_closure_walks_the_graph if {
	perms := authz.permissions with input as signed(backend("GET", "/"), person("manager", "active"))
		with data.gatehouse.derived.role_permissions as {"user": {"only:this"}}
	"chat:use" in perms
	"users:manage" in perms
}

# --- the route the engine matched -------------------------------------------------

test_a_route_the_engine_matched_is_read_as_is if {
	# The engine hands the key it matched in input.route; "" means none.
	chat := object.union(backend("POST", "/anything"), {"route": "POST /v1/chat/completions", "model": "llama3"})
	authz.route_kind == "model" with input as chat
	outcome(signed(chat, bearer("user", ["system:access"], []))) == deny("forbidden")
	outcome(signed(chat, bearer("user", ["models:use", "chat:use"], []))) == allowed
	unrouted := object.union(backend("POST", "/v1/chat/completions"), {"route": ""})
	authz.route_kind == "other" with input as unrouted
	outcome(signed(unrouted, bearer("user", ["system:access"], []))) == allowed
}
