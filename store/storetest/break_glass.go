package storetest

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// Break-glass (spec §10): a sealed one-time code is stored as its hash and
// used once; a user has at most one grant not ended; the worker ends each
// expired grant once; a grant is acknowledged once.

func grant(id string, u store.User, created, expires time.Time) store.BreakGlassGrant {
	return store.BreakGlassGrant{ID: id, User: store.RequestUser{ID: u.ID}, Role: "admin", Reason: "the primary admin is unreachable",
		CreatedAt: created, ExpiresAt: expires}
}

func grantIDs(list []store.BreakGlassGrant) []string {
	ids := []string{}
	for _, g := range list {
		ids = append(ids, g.ID)
	}
	return ids
}

func testBreakGlassGrant(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	msgs := []store.OutboxMessage{{ID: "hook", Channel: "webhook", Payload: []byte(`{"event":"break_glass.invoked"}`), CreatedAt: t0}}
	g, err := s.CreateBreakGlassGrant(t.Context(), grant("g1", ann, t0, at(time.Hour)), "", store.AuditEvent{Type: "break_glass.invoked", Time: t0}, msgs...)
	noErr(t, "CreateBreakGlassGrant", err)
	want := store.BreakGlassGrant{ID: "g1", User: store.RequestUser{ID: ann.ID, Email: ann.Email, Name: ann.Name}, Role: "admin",
		Reason: "the primary admin is unreachable", CreatedAt: t0, ExpiresAt: at(time.Hour)}
	if !reflect.DeepEqual(g, want) {
		t.Fatalf("created grant = %+v, want %+v", g, want)
	}
	if got, err := s.GetBreakGlassGrant(t.Context(), "g1"); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetBreakGlassGrant = %+v, %v; want %+v", got, err, want)
	}
	if !g.Active(at(59*time.Minute)) || g.Active(at(time.Hour)) {
		t.Fatal("a grant is active before its expiry and not from it")
	}
	if got := dueIDs(t, s); !reflect.DeepEqual(got, []string{"hook"}) {
		t.Fatalf("outbox = %v, want the grant's message", got)
	}
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"break_glass.invoked"}) {
		t.Fatalf("audit = %v, want break_glass.invoked", got)
	}
	// A second grant while the first is not ended is refused, with nothing of it written.
	_, err = s.CreateBreakGlassGrant(t.Context(), grant("g2", ann, at(time.Minute), at(time.Hour)), "", store.AuditEvent{Type: "break_glass.invoked"},
		store.OutboxMessage{ID: "again", Channel: "webhook", Payload: []byte("{}"), CreatedAt: t0})
	wantErr(t, "second open grant", err, store.ErrConflict)
	if got := dueIDs(t, s); !reflect.DeepEqual(got, []string{"hook"}) {
		t.Fatalf("outbox after a refused grant = %v, want [hook]", got)
	}
	_, err = s.CreateBreakGlassGrant(t.Context(), grant("g3", store.User{ID: "nobody"}, t0, at(time.Hour)), "", store.AuditEvent{})
	wantErr(t, "grant of an unknown user", err, store.ErrNotFound)
	_, err = s.GetBreakGlassGrant(t.Context(), "g3")
	wantErr(t, "GetBreakGlassGrant(unknown)", err, store.ErrNotFound)
}

func testBreakGlassCodes(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	bob := login(t, s, "bob@example.com", false)
	noErr(t, "SealBreakGlassCode", s.SealBreakGlassCode(t.Context(), "hash-1", t0, store.AuditEvent{Type: "break_glass.code_sealed", ActorID: "cli", Time: t0}))
	wantErr(t, "sealing the same hash", s.SealBreakGlassCode(t.Context(), "hash-1", t0, store.AuditEvent{}), store.ErrConflict)

	_, err := s.CreateBreakGlassGrant(t.Context(), grant("unknown-code", ann, t0, at(time.Hour)), "hash-2", store.AuditEvent{})
	wantErr(t, "grant with an unknown code", err, store.ErrNotFound)

	g, err := s.CreateBreakGlassGrant(t.Context(), grant("with-code", ann, t0, at(time.Hour)), "hash-1", store.AuditEvent{Type: "break_glass.invoked"})
	noErr(t, "grant with a sealed code", err)
	if !g.CodeUsed {
		t.Fatal("a grant made with a code says code_used false")
	}
	_, err = s.CreateBreakGlassGrant(t.Context(), grant("code-again", bob, t0, at(time.Hour)), "hash-1", store.AuditEvent{})
	wantErr(t, "the same code again", err, store.ErrNotFound)

	// A grant refused for another reason leaves its code unused.
	noErr(t, "SealBreakGlassCode", s.SealBreakGlassCode(t.Context(), "hash-3", t0, store.AuditEvent{}))
	_, err = s.CreateBreakGlassGrant(t.Context(), grant("second", ann, at(time.Minute), at(time.Hour)), "hash-3", store.AuditEvent{})
	wantErr(t, "a second open grant with a code", err, store.ErrConflict)
	_, err = s.CreateBreakGlassGrant(t.Context(), grant("bob", bob, at(time.Minute), at(time.Hour)), "hash-3", store.AuditEvent{})
	noErr(t, "the code kept after the refusal", err)
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"break_glass.invoked", "break_glass.code_sealed"}) {
		t.Fatalf("audit = %v", got)
	}
}

