package core

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/devidp"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/keys"
	"github.com/gatehouse/gatehouse/notify"
	"github.com/gatehouse/gatehouse/store"
)

// Options is the configuration the runtime is built from. Its JSON is the
// gatehouse app's, which the Caddyfile's gatehouse global option fills too.
type Options struct {
	// PublicURL is the URL users reach Gatehouse at; cookies are Secure when it is https.
	PublicURL string `json:"public_url,omitempty"`
	// Store selects the backend. Default: sqlite at ./data/gatehouse.db.
	Store *StoreConfig `json:"store,omitempty"`
	// Redis (redis://host:port/db) announces revocations, user changes, key
	// rotations and settings to the other instances at once.
	Redis string `json:"redis,omitempty"`
	// OIDC is the organisation's OpenID provider (the unnamed oidc block,
	// named "default").
	OIDC *identity.RPConfig `json:"oidc,omitempty"`
	// OIDCProviders are more providers, each with a name (oidc NAME { … }):
	// the sign-in page lets the person choose (spec §10).
	OIDCProviders []*identity.RPConfig `json:"oidc_providers,omitempty"`
	// DevIdP turns on the built-in development OpenID provider under /dev-idp.
	DevIdP *devidp.Config `json:"dev_idp,omitempty"`
	// BootstrapAdmins are emails approved as admin at their first sign-in.
	BootstrapAdmins []string `json:"bootstrap_admins,omitempty"`
	// PolicyPaths lists extra Rego files or directories that add to or replace the default policy.
	PolicyPaths []string `json:"policy,omitempty"`
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
	Notify *notify.Config `json:"notify,omitempty"`
	// SigningAlgorithm is ES256 (default), EdDSA or RS256.
	SigningAlgorithm string `json:"signing_algorithm,omitempty"`
	// KeyPrepublish is how long the next signing key is in the JWKS before
	// a rotation may make it sign (default 10m, keys.DefaultPrepublish). The
	// JWKS is served with max-age half of it, at most 5m.
	KeyPrepublish caddy.Duration `json:"key_prepublish,omitempty"`
	// TokenLifetimes caps API token lifetimes per kind (personal, user: 90d; system: 365d).
	TokenLifetimes map[string]caddy.Duration `json:"token_lifetimes,omitempty"`
	// TokenAudiences are extra aud values of API tokens (besides "gatehouse").
	TokenAudiences []string `json:"token_audiences,omitempty"`
	// MaxStaleness is the oldest revocation view with which bearer tokens are
	// still accepted (default 30s); past it they get 503.
	MaxStaleness caddy.Duration `json:"max_staleness,omitempty"`
	// StoreTimeout bounds every store call (default 2s, store.DefaultCallTimeout):
	// a store that hangs makes requests fail with 503 instead of waiting.
	StoreTimeout caddy.Duration `json:"store_timeout,omitempty"`
	// UsageRetention is how long per-minute usage is kept (default 90d,
	// DefaultUsageRetention); older minutes are deleted daily.
	UsageRetention caddy.Duration `json:"usage_retention,omitempty"`
	// RequestTTL is how long an access request waits for review (default
	// 30d, DefaultRequestTTL, at least 1h); past it the request expires.
	RequestTTL caddy.Duration `json:"request_ttl,omitempty"`
	// QuotaFailOpen lets requests through, logged at error, when the quota
	// counters cannot be reached; by default they are refused (503).
	QuotaFailOpen bool `json:"quota_fail_open,omitempty"`
	// BreakGlass says who may invoke emergency access besides the holders
	// of a sealed one-time code, with which role and for how long (spec §10).
	BreakGlass *BreakGlassConfig `json:"break_glass,omitempty"`

	// Logger is the app's, not configured.
	Logger *zap.Logger `json:"-"`
}

// StoreConfig names a store backend and its data source.
type StoreConfig struct {
	Driver string `json:"driver,omitempty"` // sqlite or postgres
	DSN    string `json:"dsn,omitempty"`    // a file path for sqlite, a URL for postgres
}

