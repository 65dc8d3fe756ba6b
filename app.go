// Package gatehouse is the Caddy glue of Gatehouse, at the module root so
// that `xcaddy build --with github.com/gatehouse/gatehouse` works: the
// gatehouse app, the gatehouse (guard) and gatehouse_api handlers, and their
// Caddyfile syntax. The work itself happens in core, guard and admin; nothing
// imports this package but a Caddy binary.
package gatehouse

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/devidp"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/notify"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App is the gatehouse app: one per process, holding the store, sessions,
// OIDC client, signing keys, policy engine and notifier that the handlers share.
type App struct {
	// PublicURL is the URL users reach Gatehouse at; cookies are Secure when it is https.
	PublicURL string `json:"public_url,omitempty"`
	// Store selects the backend. Default: sqlite at ./data/gatehouse.db.
	Store *StoreConfig `json:"store,omitempty"`
	// Redis (redis://host:port/db) announces revocations, user changes, key
	// rotations and settings to the other instances at once.
	Redis string `json:"redis,omitempty"`
	// OIDC is the organisation's OpenID provider. Ignored when DevIdP is set.
	OIDC *OIDCConfig `json:"oidc,omitempty"`
	// DevIdP turns on the built-in development OpenID provider under /dev-idp.
	DevIdP *DevIdPConfig `json:"dev_idp,omitempty"`
	// BootstrapAdmins are emails approved as admin at their first sign-in.
	BootstrapAdmins []string `json:"bootstrap_admins,omitempty"`
	// Policy lists extra Rego files or directories that add to or replace the default policy.
	Policy []string `json:"policy,omitempty"`
	// Secret is the master secret (at least 32 characters) that seals private keys
	// and login state. When empty, SecretFile is used, created on first start.
	Secret string `json:"secret,omitempty"`
	// SecretFile defaults to gatehouse.key beside the SQLite database.
	SecretFile string `json:"secret_file,omitempty"`
	// APIPrefix defaults to /api; PagesPrefix to /gatehouse.
	APIPrefix   string `json:"api_prefix,omitempty"`
	PagesPrefix string `json:"pages_prefix,omitempty"`
	// SessionLifetime is the absolute session lifetime (default 24h);
	// SessionIdleTimeout ends a session unused for that long (default 2h).
	SessionLifetime    caddy.Duration `json:"session_lifetime,omitempty"`
	SessionIdleTimeout caddy.Duration `json:"session_idle_timeout,omitempty"`
	// Notify configures how requesters hear about decisions.
	Notify *NotifyConfig `json:"notify,omitempty"`
	// SigningAlgorithm is ES256 (default), EdDSA or RS256.
	SigningAlgorithm string `json:"signing_algorithm,omitempty"`
	// TokenLifetimes caps API token lifetimes per kind (personal, user: 90d; system: 365d).
	TokenLifetimes map[string]caddy.Duration `json:"token_lifetimes,omitempty"`
	// TokenAudiences are extra aud values of API tokens (besides "gatehouse").
	TokenAudiences []string `json:"token_audiences,omitempty"`
	// MaxStaleness is the oldest revocation view with which bearer tokens are
	// still accepted (default 30s); past it they get 503.
	MaxStaleness caddy.Duration `json:"max_staleness,omitempty"`
	// StoreTimeout bounds every store call (default 2s): a store that hangs
	// makes requests fail with 503 instead of waiting.
	StoreTimeout caddy.Duration `json:"store_timeout,omitempty"`

	rt     *core.Runtime
	logger *zap.Logger
}

// StoreConfig names a store backend and its data source.
type StoreConfig struct {
	Driver string `json:"driver,omitempty"` // sqlite or postgres
	DSN    string `json:"dsn,omitempty"`    // a file path for sqlite, a URL for postgres
}

