package core

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/notify"
	"github.com/gatehouse/gatehouse/store"
)

// Reviewers are told (spec §10): a new access request is written with the
// notifications of the users who may review it — a webhook event
// access_request.created, an email to each reviewer — in one transaction, as
// a decision is; a request nobody decided within request_ttl expires, and its
// requester is told as of a denial.

// DefaultRequestTTL is how long a request waits for review unless
// request_ttl says otherwise.
const DefaultRequestTTL = 30 * 24 * time.Hour

const (
	// reviewPermission is what the policy data asks of the review routes.
	reviewPermission = "access:review"
	// maxReviewers bounds the emails of one new request.
	maxReviewers = 100
	// maxExpiriesPerPass bounds one pass of the expiry worker; the next
	// pass, a minute later, takes the rest.
	maxExpiriesPerPass = 100
	// AuditRequestExpired is the audit event of an expiry, by ActorSystem.
	AuditRequestExpired = "access_request.expired"
	// ActorSystem is the actor of what Gatehouse does by itself.
	ActorSystem = "system"
)

// CreateAccessRequest records requester's request (purpose, name, team,
// requested role), its audit event and the notifications of its reviewers in
// one transaction: ErrConflict while the requester has a pending one.
func (rt *Runtime) CreateAccessRequest(ctx context.Context, r *http.Request, requester *Subject, req store.AccessRequest) (store.AccessRequest, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return store.AccessRequest{}, fmt.Errorf("access request id: %w", err)
	}
	// Microseconds are what every store keeps: the webhook tells the time
	// the API answers.
	now := time.Now().UTC().Truncate(time.Microsecond)
	req.ID, req.Status, req.CreatedAt = id.String(), store.RequestPending, now
	req.User = store.RequestUser{ID: requester.User.ID, Email: requester.User.Email, Name: requester.User.Name}
	msgs, err := rt.Notify.CreatedMessages(notify.CreatedEvent{Request: req, ReviewURL: rt.reviewURL()}, rt.reviewers(ctx), now)
	if err != nil {
		return store.AccessRequest{}, fmt.Errorf("notifications of request %s: %w", req.ID, err)
	}
	audit := rt.StoreEvent(r, AuditEvent{Type: "access.requested", ActorID: requester.User.ID, TargetID: requester.User.ID,
		Detail: map[string]any{"requested_role": req.RequestedRole}})
	created, err := rt.Store.CreateAccessRequest(ctx, req, audit, msgs...)
	if err != nil {
		return store.AccessRequest{}, err
	}
	rt.LogEvent(audit)
	if len(msgs) > 0 {
		rt.WakeNotifier()
	}
	return created, nil
}

// reviewURL is the dashboard's list of pending requests.
func (rt *Runtime) reviewURL() string {
	return strings.TrimRight(rt.PublicURL.String(), "/") + rt.PagesPrefix + "/admin#requests"
}

// reviewers are the addresses of the active users whose role the policy
// gives the review permission, at most maxReviewers; none without SMTP. A
// failure to read them is logged: the webhooks still go out, and the request
// waits on the dashboard.
func (rt *Runtime) reviewers(ctx context.Context) []string {
	if rt.Notify.SMTP == nil {
		return nil
	}
	engine := rt.Policy()
	var addrs []string
	for _, role := range slices.Sorted(maps.Keys(engine.Roles())) {
		perms, err := engine.Permissions(ctx, role)
		if err != nil {
			rt.Logger.Warn("permissions of a role, to tell its users of a new access request", zap.String("role", role), zap.Error(err))
			continue
		}
		if !slices.Contains(perms, reviewPermission) || len(addrs) >= maxReviewers {
			continue
		}
		users, _, err := rt.Store.ListUsers(ctx, store.UserFilter{Role: role, Status: store.StatusActive, Limit: maxReviewers - len(addrs)})
		if err != nil {
			rt.Logger.Warn("listing the reviewers of a new access request", zap.String("role", role), zap.Error(err))
			continue
		}
		for _, u := range users {
			addrs = append(addrs, u.Email)
		}
	}
	return addrs
}

// requestTTL is request_ttl, or its default.
func (rt *Runtime) requestTTL() time.Duration {
	if d := time.Duration(rt.opts.RequestTTL); d > 0 {
		return d
	}
	return DefaultRequestTTL
}

// expireRequests expires the requests left pending past request_ttl, each
// with its audit event and the notifications of its requester. Instances
// that run it at once expire each request once.
func (rt *Runtime) expireRequests(ctx context.Context) {
	now := time.Now().UTC()
	audits := map[string]store.AuditEvent{}
	expired, err := rt.Store.ExpireAccessRequests(ctx, now.Add(-rt.requestTTL()), now, maxExpiriesPerPass,
		func(req store.AccessRequest) (store.RequestExpiry, error) {
			msgs, err := rt.Notify.ExpiredMessages(req, now)
			if err != nil {
				return store.RequestExpiry{}, err
			}
			audit := rt.StoreEvent(nil, AuditEvent{Type: AuditRequestExpired, ActorID: ActorSystem, TargetID: req.User.ID,
				Detail: map[string]any{"request_id": req.ID, "created_at": req.CreatedAt, "request_ttl": rt.requestTTL().String()}})
			audits[req.ID] = audit
			return store.RequestExpiry{Outbox: msgs, Audit: audit}, nil
		})
	if err != nil {
		rt.Logger.Warn("expiring access requests left pending past request_ttl; the next pass tries again", zap.Error(err))
	}
	for _, req := range expired {
		rt.LogEvent(audits[req.ID])
	}
	if len(expired) > 0 {
		rt.WakeNotifier()
	}
}
