package core

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

// What a sign-in means for a person's access (spec §10): after the callback
// has recorded the sign-in, the sign-in rules (policy.Engine.SignIn) decide
// from the person's claims. A pending person a rule approves is approved at
// once — an access request made and approved in their name, audited and
// notified like a reviewer's decision with the actor "policy" — and one a
// rule refuses is denied the same way. An active person whose rule syncs
// gets its role at every sign-in; one whose role a sync rule gave, and whom
// no sync rule matches any more, goes back to user (a removed group
// demotes). The rules never touch a suspended or denied person.

// PolicyActor is the actor of what the sign-in rules do.
const PolicyActor = "policy"

// policySubject is the reviewer of the sign-in rules' decisions.
func policySubject(rule string) *Subject {
	return &Subject{User: store.User{ID: PolicyActor, Name: "sign-in rule " + rule, Role: "admin", Status: store.StatusActive}}
}

// ApplySignInRules applies the sign-in rules to u, who has just signed in
// through provider with claims c, and returns u as it now is. A rule that
// cannot be applied is logged and leaves u as it was: the rules only ever
// add a shortcut to review, never a way past it.
func (rt *Runtime) ApplySignInRules(ctx context.Context, r *http.Request, u store.User, c identity.Claims, provider string) (store.User, error) {
	d, err := rt.Policy().SignIn(ctx, policy.SignInInput{Provider: provider, Email: c.Email, EmailVerified: c.EmailVerified, Claims: c.Raw})
	if err != nil {
		rt.Logger.Error("sign-in rules gave no usable decision; the person waits for review", zap.String("user", u.ID), zap.Error(err))
		return u, nil
	}
	switch u.Status {
	case store.StatusPending:
		if d.Decision == policy.SignInReview {
			return u, nil
		}
		return rt.decideBySignInRule(ctx, r, u, d)
	case store.StatusActive:
		return rt.syncRole(ctx, r, u, d)
	}
	return u, nil
}

// decideBySignInRule approves or refuses a pending person: their pending
// request, or one made for them, decided by the policy.
func (rt *Runtime) decideBySignInRule(ctx context.Context, r *http.Request, u store.User, d policy.SignInDecision) (store.User, error) {
	now := time.Now().UTC()
	req, err := rt.Store.LatestAccessRequest(ctx, u.ID)
	if errors.Is(err, store.ErrNotFound) || err == nil && req.Status != store.RequestPending {
		audit := rt.StoreEvent(r, AuditEvent{Type: "access.requested", ActorID: PolicyActor, TargetID: u.ID,
			Detail: map[string]any{"rule": d.Rule}})
		req, err = rt.Store.CreateAccessRequest(ctx, store.AccessRequest{
			User: store.RequestUser{ID: u.ID, Email: u.Email, Name: u.Name}, Name: u.Name,
			Purpose: "signed in through a sign-in rule (" + d.Rule + ")", RequestedRole: d.Role,
			Status: store.RequestPending, CreatedAt: now,
		}, audit)
	}
	if err != nil {
		return u, err
	}
	decision := AccessDecision{Approve: d.Decision == policy.SignInApprove, Role: d.Role, Now: now,
		Comment: "decided by the sign-in rule " + d.Rule, Rule: d.Rule, Sync: d.Sync}
	if _, err := rt.DecideAccess(ctx, r, policySubject(d.Rule), req, decision); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return rt.Store.GetUser(ctx, u.ID) // a reviewer was quicker
		}
		return u, err
	}
	return rt.Store.GetUser(ctx, u.ID)
}

// syncRole gives an active person the role of a sync rule, or takes back
// the role a sync rule gave when none matches now.
func (rt *Runtime) syncRole(ctx context.Context, r *http.Request, u store.User, d policy.SignInDecision) (store.User, error) {
	role, rule := d.Role, d.Rule
	if !d.Sync {
		managed, err := rt.roleFromSync(ctx, u.ID)
		if err != nil || !managed {
			return u, err
		}
		role, rule = "user", "none (the synced role's rule no longer matches)"
	}
	if role == u.Role {
		return u, nil
	}
	audit := rt.StoreEvent(r, AuditEvent{Type: "user.role_changed", ActorID: PolicyActor, TargetID: u.ID,
		Detail: map[string]any{"from": u.Role, "to": role, "rule": rule, "sync": d.Sync}})
	changed, err := rt.Store.SetUserRole(ctx, u.ID, role, audit)
	if errors.Is(err, store.ErrConflict) {
		rt.Logger.Warn("a sign-in rule would leave no active admin; the role stays", zap.String("user", u.ID), zap.String("role", role))
		return u, nil
	}
	if err != nil {
		return u, err
	}
	rt.LogEvent(audit)
	rt.userChanged(ctx, &changed, u.ID, PolicyActor)
	return changed, nil
}

// roleFromSync reports whether the user's role was last set by a sync rule.
func (rt *Runtime) roleFromSync(ctx context.Context, userID string) (bool, error) {
	var latest *store.AuditEvent
	for _, typ := range []string{"user.role_changed", "access.approved"} {
		evs, err := rt.Store.ListAudit(ctx, store.AuditFilter{UserID: userID, Type: typ, Limit: 1})
		if err != nil {
			return false, err
		}
		if len(evs) == 1 && evs[0].TargetID == userID && (latest == nil || evs[0].Time.After(latest.Time)) {
			latest = &evs[0]
		}
	}
	if latest == nil || latest.ActorID != PolicyActor {
		return false, nil
	}
	sync, _ := latest.Detail["sync"].(bool)
	return sync, nil
}
