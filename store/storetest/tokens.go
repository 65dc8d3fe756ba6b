package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/quota"
	"github.com/gatehouse/gatehouse/store"
)

const day = 24 * time.Hour

// apiToken is a personal token of userID, valid for 30 days from created.
func apiToken(id, userID string, created time.Time) store.APIToken {
	return store.APIToken{
		ID: id, Name: "name of " + id, Kind: store.TokenPersonal, UserID: userID, CreatedBy: userID,
		Scope: []string{"chat:use"}, CreatedAt: created, ExpiresAt: created.Add(30 * day),
	}
}

func createToken(t *testing.T, s store.Store, tok store.APIToken) store.APIToken {
	t.Helper()
	got, err := s.CreateToken(t.Context(), tok, store.AuditEvent{})
	if err != nil {
		t.Fatalf("CreateToken(%s): %v", tok.ID, err)
	}
	return got
}

func getToken(t *testing.T, s store.Store, id string) store.APIToken {
	t.Helper()
	tok, err := s.GetToken(t.Context(), id)
	if err != nil {
		t.Fatalf("GetToken(%s): %v", id, err)
	}
	return tok
}

func revoke(t *testing.T, s store.Store, id string, when time.Time) store.APIToken {
	t.Helper()
	tok, err := s.RevokeToken(t.Context(), id, when, store.AuditEvent{})
	if err != nil {
		t.Fatalf("RevokeToken(%s): %v", id, err)
	}
	return tok
}

func tokenIDs(tokens []store.APIToken) []string {
	out := []string{}
	for _, tok := range tokens {
		out = append(out, tok.ID)
	}
	return out
}

// revokedList returns the revocation list as of now, ordered by ID: the
// contract promises no order.
func revokedList(t *testing.T, s store.Store, now time.Time) []store.RevokedToken {
	t.Helper()
	list, err := s.RevokedTokens(t.Context(), now)
	noErr(t, "RevokedTokens", err)
	slices.SortFunc(list, func(a, b store.RevokedToken) int { return strings.Compare(a.ID, b.ID) })
	return list
}

