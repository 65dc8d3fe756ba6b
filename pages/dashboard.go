package pages

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/actions"
	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/quota"
	"github.com/gatehouse/gatehouse/refusal"
	"github.com/gatehouse/gatehouse/store"
)

// The API routes whose rules the dashboard's forms follow: each form runs the
// same shared operation under the same route pattern as its API call, so the
// policy cannot tell a page from the API.
const (
	routeListRequests = "GET /api/access/requests"
	routeListUsers    = "GET /api/users"
	routeUserStatus   = "PUT /api/users/{id}/status"
	routeUserRole     = "PUT /api/users/{id}/role"
	routeDeleteUser   = "DELETE /api/users/{id}"
	routeGetSettings  = "GET /api/settings"
	routePutSettings  = "PUT /api/settings"
	routeCreateToken  = "POST /api/tokens"
	routeListTokens   = "GET /api/tokens"
	routeRevokeToken  = "DELETE /api/tokens/{id}"
	routeAudit        = "GET /api/audit"
)

// usersPerPage bounds the users list of the dashboard.
const usersPerPage = 50

var notices = map[string]string{
	"submitted":     "Your request was submitted.",
	"approved":      "The request was approved and the requester will be told.",
	"denied":        "The request was denied and the requester will be told.",
	"suspended":     "The user was suspended; their sessions and tokens stopped working.",
	"activated":     "The user was activated.",
	"role_changed":  "The role was changed.",
	"deleted":       "The user was deleted; their sessions ended and their tokens were revoked. Their audit history is kept.",
	"role_saved":    "The role was saved and applies at once.",
	"token_revoked": "The token was revoked; it is refused everywhere within a second.",
	"acknowledged":  "The emergency access was acknowledged.",

	"elevation_requested": "Your elevation was requested; a reviewer will decide.",
	"elevation_approved":  "The elevation was approved: the user holds the role until its end.",
	"elevation_denied":    "The elevation was denied and the requester will be told.",
}

// dashboard is what the admin page shows beyond pageData; each section is
// there only when the policy lets the caller use the API behind it.
type dashboard struct {
	ShowRequests bool
	History      []store.AccessRequest // the latest decided requests, newest first

	ShowElevations bool
	Elevations     []store.Elevation // pending

	ShowUsers     bool
	Users         []userRow
	Filter        userFilter
	FilterQuery   string // the filter, for forms to come back to it
	NextPage      string
	StatusChoices []string
	Grantable     []string // roles the caller may grant

	ShowRoles    bool
	CanEditRoles bool
	RoleRows     []roleRow
	RoleForm     roleForm

	ShowTokens     bool
	CanCreateToken bool
	Tokens         tokenTable
	TokenForm      tokenForm
	Lifetimes      []lifetime

	Usage *usageSection // nil unless the caller may read everyone's usage

	ShowSecurity   bool
	SecurityEvents []securityEvent // the latest anomaly.* audit events
	Audit          *auditView      // nil unless the caller may read the audit log

	ShowBreakGlass bool
	BreakGlass     []breakGlassRow // the grants not acknowledged yet (break_glass.go)
}

type userRow struct {
	store.User
	Self       bool
	NextStatus string // the status the status form sets; none for pending and denied users
	CanStatus  bool
	CanRole    bool
	CanDelete  bool
}

type userFilter struct {
	Status, Role, Query string
}

type roleRow struct {
	Name        string
	Rank        int
	Custom      bool
	Inherits    []string
	Permissions []string // effective, inherited ones included
	Models      []string
}

type roleForm struct {
	Name, Rank, Inherits, Permissions, Models string
}

type tokenForm struct {
	Name, Permissions, Models, ExpiresIn string
}

type tokenTable struct {
	Rows         []tokenRow
	RevokeAction string // form action prefix; the row adds /{id}/revoke
}

type tokenRow struct {
	store.APIToken
	State string // active, expired or revoked
	// Quotas are the token's own limits, readable ("requests/min 60,
	// tokens/day 100000"); empty when it has none.
	Quotas string
}