// OIDCConfig is an OpenID Connect provider registration.
type OIDCConfig struct {
	Issuer       string   `json:"issuer,omitempty"`
	ClientID     string   `json:"client_id,omitempty"`
	ClientSecret string   `json:"client_secret,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
}

// DevIdPConfig lists the people the development provider offers.
type DevIdPConfig struct {
	Users []DevUser `json:"users,omitempty"`
}

// DevUser is one person of the development provider.
type DevUser struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// NotifyConfig lists the notifiers of access decisions.
type NotifyConfig struct {
	Webhooks []WebhookConfig `json:"webhooks,omitempty"`
	SMTP     *SMTPConfig     `json:"smtp,omitempty"`
}

// WebhookConfig is a receiver of signed decision events.
type WebhookConfig struct {
	URL    string `json:"url"`
	Secret string `json:"secret"`
}

// SMTPConfig is the mail relay for decision emails.
type SMTPConfig struct {
	Host     string `json:"host"`
	Port     int    `json:"port,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	From     string `json:"from"`
	TLS      string `json:"tls,omitempty"` // starttls (default), tls, none
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "gatehouse",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision replaces placeholders, applies defaults and assembles the runtime.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.expandPlaceholders()
	a.applyDefaults()
	if err := a.Validate(); err != nil {
		return err
	}
	rt, err := core.Open(ctx, a.runtimeOptions())
	if err != nil {
		return fmt.Errorf("gatehouse: %w", err)
	}
	a.rt = rt
	return nil
}

func (a *App) expandPlaceholders() {
	// ReplaceKnown, as Caddy's basicauth does: ReplaceAll would also delete
	// any other {…} in a value, and a secret may well contain one.
	repl := caddy.NewReplacer()
	r := func(s string) string { return repl.ReplaceKnown(s, "") }
	a.PublicURL = r(a.PublicURL)
	a.Redis = r(a.Redis)
	a.Secret = r(a.Secret)
	a.APIPrefix = r(a.APIPrefix)
	a.PagesPrefix = r(a.PagesPrefix)
	a.SigningAlgorithm = r(a.SigningAlgorithm)
	for i, e := range a.BootstrapAdmins {
		a.BootstrapAdmins[i] = r(e)
	}
	if a.DevIdP != nil {
		for i := range a.DevIdP.Users {
			a.DevIdP.Users[i].Email = r(a.DevIdP.Users[i].Email)
			a.DevIdP.Users[i].Name = r(a.DevIdP.Users[i].Name)
		}
	}
	a.SecretFile = r(a.SecretFile)
	if a.Store != nil {
		a.Store.DSN = r(a.Store.DSN)
	}
	if a.OIDC != nil {
		a.OIDC.Issuer = r(a.OIDC.Issuer)
		a.OIDC.ClientID = r(a.OIDC.ClientID)
		a.OIDC.ClientSecret = r(a.OIDC.ClientSecret)
	}
	if a.Notify != nil {
		for i := range a.Notify.Webhooks {
			a.Notify.Webhooks[i].URL = r(a.Notify.Webhooks[i].URL)
			a.Notify.Webhooks[i].Secret = r(a.Notify.Webhooks[i].Secret)
		}
		if s := a.Notify.SMTP; s != nil {
			s.Host, s.Username, s.Password, s.From, s.TLS = r(s.Host), r(s.Username), r(s.Password), r(s.From), r(s.TLS)
		}
	}
	for i, p := range a.Policy {
		a.Policy[i] = r(p)
	}
}