func testConcurrentBreakGlassCode(t *testing.T, s store.Store) {
	noErr(t, "SealBreakGlassCode", s.SealBreakGlassCode(t.Context(), "once", t0, store.AuditEvent{}))
	users := []store.User{login(t, s, "a@example.com", false), login(t, s, "b@example.com", false),
		login(t, s, "c@example.com", false), login(t, s, "d@example.com", false)}
	var wg sync.WaitGroup
	errs := make([]error, len(users))
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.CreateBreakGlassGrant(t.Context(), grant("g-"+u.Email, u, t0, at(time.Hour)), "once", store.AuditEvent{})
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d grants used one code, want 1 (errors %v)", won, errs)
	}
}

func testListBreakGlassGrants(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	bob := login(t, s, "bob@example.com", false)
	for _, g := range []store.BreakGlassGrant{grant("old", ann, t0, at(time.Hour)), grant("new", bob, at(time.Minute), at(2*time.Hour))} {
		_, err := s.CreateBreakGlassGrant(t.Context(), g, "", store.AuditEvent{})
		noErr(t, "CreateBreakGlassGrant", err)
	}
	list := func(f store.BreakGlassFilter) []string {
		t.Helper()
		got, err := s.ListBreakGlassGrants(t.Context(), f)
		noErr(t, "ListBreakGlassGrants", err)
		return grantIDs(got)
	}
	if got := list(store.BreakGlassFilter{}); !reflect.DeepEqual(got, []string{"new", "old"}) {
		t.Fatalf("every grant = %v, want newest first", got)
	}
	if got := list(store.BreakGlassFilter{Active: true, Now: at(90 * time.Minute)}); !reflect.DeepEqual(got, []string{"new"}) {
		t.Fatalf("active grants = %v, want [new]", got)
	}

	acked, err := s.AcknowledgeBreakGlassGrant(t.Context(), "old", root.ID, at(5*time.Minute), store.AuditEvent{Type: "break_glass.acknowledged"})
	noErr(t, "AcknowledgeBreakGlassGrant", err)
	if acked.AcknowledgedBy == nil || acked.AcknowledgedBy.Email != root.Email || acked.AcknowledgedAt == nil || !acked.AcknowledgedAt.Equal(at(5*time.Minute)) {
		t.Fatalf("acknowledged grant = %+v, want by %s at +5m", acked, root.Email)
	}
	_, err = s.AcknowledgeBreakGlassGrant(t.Context(), "old", root.ID, at(6*time.Minute), store.AuditEvent{Type: "break_glass.acknowledged"})
	wantErr(t, "acknowledging twice", err, store.ErrConflict)
	_, err = s.AcknowledgeBreakGlassGrant(t.Context(), "none", root.ID, at(6*time.Minute), store.AuditEvent{})
	wantErr(t, "acknowledging an unknown grant", err, store.ErrNotFound)
	if got := list(store.BreakGlassFilter{Unacknowledged: true}); !reflect.DeepEqual(got, []string{"new"}) {
		t.Fatalf("unacknowledged grants = %v, want [new]", got)
	}
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"break_glass.acknowledged"}) {
		t.Fatalf("audit = %v, want one break_glass.acknowledged", got)
	}
}

func testEndBreakGlassGrants(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	bob := login(t, s, "bob@example.com", false)
	for _, g := range []store.BreakGlassGrant{grant("due", ann, t0, at(time.Hour)), grant("later", bob, t0, at(3*time.Hour))} {
		_, err := s.CreateBreakGlassGrant(t.Context(), g, "", store.AuditEvent{})
		noErr(t, "CreateBreakGlassGrant", err)
	}
	event := func(g store.BreakGlassGrant) store.AuditEvent {
		return store.AuditEvent{Type: "break_glass.expired", ActorID: "system", TargetID: g.User.ID, Time: g.ExpiresAt}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		ended []string
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.EndBreakGlassGrants(t.Context(), at(2*time.Hour), 10, event)
			if err != nil {
				t.Errorf("EndBreakGlassGrants: %v", err)
			}
			mu.Lock()
			ended = append(ended, grantIDs(got)...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if !reflect.DeepEqual(ended, []string{"due"}) {
		t.Fatalf("ended by concurrent callers = %v, want [due] once", ended)
	}
	g, err := s.GetBreakGlassGrant(t.Context(), "due")
	noErr(t, "GetBreakGlassGrant", err)
	if g.EndedAt == nil || !g.EndedAt.Equal(at(2*time.Hour)) || g.Active(at(30*time.Minute)) {
		t.Fatalf("ended grant = %+v, want ended at +2h and no longer active", g)
	}
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"break_glass.expired"}) {
		t.Fatalf("audit = %v, want one break_glass.expired", got)
	}
	// Its user may invoke again once it ended.
	_, err = s.CreateBreakGlassGrant(t.Context(), grant("again", ann, at(2*time.Hour), at(3*time.Hour)), "", store.AuditEvent{})
	noErr(t, "a new grant after the end of the last", err)
}
