package storetest

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// The reviewers of a new request are told (spec §10): its outbox messages go
// in with the request; a request left pending past request_ttl expires.

func testCreateAccessRequestOutbox(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	msgs := []store.OutboxMessage{
		{ID: "hook", Channel: "webhook", Payload: []byte(`{"event":"access_request.created"}`), CreatedAt: t0},
		{ID: "mail", Channel: "email", Payload: []byte(`{"to":"root@example.com"}`), CreatedAt: t0},
	}
	_, err := s.CreateAccessRequest(t.Context(), store.AccessRequest{User: store.RequestUser{ID: ann.ID}, Purpose: "chat", CreatedAt: t0},
		store.AuditEvent{Type: "request.create", Time: t0}, msgs...)
	noErr(t, "CreateAccessRequest with outbox", err)
	if got := dueIDs(t, s); !reflect.DeepEqual(got, []string{"hook", "mail"}) {
		t.Fatalf("outbox after the request = %v, want [hook mail]", got)
	}
	// A second pending request is refused with nothing of it written.
	_, err = s.CreateAccessRequest(t.Context(), store.AccessRequest{User: store.RequestUser{ID: ann.ID}, CreatedAt: at(time.Minute)},
		store.AuditEvent{Type: "request.create"}, store.OutboxMessage{ID: "again", Channel: "webhook", Payload: []byte("{}"), CreatedAt: t0})
	wantErr(t, "second pending request", err, store.ErrConflict)
	// A message that cannot be written takes the request with it.
	bob := login(t, s, "bob@example.com", false)
	_, err = s.CreateAccessRequest(t.Context(), store.AccessRequest{User: store.RequestUser{ID: bob.ID}, CreatedAt: t0},
		store.AuditEvent{Type: "request.create"}, store.OutboxMessage{ID: "hook", Channel: "webhook", Payload: []byte("{}"), CreatedAt: t0})
	wantErr(t, "request with a duplicate outbox ID", err, store.ErrConflict)
	if _, err := s.LatestAccessRequest(t.Context(), bob.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("request whose outbox failed: %v, want none stored", err)
	}
	if got := dueIDs(t, s); !reflect.DeepEqual(got, []string{"hook", "mail"}) {
		t.Fatalf("outbox after refused requests = %v, want [hook mail]", got)
	}
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"request.create"}) {
		t.Fatalf("audit = %v, want one request.create", got)
	}
}

func testExpireAccessRequests(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	bob := login(t, s, "bob@example.com", false)
	cat := login(t, s, "cat@example.com", false)
	dan := login(t, s, "dan@example.com", false)
	old := request(t, s, ann, "user", t0)
	fresh := request(t, s, bob, "user", at(2*time.Hour))
	approved := request(t, s, cat, "user", t0)
	denied := request(t, s, dan, "user", t0)
	for _, d := range []store.Decision{
		{RequestID: approved.ID, Approve: true, ReviewerID: root.ID, Now: at(time.Minute)},
		{RequestID: denied.ID, ReviewerID: root.ID, Now: at(time.Minute)},
	} {
		_, err := s.DecideAccessRequest(t.Context(), d)
		noErr(t, "DecideAccessRequest", err)
	}
	approved, denied = getRequest(t, s, approved.ID), getRequest(t, s, denied.ID)

	var followed []store.AccessRequest
	follow := func(r store.AccessRequest) (store.RequestExpiry, error) {
		followed = append(followed, r)
		return store.RequestExpiry{
			Outbox: []store.OutboxMessage{{ID: "told-" + r.User.Email, Channel: "email", Payload: []byte("{}"), CreatedAt: at(3 * time.Hour)}},
			Audit:  store.AuditEvent{Type: "access_request.expired", ActorID: "system", TargetID: r.User.ID, Time: at(3 * time.Hour)},
		}, nil
	}
	got, err := s.ExpireAccessRequests(t.Context(), at(time.Hour), at(3*time.Hour), 10, follow)
	noErr(t, "ExpireAccessRequests", err)
	want := old
	want.Status, want.DecidedAt = store.RequestExpired, ptr(at(3*time.Hour))
	if !reflect.DeepEqual(got, []store.AccessRequest{want}) || !reflect.DeepEqual(followed, got) {
		t.Fatalf("expired %+v (followed %+v), want only ann's pending request from before the cutoff: %+v", got, followed, want)
	}
	for _, keep := range []store.AccessRequest{want, fresh, approved, denied} {
		if stored := getRequest(t, s, keep.ID); !reflect.DeepEqual(stored, keep) {
			t.Errorf("stored %+v, want %+v", stored, keep)
		}
	}
	if u := getUser(t, s, ann.ID); u.Status != store.StatusPending {
		t.Errorf("requester after expiry = %s, want still pending", u.Status)
	}
	if got := dueIDs(t, s); !reflect.DeepEqual(got, []string{"told-ann@example.com"}) {
		t.Fatalf("outbox = %v, want the message to ann", got)
	}
	if got := auditTypes(t, s, store.AuditFilter{}); !reflect.DeepEqual(got, []string{"access_request.expired"}) {
		t.Fatalf("audit = %v, want one access_request.expired", got)
	}

	again, err := s.ExpireAccessRequests(t.Context(), at(time.Hour), at(4*time.Hour), 10, follow)
	if err != nil || len(again) != 0 {
		t.Fatalf("second pass expired %+v, %v; want nothing", again, err)
	}
	// An expired request is no longer pending: its requester may ask again.
	if next := request(t, s, ann, "user", at(5*time.Hour)); getRequest(t, s, next.ID).Status != store.RequestPending {
		t.Fatalf("a new request after expiry is not pending")
	}
}

