package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// signingKey is a stored key: signing since activated (nil: waiting).
func signingKey(id string, created time.Time, activated *time.Time) store.SigningKey {
	return store.SigningKey{ID: id, Algorithm: "ES256", PrivateSealed: []byte("sealed " + id), PublicJWK: []byte(`{"kid":"` + id + `"}`),
		CreatedAt: created, ActivatedAt: activated}
}

func listKeys(t *testing.T, s store.Store, now time.Time) []store.SigningKey {
	t.Helper()
	got, err := s.ListSigningKeys(t.Context(), now)
	noErr(t, "ListSigningKeys", err)
	return got
}

func keyIDs(keys []store.SigningKey) []string {
	ids := []string{}
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	return ids
}

func keyByID(t *testing.T, s store.Store, id string) store.SigningKey {
	t.Helper()
	for _, k := range listKeys(t, s, time.Time{}) {
		if k.ID == id {
			return k
		}
	}
	t.Fatalf("store has no key %s", id)
	return store.SigningKey{}
}

func testSigningKeys(t *testing.T, s store.Store) {
	keys := []store.SigningKey{
		signingKey("k1", t0, ptr(t0)),
		signingKey("k2", at(time.Hour), ptr(at(time.Hour))),
		signingKey("k3", at(2*time.Hour), nil),
	}
	for _, k := range keys {
		noErr(t, "PutSigningKey", s.PutSigningKey(t.Context(), k))
	}
	wantErr(t, "PutSigningKey duplicate", s.PutSigningKey(t.Context(), keys[0]), store.ErrConflict)
	noErr(t, "RetireSigningKey", s.RetireSigningKey(t.Context(), "k1", at(time.Hour), at(3*time.Hour)))
	noErr(t, "RetireSigningKey", s.RetireSigningKey(t.Context(), "k2", at(2*time.Hour), at(4*time.Hour)))
	wantErr(t, "RetireSigningKey unknown", s.RetireSigningKey(t.Context(), "missing", t0, t0), store.ErrNotFound)

	got := listKeys(t, s, at(2*time.Hour))
	want2 := keys[1]
	want2.RetiredAt, want2.PublishUntil = ptr(at(2*time.Hour)), ptr(at(4*time.Hour))
	if len(got) != 3 || !reflect.DeepEqual(got[0], keys[2]) || !reflect.DeepEqual(got[1], want2) || got[2].ID != "k1" {
		t.Fatalf("keys = %+v, want k3 (waiting), k2 (retired), k1", got)
	}
	tests := []struct {
		now  time.Time
		want []string
	}{
		{at(3*time.Hour - time.Microsecond), []string{"k3", "k2", "k1"}},
		{at(3 * time.Hour), []string{"k3", "k2"}}, // publish_until is exclusive
		{at(5 * time.Hour), []string{"k3"}},
	}
	for _, tc := range tests {
		if ids := keyIDs(listKeys(t, s, tc.now)); !reflect.DeepEqual(ids, tc.want) {
			t.Errorf("ListSigningKeys(%v) = %v, want %v", tc.now, ids, tc.want)
		}
	}
}

func testPromoteSigningKey(t *testing.T, s store.Store) {
	for _, k := range []store.SigningKey{
		signingKey("old", t0, ptr(t0)),
		signingKey("next", at(time.Hour), nil),
	} {
		noErr(t, "PutSigningKey", s.PutSigningKey(t.Context(), k))
	}
	noErr(t, "PutSigningKey retired", s.PutSigningKey(t.Context(), store.SigningKey{ID: "gone", Algorithm: "ES256",
		PrivateSealed: []byte("x"), PublicJWK: []byte("{}"), CreatedAt: t0, ActivatedAt: ptr(t0), RetiredAt: ptr(t0), PublishUntil: ptr(at(day))}))

	for _, id := range []string{"old", "gone", "missing"} {
		_, err := s.PromoteSigningKey(t.Context(), id, at(2*time.Hour), at(10*time.Hour), nil)
		wantErr(t, "PromoteSigningKey "+id, err, store.ErrConflict)
	}

	after := signingKey("after", at(2*time.Hour), nil)
	retired, err := s.PromoteSigningKey(t.Context(), "next", at(2*time.Hour), at(10*time.Hour), &after)
	noErr(t, "PromoteSigningKey", err)
	if !reflect.DeepEqual(retired, []string{"old"}) {
		t.Fatalf("retired = %v, want [old]", retired)
	}
	wantNext := signingKey("next", at(time.Hour), ptr(at(2*time.Hour)))
	wantOld := signingKey("old", t0, ptr(t0))
	wantOld.RetiredAt, wantOld.PublishUntil = ptr(at(2*time.Hour)), ptr(at(10*time.Hour))
	for _, want := range []store.SigningKey{wantNext, wantOld, after} {
		if got := keyByID(t, s, want.ID); !reflect.DeepEqual(got, want) {
			t.Errorf("key %s = %+v, want %+v", want.ID, got, want)
		}
	}
	if got := keyByID(t, s, "gone"); !got.RetiredAt.Equal(t0) || !got.PublishUntil.Equal(at(day)) {
		t.Errorf("a key retired before = %+v, want it untouched", got)
	}

	// A promotion that loses changes nothing, not even the key it brings.
	again := signingKey("again", at(3*time.Hour), nil)
	_, err = s.PromoteSigningKey(t.Context(), "next", at(3*time.Hour), at(11*time.Hour), &again)
	wantErr(t, "PromoteSigningKey twice", err, store.ErrConflict)
	if ids := keyIDs(listKeys(t, s, time.Time{})); slices.Contains(ids, "again") {
		t.Fatalf("keys = %v: the losing promotion stored its next key", ids)
	}

	// Of instances promoting the same key at once, one wins.
	const racers = 8
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := signingKey(fmt.Sprintf("racer-%d", i), at(4*time.Hour), nil)
			_, errs[i] = s.PromoteSigningKey(t.Context(), "after", at(4*time.Hour), at(12*time.Hour), &k)
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("racer %d: %v", i, err)
		}
	}
	var signing, waiting int
	for _, k := range listKeys(t, s, at(4*time.Hour)) {
		switch {
		case k.RetiredAt != nil:
		case k.ActivatedAt != nil:
			signing++
		default:
			waiting++
		}
	}
	if won != 1 || signing != 1 || waiting != 1 {
		t.Fatalf("%d promotions won, leaving %d signing and %d waiting keys; want 1, 1, 1", won, signing, waiting)
	}
}

