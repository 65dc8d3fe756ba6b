package tests

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser tests walk the README's walk-through in headless Chromium
// against Caddyfile.example as shipped, clicking what a person would click and
// reading what they would read.

const chromiumPath = "/usr/bin/chromium"

// browserTestBudget bounds one browser test from start to finish, Caddy and
// Chromium included.
const browserTestBudget = 85 * time.Second

// stepTimeout bounds one browser step, so a page that never shows the
// expected element fails with the step's name instead of the test's deadline.
const stepTimeout = 20 * time.Second

// TestBrowserWalkthroughApproval is the README walk-through with an approval:
// Bob signs in and requests access, cannot reach the backend, Alice approves
// with a comment on the admin page, and Bob then sees the decision and
// reaches the stand-in backend.
func TestBrowserWalkthroughApproval(t *testing.T) {
	requireChromium(t)
	ctx := withBudget(t)
	srv := startExample(t, ctx)
	b := newTab(t, ctx, srv.URL)
	shots := t.TempDir()

	// 1. Opening the site sends an anonymous visitor to the development
	// provider's sign-in page, where Bob chooses himself.
	b.open("/")
	b.expectSignInPage()
	if got := b.text(`button[name="email"][value="bob@example.com"]`); !strings.Contains(got, "Bob Builder") {
		t.Fatalf("Bob's sign-in button reads %q, want it to name Bob Builder", got)
	}
	b.click(`button[name="email"][value="bob@example.com"]`)

	// 2. Bob is new: he lands on the request-access page and asks for access.
	requestAccess(b, bob)

	// 3. Until someone decides, the backend sends Bob back to his request.
	b.open("/")
	b.expectPath("/gatehouse/request-access")
	b.expectText("#request-status", "pending")

	// 4. Alice signs in and approves with a comment.
	b.signOut()
	b.signIn("/gatehouse/admin", alice, "/gatehouse/admin")
	b.expectText("main h1", "Access requests")
	card := expectOnePendingRequestFrom(b, bob)
	b.screenshot(filepath.Join(shots, "admin.png"))
	b.setValue(card+` form.approve select[name="role"]`, "user")
	b.typeInto(card+` form.approve input[name="comment"]`, "welcome aboard")
	b.expectText(card+` form.approve button[type="submit"]`, "Approve")
	b.click(card + ` form.approve button[type="submit"]`)
	b.expectPath("/gatehouse/admin")
	b.expectText(".notice", "The request was approved and the requester will be told.")
	b.expectCount(".request", 0)
	b.expectText("#no-requests", "No pending requests.")

	// 5. Bob signs in again, sees the decision and reaches the backend.
	b.signOut()
	b.signIn("/gatehouse/request-access", bob, "/gatehouse/request-access")
	b.expectText("#request-status", "approved")
	b.expectText("#review-comment", "welcome aboard")
	b.expectText("#access-granted p", "You have access as user.")
	b.expectContains("#latest-request", "by Alice Admin (alice@example.com)")
	b.expectCount("#request-form", 0)
	b.screenshot(filepath.Join(shots, "request-access-approved.png"))

	b.open("/")
	b.expectPath("/")
	b.expectText("h1", "Stand-in model backend")
	b.expectContains("body", "You reached the backend as bob@example.com (user).")

	resp := b.open("/v1/models")
	if resp.status != http.StatusOK || resp.mimeType != "application/json" {
		t.Fatalf("/v1/models: status %d, type %q; want 200 application/json", resp.status, resp.mimeType)
	}
	b.expectContains("body", `"llama3"`)
}

