package tests

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/store"
)

// seedUsage writes usage minutes into the instance's store, as the meter
// would: a minute is (user, token, model), its requests and tokens.
func seedUsage(t *testing.T, in *instance, minutes ...store.UsageMinute) {
	t.Helper()
	withStore(t, in, func(st store.Store) {
		if err := st.AddUsage(context.Background(), minutes); err != nil {
			t.Fatalf("AddUsage: %v", err)
		}
	})
}

func usageMinute(ago time.Duration, userID, tokenID, model string, requests, prompt, completion, denied int64) store.UsageMinute {
	return store.UsageMinute{Minute: time.Now().Add(-ago).Truncate(time.Minute), UserID: userID, TokenID: tokenID, Model: model,
		RouteKind: "model", Role: "user", Requests: requests, PromptTokens: prompt, CompletionTokens: completion,
		TotalTokens: prompt + completion, Denied: denied}
}

// usageRows reads GET /api/usage's rows as key → total_tokens, in order.
func usageRows(t *testing.T, c *client, query string) ([]string, map[string]map[string]any) {
	t.Helper()
	resp := c.get("/api/usage?" + query)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/usage?%s: %d %s", query, resp.StatusCode, resp.body)
	}
	var keys []string
	rows := map[string]map[string]any{}
	for _, r := range resp.json(t)["rows"].([]any) {
		row := r.(map[string]any)
		keys = append(keys, row["key"].(string))
		rows[row["key"].(string)] = row
	}
	return keys, rows
}

type usagePeople struct {
	admin, manager, bob, grace         *client
	adminID, managerID, bobID, graceID string
}

// usageInstance is an instance with four people and their usage of the
// last days: bob 100 tokens of llama and 20 of qwen, grace 300 of qwen,
// alice (admin) 50 of llama, frank (manager) none.
func usageInstance(t *testing.T) (*instance, usagePeople) {
	in := startInstance(t, instanceConfig{})
	var p usagePeople
	p.admin = in.newClient()
	p.admin.signIn(alice, "")
	p.manager = clientWithRole(t, in, frank, "manager")
	p.bob = activeClient(t, in, bob)
	p.grace = activeClient(t, in, grace)
	p.adminID, p.managerID, p.bobID, p.graceID = p.admin.userID(), p.manager.userID(), p.bob.userID(), p.grace.userID()
	graceQwen := usageMinute(2*time.Hour, p.graceID, "tok-grace", "qwen", 3, 100, 200, 2)
	graceQwen.QuotaHits = 1 // one of grace's two refusals was a quota's
	seedUsage(t, in,
		usageMinute(time.Hour, p.bobID, "tok-bob", "llama", 2, 40, 60, 0),
		usageMinute(49*time.Hour, p.bobID, "", "qwen", 1, 5, 15, 1),
		graceQwen,
		usageMinute(25*time.Hour, p.adminID, "", "llama", 1, 20, 30, 0),
		// Older than the default window of 7 days: not in any default answer.
		usageMinute(8*24*time.Hour, p.bobID, "tok-bob", "llama", 9, 900, 900, 0),
	)
	return in, p
}

