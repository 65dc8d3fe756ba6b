// Package core assembles Gatehouse's runtime from configuration — store,
// sessions, OIDC client, signing keys, policy engine, notifier — and offers the
// operations the guard and the API share: identify a request's subject, ask
// the policy, record audit events — and is the one place every change of
// authority is made (authority.go, settings.go, tokens.go). The guard, the
// actions, the API, the pages and the Caddy module import it; it imports no
// HTTP handler package.
package core

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/devidp"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/keys"
	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/notify"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/tokens"
)

// TokenAudience is the aud every Gatehouse API token carries.
const TokenAudience = "gatehouse"

// Runtime is the shared state of one loaded configuration.
type Runtime struct {
	PublicURL   *url.URL
	Secure      bool // cookies get Secure and the __Host- prefix
	APIPrefix   string
	PagesPrefix string

	Store       store.Store
	Sessions    *identity.Sessions
	providers   []*identity.RP // the OpenID providers, the configured order (providers.go)
	DevIdP      *devidp.Provider
	LoginSealer *keys.Sealer
	FlashSealer *keys.Sealer // a new token's string on its way to the page that shows it once (package pages)
	Keys        *keys.Ring
	Notify      notify.Config
	Logger      *zap.Logger

	bootstrapAdmins map[string]bool
	tokens          *tokens.Verifier
	tokenLifetimes  map[string]time.Duration
	tokenAudiences  []string
	maxStaleness    time.Duration
	fanout          *fanout
	revoked         revocations
	users           userCache
	usage           tokenUsage
	decisions       decisionCache
	denials         denialThrottle
	anomalies       *anomalies
	breakGlass      breakGlassGrants // the active emergency grants (breakglass.go)
	policyPaths     []string
	policyMu        sync.Mutex    // one policy build and switch at a time: settings, routes, files
	policyFiles     *policy.Files // the files the current policy was built from (policyMu)
	policySeen      string        // the digest, or error, of the files last looked at (policyMu)
	policySettings  Settings      // the settings the current policy was built with (policyMu)
	routesMu        sync.Mutex
	extraRoutes     map[string]policy.Route // the guards' model_routes and listing_routes
	policy          atomic.Pointer[policy.Engine]
	settingsRaw     atomic.Pointer[[]byte]
	quotas          quotas
	notifier        *notify.Worker
	assertions      assertionCache
	inflight        inflight
	metrics         *metrics.Set
	meter           *meter // shared with the store across reloads (shared.go)
	usageRetention  time.Duration

	opts         Options       // what Open opens
	opened       chan struct{} // closed once Open succeeded
	releaseStore func()        // gives the shared store back (shared.go)

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// New assembles the runtime from options that passed Validate, and has no
// side effects: it parses, and compiles the policy from its files and the
// built-in data, so that `caddy validate` reports a broken policy and writes
// nothing. The runtime serves requests once Open has opened the rest.
func New(ctx context.Context, o Options) (*Runtime, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	pub, err := url.Parse(o.PublicURL)
	if err != nil {
		return nil, fmt.Errorf("public_url: %w", err)
	}
	rt := &Runtime{
		PublicURL:       pub,
		Secure:          pub.Scheme == "https",
		APIPrefix:       o.APIPrefix,
		PagesPrefix:     o.PagesPrefix,
		Notify:          o.notifyConfig(),
		Logger:          o.Logger,
		opts:            o,
		opened:          make(chan struct{}),
		bootstrapAdmins: map[string]bool{},
		inflight:        inflight{wake: make(chan struct{}, 1)},
		users:           newUserCache(),
		decisions:       newDecisionCache(),
		denials:         newDenialThrottle(),
		anomalies:       newAnomalies(),
		assertions:      newAssertionCache(),
		meter:           new(meter),
	}
	for _, e := range o.BootstrapAdmins {
		rt.bootstrapAdmins[strings.ToLower(e)] = true
	}
	if o.Store != nil && o.Store.Driver == "sqlite" {
		if err := checkFilePath(o.Store.DSN); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	if o.Secret != "" {
		if _, err := keys.SecretFromString(o.Secret); err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
	} else if o.SecretFile != "" {
		if err := checkFilePath(o.SecretFile); err != nil {
			return nil, fmt.Errorf("secret_file: %w", err)
		}
	}
	rt.tokenLifetimes, _ = o.tokenLifetimes()
	rt.tokenAudiences = o.TokenAudiences
	rt.maxStaleness = time.Duration(o.MaxStaleness)
	if rt.maxStaleness <= 0 {
		rt.maxStaleness = 30 * time.Second
	}
	rt.metrics = rt.newMetrics(o.Redis != "")
	rt.usageRetention = time.Duration(o.UsageRetention)
	if rt.usageRetention <= 0 {
		rt.usageRetention = DefaultUsageRetention
	}

	rt.policyPaths = o.PolicyPaths
	if err := rt.readPolicyFiles(ctx); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return rt, nil
}

// Open opens what the runtime keeps outside the process — the store
// (migrated), the master secret (created when missing), the signing keys —
// and reads the revocation list and the settings, whose policy replaces the
// one New compiled. The Caddy app calls it from Start, never from Provision.
// Close gives back what it opened, even when it failed halfway.
func (rt *Runtime) Open(ctx context.Context) (err error) {
	o := rt.opts
	rt.Store, rt.meter, rt.releaseStore, err = acquireStore(ctx, o.Store.Driver, o.Store.DSN, time.Duration(o.StoreTimeout))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer func() {
		if err != nil {
			rt.release()
		}
	}()

	secret, err := loadSecret(o, rt.Logger)
	if err != nil {
		return err
	}
	rt.LoginSealer = secret.Sealer("login-state")
	rt.FlashSealer = secret.Sealer("token-flash")
	_, longest := o.tokenLifetimes()
	rt.Keys, err = keys.NewRing(ctx, rt.Store, secret.Sealer(keys.SigningKeyPurpose), rt.ringConfig(o, longest), time.Now)
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	if o.Redis != "" {
		if rt.fanout, err = newFanout(o.Redis); err != nil {
			return err
		}
	}
	rt.openQuotas()
	rt.tokens = tokens.NewVerifier(rt.Keys, tokens.VerifierConfig{Issuer: o.PublicURL, Audience: TokenAudience})
	if err := rt.syncRevocations(ctx); err != nil {
		return fmt.Errorf("revocation list: %w", err)
	}
	if err := rt.loadPolicy(ctx); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if err := rt.loadBreakGlass(ctx); err != nil {
		return err
	}

	rt.Sessions = identity.NewSessions(rt.Store, identity.SessionConfig{
		Lifetime:    time.Duration(o.SessionLifetime),
		IdleTimeout: time.Duration(o.SessionIdleTimeout),
		Secure:      rt.Secure,
	}, time.Now)
	if rt.providers, err = rt.relyingParties(o); err != nil {
		return err
	}
	rt.notifier = notify.NewWorker(rt.Notify, rt.Store, rt.Logger.Named("notify"), notify.WithResults(rt.metrics.Delivery))

	close(rt.opened)
	return nil
}

// Open is New and Open in one, for a runtime outside Caddy (tests, tools).
func Open(ctx context.Context, o Options) (*Runtime, error) {
	rt, err := New(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := rt.Open(ctx); err != nil {
		return nil, err
	}
	return rt, nil
}

// readyWait bounds how long a request waits for Open: Caddy starts its apps
// in no set order, so the HTTP server may take a request a moment before the
// gatehouse app has opened the runtime.
const readyWait = 5 * time.Second

// Ready waits until Open has succeeded, for at most readyWait, and is
// ErrUnavailable if it did not: a request is never decided without the
// store, the keys and the settings' policy.
func (rt *Runtime) Ready(ctx context.Context) error {
	select {
	case <-rt.opened:
		return nil
	default:
	}
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-rt.opened:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: gatehouse has not started: %v", ErrUnavailable, ctx.Err())
	case <-t.C:
		return fmt.Errorf("%w: gatehouse has not started", ErrUnavailable)
	}
}

func (rt *Runtime) isOpen() bool {
	select {
	case <-rt.opened:
		return true
	default:
		return false
	}
}

func openStore(ctx context.Context, driver, dsn string, timeout time.Duration) (store.Store, error) {
	switch driver {
	case "", "sqlite":
		st, err := store.OpenSQLite(ctx, dsn)
		if err != nil {
			return nil, err
		}
		st.SetCallTimeout(timeout)
		return st, nil
	case "postgres":
		st, err := store.OpenPostgres(ctx, dsn)
		if err != nil {
			return nil, err
		}
		st.SetCallTimeout(timeout)
		return st, nil
	}
	return nil, fmt.Errorf("unknown driver %q", driver)
}

func loadSecret(o Options, logger *zap.Logger) (*keys.Secret, error) {
	if o.Secret != "" {
		s, err := keys.SecretFromString(o.Secret)
		if err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
		return s, nil
	}
	if o.SecretFile == "" {
		return nil, errors.New("secret: set secret or secret_file")
	}
	s, created, err := keys.LoadOrCreateSecretFile(o.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("secret_file: %w", err)
	}
	if created {
		logger.Warn("generated a new master secret; keep this file private and back it up, or set `secret {env.GATEHOUSE_SECRET}`",
			zap.String("path", o.SecretFile))
	}
	return s, nil
}

// checkFilePath reports, without creating anything, why Open could not
// open or create the file at path: the path, or a directory on the way to it,
// is something else.
func checkFilePath(path string) error {
	info, err := os.Stat(path)
	switch {
	case err == nil && !info.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err // ENOTDIR: a file where a directory should be
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		info, err := os.Stat(dir)
		switch {
		case err == nil && !info.IsDir():
			return fmt.Errorf("%s is not a directory", dir)
		case err == nil:
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			return err
		case filepath.Dir(dir) == dir:
			return nil
		}
	}
}

// relyingParties are the OIDC clients of the configured providers, or of
// the development one, which it starts.
func (rt *Runtime) relyingParties(o Options) ([]*identity.RP, error) {
	if o.DevIdP != nil {
		cfg := identity.RPConfig{Name: DevIdPProvider, Title: "Development sign-in"}
		cfg.RedirectURL = o.PublicURL + o.APIPrefix + "/auth/callback"
		cfg.Logger = rt.Logger.Named("oidc")
		if err := rt.setUpDevIdP(o, &cfg); err != nil {
			return nil, err
		}
		return []*identity.RP{identity.NewRP(cfg)}, nil
	}
	var rps []*identity.RP
	for _, p := range o.Providers() {
		cfg := *p
		cfg.Name = ProviderName(p)
		cfg.RedirectURL = o.PublicURL + o.APIPrefix + "/auth/callback"
		cfg.Logger = rt.Logger.Named("oidc").With(zap.String("provider", cfg.Name))
		rps = append(rps, identity.NewRP(cfg))
	}
	return rps, nil
}

// setUpDevIdP starts the development provider and points the relying party
// at it in-process, so sign-in works whatever public_url resolves to here.
func (rt *Runtime) setUpDevIdP(o Options, rpCfg *identity.RPConfig) error {
	clientSecret := make([]byte, 24)
	if _, err := rand.Read(clientSecret); err != nil {
		return err
	}
	cfg := *o.DevIdP
	cfg.Issuer = o.PublicURL + "/dev-idp"
	cfg.Logger = rt.Logger.Named("dev_idp")
	cfg.Clients = []devidp.Client{{
		ID:                     "gatehouse",
		Secret:                 base64.RawURLEncoding.EncodeToString(clientSecret),
		RedirectURIs:           []string{rpCfg.RedirectURL},
		PostLogoutRedirectURIs: []string{o.PublicURL + "/"},
	}}
	p, err := devidp.New(cfg) // logs the loud development-only warning at every start
	if err != nil {
		return fmt.Errorf("dev_idp: %w", err)
	}
	rt.DevIdP = p
	rpCfg.Issuer = cfg.Issuer
	rpCfg.ClientID = cfg.Clients[0].ID
	rpCfg.ClientSecret = cfg.Clients[0].Secret
	rpCfg.Scopes = []string{"openid", "email", "profile"}
	rpCfg.HTTPClient = &http.Client{Transport: handlerTransport{p}, Timeout: 10 * time.Second}
	return nil
}

// handlerTransport answers HTTP requests with an in-process handler.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// IsBootstrapAdmin reports whether email was configured as bootstrap_admin.
func (rt *Runtime) IsBootstrapAdmin(email string) bool {
	return email != "" && rt.bootstrapAdmins[strings.ToLower(email)]
}

// Start runs the background workers of an open runtime until ctx ends (for
// the Caddy module, the context of its configuration, which ends when that is
// unloaded) or Stop.
func (rt *Runtime) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	rt.stop = cancel
	run := func(fn func(context.Context)) {
		rt.wg.Add(1)
		go func() {
			defer rt.wg.Done()
			fn(ctx)
		}()
	}
	if rt.fanout != nil {
		run(rt.listen)
		run(rt.publish)
		run(rt.watchFanout)
	}
	run(rt.notifier.Run)
	run(rt.watchInflight)
	run(rt.reportAnomalies)
	// What other instances change is re-read from the store: as a backstop
	// while Redis announces changes, often enough that they cross over within
	// a second otherwise (see fanout.go).
	for _, task := range []struct {
		withRedis, without time.Duration
		do                 func(context.Context)
	}{
		{pollRevocationsRedis, pollRevocations, rt.refreshRevocations},
		{2 * pollRevocationsRedis, pollRevocations, rt.reloadKeys},
		{2 * time.Second, time.Second, rt.checkSettings},
		{5 * time.Second, 5 * time.Second, rt.writeTokenUsage},
		{time.Minute, time.Minute, rt.followCreators},
		{10 * time.Minute, 10 * time.Minute, rt.sweepSessions},
		{time.Minute, time.Minute, rt.expireRequests},
		{elevationEvery, elevationEvery, rt.expireElevations},
		{countEvery, countEvery, rt.countForMetrics},
		{meterFlushEvery, meterFlushEvery, rt.flushUsage},
		{time.Second, time.Second, rt.checkUsageSpikes},
		{5 * time.Second, time.Second, rt.followBreakGlass},
	} {
		run(func(ctx context.Context) { rt.every(ctx, task.withRedis, task.without, task.do) })
	}
	// Old usage goes at start and then daily, so that a process restarted
	// every day still prunes.
	run(func(ctx context.Context) {
		rt.pruneUsage(ctx)
		rt.every(ctx, 24*time.Hour, 24*time.Hour, rt.pruneUsage)
	})
	if len(rt.policyPaths) > 0 {
		// `caddy reload` of an unchanged Caddyfile is "config is unchanged":
		// the runtime itself notices an edited policy file.
		run(func(ctx context.Context) { rt.every(ctx, time.Second, time.Second, rt.checkPolicyFiles) })
	}
}

// every calls do every withRedis while Redis announcements arrive, and every
// without otherwise, until ctx ends.
func (rt *Runtime) every(ctx context.Context, withRedis, without time.Duration, do func(context.Context)) {
	tick := min(withRedis, without)
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d := without
			if rt.fanoutHealthy() {
				d = withRedis
			}
			if now.Sub(last) < d-tick/2 {
				continue
			}
			last = now
			do(ctx)
		}
	}
}

