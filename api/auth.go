package api

import (
	"cmp"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/actions"
	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/refusal"
	"github.com/gatehouse/gatehouse/store"
)

// login starts the authorization-code flow at the provider ?idp= names (or
// the only one): a sealed login-state cookie, then the IdP (303), or its URL
// as JSON for clients that ask for JSON. With several providers and none
// named, a browser goes to the sign-in page to choose, and a JSON client
// gets the choices.
func (a *API) login(w http.ResponseWriter, r *http.Request, route string) error {
	q := r.URL.Query()
	rd, idp := q.Get("rd"), q.Get("idp")
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, actions.MaxBodyBytes)
		rd, idp = cmp.Or(rd, r.PostFormValue("rd")), cmp.Or(idp, r.PostFormValue("idp"))
	}
	rd = identity.SafeRedirect(rd)
	providers := a.rt.Providers()
	var rp *identity.RP
	switch {
	case idp != "":
		if rp = a.rt.Provider(idp); rp == nil {
			return refusal.New(http.StatusBadRequest, "unknown_idp", "Unknown identity provider",
				"no identity provider is named "+strconv.Quote(truncate(idp, 40))+"; the sign-in page lists them")
		}
	case len(providers) == 1:
		rp = providers[0]
	case acceptsJSON(r):
		writeJSON(w, http.StatusOK, map[string]any{"providers": a.rt.LoginChoices(rd)})
		return nil
	default:
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, a.rt.PagesPrefix+"/sign-in?rd="+url.QueryEscape(rd), http.StatusSeeOther)
		return nil
	}
	// A step-up (stepup.go in core) asks the provider for the sign-in a
	// rule needs; an unknown rule name is a plain sign-in.
	var stepUp *identity.StepUp
	if name := q.Get("step_up"); name != "" {
		stepUp = a.rt.StepUpRule(name)
	}
	authURL, ls, err := rp.Begin(r.Context(), rd, stepUp)
	if errors.Is(err, identity.ErrMisconfigured) {
		a.rt.Logger.Error("sign-in is misconfigured", zap.Error(err))
		return errMisconfigured
	}
	if err != nil {
		a.logError(r, err)
		w.Header().Set("Retry-After", "10")
		return refusal.New(http.StatusServiceUnavailable, "idp_unavailable", "Identity provider unavailable",
			"the identity provider cannot be reached right now; sign-in will work again as soon as it answers")
	}
	cookie, err := identity.SealLoginState(a.rt.LoginSealer, ls, a.rt.Secure)
	if err != nil {
		return err
	}
	for _, stale := range identity.StaleLoginCookies(a.rt.LoginSealer, r, a.rt.Secure, time.Now()) {
		http.SetCookie(w, stale)
	}
	http.SetCookie(w, cookie)
	if acceptsJSON(r) {
		writeJSON(w, http.StatusOK, map[string]string{"authorize_url": authURL})
		return nil
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, authURL, http.StatusSeeOther)
	return nil
}

// errMisconfigured is a sign-in that can never work until the operator fixes
// the provider's registration; the cause is in the log at error.
var errMisconfigured = refusal.New(http.StatusInternalServerError, "login_misconfigured", "Sign-in is misconfigured",
	"sign-in is misconfigured; please tell the administrator (Gatehouse's log names the cause)")

// misconfiguredAtIdP are the authorization errors (RFC 6749 §4.1.2.1) that
// say the client registration is wrong, not the person's sign-in.
var misconfiguredAtIdP = map[string]bool{"unauthorized_client": true, "invalid_client": true,
	"unsupported_response_type": true, "invalid_scope": true}

