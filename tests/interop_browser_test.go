package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The browser half of the interop suite: headless Chromium signing in to
// Gatehouse through panva's certified oidc-provider on another origin, as
// with Keycloak, Okta or Entra — which the same-origin development provider
// cannot show.

// interopBrowserBudget bounds one group of browser scenarios, Caddy, the IdP
// and Chromium included.
const interopBrowserBudget = 150 * time.Second

// pageWait is how long a page may take to appear after a click; every page
// here is served on loopback, so this is generous.
const pageWait = 6 * time.Second

// idpClientSecret is the secret the harness configures Gatehouse with.
const idpClientSecret = "s3cret"

// startBehindIdP starts Gatehouse in front of the stand-in model backend,
// signing people in at a fresh oidc-provider that knows the client secret
// idpSecret; issuerSuffix is appended to the issuer Gatehouse is given.
func startBehindIdP(t *testing.T, idpSecret, issuerSuffix string) (*instance, *oidcProvider) {
	t.Helper()
	port, issuer := reserveIssuer(t)
	in := startInstance(t, instanceConfig{oidcIssuer: issuer + issuerSuffix, upstream: startModelBackend(t)})
	return in, startOIDCProvider(t, port, idpSecret, in)
}

// TestInteropSignInWithOIDCProvider walks sign-in, approval and sign-out in
// Chromium against oidc-provider: one IdP and one Gatehouse for the group,
// each person in a browser context of their own. The IdP's key rotation
// comes last, since it changes the IdP for everyone.
func TestInteropSignInWithOIDCProvider(t *testing.T) {
	requireChromium(t)
	requireNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), interopBrowserBudget)
	t.Cleanup(cancel)
	in, idp := startBehindIdP(t, idpClientSecret, "")
	browser := newTab(t, ctx, in.URL)

	t.Run("sign in, request access, approval, then the backend", func(t *testing.T) {
		bobTab := browser.personTab(t)
		bobTab.open("/")
		bobTab.expectPage("opening the site", onIdPLogin(idp))
		bobTab.idpSignIn("bob")
		bobTab.expectPage("signing in at the IdP", onGatehouse(in, "/gatehouse/request-access"), onIdPError(idp))
		requestAccess(bobTab, bob)

		aliceTab := browser.personTab(t)
		aliceTab.open("/gatehouse/admin")
		aliceTab.expectPage("opening the admin page", onIdPLogin(idp))
		aliceTab.idpSignIn("alice")
		aliceTab.expectPage("signing in at the IdP", onGatehouse(in, "/gatehouse/admin"), onIdPError(idp))
		card := expectOnePendingRequestFrom(aliceTab, bob)
		aliceTab.setValue(card+` form.approve select[name="role"]`, "user")
		aliceTab.click(card + ` form.approve button[type="submit"]`)
		aliceTab.expectText(".notice", "The request was approved and the requester will be told.")

		// Bob's session now reaches the backend (the user cache lives 1 s).
		deadline := time.Now().Add(3 * time.Second)
		for bobTab.open("/"); bobTab.path() != "/" && time.Now().Before(deadline); bobTab.open("/") {
			time.Sleep(200 * time.Millisecond)
		}
		bobTab.expectPath("/")
		bobTab.expectText("#who", "You reached the backend as bob@example.com (user).")
	})

	t.Run("sign-out ends the IdP session", func(t *testing.T) {
		tab := browser.personTab(t)
		tab.open("/gatehouse/account")
		tab.expectPage("opening the account page", onIdPLogin(idp))
		tab.idpSignIn("alice")
		tab.expectPage("signing in at the IdP", onGatehouse(in, "/gatehouse/account"), onIdPError(idp))
		tab.signOutThroughIdP(in, idp)

		// Signing in again takes the IdP's form, and works.
		tab.idpSignIn("alice")
		tab.expectPage("signing in again", onGatehouse(in, "/"), onIdPError(idp))
		tab.expectText("#who", "You reached the backend as alice@example.com (admin).")
	})

	t.Run("two tabs signing in at once both succeed", func(t *testing.T) {
		first := browser.personTab(t)
		second := first.sameBrowserTab()
		first.open("/gatehouse/admin")
		first.expectPage("opening the admin page in the first tab", onIdPLogin(idp))
		second.open("/gatehouse/account")
		second.expectPage("opening the account page in the second tab", onIdPLogin(idp))

		first.idpSignIn("alice")
		first.expectPage("signing in in the first tab", onGatehouse(in, "/gatehouse/admin"), onGatehouse(in, "/api/auth/callback"), onIdPError(idp))
		first.expectText("header span", alice)
		second.idpSignIn("alice")
		second.expectPage("signing in in the second tab", onGatehouse(in, "/gatehouse/account"), onGatehouse(in, "/api/auth/callback"), onIdPError(idp))
		second.expectText("header span", alice)
	})

	t.Run("sign-out after the IdP rotated its keys does not land on its error page", func(t *testing.T) {
		tab := browser.personTab(t)
		tab.open("/gatehouse/account")
		tab.expectPage("opening the account page", onIdPLogin(idp))
		tab.idpSignIn("carol")
		tab.expectPage("signing in at the IdP", onGatehouse(in, "/gatehouse/request-access"), onIdPError(idp))
		// The key that signed Carol's ID token leaves the IdP's JWKS.
		idp.rotateKeys(t)
		tab.signOutThroughIdP(in, idp)
	})
}

