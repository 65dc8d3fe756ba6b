package actions

import (
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/refusal"
	"github.com/gatehouse/gatehouse/store"
)

// Target authorizes route, then loads the user the path's {id} names and
// asks the policy again with that user as the target (and the change, if
// any). The first check keeps callers without the permission from probing
// which IDs exist.
func (a *Actions) Target(r *http.Request, route string, change *policy.Change) (*core.Subject, store.User, error) {
	if _, err := a.Authorize(r, route, nil, nil); err != nil {
		return nil, store.User{}, err
	}
	target, err := a.rt.Store.GetUser(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, store.User{}, refusal.NotFound("user")
	}
	if err != nil {
		return nil, store.User{}, err
	}
	sub, err := a.Authorize(r, route, &policy.Target{ID: target.ID, Role: target.Role, Status: target.Status}, change)
	return sub, target, err
}

// SetUserRole checks and applies a role change of the user the path names.
func (a *Actions) SetUserRole(r *http.Request, route, role string) (store.User, error) {
	if !a.rt.Policy().RoleExists(role) {
		return store.User{}, refusal.Validation(fmt.Sprintf("unknown role %q", role))
	}
	sub, target, err := a.Target(r, route, &policy.Change{Role: role})
	if err != nil {
		return store.User{}, err
	}
	u, err := a.rt.SetUserRole(r.Context(), r, sub, target, role)
	return u, userWriteError(err)
}

// SetUserStatus checks and applies a status change of the user the path names.
func (a *Actions) SetUserStatus(r *http.Request, route, status, reason string) (store.User, error) {
	if status != store.StatusActive && status != store.StatusSuspended {
		return store.User{}, refusal.Validation(`status must be "active" or "suspended"`)
	}
	if utf8.RuneCountInString(reason) > maxCommentChars {
		return store.User{}, refusal.Validation(fmt.Sprintf("reason must be at most %d characters", maxCommentChars))
	}
	sub, target, err := a.Target(r, route, &policy.Change{Status: status})
	if err != nil {
		return store.User{}, err
	}
	u, err := a.rt.SetUserStatus(r.Context(), r, sub, target, status, reason)
	return u, userWriteError(err)
}

// DeleteUser checks and deletes the user the path names.
func (a *Actions) DeleteUser(r *http.Request, route string) error {
	sub, target, err := a.Target(r, route, nil)
	if err != nil {
		return err
	}
	if target.ID == sub.User.ID {
		return refusal.Conflict("self", "you cannot delete yourself")
	}
	return userWriteError(a.rt.DeleteUser(r.Context(), r, sub, target))
}

// userWriteError maps the store's refusals of user changes to problems.
func userWriteError(err error) error {
	switch {
	case errors.Is(err, store.ErrConflict):
		return refusal.Conflict("last_admin", "this change would leave no active admin")
	case errors.Is(err, store.ErrNotFound):
		return refusal.NotFound("user")
	}
	return err
}
