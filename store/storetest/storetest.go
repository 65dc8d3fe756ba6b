// Package storetest is the conformance suite every store.Store backend runs,
// so that the backends are interchangeable. Only the store tests import it.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// t0 has microsecond precision, the finest every backend keeps.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ptr(t time.Time) *time.Time { return &t }

// Run runs every conformance test; open must return a new, empty store and
// arrange for it to be closed when t ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Ping", testPing},
		{"RecordLoginCreatesPendingUser", testRecordLoginCreates},
		{"RecordLoginRefreshesProfile", testRecordLoginRefreshes},
		{"RecordLoginBootstrapAdmin", testRecordLoginBootstrap},
		{"GetUserUnknown", testGetUserUnknown},
		{"ListUsersPagination", testListUsersPagination},
		{"ListUsersFilters", testListUsersFilters},
		{"ListUsersLimits", testListUsersLimits},
		{"SetUserRole", testSetUserRole},
		{"LastAdminRule", testLastAdmin},
		{"ConcurrentLastAdmin", testConcurrentLastAdmin},
		{"SetUserStatus", testSetUserStatus},
		{"SetUserLimits", testSetUserLimits},
		{"SuspensionDeletesSessions", testSuspensionDeletesSessions},
		{"ExpireAccess", testExpireAccess},
		{"DeleteUser", testDeleteUser},
		{"Sessions", testSessions},
		{"RotateSession", testRotateSession},
		{"DeleteExpiredSessions", testDeleteExpiredSessions},
		{"CreateAccessRequest", testCreateAccessRequest},
		{"SecondPendingRequestConflicts", testSecondPendingRequest},
		{"ConcurrentPendingRequests", testConcurrentPendingRequests},
		{"ListAccessRequests", testListAccessRequests},
		{"ApproveAccessRequest", testApprove},
		{"DenyAccessRequest", testDeny},
		{"DecideIsAtomic", testDecideAtomic},
		{"ConcurrentDecisions", testConcurrentDecisions},
		{"CreateAccessRequestOutbox", testCreateAccessRequestOutbox},
		{"ExpireAccessRequests", testExpireAccessRequests},
		{"ExpireAccessRequestsOldestFirst", testExpireAccessRequestsOldestFirst},
		{"ExpireAccessRequestsFollowFails", testExpireAccessRequestsFollowFails},
		{"ConcurrentExpiryAndDecision", testConcurrentExpiryAndDecision},
		{"CreateElevation", testCreateElevation},
		{"ListElevations", testListElevations},
		{"ApproveElevation", testApproveElevation},
		{"DenyElevation", testDenyElevation},
		{"ConcurrentElevationDecisions", testConcurrentElevationDecisions},
		{"ExpireElevations", testExpireElevations},
		{"SetUserRoleEndsElevation", testSetUserRoleEndsElevation},
		{"ExpireElevationKeepsAnAdmin", testExpireElevationKeepsAnAdmin},
		{"Audit", testAudit},
		{"Outbox", testOutbox},
		{"OutboxClaims", testOutboxClaims},
		{"SigningKeys", testSigningKeys},
		{"PromoteSigningKey", testPromoteSigningKey},
		{"ReplaceSigningKeys", testReplaceSigningKeys},
		{"Settings", testSettings},
		{"SettingsCompareAndSwap", testSettingsCompareAndSwap},
		{"TimesAreUTC", testTimesUTC},
		{"CreateToken", testCreateToken},
		{"ListTokens", testListTokens},
		{"RevokeToken", testRevokeToken},
		{"ConcurrentRevocations", testConcurrentRevocations},
		{"RevokedTokens", testRevokedTokens},
		{"MarkTokensUsed", testMarkTokensUsed},
		{"DeleteUserRevokesTokens", testDeleteUserRevokesTokens},
		{"LeavingActiveRevokesTokens", testLeavingActiveRevokesTokens},
		{"RevokedTokensSince", testRevokedTokensSince},
		{"RevokeSystemTokensOf", testRevokeSystemTokensOf},
		{"CreateTokenRacesDeleteUser", testCreateTokenRacesDeleteUser},
		{"TokenTimesAreUTC", testTokenTimesUTC},
		{"UsageGroups", testUsageGroups},
		{"UsageTiesOrderedByKey", testUsageTiesOrderedByKey},
		{"UsageFilters", testUsageFilters},
		{"UsageTimeBounds", testUsageTimeBounds},
		{"UsageQuotaHits", testUsageQuotaHits},
		{"AddUsageAddsToItsMinute", testAddUsageAddsToItsMinute},
		{"ConcurrentAddUsage", testConcurrentAddUsage},
		{"DeleteUsageBefore", testDeleteUsageBefore},
		{"QueryUsageUnknownGroup", testQueryUsageUnknownGroup},
		{"BreakGlassGrant", testBreakGlassGrant},
		{"BreakGlassCodes", testBreakGlassCodes},
		{"ConcurrentBreakGlassCode", testConcurrentBreakGlassCode},
		{"ListBreakGlassGrants", testListBreakGlassGrants},
		{"EndBreakGlassGrants", testEndBreakGlassGrants},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// --- helpers ---

func login(t *testing.T, s store.Store, email string, bootstrap bool) store.User {
	t.Helper()
	u, err := s.RecordLogin(t.Context(), store.LoginInfo{
		Issuer: "https://idp.example", Subject: "sub-" + email, Email: email, Name: "Name of " + email,
		BootstrapAdmin: bootstrap, Now: t0,
	})
	if err != nil {
		t.Fatalf("RecordLogin(%s): %v", email, err)
	}
	return u
}

func admin(t *testing.T, s store.Store, email string) store.User {
	t.Helper()
	return login(t, s, email, true)
}

func getUser(t *testing.T, s store.Store, id string) store.User {
	t.Helper()
	u, err := s.GetUser(t.Context(), id)
	if err != nil {
		t.Fatalf("GetUser(%s): %v", id, err)
	}
	return u
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func request(t *testing.T, s store.Store, u store.User, role string, created time.Time) store.AccessRequest {
	t.Helper()
	r, err := s.CreateAccessRequest(t.Context(), store.AccessRequest{
		User: store.RequestUser{ID: u.ID}, Name: u.Name, Team: "ml", Purpose: "chat", RequestedRole: role, CreatedAt: created,
	}, store.AuditEvent{})
	if err != nil {
		t.Fatalf("CreateAccessRequest(%s): %v", u.Email, err)
	}
	return r
}

func session(id, userID string) store.Session {
	return store.Session{ID: id, UserID: userID, CreatedAt: t0, LastSeenAt: t0, ExpiresAt: at(time.Hour), IDTokenHint: "hint-" + id}
}

func auditTypes(t *testing.T, s store.Store, f store.AuditFilter) []string {
	t.Helper()
	events, err := s.ListAudit(t.Context(), f)
	noErr(t, "ListAudit", err)
	types := []string{}
	for _, e := range events {
		types = append(types, e.Type)
	}
	return types
}

func userEmails(users []store.User) []string {
	out := []string{}
	for _, u := range users {
		out = append(out, u.Email)
	}
	return out
}

// --- users ---

func testPing(t *testing.T, s store.Store) {
	noErr(t, "Ping", s.Ping(t.Context()))
}

func testRecordLoginCreates(t *testing.T, s store.Store) {
	u := login(t, s, "ann@example.com", false)
	if u.ID == "" {
		t.Fatal("RecordLogin assigned no ID")
	}
	want := store.User{
		ID: u.ID, Issuer: "https://idp.example", Subject: "sub-ann@example.com", Email: "ann@example.com",
		Name: "Name of ann@example.com", Role: "user", Status: store.StatusPending, CreatedAt: t0, LastLoginAt: ptr(t0),
	}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("RecordLogin = %+v, want %+v", u, want)
	}
	if got := getUser(t, s, u.ID); !reflect.DeepEqual(got, want) {
		t.Fatalf("GetUser = %+v, want %+v", got, want)
	}
	other, err := s.RecordLogin(t.Context(), store.LoginInfo{Issuer: "https://other.example", Subject: "sub-ann@example.com", Provider: "partners", Now: t0})
	noErr(t, "RecordLogin other issuer", err)
	if other.ID == u.ID {
		t.Fatal("same subject at another issuer must be another user")
	}
	if other.Provider != "partners" || getUser(t, s, other.ID).Provider != "partners" {
		t.Fatalf("the user of provider partners names %q", other.Provider)
	}
}