type lifetime struct {
	Value, Label string
}

// dashState is what a request brings to the dashboard: the filter, and after
// a form, its outcome and its values.
type dashState struct {
	Error, Notice string
	Filter        userFilter
	Cursor        string
	RoleForm      roleForm
	TokenForm     tokenForm
	Created       *actions.CreatedToken
	Audit         auditQuery
}

func (p *Pages) admin(w http.ResponseWriter, r *http.Request) error {
	sub, err := p.authorize(r, "GET "+canonical("/admin"))
	if err != nil {
		return err
	}
	q := r.URL.Query()
	st := dashState{Notice: notices[q.Get("notice")], Filter: filterFrom(q), Cursor: q.Get("cursor"), Audit: auditQueryFrom(q)}
	created, lost := p.takeFlash(w, r, sub, "/admin")
	switch {
	case created != nil:
		st.Created, st.Notice = created, "The system token was created."
	case lost:
		st.Error = flashLost
	}
	return p.renderDashboard(w, r, sub, http.StatusOK, st)
}

func filterFrom(q url.Values) userFilter {
	f := userFilter{Role: q.Get("role"), Query: strings.TrimSpace(q.Get("q"))}
	switch s := q.Get("status"); s {
	case store.StatusPending, store.StatusActive, store.StatusSuspended, store.StatusDenied:
		f.Status = s
	}
	return f
}

func (f userFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"status": f.Status, "role": f.Role, "q": f.Query} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func (p *Pages) renderDashboard(w http.ResponseWriter, r *http.Request, sub *core.Subject, status int, st dashState) error {
	ctx := r.Context()
	d := p.dataFor(r, "Admin", sub)
	d.Wide = true
	d.Error, d.Notice, d.Created = st.Error, st.Notice, st.Created
	d.Roles = p.roles()
	dash := &dashboard{Filter: st.Filter, RoleForm: st.RoleForm, TokenForm: st.TokenForm,
		StatusChoices: []string{store.StatusPending, store.StatusActive, store.StatusSuspended, store.StatusDenied}}
	d.Dash = dash

	if dash.ShowRequests = p.acts.Allowed(r, sub, routeListRequests, nil, nil); dash.ShowRequests {
		all, err := p.rt.Store.ListAccessRequests(ctx, "all")
		if err != nil {
			return err
		}
		d.Requests, dash.History = pendingAndHistory(all)
	}

	if dash.ShowElevations = p.acts.MayReviewElevations(r, sub, routeListElevations); dash.ShowElevations {
		list, err := p.rt.Store.ListElevations(ctx, store.ElevationFilter{Status: store.ElevationPending})
		if err != nil {
			return err
		}
		dash.Elevations = list
	}

	if dash.ShowUsers = p.acts.Allowed(r, sub, routeListUsers, nil, nil); dash.ShowUsers {
		f := store.UserFilter{Status: st.Filter.Status, Role: st.Filter.Role, Query: st.Filter.Query, Limit: usersPerPage, Cursor: st.Cursor}
		users, next, err := p.rt.Store.ListUsers(ctx, f)
		if err != nil {
			return err
		}
		q := st.Filter.query()
		dash.FilterQuery = q.Encode()
		if next != "" {
			q.Set("cursor", next)
			dash.NextPage = p.rt.PagesPrefix + "/admin?" + q.Encode() + "#users"
		}
		dash.Users = p.userRows(r, sub, users)
		if p.acts.Allowed(r, sub, routeUserRole, nil, nil) {
			for _, role := range d.Roles {
				if p.acts.Allowed(r, sub, routeUserRole, nil, &policy.Change{Role: role}) {
					dash.Grantable = append(dash.Grantable, role)
				}
			}
		}
	}

	if dash.ShowRoles = p.acts.Allowed(r, sub, routeGetSettings, nil, nil); dash.ShowRoles {
		rows, err := p.roleRows(r)
		if err != nil {
			return err
		}
		dash.RoleRows = rows
		dash.CanEditRoles = p.acts.Allowed(r, sub, routePutSettings, nil, nil)
	}

	system := &policy.Change{TokenKind: store.TokenSystem}
	if dash.ShowTokens = sub.Auth == policy.AuthSession && p.acts.Allowed(r, sub, routeListTokens, nil, system); dash.ShowTokens {
		list, err := p.rt.ListTokens(ctx, store.TokenFilter{Kind: store.TokenSystem})
		if err != nil {
			return err
		}
		dash.Tokens = tokenTable{Rows: tokenRows(list, time.Now()), RevokeAction: p.rt.PagesPrefix + "/admin/tokens"}
		dash.CanCreateToken = p.acts.Allowed(r, sub, routeCreateToken, nil, system)
		dash.Lifetimes = p.lifetimes(store.TokenSystem, []string{"30d", "90d", "365d"})
		if dash.TokenForm.ExpiresIn == "" {
			dash.TokenForm.ExpiresIn = "90d"
		}
	}

	if dash.ShowSecurity = p.acts.Allowed(r, sub, routeAudit, nil, nil); dash.ShowSecurity {
		events, err := p.securityEvents(r)
		if err != nil {
			return err
		}
		dash.SecurityEvents = events
		if dash.Audit, err = p.auditView(r, st.Audit); err != nil {
			return err
		}
	}

	// Emergency access heads the dashboard while a grant waits for
	// acknowledgement, and is not there otherwise.
	if p.acts.Allowed(r, sub, routeListBreakGlass, nil, nil) {
		rows, err := p.breakGlassRows(r, sub)
		if err != nil {
			return err
		}
		dash.BreakGlass, dash.ShowBreakGlass = rows, len(rows) > 0
	}

	if p.acts.MayReadUsageOfOthers(r, sub, routeUsage) {
		usage, err := p.usageSection(r, time.Now())
		if err != nil {
			return err
		}
		dash.Usage = usage
	}
	p.render(w, status, "admin", d)
	return nil
}