// TestBrowserWalkthroughDenial is the walk-through's other branch on a fresh
// instance: Alice denies Bob's request with a comment, and Bob sees the denial,
// the comment and the form to ask again.
func TestBrowserWalkthroughDenial(t *testing.T) {
	requireChromium(t)
	ctx := withBudget(t)
	srv := startExample(t, ctx)
	b := newTab(t, ctx, srv.URL)

	b.signIn("/", bob, "/gatehouse/request-access")
	requestAccess(b, bob)

	b.signOut()
	b.signIn("/gatehouse/admin", alice, "/gatehouse/admin")
	card := expectOnePendingRequestFrom(b, bob)
	b.typeInto(card+` form.deny input[name="comment"]`, "not this quarter")
	b.expectText(card+` form.deny button[type="submit"]`, "Deny")
	b.click(card + ` form.deny button[type="submit"]`)
	b.expectPath("/gatehouse/admin")
	b.expectText(".notice", "The request was denied and the requester will be told.")
	b.expectCount(".request", 0)

	b.signOut()
	b.signIn("/gatehouse/request-access", bob, "/gatehouse/request-access")
	b.expectText("#request-status", "denied")
	b.expectText("#review-comment", "not this quarter")
	b.expectCount("#access-granted", 0)
	b.expectText(`#request-form button[type="submit"]`, "Submit request")
	if got := b.value("#purpose"); got != "" {
		t.Errorf("the new request form starts with purpose %q, want it empty", got)
	}

	// A denied person does not reach the backend (README: "suspended or
	// denied: 403 page").
	if resp := b.open("/"); resp.status != http.StatusForbidden {
		t.Errorf("denied Bob opening /: status %d, want 403", resp.status)
	}
	b.expectPath("/")
	b.expectText("main h1", "Access denied")
}

// requestAccess fills in and submits the request-access form as who, who has
// just landed on the page, and checks that the page shows the request pending.
func requestAccess(b *tab, who string) {
	b.t.Helper()
	b.expectPath("/gatehouse/request-access")
	b.expectText("main h1", "Request access")
	b.expectText("header span", who)
	b.expectCount("#request-status", 0)
	b.typeInto("#purpose", "evaluate llama3 for support answers")
	b.typeInto("#team", "support")
	b.expectText(`#request-form button[type="submit"]`, "Submit request")
	b.click(`#request-form button[type="submit"]`)
	b.expectPath("/gatehouse/request-access")
	b.expectText(".notice", "Your request was submitted.")
	b.expectText("#request-status", "pending")
	b.expectContains("#latest-request", "evaluate llama3 for support answers")
	b.expectCount("#request-form", 0)
}

// expectOnePendingRequestFrom checks that the admin page lists exactly one
// pending request, from email, and returns a selector for its card.
func expectOnePendingRequestFrom(b *tab, email string) string {
	b.t.Helper()
	b.expectCount(".request", 1)
	card := fmt.Sprintf(`.request[data-email=%q]`, email)
	b.expectContains(card+" h2", email)
	b.expectContains(card+" dl", "evaluate llama3 for support answers")
	b.expectContains(card+" dl", "support")
	return card
}

// withBudget returns a context that ends when the test's time budget does.
func withBudget(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), browserTestBudget)
	t.Cleanup(cancel)
	return ctx
}

// exampleServer is Caddy running Caddyfile.example.
type exampleServer struct {
	URL  string
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

// startExample runs Caddyfile.example from a fresh directory, so its
// ./data lands there, and waits until Gatehouse answers its health check.
func startExample(t *testing.T, ctx context.Context) *exampleServer {
	t.Helper()
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port := freePort(t)
	// The only change to the example: its port, so tests can run side by side
	// and next to a developer's `./xcaddy.sh run`.
	cfg := strings.ReplaceAll(string(example), "localhost:8080", fmt.Sprintf("localhost:%d", port))
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := &exampleServer{URL: fmt.Sprintf("http://localhost:%d", port), logs: new(bytes.Buffer)}
	srv.cmd = exec.Command(caddyBin, "run", "--config", "Caddyfile", "--adapter", "caddyfile")
	srv.cmd.Dir = dir
	srv.cmd.Stdout, srv.cmd.Stderr = srv.logs, srv.logs
	// The example keeps Caddy's admin endpoint on; CADDY_ADMIN (honoured by
	// Caddy v2.11) moves it off the shared default :2019 without editing the
	// file. The XDG directories keep Caddy's autosaved config and its data
	// out of the home directory.
	srv.cmd.Env = append(os.Environ(),
		fmt.Sprintf("CADDY_ADMIN=localhost:%d", freePort(t)),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"),
		"XDG_DATA_HOME="+filepath.Join(dir, "xdg-data"),
	)
	if err := srv.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { srv.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = srv.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = srv.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("gatehouse logs:\n%s", srv.logs.String())
		}
	})

	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := hc.Get(srv.URL + "/api/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return srv
			}
		}
		select {
		case <-exited:
			t.Fatalf("caddy exited before becoming healthy")
		case <-ctx.Done():
			t.Fatalf("gatehouse did not become healthy: %v", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tab is one headless Chromium tab; its methods fail the test with the step
// that went wrong.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
}

// requireChromium skips the test when Chromium is missing, except in CI,
// where a missing browser must not turn the end-to-end test into a silent pass.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Chromium is required in CI: %v (apt-get install -y chromium)", err)
		}
		t.Skipf("Chromium is not installed at %s (apt-get install -y chromium); skipping the browser test", chromiumPath)
	}
}

