package core

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/notify"
	"github.com/gatehouse/gatehouse/store"
)

// Break-glass (spec §10): a named user, or anyone signed in who holds a
// sealed one-time code made by `caddy gatehouse break-glass seal`, may
// invoke emergency access with a written reason. Their sessions then hold
// the configured role until the grant expires — over their own role, which
// the store keeps, so the role falls back by itself — every admin is told at
// once, every request of those sessions is audited, every page shows a
// banner, and the grant is listed until another admin acknowledges it.
//
// The active grants are kept in memory (an immutable map swapped whole), so
// that a request reads its session's grant without touching the store; the
// worker re-reads them every second (every 5 s with Redis, which announces
// new ones at once) and records the end of the expired ones.

const (
	// DefaultBreakGlassRole and DefaultBreakGlassTTL apply unless the
	// break_glass block says otherwise; a grant lasts at most MaxBreakGlassTTL.
	DefaultBreakGlassRole = "admin"
	DefaultBreakGlassTTL  = time.Hour
	MaxBreakGlassTTL      = 4 * time.Hour
	// MinBreakGlassReason is the shortest reason, in characters.
	MinBreakGlassReason = 10

	// ActorCLI is the actor of what the command line does.
	ActorCLI = "cli"

	AuditBreakGlassSealed       = "break_glass.code_sealed"
	AuditBreakGlassInvoked      = "break_glass.invoked"
	AuditBreakGlassRequest      = "break_glass.request"
	AuditBreakGlassAcknowledged = "break_glass.acknowledged"
	AuditBreakGlassExpired      = "break_glass.expired"

	// maxBreakGlassAdmins bounds the emails of one invocation.
	maxBreakGlassAdmins = 100
)

var (
	// ErrBreakGlassNotAllowed means the caller is not a named user and
	// brought no unused sealed code.
	ErrBreakGlassNotAllowed = errors.New("break-glass: not a named user, and no valid one-time code")
	// ErrBreakGlassOwnGrant means the invoker tried to acknowledge their own grant.
	ErrBreakGlassOwnGrant = errors.New("break-glass: another admin must acknowledge a grant")
)

// breakGlassGrants are the active grants by user ID; nil until first read.
type breakGlassGrants struct {
	byUser atomic.Pointer[map[string]store.BreakGlassGrant]
	now    func() time.Time // nil: time.Now (a test's clock)
}

// of is userID's grant active now. With no grant anywhere (the usual
// case) it costs one atomic load: it runs at every session's identify.
func (b *breakGlassGrants) of(userID string) (store.BreakGlassGrant, bool) {
	m := b.byUser.Load()
	if m == nil || len(*m) == 0 {
		return store.BreakGlassGrant{}, false
	}
	g, ok := (*m)[userID]
	if !ok {
		return g, false
	}
	now := time.Now
	if b.now != nil {
		now = b.now
	}
	return g, g.Active(now())
}

// set replaces the active grants and returns the users who lost theirs.
func (b *breakGlassGrants) set(list []store.BreakGlassGrant) (lost []string) {
	next := make(map[string]store.BreakGlassGrant, len(list))
	for _, g := range list {
		next[g.User.ID] = g
	}
	if prev := b.byUser.Swap(&next); prev != nil {
		for id := range *prev {
			if _, ok := next[id]; !ok {
				lost = append(lost, id)
			}
		}
	}
	return lost
}

func (b *breakGlassGrants) add(g store.BreakGlassGrant) {
	for {
		prev := b.byUser.Load()
		next := map[string]store.BreakGlassGrant{}
		if prev != nil {
			for k, v := range *prev {
				next[k] = v
			}
		}
		next[g.User.ID] = g
		if b.byUser.CompareAndSwap(prev, &next) {
			return
		}
	}
}

// breakGlassRole and breakGlassTTL are the break_glass block's, or the defaults.
func (rt *Runtime) breakGlassRole() string {
	if c := rt.opts.BreakGlass; c != nil && c.Role != "" {
		return c.Role
	}
	return DefaultBreakGlassRole
}

func (rt *Runtime) breakGlassTTL() time.Duration {
	if c := rt.opts.BreakGlass; c != nil && c.TTL > 0 {
		return time.Duration(c.TTL)
	}
	return DefaultBreakGlassTTL
}

// IsBreakGlassUser reports whether email is a named user of the break_glass block.
func (rt *Runtime) IsBreakGlassUser(email string) bool {
	c := rt.opts.BreakGlass
	return c != nil && email != "" && slices.ContainsFunc(c.Users, func(u string) bool { return strings.EqualFold(u, email) })
}

