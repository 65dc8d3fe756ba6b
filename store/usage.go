package store

import (
	"context"
	"time"
)

// UsageMinute is the usage of one minute by one (user, token, model, route
// kind, status class): the unit the meter flushes and the store keeps (spec
// §8). Counts of the same key add up; the meter writes at most once a second
// per instance, never once per request.
type UsageMinute struct {
	Minute    time.Time // UTC, truncated to the minute
	UserID    string
	TokenID   string // "" for a session
	TokenKind string // personal, user, system; "" for a session
	Role      string
	Model     string // "" when the request named none
	RouteKind string // model, listing, model_info, model_admin, batch, other
	// Requests, Errors (backend answered ≥ 400) and Denied (the guard refused)
	// count requests.
	Requests, Errors, Denied int64
	// QuotaHits counts the refusals of Denied that were a quota's 429.
	QuotaHits                                   int64
	PromptTokens, CompletionTokens, TotalTokens int64
	// Estimated counts the requests whose tokens were estimated (the backend
	// reported none).
	Estimated int64
	LatencyMS int64 // sum over Requests, for a mean
}

// Add adds o's counts to m's (the key fields stay m's).
func (m *UsageMinute) Add(o UsageMinute) {
	m.Requests += o.Requests
	m.Errors += o.Errors
	m.Denied += o.Denied
	m.QuotaHits += o.QuotaHits
	m.PromptTokens += o.PromptTokens
	m.CompletionTokens += o.CompletionTokens
	m.TotalTokens += o.TotalTokens
	m.Estimated += o.Estimated
	m.LatencyMS += o.LatencyMS
}

// UsageQuery selects and groups usage. Zero fields do not filter.
type UsageQuery struct {
	UserID, TokenID, Model string
	From, To               time.Time // [From, To)
	// GroupBy is "user", "model", "token", "day" or "hour".
	GroupBy string
}

// UsageRow is one group of a UsageQuery: Key is the user ID, model, token ID,
// or the day/hour in RFC 3339 (UTC).
type UsageRow struct {
	Key              string `json:"key"`
	Requests         int64  `json:"requests"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	TotalTokens      int64  `json:"total_tokens"`
	Errors           int64  `json:"errors"`
	Denied           int64  `json:"denied"`
	QuotaHits        int64  `json:"quota_hits"` // of denied, the refusals by a quota
}

// UsageStore is the part of Store that keeps usage (embedded in Store).
type UsageStore interface {
	// AddUsage adds each minute's counts to what the store holds for its key,
	// in one transaction (from any instance at once).
	AddUsage(ctx context.Context, minutes []UsageMinute) error
	// QueryUsage sums the usage that q selects, grouped by q.GroupBy, largest
	// total_tokens first (by time ascending for day and hour).
	QueryUsage(ctx context.Context, q UsageQuery) ([]UsageRow, error)
	// DeleteUsageBefore drops minutes older than t (the retention setting).
	DeleteUsageBefore(ctx context.Context, t time.Time) (int64, error)
}
