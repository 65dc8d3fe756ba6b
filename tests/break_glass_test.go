package tests

import (
	"database/sql"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/notify"
)

// Break-glass (spec §10): a named user, or anyone signed in with a sealed
// one-time code from `caddy gatehouse break-glass seal`, invokes emergency
// access with a reason; every admin hears of it by webhook and email, every
// page shows a banner, every request of the session is audited, the grant is
// listed until another admin acknowledges it, and the role falls back when
// it expires.

const (
	eventBreakGlass = "break_glass.invoked"
	breakGlassBlock = `break_glass {
			user bob@example.com
			role admin
			ttl 1h
		}`
	breakGlassReason = "primary admin unreachable, production outage"
)

// invokeBreakGlass posts an invocation and returns the answer.
func invokeBreakGlass(c *client, reason, code string) *response {
	c.t.Helper()
	body := map[string]any{"reason": reason}
	if code != "" {
		body["code"] = code
	}
	return c.do("POST", "/api/break-glass", body)
}

func roleOf(t *testing.T, c *client) string {
	t.Helper()
	return c.get("/api/auth/me").json(t)["user"].(map[string]any)["role"].(string)
}

// breakGlassAudit reads GET /api/audit?type=typ until it holds at least want
// events or timeout passes.
func breakGlassAudit(t *testing.T, admin *client, typ string, want int, timeout time.Duration) []map[string]any {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		resp := admin.get("/api/audit?type=" + typ)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/audit?type=%s: %d %s", typ, resp.StatusCode, resp.body)
		}
		var body struct {
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal(resp.body, &body); err != nil {
			t.Fatal(err)
		}
		if len(body.Events) >= want || time.Now().After(deadline) {
			return body.Events
		}
	}
}

// breakGlassDelivery waits for the webhook delivery of break_glass.invoked about email.
func breakGlassDelivery(t *testing.T, hook *webhookReceiver, email string) (delivery, map[string]any) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		hook.mu.Lock()
		got := slices.Clone(hook.deliveries)
		hook.mu.Unlock()
		for _, d := range got {
			var body map[string]any
			if err := json.Unmarshal(d.body, &body); err != nil {
				t.Fatalf("webhook body %s: %v", d.body, err)
			}
			if g, _ := body["break_glass"].(map[string]any); body["event"] == eventBreakGlass && g["email"] == email {
				return d, body
			}
		}
	}
	t.Fatalf("no webhook delivery of %s about %s", eventBreakGlass, email)
	return delivery{}, nil
}