// Validate rejects a driver Gatehouse has no backend for.
func (c *StoreConfig) Validate() error {
	switch c.Driver {
	case "sqlite":
	case "postgres":
		if c.DSN == "" {
			return errors.New("postgres needs a connection URL")
		}
	default:
		return fmt.Errorf("unknown driver %q (supported: sqlite, postgres)", c.Driver)
	}
	return nil
}

// ExpandPlaceholders passes each configured string through expand.
func (c *StoreConfig) ExpandPlaceholders(expand func(string) string) {
	c.Driver = expand(c.Driver)
	c.DSN = expand(c.DSN)
}

// ExpandPlaceholders passes each configured string through expand, down to
// the provider's and the notifiers'.
func (o *Options) ExpandPlaceholders(expand func(string) string) {
	for _, s := range []*string{&o.PublicURL, &o.Redis, &o.Secret, &o.SecretFile, &o.APIPrefix, &o.PagesPrefix, &o.SigningAlgorithm} {
		*s = expand(*s)
	}
	for _, list := range [][]string{o.BootstrapAdmins, o.PolicyPaths, o.TokenAudiences} {
		for i := range list {
			list[i] = expand(list[i])
		}
	}
	if o.Store != nil {
		o.Store.ExpandPlaceholders(expand)
	}
	for _, p := range o.Providers() {
		p.ExpandPlaceholders(expand)
	}
	if o.DevIdP != nil {
		o.DevIdP.ExpandPlaceholders(expand)
	}
	if o.Notify != nil {
		o.Notify.ExpandPlaceholders(expand)
	}
	if o.BreakGlass != nil {
		o.BreakGlass.ExpandPlaceholders(expand)
	}
}