func testCreateToken(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	tests := []struct {
		name string
		tok  store.APIToken
		want store.APIToken
	}{
		{
			name: "personal token with model patterns",
			tok: store.APIToken{ID: "t-models", Name: "laptop", Kind: store.TokenPersonal, UserID: ann.ID, CreatedBy: ann.ID,
				Scope: []string{"chat:use", "models:list"}, Models: []string{"llama-*", "gpt-4o"}, CreatedAt: t0, ExpiresAt: at(90 * day)},
		},
		{
			name: "nil models mean every model the role may use",
			tok: store.APIToken{ID: "t-nil", Name: "ci", Kind: store.TokenUser, UserID: ann.ID, CreatedBy: root.ID,
				Scope: []string{"chat:use"}, Models: nil, CreatedAt: t0, ExpiresAt: at(day)},
		},
		{
			name: "empty models mean no model",
			tok: store.APIToken{ID: "t-empty", Name: "no models", Kind: store.TokenPersonal, UserID: ann.ID, CreatedBy: ann.ID,
				Scope: []string{"models:list"}, Models: []string{}, CreatedAt: t0, ExpiresAt: at(day)},
		},
		{
			name: "token with limits of its own",
			tok: store.APIToken{ID: "t-limits", Name: "nightly", Kind: store.TokenPersonal, UserID: ann.ID, CreatedBy: ann.ID,
				Scope: []string{"chat:use"}, CreatedAt: t0, ExpiresAt: at(day),
				Limits: &quota.Limits{RequestsPerMinute: 60, TokensPerDay: 100000}},
		},
		{
			name: "zero limits are stored as none",
			tok: store.APIToken{ID: "t-zero-limits", Name: "unlimited", Kind: store.TokenPersonal, UserID: ann.ID, CreatedBy: ann.ID,
				Scope: []string{"chat:use"}, CreatedAt: t0, ExpiresAt: at(day), Limits: &quota.Limits{}},
			want: store.APIToken{ID: "t-zero-limits", Name: "unlimited", Kind: store.TokenPersonal, UserID: ann.ID, CreatedBy: ann.ID,
				Scope: []string{"chat:use"}, CreatedAt: t0, ExpiresAt: at(day)},
		},
		{
			name: "system token has no subject user and a nil scope is stored empty",
			tok: store.APIToken{ID: "t-system", Name: "batch", Kind: store.TokenSystem, CreatedBy: root.ID,
				CreatedAt: at(time.Second), ExpiresAt: at(365 * day)},
			want: store.APIToken{ID: "t-system", Name: "batch", Kind: store.TokenSystem, CreatedBy: root.ID,
				Scope: []string{}, CreatedAt: at(time.Second), ExpiresAt: at(365 * day)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want.ID == "" {
				want = tc.tok
			}
			got, err := s.CreateToken(t.Context(), tc.tok, store.AuditEvent{Type: "token.create", ActorID: tc.tok.CreatedBy, TargetID: tc.tok.ID, Time: t0})
			noErr(t, "CreateToken", err)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("CreateToken = %#v, want %#v", got, want)
			}
			if stored := getToken(t, s, tc.tok.ID); !reflect.DeepEqual(stored, want) {
				t.Fatalf("GetToken = %#v, want %#v", stored, want)
			}
		})
	}
	created := slices.Repeat([]string{"token.create"}, len(tests))
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, created) {
		t.Fatalf("audit = %v, want one token.create per token", got)
	}

	refused := store.AuditEvent{Type: "refused", Time: t0}
	_, err := s.CreateToken(t.Context(), apiToken("", ann.ID, t0), refused)
	if err == nil {
		t.Fatal("CreateToken without an ID succeeded")
	}
	dup := apiToken("t-models", ann.ID, t0)
	dup.Name = "second"
	_, err = s.CreateToken(t.Context(), dup, refused)
	wantErr(t, "CreateToken duplicate ID", err, store.ErrConflict)
	if got := getToken(t, s, "t-models"); got.Name != "laptop" {
		t.Fatalf("token after duplicate create has name %q, want laptop", got.Name)
	}
	_, err = s.CreateToken(t.Context(), apiToken("t-ghost", "missing", t0), refused)
	wantErr(t, "CreateToken for an unknown user", err, store.ErrNotFound)
	_, err = s.GetToken(t.Context(), "t-ghost")
	wantErr(t, "GetToken of refused token", err, store.ErrNotFound)
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, created) {
		t.Fatalf("audit after refused creations = %v, want no new events", got)
	}

	createToken(t, s, apiToken("t-quiet", ann.ID, t0))
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, created) {
		t.Fatalf("an event with an empty type must not be written; audit = %v", got)
	}
	_, err = s.GetToken(t.Context(), "missing")
	wantErr(t, "GetToken unknown", err, store.ErrNotFound)
}

