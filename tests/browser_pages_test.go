package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The dashboard and account tests run against the e2e harness (startInstance)
// so they can set people up through the API first; the pages are then used
// the way a person would use them.

// pagesTestBudget bounds one of these tests: Caddy, Chromium, the API set-up
// of a few people and a few dozen page steps on a busy machine.
const pagesTestBudget = 150 * time.Second

func withPagesBudget(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), pagesTestBudget)
	t.Cleanup(cancel)
	return ctx
}

// screenshotDir is where the page screenshots go: GATEHOUSE_SCREENSHOTS when
// set (to keep them), else a directory removed after the test.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("GATEHOUSE_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBrowserAccountPersonalToken: Bob creates a personal token on his
// account page, copies it from the page, uses it from a script, and revokes it.
func TestBrowserAccountPersonalToken(t *testing.T) {
	requireChromium(t)
	ctx := withPagesBudget(t)
	in := startInstance(t, instanceConfig{})
	bobAPI := activeClient(t, in, bob)
	b := newTab(t, ctx, in.URL)
	b.desktopWindow()

	b.signIn("/gatehouse/account", bob, "/gatehouse/account")
	b.expectText("main h1", "Your account")
	b.expectText(`header a[href="/gatehouse/account"]`, "Account")
	b.expectCount(`header a[href="/gatehouse/admin"]`, 0)
	b.expectText("#profile-email", bob)
	b.expectText("#profile-name", "Bob Builder")
	b.expectText("#profile-role", "user")
	b.expectText("#profile-status", "active")
	b.expectTexts("#profile-permissions .tag", "chat:use", "models:use", "settings:self", "system:access", "tokens:personal")
	b.expectText("#no-tokens", "No tokens yet.")

	// 1. Create: the answer is the only one that shows the token.
	b.typeInto("#token-name", "laptop script")
	b.setValue("#token-expires", "7d")
	created := b.submit(`#token-form button[type="submit"]`)
	if created.Status != http.StatusOK {
		t.Errorf("creating a token: status %d, want 200", created.Status)
	}
	if got := header(created, "Cache-Control"); got != "no-store" {
		t.Errorf("the page with the new token has Cache-Control %q, want no-store", got)
	}
	csp := header(created, "Content-Security-Policy")
	var scriptSrc string
	for _, directive := range strings.Split(csp, ";") {
		if d := strings.TrimSpace(directive); strings.HasPrefix(d, "script-src ") {
			scriptSrc = d
		}
	}
	if !strings.HasPrefix(scriptSrc, "script-src 'nonce-") || strings.Contains(scriptSrc, "unsafe-inline") {
		t.Errorf("the page with the new token has CSP %q, want scripts allowed by nonce only", csp)
	}
	// Styles come from the one stylesheet the CSP allows, none inline.
	if strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "style-src 'self'") {
		t.Errorf("CSP %q, want style-src 'self' and nothing unsafe-inline", csp)
	}
	if bg := run(b, "reading the page's style", chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`)); bg != "rgb(245, 246, 248)" {
		t.Errorf("the page's background is %q: the stylesheet did not apply", bg)
	}
	b.expectText("#created-token h2", "Token “laptop script” created")
	token := b.value("#new-token")
	if strings.Count(token, ".") != 2 {
		t.Fatalf("the page shows %q as the token, want a JWS", token)
	}
	if readOnly := run(b, "reading the token input", chromedp.Evaluate[bool](`document.getElementById("new-token").readOnly`)); !readOnly {
		t.Errorf("the token input is editable, want it read-only")
	}
	// The copy button appears only when its script ran, which the CSP allows
	// by the response's nonce alone.
	if hidden := run(b, "reading the copy button", chromedp.Evaluate[bool](`document.getElementById("copy-token").hidden`)); hidden {
		t.Errorf("the Copy button is hidden: its script did not run")
	}
	b.expectText("#copy-token", "Copy")
	row := `tr.token[data-name="laptop script"]`
	b.expectContains(row, "personal")
	b.expectContains(row, "active")
	b.expectContains(row, "never")
	b.screenshot(filepath.Join(screenshotDir(t), "account-token-created.png"))

	// 2. The token works from a script.
	if got := bearerStatus(t, in, token, "/v1/models"); got != http.StatusOK {
		t.Fatalf("GET /v1/models with the new token: status %d, want 200", got)
	}

	// 3. No other answer holds the token string.
	for _, path := range []string{"/gatehouse/account", "/api/tokens", "/api/auth/me"} {
		if resp := bobAPI.get(path, "Accept", "text/html"); strings.Contains(resp.text(), token) {
			t.Errorf("%s shows the token string", path)
		}
	}
	b.open("/gatehouse/account")
	if html := run(b, "reading the page", chromedp.Evaluate[string](`document.documentElement.outerHTML`)); strings.Contains(html, token) {
		t.Errorf("the account page shows the token string again")
	}
	b.expectCount("#created-token", 0)
	b.expectCount("script", 0)

	// 4. Revoke: the token is refused within a second.
	b.expectText(row+" form.revoke button", "Revoke")
	b.click(row + " form.revoke button")
	b.expectPath("/gatehouse/account")
	b.expectText(".notice", "The token was revoked; it is refused everywhere within a second.")
	b.expectContains(row, "revoked")
	b.expectCount(row+" form.revoke", 0)
	deadline := time.Now().Add(time.Second)
	for {
		got := bearerStatus(t, in, token, "/v1/models")
		if got == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/models with the revoked token: status %d a second after revoking, want 401", got)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// 5. A token the policy cannot grant is refused with a readable message.
	b.typeInto("#token-name", "too strong")
	b.typeInto("#token-permissions", "users:manage")
	refused := b.submit(`#token-form button[type="submit"]`)
	if refused.Status != http.StatusBadRequest {
		t.Errorf("asking for users:manage: status %d, want 400", refused.Status)
	}
	b.expectContains(".error", "The token was not created: ")
	b.expectContains(".error", `permission "users:manage" is not among those this token may have`)
	b.expectCount("#created-token", 0)
	if got := b.value("#token-name"); got != "too strong" {
		t.Errorf("after the refusal the name field holds %q, want the name typed", got)
	}
}