// Validate rejects options Gatehouse cannot run with, naming the directive.
// It expects the defaults applied (the gatehouse app does that first), and
// Open expects options that passed it.
func (o *Options) Validate() error {
	for _, check := range []func() error{
		o.validatePublicURL,
		o.validateStore,
		o.validateRedis,
		o.validateProvider,
		o.validatePrefixes,
		o.validateSessions,
		o.validateTokens,
		o.validateTimeouts,
		o.validateSecret,
		o.validateNotify,
		o.validateBreakGlass,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (o *Options) validatePublicURL() error {
	u, err := url.Parse(o.PublicURL)
	switch {
	case o.PublicURL == "":
		return errors.New("public_url is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("public_url %q must be an absolute http(s) URL", o.PublicURL)
	case u.Path != "" && u.Path != "/":
		return fmt.Errorf("public_url %q must not have a path", o.PublicURL)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.HasSuffix(o.PublicURL, "?") || strings.Contains(o.PublicURL, "#"):
		return fmt.Errorf("public_url %q must be only a scheme and a host", o.PublicURL)
	}
	return nil
}

func (o *Options) validateStore() error {
	if o.Store == nil {
		return errors.New("store: not configured")
	}
	if err := o.Store.Validate(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if o.Store.Driver == "postgres" && o.Secret == "" && o.SecretFile == "" {
		return errors.New("secret is required with store postgres (every instance needs the same one)")
	}
	return nil
}

func (o *Options) validateRedis() error {
	if o.Redis == "" {
		return nil
	}
	if _, err := redis.ParseURL(o.Redis); err != nil {
		return fmt.Errorf("redis: %v", err)
	}
	return nil
}

// DefaultProvider is the name of the unnamed oidc block, and of dev_idp.
const DefaultProvider = "default"

// Providers are the configured OpenID providers, the unnamed one first.
func (o *Options) Providers() []*identity.RPConfig {
	var out []*identity.RPConfig
	if o.OIDC != nil {
		out = append(out, o.OIDC)
	}
	return append(out, o.OIDCProviders...)
}

// validProviderName is a name fit for ?idp= and a page: lower-case letters,
// digits, - and _, at most 32.
func validProviderName(n string) bool {
	if n == "" || len(n) > 32 {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validateProvider requires dev_idp or at least one oidc provider, each
// named once and each with an issuer of its own: users are keyed by
// (issuer, subject), so two providers of one issuer would share people.
func (o *Options) validateProvider() error {
	providers := o.Providers()
	switch {
	case o.DevIdP != nil && len(providers) > 0:
		return errors.New("dev_idp and oidc are both configured: dev_idp would replace the real provider; keep one")
	case o.DevIdP != nil:
		if err := o.DevIdP.Validate(); err != nil {
			return fmt.Errorf("dev_idp: %w", err)
		}
		return nil
	case len(providers) == 0:
		return errors.New("oidc is required (or dev_idp for trying Gatehouse out)")
	}
	names, issuers := map[string]bool{}, map[string]string{}
	for _, p := range providers {
		name, directive := ProviderName(p), "oidc "+p.Name
		if p.Name == "" {
			directive = "oidc"
		}
		if !validProviderName(name) {
			return fmt.Errorf("%s: a provider's name is 1 to 32 of a-z, 0-9, - and _", directive)
		}
		if names[name] {
			return fmt.Errorf("%s: configured twice", directive)
		}
		names[name] = true
		if err := p.Validate(); err != nil {
			return fmt.Errorf("%s: %w", directive, err)
		}
		if other, ok := issuers[p.Issuer]; ok {
			return fmt.Errorf("%s: issuer %s is oidc %s's too; people are known by issuer and subject, so each provider needs its own issuer", directive, p.Issuer, other)
		}
		issuers[p.Issuer] = name
	}
	return nil
}

// ProviderName is p's name; the unnamed oidc block's is DefaultProvider.
func ProviderName(p *identity.RPConfig) string {
	if p.Name == "" {
		return DefaultProvider
	}
	return p.Name
}

func (o *Options) validatePrefixes() error {
	for _, p := range []struct{ name, v string }{{"api_prefix", o.APIPrefix}, {"pages_prefix", o.PagesPrefix}} {
		if !validPrefix(p.v) {
			return fmt.Errorf("%s %q must be a path like /api: letters, digits, - _ . / only, starting with / and not ending with /", p.name, p.v)
		}
		if within(p.v, "/dev-idp") || within(p.v, "/.well-known") {
			return fmt.Errorf("%s %q clashes with /dev-idp or /.well-known", p.name, p.v)
		}
	}
	if within(o.APIPrefix, o.PagesPrefix) || within(o.PagesPrefix, o.APIPrefix) {
		return errors.New("api_prefix and pages_prefix must not contain one another")
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

func (o *Options) validateSessions() error {
	if o.SessionLifetime < 0 || o.SessionIdleTimeout < 0 {
		return errors.New("session_lifetime and session_idle_timeout must not be negative")
	}
	if o.SessionLifetime > 0 && o.SessionIdleTimeout > o.SessionLifetime {
		return errors.New("session_idle_timeout must not exceed session_lifetime")
	}
	return nil
}

// validateTokens checks how API tokens are signed and how long they may live.
func (o *Options) validateTokens() error {
	switch o.SigningAlgorithm {
	case "ES256", "EdDSA", "RS256":
	default:
		return fmt.Errorf("signing_algorithm %q: use ES256, EdDSA or RS256", o.SigningAlgorithm)
	}
	for kind, d := range o.TokenLifetimes {
		if kind != store.TokenPersonal && kind != store.TokenUser && kind != store.TokenSystem {
			return fmt.Errorf("token_lifetime: unknown token kind %q", kind)
		}
		if d < caddy.Duration(time.Minute) {
			return fmt.Errorf("token_lifetime %s must be at least 1m", kind)
		}
	}
	if o.KeyPrepublish != 0 && o.KeyPrepublish < caddy.Duration(keys.MinPrepublish) {
		return fmt.Errorf("key_prepublish %s is too short: the next key must be in the JWKS for the max-age it is served with (half of key_prepublish, at least 1s) plus the second other instances take to publish it; use at least %s",
			time.Duration(o.KeyPrepublish), keys.MinPrepublish)
	}
	return nil
}

func (o *Options) validateTimeouts() error {
	if o.StoreTimeout < 0 || o.StoreTimeout > caddy.Duration(time.Minute) {
		return errors.New("store_timeout must be between 1ms and 1m")
	}
	if o.UsageRetention != 0 && o.UsageRetention < caddy.Duration(24*time.Hour) {
		return errors.New("usage_retention must be at least 1d")
	}
	if o.RequestTTL != 0 && o.RequestTTL < caddy.Duration(time.Hour) {
		return errors.New("request_ttl must be at least 1h")
	}
	if o.MaxStaleness != 0 && o.MaxStaleness < caddy.Duration(15*time.Second) {
		// The store is re-read every 0.5 s, or every 5 s with Redis: a smaller
		// bound would refuse good tokens between two reads.
		return errors.New("max_staleness must be at least 15s")
	}
	return nil
}

func (o *Options) validateSecret() error {
	if o.Secret != "" && len(o.Secret) < 32 {
		return errors.New("secret must be at least 32 characters")
	}
	return nil
}

func (o *Options) validateNotify() error {
	if o.Notify == nil {
		return nil
	}
	if err := o.Notify.Validate(); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

func (o *Options) validateBreakGlass() error {
	if o.BreakGlass == nil {
		return nil
	}
	if err := o.BreakGlass.Validate(); err != nil {
		return fmt.Errorf("break_glass: %w", err)
	}
	return nil
}

// BreakGlassConfig is the break_glass block: the people who may invoke
// emergency access without a sealed code, the role it grants and for how
// long (break_glass_ttl of the spec).
type BreakGlassConfig struct {
	// Users are the emails of the named users.
	Users []string `json:"users,omitempty"`
	// Role is the role granted (default admin, DefaultBreakGlassRole).
	Role string `json:"role,omitempty"`
	// TTL is how long a grant lasts (default 1h, DefaultBreakGlassTTL; at
	// most MaxBreakGlassTTL).
	TTL caddy.Duration `json:"ttl,omitempty"`
}

// Validate rejects a grant longer than MaxBreakGlassTTL and users that are
// not email addresses.
func (c *BreakGlassConfig) Validate() error {
	if c.TTL < 0 || (c.TTL > 0 && c.TTL < caddy.Duration(time.Minute)) || c.TTL > caddy.Duration(MaxBreakGlassTTL) {
		return fmt.Errorf("ttl %s must be between 1m and %s", time.Duration(c.TTL), MaxBreakGlassTTL)
	}
	for _, u := range c.Users {
		if !strings.Contains(u, "@") {
			return fmt.Errorf("user %q must be an email address", u)
		}
	}
	return nil
}

// ExpandPlaceholders passes each configured string through expand.
func (c *BreakGlassConfig) ExpandPlaceholders(expand func(string) string) {
	c.Role = expand(c.Role)
	for i := range c.Users {
		c.Users[i] = expand(c.Users[i])
	}
}

// tokenLifetimes is the longest life of each token kind — the defaults, as
// token_lifetime overrides them — and the longest of them all.
func (o *Options) tokenLifetimes() (lifetimes map[string]time.Duration, longest time.Duration) {
	lifetimes = map[string]time.Duration{
		store.TokenPersonal: 90 * 24 * time.Hour,
		store.TokenUser:     90 * 24 * time.Hour,
		store.TokenSystem:   365 * 24 * time.Hour,
	}
	for kind, d := range o.TokenLifetimes {
		lifetimes[kind] = time.Duration(d)
	}
	for _, d := range lifetimes {
		longest = max(longest, d)
	}
	return lifetimes, longest
}

// notifyConfig is the notifiers' configuration, with what the links in
// their messages need.
func (o *Options) notifyConfig() notify.Config {
	var c notify.Config
	if o.Notify != nil {
		c = *o.Notify
	}
	c.PublicURL = o.PublicURL
	c.RequestAccessPath = o.PagesPrefix + "/request-access"
	return c
}
