package core

import (
	"fmt"
	"testing"
	"time"
)

// TestDenialThrottleStoresTheFirstRefusalOfAMinute: a repeated refusal is
// stored once a minute; a full throttle forgets the oldest refusals, not all.
func TestDenialThrottleStoresTheFirstRefusalOfAMinute(t *testing.T) {
	d := newDenialThrottle()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	refusal := denialKey{subject: "u", code: "forbidden", method: "GET", path: "/secret"}
	other := denialKey{subject: "u", code: "forbidden", method: "GET", path: "/other"}
	for _, step := range []struct {
		key  denialKey
		at   time.Duration
		want bool
	}{
		{refusal, 0, true},
		{refusal, 30 * time.Second, false},
		{other, 30 * time.Second, true},
		{refusal, time.Minute - time.Nanosecond, false},
		{refusal, time.Minute, true},
		{refusal, time.Minute + time.Second, false},
	} {
		if got := d.first(step.key, start.Add(step.at)); got != step.want {
			t.Errorf("first(%s) at %v = %v, want %v", step.key.path, step.at, got, step.want)
		}
	}
	now := start.Add(90 * time.Second)
	for i := range maxTrackedDenials + 100 {
		d.first(denialKey{subject: "u", code: "forbidden", method: "GET", path: fmt.Sprint("/", i)}, now)
	}
	if d.first(denialKey{subject: "u", code: "forbidden", method: "GET", path: fmt.Sprint("/", maxTrackedDenials+99)}, now) {
		t.Error("the newest refusal was forgotten: the full throttle emptied itself")
	}
}
