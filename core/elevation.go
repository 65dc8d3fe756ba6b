package core

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/notify"
	"github.com/gatehouse/gatehouse/store"
)

// Temporary elevation (spec §10): an active user asks for a higher role for
// a while; a reviewer who may grant that role approves or denies it; on
// approval the user holds it until the end, then the worker gives them back
// the role they came from (audit access.elevation_expired, actor system).
// Someone who sets the user's role while the elevation is held ends it: the
// role they set stays (store.SetUserRole). Every step is told through the
// outbox, as the access requests are.

// Bounds of an elevation's duration.
const (
	MinElevation = 5 * time.Minute
	MaxElevation = 24 * time.Hour
)

// Audit events of an elevation.
const (
	AuditElevationRequested = "access.elevation_requested"
	AuditElevationApproved  = "access.elevation_approved"
	AuditElevationDenied    = "access.elevation_denied"
	AuditElevationExpired   = "access.elevation_expired"
)

// elevationEvery is how often the worker looks for elevations whose time is
// up: an elevation lasts at most this much longer than approved.
const elevationEvery = 2 * time.Second

// RequestElevation records requester's elevation (its role, duration and
// reason, checked by the caller), its audit event and the notifications of
// the reviewers in one transaction: ErrConflict while the requester has one
// pending or held.
func (rt *Runtime) RequestElevation(ctx context.Context, r *http.Request, requester *Subject, e store.Elevation) (store.Elevation, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return store.Elevation{}, fmt.Errorf("elevation id: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	e.ID, e.Status, e.CreatedAt, e.FromRole = id.String(), store.ElevationPending, now, requester.User.Role
	e.User = store.RequestUser{ID: requester.User.ID, Email: requester.User.Email, Name: requester.User.Name}
	reviewers := slices.DeleteFunc(rt.reviewers(ctx), func(addr string) bool { return strings.EqualFold(addr, requester.User.Email) })
	msgs, err := rt.Notify.ElevationMessages(notify.ElevationEvent{Event: notify.EventElevationRequested, Elevation: e,
		To: reviewers, Link: rt.pageURL("/admin#elevations")}, now)
	if err != nil {
		return store.Elevation{}, fmt.Errorf("notifications of elevation %s: %w", e.ID, err)
	}
	audit := rt.StoreEvent(r, AuditEvent{Type: AuditElevationRequested, ActorID: requester.User.ID, TargetID: requester.User.ID,
		Detail: map[string]any{"elevation_id": e.ID, "from": e.FromRole, "role": e.Role, "duration_seconds": e.DurationSeconds, "reason": e.Reason}})
	created, err := rt.Store.CreateElevation(ctx, e, audit, msgs...)
	if err != nil {
		return store.Elevation{}, err
	}
	rt.LogEvent(audit)
	if len(msgs) > 0 {
		rt.WakeNotifier()
	}
	return created, nil
}

// ElevationDecision is a reviewer's verdict on a pending elevation.
type ElevationDecision struct {
	Approve bool
	Comment string
	// FromRole is the requester's role the decision was checked against.
	FromRole string
	Now      time.Time
}

// DecideElevation records a reviewer's decision on a pending elevation: the
// elevation, the requester's role on approval, the audit event and the
// requester's notifications in one transaction (ErrConflict when it is no
// longer pending or the requester's role changed), then the caches and the
// other instances, as SetUserRole does.
func (rt *Runtime) DecideElevation(ctx context.Context, r *http.Request, reviewer *Subject, e store.Elevation, d ElevationDecision) (store.Elevation, error) {
	decided := e
	decided.Status, decided.Comment, decided.DecidedAt = store.ElevationDenied, d.Comment, &d.Now
	decided.ReviewedBy = &store.RequestUser{ID: reviewer.User.ID, Email: reviewer.User.Email, Name: reviewer.User.Name}
	event, audited := notify.EventElevationDenied, AuditElevationDenied
	if d.Approve {
		end := d.Now.Add(time.Duration(e.DurationSeconds) * time.Second)
		decided.Status, decided.FromRole, decided.ExpiresAt = store.ElevationApproved, d.FromRole, &end
		event, audited = notify.EventElevationApproved, AuditElevationApproved
	}
	msgs, err := rt.Notify.ElevationMessages(notify.ElevationEvent{Event: event, Elevation: decided,
		To: []string{e.User.Email}, Link: rt.pageURL("/account")}, d.Now)
	if err != nil {
		return store.Elevation{}, fmt.Errorf("notifications of elevation %s: %w", e.ID, err)
	}
	detail := map[string]any{"elevation_id": e.ID, "from": d.FromRole, "role": e.Role, "comment": d.Comment}
	if decided.ExpiresAt != nil {
		detail["expires_at"] = *decided.ExpiresAt
	}
	audit := rt.StoreEvent(r, AuditEvent{Type: audited, ActorID: reviewer.User.ID, TargetID: e.User.ID, Detail: detail})
	result, err := rt.Store.DecideElevation(ctx, store.ElevationDecision{ID: e.ID, Approve: d.Approve, FromRole: d.FromRole,
		Comment: d.Comment, ReviewerID: reviewer.User.ID, Now: d.Now, Outbox: msgs, Audit: audit})
	if err != nil {
		return store.Elevation{}, fmt.Errorf("decide elevation %s: %w", e.ID, err)
	}
	rt.LogEvent(audit)
	if d.Approve {
		rt.userRoleChanged(ctx, e.User.ID, reviewer.User.ID)
	}
	rt.WakeNotifier()
	return result, nil
}

// userRoleChanged brings the caches and the other instances up to date
// after the store changed user id's role, as after SetUserRole.
func (rt *Runtime) userRoleChanged(ctx context.Context, id, actorID string) {
	u, err := rt.Store.GetUser(ctx, id)
	if err != nil {
		// The caches forget the user all the same; the periodic check
		// follows up on their system tokens.
		rt.Logger.Warn("reading a user whose role changed", zap.String("user", id), zap.Error(err))
		rt.userChanged(ctx, nil, id, actorID)
		return
	}
	rt.userChanged(ctx, &u, id, actorID)
}

// pageURL is the absolute URL of a page under the pages prefix.
func (rt *Runtime) pageURL(path string) string {
	return strings.TrimRight(rt.PublicURL.String(), "/") + rt.PagesPrefix + path
}

// expireElevations ends the elevations whose time is up, each with its audit
// event and the notifications of its holder. Instances that run it at once
// end each elevation once.
func (rt *Runtime) expireElevations(ctx context.Context) {
	now := time.Now().UTC()
	audits := map[string]store.AuditEvent{}
	ended, err := rt.Store.ExpireElevations(ctx, now, maxExpiriesPerPass, func(e store.Elevation) (store.RequestExpiry, error) {
		msgs, err := rt.Notify.ElevationMessages(notify.ElevationEvent{Event: notify.EventElevationExpired, Elevation: e,
			To: []string{e.User.Email}, Link: rt.pageURL("/account")}, now)
		if err != nil {
			return store.RequestExpiry{}, err
		}
		audit := rt.StoreEvent(nil, AuditEvent{Type: AuditElevationExpired, ActorID: ActorSystem, TargetID: e.User.ID,
			Detail: map[string]any{"elevation_id": e.ID, "role": e.Role, "from": e.FromRole,
				"restored": e.Status == store.ElevationExpired, "expires_at": e.ExpiresAt}})
		audits[e.ID] = audit
		return store.RequestExpiry{Outbox: msgs, Audit: audit}, nil
	})
	if err != nil {
		rt.Logger.Warn("ending elevations whose time is up; the next pass tries again", zap.Error(err))
	}
	for _, e := range ended {
		rt.LogEvent(audits[e.ID])
		rt.userRoleChanged(ctx, e.User.ID, ActorSystem)
	}
	if len(ended) > 0 {
		rt.WakeNotifier()
	}
}
