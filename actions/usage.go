package actions

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/refusal"
	"github.com/gatehouse/gatehouse/store"
)

// DefaultUsageWindow is how far back a usage query reaches without from.
const DefaultUsageWindow = 7 * 24 * time.Hour

// UsageEveryone is the target of a usage query over every user. It has no
// role, so no rank stands in the way; the route's target permission
// (users:activity) still does.
var UsageEveryone = &policy.Target{}

// usageParams are the query parameters of GET /api/usage, in the order a
// refusal names them.
var usageParams = []string{"user_id", "token_id", "model", "from", "to", "group_by"}

// UsageReport is the answer of a usage query: its rows over [From, To).
type UsageReport struct {
	Rows     []store.UsageRow
	From, To time.Time
	// UserID is whose usage it is; "" for everyone's.
	UserID string
}

// Usage checks and answers a usage query given as GET /api/usage's query
// parameters. Anyone the route lets in reads their own usage; another
// user's, or everyone's, needs the policy's leave with that user (or
// UsageEveryone) as the target. Without user_id the answer is everyone's
// usage when the caller may read it, their own otherwise.
func (a *Actions) Usage(r *http.Request, route string, params url.Values, now time.Time) (UsageReport, error) {
	sub, err := a.Authorize(r, route, nil, nil)
	if err != nil {
		return UsageReport{}, err
	}
	q, err := parseUsageQuery(params, now)
	if err != nil {
		return UsageReport{}, err
	}
	switch {
	case q.UserID == "":
		if !a.Allowed(r, sub, route, UsageEveryone, nil) {
			q.UserID = sub.User.ID
		}
	case q.UserID != sub.User.ID:
		if err := a.authorizeUsageOf(r, route, q.UserID); err != nil {
			return UsageReport{}, err
		}
	}
	rows, err := a.rt.Store.QueryUsage(r.Context(), q)
	if err != nil {
		return UsageReport{}, err
	}
	return UsageReport{Rows: rows, From: q.From, To: q.To, UserID: q.UserID}, nil
}

// MayReadUsageOfOthers reports whether sub may read everyone's usage, for
// pages deciding what to show.
func (a *Actions) MayReadUsageOfOthers(r *http.Request, sub *core.Subject, route string) bool {
	return a.Allowed(r, sub, route, UsageEveryone, nil)
}

// authorizeUsageOf asks the policy about reading userID's usage. Usage
// outlives its user, so a deleted user is a target without a role.
func (a *Actions) authorizeUsageOf(r *http.Request, route, userID string) error {
	target := &policy.Target{ID: userID}
	u, err := a.rt.Store.GetUser(r.Context(), userID)
	switch {
	case err == nil:
		target.Role, target.Status = u.Role, u.Status
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	_, err = a.Authorize(r, route, target, nil)
	return err
}

// parseUsageQuery validates every parameter, naming the one at fault. The
// window defaults to the DefaultUsageWindow up to now, the grouping to model.
func parseUsageQuery(params url.Values, now time.Time) (store.UsageQuery, error) {
	for name := range params {
		if !slices.Contains(usageParams, name) {
			return store.UsageQuery{}, refusal.Validation(fmt.Sprintf("unknown parameter %q: use user_id, token_id, model, from, to or group_by", name))
		}
	}
	get := func(name string) (string, bool, error) {
		v, ok := params[name]
		switch {
		case !ok:
			return "", false, nil
		case len(v) > 1:
			return "", false, refusal.Validation(name + " must be given once")
		case v[0] == "" || utf8.RuneCountInString(v[0]) > maxShortChars:
			return "", false, refusal.Validation(fmt.Sprintf("%s must have 1 to %d characters", name, maxShortChars))
		}
		return v[0], true, nil
	}
	var q store.UsageQuery
	for _, f := range []struct {
		name string
		dst  *string
	}{{"user_id", &q.UserID}, {"token_id", &q.TokenID}, {"model", &q.Model}, {"group_by", &q.GroupBy}} {
		v, _, err := get(f.name)
		if err != nil {
			return store.UsageQuery{}, err
		}
		*f.dst = v
	}
	switch q.GroupBy {
	case "":
		q.GroupBy = "model"
	case "user", "model", "token", "day", "hour":
	default:
		return store.UsageQuery{}, refusal.Validation("group_by must be user, model, token, day or hour")
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		v, ok, err := get(f.name)
		if err != nil {
			return store.UsageQuery{}, err
		}
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return store.UsageQuery{}, refusal.Validation(f.name + " must be an RFC 3339 time, such as 2030-01-02T00:00:00Z")
		}
		*f.dst = t.UTC()
	}
	if q.To.IsZero() {
		q.To = now.UTC().Truncate(time.Second)
	}
	if q.From.IsZero() {
		q.From = q.To.Add(-DefaultUsageWindow)
	}
	if !q.From.Before(q.To) {
		return store.UsageQuery{}, refusal.Validation("from must be before to")
	}
	return q, nil
}

// UsageLimit is one of the caller's limits and what is left of it in the
// limit's current window.
type UsageLimit struct {
	Limit     int64 `json:"limit"`
	Remaining int64 `json:"remaining"`
}

// UsageLimits checks and returns the caller's limits by name
// (requests_per_minute, tokens_per_day, …) with what is left of each now:
// for each, the tightest of their role's and their token's.
func (a *Actions) UsageLimits(r *http.Request, route string) (map[string]UsageLimit, error) {
	sub, err := a.Authorize(r, route, nil, nil)
	if err != nil {
		return nil, err
	}
	left, err := a.rt.QuotaLeft(r.Context(), sub)
	if err != nil {
		return nil, err
	}
	out := make(map[string]UsageLimit, len(left))
	for _, s := range left {
		out[s.Window.String()] = UsageLimit{Limit: s.Limit, Remaining: s.Remaining}
	}
	return out, nil
}
