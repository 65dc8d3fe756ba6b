package gatehouse

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/guard"
	"github.com/gatehouse/gatehouse/pages"
)

func init() {
	caddy.RegisterModule(new(Guard))
}

// Guard is the http.handlers.gatehouse module: it lets a request through to
// the next handler only when Gatehouse allows it.
type Guard struct {
	// ModelRoutes ("METHOD /path") are requests whose JSON body names a
	// model; they join the route table of the policy data, whose defaults
	// cover the OpenAI, Anthropic, vLLM and Ollama APIs.
	ModelRoutes []string `json:"model_routes,omitempty"`
	// ListingRoutes are model listings filtered to what the caller may use;
	// they join the route table too.
	ListingRoutes []string `json:"listing_routes,omitempty"`
	// MaxBodyBytes bounds the body read to find the model (default 8 MiB).
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// AllowAmbiguousPaths passes paths and methods that backends could read
	// differently (";", "\", "%2F", a trailing "." …) instead of refusing
	// them with 400 ambiguous_request.
	AllowAmbiguousPaths bool `json:"allow_ambiguous_paths,omitempty"`
	// MeterStreamUsage false stops the guard from adding
	// stream_options.include_usage to streaming OpenAI chat and completions
	// requests (default true), for a backend that refuses the field; their
	// tokens are then estimated.
	MeterStreamUsage *bool `json:"meter_stream_usage,omitempty"`
	// IdentityHeaders are the identity headers the backend gets: user_id,
	// email, role, token_id, assertion; absent sends them all, ["none"]
	// none (identity_headers).
	IdentityHeaders []string `json:"identity_headers,omitempty"`

	rt    *core.Runtime
	guard *guard.Guard
}

// CaddyModule returns the Caddy module information.
func (*Guard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gatehouse",
		New: func() caddy.Module { return new(Guard) },
	}
}

// Provision connects the guard to the gatehouse app.
func (g *Guard) Provision(ctx caddy.Context) error {
	app, err := ctx.App("gatehouse")
	if err != nil {
		return fmt.Errorf("gatehouse: loading the gatehouse app: %w", err)
	}
	g.rt = app.(*App).Runtime()
	pg := pages.New(g.rt)
	g.guard, err = guard.New(ctx, g.rt, guard.Options{
		ModelRoutes:         g.ModelRoutes,
		ListingRoutes:       g.ListingRoutes,
		MaxBodyBytes:        g.MaxBodyBytes,
		AllowAmbiguousPaths: g.AllowAmbiguousPaths,
		NoStreamUsage:       g.MeterStreamUsage != nil && !*g.MeterStreamUsage,
		ErrorPage:           pg.ErrorPage,
		RefusalPage:         pg.RefusalPage,
		IdentityHeaders:     g.IdentityHeaders,
	})
	if err != nil {
		return fmt.Errorf("gatehouse: %w", err)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if err := g.rt.Ready(r.Context()); err != nil {
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	return g.guard.Serve(w, r, next.ServeHTTP)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Guard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Guard)(nil)
)
