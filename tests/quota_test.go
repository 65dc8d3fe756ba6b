package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// usageBackend answers every chat completion with a fixed OpenAI usage, after
// delay, and counts the requests it served.
type usageBackend struct {
	srv    *httptest.Server
	served atomic.Int64
}

func newUsageBackend(t *testing.T, total int, delay time.Duration) *usageBackend {
	t.Helper()
	b := &usageBackend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.served.Add(1)
		time.Sleep(delay)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-1", "object": "chat.completion", "model": "llama3",
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": "hi"}, "finish_reason": "stop"}},
			"usage":   map[string]any{"prompt_tokens": total / 2, "completion_tokens": total - total/2, "total_tokens": total},
		})
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *usageBackend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

// startEarlyInAMinute waits for the next minute when this one has less
// than 20 s left, so a test of a per-minute window runs within one.
func startEarlyInAMinute() {
	if now := time.Now(); now.Second() >= 40 {
		time.Sleep(now.Truncate(time.Minute).Add(time.Minute).Sub(now))
	}
}

// setRoleLimits gives the user role limits through the settings API.
func setRoleLimits(t *testing.T, admin *client, limits map[string]any) {
	t.Helper()
	if r := admin.do("PUT", "/api/settings/roles/user", map[string]any{"limits": limits}); r.StatusCode != http.StatusOK {
		t.Fatalf("setting the user role's limits: %d %s", r.StatusCode, r.body)
	}
}

var chatBody = map[string]any{"model": "llama3", "messages": []any{map[string]any{"role": "user", "content": "hello"}}, "max_tokens": 100}

// TestQuotaRequestsPerMinute: past a role's requests_per_minute the caller
// gets 429 rate_limited with Retry-After, OpenAI's x-ratelimit-* headers and
// error type, and the backend is not called.
func TestQuotaRequestsPerMinute(t *testing.T) {
	startEarlyInAMinute() // the window is the calendar minute: do not straddle two
	be := newUsageBackend(t, 10, 0)
	in := startInstance(t, instanceConfig{upstream: be.addr()})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	setRoleLimits(t, admin, map[string]any{"requests_per_minute": 3})
	for i := range 3 {
		r := bobC.do("POST", "/v1/chat/completions", chatBody)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, r.StatusCode, r.body)
		}
		if got, want := r.Header.Get("X-Ratelimit-Remaining-Requests"), fmt.Sprint(2-i); got != want {
			t.Errorf("request %d: x-ratelimit-remaining-requests %q, want %s", i+1, got, want)
		}
		if r.Header.Get("X-Ratelimit-Limit-Requests") != "3" || r.Header.Get("X-Ratelimit-Reset-Requests") == "" {
			t.Errorf("request %d: rate limit headers %v", i+1, r.Header)
		}
	}
	r := bobC.do("POST", "/v1/chat/completions", chatBody)
	expectProblem(t, r, http.StatusTooManyRequests, "rate_limited")
	if r.Header.Get("Retry-After") == "" || r.Header.Get("X-Ratelimit-Remaining-Requests") != "0" {
		t.Errorf("429 headers: %v", r.Header)
	}
	if e := r.json(t)["error"].(map[string]any); e["type"] != "rate_limit_exceeded" {
		t.Errorf("error type %v, want rate_limit_exceeded", e["type"])
	}
	if n := be.served.Load(); n != 3 {
		t.Errorf("the backend served %d requests, want 3", n)
	}
	// The caller can ask what is left.
	lim := bobC.get("/api/usage/limits").json(t)["limits"].(map[string]any)
	if rpm, _ := lim["requests_per_minute"].(map[string]any); rpm == nil || rpm["limit"] != float64(3) || rpm["remaining"] != float64(0) {
		t.Errorf("/api/usage/limits = %v, want requests_per_minute 3 with 0 left", lim)
	}
	// And sees it on the account page.
	page := bobC.get("/gatehouse/account", "Accept", "text/html").text()
	if !regexp.MustCompile(`<tr data-limit="requests_per_minute"><td>requests_per_minute</td><td class="num">3</td><td class="num">0</td></tr>`).MatchString(page) {
		t.Errorf("the account page does not show requests_per_minute 3 with 0 left:\n%s", page)
	}
	// Another role's users, and the admin, are not limited by it.
	for range 4 {
		if r := admin.do("POST", "/v1/chat/completions", chatBody); r.StatusCode != http.StatusOK {
			t.Fatalf("admin: %d %s", r.StatusCode, r.body)
		}
	}
	// Bob's refusal is metered as a quota hit (the dashboard's chart).
	waitFor(t, 5*time.Second, "the quota hit in /api/usage", func() string {
		_, rows := usageRows(t, admin, "group_by=user&user_id="+bobC.userID())
		for _, row := range rows {
			if row["requests"] == 3.0 && row["denied"] == 1.0 && row["quota_hits"] == 1.0 {
				return ""
			}
		}
		return fmt.Sprint(rows)
	})
}

