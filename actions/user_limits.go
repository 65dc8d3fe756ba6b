package actions

import (
	"net/http"

	"github.com/gatehouse/gatehouse/quota"
	"github.com/gatehouse/gatehouse/refusal"
	"github.com/gatehouse/gatehouse/store"
)

// SetUserLimits checks and sets the own quotas of the user the path names;
// zero limits clear them.
func (a *Actions) SetUserLimits(r *http.Request, route string, limits quota.Limits) (store.User, error) {
	if err := limits.Validate(); err != nil {
		return store.User{}, refusal.Validation("limits: " + err.Error())
	}
	sub, target, err := a.Target(r, route, nil)
	if err != nil {
		return store.User{}, err
	}
	u, err := a.rt.SetUserLimits(r.Context(), r, sub, target, limits)
	return u, userWriteError(err)
}