func testReplaceSigningKeys(t *testing.T, s store.Store) {
	for _, k := range []store.SigningKey{
		signingKey("current", t0, ptr(t0)),
		signingKey("next", t0, nil),
	} {
		noErr(t, "PutSigningKey", s.PutSigningKey(t.Context(), k))
	}
	retired := signingKey("retired", at(-day), ptr(at(-day)))
	retired.RetiredAt, retired.PublishUntil = ptr(t0), ptr(at(30*day))
	noErr(t, "PutSigningKey retired", s.PutSigningKey(t.Context(), retired))

	replaceAt := at(time.Hour)
	token := func(id, kid string, expires time.Time) store.APIToken {
		return store.APIToken{ID: id, Name: id, Kind: store.TokenSystem, CreatedBy: "creator", Scope: []string{"models:use"},
			CreatedAt: t0, ExpiresAt: expires, KeyID: kid}
	}
	for _, tok := range []store.APIToken{
		token("live", "current", at(day)),
		token("expired", "current", replaceAt),
		token("revoked-before", "current", at(day)),
		token("of-retired", "retired", at(day)),
		token("unknown-key", "", at(day)),
	} {
		createToken(t, s, tok)
	}
	revoke(t, s, "revoked-before", at(time.Minute))
	if got := getToken(t, s, "of-retired").KeyID; got != "retired" {
		t.Fatalf("stored token's KeyID = %q, want retired", got)
	}

	// A replacement that fails changes nothing.
	clash := []store.SigningKey{signingKey("fresh", replaceAt, ptr(replaceAt)), retired}
	_, _, err := s.ReplaceSigningKeys(t.Context(), clash, replaceAt, "admin-1")
	wantErr(t, "ReplaceSigningKeys with a stored ID", err, store.ErrConflict)
	if ids := keyIDs(listKeys(t, s, replaceAt)); !reflect.DeepEqual(ids, []string{"next", "current", "retired"}) || getToken(t, s, "live").RevokedAt != nil {
		t.Fatalf("after a failed replacement keys = %v and the live token revoked at %v; want nothing changed", ids, getToken(t, s, "live").RevokedAt)
	}

	fresh := []store.SigningKey{signingKey("fresh", replaceAt, ptr(replaceAt)), signingKey("fresh-next", replaceAt, nil)}
	withdrawn, n, err := s.ReplaceSigningKeys(t.Context(), fresh, replaceAt, "admin-1")
	noErr(t, "ReplaceSigningKeys", err)
	slices.Sort(withdrawn)
	if !reflect.DeepEqual(withdrawn, []string{"current", "next"}) || n != 1 {
		t.Fatalf("withdrawn %v, %d tokens revoked; want [current next] and the one live token of current", withdrawn, n)
	}
	// Withdrawn keys are unpublished at once; the retired key stays.
	if ids := keyIDs(listKeys(t, s, replaceAt)); !reflect.DeepEqual(ids, []string{"fresh-next", "fresh", "retired"}) {
		t.Fatalf("keys published at the replacement = %v, want fresh-next, fresh, retired", ids)
	}
	for _, id := range withdrawn {
		if k := keyByID(t, s, id); k.RetiredAt == nil || !k.RetiredAt.Equal(replaceAt) || !k.PublishUntil.Equal(replaceAt) {
			t.Errorf("withdrawn key %s retired %v, published until %v; want both %s", id, k.RetiredAt, k.PublishUntil, replaceAt)
		}
	}
	for id, want := range map[string]*time.Time{
		"live": ptr(replaceAt), "expired": nil, "revoked-before": ptr(at(time.Minute)), "of-retired": nil, "unknown-key": nil,
	} {
		if got := getToken(t, s, id).RevokedAt; !reflect.DeepEqual(got, want) {
			t.Errorf("token %s revoked at %v, want %v", id, got, want)
		}
	}
	events, err := s.ListAudit(t.Context(), store.AuditFilter{Type: "token.revoked"})
	noErr(t, "ListAudit", err)
	if len(events) != 1 || events[0].ActorID != "admin-1" || !events[0].Time.Equal(replaceAt) ||
		events[0].Detail["token_id"] != "live" || events[0].Detail["reason"] != "key_withdrawn" {
		t.Fatalf("token.revoked events = %+v, want one for live by admin-1, reason key_withdrawn", events)
	}
	since, err := s.RevokedTokensSince(t.Context(), replaceAt, replaceAt)
	noErr(t, "RevokedTokensSince", err)
	if len(since) != 1 || since[0].ID != "live" {
		t.Fatalf("revocations since the replacement = %+v, want the live token's, for the other instances", since)
	}
}