// TestQuotaTokensPerDay: a day's tokens are counted at their real number
// (the backend's usage), and past them the caller gets 429 quota_exceeded,
// which OpenAI's SDKs read as insufficient_quota.
func TestQuotaTokensPerDay(t *testing.T) {
	be := newUsageBackend(t, 400, 0)
	in := startInstance(t, instanceConfig{upstream: be.addr()})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	setRoleLimits(t, admin, map[string]any{"tokens_per_day": 1000})
	admitted := 0
	var last *response
	for range 10 {
		last = bobC.do("POST", "/v1/chat/completions", chatBody)
		if last.StatusCode != http.StatusOK {
			break
		}
		admitted++
	}
	expectProblem(t, last, http.StatusTooManyRequests, "quota_exceeded")
	if e := last.json(t)["error"].(map[string]any); e["type"] != "insufficient_quota" {
		t.Errorf("error type %v, want insufficient_quota", e["type"])
	}
	// Each answer costs 400 and a request reserves about 130 before it goes
	// on: the third is admitted at 800 used, the fourth is not at 1200.
	if admitted != 3 {
		t.Errorf("%d requests of 400 tokens admitted under 1000 tokens/day, want 3 (the last one may pass the limit by its own count)", admitted)
	}
}

// TestQuotaTokensPerDayHoldsAcrossARestart: without Redis the counters are
// the instance's, and a day's counter starts from the stored usage: a
// restart does not give the user their day again.
func TestQuotaTokensPerDayHoldsAcrossARestart(t *testing.T) {
	be := newUsageBackend(t, 400, 0)
	in := startInstance(t, instanceConfig{upstream: be.addr()})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	setRoleLimits(t, admin, map[string]any{"tokens_per_day": 1000})
	for i := range 2 {
		if r := bobC.do("POST", "/v1/chat/completions", chatBody); r.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, r.StatusCode, r.body)
		}
	}
	in.restart() // the last flush writes the 800 tokens
	// 800 used: one more request (reserving about 130) is admitted, and
	// its 400 tokens use the day up.
	if r := bobC.do("POST", "/v1/chat/completions", chatBody); r.StatusCode != http.StatusOK {
		t.Fatalf("the third request, after the restart: %d %s", r.StatusCode, r.body)
	}
	r := bobC.do("POST", "/v1/chat/completions", chatBody)
	expectProblem(t, r, http.StatusTooManyRequests, "quota_exceeded")
	if n := be.served.Load(); n != 3 {
		t.Errorf("the backend served %d requests of 400 tokens under 1000 a day, want 3", n)
	}
	lim := bobC.get("/api/usage/limits").json(t)["limits"].(map[string]any)
	if day, _ := lim["tokens_per_day"].(map[string]any); day == nil || day["remaining"] != 0.0 {
		t.Errorf("/api/usage/limits = %v, want tokens_per_day with 0 left", lim)
	}
}

// TestQuotasHoldAcrossInstances: three instances sharing Redis hold one
// tokens_per_minute limit under fifty concurrent requests: what they admit
// together passes the limit by at most one request's reservation.
func TestQuotasHoldAcrossInstances(t *testing.T) {
	rds := newPrivateRedis(t)
	be := newUsageBackend(t, 50, 300*time.Millisecond)
	cfg := "\t\tredis " + rds.URL + "\n"
	ins := threeInstancesUpstream(t, cfg, be.addr())
	admin := ins[0].newClient()
	admin.signIn(alice, "")
	tok := createToken(t, activeClient(t, ins[0], bob), map[string]any{"name": "load", "kind": "personal"})["token"].(string)
	setRoleLimits(t, admin, map[string]any{"tokens_per_minute": 1000})
	time.Sleep(2500 * time.Millisecond) // the settings reach the other instances
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			r := bearer(t, ins[i%3], "POST", "/v1/chat/completions", tok, chatBody)
			switch r.StatusCode {
			case http.StatusOK:
				admitted.Add(1)
			case http.StatusTooManyRequests:
				refused.Add(1)
			default:
				t.Errorf("%d %s", r.StatusCode, r.body)
			}
		})
	}
	wg.Wait()
	// A request reserves about 130 tokens (its body and max_tokens 100)
	// while its answer is on the way: seven fit in 1000, the rest wait for
	// the next minute. Settled at 50 each, some room comes back only after
	// the answers, which take 300 ms, so most of the fifty are refused.
	t.Logf("admitted %d, refused %d, backend served %d", admitted.Load(), refused.Load(), be.served.Load())
	if a := admitted.Load(); a < 7 || a > 20 {
		t.Errorf("%d of 50 admitted under 1000 tokens/min at about 130 reserved each, want 7 to 20", a)
	}
	if be.served.Load() != admitted.Load() {
		t.Errorf("the backend served %d, the instances admitted %d", be.served.Load(), admitted.Load())
	}
}

