// Package identity is Gatehouse's browser identity layer: the OpenID Connect
// relying party that signs people in at the configured IdP, the sealed cookie
// that carries a login between /api/auth/login and /api/auth/callback, and the
// server-side sessions that follow a successful sign-in. core, guard, api
// and the module root import it; it imports only store and internal/lru.
package identity

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

var (
	// ErrProviderUnavailable means the IdP could not be reached or answered
	// unusably (discovery, token endpoint, userinfo). Callers answer 503.
	ErrProviderUnavailable = errors.New("identity provider unavailable")
	// ErrLoginRejected means the sign-in itself is not acceptable: the IdP
	// refused the code or verifier, or the ID token failed verification
	// (signature, iss, aud, exp, nonce). Callers send the person back to log in.
	ErrLoginRejected = errors.New("login rejected")
	// ErrMisconfigured means the IdP answered, and its answer says Gatehouse's
	// registration is wrong: the issuer differs from the configured one (a
	// trailing slash, say) or the IdP refused the client credentials. Signing
	// in can never work until the operator fixes it. Callers log the cause at
	// error and tell the person that sign-in is misconfigured.
	ErrMisconfigured = errors.New("sign-in is misconfigured")
)

// misconfiguration names what is wrong with the registration when err says
// so, or returns "".
func misconfiguration(err error) string {
	if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok {
		switch re.ErrorCode {
		case "invalid_client", "unauthorized_client":
			return "the identity provider refused the client credentials (" + re.ErrorCode + "): check oidc client_id and client_secret"
		}
		if re.Response != nil && re.Response.StatusCode == http.StatusUnauthorized {
			return "the identity provider refused the client credentials (401 at the token endpoint): check oidc client_id and client_secret"
		}
		return ""
	}
	// go-oidc has no error types for discovery; these are its messages.
	msg := err.Error()
	switch {
	case strings.Contains(msg, "did not match the issuer URL returned by provider"):
		return "the issuer the identity provider names differs from oidc issuer (" + msg + "); configure it exactly, trailing slash included"
	case strings.HasPrefix(msg, "404 "):
		return "the identity provider has no discovery document at oidc issuer + /.well-known/openid-configuration (404): check the issuer URL"
	}
	return ""
}

const (
	// discoveryRetryInterval keeps a down IdP from being hammered by every
	// request that needs it: failures are remembered this long.
	discoveryRetryInterval = 5 * time.Second
	// discoveryTimeout bounds one discovery attempt when the configured client
	// has no timeout of its own, so waiters are never stuck behind it.
	discoveryTimeout   = 10 * time.Second
	loginStateLifetime = 10 * time.Minute
)

// RPConfig configures the relying party. Its JSON is Gatehouse's
// registration at the organisation's provider, as configured (the oidc
// block); the fields without a JSON key are filled in by the runtime.
type RPConfig struct {
	// Name picks the provider in /api/auth/login?idp=NAME and names it on
	// the user record; the unnamed oidc block is "default".
	Name string `json:"name,omitempty"`
	// Title is what the sign-in page's chooser shows; default: Name.
	Title        string `json:"title,omitempty"`
	Issuer       string `json:"issuer,omitempty"`
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	// Scopes requested at the IdP; default "openid email profile".
	Scopes []string `json:"scopes,omitempty"`

	RedirectURL string `json:"-"`
	// HTTPClient is used for discovery, JWKS, the token and userinfo
	// endpoints; nil means a client with a 10 s timeout.
	HTTPClient *http.Client `json:"-"`
	Logger     *zap.Logger  `json:"-"`
}

// Validate reports a registration that cannot sign anyone in.
func (c *RPConfig) Validate() error {
	if c.Issuer == "" {
		return errors.New("issuer is required")
	}
	if c.ClientID == "" {
		return errors.New("client_id is required")
	}
	return nil
}