func testListTokens(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	bob := login(t, s, "bob@example.com", false)

	createToken(t, s, apiToken("a-old", ann.ID, t0))
	createToken(t, s, apiToken("a-new", ann.ID, at(time.Hour)))
	createToken(t, s, apiToken("a-revoked", ann.ID, at(2*time.Hour)))
	revoke(t, s, "a-revoked", at(3*time.Hour))
	expiring := apiToken("a-expiring", ann.ID, at(3*time.Hour))
	expiring.Kind, expiring.CreatedBy, expiring.ExpiresAt = store.TokenUser, root.ID, at(10*time.Hour)
	createToken(t, s, expiring)
	// Created in the same instant as a-new: the ID breaks the tie.
	b := apiToken("b-1", bob.ID, at(time.Hour))
	b.Kind, b.CreatedBy = store.TokenUser, root.ID
	createToken(t, s, b)
	sys := apiToken("sys", "", at(4*time.Hour))
	sys.Kind, sys.CreatedBy = store.TokenSystem, root.ID
	sysLimits := quota.Limits{TokensPerMinute: 5000, TokensPerMonth: 2000000, ConcurrentRequests: 4}
	sys.Limits = &sysLimits
	createToken(t, s, sys)

	tests := []struct {
		name string
		f    store.TokenFilter
		want []string
	}{
		{"all, newest first", store.TokenFilter{}, []string{"sys", "a-expiring", "a-revoked", "b-1", "a-new", "a-old"}},
		{"subject user", store.TokenFilter{UserID: ann.ID}, []string{"a-expiring", "a-revoked", "a-new", "a-old"}},
		{"creator", store.TokenFilter{CreatedBy: root.ID}, []string{"sys", "a-expiring", "b-1"}},
		{"kind user", store.TokenFilter{Kind: store.TokenUser}, []string{"a-expiring", "b-1"}},
		{"kind system", store.TokenFilter{Kind: store.TokenSystem}, []string{"sys"}},
		{"active leaves out revoked and expired (expiry is exclusive)", store.TokenFilter{Active: true, Now: at(10 * time.Hour)},
			[]string{"sys", "b-1", "a-new", "a-old"}},
		{"active just before an expiry", store.TokenFilter{Active: true, Now: at(10*time.Hour - time.Microsecond)},
			[]string{"sys", "a-expiring", "b-1", "a-new", "a-old"}},
		{"subject user and active", store.TokenFilter{UserID: ann.ID, Active: true, Now: at(10 * time.Hour)}, []string{"a-new", "a-old"}},
		{"creator and kind", store.TokenFilter{CreatedBy: ann.ID, Kind: store.TokenUser}, []string{}},
		{"active after every expiry", store.TokenFilter{Active: true, Now: at(400 * day)}, []string{}},
		{"no match", store.TokenFilter{UserID: "nobody"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tokens, err := s.ListTokens(t.Context(), tc.f)
			noErr(t, "ListTokens", err)
			if got := tokenIDs(tokens); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ListTokens(%+v) = %v, want %v", tc.f, got, tc.want)
			}
		})
	}
	tokens, err := s.ListTokens(t.Context(), store.TokenFilter{Kind: store.TokenSystem})
	noErr(t, "ListTokens", err)
	if !reflect.DeepEqual(tokens, []store.APIToken{getToken(t, s, "sys")}) {
		t.Fatalf("listed token = %#v, want the full record as GetToken returns it", tokens)
	}
	// The list shows each token's own limits, and none for a token without.
	all, err := s.ListTokens(t.Context(), store.TokenFilter{})
	noErr(t, "ListTokens", err)
	for _, tok := range all {
		switch {
		case tok.ID == "sys" && (tok.Limits == nil || *tok.Limits != sysLimits):
			t.Errorf("listed limits of sys = %+v, want %+v", tok.Limits, sysLimits)
		case tok.ID != "sys" && tok.Limits != nil:
			t.Errorf("listed limits of %s = %+v, want nil", tok.ID, *tok.Limits)
		}
	}
}

func testRevokeToken(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	tok := createToken(t, s, apiToken("t1", ann.ID, t0))
	createToken(t, s, apiToken("t2", ann.ID, t0))

	got, err := s.RevokeToken(t.Context(), "t1", at(time.Hour), store.AuditEvent{Type: "token.revoke", TargetID: "t1", Time: at(time.Hour)})
	noErr(t, "RevokeToken", err)
	want := tok
	want.RevokedAt = ptr(at(time.Hour))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("RevokeToken = %#v, want %#v", got, want)
	}
	if stored := getToken(t, s, "t1"); !reflect.DeepEqual(stored, want) {
		t.Fatalf("GetToken after revocation = %#v, want %#v", stored, want)
	}

	again, err := s.RevokeToken(t.Context(), "t1", at(2*time.Hour), store.AuditEvent{Type: "token.revoke", TargetID: "t1", Time: at(2 * time.Hour)})
	noErr(t, "RevokeToken again", err)
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("second RevokeToken = %#v, want the token as first revoked %#v", again, want)
	}
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"token.revoke"}) {
		t.Fatalf("audit = %v, want one token.revoke for two revocations", got)
	}
	if t2 := getToken(t, s, "t2"); t2.RevokedAt != nil {
		t.Fatalf("revoking t1 revoked t2 at %v", t2.RevokedAt)
	}

	_, err = s.RevokeToken(t.Context(), "missing", at(time.Hour), store.AuditEvent{Type: "token.revoke"})
	wantErr(t, "RevokeToken unknown", err, store.ErrNotFound)
	if got := auditTypes(t, s, store.AuditFilter{}); len(got) != 1 {
		t.Fatalf("revoking an unknown token wrote audit events: %v", got)
	}
}