// TestBrowserAdminDashboard: Alice suspends Bob (whose own browser is then
// turned away), makes Carol a manager, adds a custom role, deletes Dave and
// creates and revokes a system token, all from the dashboard.
func TestBrowserAdminDashboard(t *testing.T) {
	requireChromium(t)
	ctx := withPagesBudget(t)
	in := startInstance(t, instanceConfig{})
	activeClient(t, in, bob)
	activeClient(t, in, carol)
	activeClient(t, in, dave)
	b := newTab(t, ctx, in.URL)
	b.desktopWindow()
	bobTab := b.newIsolatedTab()

	bobTab.signIn("/gatehouse/account", bob, "/gatehouse/account")

	b.signIn("/gatehouse/admin", alice, "/gatehouse/admin")
	b.expectText("main h1", "Access requests")
	b.expectTexts("nav.sections a", "Access requests", "Elevations", "Users", "Roles & settings", "System tokens", "Usage", "Security events", "Audit log")
	b.expectText(`header a[href="/gatehouse/admin"]`, "Admin")
	b.expectText("#no-security-events", "No security events.")
	b.expectText("#no-requests", "No pending requests.")
	b.expectCount("tr.user", 4)
	aliceRow, bobRow, carolRow, daveRow := userRow(alice), userRow(bob), userRow(carol), userRow(dave)
	b.expectText(aliceRow+" .you", "(you)")
	b.expectCount(aliceRow+" form", 0)
	for _, row := range []string{bobRow, carolRow, daveRow} {
		b.expectCount(row+" form.status", 1)
		b.expectCount(row+" form.role", 1)
		b.expectCount(row+" form.delete", 1)
	}
	b.screenshot(filepath.Join(screenshotDir(t), "admin-dashboard.png"))

	// 1. Suspend Bob: his browser session ends at once.
	b.typeInto(bobRow+` form.status input[name="reason"]`, "left the team")
	b.expectText(bobRow+" form.status button", "Suspend")
	b.click(bobRow + " form.status button")
	b.expectPath("/gatehouse/admin")
	b.expectText(".notice", "The user was suspended; their sessions and tokens stopped working.")
	b.expectText(bobRow+" .user-status", "suspended")
	b.expectText(bobRow+" form.status button", "Activate")
	resp := bobTab.open("/gatehouse/account")
	if loc := run(bobTab, "reading the location", chromedp.Location()); !strings.Contains(loc, "/dev-idp/") && resp.status != http.StatusForbidden {
		t.Errorf("suspended Bob opening his account page: status %d at %s, want the sign-in page or 403", resp.status, loc)
	}

	// 2. The filter keeps to suspended users.
	b.setValue("#filter-status", "suspended")
	b.click(`#user-filter button[type="submit"]`)
	b.expectPath("/gatehouse/admin")
	b.expectCount("tr.user", 1)
	b.expectCount(bobRow, 1)
	b.open("/gatehouse/admin")

	// 3. Make Carol a manager.
	b.setValue(carolRow+` form.role select[name="role"]`, "manager")
	b.click(carolRow + " form.role button")
	b.expectText(".notice", "The role was changed.")
	b.expectText(carolRow+" .user-role", "manager")

	// 4. Add a custom role; it is listed with its inherited permissions.
	b.typeInto("#new-role-name", "analyst")
	b.typeInto("#new-role-rank", "15")
	b.typeInto("#new-role-inherits", "user")
	b.typeInto("#new-role-permissions", "usage:view")
	b.click(`#role-form button[type="submit"]`)
	b.expectPath("/gatehouse/admin")
	b.expectText(".notice", "The role was saved and applies at once.")
	analyst := `tr.role[data-role="analyst"]`
	b.expectContains(analyst, "custom")
	b.expectText(analyst+" .role-rank", "15")
	b.expectText(analyst+" .role-inherits", "user")
	b.expectTexts(analyst+" .role-permissions .tag", "chat:use", "models:use", "settings:self", "system:access", "tokens:personal", "usage:view")
	b.expectCount(daveRow+` form.role option[value="analyst"]`, 1)

	// A setting the policy refuses is explained on the page, form kept.
	b.typeInto("#new-role-name", "user")
	b.typeInto("#new-role-permissions", "usage:view")
	b.click(`#role-form button[type="submit"]`)
	b.expectText(".error", `The role was not saved: invalid settings: built-in role "user" may only be given models and limits.`)
	if got := b.value("#new-role-permissions"); got != "usage:view" {
		t.Errorf("after the refusal the permissions field holds %q, want usage:view", got)
	}
	b.open("/gatehouse/admin")

	// 5. Delete Dave, confirming with the box.
	run(b, "ticking the confirmation", chromedp.Click(chromedp.CSS(daveRow+` form.delete input[name="confirm"]`), chromedp.NodeVisible))
	b.click(daveRow + " form.delete button")
	b.expectText(".notice", "The user was deleted; their sessions ended and their tokens were revoked. Their audit history is kept.")
	b.expectCount(daveRow, 0)

	// 6. A system token: shown once, works, revoked.
	b.typeInto("#system-token-name", "nightly evaluation")
	b.typeInto("#system-token-permissions", "models:use")
	b.typeInto("#system-token-models", "llama3*")
	created := b.submit(`#system-token-form button[type="submit"]`)
	if got := header(created, "Cache-Control"); created.Status != http.StatusOK || got != "no-store" {
		t.Errorf("creating a system token: status %d, Cache-Control %q; want 200, no-store", created.Status, got)
	}
	token := b.value("#new-token")
	if got := bearerStatus(t, in, token, "/v1/models"); got != http.StatusOK {
		t.Errorf("GET /v1/models with the system token: status %d, want 200", got)
	}
	sysRow := `tr.token[data-name="nightly evaluation"]`
	b.expectContains(sysRow, "system")
	b.expectContains(sysRow, "llama3*")
	b.click(sysRow + " form.revoke button")
	b.expectText(".notice", "The token was revoked; it is refused everywhere within a second.")
	b.expectContains(sysRow, "revoked")
}

