package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/notify"
	"github.com/gatehouse/gatehouse/quota"
	"github.com/gatehouse/gatehouse/store"
)

// Changes of authority (spec §3a, §7a) go through the methods in this file:
// the store write with its audit event in one transaction, then this
// instance's caches, then the announcement to the other instances. The API,
// the pages and the command line call them and never write such a change to
// the store themselves, so a rule like "leaving active revokes the user's
// tokens" holds whichever way the change was made.

// ReasonCreatorLostRights is the token.revoked reason of a system token whose
// creator was deleted, left active or no longer holds tokens:system.
const ReasonCreatorLostRights = "creator_lost_rights"

// SetUserRole changes a user's role. The store refuses (ErrConflict) to leave
// no active admin.
func (rt *Runtime) SetUserRole(ctx context.Context, r *http.Request, actor *Subject, target store.User, role string) (store.User, error) {
	audit := rt.StoreEvent(r, AuditEvent{Type: "user.role_changed", ActorID: actor.User.ID, TargetID: target.ID,
		Detail: map[string]any{"from": target.Role, "to": role}})
	u, err := rt.Store.SetUserRole(ctx, target.ID, role, audit)
	if err != nil {
		return store.User{}, err
	}
	rt.LogEvent(audit)
	rt.userChanged(ctx, &u, target.ID, actor.User.ID)
	return u, nil
}

// SetUserLimits sets a user's own quotas (zero limits clear them), which
// narrow their role's. Nothing but the user's record changes, so only the
// users cache of every instance forgets it; no revocation follows.
func (rt *Runtime) SetUserLimits(ctx context.Context, r *http.Request, actor *Subject, target store.User, limits quota.Limits) (store.User, error) {
	var from quota.Limits
	if target.Limits != nil {
		from = *target.Limits
	}
	audit := rt.StoreEvent(r, AuditEvent{Type: "user.limits_changed", ActorID: actor.User.ID, TargetID: target.ID,
		Detail: map[string]any{"from": from, "to": limits}})
	u, err := rt.Store.SetUserLimits(ctx, target.ID, &limits, audit)
	if err != nil {
		return store.User{}, err
	}
	rt.LogEvent(audit)
	rt.InvalidateUser(target.ID)
	return u, nil
}

// SetUserStatus activates or suspends a user. Leaving active ends the user's
// sessions and revokes their tokens in the same transaction, so reactivation
// revives nothing; their system tokens are revoked too.
func (rt *Runtime) SetUserStatus(ctx context.Context, r *http.Request, actor *Subject, target store.User, status, reason string) (store.User, error) {
	audit := rt.StoreEvent(r, AuditEvent{Type: "user.status_changed", ActorID: actor.User.ID, TargetID: target.ID,
		Detail: map[string]any{"from": target.Status, "to": status, "reason": reason}})
	u, err := rt.Store.SetUserStatus(ctx, target.ID, status, audit)
	if err != nil {
		return store.User{}, err
	}
	rt.LogEvent(audit)
	rt.userChanged(ctx, &u, target.ID, actor.User.ID)
	return u, nil
}

// DeleteUser deletes a user, ending their sessions and revoking their tokens
// and the system tokens they created; the audit history stays.
func (rt *Runtime) DeleteUser(ctx context.Context, r *http.Request, actor *Subject, target store.User) error {
	audit := rt.StoreEvent(r, AuditEvent{Type: "user.deleted", ActorID: actor.User.ID, TargetID: target.ID,
		Detail: map[string]any{"email": target.Email, "role": target.Role}})
	if err := rt.Store.DeleteUser(ctx, target.ID, audit); err != nil {
		return err
	}
	rt.LogEvent(audit)
	rt.userChanged(ctx, nil, target.ID, actor.User.ID)
	return nil
}

// AccessDecision is a reviewer's verdict on an access request.
type AccessDecision struct {
	Approve   bool
	Role      string // the granted role (approvals)
	Comment   string
	ExpiresAt *time.Time // the end of a temporary grant
	Now       time.Time
	// Rule and Sync name the sign-in rule that decided (signin.go).
	Rule string
	Sync bool
}

// DecideAccess records a reviewer's decision on a pending request: the
// request, the requester's new status, the audit event and the notifications
// in one transaction (ErrConflict when it is no longer pending), then the
// caches and the other instances.
func (rt *Runtime) DecideAccess(ctx context.Context, r *http.Request, reviewer *Subject, req store.AccessRequest, d AccessDecision) (store.AccessRequest, error) {
	verdict, event := store.RequestDenied, "access.denied"
	if d.Approve {
		verdict, event = store.RequestApproved, "access.approved"
	}
	decided := req
	decided.Status = verdict
	decided.Comment = d.Comment
	decided.ReviewedBy = &store.RequestUser{ID: reviewer.User.ID, Email: reviewer.User.Email, Name: reviewer.User.Name}
	decided.DecidedAt = &d.Now
	if d.Approve {
		decided.Role = d.Role
		decided.ExpiresAt = d.ExpiresAt
	}
	msgs, err := rt.Notify.Messages(notify.DecisionEvent{Request: decided, Decision: verdict}, d.Now)
	if err != nil {
		return store.AccessRequest{}, fmt.Errorf("notification for %s: %w", req.ID, err)
	}
	detail := map[string]any{"request_id": req.ID, "role": d.Role, "comment": d.Comment}
	if d.Rule != "" {
		detail["rule"], detail["sync"] = d.Rule, d.Sync
	}
	audit := rt.StoreEvent(r, AuditEvent{Type: event, ActorID: reviewer.User.ID, TargetID: req.User.ID, Detail: detail})
	result, err := rt.Store.DecideAccessRequest(ctx, store.Decision{
		RequestID:  req.ID,
		Approve:    d.Approve,
		Role:       d.Role,
		Comment:    d.Comment,
		ReviewerID: reviewer.User.ID,
		ExpiresAt:  d.ExpiresAt,
		Now:        d.Now,
		Outbox:     msgs,
		Audit:      audit,
	})
	if err != nil {
		return store.AccessRequest{}, fmt.Errorf("decide access request %s: %w", req.ID, err)
	}
	rt.LogEvent(audit)
	rt.InvalidateUser(req.User.ID)
	rt.WakeNotifier()
	return result, nil
}

