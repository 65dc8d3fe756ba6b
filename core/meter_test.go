package core

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/store"
)

// TestMeterAggregatesPerMinuteAndKey: records of one minute and key add up;
// another minute, model, token or route kind is another row; role and token
// kind are the latest seen; refusals count as denied, not as requests.
func TestMeterAggregatesPerMinuteAndKey(t *testing.T) {
	m0 := time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC)
	base := Usage{UserID: "ann", TokenID: "tok", TokenKind: store.TokenPersonal, Role: "user", Model: "llama3", RouteKind: "model",
		Status: 200, Latency: 120 * time.Millisecond, PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}
	with := func(at time.Duration, change func(*Usage)) Usage {
		u := base
		u.Time = m0.Add(at)
		if change != nil {
			change(&u)
		}
		return u
	}
	var m meter
	for _, u := range []Usage{
		with(1*time.Second, nil),
		with(59*time.Second, func(u *Usage) { u.Status, u.Role = 502, "admin" }),
		with(20*time.Second, func(u *Usage) { u.Estimated = true }),
		with(30*time.Second, func(u *Usage) { u.Denied, u.PromptTokens, u.CompletionTokens, u.TotalTokens = true, 0, 0, 0 }),
		with(time.Minute, nil),                                      // the next minute
		with(0, func(u *Usage) { u.Model = "qwen" }),                // another model
		with(0, func(u *Usage) { u.TokenID, u.TokenKind = "", "" }), // a session
	} {
		m.addLocked(u)
	}
	got, dropped := m.take()
	if dropped != 0 {
		t.Fatalf("dropped %d", dropped)
	}
	slices.SortFunc(got, func(a, b store.UsageMinute) int {
		return strings.Compare(a.Minute.Format(time.RFC3339)+a.Model+a.TokenID, b.Minute.Format(time.RFC3339)+b.Model+b.TokenID)
	})
	row := func(minute time.Time, model, token, kind, role string, requests, errors, denied, tokens, estimated, latency int64) store.UsageMinute {
		return store.UsageMinute{Minute: minute, UserID: "ann", TokenID: token, TokenKind: kind, Role: role, Model: model, RouteKind: "model",
			Requests: requests, Errors: errors, Denied: denied, PromptTokens: 10 * tokens, CompletionTokens: 5 * tokens, TotalTokens: 15 * tokens,
			Estimated: estimated, LatencyMS: latency}
	}
	want := []store.UsageMinute{
		row(m0, "llama3", "", "", "user", 1, 0, 0, 1, 0, 120),
		row(m0, "llama3", "tok", store.TokenPersonal, "user", 3, 1, 1, 3, 1, 360),
		row(m0, "qwen", "tok", store.TokenPersonal, "user", 1, 0, 0, 1, 0, 120),
		row(m0.Add(time.Minute), "llama3", "tok", store.TokenPersonal, "user", 1, 0, 0, 1, 0, 120),
	}
	// The role is the last recorded for the minute: the refusal's "user"
	// came after the 502's "admin".
	if !slices.Equal(got, want) {
		t.Fatalf("minutes:\n got %+v\nwant %+v", got, want)
	}
	if again, _ := m.take(); len(again) != 0 {
		t.Fatalf("take left %d minutes behind", len(again))
	}
}

// TestMeterIsBounded: past meterMaxKeys distinct keys, records of new keys
// are dropped and counted; existing keys still add up.
func TestMeterIsBounded(t *testing.T) {
	var m meter
	now := time.Now()
	for i := range meterMaxKeys + 10 {
		m.addLocked(Usage{Time: now, UserID: "u" + string(rune('a'+i%26)) + time.Duration(i).String(), RouteKind: "model", Status: 200})
	}
	m.addLocked(Usage{Time: now, UserID: "ua0s", RouteKind: "model", Status: 200}) // the first key again
	if len(m.minutes) != meterMaxKeys {
		t.Fatalf("meter holds %d keys, want %d", len(m.minutes), meterMaxKeys)
	}
	got, dropped := m.take()
	if dropped != 10 {
		t.Errorf("dropped %d records, want 10", dropped)
	}
	for _, g := range got {
		if g.UserID == "ua0s" && g.Requests != 2 {
			t.Errorf("a held key counted %d requests, want 2", g.Requests)
		}
	}
}

// usageStore records what AddUsage is given, or fails.
type usageStore struct {
	store.Store
	fail  error
	calls [][]store.UsageMinute
}

func (s *usageStore) AddUsage(_ context.Context, minutes []store.UsageMinute) error {
	if s.fail != nil {
		return s.fail
	}
	s.calls = append(s.calls, minutes)
	return nil
}

// TestFlushUsageKeepsWhatTheStoreRefused: a failed flush keeps the minutes,
// and the next one writes them together with what came in between.
func TestFlushUsageKeepsWhatTheStoreRefused(t *testing.T) {
	st := &usageStore{fail: errors.New("store down")}
	rt := &Runtime{Store: st, Logger: zap.NewNop(), meter: new(meter)}
	now := time.Now()
	u := Usage{Time: now, UserID: "ann", RouteKind: "model", Status: 200, TotalTokens: 7}
	rt.Meter(u)
	rt.flushUsage(context.Background())
	rt.Meter(u)
	st.fail = nil
	rt.flushUsage(context.Background())
	if len(st.calls) != 1 || len(st.calls[0]) != 1 {
		t.Fatalf("AddUsage calls %+v, want one with one minute", st.calls)
	}
	if g := st.calls[0][0]; g.Requests != 2 || g.TotalTokens != 14 {
		t.Fatalf("flushed %+v, want 2 requests and 14 tokens", g)
	}
	rt.flushUsage(context.Background())
	if len(st.calls) != 1 {
		t.Fatalf("an empty meter wrote to the store: %+v", st.calls)
	}
}

// TestMeterFlushesToTheStore: through a real store, what the meter
// recorded is what QueryUsage reports, and Stop writes what is left.
func TestMeterFlushesToTheStore(t *testing.T) {
	rt := openTestRuntime(t)
	now := time.Now()
	for range 3 {
		rt.Meter(Usage{Time: now, UserID: "ann", Model: "llama3", RouteKind: "model", Status: 200, PromptTokens: 2, CompletionTokens: 3, TotalTokens: 5})
	}
	rt.Meter(Usage{Time: now, UserID: "ann", Model: "llama3", RouteKind: "model", Status: 403, Denied: true})
	rt.flushUsage(context.Background())
	rt.Meter(Usage{Time: now, UserID: "ann", Model: "llama3", RouteKind: "model", Status: 500})
	rt.Stop() // the final flush
	rows, err := rt.Store.QueryUsage(context.Background(), store.UsageQuery{GroupBy: "user"})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.UsageRow{{Key: "ann", Requests: 4, PromptTokens: 6, CompletionTokens: 9, TotalTokens: 15, Errors: 1, Denied: 1}}
	if !slices.Equal(rows, want) {
		t.Fatalf("QueryUsage = %+v, want %+v", rows, want)
	}
}
