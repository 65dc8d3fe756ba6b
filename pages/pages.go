// Package pages serves Gatehouse's server-rendered pages (under /gatehouse
// by default): request access, the account page and the admin dashboard,
// with their one stylesheet. Each form runs the same action, under the same
// API route, as the API call it stands for (package actions), so the policy
// cannot tell a page from the API. The api package mounts them and the Caddy
// module gives the guard their error page; nothing else imports it.
package pages

import (
	"cmp"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/actions"
	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/refusal"
	"github.com/gatehouse/gatehouse/store"
)

//go:embed static/gatehouse.css
var stylesheet []byte

// serveStylesheet serves the pages' one stylesheet, so that no page needs
// style-src 'unsafe-inline'.
func serveStylesheet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(stylesheet)
}

//go:embed templates/*.html
var templateFS embed.FS

var templates = map[string]*template.Template{}

var templateFuncs = template.FuncMap{
	"join": func(s []string) string { return strings.Join(s, " ") },
	"date": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },

	"seconds": func(n int64) string { return (time.Duration(n) * time.Second).String() },
}

func init() {
	for _, name := range []string{"error", "request_access", "admin", "account", "sign_in"} {
		templates[name] = template.Must(template.New(name).Funcs(templateFuncs).ParseFS(templateFS,
			"templates/layout.html", "templates/tokens.html", "templates/usage.html", "templates/"+name+".html"))
	}
}

// Pages serves the server-rendered pages. They work without JavaScript:
// every action is a form post answered with a redirect (post/redirect/get).
type Pages struct {
	rt   *core.Runtime
	acts *actions.Actions
}

// New returns the pages of rt.
func New(rt *core.Runtime) *Pages { return &Pages{rt: rt, acts: actions.New(rt)} }

// handler is a page's handler: it writes the page when it succeeds and
// returns an error otherwise, which serve answers (see failure).
type handler func(w http.ResponseWriter, r *http.Request) error

// Register adds the pages' routes to mux.
func (p *Pages) Register(mux *http.ServeMux) {
	prefix := p.rt.PagesPrefix
	handle := func(pattern string, h handler) { mux.HandleFunc(pattern, p.serve(h)) }
	mux.HandleFunc("GET "+prefix+"/static/gatehouse.css", serveStylesheet)
	handle("GET "+prefix+"/sign-in", p.signInPage)
	handle("GET "+prefix+"/request-access", p.requestAccess)
	handle("POST "+prefix+"/request-access", p.submitRequest)
	handle("GET "+prefix+"/admin", p.admin)
	handle("POST "+prefix+"/admin/requests/{id}/approve", p.review(true))
	handle("POST "+prefix+"/admin/requests/{id}/deny", p.review(false))
	handle("POST "+prefix+"/admin/elevations/{id}/approve", p.reviewElevation(true))
	handle("POST "+prefix+"/admin/elevations/{id}/deny", p.reviewElevation(false))
	handle("POST "+prefix+"/admin/users/{id}/status", p.setStatus)
	handle("POST "+prefix+"/admin/users/{id}/role", p.setRole)
	handle("POST "+prefix+"/admin/users/{id}/delete", p.deleteUser)
	handle("POST "+prefix+"/admin/roles", p.saveRole)
	handle("POST "+prefix+"/admin/tokens", p.createSystemToken)
	handle("POST "+prefix+"/admin/tokens/{id}/revoke", p.revokeToken("/admin"))
	handle("POST "+prefix+"/admin/break-glass/{id}/acknowledge", p.acknowledgeBreakGlass)
	handle("GET "+prefix+"/account", p.account)
	handle("POST "+prefix+"/account/tokens", p.createPersonalToken)
	handle("POST "+prefix+"/account/elevation", p.requestElevation)
	handle("POST "+prefix+"/account/tokens/{id}/revoke", p.revokeToken("/account"))
	handle(prefix+"/", func(w http.ResponseWriter, r *http.Request) error {
		return &failure{status: http.StatusNotFound, title: "Not found", message: "There is no Gatehouse page here."}
	})
}

// failure is the error page a handler's error shows. A *refusal.Problem
// shows its status and detail; any other error is a 503 whose cause is
// logged, not shown.
type failure struct {
	status         int
	title, message string
	sub            *core.Subject // when known, the header shows who is signed in
	wayOn          *link
}

// link is a link a page offers.
type link struct{ Href, Text string }

func (f *failure) Error() string { return fmt.Sprintf("%d %s: %s", f.status, f.title, f.message) }

// seeOther is a handler's answer that sends the browser elsewhere (303):
// to sign in, or to the request-access page.
type seeOther string

func (s seeOther) Error() string { return "see " + string(s) }

