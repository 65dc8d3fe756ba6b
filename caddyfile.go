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

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/devidp"
	"github.com/gatehouse/gatehouse/guard"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/notify"
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
//		key_prepublish       <duration>
//		usage_retention      <duration>   # default 90d
//		request_ttl          <duration>   # default 30d; a pending access request expires past it
//		quota_fail_open                   # let requests through when the quota counters are unreachable
//		break_glass {
//			user <email...>                # may invoke without a sealed code
//			role <role>                    # default admin
//			ttl  <duration>                # default 1h, at most 4h
//		}
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
	return parseBlock(d, "gatehouse", map[string]subdirective{
		"public_url":           stringArg(&a.PublicURL),
		"store":                a.unmarshalStore,
		"redis":                stringArg(&a.Redis),
		"oidc":                 a.unmarshalOIDC,
		"dev_idp":              a.unmarshalDevIdP,
		"bootstrap_admin":      appendArgs(&a.BootstrapAdmins),
		"policy":               appendArgs(&a.PolicyPaths),
		"secret":               stringArg(&a.Secret),
		"secret_file":          stringArg(&a.SecretFile),
		"api_prefix":           stringArg(&a.APIPrefix),
		"pages_prefix":         stringArg(&a.PagesPrefix),
		"session_lifetime":     durationArg(&a.SessionLifetime),
		"session_idle_timeout": durationArg(&a.SessionIdleTimeout),
		"signing_algorithm":    stringArg(&a.SigningAlgorithm),
		"key_prepublish":       durationArg(&a.KeyPrepublish),
		"token_lifetime":       a.unmarshalTokenLifetime,
		"token_audience":       appendArgs(&a.TokenAudiences),
		"max_staleness":        durationArg(&a.MaxStaleness),
		"store_timeout":        durationArg(&a.StoreTimeout),
		"usage_retention":      durationArg(&a.UsageRetention),
		"request_ttl":          durationArg(&a.RequestTTL),
		"quota_fail_open":      flagArg(&a.QuotaFailOpen),
		"notify":               a.unmarshalNotify,
		"break_glass":          a.unmarshalBreakGlass,
	})
}

func (a *App) unmarshalBreakGlass(d *caddyfile.Dispenser) error {
	if a.BreakGlass != nil {
		return d.Err("gatehouse: break_glass is configured twice")
	}
	b := new(core.BreakGlassConfig)
	a.BreakGlass = b
	return parseBlock(d, "gatehouse: break_glass", map[string]subdirective{
		"user": appendArgs(&b.Users),
		"role": stringArg(&b.Role),
		"ttl":  durationArg(&b.TTL),
	})
}

// flagArg sets dst for a subdirective that takes no arguments.
func flagArg(dst *bool) subdirective {
	return func(d *caddyfile.Dispenser) error {
		if d.NextArg() {
			return d.ArgErr()
		}
		*dst = true
		return nil
	}
}

// subdirective parses one line of a block, and the block it opens if any;
// the dispenser is at the subdirective's name.
type subdirective func(d *caddyfile.Dispenser) error

// parseBlock parses the block of a directive that takes no arguments, each
// subdirective with its parser. block names the directive in errors.
func parseBlock(d *caddyfile.Dispenser, block string, subdirectives map[string]subdirective) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		parse, ok := subdirectives[d.Val()]
		if !ok {
			return d.Errf("%s: unrecognized subdirective %s", block, d.Val())
		}
		if err := parse(d); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) unmarshalStore(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return d.ArgErr()
	}
	a.Store = &core.StoreConfig{Driver: args[0]}
	if len(args) == 2 {
		a.Store.DSN = args[1]
	}
	return nil
}

// unmarshalOIDC reads `oidc { … }` (the default provider) or `oidc NAME
// { … }`, which may be repeated.
func (a *App) unmarshalOIDC(d *caddyfile.Dispenser) error {
	o := new(identity.RPConfig)
	switch args := d.RemainingArgs(); len(args) {
	case 0:
		if a.OIDC != nil {
			return d.Err("oidc without a name is configured twice; give each provider a name: oidc NAME { … }")
		}
		a.OIDC = o
	case 1:
		if strings.ContainsAny(args[0], ":/") {
			return d.Errf("oidc %s: that is the provider's name; its issuer goes inside the block (oidc NAME { issuer %s … })", args[0], args[0])
		}
		o.Name = args[0]
		a.OIDCProviders = append(a.OIDCProviders, o)
	default:
		return d.ArgErr()
	}
	return parseBlock(d, "gatehouse: oidc", map[string]subdirective{
		"title":         stringArg(&o.Title),
		"issuer":        stringArg(&o.Issuer),
		"client_id":     stringArg(&o.ClientID),
		"client_secret": stringArg(&o.ClientSecret),
		"scopes": func(d *caddyfile.Dispenser) error {
			o.Scopes = d.RemainingArgs()
			if len(o.Scopes) == 0 {
				return d.ArgErr()
			}
			return nil
		},
	})
}