// ExpandPlaceholders passes each configured string through expand.
func (c *RPConfig) ExpandPlaceholders(expand func(string) string) {
	c.Name = expand(c.Name)
	c.Title = expand(c.Title)
	c.Issuer = expand(c.Issuer)
	c.ClientID = expand(c.ClientID)
	c.ClientSecret = expand(c.ClientSecret)
	for i := range c.Scopes {
		c.Scopes[i] = expand(c.Scopes[i])
	}
}

// RP is an OpenID Connect relying party using the authorization-code flow
// with PKCE. It is safe for concurrent use.
type RP struct {
	cfg    RPConfig
	client *http.Client
	log    *zap.Logger
	now    func() time.Time

	// found is set once discovery has succeeded and never changes after.
	found atomic.Pointer[discovered]

	mu          sync.Mutex
	inflight    chan struct{} // closed when the running discovery attempt ends
	lastAttempt time.Time
	lastErr     error
}

// discovered is everything learnt from the IdP's discovery document.
type discovered struct {
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	jwksURI    string // the IdP's keys, fetched afresh to check a logout hint
	oauth      oauth2.Config
	endSession string
}

// NewRP returns a relying party. It does no network I/O, so an IdP that is
// down while Gatehouse starts does not stop it from starting; discovery happens
// on first use.
func NewRP(cfg RPConfig) *RP {
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &RP{cfg: cfg, client: client, log: log, now: time.Now}
}

// Name is the provider's name (RPConfig.Name).
func (rp *RP) Name() string { return rp.cfg.Name }

// Title is what the sign-in page shows for the provider.
func (rp *RP) Title() string {
	if rp.cfg.Title != "" {
		return rp.cfg.Title
	}
	return rp.cfg.Name
}

// Issuer is the provider's configured issuer.
func (rp *RP) Issuer() string { return rp.cfg.Issuer }

// Ready performs discovery, or reuses a successful one, and reports whether
// the IdP can be used.
func (rp *RP) Ready(ctx context.Context) error {
	_, err := rp.discover(ctx)
	return err
}

// discover returns the discovery result, running at most one attempt at a
// time and at most one every discoveryRetryInterval; concurrent callers wait
// for the running attempt instead of starting their own.
func (rp *RP) discover(ctx context.Context) (*discovered, error) {
	if d := rp.found.Load(); d != nil {
		return d, nil
	}
	for {
		rp.mu.Lock()
		if d := rp.found.Load(); d != nil {
			rp.mu.Unlock()
			return d, nil
		}
		if wait := rp.inflight; wait != nil {
			rp.mu.Unlock()
			select {
			case <-wait:
				rp.mu.Lock()
				err := rp.lastErr
				rp.mu.Unlock()
				if d := rp.found.Load(); d != nil {
					return d, nil
				}
				return nil, err
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %w", ErrProviderUnavailable, ctx.Err())
			}
		}
		if rp.lastErr != nil && rp.now().Sub(rp.lastAttempt) < discoveryRetryInterval {
			err := rp.lastErr
			rp.mu.Unlock()
			return nil, err
		}
		done := make(chan struct{})
		rp.inflight = done
		rp.lastAttempt = rp.now()
		rp.mu.Unlock()

		// The attempt runs detached from the caller that happened to start it,
		// so one impatient request cannot fail discovery for everyone waiting.
		go rp.attemptDiscovery(context.WithoutCancel(ctx), done)
	}
}

func (rp *RP) attemptDiscovery(ctx context.Context, done chan struct{}) {
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	d, err := rp.newDiscovered(ctx)

	rp.mu.Lock()
	defer rp.mu.Unlock()
	var cause string
	if err != nil {
		cause = misconfiguration(err)
	}
	switch {
	case cause != "":
		rp.lastErr = fmt.Errorf("%w: discovery at %s: %s", ErrMisconfigured, rp.cfg.Issuer, cause)
		rp.log.Error("OpenID provider misconfigured: sign-in cannot work until this is fixed",
			zap.String("issuer", rp.cfg.Issuer), zap.String("cause", cause), zap.Error(err))
	case err != nil:
		rp.lastErr = fmt.Errorf("%w: discovery at %s: %w", ErrProviderUnavailable, rp.cfg.Issuer, err)
		rp.log.Warn("OpenID provider discovery failed; retrying on demand",
			zap.String("issuer", rp.cfg.Issuer), zap.Error(err))
	default:
		rp.lastErr = nil
		rp.found.Store(d)
		rp.log.Info("OpenID provider discovered", zap.String("issuer", rp.cfg.Issuer))
	}
	rp.inflight = nil
	close(done)
}

