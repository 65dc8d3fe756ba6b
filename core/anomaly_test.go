package core

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testclock"
)

func testAnomalies(t *testing.T, s *AnomalySettings) (*anomalies, *testclock.Clock) {
	t.Helper()
	clock := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a := newAnomalies()
	a.now = clock.Now
	a.configure(s)
	return a, clock
}

// found drains what the detector queued.
func found(a *anomalies) []Anomaly {
	var out []Anomaly
	for {
		select {
		case f := <-a.found:
			out = append(out, f)
		default:
			return out
		}
	}
}

func threshold(count int, window string) *AnomalyThreshold {
	return &AnomalyThreshold{Count: count, Window: window}
}

// TestRefusalBurstFiresPastTheCountOncePerWindow: the count-th refusal within
// the window is not a burst, the next one is, reported once in the window,
// and again in a later window; other subjects count apart.
func TestRefusalBurstFiresPastTheCountOncePerWindow(t *testing.T) {
	a, clock := testAnomalies(t, &AnomalySettings{RefusalBurst: threshold(3, "1m")})
	for range 3 {
		a.refusal("alice")
	}
	a.refusal("bob")
	if got := found(a); len(got) != 0 {
		t.Fatalf("3 refusals with count 3 reported %v", got)
	}
	a.refusal("alice")
	got := found(a)
	if len(got) != 1 || got[0].Kind != AnomalyRefusalBurst || got[0].UserID != "alice" || got[0].Count != 4 || got[0].Window != time.Minute {
		t.Fatalf("the 4th refusal reported %+v, want one refusal_burst of alice, count 4, window 1m", got)
	}
	for range 10 {
		a.refusal("alice")
	}
	if got := found(a); len(got) != 0 {
		t.Fatalf("more refusals in the same window reported again: %v", got)
	}
	clock.Advance(time.Minute)
	for range 3 {
		a.refusal("alice")
	}
	if got := found(a); len(got) != 0 {
		t.Fatalf("a new window counted the old one's refusals: %v", got)
	}
	a.refusal("alice")
	if got := found(a); len(got) != 1 {
		t.Fatalf("a burst in the next window reported %d events, want 1", len(got))
	}
}

// TestRefusalsSpreadOverWindowsAreNoBurst: the count is per window.
func TestRefusalsSpreadOverWindowsAreNoBurst(t *testing.T) {
	a, clock := testAnomalies(t, &AnomalySettings{RefusalBurst: threshold(3, "1m")})
	for range 12 {
		a.refusal("alice")
		clock.Advance(25 * time.Second)
	}
	if got := found(a); len(got) != 0 {
		t.Fatalf("2 or 3 refusals a minute reported %v", got)
	}
}

// TestTokenManyIPsCountsDistinctAddresses: repeating an address adds
// nothing; the address past the count is reported once per window.
func TestTokenManyIPsCountsDistinctAddresses(t *testing.T) {
	a, clock := testAnomalies(t, &AnomalySettings{TokenManyIPs: threshold(2, "10m")})
	for range 5 {
		a.tokenUse("alice", "tok1", "192.0.2.1")
		a.tokenUse("alice", "tok1", "192.0.2.2")
		a.tokenUse("alice", "tok2", "192.0.2.3")
	}
	if got := found(a); len(got) != 0 {
		t.Fatalf("two addresses with count 2 reported %v", got)
	}
	a.tokenUse("alice", "tok1", "192.0.2.9")
	a.tokenUse("alice", "tok1", "192.0.2.10")
	got := found(a)
	if len(got) != 1 || got[0].Kind != AnomalyTokenManyIPs || got[0].TokenID != "tok1" || got[0].Count != 3 || got[0].IP != "192.0.2.9" {
		t.Fatalf("a third address reported %+v, want one token_many_ips of tok1, count 3, from 192.0.2.9", got)
	}
	clock.Advance(10 * time.Minute)
	a.tokenUse("alice", "tok1", "192.0.2.1")
	a.tokenUse("alice", "tok1", "192.0.2.2")
	if got := found(a); len(got) != 0 {
		t.Fatalf("a new window remembered the old addresses: %v", got)
	}
}

