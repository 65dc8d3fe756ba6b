// Package guard decides, for every request to the protected backend, who is
// calling and whether they may (spec §6): identify → ask the policy → pass
// with identity headers, or refuse. Only the Caddy module imports it; it
// answers through refusal and never imports the API or the pages.
package guard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/refusal"
)

// Identity headers set for the upstream.
const (
	HeaderPrefix    = "X-Gatehouse-"
	HeaderUserID    = "X-Gatehouse-User-Id"
	HeaderUserEmail = "X-Gatehouse-User-Email"
	HeaderRole      = "X-Gatehouse-Role"
	HeaderTokenID   = "X-Gatehouse-Token-Id"
	HeaderAssertion = "X-Gatehouse-Assertion"
)

// Codes of the guard's own refusals (the policy's are in package policy).
const (
	codeInvalidToken = "invalid_token"
	codeUnavailable  = "unavailable"
)

// Guard is the per-request decision in front of the backend.
type Guard struct {
	rt             *core.Runtime
	cop            *http.CrossOriginProtection
	maxBody        int64
	allowAmbiguous bool
	streamUsage    bool
	errorPage      refusal.ErrorPage
	refusalPage    RefusalPage
	headers        identityHeaders
}

// RefusalPage answers a browser refused with its session, so that the page
// can say who is signed in and offer a way on; code is the refusal's.
type RefusalPage func(w http.ResponseWriter, r *http.Request, sub *core.Subject, status int, code, title, message string)

// Options tune a guard; zero values take the defaults.
type Options struct {
	// ModelRoutes and ListingRoutes ("METHOD /path") add model routes and
	// model listings to the route table of the policy data (spec §6a).
	ModelRoutes   []string
	ListingRoutes []string
	MaxBodyBytes  int64 // bound for reading a model request's body; default 8 MiB
	// AllowAmbiguousPaths passes paths and methods that backends could read
	// differently (spec §6a) instead of refusing them with 400.
	AllowAmbiguousPaths bool
	// ErrorPage answers refused browsers; default refusal.PlainErrorPage
	// (the Caddy module passes the Gatehouse page).
	ErrorPage refusal.ErrorPage
	// RefusalPage answers refused browsers that are signed in (a session);
	// default ErrorPage.
	RefusalPage RefusalPage
	// NoStreamUsage leaves streaming OpenAI requests as they are instead of
	// adding stream_options.include_usage (for a backend that refuses it);
	// their tokens are then estimated.
	NoStreamUsage bool
	// IdentityHeaders are the identity headers the backend gets, by name
	// (ParseIdentityHeaders); nil sends them all, "none" none. The caller's
	// own X-Gatehouse-* headers are dropped either way.
	IdentityHeaders []string
}

// identityHeaders is which identity headers a site sends, a bit per name
// of identity_headers.
type identityHeaders uint8

const (
	sendUserID identityHeaders = 1 << iota
	sendEmail
	sendRole
	sendTokenID
	sendAssertion
	sendAll = sendUserID | sendEmail | sendRole | sendTokenID | sendAssertion
)

var identityHeaderBits = map[string]identityHeaders{
	"user_id": sendUserID, "email": sendEmail, "role": sendRole, "token_id": sendTokenID, "assertion": sendAssertion,
}

// ParseIdentityHeaders reads identity_headers: nil is every header, "none"
// alone (or an empty list) none, else the named ones.
func ParseIdentityHeaders(names []string) (identityHeaders, error) {
	if names == nil {
		return sendAll, nil
	}
	if len(names) == 1 && names[0] == "none" {
		return 0, nil
	}
	var h identityHeaders
	for _, n := range names {
		bit, ok := identityHeaderBits[n]
		if !ok {
			return 0, fmt.Errorf("identity_headers: unknown header %q (user_id, email, role, token_id, assertion, or none alone)", n)
		}
		h |= bit
	}
	return h, nil
}

// DefaultMaxBodyBytes bounds the body read to find the model.
const DefaultMaxBodyBytes = 8 << 20

