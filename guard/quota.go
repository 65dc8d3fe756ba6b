package guard

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/modelreq"
	"github.com/gatehouse/gatehouse/quota"
	"github.com/gatehouse/gatehouse/refusal"
)

// defaultCompletionEstimate is what a request reserves for its answer when
// it sets no max_tokens (or max_completion_tokens, max_output_tokens,
// Ollama's options.num_predict).
const defaultCompletionEstimate = 256

// reserveQuota reserves the request against the caller's limits before it
// goes on (spec §8). On refusal it answers — 429 with Retry-After, the
// x-ratelimit-* headers and the OpenAI error type — and returns ok=false.
// A nil reservation with ok means the caller has no limits; refused is the
// status it answered with.
func (g *Guard) reserveQuota(w http.ResponseWriter, r *http.Request, sub *core.Subject) (res *quota.Reservation, refused int) {
	if !g.rt.HasLimits(sub) {
		return nil, 0
	}
	var ex *quota.Exceeded
	var err error
	res, ex, err = g.rt.ReserveQuota(r.Context(), sub, estimateTokens(r))
	if err != nil {
		if ex != nil {
			setRateLimitHeaders(w.Header(), []quota.Status{{Window: ex.Window, Limit: ex.Limit, Remaining: 0, Reset: ex.Reset}})
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(time.Until(ex.Reset).Seconds()+0.999))))
			g.rt.AuditDenial(r, sub, refusal.As(err).Code, err.Error())
		}
		if p := refusal.As(err); p != nil {
			g.answer(w, r, p)
			return nil, p.Status
		}
		g.unavailable(w, r, err)
		return nil, http.StatusServiceUnavailable
	}
	if res != nil {
		setRateLimitHeaders(w.Header(), res.Status)
	}
	return res, 0
}

// estimateTokens is a request's reservation: its prompt at about four bytes
// a token, and the answer it may ask for. It reads the body the model read
// kept, without a copy; a body not read (no model route) counts by its length.
func estimateTokens(r *http.Request) int64 {
	completion := int64(defaultCompletionEstimate)
	size := max(r.ContentLength, 0)
	if body, ok := modelreq.Body(r); ok {
		size = int64(len(body))
		if n, ok := modelreq.MaxCompletion(body); ok {
			completion = n
		}
	}
	return (size+3)/4 + completion
}

// setRateLimitHeaders sets OpenAI's x-ratelimit-* headers from the tightest
// request and token windows.
func setRateLimitHeaders(h http.Header, status []quota.Status) {
	var requests, tokens *quota.Status
	for i := range status {
		s := &status[i]
		switch {
		case s.Window == quota.RequestsMinute:
			requests = s
		case s.Window != quota.Concurrent && (tokens == nil || s.Remaining < tokens.Remaining):
			tokens = s
		}
	}
	var vals headerValues
	if requests != nil {
		vals.set(h, "X-Ratelimit-Limit-Requests", strconv.FormatInt(requests.Limit, 10))
		vals.set(h, "X-Ratelimit-Remaining-Requests", strconv.FormatInt(requests.Remaining, 10))
		vals.set(h, "X-Ratelimit-Reset-Requests", resetIn(requests.Reset))
	}
	if tokens != nil {
		vals.set(h, "X-Ratelimit-Limit-Tokens", strconv.FormatInt(tokens.Limit, 10))
		vals.set(h, "X-Ratelimit-Remaining-Tokens", strconv.FormatInt(tokens.Remaining, 10))
		vals.set(h, "X-Ratelimit-Reset-Tokens", resetIn(tokens.Reset))
	}
}

// resetIn is OpenAI's reset format: a duration such as "6m0s" or "1s".
func resetIn(t time.Time) string {
	d := time.Until(t).Round(time.Second)
	if d < time.Second {
		d = time.Second
	}
	return d.String()
}
