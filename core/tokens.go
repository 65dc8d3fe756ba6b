package core

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/keys"
	"github.com/gatehouse/gatehouse/quota"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/tokens"
)

// ErrTokenRequest wraps a token request that cannot be granted as asked.
var ErrTokenRequest = errors.New("invalid token request")

// NewToken is what a caller asks for; the subject and the ceiling on
// permissions are worked out by the API from the kind.
type NewToken struct {
	Name        string
	Kind        string
	Subject     *store.User // the user the token acts as; nil for system tokens
	Permissions []string    // requested; empty means all that are allowed
	Models      []string    // nil: every model the role may use
	ExpiresIn   time.Duration
	Allowed     []string // the ceiling: permissions may only narrow it
	Role        string   // the role written into the token
	// Limits are the token's own quotas: never wider than the role's
	// narrowed by the subject user's own.
	Limits *quota.Limits
}

// MaxTokenLifetime is the longest life of a token kind.
func (rt *Runtime) MaxTokenLifetime(kind string) time.Duration { return rt.tokenLifetimes[kind] }

// CreateToken mints a token and stores its metadata. The token string is
// returned once and never stored.
func (rt *Runtime) CreateToken(ctx context.Context, r *http.Request, creator *Subject, nt NewToken) (string, store.APIToken, error) {
	scope := nt.Permissions
	if len(scope) == 0 {
		scope = nt.Allowed
	}
	for _, p := range scope {
		if !slices.Contains(nt.Allowed, p) {
			return "", store.APIToken{}, fmt.Errorf("%w: permission %q is not among those this token may have (%s)", ErrTokenRequest, p, strings.Join(nt.Allowed, " "))
		}
	}
	scope = slices.Compact(slices.Sorted(slices.Values(scope)))
	if len(scope) == 0 {
		return "", store.APIToken{}, fmt.Errorf("%w: the token would have no permissions", ErrTokenRequest)
	}
	if nt.Limits != nil {
		if err := nt.Limits.Validate(); err != nil {
			return "", store.APIToken{}, fmt.Errorf("%w: limits: %v", ErrTokenRequest, err)
		}
		bound, whose := rt.RoleLimits(nt.Role), "the "+nt.Role+" role's"
		if nt.Subject != nil && nt.Subject.Limits != nil && !nt.Subject.Limits.IsZero() {
			bound, whose = bound.Narrow(*nt.Subject.Limits), "the user's (their own and the "+nt.Role+" role's)"
		}
		if !nt.Limits.Within(bound) {
			return "", store.APIToken{}, fmt.Errorf("%w: limits must not be wider than %s (%s)", ErrTokenRequest, whose, describeLimits(bound))
		}
	}
	maxLife := rt.tokenLifetimes[nt.Kind]
	life := nt.ExpiresIn
	if life == 0 {
		life = maxLife
	}
	if life < time.Minute || life > maxLife {
		return "", store.APIToken{}, fmt.Errorf("%w: expires_in must be between 1m and %s for %s tokens", ErrTokenRequest, maxLife, nt.Kind)
	}
	now := time.Now().UTC().Truncate(time.Second)
	id := uuid.Must(uuid.NewV7()).String()
	meta := store.APIToken{
		ID: id, Name: nt.Name, Kind: nt.Kind, CreatedBy: creator.User.ID,
		Scope: scope, Models: nt.Models, CreatedAt: now, ExpiresAt: now.Add(life),
	}
	// Kept beside the claims so that the token lists show them; zero limits
	// limit nothing and are kept as none.
	if nt.Limits != nil && !nt.Limits.IsZero() {
		limits := *nt.Limits
		meta.Limits = &limits
	}
	claims := tokens.Claims{ID: id, Kind: nt.Kind, Role: nt.Role, Scope: scope, Models: nt.Models, Limits: nt.Limits,
		IssuedAt: now, NotBefore: now, ExpiresAt: meta.ExpiresAt}
	if nt.Subject != nil {
		// The user's email and name do not ride in the token: the guard
		// reads the current user on every request (identifyBearer), so they
		// would only make each request longer, and go stale.
		meta.UserID = nt.Subject.ID
		claims.Subject = nt.Subject.ID
	} else {
		claims.Subject = "system:" + id
		claims.Name = nt.Name
	}
	raw, err := tokens.Mint(rt.Keys, rt.PublicURL.String(), append([]string{TokenAudience}, rt.tokenAudiences...), claims)
	if err != nil {
		return "", store.APIToken{}, fmt.Errorf("%w: mint token: %v", ErrUnavailable, err)
	}
	// The key that signed it, read from the token: a rotation may have
	// changed the current key since.
	if meta.KeyID, err = keys.KeyIDOf(raw); err != nil {
		return "", store.APIToken{}, fmt.Errorf("%w: mint token: %v", ErrUnavailable, err)
	}
	audit := rt.StoreEvent(r, AuditEvent{Type: "token.created", ActorID: creator.User.ID, TargetID: meta.UserID,
		Detail: map[string]any{"token_id": id, "kind": nt.Kind, "name": nt.Name, "scope": scope, "expires_at": meta.ExpiresAt}})
	stored, err := rt.Store.CreateToken(ctx, meta, audit)
	if err != nil {
		return "", store.APIToken{}, fmt.Errorf("%w: store token: %v", ErrUnavailable, err)
	}
	rt.LogEvent(audit)
	return raw, stored, nil
}