// Logout ends the request's session here and on every instance.
func (rt *Runtime) Logout(ctx context.Context, r *http.Request, sub *Subject) error {
	if err := rt.EndSession(ctx, r); err != nil {
		return err
	}
	rt.Audit(ctx, r, AuditEvent{Type: "logout", ActorID: sub.User.ID, TargetID: sub.User.ID})
	return nil
}

// EndSession ends the session r's cookie names, if any, on this instance and,
// announced, at once on the others (logout, and a new sign-in in the browser).
func (rt *Runtime) EndSession(ctx context.Context, r *http.Request) error {
	id, err := rt.Sessions.IDOf(r)
	if errors.Is(err, identity.ErrNoSession) || errors.Is(err, identity.ErrSessionInvalid) {
		return nil
	}
	if err := rt.Sessions.Destroy(ctx, r); err != nil && !errors.Is(err, identity.ErrSessionInvalid) && !errors.Is(err, identity.ErrNoSession) {
		return err
	}
	rt.announce(fanoutEvent{Kind: "session", ID: id})
	rt.recheckInflight()
	return nil
}

// RotateSession replaces the request's session by a new one; the old one
// stops working on every instance.
func (rt *Runtime) RotateSession(ctx context.Context, r *http.Request) (*http.Cookie, store.Session, error) {
	id, _ := rt.Sessions.IDOf(r)
	cookie, sess, err := rt.Sessions.Rotate(ctx, r)
	if err == nil && id != "" {
		rt.announce(fanoutEvent{Kind: "session", ID: id})
		rt.recheckInflight()
	}
	return cookie, sess, err
}

// userChanged brings the caches up to date after a change to user id (u is
// its new record, nil when it was deleted) and applies the rules that follow
// from it.
func (rt *Runtime) userChanged(ctx context.Context, u *store.User, id, actorID string) {
	rt.InvalidateUser(id)
	if u != nil {
		rt.followCreator(ctx, *u, actorID)
	}
	rt.revocationsChanged(ctx)
}

// followCreator revokes the system tokens of a creator who is no longer an
// active holder of tokens:system (spec §3a).
func (rt *Runtime) followCreator(ctx context.Context, creator store.User, actorID string) {
	if creator.Status == store.StatusActive {
		perms, err := rt.Policy().Permissions(ctx, creator.Role)
		if err == nil && slices.Contains(perms, "tokens:system") {
			return
		}
		if err != nil {
			rt.Logger.Warn("permissions of a system token creator", zap.String("user", creator.ID), zap.Error(err))
			return // the periodic check tries again
		}
	}
	n, err := rt.Store.RevokeSystemTokensOf(ctx, creator.ID, time.Now().UTC(), actorID, ReasonCreatorLostRights)
	if err != nil {
		rt.Logger.Error("revoking the system tokens of a creator who lost the right; the periodic check tries again",
			zap.String("user", creator.ID), zap.Error(err))
		return
	}
	if n > 0 {
		rt.Logger.Info("revoked system tokens whose creator lost tokens:system", zap.String("creator", creator.ID), zap.Int("tokens", n))
	}
}

// followCreators applies followCreator to every creator of a live system
// token: after settings change a role's permissions, and periodically, in
// case an instance stopped between a change and its follow-up.
func (rt *Runtime) followCreators(ctx context.Context) {
	live, err := rt.Store.ListTokens(ctx, store.TokenFilter{Kind: store.TokenSystem, Active: true, Now: time.Now()})
	if err != nil {
		rt.Logger.Warn("listing system tokens to check their creators", zap.Error(err))
		return
	}
	seen := map[string]bool{}
	for _, t := range live {
		// The operator's tokens (made on the command line) have no creator
		// who could lose the right: they live until they expire or are revoked.
		if seen[t.CreatedBy] || t.CreatedBy == ActorCLI {
			continue
		}
		seen[t.CreatedBy] = true
		creator, err := rt.Store.GetUser(ctx, t.CreatedBy)
		switch {
		case errors.Is(err, store.ErrNotFound):
			creator = store.User{ID: t.CreatedBy, Status: store.StatusDenied} // gone: no rights
		case err != nil:
			rt.Logger.Warn("reading a system token's creator", zap.String("user", t.CreatedBy), zap.Error(err))
			continue
		}
		rt.followCreator(ctx, creator, "")
	}
	if len(seen) > 0 {
		rt.revocationsChanged(ctx)
	}
}

// revocationsChanged reads the revocation list now and tells the other
// instances to do the same.
func (rt *Runtime) revocationsChanged(ctx context.Context) {
	if err := rt.syncRevocations(ctx); err != nil {
		rt.Logger.Warn("reading the revocation list after a change", zap.Error(err))
	}
	rt.announce(fanoutEvent{Kind: "revocations"})
	rt.recheckInflight()
}
