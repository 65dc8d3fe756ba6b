// Package admin serves Gatehouse's HTTP API (under /api by default) and its
// server-rendered pages (under /gatehouse by default). Every route asks the
// policy; the handlers hold no role checks of their own, and every change
// they make goes through core. Only the Caddy module (the module root)
// imports it.
package admin

import (
	"errors"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/policy"
)

// API serves Gatehouse's own routes.
type API struct {
	rt    *core.Runtime
	mux   *http.ServeMux
	cop   *http.CrossOriginProtection
	pages *pages
}

// route is one API route: its canonical pattern (with /api, as the policy
// knows it) and its handler.
type route struct {
	pattern string // "GET /api/users/{id}"
	handle  func(w http.ResponseWriter, r *http.Request, route string)
}

// NewAPI builds the router for the runtime's prefixes.
func NewAPI(rt *core.Runtime) *API {
	a := &API{rt: rt, mux: http.NewServeMux(), cop: http.NewCrossOriginProtection()}
	a.pages = newPages(a)
	routes := []route{
		{"GET /api/auth/login", a.login},
		{"POST /api/auth/login", a.login},
		{"GET /api/auth/callback", a.callback},
		{"POST /api/auth/logout", a.logout},
		{"POST /api/auth/refresh", a.refresh},
		{"GET /api/auth/me", a.me},
		{"GET /api/auth/request-access", a.getOwnRequest},
		{"POST /api/auth/request-access", a.postOwnRequest},
		{"GET /api/access/requests", a.listRequests},
		{"PUT /api/access/{id}/approve", a.approve},
		{"PUT /api/access/{id}/deny", a.deny},
		{"GET /api/users", a.listUsers},
		{"GET /api/users/{id}", a.getUser},
		{"PUT /api/users/{id}/role", a.setRole},
		{"PUT /api/users/{id}/status", a.setStatus},
		{"DELETE /api/users/{id}", a.deleteUser},
		{"GET /api/users/{id}/activity", a.userActivity},
		{"GET /api/audit", a.audit},
		{"GET /api/settings", a.getSettings},
		{"PUT /api/settings", a.putSettings},
		{"PUT /api/settings/roles/{name}", a.putRole},
		{"DELETE /api/settings/roles/{name}", a.deleteRole},
		{"POST /api/tokens", a.createToken},
		{"GET /api/tokens", a.listTokens},
		{"DELETE /api/tokens/{id}", a.deleteToken},
		{"POST /api/keys/rotate", a.rotateKeys},
		{"GET /api/health", a.health},
	}
	for _, rt := range routes {
		a.handle(rt)
	}
	a.mux.HandleFunc("GET /.well-known/jwks.json", a.jwks)
	// Paths Gatehouse owns answer 404/405 themselves instead of falling
	// through to the backend; everything else under the prefix (an Ollama
	// backend's /api/chat, say) is the backend's.
	for _, p := range []string{"/api/auth/", "/api/access/", "/api/users", "/api/users/", "/api/audit", "/api/settings", "/api/settings/", "/api/tokens", "/api/tokens/", "/api/keys/", "/api/health"} {
		a.mux.HandleFunc(a.apiPath(p), a.unknownRoute)
	}
	a.pages.register(a.mux)
	return a
}

func (a *API) apiPath(canonical string) string {
	return a.rt.APIPrefix + strings.TrimPrefix(canonical, "/api")
}

func (a *API) handle(rt route) {
	method, path, _ := strings.Cut(rt.pattern, " ")
	a.mux.HandleFunc(method+" "+a.apiPath(path), func(w http.ResponseWriter, r *http.Request) {
		rt.handle(w, r, rt.pattern)
	})
}

// Serve answers r when it is one of Gatehouse's routes and reports whether it did.
func (a *API) Serve(w http.ResponseWriter, r *http.Request) bool {
	if p := a.rt.DevIdP; p != nil && (r.URL.Path == p.MountPath() || strings.HasPrefix(r.URL.Path, p.MountPath()+"/")) {
		p.ServeHTTP(w, r)
		return true
	}
	// Handler only looks the route up; ServeHTTP below routes again so the
	// handlers get their path values.
	if _, pattern := a.mux.Handler(r); pattern == "" {
		return false
	}
	if a.hasSessionCookie(r) {
		if err := a.cop.Check(r); err != nil {
			writeProblem(w, problem(http.StatusForbidden, "cross_site", "Cross-site request refused", err.Error()))
			return true
		}
	}
	a.mux.ServeHTTP(w, r)
	return true
}

func (a *API) hasSessionCookie(r *http.Request) bool {
	_, err := r.Cookie(a.rt.Sessions.CookieName())
	return err == nil
}

func (a *API) unknownRoute(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, problem(http.StatusNotFound, "not_found", "Not found", "no such Gatehouse route: "+r.Method+" "+r.URL.Path))
}

// authorize identifies the caller and asks the policy about route. On refusal
// it answers the request and returns ok=false.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, route string, target *policy.Target, change *policy.Change) (*core.Subject, bool) {
	sub, invalid, err := a.identify(r)
	if err != nil {
		a.writeError(w, r, err)
		return nil, false
	}
	dec, err := a.rt.Decide(r, core.DecisionRequest{Subject: sub, APIRoute: route, Target: target, Change: change})
	if err != nil {
		a.writeError(w, r, err)
		return nil, false
	}
	if dec.Allow {
		return sub, true
	}
	writeProblem(w, a.refusal(r, sub, invalid, dec))
	return nil, false
}

// identify returns the subject (nil when anonymous) and whether the request
// carried credentials that turned out invalid.
func (a *API) identify(r *http.Request) (sub *core.Subject, invalid bool, err error) {
	sub, err = a.rt.Identify(r)
	switch {
	case errors.Is(err, core.ErrNoCredentials):
		return nil, false, nil
	case errors.Is(err, core.ErrInvalidCredentials):
		return nil, true, nil
	}
	return sub, false, err
}

func (a *API) refusal(r *http.Request, sub *core.Subject, invalid bool, dec policy.Decision) *Problem {
	if sub == nil {
		if invalid {
			return problem(http.StatusUnauthorized, "invalid_token", "Invalid credentials", "the session or token is unknown, expired or revoked")
		}
		return problem(http.StatusUnauthorized, "unauthenticated", "Authentication required", "sign in first")
	}
	a.rt.AuditDenial(r, sub, dec.Code, dec.Reason)
	code := dec.Code
	if code == "" || code == "unauthenticated" {
		code = "forbidden"
	}
	detail := dec.Reason
	if detail == "" {
		detail = "the policy does not allow this request"
	}
	return problem(http.StatusForbidden, code, "Forbidden", detail)
}

func (a *API) logError(r *http.Request, err error) {
	a.rt.Logger.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
}

func (a *API) health(w http.ResponseWriter, r *http.Request, route string) {
	if err := a.rt.Store.Ping(r.Context()); err != nil {
		a.logError(r, err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *API) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(a.rt.Keys.JWKS())
}
