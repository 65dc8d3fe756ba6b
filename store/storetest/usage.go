package storetest

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// m0 is the minute of t0.
var m0 = t0.Truncate(time.Minute)

// usageFixture is the usage of two users over two days: ann through token
// tok-a and a session, bob through tok-b.
var usageFixture = []store.UsageMinute{
	{Minute: m0, UserID: "ann", TokenID: "tok-a", TokenKind: store.TokenPersonal, Role: "user", Model: "llama", RouteKind: "model",
		Requests: 2, Errors: 1, PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30, LatencyMS: 400},
	{Minute: m0.Add(time.Hour), UserID: "ann", Role: "user", Model: "llama", RouteKind: "model",
		Requests: 1, PromptTokens: 2, CompletionTokens: 3, TotalTokens: 5, Estimated: 1},
	{Minute: m0.Add(day), UserID: "ann", TokenID: "tok-a", TokenKind: store.TokenPersonal, Role: "user", Model: "qwen", RouteKind: "model",
		Requests: 3, Denied: 1, PromptTokens: 100, CompletionTokens: 200, TotalTokens: 300},
	{Minute: m0.Add(150 * time.Minute), UserID: "bob", TokenID: "tok-b", TokenKind: store.TokenUser, Role: "admin", Model: "llama", RouteKind: "model",
		Requests: 4, PromptTokens: 15, CompletionTokens: 25, TotalTokens: 40},
	{Minute: m0, UserID: "bob", TokenID: "tok-b", TokenKind: store.TokenUser, Role: "admin", RouteKind: "listing", Requests: 1},
}

func addUsage(t *testing.T, s store.Store, minutes ...store.UsageMinute) {
	t.Helper()
	noErr(t, "AddUsage", s.AddUsage(t.Context(), minutes))
}

func queryUsage(t *testing.T, s store.Store, q store.UsageQuery) []store.UsageRow {
	t.Helper()
	rows, err := s.QueryUsage(t.Context(), q)
	noErr(t, "QueryUsage", err)
	return rows
}

func wantRows(t *testing.T, what string, got, want []store.UsageRow) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func row(key string, requests, prompt, completion, errors, denied int64) store.UsageRow {
	return store.UsageRow{Key: key, Requests: requests, PromptTokens: prompt, CompletionTokens: completion,
		TotalTokens: prompt + completion, Errors: errors, Denied: denied}
}