func testRecordLoginRefreshes(t *testing.T, s store.Store) {
	u := login(t, s, "ann@example.com", false)
	_, err := s.SetUserStatus(t.Context(), u.ID, store.StatusActive, store.AuditEvent{})
	noErr(t, "SetUserStatus", err)
	again, err := s.RecordLogin(t.Context(), store.LoginInfo{
		Issuer: u.Issuer, Subject: u.Subject, Email: "ann@new.example", Name: "Ann New", Provider: "corp", Now: at(time.Hour),
	})
	noErr(t, "RecordLogin again", err)
	want := u
	want.Email, want.Name, want.Status, want.LastLoginAt = "ann@new.example", "Ann New", store.StatusActive, ptr(at(time.Hour))
	want.Provider = "corp" // a user of before several providers learns theirs
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("second RecordLogin = %+v, want %+v", again, want)
	}
}

func testRecordLoginBootstrap(t *testing.T, s store.Store) {
	fresh := admin(t, s, "root@example.com")
	if fresh.Role != "admin" || fresh.Status != store.StatusActive {
		t.Fatalf("new bootstrap user = %s/%s, want admin/active", fresh.Role, fresh.Status)
	}
	pending := login(t, s, "later@example.com", false)
	promoted := admin(t, s, "later@example.com")
	if promoted.ID != pending.ID || promoted.Role != "admin" || promoted.Status != store.StatusActive {
		t.Fatalf("pending bootstrap user = %+v, want the same user as admin/active", promoted)
	}
	suspended := login(t, s, "bad@example.com", false)
	_, err := s.SetUserStatus(t.Context(), suspended.ID, store.StatusSuspended, store.AuditEvent{})
	noErr(t, "SetUserStatus", err)
	still := admin(t, s, "bad@example.com")
	if still.Role != "user" || still.Status != store.StatusSuspended {
		t.Fatalf("suspended bootstrap user = %s/%s, want user/suspended: bootstrap must not undo a suspension", still.Role, still.Status)
	}

	// Once per email: not for a second subject with the same verified email,
	// not for the same subject after it was deleted or demoted.
	other, err := s.RecordLogin(t.Context(), store.LoginInfo{Issuer: "https://other-idp.example", Subject: "sub-2",
		Email: "ROOT@example.com", BootstrapAdmin: true, Now: t0})
	noErr(t, "RecordLogin", err)
	if other.ID == fresh.ID || other.Role != "user" || other.Status != store.StatusPending {
		t.Fatalf("second subject with a bootstrap email = %s/%s, want a pending user", other.Role, other.Status)
	}
	noErr(t, "DeleteUser", s.DeleteUser(t.Context(), fresh.ID, store.AuditEvent{}))
	again := admin(t, s, "root@example.com")
	if again.ID == fresh.ID || again.Role != "user" || again.Status != store.StatusPending {
		t.Fatalf("deleted bootstrap admin signing in again = %s/%s, want a new pending user", again.Role, again.Status)
	}
	_, err = s.SetUserRole(t.Context(), promoted.ID, "user", store.AuditEvent{})
	wantErr(t, "demote the last admin", err, store.ErrConflict)
}

func testGetUserUnknown(t *testing.T, s store.Store) {
	_, err := s.GetUser(t.Context(), "0190c0de-0000-7000-8000-000000000000")
	wantErr(t, "GetUser unknown", err, store.ErrNotFound)
}

func testListUsersPagination(t *testing.T, s store.Store) {
	var want []string
	for i := range 5 {
		want = append(want, login(t, s, fmt.Sprintf("u%d@example.com", i), false).Email)
	}
	var got []string
	cursor := ""
	pages := 0
	for {
		users, next, err := s.ListUsers(t.Context(), store.UserFilter{Limit: 2, Cursor: cursor})
		noErr(t, "ListUsers", err)
		pages++
		got = append(got, userEmails(users)...)
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		cursor = next
	}
	if pages != 3 || !reflect.DeepEqual(got, want) {
		t.Fatalf("pages = %d, users = %v; want 3 pages of %v", pages, got, want)
	}
}

func testListUsersFilters(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	login(t, s, "bob@example.com", false)
	_, err := s.RecordLogin(t.Context(), store.LoginInfo{Issuer: "i", Subject: "c", Email: "carol@corp.example", Name: "Carol ANNA", Now: t0})
	noErr(t, "RecordLogin carol", err)
	login(t, s, "100%_@example.com", false)
	_, err = s.SetUserRole(t.Context(), ann.ID, "editor", store.AuditEvent{})
	noErr(t, "SetUserRole", err)

	tests := []struct {
		name string
		f    store.UserFilter
		want []string
	}{
		{"all", store.UserFilter{}, []string{root.Email, "ann@example.com", "bob@example.com", "carol@corp.example", "100%_@example.com"}},
		{"status", store.UserFilter{Status: store.StatusActive}, []string{root.Email}},
		{"role", store.UserFilter{Role: "editor"}, []string{"ann@example.com"}},
		{"query matches email and name case-insensitively", store.UserFilter{Query: "ANN"}, []string{"ann@example.com", "carol@corp.example"}},
		{"query and status", store.UserFilter{Query: "ann", Status: store.StatusPending}, []string{"ann@example.com", "carol@corp.example"}},
		{"query wildcards are literal", store.UserFilter{Query: "%_"}, []string{"100%_@example.com"}},
		{"no match", store.UserFilter{Query: "zed"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			users, next, err := s.ListUsers(t.Context(), tc.f)
			noErr(t, "ListUsers", err)
			if got := userEmails(users); !reflect.DeepEqual(got, tc.want) || next != "" {
				t.Fatalf("ListUsers(%+v) = %v, %q; want %v, \"\"", tc.f, got, next, tc.want)
			}
		})
	}
}

