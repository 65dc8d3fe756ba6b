// Package gatehouse is the Caddy glue of Gatehouse, at the module root so
// that `xcaddy build --with github.com/gatehouse/gatehouse` works: the
// gatehouse app, the gatehouse (guard) and gatehouse_api handlers, and their
// Caddyfile syntax. The work itself happens in core, guard and admin; nothing
// imports this package but a Caddy binary.
package gatehouse

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse/gatehouse/core"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App is the gatehouse app: one per process, holding the store, sessions,
// OIDC client, signing keys, policy engine and notifier that the handlers
// share. Its configuration is the runtime's options, JSON keys and all.
type App struct {
	core.Options

	ctx caddy.Context // the configuration's context: the workers run on it
	rt  *core.Runtime
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "gatehouse",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision replaces placeholders, applies defaults and assembles the
// runtime, compiling the policy. It writes nothing — `caddy validate` runs
// it too: the store, the secret and the keys are opened by Start.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.Logger = ctx.Logger()
	a.expandPlaceholders()
	a.applyDefaults()
	if err := a.Validate(); err != nil {
		return err
	}
	rt, err := core.New(ctx, a.Options)
	if err != nil {
		return fmt.Errorf("gatehouse: %w", err)
	}
	// Into this configuration's registry: Caddy's /metrics serves it.
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		if err := rt.Metrics().Register(reg); err != nil {
			return fmt.Errorf("gatehouse: metrics: %w", err)
		}
	}
	a.rt = rt
	return nil
}

func (a *App) expandPlaceholders() {
	// ReplaceKnown, as Caddy's basicauth does: ReplaceAll would also delete
	// any other {…} in a value, and a secret may well contain one.
	repl := caddy.NewReplacer()
	a.Options.ExpandPlaceholders(func(s string) string { return repl.ReplaceKnown(s, "") })
}

func (a *App) applyDefaults() {
	a.PublicURL = strings.TrimRight(a.PublicURL, "/")
	if a.Store == nil {
		a.Store = &core.StoreConfig{}
	}
	if a.Store.Driver == "" {
		a.Store.Driver = "sqlite"
	}
	if a.Store.Driver == "sqlite" && a.Store.DSN == "" {
		a.Store.DSN = filepath.Join("data", "gatehouse.db")
	}
	if a.Secret == "" && a.SecretFile == "" && a.Store.Driver == "sqlite" {
		a.SecretFile = filepath.Join(filepath.Dir(a.Store.DSN), "gatehouse.key")
	}
	if a.APIPrefix == "" {
		a.APIPrefix = "/api"
	}
	if a.PagesPrefix == "" {
		a.PagesPrefix = "/gatehouse"
	}
	for _, p := range a.Providers() {
		if len(p.Scopes) == 0 {
			p.Scopes = []string{"openid", "email", "profile"}
		}
	}
	if a.SigningAlgorithm == "" {
		a.SigningAlgorithm = "ES256"
	}
}

// Validate rejects configuration Gatehouse cannot run with, naming the directive.
func (a *App) Validate() error {
	if err := a.Options.Validate(); err != nil {
		return fmt.Errorf("gatehouse: %w", err)
	}
	return nil
}

// Start opens the runtime — the store (migrated), the master secret and the
// signing keys, created when missing, and the settings' policy — and runs
// the background workers (notification delivery, fan-out, store polling,
// policy files, session sweeping) on the configuration's Caddy context, so
// they end when the configuration is unloaded.
func (a *App) Start() error {
	if err := a.checkDevIdPListeners(); err != nil {
		return err
	}
	if err := a.rt.Open(a.ctx); err != nil {
		return fmt.Errorf("gatehouse: %w", err)
	}
	a.rt.Start(a.ctx)
	return nil
}

// Stop does nothing: the workers end with the Caddy context, and Cleanup,
// which Caddy runs when it cancels that context, waits for them.
func (a *App) Stop() error { return nil }

// Cleanup waits for the background workers, records the last token uses and
// gives back the store and the Redis client (kept while the next
// configuration shares them). After a Provision without Start (`caddy
// validate`, a configuration that failed to load) there is nothing to give back.
func (a *App) Cleanup() error {
	if a.rt == nil {
		return nil
	}
	return a.rt.Close()
}

// Runtime is the shared state the handlers use. The handlers get it while
// they are provisioned, before Start has opened it: they ask Ready first.
func (a *App) Runtime() *core.Runtime { return a.rt }

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