// testConcurrentRevocations revokes one token from many goroutines: exactly
// one revocation time wins, everyone sees it, and it is audited once.
func testConcurrentRevocations(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	createToken(t, s, apiToken("t1", ann.ID, t0))
	const n = 10
	results := make([]store.APIToken, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = s.RevokeToken(t.Context(), "t1", at(time.Duration(i+1)*time.Minute),
				store.AuditEvent{Type: "token.revoke", Time: t0})
		})
	}
	close(start)
	wg.Wait()
	stored := getToken(t, s, "t1")
	if stored.RevokedAt == nil {
		t.Fatal("token not revoked")
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("revocation %d: %v", i, errs[i])
		}
		if !reflect.DeepEqual(results[i], stored) {
			t.Fatalf("revocation %d returned %#v, want the stored %#v", i, results[i], stored)
		}
	}
	if got := auditTypes(t, s, store.AuditFilter{}); len(got) != 1 {
		t.Fatalf("audit = %v, want exactly one token.revoke", got)
	}
}

func testRevokedTokens(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	for _, tc := range []struct {
		id      string
		expires time.Time
		revoked *time.Time
	}{
		{"live", at(10 * time.Hour), nil},
		{"r1", at(10 * time.Hour), ptr(at(time.Hour))},
		{"r2", at(5 * time.Hour), ptr(at(2 * time.Hour))},
		{"r3", at(3 * time.Hour), ptr(at(time.Hour))},
	} {
		tok := apiToken(tc.id, ann.ID, t0)
		tok.ExpiresAt = tc.expires
		createToken(t, s, tok)
		if tc.revoked != nil {
			revoke(t, s, tc.id, *tc.revoked)
		}
	}
	r1 := store.RevokedToken{ID: "r1", ExpiresAt: at(10 * time.Hour), RevokedAt: at(time.Hour)}
	r2 := store.RevokedToken{ID: "r2", ExpiresAt: at(5 * time.Hour), RevokedAt: at(2 * time.Hour)}
	r3 := store.RevokedToken{ID: "r3", ExpiresAt: at(3 * time.Hour), RevokedAt: at(time.Hour)}
	tests := []struct {
		name string
		now  time.Time
		want []store.RevokedToken
	}{
		{"before any expiry", at(3*time.Hour - time.Microsecond), []store.RevokedToken{r1, r2, r3}},
		{"expiry is exclusive", at(3 * time.Hour), []store.RevokedToken{r1, r2}},
		{"expired ones drop out", at(6 * time.Hour), []store.RevokedToken{r1}},
		{"all expired", at(11 * time.Hour), []store.RevokedToken{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := revokedList(t, s, tc.now); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("RevokedTokens(%v) = %+v, want %+v", tc.now, got, tc.want)
			}
		})
	}
}