func testListUsersLimits(t *testing.T, s store.Store) {
	for i := range 201 {
		login(t, s, fmt.Sprintf("u%03d@example.com", i), false)
	}
	for _, tc := range []struct{ limit, want int }{{0, 50}, {-1, 50}, {1000, 200}, {7, 7}} {
		users, next, err := s.ListUsers(t.Context(), store.UserFilter{Limit: tc.limit})
		noErr(t, "ListUsers", err)
		if len(users) != tc.want || next != users[len(users)-1].ID {
			t.Fatalf("ListUsers(Limit %d) = %d users, next %q; want %d and the last ID", tc.limit, len(users), next, tc.want)
		}
	}
}

func testSetUserRole(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	u, err := s.SetUserRole(t.Context(), ann.ID, "editor", store.AuditEvent{Type: "user.role", ActorID: root.ID, TargetID: ann.ID, Time: t0})
	noErr(t, "SetUserRole", err)
	if u.Role != "editor" || getUser(t, s, ann.ID).Role != "editor" {
		t.Fatalf("role = %q, want editor", u.Role)
	}
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"user.role"}) {
		t.Fatalf("audit = %v, want [user.role]", got)
	}
	_, err = s.SetUserRole(t.Context(), "missing", "editor", store.AuditEvent{})
	wantErr(t, "SetUserRole unknown", err, store.ErrNotFound)
	if got := auditTypes(t, s, store.AuditFilter{}); len(got) != 1 {
		t.Fatalf("an event with an empty type must not be written; audit = %v", got)
	}
}

func testLastAdmin(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	refused := store.AuditEvent{Type: "refused", Time: t0}
	changes := []struct {
		name string
		do   func() error
	}{
		{"demote", func() error { _, err := s.SetUserRole(t.Context(), root.ID, "user", refused); return err }},
		{"suspend", func() error {
			_, err := s.SetUserStatus(t.Context(), root.ID, store.StatusSuspended, refused)
			return err
		}},
		{"set pending", func() error {
			_, err := s.SetUserStatus(t.Context(), root.ID, store.StatusPending, refused)
			return err
		}},
		{"delete", func() error { return s.DeleteUser(t.Context(), root.ID, refused) }},
	}
	for _, c := range changes {
		wantErr(t, "last admin "+c.name, c.do(), store.ErrConflict)
	}
	if u := getUser(t, s, root.ID); u.Role != "admin" || u.Status != store.StatusActive {
		t.Fatalf("last admin after refused changes = %s/%s, want admin/active", u.Role, u.Status)
	}
	if got := auditTypes(t, s, store.AuditFilter{}); len(got) != 0 {
		t.Fatalf("refused changes wrote audit events %v", got)
	}

	// An admin who is not active does not count.
	other := login(t, s, "other@example.com", false)
	_, err := s.SetUserRole(t.Context(), other.ID, "admin", store.AuditEvent{})
	noErr(t, "promote pending user", err)
	_, err = s.SetUserRole(t.Context(), root.ID, "user", store.AuditEvent{})
	wantErr(t, "demote with only a pending second admin", err, store.ErrConflict)

	_, err = s.SetUserStatus(t.Context(), other.ID, store.StatusActive, store.AuditEvent{})
	noErr(t, "activate second admin", err)
	_, err = s.SetUserRole(t.Context(), root.ID, "user", store.AuditEvent{})
	noErr(t, "demote with a second active admin", err)
	_, err = s.SetUserStatus(t.Context(), other.ID, store.StatusSuspended, store.AuditEvent{})
	wantErr(t, "suspend the remaining admin", err, store.ErrConflict)

	// Changes that keep the admin active and admin are always fine.
	_, err = s.SetUserRole(t.Context(), other.ID, "admin", store.AuditEvent{})
	noErr(t, "set admin role again", err)
	_, err = s.SetUserStatus(t.Context(), other.ID, store.StatusActive, store.AuditEvent{})
	noErr(t, "set active again", err)
}

// testConcurrentLastAdmin suspends each of two admins at once: the check and
// the write must not interleave, or both would succeed and leave none.
func testConcurrentLastAdmin(t *testing.T, s store.Store) {
	for round := range 5 {
		a := admin(t, s, fmt.Sprintf("a%d@example.com", round))
		b := admin(t, s, fmt.Sprintf("b%d@example.com", round))
		if round > 0 {
			// Leave a and b as the only active admins of this round.
			prev := []string{fmt.Sprintf("a%d@example.com", round-1), fmt.Sprintf("b%d@example.com", round-1)}
			for _, email := range prev {
				users, _, err := s.ListUsers(t.Context(), store.UserFilter{Query: email})
				noErr(t, "ListUsers", err)
				if users[0].Status == store.StatusActive {
					_, err := s.SetUserStatus(t.Context(), users[0].ID, store.StatusSuspended, store.AuditEvent{})
					noErr(t, "suspend previous admin", err)
				}
			}
		}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, id := range []string{a.ID, b.ID} {
			wg.Go(func() { _, errs[i] = s.SetUserStatus(t.Context(), id, store.StatusSuspended, store.AuditEvent{}) })
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) || !(errors.Is(errs[0], store.ErrConflict) || errors.Is(errs[1], store.ErrConflict)) {
			t.Fatalf("round %d: concurrent suspensions = %v, %v; want exactly one ErrConflict", round, errs[0], errs[1])
		}
		active, _, err := s.ListUsers(t.Context(), store.UserFilter{Role: "admin", Status: store.StatusActive})
		noErr(t, "ListUsers", err)
		if len(active) != 1 {
			t.Fatalf("round %d: %d active admins, want 1", round, len(active))
		}
	}
}

func testSetUserStatus(t *testing.T, s store.Store) {
	admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	r := request(t, s, ann, "user", t0)
	_, err := s.DecideAccessRequest(t.Context(), store.Decision{RequestID: r.ID, Approve: true, ExpiresAt: ptr(at(time.Hour)), Now: t0})
	noErr(t, "approve temporarily", err)
	if u := getUser(t, s, ann.ID); u.AccessExpiresAt == nil {
		t.Fatal("temporary approval left no expiry")
	}
	u, err := s.SetUserStatus(t.Context(), ann.ID, store.StatusActive, store.AuditEvent{Type: "user.status"})
	noErr(t, "SetUserStatus active", err)
	if u.Status != store.StatusActive || u.AccessExpiresAt != nil || getUser(t, s, ann.ID).AccessExpiresAt != nil {
		t.Fatalf("after setting active: %+v, want active without expiry", u)
	}
	_, err = s.SetUserStatus(t.Context(), ann.ID, "sleeping", store.AuditEvent{})
	if err == nil || getUser(t, s, ann.ID).Status != store.StatusActive {
		t.Fatalf("SetUserStatus(sleeping) = %v, want an error and no change", err)
	}
	_, err = s.SetUserStatus(t.Context(), "missing", store.StatusActive, store.AuditEvent{})
	wantErr(t, "SetUserStatus unknown", err, store.ErrNotFound)
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"user.status"}) {
		t.Fatalf("audit = %v, want [user.status]", got)
	}
}

