package tests

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// The promises of spec §7a for several instances over the machine's own
// PostgreSQL (and a private Redis where a test needs one).

// threeInstances starts three Gatehouse processes on one PostgreSQL schema,
// behind one public URL, with extra lines in their gatehouse block.
func threeInstances(t *testing.T, extra string) [3]*instance {
	t.Helper()
	cfg := instanceConfig{
		storeLine:   "store postgres " + postgresSchema(t),
		extraGlobal: "\t\tsecret this-is-a-shared-test-secret-of-40-chars\n" + extra,
	}
	var out [3]*instance
	out[0] = startInstance(t, cfg)
	cfg.publicURL = out[0].URL
	out[1] = startInstance(t, cfg)
	out[2] = startInstance(t, cfg)
	return out
}

// TestOutboxDeliversEachMessageOnce: three instances share one outbox, and
// every decision is delivered once, not once per instance (item 10 of issue 8).
func TestOutboxDeliversEachMessageOnce(t *testing.T) {
	hook := newWebhookReceiver(t)
	// A slow receiver keeps deliveries in flight while the other instances
	// look for due messages.
	hook.delay = 700 * time.Millisecond
	ins := threeInstances(t, fmt.Sprintf("\t\tnotify {\n\t\t\twebhook %s/hook hook-secret-123\n\t\t}", hook.URL))
	var admins [3]*client
	for i, in := range ins {
		admins[i] = in.newClient()
		admins[i].signIn(alice, "")
	}
	people := []string{dave, erin, grace}
	const rounds = 10
	for round := range rounds {
		for i, email := range people {
			in := ins[(round+i)%3]
			c := in.newClient()
			c.signIn(email, "")
			req := c.do("POST", "/api/auth/request-access", map[string]any{"purpose": fmt.Sprintf("round %d", round)})
			if req.StatusCode != http.StatusCreated {
				t.Fatalf("request %d for %s: %d %s", round, email, req.StatusCode, req.body)
			}
			reviewer := admins[(round+i+1)%3]
			if r := reviewer.do("PUT", "/api/access/"+req.json(t)["id"].(string)+"/deny", map[string]any{"comment": "not yet"}); r.StatusCode != http.StatusOK {
				t.Fatalf("deny %d for %s: %d %s", round, email, r.StatusCode, r.body)
			}
		}
	}
	want := 2 * rounds * len(people) // each request's access_request.created and its decision
	hook.wait(t, want, 30*time.Second)
	time.Sleep(6 * time.Second) // longer than a worker's poll: a duplicate would have arrived
	got := hook.wait(t, want, time.Second)
	ids := map[string]int{}
	for _, d := range got {
		ids[d.header.Get("X-Gatehouse-Delivery")]++
	}
	if len(got) != want || len(ids) != want {
		t.Fatalf("%d requests and decisions: %d deliveries of %d distinct messages, want each once", want, len(got), len(ids))
	}
}
