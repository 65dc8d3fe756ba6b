package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/quota"
	"github.com/gatehouse/gatehouse/refusal"
	"github.com/gatehouse/gatehouse/store"
)

// quotas are the runtime's counters and the limits the settings give roles.
type quotas struct {
	counters *quota.Counters
	roles    atomic.Pointer[map[string]quota.Limits]
}

// openQuotas keeps the counters in Redis when it is configured (shared by
// every instance), in this instance otherwise, where a day's or a month's
// counter starts from the stored usage of its window (usedSince): a restart
// does not give a user their day again, and an instance that first counts
// a user counts what the others had written by then.
func (rt *Runtime) openQuotas() {
	if rt.fanout != nil {
		rt.quotas.counters = quota.NewRedis(rt.fanout.rdb, "gatehouse:quota:", time.Now)
		return
	}
	rt.quotas.counters = quota.NewLocal(time.Now, rt.usedSince)
	if rt.opts.Store != nil && rt.opts.Store.Driver == "postgres" {
		rt.Logger.Warn("no redis: quota counters are this instance's; with several instances each counts alone (configure redis to share them)")
	}
}

// usedSince is the tokens the bucket (a user's or a token's) used from
// start on, as the store has them.
func (rt *Runtime) usedSince(ctx context.Context, bucket string, start time.Time) (int64, error) {
	q := store.UsageQuery{From: start, GroupBy: "user"}
	switch kind, id, _ := strings.Cut(bucket, ":"); kind {
	case "user":
		q.UserID = id
	case "token":
		q.TokenID = id
	default:
		return 0, fmt.Errorf("unknown quota bucket %q", bucket)
	}
	rows, err := rt.Store.QueryUsage(ctx, q)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, r := range rows {
		n += r.TotalTokens
	}
	return n, nil
}

// setRoleLimits records the limits of the settings the policy was built with.
func (q *quotas) setRoleLimits(s Settings) {
	m := map[string]quota.Limits{}
	for name, r := range s.Roles {
		if r.Limits != nil && !r.Limits.IsZero() {
			m[name] = *r.Limits
		}
	}
	q.roles.Store(&m)
}

// RoleLimits are the quotas the settings give role (zero: none).
func (rt *Runtime) RoleLimits(role string) quota.Limits {
	if m := rt.quotas.roles.Load(); m != nil {
		return (*m)[role]
	}
	return quota.Limits{}
}

// UserLimits are the quotas of u: their role's narrowed by their own (zero:
// none).
func (rt *Runtime) UserLimits(u store.User) quota.Limits {
	limits := rt.RoleLimits(u.Role)
	if u.Limits != nil {
		limits = limits.Narrow(*u.Limits)
	}
	return limits
}

// buckets are the counters a request of s counts against: the user's, with
// their role's limits narrowed by their own, and a token's own, with the
// limits it carries.
func (rt *Runtime) buckets(s *Subject) []quota.Bucket {
	out := make([]quota.Bucket, 0, 2)
	if limits := rt.UserLimits(s.User); !limits.IsZero() {
		out = append(out, quota.Bucket{Key: "user:" + s.User.ID, Limits: limits})
	}
	if s.Token != nil && s.Token.Limits != nil {
		out = append(out, quota.Bucket{Key: "token:" + s.Token.ID, Limits: *s.Token.Limits})
	}
	return out
}

// describeLimits is limits for a message: their JSON, or "none".
func describeLimits(l quota.Limits) string {
	if l.IsZero() {
		return "none"
	}
	b, _ := json.Marshal(l)
	return string(b)
}

// ReserveQuota reserves one request of s and estimate tokens. A refusal is a
// 429 *refusal.Problem (rate_limited for a per-minute limit, quota_exceeded
// for a day's or month's) with the *quota.Exceeded; counters that cannot be
// reached refuse with 503 unless quota_fail_open, which lets the request
// through with no reservation and logs it.
func (rt *Runtime) ReserveQuota(ctx context.Context, s *Subject, estimate int64) (*quota.Reservation, *quota.Exceeded, error) {
	buckets := rt.buckets(s)
	if len(buckets) == 0 {
		return nil, nil, nil
	}
	res, err := rt.quotas.counters.Reserve(ctx, buckets, estimate)
	var ex *quota.Exceeded
	switch {
	case errors.As(err, &ex):
		rt.metrics.QuotaRefused(ex.Window.String())
		return nil, ex, QuotaProblem(ex)
	case errors.Is(err, quota.ErrUnavailable) && rt.opts.QuotaFailOpen:
		rt.Logger.Error("quota counters unreachable; letting the request through (quota_fail_open)", zap.String("user", s.User.ID), zap.Error(err))
		return nil, nil, nil
	case err != nil:
		rt.Logger.Error("quota counters unreachable; refusing (fail closed)", zap.Error(err))
		return nil, nil, refusal.Unavailable("Gatehouse cannot check your quota right now; try again shortly")
	}
	return res, nil, nil
}

// QuotaProblem is the 429 of an exceeded limit.
func QuotaProblem(ex *quota.Exceeded) *refusal.Problem {
	if ex.Window.PerMinute() {
		return refusal.New(http.StatusTooManyRequests, refusal.CodeRateLimited, "Rate limit reached",
			"the "+ex.Window.String()+" limit of "+strconv.FormatInt(ex.Limit, 10)+" is reached; try again after "+ex.Reset.UTC().Format(time.RFC3339))
	}
	return refusal.New(http.StatusTooManyRequests, refusal.CodeQuotaExceeded, "Quota exhausted",
		"the "+ex.Window.String()+" quota of "+strconv.FormatInt(ex.Limit, 10)+" tokens is used up; it resets at "+ex.Reset.UTC().Format(time.RFC3339))
}

// HasLimits reports whether any limit applies to s: the guard pays for a
// reservation only then.
func (rt *Runtime) HasLimits(s *Subject) bool {
	if s.Token != nil && s.Token.Limits != nil || s.User.Limits != nil && !s.User.Limits.IsZero() {
		return true
	}
	m := rt.quotas.roles.Load()
	return m != nil && len(*m) > 0 && !(*m)[s.User.Role].IsZero()
}

// SettleQuota settles res with the request's real token count. It runs
// when the answer has ended, on a context of its own: the request's may
// already be cancelled, and the counters must still learn the count.
func (rt *Runtime) SettleQuota(res *quota.Reservation, tokens int64) {
	ctx := context.Background() // the local counters take no call that could hang
	if rt.quotas.counters.Shared() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
	}
	if err := res.Settle(ctx, tokens); err != nil {
		rt.Logger.Warn("settling a quota reservation failed; the counters keep its estimate", zap.Error(err))
	}
}

// QuotaLeft is what remains of each of s's limits now (empty: none).
func (rt *Runtime) QuotaLeft(ctx context.Context, s *Subject) ([]quota.Status, error) {
	buckets := rt.buckets(s)
	if len(buckets) == 0 {
		return nil, nil
	}
	return rt.quotas.counters.Left(ctx, buckets)
}
