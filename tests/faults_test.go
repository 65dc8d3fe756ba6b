package tests

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Private servers for fault tests: they run on free ports in the test's temp
// directory, so stopping, freezing (SIGSTOP) and restarting them never
// touches the machine's own PostgreSQL and Redis. Without the binaries a test
// skips, except under CI.

func requireBinary(t *testing.T, name string, candidates ...string) string {
	t.Helper()
	for _, c := range append([]string{name}, candidates...) {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
		if matches, _ := filepath.Glob(c); len(matches) > 0 {
			return matches[len(matches)-1]
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required under CI", name)
	}
	t.Skipf("%s is not installed; skipping because CI is not set", name)
	return ""
}

// privateRedis is a redis-server of the test's own.
type privateRedis struct {
	t    *testing.T
	bin  string
	port int
	cmd  *exec.Cmd
	URL  string
}

func newPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	r := &privateRedis{t: t, bin: requireBinary(t, "redis-server"), port: freePort(t)}
	r.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", r.port)
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *privateRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	waitListening(r.t, fmt.Sprintf("127.0.0.1:%d", r.port))
}

func (r *privateRedis) stop() {
	if r.cmd != nil {
		r.cmd.Process.Signal(syscall.SIGCONT)
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

func (r *privateRedis) freeze() { r.cmd.Process.Signal(syscall.SIGSTOP) }
func (r *privateRedis) thaw()   { r.cmd.Process.Signal(syscall.SIGCONT) }

func waitListening(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, 10*time.Second, addr+" to listen", func() string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err.Error()
		}
		c.Close()
		return ""
	})
}

// privatePostgres is a PostgreSQL cluster of the test's own, run as the
// postgres user (initdb refuses root).
type privatePostgres struct {
	t   *testing.T
	cmd *exec.Cmd
	URL string
}

func newPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	initdb := requireBinary(t, "initdb", "/usr/lib/postgresql/*/bin/initdb")
	postgres := filepath.Join(filepath.Dir(initdb), "postgres")
	dir, err := os.MkdirTemp("", "gatehouse-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cred := &syscall.Credential{}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user for initdb: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	init := exec.Command(initdb, "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
	init.SysProcAttr = &syscall.SysProcAttr{Credential: credOrNil(cred)}
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	p := &privatePostgres{t: t, URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres", port)}
	p.cmd = exec.Command(postgres, "-D", data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: credOrNil(cred)}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.thaw()
		p.signalAll(syscall.SIGKILL)
		p.cmd.Wait()
	})
	waitFor(t, 20*time.Second, "private PostgreSQL to accept connections", func() string {
		c, err := pgx.Connect(context.Background(), p.URL)
		if err != nil {
			return err.Error()
		}
		c.Close(context.Background())
		return ""
	})
	return p
}

func credOrNil(c *syscall.Credential) *syscall.Credential {
	if c.Uid == 0 && c.Gid == 0 {
		return nil
	}
	return c
}

// freeze stops the postmaster and every backend, as a hung database host
// would. Backends start sessions of their own, so they are found as the
// postmaster's children.
func (p *privatePostgres) freeze() { p.signalAll(syscall.SIGSTOP) }

func (p *privatePostgres) thaw() { p.signalAll(syscall.SIGCONT) }

func (p *privatePostgres) signalAll(sig syscall.Signal) {
	pids := []int{p.cmd.Process.Pid}
	out, _ := exec.Command("pgrep", "-P", strconv.Itoa(p.cmd.Process.Pid)).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		syscall.Kill(pid, sig)
	}
}

