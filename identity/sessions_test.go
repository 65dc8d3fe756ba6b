package identity

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testclock"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/storetest"
)

// newTestStore opens an empty SQLite store, the real backend, in the test's
// temporary directory.
func newTestStore(t testing.TB) *store.SQLite { return storetest.OpenSQLite(t) }

// newTestUser signs a person in for the first time and returns their user
// ID: the store keeps sessions of known users only.
func newTestUser(t testing.TB, st *store.SQLite) string {
	t.Helper()
	u, err := st.RecordLogin(context.Background(), store.LoginInfo{
		Issuer: "https://idp.example", Subject: "alice", Email: "alice@example.com", Name: "Alice"})
	if err != nil {
		t.Fatalf("record login: %v", err)
	}
	return u.ID
}

// countingStore is the real store, counting the reads and touches that the
// hot path is meant to keep few.
type countingStore struct {
	*store.SQLite
	reads, touches atomic.Int64
}

func (c *countingStore) GetSession(ctx context.Context, id string) (store.Session, error) {
	c.reads.Add(1)
	return c.SQLite.GetSession(ctx, id)
}

func (c *countingStore) TouchSession(ctx context.Context, id string, at time.Time) error {
	c.touches.Add(1)
	return c.SQLite.TouchSession(ctx, id, at)
}

// has reports whether the store holds a session with id, without counting
// the read.
func (c *countingStore) has(t testing.TB, id string) bool {
	t.Helper()
	_, err := c.SQLite.GetSession(context.Background(), id)
	if errors.Is(err, store.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("get session: %v", err)
	}
	return true
}

// fakeClock is the injected clock of the code under test.
type fakeClock = testclock.Clock

func newFakeClock() *fakeClock { return testclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) }

func requestWithCookie(c *http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if c != nil {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	return r
}

// newTestSessions returns sessions kept in a real store, the store, their
// clock, and the ID of the one user the store knows.
func newTestSessions(t *testing.T, cfg SessionConfig) (*Sessions, *countingStore, *fakeClock, string) {
	t.Helper()
	st := &countingStore{SQLite: newTestStore(t)}
	clock := newFakeClock()
	return NewSessions(st, cfg, clock.Now), st, clock, newTestUser(t, st.SQLite)
}

func TestSessionCookieAttributes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		secure    bool
		wantName  string
		wantSet   string
		wantClear string
	}{
		{
			name:      "https",
			secure:    true,
			wantName:  "__Host-gatehouse_session",
			wantSet:   "; Path=/; Expires=Mon, 02 Mar 2026 12:00:00 GMT; HttpOnly; Secure; SameSite=Lax",
			wantClear: "__Host-gatehouse_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax",
		},
		{
			name:      "plain http",
			secure:    false,
			wantName:  "gatehouse_session",
			wantSet:   "; Path=/; Expires=Mon, 02 Mar 2026 12:00:00 GMT; HttpOnly; SameSite=Lax",
			wantClear: "gatehouse_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, clock, userID := newTestSessions(t, SessionConfig{Secure: tc.secure})
			if got := s.CookieName(); got != tc.wantName {
				t.Errorf("CookieName() = %q, want %q", got, tc.wantName)
			}
			c, sess, err := s.Create(t.Context(), userID, "hint", store.AuthContext{})
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.wantName + "=" + c.Value + tc.wantSet; c.String() != want {
				t.Errorf("Set-Cookie = %q\nwant        %q", c.String(), want)
			}
			if c.Domain != "" {
				t.Errorf("Domain = %q, want host-only", c.Domain)
			}
			if !sess.ExpiresAt.Equal(clock.Now().Add(24*time.Hour)) || !c.Expires.Equal(sess.ExpiresAt) {
				t.Errorf("session expires %v, cookie %v; want both %v", sess.ExpiresAt, c.Expires, clock.Now().Add(24*time.Hour))
			}
			if got := s.ClearCookie().String(); got != tc.wantClear {
				t.Errorf("ClearCookie() = %q\nwant          %q", got, tc.wantClear)
			}
		})
	}
}