func TestUsageAPIOwnAndOthers(t *testing.T) {
	in, p := usageInstance(t)

	t.Run("own usage by model over the last 7 days", func(t *testing.T) {
		before := time.Now().UTC().Truncate(time.Second)
		resp := p.bob.get("/api/usage")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, resp.body)
		}
		body := resp.json(t)
		from, err1 := time.Parse(time.RFC3339, body["from"].(string))
		to, err2 := time.Parse(time.RFC3339, body["to"].(string))
		if err1 != nil || err2 != nil || to.Sub(from) != 7*24*time.Hour || to.Before(before) || to.After(time.Now()) {
			t.Fatalf("from %v to %v, want RFC 3339 times 7 days apart ending now", body["from"], body["to"])
		}
		rows := fmt.Sprint(body["rows"])
		want := fmt.Sprint([]any{
			map[string]any{"key": "llama", "requests": 2.0, "prompt_tokens": 40.0, "completion_tokens": 60.0, "total_tokens": 100.0, "errors": 0.0, "denied": 0.0, "quota_hits": 0.0},
			map[string]any{"key": "qwen", "requests": 1.0, "prompt_tokens": 5.0, "completion_tokens": 15.0, "total_tokens": 20.0, "errors": 0.0, "denied": 1.0, "quota_hits": 0.0},
		})
		if rows != want {
			t.Fatalf("rows %s, want %s", rows, want)
		}
	})

	tests := []struct {
		name   string
		caller *client
		query  string
		want   []string // keys in order, or nil for a refusal
		status int
		code   string
	}{
		{"a user without user_id gets their own", p.bob, "group_by=user", []string{p.bobID}, 200, ""},
		{"a user naming themselves", p.bob, "user_id=" + p.bobID + "&group_by=token", []string{"tok-bob", ""}, 200, ""},
		{"a user asking for another user's", p.bob, "user_id=" + p.graceID, nil, 403, "forbidden"},
		{"a user asking for an unknown user's", p.bob, "user_id=00000000-0000-7000-8000-000000000000", nil, 403, "forbidden"},
		{"a user filtering by another user's token sees nothing", p.bob, "token_id=tok-grace&group_by=token", []string{}, 200, ""},
		{"a manager gets everyone's", p.manager, "group_by=user", []string{p.graceID, p.bobID, p.adminID}, 200, ""},
		{"a manager asking for a user's", p.manager, "user_id=" + p.graceID, []string{"qwen"}, 200, ""},
		{"a manager asking for an admin's", p.manager, "user_id=" + p.adminID, nil, 403, "forbidden"},
		{"an admin asking for an admin's", p.admin, "user_id=" + p.adminID, []string{"llama"}, 200, ""},
		{"filters by model", p.admin, "model=qwen&group_by=user", []string{p.graceID, p.bobID}, 200, ""},
		{"filters by token", p.admin, "token_id=tok-bob&group_by=model", []string{"llama"}, 200, ""},
		{"time bounds reach past the default window", p.admin,
			"user_id=" + p.bobID + "&from=" + url.QueryEscape(time.Now().Add(-9*24*time.Hour).Format(time.RFC3339)) + "&to=" + url.QueryEscape(time.Now().Add(-7*24*time.Hour).Format(time.RFC3339)),
			[]string{"llama"}, 200, ""},
		{"anonymous", in.newClient(), "", nil, 401, "unauthenticated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.status != http.StatusOK {
				expectProblem(t, tc.caller.get("/api/usage?"+tc.query), tc.status, tc.code)
				return
			}
			keys, _ := usageRows(t, tc.caller, tc.query)
			if strings.Join(keys, ",") != strings.Join(tc.want, ",") || len(keys) != len(tc.want) {
				t.Fatalf("keys %q, want %q", keys, tc.want)
			}
		})
	}

	t.Run("grouped by day, oldest first", func(t *testing.T) {
		keys, rows := usageRows(t, p.admin, "group_by=day")
		var sum float64
		for i, k := range keys {
			if _, err := time.Parse(time.RFC3339, k); err != nil || !strings.HasSuffix(k, "T00:00:00Z") {
				t.Fatalf("day key %q is not the start of a day in RFC 3339", k)
			}
			if i > 0 && keys[i-1] >= k {
				t.Fatalf("days %q are not in time order", keys)
			}
			sum += rows[k]["total_tokens"].(float64)
		}
		if sum != 470 {
			t.Fatalf("tokens over the days add up to %v, want 470", sum)
		}
	})

	t.Run("a pending user is refused", func(t *testing.T) {
		pending := in.newClient()
		pending.signIn(erin, "")
		expectProblem(t, pending.get("/api/usage"), http.StatusForbidden, "access_required")
	})
}

