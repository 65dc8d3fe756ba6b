package tests

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// TestReloadKeepsTheStoreAndRedisConnections: `caddy reload` with an
// unchanged store and Redis keeps their connections: the new configuration
// shares them with the old one instead of opening its own (issue 9).
func TestReloadKeepsTheStoreAndRedisConnections(t *testing.T) {
	pg := newPrivatePostgres(t)
	rds := newPrivateRedis(t)
	adminPort := freePort(t)
	in := startInstance(t, instanceConfig{
		adminPort:   adminPort,
		storeLine:   "store postgres " + pg.URL,
		extraGlobal: "\t\tsecret this-is-a-shared-test-secret-of-40-chars\n\t\tredis " + rds.URL,
	})
	bobC := activeClient(t, in, bob)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	backends := func() []int {
		rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY pid`)
		if err != nil {
			t.Fatal(err)
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			t.Fatal(err)
		}
		return pids
	}
	opts, _ := redis.ParseURL(rds.URL)
	rc := redis.NewClient(opts)
	defer rc.Close()
	redisClients := func() []string {
		list, err := rc.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
			if !strings.Contains(line, "cmd=client|list") {
				ids = append(ids, strings.Fields(line)[0])
			}
		}
		return ids
	}
	before, beforeRedis := backends(), redisClients()
	if len(before) == 0 || len(beforeRedis) == 0 {
		t.Fatalf("no connections to look at: PostgreSQL %v, Redis %v", before, beforeRedis)
	}
	// The background workers run on each configuration's Caddy context and
	// end with it: three reloads do not leave three sets of them running.
	goroutines := func() int {
		r, err := http.Get("http://localhost:" + itoa(adminPort) + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var n int
		if _, err := fmt.Fscanf(r.Body, "goroutine profile: total %d", &n); err != nil {
			t.Fatalf("reading the goroutine profile: %v", err)
		}
		return n
	}
	var afterFirst int
	for i := range 3 {
		reload := exec.Command(caddyBin, "reload", "--config", filepath.Join(in.dir, "Caddyfile"), "--adapter", "caddyfile",
			"--address", "localhost:"+itoa(adminPort), "--force")
		reload.Dir = in.dir
		if out, err := reload.CombinedOutput(); err != nil {
			t.Fatalf("caddy reload %d: %v\n%s", i+1, err, out)
		}
		if r := bobC.get("/anything"); r.StatusCode != http.StatusOK {
			t.Fatalf("after reload %d: %d %s", i+1, r.StatusCode, r.body)
		}
		if i == 0 {
			afterFirst = goroutines()
		}
	}
	if n := goroutines(); n > afterFirst+10 {
		t.Errorf("%d goroutines after three reloads, %d after the first: the workers of unloaded configurations still run", n, afterFirst)
	}
	after, afterRedis := backends(), redisClients()
	t.Logf("PostgreSQL client backends before %v, after three reloads %v; Redis clients before %v, after %v", before, after, beforeRedis, afterRedis)
	for _, pid := range before {
		if !slices.Contains(after, pid) {
			t.Errorf("PostgreSQL connection %d was closed by a reload (before %v, after %v)", pid, before, after)
		}
	}
	if len(after) > len(before)+4 {
		t.Errorf("%d PostgreSQL connections after three reloads, %d before", len(after), len(before))
	}
	kept := 0
	for _, id := range beforeRedis {
		if slices.Contains(afterRedis, id) {
			kept++
		}
	}
	if kept == 0 {
		t.Errorf("every Redis connection was replaced by the reloads: before %v, after %v", beforeRedis, afterRedis)
	}
}

// TestReloadKeepsTheUsageOfARequestInFlight: a request the old
// configuration let through and that ends after `caddy reload` stopped that
// configuration is still metered: its usage reaches the store through the
// next configuration's meter.
func TestReloadKeepsTheUsageOfARequestInFlight(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"chatcmpl-1","object":"chat.completion","model":"llama3","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":31,"total_tokens":42}}`)
	}))
	defer be.Close()
	adminPort := freePort(t)
	// With a grace period, Caddy stops the old configuration without
	// waiting for the request to end.
	in := startInstance(t, instanceConfig{adminPort: adminPort, upstream: strings.TrimPrefix(be.URL, "http://"),
		global: "\tgrace_period 200ms\n"})
	admin := activeClient(t, in, alice)
	bobC := activeClient(t, in, bob)

	answered := make(chan *response, 1)
	go func() { answered <- bobC.do("POST", "/v1/chat/completions", chatBody) }()
	<-arrived
	reload := exec.Command(caddyBin, "reload", "--config", filepath.Join(in.dir, "Caddyfile"), "--adapter", "caddyfile",
		"--address", "localhost:"+itoa(adminPort), "--force")
	reload.Dir = in.dir
	if out, err := reload.CombinedOutput(); err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
	// The old configuration is stopped and cleaned up; its request goes on.
	close(release)
	if r := <-answered; r.StatusCode != http.StatusOK {
		t.Fatalf("the request in flight: %d %s", r.StatusCode, r.body)
	}
	waitFor(t, 5*time.Second, "the request's usage in /api/usage", func() string {
		_, rows := usageRows(t, admin, "group_by=user&user_id="+bobC.userID())
		for _, row := range rows {
			if row["requests"] == 1.0 && row["total_tokens"] == 42.0 {
				return ""
			}
		}
		return fmt.Sprint(rows)
	})
}
