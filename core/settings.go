package core

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

// settingsKey is where the runtime settings document lives in the store.
const settingsKey = "settings"

// Settings are the runtime settings an admin changes through PUT /api/settings.
// They take effect on every instance without a restart.
type Settings struct {
	// Roles adds permission sets (roles) to the policy data, or restricts the
	// models of a built-in role. Built-in roles keep their rank and permissions.
	Roles map[string]RoleSetting `json:"roles"`
}

// RoleSetting is one role of the settings.
type RoleSetting struct {
	Rank        int      `json:"rank,omitempty"`
	Inherits    []string `json:"inherits,omitempty"`
	Permissions []string `json:"permissions,omitempty"`
	Models      []string `json:"models,omitempty"`
}

// builtinRoles may only get model restrictions through settings: their
// permissions are the contract of spec §3.
var builtinRoles = map[string]bool{"user": true, "manager": true, "admin": true}

// ErrInvalidSettings wraps a settings document that would not make a valid policy.
var ErrInvalidSettings = errors.New("invalid settings")

// Policy is the policy engine of the current settings.
func (rt *Runtime) Policy() *policy.Engine { return rt.policy.Load() }

// Settings returns the current runtime settings.
func (rt *Runtime) Settings(ctx context.Context) (Settings, error) {
	raw, err := rt.Store.GetSetting(ctx, settingsKey)
	if errors.Is(err, store.ErrNotFound) {
		return Settings{Roles: map[string]RoleSetting{}}, nil
	}
	if err != nil {
		return Settings{}, fmt.Errorf("%w: read settings: %v", ErrUnavailable, err)
	}
	var s Settings
	if err := json.Unmarshal(raw, &s); err != nil {
		return Settings{}, fmt.Errorf("stored settings are corrupt: %w", err)
	}
	if s.Roles == nil {
		s.Roles = map[string]RoleSetting{}
	}
	return s, nil
}

// PutSettings validates s by building the policy it implies, stores it, and
// switches this instance to the new policy. Other instances pick it up at
// their next settings check.
func (rt *Runtime) PutSettings(ctx context.Context, s Settings) error {
	engine, err := rt.buildPolicy(ctx, s)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := rt.Store.PutSetting(ctx, settingsKey, raw); err != nil {
		return fmt.Errorf("%w: store settings: %v", ErrUnavailable, err)
	}
	rt.policy.Store(engine)
	rt.settingsRaw.Store(&raw)
	rt.announce(fanoutEvent{Kind: "settings"})
	rt.followCreators(ctx) // a role may have lost tokens:system
	return nil
}

// buildPolicy compiles the configured policy with the settings' data overlay.
func (rt *Runtime) buildPolicy(ctx context.Context, s Settings) (*policy.Engine, error) {
	if err := validateSettings(s); err != nil {
		return nil, err
	}
	opts := policy.Options{Paths: rt.policyPaths, Data: map[string]any{}}
	rt.routesMu.Lock()
	if len(rt.extraRoutes) > 0 {
		routes := map[string]any{}
		for key, r := range rt.extraRoutes {
			routes[key] = r
		}
		opts.Data["routes"] = routes
	}
	rt.routesMu.Unlock()
	if len(s.Roles) > 0 {
		roles := map[string]any{}
		for name, r := range s.Roles {
			role := map[string]any{}
			if r.Models != nil {
				role["models"] = r.Models
			}
			if !builtinRoles[name] {
				role["rank"] = r.Rank
				role["inherits"] = nonNil(r.Inherits)
				role["permissions"] = nonNil(r.Permissions)
			}
			roles[name] = role
		}
		opts.Data["roles"] = roles
	}
	engine, err := policy.New(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSettings, err)
	}
	for name, r := range s.Roles {
		for _, parent := range r.Inherits {
			if !engine.RoleExists(parent) {
				return nil, fmt.Errorf("%w: role %q inherits unknown role %q", ErrInvalidSettings, name, parent)
			}
		}
	}
	return engine, nil
}

func validateSettings(s Settings) error {
	names := make([]string, 0, len(s.Roles))
	for name := range s.Roles {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r := s.Roles[name]
		switch {
		case name == "" || len(name) > 64:
			return fmt.Errorf("%w: role names must have 1 to 64 characters", ErrInvalidSettings)
		case builtinRoles[name] && (r.Rank != 0 || r.Inherits != nil || r.Permissions != nil):
			return fmt.Errorf("%w: built-in role %q may only be given models", ErrInvalidSettings, name)
		case !builtinRoles[name] && (r.Rank <= 0 || r.Rank >= 1000):
			return fmt.Errorf("%w: role %q needs a rank between 1 and 999 (user 10, manager 20, admin 30)", ErrInvalidSettings, name)
		}
		for _, p := range r.Permissions {
			if p == "" || len(p) > 100 {
				return fmt.Errorf("%w: role %q has an empty or overlong permission", ErrInvalidSettings, name)
			}
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// AddRoutes adds routes to the route table of the policy data (spec §6a), as
// a guard's model_routes and listing_routes do, and rebuilds the policy. Keys
// are "METHOD /path"; the path is cleaned and folded as requests are.
func (rt *Runtime) AddRoutes(ctx context.Context, routes map[string]policy.Route) error {
	if len(routes) == 0 {
		return nil
	}
	rt.routesMu.Lock()
	if rt.extraRoutes == nil {
		rt.extraRoutes = map[string]policy.Route{}
	}
	for key, r := range routes {
		method, p, _ := strings.Cut(key, " ")
		if !strings.Contains(p, "*") {
			p = CleanPath(p)
		}
		rt.extraRoutes[method+" "+policy.FoldPath(p)] = r
	}
	rt.routesMu.Unlock()
	return rt.loadPolicy(ctx)
}

// loadPolicy builds the policy from the stored settings at start.
func (rt *Runtime) loadPolicy(ctx context.Context) error {
	raw, err := rt.Store.GetSetting(ctx, settingsKey)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("read settings: %w", err)
	}
	var s Settings
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("stored settings are corrupt: %w", err)
		}
	}
	engine, err := rt.buildPolicy(ctx, s)
	if err != nil {
		return err
	}
	rt.policy.Store(engine)
	rt.settingsRaw.Store(&raw)
	return nil
}

// checkSettings reloads the policy when another instance changed the settings.
func (rt *Runtime) checkSettings(ctx context.Context) {
	raw, err := rt.Store.GetSetting(ctx, settingsKey)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		rt.Logger.Warn("checking settings", zap.Error(err))
		return
	}
	if cur := rt.settingsRaw.Load(); cur != nil && bytes.Equal(*cur, raw) {
		return
	}
	if err := rt.loadPolicy(ctx); err != nil {
		rt.Logger.Error("settings changed but do not make a valid policy; keeping the previous one", zap.Error(err))
		rt.settingsRaw.Store(&raw) // do not retry the same bad document every tick
	}
}