func testSuspensionDeletesSessions(t *testing.T, s store.Store) {
	admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	bob := login(t, s, "bob@example.com", false)
	for _, sess := range []store.Session{session("a1", ann.ID), session("a2", ann.ID), session("b1", bob.ID)} {
		noErr(t, "CreateSession", s.CreateSession(t.Context(), sess))
	}
	_, err := s.SetUserStatus(t.Context(), ann.ID, store.StatusActive, store.AuditEvent{})
	noErr(t, "activate", err)
	_, err = s.GetSession(t.Context(), "a1")
	noErr(t, "activation keeps sessions", err)

	_, err = s.SetUserStatus(t.Context(), ann.ID, store.StatusSuspended, store.AuditEvent{})
	noErr(t, "suspend", err)
	for _, id := range []string{"a1", "a2"} {
		_, err := s.GetSession(t.Context(), id)
		wantErr(t, "session of suspended user "+id, err, store.ErrNotFound)
	}
	_, err = s.GetSession(t.Context(), "b1")
	noErr(t, "other user's session survives", err)
}

func testExpireAccess(t *testing.T, s store.Store) {
	admin(t, s, "root@example.com")
	approve := func(email string, expires *time.Time) store.User {
		u := login(t, s, email, false)
		r := request(t, s, u, "user", t0)
		_, err := s.DecideAccessRequest(t.Context(), store.Decision{RequestID: r.ID, Approve: true, ExpiresAt: expires, Now: t0})
		noErr(t, "approve", err)
		return u
	}
	ended := approve("ended@example.com", ptr(at(time.Hour)))
	future := approve("future@example.com", ptr(at(3*time.Hour)))
	permanent := approve("permanent@example.com", nil)
	now := at(2 * time.Hour)

	tests := []struct {
		id      string
		status  string
		expires *time.Time
	}{
		{ended.ID, store.StatusPending, nil},
		{future.ID, store.StatusActive, ptr(at(3 * time.Hour))},
		{permanent.ID, store.StatusActive, nil},
	}
	for _, tc := range tests {
		u, err := s.ExpireAccess(t.Context(), tc.id, now)
		noErr(t, "ExpireAccess", err)
		if u.Status != tc.status || !reflect.DeepEqual(u.AccessExpiresAt, tc.expires) {
			t.Fatalf("ExpireAccess(%s) = %s, %v; want %s, %v", u.Email, u.Status, u.AccessExpiresAt, tc.status, tc.expires)
		}
		if got := getUser(t, s, tc.id); got.Status != tc.status {
			t.Fatalf("stored status of %s = %s, want %s", got.Email, got.Status, tc.status)
		}
	}
	// Exactly at the expiry instant the grant has ended.
	u, err := s.ExpireAccess(t.Context(), future.ID, at(3*time.Hour))
	noErr(t, "ExpireAccess at expiry", err)
	if u.Status != store.StatusPending {
		t.Fatalf("at expiry status = %s, want pending", u.Status)
	}
	_, err = s.ExpireAccess(t.Context(), "missing", now)
	wantErr(t, "ExpireAccess unknown", err, store.ErrNotFound)
}

func testDeleteUser(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	request(t, s, ann, "user", t0)
	noErr(t, "CreateSession", s.CreateSession(t.Context(), session("a1", ann.ID)))
	noErr(t, "AppendAudit", s.AppendAudit(t.Context(), store.AuditEvent{Type: "login", ActorID: ann.ID, Time: t0}))

	noErr(t, "DeleteUser", s.DeleteUser(t.Context(), ann.ID, store.AuditEvent{Type: "user.delete", ActorID: root.ID, TargetID: ann.ID, Time: t0}))
	_, err := s.GetUser(t.Context(), ann.ID)
	wantErr(t, "GetUser deleted", err, store.ErrNotFound)
	_, err = s.GetSession(t.Context(), "a1")
	wantErr(t, "session of deleted user", err, store.ErrNotFound)
	_, err = s.LatestAccessRequest(t.Context(), ann.ID)
	wantErr(t, "request of deleted user", err, store.ErrNotFound)
	if reqs, err := s.ListAccessRequests(t.Context(), "all"); err != nil || len(reqs) != 0 {
		t.Fatalf("ListAccessRequests after delete = %v, %v; want none", reqs, err)
	}
	if got := auditTypes(t, s, store.AuditFilter{UserID: ann.ID}); !reflect.DeepEqual(got, []string{"user.delete", "login"}) {
		t.Fatalf("audit of deleted user = %v, want [user.delete login]", got)
	}
	wantErr(t, "DeleteUser again", s.DeleteUser(t.Context(), ann.ID, store.AuditEvent{}), store.ErrNotFound)
}

// --- sessions ---

func testSessions(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	bob := login(t, s, "bob@example.com", false)
	want := session("s1", ann.ID)
	// How the sign-in was authenticated comes back as it went in (step-up).
	want.Auth = store.AuthContext{ACR: "urn:example:mfa", AMR: []string{"pwd", "otp"}, AuthTime: at(-time.Minute)}
	noErr(t, "CreateSession", s.CreateSession(t.Context(), want))
	wantErr(t, "CreateSession duplicate", s.CreateSession(t.Context(), want), store.ErrConflict)
	wantErr(t, "CreateSession unknown user", s.CreateSession(t.Context(), session("s9", "missing")), store.ErrNotFound)
	got, err := s.GetSession(t.Context(), "s1")
	noErr(t, "GetSession", err)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GetSession = %+v, want %+v", got, want)
	}
	_, err = s.GetSession(t.Context(), "missing")
	wantErr(t, "GetSession missing", err, store.ErrNotFound)

	noErr(t, "TouchSession", s.TouchSession(t.Context(), "s1", at(time.Minute)))
	got, err = s.GetSession(t.Context(), "s1")
	noErr(t, "GetSession", err)
	if !got.LastSeenAt.Equal(at(time.Minute)) || !got.CreatedAt.Equal(t0) {
		t.Fatalf("after touch: %+v, want LastSeenAt +1m and CreatedAt unchanged", got)
	}
	wantErr(t, "TouchSession missing", s.TouchSession(t.Context(), "missing", t0), store.ErrNotFound)

	noErr(t, "DeleteSession", s.DeleteSession(t.Context(), "s1"))
	_, err = s.GetSession(t.Context(), "s1")
	wantErr(t, "GetSession deleted", err, store.ErrNotFound)
	noErr(t, "DeleteSession again", s.DeleteSession(t.Context(), "s1"))

	for _, sess := range []store.Session{session("a1", ann.ID), session("a2", ann.ID), session("b1", bob.ID)} {
		noErr(t, "CreateSession", s.CreateSession(t.Context(), sess))
	}
	noErr(t, "DeleteUserSessions", s.DeleteUserSessions(t.Context(), ann.ID))
	for id, want := range map[string]error{"a1": store.ErrNotFound, "a2": store.ErrNotFound, "b1": nil} {
		_, err := s.GetSession(t.Context(), id)
		if !errors.Is(err, want) {
			t.Fatalf("GetSession(%s) after DeleteUserSessions = %v, want %v", id, err, want)
		}
	}
}