func TestSessionStoreKeepsOnlyTheHash(t *testing.T) {
	s, st, clock, userID := newTestSessions(t, SessionConfig{})
	auth := store.AuthContext{ACR: "urn:example:mfa", AMR: []string{"pwd", "otp"}, AuthTime: clock.Now().Add(-time.Minute)}
	c, sess, err := s.Create(t.Context(), userID, "id-token", auth)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Value) != 43 {
		t.Errorf("cookie value has %d characters, want 43 (32 bytes base64url)", len(c.Value))
	}
	if want := sessionID(c.Value); sess.ID != want || len(sess.ID) != 64 {
		t.Errorf("session ID = %q, want hex SHA-256 of the cookie %q", sess.ID, want)
	}
	if st.has(t, c.Value) || !st.has(t, sess.ID) {
		t.Error("store must be keyed by the hash, never by the cookie value")
	}
	got, err := s.Lookup(t.Context(), requestWithCookie(c))
	if err != nil {
		t.Fatal(err)
	}
	want := store.Session{ID: sess.ID, UserID: userID, CreatedAt: clock.Now(), LastSeenAt: clock.Now(),
		ExpiresAt: clock.Now().Add(24 * time.Hour), IDTokenHint: "id-token", Auth: auth}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Lookup = %+v\nwant     %+v", got, want)
	}
	_, other, _ := s.Create(t.Context(), userID, "", store.AuthContext{})
	if other.ID == sess.ID {
		t.Error("two sessions got the same ID")
	}
}

func TestSessionLookupWithoutValidCookie(t *testing.T) {
	s, st, _, userID := newTestSessions(t, SessionConfig{})
	valid, _, err := s.Create(t.Context(), userID, "", store.AuthContext{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		cookie *http.Cookie
		want   error
	}{
		{"no cookie", nil, ErrNoSession},
		{"empty value", &http.Cookie{Name: s.CookieName(), Value: ""}, ErrNoSession},
		{"other cookie only", &http.Cookie{Name: "gatehouse_login", Value: valid.Value}, ErrNoSession},
		{"too short", &http.Cookie{Name: s.CookieName(), Value: valid.Value[:42]}, ErrSessionInvalid},
		{"too long", &http.Cookie{Name: s.CookieName(), Value: valid.Value + "A"}, ErrSessionInvalid},
		{"not base64url", &http.Cookie{Name: s.CookieName(), Value: strings.Repeat("+", 43)}, ErrSessionInvalid},
		{"padding", &http.Cookie{Name: s.CookieName(), Value: valid.Value[:42] + "="}, ErrSessionInvalid},
		{"the store ID instead of the value", &http.Cookie{Name: s.CookieName(), Value: sessionID(valid.Value)}, ErrSessionInvalid},
		{"unknown value", &http.Cookie{Name: s.CookieName(), Value: strings.Repeat("A", 43)}, ErrSessionInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Lookup(t.Context(), requestWithCookie(tc.cookie))
			if !errors.Is(err, tc.want) {
				t.Errorf("Lookup error = %v, want %v", err, tc.want)
			}
		})
	}
	if n := st.reads.Load(); n != 1 {
		t.Errorf("store read %d times, want 1: only the well-formed unknown value reaches the store", n)
	}
}

func TestSessionAbsoluteExpiry(t *testing.T) {
	s, st, clock, userID := newTestSessions(t, SessionConfig{Lifetime: 3 * time.Hour, IdleTimeout: time.Hour})
	c, sess, err := s.Create(t.Context(), userID, "", store.AuthContext{})
	if err != nil {
		t.Fatal(err)
	}
	// Staying active never extends the absolute lifetime.
	for range 5 {
		clock.Advance(30 * time.Minute)
		if _, err := s.Lookup(t.Context(), requestWithCookie(c)); err != nil {
			t.Fatalf("at %v: %v", clock.Now(), err)
		}
	}
	clock.Advance(29*time.Minute + 59*time.Second)
	if _, err := s.Lookup(t.Context(), requestWithCookie(c)); err != nil {
		t.Fatalf("one second before expiry: %v", err)
	}
	clock.Advance(time.Second)
	if _, err := s.Lookup(t.Context(), requestWithCookie(c)); !errors.Is(err, ErrSessionInvalid) {
		t.Fatalf("at expiry: error = %v, want ErrSessionInvalid", err)
	}
	if st.has(t, sess.ID) {
		t.Error("expired session still in the store")
	}
}

func TestSessionIdleTimeout(t *testing.T) {
	s, st, clock, userID := newTestSessions(t, SessionConfig{IdleTimeout: 2 * time.Hour})
	c, sess, err := s.Create(t.Context(), userID, "", store.AuthContext{})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(2*time.Hour - time.Second)
	if _, err := s.Lookup(t.Context(), requestWithCookie(c)); err != nil {
		t.Fatalf("just inside the idle timeout: %v", err)
	}
	clock.Advance(2*time.Hour - time.Second)
	if _, err := s.Lookup(t.Context(), requestWithCookie(c)); err != nil {
		t.Fatalf("activity must restart the idle timeout: %v", err)
	}
	clock.Advance(2 * time.Hour)
	if _, err := s.Lookup(t.Context(), requestWithCookie(c)); !errors.Is(err, ErrSessionInvalid) {
		t.Fatalf("after 2h idle: error = %v, want ErrSessionInvalid", err)
	}
	if st.has(t, sess.ID) {
		t.Error("idle session still in the store")
	}
}