// newTab starts a fresh Chromium with its own profile; it is stopped when the
// test ends or its budget runs out.
func newTab(t *testing.T, ctx context.Context, base string) *tab {
	t.Helper()
	output := new(bytes.Buffer)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(output),
	)
	// The allocator's cancel kills Chromium and waits for it to exit.
	t.Cleanup(func() {
		cancelAlloc()
		if t.Failed() {
			// Chromium complains at length about the missing D-Bus of a
			// container; those lines never explain a failure.
			var kept []string
			for _, line := range strings.Split(output.String(), "\n") {
				if line != "" && !strings.Contains(line, "dbus") {
					kept = append(kept, line)
				}
			}
			if len(kept) > 0 {
				t.Logf("chromium output:\n%s", strings.Join(kept, "\n"))
			}
		}
	})
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return &tab{t: t, ctx: tabCtx, base: base}
}

// run runs one step with its own timeout.
func run[T any](b *tab, step string, action chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		b.t.Fatalf("%s: %v (page %s)", step, err, b.locationForError())
	}
	return v
}

// locationForError is the current URL, for failure messages only.
func (b *tab) locationForError() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "unknown"
	}
	return loc
}

type pageResponse struct {
	status   int64
	mimeType string
}

// open types path into the address bar and waits for the page to load,
// following redirects.
func (b *tab) open(path string) pageResponse {
	b.t.Helper()
	resp := run(b, "opening "+path, chromedp.NavigateResponse(b.base+path))
	if resp == nil {
		b.t.Fatalf("opening %s: no response", path)
	}
	return pageResponse{status: resp.Status, mimeType: resp.MimeType}
}

// click clicks the element, which must navigate, and waits for the new page.
func (b *tab) click(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
		b.t.Fatalf("clicking %s: %v (page %s)", sel, err, b.locationForError())
	}
}