func testMarkTokensUsed(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	t1 := createToken(t, s, apiToken("t1", ann.ID, t0))
	createToken(t, s, apiToken("t2", ann.ID, t0))

	noErr(t, "MarkTokensUsed nil", s.MarkTokensUsed(t.Context(), nil))
	noErr(t, "MarkTokensUsed empty", s.MarkTokensUsed(t.Context(), map[string]time.Time{}))
	if got := getToken(t, s, "t1"); !reflect.DeepEqual(got, t1) {
		t.Fatalf("token after empty batches = %#v, want unchanged %#v", got, t1)
	}

	lastUsed := func(id string) *time.Time { return getToken(t, s, id).LastUsedAt }
	noErr(t, "MarkTokensUsed", s.MarkTokensUsed(t.Context(), map[string]time.Time{
		"t1": at(time.Hour), "t2": at(2 * time.Hour), "missing": at(time.Hour),
	}))
	want := t1
	want.LastUsedAt = ptr(at(time.Hour))
	if got := getToken(t, s, "t1"); !reflect.DeepEqual(got, want) {
		t.Fatalf("t1 after use = %#v, want %#v", got, want)
	}
	if got := lastUsed("t2"); !reflect.DeepEqual(got, ptr(at(2*time.Hour))) {
		t.Fatalf("t2 last used = %v, want %v", got, at(2*time.Hour))
	}
	_, err := s.GetToken(t.Context(), "missing")
	wantErr(t, "GetToken of an unknown used ID", err, store.ErrNotFound)

	// A late batch from another instance never moves the time back.
	noErr(t, "MarkTokensUsed", s.MarkTokensUsed(t.Context(), map[string]time.Time{"t1": at(30 * time.Minute), "t2": at(3 * time.Hour)}))
	if got := lastUsed("t1"); !reflect.DeepEqual(got, ptr(at(time.Hour))) {
		t.Fatalf("t1 last used after an older time = %v, want %v kept", got, at(time.Hour))
	}
	if got := lastUsed("t2"); !reflect.DeepEqual(got, ptr(at(3*time.Hour))) {
		t.Fatalf("t2 last used = %v, want %v", got, at(3*time.Hour))
	}

	// Concurrent batches over the same tokens, as several instances send
	// them, all succeed and the latest time wins.
	const n = 10
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			d := time.Duration(4*60+i) * time.Minute
			<-start
			errs[i] = s.MarkTokensUsed(t.Context(), map[string]time.Time{"t1": at(d), "t2": at(d), "unknown": at(d)})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		noErr(t, fmt.Sprintf("concurrent MarkTokensUsed %d", i), err)
	}
	latest := ptr(at(time.Duration(4*60+n-1) * time.Minute))
	for _, id := range []string{"t1", "t2"} {
		if got := lastUsed(id); !reflect.DeepEqual(got, latest) {
			t.Fatalf("%s last used after concurrent batches = %v, want %v", id, got, latest)
		}
	}
}

