package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAnomalyRefusalBurstIsAuditedAndNotified: with a refusal_burst
// threshold of 3 a minute in the settings, a user refused four times
// produces one anomaly.refusal_burst audit event, read through
// GET /api/audit?type=…, shown on the dashboard, and a webhook delivery.
func TestAnomalyRefusalBurstIsAuditedAndNotified(t *testing.T) {
	hook := newWebhookReceiver(t)
	in := startInstance(t, instanceConfig{extraGlobal: fmt.Sprintf(`
		notify {
			webhook %s/hook hook-secret-123
		}`, hook.URL)})
	admin := activeClient(t, in, alice)

	expectProblem(t, putSettings(admin, map[string]any{"roles": map[string]any{},
		"anomalies": map[string]any{"refusal_burst": map[string]any{"count": 3, "window": "soon"}}}), http.StatusBadRequest, "validation_failed")
	if resp := putSettings(admin, map[string]any{"roles": map[string]any{},
		"anomalies": map[string]any{"refusal_burst": map[string]any{"count": 3, "window": "1m"}}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /api/settings: %d %s", resp.StatusCode, resp.body)
	}
	settings := admin.get("/api/settings").json(t)
	if burst := settings["anomalies"].(map[string]any)["refusal_burst"].(map[string]any); burst["count"] != 3.0 || burst["window"] != "1m" {
		t.Fatalf("GET /api/settings has anomalies.refusal_burst %v, want count 3, window 1m", burst)
	}

	bobC := activeClient(t, in, bob) // its request and its approval are the first two webhook deliveries
	bobID := bobC.get("/api/auth/me").json(t)["user"].(map[string]any)["id"].(string)
	for range 3 {
		expectProblem(t, bobC.get("/api/users"), http.StatusForbidden, "forbidden")
	}
	if events := anomalyEvents(t, admin, "refusal_burst", 0, 300*time.Millisecond); len(events) != 0 {
		t.Fatalf("3 refusals with count 3 made a security event: %v", events)
	}
	for range 5 {
		expectProblem(t, bobC.get("/api/users"), http.StatusForbidden, "forbidden")
	}

	events := anomalyEvents(t, admin, "refusal_burst", 1, 5*time.Second)
	if len(events) != 1 {
		t.Fatalf("8 refusals in a minute made %d anomaly.refusal_burst events, want 1: %v", len(events), events)
	}
	ev := events[0]
	detail := ev["detail"].(map[string]any)
	if ev["actor_id"] != bobID || detail["subject"] != bobID || detail["count"] != 4.0 || detail["window"] != "1m0s" {
		t.Fatalf("event %v, want actor and subject %s, count 4, window 1m0s", ev, bobID)
	}

	var sent map[string]any
	for _, d := range hook.wait(t, 3, 10*time.Second) {
		if d.header.Get("X-Gatehouse-Event") == "anomaly.refusal_burst" {
			if err := json.Unmarshal(d.body, &sent); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sent == nil {
		t.Fatal("no webhook delivery of anomaly.refusal_burst")
	}
	anomaly := sent["anomaly"].(map[string]any)
	if sent["event"] != "anomaly.refusal_burst" || anomaly["kind"] != "refusal_burst" || anomaly["detail"].(map[string]any)["subject"] != bobID {
		t.Fatalf("webhook body %v, want event anomaly.refusal_burst about %s", sent, bobID)
	}

	page := admin.get("/gatehouse/admin")
	if page.StatusCode != http.StatusOK || !strings.Contains(page.text(), `id="security-event-`) || !strings.Contains(page.text(), bobID) {
		t.Fatalf("the dashboard's Security events list does not show the event:\n%s", page.body)
	}
}

// TestAnomalyLoginFailuresInARow: five failed sign-ins from one address
// (the default threshold) make one anomaly.login_failures event.
func TestAnomalyLoginFailuresInARow(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := activeClient(t, in, alice)
	stranger := in.newClient()
	for range 6 {
		if resp := stranger.get("/api/auth/callback?error=access_denied"); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("callback with an error: %d, want 400", resp.StatusCode)
		}
	}
	events := anomalyEvents(t, admin, "login_failures", 1, 5*time.Second)
	if len(events) != 1 {
		t.Fatalf("6 failed sign-ins made %d anomaly.login_failures events, want 1: %v", len(events), events)
	}
	if d := events[0]["detail"].(map[string]any); d["subject"] != "127.0.0.1" || d["count"] != 5.0 || events[0]["ip"] != "127.0.0.1" {
		t.Fatalf("event %v, want 5 failures from 127.0.0.1", events[0])
	}
}

// anomalyEvents reads GET /api/audit?type=anomaly.<kind> until it holds at
// least want events or timeout passes.
func anomalyEvents(t *testing.T, admin *client, kind string, want int, timeout time.Duration) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp := admin.get("/api/audit?type=anomaly." + kind)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/audit: %d %s", resp.StatusCode, resp.body)
		}
		var body struct {
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal(resp.body, &body); err != nil {
			t.Fatal(err)
		}
		if (want > 0 && len(body.Events) >= want) || time.Now().After(deadline) {
			return body.Events
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAnomalyUsageSpike: with usage_spike set to 5 × the baseline over 1m
// windows, a user whose tokens of the last minute are far above their mean
// minute of the day before is reported once, with the numbers; a user below
// min_tokens, one busy as usual, and one with no usage before are not.
func TestAnomalyUsageSpike(t *testing.T) {
	hook := newWebhookReceiver(t)
	in := startInstance(t, instanceConfig{extraGlobal: fmt.Sprintf(`
		notify {
			webhook %s/hook hook-secret-123
		}`, hook.URL)})
	admin := activeClient(t, in, alice)
	bobID := activeClient(t, in, bob).userID()
	graceID := activeClient(t, in, grace).userID()
	frankID := activeClient(t, in, frank).userID()
	carolID := activeClient(t, in, carol).userID()

	for _, bad := range []map[string]any{
		{"window": "30s"},                   // shorter than a minute
		{"window": "1h", "baseline": "10m"}, // a baseline shorter than its window
		{"factor": -1},
		{"min_tokens": -5},
	} {
		expectProblem(t, putSettings(admin, map[string]any{"roles": map[string]any{}, "anomalies": map[string]any{"usage_spike": bad}}),
			http.StatusBadRequest, "validation_failed")
	}

	// The day before: bob 1,440 tokens (a mean of 1 a minute), frank
	// 1,440,000 (1,000 a minute). The last minute: bob 2,000, frank 3,000,
	// grace 900 (under min_tokens), carol 5,000 with no usage before (no
	// baseline to compare with).
	seedUsage(t, in,
		usageMinute(12*time.Hour, bobID, "", "llama", 10, 440, 1000, 0),
		usageMinute(12*time.Hour, frankID, "", "llama", 10, 440_000, 1_000_000, 0),
		usageMinute(0, bobID, "", "llama", 4, 500, 1500, 0),
		usageMinute(0, frankID, "", "llama", 4, 1000, 2000, 0),
		usageMinute(0, graceID, "", "llama", 1, 400, 500, 0),
		usageMinute(0, carolID, "", "llama", 1, 1000, 4000, 0),
	)
	if resp := putSettings(admin, map[string]any{"roles": map[string]any{},
		"anomalies": map[string]any{"usage_spike": map[string]any{"factor": 5, "window": "1m", "baseline": "1d", "min_tokens": 1000}}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /api/settings: %d %s", resp.StatusCode, resp.body)
	}

	events := anomalyEvents(t, admin, "usage_spike", 1, 10*time.Second)
	if len(events) != 1 {
		t.Fatalf("%d anomaly.usage_spike events, want 1 (bob's): %v", len(events), events)
	}
	detail := events[0]["detail"].(map[string]any)
	if events[0]["actor_id"] != bobID || detail["subject"] != bobID || detail["count"] != 2000.0 ||
		detail["baseline"] != 1.0 || detail["factor"] != 5.0 || detail["window"] != "1m0s" {
		t.Fatalf("event %v, want bob's 2000 tokens over a baseline of 1 (factor 5, window 1m0s)", events[0])
	}
	// The detector looks every second: a few more looks report nothing more.
	if events := anomalyEvents(t, admin, "usage_spike", 0, 2500*time.Millisecond); len(events) != 1 {
		t.Fatalf("after more checks, %d usage_spike events, want still 1: %v", len(events), events)
	}
	waitFor(t, 10*time.Second, "a webhook delivery of anomaly.usage_spike", func() string {
		hook.mu.Lock()
		defer hook.mu.Unlock()
		var events []string
		for _, d := range hook.deliveries {
			if e := d.header.Get("X-Gatehouse-Event"); e == "anomaly.usage_spike" {
				return ""
			} else {
				events = append(events, e)
			}
		}
		return fmt.Sprint("deliveries: ", events)
	})
}
