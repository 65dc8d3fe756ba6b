package pages

import (
	"net/http"

	"github.com/gatehouse/gatehouse/identity"
)

// signInPage lets the person choose a provider (spec §10); with one
// provider it goes straight to it.
func (p *Pages) signInPage(w http.ResponseWriter, r *http.Request) error {
	choices := p.rt.LoginChoices(identity.SafeRedirect(r.URL.Query().Get("rd")))
	if len(choices) == 1 {
		return seeOther(choices[0].LoginURL)
	}
	d := p.data("Sign in", nil)
	d.Providers = choices
	p.render(w, http.StatusOK, "sign_in", d)
	return nil
}
