package pages

import (
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/actions"
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
	Usage          *ownUsage
	Elevation      *elevationSection
	Durations      []lifetime
}

func (p *Pages) account(w http.ResponseWriter, r *http.Request) error {
	sub, err := p.authorize(r, "GET "+canonical("/account"))
	if err != nil {
		return err
	}
	created, lost := p.takeFlash(w, r, sub, "/account")
	var errMsg string
	if lost {
		errMsg = flashLost
	}
	return p.renderAccount(w, r, sub, http.StatusOK, errMsg, notices[r.URL.Query().Get("notice")], tokenForm{}, created)
}

func (p *Pages) renderAccount(w http.ResponseWriter, r *http.Request, sub *core.Subject, status int, errMsg, notice string, form tokenForm, created *actions.CreatedToken) error {
	ctx := r.Context()
	d := p.dataFor(r, "Your account", sub)
	d.Wide = true // room for the token table
	d.Error, d.Notice, d.Created = errMsg, notice, created
	acc := &account{Form: form}
	d.Account = acc
	perms, err := p.rt.Policy().Permissions(ctx, sub.User.Role)
	if err != nil {
		return err
	}
	acc.Permissions = perms
	if acc.Elevation, err = p.elevationSection(r, sub); err != nil {
		return err
	}
	acc.Durations = elevationDurations
	if p.acts.Allowed(r, sub, routeUsage, nil, nil) {
		if acc.Usage, err = p.ownUsage(r, sub, time.Now()); err != nil {
			return err
		}
	}
	// Tokens are managed from a session only, as in the API: a leaked token
	// must not list or mint others.
	if acc.ShowTokens = sub.Auth == policy.AuthSession && p.acts.Allowed(r, sub, routeListTokens, nil, nil); acc.ShowTokens {
		list, err := p.rt.ListTokens(ctx, store.TokenFilter{UserID: sub.User.ID})
		if err != nil {
			return err
		}
		acc.Tokens = tokenTable{Rows: tokenRows(list, time.Now()), RevokeAction: p.rt.PagesPrefix + "/account/tokens"}
		acc.CanCreateToken = p.acts.Allowed(r, sub, routeCreateToken, nil, &policy.Change{TokenKind: store.TokenPersonal})
		acc.Lifetimes = p.lifetimes(store.TokenPersonal, []string{"7d", "30d", "90d"})
		if acc.Form.ExpiresIn == "" {
			acc.Form.ExpiresIn = "30d"
		}
	}
	p.render(w, status, "account", d)
	return nil
}

// accountFailure shows what went wrong on the account page, or on an error
// page when the caller may not open it.
func (p *Pages) accountFailure(w http.ResponseWriter, r *http.Request, sub *core.Subject, what string, err error, form tokenForm) error {
	pr := p.problemOf(r, err)
	msg := failureMessage(what, pr)
	if !p.acts.Allowed(r, sub, "GET "+canonical("/account"), nil, nil) {
		return &failure{status: pr.Status, title: pr.Title, message: msg, sub: sub}
	}
	return p.renderAccount(w, r, sub, pr.Status, msg, "", form, nil)
}

func (p *Pages) createPersonalToken(w http.ResponseWriter, r *http.Request) error {
	sub, err := p.formAction(w, r)
	if err != nil {
		return err
	}
	form := tokenFormFrom(r)
	tok, err := p.acts.CreateToken(r, routeCreateToken, form.input(store.TokenPersonal))
	if err != nil {
		return p.accountFailure(w, r, sub, "The token was not created", err, form)
	}
	if err := p.setFlash(w, sub, "/account", tok); err != nil {
		return err
	}
	return seeOther(p.rt.PagesPrefix + "/account")
}