// TestQuotaCountersUnreachable: with Redis gone, a limited caller is refused
// 503 (fail closed), or let through with quota_fail_open.
func TestQuotaCountersUnreachable(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("quota_fail_open %v", failOpen), func(t *testing.T) {
			rds := newPrivateRedis(t)
			extra := "\t\tredis " + rds.URL + "\n"
			if failOpen {
				extra += "\t\tquota_fail_open\n"
			}
			be := newUsageBackend(t, 10, 0)
			in := startInstance(t, instanceConfig{upstream: be.addr(), extraGlobal: extra})
			admin := in.newClient()
			admin.signIn(alice, "")
			bobC := activeClient(t, in, bob)
			setRoleLimits(t, admin, map[string]any{"requests_per_minute": 100})
			if r := bobC.do("POST", "/v1/chat/completions", chatBody); r.StatusCode != http.StatusOK {
				t.Fatalf("with Redis: %d %s", r.StatusCode, r.body)
			}
			rds.stop()
			r := bobC.do("POST", "/v1/chat/completions", chatBody)
			if failOpen {
				if r.StatusCode != http.StatusOK {
					t.Fatalf("fail open, Redis gone: %d %s", r.StatusCode, r.body)
				}
				if !strings.Contains(in.logs.String(), "quota_fail_open") {
					t.Error("letting a request through unchecked was not logged")
				}
				return
			}
			expectProblem(t, r, http.StatusServiceUnavailable, "unavailable")
		})
	}
}

// threeInstancesUpstream is threeInstances in front of one backend.
func threeInstancesUpstream(t *testing.T, extra, upstream string) [3]*instance {
	t.Helper()
	cfg := instanceConfig{
		storeLine:   "store postgres " + postgresSchema(t),
		extraGlobal: "\t\tsecret this-is-a-shared-test-secret-of-40-chars\n" + extra,
		upstream:    upstream,
	}
	var out [3]*instance
	out[0] = startInstance(t, cfg)
	cfg.publicURL = out[0].URL
	out[1] = startInstance(t, cfg)
	out[2] = startInstance(t, cfg)
	return out
}

// TestQuotaTokenLimits: a token carries limits of its own, signed into it,
// never wider than its role's.
func TestQuotaTokenLimits(t *testing.T) {
	be := newUsageBackend(t, 10, 0)
	in := startInstance(t, instanceConfig{upstream: be.addr()})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	limited := createToken(t, bobC, map[string]any{"name": "script", "kind": "personal", "limits": map[string]any{"requests_per_minute": 2}})["token"].(string)
	free := createToken(t, bobC, map[string]any{"name": "other", "kind": "personal"})["token"].(string)
	for i := range 2 {
		if r := bearer(t, in, "POST", "/v1/chat/completions", limited, chatBody); r.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, r.StatusCode, r.body)
		}
	}
	expectProblem(t, bearer(t, in, "POST", "/v1/chat/completions", limited, chatBody), http.StatusTooManyRequests, "rate_limited")
	// The user's other token, without limits, goes on.
	if r := bearer(t, in, "POST", "/v1/chat/completions", free, chatBody); r.StatusCode != http.StatusOK {
		t.Fatalf("the unlimited token: %d %s", r.StatusCode, r.body)
	}
	// Once the role has limits, a token's may only narrow them.
	setRoleLimits(t, admin, map[string]any{"tokens_per_day": 1000})
	wider := bobC.do("POST", "/api/tokens", map[string]any{"name": "wide", "kind": "personal", "limits": map[string]any{"tokens_per_day": 5000}})
	expectProblem(t, wider, http.StatusBadRequest, "validation_failed")
	if !strings.Contains(wider.text(), "wider than the user role's") {
		t.Errorf("refusal %s does not say why", wider.body)
	}
	expectProblem(t, bobC.do("POST", "/api/tokens", map[string]any{"name": "neg", "kind": "personal", "limits": map[string]any{"tokens_per_minute": -1}}),
		http.StatusBadRequest, "validation_failed")
	createToken(t, bobC, map[string]any{"name": "narrow", "kind": "personal", "limits": map[string]any{"tokens_per_day": 500}})
}