// userRows pairs each user with the forms the policy allows the caller on them.
func (p *Pages) userRows(r *http.Request, sub *core.Subject, users []store.User) []userRow {
	mayStatus := p.acts.Allowed(r, sub, routeUserStatus, nil, nil)
	mayRole := p.acts.Allowed(r, sub, routeUserRole, nil, nil)
	mayDelete := p.acts.Allowed(r, sub, routeDeleteUser, nil, nil)
	rows := make([]userRow, 0, len(users))
	for _, u := range users {
		row := userRow{User: u, Self: u.ID == sub.User.ID}
		// Pending and denied people get access through a reviewed request,
		// never by an Activate button that skips the review.
		switch u.Status {
		case store.StatusActive:
			row.NextStatus = store.StatusSuspended
		case store.StatusSuspended:
			row.NextStatus = store.StatusActive
		}
		// Nobody gets forms on their own row: the API refuses deleting
		// yourself, and suspending or demoting yourself from a list is a slip.
		if !row.Self {
			target := &policy.Target{ID: u.ID, Role: u.Role, Status: u.Status}
			row.CanStatus = mayStatus && row.NextStatus != "" && p.acts.Allowed(r, sub, routeUserStatus, target, &policy.Change{Status: row.NextStatus})
			row.CanRole = mayRole && p.acts.Allowed(r, sub, routeUserRole, target, nil)
			row.CanDelete = mayDelete && p.acts.Allowed(r, sub, routeDeleteUser, target, nil)
		}
		rows = append(rows, row)
	}
	return rows
}