func testDeleteUserRevokesTokens(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	bob := login(t, s, "bob@example.com", false)
	createToken(t, s, apiToken("root-live", root.ID, t0))
	annLive := createToken(t, s, apiToken("ann-live", ann.ID, t0))
	createToken(t, s, apiToken("ann-revoked", ann.ID, at(time.Second)))
	revoke(t, s, "ann-revoked", at(time.Hour))
	createToken(t, s, apiToken("bob-live", bob.ID, t0))
	sys := apiToken("sys-by-ann", "", t0)
	sys.Kind, sys.CreatedBy = store.TokenSystem, ann.ID
	createToken(t, s, sys)

	wantErr(t, "delete the last admin", s.DeleteUser(t.Context(), root.ID, store.AuditEvent{}), store.ErrConflict)
	if got := getToken(t, s, "root-live"); got.RevokedAt != nil {
		t.Fatalf("refused deletion revoked the admin's token at %v", got.RevokedAt)
	}

	deletedAt := at(5 * time.Hour)
	noErr(t, "DeleteUser", s.DeleteUser(t.Context(), ann.ID, store.AuditEvent{Type: "user.delete", ActorID: root.ID, TargetID: ann.ID, Time: deletedAt}))
	want := annLive
	want.RevokedAt = ptr(deletedAt)
	if got := getToken(t, s, "ann-live"); !reflect.DeepEqual(got, want) {
		t.Fatalf("deleted user's token = %#v, want it kept and revoked at the deletion %#v", got, want)
	}
	tests := []struct {
		id      string
		revoked *time.Time
	}{
		{"ann-revoked", ptr(at(time.Hour))}, // the first revocation stays
		{"bob-live", nil},
		{"root-live", nil},
		{"sys-by-ann", ptr(deletedAt)}, // a system token follows its creator (spec §3a)
	}
	for _, tc := range tests {
		if got := getToken(t, s, tc.id).RevokedAt; !reflect.DeepEqual(got, tc.revoked) {
			t.Errorf("%s revoked at %v, want %v", tc.id, got, tc.revoked)
		}
	}
	wantList := []store.RevokedToken{
		{ID: "ann-live", ExpiresAt: annLive.ExpiresAt, RevokedAt: deletedAt},
		{ID: "ann-revoked", ExpiresAt: at(time.Second + 30*day), RevokedAt: at(time.Hour)},
		{ID: "sys-by-ann", ExpiresAt: sys.ExpiresAt, RevokedAt: deletedAt},
	}
	if got := revokedList(t, s, at(6*time.Hour)); !reflect.DeepEqual(got, wantList) {
		t.Fatalf("RevokedTokens after deletion = %+v, want %+v", got, wantList)
	}
	if got := revokedReasons(t, s, root.ID); !reflect.DeepEqual(got, map[string]string{"ann-live": "user_deleted", "sys-by-ann": "creator_lost_rights"}) {
		t.Fatalf("token.revoked audit events = %v", got)
	}
	listed, err := s.ListTokens(t.Context(), store.TokenFilter{UserID: ann.ID})
	noErr(t, "ListTokens", err)
	if got := tokenIDs(listed); !reflect.DeepEqual(got, []string{"ann-revoked", "ann-live"}) {
		t.Fatalf("deleted user's tokens = %v, want both still listed", got)
	}
	listed, err = s.ListTokens(t.Context(), store.TokenFilter{UserID: ann.ID, Active: true, Now: at(6 * time.Hour)})
	noErr(t, "ListTokens active", err)
	if len(listed) != 0 {
		t.Fatalf("deleted user's active tokens = %v, want none", tokenIDs(listed))
	}
	_, err = s.CreateToken(t.Context(), apiToken("ann-late", ann.ID, at(6*time.Hour)), store.AuditEvent{})
	wantErr(t, "CreateToken for the deleted user", err, store.ErrNotFound)
}

// testCreateTokenRacesDeleteUser creates a token while its user is being
// deleted: the token must either be refused or end up revoked, never live.
func testCreateTokenRacesDeleteUser(t *testing.T, s store.Store) {
	for round := range 30 {
		u := login(t, s, fmt.Sprintf("u%d@example.com", round), false)
		id := fmt.Sprintf("t%d", round)
		var createErr, deleteErr error
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			_, createErr = s.CreateToken(t.Context(), apiToken(id, u.ID, t0), store.AuditEvent{})
		})
		wg.Go(func() {
			<-start
			deleteErr = s.DeleteUser(t.Context(), u.ID, store.AuditEvent{Time: at(time.Hour)})
		})
		close(start)
		wg.Wait()
		noErr(t, "DeleteUser", deleteErr)
		switch {
		case createErr == nil:
			if tok := getToken(t, s, id); tok.RevokedAt == nil {
				t.Fatalf("round %d: token created during its user's deletion is live", round)
			}
		case !errors.Is(createErr, store.ErrNotFound):
			t.Fatalf("round %d: CreateToken = %v, want nil or ErrNotFound", round, createErr)
		}
	}
}

