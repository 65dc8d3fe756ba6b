package tests

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
)

// partnerAccounts are the people of the second provider: other people,
// with claims of their own.
const partnerAccounts = `{"pat":{"email":"pat@partner.example","email_verified":true,"name":"Pat Partner","groups":["partners"]}}`

// startBehindTwoIdPs starts Gatehouse with two oidc-provider instances as
// the providers corp (Alice, Bob, …) and partners (Pat).
func startBehindTwoIdPs(t *testing.T, extra string) (*instance, *oidcProvider, *oidcProvider) {
	t.Helper()
	corpPort, corpIssuer := reserveIssuer(t)
	partnersPort, partnersIssuer := reserveIssuer(t)
	in := startInstance(t, instanceConfig{upstream: startModelBackend(t), extraGlobal: extra, idpBlock: fmt.Sprintf(`oidc corp {
			title "Corp SSO"
			issuer %s
			client_id gatehouse
			client_secret s3cret
		}
		oidc partners {
			issuer %s
			client_id gatehouse
			client_secret s3cret
		}`, corpIssuer, partnersIssuer)})
	corp := startOIDCProvider(t, corpPort, idpClientSecret, in)
	partners := startOIDCProvider(t, partnersPort, idpClientSecret, in, "--accounts", partnerAccounts)
	return in, corp, partners
}

// TestInteropSeveralProviders: with two providers the sign-in page lets the
// person choose, ?idp= skips the choice, each provider signs in its own
// people, the user record and the dashboard name the provider, and sign-out
// ends the session at the provider the person came from.
func TestInteropSeveralProviders(t *testing.T) {
	requireChromium(t)
	requireNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), interopBrowserBudget)
	t.Cleanup(cancel)
	in, corp, partners := startBehindTwoIdPs(t, "")
	browser := newTab(t, ctx, in.URL)

	t.Run("the login API without a provider lists them; an unknown one is refused", func(t *testing.T) {
		c := in.newClient()
		resp := c.get("/api/auth/login?rd=/gatehouse/account", "Accept", "application/json")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/auth/login as JSON: %d %s", resp.StatusCode, resp.body)
		}
		got := fmt.Sprint(resp.json(t)["providers"])
		want := fmt.Sprint([]any{
			map[string]any{"name": "corp", "title": "Corp SSO", "login_url": "/api/auth/login?idp=corp&rd=%2Fgatehouse%2Faccount"},
			map[string]any{"name": "partners", "title": "partners", "login_url": "/api/auth/login?idp=partners&rd=%2Fgatehouse%2Faccount"},
		})
		if got != want {
			t.Fatalf("providers %s, want %s", got, want)
		}
		expectProblem(t, c.get("/api/auth/login?idp=nope", "Accept", "application/json"), http.StatusBadRequest, "unknown_idp")
		// A browser is sent to the chooser.
		r := c.get("/api/auth/login?rd=/gatehouse/account")
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/gatehouse/sign-in?rd="+url.QueryEscape("/gatehouse/account") {
			t.Fatalf("a browser's login without a provider: %d Location %q", r.StatusCode, r.Header.Get("Location"))
		}
	})

	t.Run("choosing the second provider signs in its person", func(t *testing.T) {
		tab := browser.personTab(t)
		tab.open("/gatehouse/account")
		tab.expectPage("opening the account page", onGatehouse(in, "/gatehouse/sign-in"))
		tab.expectText("#idp-corp", "Corp SSO")
		tab.expectText("#idp-partners", "partners")
		tab.press("#idp-partners")
		tab.expectPage("choosing partners", onIdPLogin(partners), onIdPLogin(corp))
		tab.idpSignIn("pat")
		tab.expectPage("signing in at partners", onGatehouse(in, "/gatehouse/request-access"), onIdPError(partners))
		requestAccess(tab, "pat@partner.example")

		// The admin, through corp by ?idp=, sees where Pat came from.
		admin := browser.personTab(t)
		admin.open("/api/auth/login?idp=corp&rd=/gatehouse/admin")
		admin.expectPage("signing in through corp", onIdPLogin(corp), onIdPLogin(partners))
		admin.idpSignIn("alice")
		admin.expectPage("signing in at corp", onGatehouse(in, "/gatehouse/admin"), onIdPError(corp))
		admin.expectContains(`tr.user[data-email="pat@partner.example"] .provider`, "via partners")
		admin.expectContains(`tr.user[data-email="alice@example.com"] .provider`, "via corp")

		// Pat signs out at partners, not at corp.
		tab.open("/gatehouse/request-access")
		tab.expectText("header form button", "Sign out")
		tab.press("header form button")
		tab.expectPage("pressing Sign out", onIdPLogout(partners), onIdPLogout(corp), onIdPError(partners))
		tab.press("#confirm-logout")
		tab.expectPage("confirming the sign-out at partners", onGatehouse(in, "/gatehouse/sign-in"), onIdPError(partners))
	})

	t.Run("a provider signs in only its own people", func(t *testing.T) {
		// Alice exists at corp only; partners does not know her.
		tab := browser.personTab(t)
		tab.open("/api/auth/login?idp=partners")
		tab.expectPage("opening partners", onIdPLogin(partners))
		tab.idpSignIn("alice")
		tab.expectPage("signing in as alice at partners",
			pageState{"partners refusing alice", `!!document.querySelector("#login-error")`}, onGatehouse(in, "/"))
		tab.expectText("#login-error", "No account named “alice”.")
	})
}
