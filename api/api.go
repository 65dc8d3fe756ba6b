// Package api serves Gatehouse's HTTP API (under /api by default), the JWKS
// and the development provider, and mounts the pages it is given. Every
// route asks the policy through the actions package; the handlers hold no
// role checks of their own. A handler writes its answer when it succeeds
// and returns an error otherwise — a *refusal.Problem, or any other error
// for a dependency that failed — and one place (serve) writes that error.
// Only the Caddy module (the module root) imports it.
package api

import (
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/actions"
	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/refusal"
)

// Pages is what the API needs of the server-rendered pages: their routes,
// and HTML answers for browsers during sign-in.
type Pages interface {
	Register(mux *http.ServeMux)
	LoginErrorPage(w http.ResponseWriter, status int, title, message string)
	SignOutPage(w http.ResponseWriter, endSession string)
}

// API serves Gatehouse's own routes.
type API struct {
	rt    *core.Runtime
	acts  *actions.Actions
	mux   *http.ServeMux
	cop   *http.CrossOriginProtection
	pages Pages
	// openapi is the OpenAPI document as served, its paths under the api_prefix.
	openapi []byte
}

// handler is one API route's handler; route is its canonical pattern (with
// /api, as the policy knows it).
type handler func(w http.ResponseWriter, r *http.Request, route string) error

// New builds the router for the runtime's prefixes; pages may be nil.
func New(rt *core.Runtime, pages Pages) *API {
	a := &API{rt: rt, acts: actions.New(rt), mux: http.NewServeMux(), cop: http.NewCrossOriginProtection(), pages: pages}
	a.openapi = openAPIDocument(rt.APIPrefix)
	for _, rt := range a.routes() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		a.mux.HandleFunc(method+" "+a.apiPath(path), a.serve(rt.pattern, rt.handle))
	}
	a.mux.HandleFunc("GET /.well-known/jwks.json", a.jwks)
	a.mux.HandleFunc("GET /.well-known/openid-configuration", a.openIDConfiguration)
	// Paths Gatehouse owns answer 404/405 themselves instead of falling
	// through to the backend; everything else under the prefix (an Ollama
	// backend's /api/chat, say) is the backend's.
	for _, p := range []string{"/api/auth/", "/api/access/", "/api/elevations", "/api/elevations/", "/api/users", "/api/users/", "/api/audit", "/api/settings", "/api/settings/", "/api/tokens", "/api/tokens/", "/api/keys/", "/api/usage", "/api/usage/", "/api/break-glass", "/api/break-glass/", "/api/health", "/api/openapi.json"} {
		a.mux.HandleFunc(a.apiPath(p), a.serve("", unknownRoute))
	}
	if pages != nil {
		pages.Register(a.mux)
	}
	return a
}

// route is one API route: its canonical pattern ("GET /api/users/{id}", as
// the policy and the OpenAPI document know it) and its handler.
type route struct {
	pattern string
	handle  handler
}

// routes is the API's route list; openapi.json documents each of them
// (TestOpenAPIDocumentsEveryRoute).
func (a *API) routes() []route {
	return []route{
		{"GET /api/auth/login", a.login},
		{"POST /api/auth/login", a.login},
		{"GET /api/auth/callback", a.callback},
		{"POST /api/auth/logout", a.logout},
		{"POST /api/auth/refresh", a.refresh},
		{"GET /api/auth/me", a.me},
		{"GET /api/auth/request-access", a.getOwnRequest},
		{"POST /api/auth/request-access", a.postOwnRequest},
		{"GET /api/access/requests", a.listRequests},
		{"PUT /api/access/{id}/approve", a.review(true)},
		{"PUT /api/access/{id}/deny", a.review(false)},
		{"POST /api/elevations", a.postElevation},
		{"GET /api/elevations", a.listElevations},
		{"PUT /api/elevations/{id}/approve", a.reviewElevation(true)},
		{"PUT /api/elevations/{id}/deny", a.reviewElevation(false)},
		{"GET /api/users", a.listUsers},
		{"GET /api/users/{id}", a.getUser},
		{"PUT /api/users/{id}/role", a.setRole},
		{"PUT /api/users/{id}/status", a.setStatus},
		{"PUT /api/users/{id}/limits", a.setLimits},
		{"DELETE /api/users/{id}", a.deleteUser},
		{"GET /api/users/{id}/activity", a.userActivity},
		{"GET /api/audit", a.audit},
		{"GET /api/usage", a.usage},
		{"GET /api/usage/limits", a.usageLimits},
		{"GET /api/settings", a.getSettings},
		{"PUT /api/settings", a.putSettings},
		{"PUT /api/settings/roles/{name}", a.putRole},
		{"DELETE /api/settings/roles/{name}", a.deleteRole},
		{"POST /api/tokens", a.createToken},
		{"GET /api/tokens", a.listTokens},
		{"DELETE /api/tokens/{id}", a.deleteToken},
		{"POST /api/keys/rotate", a.rotateKeys},
		{"POST /api/break-glass", a.invokeBreakGlass},
		{"GET /api/break-glass", a.listBreakGlass},
		{"POST /api/break-glass/{id}/acknowledge", a.acknowledgeBreakGlass},
		{"GET /api/health", a.health},
		{"GET /api/openapi.json", a.openAPI},
	}
}

// signInRoutes are the routes a browser follows while signing in: their
// errors are pages (with a way to sign in again), not problem JSON.
var signInRoutes = map[string]bool{"GET /api/auth/login": true, "POST /api/auth/login": true, "GET /api/auth/callback": true}

// serve is the one place that answers a handler's error.
func (a *API) serve(route string, h handler) http.HandlerFunc {
	signIn := signInRoutes[route]
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r, route)
		switch {
		case err == nil:
		case signIn && wantsHTML(r):
			a.signInErrorPage(w, r, err)
		default:
			a.writeError(w, r, err)
		}
	}
}

// writeError answers err as a problem; anything that is not a *Problem is a
// 503 because it means a dependency failed, and the details go to the log only.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	p := refusal.As(err)
	if p == nil {
		a.logError(r, err)
		p = refusal.ErrUnavailable
	}
	refusal.Write(w, p)
}

func (a *API) apiPath(canonical string) string {
	return a.rt.APIPrefix + strings.TrimPrefix(canonical, "/api")
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
			refusal.WriteProblem(w, http.StatusForbidden, "cross_site", "Cross-site request refused", err.Error())
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

func unknownRoute(w http.ResponseWriter, r *http.Request, _ string) error {
	return refusal.New(http.StatusNotFound, "not_found", "Not found", "no such Gatehouse route: "+r.Method+" "+r.URL.Path)
}

// signInErrorPage answers a browser's failed sign-in with a page.
func (a *API) signInErrorPage(w http.ResponseWriter, r *http.Request, err error) {
	p := refusal.As(err)
	if p == nil {
		a.logError(r, err)
		p = refusal.Unavailable("Gatehouse cannot complete the sign-in right now; please try again shortly")
	}
	if a.pages == nil {
		refusal.PlainErrorPage(w, p.Status, p.Title, p.Detail)
		return
	}
	a.pages.LoginErrorPage(w, p.Status, p.Title, p.Detail)
}

func (a *API) logError(r *http.Request, err error) {
	a.rt.Logger.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
}

func (a *API) health(w http.ResponseWriter, r *http.Request, route string) error {
	if err := a.rt.Store.Ping(r.Context()); err != nil {
		a.logError(r, err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (a *API) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", a.jwksCacheControl())
	_, _ = w.Write(a.rt.Keys.JWKS())
}
