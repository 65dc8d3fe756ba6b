package api

import (
	"encoding/csv"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// usageAnswer is the JSON answer of GET /api/usage (spec §8).
type usageAnswer struct {
	Rows []store.UsageRow `json:"rows"`
	From string           `json:"from"`
	To   string           `json:"to"`
}

// usageCSVHeader names the columns of the CSV answer, as the JSON does.
var usageCSVHeader = []string{"key", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors", "denied", "quota_hits"}

func (a *API) usage(w http.ResponseWriter, r *http.Request, route string) error {
	rep, err := a.acts.Usage(r, route, r.URL.Query(), time.Now())
	if err != nil {
		return err
	}
	w.Header().Add("Vary", "Accept")
	if acceptsCSV(r) {
		writeUsageCSV(w, rep.Rows)
		return nil
	}
	writeJSON(w, http.StatusOK, usageAnswer{Rows: rep.Rows,
		From: rep.From.Format(time.RFC3339Nano), To: rep.To.Format(time.RFC3339Nano)})
	return nil
}

// acceptsCSV reports whether the Accept header names text/csv.
func acceptsCSV(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && mt == "text/csv" && params["q"] != "0" {
			return true
		}
	}
	return false
}

func writeUsageCSV(w http.ResponseWriter, rows []store.UsageRow) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="usage.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	_ = cw.Write(usageCSVHeader)
	for _, row := range rows {
		_ = cw.Write([]string{csvCell(row.Key), strconv.FormatInt(row.Requests, 10),
			strconv.FormatInt(row.PromptTokens, 10), strconv.FormatInt(row.CompletionTokens, 10),
			strconv.FormatInt(row.TotalTokens, 10), strconv.FormatInt(row.Errors, 10), strconv.FormatInt(row.Denied, 10),
			strconv.FormatInt(row.QuotaHits, 10)})
	}
	cw.Flush()
}

// csvCell keeps a spreadsheet from reading a key as a formula: a model name
// is whatever a client sent, so one starting with = + - @ or a control
// character is quoted with a leading apostrophe (OWASP's CSV injection advice).
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// usageLimits answers GET /api/usage/limits: {"limits":{…}}, the caller's
// limits by name (spec §8: requests_per_minute, tokens_per_day, …) with
// what is left of each (the tightest of the role's, the user's and the
// token's); the object is empty when none applies.
func (a *API) usageLimits(w http.ResponseWriter, r *http.Request, route string) error {
	limits, err := a.acts.UsageLimits(r, route)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"limits": limits})
	return nil
}
