package api

import (
	"net/http"

	"github.com/gatehouse/gatehouse/actions"
)

// invokeBreakGlass is POST /api/break-glass: {reason, code}.
func (a *API) invokeBreakGlass(w http.ResponseWriter, r *http.Request, route string) error {
	var in actions.BreakGlassInvocation
	if err := decodeJSON(w, r, &in, false); err != nil {
		return err
	}
	g, err := a.acts.InvokeBreakGlass(r, route, in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

// listBreakGlass is GET /api/break-glass: the grants not acknowledged yet.
func (a *API) listBreakGlass(w http.ResponseWriter, r *http.Request, route string) error {
	grants, err := a.acts.BreakGlassGrants(r, route)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"grants": grants})
	return nil
}

// acknowledgeBreakGlass is POST /api/break-glass/{id}/acknowledge.
func (a *API) acknowledgeBreakGlass(w http.ResponseWriter, r *http.Request, route string) error {
	g, err := a.acts.AcknowledgeBreakGlass(r, route, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}
