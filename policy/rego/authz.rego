# Gatehouse default authorization policy (spec sections 3-6).
#
# Rules only: roles, permissions and routes are data under data.gatehouse.config
# (data.json), so settings can add roles or routes without touching this file.
package gatehouse.authz

cfg := data.gatehouse.config

default decision := {"allow": false, "code": "forbidden", "reason": "no rule allows this request"}

default permissions := set()

# The order of each else chain is the order of spec §6: who you are, then
# your account status, then what you may do, then which model. Gatehouse's
# API and the backend have a chain each, so that a decision evaluates only
# the conditions that can apply to it (a backend request acts on no target
# and changes nothing). The extension rules (data.gatehouse.ext.deny) come
# last, just before the allow: the engine relies on that to cache the rest
# of a backend decision when only they read what varies per request.
decision := api_decision if api_route

else := backend_decision

api_decision := allowed("public route") if {
	public_route
} else := denied("unauthenticated", "sign-in required") if {
	anonymous
} else := denied(status_code, sprintf("account is %s", [status])) if {
	status != "active"
	not inactive_route
} else := denied("forbidden", "only users without access may request it") if {
	status == "active"
	api_route in cfg.inactive_only_routes
} else := denied("forbidden", "unknown API route") if {
	not inactive_route
	not cfg.api_routes[api_route]
} else := denied("forbidden", sprintf("missing permission %s", [concat(" or ", required_any)])) if {
	not inactive_route
	count(required_any) > 0
	count(required_any & permissions) == 0
} else := denied("forbidden", "target user is not below the caller's role") if {
	input.target != null
	not may_act_on_target
} else := denied("forbidden", sprintf("missing permission %s to act on another user", [concat(" or ", target_required)])) if {
	input.target != null
	count(target_required) > 0
	count(target_required & permissions) == 0
} else := denied("forbidden", "cannot grant a role above the caller's own") if {
	input.change.role != ""
	not may_grant_role
} else := denied("forbidden", "token kind not allowed") if {
	input.change.token_kind != ""
	not token_kind_allowed
} else := denied("forbidden", concat("; ", sort(data.gatehouse.ext.deny))) if {
	count(data.gatehouse.ext.deny) > 0
} else := allowed("allowed")

backend_decision := denied("unauthenticated", "sign-in required") if {
	anonymous
} else := denied(status_code, sprintf("account is %s", [status])) if {
	status != "active"
} else := denied("forbidden", sprintf("missing permission %s", [concat(", ", required_all - permissions)])) if {
	count(required_all - permissions) > 0
} else := denied("model_not_found", sprintf("model %s does not exist or is not available to the caller", [input.model])) if {
	route_kind == "model_info"
	not model_allowed
} else := denied("model_not_allowed", sprintf("model %s is not allowed", [input.model])) if {
	is_string(input.model)
	not model_allowed
} else := denied("forbidden", concat("; ", sort(data.gatehouse.ext.deny))) if {
	count(data.gatehouse.ext.deny) > 0
} else := allowed("allowed")

allowed(reason) := object.union({"allow": true, "code": "", "reason": reason}, step_up_field)

denied(code, reason) := {"allow": false, "code": code, "reason": reason}

# --- step-up (spec §10) ----------------------------------------------------
#
# data.gatehouse.config.step_up lists authentication contexts that routes or
# permissions require of a signed-in session: {"name", "routes" (globs over
# "METHOD /path", the API route pattern for API routes), "permissions" (any
# one the request needs), "acr" (any one), "amr" (every one), "max_age_s"}.
# An allowed decision carries the first rule that applies as "step_up"; the
# runtime compares it with the session's authentication (its acr, amr and
# auth_time) and the clock, so decisions stay cacheable.

default step_up_field := {}

step_up_field := {"step_up": step_up_rules[min(step_up_matches)]} if input.subject.auth == "session"

default step_up_rules := []

step_up_rules := cfg.step_up

step_up_matches contains i if {
	input.subject.auth == "session"
	some i, rule in step_up_rules
	step_up_applies(rule)
}

step_up_applies(rule) if {
	some pattern in object.get(rule, "routes", [])
	glob.match(pattern, [], step_up_route)
}

step_up_applies(rule) if {
	some p in object.get(rule, "permissions", [])
	p in (required_any | required_all)
}

step_up_route := api_route

step_up_route := concat(" ", [input.request.method, input.request.path_folded]) if not api_route

# --- request -------------------------------------------------------------

# API routes arrive as their pattern ("GET /api/users/{id}"), backend
# requests as method and path. The two never share a list: a backend's own
# /api/... paths (Ollama's) must not match Gatehouse's API routes.
api_route := input.api_route if is_string(input.api_route)

public_route if api_route in cfg.public_routes

inactive_route if api_route in cfg.inactive_routes

# --- subject -------------------------------------------------------------

anonymous if input.subject == null

anonymous if not input.subject

status := object.get(input.subject, "status", "")

status_codes := {
	"pending": "access_required",
	"suspended": "account_suspended",
	"denied": "access_denied",
}