func testUsageGroups(t *testing.T, s store.Store) {
	addUsage(t, s, usageFixture...)
	tests := []struct {
		groupBy string
		want    []store.UsageRow
	}{
		{"user", []store.UsageRow{row("ann", 6, 112, 223, 1, 1), row("bob", 5, 15, 25, 0, 0)}},
		{"model", []store.UsageRow{row("qwen", 3, 100, 200, 0, 1), row("llama", 7, 27, 48, 1, 0), row("", 1, 0, 0, 0, 0)}},
		{"token", []store.UsageRow{row("tok-a", 5, 110, 220, 1, 1), row("tok-b", 5, 15, 25, 0, 0), row("", 1, 2, 3, 0, 0)}},
		{"day", []store.UsageRow{row("2030-01-02T00:00:00Z", 8, 27, 48, 1, 0), row("2030-01-03T00:00:00Z", 3, 100, 200, 0, 1)}},
		{"hour", []store.UsageRow{
			row("2030-01-02T03:00:00Z", 3, 10, 20, 1, 0),
			row("2030-01-02T04:00:00Z", 1, 2, 3, 0, 0),
			row("2030-01-02T05:00:00Z", 4, 15, 25, 0, 0),
			row("2030-01-03T03:00:00Z", 3, 100, 200, 0, 1),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.groupBy, func(t *testing.T) {
			wantRows(t, "by "+tc.groupBy, queryUsage(t, s, store.UsageQuery{GroupBy: tc.groupBy}), tc.want)
		})
	}
}

// Equal totals are ordered by key, so that pages and CSV are stable.
func testUsageTiesOrderedByKey(t *testing.T, s store.Store) {
	for _, user := range []string{"carol", "ann", "bob"} {
		addUsage(t, s, store.UsageMinute{Minute: m0, UserID: user, Model: "llama", RouteKind: "model", Requests: 1, TotalTokens: 9, PromptTokens: 9})
	}
	wantRows(t, "by user", queryUsage(t, s, store.UsageQuery{GroupBy: "user"}),
		[]store.UsageRow{row("ann", 1, 9, 0, 0, 0), row("bob", 1, 9, 0, 0, 0), row("carol", 1, 9, 0, 0, 0)})
}

func testUsageFilters(t *testing.T, s store.Store) {
	addUsage(t, s, usageFixture...)
	tests := []struct {
		name string
		q    store.UsageQuery
		want []store.UsageRow
	}{
		{"one user by model", store.UsageQuery{UserID: "bob", GroupBy: "model"},
			[]store.UsageRow{row("llama", 4, 15, 25, 0, 0), row("", 1, 0, 0, 0, 0)}},
		{"one token by model", store.UsageQuery{TokenID: "tok-a", GroupBy: "model"},
			[]store.UsageRow{row("qwen", 3, 100, 200, 0, 1), row("llama", 2, 10, 20, 1, 0)}},
		{"one model by user", store.UsageQuery{Model: "llama", GroupBy: "user"},
			[]store.UsageRow{row("bob", 4, 15, 25, 0, 0), row("ann", 3, 12, 23, 1, 0)}},
		{"user, token and model together", store.UsageQuery{UserID: "ann", TokenID: "tok-a", Model: "llama", GroupBy: "day"},
			[]store.UsageRow{row("2030-01-02T00:00:00Z", 2, 10, 20, 1, 0)}},
		{"a user's token filtered by another user", store.UsageQuery{UserID: "bob", TokenID: "tok-a", GroupBy: "user"}, nil},
		{"unknown model", store.UsageQuery{Model: "mistral", GroupBy: "model"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantRows(t, tc.name, queryUsage(t, s, tc.q), tc.want)
		})
	}
}

// From is inclusive and To exclusive, at the minute.
func testUsageTimeBounds(t *testing.T, s store.Store) {
	addUsage(t, s, usageFixture...)
	tests := []struct {
		name     string
		from, to time.Time
		want     []store.UsageRow
	}{
		{"from a minute on", m0.Add(time.Hour), time.Time{}, []store.UsageRow{row("ann", 4, 102, 203, 0, 1), row("bob", 4, 15, 25, 0, 0)}},
		{"up to a minute", time.Time{}, m0.Add(day), []store.UsageRow{row("bob", 5, 15, 25, 0, 0), row("ann", 3, 12, 23, 1, 0)}},
		{"between", m0.Add(time.Hour), m0.Add(day), []store.UsageRow{row("bob", 4, 15, 25, 0, 0), row("ann", 1, 2, 3, 0, 0)}},
		{"one minute", m0, m0.Add(time.Minute), []store.UsageRow{row("ann", 2, 10, 20, 1, 0), row("bob", 1, 0, 0, 0, 0)}},
		{"nothing in range", m0.Add(-time.Hour), m0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantRows(t, tc.name, queryUsage(t, s, store.UsageQuery{From: tc.from, To: tc.to, GroupBy: "user"}), tc.want)
		})
	}
}

