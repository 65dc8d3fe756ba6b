package admin

import (
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/store"
)

//go:embed templates/*.html
var templateFS embed.FS

var templates = map[string]*template.Template{}

func init() {
	for _, name := range []string{"error", "request_access", "admin"} {
		templates[name] = template.Must(template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
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
	mux.HandleFunc("GET "+prefix+"/request-access", p.requestAccess)
	mux.HandleFunc("POST "+prefix+"/request-access", p.submitRequest)
	mux.HandleFunc("GET "+prefix+"/admin", p.admin)
	mux.HandleFunc("POST "+prefix+"/admin/requests/{id}/approve", p.decide(true))
	mux.HandleFunc("POST "+prefix+"/admin/requests/{id}/deny", p.decide(false))
	mux.HandleFunc(prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		p.renderError(w, http.StatusNotFound, "Not found", "There is no Gatehouse page here.")
	})
}

// pageData is what every template gets.
type pageData struct {
	Title       string
	User        *store.User
	CanReview   bool
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
}

func (p *pages) data(title string, sub *core.Subject) pageData {
	d := pageData{Title: title, APIPrefix: p.a.rt.APIPrefix, PagesPrefix: p.a.rt.PagesPrefix}
	if sub != nil {
		d.User = &sub.User
	}
	return d
}

func (p *pages) render(w http.ResponseWriter, status int, name string, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
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

// RenderErrorPage answers a browser with a Gatehouse error page.
func RenderErrorPage(w http.ResponseWriter, rt *core.Runtime, status int, title, message string) {
	newPages(&API{rt: rt}).renderError(w, status, title, message)
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
		d := p.data("Forbidden", sub)
		d.Message = pr.Detail
		p.render(w, pr.Status, "error", d)
		return nil, false
	}
	return sub, true
}

// canReview asks the policy whether sub may open the review page (for the nav link).
func (p *pages) canReview(r *http.Request, sub *core.Subject) bool {
	dec, err := p.a.rt.Decide(r, core.DecisionRequest{Subject: sub, APIRoute: "GET " + p.canonical("/admin")})
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
	p.renderRequestAccess(w, r, sub, http.StatusOK, accessRequestInput{}, "", noticeFor(r.URL.Query().Get("notice")))
}

func (p *pages) renderRequestAccess(w http.ResponseWriter, r *http.Request, sub *core.Subject, status int, form accessRequestInput, errMsg, notice string) {
	d := p.data("Request access", sub)
	d.Error, d.Notice = errMsg, notice
	d.CanReview = p.canReview(r, sub)
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

func (p *pages) admin(w http.ResponseWriter, r *http.Request) {
	sub, ok := p.authorizePage(w, r, "GET "+p.canonical("/admin"))
	if !ok {
		return
	}
	reqs, err := p.a.rt.Store.ListAccessRequests(r.Context(), store.RequestPending)
	if err != nil {
		p.a.logError(r, err)
		p.renderError(w, http.StatusServiceUnavailable, "Temporarily unavailable", "Please try again shortly.")
		return
	}
	d := p.data("Access requests", sub)
	d.CanReview = true
	d.Requests = reqs
	d.Roles = p.roles()
	d.Notice = noticeFor(r.URL.Query().Get("notice"))
	if e := r.URL.Query().Get("error"); e != "" {
		d.Error = errorFor(e)
	}
	p.render(w, http.StatusOK, "admin", d)
}

func (p *pages) decide(approve bool) http.HandlerFunc {
	verb, notice := "deny", "denied"
	if approve {
		verb, notice = "approve", "approved"
	}
	route := "PUT /api/access/{id}/" + verb
	return func(w http.ResponseWriter, r *http.Request) {
		back := p.a.rt.PagesPrefix + "/admin"
		sub, _, err := p.a.identify(r)
		if err != nil || sub == nil {
			p.authorizePage(w, r, route) // answers: sign-in redirect or 503 page
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		if err := r.ParseForm(); err != nil {
			http.Redirect(w, r, back+"?error=form", http.StatusSeeOther)
			return
		}
		in := decisionInput{Comment: strings.TrimSpace(r.PostFormValue("comment"))}
		if approve {
			in.Role = r.PostFormValue("role")
			if v := r.PostFormValue("expires_at"); v != "" {
				t, err := time.ParseInLocation("2006-01-02T15:04", v, time.UTC)
				if err != nil {
					http.Redirect(w, r, back+"?error=expires", http.StatusSeeOther)
					return
				}
				in.ExpiresAt = &t
			}
		}
		rec := &refusalRecorder{header: http.Header{}}
		req, err := p.a.decideAccessRequest(rec, r, route, r.PathValue("id"), approve, in)
		var pr *Problem
		switch {
		case err == nil && req == nil:
			d := p.data("Forbidden", sub)
			d.Message = "You may not decide on this request."
			p.render(w, rec.status, "error", d)
		case errors.As(err, &pr):
			http.Redirect(w, r, back+"?error="+url.QueryEscape(pr.Code), http.StatusSeeOther)
		case err != nil:
			p.a.logError(r, err)
			p.renderError(w, http.StatusServiceUnavailable, "Temporarily unavailable", "The decision was not saved. Please try again shortly.")
		default:
			http.Redirect(w, r, back+"?notice="+notice, http.StatusSeeOther)
		}
	}
}

// refusalRecorder keeps the status of a policy refusal written by the shared
// operation so the page can answer with HTML instead of problem JSON.
type refusalRecorder struct {
	header http.Header
	status int
}

func (r *refusalRecorder) Header() http.Header         { return r.header }
func (r *refusalRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *refusalRecorder) WriteHeader(status int)      { r.status = status }

func noticeFor(key string) string {
	return map[string]string{
		"submitted": "Your request was submitted.",
		"approved":  "The request was approved and the requester will be told.",
		"denied":    "The request was denied and the requester will be told.",
	}[key]
}

func errorFor(code string) string {
	if m, ok := map[string]string{
		"not_pending":       "That request was already decided.",
		"not_found":         "That request no longer exists.",
		"validation_failed": "The decision was not valid (check the role and the date).",
		"form":              "The form could not be read.",
		"expires":           "The expiry date could not be read.",
	}[code]; ok {
		return m
	}
	return "The decision could not be saved."
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
