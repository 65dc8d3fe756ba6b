package core

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/quota"
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
	// Anomalies are the thresholds of the security events (anomaly.go).
	Anomalies *AnomalySettings `json:"anomalies,omitempty"`
	// SignInRules map the claims of a sign-in to a role and a verdict
	// (signin_rules.go).
	SignInRules []SignInRule `json:"sign_in_rules,omitempty"`
	// StepUp names what needs a stronger sign-in (stepup.go).
	StepUp []StepUpRule `json:"step_up,omitempty"`
}

// RoleSetting is one role of the settings.
type RoleSetting struct {
	Rank        int      `json:"rank,omitempty"`
	Inherits    []string `json:"inherits,omitempty"`
	Permissions []string `json:"permissions,omitempty"`
	Models      []string `json:"models,omitempty"`
	// Limits are the quotas of every user holding the role (spec §8); a
	// user's and a token's own limits only narrow them.
	Limits *quota.Limits `json:"limits,omitempty"`
}

// builtinRoles may only get model restrictions and limits through settings: their
// permissions are the contract of spec §3.
var builtinRoles = map[string]bool{"user": true, "manager": true, "admin": true}

// ErrInvalidSettings wraps a settings document that would not make a valid policy.
var ErrInvalidSettings = errors.New("invalid settings")

// Policy is the policy engine of the current settings.
func (rt *Runtime) Policy() *policy.Engine { return rt.policy.Load() }

// Settings returns the current runtime settings.
func (rt *Runtime) Settings(ctx context.Context) (Settings, error) {
	s, _, err := rt.CurrentSettings(ctx)
	return s, err
}

// Errors of settings changes.
var (
	// ErrSettingsConflict means the settings changed since the version the
	// caller read (412).
	ErrSettingsConflict = errors.New("the settings changed since they were read")
	// ErrRoleInUse means a role that users hold would be deleted (409).
	ErrRoleInUse = errors.New("role in use")
	// ErrUnknownRole means a role change names a role the settings do not have (404).
	ErrUnknownRole = errors.New("unknown role")
)

// SettingsVersion is the version of a stored settings document, for ETag and
// If-Match.
func SettingsVersion(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:12])
}

// CurrentSettings returns the stored settings and their version.
func (rt *Runtime) CurrentSettings(ctx context.Context) (Settings, string, error) {
	raw, err := rt.storedSettings(ctx)
	if err != nil {
		return Settings{}, "", err
	}
	s, err := parseSettings(raw)
	return s, SettingsVersion(raw), err
}

// ReplaceSettings stores s as the whole settings document when the stored
// one is still at version.
func (rt *Runtime) ReplaceSettings(ctx context.Context, r *http.Request, actor *Subject, s Settings, version string) (string, error) {
	_, v, err := rt.changeSettings(ctx, r, actor, version, func(cur *Settings) error {
		*cur = s
		return nil
	})
	return v, err
}

// PutRole adds or changes one role of the settings; concurrent changes of
// other roles are kept.
func (rt *Runtime) PutRole(ctx context.Context, r *http.Request, actor *Subject, name string, role RoleSetting) (Settings, string, error) {
	return rt.changeSettings(ctx, r, actor, "", func(cur *Settings) error {
		cur.Roles[name] = role
		return nil
	})
}

// DeleteRole removes one custom role (or a built-in role's model
// restriction) from the settings. A role that users hold is ErrRoleInUse.
func (rt *Runtime) DeleteRole(ctx context.Context, r *http.Request, actor *Subject, name string) (Settings, string, error) {
	return rt.changeSettings(ctx, r, actor, "", func(cur *Settings) error {
		if _, ok := cur.Roles[name]; !ok {
			return fmt.Errorf("%w %q", ErrUnknownRole, name)
		}
		delete(cur.Roles, name)
		return nil
	})
}

