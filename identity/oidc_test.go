package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"
)

const (
	testClientID     = "gatehouse"
	testClientSecret = "gatehouse-secret"
)

// testOP is zitadel's example OpenID provider, served over real HTTP, with a
// real callback server registered as the client's redirect URI.
type testOP struct {
	issuer        string
	redirectURL   string
	postLogoutURL string
	userinfoCalls atomic.Int32

	mu        sync.Mutex
	callbacks []url.Values // query of each request the callback server received
}

type opOptions struct {
	// claimsInIDToken makes the OP put email and profile claims in the ID
	// token; by default (as OIDC Core 5.4 allows) they are only in userinfo.
	claimsInIDToken bool
	// usersJSON replaces the example users (test-user@<host>, verysecure).
	usersJSON string
}

func startOP(t *testing.T, opts opOptions) *testOP {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &testOP{issuer: "http://" + l.Addr().String()}

	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.callbacks = append(o.callbacks, r.URL.Query())
		o.mu.Unlock()
		io.WriteString(w, "callback reached")
	}))
	t.Cleanup(cb.Close)
	o.redirectURL = cb.URL + "/api/auth/callback"
	o.postLogoutURL = cb.URL + "/signed-out"

	users := storage.NewUserStore(o.issuer)
	if opts.usersJSON != "" {
		path := filepath.Join(t.TempDir(), "users.json")
		if err := os.WriteFile(path, []byte(opts.usersJSON), 0o600); err != nil {
			t.Fatal(err)
		}
		if users, err = storage.StoreFromFile(path); err != nil {
			t.Fatal(err)
		}
	}
	st := storage.NewStorageWithClients(users, map[string]*storage.Client{
		testClientID: storage.WebClient(testClientID, testClientSecret, o.redirectURL),
	})
	router := exampleop.SetupServer(o.issuer, clientOverrides{st, opts.claimsInIDToken, o.postLogoutURL},
		slog.New(slog.DiscardHandler), false)

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/userinfo" {
			o.userinfoCalls.Add(1)
		}
		router.ServeHTTP(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return o
}

// clientOverrides adjusts the example storage's clients in ways its
// constructors do not offer.
type clientOverrides struct {
	*storage.Storage
	claimsInIDToken bool
	postLogoutURL   string
}

func (s clientOverrides) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return overriddenClient{c, s.claimsInIDToken, s.postLogoutURL}, nil
}

type overriddenClient struct {
	op.Client
	claimsInIDToken bool
	postLogoutURL   string
}

func (c overriddenClient) IDTokenUserinfoClaimsAssertion() bool { return c.claimsInIDToken }
func (c overriddenClient) PostLogoutRedirectURIs() []string     { return []string{c.postLogoutURL} }

func (o *testOP) rp(client *http.Client) *RP {
	return NewRP(RPConfig{
		Issuer:       o.issuer,
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		RedirectURL:  o.redirectURL,
		HTTPClient:   client,
	})
}

var loginFormID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// login signs in at the OP's login page like a browser would, and returns the
// query the OP sent to the callback.
func (o *testOP) login(t *testing.T, authURL, username, password string) url.Values {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}

	page := get(t, browser, authURL)
	m := loginFormID.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no login form at the OP:\n%s", page)
	}
	resp, err := browser.PostForm(o.issuer+"/login/username", url.Values{
		"id":       {html.UnescapeString(m[1])},
		"username": {username},
		"password": {password},
	})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.Path != "/api/auth/callback" || string(body) != "callback reached" {
		t.Fatalf("login ended at %s with %d:\n%s", resp.Request.URL, resp.StatusCode, body)
	}
	return resp.Request.URL.Query()
}

func get(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", u, resp.StatusCode, body)
	}
	return string(body)
}

// exampleUser is the example OP's first user; its user name embeds the
// issuer's host, and its password is "verysecure".
const exampleUser = "test-user@127.0.0.1"

