package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/lru"
	"github.com/gatehouse/gatehouse/store"
)

var (
	// ErrNoSession means the request carries no session cookie.
	ErrNoSession = errors.New("no session")
	// ErrSessionInvalid means the cookie names no usable session: unknown,
	// revoked, past its absolute lifetime or idle timeout, or malformed.
	ErrSessionInvalid = errors.New("session invalid")
)

const (
	defaultSessionLifetime = 24 * time.Hour
	defaultIdleTimeout     = 2 * time.Hour
	// touchInterval limits LastSeenAt writes to one a minute per session,
	// keeping the guard's hot path to a single read almost always.
	touchInterval = time.Minute
	// sessionTokenBytes of randomness are in each cookie value.
	sessionTokenBytes = 32
)

// sessionTokenLen is the length of a well-formed cookie value.
var sessionTokenLen = base64.RawURLEncoding.EncodedLen(sessionTokenBytes)

// SessionStore is the part of store.Store that sessions use.
type SessionStore interface {
	CreateSession(ctx context.Context, s store.Session) error
	GetSession(ctx context.Context, id string) (store.Session, error)
	TouchSession(ctx context.Context, id string, at time.Time) error
	RotateSession(ctx context.Context, oldID string, next store.Session) error
	DeleteSession(ctx context.Context, id string) error
}

// SessionConfig configures browser sessions.
type SessionConfig struct {
	Lifetime    time.Duration // absolute, from sign-in or the last rotation; default 24h
	IdleTimeout time.Duration // default 2h
	Secure      bool          // https: Secure cookie with the __Host- prefix
}

// Sessions issues and checks server-side browser sessions. The cookie holds
// only a random value; the store keys sessions by its SHA-256, so a copy of
// the store holds no usable cookies.
type Sessions struct {
	st  SessionStore
	cfg SessionConfig
	now func() time.Time

	cache *lru.Cache[string, cachedSession] // by session ID, grouped by user
}

// NewSessions returns sessions kept in st; now is the clock (nil = time.Now).
func NewSessions(st SessionStore, cfg SessionConfig, now func() time.Time) *Sessions {
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = defaultSessionLifetime
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultIdleTimeout
	}
	if now == nil {
		now = time.Now
	}
	return &Sessions{
		st: st, cfg: cfg, now: now,
		cache: lru.New[string](maxCachedSessions, func(c cachedSession) string { return c.sess.UserID }),
	}
}

// sessionCacheTTL bounds how long a session read from the store is reused:
// a session ended on another instance is refused here within this time.
// Sessions ended on this instance leave the cache at once.
const sessionCacheTTL = 500 * time.Millisecond

// maxCachedSessions bounds the cache; past it, the expired and then the least
// recently used sessions make room.
const maxCachedSessions = 100000

type cachedSession struct {
	sess    store.Session
	fetched time.Time
}

func (s *Sessions) cached(id string, now time.Time) (store.Session, bool) {
	c, ok := s.cache.Get(id, now)
	if !ok || now.Before(c.fetched) {
		return store.Session{}, false
	}
	return c.sess, true
}

func (s *Sessions) remember(sess store.Session, fetched time.Time) {
	s.cache.Put(sess.ID, cachedSession{sess: sess, fetched: fetched}, fetched.Add(sessionCacheTTL), fetched)
}

func (s *Sessions) forget(id string) { s.cache.Remove(id) }

// IDOf returns the store ID of the session r's cookie names (ErrNoSession
// without one, ErrSessionInvalid for a malformed one).
func (s *Sessions) IDOf(r *http.Request) (string, error) { return s.idFromCookie(r) }

// Alive reports whether session id still exists and is within its absolute
// lifetime (a stream in flight is not idle). With fresh the store answers;
// otherwise a cached copy may.
func (s *Sessions) Alive(ctx context.Context, id string, fresh bool) (bool, error) {
	now := s.now()
	sess, ok := s.cached(id, now)
	if !ok || fresh {
		var err error
		sess, err = s.st.GetSession(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			s.forget(id)
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("get session: %w", err)
		}
	}
	return now.Before(sess.ExpiresAt), nil
}

// CacheStats counts the session lookups the cache answered (hits) and those
// that read the store (misses).
func (s *Sessions) CacheStats() (hits, misses uint64) { return s.cache.Stats() }

// IdleTimeout is how long a session lasts without a request.
func (s *Sessions) IdleTimeout() time.Duration { return s.cfg.IdleTimeout }

// ForgetAll empties the cache (announcements of ended sessions may have been lost).
func (s *Sessions) ForgetAll() { s.cache.Purge() }

// Forget drops a session ended on another instance from the cache.
func (s *Sessions) Forget(id string) { s.forget(id) }

// ForgetUser drops every cached session of a user, so that a suspension or
// deletion (which deletes the sessions in the store) takes effect at once.
func (s *Sessions) ForgetUser(userID string) { s.cache.RemoveGroup(userID) }

// CookieName is the session cookie's name.
func (s *Sessions) CookieName() string {
	if s.cfg.Secure {
		return "__Host-gatehouse_session"
	}
	return "gatehouse_session"
}

// Create starts a session for userID and returns its cookie. idTokenHint is
// kept for RP-initiated logout at the IdP, auth for step-up checks.
func (s *Sessions) Create(ctx context.Context, userID, idTokenHint string, auth store.AuthContext) (*http.Cookie, store.Session, error) {
	value, sess := s.newSession(userID, idTokenHint, auth)
	if err := s.st.CreateSession(ctx, sess); err != nil {
		return nil, store.Session{}, fmt.Errorf("create session: %w", err)
	}
	return s.cookie(value, sess.ExpiresAt), sess, nil
}

