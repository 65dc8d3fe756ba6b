package guard

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/policy"
)

const tracerName = "github.com/gatehouse/gatehouse/guard"

// decision counts, and traces, one decision of the guard: begun once the
// route is known, ended with the code the request is answered with
// (metrics.Allowed when it passes).
type decision struct {
	metrics *metrics.Set
	route   string
	span    trace.Span // nil unless Caddy's tracing directive records the request
}

func (g *Guard) beginDecision(r *http.Request, route *policy.Route) decision {
	d := decision{metrics: g.rt.Metrics(), route: policy.KindOther}
	if route != nil {
		d.route = route.Kind
	}
	// A child of the span of Caddy's tracing handler; without one, nothing
	// is started (and nothing allocated).
	if parent := trace.SpanFromContext(r.Context()); parent.IsRecording() {
		_, d.span = parent.TracerProvider().Tracer(tracerName).Start(r.Context(), "gatehouse.decision",
			trace.WithAttributes(attribute.String("gatehouse.route_kind", d.route)))
	}
	return d
}

func (d decision) end(code string) {
	d.metrics.Decision(d.route, code)
	if d.span != nil {
		d.span.SetAttributes(attribute.String("gatehouse.code", code))
		d.span.End()
	}
}
