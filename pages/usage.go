package pages

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/actions"
	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/store"
)

// The API routes behind the usage on the dashboard and the account page.
const (
	routeUsage       = "GET /api/usage"
	routeUsageLimits = "GET /api/usage/limits"
)

// Bounds of the usage charts: the models with a series of their own, and
// the rows of a top list.
const (
	chartModels = 6
	chartTop    = 10
)

// usageSection is the dashboard's Usage section: charts drawn on the server
// as inline SVG (no script), each with its numbers as a table.
type usageSection struct {
	From, To      time.Time
	TokensByModel chart
	TopUsers      chart
	TopTokens     chart
	Refusals      chart
	QuotaHits     chart
}

// ownUsage is the caller's usage on the account page.
type ownUsage struct {
	From, To time.Time
	ByModel  chart
	Limits   []limitRow
}

type limitRow struct {
	Name             string
	Limit, Remaining int64
}

// chart is one SVG chart and the table of its numbers. Geometry is worked
// out here, so the template only places elements with presentation
// attributes (the CSP allows no inline style).
type chart struct {
	ID            string
	Label         string // the chart's accessible name
	Unit          string // what a value counts
	Width, Height int
	Bars          []bar
	Texts         []svgText
	Legend        []legendItem
	// Columns and Rows are the table beside the chart.
	Columns []string
	Rows    []chartRow
}

type bar struct {
	X, Y, W, H int
	Class      string // series-N
	Key        string // the API row's key (a model, day, user or token ID)
	Series     string // the model of a stacked segment
	Value      int64
	Title      string
}

type svgText struct {
	X, Y   int
	Anchor string // start, middle, end
	Class  string
	Text   string
}

type legendItem struct {
	Class, Label string
}

type chartRow struct {
	Key   string
	Label string
	Cells []int64
}

// Geometry of the charts, in SVG user units.
const (
	chartWidth    = 720
	axisWidth     = 64 // room for the value labels left of a column chart
	topPad        = 16
	plotHeight    = 160
	dayLabelSpace = 24
	barRowHeight  = 24
	labelWidth    = 220 // room for the names left of a bar chart
	valueWidth    = 90  // room for the value right of a bar
)

// usageQuery asks for usage the way GET /api/usage would be asked: through
// the same action, so a page never shows what the API would refuse.
func (p *Pages) usageQuery(r *http.Request, params url.Values, now time.Time) (actions.UsageReport, error) {
	return p.acts.Usage(r, routeUsage, params, now)
}

// usageSection builds the dashboard's charts over the default window.
func (p *Pages) usageSection(r *http.Request, now time.Time) (*usageSection, error) {
	ctx := r.Context()
	byModel, err := p.usageQuery(r, url.Values{"group_by": {"model"}}, now)
	if err != nil {
		return nil, err
	}
	sec := &usageSection{From: byModel.From, To: byModel.To}
	days := dayKeys(byModel.From, byModel.To)

	// Tokens per day, a stacked column per day, one series per leading model.
	var series []string
	perDay := map[string]map[string]int64{} // model → day → tokens
	for _, row := range byModel.Rows {
		if len(series) == chartModels || row.TotalTokens == 0 {
			break
		}
		daily, err := p.usageQuery(r, url.Values{"group_by": {"day"}, "model": {row.Key}}, now)
		if err != nil {
			return nil, err
		}
		perDay[row.Key] = map[string]int64{}
		for _, d := range daily.Rows {
			perDay[row.Key][d.Key] = d.TotalTokens
		}
		series = append(series, row.Key)
	}
	sec.TokensByModel = stackedColumns("usage-tokens-by-model", "Tokens per day by model", "tokens", days, series, perDay)

	byDay, err := p.usageQuery(r, url.Values{"group_by": {"day"}}, now)
	if err != nil {
		return nil, err
	}
	// Refusals and quota hits per day.
	denied, hits := map[string]int64{}, map[string]int64{}
	for _, d := range byDay.Rows {
		denied[d.Key], hits[d.Key] = d.Denied, d.QuotaHits
	}
	sec.Refusals = stackedColumns("usage-refusals", "Refusals per day", "refusals", days, []string{"refused"},
		map[string]map[string]int64{"refused": denied})
	sec.QuotaHits = stackedColumns("usage-quota-hits", "Quota hits per day", "quota hits", days, []string{"quota hits"},
		map[string]map[string]int64{"quota hits": hits})

	byUser, err := p.usageQuery(r, url.Values{"group_by": {"user"}}, now)
	if err != nil {
		return nil, err
	}
	sec.TopUsers, err = topBars("usage-top-users", "Top users by tokens", byUser.Rows, func(id string) (string, error) {
		u, err := p.rt.Store.GetUser(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return id + " (deleted)", nil
		}
		return u.Email, err
	})
	if err != nil {
		return nil, err
	}

	byToken, err := p.usageQuery(r, url.Values{"group_by": {"token"}}, now)
	if err != nil {
		return nil, err
	}
	sec.TopTokens, err = topBars("usage-top-tokens", "Top tokens by tokens", byToken.Rows, func(id string) (string, error) {
		if id == "" {
			return "(signed-in sessions)", nil
		}
		t, err := p.rt.Store.GetToken(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return id, nil
		}
		return t.Name, err
	})
	return sec, err
}

