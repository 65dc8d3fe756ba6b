package gatehouse

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse/gatehouse/api"
	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/pages"
)

func init() {
	caddy.RegisterModule(new(APIHandler))
}

// APIHandler is the http.handlers.gatehouse_api module: it serves Gatehouse's
// own routes (API, pages, JWKS, dev IdP) and hands every other request on.
type APIHandler struct {
	rt  *core.Runtime
	api *api.API
}

// CaddyModule returns the Caddy module information.
func (*APIHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gatehouse_api",
		New: func() caddy.Module { return new(APIHandler) },
	}
}

// Provision connects the handler to the gatehouse app.
func (h *APIHandler) Provision(ctx caddy.Context) error {
	app, err := ctx.App("gatehouse")
	if err != nil {
		return fmt.Errorf("gatehouse_api: loading the gatehouse app: %w", err)
	}
	h.rt = app.(*App).Runtime()
	h.api = api.New(h.rt, pages.New(h.rt))
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *APIHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if err := h.rt.Ready(r.Context()); err != nil {
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	if h.api.Serve(w, r) {
		return nil
	}
	return next.ServeHTTP(w, r)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*APIHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*APIHandler)(nil)
)