// Token returns a token's metadata.
func (rt *Runtime) Token(ctx context.Context, id string) (store.APIToken, error) {
	return rt.Store.GetToken(ctx, id)
}

// ListTokens lists token metadata.
func (rt *Runtime) ListTokens(ctx context.Context, f store.TokenFilter) ([]store.APIToken, error) {
	return rt.Store.ListTokens(ctx, f)
}

// RevokeToken revokes a token in the store and, at once, in this instance's
// memory; other instances follow within a second.
func (rt *Runtime) RevokeToken(ctx context.Context, r *http.Request, actor *Subject, t store.APIToken) error {
	audit := rt.StoreEvent(r, AuditEvent{Type: "token.revoked", ActorID: actor.User.ID, TargetID: t.UserID,
		Detail: map[string]any{"token_id": t.ID, "kind": t.Kind, "name": t.Name}})
	if _, err := rt.Store.RevokeToken(ctx, t.ID, time.Now().UTC(), audit); err != nil {
		return err
	}
	rt.revoked.add(t.ID, t.ExpiresAt)
	rt.tokens.Forget(t.ID)
	rt.announce(fanoutEvent{Kind: "revoke", ID: t.ID, Exp: t.ExpiresAt.Unix()})
	rt.recheckInflight()
	rt.LogEvent(audit)
	return nil
}

// ParseLifetime reads expires_in: a Go duration ("720h") or a number of days ("90d").
func ParseLifetime(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("bad number of days %q", s)
		}
		// More days than a Duration holds would wrap around to a short life.
		if n > int(math.MaxInt64/int64(24*time.Hour)) {
			return 0, fmt.Errorf("expires_in %q is too large", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("expires_in %q must be a positive duration such as 720h or 90d", s)
	}
	return d, nil
}

// RotateKeys promotes the published next signing key and publishes a new
// one; the keys that signed before stay published until their tokens have
// expired. While the next key has been in the JWKS for less than
// key_prepublish it changes nothing and returns a *keys.NotReadyError.
// With emergency it replaces the keys at once instead (replaceKeys).
func (rt *Runtime) RotateKeys(ctx context.Context, r *http.Request, actor *Subject, emergency bool) (keys.Rotation, error) {
	if emergency {
		return rt.replaceKeys(ctx, r, actor)
	}
	rot, err := rt.Keys.Rotate(ctx)
	if err != nil {
		return keys.Rotation{}, err
	}
	rt.announce(fanoutEvent{Kind: "keys"})
	rt.Audit(ctx, r, AuditEvent{Type: "keys.rotated", ActorID: actor.User.ID, Detail: map[string]any{
		"kid": rot.KID, "next_kid": rot.NextKID, "retired": rot.Retired}})
	return rot, nil
}

// replaceKeys puts fresh keys in place of the current and the next one, for
// a key that may have leaked: the fresh key signs at once, the replaced keys
// leave the JWKS, and every live token they signed is revoked (each audited
// as token.revoked, reason key_withdrawn). The other instances reload the
// keys and the revocation list at the announcement, or at their next poll.
func (rt *Runtime) replaceKeys(ctx context.Context, r *http.Request, actor *Subject) (keys.Rotation, error) {
	rot, err := rt.Keys.Replace(ctx, actor.User.ID)
	if err != nil {
		return keys.Rotation{}, err
	}
	rt.announce(fanoutEvent{Kind: "keys"})
	rt.revocationsChanged(ctx)
	rt.Audit(ctx, r, AuditEvent{Type: "keys.rotated", ActorID: actor.User.ID, Detail: map[string]any{
		"kid": rot.KID, "next_kid": rot.NextKID, "emergency": true, "withdrawn": rot.Withdrawn, "revoked_tokens": rot.RevokedTokens}})
	return rot, nil
}

// ringConfig is how the key ring signs: with the configured algorithm and
// prepublish time, keeping retired keys for the longest token life.
func (rt *Runtime) ringConfig(o Options, longestTokenLife time.Duration) keys.RingConfig {
	return keys.RingConfig{
		Algorithm:        o.SigningAlgorithm,
		MaxTokenLifetime: longestTokenLife,
		Prepublish:       time.Duration(o.KeyPrepublish),
		OnWithdraw:       rt.keysWithdrawn,
	}
}

// keysWithdrawn forgets every verified token once keys were withdrawn, here
// or on another instance: a token such a key signed — one forged with a
// leaked key too — is checked again, against keys without it, and refused.
func (rt *Runtime) keysWithdrawn(kids []string) {
	if rt.tokens != nil {
		rt.tokens.Purge()
	}
	rt.Logger.Warn("signing keys withdrawn; tokens they signed are refused from now on", zap.Strings("kids", kids))
}
