package guard_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestDecisionIsAChildSpanOfCaddysTrace: under a recording span (what
// Caddy's tracing directive puts in the request context) the decision is a
// child span that names its route kind and code.
func TestDecisionIsAChildSpanOfCaddysTrace(t *testing.T) {
	f := newFixture(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, parent := tp.Tracer("caddy").Start(context.Background(), "handler")
	u, _ := url.Parse(publicURL + "/hello")
	w := &discardWriter{h: http.Header{}}
	if err := f.g.Serve(w, benchRequest(u, "").WithContext(ctx), noopNext); err != nil || w.status != http.StatusUnauthorized {
		t.Fatalf("status %d, err %v; want 401", w.status, err)
	}
	parent.End()

	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Name() != "gatehouse.decision" {
		t.Fatalf("spans = %v, want gatehouse.decision, then the parent", spans)
	}
	d := spans[0]
	if d.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatal("the decision's span is not a child of the request's")
	}
	want := map[attribute.Key]string{"gatehouse.route_kind": "other", "gatehouse.code": "unauthenticated"}
	for _, kv := range d.Attributes() {
		if v, ok := want[kv.Key]; ok && kv.Value.AsString() == v {
			delete(want, kv.Key)
		}
	}
	if len(want) != 0 {
		t.Fatalf("attributes %v lack %v", d.Attributes(), want)
	}
}