func testRotateSession(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	noErr(t, "CreateSession", s.CreateSession(t.Context(), session("old", ann.ID)))
	next := session("new", ann.ID)
	next.CreatedAt = at(time.Minute)
	noErr(t, "RotateSession", s.RotateSession(t.Context(), "old", next))
	_, err := s.GetSession(t.Context(), "old")
	wantErr(t, "old session after rotation", err, store.ErrNotFound)
	got, err := s.GetSession(t.Context(), "new")
	noErr(t, "new session", err)
	if !reflect.DeepEqual(got, next) {
		t.Fatalf("rotated session = %+v, want %+v", got, next)
	}
	// A stolen copy of the old cookie cannot be rotated a second time.
	wantErr(t, "rotate twice", s.RotateSession(t.Context(), "old", session("stolen", ann.ID)), store.ErrNotFound)
	_, err = s.GetSession(t.Context(), "stolen")
	wantErr(t, "session from failed rotation", err, store.ErrNotFound)
}

func testDeleteExpiredSessions(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	for i, exp := range []time.Duration{time.Minute, time.Hour, 2 * time.Hour} {
		sess := session(fmt.Sprintf("s%d", i), ann.ID)
		sess.ExpiresAt = at(exp)
		noErr(t, "CreateSession", s.CreateSession(t.Context(), sess))
	}
	active := func(now, seenSince time.Time) int {
		n, err := s.CountActiveSessions(t.Context(), now, seenSince)
		noErr(t, "CountActiveSessions", err)
		return n
	}
	if n := active(at(30*time.Minute), t0); n != 2 {
		t.Fatalf("CountActiveSessions = %d, want 2 (not the expired one)", n)
	}
	if n := active(at(30*time.Minute), at(time.Second)); n != 0 {
		t.Fatalf("CountActiveSessions seen since +1s = %d, want 0 (idle sessions are not active)", n)
	}
	n, err := s.DeleteExpiredSessions(t.Context(), at(time.Hour))
	noErr(t, "DeleteExpiredSessions", err)
	if n != 2 {
		t.Fatalf("DeleteExpiredSessions = %d, want 2 (expiry at or before now)", n)
	}
	_, err = s.GetSession(t.Context(), "s2")
	noErr(t, "unexpired session", err)
}

// --- access requests ---

func testCreateAccessRequest(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	r, err := s.CreateAccessRequest(t.Context(), store.AccessRequest{
		User: store.RequestUser{ID: ann.ID}, Name: "Ann", Team: "ml", Purpose: "chat", RequestedRole: "editor", CreatedAt: t0,
	}, store.AuditEvent{Type: "request.create", ActorID: ann.ID, Time: t0})
	noErr(t, "CreateAccessRequest", err)
	want := store.AccessRequest{
		ID: r.ID, User: store.RequestUser{ID: ann.ID, Email: ann.Email, Name: ann.Name}, Name: "Ann", Team: "ml",
		Purpose: "chat", RequestedRole: "editor", Status: store.RequestPending, CreatedAt: t0,
	}
	if r.ID == "" || !reflect.DeepEqual(r, want) {
		t.Fatalf("CreateAccessRequest = %+v, want %+v", r, want)
	}
	for name, get := range map[string]func() (store.AccessRequest, error){
		"GetAccessRequest":    func() (store.AccessRequest, error) { return s.GetAccessRequest(t.Context(), r.ID) },
		"LatestAccessRequest": func() (store.AccessRequest, error) { return s.LatestAccessRequest(t.Context(), ann.ID) },
	} {
		got, err := get()
		noErr(t, name, err)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s = %+v, want %+v", name, got, want)
		}
	}
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"request.create"}) {
		t.Fatalf("audit = %v, want [request.create]", got)
	}
	_, err = s.CreateAccessRequest(t.Context(), store.AccessRequest{User: store.RequestUser{ID: "missing"}}, store.AuditEvent{})
	wantErr(t, "CreateAccessRequest unknown user", err, store.ErrNotFound)
	_, err = s.GetAccessRequest(t.Context(), "missing")
	wantErr(t, "GetAccessRequest unknown", err, store.ErrNotFound)
	_, err = s.LatestAccessRequest(t.Context(), login(t, s, "bob@example.com", false).ID)
	wantErr(t, "LatestAccessRequest without one", err, store.ErrNotFound)
}

func testSecondPendingRequest(t *testing.T, s store.Store) {
	admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	first := request(t, s, ann, "user", t0)
	_, err := s.CreateAccessRequest(t.Context(), store.AccessRequest{User: store.RequestUser{ID: ann.ID}, CreatedAt: at(time.Minute)},
		store.AuditEvent{Type: "request.create"})
	wantErr(t, "second pending request", err, store.ErrConflict)
	if got := auditTypes(t, s, store.AuditFilter{}); len(got) != 0 {
		t.Fatalf("refused request wrote audit %v", got)
	}
	// Once decided, the user may ask again.
	_, err = s.DecideAccessRequest(t.Context(), store.Decision{RequestID: first.ID, Now: at(time.Minute)})
	noErr(t, "deny", err)
	second := request(t, s, ann, "user", at(2*time.Minute))
	latest, err := s.LatestAccessRequest(t.Context(), ann.ID)
	noErr(t, "LatestAccessRequest", err)
	if latest.ID != second.ID {
		t.Fatalf("latest = %s, want the second request %s", latest.ID, second.ID)
	}
}

func testConcurrentPendingRequests(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.CreateAccessRequest(t.Context(), store.AccessRequest{User: store.RequestUser{ID: ann.ID}, CreatedAt: t0}, store.AuditEvent{})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("concurrent CreateAccessRequest: %v, want nil or ErrConflict", err)
		}
	}
	reqs, err := s.ListAccessRequests(t.Context(), store.RequestPending)
	noErr(t, "ListAccessRequests", err)
	if ok != 1 || len(reqs) != 1 {
		t.Fatalf("%d of %d concurrent requests succeeded, %d stored; want exactly 1", ok, n, len(reqs))
	}
}

func testListAccessRequests(t *testing.T, s store.Store) {
	admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	bob := login(t, s, "bob@example.com", false)
	cat := login(t, s, "cat@example.com", false)
	// Created out of ID order to show the list follows CreatedAt.
	request(t, s, cat, "user", at(3*time.Minute))
	request(t, s, ann, "user", at(time.Minute))
	rb := request(t, s, bob, "user", at(2*time.Minute))
	_, err := s.DecideAccessRequest(t.Context(), store.Decision{RequestID: rb.ID, Approve: true, Now: at(time.Hour)})
	noErr(t, "approve", err)
	ids := func(status string) []string {
		reqs, err := s.ListAccessRequests(t.Context(), status)
		noErr(t, "ListAccessRequests", err)
		out := []string{}
		for _, r := range reqs {
			out = append(out, r.User.Email)
		}
		return out
	}
	tests := []struct {
		status string
		want   []string
	}{
		{"", []string{ann.Email, bob.Email, cat.Email}},
		{"all", []string{ann.Email, bob.Email, cat.Email}},
		{store.RequestPending, []string{ann.Email, cat.Email}},
		{store.RequestApproved, []string{bob.Email}},
		{store.RequestDenied, []string{}},
	}
	for _, tc := range tests {
		if got := ids(tc.status); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ListAccessRequests(%q) = %v, want %v", tc.status, got, tc.want)
		}
	}
}