status_code := object.get(status_codes, status, "forbidden")

role := input.subject.role

role_graph[name] := object.get(r, "inherits", []) if some name, r in cfg.roles

# Inheritance is transitive. The engine works each role's closure out once
# (data.gatehouse.derived.role_permissions); a role it does not know (one a
# test adds with `with`) walks the graph, which tolerates cycles.
role_permissions(name) := data.gatehouse.derived.role_permissions[name] if {
	is_set(data.gatehouse.derived.role_permissions[name])
} else := {p |
	some r in graph.reachable(role_graph, {name})
	some p in cfg.roles[r].permissions
}

# A token never carries more than its scope, and never more than the
# subject's role has now: a demoted user's tokens lose power at once.
permissions := role_permissions(role) if {
	input.subject.auth != "token"
} else := {p |
	some p in input.subject.token.scope
	role_permissions(role)[p]
}

rank(name) := cfg.roles[name].rank

# --- what the request needs ----------------------------------------------

# API routes: any one of the listed permissions.
required_any := {p | some p in cfg.api_routes[api_route]}

# Backend routes: every permission of the route's kind, and chat:use on chat routes.
required_all := set() if {
	api_route
} else := backend_required

backend_required contains p if some p in cfg.route_permissions[route_kind]

backend_required contains "chat:use" if route.chat

# --- backend routes: one table, data.gatehouse.config.routes (spec §6a) -----
#
# Keys are "METHOD /path" on the cleaned, lower-case path (path_folded); a
# method of "*" matches any, a path may be a glob with "/" as separator.
# Precedence: the exact key, then "* path", then the matching pattern with the
# longest path (a named method before "*", then the key). The guard reads the
# same table (policy.RouteTable) and must classify every request the same way.

# The engine matches the table in Go (policy.RouteTable, the same
# precedence) and hands the key in as input.route, "" when no route matches.
# An input without it (a test's, or one whose table is replaced with `with`)
# is matched by the rules below.
route_key := input.route if {
	not api_route
	route_given
	input.route != ""
} else := matched_route_key if {
	not api_route
	not route_given
}

# A helper rule: `not is_string(input.route)` is undefined, not true, when
# input.route is absent.
route_given if is_string(input.route)

matched_route_key := k if {
	k := concat(" ", [input.request.method, input.request.path_folded])
	cfg.routes[k]
} else := k if {
	k := concat(" ", ["*", input.request.path_folded])
	cfg.routes[k]
} else := min(route_pattern_matches)[2] if {
	count(route_pattern_matches) > 0
}

route_pattern_matches contains [0 - count(path), method == "*", k] if {
	some k, _ in cfg.routes
	contains(k, "*")
	[method, path] := split(k, " ")
	contains(path, "*")
	route_method_matches(method)
	glob.match(path, ["/"], input.request.path_folded)
}

route_method_matches("*")

route_method_matches(method) if method == input.request.method

default route := {}

route := cfg.routes[route_key]

default route_kind := "other"

route_kind := route.kind

target_required := {p | some p in cfg.target_permissions[api_route]}

# --- spec §3: acting on users and granting roles -------------------------

# A user without a role yet (a pending requester), or whose role no longer
# exists, ranks below everyone: reviewers can still manage them.
target_rank := rank(input.target.role) if {
	object.get(input.target, "role", "") != ""
} else := 0

may_act_on_target if target_rank < rank(role)

may_act_on_target if {
	cfg.roles[role].acts_on_peers
	target_rank <= rank(role)
}

# A role is granted only by a caller ranked above it who holds every
# permission it gives. A role that acts on its peers (admin) defines the roles
# and grants any up to its own rank, custom permissions included.
may_grant_role if {
	rank(input.change.role) < rank(role)
	count(role_permissions(input.change.role) - permissions) == 0
}

may_grant_role if {
	cfg.roles[role].acts_on_peers
	rank(input.change.role) <= rank(role)
}

# A helper rule, not an inline `not x in y`: when x is undefined, `not x in y`
# is undefined rather than true, and an unknown token kind would pass.
token_kind_allowed if cfg.token_kind_permissions[input.change.token_kind] in permissions

# --- models ----------------------------------------------------------------

model_allowed if {
	token_allows_model
	role_allows_model
}

# Absent or empty models on a token means every model the role may use (spec §5).
token_models := [m | some m in input.subject.token.models] if {
	input.subject.auth == "token"
} else := []

token_allows_model if count(token_models) == 0

token_allows_model if {
	some pattern in token_models
	model_matches(pattern)
}

# Model globs are per role and not inherited; none means every model.
role_models := [m | some m in cfg.roles[role].models]

role_allows_model if count(role_models) == 0

role_allows_model if {
	some pattern in role_models
	model_matches(pattern)
}

# No delimiters: with [] glob.match splits at ".", so "llama3*" would miss
# "llama3.1:8b" and "gpt-4*" would miss "gpt-4.1".
model_matches(pattern) if glob.match(pattern, null, input.model)