func (a *App) applyDefaults() {
	a.PublicURL = strings.TrimRight(a.PublicURL, "/")
	if a.Store == nil {
		a.Store = &StoreConfig{}
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
	if a.OIDC != nil && len(a.OIDC.Scopes) == 0 {
		a.OIDC.Scopes = []string{"openid", "email", "profile"}
	}
	if a.SigningAlgorithm == "" {
		a.SigningAlgorithm = "ES256"
	}
}

// Validate rejects configuration Gatehouse cannot run with, naming the directive.
func (a *App) Validate() error {
	u, err := url.Parse(a.PublicURL)
	switch {
	case a.PublicURL == "":
		return errors.New("gatehouse: public_url is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("gatehouse: public_url %q must be an absolute http(s) URL", a.PublicURL)
	case u.Path != "" && u.Path != "/":
		return fmt.Errorf("gatehouse: public_url %q must not have a path", a.PublicURL)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.HasSuffix(a.PublicURL, "?") || strings.Contains(a.PublicURL, "#"):
		return fmt.Errorf("gatehouse: public_url %q must be only a scheme and a host", a.PublicURL)
	}
	if a.Store == nil {
		return errors.New("gatehouse: store: not configured")
	}
	switch a.Store.Driver {
	case "sqlite":
	case "postgres":
		if a.Store.DSN == "" {
			return errors.New("gatehouse: store: postgres needs a connection URL")
		}
		if a.Secret == "" && a.SecretFile == "" {
			return errors.New("gatehouse: secret is required with store postgres (every instance needs the same one)")
		}
	default:
		return fmt.Errorf("gatehouse: store: unknown driver %q (supported: sqlite, postgres)", a.Store.Driver)
	}
	if a.Redis != "" {
		if _, err := redis.ParseURL(a.Redis); err != nil {
			return fmt.Errorf("gatehouse: redis: %v", err)
		}
	}
	if a.DevIdP != nil && a.OIDC != nil {
		return errors.New("gatehouse: dev_idp and oidc are both configured: dev_idp would replace the real provider; keep one")
	}
	if a.DevIdP == nil {
		if a.OIDC == nil {
			return errors.New("gatehouse: oidc is required (or dev_idp for trying Gatehouse out)")
		}
		if a.OIDC.Issuer == "" {
			return errors.New("gatehouse: oidc: issuer is required")
		}
		if a.OIDC.ClientID == "" {
			return errors.New("gatehouse: oidc: client_id is required")
		}
	} else if len(a.DevIdP.Users) == 0 {
		return errors.New("gatehouse: dev_idp: at least one user is required")
	}
	for _, p := range []struct{ name, v string }{{"api_prefix", a.APIPrefix}, {"pages_prefix", a.PagesPrefix}} {
		if !validPrefix(p.v) {
			return fmt.Errorf("gatehouse: %s %q must be a path like /api: letters, digits, - _ . / only, starting with / and not ending with /", p.name, p.v)
		}
		if within(p.v, "/dev-idp") || within(p.v, "/.well-known") {
			return fmt.Errorf("gatehouse: %s %q clashes with /dev-idp or /.well-known", p.name, p.v)
		}
	}
	if within(a.APIPrefix, a.PagesPrefix) || within(a.PagesPrefix, a.APIPrefix) {
		return errors.New("gatehouse: api_prefix and pages_prefix must not contain one another")
	}
	if a.SessionLifetime < 0 || a.SessionIdleTimeout < 0 {
		return errors.New("gatehouse: session_lifetime and session_idle_timeout must not be negative")
	}
	if a.SessionLifetime > 0 && a.SessionIdleTimeout > a.SessionLifetime {
		return errors.New("gatehouse: session_idle_timeout must not exceed session_lifetime")
	}
	switch a.SigningAlgorithm {
	case "ES256", "EdDSA", "RS256":
	default:
		return fmt.Errorf("gatehouse: signing_algorithm %q: use ES256, EdDSA or RS256", a.SigningAlgorithm)
	}
	for kind, d := range a.TokenLifetimes {
		if kind != "personal" && kind != "user" && kind != "system" {
			return fmt.Errorf("gatehouse: token_lifetime: unknown token kind %q", kind)
		}
		if d < caddy.Duration(time.Minute) {
			return fmt.Errorf("gatehouse: token_lifetime %s must be at least 1m", kind)
		}
	}
	if a.StoreTimeout < 0 || a.StoreTimeout > caddy.Duration(time.Minute) {
		return errors.New("gatehouse: store_timeout must be between 1ms and 1m")
	}
	if a.MaxStaleness != 0 && a.MaxStaleness < caddy.Duration(15*time.Second) {
		// The store is re-read every 0.5 s, or every 5 s with Redis: a smaller
		// bound would refuse good tokens between two reads.
		return errors.New("gatehouse: max_staleness must be at least 15s")
	}
	if a.Secret != "" && len(a.Secret) < 32 {
		return errors.New("gatehouse: secret must be at least 32 characters")
	}
	if a.Notify != nil {
		for _, w := range a.Notify.Webhooks {
			if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("gatehouse: notify: webhook %q must be an http(s) URL", w.URL)
			}
			if w.Secret == "" {
				return fmt.Errorf("gatehouse: notify: webhook %q needs a secret", w.URL)
			}
		}
		if s := a.Notify.SMTP; s != nil {
			if s.Host == "" || s.From == "" {
				return errors.New("gatehouse: notify: smtp needs host and from")
			}
			if s.Port < 0 || s.Port > 65535 {
				return fmt.Errorf("gatehouse: notify: smtp: bad port %d", s.Port)
			}
			switch s.TLS {
			case "", "starttls", "tls", "none":
			default:
				return fmt.Errorf("gatehouse: notify: smtp: tls must be starttls, tls or none, not %q", s.TLS)
			}
		}
	}
	return nil
}

// validPrefix accepts a plain absolute path without a trailing slash.
func validPrefix(p string) bool {
	if len(p) < 2 || p[0] != '/' || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./", c)) {
			return false
		}
	}
	return true
}