func (rp *RP) newDiscovered(ctx context.Context) (*discovered, error) {
	// The client in the context is kept by the provider for JWKS fetches too.
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, rp.client), rp.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var meta struct {
		EndSessionEndpoint string `json:"end_session_endpoint"`
		JWKSURI            string `json:"jwks_uri"`
	}
	if err := provider.Claims(&meta); err != nil {
		return nil, fmt.Errorf("read discovery metadata: %w", err)
	}
	return &discovered{
		provider: provider,
		verifier: provider.Verifier(&oidc.Config{ClientID: rp.cfg.ClientID}),
		oauth: oauth2.Config{
			ClientID:     rp.cfg.ClientID,
			ClientSecret: rp.cfg.ClientSecret,
			RedirectURL:  rp.cfg.RedirectURL,
			Endpoint:     provider.Endpoint(),
			Scopes:       rp.cfg.Scopes,
		},
		endSession: meta.EndSessionEndpoint,
		jwksURI:    meta.JWKSURI,
	}, nil
}

// LoginState is what the callback needs to finish a login begun by Begin.
type LoginState struct {
	Provider string // the name of the provider the login was begun at
	// StepUp is what the sign-in must prove (acr, amr, a fresh
	// authentication), when it was begun to step up; nil otherwise.
	StepUp   *StepUp
	State    string
	Nonce    string
	Verifier string // PKCE code verifier
	Redirect string // local path to send the person to afterwards
	Expires  time.Time
}

// StepUp is an authentication context a sign-in is asked for (spec §10):
// one of ACR (sent as acr_values), every AMR value, and an authentication at
// most MaxAge old (sent as max_age, with prompt=login so the provider asks
// again).
type StepUp struct {
	Rule   string        `json:"rule,omitempty"`
	ACR    []string      `json:"acr,omitempty"`
	AMR    []string      `json:"amr,omitempty"`
	MaxAge time.Duration `json:"max_age,omitempty"`
}

// Satisfied reports whether auth meets s at now; the reason names what is
// missing.
func (s *StepUp) Satisfied(acr string, amr []string, authTime, now time.Time) (bool, string) {
	if s == nil {
		return true, ""
	}
	if len(s.ACR) > 0 && !slices.Contains(s.ACR, acr) {
		return false, "an authentication of class " + strings.Join(s.ACR, " or ")
	}
	for _, m := range s.AMR {
		if !slices.Contains(amr, m) {
			return false, "an authentication with " + strings.Join(s.AMR, " and ")
		}
	}
	if s.MaxAge > 0 && (authTime.IsZero() || now.Sub(authTime) > s.MaxAge+maxAgeSkew) {
		return false, "a sign-in within the last " + s.MaxAge.String()
	}
	return true, ""
}

// maxAgeSkew is how much the provider's clock may differ from ours.
const maxAgeSkew = 30 * time.Second

