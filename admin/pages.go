package admin

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"github.com/gatehouse/gatehouse/refusal"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/policy"
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
}

func init() {
	for _, name := range []string{"error", "request_access", "admin", "account"} {
		templates[name] = template.Must(template.New(name).Funcs(templateFuncs).ParseFS(templateFS,
			"templates/layout.html", "templates/tokens.html", "templates/"+name+".html"))
	}
}

// pages serves the server-rendered pages. They work without JavaScript:
// every action is a form post answered with a redirect (post/redirect/get).
type pages struct {
	a *API
}

func newPages(a *API) *pages { return &pages{a: a} }

func (p *pages) register(mux *http.ServeMux) {
	prefix := p.a.rt.PagesPrefix
	mux.HandleFunc("GET "+prefix+"/static/gatehouse.css", serveStylesheet)
	mux.HandleFunc("GET "+prefix+"/request-access", p.requestAccess)
	mux.HandleFunc("POST "+prefix+"/request-access", p.submitRequest)
	mux.HandleFunc("GET "+prefix+"/admin", p.admin)
	mux.HandleFunc("POST "+prefix+"/admin/requests/{id}/approve", p.decide(true))
	mux.HandleFunc("POST "+prefix+"/admin/requests/{id}/deny", p.decide(false))
	mux.HandleFunc("POST "+prefix+"/admin/users/{id}/status", p.setStatus)
	mux.HandleFunc("POST "+prefix+"/admin/users/{id}/role", p.setRole)
	mux.HandleFunc("POST "+prefix+"/admin/users/{id}/delete", p.deleteUser)
	mux.HandleFunc("POST "+prefix+"/admin/roles", p.saveRole)
	mux.HandleFunc("POST "+prefix+"/admin/tokens", p.createSystemToken)
	mux.HandleFunc("POST "+prefix+"/admin/tokens/{id}/revoke", p.revokeToken("/admin"))
	mux.HandleFunc("GET "+prefix+"/account", p.account)
	mux.HandleFunc("POST "+prefix+"/account/tokens", p.createPersonalToken)
	mux.HandleFunc("POST "+prefix+"/account/tokens/{id}/revoke", p.revokeToken("/account"))
	mux.HandleFunc(prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		p.renderError(w, http.StatusNotFound, "Not found", "There is no Gatehouse page here.")
	})
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

	Request    *store.AccessRequest
	Requests   []store.AccessRequest
	CanRequest bool
	Roles      []string
	Form       accessRequestInput

	Dash    *dashboard
	Account *account
	// Created is a token just minted: the one response that shows its string.
	Created *createdToken
}

func (p *pages) data(title string, sub *core.Subject) pageData {
	d := pageData{Title: title, APIPrefix: p.a.rt.APIPrefix, PagesPrefix: p.a.rt.PagesPrefix}
	if sub != nil {
		d.User = &sub.User
	}
	return d
}

// dataFor is data for a signed-in caller, with the header links the policy allows.
func (p *pages) dataFor(r *http.Request, title string, sub *core.Subject) pageData {
	d := p.data(title, sub)
	d.CanReview = p.canReview(r, sub)
	d.CanAccount = p.allowed(r, sub, "GET "+p.canonical("/account"), nil, nil)
	return d
}