// testTokenTimesUTC passes times in another zone, with nanoseconds, and
// expects the same instants back in UTC, truncated to microseconds.
func testTokenTimesUTC(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	zone := time.FixedZone("UTC+5", 5*3600)
	local := func(d time.Duration) time.Time { return at(d).In(zone).Add(999) }
	tok := apiToken("t1", ann.ID, local(0))
	tok.ExpiresAt = local(time.Hour)
	created := createToken(t, s, tok)
	revoked := revoke(t, s, "t1", local(time.Minute))
	noErr(t, "MarkTokensUsed", s.MarkTokensUsed(t.Context(), map[string]time.Time{"t1": local(2 * time.Minute)}))
	stored := getToken(t, s, "t1")
	listed, err := s.ListTokens(t.Context(), store.TokenFilter{})
	noErr(t, "ListTokens", err)
	list := revokedList(t, s, t0)

	got := []struct {
		what string
		tm   time.Time
		want time.Time
	}{
		{"created CreatedAt", created.CreatedAt, t0},
		{"created ExpiresAt", created.ExpiresAt, at(time.Hour)},
		{"revoked RevokedAt", *revoked.RevokedAt, at(time.Minute)},
		{"stored CreatedAt", stored.CreatedAt, t0},
		{"stored ExpiresAt", stored.ExpiresAt, at(time.Hour)},
		{"stored RevokedAt", *stored.RevokedAt, at(time.Minute)},
		{"stored LastUsedAt", *stored.LastUsedAt, at(2 * time.Minute)},
		{"listed CreatedAt", listed[0].CreatedAt, t0},
		{"revocation list ExpiresAt", list[0].ExpiresAt, at(time.Hour)},
		{"revocation list RevokedAt", list[0].RevokedAt, at(time.Minute)},
	}
	for _, g := range got {
		if g.tm.Location() != time.UTC || !g.tm.Equal(g.want) {
			t.Errorf("%s = %v, want %v in UTC", g.what, g.tm, g.want)
		}
	}
}

// revokedReasons maps token IDs to the reason of their token.revoked audit
// events by actor.
func revokedReasons(t *testing.T, s store.Store, actorID string) map[string]string {
	t.Helper()
	events, err := s.ListAudit(t.Context(), store.AuditFilter{Type: "token.revoked", Limit: 100})
	noErr(t, "ListAudit", err)
	out := map[string]string{}
	for _, e := range events {
		if e.ActorID == actorID {
			out[fmt.Sprint(e.Detail["token_id"])] = fmt.Sprint(e.Detail["reason"])
		}
	}
	return out
}

// testLeavingActiveRevokesTokens: suspension, denial and an ended grant
// revoke the user's tokens in the same change; reactivation revives none.
func testLeavingActiveRevokesTokens(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	bob := login(t, s, "bob@example.com", false)
	for _, u := range []store.User{ann, bob} {
		_, err := s.SetUserStatus(t.Context(), u.ID, store.StatusActive, store.AuditEvent{})
		noErr(t, "activate", err)
	}
	createToken(t, s, apiToken("ann-1", ann.ID, t0))
	createToken(t, s, apiToken("ann-2", ann.ID, t0))
	createToken(t, s, apiToken("bob-1", bob.ID, t0))
	suspendedAt := at(time.Hour)
	_, err := s.SetUserStatus(t.Context(), ann.ID, store.StatusSuspended,
		store.AuditEvent{Type: "user.status_changed", ActorID: root.ID, TargetID: ann.ID, Time: suspendedAt})
	noErr(t, "suspend", err)
	_, err = s.SetUserStatus(t.Context(), ann.ID, store.StatusActive, store.AuditEvent{Time: at(2 * time.Hour)})
	noErr(t, "reactivate", err)
	for id, want := range map[string]*time.Time{"ann-1": ptr(suspendedAt), "ann-2": ptr(suspendedAt), "bob-1": nil} {
		if got := getToken(t, s, id).RevokedAt; !reflect.DeepEqual(got, want) {
			t.Errorf("%s revoked at %v, want %v", id, got, want)
		}
	}
	if got := revokedReasons(t, s, root.ID); !reflect.DeepEqual(got, map[string]string{"ann-1": "user_suspended", "ann-2": "user_suspended"}) {
		t.Errorf("token.revoked audit events = %v", got)
	}

	// An ended temporary grant.
	carl := login(t, s, "carl@example.com", false)
	r := request(t, s, carl, "user", t0)
	_, err = s.DecideAccessRequest(t.Context(), store.Decision{RequestID: r.ID, Approve: true, ExpiresAt: ptr(at(time.Hour)), Now: t0})
	noErr(t, "approve", err)
	createToken(t, s, apiToken("carl-1", carl.ID, t0))
	noErr(t, "CreateSession", s.CreateSession(t.Context(), session("c1", carl.ID)))
	if _, err := s.ExpireAccess(t.Context(), carl.ID, at(30*time.Minute)); err != nil || getToken(t, s, "carl-1").RevokedAt != nil {
		t.Fatalf("a grant not yet ended revoked the token (%v)", err)
	}
	_, err = s.ExpireAccess(t.Context(), carl.ID, at(2*time.Hour))
	noErr(t, "ExpireAccess", err)
	if got := getToken(t, s, "carl-1").RevokedAt; !reflect.DeepEqual(got, ptr(at(2*time.Hour))) {
		t.Errorf("token of an ended grant revoked at %v, want at the expiry check", got)
	}
	_, err = s.GetSession(t.Context(), "c1")
	wantErr(t, "session of an ended grant", err, store.ErrNotFound)
}

