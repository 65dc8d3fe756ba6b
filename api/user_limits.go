package api

import (
	"net/http"

	"github.com/gatehouse/gatehouse/quota"
)

// setLimits is PUT /api/users/{id}/limits: the body is the user's own
// limits, {} clears them.
func (a *API) setLimits(w http.ResponseWriter, r *http.Request, route string) error {
	var in quota.Limits
	if err := decodeJSON(w, r, &in, false); err != nil {
		return err
	}
	u, err := a.acts.SetUserLimits(r, route, in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}