func (p *pages) render(w http.ResponseWriter, status int, name string, d pageData) {
	csp := "default-src 'none'; style-src 'self'; frame-ancestors 'none'; form-action 'self'"
	if d.Created != nil {
		// Only the page showing a new token runs a script (its copy button),
		// and only the one carrying this response's nonce.
		nonce, err := newNonce()
		if err != nil {
			p.a.rt.Logger.Error("making a CSP nonce: " + err.Error())
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
		p.a.rt.Logger.Error("rendering page " + name + ": " + err.Error())
	}
}

func (p *pages) renderError(w http.ResponseWriter, status int, title, message string) {
	d := p.data(title, nil)
	d.Message = message
	p.render(w, status, "error", d)
}

func (p *pages) renderLoginError(w http.ResponseWriter, status int, message string) {
	d := p.data("Sign-in failed", nil)
	d.Message = message
	d.LoginURL = p.a.rt.APIPrefix + "/auth/login"
	p.render(w, status, "error", d)
}

// ErrorPage is the Gatehouse error page for the guard's refusals of browsers.
func ErrorPage(rt *core.Runtime) refusal.ErrorPage {
	return newPages(&API{rt: rt}).renderError
}

// authorizePage is authorize for pages: it sends anonymous browsers to sign in
// and answers refusals with a page.
func (p *pages) authorizePage(w http.ResponseWriter, r *http.Request, route string) (*core.Subject, bool) {
	sub, _, err := p.a.identify(r)
	if err != nil {
		p.a.logError(r, err)
		p.renderError(w, http.StatusServiceUnavailable, "Temporarily unavailable", "Gatehouse cannot check your access right now. Please try again shortly.")
		return nil, false
	}
	if sub == nil {
		rd := r.URL.Path
		if r.Method != http.MethodGet {
			rd = p.a.rt.PagesPrefix + "/request-access"
		}
		http.Redirect(w, r, p.a.rt.APIPrefix+"/auth/login?rd="+url.QueryEscape(rd), http.StatusSeeOther)
		return nil, false
	}
	dec, err := p.a.rt.Decide(r, core.DecisionRequest{Subject: sub, APIRoute: route})
	if err != nil {
		p.a.logError(r, err)
		p.renderError(w, http.StatusServiceUnavailable, "Temporarily unavailable", "Gatehouse cannot check your access right now. Please try again shortly.")
		return nil, false
	}
	if !dec.Allow {
		pr := p.a.refusal(r, sub, false, dec)
		if pr.Code == "access_required" {
			http.Redirect(w, r, p.a.rt.PagesPrefix+"/request-access", http.StatusSeeOther)
			return nil, false
		}
		d := p.dataFor(r, "Forbidden", sub)
		d.Message = capitalize(pr.Detail) + "."
		p.render(w, pr.Status, "error", d)
		return nil, false
	}
	return sub, true
}

// canReview asks the policy whether sub may open the admin dashboard (for the nav link).
func (p *pages) canReview(r *http.Request, sub *core.Subject) bool {
	return p.allowed(r, sub, "GET "+p.canonical("/admin"), nil, nil)
}

// allowed asks the policy without recording a refusal: pages use it to decide
// what to show, and the action itself asks again when it is taken.
func (p *pages) allowed(r *http.Request, sub *core.Subject, route string, target *policy.Target, change *policy.Change) bool {
	dec, err := p.a.rt.Decide(r, core.DecisionRequest{Subject: sub, APIRoute: route, Target: target, Change: change})
	return err == nil && dec.Allow
}

// canonical is a page path as the policy knows it (default prefix).
func (p *pages) canonical(path string) string { return "/gatehouse" + path }

func (p *pages) roles() []string {
	ranks := p.a.rt.Policy().Roles()
	names := make([]string, 0, len(ranks))
	for name := range ranks {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		return ranks[names[i]] < ranks[names[j]] || (ranks[names[i]] == ranks[names[j]] && names[i] < names[j])
	})
	return names
}

func (p *pages) requestAccess(w http.ResponseWriter, r *http.Request) {
	sub, ok := p.authorizePage(w, r, "GET "+p.canonical("/request-access"))
	if !ok {
		return
	}
	p.renderRequestAccess(w, r, sub, http.StatusOK, accessRequestInput{}, "", notices[r.URL.Query().Get("notice")])
}