// unavailable is the page for a dependency that failed while checking access.
var unavailable = &failure{status: http.StatusServiceUnavailable, title: "Temporarily unavailable",
	message: "Gatehouse cannot check your access right now. Please try again shortly."}

// serve is the one place that answers a page handler's error.
func (p *Pages) serve(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var f *failure
		var to seeOther
		switch {
		case errors.As(err, &to):
			http.Redirect(w, r, string(to), http.StatusSeeOther)
			return
		case errors.As(err, &f):
		case refusal.As(err) != nil && refusal.As(err).StepUp != "":
			who, _, _ := p.acts.Identify(r)
			http.Redirect(w, r, string(p.stepUp(r, who, refusal.As(err).StepUp)), http.StatusSeeOther)
			return
		case refusal.As(err) != nil:
			pr := refusal.As(err)
			f = &failure{status: pr.Status, title: pr.Title, message: capitalize(pr.Detail) + "."}
		default:
			p.logError(r, err)
			f = &failure{status: http.StatusServiceUnavailable, title: "Temporarily unavailable", message: "Please try again shortly."}
		}
		d := p.data(f.title, nil)
		if f.sub != nil {
			d = p.dataFor(r, f.title, f.sub)
		}
		d.Message = f.message
		d.WayOn = f.wayOn
		p.render(w, f.status, "error", d)
	}
}

func (p *Pages) logError(r *http.Request, err error) {
	p.rt.Logger.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
}

// pageData is what every template gets.
type pageData struct {
	Title       string
	User        *store.User
	CanReview   bool // the header links to the admin dashboard
	CanAccount  bool // the header links to the account page
	Wide        bool
	Nonce       string // set only on the page that shows a new token, for its copy script
	APIPrefix   string
	PagesPrefix string
	Error       string
	Notice      string
	Message     string
	LoginURL    string
	// ContinueTo is where the page sends the browser on at once (a meta
	// refresh, which a strict form-action does not block) and links to.
	ContinueTo string
	// WayOn is a refusal page's link to where the person can go on.
	WayOn *link

	Request    *store.AccessRequest
	Requests   []store.AccessRequest
	CanRequest bool
	Suspension *suspension // the request-access page of a suspended person
	Roles      []string
	Form       actions.AccessRequest

	Dash    *dashboard
	Account *account
	// Created is a token just minted: the one response that shows its string.
	Created *actions.CreatedToken
	// Providers are the sign-in page's choices.
	Providers []core.LoginChoice
	// BreakGlass are the emergency grants active now: a banner on every
	// page a signed-in person views.
	BreakGlass []store.BreakGlassGrant
}

func (p *Pages) data(title string, sub *core.Subject) pageData {
	d := pageData{Title: title, APIPrefix: p.rt.APIPrefix, PagesPrefix: p.rt.PagesPrefix}
	if sub != nil {
		d.User = &sub.User
		d.BreakGlass = p.rt.ActiveBreakGlass()
	}
	return d
}

// dataFor is data for a signed-in caller, with the header links the policy allows.
func (p *Pages) dataFor(r *http.Request, title string, sub *core.Subject) pageData {
	d := p.data(title, sub)
	d.CanReview = p.canReview(r, sub)
	d.CanAccount = p.acts.Allowed(r, sub, "GET "+canonical("/account"), nil, nil)
	return d
}