// New returns a guard over the runtime; its extra routes join the runtime's
// route table, which the policy reads too.
func New(ctx context.Context, rt *core.Runtime, o Options) (*Guard, error) {
	g := &Guard{rt: rt, cop: http.NewCrossOriginProtection(), maxBody: o.MaxBodyBytes, allowAmbiguous: o.AllowAmbiguousPaths,
		streamUsage: !o.NoStreamUsage, errorPage: o.ErrorPage, refusalPage: o.RefusalPage}
	if g.errorPage == nil {
		g.errorPage = refusal.PlainErrorPage
	}
	if g.maxBody <= 0 {
		g.maxBody = DefaultMaxBodyBytes
	}
	var err error
	if g.headers, err = ParseIdentityHeaders(o.IdentityHeaders); err != nil {
		return nil, err
	}
	routes := map[string]policy.Route{}
	for _, key := range o.ModelRoutes {
		routes[key] = policy.Route{Kind: policy.KindModel}
	}
	for _, key := range o.ListingRoutes {
		routes[key] = policy.Route{Kind: policy.KindListing}
	}
	if err := rt.AddRoutes(ctx, routes); err != nil {
		return nil, fmt.Errorf("model_routes, listing_routes: %w", err)
	}
	return g, nil
}

// Serve passes the request to next when the policy allows it, and otherwise
// answers it. It never passes a request it could not decide on.
func (g *Guard) Serve(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	start := time.Now()
	sanitizeHeaders(r.Header)
	// The route is matched first so that every decision is counted under
	// its route kind; matching reads nothing but the method and the path.
	method := strings.ToUpper(requestMethod(r))
	cleaned := core.CleanPath(r.URL.Path)
	folded := policy.FoldPath(cleaned)
	routes := g.rt.Policy().Routes()
	route := routes.Match(method, folded)
	d := g.beginDecision(r, route)
	if p := checkUpgrade(r); p != nil {
		d.end(p.Code)
		g.answer(w, r, p)
		return nil
	}
	if !g.allowAmbiguous {
		if p := checkAmbiguous(r); p != nil {
			d.end(p.Code)
			g.answer(w, r, p)
			return nil
		}
	}

	sub, err := g.rt.Identify(r)
	switch {
	case errors.Is(err, core.ErrNoCredentials):
		d.end(policy.CodeUnauthenticated)
		g.refuseUnauthenticated(w, r, false)
		return nil
	case errors.Is(err, core.ErrInvalidCredentials):
		d.end(codeInvalidToken)
		g.refuseUnauthenticated(w, r, true)
		return nil
	case err != nil:
		d.end(codeUnavailable)
		g.unavailable(w, r, err)
		return nil
	}

	if sub.Auth == "session" {
		if err := g.cop.Check(r); err != nil {
			d.end("cross_site")
			g.problem(w, r, http.StatusForbidden, "cross_site", "Cross-site request refused", err.Error())
			g.meterRefusal(sub, nil, nil, start, http.StatusForbidden)
			return nil
		}
	}

	var model *string
	if route != nil && route.ModelFrom != policy.ModelFromNone {
		m, found, p := g.readModel(r, route, cleaned)
		if p != nil {
			d.end(p.Code)
			g.answer(w, r, p)
			return nil
		}
		if found {
			model = &m
		}
	}

	dr := core.DecisionRequest{Subject: sub, Method: method, Path: cleaned, PathFolded: folded, Model: model, Route: route, Routes: routes}
	dec, err := g.rt.Decide(r, dr)
	if err != nil {
		d.end(codeUnavailable)
		g.unavailable(w, r, err)
		return nil
	}
	if !dec.Allow && dec.Code == policy.CodeInsufficientAuthentication && dec.StepUp != nil {
		d.end(dec.Code)
		g.rt.AuditDenial(r, sub, dec.Code, dec.Reason)
		if isBrowserNavigation(r) {
			http.Redirect(w, r, g.rt.StepUpLoginURL(sub, dec.StepUp.Name, r.URL.RequestURI()), http.StatusSeeOther)
		} else {
			g.answer(w, r, refusal.InsufficientAuthentication(dec.StepUp.Name, dec.Reason, dec.StepUp.ACR, dec.StepUp.MaxAgeS))
		}
		g.meterRefusal(sub, model, route, start, http.StatusUnauthorized)
		return nil
	}
	if !dec.Allow {
		d.end(dec.Code)
		g.refuse(w, r, sub, dec.Code, dec.Reason)
		g.meterRefusal(sub, model, route, start, http.StatusForbidden)
		return nil
	}
	d.end(metrics.Allowed) // by the policy: a quota refusal is counted as one
	g.rt.AuditBreakGlassRequest(r, sub)
	res, refused := g.reserveQuota(w, r, sub)
	if refused != 0 {
		g.meterRefusal(sub, model, route, start, refused)
		return nil
	}
	// Settled with the real count once the answer has ended (a stream
	// included); until the meter reports one, with the reservation itself.
	settled := int64(-1)
	defer func() {
		if res != nil {
			n := settled
			if n < 0 {
				n = res.Estimate()
			}
			g.rt.SettleQuota(res, n)
		}
	}()

	// Only the identity headers the site sends; the assertion is not even
	// made when it is not sent.
	var vals headerValues
	if g.headers&sendAssertion != 0 {
		assertion, err := g.rt.Assertion(sub)
		if err != nil {
			g.unavailable(w, r, err)
			return nil
		}
		vals.set(r.Header, HeaderAssertion, assertion)
	}
	if g.headers&sendUserID != 0 {
		vals.set(r.Header, HeaderUserID, sub.User.ID)
	}
	if g.headers&sendEmail != 0 {
		vals.set(r.Header, HeaderUserEmail, sub.User.Email)
	}
	if g.headers&sendRole != 0 {
		vals.set(r.Header, HeaderRole, sub.User.Role)
	}
	if sub.Token != nil {
		if g.headers&sendTokenID != 0 {
			vals.set(r.Header, HeaderTokenID, sub.Token.ID)
		}
		r.Header.Del("Authorization") // a Gatehouse token never reaches the upstream
	}
	stripCredentials(r, g.rt.Sessions.CookieName(), identity.LoginCookieName(g.rt.Secure))

	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", sub.User.ID)
		repl.Set("http.auth.user.email", sub.User.Email)
		repl.Set("http.auth.user.role", sub.User.Role)
	}
	// The request runs only as long as what allowed it: a stream is cut
	// once the token is revoked, the session ends or the user loses access.
	r, done := g.rt.Track(r, dr)
	defer done()
	// The answer passes through a tap that meters it (meter.go).
	tap := g.meter(w, r, dr, route, start)
	if route != nil && route.Kind == policy.KindListing {
		err = g.filterListing(tap, r, dr, next)
	} else {
		err = next(tap, r)
	}
	settled = tap.finish(err).TotalTokens
	return err
}