func (p *Pages) roleRows(r *http.Request) ([]roleRow, error) {
	settings, err := p.rt.Settings(r.Context())
	if err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	engine := p.rt.Policy()
	ranks := engine.Roles()
	var rows []roleRow
	for _, name := range p.roles() {
		perms, err := engine.Permissions(r.Context(), name)
		if err != nil {
			return nil, err
		}
		set, inSettings := settings.Roles[name]
		rows = append(rows, roleRow{Name: name, Rank: ranks[name], Custom: inSettings && set.Rank > 0,
			Inherits: set.Inherits, Permissions: perms, Models: set.Models})
	}
	return rows, nil
}

func tokenRows(list []store.APIToken, now time.Time) []tokenRow {
	rows := make([]tokenRow, 0, len(list))
	for _, t := range list {
		state := "active"
		switch {
		case t.RevokedAt != nil:
			state = "revoked"
		case !t.ExpiresAt.After(now):
			state = "expired"
		}
		rows = append(rows, tokenRow{APIToken: t, State: state, Quotas: readableLimits(t.Limits)})
	}
	return rows
}

// readableLimits lists the limits l sets, each as its unit and number, in
// the order of quota.Limits; empty when l sets none.
func readableLimits(l *quota.Limits) string {
	if l == nil {
		return ""
	}
	var set []string
	for _, w := range []struct {
		unit  string
		limit int64
	}{
		{"requests/min", l.RequestsPerMinute}, {"tokens/min", l.TokensPerMinute}, {"tokens/day", l.TokensPerDay},
		{"tokens/month", l.TokensPerMonth}, {"concurrent requests", l.ConcurrentRequests},
	} {
		if w.limit != 0 {
			set = append(set, w.unit+" "+strconv.FormatInt(w.limit, 10))
		}
	}
	return strings.Join(set, ", ")
}

// lifetimes are the choices of a token's life up to the longest its kind may have.
func (p *Pages) lifetimes(kind string, choices []string) []lifetime {
	longest := p.rt.MaxTokenLifetime(kind)
	var out []lifetime
	for _, c := range choices {
		d, err := core.ParseLifetime(c)
		if err != nil || (longest > 0 && d > longest) {
			continue
		}
		out = append(out, lifetime{Value: c, Label: strings.TrimSuffix(c, "d") + " days"})
	}
	if len(out) == 0 && longest > 0 {
		out = append(out, lifetime{Value: "", Label: "longest allowed (" + longest.String() + ")"})
	}
	return out
}

// dashboardFailure shows what went wrong on the dashboard, or on an error
// page when the caller may not open the dashboard at all.
func (p *Pages) dashboardFailure(w http.ResponseWriter, r *http.Request, sub *core.Subject, what string, err error, st dashState) error {
	pr := p.problemOf(r, err)
	st.Error = failureMessage(what, pr)
	st.Filter = filterFrom(p.returnFilter(r))
	if !p.canReview(r, sub) {
		return &failure{status: pr.Status, title: pr.Title, message: st.Error, sub: sub}
	}
	return p.renderDashboard(w, r, sub, pr.Status, st)
}

// returnFilter is the users filter a form was sent from.
func (p *Pages) returnFilter(r *http.Request) url.Values {
	q, err := url.ParseQuery(r.PostFormValue("filter"))
	if err != nil {
		return url.Values{}
	}
	return q
}

// backToDashboard answers a successful form with a redirect to the section
// it came from (post/redirect/get).
func (p *Pages) backToDashboard(r *http.Request, notice, section string) error {
	q := filterFrom(p.returnFilter(r)).query()
	q.Set("notice", notice)
	return seeOther(p.rt.PagesPrefix + "/admin?" + q.Encode() + "#" + section)
}