// within reports whether path p is base or lies under it.
func within(p, base string) bool {
	return p == base || strings.HasPrefix(p, base+"/")
}

func (a *App) runtimeOptions() core.Options {
	o := core.Options{
		PublicURL:          a.PublicURL,
		APIPrefix:          a.APIPrefix,
		PagesPrefix:        a.PagesPrefix,
		StoreDriver:        a.Store.Driver,
		StoreDSN:           a.Store.DSN,
		Secret:             a.Secret,
		SecretFile:         a.SecretFile,
		BootstrapAdmins:    a.BootstrapAdmins,
		PolicyPaths:        a.Policy,
		SessionLifetime:    time.Duration(a.SessionLifetime),
		SessionIdleTimeout: time.Duration(a.SessionIdleTimeout),
		SigningAlgorithm:   a.SigningAlgorithm,
		TokenAudiences:     a.TokenAudiences,
		MaxStaleness:       time.Duration(a.MaxStaleness),
		StoreTimeout:       time.Duration(a.StoreTimeout),
		Redis:              a.Redis,
		Logger:             a.logger,
	}
	if len(a.TokenLifetimes) > 0 {
		o.TokenLifetimes = map[string]time.Duration{}
		for kind, d := range a.TokenLifetimes {
			o.TokenLifetimes[kind] = time.Duration(d)
		}
	}
	if a.DevIdP != nil {
		cfg := &devidp.Config{}
		for _, u := range a.DevIdP.Users {
			cfg.Users = append(cfg.Users, devidp.User{Email: u.Email, Name: u.Name})
		}
		o.DevIdP = cfg
	} else {
		o.OIDC = identity.RPConfig{
			Issuer:       a.OIDC.Issuer,
			ClientID:     a.OIDC.ClientID,
			ClientSecret: a.OIDC.ClientSecret,
			Scopes:       a.OIDC.Scopes,
		}
	}
	if a.Notify != nil {
		for _, w := range a.Notify.Webhooks {
			o.Notify.Webhooks = append(o.Notify.Webhooks, notify.WebhookConfig{URL: w.URL, Secret: w.Secret})
		}
		if s := a.Notify.SMTP; s != nil {
			o.Notify.SMTP = &notify.SMTPConfig{Host: s.Host, Port: s.Port, Username: s.Username, Password: s.Password, From: s.From, TLS: s.TLS}
		}
	}
	return o
}

// Start runs the background workers (notification delivery, session sweeping).
func (a *App) Start() error {
	a.rt.Start()
	return nil
}

// Stop ends the background workers.
func (a *App) Stop() error {
	a.rt.Stop()
	return nil
}

// Cleanup releases what Provision opened.
func (a *App) Cleanup() error {
	if a.rt == nil {
		return nil
	}
	return a.rt.Close()
}

// Runtime is the shared state the handlers use.
func (a *App) Runtime() *core.Runtime { return a.rt }

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