// stripCredentials keeps Gatehouse's own cookies from the upstream; every
// other cookie pair passes byte for byte (re-encoding them would quote values
// with spaces or commas and drop ones Go cannot parse).
func stripCredentials(r *http.Request, names ...string) {
	lines := r.Header.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	var kept []string
	for _, line := range lines {
		for _, pair := range strings.Split(line, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(pair), "=")
			if slices.Contains(names, name) {
				continue
			}
			if p := strings.TrimSpace(pair); p != "" {
				kept = append(kept, p)
			}
		}
	}
	r.Header.Del("Cookie")
	if len(kept) > 0 {
		r.Header.Set("Cookie", strings.Join(kept, "; "))
	}
}

// isBrowserNavigation is a GET that asks for HTML: it gets redirects and pages.
func isBrowserNavigation(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}

func (g *Guard) refuseUnauthenticated(w http.ResponseWriter, r *http.Request, invalid bool) {
	if isBrowserNavigation(r) {
		if invalid && r.Header.Get("Authorization") == "" {
			http.SetCookie(w, g.rt.Sessions.ClearCookie()) // the cookie was the bad credential
		}
		target := g.rt.APIPrefix + "/auth/login?rd=" + url.QueryEscape(r.URL.RequestURI())
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	challenge := `Bearer realm="gatehouse"`
	code, title := policy.CodeUnauthenticated, "Authentication required"
	if invalid {
		challenge += `, error="invalid_token"`
		code, title = codeInvalidToken, "Invalid credentials"
	}
	w.Header().Set("WWW-Authenticate", challenge)
	g.problem(w, r, http.StatusUnauthorized, code, title, "sign in or send a valid bearer token")
}

func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, sub *core.Subject, code, reason string) {
	g.rt.AuditDenial(r, sub, code, reason)
	if code == "access_required" && isBrowserNavigation(r) {
		http.Redirect(w, r, g.rt.PagesPrefix+"/request-access", http.StatusSeeOther)
		return
	}
	title := map[string]string{
		"access_required":   "Access not approved yet",
		"account_suspended": "Account suspended",
		"access_denied":     "Access denied",
		"model_not_allowed": "Model not allowed",
		"model_not_found":   "Model not found",
	}[code]
	if title == "" {
		title = "Forbidden"
	}
	if code == "" {
		code = "forbidden"
	}
	if reason == "" {
		reason = title
	}
	status := http.StatusForbidden
	if code == policy.CodeModelNotFound {
		// A model the caller may not use is not shown to exist.
		status = http.StatusNotFound
	}
	if isBrowserNavigation(r) {
		if g.refusalPage != nil && sub != nil && sub.Auth == policy.AuthSession {
			g.refusalPage(w, r, sub, status, code, title, reason)
			return
		}
		g.errorPage(w, status, title, reason)
		return
	}
	g.problem(w, r, status, code, title, reason)
}