// applyBreakGlass gives a session subject with an active grant its grant,
// and the grant's role when it ranks above the user's own. Tokens never get
// it: emergency access belongs to the session that was signed in.
func (rt *Runtime) applyBreakGlass(s *Subject) {
	if s.Auth != "session" || s.User.Status != store.StatusActive {
		return
	}
	g, ok := rt.breakGlass.of(s.User.ID)
	if !ok {
		return
	}
	s.BreakGlass = &g
	if e := rt.Policy(); e.Rank(g.Role) > e.Rank(s.User.Role) {
		s.User.Role = g.Role
	}
}

// ActiveBreakGlass are the grants active now, oldest first: the pages'
// banner. It reads memory only.
func (rt *Runtime) ActiveBreakGlass() []store.BreakGlassGrant {
	m := rt.breakGlass.byUser.Load()
	if m == nil {
		return nil
	}
	now := time.Now()
	var out []store.BreakGlassGrant
	for _, g := range *m {
		if g.Active(now) {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b store.BreakGlassGrant) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// HashBreakGlassCode is what the store keeps of a one-time code.
func HashBreakGlassCode(code string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(code))))
	return hex.EncodeToString(sum[:])
}

// InvokeBreakGlass grants the break_glass role to the caller's user for the
// ttl: a named user needs nothing more, anyone else an unused sealed code,
// which it uses up (ErrBreakGlassNotAllowed otherwise). The grant, its
// audit event (with the reason) and the notifications of every admin are
// written in one transaction; store.ErrConflict while the user has a grant.
func (rt *Runtime) InvokeBreakGlass(ctx context.Context, r *http.Request, sub *Subject, reason, code string) (store.BreakGlassGrant, error) {
	hash := ""
	if !rt.IsBreakGlassUser(sub.User.Email) {
		if strings.TrimSpace(code) == "" {
			return store.BreakGlassGrant{}, ErrBreakGlassNotAllowed
		}
		hash = HashBreakGlassCode(code)
	}
	role := rt.breakGlassRole()
	if !rt.Policy().RoleExists(role) {
		return store.BreakGlassGrant{}, fmt.Errorf("break_glass: role %q is not defined", role)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return store.BreakGlassGrant{}, fmt.Errorf("break-glass grant id: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	g := store.BreakGlassGrant{
		ID: id.String(), User: store.RequestUser{ID: sub.User.ID, Email: sub.User.Email, Name: sub.User.Name},
		Role: role, Reason: reason, CodeUsed: hash != "", CreatedAt: now, ExpiresAt: now.Add(rt.breakGlassTTL()),
	}
	msgs, err := rt.Notify.BreakGlassMessages(notify.BreakGlassEvent{Grant: g, DashboardURL: rt.breakGlassURL()}, rt.activeAdmins(ctx), now)
	if err != nil {
		return store.BreakGlassGrant{}, err
	}
	audit := rt.StoreEvent(r, AuditEvent{Type: AuditBreakGlassInvoked, ActorID: sub.User.ID, TargetID: sub.User.ID,
		Detail: map[string]any{"grant_id": g.ID, "role": role, "reason": reason, "expires_at": g.ExpiresAt, "code_used": g.CodeUsed, "from_role": sub.User.Role}})
	created, err := rt.Store.CreateBreakGlassGrant(ctx, g, hash, audit, msgs...)
	switch {
	case errors.Is(err, store.ErrNotFound) && hash != "":
		return store.BreakGlassGrant{}, ErrBreakGlassNotAllowed
	case err != nil:
		return store.BreakGlassGrant{}, err
	}
	rt.LogEvent(audit)
	rt.breakGlass.add(created)
	rt.announce(fanoutEvent{Kind: "break_glass"})
	if len(msgs) > 0 {
		rt.WakeNotifier()
	}
	return created, nil
}

// breakGlassURL is the dashboard's list of grants to acknowledge.
func (rt *Runtime) breakGlassURL() string {
	return strings.TrimRight(rt.PublicURL.String(), "/") + rt.PagesPrefix + "/admin#break-glass"
}

// activeAdmins are the addresses of the active admins, at most
// maxBreakGlassAdmins; none without SMTP. A failure to read them is logged:
// the webhooks still go out.
func (rt *Runtime) activeAdmins(ctx context.Context) []string {
	if rt.Notify.SMTP == nil {
		return nil
	}
	users, _, err := rt.Store.ListUsers(ctx, store.UserFilter{Role: "admin", Status: store.StatusActive, Limit: maxBreakGlassAdmins})
	if err != nil {
		rt.Logger.Warn("listing the admins to tell of emergency access", zap.Error(err))
	}
	var addrs []string
	for _, u := range users {
		addrs = append(addrs, u.Email)
	}
	return addrs
}

// AuditBreakGlassRequest records a request the policy allowed to a session
// under emergency access; it does nothing for anyone else.
func (rt *Runtime) AuditBreakGlassRequest(r *http.Request, s *Subject) {
	if s == nil || s.BreakGlass == nil {
		return
	}
	rt.Audit(r.Context(), r, AuditEvent{Type: AuditBreakGlassRequest, ActorID: s.User.ID, TargetID: s.User.ID,
		Detail: map[string]any{"grant_id": s.BreakGlass.ID, "method": r.Method, "path": CleanPath(r.URL.Path)}})
}

// BreakGlassGrants lists the grants no admin has acknowledged yet, newest first.
func (rt *Runtime) BreakGlassGrants(ctx context.Context) ([]store.BreakGlassGrant, error) {
	return rt.Store.ListBreakGlassGrants(ctx, store.BreakGlassFilter{Unacknowledged: true})
}

// AcknowledgeBreakGlass records that actor, who is not its invoker
// (ErrBreakGlassOwnGrant), has seen the grant id: it leaves the list.
// store.ErrNotFound for an unknown grant, store.ErrConflict when it was
// acknowledged already.
func (rt *Runtime) AcknowledgeBreakGlass(ctx context.Context, r *http.Request, actor *Subject, id string) (store.BreakGlassGrant, error) {
	g, err := rt.Store.GetBreakGlassGrant(ctx, id)
	if err != nil {
		return store.BreakGlassGrant{}, err
	}
	if g.User.ID == actor.User.ID {
		return store.BreakGlassGrant{}, ErrBreakGlassOwnGrant
	}
	audit := rt.StoreEvent(r, AuditEvent{Type: AuditBreakGlassAcknowledged, ActorID: actor.User.ID, TargetID: g.User.ID,
		Detail: map[string]any{"grant_id": g.ID, "role": g.Role, "reason": g.Reason}})
	acked, err := rt.Store.AcknowledgeBreakGlassGrant(ctx, id, actor.User.ID, audit.Time, audit)
	if err != nil {
		return store.BreakGlassGrant{}, err
	}
	rt.LogEvent(audit)
	return acked, nil
}

// loadBreakGlass reads the active grants into memory; the streams of users
// whose grant is gone are checked again.
func (rt *Runtime) loadBreakGlass(ctx context.Context) error {
	list, err := rt.Store.ListBreakGlassGrants(ctx, store.BreakGlassFilter{Active: true, Now: time.Now()})
	if err != nil {
		return fmt.Errorf("break-glass grants: %w", err)
	}
	if lost := rt.breakGlass.set(list); len(lost) > 0 {
		rt.recheckInflight()
	}
	return nil
}

// followBreakGlass records the end of the grants that expired (audit
// break_glass.expired by system; of several instances one records each)
// and re-reads the active ones.
func (rt *Runtime) followBreakGlass(ctx context.Context) {
	ended, err := rt.Store.EndBreakGlassGrants(ctx, time.Now().UTC(), maxExpiriesPerPass, func(g store.BreakGlassGrant) store.AuditEvent {
		return rt.StoreEvent(nil, AuditEvent{Type: AuditBreakGlassExpired, ActorID: ActorSystem, TargetID: g.User.ID,
			Detail: map[string]any{"grant_id": g.ID, "role": g.Role, "expires_at": g.ExpiresAt}})
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		rt.Logger.Warn("recording the end of expired break-glass grants; the next pass tries again", zap.Error(err))
	}
	for _, g := range ended {
		rt.Logger.Info("break-glass grant ended", zap.String("grant", g.ID), zap.String("user", g.User.ID), zap.String("role", g.Role))
	}
	if err := rt.loadBreakGlass(ctx); err != nil && !errors.Is(err, context.Canceled) {
		rt.Logger.Warn("reading the active break-glass grants", zap.Error(err))
	}
}

// SealBreakGlassCode makes a one-time code for the command line: it opens
// the configured store itself (the server may be down), stores only the
// code's hash, audited as break_glass.code_sealed by the actor cli, and
// returns the code, which is shown once and never again.
func SealBreakGlassCode(ctx context.Context, o Options) (string, error) {
	if o.Store == nil {
		return "", errors.New("store: not configured")
	}
	st, err := openStore(ctx, o.Store.Driver, o.Store.DSN, time.Duration(o.StoreTimeout))
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	defer st.Close()
	raw := make([]byte, 20)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	code := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw))
	hash := HashBreakGlassCode(code)
	now := time.Now().UTC()
	audit := store.AuditEvent{Time: now, Type: AuditBreakGlassSealed, ActorID: ActorCLI, Detail: map[string]any{"code_hash_prefix": hash[:12]}}
	if err := st.SealBreakGlassCode(ctx, hash, now, audit); err != nil {
		return "", err
	}
	return code, nil
}
