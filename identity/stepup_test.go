package identity

import (
	"testing"
	"time"
)

// TestStepUpSatisfied: an acr is one of the listed, every amr value is
// needed, and max_age counts from auth_time with a little clock skew.
func TestStepUpSatisfied(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	su := &StepUp{ACR: []string{"urn:mfa", "urn:hw"}, AMR: []string{"pwd", "otp"}, MaxAge: 10 * time.Minute}
	for _, tc := range []struct {
		name     string
		acr      string
		amr      []string
		authTime time.Time
		ok       bool
		missing  string
	}{
		{"all met", "urn:hw", []string{"otp", "pwd", "hwk"}, now.Add(-9 * time.Minute), true, ""},
		{"another acr", "urn:pwd", []string{"pwd", "otp"}, now, false, "an authentication of class urn:mfa or urn:hw"},
		{"an amr value missing", "urn:mfa", []string{"pwd"}, now, false, "an authentication with pwd and otp"},
		{"too old", "urn:mfa", []string{"pwd", "otp"}, now.Add(-11 * time.Minute), false, "a sign-in within the last 10m0s"},
		{"within the skew", "urn:mfa", []string{"pwd", "otp"}, now.Add(-10*time.Minute - 20*time.Second), true, ""},
		{"auth_time unknown", "urn:mfa", []string{"pwd", "otp"}, time.Time{}, false, "a sign-in within the last 10m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, missing := su.Satisfied(tc.acr, tc.amr, tc.authTime, now)
			if ok != tc.ok || missing != tc.missing {
				t.Fatalf("Satisfied = %v %q, want %v %q", ok, missing, tc.ok, tc.missing)
			}
		})
	}
	if ok, _ := (*StepUp)(nil).Satisfied("", nil, time.Time{}, now); !ok {
		t.Fatal("no step-up is not satisfied")
	}
}