func testApprove(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	r := request(t, s, ann, "editor", t0)
	msg := store.OutboxMessage{ID: "m1", Channel: "email", Payload: []byte(`{"to":"ann"}`), CreatedAt: at(time.Minute)}
	got, err := s.DecideAccessRequest(t.Context(), store.Decision{
		RequestID: r.ID, Approve: true, Role: "analyst", Comment: "welcome", ReviewerID: root.ID,
		ExpiresAt: ptr(at(24 * time.Hour)), Now: at(time.Minute),
		Outbox: []store.OutboxMessage{msg},
		Audit:  store.AuditEvent{Type: "request.approve", ActorID: root.ID, TargetID: ann.ID, Time: at(time.Minute)},
	})
	noErr(t, "approve", err)
	want := r
	want.Status, want.Role, want.Comment = store.RequestApproved, "analyst", "welcome"
	want.ReviewedBy = &store.RequestUser{ID: root.ID, Email: root.Email, Name: root.Name}
	want.DecidedAt, want.ExpiresAt = ptr(at(time.Minute)), ptr(at(24*time.Hour))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("approved = %+v, want %+v", got, want)
	}
	if stored, _ := s.GetAccessRequest(t.Context(), r.ID); !reflect.DeepEqual(stored, want) {
		t.Fatalf("stored = %+v, want %+v", stored, want)
	}
	u := getUser(t, s, ann.ID)
	if u.Status != store.StatusActive || u.Role != "analyst" || !reflect.DeepEqual(u.AccessExpiresAt, ptr(at(24*time.Hour))) {
		t.Fatalf("approved user = %+v, want active analyst until +24h", u)
	}
	due, err := s.DueOutbox(t.Context(), at(time.Hour), 10)
	noErr(t, "DueOutbox", err)
	if len(due) != 1 || due[0].ID != "m1" || !bytes.Equal(due[0].Payload, msg.Payload) {
		t.Fatalf("outbox after approval = %+v, want m1", due)
	}
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"request.approve"}) {
		t.Fatalf("audit = %v, want [request.approve]", got)
	}

	_, err = s.DecideAccessRequest(t.Context(), store.Decision{RequestID: r.ID, Now: at(time.Hour)})
	wantErr(t, "decide a decided request", err, store.ErrConflict)
	_, err = s.DecideAccessRequest(t.Context(), store.Decision{RequestID: "missing", Now: at(time.Hour)})
	wantErr(t, "decide an unknown request", err, store.ErrNotFound)

	// Without a role the requested one is granted.
	bob := login(t, s, "bob@example.com", false)
	rb := request(t, s, bob, "editor", t0)
	got, err = s.DecideAccessRequest(t.Context(), store.Decision{RequestID: rb.ID, Approve: true, ReviewerID: root.ID, Now: t0})
	noErr(t, "approve without role", err)
	if got.Role != "editor" || getUser(t, s, bob.ID).Role != "editor" || got.ExpiresAt != nil || getUser(t, s, bob.ID).AccessExpiresAt != nil {
		t.Fatalf("approval without role = %+v, want the requested role editor, permanently", got)
	}
}

func testDeny(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	r := request(t, s, ann, "editor", t0)
	got, err := s.DecideAccessRequest(t.Context(), store.Decision{
		RequestID: r.ID, Comment: "no", ReviewerID: root.ID, Now: at(time.Minute),
		Audit: store.AuditEvent{Type: "request.deny", Time: at(time.Minute)},
	})
	noErr(t, "deny", err)
	want := r
	want.Status, want.Comment, want.DecidedAt = store.RequestDenied, "no", ptr(at(time.Minute))
	want.ReviewedBy = &store.RequestUser{ID: root.ID, Email: root.Email, Name: root.Name}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("denied = %+v, want %+v", got, want)
	}
	if u := getUser(t, s, ann.ID); u.Status != store.StatusDenied || u.Role != "user" {
		t.Fatalf("denied user = %s/%s, want user/denied", u.Role, u.Status)
	}
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"request.deny"}) {
		t.Fatalf("audit = %v, want [request.deny]", got)
	}
}

// testDecideAtomic makes the last write of a decision fail and checks that
// nothing of it remains.
func testDecideAtomic(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	r := request(t, s, ann, "user", t0)
	noErr(t, "EnqueueOutbox", s.EnqueueOutbox(t.Context(), store.OutboxMessage{ID: "taken", Channel: "webhook", Payload: []byte("{}"), CreatedAt: t0}))
	_, err := s.DecideAccessRequest(t.Context(), store.Decision{
		RequestID: r.ID, Approve: true, Now: t0,
		Outbox: []store.OutboxMessage{{ID: "fresh", Channel: "email", Payload: []byte("{}")}, {ID: "taken", Channel: "email", Payload: []byte("{}")}},
		Audit:  store.AuditEvent{Type: "request.approve"},
	})
	wantErr(t, "decision with a duplicate outbox ID", err, store.ErrConflict)
	if got, _ := s.GetAccessRequest(t.Context(), r.ID); got.Status != store.RequestPending || got.ReviewedBy != nil || got.DecidedAt != nil {
		t.Fatalf("request after failed decision = %+v, want untouched", got)
	}
	if u := getUser(t, s, ann.ID); u.Status != store.StatusPending {
		t.Fatalf("user after failed decision = %s, want pending", u.Status)
	}
	due, err := s.DueOutbox(t.Context(), at(time.Hour), 10)
	noErr(t, "DueOutbox", err)
	if len(due) != 1 || due[0].ID != "taken" {
		t.Fatalf("outbox after failed decision = %+v, want only the earlier message", due)
	}
	if got := auditTypes(t, s, store.AuditFilter{}); len(got) != 0 {
		t.Fatalf("audit after failed decision = %v, want none", got)
	}
}