// TestBreakGlassNamedUserInvokesAndAnotherAdminAcknowledges: bob, named in
// break_glass, invokes it with a reason and is admin at once; the webhook
// and both admins' mailboxes hear of it; the banner is on his pages and
// the admin's; his requests are audited; he cannot acknowledge his own
// grant, another admin does, and it leaves the list.
func TestBreakGlassNamedUserInvokesAndAnotherAdminAcknowledges(t *testing.T) {
	hook, mb := newWebhookReceiver(t), newMailbox(t)
	in := notifiedInstance(t, hook, mb, breakGlassBlock)
	aliceC := in.newClient()
	aliceC.signIn(alice, "")
	clientWithRole(t, in, frank, "admin")
	bobC := activeClient(t, in, bob)

	if resp := invokeBreakGlass(bobC, "urgent", ""); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a reason of 6 characters: %d %s, want 400", resp.StatusCode, resp.body)
	}
	resp := invokeBreakGlass(bobC, breakGlassReason, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke as a named user: %d %s", resp.StatusCode, resp.body)
	}
	grant := resp.json(t)
	if grant["role"] != "admin" || grant["reason"] != breakGlassReason || grant["code_used"] != false {
		t.Fatalf("grant = %v, want role admin, the reason, no code", grant)
	}
	created, _ := time.Parse(time.RFC3339Nano, grant["created_at"].(string))
	expires, _ := time.Parse(time.RFC3339Nano, grant["expires_at"].(string))
	if expires.Sub(created) != time.Hour {
		t.Fatalf("grant lasts %s, want the ttl 1h", expires.Sub(created))
	}
	if got := roleOf(t, bobC); got != "admin" {
		t.Fatalf("bob's role under emergency access = %s, want admin", got)
	}
	if again := invokeBreakGlass(bobC, breakGlassReason, ""); again.StatusCode != http.StatusConflict {
		t.Fatalf("a second invocation while the first is active: %d %s, want 409", again.StatusCode, again.body)
	}

	d, body := breakGlassDelivery(t, hook, bob)
	if err := notify.VerifyWebhook("hook-secret-123", d.header, d.body, time.Now(), 5*time.Minute); err != nil {
		t.Fatalf("webhook signature: %v", err)
	}
	if g := body["break_glass"].(map[string]any); d.header.Get(notify.HeaderEvent) != eventBreakGlass || g["reason"] != breakGlassReason || g["id"] != grant["id"] {
		t.Fatalf("webhook %s %v, want %s with the grant and its reason", d.header.Get(notify.HeaderEvent), body, eventBreakGlass)
	}
	told := mailsWith(t, mb, "Subject: Gatehouse: emergency access invoked by "+bob, 2, 15*time.Second)
	var to []string
	for _, m := range told {
		to = append(to, m.to...)
		if !strings.Contains(m.data, breakGlassReason) {
			t.Errorf("email to %v does not hold the reason:\n%s", m.to, m.data)
		}
	}
	slices.Sort(to)
	if want := []string{alice, frank}; !slices.Equal(to, want) {
		t.Fatalf("emailed to %v, want every admin %v", to, want)
	}

	banner := "Emergency access active: " + bob + " as admin until "
	for name, c := range map[string]*client{"bob": bobC, "alice": aliceC} {
		page := c.get("/gatehouse/account", "Accept", "text/html")
		if page.StatusCode != http.StatusOK || !strings.Contains(page.text(), banner) || !strings.Contains(page.text(), "— "+breakGlassReason) {
			t.Fatalf("%s's account page: %d, want the banner %q … %q:\n%s", name, page.StatusCode, banner, breakGlassReason, page.body)
		}
	}

	if r := bobC.get("/api/users"); r.StatusCode != http.StatusOK {
		t.Fatalf("bob lists users as admin: %d %s", r.StatusCode, r.body)
	}
	if r := bobC.get("/v1/models"); r.StatusCode != http.StatusOK {
		t.Fatalf("bob's backend request: %d %s", r.StatusCode, r.body)
	}
	paths := map[string]bool{}
	for _, ev := range breakGlassAudit(t, aliceC, "break_glass.request", 3, 5*time.Second) {
		detail := ev["detail"].(map[string]any)
		if ev["actor_id"] != bobC.userID() || detail["grant_id"] != grant["id"] {
			t.Fatalf("break_glass.request %v, want by bob under the grant", ev)
		}
		paths[detail["method"].(string)+" "+detail["path"].(string)] = true
	}
	for _, want := range []string{"GET /api/users", "GET /v1/models", "GET /api/auth/me"} {
		if !paths[want] {
			t.Errorf("no break_glass.request of %s among %v", want, paths)
		}
	}
	for _, ev := range breakGlassAudit(t, aliceC, "break_glass.request", 0, 0) {
		if ev["actor_id"] != bobC.userID() {
			t.Fatalf("a request of someone without emergency access was audited: %v", ev)
		}
	}
	if inv := breakGlassAudit(t, aliceC, "break_glass.invoked", 1, time.Second); len(inv) != 1 || inv[0]["detail"].(map[string]any)["reason"] != breakGlassReason {
		t.Fatalf("break_glass.invoked = %v, want one with the reason", inv)
	}

	listed := func() []any {
		r := aliceC.get("/api/break-glass")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/break-glass: %d %s", r.StatusCode, r.body)
		}
		return r.json(t)["grants"].([]any)
	}
	if got := listed(); len(got) != 1 || got[0].(map[string]any)["id"] != grant["id"] {
		t.Fatalf("listed grants = %v, want bob's", got)
	}
	dash := aliceC.get("/gatehouse/admin", "Accept", "text/html")
	if !strings.Contains(dash.text(), `id="break-glass-`+grant["id"].(string)+`"`) {
		t.Fatalf("the dashboard does not list the grant:\n%s", dash.body)
	}
	ack := "/api/break-glass/" + grant["id"].(string) + "/acknowledge"
	if own := bobC.do("POST", ack, nil); own.StatusCode != http.StatusForbidden || own.json(t)["code"] != "own_grant" {
		t.Fatalf("the invoker acknowledges their own grant: %d %s, want 403 own_grant", own.StatusCode, own.body)
	}
	if r := aliceC.do("POST", ack, nil); r.StatusCode != http.StatusOK || r.json(t)["acknowledged_by"].(map[string]any)["email"] != alice {
		t.Fatalf("another admin acknowledges: %d %s", r.StatusCode, r.body)
	}
	if r := aliceC.do("POST", ack, nil); r.StatusCode != http.StatusConflict {
		t.Fatalf("acknowledging twice: %d %s, want 409", r.StatusCode, r.body)
	}
	if got := listed(); len(got) != 0 {
		t.Fatalf("listed grants after the acknowledgement = %v, want none", got)
	}
	if acks := breakGlassAudit(t, aliceC, "break_glass.acknowledged", 1, time.Second); len(acks) != 1 || acks[0]["actor_id"] != aliceC.userID() {
		t.Fatalf("break_glass.acknowledged = %v, want one by alice", acks)
	}
}

