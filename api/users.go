package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gatehouse/gatehouse/refusal"
	"github.com/gatehouse/gatehouse/store"
)

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, route string) error {
	if _, err := a.acts.Authorize(r, route, nil, nil); err != nil {
		return err
	}
	q := r.URL.Query()
	f := store.UserFilter{Status: q.Get("status"), Role: q.Get("role"), Query: q.Get("q"), Cursor: q.Get("cursor")}
	switch f.Status {
	case "", store.StatusPending, store.StatusActive, store.StatusSuspended, store.StatusDenied:
	default:
		return refusal.Validation("status must be pending, active, suspended or denied")
	}
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	f.Limit = limit
	users, next, err := a.rt.Store.ListUsers(r.Context(), f)
	if err != nil {
		return err
	}
	if users == nil {
		users = []store.User{}
	}
	var cursor any
	if next != "" {
		cursor = next
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": users, "next_cursor": cursor})
	return nil
}

func parseLimit(v string) (int, error) {
	if v == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 200 {
		return 0, refusal.Validation("limit must be a number from 1 to 200")
	}
	return n, nil
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request, route string) error {
	if _, err := a.acts.Authorize(r, route, nil, nil); err != nil {
		return err
	}
	u, err := a.rt.Store.GetUser(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return refusal.NotFound("user")
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (a *API) setRole(w http.ResponseWriter, r *http.Request, route string) error {
	var in struct {
		Role string `json:"role"`
	}
	if err := decodeJSON(w, r, &in, false); err != nil {
		return err
	}
	u, err := a.acts.SetUserRole(r, route, in.Role)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (a *API) setStatus(w http.ResponseWriter, r *http.Request, route string) error {
	var in struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	if err := decodeJSON(w, r, &in, false); err != nil {
		return err
	}
	u, err := a.acts.SetUserStatus(r, route, in.Status, in.Reason)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, route string) error {
	if err := a.acts.DeleteUser(r, route); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) userActivity(w http.ResponseWriter, r *http.Request, route string) error {
	if _, _, err := a.acts.Target(r, route, nil); err != nil {
		return err
	}
	return a.listEvents(w, r, r.PathValue("id"))
}

func (a *API) audit(w http.ResponseWriter, r *http.Request, route string) error {
	if _, err := a.acts.Authorize(r, route, nil, nil); err != nil {
		return err
	}
	return a.listEvents(w, r, r.URL.Query().Get("user_id"))
}

// listEvents answers {"events":[…],"next_cursor"} newest first; ?type= filters,
// ?before= is the cursor of the previous page.
func (a *API) listEvents(w http.ResponseWriter, r *http.Request, userID string) error {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	var before int64
	if v := q.Get("before"); v != "" {
		before, err = strconv.ParseInt(v, 10, 64)
		if err != nil || before <= 0 {
			return refusal.Validation("before must be an event id from a previous page")
		}
	}
	events, err := a.rt.Store.ListAudit(r.Context(), store.AuditFilter{UserID: userID, Type: q.Get("type"), Before: before, Limit: limit})
	if err != nil {
		return err
	}
	if events == nil {
		events = []store.AuditEvent{}
	}
	var next any
	if len(events) == limit {
		next = strconv.FormatInt(events[len(events)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "next_cursor": next})
	return nil
}