func testConcurrentDecisions(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	r := request(t, s, ann, "user", t0)
	const n = 20
	results := make([]store.AccessRequest, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = s.DecideAccessRequest(t.Context(), store.Decision{
				RequestID: r.ID, Approve: i%2 == 0, Role: "user", Comment: fmt.Sprintf("reviewer %d", i), ReviewerID: root.ID, Now: t0,
				Outbox: []store.OutboxMessage{{Channel: "webhook", Payload: []byte("{}"), CreatedAt: t0}},
				Audit:  store.AuditEvent{Type: "request.decide", Time: t0},
			})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("decisions %d and %d both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("decision %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no decision succeeded")
	}
	wantStatus, wantUser := store.RequestDenied, store.StatusDenied
	if winner%2 == 0 {
		wantStatus, wantUser = store.RequestApproved, store.StatusActive
	}
	stored, err := s.GetAccessRequest(t.Context(), r.ID)
	noErr(t, "GetAccessRequest", err)
	if stored.Status != wantStatus || stored.Comment != fmt.Sprintf("reviewer %d", winner) || !reflect.DeepEqual(stored, results[winner]) {
		t.Fatalf("stored request = %+v, want the winner's %+v", stored, results[winner])
	}
	if u := getUser(t, s, ann.ID); u.Status != wantUser {
		t.Fatalf("user status = %s, want %s after decision %d", u.Status, wantUser, winner)
	}
	due, err := s.DueOutbox(t.Context(), at(time.Hour), 100)
	noErr(t, "DueOutbox", err)
	if len(due) != 1 {
		t.Fatalf("outbox holds %d messages, want only the winner's", len(due))
	}
	if got := auditTypes(t, s, store.AuditFilter{}); len(got) != 1 {
		t.Fatalf("audit holds %v, want only the winner's event", got)
	}
}

// --- audit ---

func testAudit(t *testing.T, s store.Store) {
	events := []store.AuditEvent{
		{Type: "login", ActorID: "ann", Time: t0, IP: "192.0.2.1", UserAgent: "curl/8"},
		{Type: "user.role", ActorID: "root", TargetID: "ann", Time: at(time.Second), Detail: map[string]any{"role": "editor", "n": 2.0}},
		{Type: "login", ActorID: "bob", Time: at(2 * time.Second)},
		{Type: "user.status", ActorID: "root", TargetID: "bob", Time: at(3 * time.Second)},
	}
	for _, e := range events {
		noErr(t, "AppendAudit", s.AppendAudit(t.Context(), e))
	}
	all, err := s.ListAudit(t.Context(), store.AuditFilter{})
	noErr(t, "ListAudit", err)
	if len(all) != 4 || all[0].ID <= all[1].ID || all[1].ID <= all[2].ID || all[2].ID <= all[3].ID {
		t.Fatalf("ListAudit = %+v, want 4 events with decreasing IDs", all)
	}
	got := all[2]
	want := events[1]
	want.ID = got.ID
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stored event = %+v, want %+v", got, want)
	}
	if e := all[3]; e.IP != "192.0.2.1" || e.UserAgent != "curl/8" || e.Detail != nil {
		t.Fatalf("first event = %+v, want IP, user agent and no detail", e)
	}

	tests := []struct {
		name string
		f    store.AuditFilter
		want []string
	}{
		{"all", store.AuditFilter{}, []string{"user.status", "login", "user.role", "login"}},
		{"actor or target", store.AuditFilter{UserID: "ann"}, []string{"user.role", "login"}},
		{"type", store.AuditFilter{Type: "login"}, []string{"login", "login"}},
		{"user and type", store.AuditFilter{UserID: "bob", Type: "login"}, []string{"login"}},
		{"before", store.AuditFilter{Before: all[1].ID}, []string{"user.role", "login"}},
		{"limit", store.AuditFilter{Limit: 1}, []string{"user.status"}},
		{"no match", store.AuditFilter{UserID: "nobody"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := auditTypes(t, s, tc.f); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ListAudit(%+v) = %v, want %v", tc.f, got, tc.want)
			}
		})
	}
	if err := s.AppendAudit(t.Context(), store.AuditEvent{}); err == nil {
		t.Fatal("AppendAudit without a type succeeded")
	}
}

// --- outbox ---

func testOutbox(t *testing.T, s store.Store) {
	msgs := []store.OutboxMessage{
		{ID: "later", Channel: "webhook", Payload: []byte(`{"n":1}`), CreatedAt: t0, NextAttemptAt: at(time.Hour)},
		{ID: "second", Channel: "email", Payload: []byte(`{"n":2}`), CreatedAt: at(2 * time.Second)},
		{ID: "first", Channel: "webhook", Payload: []byte(`{"n":3}`), CreatedAt: at(time.Second)},
	}
	noErr(t, "EnqueueOutbox", s.EnqueueOutbox(t.Context(), msgs...))
	wantErr(t, "EnqueueOutbox duplicate", s.EnqueueOutbox(t.Context(), msgs[0]), store.ErrConflict)
	noErr(t, "EnqueueOutbox none", s.EnqueueOutbox(t.Context()))

	ids := func(now time.Time, limit int) []string {
		due, err := s.DueOutbox(t.Context(), now, limit)
		noErr(t, "DueOutbox", err)
		out := []string{}
		for _, m := range due {
			out = append(out, m.ID)
		}
		return out
	}
	if got := ids(at(time.Minute), 10); !reflect.DeepEqual(got, []string{"first", "second"}) {
		t.Fatalf("due = %v, want [first second] (oldest first, not yet the later one)", got)
	}
	if got := ids(at(time.Minute), 1); !reflect.DeepEqual(got, []string{"first"}) {
		t.Fatalf("due with limit 1 = %v, want [first]", got)
	}
	due, err := s.DueOutbox(t.Context(), at(time.Minute), 10)
	noErr(t, "DueOutbox", err)
	want := store.OutboxMessage{ID: "first", Channel: "webhook", Payload: []byte(`{"n":3}`), CreatedAt: at(time.Second), NextAttemptAt: at(time.Second)}
	if !reflect.DeepEqual(due[0], want) {
		t.Fatalf("due message = %+v, want %+v (NextAttemptAt defaults to CreatedAt)", due[0], want)
	}

	noErr(t, "MarkOutboxFailed", s.MarkOutboxFailed(t.Context(), "first", at(10*time.Minute), "502 from hook"))
	noErr(t, "MarkOutboxFailed", s.MarkOutboxFailed(t.Context(), "first", at(20*time.Minute), "timeout"))
	if got := ids(at(15*time.Minute), 10); !reflect.DeepEqual(got, []string{"second"}) {
		t.Fatalf("due during back-off = %v, want [second]", got)
	}
	due, err = s.DueOutbox(t.Context(), at(20*time.Minute), 10)
	noErr(t, "DueOutbox", err)
	if due[0].ID != "first" || due[0].Attempts != 2 || due[0].LastError != "timeout" || !due[0].NextAttemptAt.Equal(at(20*time.Minute)) {
		t.Fatalf("retried message = %+v, want 2 attempts, last error timeout, next at +20m", due[0])
	}

	backlog := func() int {
		n, err := s.OutboxBacklog(t.Context())
		noErr(t, "OutboxBacklog", err)
		return n
	}
	if n := backlog(); n != 3 {
		t.Fatalf("OutboxBacklog = %d, want 3 (failed and later messages count)", n)
	}
	noErr(t, "MarkOutboxDelivered", s.MarkOutboxDelivered(t.Context(), "second", at(time.Minute)))
	if got := ids(at(2*time.Hour), 10); !reflect.DeepEqual(got, []string{"later", "first"}) {
		t.Fatalf("due after delivery = %v, want [later first]", got)
	}
	if n := backlog(); n != 2 {
		t.Fatalf("OutboxBacklog after a delivery = %d, want 2", n)
	}
	wantErr(t, "MarkOutboxDelivered unknown", s.MarkOutboxDelivered(t.Context(), "missing", t0), store.ErrNotFound)
	wantErr(t, "MarkOutboxFailed unknown", s.MarkOutboxFailed(t.Context(), "missing", t0, "x"), store.ErrNotFound)

	noErr(t, "EnqueueOutbox without ID", s.EnqueueOutbox(t.Context(), store.OutboxMessage{Channel: "email", Payload: []byte("{}"), CreatedAt: t0}))
	if got := ids(at(2*time.Hour), 10); len(got) != 3 || got[0] == "" {
		t.Fatalf("due = %v, want the message without ID first, with an assigned ID", got)
	}
}

