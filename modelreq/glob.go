package modelreq

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gobwas/glob"
)

// maxCachedGlobs bounds the compiled-pattern cache. Patterns come from token
// model lists, so a handful are in use at a time; past the bound patterns are
// compiled on every call rather than growing memory without limit.
const maxCachedGlobs = 1024

var (
	globCache     sync.Map // pattern string → *glob.Pattern
	globCacheSize atomic.Int64
)

// MatchGlob reports whether name matches pattern the way the Rego policy's
// glob.match(pattern, null, name) does: no separators, so `*` matches any run
// of characters including `.`, `/` and `:`; `?` one character; `[…]` classes;
// `{a,b}` alternatives; `\` escapes. An invalid pattern matches nothing, as
// the policy denies when glob.match fails.
func MatchGlob(pattern, name string) bool {
	g, err := compileGlob(pattern)
	return err == nil && g.Match(name)
}

// ValidGlob reports why pattern is not a valid glob, so it can be refused when
// a token is created rather than fail every request later.
func ValidGlob(pattern string) error {
	_, err := compileGlob(pattern)
	return err
}

func compileGlob(pattern string) (*glob.Pattern, error) {
	if g, ok := globCache.Load(pattern); ok {
		return g.(*glob.Pattern), nil
	}
	// OPA compiles glob.match with null delimiters as gobwas/glob with no
	// separators; anything else would let `*` disagree with the policy.
	g, err := glob.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("model pattern %q: %w", pattern, err)
	}
	if globCacheSize.Load() < maxCachedGlobs {
		if _, loaded := globCache.LoadOrStore(pattern, g); !loaded {
			globCacheSize.Add(1)
		}
	}
	return g, nil
}