// TestFirstModelUseIsOffByDefaultAndOncePerModel.
func TestFirstModelUseIsOffByDefaultAndOncePerModel(t *testing.T) {
	a, _ := testAnomalies(t, nil)
	a.modelUse("alice", "llama3")
	if got := found(a); len(got) != 0 {
		t.Fatalf("first_model_use is off by default, yet reported %v", got)
	}
	on := true
	a.configure(&AnomalySettings{FirstModelUse: &on})
	a.modelUse("alice", "llama3")
	a.modelUse("alice", "llama3")
	a.modelUse("alice", "mistral")
	a.modelUse("bob", "llama3")
	a.modelUse("alice", "")
	got := found(a)
	var uses []string
	for _, f := range got {
		uses = append(uses, f.UserID+"/"+f.Model)
	}
	if strings.Join(uses, " ") != "alice/llama3 alice/mistral bob/llama3" {
		t.Fatalf("first uses reported %v, want alice/llama3 alice/mistral bob/llama3", uses)
	}
}

// TestFirstModelUseStaysBounded: memory holds at most maxTrackedModelUses pairs.
func TestFirstModelUseStaysBounded(t *testing.T) {
	on := true
	a, _ := testAnomalies(t, &AnomalySettings{FirstModelUse: &on})
	for i := range maxTrackedModelUses + 1000 {
		a.modelUse(fmt.Sprint("u", i), "m")
		found(a)
	}
	if n := a.models.Len(); n > maxTrackedModelUses {
		t.Fatalf("remembered %d model uses, more than %d", n, maxTrackedModelUses)
	}
}

// TestLoginFailuresInARow: count failures in a row from one address fire
// once; a success starts over.
func TestLoginFailuresInARow(t *testing.T) {
	a, clock := testAnomalies(t, &AnomalySettings{LoginFailures: &AnomalyThreshold{Count: 3}})
	a.loginFailed("198.51.100.7")
	a.loginFailed("198.51.100.7")
	a.loginSucceeded("198.51.100.7")
	a.loginFailed("198.51.100.7")
	a.loginFailed("198.51.100.7")
	a.loginFailed("203.0.113.1")
	if got := found(a); len(got) != 0 {
		t.Fatalf("failures broken by a success reported %v", got)
	}
	a.loginFailed("198.51.100.7")
	got := found(a)
	if len(got) != 1 || got[0].Kind != AnomalyLoginFailures || got[0].IP != "198.51.100.7" || got[0].Count != 3 || got[0].Window != time.Hour {
		t.Fatalf("3 failures in a row reported %+v, want one login_failures from 198.51.100.7, count 3, window 1h", got)
	}
	a.loginFailed("198.51.100.7")
	if got := found(a); len(got) != 0 {
		t.Fatalf("a 4th failure in the window reported again: %v", got)
	}
	clock.Advance(time.Hour)
	for range 3 {
		a.loginFailed("198.51.100.7")
	}
	if got := found(a); len(got) != 1 {
		t.Fatalf("3 failures an hour later reported %d events, want 1", len(got))
	}
}

// TestDisabledDetectorsReportNothing.
func TestDisabledDetectorsReportNothing(t *testing.T) {
	off := &AnomalyThreshold{Disabled: true}
	a, _ := testAnomalies(t, &AnomalySettings{RefusalBurst: off, TokenManyIPs: off, LoginFailures: off})
	for i := range 50 {
		a.refusal("alice")
		a.tokenUse("alice", "tok", fmt.Sprint("192.0.2.", i))
		a.loginFailed("192.0.2.1")
	}
	if got := found(a); len(got) != 0 {
		t.Fatalf("disabled detectors reported %v", got)
	}
}