// --- settings ---

func testSettings(t *testing.T, s store.Store) {
	_, err := s.GetSetting(t.Context(), "registration")
	wantErr(t, "GetSetting absent", err, store.ErrNotFound)
	for _, v := range []string{`{"open":true}`, `{"open":false}`} {
		noErr(t, "PutSetting", s.PutSetting(t.Context(), "registration", []byte(v)))
		got, err := s.GetSetting(t.Context(), "registration")
		noErr(t, "GetSetting", err)
		if string(got) != v {
			t.Fatalf("GetSetting = %s, want %s", got, v)
		}
	}
	noErr(t, "PutSetting other", s.PutSetting(t.Context(), "banner", []byte("hi")))
	got, err := s.GetSetting(t.Context(), "registration")
	noErr(t, "GetSetting", err)
	if string(got) != `{"open":false}` {
		t.Fatalf("GetSetting after writing another key = %s", got)
	}
}

// testOutboxClaims: concurrent passes (as on several instances) never claim
// the same message; a lapsed claim is taken over; an outcome ends the claim.
func testOutboxClaims(t *testing.T, s store.Store) {
	ctx := t.Context()
	var msgs []store.OutboxMessage
	for i := range 40 {
		msgs = append(msgs, store.OutboxMessage{ID: fmt.Sprintf("m%02d", i), Channel: "webhook", Payload: []byte("{}"),
			CreatedAt: at(time.Duration(i) * time.Second)})
	}
	noErr(t, "EnqueueOutbox", s.EnqueueOutbox(ctx, msgs...))
	now := at(time.Hour)
	var (
		mu      sync.Mutex
		claimed = map[string]int{}
		wg      sync.WaitGroup
	)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := s.ClaimOutbox(ctx, now, 3, time.Minute)
				if err != nil {
					t.Errorf("ClaimOutbox: %v", err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, m := range got {
					claimed[m.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(claimed) != 40 {
		t.Fatalf("claimed %d distinct messages, want 40", len(claimed))
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("message %s claimed %d times", id, n)
		}
	}
	// While the claims hold, nothing more is handed out; once they lapse the
	// oldest come first again.
	if got, err := s.ClaimOutbox(ctx, now.Add(30*time.Second), 10, time.Minute); err != nil || len(got) != 0 {
		t.Fatalf("claims under a live lease: %d, %v; want none", len(got), err)
	}
	noErr(t, "MarkOutboxDelivered", s.MarkOutboxDelivered(ctx, "m00", now))
	noErr(t, "MarkOutboxFailed", s.MarkOutboxFailed(ctx, "m01", now.Add(10*time.Second), "refused"))
	got, err := s.ClaimOutbox(ctx, now.Add(20*time.Second), 10, time.Minute)
	noErr(t, "ClaimOutbox after a failure", err)
	if len(got) != 1 || got[0].ID != "m01" || got[0].Attempts != 1 {
		t.Fatalf("after a failed attempt: %+v, want m01 again (its claim ended)", got)
	}
	got, err = s.ClaimOutbox(ctx, now.Add(2*time.Minute), 3, time.Minute)
	noErr(t, "ClaimOutbox after the lease", err)
	if ids := []string{got[0].ID, got[1].ID, got[2].ID}; !reflect.DeepEqual(ids, []string{"m01", "m02", "m03"}) {
		t.Fatalf("lapsed claims: %v, want the oldest undelivered m01 m02 m03", ids)
	}
}

// testSettingsCompareAndSwap: a write based on a stale value is refused, and
// of concurrent writers from the same version exactly one wins.
func testSettingsCompareAndSwap(t *testing.T, s store.Store) {
	ctx := t.Context()
	noErr(t, "create", s.PutSettingIf(ctx, "settings", nil, []byte(`{"v":1}`)))
	wantErr(t, "create again", s.PutSettingIf(ctx, "settings", nil, []byte(`{"v":9}`)), store.ErrConflict)
	noErr(t, "replace v1", s.PutSettingIf(ctx, "settings", []byte(`{"v":1}`), []byte(`{"v":2}`)))
	wantErr(t, "replace stale v1", s.PutSettingIf(ctx, "settings", []byte(`{"v":1}`), []byte(`{"v":3}`)), store.ErrConflict)
	var wg sync.WaitGroup
	wins := make(chan string, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := fmt.Sprintf(`{"v":"w%d"}`, i)
			if err := s.PutSettingIf(ctx, "settings", []byte(`{"v":2}`), []byte(v)); err == nil {
				wins <- v
			} else if !errors.Is(err, store.ErrConflict) {
				t.Errorf("concurrent write: %v", err)
			}
		}()
	}
	wg.Wait()
	close(wins)
	var won []string
	for v := range wins {
		won = append(won, v)
	}
	got, err := s.GetSetting(ctx, "settings")
	noErr(t, "GetSetting", err)
	if len(won) != 1 || string(got) != won[0] {
		t.Fatalf("concurrent writers that won: %v, stored %s; want exactly one, stored", won, got)
	}
}

// testTimesUTC passes times in another zone and expects the same instants
// back in UTC.
func testTimesUTC(t *testing.T, s store.Store) {
	zone := time.FixedZone("UTC+5", 5*3600)
	local := t0.In(zone)
	u, err := s.RecordLogin(t.Context(), store.LoginInfo{Issuer: "i", Subject: "s", Now: local})
	noErr(t, "RecordLogin", err)
	noErr(t, "CreateSession", s.CreateSession(t.Context(), store.Session{ID: "s", UserID: u.ID, CreatedAt: local, LastSeenAt: local, ExpiresAt: local}))
	sess, err := s.GetSession(t.Context(), "s")
	noErr(t, "GetSession", err)
	noErr(t, "AppendAudit", s.AppendAudit(t.Context(), store.AuditEvent{Type: "x", Time: local}))
	events, err := s.ListAudit(t.Context(), store.AuditFilter{})
	noErr(t, "ListAudit", err)
	got := []time.Time{u.CreatedAt, *u.LastLoginAt, getUser(t, s, u.ID).CreatedAt, sess.CreatedAt, sess.ExpiresAt, events[0].Time}
	for i, tm := range got {
		if tm.Location() != time.UTC || !tm.Equal(t0) {
			t.Errorf("time %d = %v, want %v in UTC", i, tm, t0)
		}
	}
	// Sub-microsecond precision is not kept, by every backend alike.
	noErr(t, "CreateSession", s.CreateSession(t.Context(), store.Session{ID: "ns", UserID: u.ID, CreatedAt: t0.Add(999), LastSeenAt: t0, ExpiresAt: t0}))
	sess, err = s.GetSession(t.Context(), "ns")
	noErr(t, "GetSession", err)
	if !sess.CreatedAt.Equal(t0) {
		t.Errorf("CreatedAt = %v, want %v truncated to microseconds", sess.CreatedAt, t0)
	}
}
