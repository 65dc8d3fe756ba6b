package core

import (
	"net/url"

	"github.com/gatehouse/gatehouse/identity"
)

// Several OpenID providers may sign people in (spec §10): each is a relying
// party of its own, named in the configuration; a login remembers the one
// it began at, and a user record names the one they signed in through.
// People stay keyed by (issuer, subject), and every provider has an issuer
// of its own (Options.validateProvider).

// DevIdPProvider is the provider name of the development provider.
const DevIdPProvider = "dev_idp"

// Providers are the OpenID providers in the configured order (the unnamed
// one first).
func (rt *Runtime) Providers() []*identity.RP { return rt.providers }

// Provider is the provider named name, or nil.
func (rt *Runtime) Provider(name string) *identity.RP {
	for _, p := range rt.providers {
		if p.Name() == name {
			return p
		}
	}
	return nil
}

// ProviderOf is the provider of a user's issuer, or nil when none of the
// configured ones has it (a provider removed from the configuration).
func (rt *Runtime) ProviderOf(issuer string) *identity.RP {
	for _, p := range rt.providers {
		if p.Issuer() == issuer {
			return p
		}
	}
	return nil
}

// LoginChoice is one provider to sign in through: the sign-in page's
// button, and GET /api/auth/login's answer to a JSON client that named none.
type LoginChoice struct {
	Name     string `json:"name"`
	Title    string `json:"title"`
	LoginURL string `json:"login_url"`
}

// LoginChoices are the providers, each with the login URL that signs in
// through it and comes back to rd.
func (rt *Runtime) LoginChoices(rd string) []LoginChoice {
	out := make([]LoginChoice, 0, len(rt.providers))
	for _, p := range rt.providers {
		q := url.Values{"idp": {p.Name()}}
		if rd != "" && rd != "/" {
			q.Set("rd", rd)
		}
		out = append(out, LoginChoice{Name: p.Name(), Title: p.Title(), LoginURL: rt.APIPrefix + "/auth/login?" + q.Encode()})
	}
	return out
}
