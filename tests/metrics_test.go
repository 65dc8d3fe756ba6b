package tests

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMetricsAfterAScriptedRun: after a few allowed and refused requests, a
// sign-in and a failed one, Caddy's admin /metrics holds the §9 names with
// the counts of the run, and no label carries a user, token or session id.
func TestMetricsAfterAScriptedRun(t *testing.T) {
	adminPort := freePort(t)
	in := startInstance(t, instanceConfig{adminPort: adminPort})
	bobC := activeClient(t, in, bob) // two sign-ins: bob's, and alice's to approve him
	bobID := bobC.userID()
	created := createToken(t, bobC, map[string]any{"name": "llama only", "kind": "personal", "models": []string{"llama3*"}})
	tok, tokenID := created["token"].(string), created["id"].(string)

	for range 3 {
		if resp := bearer(t, in, "GET", "/hello", tok, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("allowed bearer request: %d %s", resp.StatusCode, resp.body)
		}
	}
	if resp := bearer(t, in, "POST", "/v1/chat/completions", tok, `{"model":"llama3.1:8b","messages":[]}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("allowed model: %d %s", resp.StatusCode, resp.body)
	}
	expectProblem(t, bearer(t, in, "POST", "/v1/chat/completions", tok, `{"model":"mistral","messages":[]}`), 403, "model_not_allowed")
	expectProblem(t, bearer(t, in, "POST", "/v1/chat/completions", tok, `{"messages":[]}`), 400, "model_required")
	for range 2 {
		if resp := in.newClient().get("/hello"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("anonymous request: %d, want 401", resp.StatusCode)
		}
	}
	if resp := bearer(t, in, "GET", "/hello", tok+"x", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged token: %d, want 401", resp.StatusCode)
	}
	if resp := bobC.get("/hello"); resp.StatusCode != http.StatusOK {
		t.Fatalf("session request: %d %s", resp.StatusCode, resp.body)
	}
	// A failed sign-in: the provider refused it.
	if resp := in.newClient().get("/api/auth/callback?error=access_denied&state=abc", "Accept", "text/html"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("failed callback: %d, want 400", resp.StatusCode)
	}

	// The store counts are refreshed every few seconds.
	var m metricsText
	deadline := time.Now().Add(15 * time.Second)
	for {
		m = scrapeMetrics(t, adminPort)
		if m.value(t, "gatehouse_active_sessions", nil) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}

	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"gatehouse_decisions_total", map[string]string{"route": "other", "code": "allowed"}, 4},
		{"gatehouse_decisions_total", map[string]string{"route": "model", "code": "allowed"}, 1},
		{"gatehouse_decisions_total", map[string]string{"route": "model", "code": "model_not_allowed"}, 1},
		{"gatehouse_decisions_total", map[string]string{"route": "model", "code": "model_required"}, 1},
		{"gatehouse_decisions_total", map[string]string{"route": "other", "code": "unauthenticated"}, 2},
		{"gatehouse_decisions_total", map[string]string{"route": "other", "code": "invalid_token"}, 1},
		{"gatehouse_identify_duration_seconds_count", map[string]string{"credential": "token"}, 7},
		{"gatehouse_logins_total", map[string]string{"result": "ok"}, 2},
		{"gatehouse_logins_total", map[string]string{"result": "login_failed"}, 1},
		{"gatehouse_active_sessions", nil, 2},
		{"gatehouse_outbox_backlog", nil, 0},
		{"gatehouse_revocation_max_staleness_seconds", nil, 30},
	} {
		if got := m.value(t, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// A token seen before is not verified again; one seen for the first time is.
	if hits, misses := m.value(t, "gatehouse_cache_hits_total", map[string]string{"cache": "tokens"}),
		m.value(t, "gatehouse_cache_misses_total", map[string]string{"cache": "tokens"}); hits < 5 || misses < 1 {
		t.Errorf("token cache: %v hits, %v misses; want at least 5 and 1", hits, misses)
	}
	for _, cache := range []string{"users", "decisions", "assertions", "sessions"} {
		m.value(t, "gatehouse_cache_hits_total", map[string]string{"cache": cache}) // present
	}
	if n := m.value(t, "gatehouse_decision_duration_seconds_count", nil); n < 6 {
		t.Errorf("decision_duration_seconds_count = %v, want at least the guard's 6 policy decisions", n)
	}
	if age := m.value(t, "gatehouse_revocation_list_age_seconds", nil); age < 0 || age > 30 {
		t.Errorf("revocation_list_age_seconds = %v, want within max_staleness", age)
	}
	if n := m.value(t, "gatehouse_tokens_metered_total", map[string]string{"model": "llama3.1:8b", "kind": "prompt"}); n <= 0 {
		t.Errorf("prompt tokens metered for llama3.1:8b = %v, want some", n)
	}
	m.value(t, "gatehouse_quota_refusals_total", map[string]string{"limit": "tokens_per_day"})                   // present, at 0
	m.value(t, "gatehouse_outbox_deliveries_total", map[string]string{"channel": "webhook", "result": "failed"}) // present, at 0
	if strings.Contains(m.raw, "gatehouse_fanout_healthy") {
		t.Error("gatehouse_fanout_healthy reported without Redis")
	}

	secrets := map[string]string{"user id": bobID, "token id": tokenID, "token": tok, "email": bob,
		"session cookie": bobC.cookie(sessionCookie)}
	for what, v := range secrets {
		if v != "" && strings.Contains(m.raw, v) {
			t.Errorf("the metrics carry the %s %q", what, v)
		}
	}
	for _, v := range m.labelValues("gatehouse_") {
		if uuidPattern.MatchString(v) {
			t.Errorf("a gatehouse_ label value looks like an id: %q", v)
		}
	}
}

var uuidPattern = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// metricsText is one scrape in the Prometheus text format.
type metricsText struct{ raw string }

func scrapeMetrics(t *testing.T, adminPort int) metricsText {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return metricsText{string(body)}
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// value is the sample of name whose labels include labels; it fails the
// test when there is none.
func (m metricsText) value(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	for _, line := range strings.Split(m.raw, "\n") {
		s := sampleLine.FindStringSubmatch(line)
		if s == nil || s[1] != name {
			continue
		}
		got := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(s[2], -1) {
			got[p[1]] = p[2]
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		if match {
			v, err := strconv.ParseFloat(s[3], 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	t.Errorf("no sample %s%v in /metrics", name, labels)
	return -1
}

// labelValues lists the label values of the samples whose name has prefix.
func (m metricsText) labelValues(prefix string) []string {
	seen := map[string]bool{}
	for _, line := range strings.Split(m.raw, "\n") {
		if s := sampleLine.FindStringSubmatch(line); s != nil && strings.HasPrefix(s[1], prefix) {
			for _, p := range labelPair.FindAllStringSubmatch(s[2], -1) {
				seen[p[2]] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}