func TestRPSignsInAtRealProvider(t *testing.T) {
	for _, tc := range []struct {
		name             string
		claimsInIDToken  bool
		wantUserinfoCall int32
	}{
		{"profile claims only from userinfo", false, 1},
		// userinfo is read anyway: its claims (groups …) are the sign-in rules'.
		{"profile claims in the ID token", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := startOP(t, opOptions{claimsInIDToken: tc.claimsInIDToken})
			rp := o.rp(nil)

			before := time.Now()
			authURL, ls, err := rp.Begin(t.Context(), "/v1/models?x=1", nil)
			if err != nil {
				t.Fatal(err)
			}
			assertAuthURL(t, o, authURL, ls)
			if ls.Redirect != "/v1/models?x=1" {
				t.Errorf("Redirect = %q, want /v1/models?x=1", ls.Redirect)
			}
			if d := ls.Expires.Sub(before); d <= 10*time.Minute-time.Second || d > 10*time.Minute+5*time.Second {
				t.Errorf("login state expires %v after Begin, want 10m", d)
			}

			q := o.login(t, authURL, exampleUser, "verysecure")
			if err := CheckState(ls, q.Get("state")); err != nil {
				t.Fatalf("state from the OP: %v", err)
			}
			claims, err := rp.Finish(t.Context(), ls, q.Get("code"))
			if err != nil {
				t.Fatal(err)
			}
			if claims.RawIDToken == "" {
				t.Error("RawIDToken is empty")
			}
			claims.RawIDToken = ""
			if claims.Raw["sub"] != "id1" || claims.Raw["email"] != "test-user@zitadel.ch" || claims.Raw["iss"] != o.issuer {
				t.Errorf("Raw claims %v, want sub, email and iss among them", claims.Raw)
			}
			claims.Raw = nil
			// How zitadel's OP signed the person in: a password, just now.
			if fmt.Sprint(claims.AMR) != "[pwd]" || time.Since(claims.AuthTime) > time.Minute {
				t.Errorf("AMR %v, AuthTime %v; want [pwd] and about now", claims.AMR, claims.AuthTime)
			}
			claims.AMR, claims.AuthTime = nil, time.Time{}
			want := Claims{Issuer: o.issuer, Subject: "id1", Email: "test-user@zitadel.ch", EmailVerified: true, Name: "Test User"}
			if !reflect.DeepEqual(claims, want) {
				t.Errorf("Finish = %+v\nwant     %+v", claims, want)
			}
			if got := o.userinfoCalls.Load(); got != tc.wantUserinfoCall {
				t.Errorf("userinfo called %d times, want %d", got, tc.wantUserinfoCall)
			}
		})
	}
}

func assertAuthURL(t *testing.T, o *testOP, authURL string, ls LoginState) {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != o.issuer+"/auth" {
		t.Errorf("authorization endpoint = %s, want %s/auth (from discovery)", got, o.issuer)
	}
	q := u.Query()
	for k, want := range map[string]string{
		"response_type":         "code",
		"client_id":             testClientID,
		"redirect_uri":          o.redirectURL,
		"scope":                 "openid email profile",
		"state":                 ls.State,
		"nonce":                 ls.Nonce,
		"code_challenge_method": "S256",
		"code_challenge":        oauth2.S256ChallengeFromVerifier(ls.Verifier),
	} {
		if got := q.Get(k); got != want {
			t.Errorf("authorization URL %s = %q, want %q", k, got, want)
		}
	}
	if strings.Contains(authURL, ls.Verifier) {
		t.Error("authorization URL reveals the PKCE verifier")
	}
	for name, v := range map[string]string{"state": ls.State, "nonce": ls.Nonce} {
		if len(v) != 43 {
			t.Errorf("%s %q is not 32 bytes base64url", name, v)
		}
	}
}

func TestRPBeginMakesRedirectLocal(t *testing.T) {
	o := startOP(t, opOptions{})
	rp := o.rp(nil)
	_, ls, err := rp.Begin(t.Context(), "//evil.example/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ls.Redirect != "/" {
		t.Errorf("Redirect = %q, want /", ls.Redirect)
	}
	_, ls2, err := rp.Begin(t.Context(), "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ls2.State == ls.State || ls2.Nonce == ls.Nonce || ls2.Verifier == ls.Verifier {
		t.Error("two logins share state, nonce or verifier")
	}
}

