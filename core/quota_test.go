package core

import (
	"testing"

	"github.com/gatehouse/gatehouse/quota"
	"github.com/gatehouse/gatehouse/store"
)

// TestUserBucketNarrowsRoleByOwnLimits: the user's bucket carries their
// role's limits narrowed by their own, and exists when either sets one.
func TestUserBucketNarrowsRoleByOwnLimits(t *testing.T) {
	rt := &Runtime{}
	rt.quotas.setRoleLimits(Settings{Roles: map[string]RoleSetting{
		"user": {Limits: &quota.Limits{RequestsPerMinute: 10, TokensPerDay: 1000}},
	}})
	tests := []struct {
		name string
		user store.User
		want quota.Limits // zero: no bucket
	}{
		{"role only", store.User{ID: "u", Role: "user"}, quota.Limits{RequestsPerMinute: 10, TokensPerDay: 1000}},
		{"own narrower", store.User{ID: "u", Role: "user", Limits: &quota.Limits{RequestsPerMinute: 2}},
			quota.Limits{RequestsPerMinute: 2, TokensPerDay: 1000}},
		{"own wider does not widen", store.User{ID: "u", Role: "user", Limits: &quota.Limits{RequestsPerMinute: 50, TokensPerMinute: 300}},
			quota.Limits{RequestsPerMinute: 10, TokensPerMinute: 300, TokensPerDay: 1000}},
		{"own without role limits", store.User{ID: "u", Role: "manager", Limits: &quota.Limits{RequestsPerMinute: 2}},
			quota.Limits{RequestsPerMinute: 2}},
		{"cleared", store.User{ID: "u", Role: "manager", Limits: &quota.Limits{}}, quota.Limits{}},
		{"none", store.User{ID: "u", Role: "manager"}, quota.Limits{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Subject{User: tc.user}
			buckets := rt.buckets(s)
			if has := rt.HasLimits(s); has != !tc.want.IsZero() {
				t.Errorf("HasLimits = %v, want %v", has, !tc.want.IsZero())
			}
			if tc.want.IsZero() {
				if len(buckets) != 0 {
					t.Fatalf("buckets = %+v, want none", buckets)
				}
				return
			}
			if len(buckets) != 1 || buckets[0].Key != "user:u" || buckets[0].Limits != tc.want {
				t.Fatalf("buckets = %+v, want user:u with %+v", buckets, tc.want)
			}
		})
	}
}
