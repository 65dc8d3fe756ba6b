package api

import (
	"net/http"

	"github.com/gatehouse/gatehouse/actions"
)

func (a *API) postElevation(w http.ResponseWriter, r *http.Request, route string) error {
	// The policy first, so that a stranger learns nothing from the body's validation.
	if _, err := a.acts.Authorize(r, route, nil, nil); err != nil {
		return err
	}
	var in actions.ElevationRequest
	if err := decodeJSON(w, r, &in, false); err != nil {
		return err
	}
	e, err := a.acts.RequestElevation(r, route, in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", a.apiPath("/api/elevations?user_id="+e.User.ID))
	writeJSON(w, http.StatusCreated, e)
	return nil
}

func (a *API) listElevations(w http.ResponseWriter, r *http.Request, route string) error {
	list, err := a.acts.Elevations(r, route, r.URL.Query())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"elevations": list})
	return nil
}

// reviewElevation serves PUT /api/elevations/{id}/approve (approve) and /deny.
func (a *API) reviewElevation(approve bool) handler {
	return func(w http.ResponseWriter, r *http.Request, route string) error {
		var in actions.ElevationReview
		if err := decodeJSON(w, r, &in, true); err != nil {
			return err
		}
		e, err := a.acts.DecideElevation(r, route, r.PathValue("id"), approve, in)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, e)
		return nil
	}
}
