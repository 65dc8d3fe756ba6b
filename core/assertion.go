package core

import (
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/lru"
)

// Assertion returns the X-Gatehouse-Assertion for the subject, reusing one
// that still has at least half its life so the hot path rarely signs.
func (rt *Runtime) Assertion(s *Subject) (string, error) {
	key := assertionKey{s.User.ID, s.User.Role, s.User.Email, rt.Keys.CurrentKID()}
	now := time.Now()
	if tok, ok := rt.assertions.Get(key, now); ok {
		return tok, nil
	}
	tok, err := rt.Keys.Assertion(rt.PublicURL.String(), rt.PublicURL.String(), s.User.ID, s.User.Email, s.User.Role, AssertionTTL)
	if err != nil {
		return "", fmt.Errorf("%w: sign assertion: %v", ErrUnavailable, err)
	}
	rt.assertions.Put(key, tok, now.Add(AssertionTTL/2), now)
	return tok, nil
}

// AssertionTTL is the life of an upstream assertion.
const AssertionTTL = 60 * time.Second

// assertionCache keeps each signed assertion until it has half its life left.
type assertionCache struct {
	*lru.Cache[assertionKey, string]
}

type assertionKey struct{ userID, role, email, kid string }

const maxCachedAssertions = 10000

func newAssertionCache() assertionCache {
	return assertionCache{lru.New[assertionKey, string](maxCachedAssertions, nil)}
}