func TestSessionTouchAtMostOnceAMinute(t *testing.T) {
	s, st, clock, userID := newTestSessions(t, SessionConfig{})
	c, _, err := s.Create(t.Context(), userID, "", store.AuthContext{})
	if err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	steps := []struct {
		advance      time.Duration
		wantTouches  int64
		wantLastSeen time.Time
	}{
		{0, 0, start},
		{30 * time.Second, 0, start},
		{29 * time.Second, 0, start},
		{time.Second, 1, start.Add(time.Minute)},
		{59 * time.Second, 1, start.Add(time.Minute)},
		{time.Second, 2, start.Add(2 * time.Minute)},
		{10 * time.Minute, 3, start.Add(12 * time.Minute)},
	}
	for i, step := range steps {
		clock.Advance(step.advance)
		sess, err := s.Lookup(t.Context(), requestWithCookie(c))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if n := st.touches.Load(); n != step.wantTouches || !sess.LastSeenAt.Equal(step.wantLastSeen) {
			t.Errorf("step %d (t+%v): %d touches, LastSeenAt %v; want %d, %v",
				i, clock.Now().Sub(start), n, sess.LastSeenAt, step.wantTouches, step.wantLastSeen)
		}
	}
}

func TestSessionRotate(t *testing.T) {
	s, st, clock, userID := newTestSessions(t, SessionConfig{Lifetime: 24 * time.Hour, IdleTimeout: 48 * time.Hour})
	oldCookie, old, err := s.Create(t.Context(), userID, "hint", store.AuthContext{})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(20 * time.Hour)
	newCookie, next, err := s.Rotate(t.Context(), requestWithCookie(oldCookie))
	if err != nil {
		t.Fatal(err)
	}
	if newCookie.Value == oldCookie.Value || next.ID == old.ID {
		t.Error("rotation kept the cookie value or ID")
	}
	if next.UserID != userID || next.IDTokenHint != "hint" {
		t.Errorf("rotated session = %+v, want same user and ID token hint", next)
	}
	if want := clock.Now().Add(24 * time.Hour); !next.ExpiresAt.Equal(want) || !newCookie.Expires.Equal(want) {
		t.Errorf("rotated session expires %v (cookie %v), want %v", next.ExpiresAt, newCookie.Expires, want)
	}
	if _, err := s.Lookup(t.Context(), requestWithCookie(oldCookie)); !errors.Is(err, ErrSessionInvalid) {
		t.Errorf("old cookie after rotation: error = %v, want ErrSessionInvalid", err)
	}
	if _, _, err := s.Rotate(t.Context(), requestWithCookie(oldCookie)); !errors.Is(err, ErrSessionInvalid) {
		t.Errorf("rotating the old cookie again: error = %v, want ErrSessionInvalid", err)
	}
	clock.Advance(23 * time.Hour)
	if got, err := s.Lookup(t.Context(), requestWithCookie(newCookie)); err != nil || got.ID != next.ID {
		t.Errorf("new cookie 43h after sign-in: %+v, %v; want the rotated session", got, err)
	}
	// Every session has expired a year on, so the sweep counts what the store holds.
	if n, err := st.DeleteExpiredSessions(t.Context(), clock.Now().AddDate(1, 0, 0)); err != nil || n != 1 {
		t.Errorf("store holds %d sessions (%v), want 1", n, err)
	}
}