func (p *Pages) render(w http.ResponseWriter, status int, name string, d pageData) {
	csp := "default-src 'none'; style-src 'self'; frame-ancestors 'none'; form-action 'self'"
	if d.Created != nil {
		// Only the page showing a new token runs a script (its copy button),
		// and only the one carrying this response's nonce.
		nonce, err := newNonce()
		if err != nil {
			p.rt.Logger.Error("making a CSP nonce: " + err.Error())
		} else {
			d.Nonce = nonce
			csp += "; script-src 'nonce-" + nonce + "'"
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", csp)
	w.WriteHeader(status)
	if err := templates[name].ExecuteTemplate(w, name+".html", d); err != nil {
		p.rt.Logger.Error("rendering page " + name + ": " + err.Error())
	}
}

// ErrorPage answers with the Gatehouse error page; it is a refusal.ErrorPage.
func (p *Pages) ErrorPage(w http.ResponseWriter, status int, title, message string) {
	d := p.data(title, nil)
	d.Message = message
	p.render(w, status, "error", d)
}

// LoginErrorPage is the error page of a failed sign-in, with a link to sign in again.
func (p *Pages) LoginErrorPage(w http.ResponseWriter, status int, title, message string) {
	d := p.data(title, nil)
	d.Message = message
	d.LoginURL = p.rt.APIPrefix + "/auth/login"
	p.render(w, status, "error", d)
}

// SignOutPage answers a signed-out browser's logout form with a page that
// continues to the identity provider's end-session endpoint. A 303 there
// would be blocked: the pages' CSP has form-action 'self', and browsers apply
// it to the redirects that follow a form post.
func (p *Pages) SignOutPage(w http.ResponseWriter, endSession string) {
	d := p.data("Signing out", nil)
	d.Message = "You are signed out of Gatehouse. Signing you out at your identity provider…"
	d.ContinueTo = endSession
	p.render(w, http.StatusOK, "error", d)
}

// ErrorPage is the Gatehouse error page for the guard's refusals of browsers.
func ErrorPage(rt *core.Runtime) refusal.ErrorPage { return New(rt).ErrorPage }

// RefusalPage answers a browser the guard refuses with the person's session:
// the header says who is signed in and offers Sign out, and a denied or
// suspended person gets the way on (a guard.RefusalPage).
func (p *Pages) RefusalPage(w http.ResponseWriter, r *http.Request, sub *core.Subject, status int, code, title, message string) {
	d := p.dataFor(r, title, sub)
	d.Message = message
	d.WayOn = p.wayOn(code)
	p.render(w, status, "error", d)
}

// wayOn is where a refused person can go on: the request-access page, which
// tells a suspended person why and lets a denied one ask again.
func (p *Pages) wayOn(code string) *link {
	switch code {
	case policy.CodeAccessDenied:
		return &link{Href: p.rt.PagesPrefix + "/request-access", Text: "Request access again"}
	case policy.CodeAccountSuspended:
		return &link{Href: p.rt.PagesPrefix + "/request-access", Text: "Why your account is suspended"}
	}
	return nil
}

// refusalTitles are the titles of the refusals of a person's status, as the guard names them.
var refusalTitles = map[string]string{policy.CodeAccessDenied: "Access denied", policy.CodeAccountSuspended: "Account suspended"}

// authorize is the actions' Authorize for pages: an anonymous browser is
// sent to sign in, a person without access to request it, and any other
// refusal is a page with the reason.
func (p *Pages) authorize(r *http.Request, route string) (*core.Subject, error) {
	sub, err := p.acts.Authorize(r, route, nil, nil)
	if err == nil {
		return sub, nil
	}
	pr := refusal.As(err)
	switch {
	case pr == nil:
		p.logError(r, err)
		return nil, unavailable
	case pr.StepUp != "":
		who, _, _ := p.acts.Identify(r)
		return nil, p.stepUp(r, who, pr.StepUp)
	case pr.Status == http.StatusUnauthorized:
		return nil, p.signIn(r)
	case pr.Code == "access_required":
		return nil, seeOther(p.rt.PagesPrefix + "/request-access")
	}
	who, _, _ := p.acts.Identify(r)
	return nil, &failure{status: pr.Status, title: cmp.Or(refusalTitles[pr.Code], "Forbidden"), message: capitalize(pr.Detail) + ".",
		sub: who, wayOn: p.wayOn(pr.Code)}
}

// signIn sends the browser to sign in and come back: to the page it asked
// for, or after a form to the request-access page.
func (p *Pages) signIn(r *http.Request) seeOther {
	rd := r.URL.Path
	if r.Method != http.MethodGet {
		rd = p.rt.PagesPrefix + "/request-access"
	}
	return seeOther(p.rt.APIPrefix + "/auth/login?rd=" + url.QueryEscape(rd))
}

// stepUp sends the browser to sign in again through its provider with the
// authentication the step-up rule asks for, and come back.
func (p *Pages) stepUp(r *http.Request, who *core.Subject, rule string) seeOther {
	rd := r.URL.Path
	if r.Method != http.MethodGet {
		rd = p.rt.PagesPrefix + "/account"
	}
	return seeOther(p.rt.StepUpLoginURL(who, rule, rd))
}

// canReview asks the policy whether sub may open the admin dashboard (for the nav link).
func (p *Pages) canReview(r *http.Request, sub *core.Subject) bool {
	return p.acts.Allowed(r, sub, "GET "+canonical("/admin"), nil, nil)
}

// canonical is a page path as the policy knows it (default prefix).
func canonical(path string) string { return "/gatehouse" + path }

func (p *Pages) roles() []string {
	ranks := p.rt.Policy().Roles()
	names := make([]string, 0, len(ranks))
	for name := range ranks {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		return ranks[names[i]] < ranks[names[j]] || (ranks[names[i]] == ranks[names[j]] && names[i] < names[j])
	})
	return names
}

func (p *Pages) requestAccess(w http.ResponseWriter, r *http.Request) error {
	sub, err := p.authorize(r, "GET "+canonical("/request-access"))
	if err != nil {
		return err
	}
	return p.renderRequestAccess(w, r, sub, http.StatusOK, actions.AccessRequest{}, "", notices[r.URL.Query().Get("notice")])
}

func (p *Pages) renderRequestAccess(w http.ResponseWriter, r *http.Request, sub *core.Subject, status int, form actions.AccessRequest, errMsg, notice string) error {
	d := p.dataFor(r, "Request access", sub)
	d.Error, d.Notice = errMsg, notice
	latest, err := p.rt.Store.LatestAccessRequest(r.Context(), sub.User.ID)
	switch {
	case err == nil:
		d.Request = &latest
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	if sub.User.Status == store.StatusSuspended {
		// The suspension, not an old request or a form, is what the person
		// needs to read; their way back is an admin or manager.
		if d.Suspension, err = p.suspension(r, sub.User.ID); err != nil {
			return err
		}
		d.Request = nil
	}
	d.CanRequest = sub.User.Status != store.StatusActive && sub.User.Status != store.StatusSuspended &&
		(d.Request == nil || d.Request.Status != store.RequestPending)
	d.Roles = p.roles()
	if form.Name == "" {
		form.Name = sub.User.Name
	}
	if form.RequestedRole == "" {
		form.RequestedRole = "user"
	}
	d.Form = form
	p.render(w, status, "request_access", d)
	return nil
}

func (p *Pages) submitRequest(w http.ResponseWriter, r *http.Request) error {
	route := "POST " + canonical("/request-access")
	sub, err := p.authorize(r, route)
	if err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, actions.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		return p.renderRequestAccess(w, r, sub, http.StatusBadRequest, actions.AccessRequest{}, "The form could not be read; please try again.", "")
	}
	in := actions.AccessRequest{
		Purpose:       strings.TrimSpace(r.PostFormValue("purpose")),
		Name:          strings.TrimSpace(r.PostFormValue("name")),
		Team:          strings.TrimSpace(r.PostFormValue("team")),
		RequestedRole: r.PostFormValue("requested_role"),
	}
	if _, err := p.acts.RequestAccess(r, route, in); err != nil {
		if pr := refusal.As(err); pr != nil {
			return p.renderRequestAccess(w, r, sub, pr.Status, in, capitalize(pr.Detail)+".", "")
		}
		p.logError(r, err)
		return &failure{status: http.StatusServiceUnavailable, title: "Temporarily unavailable", message: "Your request was not saved. Please try again shortly."}
	}
	return seeOther(p.rt.PagesPrefix + "/request-access?notice=submitted")
}

// suspension is what the request-access page tells a suspended person.
type suspension struct {
	Since  *time.Time
	Reason string
}

// suspensionsSearched bounds the search of a person's audit events for their suspension.
const suspensionsSearched = 50

// suspension reads when and why userID was suspended from the audit log: the
// latest user.status_changed to suspended of which they are the target. A
// suspended person acts no more, so it is among their latest events.
func (p *Pages) suspension(r *http.Request, userID string) (*suspension, error) {
	events, err := p.rt.Store.ListAudit(r.Context(), store.AuditFilter{UserID: userID, Type: "user.status_changed", Limit: suspensionsSearched})
	if err != nil {
		return nil, err
	}
	for _, e := range events {
		if e.TargetID == userID && e.Detail["to"] == store.StatusSuspended {
			reason, _ := e.Detail["reason"].(string)
			return &suspension{Since: &e.Time, Reason: strings.TrimSpace(reason)}, nil
		}
	}
	return &suspension{}, nil
}

// formAction identifies the caller of a page form and reads the form; the
// action the form runs asks the policy itself.
func (p *Pages) formAction(w http.ResponseWriter, r *http.Request) (*core.Subject, error) {
	sub, _, err := p.acts.Identify(r)
	switch {
	case err != nil:
		p.logError(r, err)
		return nil, unavailable
	case sub == nil:
		return nil, p.signIn(r)
	}
	r.Body = http.MaxBytesReader(w, r.Body, actions.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		return nil, &failure{status: http.StatusBadRequest, title: "Bad request", message: "The form could not be read; please try again.", sub: sub}
	}
	return sub, nil
}

// problemOf is an action's error as the problem a page shows; a dependency
// that failed is logged and shown as unavailable.
func (p *Pages) problemOf(r *http.Request, err error) *refusal.Problem {
	if pr := refusal.As(err); pr != nil {
		return pr
	}
	p.logError(r, err)
	return refusal.ErrUnavailable
}

// failureMessage is a problem as a sentence for a page, after what did not happen.
func failureMessage(what string, pr *refusal.Problem) string {
	return what + ": " + strings.TrimSuffix(pr.Detail, ".") + "."
}

func newNonce() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