// callback finishes sign-in: checks state, exchanges the code, verifies the ID
// token, records the user and starts a brand-new session.
func (a *API) callback(w http.ResponseWriter, r *http.Request, route string) error {
	q := r.URL.Query()
	state := q.Get("state")
	fail := func(p *refusal.Problem, cause error) error {
		a.rt.Metrics().Login(p.Code)
		a.rt.LoginFailed(r)
		a.rt.Audit(r.Context(), r, core.AuditEvent{Type: "login.failed", Detail: map[string]any{"code": p.Code, "error": errString(cause)}})
		if state != "" {
			// Only this flow's state: another tab's sign-in goes on.
			http.SetCookie(w, identity.ClearLoginCookie(a.rt.Secure, state))
		}
		if p.Code == errMisconfigured.Code {
			a.rt.Logger.Error("sign-in is misconfigured", zap.Error(cause))
		}
		return p
	}
	failed := func(status int, code, detail string) *refusal.Problem {
		return refusal.New(status, code, "Sign-in failed", detail)
	}
	if e := q.Get("error"); e != "" {
		if misconfiguredAtIdP[e] {
			return fail(errMisconfigured, fmt.Errorf("the identity provider answered the authorization request with %s: %s", e, truncate(q.Get("error_description"), 200)))
		}
		return fail(failed(http.StatusBadRequest, "login_failed", "the identity provider refused the sign-in ("+truncate(e, 100)+")"), errors.New(e))
	}
	ls, err := identity.OpenLoginState(a.rt.LoginSealer, r, a.rt.Secure, state, time.Now())
	if err != nil {
		return fail(failed(http.StatusBadRequest, "login_state_invalid", "this sign-in was not started here or took too long; please sign in again"), err)
	}
	if err := identity.CheckState(ls, state); err != nil {
		return fail(failed(http.StatusBadRequest, "login_state_invalid", "the sign-in response does not belong to this browser; please sign in again"), err)
	}
	rp := a.rt.Provider(ls.Provider)
	if rp == nil && len(a.rt.Providers()) == 1 && ls.Provider == "" {
		rp = a.rt.Providers()[0] // a login begun before a provider had a name
	}
	if rp == nil {
		return fail(failed(http.StatusBadRequest, "login_state_invalid", "this sign-in was begun at a provider that is no longer configured; please sign in again"),
			fmt.Errorf("login state names provider %q", ls.Provider))
	}
	claims, err := rp.Finish(r.Context(), ls, q.Get("code"))
	switch {
	case errors.Is(err, identity.ErrMisconfigured):
		return fail(errMisconfigured, err)
	case errors.Is(err, identity.ErrProviderUnavailable):
		return fail(failed(http.StatusServiceUnavailable, "idp_unavailable", "the identity provider cannot be reached right now; please try again shortly"), err)
	case err != nil:
		return fail(failed(http.StatusBadRequest, "login_failed", "the identity provider's answer could not be verified; please sign in again"), err)
	}
	if ok, missing := ls.StepUp.Satisfied(claims.ACR, claims.AMR, claims.AuthTime, time.Now()); !ok {
		return fail(failed(http.StatusUnauthorized, "step_up_failed", "your identity provider did not confirm "+missing+
			", which the page you asked for needs (step-up "+ls.StepUp.Rule+"); you are still signed in as before"),
			fmt.Errorf("step-up %s: the ID token has acr %q, amr %v, auth_time %s", ls.StepUp.Rule, claims.ACR, claims.AMR, claims.AuthTime))
	}
	ctx := r.Context()
	user, err := a.rt.Store.RecordLogin(ctx, store.LoginInfo{
		Issuer:         claims.Issuer,
		Subject:        claims.Subject,
		Provider:       rp.Name(),
		Email:          claims.Email,
		Name:           claims.Name,
		BootstrapAdmin: a.rt.IsBootstrapAdmin(claims.Email),
		Now:            time.Now().UTC(),
	})
	if err != nil {
		return err
	}
	if user, err = a.rt.ApplySignInRules(ctx, r, user, claims, rp.Name()); err != nil {
		return err
	}
	a.rt.InvalidateUser(user.ID)
	// Whatever session this browser had before is ended, so a planted cookie
	// never becomes a signed-in session (session fixation).
	if err := a.rt.EndSession(ctx, r); err != nil {
		return err
	}
	cookie, _, err := a.rt.Sessions.Create(ctx, user.ID, claims.RawIDToken,
		store.AuthContext{ACR: claims.ACR, AMR: claims.AMR, AuthTime: claims.AuthTime})
	if err != nil {
		return err
	}
	a.rt.Metrics().Login(metrics.LoginOK)
	a.rt.LoginSucceeded(r)
	a.rt.Audit(ctx, r, core.AuditEvent{Type: "login", ActorID: user.ID, TargetID: user.ID,
		Detail: map[string]any{"status": user.Status, "role": user.Role, "provider": rp.Name()}})
	http.SetCookie(w, identity.ClearLoginCookie(a.rt.Secure, state))
	http.SetCookie(w, cookie)
	w.Header().Set("Cache-Control", "no-store")
	dest := ls.Redirect
	if user.Status != store.StatusActive || (user.AccessExpiresAt != nil && !user.AccessExpiresAt.After(time.Now())) {
		dest = a.rt.PagesPrefix + "/request-access"
	}
	http.Redirect(w, r, dest, http.StatusSeeOther)
	return nil
}

