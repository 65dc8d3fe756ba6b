package storetest

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// Temporary elevation (spec §10): a pending request for a higher role, its
// decision, and the fall back when its time is up.

func elevate(t *testing.T, s store.Store, u store.User, role string, d time.Duration, at time.Time) store.Elevation {
	t.Helper()
	e, err := s.CreateElevation(t.Context(), store.Elevation{User: store.RequestUser{ID: u.ID}, FromRole: u.Role, Role: role,
		DurationSeconds: int64(d / time.Second), Reason: "on call", CreatedAt: at}, store.AuditEvent{Type: "elevation.create", Time: at})
	noErr(t, "CreateElevation", err)
	return e
}

func decideElevation(t *testing.T, s store.Store, e store.Elevation, reviewer store.User, approve bool, fromRole string, now time.Time) (store.Elevation, error) {
	t.Helper()
	return s.DecideElevation(t.Context(), store.ElevationDecision{ID: e.ID, Approve: approve, FromRole: fromRole,
		Comment: "ok", ReviewerID: reviewer.ID, Now: now, Audit: store.AuditEvent{Type: "elevation.decide", Time: now}})
}

func testCreateElevation(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	msgs := []store.OutboxMessage{{ID: "hook", Channel: "webhook", Payload: []byte(`{"event":"elevation.requested"}`), CreatedAt: t0}}
	e, err := s.CreateElevation(t.Context(), store.Elevation{User: store.RequestUser{ID: ann.ID}, FromRole: "user", Role: "manager",
		DurationSeconds: 7200, Reason: "incident 42", CreatedAt: t0}, store.AuditEvent{Type: "elevation.create", Time: t0}, msgs...)
	noErr(t, "CreateElevation", err)
	want := store.Elevation{ID: e.ID, User: store.RequestUser{ID: ann.ID, Email: ann.Email, Name: ann.Name}, FromRole: "user",
		Role: "manager", DurationSeconds: 7200, Reason: "incident 42", Status: store.ElevationPending, CreatedAt: t0}
	if e.ID == "" || !reflect.DeepEqual(e, want) {
		t.Fatalf("CreateElevation = %+v, want %+v", e, want)
	}
	got, err := s.GetElevation(t.Context(), e.ID)
	noErr(t, "GetElevation", err)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GetElevation = %+v, want %+v", got, want)
	}
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"elevation.create"}) {
		t.Fatalf("audit = %v, want [elevation.create]", got)
	}
	if got := dueIDs(t, s); !reflect.DeepEqual(got, []string{"hook"}) {
		t.Fatalf("outbox = %v, want [hook]", got)
	}
	_, err = s.CreateElevation(t.Context(), store.Elevation{User: store.RequestUser{ID: ann.ID}, FromRole: "user", Role: "admin", CreatedAt: t0},
		store.AuditEvent{Type: "elevation.create"}, store.OutboxMessage{ID: "again", Channel: "webhook", Payload: []byte("{}"), CreatedAt: t0})
	wantErr(t, "second pending elevation", err, store.ErrConflict)
	if got := dueIDs(t, s); !reflect.DeepEqual(got, []string{"hook"}) {
		t.Fatalf("outbox after the refused one = %v, want [hook]", got)
	}
	_, err = s.CreateElevation(t.Context(), store.Elevation{User: store.RequestUser{ID: "missing"}, FromRole: "user", Role: "admin"}, store.AuditEvent{})
	wantErr(t, "CreateElevation unknown user", err, store.ErrNotFound)
	_, err = s.GetElevation(t.Context(), "missing")
	wantErr(t, "GetElevation unknown", err, store.ErrNotFound)

	noErr(t, "DeleteUser", s.DeleteUser(t.Context(), ann.ID, store.AuditEvent{}))
	_, err = s.GetElevation(t.Context(), e.ID)
	wantErr(t, "elevation of a deleted user", err, store.ErrNotFound)
}