// ownUsage is the caller's usage by model over the default window, and
// their limits when they have any.
func (p *Pages) ownUsage(r *http.Request, sub *core.Subject, now time.Time) (*ownUsage, error) {
	rep, err := p.usageQuery(r, url.Values{"user_id": {sub.User.ID}, "group_by": {"model"}}, now)
	if err != nil {
		return nil, err
	}
	own := &ownUsage{From: rep.From, To: rep.To}
	own.ByModel, err = topBars("own-usage-by-model", "Your tokens by model", rep.Rows, func(model string) (string, error) {
		if model == "" {
			return "(no model)", nil
		}
		return model, nil
	})
	if err != nil {
		return nil, err
	}
	limits, err := p.acts.UsageLimits(r, routeUsageLimits)
	if err != nil {
		return nil, err
	}
	for name, l := range limits {
		own.Limits = append(own.Limits, limitRow{Name: name, Limit: l.Limit, Remaining: l.Remaining})
	}
	slices.SortFunc(own.Limits, func(a, b limitRow) int { return cmp.Compare(a.Name, b.Name) })
	return own, nil
}

// dayKeys are the days [from, to) touches, as the API's day keys.
func dayKeys(from, to time.Time) []string {
	var keys []string
	for d := from.UTC().Truncate(24 * time.Hour); d.Before(to); d = d.Add(24 * time.Hour) {
		keys = append(keys, d.Format(time.RFC3339))
	}
	return keys
}

// stackedColumns draws one column per day, stacked by series, with the
// largest day's total as the scale.
func stackedColumns(id, label, unit string, days, series []string, values map[string]map[string]int64) chart {
	c := chart{ID: id, Label: label, Unit: unit, Width: chartWidth, Height: topPad + plotHeight + dayLabelSpace,
		Columns: append([]string{"day"}, series...)}
	if len(series) > 1 {
		c.Columns = append(c.Columns, "total")
	}
	for i, s := range series {
		c.Legend = append(c.Legend, legendItem{Class: seriesClass(i), Label: s})
	}
	var top int64
	for _, day := range days {
		var sum int64
		for _, s := range series {
			sum += values[s][day]
		}
		top = max(top, sum)
	}
	slot := (chartWidth - axisWidth) / max(len(days), 1)
	barW := slot * 3 / 5
	base := topPad + plotHeight
	c.Texts = append(c.Texts,
		svgText{X: axisWidth - 6, Y: topPad + 4, Anchor: "end", Class: "axis", Text: strconv.FormatInt(top, 10)},
		svgText{X: axisWidth - 6, Y: base, Anchor: "end", Class: "axis", Text: "0"})
	for i, day := range days {
		x := axisWidth + i*slot + (slot-barW)/2
		y := base
		row := chartRow{Key: day, Label: day[:10]}
		var sum int64
		for j, s := range series {
			v := values[s][day]
			row.Cells = append(row.Cells, v)
			sum += v
			if v == 0 {
				continue
			}
			h := scale(v, top, plotHeight)
			y -= h
			c.Bars = append(c.Bars, bar{X: x, Y: y, W: barW, H: h, Class: seriesClass(j), Key: day, Series: s, Value: v,
				Title: fmt.Sprintf("%s, %s: %d %s", day[:10], s, v, unit)})
		}
		if len(series) > 1 {
			row.Cells = append(row.Cells, sum)
		}
		c.Rows = append(c.Rows, row)
		c.Texts = append(c.Texts, svgText{X: x + barW/2, Y: base + 16, Anchor: "middle", Class: "axis", Text: day[5:10]})
	}
	return c
}

// topBars draws the leading rows by total tokens as horizontal bars, each
// named by name(key).
func topBars(id, label string, rows []store.UsageRow, name func(key string) (string, error)) (chart, error) {
	c := chart{ID: id, Label: label, Unit: "tokens", Width: chartWidth,
		Columns: []string{"name", "requests", "prompt tokens", "completion tokens", "total tokens", "errors", "refused"}}
	rows = rows[:min(len(rows), chartTop)]
	c.Height = max(len(rows), 1) * barRowHeight
	var top int64
	for _, row := range rows {
		top = max(top, row.TotalTokens)
	}
	plotWidth := chartWidth - labelWidth - valueWidth
	for i, row := range rows {
		n, err := name(row.Key)
		if err != nil {
			return chart{}, err
		}
		y := i * barRowHeight
		w := scale(row.TotalTokens, top, plotWidth)
		c.Bars = append(c.Bars, bar{X: labelWidth, Y: y + 4, W: w, H: barRowHeight - 8, Class: seriesClass(0), Key: row.Key,
			Value: row.TotalTokens, Title: fmt.Sprintf("%s: %d tokens in %d requests", n, row.TotalTokens, row.Requests)})
		c.Texts = append(c.Texts,
			svgText{X: labelWidth - 8, Y: y + 16, Anchor: "end", Class: "label", Text: ellipsis(n, 32)},
			svgText{X: labelWidth + w + 6, Y: y + 16, Anchor: "start", Class: "axis", Text: strconv.FormatInt(row.TotalTokens, 10)})
		c.Rows = append(c.Rows, chartRow{Key: row.Key, Label: n,
			Cells: []int64{row.Requests, row.PromptTokens, row.CompletionTokens, row.TotalTokens, row.Errors, row.Denied}})
	}
	return c, nil
}

// scale maps v of top onto length units; what is not zero stays visible.
func scale(v, top int64, length int) int {
	if v <= 0 || top <= 0 {
		return 0
	}
	return max(int(v*int64(length)/top), 1)
}

func seriesClass(i int) string { return "series-" + strconv.Itoa(i%chartModels) }

func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
