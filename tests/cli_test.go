package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// The command line (spec §11): `caddy gatehouse …` on the instance's
// Caddyfile works on its store directly, with the server running and with
// it stopped, and audits every change with the actor cli.

// cliRun is what one command printed and how it ended.
type cliRun struct {
	stdout, stderr string
	code           int
}

// gatehouseCLI runs `caddy gatehouse args…` on the instance's configuration.
func gatehouseCLI(t *testing.T, in *instance, args ...string) cliRun {
	t.Helper()
	args = append(append([]string{"gatehouse"}, args...), "--config", filepath.Join(in.dir, "Caddyfile"), "--adapter", "caddyfile")
	cmd := exec.Command(caddyBin, args...)
	cmd.Dir = in.dir
	cmd.Env = append(cmd.Environ(), "XDG_DATA_HOME="+in.dir, "XDG_CONFIG_HOME="+in.dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	run := cliRun{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		run.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("caddy %s: %v", strings.Join(args, " "), err)
	}
	return run
}

// mustCLI runs a command that must succeed and returns its stdout.
func mustCLI(t *testing.T, in *instance, args ...string) string {
	t.Helper()
	run := gatehouseCLI(t, in, args...)
	if run.code != 0 {
		t.Fatalf("caddy gatehouse %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), run.code, run.stdout, run.stderr)
	}
	return run.stdout
}

// cliFails runs a command that must fail with exit code 1 and a message on
// stderr that contains want.
func cliFails(t *testing.T, in *instance, want string, args ...string) {
	t.Helper()
	run := gatehouseCLI(t, in, args...)
	if run.code != 1 || !strings.Contains(run.stderr, want) || run.stdout != "" {
		t.Errorf("caddy gatehouse %s: exit %d, stdout %q, stderr %q; want exit 1 and %q on stderr",
			strings.Join(args, " "), run.code, run.stdout, run.stderr, want)
	}
}

// cliJSON runs a command with --json and decodes what it prints.
func cliJSON[T any](t *testing.T, in *instance, args ...string) T {
	t.Helper()
	var v T
	out := mustCLI(t, in, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("caddy gatehouse %s --json printed %q: %v", strings.Join(args, " "), out, err)
	}
	return v
}

// pendingRequest signs email in and files an access request; it returns
// the person's client and the request's ID.
func pendingRequest(t *testing.T, in *instance, email string) (*client, string) {
	t.Helper()
	c := in.newClient()
	c.signIn(email, "")
	r := c.do("POST", "/api/auth/request-access", map[string]any{"purpose": "command line tests"})
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("request access for %s: %d %s", email, r.StatusCode, r.body)
	}
	return c, r.json(t)["id"].(string)
}

// auditExport runs audit export and decodes its JSON lines.
func auditExport(t *testing.T, in *instance, args ...string) []store.AuditEvent {
	t.Helper()
	out := mustCLI(t, in, append([]string{"audit", "export"}, args...)...)
	var events []store.AuditEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e store.AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit export line %q is not JSON: %v", sc.Text(), err)
		}
		events = append(events, e)
	}
	return events
}

// byCLI is the first exported event of type typ by the actor cli on target.
func byCLI(events []store.AuditEvent, typ, target string) *store.AuditEvent {
	for i, e := range events {
		if e.Type == typ && e.ActorID == "cli" && (target == "" || e.TargetID == target) {
			return &events[i]
		}
	}
	return nil
}