// review serves the approve (approve) and deny forms of a request.
func (p *Pages) review(approve bool) handler {
	verb, notice := "deny", "denied"
	if approve {
		verb, notice = "approve", "approved"
	}
	route := "PUT /api/access/{id}/" + verb
	return func(w http.ResponseWriter, r *http.Request) error {
		sub, err := p.formAction(w, r)
		if err != nil {
			return err
		}
		in := actions.Review{Comment: strings.TrimSpace(r.PostFormValue("comment"))}
		if approve {
			in.Role = r.PostFormValue("role")
			if v := r.PostFormValue("expires_at"); v != "" {
				t, err := time.ParseInLocation("2006-01-02T15:04", v, time.UTC)
				if err != nil {
					return p.dashboardFailure(w, r, sub, "The request was not approved", refusal.Validation("the expiry date could not be read"), dashState{})
				}
				in.ExpiresAt = &t
			}
		}
		if _, err := p.acts.DecideAccessRequest(r, route, r.PathValue("id"), approve, in); err != nil {
			return p.dashboardFailure(w, r, sub, "The request was not "+notice, err, dashState{})
		}
		return p.backToDashboard(r, notice, "requests")
	}
}

func (p *Pages) setStatus(w http.ResponseWriter, r *http.Request) error {
	sub, err := p.formAction(w, r)
	if err != nil {
		return err
	}
	status := r.PostFormValue("status")
	if _, err := p.acts.SetUserStatus(r, routeUserStatus, status, strings.TrimSpace(r.PostFormValue("reason"))); err != nil {
		return p.dashboardFailure(w, r, sub, "The status was not changed", err, dashState{})
	}
	notice := "activated"
	if status == store.StatusSuspended {
		notice = "suspended"
	}
	return p.backToDashboard(r, notice, "users")
}

func (p *Pages) setRole(w http.ResponseWriter, r *http.Request) error {
	sub, err := p.formAction(w, r)
	if err != nil {
		return err
	}
	if _, err := p.acts.SetUserRole(r, routeUserRole, r.PostFormValue("role")); err != nil {
		return p.dashboardFailure(w, r, sub, "The role was not changed", err, dashState{})
	}
	return p.backToDashboard(r, "role_changed", "users")
}

func (p *Pages) deleteUser(w http.ResponseWriter, r *http.Request) error {
	sub, err := p.formAction(w, r)
	if err != nil {
		return err
	}
	// The confirmation box is required in the form; a browser that ignores
	// that still cannot delete by a single stray click.
	if r.PostFormValue("confirm") != "yes" {
		return p.dashboardFailure(w, r, sub, "The user was not deleted", refusal.Validation("tick the confirmation box to delete a user"), dashState{})
	}
	if err := p.acts.DeleteUser(r, routeDeleteUser); err != nil {
		return p.dashboardFailure(w, r, sub, "The user was not deleted", err, dashState{})
	}
	return p.backToDashboard(r, "deleted", "users")
}

func (p *Pages) saveRole(w http.ResponseWriter, r *http.Request) error {
	sub, err := p.formAction(w, r)
	if err != nil {
		return err
	}
	form := roleForm{
		Name:        strings.TrimSpace(r.PostFormValue("name")),
		Rank:        strings.TrimSpace(r.PostFormValue("rank")),
		Inherits:    r.PostFormValue("inherits"),
		Permissions: r.PostFormValue("permissions"),
		Models:      r.PostFormValue("models"),
	}
	fail := func(err error) error {
		return p.dashboardFailure(w, r, sub, "The role was not saved", err, dashState{RoleForm: form})
	}
	if _, err := p.acts.Authorize(r, routePutSettings, nil, nil); err != nil {
		return fail(err)
	}
	role, err := form.setting()
	if err != nil {
		return fail(err)
	}
	if _, _, err := p.acts.PutRole(r, routePutSettings, form.Name, role); err != nil {
		return fail(err)
	}
	return p.backToDashboard(r, "role_saved", "roles")
}

// setting reads the role form. Empty lists stay nil: a built-in role may be
// given models only, and the settings tell "not given" from "empty" by nil.
func (f roleForm) setting() (core.RoleSetting, error) {
	var s core.RoleSetting
	if f.Name == "" || strings.ContainsFunc(f.Name, func(r rune) bool { return r <= ' ' }) {
		return s, refusal.Validation("the role needs a name without spaces")
	}
	if f.Rank != "" {
		n, err := strconv.Atoi(f.Rank)
		if err != nil {
			return s, refusal.Validation("the rank must be a whole number")
		}
		s.Rank = n
	}
	s.Inherits = fieldsOrNil(f.Inherits)
	s.Permissions = fieldsOrNil(f.Permissions)
	s.Models = fieldsOrNil(f.Models)
	return s, nil
}