func (g *Guard) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	g.rt.Logger.Error("guard cannot decide; refusing", zap.String("path", r.URL.Path), zap.Error(err))
	w.Header().Set("Retry-After", "5")
	if isBrowserNavigation(r) {
		g.errorPage(w, http.StatusServiceUnavailable, "Temporarily unavailable",
			"Gatehouse cannot check your access right now. Please try again shortly.")
		return
	}
	g.problem(w, r, http.StatusServiceUnavailable, codeUnavailable, "Service unavailable",
		"Gatehouse cannot decide on this request right now")
}

// answer writes a refusal in the dialect of the client's SDK: the OpenAI
// error object on the OpenAI family of routes (/v1/…, /v2/…, and the other
// routes of the table), Ollama's "error" string under /api/, and the problem
// alone elsewhere.
func (g *Guard) answer(w http.ResponseWriter, r *http.Request, p *refusal.Problem) {
	refusal.WriteAs(w, g.dialect(r), p)
}

// problem is answer for a problem made on the spot.
func (g *Guard) problem(w http.ResponseWriter, r *http.Request, status int, code, title, detail string) {
	g.answer(w, r, refusal.New(status, code, title, detail))
}

func (g *Guard) dialect(r *http.Request) refusal.Dialect {
	folded := policy.FoldPath(core.CleanPath(r.URL.Path))
	switch {
	case strings.HasPrefix(folded, "/api/"):
		return refusal.Ollama
	case strings.HasPrefix(folded, "/v1/"), strings.HasPrefix(folded, "/v2/"), folded == "/v1", folded == "/v2":
		return refusal.OpenAI
	case g.rt.Policy().Routes().Match(strings.ToUpper(requestMethod(r)), folded) != nil:
		return refusal.OpenAI // vLLM's /pooling, /classify, /tokenize, …
	}
	return refusal.Plain
}

// headerValues hands out one-value header slices cut from one array, so that
// setting the identity or the rate-limit headers costs one allocation, not
// one per header. Keys must be in canonical form (they are not canonicalized
// here); each slice is capped, so a later Add to one never writes into the
// next.
type headerValues struct {
	vals []string
}

func (hv *headerValues) set(h http.Header, key, value string) {
	if hv.vals == nil {
		hv.vals = make([]string, 0, 6)
	}
	hv.vals = append(hv.vals, value)
	n := len(hv.vals)
	h[key] = hv.vals[n-1 : n : n]
}