// TestCLIReviewsAccessWhileTheServerRuns: with the server running, the
// command line lists users and requests, approves (the person reaches the
// backend within a second), denies and changes a role, refuses what the API
// refuses with exit code 1 and a clear message, and every change is in the
// exported audit log with the actor cli.
func TestCLIReviewsAccessWhileTheServerRuns(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	erinC, erinReq := pendingRequest(t, in, erin)
	frankC, frankReq := pendingRequest(t, in, frank)
	erinID, frankID := erinC.userID(), frankC.userID()

	table := mustCLI(t, in, "users", "--status", "pending")
	if !strings.HasPrefix(table, "ID ") || !strings.Contains(table, erin) || !strings.Contains(table, frank) || strings.Contains(table, alice) {
		t.Fatalf("users --status pending:\n%s\nwant a table of erin and frank, without alice", table)
	}
	users := cliJSON[[]store.User](t, in, "users")
	if len(users) != 3 || users[0].Email != alice || users[0].Role != "admin" || users[0].Status != store.StatusActive {
		t.Fatalf("users --json = %+v, want alice (active admin), erin and frank", users)
	}
	reqs := cliJSON[[]store.AccessRequest](t, in, "requests")
	if len(reqs) != 2 || reqs[0].ID != erinReq || reqs[1].ID != frankReq || reqs[0].Purpose != "command line tests" {
		t.Fatalf("requests --json = %+v, want erin's and frank's pending requests", reqs)
	}

	if r := erinC.get("/anything"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("erin while pending: %d, want 403", r.StatusCode)
	}
	if out := mustCLI(t, in, "approve", erinReq, "--role", "user", "--comment", "welcome"); !strings.Contains(out, "approved "+erinReq) {
		t.Fatalf("approve printed %q", out)
	}
	waitFor(t, 3*time.Second, "erin reaching the backend after the approval", func() string {
		if r := erinC.get("/anything"); r.StatusCode != http.StatusOK {
			return r.text()
		}
		return ""
	})

	t.Run("refusals exit 1 with a clear message", func(t *testing.T) {
		cliFails(t, in, "is not pending: it was already approved", "approve", erinReq)
		cliFails(t, in, "no access request with the ID no-such-request", "approve", "no-such-request")
		cliFails(t, in, `unknown role "wizard"`, "approve", frankReq, "--role", "wizard")
		cliFails(t, in, `unknown role "wizard"`, "role", erin, "wizard")
		cliFails(t, in, "no user with the email nobody@example.com", "role", "nobody@example.com", "user")
		cliFails(t, in, "--status must be", "users", "--status", "sleeping")
		cliFails(t, in, "would leave no active admin", "role", alice, "user")
	})

	if out := mustCLI(t, in, "deny", frankReq, "--comment", "not this team"); !strings.Contains(out, "denied "+frankReq) {
		t.Fatalf("deny printed %q", out)
	}
	if denied := cliJSON[[]store.User](t, in, "users", "--status", "denied"); len(denied) != 1 || denied[0].ID != frankID {
		t.Fatalf("users --status denied = %+v, want frank", denied)
	}
	if r := frankC.get("/anything"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("frank after the denial: %d, want 403", r.StatusCode)
	}

	if out := mustCLI(t, in, "role", erin, "manager"); !strings.Contains(out, "now has the role manager (was user)") {
		t.Fatalf("role printed %q", out)
	}
	waitFor(t, 3*time.Second, "erin's new role in /api/auth/me", func() string {
		if got := roleOf(t, erinC); got != "manager" {
			return got
		}
		return ""
	})

	events := auditExport(t, in, "--since", "1h")
	for i := 1; i < len(events); i++ {
		if events[i].ID <= events[i-1].ID {
			t.Fatalf("audit export is not oldest first: %d after %d", events[i].ID, events[i-1].ID)
		}
	}
	if e := byCLI(events, "access.approved", erinID); e == nil || e.Detail["role"] != "user" || e.Detail["comment"] != "welcome" {
		t.Errorf("access.approved of erin by cli = %+v", e)
	}
	if e := byCLI(events, "access.denied", frankID); e == nil {
		t.Errorf("no access.denied of frank by cli in %d events", len(events))
	}
	if e := byCLI(events, "user.role_changed", erinID); e == nil || e.Detail["to"] != "manager" {
		t.Errorf("user.role_changed of erin by cli = %+v", e)
	}
	if future := auditExport(t, in, "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); len(future) != 0 {
		t.Errorf("audit export --since an hour from now = %d events, want none", len(future))
	}
	cliFails(t, in, "--since \"yesterday\" must be", "audit", "export", "--since", "yesterday")

	t.Run("a backup taken while the server runs opens with the sqlite store", func(t *testing.T) {
		copyPath := filepath.Join(t.TempDir(), "gatehouse-backup.db")
		out := mustCLI(t, in, "backup", "--out", copyPath)
		if !strings.Contains(out, copyPath) || !strings.Contains(out, copyPath+".key") {
			t.Fatalf("backup printed %q, want the store copy and the secret copy", out)
		}
		assertBackup(t, in, copyPath, erinID, "manager")
		cliFails(t, in, "exists", "backup", "--out", copyPath)
	})
}

