// Package guard decides, for every request to the protected backend, who is
// calling and whether they may (spec §6): identify → ask the policy → pass
// with identity headers, or refuse.
package guard

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/admin"
	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/identity"
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

// Guard is the per-request decision in front of the backend.
type Guard struct {
	rt  *core.Runtime
	cop *http.CrossOriginProtection
}

// New returns a guard over the runtime.
func New(rt *core.Runtime) *Guard {
	return &Guard{rt: rt, cop: http.NewCrossOriginProtection()}
}

// Serve passes the request to next when the policy allows it, and otherwise
// answers it. It never passes a request it could not decide on.
func (g *Guard) Serve(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	stripGatehouseHeaders(r.Header)

	sub, err := g.rt.Identify(r)
	switch {
	case errors.Is(err, core.ErrNoCredentials):
		g.refuseUnauthenticated(w, r, false)
		return nil
	case errors.Is(err, core.ErrInvalidCredentials):
		g.refuseUnauthenticated(w, r, true)
		return nil
	case err != nil:
		g.unavailable(w, r, err)
		return nil
	}

	if sub.Auth == "session" {
		if err := g.cop.Check(r); err != nil {
			admin.WriteProblem(w, http.StatusForbidden, "cross_site", "Cross-site request refused", err.Error())
			return nil
		}
	}

	dec, err := g.rt.Decide(r, core.DecisionRequest{Subject: sub})
	if err != nil {
		g.unavailable(w, r, err)
		return nil
	}
	if !dec.Allow {
		g.refuse(w, r, sub, dec.Code, dec.Reason)
		return nil
	}

	assertion, err := g.rt.Assertion(sub)
	if err != nil {
		g.unavailable(w, r, err)
		return nil
	}
	r.Header.Set(HeaderUserID, sub.User.ID)
	r.Header.Set(HeaderUserEmail, sub.User.Email)
	r.Header.Set(HeaderRole, sub.User.Role)
	r.Header.Set(HeaderAssertion, assertion)
	stripCredentials(r, g.rt.Sessions.CookieName(), identity.LoginCookieName(g.rt.Secure))

	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", sub.User.ID)
		repl.Set("http.auth.user.email", sub.User.Email)
		repl.Set("http.auth.user.role", sub.User.Role)
	}
	return next(w, r)
}

func stripGatehouseHeaders(h http.Header) {
	for name := range h {
		if len(name) >= len(HeaderPrefix) && strings.EqualFold(name[:len(HeaderPrefix)], HeaderPrefix) {
			delete(h, name)
		}
	}
}

// stripCredentials keeps Gatehouse's own cookies from the upstream; the
// backend's cookies pass untouched.
func stripCredentials(r *http.Request, names ...string) {
	cookies := r.Cookies()
	if len(cookies) == 0 {
		return
	}
	kept := make([]string, 0, len(cookies))
	for _, c := range cookies {
		drop := false
		for _, n := range names {
			if c.Name == n {
				drop = true
				break
			}
		}
		if !drop {
			kept = append(kept, c.String())
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
		if invalid {
			http.SetCookie(w, g.rt.Sessions.ClearCookie())
		}
		target := g.rt.APIPrefix + "/auth/login?rd=" + url.QueryEscape(r.URL.RequestURI())
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	challenge := `Bearer realm="gatehouse"`
	code, title := "unauthenticated", "Authentication required"
	if invalid {
		challenge += `, error="invalid_token"`
		code, title = "invalid_token", "Invalid credentials"
	}
	w.Header().Set("WWW-Authenticate", challenge)
	admin.WriteProblem(w, http.StatusUnauthorized, code, title, "sign in or send a valid bearer token")
}

func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, sub *core.Subject, code, reason string) {
	g.rt.Audit(r.Context(), r, core.AuditEvent{Type: "policy.denied", ActorID: sub.User.ID,
		Detail: map[string]any{"code": code, "reason": reason, "method": r.Method, "path": r.URL.Path}})
	if code == "access_required" && isBrowserNavigation(r) {
		http.Redirect(w, r, g.rt.PagesPrefix+"/request-access", http.StatusSeeOther)
		return
	}
	title := map[string]string{
		"access_required":   "Access not approved yet",
		"account_suspended": "Account suspended",
		"access_denied":     "Access denied",
		"model_not_allowed": "Model not allowed",
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
	if isBrowserNavigation(r) {
		admin.RenderErrorPage(w, g.rt, http.StatusForbidden, title, reason)
		return
	}
	admin.WriteProblem(w, http.StatusForbidden, code, title, reason)
}

func (g *Guard) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	g.rt.Logger.Error("guard cannot decide; refusing", zap.String("path", r.URL.Path), zap.Error(err))
	w.Header().Set("Retry-After", "5")
	if isBrowserNavigation(r) {
		admin.RenderErrorPage(w, g.rt, http.StatusServiceUnavailable, "Temporarily unavailable",
			"Gatehouse cannot check your access right now. Please try again shortly.")
		return
	}
	admin.WriteProblem(w, http.StatusServiceUnavailable, "unavailable", "Service unavailable",
		"Gatehouse cannot decide on this request right now")
}