func TestRPFinishRejects(t *testing.T) {
	o := startOP(t, opOptions{})
	rp := o.rp(nil)
	for _, tc := range []struct {
		name   string
		tamper func(ls *LoginState, code *string)
		// refusedByOP: the token endpoint refuses, rather than our checks.
		refusedByOP bool
	}{
		{"nonce of another login", func(ls *LoginState, _ *string) { ls.Nonce = randomToken() }, false},
		{"no nonce", func(ls *LoginState, _ *string) { ls.Nonce = "" }, false},
		{"wrong PKCE verifier", func(ls *LoginState, _ *string) { ls.Verifier = oauth2.GenerateVerifier() }, true},
		{"unknown code", func(_ *LoginState, code *string) { *code = "not-a-code" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authURL, ls, err := rp.Begin(t.Context(), "/", nil)
			if err != nil {
				t.Fatal(err)
			}
			code := o.login(t, authURL, exampleUser, "verysecure").Get("code")
			tc.tamper(&ls, &code)
			_, err = rp.Finish(t.Context(), ls, code)
			if !errors.Is(err, ErrLoginRejected) {
				t.Errorf("Finish error = %v, want ErrLoginRejected", err)
			}
			if _, byOP := errors.AsType[*oauth2.RetrieveError](err); byOP != tc.refusedByOP {
				t.Errorf("Finish error = %v; refused by the OP: %v, want %v", err, byOP, tc.refusedByOP)
			}
		})
	}

	t.Run("code used twice", func(t *testing.T) {
		authURL, ls, err := rp.Begin(t.Context(), "/", nil)
		if err != nil {
			t.Fatal(err)
		}
		code := o.login(t, authURL, exampleUser, "verysecure").Get("code")
		if _, err := rp.Finish(t.Context(), ls, code); err != nil {
			t.Fatal(err)
		}
		if _, err := rp.Finish(t.Context(), ls, code); !errors.Is(err, ErrLoginRejected) {
			t.Errorf("second Finish error = %v, want ErrLoginRejected", err)
		}
	})

	t.Run("ID token audience is not this client", func(t *testing.T) {
		// Same credentials at the token endpoint, but the verifier expects
		// another audience, as if the IdP had issued a token for someone else.
		other := o.rp(nil)
		d, err := other.discover(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		d.verifier = d.provider.Verifier(&oidc.Config{ClientID: "someone-else"})
		authURL, ls, err := other.Begin(t.Context(), "/", nil)
		if err != nil {
			t.Fatal(err)
		}
		code := o.login(t, authURL, exampleUser, "verysecure").Get("code")
		_, err = other.Finish(t.Context(), ls, code)
		if !errors.Is(err, ErrLoginRejected) || !strings.Contains(err.Error(), "audience") {
			t.Errorf("Finish = %v, want ErrLoginRejected for the audience", err)
		}
	})
}

func TestRPEmailOnlyWhenVerified(t *testing.T) {
	o := startOP(t, opOptions{usersJSON: `{
		"u1": {"ID": "u1", "Username": "carol", "Password": "pw", "FirstName": "Carol", "LastName": "Ng",
		       "Email": "carol@example.com", "EmailVerified": false, "PreferredLanguage": "en"},
		"u2": {"ID": "u2", "Username": "dan", "Password": "pw",
		       "Email": "dan@example.com", "EmailVerified": true, "PreferredLanguage": "en"}
	}`})
	rp := o.rp(nil)
	for _, tc := range []struct {
		username string
		want     Claims
	}{
		{"carol", Claims{Issuer: o.issuer, Subject: "u1", Email: "", EmailVerified: false, Name: "Carol Ng"}},
		// No first or last name: the display name falls back to preferred_username.
		{"dan", Claims{Issuer: o.issuer, Subject: "u2", Email: "dan@example.com", EmailVerified: true, Name: "dan"}},
	} {
		t.Run(tc.username, func(t *testing.T) {
			authURL, ls, err := rp.Begin(t.Context(), "/", nil)
			if err != nil {
				t.Fatal(err)
			}
			claims, err := rp.Finish(t.Context(), ls, o.login(t, authURL, tc.username, "pw").Get("code"))
			if err != nil {
				t.Fatal(err)
			}
			claims.RawIDToken, claims.Raw, claims.AMR, claims.AuthTime = "", nil, nil, time.Time{}
			if !reflect.DeepEqual(claims, tc.want) {
				t.Errorf("Finish = %+v\nwant     %+v", claims, tc.want)
			}
		})
	}
}

func TestDisplayNameFallback(t *testing.T) {
	for _, tc := range []struct {
		name string
		pc   profileClaims
		want Claims
	}{
		{"name", profileClaims{Name: " Alice A ", PreferredUsername: "alice", Email: "a@x", EmailVerified: true},
			Claims{Name: "Alice A", Email: "a@x", EmailVerified: true}},
		{"preferred_username", profileClaims{PreferredUsername: "alice", Email: "a@x", EmailVerified: true},
			Claims{Name: "alice", Email: "a@x", EmailVerified: true}},
		{"verified email", profileClaims{Email: "a@x", EmailVerified: true},
			Claims{Name: "a@x", Email: "a@x", EmailVerified: true}},
		{"unverified email is not shown", profileClaims{Email: "a@x"}, Claims{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.pc.claims(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("claims() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestEmailVerifiedAcceptsStrings(t *testing.T) {
	for raw, want := range map[string]bool{
		`{"email_verified": true}`:    true,
		`{"email_verified": "true"}`:  true,
		`{"email_verified": "TRUE"}`:  true,
		`{"email_verified": false}`:   false,
		`{"email_verified": "false"}`: false,
		`{"email_verified": null}`:    false,
		`{}`:                          false,
	} {
		var pc profileClaims
		if err := json.Unmarshal([]byte(raw), &pc); err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		if bool(pc.EmailVerified) != want {
			t.Errorf("%s: email_verified = %v, want %v", raw, pc.EmailVerified, want)
		}
	}
	var pc profileClaims
	if err := json.Unmarshal([]byte(`{"email_verified": 1}`), &pc); err == nil {
		t.Error("email_verified 1: no error")
	}
}

// closedAddr returns an address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestRPUnreachableIssuer(t *testing.T) {
	rp := NewRP(RPConfig{Issuer: "http://" + closedAddr(t), ClientID: testClientID, RedirectURL: "http://127.0.0.1/cb"})
	if _, _, err := rp.Begin(t.Context(), "/", nil); !errors.Is(err, ErrProviderUnavailable) {
		t.Errorf("Begin = %v, want ErrProviderUnavailable", err)
	}
	if err := rp.Ready(t.Context()); !errors.Is(err, ErrProviderUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Ready = %v, want ErrProviderUnavailable with the cause", err)
	}
	if _, err := rp.Finish(t.Context(), LoginState{}, "code"); !errors.Is(err, ErrProviderUnavailable) {
		t.Errorf("Finish = %v, want ErrProviderUnavailable", err)
	}
	if got := rp.EndSessionURL(t.Context(), "hint", ""); got != "" {
		t.Errorf("EndSessionURL = %q, want empty", got)
	}
}

// flakyTransport fails every request while down, like a network that cannot
// reach the IdP, and counts discovery requests.
type flakyTransport struct {
	down      atomic.Bool
	discovery atomic.Int32
	// hold, when set, blocks discovery requests until it is closed.
	hold chan struct{}
}

func (f *flakyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration") {
		f.discovery.Add(1)
		if f.hold != nil {
			<-f.hold
		}
	}
	if f.down.Load() {
		return nil, fmt.Errorf("dial tcp %s: connect: no route to host", r.URL.Host)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestRPRecoversWhenProviderComesUp(t *testing.T) {
	o := startOP(t, opOptions{})
	transport := &flakyTransport{}
	transport.down.Store(true)
	rp := o.rp(&http.Client{Transport: transport})
	clock := newFakeClock()
	rp.now = clock.Now

	if _, _, err := rp.Begin(t.Context(), "/", nil); !errors.Is(err, ErrProviderUnavailable) {
		t.Fatalf("Begin while down = %v, want ErrProviderUnavailable", err)
	}
	transport.down.Store(false)

	// Within 5 s of a failure, callers get the remembered error without
	// another request to the IdP.
	clock.Advance(4 * time.Second)
	for range 3 {
		if err := rp.Ready(t.Context()); !errors.Is(err, ErrProviderUnavailable) {
			t.Fatalf("Ready within 5s of the failure = %v, want ErrProviderUnavailable", err)
		}
	}
	if got := transport.discovery.Load(); got != 1 {
		t.Fatalf("%d discovery requests, want 1", got)
	}

	clock.Advance(time.Second)
	authURL, ls, err := rp.Begin(t.Context(), "/", nil)
	if err != nil {
		t.Fatalf("Begin after the IdP came up: %v", err)
	}
	claims, err := rp.Finish(t.Context(), ls, o.login(t, authURL, exampleUser, "verysecure").Get("code"))
	if err != nil || claims.Subject != "id1" {
		t.Fatalf("Finish after recovery = %+v, %v", claims, err)
	}

	// A successful discovery is kept, even if the IdP goes away again.
	transport.down.Store(true)
	clock.Advance(time.Hour)
	if err := rp.Ready(t.Context()); err != nil {
		t.Errorf("Ready after success = %v, want nil", err)
	}
	if got := transport.discovery.Load(); got != 2 {
		t.Errorf("%d discovery requests, want 2", got)
	}
}

func TestRPDiscoveryIsSharedByConcurrentCallers(t *testing.T) {
	o := startOP(t, opOptions{})
	transport := &flakyTransport{hold: make(chan struct{})}
	rp := o.rp(&http.Client{Transport: transport})

	// A caller that gives up does not cancel the attempt for the others.
	impatient, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := rp.Ready(impatient); !errors.Is(err, ErrProviderUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("impatient Ready = %v, want ErrProviderUnavailable and DeadlineExceeded", err)
	}

	const callers = 20
	errs := make(chan error, callers)
	for range callers {
		go func() { errs <- rp.Ready(t.Context()) }()
	}
	time.Sleep(50 * time.Millisecond) // let the callers pile up behind the held request
	close(transport.hold)
	for range callers {
		if err := <-errs; err != nil {
			t.Errorf("Ready = %v", err)
		}
	}
	if got := transport.discovery.Load(); got != 1 {
		t.Errorf("%d discovery requests for %d concurrent callers, want 1", got, callers+1)
	}
}

func TestRPEndSessionURL(t *testing.T) {
	o := startOP(t, opOptions{})
	rp := o.rp(nil)
	authURL, ls, err := rp.Begin(t.Context(), "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := rp.Finish(t.Context(), ls, o.login(t, authURL, exampleUser, "verysecure").Get("code"))
	if err != nil {
		t.Fatal(err)
	}

	got := rp.EndSessionURL(t.Context(), claims.RawIDToken, o.postLogoutURL)
	want := o.issuer + "/end_session?" + url.Values{
		"client_id":                {testClientID},
		"id_token_hint":            {claims.RawIDToken},
		"post_logout_redirect_uri": {o.postLogoutURL},
	}.Encode()
	if got != want {
		t.Errorf("EndSessionURL = %s\nwant            %s", got, want)
	}
	if got := rp.EndSessionURL(t.Context(), "", ""); got != o.issuer+"/end_session?client_id="+testClientID {
		t.Errorf("EndSessionURL without hint or redirect = %s", got)
	}

	// The OP accepts it and sends the browser to the post-logout page.
	resp, err := http.Get(want)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.String() != o.postLogoutURL {
		t.Errorf("logout at the OP ended at %s (%d), want %s", resp.Request.URL, resp.StatusCode, o.postLogoutURL)
	}
}

// minimalProvider serves a discovery document without end_session_endpoint.
func minimalProvider(t *testing.T, issuerOverride string) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		issuer := "http://" + r.Host
		if issuerOverride != "" {
			issuer = issuerOverride
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                 issuer,
			"authorization_endpoint": issuer + "/authorize",
			"token_endpoint":         issuer + "/token",
			"jwks_uri":               issuer + "/keys",
		})
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestRPEndSessionURLWithoutEndpoint(t *testing.T) {
	srv := minimalProvider(t, "")
	rp := NewRP(RPConfig{Issuer: srv.URL, ClientID: testClientID})
	if err := rp.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := rp.EndSessionURL(t.Context(), "hint", "https://chat.example.com/"); got != "" {
		t.Errorf("EndSessionURL = %q, want empty", got)
	}
}

func TestRPRefusesIssuerMismatch(t *testing.T) {
	srv := minimalProvider(t, "https://accounts.example.com")
	rp := NewRP(RPConfig{Issuer: srv.URL, ClientID: testClientID})
	// The provider answered: its answer says the configuration is wrong,
	// which no retry fixes (issue 10).
	if err := rp.Ready(t.Context()); !errors.Is(err, ErrMisconfigured) || !strings.Contains(err.Error(), "issuer") {
		t.Errorf("Ready = %v, want ErrMisconfigured naming the issuer mismatch", err)
	}
}

func TestRPFinishWhenProviderGoesDown(t *testing.T) {
	o := startOP(t, opOptions{})
	transport := &flakyTransport{}
	rp := o.rp(&http.Client{Transport: transport})
	authURL, ls, err := rp.Begin(t.Context(), "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	code := o.login(t, authURL, exampleUser, "verysecure").Get("code")
	transport.down.Store(true)
	if _, err := rp.Finish(t.Context(), ls, code); !errors.Is(err, ErrProviderUnavailable) || errors.Is(err, ErrLoginRejected) {
		t.Errorf("Finish with the token endpoint unreachable = %v, want ErrProviderUnavailable", err)
	}
}

// TestRPWrongClientSecretIsMisconfigured: the token endpoint's invalid_client
// is a misconfiguration, not a sign-in to retry (issue 10).
func TestRPWrongClientSecretIsMisconfigured(t *testing.T) {
	o := startOP(t, opOptions{})
	rp := NewRP(RPConfig{Issuer: o.issuer, ClientID: testClientID, ClientSecret: "not-the-secret", RedirectURL: o.redirectURL})
	authURL, ls, err := rp.Begin(t.Context(), "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rp.Finish(t.Context(), ls, o.login(t, authURL, exampleUser, "verysecure").Get("code"))
	if !errors.Is(err, ErrMisconfigured) || !strings.Contains(err.Error(), "client_secret") {
		t.Errorf("Finish = %v, want ErrMisconfigured naming the client credentials", err)
	}
}

// TestRPEndSessionURLLeavesOutAStaleHint: a hint the IdP can no longer
// verify (its key rotated away, or not its token at all) is left out, so the
// IdP signs the person out by client_id instead of showing an error.
func TestRPEndSessionURLLeavesOutAStaleHint(t *testing.T) {
	o := startOP(t, opOptions{})
	rp := o.rp(nil)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "rotated-away"))
	if err != nil {
		t.Fatal(err)
	}
	claims, _ := json.Marshal(map[string]any{"iss": o.issuer, "aud": testClientID, "sub": "someone",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	jws, err := signer.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	stale, _ := jws.CompactSerialize()
	want := o.issuer + "/end_session?" + url.Values{"client_id": {testClientID}, "post_logout_redirect_uri": {o.postLogoutURL}}.Encode()
	for name, hint := range map[string]string{"signed by a key the IdP no longer publishes": stale, "not a JWT": "hint"} {
		if got := rp.EndSessionURL(t.Context(), hint, o.postLogoutURL); got != want {
			t.Errorf("%s: EndSessionURL = %s\nwant %s", name, got, want)
		}
	}
}