func testExpireAccessRequestsOldestFirst(t *testing.T, s store.Store) {
	var ids []string
	for i, email := range []string{"ann@example.com", "bob@example.com", "cat@example.com"} {
		// Created newest first, to show the order is the requests' age.
		ids = append([]string{request(t, s, login(t, s, email, false), "user", at(-time.Duration(i)*time.Minute)).ID}, ids...)
	}
	got, err := s.ExpireAccessRequests(t.Context(), at(time.Hour), at(time.Hour), 2, nil)
	noErr(t, "ExpireAccessRequests", err)
	if len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[1] {
		t.Fatalf("expired %+v, want the two oldest %v", got, ids[:2])
	}
	if getRequest(t, s, ids[2]).Status != store.RequestPending {
		t.Fatal("the request past the limit was expired")
	}
}

// testExpireAccessRequestsFollowFails: a request whose messages cannot be
// built stays pending, with nothing of its expiry written.
func testExpireAccessRequestsFollowFails(t *testing.T, s store.Store) {
	ann := login(t, s, "ann@example.com", false)
	r := request(t, s, ann, "user", t0)
	boom := errors.New("boom")
	got, err := s.ExpireAccessRequests(t.Context(), at(time.Hour), at(time.Hour), 10, func(store.AccessRequest) (store.RequestExpiry, error) {
		return store.RequestExpiry{}, boom
	})
	if !errors.Is(err, boom) || len(got) != 0 {
		t.Fatalf("ExpireAccessRequests = %+v, %v; want nothing and the error", got, err)
	}
	if stored := getRequest(t, s, r.ID); !reflect.DeepEqual(stored, r) {
		t.Fatalf("request after a failed expiry = %+v, want untouched %+v", stored, r)
	}
	if due := dueIDs(t, s); len(due) != 0 {
		t.Fatalf("outbox after a failed expiry = %v, want empty", due)
	}
}

// testConcurrentExpiryAndDecision races expiry passes (other instances)
// against a decision: exactly one of them ends the request, and only the
// winner's messages are queued.
func testConcurrentExpiryAndDecision(t *testing.T, s store.Store) {
	root := admin(t, s, "root@example.com")
	ann := login(t, s, "ann@example.com", false)
	r := request(t, s, ann, "user", t0)
	const passes = 8
	expired := make([]int, passes)
	errs := make([]error, passes+1)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range passes {
		wg.Go(func() {
			<-start
			got, err := s.ExpireAccessRequests(t.Context(), at(time.Hour), at(time.Hour), 10, func(store.AccessRequest) (store.RequestExpiry, error) {
				return store.RequestExpiry{Outbox: []store.OutboxMessage{{Channel: "webhook", Payload: []byte("{}"), CreatedAt: t0}}}, nil
			})
			expired[i], errs[i] = len(got), err
		})
	}
	wg.Go(func() {
		<-start
		_, errs[passes] = s.DecideAccessRequest(t.Context(), store.Decision{RequestID: r.ID, ReviewerID: root.ID, Now: at(time.Hour),
			Outbox: []store.OutboxMessage{{Channel: "email", Payload: []byte("{}"), CreatedAt: t0}}})
	})
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case i == passes && err == nil:
			wins++
		case i == passes && errors.Is(err, store.ErrConflict):
		case err != nil:
			t.Fatalf("call %d: %v", i, err)
		default:
			wins += expired[i]
		}
	}
	if wins != 1 {
		t.Fatalf("%d winners (expiries %v, decision %v), want exactly 1", wins, expired, errs[passes])
	}
	if due := dueIDs(t, s); len(due) != 1 {
		t.Fatalf("outbox holds %d messages, want the winner's one", len(due))
	}
}

func getRequest(t *testing.T, s store.Store, id string) store.AccessRequest {
	t.Helper()
	r, err := s.GetAccessRequest(t.Context(), id)
	noErr(t, "GetAccessRequest", err)
	return r
}

func dueIDs(t *testing.T, s store.Store) []string {
	t.Helper()
	due, err := s.DueOutbox(t.Context(), at(24*time.Hour), 100)
	noErr(t, "DueOutbox", err)
	ids := []string{}
	for _, m := range due {
		ids = append(ids, m.ID)
	}
	return ids
}