// Lookup returns the session named by r's cookie. Errors: ErrNoSession,
// ErrSessionInvalid (wrapped), or the store's own error when the store fails,
// so callers can tell "sign in again" from "try later". A session past its
// lifetime or idle timeout is deleted.
func (s *Sessions) Lookup(ctx context.Context, r *http.Request) (store.Session, error) {
	sess, err := s.load(ctx, r)
	if err != nil {
		return store.Session{}, err
	}
	now := s.now().UTC()
	if now.Sub(sess.LastSeenAt) >= touchInterval {
		if err := s.st.TouchSession(ctx, sess.ID, now); err != nil {
			// A session deleted between the read and the touch was revoked.
			if errors.Is(err, store.ErrNotFound) {
				return store.Session{}, fmt.Errorf("%w: revoked", ErrSessionInvalid)
			}
			return store.Session{}, fmt.Errorf("touch session: %w", err)
		}
		sess.LastSeenAt = now
		s.remember(sess, now)
	}
	return sess, nil
}

// Rotate replaces the session named by r's cookie with a new one for the
// same user: a new cookie value and ID, and the absolute lifetime restarts.
// The old cookie stops working.
func (s *Sessions) Rotate(ctx context.Context, r *http.Request) (*http.Cookie, store.Session, error) {
	old, err := s.load(ctx, r)
	if err != nil {
		return nil, store.Session{}, err
	}
	value, next := s.newSession(old.UserID, old.IDTokenHint, old.Auth) // the sign-in it carries is the same
	s.forget(old.ID)
	if err := s.st.RotateSession(ctx, old.ID, next); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, store.Session{}, fmt.Errorf("%w: revoked", ErrSessionInvalid)
		}
		return nil, store.Session{}, fmt.Errorf("rotate session: %w", err)
	}
	return s.cookie(value, next.ExpiresAt), next, nil
}

// Destroy deletes the session named by r's cookie. A session that is
// already gone counts as destroyed.
func (s *Sessions) Destroy(ctx context.Context, r *http.Request) error {
	id, err := s.idFromCookie(r)
	if err != nil {
		return err
	}
	s.forget(id)
	if err := s.st.DeleteSession(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// ClearCookie deletes the session cookie in the browser.
func (s *Sessions) ClearCookie() *http.Cookie {
	return &http.Cookie{
		Name:     s.CookieName(),
		Path:     "/",
		MaxAge:   -1,
		Secure:   s.cfg.Secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// load reads and checks the session without touching it.
func (s *Sessions) load(ctx context.Context, r *http.Request) (store.Session, error) {
	id, err := s.idFromCookie(r)
	if err != nil {
		return store.Session{}, err
	}
	now := s.now()
	sess, ok := s.cached(id, now)
	if !ok {
		sess, err = s.st.GetSession(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return store.Session{}, fmt.Errorf("%w: unknown", ErrSessionInvalid)
		}
		if err != nil {
			return store.Session{}, fmt.Errorf("get session: %w", err)
		}
		s.remember(sess, now)
	}
	var ended string
	switch {
	case !now.Before(sess.ExpiresAt):
		ended = "expired"
	case now.Sub(sess.LastSeenAt) >= s.cfg.IdleTimeout:
		ended = "idle too long"
	}
	if ended != "" {
		// Best effort: if this delete fails, the store's expiry sweep removes
		// the row later, and the session is refused either way.
		s.forget(sess.ID)
		_ = s.st.DeleteSession(ctx, sess.ID)
		return store.Session{}, fmt.Errorf("%w: %s", ErrSessionInvalid, ended)
	}
	return sess, nil
}

// idFromCookie returns the store ID for r's session cookie. Malformed values
// are refused here, before they cost a store read.
func (s *Sessions) idFromCookie(r *http.Request) (string, error) {
	c, err := r.Cookie(s.CookieName())
	if err != nil || c.Value == "" {
		return "", ErrNoSession
	}
	if !wellFormedToken(c.Value) {
		return "", fmt.Errorf("%w: malformed cookie", ErrSessionInvalid)
	}
	return sessionID(c.Value), nil
}

// wellFormedToken reports whether v looks like a value Create issued.
func wellFormedToken(v string) bool {
	if len(v) != sessionTokenLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (s *Sessions) newSession(userID, idTokenHint string, auth store.AuthContext) (string, store.Session) {
	b := make([]byte, sessionTokenBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	value := base64.RawURLEncoding.EncodeToString(b)
	now := s.now().UTC()
	return value, store.Session{
		ID:          sessionID(value),
		UserID:      userID,
		CreatedAt:   now,
		LastSeenAt:  now,
		ExpiresAt:   now.Add(s.cfg.Lifetime),
		IDTokenHint: idTokenHint,
		Auth:        auth,
	}
}

func (s *Sessions) cookie(value string, expires time.Time) *http.Cookie {
	return &http.Cookie{
		Name:     s.CookieName(),
		Value:    value,
		Path:     "/",
		Expires:  expires,
		Secure:   s.cfg.Secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// sessionID is the store key for a cookie value: hex(SHA-256(value)).
func sessionID(cookieValue string) string {
	sum := sha256.Sum256([]byte(cookieValue))
	return hex.EncodeToString(sum[:])
}