// Counts of one key add up, within a batch and across batches, whatever
// second or time zone the minute was given in.
func testAddUsageAddsToItsMinute(t *testing.T, s store.Store) {
	east := time.FixedZone("UTC+2", 2*60*60)
	one := store.UsageMinute{UserID: "ann", TokenID: "tok-a", Model: "llama", RouteKind: "model", Requests: 1, PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}
	first, second, third := one, one, one
	first.Minute = m0.Add(5 * time.Second)
	second.Minute = m0.Add(50 * time.Second).In(east)
	third.Minute = m0
	addUsage(t, s, first, second)
	addUsage(t, s, third)
	wantRows(t, "the minute", queryUsage(t, s, store.UsageQuery{From: m0, To: m0.Add(time.Minute), GroupBy: "hour"}),
		[]store.UsageRow{row("2030-01-02T03:00:00Z", 3, 9, 12, 0, 0)})
	noErr(t, "AddUsage of nothing", s.AddUsage(t.Context(), nil))
}

// Many instances flush at once: every count arrives, none twice.
func testConcurrentAddUsage(t *testing.T, s store.Store) {
	const writers, batches = 16, 20
	ann := store.UsageMinute{Minute: m0, UserID: "ann", TokenID: "tok-a", Model: "llama", RouteKind: "model", Requests: 1, PromptTokens: 5, CompletionTokens: 2, TotalTokens: 7}
	bob := store.UsageMinute{Minute: m0, UserID: "bob", TokenID: "tok-b", Model: "llama", RouteKind: "model", Requests: 1, PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3, Errors: 1}
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				// Half the writers name the rows in the other order.
				batch := []store.UsageMinute{ann, bob}
				if (w+b)%2 == 1 {
					batch = []store.UsageMinute{bob, ann}
				}
				errs <- s.AddUsage(t.Context(), batch)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, "concurrent AddUsage", err)
	}
	const n = writers * batches
	wantRows(t, "by user", queryUsage(t, s, store.UsageQuery{GroupBy: "user"}),
		[]store.UsageRow{row("ann", n, 5*n, 2*n, 0, 0), row("bob", n, n, 2*n, n, 0)})
}

func testDeleteUsageBefore(t *testing.T, s store.Store) {
	addUsage(t, s, usageFixture...)
	n, err := s.DeleteUsageBefore(t.Context(), m0.Add(time.Hour))
	noErr(t, "DeleteUsageBefore", err)
	if n != 2 {
		t.Fatalf("DeleteUsageBefore deleted %d minutes, want 2", n)
	}
	wantRows(t, "after retention", queryUsage(t, s, store.UsageQuery{GroupBy: "user"}),
		[]store.UsageRow{row("ann", 4, 102, 203, 0, 1), row("bob", 4, 15, 25, 0, 0)})
	n, err = s.DeleteUsageBefore(t.Context(), m0.Add(time.Hour))
	noErr(t, "DeleteUsageBefore again", err)
	if n != 0 {
		t.Fatalf("DeleteUsageBefore again deleted %d minutes, want 0", n)
	}
}

func testQueryUsageUnknownGroup(t *testing.T, s store.Store) {
	for _, groupBy := range []string{"", "role", "user_id; DROP TABLE usage_minutes"} {
		if _, err := s.QueryUsage(t.Context(), store.UsageQuery{GroupBy: groupBy}); err == nil {
			t.Fatalf("QueryUsage(group_by %q) succeeded", groupBy)
		}
	}
}

// Quota hits are counted apart, add up like every count, and are a part of
// denied.
func testUsageQuotaHits(t *testing.T, s store.Store) {
	hit := store.UsageMinute{Minute: m0, UserID: "ann", Model: "llama", RouteKind: "model", Denied: 3, QuotaHits: 2}
	addUsage(t, s, hit, hit)
	addUsage(t, s, store.UsageMinute{Minute: m0.Add(day), UserID: "ann", Model: "llama", RouteKind: "model", Denied: 1})
	want := row("2030-01-02T00:00:00Z", 0, 0, 0, 0, 6)
	want.QuotaHits = 4
	wantRows(t, "by day", queryUsage(t, s, store.UsageQuery{GroupBy: "day"}),
		[]store.UsageRow{want, row("2030-01-03T00:00:00Z", 0, 0, 0, 0, 1)})
}
