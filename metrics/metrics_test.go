package metrics

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newTestSet() *Set {
	return New(Sources{
		Caches:        map[string]func() (uint64, uint64){"tokens": func() (uint64, uint64) { return 7, 2 }},
		RevocationAge: func() time.Duration { return 1500 * time.Millisecond },
		MaxStaleness:  30 * time.Second,
		Fanout:        true,
	})
}

func TestSetRegistersOnceInAPedanticRegistry(t *testing.T) {
	s := newTestSet()
	reg := prometheus.NewPedanticRegistry() // what caddy.Context gives
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(reg); err != nil {
		t.Fatalf("registering the same set again: %v, want no error", err)
	}
	if err := newTestSet().Register(reg); err == nil {
		t.Fatal("a second set in one registry registered; want AlreadyRegisteredError")
	}
	s.Decision("model", Allowed)
	s.FanoutHealthy(true)
	s.StoreCounts(3, 2)
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("Gather: %v", err)
	}
	want := `
# HELP gatehouse_cache_hits_total Lookups answered by a cache, by cache.
# TYPE gatehouse_cache_hits_total counter
gatehouse_cache_hits_total{cache="tokens"} 7
# HELP gatehouse_cache_misses_total Lookups a cache could not answer, by cache.
# TYPE gatehouse_cache_misses_total counter
gatehouse_cache_misses_total{cache="tokens"} 2
# HELP gatehouse_revocation_list_age_seconds Age of the in-memory revocation list; bearer tokens are refused while it is older than max_staleness.
# TYPE gatehouse_revocation_list_age_seconds gauge
gatehouse_revocation_list_age_seconds 1.5
# HELP gatehouse_fanout_healthy 1 while this instance hears its own heartbeat over Redis, 0 while announcements may be lost.
# TYPE gatehouse_fanout_healthy gauge
gatehouse_fanout_healthy 1
# HELP gatehouse_outbox_backlog Notifications not delivered yet (store count, refreshed every few seconds).
# TYPE gatehouse_outbox_backlog gauge
gatehouse_outbox_backlog 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"gatehouse_cache_hits_total", "gatehouse_cache_misses_total", "gatehouse_revocation_list_age_seconds",
		"gatehouse_fanout_healthy", "gatehouse_outbox_backlog"); err != nil {
		t.Fatal(err)
	}
}

func TestWithoutRedisNoFanoutGauge(t *testing.T) {
	s := New(Sources{})
	s.FanoutHealthy(true) // no gauge: nothing happens
	if n := testutil.CollectAndCount(s, "gatehouse_fanout_healthy"); n != 0 {
		t.Fatalf("gatehouse_fanout_healthy series = %d without Redis, want 0", n)
	}
}

func TestModelsPastTheBoundCountAsOther(t *testing.T) {
	s := New(Sources{})
	for i := range maxModels + 10 {
		s.TokensMetered(fmt.Sprintf("model-%d", i), 10, 1)
	}
	if n := testutil.CollectAndCount(s, "gatehouse_tokens_metered_total"); n != 2*(maxModels+1) {
		t.Fatalf("series = %d, want %d (the first %d models and other, prompt and completion each)", n, 2*(maxModels+1), maxModels)
	}
	other := s.tokensMetered.get(Other)
	if got := testutil.ToFloat64(other[0]); got != 100 {
		t.Fatalf("prompt tokens of other = %v, want 100 (ten models of 10)", got)
	}
	if got := testutil.ToFloat64(s.tokensMetered.get("model-0")[1]); got != 1 {
		t.Fatalf("completion tokens of model-0 = %v, want 1", got)
	}
}

func TestDecisionCodesPastTheBoundCountAsOtherOfTheirRoute(t *testing.T) {
	s := New(Sources{})
	for i := range maxDecisions + 5 {
		s.Decision("model", fmt.Sprintf("code-%d", i))
	}
	if got := testutil.ToFloat64(s.decisions.get(decisionKey{"model", Other})); got != 5 {
		t.Fatalf("decisions{route=model,code=other} = %v, want 5", got)
	}
}

func TestHotPathAllocatesNothing(t *testing.T) {
	s := New(Sources{})
	start := time.Now()
	s.Decision("other", Allowed)
	allocs := testing.AllocsPerRun(100, func() {
		s.ObserveIdentify(Token, start)
		s.ObserveDecide(start)
		s.Decision("other", Allowed)
	})
	if allocs != 0 {
		t.Fatalf("allocations per request = %v, want 0", allocs)
	}
}

func TestNilSetRecordsNothing(t *testing.T) {
	var s *Set
	s.Decision("model", Allowed)
	s.ObserveDecide(time.Now())
	s.ObserveIdentify(Session, time.Now())
	s.Login(LoginOK)
	s.QuotaRefused("tokens_per_day")
	s.TokensMetered("m", 1, 1)
	s.Delivery("webhook", true)
	s.StoreCounts(1, 1)
	s.FanoutHealthy(true)
}

// TestDashboardQueriesNameTheseMetrics: every gatehouse_ name in the Grafana
// dashboard is one the set reports.
func TestDashboardQueriesNameTheseMetrics(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "docs", "grafana-gatehouse.json"))
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc, 100)
	newTestSet().Describe(ch)
	close(ch)
	known := map[string]bool{}
	for d := range ch {
		name := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String())[1]
		known[name] = true
	}
	for _, name := range regexp.MustCompile(`gatehouse_[a-z_]+`).FindAllString(string(data), -1) {
		if base := strings.TrimSuffix(name, "_bucket"); !known[base] {
			t.Errorf("the dashboard queries %s, which the set does not report", name)
		}
	}
}

// BenchmarkHotPath is what the metrics add to one cached bearer request:
// two latency observations (with their clock reads) and one decision.
func BenchmarkHotPath(b *testing.B) {
	s := New(Sources{})
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		s.ObserveIdentify(Token, start)
		start = time.Now()
		s.ObserveDecide(start)
		s.Decision("other", Allowed)
	}
}
