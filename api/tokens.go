package api

import (
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/actions"
)

func (a *API) createToken(w http.ResponseWriter, r *http.Request, route string) error {
	var in actions.TokenRequest
	if err := decodeJSON(w, r, &in, false); err != nil {
		return err
	}
	tok, err := a.acts.CreateToken(r, route, in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", a.apiPath("/api/tokens/")+tok.ID)
	writeJSON(w, http.StatusCreated, tok)
	return nil
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request, route string) error {
	q := r.URL.Query()
	list, err := a.acts.Tokens(r, route, q.Get("kind"), q.Get("user_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": list})
	return nil
}

func (a *API) deleteToken(w http.ResponseWriter, r *http.Request, route string) error {
	if err := a.acts.RevokeToken(r, route, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) rotateKeys(w http.ResponseWriter, r *http.Request, route string) error {
	sub, err := a.acts.Authorize(r, route, nil, nil)
	if err != nil {
		return err
	}
	kid, err := a.rt.RotateKeys(r.Context(), r, sub)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"kid": kid, "rotated_at": time.Now().UTC()})
	return nil
}
