package actions

import (
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/refusal"
)

// ReplaceSettings replaces the whole settings document when it is still at
// version basedOn (the ETag the caller read).
func (a *Actions) ReplaceSettings(r *http.Request, route string, s core.Settings, basedOn string) (string, error) {
	sub, err := a.Authorize(r, route, nil, nil)
	if err != nil {
		return "", err
	}
	version, err := a.rt.ReplaceSettings(r.Context(), r, sub, s, basedOn)
	return version, settingsError(err)
}

// PutRole changes one role, keeping every other change made meanwhile.
func (a *Actions) PutRole(r *http.Request, route, name string, role core.RoleSetting) (core.Settings, string, error) {
	sub, err := a.Authorize(r, route, nil, nil)
	if err != nil {
		return core.Settings{}, "", err
	}
	s, version, err := a.rt.PutRole(r.Context(), r, sub, name, role)
	return s, version, settingsError(err)
}

// DeleteRole removes a custom role (or a built-in role's overrides).
func (a *Actions) DeleteRole(r *http.Request, route, name string) (core.Settings, string, error) {
	sub, err := a.Authorize(r, route, nil, nil)
	if err != nil {
		return core.Settings{}, "", err
	}
	s, version, err := a.rt.DeleteRole(r.Context(), r, sub, name)
	return s, version, settingsError(err)
}

// settingsError maps the runtime's refusals of a settings change to problems.
func settingsError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, core.ErrInvalidSettings):
		return refusal.Validation(err.Error())
	case errors.Is(err, core.ErrSettingsConflict):
		return refusal.New(http.StatusPreconditionFailed, "settings_conflict", "Settings changed",
			"the settings changed since they were read; reload them and apply the change again")
	case errors.Is(err, core.ErrRoleInUse):
		return refusal.Conflict("role_in_use", err.Error())
	case errors.Is(err, core.ErrUnknownRole):
		return refusal.NotFound("role")
	}
	return err
}