func TestSessionDestroy(t *testing.T) {
	s, st, _, userID := newTestSessions(t, SessionConfig{})
	c, sess, err := s.Create(t.Context(), userID, "", store.AuthContext{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(t.Context(), requestWithCookie(c)); err != nil {
		t.Fatal(err)
	}
	if st.has(t, sess.ID) {
		t.Error("destroyed session still in the store")
	}
	if _, err := s.Lookup(t.Context(), requestWithCookie(c)); !errors.Is(err, ErrSessionInvalid) {
		t.Errorf("Lookup after Destroy: error = %v, want ErrSessionInvalid", err)
	}
	if err := s.Destroy(t.Context(), requestWithCookie(c)); err != nil {
		t.Errorf("destroying an already destroyed session: %v, want nil", err)
	}
	if err := s.Destroy(t.Context(), requestWithCookie(nil)); !errors.Is(err, ErrNoSession) {
		t.Errorf("Destroy without cookie: %v, want ErrNoSession", err)
	}
}

// A user's suspension or deletion ends their sessions in the store; ForgetUser
// drops the cached copies at once, and only theirs.
func TestSessionForgetUserDropsOnlyThatUsersSessions(t *testing.T) {
	s, st, _, alice := newTestSessions(t, SessionConfig{})
	bob, err := st.RecordLogin(t.Context(), store.LoginInfo{Issuer: "https://idp.example", Subject: "bob", Email: "bob@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var cookies []*http.Cookie
	for _, userID := range []string{alice, alice, bob.ID} {
		c, sess, err := s.Create(t.Context(), userID, "", store.AuthContext{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lookup(t.Context(), requestWithCookie(c)); err != nil { // now cached
			t.Fatal(err)
		}
		if err := st.DeleteSession(t.Context(), sess.ID); err != nil { // ended elsewhere
			t.Fatal(err)
		}
		cookies = append(cookies, c)
	}

	s.ForgetUser(alice)
	for i, c := range cookies[:2] {
		if _, err := s.Lookup(t.Context(), requestWithCookie(c)); !errors.Is(err, ErrSessionInvalid) {
			t.Errorf("Lookup of alice's session %d after ForgetUser: error = %v, want ErrSessionInvalid", i+1, err)
		}
	}
	if _, err := s.Lookup(t.Context(), requestWithCookie(cookies[2])); err != nil {
		t.Errorf("Lookup of bob's cached session after ForgetUser(alice): %v, want it served from the cache", err)
	}
	s.ForgetAll()
	if _, err := s.Lookup(t.Context(), requestWithCookie(cookies[2])); !errors.Is(err, ErrSessionInvalid) {
		t.Errorf("Lookup of bob's session after ForgetAll: error = %v, want ErrSessionInvalid", err)
	}
}

// restartableStore stands between Sessions and the database so that a test
// can take the database down and bring it back.
type restartableStore struct{ SessionStore }

func TestSessionStoreFailureIsNotInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	db, err := store.OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := &restartableStore{db}
	clock := newFakeClock()
	s := NewSessions(st, SessionConfig{}, clock.Now)
	userID := newTestUser(t, db)
	c, _, err := s.Create(t.Context(), userID, "", store.AuthContext{})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(5 * time.Minute) // so Lookup would also touch

	// The database goes down. Every store call then fails with database/sql's
	// error under the store's context; that error must come through.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, outage := db.GetSession(t.Context(), "any")
	if outage == nil {
		t.Fatal("a closed store answered")
	}
	for errors.Unwrap(outage) != nil {
		outage = errors.Unwrap(outage)
	}

	_, err = s.Lookup(t.Context(), requestWithCookie(c))
	if !errors.Is(err, outage) || errors.Is(err, ErrSessionInvalid) || errors.Is(err, ErrNoSession) {
		t.Errorf("Lookup with the store down: %v, want the store's error and not ErrSessionInvalid", err)
	}
	if _, _, err := s.Rotate(t.Context(), requestWithCookie(c)); !errors.Is(err, outage) || errors.Is(err, ErrSessionInvalid) {
		t.Errorf("Rotate with the store down: %v, want the store's error", err)
	}
	if err := s.Destroy(t.Context(), requestWithCookie(c)); !errors.Is(err, outage) {
		t.Errorf("Destroy with the store down: %v, want the store's error", err)
	}
	if _, _, err := s.Create(t.Context(), userID, "", store.AuthContext{}); !errors.Is(err, outage) {
		t.Errorf("Create with the store down: %v, want the store's error", err)
	}

	restarted, err := store.OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restarted.Close() })
	st.SessionStore = restarted
	if _, err := s.Lookup(t.Context(), requestWithCookie(c)); err != nil {
		t.Errorf("Lookup after the store recovered: %v", err)
	}
}

func TestSessionDefaults(t *testing.T) {
	st := newTestStore(t)
	s := NewSessions(st, SessionConfig{}, nil)
	if s.cfg.Lifetime != 24*time.Hour || s.cfg.IdleTimeout != 2*time.Hour {
		t.Errorf("defaults = %v lifetime, %v idle; want 24h, 2h", s.cfg.Lifetime, s.cfg.IdleTimeout)
	}
	c, sess, err := s.Create(context.Background(), newTestUser(t, st), "", store.AuthContext{})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(sess.ExpiresAt); d < 23*time.Hour || d > 24*time.Hour || c.Expires != sess.ExpiresAt {
		t.Errorf("with the real clock, session expires in %v, want about 24h", d)
	}
}

func BenchmarkLookup(b *testing.B) {
	st := newTestStore(b)
	clock := newFakeClock()
	s := NewSessions(st, SessionConfig{}, clock.Now)
	c, _, err := s.Create(context.Background(), newTestUser(b, st), "", store.AuthContext{})
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/v1/chat/completions", nil)
	r.Header.Set("Cookie", "theme=dark; "+c.Name+"="+c.Value+"; other=1")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Lookup(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}
