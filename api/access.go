package api

import (
	"net/http"

	"github.com/gatehouse/gatehouse/actions"
)

func (a *API) getOwnRequest(w http.ResponseWriter, r *http.Request, route string) error {
	req, err := a.acts.OwnRequest(r, route)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, req)
	return nil
}

func (a *API) postOwnRequest(w http.ResponseWriter, r *http.Request, route string) error {
	if _, err := a.acts.MayRequestAccess(r, route); err != nil {
		return err
	}
	var in actions.AccessRequest
	if err := decodeJSON(w, r, &in, false); err != nil {
		return err
	}
	req, err := a.acts.RequestAccess(r, route, in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", a.apiPath("/api/auth/request-access"))
	writeJSON(w, http.StatusCreated, req)
	return nil
}

func (a *API) listRequests(w http.ResponseWriter, r *http.Request, route string) error {
	reqs, err := a.acts.AccessRequests(r, route, r.URL.Query().Get("status"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": reqs})
	return nil
}

// review serves PUT /api/access/{id}/approve (approve) and /deny.
func (a *API) review(approve bool) handler {
	return func(w http.ResponseWriter, r *http.Request, route string) error {
		var in actions.Review
		if err := decodeJSON(w, r, &in, true); err != nil {
			return err
		}
		req, err := a.acts.DecideAccessRequest(r, route, r.PathValue("id"), approve, in)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, req)
		return nil
	}
}
