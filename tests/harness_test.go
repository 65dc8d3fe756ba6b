// Package tests holds Gatehouse's end-to-end tests: a real Caddy binary with
// Gatehouse compiled in, started as a process, signing in through the
// development OpenID provider over HTTP, in front of a real backend.
package tests

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// caddyBin is the binary built once for all tests.
var caddyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatehouse-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddyBin = filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", caddyBin, "../cmd/caddy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building caddy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Demo people of the development provider in every instance.
const (
	alice = "alice@example.com" // bootstrap admin
	bob   = "bob@example.com"
	carol = "carol@example.com"
	dave  = "dave@example.com"
	erin  = "erin@example.com"
	frank = "frank@example.com"
	grace = "grace@example.com"
)

// instance is one running Gatehouse process.
type instance struct {
	t       *testing.T
	dir     string
	port    int
	URL     string
	cfg     instanceConfig
	cmd     *exec.Cmd
	logs    *bytes.Buffer
	backend *backend
}

type instanceConfig struct {
	extraGlobal string // more lines inside the gatehouse { } block
	files       map[string]string
	storeLine   string // replaces the default "store sqlite <dir>/data/gatehouse.db"
	publicURL   string // the public_url, when the instance serves another one's (several instances behind one name)
	https       bool   // serve https with Caddy's internal CA (clients skip verification)
	adminPort   int    // Caddy's admin endpoint on localhost (for caddy reload); 0 = off
	oidcIssuer  string // use this OpenID provider instead of dev_idp
	apiPrefix   string // the api_prefix, when not /api (set in extraGlobal too)
	guardBlock  string // lines inside the site's gatehouse { } directive
	upstream    string // the backend's address, instead of the recording backend
	global      string // more lines of Caddy's global options
	idpBlock    string // the identity providers' lines, instead of dev_idp or oidcIssuer's
}

