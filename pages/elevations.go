package pages

import (
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/actions"
	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/store"
)

// Temporary elevation on the pages: the account page's request form and the
// caller's open elevation, the dashboard's pending ones with their forms.
// Each form runs the action of its API route.
const (
	routeRequestElevation = "POST /api/elevations"
	routeListElevations   = "GET /api/elevations"
)

// elevationSection is what the account page shows of temporary elevation.
type elevationSection struct {
	Open     *store.Elevation // pending or held
	CanAsk   bool
	Roles    []string // the roles ranked above the caller's
	Duration string   // the form's default
}

// elevationSection reads the caller's open elevation and the roles they may
// ask for; nil when the policy does not let them ask.
func (p *Pages) elevationSection(r *http.Request, sub *core.Subject) (*elevationSection, error) {
	if !p.acts.Allowed(r, sub, routeRequestElevation, nil, nil) {
		return nil, nil
	}
	list, err := p.rt.Store.ListElevations(r.Context(), store.ElevationFilter{UserID: sub.User.ID})
	if err != nil {
		return nil, err
	}
	sec := &elevationSection{Duration: "1h"}
	for i := range slices.Backward(list) {
		if e := list[i]; e.Status == store.ElevationPending || e.Status == store.ElevationApproved {
			sec.Open = &e
			break
		}
	}
	ranks := p.rt.Policy().Roles()
	for _, role := range p.roles() {
		if ranks[role] > ranks[sub.User.Role] {
			sec.Roles = append(sec.Roles, role)
		}
	}
	sec.CanAsk = sec.Open == nil && len(sec.Roles) > 0
	return sec, nil
}

// elevationDurations are the account form's choices.
var elevationDurations = []lifetime{{Value: "15m", Label: "15 minutes"}, {Value: "1h", Label: "1 hour"},
	{Value: "4h", Label: "4 hours"}, {Value: "8h", Label: "8 hours"}, {Value: "24h", Label: "24 hours"}}

func (p *Pages) requestElevation(w http.ResponseWriter, r *http.Request) error {
	sub, err := p.formAction(w, r)
	if err != nil {
		return err
	}
	in := actions.ElevationRequest{Role: r.PostFormValue("role"), Duration: r.PostFormValue("duration"),
		Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	if _, err := p.acts.RequestElevation(r, routeRequestElevation, in); err != nil {
		return p.accountFailure(w, r, sub, "The elevation was not requested", err, tokenForm{})
	}
	return seeOther(p.rt.PagesPrefix + "/account?notice=elevation_requested#elevation")
}

// reviewElevation serves the approve (approve) and deny forms of an elevation.
func (p *Pages) reviewElevation(approve bool) handler {
	verb, past := "deny", "denied"
	if approve {
		verb, past = "approve", "approved"
	}
	route := "PUT /api/elevations/{id}/" + verb
	return func(w http.ResponseWriter, r *http.Request) error {
		sub, err := p.formAction(w, r)
		if err != nil {
			return err
		}
		in := actions.ElevationReview{Comment: strings.TrimSpace(r.PostFormValue("comment"))}
		if _, err := p.acts.DecideElevation(r, route, r.PathValue("id"), approve, in); err != nil {
			return p.dashboardFailure(w, r, sub, "The elevation was not "+past, err, dashState{})
		}
		return p.backToDashboard(r, "elevation_"+past, "elevations")
	}
}