// Stop ends the background workers, waits for them, and records the last
// token uses and the usage not yet written.
func (rt *Runtime) Stop() {
	if rt.stop != nil {
		rt.stop()
	}
	rt.wg.Wait()
	if rt.isOpen() {
		rt.writeTokenUsage(context.Background())
		rt.flushUsage(context.Background())
	}
}

// Close gives back the store and the Redis client: they close when no other
// runtime of this process (the next configuration) shares them. A runtime
// that was never opened (`caddy validate`) holds neither.
func (rt *Runtime) Close() error {
	rt.Stop()
	rt.release()
	return nil
}

func (rt *Runtime) release() {
	if rt.fanout != nil {
		rt.fanout.release()
		rt.fanout = nil
	}
	if rt.releaseStore != nil {
		rt.releaseStore()
		rt.releaseStore = nil
	}
}

// WakeNotifier asks for prompt delivery of freshly enqueued notifications.
func (rt *Runtime) WakeNotifier() { rt.notifier.Wake() }

func (rt *Runtime) sweepSessions(ctx context.Context) {
	if n, err := rt.Store.DeleteExpiredSessions(ctx, time.Now()); err != nil {
		rt.Logger.Warn("sweeping expired sessions", zap.Error(err))
	} else if n > 0 {
		rt.Logger.Debug("swept expired sessions", zap.Int("count", n))
	}
}