// logout ends the session (if any), clears the cookie and, for a form post,
// continues to the IdP's end-session endpoint when it has one.
func (a *API) logout(w http.ResponseWriter, r *http.Request, route string) error {
	ctx := r.Context()
	var hint string
	var rp *identity.RP
	sub, _, err := a.acts.Identify(r)
	if err != nil {
		return err
	}
	if sub != nil {
		if _, err := a.acts.Authorize(r, route, nil, nil); err != nil {
			return err
		}
		hint = sub.Session.IDTokenHint
		rp = a.rt.ProviderOf(sub.User.Issuer)
		if err := a.rt.Logout(ctx, r, sub); err != nil {
			return err
		}
	}
	http.SetCookie(w, a.rt.Sessions.ClearCookie())
	if isFormPost(r) {
		if hint != "" && rp != nil {
			if u := rp.EndSessionURL(ctx, hint, a.rt.PublicURL.String()+"/"); u != "" && a.pages != nil {
				a.pages.SignOutPage(w, u)
				return nil
			}
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// refresh rotates the session: the old cookie stops working at once.
func (a *API) refresh(w http.ResponseWriter, r *http.Request, route string) error {
	if _, err := a.acts.Authorize(r, route, nil, nil); err != nil {
		return err
	}
	ctx := r.Context()
	cookie, sess, err := a.rt.RotateSession(ctx, r)
	if errors.Is(err, identity.ErrSessionInvalid) || errors.Is(err, identity.ErrNoSession) {
		return actions.InvalidCredentials("the session is no longer valid")
	}
	if err != nil {
		return err
	}
	user, err := a.rt.Store.GetUser(ctx, sess.UserID)
	if err != nil {
		return err
	}
	http.SetCookie(w, cookie)
	writeJSON(w, http.StatusOK, map[string]any{"user": user, "expires_at": sess.ExpiresAt.UTC()})
	return nil
}

// userView is a user record with the caller's effective permissions.
type userView struct {
	store.User
	Permissions []string `json:"permissions"`
}

func (a *API) me(w http.ResponseWriter, r *http.Request, route string) error {
	sub, err := a.acts.Authorize(r, route, nil, nil)
	if err != nil {
		return err
	}
	ctx := r.Context()
	perms := []string{}
	if sub.User.Status == store.StatusActive {
		p, err := a.rt.Policy().Permissions(ctx, sub.User.Role)
		if err != nil {
			return err
		}
		perms = p
		if sub.Token != nil {
			// A token has what its scope and the role have in common (spec §3a).
			perms = slices.DeleteFunc(perms, func(p string) bool { return !slices.Contains(sub.Token.Scope, p) })
		}
	}
	var req any
	latest, err := a.rt.Store.LatestAccessRequest(ctx, sub.User.ID)
	switch {
	case err == nil:
		req = latest
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": userView{sub.User, perms}, "access_request": req})
	return nil
}

func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func acceptsJSON(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

func isFormPost(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return truncate(err.Error(), 300)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