// TestQuotaUserLimits: an admin gives one user limits of their own, which
// narrow their role's (none here) and bound their tokens'; {} clears them.
// Only a caller who may change the user's role may set them, and negative
// limits are refused.
func TestQuotaUserLimits(t *testing.T) {
	be := newUsageBackend(t, 10, 0)
	in := startInstance(t, instanceConfig{upstream: be.addr()})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	bobID := bobC.userID()
	limitsPath := "/api/users/" + bobID + "/limits"

	r := admin.do("PUT", limitsPath, map[string]any{"requests_per_minute": 2})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("setting bob's limits: %d %s", r.StatusCode, r.body)
	}
	if lim, _ := r.json(t)["limits"].(map[string]any); lim == nil || lim["requests_per_minute"] != float64(2) {
		t.Fatalf("the answer's limits = %v, want requests_per_minute 2: %s", lim, r.body)
	}
	if lim, _ := admin.get("/api/users/" + bobID).json(t)["limits"].(map[string]any); lim == nil || lim["requests_per_minute"] != float64(2) {
		t.Errorf("GET /api/users/{id} limits = %v, want requests_per_minute 2", lim)
	}
	for i := range 2 {
		if r := bobC.do("POST", "/v1/chat/completions", chatBody); r.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, r.StatusCode, r.body)
		}
	}
	expectProblem(t, bobC.do("POST", "/v1/chat/completions", chatBody), http.StatusTooManyRequests, "rate_limited")
	if lim := bobC.get("/api/usage/limits").json(t)["limits"].(map[string]any); lim["requests_per_minute"] == nil {
		t.Errorf("/api/usage/limits = %v, want bob's own requests_per_minute", lim)
	}
	// A token's limits stay within the user's own.
	wider := bobC.do("POST", "/api/tokens", map[string]any{"name": "wide", "kind": "personal", "limits": map[string]any{"requests_per_minute": 5}})
	expectProblem(t, wider, http.StatusBadRequest, "validation_failed")
	if !strings.Contains(wider.text(), "wider than the user's") {
		t.Errorf("refusal %s does not say why", wider.body)
	}
	createToken(t, bobC, map[string]any{"name": "narrow", "kind": "personal", "limits": map[string]any{"requests_per_minute": 1}})
	// Other users keep no limits.
	for range 3 {
		if r := admin.do("POST", "/v1/chat/completions", chatBody); r.StatusCode != http.StatusOK {
			t.Fatalf("admin: %d %s", r.StatusCode, r.body)
		}
	}

	// The change is audited with what it replaced.
	events := admin.get("/api/audit?type=user.limits_changed").json(t)["events"].([]any)
	if len(events) != 1 {
		t.Fatalf("%d user.limits_changed events, want 1", len(events))
	}
	ev := events[0].(map[string]any)
	detail, _ := ev["detail"].(map[string]any)
	if ev["target_id"] != bobID || detail == nil || fmt.Sprint(detail["from"]) != "map[]" || fmt.Sprint(detail["to"]) != "map[requests_per_minute:2]" {
		t.Errorf("audit event %v, want target bob, from {} to requests_per_minute 2", ev)
	}

	// {} clears them: the limit is lifted.
	r = admin.do("PUT", limitsPath, map[string]any{})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("clearing bob's limits: %d %s", r.StatusCode, r.body)
	}
	if _, set := r.json(t)["limits"]; set {
		t.Errorf("cleared limits still shown: %s", r.body)
	}
	for i := range 3 {
		if r := bobC.do("POST", "/v1/chat/completions", chatBody); r.StatusCode != http.StatusOK {
			t.Fatalf("request %d after clearing: %d %s", i+1, r.StatusCode, r.body)
		}
	}

	// Setting limits needs what changing the user's role needs.
	manager := clientWithRole(t, in, frank, "manager")
	plain := activeClient(t, in, carol)
	expectProblem(t, manager.do("PUT", limitsPath, map[string]any{"requests_per_minute": 1}), http.StatusForbidden, "forbidden")
	expectProblem(t, plain.do("PUT", limitsPath, map[string]any{"requests_per_minute": 1}), http.StatusForbidden, "forbidden")
	expectProblem(t, bobC.do("PUT", limitsPath, map[string]any{}), http.StatusForbidden, "forbidden")
	expectProblem(t, admin.do("PUT", limitsPath, map[string]any{"tokens_per_day": -1}), http.StatusBadRequest, "validation_failed")
	expectProblem(t, admin.do("PUT", limitsPath, map[string]any{"requests_per_hour": 1}), http.StatusBadRequest, "invalid_json")
	expectProblem(t, admin.do("PUT", "/api/users/00000000-0000-7000-8000-000000000000/limits", map[string]any{}), http.StatusNotFound, "not_found")
	if lim := admin.get("/api/users/" + bobID).json(t)["limits"]; lim != nil {
		t.Errorf("refused changes left limits %v", lim)
	}
}