func (p *pages) renderRequestAccess(w http.ResponseWriter, r *http.Request, sub *core.Subject, status int, form accessRequestInput, errMsg, notice string) {
	d := p.dataFor(r, "Request access", sub)
	d.Error, d.Notice = errMsg, notice
	latest, err := p.a.rt.Store.LatestAccessRequest(r.Context(), sub.User.ID)
	switch {
	case err == nil:
		d.Request = &latest
	case !errors.Is(err, store.ErrNotFound):
		p.a.logError(r, err)
		p.renderError(w, http.StatusServiceUnavailable, "Temporarily unavailable", "Please try again shortly.")
		return
	}
	d.CanRequest = sub.User.Status != store.StatusActive && (d.Request == nil || d.Request.Status != store.RequestPending)
	d.Roles = p.roles()
	if form.Name == "" {
		form.Name = sub.User.Name
	}
	if form.RequestedRole == "" {
		form.RequestedRole = "user"
	}
	d.Form = form
	p.render(w, status, "request_access", d)
}

func (p *pages) submitRequest(w http.ResponseWriter, r *http.Request) {
	sub, ok := p.authorizePage(w, r, "POST "+p.canonical("/request-access"))
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		p.renderRequestAccess(w, r, sub, http.StatusBadRequest, accessRequestInput{}, "The form could not be read; please try again.", "")
		return
	}
	in := accessRequestInput{
		Purpose:       strings.TrimSpace(r.PostFormValue("purpose")),
		Name:          strings.TrimSpace(r.PostFormValue("name")),
		Team:          strings.TrimSpace(r.PostFormValue("team")),
		RequestedRole: r.PostFormValue("requested_role"),
	}
	if _, err := p.a.createAccessRequest(r, sub, in); err != nil {
		var pr *Problem
		if errors.As(err, &pr) {
			p.renderRequestAccess(w, r, sub, pr.Status, in, capitalize(pr.Detail)+".", "")
			return
		}
		p.a.logError(r, err)
		p.renderError(w, http.StatusServiceUnavailable, "Temporarily unavailable", "Your request was not saved. Please try again shortly.")
		return
	}
	http.Redirect(w, r, p.a.rt.PagesPrefix+"/request-access?notice=submitted", http.StatusSeeOther)
}

// formAction identifies the caller of a page form and reads the form. When it
// returns false the request is answered (sign-in, 503 or a bad form).
func (p *pages) formAction(w http.ResponseWriter, r *http.Request, route string) (*core.Subject, bool) {
	sub, _, err := p.a.identify(r)
	if err != nil || sub == nil {
		p.authorizePage(w, r, route) // answers: sign-in redirect or 503 page
		return nil, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		p.renderError(w, http.StatusBadRequest, "Bad request", "The form could not be read; please try again.")
		return nil, false
	}
	return sub, true
}

// outcome is what a shared operation did for a page: nil when it succeeded,
// else the problem to show. Operations answer policy refusals on rec.
func (p *pages) outcome(r *http.Request, rec *refusalRecorder, err error) *Problem {
	var pr *Problem
	switch {
	case errors.As(err, &pr):
		return pr
	case err != nil:
		p.a.logError(r, err)
		return unavailable("Gatehouse could not complete the request; try again shortly")
	case rec.status != 0:
		return rec.refusal()
	}
	return nil
}

// refusalRecorder keeps the problem a shared operation wrote on refusal so
// the page can answer with HTML instead of problem JSON.
type refusalRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *refusalRecorder { return &refusalRecorder{header: http.Header{}} }

func (r *refusalRecorder) Header() http.Header         { return r.header }
func (r *refusalRecorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *refusalRecorder) WriteHeader(status int)      { r.status = status }

func (r *refusalRecorder) refusal() *Problem {
	var pr Problem
	if err := json.Unmarshal(r.body.Bytes(), &pr); err != nil || pr.Detail == "" {
		return problem(r.status, "forbidden", "Forbidden", "the policy does not allow this")
	}
	pr.Status = r.status
	return &pr
}

// failureMessage is a problem as a sentence for a page, after what did not happen.
func failureMessage(what string, pr *Problem) string {
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
