package gatehouse

import (
	"errors"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("gatehouse", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("gatehouse_api", parseAPIDirective)
	httpcaddyfile.RegisterHandlerDirective("gatehouse", parseGuardDirective)
	// The API answers its own routes first; the guard then decides on
	// everything else, before any handler that could serve the backend.
	httpcaddyfile.RegisterDirectiveOrder("gatehouse_api", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterDirectiveOrder("gatehouse", httpcaddyfile.Before, "basic_auth")
}

// parseGlobalOption parses the gatehouse global option:
//
//	gatehouse {
//		public_url   <url>
//		store        sqlite <path>
//		oidc {
//			issuer        <url>
//			client_id     <id>
//			client_secret <secret>
//			scopes        <scope...>
//		}
//		dev_idp {
//			user <email> [<name>]
//		}
//		bootstrap_admin <email...>
//		policy          <path...>
//		secret          <value>
//		secret_file     <path>
//		api_prefix      <path>
//		pages_prefix    <path>
//		session_lifetime     <duration>
//		session_idle_timeout <duration>
//		signing_algorithm    ES256|EdDSA|RS256
//		notify {
//			webhook <url> <secret>
//			smtp {
//				host <host>
//				port <port>
//				username <user>
//				password <password>
//				from <address>
//				tls starttls|tls|none
//			}
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("gatehouse: the global option may be given only once")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "gatehouse", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "public_url":
			err = singleArg(d, &a.PublicURL)
		case "store":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			a.Store = &StoreConfig{Driver: args[0]}
			if len(args) == 2 {
				a.Store.DSN = args[1]
			}
		case "redis":
			err = singleArg(d, &a.Redis)
		case "oidc":
			a.OIDC = new(OIDCConfig)
			err = a.OIDC.unmarshal(d)
		case "dev_idp":
			a.DevIdP = new(DevIdPConfig)
			err = a.DevIdP.unmarshal(d)
		case "bootstrap_admin":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.BootstrapAdmins = append(a.BootstrapAdmins, args...)
		case "policy":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.Policy = append(a.Policy, args...)
		case "secret":
			err = singleArg(d, &a.Secret)
		case "secret_file":
			err = singleArg(d, &a.SecretFile)
		case "api_prefix":
			err = singleArg(d, &a.APIPrefix)
		case "pages_prefix":
			err = singleArg(d, &a.PagesPrefix)
		case "session_lifetime":
			err = durationArg(d, &a.SessionLifetime)
		case "session_idle_timeout":
			err = durationArg(d, &a.SessionIdleTimeout)
		case "signing_algorithm":
			err = singleArg(d, &a.SigningAlgorithm)
		case "token_lifetime":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("gatehouse: token_lifetime takes <personal|user|system> <duration>")
			}
			dur, err := caddy.ParseDuration(args[1])
			if err != nil || dur <= 0 {
				return d.Errf("gatehouse: token_lifetime: bad duration %q", args[1])
			}
			if a.TokenLifetimes == nil {
				a.TokenLifetimes = map[string]caddy.Duration{}
			}
			a.TokenLifetimes[args[0]] = caddy.Duration(dur)
		case "token_audience":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.TokenAudiences = append(a.TokenAudiences, args...)
		case "max_staleness":
			err = durationArg(d, &a.MaxStaleness)
		case "store_timeout":
			err = durationArg(d, &a.StoreTimeout)
		case "notify":
			a.Notify = new(NotifyConfig)
			err = a.Notify.unmarshal(d)
		default:
			return d.Errf("gatehouse: unrecognized subdirective %s", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (o *OIDCConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "issuer":
			err = singleArg(d, &o.Issuer)
		case "client_id":
			err = singleArg(d, &o.ClientID)
		case "client_secret":
			err = singleArg(d, &o.ClientSecret)
		case "scopes":
			o.Scopes = d.RemainingArgs()
			if len(o.Scopes) == 0 {
				return d.ArgErr()
			}
		default:
			return d.Errf("gatehouse: oidc: unrecognized subdirective %s", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *DevIdPConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "user":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			u := DevUser{Email: args[0]}
			if len(args) == 2 {
				u.Name = args[1]
			}
			c.Users = append(c.Users, u)
		default:
			return d.Errf("gatehouse: dev_idp: unrecognized subdirective %s", d.Val())
		}
	}
	return nil
}

func (n *NotifyConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "webhook":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("gatehouse: notify: webhook takes <url> <secret>")
			}
			n.Webhooks = append(n.Webhooks, WebhookConfig{URL: args[0], Secret: args[1]})
		case "smtp":
			n.SMTP = new(SMTPConfig)
			if err := n.SMTP.unmarshal(d); err != nil {
				return err
			}
		default:
			return d.Errf("gatehouse: notify: unrecognized subdirective %s", d.Val())
		}
	}
	return nil
}