// TestBrowserManagerDashboard: Frank, a manager, sees the users but may act
// only on those below him; a forged form against the admin is refused on the
// page, readably.
func TestBrowserManagerDashboard(t *testing.T) {
	requireChromium(t)
	ctx := withPagesBudget(t)
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	aliceID := admin.userID()
	clientWithRole(t, in, frank, "manager")
	activeClient(t, in, bob)
	b := newTab(t, ctx, in.URL)

	b.signIn("/gatehouse/admin", frank, "/gatehouse/admin")
	b.expectTexts("nav.sections a", "Access requests", "Elevations", "Users", "Usage")
	b.expectCount("#roles", 0)
	b.expectCount("#tokens", 0)
	aliceRow, bobRow, frankRow := userRow(alice), userRow(bob), userRow(frank)
	b.expectText(aliceRow+" .user-role", "admin")
	b.expectCount(aliceRow+" form", 0)
	b.expectCount(frankRow+" form", 0)
	b.expectCount(bobRow+" form.status", 1)
	b.expectCount("form.role", 0)
	b.expectCount("form.delete", 0)

	// Bob's suspend form, pointed at Alice by hand.
	run(b, "pointing Bob's status form at Alice", chromedp.Evaluate[string](fmt.Sprintf(
		`(f => f.action = %q)(document.querySelector(%q))`, "/gatehouse/admin/users/"+aliceID+"/status", bobRow+" form.status")))
	resp := b.submit(bobRow + " form.status button")
	if resp.Status != http.StatusForbidden {
		t.Errorf("suspending the admin: status %d, want 403", resp.Status)
	}
	b.expectText(".error", "The status was not changed: target user is not below the caller's role.")
	b.expectText(aliceRow+" .user-status", "active")
	if got := admin.get("/api/auth/me").json(t)["user"].(map[string]any)["status"]; got != "active" {
		t.Errorf("after the refused suspension Alice is %v, want active", got)
	}

	// Suspending Bob is Frank's to do.
	b.open("/gatehouse/admin")
	b.click(bobRow + " form.status button")
	b.expectText(".notice", "The user was suspended; their sessions and tokens stopped working.")
	b.expectText(bobRow+" .user-status", "suspended")
}