// startInstance starts Gatehouse on a free port with its own data directory,
// in front of a recording backend.
func startInstance(t *testing.T, cfg instanceConfig) *instance {
	t.Helper()
	in := &instance{t: t, dir: t.TempDir(), port: freePort(t), cfg: cfg, backend: newBackend(t)}
	scheme := "http"
	if cfg.https {
		scheme = "https"
	}
	in.URL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, in.port)
	for name, content := range cfg.files {
		if err := os.WriteFile(filepath.Join(in.dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	in.start()
	t.Cleanup(in.stop)
	return in
}

func (in *instance) caddyfile() string {
	global := "\tadmin off\n"
	if in.cfg.adminPort != 0 {
		global = fmt.Sprintf("\tadmin localhost:%d\n", in.cfg.adminPort)
	}
	if in.cfg.https {
		global += "\tlocal_certs\n\tskip_install_trust\n"
	}
	global += in.cfg.global
	idp := fmt.Sprintf(`dev_idp {
			user %s "Alice Admin"
			user %s "Bob Builder"
			user %s "Carol Clerk"
			user %s "Dave Doe"
			user %s "Erin Extra"
			user %s "Frank Manager"
			user %s "Grace Target"
		}`, alice, bob, carol, dave, erin, frank, grace)
	if in.cfg.oidcIssuer != "" {
		idp = fmt.Sprintf("oidc {\n\t\t\tissuer %s\n\t\t\tclient_id gatehouse\n\t\t\tclient_secret s3cret\n\t\t}", in.cfg.oidcIssuer)
	}
	if in.cfg.idpBlock != "" {
		idp = in.cfg.idpBlock
	}
	return fmt.Sprintf(`{
%s	gatehouse {
		public_url %s
		%s
		%s
		bootstrap_admin %s
%s
	}
}
%s {
	bind 127.0.0.1
	gatehouse_api
	gatehouse%s
	reverse_proxy %s {
		flush_interval -1
	}
}
`, global, in.publicURL(), in.storeLine(), idp, alice, in.cfg.extraGlobal, in.URL, in.guardBlock(), in.upstream())
}

func (in *instance) guardBlock() string {
	if in.cfg.guardBlock == "" {
		return ""
	}
	return " {\n" + in.cfg.guardBlock + "\n\t}"
}

func (in *instance) upstream() string {
	if in.cfg.upstream != "" {
		return in.cfg.upstream
	}
	return in.backend.addr
}

func (in *instance) publicURL() string {
	if in.cfg.publicURL != "" {
		return in.cfg.publicURL
	}
	return in.URL
}

func (in *instance) storeLine() string {
	if in.cfg.storeLine != "" {
		return in.cfg.storeLine
	}
	return "store sqlite " + filepath.Join(in.dir, "data", "gatehouse.db")
}

func (in *instance) start() {
	t := in.t
	t.Helper()
	path := filepath.Join(in.dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(in.caddyfile()), 0o600); err != nil {
		t.Fatal(err)
	}
	in.logs = new(bytes.Buffer)
	in.cmd = exec.Command(caddyBin, "run", "--config", path, "--adapter", "caddyfile")
	in.cmd.Dir = in.dir
	// Caddy's own state (autosave, internal CA) stays in the test's directory.
	in.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+in.dir, "XDG_CONFIG_HOME="+in.dir)
	in.cmd.Stdout, in.cmd.Stderr = in.logs, in.logs
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		prefix := "/api"
		if in.cfg.apiPrefix != "" {
			prefix = in.cfg.apiPrefix
		}
		resp, err := insecureClient.Get(in.URL + prefix + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if in.cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	in.stop()
	t.Fatalf("gatehouse did not become healthy; logs:\n%s", in.logs.String())
}

func (in *instance) stop() {
	if in.cmd == nil || in.cmd.Process == nil {
		return
	}
	_ = in.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { in.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = in.cmd.Process.Kill()
		<-done
	}
	in.cmd = nil
	if in.t.Failed() {
		in.t.Logf("gatehouse logs:\n%s", in.logs.String())
	}
}

// restart stops and starts the same process configuration on the same data.
func (in *instance) restart() {
	in.stop()
	in.start()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// insecureClient trusts any certificate: https instances use Caddy's
// internal CA, which the test machine does not trust.
var insecureClient = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
	TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
	MaxIdleConnsPerHost: 16,
}}

// client is a browser-like HTTP client with its own cookie jar that does not
// follow redirects, so tests see every 303.
type client struct {
	t    *testing.T
	in   *instance
	jar  *cookiejar.Jar
	http *http.Client
}

func (in *instance) newClient() *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: in.t, in: in, jar: jar, http: &http.Client{
		Jar:       jar,
		Timeout:   15 * time.Second,
		Transport: insecureClient.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

type response struct {
	*http.Response
	body []byte
}

func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

func (r *response) text() string { return string(r.body) }

// do sends a request; body may be nil, a string (sent as is) or any value (sent as JSON).
func (c *client) do(method, path string, body any, headers ...string) *response {
	c.t.Helper()
	var rd io.Reader
	contentType := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
		contentType = "application/json"
	case url.Values:
		rd = strings.NewReader(b.Encode())
		contentType = "application/x-www-form-urlencoded"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
		contentType = "application/json"
	}
	target := path
	if strings.HasPrefix(path, "/") {
		target = c.in.URL + path
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	c.checkOpenAPI(req, resp, data)
	return &response{Response: resp, body: data}
}

func (c *client) get(path string, headers ...string) *response {
	return c.do("GET", path, nil, headers...)
}

// cookie returns the value of the named cookie the jar holds for the instance.
func (c *client) cookie(name string) string {
	u, _ := url.Parse(c.in.URL)
	for _, ck := range c.jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

func (c *client) setCookie(name, value string) {
	u, _ := url.Parse(c.in.URL)
	c.jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

const sessionCookie = "gatehouse_session"

var authRequestIDPattern = regexp.MustCompile(`name="authRequestID" value="([^"]+)"`)

// signIn runs the whole browser sign-in through the development provider and
// returns the final redirect target after the callback.
func (c *client) signIn(email, rd string) string {
	c.t.Helper()
	return c.finishSignIn(c.beginSignIn(email, rd))
}

// beginSignIn runs a sign-in up to the IdP's redirect back to Gatehouse and
// returns the callback URL, not yet followed.
func (c *client) beginSignIn(email, rd string) string {
	c.t.Helper()
	loginPath := "/api/auth/login"
	if rd != "" {
		loginPath += "?rd=" + url.QueryEscape(rd)
	}
	resp := c.get(loginPath, "Accept", "text/html")
	if resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("login: status %d, want 303: %s", resp.StatusCode, resp.body)
	}
	// Follow the provider's redirects until its login page.
	loc := resp.Header.Get("Location")
	var page *response
	for i := 0; i < 5; i++ {
		page = c.get(c.abs(resp, loc), "Accept", "text/html")
		if page.StatusCode == http.StatusOK {
			break
		}
		if page.StatusCode/100 != 3 {
			c.t.Fatalf("following %s: status %d: %s", loc, page.StatusCode, page.body)
		}
		resp, loc = page, page.Header.Get("Location")
	}
	m := authRequestIDPattern.FindStringSubmatch(page.text())
	if m == nil {
		c.t.Fatalf("no sign-in form on the provider page:\n%s", page.body)
	}
	formURL := c.abs(page, "login")
	post := c.do("POST", formURL, url.Values{"authRequestID": {m[1]}, "email": {email}})
	// The provider redirects (possibly through its own callback) to ours.
	for i := 0; i < 5 && post.StatusCode/100 == 3; i++ {
		next := c.abs(post, post.Header.Get("Location"))
		if strings.Contains(next, "/api/auth/callback") {
			return next
		}
		post = c.get(next, "Accept", "text/html")
	}
	c.t.Fatalf("sign-in did not reach the callback: status %d: %s", post.StatusCode, post.body)
	return ""
}

// finishSignIn follows the callback URL and returns where it sends the browser.
func (c *client) finishSignIn(callback string) string {
	c.t.Helper()
	cb := c.get(callback, "Accept", "text/html")
	if cb.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("callback: status %d: %s", cb.StatusCode, cb.body)
	}
	return cb.Header.Get("Location")
}

// abs resolves ref against the URL of the request that produced resp.
func (c *client) abs(resp *response, ref string) string {
	base := resp.Request.URL
	u, err := base.Parse(ref)
	if err != nil {
		c.t.Fatal(err)
	}
	return u.String()
}

// backend is the protected upstream: it records what it receives and answers
// with it as JSON, and streams for /sse and upgrades for /ws.
type backend struct {
	addr string
	mu   sync.Mutex
	last *http.Request
	body []byte
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(b.serve)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.last, b.body = r.Clone(context.Background()), body
	b.mu.Unlock()
	switch r.URL.Path {
	case "/sse":
		b.serveSSE(w, r)
		return
	case "/ws":
		b.serveUpgrade(w, r)
		return
	}
	headers := map[string]string{}
	for k, v := range r.Header {
		headers[k] = strings.Join(v, ", ")
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/v1/models": // an OpenAI-compatible listing, plus what the backend saw
		var data []map[string]any
		for _, id := range backendModels {
			data = append(data, map[string]any{"id": id, "object": "model", "owned_by": "test"})
		}
		json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "headers": headers})
	case "/api/tags": // an Ollama listing
		var models []map[string]any
		for _, id := range backendModels {
			models = append(models, map[string]any{"name": id, "model": id, "size": 1})
		}
		json.NewEncoder(w).Encode(map[string]any{"models": models})
	default:
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "headers": headers, "body": string(body)})
	}
}

// backendModels are the models the test backend lists.
var backendModels = []string{"llama3", "llama3.1:8b", "mistral", "gpt-4o", "org/secret-model"}

// serveSSE streams three events 200 ms apart, or ?n= events 100 ms apart.
func (b *backend) serveSSE(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	flusher := w.(http.Flusher)
	n, gap := 3, 200*time.Millisecond
	if v, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && v > 0 {
		n, gap = v, 100*time.Millisecond
	}
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "data: event %d\n\n", i)
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(gap):
		}
	}
}

// serveUpgrade switches protocols and echoes every line back in upper case.
func (b *backend) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "upgrade required", http.StatusUpgradeRequired)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	rw.Flush()
	for {
		line, err := rw.ReadString('\n')
		if err != nil {
			return
		}
		rw.WriteString(strings.ToUpper(line))
		rw.Flush()
	}
}

func (b *backend) lastRequest() (*http.Request, []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last, b.body
}