// changeSettings applies change to the stored settings and stores the result
// with a compare-and-swap: with a version, only while the settings are still
// at it (else ErrSettingsConflict); without one, retrying on a concurrent
// change so that no change is lost. Then this instance switches to the new
// policy and the others are told.
func (rt *Runtime) changeSettings(ctx context.Context, r *http.Request, actor *Subject, version string, change func(*Settings) error) (Settings, string, error) {
	for range 8 {
		raw, err := rt.storedSettings(ctx)
		if err != nil {
			return Settings{}, "", err
		}
		if version != "" && SettingsVersion(raw) != version {
			return Settings{}, "", ErrSettingsConflict
		}
		cur, err := parseSettings(raw)
		if err != nil {
			return Settings{}, "", err
		}
		before := maps.Clone(cur.Roles)
		if err := change(&cur); err != nil {
			return Settings{}, "", err
		}
		if cur.Roles == nil {
			cur.Roles = map[string]RoleSetting{}
		}
		next, err := rt.putSettings(ctx, raw, cur, before)
		if errors.Is(err, store.ErrConflict) {
			if version != "" {
				return Settings{}, "", ErrSettingsConflict
			}
			continue // another change landed first: apply this one to it
		}
		if err != nil {
			return Settings{}, "", err
		}
		rt.announce(fanoutEvent{Kind: "settings"})
		rt.Audit(ctx, r, AuditEvent{Type: "settings.changed", ActorID: actor.User.ID,
			Detail: map[string]any{"roles": changedRoles(before, cur.Roles)}})
		rt.followCreators(ctx) // a role may have lost tokens:system
		rt.recheckInflight()
		return cur, SettingsVersion(next), nil
	}
	return Settings{}, "", fmt.Errorf("%w: the settings kept changing; try again", ErrUnavailable)
}

// putSettings builds the policy of s, stores s in place of raw (a
// store.ErrConflict when raw is no longer the stored document) and switches
// to that policy. It holds policyMu throughout, so that no other switch (a
// settings change read from the store, an edited policy file) lands between
// the build and the switch and is then undone.
func (rt *Runtime) putSettings(ctx context.Context, raw []byte, s Settings, before map[string]RoleSetting) ([]byte, error) {
	rt.policyMu.Lock()
	defer rt.policyMu.Unlock()
	engine, err := rt.buildPolicy(ctx, s)
	if err != nil {
		return nil, err
	}
	if err := rt.checkRolesInUse(ctx, before, s.Roles); err != nil {
		return nil, err
	}
	next, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	err = rt.Store.PutSettingIf(ctx, settingsKey, raw, next)
	if errors.Is(err, store.ErrConflict) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: store settings: %v", ErrUnavailable, err)
	}
	rt.switchPolicy(engine, s)
	rt.settingsRaw.Store(&next)
	return next, nil
}

// checkRolesInUse refuses to remove a custom role that users still hold.
func (rt *Runtime) checkRolesInUse(ctx context.Context, before, after map[string]RoleSetting) error {
	for name := range before {
		if _, kept := after[name]; kept || builtinRoles[name] {
			continue
		}
		users, _, err := rt.Store.ListUsers(ctx, store.UserFilter{Role: name, Limit: 1})
		if err != nil {
			return fmt.Errorf("%w: list users of role %s: %v", ErrUnavailable, name, err)
		}
		if len(users) > 0 {
			return fmt.Errorf("%w: users hold role %q; give them another role first", ErrRoleInUse, name)
		}
	}
	return nil
}