func (s *SMTPConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "host":
			err = singleArg(d, &s.Host)
		case "port":
			var v string
			if err = singleArg(d, &v); err == nil {
				s.Port, err = strconv.Atoi(v)
				if err != nil || s.Port <= 0 || s.Port > 65535 {
					return d.Errf("gatehouse: notify: smtp: bad port %q", v)
				}
			}
		case "username":
			err = singleArg(d, &s.Username)
		case "password":
			err = singleArg(d, &s.Password)
		case "from":
			err = singleArg(d, &s.From)
		case "tls":
			err = singleArg(d, &s.TLS)
			if err == nil && s.TLS != "starttls" && s.TLS != "tls" && s.TLS != "none" {
				return d.Errf("gatehouse: notify: smtp: tls must be starttls, tls or none, not %q", s.TLS)
			}
		default:
			return d.Errf("gatehouse: notify: smtp: unrecognized subdirective %s", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func singleArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var v string
	if err := singleArg(d, &v); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(v)
	if err == nil && dur < 0 {
		err = errors.New("negative")
	}
	if err != nil {
		return d.Errf("gatehouse: bad duration %q: %v", v, err)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// parseAPIDirective parses `gatehouse_api` (no arguments).
func parseAPIDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h.Next()
	if h.NextArg() {
		return nil, h.ArgErr()
	}
	if h.NextBlock(0) {
		return nil, h.Errf("gatehouse_api: unrecognized subdirective %s", h.Val())
	}
	return new(APIHandler), nil
}

// parseGuardDirective parses:
//
//	gatehouse {
//		model_routes   <"METHOD /path">...   # adds model routes to the route table
//		listing_routes <"METHOD /path">...   # adds model listings to the route table
//		max_body       <size>                # e.g. 8MB
//		allow_ambiguous_paths                # pass ";", "\", "%2F", "x." paths instead of 400
//	}
func parseGuardDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Guard)
	h.Next()
	if h.NextArg() {
		return nil, h.ArgErr()
	}
	for h.NextBlock(0) {
		switch h.Val() {
		case "model_routes", "listing_routes":
			name := h.Val()
			args := h.RemainingArgs()
			if len(args) == 0 {
				return nil, h.ArgErr()
			}
			for _, a := range args {
				method, path, ok := strings.Cut(a, " ")
				if !ok || method == "" || !strings.HasPrefix(path, "/") || method != strings.ToUpper(method) {
					return nil, h.Errf("gatehouse: %s: %q must be a quoted \"METHOD /path\"", name, a)
				}
			}
			if name == "model_routes" {
				g.ModelRoutes = append(g.ModelRoutes, args...)
			} else {
				g.ListingRoutes = append(g.ListingRoutes, args...)
			}
		case "max_body":
			var v string
			if err := singleArg(h.Dispenser, &v); err != nil {
				return nil, err
			}
			size, err := humanize.ParseBytes(v)
			if err != nil || size == 0 || size > 1<<30 {
				return nil, h.Errf("gatehouse: max_body: bad size %q (e.g. 8MB, at most 1GB)", v)
			}
			g.MaxBodyBytes = int64(size)
		case "allow_ambiguous_paths":
			if h.NextArg() {
				return nil, h.ArgErr()
			}
			g.AllowAmbiguousPaths = true
		default:
			return nil, h.Errf("gatehouse: unrecognized subdirective %s", h.Val())
		}
	}
	return g, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*App)(nil)