// Begin starts a login: it returns the IdP's authorization URL and the state
// to keep (sealed) until the callback. redirect is made safe with
// SafeRedirect. A step-up asks the provider for its authentication context.
func (rp *RP) Begin(ctx context.Context, redirect string, stepUp *StepUp) (string, LoginState, error) {
	d, err := rp.discover(ctx)
	if err != nil {
		return "", LoginState{}, err
	}
	ls := LoginState{
		Provider: rp.cfg.Name,
		State:    randomToken(),
		Nonce:    randomToken(),
		Verifier: oauth2.GenerateVerifier(),
		Redirect: SafeRedirect(redirect),
		Expires:  rp.now().Add(loginStateLifetime).Truncate(time.Second).UTC(), // the cookie keeps whole seconds
	}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(ls.Nonce), oauth2.S256ChallengeOption(ls.Verifier)}
	if stepUp != nil {
		ls.StepUp = stepUp
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"))
		if len(stepUp.ACR) > 0 {
			opts = append(opts, oauth2.SetAuthURLParam("acr_values", strings.Join(stepUp.ACR, " ")))
		}
		if stepUp.MaxAge > 0 {
			opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(int64(stepUp.MaxAge/time.Second), 10)))
		}
	}
	authURL := d.oauth.AuthCodeURL(ls.State, opts...)
	return authURL, ls, nil
}

// Claims is the verified identity of a person who signed in.
type Claims struct {
	Issuer, Subject string
	// Email is set only when the IdP says it is verified.
	Email         string
	EmailVerified bool
	Name          string
	RawIDToken    string
	// Raw are every claim of the ID token and of userinfo (the ID token's
	// win), for the sign-in rules: groups, roles, any claim.
	Raw map[string]any
	// ACR, AMR and AuthTime are how the provider authenticated the person
	// (the ID token's acr, amr and auth_time, else its iat).
	ACR      string
	AMR      []string
	AuthTime time.Time
}

// profileClaims are the standard claims Gatehouse reads from the ID token
// and, when they are missing there, from the userinfo endpoint.
type profileClaims struct {
	Subject           string          `json:"sub"`
	ACR               string          `json:"acr"`
	AMR               flexibleStrings `json:"amr"`
	AuthTime          int64           `json:"auth_time"`
	Email             string          `json:"email"`
	EmailVerified     flexibleBool    `json:"email_verified"`
	Name              string          `json:"name"`
	PreferredUsername string          `json:"preferred_username"`
}

// complete reports whether nothing Gatehouse uses is missing.
func (p profileClaims) complete() bool {
	return p.Email != "" && (strings.TrimSpace(p.Name) != "" || p.PreferredUsername != "")
}