func changedRoles(before, after map[string]RoleSetting) []string {
	var names []string
	for name, r := range after {
		if b, ok := before[name]; !ok || !reflect.DeepEqual(b, r) {
			names = append(names, name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func (rt *Runtime) storedSettings(ctx context.Context) ([]byte, error) {
	raw, err := rt.Store.GetSetting(ctx, settingsKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read settings: %v", ErrUnavailable, err)
	}
	return raw, nil
}

func parseSettings(raw []byte) (Settings, error) {
	s := Settings{Roles: map[string]RoleSetting{}}
	if len(raw) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return Settings{}, fmt.Errorf("stored settings are corrupt: %w", err)
	}
	if s.Roles == nil {
		s.Roles = map[string]RoleSetting{}
	}
	return s, nil
}

// buildPolicy compiles the policy files the running policy was built from
// with the settings' data overlay. The caller holds policyMu.
func (rt *Runtime) buildPolicy(ctx context.Context, s Settings) (*policy.Engine, error) {
	return rt.compilePolicy(ctx, rt.policyFiles, s)
}

// compilePolicy compiles files with the settings' data overlay and the
// guards' routes. An error is ErrInvalidSettings when settings give roles:
// the files alone compiled when they were read.
func (rt *Runtime) compilePolicy(ctx context.Context, files *policy.Files, s Settings) (*policy.Engine, error) {
	if err := validateSettings(s); err != nil {
		return nil, err
	}
	opts := policy.Options{Files: files, Data: map[string]any{}}
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
			if r.Limits != nil {
				role["limits"] = r.Limits
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
	if len(s.StepUp) > 0 {
		opts.Data["step_up"] = stepUpData(s.StepUp)
	}
	if len(s.SignInRules) > 0 {
		rules, err := signInRulesData(s.SignInRules)
		if err != nil {
			return nil, err
		}
		opts.Data["sign_in_rules"] = rules
	}
	engine, err := policy.New(ctx, opts)
	if err != nil {
		if len(s.Roles) == 0 && len(s.SignInRules) == 0 && len(s.StepUp) == 0 {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidSettings, err)
	}
	if err := rt.checkSignInRoles(engine, s.SignInRules); err != nil {
		return nil, err
	}
	ranks := engine.Roles()
	names := slices.Sorted(maps.Keys(s.Roles))
	for _, name := range names {
		r := s.Roles[name]
		for _, parent := range r.Inherits {
			if !engine.RoleExists(parent) {
				return nil, fmt.Errorf("%w: role %q inherits unknown role %q", ErrInvalidSettings, name, parent)
			}
		}
		if builtinRoles[name] {
			continue
		}
		// Ranks order authority: a custom role ranks above what it inherits
		// and below admin, so it can neither inherit admin nor out-rank it.
		if r.Rank >= ranks["admin"] {
			return nil, fmt.Errorf("%w: role %q needs a rank below admin's (%d)", ErrInvalidSettings, name, ranks["admin"])
		}
		for _, parent := range r.Inherits {
			if parent == "admin" {
				return nil, fmt.Errorf("%w: role %q cannot inherit admin", ErrInvalidSettings, name)
			}
			if r.Rank <= ranks[parent] {
				return nil, fmt.Errorf("%w: role %q needs a rank above %q's (%d)", ErrInvalidSettings, name, parent, ranks[parent])
			}
		}
	}
	return engine, nil
}

func validateSettings(s Settings) error {
	if err := s.Anomalies.Validate(); err != nil {
		return err
	}
	if err := validateSignInRules(s.SignInRules); err != nil {
		return err
	}
	if err := validateStepUpRules(s.StepUp); err != nil {
		return err
	}
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
			return fmt.Errorf("%w: built-in role %q may only be given models and limits", ErrInvalidSettings, name)
		case !builtinRoles[name] && r.Rank <= 0:
			return fmt.Errorf("%w: role %q needs a positive rank (user 10, manager 20, admin 30)", ErrInvalidSettings, name)
		}
		if r.Limits != nil {
			if err := r.Limits.Validate(); err != nil {
				return fmt.Errorf("%w: role %q: %v", ErrInvalidSettings, name, err)
			}
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

// readPolicyFiles reads the policy files and compiles them with the
// built-in data, for New: nothing is read from the store yet.
func (rt *Runtime) readPolicyFiles(ctx context.Context) error {
	files, err := policy.ReadFiles(rt.policyPaths)
	if err != nil {
		return err
	}
	rt.policyMu.Lock()
	rt.policyFiles, rt.policySeen = files, files.Digest()
	rt.policyMu.Unlock()
	return rt.loadPolicy(ctx)
}

// loadPolicy builds the policy from the stored settings — none before Open,
// which calls it first — and switches to it.
func (rt *Runtime) loadPolicy(ctx context.Context) error {
	rt.policyMu.Lock()
	defer rt.policyMu.Unlock()
	if rt.Store == nil {
		engine, err := rt.buildPolicy(ctx, Settings{})
		if err != nil {
			return err
		}
		rt.switchPolicy(engine, Settings{})
		return nil
	}
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
	if errors.Is(err, ErrInvalidSettings) && rt.settingsRaw.Load() == nil {
		// Stored by an older version whose rules were looser (a custom role
		// out-ranking admin, say). Starting without the custom roles keeps
		// Gatehouse up for an admin to fix them, and fails closed: their
		// holders rank 0 with no permissions meanwhile. Built-in roles keep
		// their model restrictions.
		builtin := Settings{Roles: map[string]RoleSetting{}}
		for name, r := range s.Roles {
			if builtinRoles[name] {
				builtin.Roles[name] = r
			}
		}
		if fallback, ferr := rt.buildPolicy(ctx, builtin); ferr == nil {
			rt.Logger.Error("the stored settings are not valid any more; starting without their custom roles, whose holders have no permissions until an admin saves valid settings",
				zap.Error(err))
			engine, s, err = fallback, builtin, nil
		}
	}
	if err != nil {
		return err
	}
	rt.switchPolicy(engine, s)
	rt.settingsRaw.Store(&raw)
	return nil
}

// switchPolicy makes engine, built with s, the one every decision asks.
// The caller holds policyMu.
func (rt *Runtime) switchPolicy(engine *policy.Engine, s Settings) {
	rt.policySettings = s
	rt.quotas.setRoleLimits(s)
	rt.anomalies.configure(s.Anomalies)
	rt.policy.Store(engine)
}

// checkPolicyFiles switches to the policy of the policy files when one
// changed (`caddy reload` sees the same configuration and keeps the running
// one). A policy that does not compile keeps the running one serving, and
// the compiler's file:line message is logged once for each broken version.
func (rt *Runtime) checkPolicyFiles(ctx context.Context) {
	files, err := policy.ReadFiles(rt.policyPaths)
	seen := ""
	if err != nil {
		seen = err.Error()
	} else {
		seen = files.Digest()
	}
	rt.policyMu.Lock()
	if seen == rt.policySeen {
		rt.policyMu.Unlock()
		return
	}
	rt.policySeen = seen
	if err != nil {
		rt.policyMu.Unlock()
		rt.Logger.Error("the policy files cannot be read; keeping the running policy", zap.Error(err))
		return
	}
	// The files alone first, so that their error is not taken for the settings'.
	engine, err := rt.compilePolicy(ctx, files, Settings{})
	if err == nil && len(rt.policySettings.Roles) > 0 {
		engine, err = rt.compilePolicy(ctx, files, rt.policySettings)
	}
	if err != nil {
		rt.policyMu.Unlock()
		rt.Logger.Error("the policy files changed but do not make a valid policy; keeping the running one",
			zap.Strings("files", files.Names()), zap.Error(err))
		return
	}
	rt.policyFiles = files
	rt.switchPolicy(engine, rt.policySettings)
	rt.policyMu.Unlock()
	rt.Audit(ctx, nil, AuditEvent{Type: "policy.reloaded",
		Detail: map[string]any{"files": files.Names(), "digest": files.Digest()[:12]}})
	rt.recheckInflight()
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
		return
	}
	rt.recheckInflight()
}