// TestInteropSignInMisconfigured: registrations that can never work tell the
// person that sign-in is misconfigured (not to try again, not that the IdP
// is down), and tell the operator the cause in an error log.
func TestInteropSignInMisconfigured(t *testing.T) {
	requireChromium(t)
	requireNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), interopBrowserBudget)
	t.Cleanup(cancel)
	// The IdP registered another secret than the one Gatehouse sends.
	wrongSecret, idp := startBehindIdP(t, "the-secret-the-idp-registered", "")
	// The same IdP's issuer written with a trailing slash: discovery answers
	// an issuer without one, which OpenID Connect says must not be accepted.
	trailingSlash := startInstance(t, instanceConfig{oidcIssuer: idp.Issuer + "/", upstream: startModelBackend(t)})
	browser := newTab(t, ctx, wrongSecret.URL)

	t.Run("a wrong client secret says sign-in is misconfigured", func(t *testing.T) {
		tab := browser.personTab(t)
		tab.open("/gatehouse/account")
		tab.expectPage("opening the account page", onIdPLogin(idp))
		tab.idpSignIn("alice")
		tab.expectPage("signing in at the IdP", onGatehouse(wrongSecret, "/api/auth/callback"), onGatehouse(wrongSecret, "/gatehouse/account"))
		tab.expectMisconfigured()
		wrongSecret.stop()
		expectErrorLogged(t, wrongSecret, "naming the client credentials", regexp.MustCompile(`(?i)client[ _-]?(secret|credential)`))
	})

	t.Run("an issuer with a trailing slash says sign-in is misconfigured", func(t *testing.T) {
		tab := browser.personTab(t)
		tab.base = trailingSlash.URL
		tab.open("/gatehouse/account")
		tab.expectPage("opening the account page", onGatehouse(trailingSlash, "/api/auth/login"), onIdPLogin(idp))
		tab.expectMisconfigured()
		trailingSlash.stop()
		expectErrorLogged(t, trailingSlash, "naming the issuer", regexp.MustCompile(`(?i)issuer`))
	})
}

// pageState is a page the browser may be showing, told by a JavaScript condition.
type pageState struct {
	name string
	js   string
}

func onIdPLogin(p *oidcProvider) pageState {
	return pageState{"the IdP's sign-in form", fmt.Sprintf(`location.href.startsWith(%q) && !!document.querySelector("#login-form")`, p.Issuer+"/")}
}

func onIdPLogout(p *oidcProvider) pageState {
	return pageState{"the IdP's sign-out page", fmt.Sprintf(`location.href.startsWith(%q) && !!document.querySelector("#confirm-logout")`, p.Issuer+"/")}
}

func onIdPError(p *oidcProvider) pageState {
	return pageState{"the IdP's error page", fmt.Sprintf(`location.href.startsWith(%q) && !!document.querySelector(".idp-error")`, p.Issuer+"/")}
}

func onGatehouse(in *instance, path string) pageState {
	return pageState{"Gatehouse's " + path, fmt.Sprintf(`location.href.startsWith(%q) && location.pathname === %q`, in.URL+"/", path)}
}

// await polls until the page is one of states and returns it; ok is false
// when none appeared within pageWait.
func (b *tab) await(states ...pageState) (state pageState, ok bool) {
	b.t.Helper()
	var js strings.Builder
	js.WriteString(`(() => { if (document.readyState !== "complete") return -1;`)
	for i, s := range states {
		fmt.Fprintf(&js, " if (%s) return %d;", s.js, i)
	}
	js.WriteString(" return -1; })()")
	deadline := time.Now().Add(pageWait)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, time.Second)
		i, err := chromedp.Run(ctx, chromedp.Evaluate[int](js.String()))
		cancel()
		if err == nil && i >= 0 {
			return states[i], true
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			return pageState{}, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// expectPage waits, after step, for want; others are pages that may come
// instead, and fail the test at once naming what the person sees.
func (b *tab) expectPage(step string, want pageState, others ...pageState) {
	b.t.Helper()
	got, ok := b.await(append([]pageState{want}, others...)...)
	switch {
	case !ok:
		b.t.Fatalf("after %s the browser does not show %s within %s; it shows %s", step, want.name, pageWait, b.describe())
	case got != want:
		b.t.Fatalf("after %s the browser shows %s, want %s: %s", step, got.name, want.name, b.describe())
	}
}

// describe is what the person sees: the address, the title and the start of the text.
func (b *tab) describe() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`location.href + " (" + document.title + "): " + (document.body ? document.body.innerText : "").replace(/\s+/g, " ").slice(0, 400)`))
	if err != nil {
		return "an unreadable page (" + err.Error() + ")"
	}
	return s
}