// expectTexts checks the rendered text of every element matching sel, in order.
func (b *tab) expectTexts(sel string, want ...string) {
	b.t.Helper()
	got := run(b, "reading every "+sel, chromedp.Evaluate[[]string](fmt.Sprintf(
		`Array.from(document.querySelectorAll(%q), e => e.innerText.trim())`, sel)))
	if strings.Join(got, "|") != strings.Join(want, "|") {
		b.t.Errorf("%s on %s read %q, want %q", sel, b.locationForError(), got, want)
	}
}

func userRow(email string) string { return fmt.Sprintf(`tr.user[data-email=%q]`, email) }

// bearerStatus calls path with token as a script would.
func bearerStatus(t *testing.T, in *instance, token, path string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, in.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s with a bearer token: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// submit clicks a form's button and returns the response to the form.
func (b *tab) submit(sel string) *network.Response {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil || resp == nil {
		b.t.Fatalf("submitting with %s: %v (page %s)", sel, err, b.locationForError())
	}
	return resp
}

// desktopWindow sizes the page like a desktop browser window, for screenshots
// that show the layout people see.
func (b *tab) desktopWindow() {
	b.t.Helper()
	run(b, "sizing the window", chromedp.EmulateViewport(1280, 900))
}

// newIsolatedTab opens a tab in the same Chromium with its own cookies, as a
// second person's browser.
func (b *tab) newIsolatedTab() *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("opening a second browser context: %v", err)
	}
	return &tab{t: b.t, ctx: ctx, base: b.base}
}

func header(resp *network.Response, name string) string {
	for k, v := range resp.Headers {
		if strings.EqualFold(k, name) {
			return fmt.Sprint(v)
		}
	}
	return ""
}