// assertBackup opens the backup at path with the sqlite store and checks
// that it holds user id with role, and that the secret was copied beside it.
func assertBackup(t *testing.T, in *instance, path, id, role string) {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatalf("opening the backup: %v", err)
	}
	defer st.Close()
	u, err := st.GetUser(context.Background(), id)
	if err != nil || u.Role != role || u.Status != store.StatusActive {
		t.Fatalf("user %s in the backup: %+v, %v; want an active %s", id, u, err, role)
	}
	if events, err := st.ListAudit(context.Background(), store.AuditFilter{Type: "access.approved"}); err != nil || len(events) == 0 {
		t.Fatalf("the backup's audit log: %d approvals, %v", len(events), err)
	}
	secret, err := os.ReadFile(filepath.Join(in.dir, "data", "gatehouse.key"))
	if err != nil {
		t.Fatal(err)
	}
	copied, err := os.ReadFile(path + ".key")
	if err != nil || !bytes.Equal(copied, secret) {
		t.Fatalf("the secret's copy: %v; want the bytes of data/gatehouse.key", err)
	}
	if info, err := os.Stat(path + ".key"); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the secret's copy: %v, %v; want mode 0600", info, err)
	}
}

// TestCLIWorksWhileTheServerIsDown: with the server stopped, a pending
// request is approved, a role given and a system token made; once the
// server is back the person reaches the backend and the token works.
func TestCLIWorksWhileTheServerIsDown(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	daveC, daveReq := pendingRequest(t, in, dave)
	daveID := daveC.userID()
	in.stop()

	if reqs := cliJSON[[]store.AccessRequest](t, in, "requests", "--status", "all"); len(reqs) != 1 || reqs[0].ID != daveReq {
		t.Fatalf("requests --status all = %+v, want dave's", reqs)
	}
	mustCLI(t, in, "approve", daveReq)
	mustCLI(t, in, "role", daveID, "manager")
	tok := cliJSON[map[string]any](t, in, "token", "create", "--kind", "system", "--name", "nightly batch", "--ttl", "24h")
	raw, _ := tok["token"].(string)
	if strings.Count(raw, ".") != 2 || tok["kind"] != "system" || tok["created_by"] != "cli" {
		t.Fatalf("token create --json = %v, want a system token created by cli", tok)
	}
	cliFails(t, in, "approved", "approve", daveReq)
	copyPath := filepath.Join(t.TempDir(), "offline.db")
	mustCLI(t, in, "backup", "--out", copyPath)
	assertBackup(t, in, copyPath, daveID, "manager")

	in.start()
	if r := daveC.get("/anything"); r.StatusCode != http.StatusOK {
		t.Fatalf("dave after an approval made while the server was down: %d %s", r.StatusCode, r.body)
	}
	if got := roleOf(t, daveC); got != "manager" {
		t.Fatalf("dave's role = %s, want manager", got)
	}
	if r := bearer(t, in, "GET", "/anything", raw, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("the system token made while the server was down: %d %s", r.StatusCode, r.body)
	}
}

