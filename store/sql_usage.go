package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// usageKey is the primary key of usage_minutes.
type usageKey struct {
	minute                            time.Time
	userID, tokenID, model, routeKind string
}

func (k usageKey) compare(o usageKey) int {
	return cmp.Or(k.minute.Compare(o.minute), cmp.Compare(k.userID, o.userID),
		cmp.Compare(k.tokenID, o.tokenID), cmp.Compare(k.model, o.model), cmp.Compare(k.routeKind, o.routeKind))
}

// AddUsage adds the counts of each minute to its row in one transaction.
// Minutes of one key are summed first, and rows are written in key order, so
// that batches from several instances touching the same rows cannot deadlock.
func (s *sqlStore) AddUsage(ctx context.Context, minutes []UsageMinute) error {
	if len(minutes) == 0 {
		return nil
	}
	summed := map[usageKey]UsageMinute{}
	for _, m := range minutes {
		m.Minute = m.Minute.UTC().Truncate(time.Minute)
		k := usageKey{m.Minute, m.UserID, m.TokenID, m.Model, m.RouteKind}
		if prev, ok := summed[k]; ok {
			m.Add(prev)
		}
		summed[k] = m
	}
	keys := make([]usageKey, 0, len(summed))
	for k := range summed {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, usageKey.compare)
	argLists := make([][]any, 0, len(keys))
	for _, k := range keys {
		m := summed[k]
		argLists = append(argLists, []any{s.encodeTime(m.Minute), m.UserID, m.TokenID, m.Model, m.RouteKind,
			m.TokenKind, m.Role, m.Requests, m.Errors, m.Denied,
			m.PromptTokens, m.CompletionTokens, m.TotalTokens, m.Estimated, m.LatencyMS, m.QuotaHits})
	}
	// The role is the latest one seen: a role change within a minute keeps
	// one row.
	err := s.inTx(ctx, func(tx db) error {
		return tx.execEach(ctx, `INSERT INTO usage_minutes (minute, user_id, token_id, model, route_kind,
				token_kind, role, requests, errors, denied,
				prompt_tokens, completion_tokens, total_tokens, estimated, latency_ms, quota_hits)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
			ON CONFLICT (minute, user_id, token_id, model, route_kind) DO UPDATE SET
				token_kind = excluded.token_kind,
				role = excluded.role,
				requests = usage_minutes.requests + excluded.requests,
				errors = usage_minutes.errors + excluded.errors,
				denied = usage_minutes.denied + excluded.denied,
				prompt_tokens = usage_minutes.prompt_tokens + excluded.prompt_tokens,
				completion_tokens = usage_minutes.completion_tokens + excluded.completion_tokens,
				total_tokens = usage_minutes.total_tokens + excluded.total_tokens,
				estimated = usage_minutes.estimated + excluded.estimated,
				latency_ms = usage_minutes.latency_ms + excluded.latency_ms,
				quota_hits = usage_minutes.quota_hits + excluded.quota_hits`, argLists)
	})
	if err != nil {
		return fmt.Errorf("add usage of %d minutes: %w", len(keys), err)
	}
	return nil
}

// QueryUsage sums the selected minutes per group.
func (s *sqlStore) QueryUsage(ctx context.Context, q UsageQuery) ([]UsageRow, error) {
	var key, order string
	switch q.GroupBy {
	case "user":
		key, order = "user_id", "total_tokens DESC, k"
	case "model":
		key, order = "model", "total_tokens DESC, k"
	case "token":
		key, order = "token_id", "total_tokens DESC, k"
	case "day", "hour":
		key, order = s.timeBucket("minute", q.GroupBy), "k"
	default:
		return nil, fmt.Errorf("query usage: unknown group_by %q", q.GroupBy)
	}
	var w where
	if q.UserID != "" {
		w.add("user_id = ?", q.UserID)
	}
	if q.TokenID != "" {
		w.add("token_id = ?", q.TokenID)
	}
	if q.Model != "" {
		w.add("model = ?", q.Model)
	}
	if !q.From.IsZero() {
		w.add("minute >= ?", s.encodeTime(q.From))
	}
	if !q.To.IsZero() {
		w.add("minute < ?", s.encodeTime(q.To))
	}
	out, err := queryAll(ctx, s.db, scanUsageRow,
		`SELECT k, requests, prompt_tokens, completion_tokens, total_tokens, errors, denied, quota_hits FROM (
			SELECT `+key+` AS k,
				CAST(SUM(requests) AS BIGINT) AS requests,
				CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens,
				CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens,
				CAST(SUM(total_tokens) AS BIGINT) AS total_tokens,
				CAST(SUM(errors) AS BIGINT) AS errors,
				CAST(SUM(denied) AS BIGINT) AS denied,
				CAST(SUM(quota_hits) AS BIGINT) AS quota_hits
			FROM usage_minutes`+w.String()+` GROUP BY `+key+`) AS grouped ORDER BY `+order, w.args...)
	if err != nil {
		return nil, fmt.Errorf("query usage by %s: %w", q.GroupBy, err)
	}
	return out, nil
}

func scanUsageRow(row scanner) (UsageRow, error) {
	var r UsageRow
	err := row.Scan(&r.Key, &r.Requests, &r.PromptTokens, &r.CompletionTokens, &r.TotalTokens, &r.Errors, &r.Denied, &r.QuotaHits)
	return r, err
}

// DeleteUsageBefore drops the minutes that began before t.
func (s *sqlStore) DeleteUsageBefore(ctx context.Context, t time.Time) (int64, error) {
	n, err := s.db.exec(ctx, `DELETE FROM usage_minutes WHERE minute < $1`, s.encodeTime(t))
	if err != nil {
		return 0, fmt.Errorf("delete usage before %s: %w", t.Format(time.RFC3339), err)
	}
	return n, nil
}