func TestUsageAPIValidation(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	tests := []struct {
		query, names string
	}{
		{"group_by=week", "group_by"},
		{"group_by=", "group_by"},
		{"from=yesterday", "from"},
		{"to=2030-01-02", "to"},
		{"from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z", "from must be before to"},
		{"from=2030-01-02T00:00:00Z&to=2030-01-02T00:00:00Z", "from must be before to"},
		{"user_id=", "user_id"},
		{"model=a&model=b", "model must be given once"},
		{"token_id=" + strings.Repeat("x", 201), "token_id"},
		{"groupby=user", `unknown parameter "groupby"`},
	}
	for _, tc := range tests {
		t.Run(tc.query[:min(len(tc.query), 60)], func(t *testing.T) {
			resp := admin.get("/api/usage?" + tc.query)
			expectProblem(t, resp, http.StatusBadRequest, "validation_failed")
			if detail := resp.json(t)["detail"].(string); !strings.Contains(detail, tc.names) {
				t.Fatalf("detail %q does not name %s", detail, tc.names)
			}
		})
	}
}

func TestUsageAPICSV(t *testing.T) {
	_, p := usageInstance(t)
	resp := p.admin.get("/api/usage?group_by=model", "Accept", "text/csv")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, resp.body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Fatalf("Content-Type %q, want text/csv; charset=utf-8", ct)
	}
	records, err := csv.NewReader(strings.NewReader(resp.text())).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v\n%s", err, resp.body)
	}
	want := [][]string{
		{"key", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors", "denied", "quota_hits"},
		{"qwen", "4", "105", "215", "320", "0", "3", "1"},
		{"llama", "3", "60", "90", "150", "0", "0", "0"},
	}
	if fmt.Sprint(records) != fmt.Sprint(want) {
		t.Fatalf("CSV %q, want %q", records, want)
	}
	// The same request without text/csv answers JSON.
	if ct := p.admin.get("/api/usage?group_by=model").Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("without Accept: text/csv the Content-Type is %q, want application/json", ct)
	}
	// A refusal stays a problem, whatever the caller accepts.
	expectProblem(t, p.bob.get("/api/usage?user_id="+p.graceID, "Accept", "text/csv"), http.StatusForbidden, "forbidden")
}

func TestUsageLimitsAPI(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	bobC := activeClient(t, in, bob)
	resp := bobC.get("/api/usage/limits")
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(resp.text()) != `{"limits":{}}` {
		t.Fatalf("GET /api/usage/limits: %d %s, want 200 {\"limits\":{}} (no quotas configured)", resp.StatusCode, resp.body)
	}
	expectProblem(t, in.newClient().get("/api/usage/limits"), http.StatusUnauthorized, "unauthenticated")
	expectProblem(t, bobC.get("/api/usage/nonexistent"), http.StatusNotFound, "not_found")
}

// chartBars reads an SVG chart's bars from the page: key (and series) →
// value.
func chartBars(b *tab, chartID string) map[string]int64 {
	b.t.Helper()
	type rect struct {
		Key, Series, Value string
		Width, Height      float64
	}
	rects := run(b, "reading the bars of "+chartID, chromedp.Evaluate[[]rect](fmt.Sprintf(
		`[...document.querySelectorAll(%q)].map(r => ({Key: r.dataset.key, Series: r.dataset.series || "", Value: r.dataset.value,
			Width: r.getBBox().width, Height: r.getBBox().height}))`, "#"+chartID+" svg rect.bar")))
	bars := map[string]int64{}
	for _, r := range rects {
		v, err := strconv.ParseInt(r.Value, 10, 64)
		if err != nil {
			b.t.Fatalf("%s: bar %+v has no number", chartID, r)
		}
		if r.Width <= 0 || r.Height <= 0 {
			b.t.Errorf("%s: bar %+v is not drawn", chartID, r)
		}
		key := r.Key
		if r.Series != "" {
			key += " " + r.Series
		}
		bars[key] += v
	}
	return bars
}