// Finish completes a login at the callback: it exchanges code with the PKCE
// verifier, verifies the ID token (signature, iss, aud, exp via go-oidc) and
// its nonce, and returns the person's claims. Errors wrap ErrLoginRejected or
// ErrProviderUnavailable.
func (rp *RP) Finish(ctx context.Context, ls LoginState, code string) (Claims, error) {
	d, err := rp.discover(ctx)
	if err != nil {
		return Claims{}, err
	}
	ctx = oidc.ClientContext(ctx, rp.client)

	token, err := d.oauth.Exchange(ctx, code, oauth2.VerifierOption(ls.Verifier))
	if err != nil {
		if cause := misconfiguration(err); cause != "" {
			rp.log.Error("OpenID provider misconfigured: sign-in cannot work until this is fixed",
				zap.String("issuer", rp.cfg.Issuer), zap.String("cause", cause), zap.Error(err))
			return Claims{}, fmt.Errorf("%w: code exchange: %s", ErrMisconfigured, cause)
		}
		if _, refused := errors.AsType[*oauth2.RetrieveError](err); refused {
			return Claims{}, fmt.Errorf("%w: code exchange: %w", ErrLoginRejected, err)
		}
		return Claims{}, fmt.Errorf("%w: code exchange: %w", ErrProviderUnavailable, err)
	}
	rawIDToken, ok := token.Extra("id_token").(string)
	if !ok || rawIDToken == "" {
		return Claims{}, fmt.Errorf("%w: token response has no id_token", ErrLoginRejected)
	}
	idToken, err := d.verifier.Verify(ctx, rawIDToken)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: verify ID token: %w", ErrLoginRejected, err)
	}
	if ls.Nonce == "" || subtle.ConstantTimeCompare([]byte(idToken.Nonce), []byte(ls.Nonce)) != 1 {
		return Claims{}, fmt.Errorf("%w: ID token nonce does not match the login", ErrLoginRejected)
	}
	if idToken.AccessTokenHash != "" {
		if err := idToken.VerifyAccessToken(token.AccessToken); err != nil {
			return Claims{}, fmt.Errorf("%w: verify at_hash: %w", ErrLoginRejected, err)
		}
	}

	var pc profileClaims
	raw := map[string]any{}
	if err := idToken.Claims(&pc); err != nil {
		return Claims{}, fmt.Errorf("%w: decode ID token claims: %w", ErrLoginRejected, err)
	}
	if err := idToken.Claims(&raw); err != nil {
		return Claims{}, fmt.Errorf("%w: decode ID token claims: %w", ErrLoginRejected, err)
	}
	// Many IdPs put profile and email claims, and groups, only in userinfo
	// once an access token is issued (OIDC Core 5.4), so read it too. The
	// profile cannot do without it when the ID token lacks a part of it;
	// otherwise a userinfo that fails only leaves its extra claims out.
	if d.provider.UserInfoEndpoint() != "" && token.AccessToken != "" {
		err := rp.fillFromUserInfo(ctx, d, token, idToken.Subject, &pc, raw)
		switch {
		case err != nil && !pc.complete():
			return Claims{}, err
		case err != nil:
			rp.log.Warn("userinfo failed; signing in with the ID token's claims alone", zap.String("issuer", rp.cfg.Issuer), zap.Error(err))
		}
	}

	claims := pc.claims()
	claims.Issuer, claims.Subject, claims.RawIDToken, claims.Raw = idToken.Issuer, idToken.Subject, rawIDToken, raw
	claims.ACR, claims.AMR, claims.AuthTime = pc.ACR, []string(pc.AMR), idToken.IssuedAt
	if pc.AuthTime > 0 {
		claims.AuthTime = time.Unix(pc.AuthTime, 0)
	}
	claims.AuthTime = claims.AuthTime.UTC()
	return claims, nil
}

// claims applies Gatehouse's rules to the IdP's claims: the email only when
// verified, and a display name falling back to preferred_username, then the
// verified email. An unverified address is not used as a name either: it
// would show reviewers an identity nobody has confirmed.
func (pc profileClaims) claims() Claims {
	c := Claims{EmailVerified: bool(pc.EmailVerified)}
	if c.EmailVerified {
		c.Email = pc.Email
	}
	switch {
	case strings.TrimSpace(pc.Name) != "":
		c.Name = strings.TrimSpace(pc.Name)
	case pc.PreferredUsername != "":
		c.Name = pc.PreferredUsername
	default:
		c.Name = c.Email
	}
	return c
}

// fillFromUserInfo fills the gaps of pc from userinfo, and adds its claims
// that raw (the ID token's) does not have.
func (rp *RP) fillFromUserInfo(ctx context.Context, d *discovered, token *oauth2.Token, subject string, pc *profileClaims, raw map[string]any) error {
	info, err := d.provider.UserInfo(ctx, oauth2.StaticTokenSource(token))
	if err != nil {
		return fmt.Errorf("%w: userinfo: %w", ErrProviderUnavailable, err)
	}
	var fromInfo profileClaims
	if err := info.Claims(&fromInfo); err != nil {
		return fmt.Errorf("%w: decode userinfo: %w", ErrProviderUnavailable, err)
	}
	// OIDC Core 5.3.2: userinfo about someone else must not be used.
	if fromInfo.Subject != subject {
		return fmt.Errorf("%w: userinfo subject does not match the ID token", ErrLoginRejected)
	}
	var infoRaw map[string]any
	if err := info.Claims(&infoRaw); err == nil {
		for k, v := range infoRaw {
			if _, ok := raw[k]; !ok {
				raw[k] = v
			}
		}
	}
	if pc.Email == "" {
		pc.Email, pc.EmailVerified = fromInfo.Email, fromInfo.EmailVerified
	}
	if strings.TrimSpace(pc.Name) == "" {
		pc.Name = fromInfo.Name
	}
	if pc.PreferredUsername == "" {
		pc.PreferredUsername = fromInfo.PreferredUsername
	}
	return nil
}