// TestFrozenPostgresAnswers503Quickly: every store call is bounded, so while
// the database hangs requests and /api/health answer 503 within 3 s, and
// everything works again when it thaws (item 8 of issue 8).
func TestFrozenPostgresAnswers503Quickly(t *testing.T) {
	pg := newPrivatePostgres(t)
	in := startInstance(t, instanceConfig{
		storeLine:   "store postgres " + pg.URL,
		extraGlobal: "\t\tsecret this-is-a-shared-test-secret-of-40-chars",
	})
	admin := in.newClient()
	admin.signIn(alice, "")
	if r := admin.get("/api/users"); r.StatusCode != http.StatusOK {
		t.Fatalf("before: %d %s", r.StatusCode, r.body)
	}
	pg.freeze()
	time.Sleep(1100 * time.Millisecond) // past the session cache: every request needs the store
	for _, tc := range []struct {
		name string
		c    *client
		path string
	}{
		{"health", in.newClient(), "/api/health"},
		{"an API call", admin, "/api/users"},
		{"a backend request with a session", admin, "/v1/models"},
	} {
		start := time.Now()
		r := tc.c.get(tc.path)
		took := time.Since(start)
		if r.StatusCode != http.StatusServiceUnavailable || took > 3*time.Second {
			t.Errorf("%s while PostgreSQL is frozen: %d after %s, want 503 within 3s: %s", tc.name, r.StatusCode, took.Round(time.Millisecond), r.body)
		}
		t.Logf("%s while PostgreSQL is frozen: %d after %s", tc.name, r.StatusCode, took.Round(time.Millisecond))
	}
	pg.thaw()
	waitFor(t, 10*time.Second, "recovery after the thaw", func() string {
		for _, p := range []string{"/api/health", "/api/users"} {
			if r := admin.get(p); r.StatusCode != http.StatusOK {
				return fmt.Sprint(p, ": ", r.StatusCode)
			}
		}
		return ""
	})
}

// TestChangesCrossWithinASecondWhateverRedisDoes: with three instances, a
// revocation, a suspension, an approval and a key rotation made on one are
// enforced on the others within a second — with Redis up, frozen, down and
// restarting (item 7 of issue 8).
func TestChangesCrossWithinASecondWhateverRedisDoes(t *testing.T) {
	redis := newPrivateRedis(t)
	ins := threeInstances(t, "\t\tredis "+redis.URL+"\n"+quickPrepublish)
	a, others := ins[0], ins[1:]
	adminA := a.newClient()
	adminA.signIn(alice, "")
	people := []string{bob, carol, dave, erin}
	// acrossWithin checks on the other instances until want holds, or fails.
	acrossWithin := func(t *testing.T, what string, check func(in *instance) string) {
		t.Helper()
		took := waitFor(t, time.Second, what, func() string {
			for _, in := range others {
				if msg := check(in); msg != "" {
					return in.URL + ": " + msg
				}
			}
			return ""
		})
		t.Logf("%s: %s", what, took.Round(time.Millisecond))
	}
	phase := func(t *testing.T, person string) {
		c := clientWithRole(t, a, person, "user")
		id := c.userID()
		tok := createToken(t, c, map[string]any{"name": "laptop", "kind": "personal"})
		tok2 := createToken(t, c, map[string]any{"name": "desktop", "kind": "personal"})["token"].(string)
		waitFor(t, 3*time.Second, "tokens valid everywhere", func() string {
			for _, in := range ins {
				if r := bearer(t, in, "GET", "/v1/models", tok2, nil); r.StatusCode != http.StatusOK {
					return fmt.Sprint(r.StatusCode)
				}
			}
			return ""
		})
		c.do("DELETE", "/api/tokens/"+tok["id"].(string), nil)
		acrossWithin(t, "revocation", func(in *instance) string {
			if r := bearer(t, in, "GET", "/v1/models", tok["token"].(string), nil); r.StatusCode != http.StatusUnauthorized {
				return fmt.Sprint(r.StatusCode)
			}
			return ""
		})
		adminA.do("PUT", "/api/users/"+id+"/status", map[string]any{"status": "suspended"})
		acrossWithin(t, "suspension", func(in *instance) string {
			if r := bearer(t, in, "GET", "/v1/models", tok2, nil); r.StatusCode/100 != 4 {
				return fmt.Sprint(r.StatusCode)
			}
			return ""
		})
		rotateSigningKeys(t, adminA)
		admin2 := a.newClient()
		admin2.signIn(alice, "")
		fresh := createToken(t, admin2, map[string]any{"name": "after rotation", "kind": "personal"})["token"].(string)
		acrossWithin(t, "a token signed with the rotated key", func(in *instance) string {
			if r := bearer(t, in, "GET", "/v1/models", fresh, nil); r.StatusCode != http.StatusOK {
				return fmt.Sprint(r.StatusCode)
			}
			return ""
		})
	}
	t.Run("redis up", func(t *testing.T) { phase(t, people[0]) })
	t.Run("redis frozen", func(t *testing.T) {
		redis.freeze()
		defer redis.thaw()
		phase(t, people[1])
	})
	t.Run("redis down", func(t *testing.T) {
		redis.stop()
		phase(t, people[2])
	})
	t.Run("redis restarted", func(t *testing.T) {
		redis.start()
		phase(t, people[3])
	})
}
