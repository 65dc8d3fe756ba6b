package api

import (
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/refusal"
)

func (a *API) getSettings(w http.ResponseWriter, r *http.Request, route string) error {
	if _, err := a.acts.Authorize(r, route, nil, nil); err != nil {
		return err
	}
	s, version, err := a.rt.CurrentSettings(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(version))
	writeJSON(w, http.StatusOK, s)
	return nil
}

// putSettings replaces the whole settings document. It needs If-Match with
// the ETag of the settings it was based on, so two admins saving at once
// never lose a change: the second gets 412 and reloads.
func (a *API) putSettings(w http.ResponseWriter, r *http.Request, route string) error {
	if _, err := a.acts.Authorize(r, route, nil, nil); err != nil {
		return err
	}
	ifMatch := r.Header.Get("If-Match")
	if ifMatch == "" {
		return refusal.New(http.StatusPreconditionRequired, "precondition_required", "Precondition required",
			"send If-Match with the ETag of GET /api/settings, so a concurrent change is not overwritten")
	}
	var in struct {
		Roles       *map[string]core.RoleSetting `json:"roles"`
		Anomalies   *core.AnomalySettings        `json:"anomalies"`
		SignInRules []core.SignInRule            `json:"sign_in_rules"`
		StepUp      []core.StepUpRule            `json:"step_up"`
	}
	if err := decodeJSON(w, r, &in, false); err != nil {
		return err
	}
	if in.Roles == nil || *in.Roles == nil {
		return refusal.Validation(`the body must be an object with "roles" (an object of roles; {} removes every custom role)`)
	}
	s := core.Settings{Roles: *in.Roles, Anomalies: in.Anomalies, SignInRules: in.SignInRules, StepUp: in.StepUp}
	version, err := a.acts.ReplaceSettings(r, route, s, unquoteETag(ifMatch))
	return writeSettings(w, s, version, err)
}

// putRole changes one role, keeping every other change made meanwhile.
func (a *API) putRole(w http.ResponseWriter, r *http.Request, route string) error {
	if _, err := a.acts.Authorize(r, route, nil, nil); err != nil {
		return err
	}
	var role core.RoleSetting
	if err := decodeJSON(w, r, &role, false); err != nil {
		return err
	}
	s, version, err := a.acts.PutRole(r, route, r.PathValue("name"), role)
	return writeSettings(w, s, version, err)
}

func (a *API) deleteRole(w http.ResponseWriter, r *http.Request, route string) error {
	s, version, err := a.acts.DeleteRole(r, route, r.PathValue("name"))
	return writeSettings(w, s, version, err)
}

// writeSettings answers a settings change: the document with its new ETag.
func writeSettings(w http.ResponseWriter, s core.Settings, version string, err error) error {
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(version))
	writeJSON(w, http.StatusOK, s)
	return nil
}

func etag(version string) string { return `"` + version + `"` }

func unquoteETag(v string) string {
	v = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), "W/"))
	return strings.Trim(v, `"`)
}
