package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const postgresURL = "postgres://postgres@127.0.0.1:5432/test"

// postgresSchema creates a fresh schema for one test and returns a store
// URL that uses it. Without a server the test skips, except under CI.
func postgresSchema(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, postgresURL)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL is required under CI: %v", err)
		}
		t.Skipf("PostgreSQL at %s is not reachable (%v); skipping because CI is not set", postgresURL, err)
	}
	defer conn.Close(ctx)
	schema := fmt.Sprintf("gh_e2e_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), postgresURL)
		if err == nil {
			c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	return postgresURL + "?search_path=" + schema
}

// waitFor polls check until it returns "" or the deadline passes; it returns how long it took.
func waitFor(t *testing.T, within time.Duration, what string, check func() string) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < within {
		if last = check(); last == "" {
			return time.Since(start)
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %s", what, within, last)
	return 0
}

// TestInstancesShareStateOverPostgres runs two Gatehouse processes on one
// PostgreSQL store: no sticky sessions, and a change made on one is enforced
// on the other within a second.
func TestInstancesShareStateOverPostgres(t *testing.T) {
	storeURL := postgresSchema(t)
	cfg := instanceConfig{
		storeLine:   "store postgres " + storeURL,
		extraGlobal: "\t\tsecret this-is-a-shared-test-secret-of-40-chars\n" + quickPrepublish,
	}
	a := startInstance(t, cfg)
	// Behind a load balancer every instance has the same public URL.
	cfg.publicURL = a.URL
	b := startInstance(t, cfg)

	adminA := a.newClient()
	adminA.signIn(alice, "")
	bobA := activeClient(t, a, bob)
	bobID := bobA.userID()

	// A session made on A works on B.
	bobB := b.newClient()
	bobB.setCookie(sessionCookie, bobA.cookie(sessionCookie))
	if r := bobB.get("/api/auth/me"); r.StatusCode != http.StatusOK || !strings.Contains(r.text(), `"email":"`+bob+`"`) {
		t.Fatalf("session from A on B: %d %s", r.StatusCode, r.body)
	}
	tok := createToken(t, bobA, map[string]any{"name": "shared", "kind": "personal"})
	raw := tok["token"].(string)
	if r := bearer(t, b, "GET", "/anything", raw, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("token from A on B: %d %s", r.StatusCode, r.body)
	}

	t.Run("revocation on A is enforced on B within 1 s", func(t *testing.T) {
		if r := bobA.do("DELETE", "/api/tokens/"+tok["id"].(string), nil); r.StatusCode != http.StatusNoContent {
			t.Fatalf("revoke: %d", r.StatusCode)
		}
		took := waitFor(t, time.Second, "revocation on B", func() string {
			if r := bearer(t, b, "GET", "/anything", raw, nil); r.StatusCode != http.StatusUnauthorized {
				return fmt.Sprint("status ", r.StatusCode)
			}
			return ""
		})
		t.Logf("revocation reached B after %s", took)
	})
	t.Run("suspension on A is enforced on B within 1 s", func(t *testing.T) {
		raw2 := createToken(t, bobA, map[string]any{"name": "second", "kind": "personal"})["token"].(string)
		if r := bearer(t, b, "GET", "/anything", raw2, nil); r.StatusCode != http.StatusOK {
			t.Fatalf("before: %d", r.StatusCode)
		}
		adminA.do("PUT", "/api/users/"+bobID+"/status", map[string]any{"status": "suspended"})
		// Refused as suspended (403) or, once the revocation that comes with
		// the suspension arrives, as revoked (401).
		waitFor(t, time.Second+200*time.Millisecond, "suspension on B", func() string {
			if r := bearer(t, b, "GET", "/anything", raw2, nil); r.StatusCode != http.StatusForbidden && r.StatusCode != http.StatusUnauthorized {
				return fmt.Sprint("status ", r.StatusCode)
			}
			return ""
		})
	})
	t.Run("a role change on A is enforced on B within 1 s", func(t *testing.T) {
		frankA := clientWithRole(t, a, frank, "manager")
		mtok := createToken(t, frankA, map[string]any{"name": "ops", "kind": "personal"})["token"].(string)
		if r := bearer(t, b, "GET", "/api/users", mtok, nil); r.StatusCode != http.StatusOK {
			t.Fatalf("manager token on B: %d %s", r.StatusCode, r.body)
		}
		adminA.do("PUT", "/api/users/"+frankA.userID()+"/role", map[string]any{"role": "user"})
		waitFor(t, time.Second+200*time.Millisecond, "demotion on B", func() string {
			if r := bearer(t, b, "GET", "/api/users", mtok, nil); r.StatusCode != http.StatusForbidden {
				return fmt.Sprint("status ", r.StatusCode)
			}
			return ""
		})
	})
	t.Run("a key rotated on A signs tokens B accepts within 1 s", func(t *testing.T) {
		rotateSigningKeys(t, adminA)
		fresh := createToken(t, adminA, map[string]any{"name": "new key", "kind": "personal"})["token"].(string)
		waitFor(t, time.Second+200*time.Millisecond, "new key on B", func() string {
			if r := bearer(t, b, "GET", "/anything", fresh, nil); r.StatusCode != http.StatusOK {
				return fmt.Sprint("status ", r.StatusCode, " ", strings.TrimSpace(r.text()))
			}
			return ""
		})
	})
	t.Run("settings changed on A apply on B", func(t *testing.T) {
		settings := map[string]any{"roles": map[string]any{"analyst": map[string]any{"rank": 15, "inherits": []string{"user"}, "permissions": []string{"usage:view"}}}}
		if r := putSettings(adminA, settings); r.StatusCode != http.StatusOK {
			t.Fatalf("settings: %d", r.StatusCode)
		}
		adminB := b.newClient()
		adminB.setCookie(sessionCookie, adminA.cookie(sessionCookie))
		waitFor(t, 3*time.Second, "settings on B", func() string {
			if r := adminB.do("PUT", "/api/users/"+bobID+"/role", map[string]any{"role": "analyst"}); r.StatusCode != http.StatusOK {
				return fmt.Sprint("status ", r.StatusCode, " ", r.text())
			}
			return ""
		})
	})
}

// TestRedisAnnouncesChangesAndItsLossIsSurvived: with redis configured a
// change reaches the other instance at once (its store backstop is then 5 s),
// and when Redis goes away nothing breaks: the instances notice the missing
// heartbeat and read the store every half second.
func TestRedisAnnouncesChangesAndItsLossIsSurvived(t *testing.T) {
	storeURL := postgresSchema(t)
	redis := newPrivateRedis(t)
	cfg := instanceConfig{
		storeLine:   "store postgres " + storeURL,
		extraGlobal: "\t\tsecret this-is-a-shared-test-secret-of-40-chars\n\t\tredis " + redis.URL,
	}
	a := startInstance(t, cfg)
	cfg.publicURL = a.URL
	b := startInstance(t, cfg)
	adminA := a.newClient()
	adminA.signIn(alice, "")
	bobA := activeClient(t, a, bob)
	bobID := bobA.userID()
	time.Sleep(300 * time.Millisecond) // both instances subscribed

	fast := 400 * time.Millisecond // well under the 5 s backstop: only Redis can be this quick
	tok := createToken(t, bobA, map[string]any{"name": "one", "kind": "personal"})
	if r := bearer(t, b, "GET", "/anything", tok["token"].(string), nil); r.StatusCode != http.StatusOK {
		t.Fatalf("token on B: %d %s", r.StatusCode, r.body)
	}
	bobA.do("DELETE", "/api/tokens/"+tok["id"].(string), nil)
	took := waitFor(t, fast, "revocation announced to B", func() string {
		if r := bearer(t, b, "GET", "/anything", tok["token"].(string), nil); r.StatusCode != http.StatusUnauthorized {
			return fmt.Sprint("status ", r.StatusCode)
		}
		return ""
	})
	t.Logf("revocation reached B over redis after %s", took)

	tok2 := createToken(t, bobA, map[string]any{"name": "two", "kind": "personal"})["token"].(string)
	if r := bearer(t, b, "GET", "/anything", tok2, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("token two on B: %d", r.StatusCode)
	}
	adminA.do("PUT", "/api/users/"+bobID+"/status", map[string]any{"status": "suspended"})
	waitFor(t, fast, "suspension announced to B", func() string {
		// 403 once the user change arrives, 401 once the revocation that comes with it does.
		if r := bearer(t, b, "GET", "/anything", tok2, nil); r.StatusCode != http.StatusForbidden && r.StatusCode != http.StatusUnauthorized {
			return fmt.Sprint("status ", r.StatusCode)
		}
		return ""
	})
	adminA.do("PUT", "/api/users/"+bobID+"/status", map[string]any{"status": "active"})

	// Redis goes away. Valid tokens keep working, and a revocation still
	// reaches B through the store backstop.
	redis.stop()
	bob2 := in2(t, a, bob)
	tok3 := createToken(t, bob2, map[string]any{"name": "three", "kind": "personal"})
	waitFor(t, time.Second, "token three on B after redis left", func() string {
		if r := bearer(t, b, "GET", "/anything", tok3["token"].(string), nil); r.StatusCode != http.StatusOK {
			return fmt.Sprint("status ", r.StatusCode, " ", r.text())
		}
		return ""
	})
	if r := bob2.do("DELETE", "/api/tokens/"+tok3["id"].(string), nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke without redis: %d %s", r.StatusCode, r.body)
	}
	waitFor(t, time.Second, "revocation through the store while redis is away", func() string {
		if r := bearer(t, b, "GET", "/anything", tok3["token"].(string), nil); r.StatusCode != http.StatusUnauthorized {
			return fmt.Sprint("status ", r.StatusCode)
		}
		return ""
	})
	if r := b.newClient().get("/api/health"); r.StatusCode != http.StatusOK {
		t.Fatalf("B's health without redis: %d", r.StatusCode)
	}
}

// in2 signs email in again on an instance (after a suspension ended the session).
func in2(t *testing.T, in *instance, email string) *client {
	t.Helper()
	c := in.newClient()
	c.signIn(email, "")
	return c
}