// EndSessionURL returns the IdP's RP-initiated logout URL, or "" when the IdP
// does not offer one or cannot be discovered.
func (rp *RP) EndSessionURL(ctx context.Context, idTokenHint, postLogoutRedirect string) string {
	d, err := rp.discover(ctx)
	if err != nil || d.endSession == "" {
		return ""
	}
	u, err := url.Parse(d.endSession)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("client_id", rp.cfg.ClientID)
	if idTokenHint != "" && rp.hintUsable(ctx, d, idTokenHint) {
		q.Set("id_token_hint", idTokenHint)
	}
	if postLogoutRedirect != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirect)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// hintUsable reports whether the IdP will still accept hint as an
// id_token_hint: signed with a key it publishes now, and not expired. An IdP
// that rotated its keys, or one that refuses expired hints, answers a stale
// hint with its own error page instead of signing the person out, so a stale
// hint is left out and client_id alone names Gatehouse. The keys are fetched
// afresh (one request per sign-out): the verifier's cached set would still
// hold the key the IdP has dropped.
func (rp *RP) hintUsable(ctx context.Context, d *discovered, hint string) bool {
	if d.jwksURI == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, rp.client), discoveryTimeout)
	defer cancel()
	current := oidc.NewVerifier(rp.cfg.Issuer, oidc.NewRemoteKeySet(ctx, d.jwksURI),
		&oidc.Config{ClientID: rp.cfg.ClientID, SkipExpiryCheck: true})
	tok, err := current.Verify(ctx, hint)
	if err != nil {
		rp.log.Info("leaving a stale id_token_hint out of the logout", zap.Error(err))
		return false
	}
	if !tok.Expiry.IsZero() && !rp.now().Before(tok.Expiry) {
		rp.log.Info("leaving an expired id_token_hint out of the logout", zap.Time("exp", tok.Expiry))
		return false
	}
	return true
}

// SafeRedirect returns rd when it is a path on this site, else "/". It guards
// the login's rd parameter against open redirects: rd must start with exactly
// one "/" (not "//" or "/\", which browsers read as another host), have no
// scheme or host, and hold no control characters or backslashes. These checks
// also apply to rd percent-decoded (repeatedly), so "/%2F%2Fevil.example" is
// refused: it is harmless as a Location header itself, but a backend that
// decodes the path and redirects again would turn it into "//evil.example".
func SafeRedirect(rd string) string {
	for s, round := rd, 0; ; round++ {
		if !isLocalPath(s) {
			return "/"
		}
		next, err := url.PathUnescape(s)
		if err != nil {
			return "/"
		}
		if next == s {
			break
		}
		if round == 3 {
			return "/" // encoded deeper than any real link would be
		}
		s = next
	}
	u, err := url.Parse(rd)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	return rd
}

func isLocalPath(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	if len(p) > 1 && (p[1] == '/' || p[1] == '\\') {
		return false
	}
	for _, r := range p {
		// Browsers drop tabs and newlines from URLs, so "/\t/evil" is "//evil".
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\\' || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

// randomToken returns 32 random bytes, base64url without padding.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// flexibleStrings reads a list of strings that some IdPs send as one string.
type flexibleStrings []string

func (f *flexibleStrings) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case string:
		*f = strings.Fields(v)
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				*f = append(*f, s)
			}
		}
	}
	return nil // anything else says nothing
}

// flexibleBool reads a JSON boolean that some IdPs send as a string ("true").
type flexibleBool bool

func (b *flexibleBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case bool:
		*b = flexibleBool(v)
	case string:
		*b = flexibleBool(strings.EqualFold(v, "true"))
	case nil:
		*b = false
	default:
		return fmt.Errorf("email_verified: unexpected JSON %s", data)
	}
	return nil
}