func (b *tab) path() string {
	b.t.Helper()
	return run(b, "reading the path", chromedp.Evaluate[string]("location.pathname"))
}

// press clicks sel without waiting for a navigation, for clicks whose outcome
// is checked with expectPage (a blocked navigation never arrives).
func (b *tab) press(sel string) {
	b.t.Helper()
	run(b, "clicking "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// idpSignIn fills in the IdP's sign-in form, which the browser shows.
func (b *tab) idpSignIn(username string) {
	b.t.Helper()
	b.typeInto("#username", username)
	b.press("#sign-in")
}

// signOutThroughIdP presses Sign out on a Gatehouse page and checks the whole
// RP-initiated logout: the browser reaches the IdP's sign-out page, confirms,
// comes back to Gatehouse signed out, and is asked to sign in at the IdP
// again rather than signed straight back in.
func (b *tab) signOutThroughIdP(in *instance, idp *oidcProvider) {
	b.t.Helper()
	b.expectText("header form button", "Sign out")
	navs := b.recordNavigations()
	b.press("header form button")
	b.expectPage("pressing Sign out", onIdPLogout(idp), onIdPError(idp), onIdPLogin(idp))
	b.press("#confirm-logout")
	b.expectPage("confirming the sign-out at the IdP", onIdPLogin(idp), onGatehouse(in, "/"), onIdPError(idp))
	// Gatehouse's public URL was where the IdP sent the browser back to, and
	// Gatehouse, with no session left, sent it on to sign in.
	got := navs.list()
	back := slices.Index(got, "GET "+in.URL+"/")
	if back < 0 || !slices.ContainsFunc(got[back:], func(s string) bool { return strings.HasPrefix(s, "GET "+in.URL+"/api/auth/login") }) {
		b.t.Fatalf("after the IdP's sign-out the browser did not come back to %s/ and on to sign in; it loaded:\n%s", in.URL, strings.Join(got, "\n"))
	}
}

// expectMisconfigured checks that the page tells the person sign-in is
// misconfigured — not that the IdP cannot be reached, nor to try again.
func (b *tab) expectMisconfigured() {
	b.t.Helper()
	text := strings.ToLower(run(b, "reading the page", chromedp.Evaluate[string]("document.body.innerText")))
	if !strings.Contains(text, "misconfigured") || strings.Contains(text, "cannot be reached") {
		b.t.Errorf("the page does not say sign-in is misconfigured; it shows %s", b.describe())
	}
}

// expectErrorLogged checks the stopped instance's log for an error-level
// entry matching pattern.
func expectErrorLogged(t *testing.T, in *instance, what string, pattern *regexp.Regexp) {
	t.Helper()
	var errs []string
	for _, line := range strings.Split(in.logs.String(), "\n") {
		var entry struct{ Level string }
		if json.Unmarshal([]byte(line), &entry) != nil || entry.Level != "error" {
			continue
		}
		if pattern.MatchString(line) {
			return
		}
		errs = append(errs, line)
	}
	t.Errorf("Gatehouse logged no error %s (%s); its errors:\n%s", what, pattern, strings.Join(errs, "\n"))
}

// personTab is a tab in a browser context of its own (its own cookies), for
// one person in one subtest.
func (b *tab) personTab(t *testing.T) *tab {
	t.Helper()
	p := &tab{t: t, ctx: b.ctx, base: b.base}
	return p.newIsolatedTab()
}

// sameBrowserTab opens a second tab in the same browser context: the same
// cookies, as when a person opens another tab.
func (b *tab) sameBrowserTab() *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("opening a second tab: %v", err)
	}
	return &tab{t: b.t, ctx: ctx, base: b.base}
}

// navLog records the documents a tab requests, redirects included.
type navLog struct {
	mu   sync.Mutex
	urls []string
}

func (l *navLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.urls)
}

func (b *tab) recordNavigations() *navLog {
	b.t.Helper()
	l := &navLog{}
	err := chromedp.Listen(b.ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && e.Type == network.ResourceTypeDocument {
			l.mu.Lock()
			l.urls = append(l.urls, e.Request.Method+" "+e.Request.URL)
			l.mu.Unlock()
		}
	})
	if err != nil {
		b.t.Fatalf("listening to the tab's navigations: %v", err)
	}
	return l
}