func testListElevations(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	bob := login(t, s, "bob@example.com", false)
	denied := elevate(t, s, ann, "manager", time.Hour, t0)
	_, err := decideElevation(t, s, denied, root, false, "", at(time.Minute))
	noErr(t, "deny", err)
	pending := elevate(t, s, ann, "admin", time.Hour, at(2*time.Minute))
	other := elevate(t, s, bob, "manager", time.Hour, at(3*time.Minute))
	for _, tc := range []struct {
		f    store.ElevationFilter
		want []string
	}{
		{store.ElevationFilter{}, []string{denied.ID, pending.ID, other.ID}},
		{store.ElevationFilter{UserID: ann.ID}, []string{denied.ID, pending.ID}},
		{store.ElevationFilter{Status: store.ElevationPending}, []string{pending.ID, other.ID}},
		{store.ElevationFilter{UserID: ann.ID, Status: store.ElevationDenied}, []string{denied.ID}},
		{store.ElevationFilter{Status: store.ElevationExpired}, nil},
	} {
		list, err := s.ListElevations(t.Context(), tc.f)
		noErr(t, "ListElevations", err)
		var ids []string
		for _, e := range list {
			ids = append(ids, e.ID)
		}
		if !reflect.DeepEqual(ids, tc.want) {
			t.Errorf("ListElevations(%+v) = %v, want %v", tc.f, ids, tc.want)
		}
	}
}

func testApproveElevation(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	e := elevate(t, s, ann, "manager", 2*time.Hour, t0)
	_, err := decideElevation(t, s, e, root, true, "manager", at(time.Minute))
	wantErr(t, "approval against a role the user does not have", err, store.ErrConflict)
	if got := getUser(t, s, ann.ID); got.Role != "user" {
		t.Fatalf("role after the refused approval = %s, want user", got.Role)
	}
	got, err := decideElevation(t, s, e, root, true, "user", at(time.Minute))
	noErr(t, "approve", err)
	end := at(time.Minute + 2*time.Hour)
	if got.Status != store.ElevationApproved || got.FromRole != "user" || got.Comment != "ok" || got.ReviewedBy == nil ||
		got.ReviewedBy.ID != root.ID || !reflect.DeepEqual(got.DecidedAt, ptr(at(time.Minute))) || !reflect.DeepEqual(got.ExpiresAt, &end) {
		t.Fatalf("approved elevation = %+v, want approved by root until %s", got, end)
	}
	if u := getUser(t, s, ann.ID); u.Role != "manager" {
		t.Fatalf("role after approval = %s, want manager", u.Role)
	}
	_, err = decideElevation(t, s, e, root, false, "", at(2*time.Minute))
	wantErr(t, "deciding again", err, store.ErrConflict)
	_, err = s.CreateElevation(t.Context(), store.Elevation{User: store.RequestUser{ID: ann.ID}, FromRole: "manager", Role: "admin", CreatedAt: at(3 * time.Minute)},
		store.AuditEvent{})
	wantErr(t, "a request while one is held", err, store.ErrConflict)
	if got := auditTypes(t, s, store.AuditFilter{Type: "elevation.decide"}); len(got) != 1 {
		t.Fatalf("decision audit events = %v, want one", got)
	}
}

func testDenyElevation(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	e := elevate(t, s, ann, "manager", time.Hour, t0)
	got, err := decideElevation(t, s, e, root, false, "", at(time.Minute))
	noErr(t, "deny", err)
	if got.Status != store.ElevationDenied || got.ExpiresAt != nil || got.ReviewedBy == nil || got.Comment != "ok" {
		t.Fatalf("denied elevation = %+v", got)
	}
	if u := getUser(t, s, ann.ID); u.Role != "user" {
		t.Fatalf("role after denial = %s, want user", u.Role)
	}
	elevate(t, s, ann, "manager", time.Hour, at(2*time.Minute)) // asking again is fine
}

func testConcurrentElevationDecisions(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	e := elevate(t, s, ann, "manager", time.Hour, t0)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = decideElevation(t, s, e, root, i%2 == 0, "user", at(time.Minute)) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else {
			wantErr(t, "losing decision", err, store.ErrConflict)
		}
	}
	if won != 1 {
		t.Fatalf("%d decisions won, want exactly 1", won)
	}
}

