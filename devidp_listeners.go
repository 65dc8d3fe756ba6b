package gatehouse

import (
	"fmt"
	"net"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The development provider signs anyone in as any of its users without a
// password. A site address does not limit who can reach it — Caddy listens
// on every interface unless told to `bind`, and a remote client can send
// any Host header — so dev_idp refuses to start while an HTTP server of the
// configuration listens beyond loopback, unless the operator says
// allow_remote.

// checkDevIdPListeners refuses listeners that are not loopback.
func (a *App) checkDevIdPListeners() error {
	if a.DevIdP == nil || a.DevIdP.AllowRemote {
		return nil
	}
	app, err := a.ctx.AppIfConfigured("http")
	if err != nil || app == nil {
		return nil // no HTTP servers: nothing listens
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return nil
	}
	for name, srv := range httpApp.Servers {
		for _, listen := range srv.Listen {
			if host, local := loopbackListener(listen); !local {
				return fmt.Errorf("gatehouse: dev_idp signs anyone in without a password, and server %s listens on %s (%s), "+
					"which other machines can reach: bind the site to loopback (`bind 127.0.0.1 [::1]` in the site block) "+
					"or, on a network you trust, set `allow_remote` in the dev_idp block", name, listen, host)
			}
		}
	}
	return nil
}

// loopbackListener reports whether a listen address reaches only this
// machine, with the host it names ("every interface" when none).
func loopbackListener(listen string) (string, bool) {
	addr, err := caddy.ParseNetworkAddress(listen)
	if err != nil {
		return listen, false
	}
	if addr.IsUnixNetwork() {
		return "a unix socket", true
	}
	host := strings.Trim(addr.Host, "[]")
	switch {
	case host == "":
		return "every interface", false
	case strings.EqualFold(host, "localhost"):
		return host, true
	}
	ip := net.ParseIP(host)
	return host, ip != nil && ip.IsLoopback()
}
