package admin

import (
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

// account is what the account page shows beyond pageData.
type account struct {
	Permissions    []string
	ShowTokens     bool
	CanCreateToken bool
	Tokens         tokenTable
	Form           tokenForm
	Lifetimes      []lifetime
}

func (p *pages) account(w http.ResponseWriter, r *http.Request) {
	sub, ok := p.authorizePage(w, r, "GET "+p.canonical("/account"))
	if !ok {
		return
	}
	p.renderAccount(w, r, sub, http.StatusOK, "", notices[r.URL.Query().Get("notice")], tokenForm{}, nil)
}

func (p *pages) renderAccount(w http.ResponseWriter, r *http.Request, sub *core.Subject, status int, errMsg, notice string, form tokenForm, created *createdToken) {
	ctx := r.Context()
	d := p.dataFor(r, "Your account", sub)
	d.Wide = true // room for the token table
	d.Error, d.Notice, d.Created = errMsg, notice, created
	acc := &account{Form: form}
	d.Account = acc
	perms, err := p.a.rt.Policy().Permissions(ctx, sub.User.Role)
	if err != nil {
		p.a.logError(r, err)
		p.renderError(w, http.StatusServiceUnavailable, "Temporarily unavailable", "Please try again shortly.")
		return
	}
	acc.Permissions = perms
	// Tokens are managed from a session only, as in the API: a leaked token
	// must not list or mint others.
	if acc.ShowTokens = sub.Auth == policy.AuthSession && p.allowed(r, sub, routeListTokens, nil, nil); acc.ShowTokens {
		list, err := p.a.rt.ListTokens(ctx, store.TokenFilter{UserID: sub.User.ID})
		if err != nil {
			p.a.logError(r, err)
			p.renderError(w, http.StatusServiceUnavailable, "Temporarily unavailable", "Please try again shortly.")
			return
		}
		acc.Tokens = tokenTable{Rows: tokenRows(list, time.Now()), RevokeAction: p.a.rt.PagesPrefix + "/account/tokens"}
		acc.CanCreateToken = p.allowed(r, sub, routeCreateToken, nil, &policy.Change{TokenKind: store.TokenPersonal})
		acc.Lifetimes = p.lifetimes(store.TokenPersonal, []string{"7d", "30d", "90d"})
		if acc.Form.ExpiresIn == "" {
			acc.Form.ExpiresIn = "30d"
		}
	}
	p.render(w, status, "account", d)
}

// accountFailure shows what went wrong on the account page, or on an error
// page when the caller may not open it.
func (p *pages) accountFailure(w http.ResponseWriter, r *http.Request, sub *core.Subject, what string, pr *Problem, form tokenForm) {
	msg := failureMessage(what, pr)
	if !p.allowed(r, sub, "GET "+p.canonical("/account"), nil, nil) {
		d := p.dataFor(r, pr.Title, sub)
		d.Message = msg
		p.render(w, pr.Status, "error", d)
		return
	}
	p.renderAccount(w, r, sub, pr.Status, msg, "", form, nil)
}

func (p *pages) createPersonalToken(w http.ResponseWriter, r *http.Request) {
	sub, ok := p.formAction(w, r, routeCreateToken)
	if !ok {
		return
	}
	form := tokenFormFrom(r)
	rec := newRecorder()
	tok, err := p.a.newTokenFor(rec, r, routeCreateToken, form.input(store.TokenPersonal))
	if pr := p.outcome(r, rec, err); pr != nil {
		p.accountFailure(w, r, sub, "The token was not created", pr, form)
		return
	}
	// The one answer that holds the token string: rendered, not redirected to.
	p.renderAccount(w, r, sub, http.StatusOK, "", "", tokenForm{}, tok)
}