func (a *App) unmarshalDevIdP(d *caddyfile.Dispenser) error {
	c := new(devidp.Config)
	a.DevIdP = c
	return parseBlock(d, "gatehouse: dev_idp", map[string]subdirective{
		"allow_remote": func(d *caddyfile.Dispenser) error {
			if d.NextArg() {
				return d.ArgErr()
			}
			c.AllowRemote = true
			return nil
		},
		"user": func(d *caddyfile.Dispenser) error {
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			u := devidp.User{Email: args[0]}
			if len(args) == 2 {
				u.Name = args[1]
			}
			c.Users = append(c.Users, u)
			return nil
		},
	})
}

func (a *App) unmarshalTokenLifetime(d *caddyfile.Dispenser) error {
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
	return nil
}

func (a *App) unmarshalNotify(d *caddyfile.Dispenser) error {
	n := new(notify.Config)
	a.Notify = n
	return parseBlock(d, "gatehouse: notify", map[string]subdirective{
		"webhook": func(d *caddyfile.Dispenser) error {
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("gatehouse: notify: webhook takes <url> <secret>")
			}
			n.Webhooks = append(n.Webhooks, notify.WebhookConfig{URL: args[0], Secret: args[1]})
			return nil
		},
		"smtp": func(d *caddyfile.Dispenser) error {
			n.SMTP = new(notify.SMTPConfig)
			return unmarshalSMTP(d, n.SMTP)
		},
	})
}

func unmarshalSMTP(d *caddyfile.Dispenser, s *notify.SMTPConfig) error {
	return parseBlock(d, "gatehouse: notify: smtp", map[string]subdirective{
		"host": stringArg(&s.Host),
		"port": func(d *caddyfile.Dispenser) error {
			var v string
			if err := singleArg(d, &v); err != nil {
				return err
			}
			port, err := strconv.Atoi(v)
			if err != nil || port <= 0 || port > 65535 {
				return d.Errf("gatehouse: notify: smtp: bad port %q", v)
			}
			s.Port = port
			return nil
		},
		"username": stringArg(&s.Username),
		"password": stringArg(&s.Password),
		"from":     stringArg(&s.From),
		"tls": func(d *caddyfile.Dispenser) error {
			if err := singleArg(d, &s.TLS); err != nil {
				return err
			}
			switch s.TLS {
			case notify.TLSStartTLS, notify.TLSImplicit, notify.TLSNone:
				return nil
			}
			return d.Errf("gatehouse: notify: smtp: tls must be starttls, tls or none, not %q", s.TLS)
		},
	})
}

// stringArg parses a subdirective with one argument into dst.
func stringArg(dst *string) subdirective {
	return func(d *caddyfile.Dispenser) error { return singleArg(d, dst) }
}

// appendArgs parses a subdirective with one or more arguments, which may
// repeat, onto dst.
func appendArgs(dst *[]string) subdirective {
	return func(d *caddyfile.Dispenser) error {
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		*dst = append(*dst, args...)
		return nil
	}
}

// durationArg parses a subdirective with one duration, in Caddy's syntax
// (which knows days: 7d), into dst.
func durationArg(dst *caddy.Duration) subdirective {
	return func(d *caddyfile.Dispenser) error {
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
//		meter_stream_usage on|off            # off: streams are not asked for their usage (default on)
//	}
func parseGuardDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Guard)
	h.Next()
	err := parseBlock(h.Dispenser, "gatehouse", map[string]subdirective{
		"model_routes":   routesArg(&g.ModelRoutes),
		"listing_routes": routesArg(&g.ListingRoutes),
		"max_body": func(d *caddyfile.Dispenser) error {
			var v string
			if err := singleArg(d, &v); err != nil {
				return err
			}
			size, err := humanize.ParseBytes(v)
			if err != nil || size == 0 || size > 1<<30 {
				return d.Errf("gatehouse: max_body: bad size %q (e.g. 8MB, at most 1GB)", v)
			}
			g.MaxBodyBytes = int64(size)
			return nil
		},
		"allow_ambiguous_paths": func(d *caddyfile.Dispenser) error {
			if d.NextArg() {
				return d.ArgErr()
			}
			g.AllowAmbiguousPaths = true
			return nil
		},
		"identity_headers": func(d *caddyfile.Dispenser) error {
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.ArgErr()
			}
			if _, err := guard.ParseIdentityHeaders(names); err != nil {
				return d.Errf("gatehouse: %v", err)
			}
			g.IdentityHeaders = names
			return nil
		},
		"meter_stream_usage": func(d *caddyfile.Dispenser) error {
			var v string
			if err := singleArg(d, &v); err != nil {
				return err
			}
			if v != "on" && v != "off" {
				return d.Errf("gatehouse: meter_stream_usage must be on or off, not %q", v)
			}
			on := v == "on"
			g.MeterStreamUsage = &on
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// routesArg parses a route table subdirective, whose arguments are quoted
// "METHOD /path" routes, onto dst.
func routesArg(dst *[]string) subdirective {
	return func(d *caddyfile.Dispenser) error {
		name := d.Val()
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		for _, a := range args {
			method, path, ok := strings.Cut(a, " ")
			if !ok || method == "" || !strings.HasPrefix(path, "/") || method != strings.ToUpper(method) {
				return d.Errf("gatehouse: %s: %q must be a quoted \"METHOD /path\"", name, a)
			}
		}
		*dst = append(*dst, args...)
		return nil
	}
}

// Interface guards
var _ caddyfile.Unmarshaler = (*App)(nil)