// TestAnomalyDefaults: an absent anomalies object keeps the documented defaults.
func TestAnomalyDefaults(t *testing.T) {
	l := limitsOf(nil)
	want := anomalyLimits{refusalBurst: anomalyLimit{20, time.Minute}, tokenManyIPs: anomalyLimit{5, 10 * time.Minute},
		loginFailures: anomalyLimit{5, time.Hour}, usageSpike: spikeLimit{10, time.Hour, 7 * 24 * time.Hour, 10_000}}
	if *l != want {
		t.Fatalf("defaults %+v, want %+v", *l, want)
	}
	l = limitsOf(&AnomalySettings{RefusalBurst: &AnomalyThreshold{Window: "5m"}})
	if l.refusalBurst != (anomalyLimit{20, 5 * time.Minute}) {
		t.Fatalf("a window alone gave %+v, want count 20 and window 5m", l.refusalBurst)
	}
}

// TestValidateAnomalySettings: thresholds are checked with the rest of the settings.
func TestValidateAnomalySettings(t *testing.T) {
	tests := []struct {
		name string
		a    *AnomalySettings
		want string // "" = valid
	}{
		{"absent", nil, ""},
		{"the documented example", &AnomalySettings{RefusalBurst: threshold(20, "1m"), TokenManyIPs: threshold(5, "10m"), LoginFailures: threshold(5, "")}, ""},
		{"days", &AnomalySettings{TokenManyIPs: threshold(5, "1d")}, ""},
		{"negative count", &AnomalySettings{RefusalBurst: threshold(-1, "")}, "anomalies.refusal_burst.count"},
		{"window that does not parse", &AnomalySettings{TokenManyIPs: threshold(5, "soon")}, `anomalies.token_many_ips.window must be a duration from 1s to 7d, not "soon"`},
		{"window too short", &AnomalySettings{LoginFailures: threshold(5, "10ms")}, "anomalies.login_failures.window"},
		{"window too long", &AnomalySettings{RefusalBurst: threshold(5, "30d")}, "anomalies.refusal_burst.window"},
		{"usage spike example", &AnomalySettings{UsageSpike: &UsageSpikeThreshold{Factor: 10, Window: "1h", Baseline: "7d", MinTokens: 10000}}, ""},
		{"usage spike window under a minute", &AnomalySettings{UsageSpike: &UsageSpikeThreshold{Window: "30s"}}, "anomalies.usage_spike.window must be a duration from 1m to 7d"},
		{"usage spike baseline shorter than its window", &AnomalySettings{UsageSpike: &UsageSpikeThreshold{Window: "2h", Baseline: "1h"}}, "anomalies.usage_spike.baseline must be a duration from the window (2h0m0s)"},
		{"usage spike baseline past retention", &AnomalySettings{UsageSpike: &UsageSpikeThreshold{Baseline: "100d"}}, "anomalies.usage_spike.baseline"},
		{"usage spike negative factor", &AnomalySettings{UsageSpike: &UsageSpikeThreshold{Factor: -2}}, "anomalies.usage_spike.factor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validateSettings(Settings{Anomalies: tc.a})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidSettings) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrInvalidSettings containing %q", err, tc.want)
			}
		})
	}
}

// TestNilDetectorDetectsNothing: a Runtime built by hand has none.
func TestNilDetectorDetectsNothing(t *testing.T) {
	var a *anomalies
	a.configure(nil)
	a.refusal("u")
	a.tokenUse("u", "t", "192.0.2.1")
	a.modelUse("u", "m")
	a.loginFailed("192.0.2.1")
	a.loginSucceeded("192.0.2.1")
}

// BenchmarkAnomalyCounting is what a bearer request adds: its token's
// address noted, its model use looked up, both already known.
func BenchmarkAnomalyCounting(b *testing.B) {
	on := true
	a := newAnomalies()
	a.configure(&AnomalySettings{FirstModelUse: &on})
	a.tokenUse("alice", "tok", "192.0.2.1")
	a.modelUse("alice", "llama3")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.tokenUse("alice", "tok", "192.0.2.1")
			a.modelUse("alice", "llama3")
		}
	})
}
