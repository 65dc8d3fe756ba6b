package devidp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"
)

const (
	webRedirect     = "http://localhost:8080/api/auth/callback"
	webPostLogout   = "http://localhost:8080/gatehouse/signed-out"
	spaRedirect     = "https://spa.example.test/callback"
	webClientID     = "gatehouse"
	webClientSecret = "s3cret-value"
	spaClientID     = "spa"
)

var testUsers = []User{
	{Email: "alice@example.com", Name: "Alice Adams"},
	{Email: "bob@example.com", Name: "Bob <b>Bold</b> & Co"},
}

// testIdP is a provider running behind a real HTTP server, as Caddy would
// mount it.
type testIdP struct {
	server   *httptest.Server
	issuer   string
	provider *oidc.Provider
}

func startIdP(t *testing.T) *testIdP {
	t.Helper()
	mux := http.NewServeMux()
	server := httptest.NewServer(mux)
	t.Cleanup(server.Close)
	issuer := server.URL + "/dev-idp"
	p, err := New(Config{
		Issuer: issuer,
		Users:  testUsers,
		Clients: []Client{
			{ID: webClientID, Secret: webClientSecret, RedirectURIs: []string{webRedirect}, PostLogoutRedirectURIs: []string{webPostLogout}},
			{ID: spaClientID, RedirectURIs: []string{spaRedirect}},
		},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux.Handle(p.MountPath()+"/", p)
	provider, err := oidc.NewProvider(t.Context(), issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return &testIdP{server: server, issuer: issuer, provider: provider}
}

// relyingParty is what Gatehouse does at /api/auth/login and /callback.
type relyingParty struct {
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	browser  *http.Client
}

func (idp *testIdP) relyingParty(t *testing.T, clientID, secret, redirectURI string, style oauth2.AuthStyle) *relyingParty {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := idp.provider.Endpoint()
	endpoint.AuthStyle = style
	return &relyingParty{
		oauth: oauth2.Config{
			ClientID:     clientID,
			ClientSecret: secret,
			Endpoint:     endpoint,
			RedirectURL:  redirectURI,
			Scopes:       []string{oidc.ScopeOpenID, "email", "profile"},
		},
		verifier: idp.provider.Verifier(&oidc.Config{ClientID: clientID}),
		browser: &http.Client{
			Jar: jar,
			// The browser stops where the IdP hands it back to the relying party.
			CheckRedirect: func(req *http.Request, _ []*http.Request) error {
				if strings.HasPrefix(req.URL.String(), redirectURI) {
					return http.ErrUseLastResponse
				}
				return nil
			},
		},
	}
}

type authAttempt struct {
	state, nonce, verifier string
}

func newAttempt() authAttempt {
	return authAttempt{state: "state-" + oauth2.GenerateVerifier()[:12], nonce: "nonce-" + oauth2.GenerateVerifier()[:12], verifier: oauth2.GenerateVerifier()}
}

func (rp *relyingParty) authCodeURL(a authAttempt) string {
	return rp.oauth.AuthCodeURL(a.state, oidc.Nonce(a.nonce), oauth2.S256ChallengeOption(a.verifier))
}

// openLoginPage starts the flow and returns the sign-in page it lands on.
func (rp *relyingParty) openLoginPage(t *testing.T, authURL string) (*http.Response, string) {
	t.Helper()
	resp, err := rp.browser.Get(authURL)
	if err != nil {
		t.Fatalf("GET authorize: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login page: status %d, body %q", resp.StatusCode, body)
	}
	return resp, string(body)
}

// chooseUser submits the sign-in form with the button for email, as a
// browser without JavaScript would, and returns the redirect to the client.
func (rp *relyingParty) chooseUser(t *testing.T, page *http.Response, body, email string) *url.URL {
	t.Helper()
	form := parseLoginForm(t, body)
	if !slices.Contains(form.buttons, email) {
		t.Fatalf("login page has no button for %s; buttons: %v", email, form.buttons)
	}
	action, err := page.Request.URL.Parse(form.action)
	if err != nil {
		t.Fatal(err)
	}
	values := form.hidden
	values.Set("email", email)
	resp, err := rp.browser.PostForm(action.String(), values)
	if err != nil {
		t.Fatalf("POST login form: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("after the form: status %d, want 302 to the redirect URI; body %q", resp.StatusCode, b)
	}
	loc, err := resp.Location()
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// signIn runs the browser part of the code flow and returns the code.
func (rp *relyingParty) signIn(t *testing.T, a authAttempt, email string) string {
	t.Helper()
	page, body := rp.openLoginPage(t, rp.authCodeURL(a))
	loc := rp.chooseUser(t, page, body, email)
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != rp.oauth.RedirectURL {
		t.Fatalf("redirected to %s, want %s", got, rp.oauth.RedirectURL)
	}
	if got := loc.Query().Get("state"); got != a.state {
		t.Fatalf("state = %q, want %q", got, a.state)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	return code
}

func (rp *relyingParty) exchange(ctx context.Context, code, verifier string) (*oauth2.Token, *oidc.IDToken, string, error) {
	tok, err := rp.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, nil, "", err
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		return nil, nil, "", errors.New("token response has no id_token")
	}
	idToken, err := rp.verifier.Verify(ctx, raw)
	return tok, idToken, raw, err
}

type loginForm struct {
	action  string
	hidden  url.Values
	buttons []string
}

func parseLoginForm(t *testing.T, body string) loginForm {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse login page: %v", err)
	}
	form := loginForm{hidden: url.Values{}}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attr := func(name string) string {
				for _, a := range n.Attr {
					if a.Key == name {
						return a.Val
					}
				}
				return ""
			}
			switch {
			case n.Data == "form" && strings.EqualFold(attr("method"), "post"):
				form.action = attr("action")
			case n.Data == "input" && attr("type") == "hidden":
				form.hidden.Set(attr("name"), attr("value"))
			case n.Data == "button" && attr("type") == "submit" && attr("name") == "email":
				form.buttons = append(form.buttons, attr("value"))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if form.action == "" {
		t.Fatalf("login page has no POST form:\n%s", body)
	}
	return form
}

func TestDiscoveryPublishesEndpointsUnderTheIssuer(t *testing.T) {
	idp := startIdP(t)
	var meta struct {
		Issuer                string   `json:"issuer"`
		AuthorizationEndpoint string   `json:"authorization_endpoint"`
		TokenEndpoint         string   `json:"token_endpoint"`
		UserinfoEndpoint      string   `json:"userinfo_endpoint"`
		JWKSURI               string   `json:"jwks_uri"`
		EndSessionEndpoint    string   `json:"end_session_endpoint"`
		CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
		TokenAuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
		SigningAlgs           []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := idp.provider.Claims(&meta); err != nil {
		t.Fatal(err)
	}
	if meta.Issuer != idp.issuer {
		t.Errorf("issuer = %q, want %q", meta.Issuer, idp.issuer)
	}
	for name, endpoint := range map[string]string{
		"authorization_endpoint": meta.AuthorizationEndpoint,
		"token_endpoint":         meta.TokenEndpoint,
		"userinfo_endpoint":      meta.UserinfoEndpoint,
		"jwks_uri":               meta.JWKSURI,
		"end_session_endpoint":   meta.EndSessionEndpoint,
	} {
		if !strings.HasPrefix(endpoint, idp.issuer+"/") {
			t.Errorf("%s = %q, want it under %s/", name, endpoint, idp.issuer)
		}
	}
	if !slices.Equal(meta.CodeChallengeMethods, []string{"S256"}) {
		t.Errorf("code_challenge_methods_supported = %v, want [S256]", meta.CodeChallengeMethods)
	}
	for _, m := range []string{"client_secret_basic", "client_secret_post"} {
		if !slices.Contains(meta.TokenAuthMethods, m) {
			t.Errorf("token_endpoint_auth_methods_supported = %v, missing %s", meta.TokenAuthMethods, m)
		}
	}
	if !slices.Equal(meta.SigningAlgs, []string{"RS256"}) {
		t.Errorf("id_token_signing_alg_values_supported = %v, want [RS256]", meta.SigningAlgs)
	}

	resp, err := http.Get(meta.JWKSURI)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"kty":"RSA"`) {
		t.Errorf("JWKS: status %d, body %s; want 200 with an RSA key", resp.StatusCode, body)
	}
}

func TestCodeFlowIssuesVerifiableIDToken(t *testing.T) {
	idp := startIdP(t)
	tests := []struct {
		name        string
		clientID    string
		secret      string
		redirectURI string
		style       oauth2.AuthStyle
		user        User
	}{
		{"confidential client, client_secret_basic", webClientID, webClientSecret, webRedirect, oauth2.AuthStyleInHeader, testUsers[0]},
		{"confidential client, client_secret_post", webClientID, webClientSecret, webRedirect, oauth2.AuthStyleInParams, testUsers[1]},
		{"public client with PKCE only", spaClientID, "", spaRedirect, oauth2.AuthStyleInParams, testUsers[0]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := idp.relyingParty(t, tt.clientID, tt.secret, tt.redirectURI, tt.style)
			a := newAttempt()
			code := rp.signIn(t, a, tt.user.Email)

			tok, idToken, _, err := rp.exchange(t.Context(), code, a.verifier)
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			var claims struct {
				Subject           string `json:"sub"`
				Email             string `json:"email"`
				EmailVerified     bool   `json:"email_verified"`
				Name              string `json:"name"`
				PreferredUsername string `json:"preferred_username"`
				Nonce             string `json:"nonce"`
			}
			if err := idToken.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			want := struct {
				Subject           string `json:"sub"`
				Email             string `json:"email"`
				EmailVerified     bool   `json:"email_verified"`
				Name              string `json:"name"`
				PreferredUsername string `json:"preferred_username"`
				Nonce             string `json:"nonce"`
			}{SubjectFor(tt.user.Email), tt.user.Email, true, tt.user.Name, tt.user.Email, a.nonce}
			if claims != want {
				t.Errorf("ID token claims = %+v, want %+v", claims, want)
			}
			if idToken.Issuer != idp.issuer || !slices.Equal(idToken.Audience, []string{tt.clientID}) {
				t.Errorf("iss/aud = %q/%v, want %q/[%s]", idToken.Issuer, idToken.Audience, idp.issuer, tt.clientID)
			}

			info, err := idp.provider.UserInfo(t.Context(), oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			if info.Subject != want.Subject || info.Email != tt.user.Email || !info.EmailVerified {
				t.Errorf("userinfo = sub %q email %q verified %v, want %q %q true", info.Subject, info.Email, info.EmailVerified, want.Subject, tt.user.Email)
			}
		})
	}
}

func TestCodeExchangeIsRefused(t *testing.T) {
	idp := startIdP(t)
	tests := []struct {
		name     string
		secret   string
		verifier func(a authAttempt) string
		reuse    bool
		wantCode string
	}{
		{"wrong PKCE verifier", webClientSecret, func(authAttempt) string { return oauth2.GenerateVerifier() }, false, "invalid_grant"},
		{"missing PKCE verifier", webClientSecret, func(authAttempt) string { return "" }, false, "invalid_request"},
		{"wrong client secret", "not-the-secret", func(a authAttempt) string { return a.verifier }, false, "invalid_client"},
		{"code used a second time", webClientSecret, func(a authAttempt) string { return a.verifier }, true, "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := idp.relyingParty(t, webClientID, tt.secret, webRedirect, oauth2.AuthStyleInHeader)
			a := newAttempt()
			code := rp.signIn(t, a, testUsers[0].Email)
			if tt.reuse {
				if _, _, _, err := rp.exchange(t.Context(), code, a.verifier); err != nil {
					t.Fatalf("first exchange: %v", err)
				}
			}
			tok, err := rp.oauth.Exchange(t.Context(), code, oauth2.VerifierOption(tt.verifier(a)))
			if err == nil {
				t.Fatalf("exchange succeeded with token type %q, want it refused", tok.TokenType)
			}
			var retrieveErr *oauth2.RetrieveError
			if !errors.As(err, &retrieveErr) || retrieveErr.ErrorCode != tt.wantCode {
				t.Fatalf("exchange error = %v, want OAuth error %q", err, tt.wantCode)
			}
		})
	}
}

func TestAuthorizeRequestIsRefused(t *testing.T) {
	idp := startIdP(t)
	web := idp.relyingParty(t, webClientID, webClientSecret, webRedirect, oauth2.AuthStyleInHeader)
	a := newAttempt()
	withRedirect := func(uri string) string {
		c := web.oauth
		c.RedirectURL = uri
		return c.AuthCodeURL(a.state, oidc.Nonce(a.nonce), oauth2.S256ChallengeOption(a.verifier))
	}
	withClient := func(id, redirect string, opts ...oauth2.AuthCodeOption) string {
		c := web.oauth
		c.ClientID = id
		c.RedirectURL = redirect
		return c.AuthCodeURL(a.state, opts...)
	}
	tests := []struct {
		name string
		url  string
		// Without a trustworthy redirect URI the IdP must answer itself;
		// otherwise it hands the error back to the client.
		wantStatus   int
		wantLocation string
	}{
		{"unregistered redirect_uri", withRedirect("http://evil.example.test/callback"), http.StatusBadRequest, ""},
		{"redirect_uri differing only in path", withRedirect(webRedirect + "/x"), http.StatusBadRequest, ""},
		{"unknown client", withClient("nobody", webRedirect, oauth2.S256ChallengeOption(a.verifier)), http.StatusBadRequest, ""},
		{"public client without PKCE", withClient(spaClientID, spaRedirect), http.StatusFound,
			spaRedirect + "?error=invalid_request&error_description=public+clients+must+send+a+code_challenge+%28S256%29&state=" + a.state},
		{"plain PKCE method", withClient(spaClientID, spaRedirect, oauth2.SetAuthURLParam("code_challenge", a.verifier), oauth2.SetAuthURLParam("code_challenge_method", "plain")), http.StatusFound,
			spaRedirect + "?error=invalid_request&error_description=code_challenge_method+must+be+S256&state=" + a.state},
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := noFollow.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("Location") != tt.wantLocation {
				t.Errorf("status %d, Location %q; want %d, %q", resp.StatusCode, resp.Header.Get("Location"), tt.wantStatus, tt.wantLocation)
			}
		})
	}
}

func TestLoginPageOffersEveryUserSafely(t *testing.T) {
	idp := startIdP(t)
	rp := idp.relyingParty(t, webClientID, webClientSecret, webRedirect, oauth2.AuthStyleInHeader)
	resp, body := rp.openLoginPage(t, rp.authCodeURL(newAttempt()))

	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	for _, want := range []string{
		"<h1>Gatehouse development sign-in</h1>",
		"this identity provider is for development only",
		"Alice Adams", "alice@example.com",
		"Bob &lt;b&gt;Bold&lt;/b&gt; &amp; Co", "bob@example.com",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("login page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<b>Bold</b>") {
		t.Errorf("login page contains an unescaped user name:\n%s", body)
	}
	if strings.Contains(body, "<script") {
		t.Errorf("login page needs no JavaScript but has a script:\n%s", body)
	}
	form := parseLoginForm(t, body)
	if want := []string{"alice@example.com", "bob@example.com"}; !slices.Equal(form.buttons, want) {
		t.Errorf("buttons = %v, want %v", form.buttons, want)
	}
}

func TestLoginPageRejectsUnknownRequestsAndUsers(t *testing.T) {
	idp := startIdP(t)
	rp := idp.relyingParty(t, webClientID, webClientSecret, webRedirect, oauth2.AuthStyleInHeader)
	page, body := rp.openLoginPage(t, rp.authCodeURL(newAttempt()))
	form := parseLoginForm(t, body)
	validID := form.hidden.Get("authRequestID")
	loginURL := idp.issuer + "/login"

	tests := []struct {
		name      string
		do        func() (*http.Response, error)
		wantTitle string
	}{
		{"GET with an unknown auth request", func() (*http.Response, error) {
			return rp.browser.Get(loginURL + "?authRequestID=does-not-exist")
		}, "Unknown sign-in request"},
		{"GET without an auth request", func() (*http.Response, error) {
			return rp.browser.Get(loginURL)
		}, "Unknown sign-in request"},
		{"POST with an unknown auth request", func() (*http.Response, error) {
			return rp.browser.PostForm(loginURL, url.Values{"authRequestID": {"does-not-exist"}, "email": {"alice@example.com"}})
		}, "Unknown sign-in request"},
		{"POST with an unknown user", func() (*http.Response, error) {
			return rp.browser.PostForm(loginURL, url.Values{"authRequestID": {validID}, "email": {"mallory@example.com"}})
		}, "Unknown user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.do()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "<h1>"+tt.wantTitle+"</h1>") {
				t.Errorf("status %d, body %q; want 400 titled %q", resp.StatusCode, b, tt.wantTitle)
			}
		})
	}

	// The refused unknown user did not spoil the request: a listed user can
	// still finish it.
	loc := rp.chooseUser(t, page, body, "bob@example.com")
	if loc.Query().Get("code") == "" {
		t.Errorf("redirect %s has no code", loc)
	}

	// Choosing again must not swap the identity behind the issued code.
	resp, err := rp.browser.PostForm(loginURL, url.Values{"authRequestID": {validID}, "email": {"alice@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "<h1>Sign-in request already used</h1>") {
		t.Errorf("second choice: status %d, body %q; want 400 already used", resp.StatusCode, b)
	}
}

func TestEndSessionRedirectsToRegisteredURI(t *testing.T) {
	idp := startIdP(t)
	rp := idp.relyingParty(t, webClientID, webClientSecret, webRedirect, oauth2.AuthStyleInHeader)
	a := newAttempt()
	_, _, rawIDToken, err := rp.exchange(t.Context(), rp.signIn(t, a, testUsers[0].Email), a.verifier)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := idp.provider.Claims(&meta); err != nil {
		t.Fatal(err)
	}
	endSession := func(params url.Values) string { return meta.EndSession + "?" + params.Encode() }

	tests := []struct {
		name         string
		url          string
		wantStatus   int
		wantLocation string
	}{
		{"registered post_logout_redirect_uri", endSession(url.Values{
			"id_token_hint": {rawIDToken}, "post_logout_redirect_uri": {webPostLogout}, "state": {"bye"},
		}), http.StatusFound, webPostLogout + "?state=bye"},
		{"unregistered post_logout_redirect_uri", endSession(url.Values{
			"id_token_hint": {rawIDToken}, "post_logout_redirect_uri": {"http://evil.example.test/"},
		}), http.StatusBadRequest, ""},
		{"no post_logout_redirect_uri", endSession(url.Values{
			"id_token_hint": {rawIDToken},
		}), http.StatusFound, idp.issuer + "/logged-out"},
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := noFollow.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("Location") != tt.wantLocation {
				t.Errorf("status %d, Location %q; want %d, %q", resp.StatusCode, resp.Header.Get("Location"), tt.wantStatus, tt.wantLocation)
			}
		})
	}

	resp, err := http.Get(idp.issuer + "/logged-out")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "<h1>Signed out</h1>") {
		t.Errorf("logged-out page: status %d, body %q", resp.StatusCode, b)
	}
}

func TestServeHTTPAnswersOnlyUnderTheMountPath(t *testing.T) {
	p, err := New(Config{
		Issuer:  "http://127.0.0.1:8080/dev-idp",
		Users:   testUsers,
		Clients: []Client{{ID: webClientID, Secret: webClientSecret, RedirectURIs: []string{webRedirect}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.MountPath(); got != "/dev-idp" {
		t.Errorf("MountPath() = %q, want /dev-idp", got)
	}
	tests := []struct {
		path string
		want int
	}{
		{"/dev-idp/.well-known/openid-configuration", http.StatusOK},
		{"/dev-idp/keys", http.StatusOK},
		{"/.well-known/openid-configuration", http.StatusNotFound},
		{"/dev-idpx/.well-known/openid-configuration", http.StatusNotFound},
		{"/dev-idp//keys", http.StatusNotFound},
		{"/dev-idp/../keys", http.StatusNotFound},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080"+tt.path, nil))
		if rec.Code != tt.want {
			t.Errorf("GET %s: status %d, want %d", tt.path, rec.Code, tt.want)
		}
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	users := []User{{Email: "alice@example.com", Name: "Alice"}}
	clients := []Client{{ID: "gatehouse", Secret: "s", RedirectURIs: []string{webRedirect}}}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty issuer", Config{Users: users, Clients: clients},
			"devidp: issuer is empty"},
		{"relative issuer", Config{Issuer: "/dev-idp", Users: users, Clients: clients},
			`devidp: issuer "/dev-idp" is not an absolute http or https URL`},
		{"issuer with another scheme", Config{Issuer: "ftp://example.com/dev-idp", Users: users, Clients: clients},
			`devidp: issuer "ftp://example.com/dev-idp" is not an absolute http or https URL`},
		{"issuer without mount path", Config{Issuer: "http://127.0.0.1:8080", Users: users, Clients: clients},
			`devidp: issuer "http://127.0.0.1:8080" has no mount path (for example http://127.0.0.1:8080/dev-idp)`},
		{"issuer with trailing slash", Config{Issuer: "http://127.0.0.1:8080/dev-idp/", Users: users, Clients: clients},
			`devidp: issuer "http://127.0.0.1:8080/dev-idp/" must not end with a slash`},
		{"issuer with query", Config{Issuer: "http://127.0.0.1:8080/dev-idp?x=1", Users: users, Clients: clients},
			`devidp: issuer "http://127.0.0.1:8080/dev-idp?x=1" must not carry credentials, a query or a fragment`},
		{"no users", Config{Issuer: "http://127.0.0.1:8080/dev-idp", Clients: clients},
			"devidp: no users configured"},
		{"user without email", Config{Issuer: "http://127.0.0.1:8080/dev-idp", Users: []User{users[0], {Name: "Bob"}}, Clients: clients},
			`devidp: user 2 ("Bob") has no email`},
		{"user with invalid email", Config{Issuer: "http://127.0.0.1:8080/dev-idp", Users: []User{{Email: "bob"}}, Clients: clients},
			`devidp: user 1 has an invalid email "bob"`},
		{"same user twice", Config{Issuer: "http://127.0.0.1:8080/dev-idp", Users: []User{users[0], {Email: "Alice@Example.com"}}, Clients: clients},
			`devidp: user email "Alice@Example.com" is listed twice`},
		{"no clients", Config{Issuer: "http://127.0.0.1:8080/dev-idp", Users: users},
			"devidp: no clients configured"},
		{"client without ID", Config{Issuer: "http://127.0.0.1:8080/dev-idp", Users: users, Clients: []Client{{RedirectURIs: []string{webRedirect}}}},
			"devidp: client 1 has no ID"},
		{"client without redirect URI", Config{Issuer: "http://127.0.0.1:8080/dev-idp", Users: users, Clients: []Client{{ID: "gatehouse"}}},
			`devidp: client "gatehouse" has no redirect URI`},
		{"client with relative redirect URI", Config{Issuer: "http://127.0.0.1:8080/dev-idp", Users: users, Clients: []Client{{ID: "gatehouse", RedirectURIs: []string{"/callback"}}}},
			`devidp: client "gatehouse": redirect URI "/callback" is not an absolute http or https URL`},
		{"same client twice", Config{Issuer: "http://127.0.0.1:8080/dev-idp", Users: users, Clients: []Client{clients[0], clients[0]}},
			`devidp: client "gatehouse" is listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.cfg)
			if err == nil {
				t.Fatalf("New succeeded (mount path %q), want error %q", p.MountPath(), tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q, want %q", err, tt.want)
			}
		})
	}
}

func TestSubjectForIsStableAndDistinct(t *testing.T) {
	alice := SubjectFor("alice@example.com")
	if alice == "" {
		t.Fatal("SubjectFor returned an empty subject")
	}
	if again := SubjectFor("alice@example.com"); again != alice {
		t.Errorf("SubjectFor is not stable: %q then %q", alice, again)
	}
	if other := SubjectFor(" Alice@Example.COM "); other != alice {
		t.Errorf("SubjectFor differs by case or spaces: %q vs %q", other, alice)
	}
	// A fixed value: the subject must survive restarts and new releases, or
	// every dev user would become a new Gatehouse user.
	if want := "dc4e68941c2fa1851f58a64c607643d9"; alice != want {
		t.Errorf("SubjectFor(alice@example.com) = %q, want %q", alice, want)
	}
	if bob := SubjectFor("bob@example.com"); bob == alice {
		t.Errorf("alice and bob share subject %q", bob)
	}
}

func TestNewWarnsThatItIsForDevelopmentOnly(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	_, err := New(Config{
		Issuer:  "http://127.0.0.1:8080/dev-idp",
		Users:   testUsers,
		Clients: []Client{{ID: webClientID, Secret: webClientSecret, RedirectURIs: []string{webRedirect}}},
		Logger:  zap.New(core),
	})
	if err != nil {
		t.Fatal(err)
	}
	entries := logs.FilterMessageSnippet("never use it in production").All()
	if len(entries) != 1 || entries[0].Level != zap.WarnLevel {
		t.Fatalf("warnings = %v, want one development-only warning", logs.All())
	}
	if got := entries[0].ContextMap()["issuer"]; got != "http://127.0.0.1:8080/dev-idp" {
		t.Errorf("warning issuer field = %v", got)
	}
}
