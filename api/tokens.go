package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/actions"
	"github.com/gatehouse/gatehouse/keys"
	"github.com/gatehouse/gatehouse/refusal"
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

// keyRotation is the answer of POST /api/keys/rotate.
type keyRotation struct {
	KID           string    `json:"kid"`
	NextKID       string    `json:"next_kid"`
	NextReadyAt   time.Time `json:"next_ready_at"`
	RotatedAt     time.Time `json:"rotated_at"`
	Emergency     bool      `json:"emergency"`
	Retired       []string  `json:"retired,omitempty"`
	Withdrawn     []string  `json:"withdrawn,omitempty"`
	RevokedTokens int       `json:"revoked_tokens"`
}

func (a *API) rotateKeys(w http.ResponseWriter, r *http.Request, route string) error {
	sub, err := a.acts.Authorize(r, route, nil, nil)
	if err != nil {
		return err
	}
	emergency := false
	if v := r.URL.Query().Get("emergency"); v != "" {
		if emergency, err = strconv.ParseBool(v); err != nil {
			return refusal.Validation("emergency must be true or false")
		}
	}
	rot, err := a.rt.RotateKeys(r.Context(), r, sub, emergency)
	var notReady *keys.NotReadyError
	if errors.As(err, &notReady) {
		wait := max(time.Until(notReady.ReadyAt), time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		return refusal.New(http.StatusConflict, "key_not_ready", "Next signing key not ready", fmt.Sprintf(
			"the next signing key %s is in the JWKS since %s and can sign from %s (key_prepublish %s), when verifiers that cache the JWKS have it; rotate again then, or with ?emergency=true to replace the key at once and revoke every token it signed",
			notReady.KID, notReady.PublishedAt.UTC().Format(time.RFC3339), notReady.ReadyAt.UTC().Format(time.RFC3339),
			notReady.ReadyAt.Sub(notReady.PublishedAt)))
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keyRotation{
		KID: rot.KID, NextKID: rot.NextKID, NextReadyAt: rot.NextReadyAt.UTC(), RotatedAt: time.Now().UTC(), Emergency: emergency,
		Retired: rot.Retired, Withdrawn: rot.Withdrawn, RevokedTokens: rot.RevokedTokens,
	})
	return nil
}

// openIDConfiguration is the discovery document (OpenID Connect Discovery
// §3) of the issuer of Gatehouse's API tokens and upstream assertions,
// public_url, so that a backend finds the keys from the issuer alone.
func (a *API) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	issuer := a.rt.PublicURL.String()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", a.jwksCacheControl())
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                issuer,
		"jwks_uri":                              issuer + "/.well-known/jwks.json",
		"id_token_signing_alg_values_supported": a.rt.Keys.Algorithms(),
		"subject_types_supported":               []string{"public"},
	})
}

// jwksCacheControl lets verifiers cache the keys for half of key_prepublish
// (at most 5 min): they then have the next key before it signs.
func (a *API) jwksCacheControl() string {
	return fmt.Sprintf("public, max-age=%d", int(a.rt.Keys.CacheMaxAge()/time.Second))
}