// TestBrowserUsageCharts: the dashboard's Usage section draws its charts
// and they say what GET /api/usage says; bob's account page shows his own.
func TestBrowserUsageCharts(t *testing.T) {
	requireChromium(t)
	ctx := withPagesBudget(t)
	in, p := usageInstance(t)

	apiTotals := func(c *client, query string) map[string]int64 {
		keys, rows := usageRows(t, c, query)
		out := map[string]int64{}
		for _, k := range keys {
			if v := int64(rows[k]["total_tokens"].(float64)); v > 0 {
				out[k] = v
			}
		}
		return out
	}

	b := newTab(t, ctx, in.URL)
	b.desktopWindow()
	b.signIn("/gatehouse/admin", alice, "/gatehouse/admin")
	b.expectText("#usage h1", "Usage")
	b.expectCount(`nav.sections a[href="#usage"]`, 1)
	b.expectCount("#usage svg.chart-svg", 5)
	b.expectCount("#usage [style]", 0)
	b.screenshot(filepath.Join(screenshotDir(t), "usage-dashboard.png"))

	if got, want := fmt.Sprint(chartBars(b, "usage-top-users")), fmt.Sprint(apiTotals(p.admin, "group_by=user")); got != want {
		t.Errorf("top users chart %s, API %s", got, want)
	}
	if got, want := fmt.Sprint(chartBars(b, "usage-top-tokens")), fmt.Sprint(apiTotals(p.admin, "group_by=token")); got != want {
		t.Errorf("top tokens chart %s, API %s", got, want)
	}
	// Tokens per day by model: each segment is one (day, model) of the API.
	wantSegments := map[string]int64{}
	for _, model := range []string{"llama", "qwen"} {
		for day, v := range apiTotals(p.admin, "group_by=day&model="+model) {
			wantSegments[day+" "+model] = v
		}
	}
	if got, want := fmt.Sprint(chartBars(b, "usage-tokens-by-model")), fmt.Sprint(wantSegments); got != want {
		t.Errorf("tokens by model chart %s, API %s", got, want)
	}
	// Refusals per day, against the API's denied counts.
	keys, rows := usageRows(t, p.admin, "group_by=day")
	wantRefusals := map[string]int64{}
	for _, k := range keys {
		if d := int64(rows[k]["denied"].(float64)); d > 0 {
			wantRefusals[k+" refused"] = d
		}
	}
	if got, want := fmt.Sprint(chartBars(b, "usage-refusals")), fmt.Sprint(wantRefusals); got != want {
		t.Errorf("refusals chart %s, API %s", got, want)
	}
	// Quota hits per day, against the API's quota_hits.
	wantHits := map[string]int64{}
	for _, k := range keys {
		if d := int64(rows[k]["quota_hits"].(float64)); d > 0 {
			wantHits[k+" quota hits"] = d
		}
	}
	if len(wantHits) == 0 {
		t.Fatalf("the API has no quota hits: %v", rows)
	}
	if got, want := fmt.Sprint(chartBars(b, "usage-quota-hits")), fmt.Sprint(wantHits); got != want {
		t.Errorf("quota hits chart %s, API %s", got, want)
	}
	// The numbers are on the page as text too, for readers without graphics.
	run(b, "opening the tables of numbers", chromedp.Evaluate[int](
		`[...document.querySelectorAll("#usage details")].map(d => d.open = true).length`))
	b.expectText(fmt.Sprintf(`#usage-top-users tr[data-key=%q] td:first-child`, p.graceID), grace)
	b.expectText(`#usage-top-tokens tr[data-key="tok-grace"] td:nth-child(5)`, "300")
	title := run(b, "reading a bar's title", chromedp.Evaluate[string](fmt.Sprintf(
		`document.querySelector(%q).textContent`, fmt.Sprintf(`#usage-top-users rect[data-key=%q] title`, p.bobID))))
	if want := bob + ": 120 tokens in 3 requests"; title != want {
		t.Errorf("bob's bar has the title %q, want %q", title, want)
	}

	// Bob's account page: his own usage by model, nobody else's.
	bt := newTab(t, ctx, in.URL)
	bt.desktopWindow()
	bt.signIn("/gatehouse/account", bob, "/gatehouse/account")
	bt.expectText("#usage h2", "Your usage")
	if got, want := fmt.Sprint(chartBars(bt, "own-usage-by-model")), fmt.Sprint(apiTotals(p.bob, "group_by=model")); got != want {
		t.Errorf("bob's usage chart %s, API %s", got, want)
	}
	bt.expectCount("#limits", 0)
	bt.expectCount("#usage-top-users", 0)
}