func testExpireElevations(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	bob := login(t, s, "bob@example.com", false)
	due := elevate(t, s, ann, "manager", time.Hour, t0)
	_, err := decideElevation(t, s, due, root, true, "user", t0)
	noErr(t, "approve ann", err)
	later := elevate(t, s, bob, "manager", 3*time.Hour, t0)
	_, err = decideElevation(t, s, later, root, true, "user", t0)
	noErr(t, "approve bob", err)

	now := at(time.Hour)
	ended, err := s.ExpireElevations(t.Context(), now, 10, func(e store.Elevation) (store.RequestExpiry, error) {
		if e.Status != store.ElevationExpired || !reflect.DeepEqual(e.EndedAt, &now) {
			t.Errorf("follow got %+v, want it expired at %s", e, now)
		}
		return store.RequestExpiry{
			Outbox: []store.OutboxMessage{{ID: "told-" + e.ID, Channel: "webhook", Payload: []byte("{}"), CreatedAt: now}},
			Audit:  store.AuditEvent{Type: "elevation.expired", TargetID: e.User.ID, Time: now},
		}, nil
	})
	noErr(t, "ExpireElevations", err)
	if len(ended) != 1 || ended[0].ID != due.ID || ended[0].Status != store.ElevationExpired {
		t.Fatalf("ExpireElevations = %+v, want ann's expired", ended)
	}
	if u := getUser(t, s, ann.ID); u.Role != "user" {
		t.Fatalf("ann's role after expiry = %s, want user", u.Role)
	}
	if u := getUser(t, s, bob.ID); u.Role != "manager" {
		t.Fatalf("bob's role before his end = %s, want manager", u.Role)
	}
	if got := auditTypes(t, s, store.AuditFilter{Type: "elevation.expired"}); len(got) != 1 {
		t.Fatalf("expiry audit events = %v, want one", got)
	}
	if got := dueIDs(t, s); !reflect.DeepEqual(got, []string{"told-" + due.ID}) {
		t.Fatalf("outbox = %v, want the expiry's message", got)
	}
	again, err := s.ExpireElevations(t.Context(), now, 10, nil)
	noErr(t, "ExpireElevations again", err)
	if len(again) != 0 {
		t.Fatalf("second pass ended %+v, want nothing", again)
	}
	elevate(t, s, getUser(t, s, ann.ID), "manager", time.Hour, at(2*time.Hour)) // ann may ask again
}

// Someone sets the user's role while the elevation is held: the role they
// set stays when the elevation's time is up.
func testSetUserRoleEndsElevation(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	e := elevate(t, s, ann, "manager", time.Hour, t0)
	_, err := decideElevation(t, s, e, root, true, "user", t0)
	noErr(t, "approve", err)
	_, err = s.SetUserRole(t.Context(), ann.ID, "manager", store.AuditEvent{Type: "user.role_changed", Time: at(time.Minute)})
	noErr(t, "SetUserRole", err)
	got, err := s.GetElevation(t.Context(), e.ID)
	noErr(t, "GetElevation", err)
	if got.Status != store.ElevationEnded || !reflect.DeepEqual(got.EndedAt, ptr(at(time.Minute))) {
		t.Fatalf("elevation after SetUserRole = %+v, want ended at %s", got, at(time.Minute))
	}
	ended, err := s.ExpireElevations(t.Context(), at(2*time.Hour), 10, nil)
	noErr(t, "ExpireElevations", err)
	if len(ended) != 0 {
		t.Fatalf("ExpireElevations ended %+v, want nothing", ended)
	}
	if u := getUser(t, s, ann.ID); u.Role != "manager" {
		t.Fatalf("role after the elevation's time = %s, want manager as set", u.Role)
	}
}

// The fall back never leaves no active admin: the elevation waits.
func testExpireElevationKeepsAnAdmin(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	noErr(t, "activate ann", func() error {
		_, err := s.SetUserStatus(t.Context(), ann.ID, store.StatusActive, store.AuditEvent{})
		return err
	}())
	e := elevate(t, s, ann, "admin", time.Hour, t0)
	_, err := decideElevation(t, s, e, root, true, "user", t0)
	noErr(t, "approve", err)
	_, err = s.SetUserRole(t.Context(), root.ID, "user", store.AuditEvent{})
	noErr(t, "demote root", err)
	ended, err := s.ExpireElevations(t.Context(), at(2*time.Hour), 10, nil)
	noErr(t, "ExpireElevations", err)
	if len(ended) != 0 {
		t.Fatalf("ExpireElevations ended %+v, want the last admin's elevation kept", ended)
	}
	if got, _ := s.GetElevation(t.Context(), e.ID); got.Status != store.ElevationApproved {
		t.Fatalf("the last admin's elevation = %s, want still approved", got.Status)
	}
}