// testRevokedTokensSince reads the revocation list incrementally.
func testRevokedTokensSince(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	for i, d := range []time.Duration{time.Hour, 2 * time.Hour, 3 * time.Hour} {
		id := fmt.Sprintf("t%d", i)
		createToken(t, s, apiToken(id, ann.ID, t0))
		revoke(t, s, id, at(d))
	}
	expired := apiToken("expired", ann.ID, t0)
	expired.ExpiresAt = at(90 * time.Minute)
	createToken(t, s, expired)
	revoke(t, s, "expired", at(2*time.Hour))
	list, err := s.RevokedTokensSince(t.Context(), at(100*time.Minute), at(2*time.Hour))
	noErr(t, "RevokedTokensSince", err)
	var ids []string
	for _, r := range list {
		ids = append(ids, r.ID)
	}
	if !reflect.DeepEqual(ids, []string{"t1", "t2"}) {
		t.Fatalf("revoked since 2h = %v, want [t1 t2] (at or after, unexpired)", ids)
	}
}

// testRevokeSystemTokensOf: a creator who loses tokens:system takes their
// system tokens with them.
func testRevokeSystemTokensOf(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	other := admin(t, s, "other@example.com")
	for _, tc := range []struct{ id, by string }{{"sys-root", root.ID}, {"sys-root-2", root.ID}, {"sys-other", other.ID}} {
		tok := apiToken(tc.id, "", t0)
		tok.Kind, tok.CreatedBy = store.TokenSystem, tc.by
		createToken(t, s, tok)
	}
	createToken(t, s, apiToken("personal-root", root.ID, t0))
	n, err := s.RevokeSystemTokensOf(t.Context(), root.ID, at(time.Hour), other.ID, "creator_lost_rights")
	noErr(t, "RevokeSystemTokensOf", err)
	if n != 2 {
		t.Fatalf("revoked %d, want 2", n)
	}
	for id, revoked := range map[string]bool{"sys-root": true, "sys-root-2": true, "sys-other": false, "personal-root": false} {
		if got := getToken(t, s, id).RevokedAt != nil; got != revoked {
			t.Errorf("%s revoked = %v, want %v", id, got, revoked)
		}
	}
	if n, err := s.RevokeSystemTokensOf(t.Context(), root.ID, at(2*time.Hour), other.ID, "creator_lost_rights"); err != nil || n != 0 {
		t.Fatalf("again: %d, %v; want 0", n, err)
	}
}