// sealCode runs `caddy gatehouse break-glass seal` on the instance's
// configuration and returns the code it prints.
func sealCode(t *testing.T, in *instance) string {
	t.Helper()
	cmd := exec.Command(caddyBin, "gatehouse", "break-glass", "seal", "--config", filepath.Join(in.dir, "Caddyfile"), "--adapter", "caddyfile")
	cmd.Dir = in.dir
	cmd.Env = append(cmd.Environ(), "XDG_DATA_HOME="+in.dir, "XDG_CONFIG_HOME="+in.dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("break-glass seal: %v\n%s", err, stderr.String())
	}
	code := strings.TrimSpace(string(out))
	if len(code) < 20 || strings.ContainsAny(code, " \n") {
		t.Fatalf("break-glass seal printed %q, want one code", out)
	}
	return code
}

// TestBreakGlassSealedCodeWorksOnce: a user not named needs a code (403
// without); a code sealed by the command line (audited with actor cli)
// grants admin once, and is refused the second time.
func TestBreakGlassSealedCodeWorksOnce(t *testing.T) {
	in := startInstance(t, instanceConfig{extraGlobal: "\t\t" + breakGlassBlock})
	aliceC := in.newClient()
	aliceC.signIn(alice, "")
	carolC := activeClient(t, in, carol)
	daveC := activeClient(t, in, dave)

	if r := invokeBreakGlass(carolC, breakGlassReason, ""); r.StatusCode != http.StatusForbidden || r.json(t)["code"] != "break_glass_not_allowed" {
		t.Fatalf("an unnamed user without a code: %d %s, want 403 break_glass_not_allowed", r.StatusCode, r.body)
	}
	if r := invokeBreakGlass(carolC, breakGlassReason, "not-a-sealed-code"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("an unknown code: %d %s, want 403", r.StatusCode, r.body)
	}
	code := sealCode(t, in)
	if sealed := breakGlassAudit(t, aliceC, "break_glass.code_sealed", 1, time.Second); len(sealed) != 1 || sealed[0]["actor_id"] != "cli" {
		t.Fatalf("break_glass.code_sealed = %v, want one by cli", sealed)
	}
	r := invokeBreakGlass(carolC, breakGlassReason, code)
	if r.StatusCode != http.StatusOK || r.json(t)["code_used"] != true {
		t.Fatalf("an unnamed user with a sealed code: %d %s, want 200 with code_used", r.StatusCode, r.body)
	}
	if got := roleOf(t, carolC); got != "admin" {
		t.Fatalf("carol's role with the code = %s, want admin", got)
	}
	if r := invokeBreakGlass(daveC, breakGlassReason, code); r.StatusCode != http.StatusForbidden {
		t.Fatalf("the same code again: %d %s, want 403", r.StatusCode, r.body)
	}
	if got := roleOf(t, daveC); got != "user" {
		t.Fatalf("dave's role after a refused code = %s, want user", got)
	}
}

// TestBreakGlassExpiryFallsBack: once the grant's expiry has passed (set
// in the past in the store), the worker ends it (audit break_glass.expired
// by system) and the role falls back to the user's own.
func TestBreakGlassExpiryFallsBack(t *testing.T) {
	in := startInstance(t, instanceConfig{extraGlobal: "\t\t" + breakGlassBlock})
	aliceC := in.newClient()
	aliceC.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	r := invokeBreakGlass(bobC, breakGlassReason, "")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("invoke: %d %s", r.StatusCode, r.body)
	}
	id := r.json(t)["id"].(string)
	if got := roleOf(t, bobC); got != "admin" {
		t.Fatalf("role under emergency access = %s, want admin", got)
	}

	db, err := sql.Open("sqlite", filepath.Join(in.dir, "data", "gatehouse.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute).UTC().Format("2006-01-02T15:04:05.000000Z")
	if _, err := db.Exec(`UPDATE break_glass_grants SET expires_at = $1 WHERE id = $2`, past, id); err != nil {
		t.Fatal(err)
	}
	db.Close()

	expired := breakGlassAudit(t, aliceC, "break_glass.expired", 1, 10*time.Second)
	if len(expired) != 1 || expired[0]["actor_id"] != "system" || expired[0]["detail"].(map[string]any)["grant_id"] != id {
		t.Fatalf("break_glass.expired = %v, want one by system for the grant", expired)
	}
	if got := roleOf(t, bobC); got != "user" {
		t.Fatalf("role after the grant ended = %s, want user again", got)
	}
	if r := bobC.get("/api/users"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("bob lists users after the grant ended: %d, want 403", r.StatusCode)
	}
	page := aliceC.get("/gatehouse/account", "Accept", "text/html")
	if strings.Contains(page.text(), "Emergency access active") {
		t.Fatalf("the banner outlives the grant:\n%s", page.body)
	}
}
