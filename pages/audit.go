package pages

import (
	"cmp"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse/gatehouse/store"
)

// requestHistoryShown bounds the dashboard's list of decided requests.
const requestHistoryShown = 20

// pendingAndHistory splits every access request into the pending ones,
// oldest first, and the latest decided ones, newest first.
func pendingAndHistory(all []store.AccessRequest) (pending, history []store.AccessRequest) {
	for _, req := range all {
		if req.Status == store.RequestPending {
			pending = append(pending, req)
		} else {
			history = append(history, req)
		}
	}
	decided := func(r store.AccessRequest) int64 {
		if r.DecidedAt == nil {
			return r.CreatedAt.UnixNano()
		}
		return r.DecidedAt.UnixNano()
	}
	slices.SortStableFunc(history, func(a, b store.AccessRequest) int { return cmp.Compare(decided(b), decided(a)) })
	return pending, history[:min(len(history), requestHistoryShown)]
}

// auditPerPage is the audit view's page size.
const auditPerPage = 25

// auditTypesSampled is how many of the latest events the type choices come from.
const auditTypesSampled = 200

// auditQuery is the audit view's filter and page, GET /api/audit's type and
// before under names of their own (?audit_type=, ?audit_before=) beside the
// users filter.
type auditQuery struct {
	Type   string
	Before int64
}

func auditQueryFrom(q url.Values) auditQuery {
	a := auditQuery{Type: strings.TrimSpace(q.Get("audit_type"))}
	if n, err := strconv.ParseInt(q.Get("audit_before"), 10, 64); err == nil && n > 0 {
		a.Before = n
	}
	return a
}

// auditView is the dashboard's Audit log: one page of events, newest first.
type auditView struct {
	Query    auditQuery
	Types    []string // the select's choices
	Rows     []auditRow
	NextPage string // older events
	Newest   string // back to the first page, from a later one
}

type auditRow struct {
	store.AuditEvent
	Actor, Target, Details string
}

// auditView reads one page of the audit log as GET /api/audit does (the
// caller is allowed that route). Audit types are written all over the core,
// so the select offers those in the latest events rather than a list kept
// apart that would go stale, and always the one chosen.
func (p *Pages) auditView(r *http.Request, q auditQuery) (*auditView, error) {
	ctx := r.Context()
	events, err := p.rt.Store.ListAudit(ctx, store.AuditFilter{Type: q.Type, Before: q.Before, Limit: auditPerPage})
	if err != nil {
		return nil, err
	}
	sample, err := p.rt.Store.ListAudit(ctx, store.AuditFilter{Limit: auditTypesSampled})
	if err != nil {
		return nil, err
	}
	v := &auditView{Query: q}
	for _, e := range sample {
		v.Types = append(v.Types, e.Type)
	}
	if q.Type != "" {
		v.Types = append(v.Types, q.Type)
	}
	slices.Sort(v.Types)
	v.Types = slices.Compact(v.Types)

	names := map[string]string{}
	who := func(id string) string {
		if id == "" {
			return ""
		}
		if n, ok := names[id]; ok {
			return n
		}
		// Actors such as system, policy and cli, and deleted users, stay as
		// their ID; so does anyone the store cannot name right now.
		n := id
		if u, err := p.rt.User(ctx, id); err == nil {
			n = cmp.Or(u.Email, u.Name, id)
		}
		names[id] = n
		return n
	}
	for _, e := range events {
		v.Rows = append(v.Rows, auditRow{AuditEvent: e, Actor: who(e.ActorID), Target: who(e.TargetID), Details: auditDetails(e.Detail)})
	}
	link := func(before int64) string {
		u := url.Values{}
		if q.Type != "" {
			u.Set("audit_type", q.Type)
		}
		if before > 0 {
			u.Set("audit_before", strconv.FormatInt(before, 10))
		}
		to := p.rt.PagesPrefix + "/admin"
		if len(u) > 0 {
			to += "?" + u.Encode()
		}
		return to + "#audit"
	}
	if len(events) == auditPerPage {
		v.NextPage = link(events[len(events)-1].ID)
	}
	if q.Before > 0 {
		v.Newest = link(0)
	}
	return v, nil
}

// auditDetails is an event's detail as "key value" pairs in key order.
func auditDetails(detail map[string]any) string {
	keys := make([]string, 0, len(detail))
	for k := range detail {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v, ok := detail[k].(string)
		if !ok {
			// The detail was read from JSON, so it marshals again.
			b, _ := json.Marshal(detail[k])
			v = string(b)
		}
		parts = append(parts, k+": "+v)
	}
	return strings.Join(parts, "; ")
}
