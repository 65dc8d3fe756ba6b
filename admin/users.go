package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, route string) {
	if _, ok := a.authorize(w, r, route, nil, nil); !ok {
		return
	}
	q := r.URL.Query()
	f := store.UserFilter{Status: q.Get("status"), Role: q.Get("role"), Query: q.Get("q"), Cursor: q.Get("cursor")}
	switch f.Status {
	case "", store.StatusPending, store.StatusActive, store.StatusSuspended, store.StatusDenied:
	default:
		writeProblem(w, validation("status must be pending, active, suspended or denied"))
		return
	}
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		writeProblem(w, validation(err.Error()))
		return
	}
	f.Limit = limit
	users, next, err := a.rt.Store.ListUsers(r.Context(), f)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if users == nil {
		users = []store.User{}
	}
	var cursor any
	if next != "" {
		cursor = next
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": users, "next_cursor": cursor})
}

func parseLimit(v string) (int, error) {
	if v == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 200 {
		return 0, errors.New("limit must be a number from 1 to 200")
	}
	return n, nil
}

// loadTarget authorizes the route, then loads the user it acts on and asks the
// policy again with that user as the target (and the change, if any). The
// first check keeps callers without the permission from probing which IDs exist.
func (a *API) loadTarget(w http.ResponseWriter, r *http.Request, route string, change *policy.Change) (*core.Subject, *store.User, bool) {
	if _, ok := a.authorize(w, r, route, nil, nil); !ok {
		return nil, nil, false
	}
	target, err := a.rt.Store.GetUser(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, notFound("user"))
		return nil, nil, false
	}
	if err != nil {
		a.writeError(w, r, err)
		return nil, nil, false
	}
	sub, ok := a.authorize(w, r, route, &policy.Target{ID: target.ID, Role: target.Role, Status: target.Status}, change)
	return sub, &target, ok
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request, route string) {
	if _, ok := a.authorize(w, r, route, nil, nil); !ok {
		return
	}
	u, err := a.rt.Store.GetUser(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, notFound("user"))
		return
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func (a *API) setRole(w http.ResponseWriter, r *http.Request, route string) {
	var in struct {
		Role string `json:"role"`
	}
	if err := decodeJSON(w, r, &in, false); err != nil {
		a.writeError(w, r, err)
		return
	}
	u, err := a.setUserRole(w, r, route, in.Role)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if u != nil {
		writeJSON(w, http.StatusOK, u)
	}
}

// setUserRole checks and applies a role change of the user the path names.
// A nil user with a nil error means the policy refused and the response is written.
func (a *API) setUserRole(w http.ResponseWriter, r *http.Request, route, role string) (*store.User, error) {
	if !a.rt.Policy().RoleExists(role) {
		return nil, validation(fmt.Sprintf("unknown role %q", role))
	}
	sub, target, ok := a.loadTarget(w, r, route, &policy.Change{Role: role})
	if !ok {
		return nil, nil
	}
	u, err := a.rt.SetUserRole(r.Context(), r, sub, *target, role)
	if err != nil {
		return nil, userWriteError(err)
	}
	return &u, nil
}

func (a *API) setStatus(w http.ResponseWriter, r *http.Request, route string) {
	var in struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	if err := decodeJSON(w, r, &in, false); err != nil {
		a.writeError(w, r, err)
		return
	}
	u, err := a.setUserStatus(w, r, route, in.Status, in.Reason)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if u != nil {
		writeJSON(w, http.StatusOK, u)
	}
}

// setUserStatus checks and applies a status change of the user the path
// names. A nil user with a nil error means the policy refused and the
// response is written.
func (a *API) setUserStatus(w http.ResponseWriter, r *http.Request, route, status, reason string) (*store.User, error) {
	if status != store.StatusActive && status != store.StatusSuspended {
		return nil, validation(`status must be "active" or "suspended"`)
	}
	if utf8.RuneCountInString(reason) > maxCommentChars {
		return nil, validation(fmt.Sprintf("reason must be at most %d characters", maxCommentChars))
	}
	sub, target, ok := a.loadTarget(w, r, route, &policy.Change{Status: status})
	if !ok {
		return nil, nil
	}
	u, err := a.rt.SetUserStatus(r.Context(), r, sub, *target, status, reason)
	if err != nil {
		return nil, userWriteError(err)
	}
	return &u, nil
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, route string) {
	deleted, err := a.removeUser(w, r, route)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if deleted {
		w.WriteHeader(http.StatusNoContent)
	}
}

// removeUser checks and deletes the user the path names. False with a nil
// error means the policy refused and the response is written.
func (a *API) removeUser(w http.ResponseWriter, r *http.Request, route string) (bool, error) {
	sub, target, ok := a.loadTarget(w, r, route, nil)
	if !ok {
		return false, nil
	}
	if target.ID == sub.User.ID {
		return false, conflict("self", "you cannot delete yourself")
	}
	if err := a.rt.DeleteUser(r.Context(), r, sub, *target); err != nil {
		return false, userWriteError(err)
	}
	return true, nil
}

// userWriteError maps the store's refusals of user changes to problems.
func userWriteError(err error) error {
	switch {
	case errors.Is(err, store.ErrConflict):
		return conflict("last_admin", "this change would leave no active admin")
	case errors.Is(err, store.ErrNotFound):
		return notFound("user")
	}
	return err
}

func (a *API) userActivity(w http.ResponseWriter, r *http.Request, route string) {
	if _, _, ok := a.loadTarget(w, r, route, nil); !ok {
		return
	}
	a.listEvents(w, r, r.PathValue("id"))
}

func (a *API) audit(w http.ResponseWriter, r *http.Request, route string) {
	if _, ok := a.authorize(w, r, route, nil, nil); !ok {
		return
	}
	a.listEvents(w, r, r.URL.Query().Get("user_id"))
}

// listEvents answers {"events":[…],"next_cursor"} newest first; ?type= filters,
// ?before= is the cursor of the previous page.
func (a *API) listEvents(w http.ResponseWriter, r *http.Request, userID string) {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		writeProblem(w, validation(err.Error()))
		return
	}
	var before int64
	if v := q.Get("before"); v != "" {
		before, err = strconv.ParseInt(v, 10, 64)
		if err != nil || before <= 0 {
			writeProblem(w, validation("before must be an event id from a previous page"))
			return
		}
	}
	events, err := a.rt.Store.ListAudit(r.Context(), store.AuditFilter{UserID: userID, Type: q.Get("type"), Before: before, Limit: limit})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if events == nil {
		events = []store.AuditEvent{}
	}
	var next any
	if len(events) == limit {
		next = strconv.FormatInt(events[len(events)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "next_cursor": next})
}

func (a *API) getSettings(w http.ResponseWriter, r *http.Request, route string) {
	if _, ok := a.authorize(w, r, route, nil, nil); !ok {
		return
	}
	s, version, err := a.rt.CurrentSettings(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(version))
	writeJSON(w, http.StatusOK, s)
}

// putSettings replaces the whole settings document. It needs If-Match with
// the ETag of the settings it was based on, so two admins saving at once
// never lose a change: the second gets 412 and reloads.
func (a *API) putSettings(w http.ResponseWriter, r *http.Request, route string) {
	sub, ok := a.authorize(w, r, route, nil, nil)
	if !ok {
		return
	}
	ifMatch := r.Header.Get("If-Match")
	if ifMatch == "" {
		writeProblem(w, problem(http.StatusPreconditionRequired, "precondition_required", "Precondition required",
			"send If-Match with the ETag of GET /api/settings, so a concurrent change is not overwritten"))
		return
	}
	var in struct {
		Roles *map[string]core.RoleSetting `json:"roles"`
	}
	if err := decodeJSON(w, r, &in, false); err != nil {
		a.writeError(w, r, err)
		return
	}
	if in.Roles == nil || *in.Roles == nil {
		writeProblem(w, validation(`the body must be an object with "roles" (an object of roles; {} removes every custom role)`))
		return
	}
	s := core.Settings{Roles: *in.Roles}
	version, err := a.rt.ReplaceSettings(r.Context(), r, sub, s, unquoteETag(ifMatch))
	a.writeSettings(w, r, s, version, err)
}

// putRole changes one role, keeping every other change made meanwhile.
func (a *API) putRole(w http.ResponseWriter, r *http.Request, route string) {
	sub, ok := a.authorize(w, r, route, nil, nil)
	if !ok {
		return
	}
	var role core.RoleSetting
	if err := decodeJSON(w, r, &role, false); err != nil {
		a.writeError(w, r, err)
		return
	}
	s, version, err := a.rt.PutRole(r.Context(), r, sub, r.PathValue("name"), role)
	a.writeSettings(w, r, s, version, err)
}

func (a *API) deleteRole(w http.ResponseWriter, r *http.Request, route string) {
	sub, ok := a.authorize(w, r, route, nil, nil)
	if !ok {
		return
	}
	s, version, err := a.rt.DeleteRole(r.Context(), r, sub, r.PathValue("name"))
	a.writeSettings(w, r, s, version, err)
}

// writeSettings answers a settings change: the document with its new ETag,
// or the change's refusal.
func (a *API) writeSettings(w http.ResponseWriter, r *http.Request, s core.Settings, version string, err error) {
	if err != nil {
		a.writeError(w, r, settingsError(err))
		return
	}
	w.Header().Set("ETag", etag(version))
	writeJSON(w, http.StatusOK, s)
}

// settingsError maps the runtime's refusals of a settings change to problems.
func settingsError(err error) error {
	switch {
	case errors.Is(err, core.ErrInvalidSettings):
		return validation(err.Error())
	case errors.Is(err, core.ErrSettingsConflict):
		return problem(http.StatusPreconditionFailed, "settings_conflict", "Settings changed",
			"the settings changed since they were read; reload them and apply the change again")
	case errors.Is(err, core.ErrRoleInUse):
		return conflict("role_in_use", err.Error())
	case errors.Is(err, core.ErrUnknownRole):
		return notFound("role")
	}
	return err
}

func etag(version string) string { return `"` + version + `"` }

func unquoteETag(v string) string {
	v = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), "W/"))
	return strings.Trim(v, `"`)
}
