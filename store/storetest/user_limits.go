package storetest

import (
	"reflect"
	"testing"

	"github.com/gatehouse/gatehouse/quota"
	"github.com/gatehouse/gatehouse/store"
)

func testSetUserLimits(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	if ann.Limits != nil {
		t.Fatalf("a new user's limits = %+v, want nil", ann.Limits)
	}
	want := quota.Limits{RequestsPerMinute: 2, TokensPerDay: 100000}
	u, err := s.SetUserLimits(t.Context(), ann.ID, &want, store.AuditEvent{Type: "user.limits_changed", ActorID: root.ID, TargetID: ann.ID, Time: t0})
	noErr(t, "SetUserLimits", err)
	if u.Limits == nil || *u.Limits != want {
		t.Fatalf("returned limits = %+v, want %+v", u.Limits, want)
	}
	if got := getUser(t, s, ann.ID).Limits; got == nil || *got != want {
		t.Fatalf("stored limits = %+v, want %+v", got, want)
	}
	listed, _, err := s.ListUsers(t.Context(), store.UserFilter{})
	noErr(t, "ListUsers", err)
	for _, l := range listed {
		if l.ID == ann.ID && (l.Limits == nil || *l.Limits != want) {
			t.Fatalf("listed limits = %+v, want %+v", l.Limits, want)
		}
		if l.ID == root.ID && l.Limits != nil {
			t.Fatalf("another user's limits = %+v, want nil", l.Limits)
		}
	}
	// Other changes to the user keep their limits.
	_, err = s.SetUserRole(t.Context(), ann.ID, "editor", store.AuditEvent{})
	noErr(t, "SetUserRole", err)
	if got := getUser(t, s, ann.ID).Limits; got == nil || *got != want {
		t.Fatalf("limits after a role change = %+v, want %+v", got, want)
	}

	for name, clear := range map[string]*quota.Limits{"zero": {}, "nil": nil} {
		_, err := s.SetUserLimits(t.Context(), ann.ID, &want, store.AuditEvent{})
		noErr(t, "SetUserLimits", err)
		u, err := s.SetUserLimits(t.Context(), ann.ID, clear, store.AuditEvent{})
		noErr(t, "SetUserLimits "+name, err)
		if u.Limits != nil || getUser(t, s, ann.ID).Limits != nil {
			t.Fatalf("%s limits clear them; got %+v", name, getUser(t, s, ann.ID).Limits)
		}
	}

	_, err = s.SetUserLimits(t.Context(), "missing", &want, store.AuditEvent{Type: "user.limits_changed"})
	wantErr(t, "SetUserLimits unknown", err, store.ErrNotFound)
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"user.limits_changed"}) {
		t.Fatalf("audit = %v, want [user.limits_changed] (one per named change, none for an unknown user)", got)
	}
}