func (b *tab) typeInto(sel, text string) {
	b.t.Helper()
	run(b, "typing into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible))
}

func (b *tab) setValue(sel, value string) {
	b.t.Helper()
	run(b, "choosing "+value+" in "+sel, chromedp.SetValue(chromedp.CSS(sel), value, chromedp.NodeVisible))
}

func (b *tab) value(sel string) string {
	b.t.Helper()
	return run(b, "reading the value of "+sel, chromedp.Value(chromedp.CSS(sel)))
}

// text is the rendered text of the first element matching sel, trimmed. It
// does not wait: open and click return once the server-rendered page has
// loaded, so a missing element is missing from the page.
func (b *tab) text(sel string) string {
	b.t.Helper()
	got, found := b.lookupText(sel)
	if !found {
		b.t.Fatalf("%s: no such element on %s", sel, b.locationForError())
	}
	return got
}

func (b *tab) lookupText(sel string) (text string, found bool) {
	b.t.Helper()
	type result struct {
		Found bool   `json:"found"`
		Text  string `json:"text"`
	}
	r := run(b, "reading "+sel, chromedp.Evaluate[result](fmt.Sprintf(
		`(e => e ? {found: true, text: e.innerText} : {found: false, text: ""})(document.querySelector(%q))`, sel)))
	return strings.TrimSpace(r.Text), r.Found
}

// The expect helpers report a mismatch and let the walk go on, so one run
// shows every difference on the way; a wrong page still stops it (expectPath).

func (b *tab) expectText(sel, want string) {
	b.t.Helper()
	got, found := b.lookupText(sel)
	switch {
	case !found:
		b.t.Errorf("%s: no such element on %s, want one reading %q", sel, b.locationForError(), want)
	case got != want:
		b.t.Errorf("%s on %s reads %q, want %q", sel, b.locationForError(), got, want)
	}
}

func (b *tab) expectContains(sel, want string) {
	b.t.Helper()
	got, found := b.lookupText(sel)
	switch {
	case !found:
		b.t.Errorf("%s: no such element on %s, want one containing %q", sel, b.locationForError(), want)
	case !strings.Contains(got, want):
		b.t.Errorf("%s on %s reads %q, want it to contain %q", sel, b.locationForError(), got, want)
	}
}

func (b *tab) expectCount(sel string, want int) {
	b.t.Helper()
	got := run(b, "counting "+sel, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	if got != want {
		b.t.Errorf("%s on %s: %d elements, want %d", sel, b.locationForError(), got, want)
	}
}

// expectPath checks the path of the URL in the address bar.
func (b *tab) expectPath(want string) {
	b.t.Helper()
	loc := run(b, "reading the location", chromedp.Location())
	u, err := url.Parse(loc)
	if err != nil {
		b.t.Fatalf("location %q: %v", loc, err)
	}
	if u.Path != want {
		b.t.Fatalf("the browser is at %s, want path %s", loc, want)
	}
}

// expectSignInPage checks that the browser shows the development provider's
// sign-in page.
func (b *tab) expectSignInPage() {
	b.t.Helper()
	loc := run(b, "reading the location", chromedp.Location())
	if u, err := url.Parse(loc); err != nil || !strings.HasPrefix(u.Path, "/dev-idp/") {
		b.t.Fatalf("the browser is at %s, want the development sign-in page under /dev-idp/", loc)
	}
	b.expectText("h1", "Gatehouse development sign-in")
}

// signIn opens start, which must ask for a sign-in, chooses email on the
// development provider's page and checks where the browser lands.
func (b *tab) signIn(start, email, wantPath string) {
	b.t.Helper()
	b.open(start)
	b.expectSignInPage()
	b.click(fmt.Sprintf(`button[name="email"][value=%q]`, email))
	b.expectPath(wantPath)
	b.expectText("header span", email)
}

// signOut presses the Sign out button at the top of a Gatehouse page; the
// browser ends up signed out, back at the sign-in page.
func (b *tab) signOut() {
	b.t.Helper()
	b.expectText("header form button", "Sign out")
	b.click("header form button")
	// The sign-out page goes on by itself (a meta refresh) to the IdP's
	// end-session endpoint, which comes back to / and so to sign-in.
	b.waitForPathPrefix("/dev-idp/", 5*time.Second)
	b.expectSignInPage()
}

// waitForPathPrefix waits until the browser's location path starts with prefix.
func (b *tab) waitForPathPrefix(prefix string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		loc := run(b, "reading the location", chromedp.Location())
		if u, err := url.Parse(loc); err == nil && strings.HasPrefix(u.Path, prefix) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("the browser is at %s after %s, want a path under %s", loc, within, prefix)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot saves the whole page as a PNG and checks it is one.
func (b *tab) screenshot(path string) {
	b.t.Helper()
	img := run(b, "taking a screenshot", chromedp.FullScreenshot(100))
	if len(img) < 8 || !bytes.Equal(img[:8], []byte("\x89PNG\r\n\x1a\n")) {
		b.t.Fatalf("screenshot is not a PNG (%d bytes)", len(img))
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot of %s: %s (%d bytes)", b.locationForError(), path, len(img))
}
