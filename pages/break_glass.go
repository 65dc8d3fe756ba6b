package pages

import (
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/store"
)

// The API routes of the dashboard's Emergency access section.
const (
	routeListBreakGlass = "GET /api/break-glass"
	routeAckBreakGlass  = "POST /api/break-glass/{id}/acknowledge"
)

// breakGlassRow is a grant waiting for acknowledgement; its invoker sees no form.
type breakGlassRow struct {
	store.BreakGlassGrant
	Active bool
	Own    bool
}

func (p *Pages) breakGlassRows(r *http.Request, sub *core.Subject) ([]breakGlassRow, error) {
	grants, err := p.rt.BreakGlassGrants(r.Context())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	rows := make([]breakGlassRow, 0, len(grants))
	for _, g := range grants {
		rows = append(rows, breakGlassRow{BreakGlassGrant: g, Active: g.Active(now), Own: g.User.ID == sub.User.ID})
	}
	return rows, nil
}

// acknowledgeBreakGlass is the dashboard's Acknowledge form.
func (p *Pages) acknowledgeBreakGlass(w http.ResponseWriter, r *http.Request) error {
	sub, err := p.formAction(w, r)
	if err != nil {
		return err
	}
	if _, err := p.acts.AcknowledgeBreakGlass(r, routeAckBreakGlass, r.PathValue("id")); err != nil {
		return p.dashboardFailure(w, r, sub, "The emergency access was not acknowledged", err, dashState{})
	}
	return p.backToDashboard(r, "acknowledged", "break-glass")
}