// TestCLISystemTokenReachesTheBackend: token create prints the token once
// (and nothing else on stdout); it acts within its scope against the
// running server, and is not revoked as a token whose creator lost the
// right (the operator is no user).
func TestCLISystemTokenReachesTheBackend(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	out := mustCLI(t, in, "token", "create", "--kind", "system", "--name", "ci", "--scope", "system:access,models:use", "--ttl", "720h")
	raw := strings.TrimSpace(out)
	if strings.Count(raw, ".") != 2 || strings.ContainsAny(raw, " \n") {
		t.Fatalf("token create printed %q, want the token alone", out)
	}
	if r := bearer(t, in, "GET", "/anything", raw, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("the system token against the backend: %d %s", r.StatusCode, r.body)
	}
	if claims := decodeSegment(t, raw, 1); claims["token_kind"] != "system" || claims["scope"] != "models:use system:access" {
		t.Fatalf("claims = %v, want a system token with the scope asked", claims)
	}

	narrow := strings.TrimSpace(mustCLI(t, in, "token", "create", "--kind", "system", "--name", "models only", "--scope", "models:use"))
	if r := bearer(t, in, "GET", "/anything", narrow, nil); r.StatusCode != http.StatusForbidden {
		t.Fatalf("a token without system:access against the backend: %d, want 403", r.StatusCode)
	}

	cliFails(t, in, "--kind must be system", "token", "create", "--kind", "personal", "--name", "mine")
	cliFails(t, in, "--name is required", "token", "create", "--kind", "system")
	cliFails(t, in, `permission "config:fly" is not among`, "token", "create", "--kind", "system", "--name", "x", "--scope", "config:fly")
	cliFails(t, in, "expires_in must be between", "token", "create", "--kind", "system", "--name", "x", "--ttl", "100000h")

	if e := byCLI(auditExport(t, in), "token.created", ""); e == nil || e.Detail["name"] != "ci" {
		t.Errorf("token.created by cli = %+v", e)
	}
	// The creators of system tokens are checked after every settings change
	// (and every minute): the operator is no user, and keeps its tokens.
	admin := in.newClient()
	admin.signIn(alice, "")
	if r := admin.do("PUT", "/api/settings/roles/ops", map[string]any{"rank": 15, "inherits": []string{"user"}}); r.StatusCode != http.StatusOK {
		t.Fatalf("add a role: %d %s", r.StatusCode, r.body)
	}
	if r := bearer(t, in, "GET", "/anything", raw, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("the system token after the creators were checked: %d %s", r.StatusCode, r.body)
	}
}

// TestCLIKeyRotation follows the API: a rotation before the next key has
// been published for key_prepublish is refused (exit 1, saying when and
// how to rotate at once); later it is staged and tokens keep working; an
// emergency rotation revokes every token the old keys signed, at once on
// the running server.
func TestCLIKeyRotation(t *testing.T) {
	in := startInstance(t, instanceConfig{extraGlobal: quickPrepublish})
	raw := strings.TrimSpace(mustCLI(t, in, "token", "create", "--kind", "system", "--name", "before rotations"))
	kid := decodeSegment(t, raw, 0)["kid"].(string)

	early := gatehouseCLI(t, in, "keys", "rotate")
	if early.code != 1 || !strings.Contains(early.stderr, "key_prepublish 3s") || !strings.Contains(early.stderr, "--emergency") {
		t.Fatalf("an early rotation: exit %d, stderr %q; want exit 1 saying key_prepublish and --emergency", early.code, early.stderr)
	}
	var rot map[string]any
	waitFor(t, 10*time.Second, "the next key to be ready", func() string {
		run := gatehouseCLI(t, in, "keys", "rotate", "--json")
		if run.code != 0 {
			return run.stderr
		}
		if err := json.Unmarshal([]byte(run.stdout), &rot); err != nil {
			t.Fatalf("keys rotate --json printed %q", run.stdout)
		}
		return ""
	})
	if rot["kid"] == kid || rot["emergency"] != false {
		t.Fatalf("rotation = %v, want a new signing key, staged", rot)
	}
	if r := bearer(t, in, "GET", "/anything", raw, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("a token signed before a staged rotation: %d %s", r.StatusCode, r.body)
	}

	after := strings.TrimSpace(mustCLI(t, in, "token", "create", "--kind", "system", "--name", "after a rotation"))
	out := mustCLI(t, in, "keys", "rotate", "--emergency")
	if !strings.Contains(out, "withdrawn") || !strings.Contains(out, "revoked       1 tokens") {
		t.Fatalf("keys rotate --emergency printed %q, want the withdrawn keys and 1 revoked token", out)
	}
	waitFor(t, 3*time.Second, "the running server to refuse the token after an emergency rotation", func() string {
		if r := bearer(t, in, "GET", "/anything", after, nil); r.StatusCode != http.StatusUnauthorized {
			return r.text()
		}
		return ""
	})
	events := auditExport(t, in)
	if e := byCLI(events, "keys.rotated", ""); e == nil {
		t.Errorf("no keys.rotated by cli")
	}
}