func fieldsOrNil(s string) []string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil
	}
	return f
}

func (p *Pages) createSystemToken(w http.ResponseWriter, r *http.Request) error {
	sub, err := p.formAction(w, r)
	if err != nil {
		return err
	}
	form := tokenFormFrom(r)
	tok, err := p.acts.CreateToken(r, routeCreateToken, form.input(store.TokenSystem))
	if err != nil {
		return p.dashboardFailure(w, r, sub, "The token was not created", err, dashState{TokenForm: form})
	}
	if err := p.setFlash(w, sub, "/admin", tok); err != nil {
		return err
	}
	to := p.rt.PagesPrefix + "/admin"
	if q := filterFrom(p.returnFilter(r)).query().Encode(); q != "" {
		to += "?" + q
	}
	return seeOther(to)
}

func tokenFormFrom(r *http.Request) tokenForm {
	return tokenForm{
		Name:        strings.TrimSpace(r.PostFormValue("name")),
		Permissions: r.PostFormValue("permissions"),
		Models:      r.PostFormValue("models"),
		ExpiresIn:   r.PostFormValue("expires_in"),
	}
}

func (f tokenForm) input(kind string) actions.TokenRequest {
	return actions.TokenRequest{Name: f.Name, Kind: kind, Permissions: strings.Fields(f.Permissions),
		Models: fieldsOrNil(f.Models), ExpiresIn: f.ExpiresIn}
}

// revokeToken serves the revoke buttons of the dashboard and the account page.
func (p *Pages) revokeToken(page string) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		sub, err := p.formAction(w, r)
		if err != nil {
			return err
		}
		err = p.acts.RevokeToken(r, routeRevokeToken, r.PathValue("id"))
		switch {
		case err != nil && page == "/account":
			return p.accountFailure(w, r, sub, "The token was not revoked", err, tokenForm{})
		case err != nil:
			return p.dashboardFailure(w, r, sub, "The token was not revoked", err, dashState{})
		}
		return seeOther(p.rt.PagesPrefix + page + "?notice=token_revoked#tokens")
	}
}

// securityEventsShown bounds the dashboard's list of security events.
const securityEventsShown = 20

// securityEvent is one row of the Security events list.
type securityEvent struct {
	store.AuditEvent
	Kind, Subject, Count, Window string
}

// securityEvents are the latest anomaly.* audit events, newest first.
func (p *Pages) securityEvents(r *http.Request) ([]securityEvent, error) {
	var events []store.AuditEvent
	for _, kind := range []string{core.AnomalyRefusalBurst, core.AnomalyTokenManyIPs, core.AnomalyFirstModelUse, core.AnomalyLoginFailures} {
		list, err := p.rt.Store.ListAudit(r.Context(), store.AuditFilter{Type: "anomaly." + kind, Limit: securityEventsShown})
		if err != nil {
			return nil, err
		}
		events = append(events, list...)
	}
	slices.SortFunc(events, func(a, b store.AuditEvent) int { return cmp.Compare(b.ID, a.ID) })
	rows := make([]securityEvent, 0, min(len(events), securityEventsShown))
	for _, e := range events[:min(len(events), securityEventsShown)] {
		text := func(k string) string {
			if v, ok := e.Detail[k]; ok {
				return fmt.Sprint(v)
			}
			return ""
		}
		row := securityEvent{AuditEvent: e, Kind: strings.TrimPrefix(e.Type, "anomaly."),
			Subject: text("subject"), Count: text("count"), Window: text("window")}
		if m := text("model"); m != "" {
			row.Subject += " · " + m
		}
		rows = append(rows, row)
	}
	return rows, nil
}
