package gatehouse

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/devidp"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/notify"
)

// validApp is the smallest configuration Gatehouse starts with; each case of
// TestValidateRejects breaks one thing in it.
func validApp() *App {
	return &App{Options: core.Options{
		PublicURL: "https://chat.example.com",
		OIDC:      &identity.RPConfig{Issuer: "https://accounts.example.com", ClientID: "gatehouse"},
	}}
}

// defaulted applies the defaults as Provision does before it validates.
func defaulted(a *App) *App {
	a.applyDefaults()
	return a
}

func TestApplyDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   core.Options
		want core.Options
	}{
		{
			name: "minimal oidc configuration",
			in:   validApp().Options,
			want: core.Options{
				PublicURL:        "https://chat.example.com",
				Store:            &core.StoreConfig{Driver: "sqlite", DSN: filepath.Join("data", "gatehouse.db")},
				SecretFile:       filepath.Join("data", "gatehouse.key"),
				APIPrefix:        "/api",
				PagesPrefix:      "/gatehouse",
				OIDC:             &identity.RPConfig{Issuer: "https://accounts.example.com", ClientID: "gatehouse", Scopes: []string{"openid", "email", "profile"}},
				SigningAlgorithm: "ES256",
			},
		},
		{
			name: "trailing slash of public_url is dropped",
			in:   core.Options{PublicURL: "http://localhost:8080/", DevIdP: &devidp.Config{Users: []devidp.User{{Email: "a@example.com"}}}},
			want: core.Options{
				PublicURL:        "http://localhost:8080",
				Store:            &core.StoreConfig{Driver: "sqlite", DSN: filepath.Join("data", "gatehouse.db")},
				SecretFile:       filepath.Join("data", "gatehouse.key"),
				APIPrefix:        "/api",
				PagesPrefix:      "/gatehouse",
				DevIdP:           &devidp.Config{Users: []devidp.User{{Email: "a@example.com"}}},
				SigningAlgorithm: "ES256",
			},
		},
		{
			name: "secret_file lives beside a custom sqlite file",
			in:   core.Options{Store: &core.StoreConfig{Driver: "sqlite", DSN: "/var/lib/gatehouse/gh.db"}},
			want: core.Options{
				Store:            &core.StoreConfig{Driver: "sqlite", DSN: "/var/lib/gatehouse/gh.db"},
				SecretFile:       "/var/lib/gatehouse/gatehouse.key",
				APIPrefix:        "/api",
				PagesPrefix:      "/gatehouse",
				SigningAlgorithm: "ES256",
			},
		},
		{
			name: "a driver-less store is sqlite",
			in:   core.Options{Store: &core.StoreConfig{DSN: "gh.db"}},
			want: core.Options{
				Store:            &core.StoreConfig{Driver: "sqlite", DSN: "gh.db"},
				SecretFile:       "gatehouse.key",
				APIPrefix:        "/api",
				PagesPrefix:      "/gatehouse",
				SigningAlgorithm: "ES256",
			},
		},
		{
			name: "a secret means no secret_file",
			in:   core.Options{Secret: strings.Repeat("s", 32)},
			want: core.Options{
				Store:            &core.StoreConfig{Driver: "sqlite", DSN: filepath.Join("data", "gatehouse.db")},
				Secret:           strings.Repeat("s", 32),
				APIPrefix:        "/api",
				PagesPrefix:      "/gatehouse",
				SigningAlgorithm: "ES256",
			},
		},
		{
			name: "postgres gets neither a file path nor a secret_file",
			in:   core.Options{Store: &core.StoreConfig{Driver: "postgres", DSN: "postgres://db/gh"}},
			want: core.Options{
				Store:            &core.StoreConfig{Driver: "postgres", DSN: "postgres://db/gh"},
				APIPrefix:        "/api",
				PagesPrefix:      "/gatehouse",
				SigningAlgorithm: "ES256",
			},
		},
		{
			name: "explicit values are kept",
			in: core.Options{
				PublicURL:          "https://gh.example.com",
				Store:              &core.StoreConfig{Driver: "sqlite", DSN: "/srv/gh.db"},
				SecretFile:         "/etc/gh.key",
				APIPrefix:          "/gh-api",
				PagesPrefix:        "/gh",
				OIDC:               &identity.RPConfig{Issuer: "https://idp", ClientID: "c", Scopes: []string{"openid"}},
				SessionLifetime:    caddy.Duration(time.Hour),
				SessionIdleTimeout: caddy.Duration(time.Minute),
				SigningAlgorithm:   "RS256",
			},
			want: core.Options{
				PublicURL:          "https://gh.example.com",
				Store:              &core.StoreConfig{Driver: "sqlite", DSN: "/srv/gh.db"},
				SecretFile:         "/etc/gh.key",
				APIPrefix:          "/gh-api",
				PagesPrefix:        "/gh",
				OIDC:               &identity.RPConfig{Issuer: "https://idp", ClientID: "c", Scopes: []string{"openid"}},
				SessionLifetime:    caddy.Duration(time.Hour),
				SessionIdleTimeout: caddy.Duration(time.Minute),
				SigningAlgorithm:   "RS256",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &App{Options: tt.in}
			a.applyDefaults()
			got, want := indentedJSON(t, a), indentedJSON(t, &App{Options: tt.want})
			if got != want {
				t.Errorf("after applyDefaults got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*App)
	}{
		{"minimal oidc configuration", func(*App) {}},
		{"http public_url with a port and a trailing slash", func(a *App) { a.PublicURL = "http://localhost:8080/" }},
		{"dev_idp instead of oidc", func(a *App) {
			a.OIDC = nil
			a.DevIdP = &devidp.Config{Users: []devidp.User{{Email: "alice@example.com", Name: "Alice"}}}
		}},
		{"postgres with a URL and a secret", func(a *App) {
			a.Store = &core.StoreConfig{Driver: "postgres", DSN: "postgres://postgres@127.0.0.1:5432/test"}
			a.Secret = strings.Repeat("x", 32)
		}},
		{"postgres with a secret_file", func(a *App) {
			a.Store = &core.StoreConfig{Driver: "postgres", DSN: "postgres://db/gh"}
			a.SecretFile = "/etc/gatehouse/key"
		}},
		{"EdDSA", func(a *App) { a.SigningAlgorithm = "EdDSA" }},
		{"RS256", func(a *App) { a.SigningAlgorithm = "RS256" }},
		{"secret of exactly 32 characters", func(a *App) { a.Secret = strings.Repeat("k", 32) }},
		{"complete notify", func(a *App) {
			a.Notify = &notify.Config{
				Webhooks: []notify.WebhookConfig{{URL: "https://hooks.example.com/x", Secret: "k"}, {URL: "http://10.0.0.5:9000/", Secret: "k"}},
				SMTP:     &notify.SMTPConfig{Host: "smtp.example.com", From: "gatehouse@example.com"},
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := validApp()
			tt.modify(a)
			if err := defaulted(a).Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(*App)
		wantErr string
	}{
		{"missing public_url", func(a *App) { a.PublicURL = "" }, "gatehouse: public_url is required"},
		{"ftp public_url", func(a *App) { a.PublicURL = "ftp://chat.example.com" }, `gatehouse: public_url "ftp://chat.example.com" must be an absolute http(s) URL`},
		{"relative public_url", func(a *App) { a.PublicURL = "chat.example.com" }, `gatehouse: public_url "chat.example.com" must be an absolute http(s) URL`},
		{"public_url without host", func(a *App) { a.PublicURL = "https://" }, `gatehouse: public_url "https:" must be an absolute http(s) URL`},
		{"unparsable public_url", func(a *App) { a.PublicURL = "https://bad host" }, `gatehouse: public_url "https://bad host" must be an absolute http(s) URL`},
		{"public_url with a path", func(a *App) { a.PublicURL = "https://example.com/chat" }, `gatehouse: public_url "https://example.com/chat" must not have a path`},
		{"public_url with a path and a trailing slash", func(a *App) { a.PublicURL = "https://example.com/chat/" }, `gatehouse: public_url "https://example.com/chat" must not have a path`},
		{"public_url with a query", func(a *App) { a.PublicURL = "https://chat.example.com?x=1" }, `must be only a scheme and a host`},
		{"public_url with user info and a fragment", func(a *App) { a.PublicURL = "https://u:p@chat.example.com#f" }, `must be only a scheme and a host`},
		{"nested prefixes", func(a *App) { a.APIPrefix, a.PagesPrefix = "/gatehouse/api", "/gatehouse" }, "must not contain one another"},
		{"prefix under /dev-idp", func(a *App) { a.PagesPrefix = "/dev-idp/pages" }, "clashes with /dev-idp"},
		{"prefix with a space", func(a *App) { a.PagesPrefix = "/a b" }, `pages_prefix "/a b" must be a path like /api`},
		{"negative session lifetime", func(a *App) { a.SessionLifetime = caddy.Duration(-time.Hour) }, "must not be negative"},
		{"idle timeout above lifetime", func(a *App) {
			a.SessionLifetime, a.SessionIdleTimeout = caddy.Duration(time.Hour), caddy.Duration(2*time.Hour)
		}, "session_idle_timeout must not exceed session_lifetime"},
		{"webhook without host", func(a *App) {
			a.Notify = &notify.Config{Webhooks: []notify.WebhookConfig{{URL: "https://", Secret: "s"}}}
		}, "must be an http(s) URL"},
		{"smtp tls from JSON", func(a *App) {
			a.Notify = &notify.Config{SMTP: &notify.SMTPConfig{Host: "h", From: "f@x", TLS: "bogus"}}
		}, "tls must be starttls, tls or none"},
		{"smtp port from JSON", func(a *App) {
			a.Notify = &notify.Config{SMTP: &notify.SMTPConfig{Host: "h", From: "f@x", Port: 99999}}
		}, "bad port 99999"},
		{"max_staleness below the resync interval", func(a *App) { a.MaxStaleness = caddy.Duration(time.Second) }, "max_staleness must be at least 15s"},
		{"key_prepublish below the JWKS max-age", func(a *App) { a.KeyPrepublish = caddy.Duration(time.Second) }, "gatehouse: key_prepublish 1s is too short"},
		{"negative key_prepublish", func(a *App) { a.KeyPrepublish = caddy.Duration(-time.Minute) }, "gatehouse: key_prepublish -1m0s is too short"},
		{"unknown store driver", func(a *App) { a.Store = &core.StoreConfig{Driver: "mysql", DSN: "x"} }, `gatehouse: store: unknown driver "mysql" (supported: sqlite, postgres)`},
		{"postgres without a URL", func(a *App) {
			a.Store = &core.StoreConfig{Driver: "postgres"}
			a.Secret = strings.Repeat("x", 32)
		}, "gatehouse: store: postgres needs a connection URL"},
		{"postgres without a secret", func(a *App) { a.Store = &core.StoreConfig{Driver: "postgres", DSN: "postgres://db/gh"} }, "gatehouse: secret is required with store postgres"},
		{"redis with a bad URL", func(a *App) { a.Redis = "http://127.0.0.1:6379" }, "gatehouse: redis: "},
		{"missing oidc", func(a *App) { a.OIDC = nil }, "gatehouse: oidc is required (or dev_idp for trying Gatehouse out)"},
		{"oidc without issuer", func(a *App) { a.OIDC.Issuer = "" }, "gatehouse: oidc: issuer is required"},
		{"oidc without client_id", func(a *App) { a.OIDC.ClientID = "" }, "gatehouse: oidc: client_id is required"},
		{"a named provider without issuer", func(a *App) {
			a.OIDCProviders = []*identity.RPConfig{{Name: "partners", ClientID: "gh"}}
		}, "gatehouse: oidc partners: issuer is required"},
		{"a provider named twice", func(a *App) {
			a.OIDCProviders = []*identity.RPConfig{{Name: "corp", Issuer: "https://a.example", ClientID: "gh"}, {Name: "corp", Issuer: "https://b.example", ClientID: "gh"}}
		}, "gatehouse: oidc corp: configured twice"},
		{"a provider name unfit for a URL", func(a *App) {
			a.OIDCProviders = []*identity.RPConfig{{Name: "Corp SSO", Issuer: "https://a.example", ClientID: "gh"}}
		}, "gatehouse: oidc Corp SSO: a provider's name is 1 to 32 of a-z, 0-9, - and _"},
		{"two providers of one issuer", func(a *App) {
			a.OIDCProviders = []*identity.RPConfig{{Name: "again", Issuer: a.OIDC.Issuer, ClientID: "other"}}
		}, "gatehouse: oidc again: issuer https://accounts.example.com is oidc default's too"},
		{"dev_idp without users", func(a *App) { a.OIDC, a.DevIdP = nil, &devidp.Config{} }, "gatehouse: dev_idp: at least one user is required"},
		{"dev_idp beside oidc", func(a *App) { a.DevIdP = &devidp.Config{Users: []devidp.User{{Email: "alice@example.com"}}} },
			"gatehouse: dev_idp and oidc are both configured"},
		{"api_prefix without leading slash", func(a *App) { a.APIPrefix = "api" }, `gatehouse: api_prefix "api" must be a path like /api`},
		{"api_prefix with trailing slash", func(a *App) { a.APIPrefix = "/api/" }, `gatehouse: api_prefix "/api/" must be a path like /api`},
		{"api_prefix of the root", func(a *App) { a.APIPrefix = "/" }, `gatehouse: api_prefix "/" must be a path like /api`},
		{"pages_prefix with a double slash", func(a *App) { a.PagesPrefix = "/gate//house" }, `gatehouse: pages_prefix "/gate//house"`},
		{"pages_prefix without leading slash", func(a *App) { a.PagesPrefix = "gatehouse" }, `gatehouse: pages_prefix "gatehouse" must be a path like /api`},
		{"equal prefixes", func(a *App) { a.APIPrefix, a.PagesPrefix = "/gh", "/gh" }, "gatehouse: api_prefix and pages_prefix must not contain one another"},
		{"pages_prefix equal to the default api_prefix", func(a *App) { a.PagesPrefix = "/api" }, "gatehouse: api_prefix and pages_prefix must not contain one another"},
		{"unknown signing_algorithm", func(a *App) { a.SigningAlgorithm = "HS256" }, `gatehouse: signing_algorithm "HS256": use ES256, EdDSA or RS256`},
		{"signing_algorithm in lower case", func(a *App) { a.SigningAlgorithm = "es256" }, `gatehouse: signing_algorithm "es256"`},
		{"secret of 31 characters", func(a *App) { a.Secret = strings.Repeat("k", 31) }, "gatehouse: secret must be at least 32 characters"},
		{"webhook URL without scheme", func(a *App) {
			a.Notify = &notify.Config{Webhooks: []notify.WebhookConfig{{URL: "hooks.example.com/x", Secret: "k"}}}
		}, `gatehouse: notify: webhook "hooks.example.com/x" must be an http(s) URL`},
		{"webhook URL with another scheme", func(a *App) {
			a.Notify = &notify.Config{Webhooks: []notify.WebhookConfig{{URL: "ftp://hooks.example.com/x", Secret: "k"}}}
		}, `gatehouse: notify: webhook "ftp://hooks.example.com/x" must be an http(s) URL`},
		{"unparsable webhook URL", func(a *App) {
			a.Notify = &notify.Config{Webhooks: []notify.WebhookConfig{{URL: "https://hooks example", Secret: "k"}}}
		}, `gatehouse: notify: webhook "https://hooks example" must be an http(s) URL`},
		{"second webhook without secret", func(a *App) {
			a.Notify = &notify.Config{Webhooks: []notify.WebhookConfig{
				{URL: "https://a.example.com", Secret: "k"},
				{URL: "https://b.example.com"},
			}}
		}, `gatehouse: notify: webhook "https://b.example.com" needs a secret`},
		{"smtp without host", func(a *App) {
			a.Notify = &notify.Config{SMTP: &notify.SMTPConfig{From: "gatehouse@example.com"}}
		}, "gatehouse: notify: smtp needs host and from"},
		{"smtp without from", func(a *App) {
			a.Notify = &notify.Config{SMTP: &notify.SMTPConfig{Host: "smtp.example.com"}}
		}, "gatehouse: notify: smtp needs host and from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := validApp()
			tt.modify(a)
			err := defaulted(a).Validate()
			if err == nil {
				t.Fatalf("Validate accepted %s", indentedJSON(t, a))
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

// Provision replaces {env.*} placeholders before it validates, so a secret
// can stay out of the Caddyfile.
func TestExpandPlaceholdersReplacesEnvironmentValues(t *testing.T) {
	t.Setenv("GH_TEST_URL", "https://chat.example.com")
	t.Setenv("GH_TEST_SECRET", "s3cr3t")
	a := &App{Options: core.Options{
		PublicURL:   "{env.GH_TEST_URL}",
		Redis:       "{env.GH_TEST_SECRET}",
		Secret:      "{env.GH_TEST_SECRET}",
		SecretFile:  "/keys/{env.GH_TEST_SECRET}",
		Store:       &core.StoreConfig{Driver: "postgres", DSN: "{env.GH_TEST_URL}"},
		OIDC:        &identity.RPConfig{Issuer: "{env.GH_TEST_URL}", ClientID: "{env.GH_TEST_SECRET}", ClientSecret: "{env.GH_TEST_SECRET}"},
		PolicyPaths: []string{"{env.GH_TEST_SECRET}.rego"},
		Notify: &notify.Config{
			Webhooks: []notify.WebhookConfig{{URL: "{env.GH_TEST_URL}/hook", Secret: "{env.GH_TEST_SECRET}"}},
			SMTP:     &notify.SMTPConfig{Host: "{env.GH_TEST_SECRET}", Username: "{env.GH_TEST_SECRET}", Password: "{env.GH_TEST_SECRET}", From: "{env.GH_TEST_SECRET}"},
		},
	}}
	a.expandPlaceholders()
	want := &App{Options: core.Options{
		PublicURL:   "https://chat.example.com",
		Redis:       "s3cr3t",
		Secret:      "s3cr3t",
		SecretFile:  "/keys/s3cr3t",
		Store:       &core.StoreConfig{Driver: "postgres", DSN: "https://chat.example.com"},
		OIDC:        &identity.RPConfig{Issuer: "https://chat.example.com", ClientID: "s3cr3t", ClientSecret: "s3cr3t"},
		PolicyPaths: []string{"s3cr3t.rego"},
		Notify: &notify.Config{
			Webhooks: []notify.WebhookConfig{{URL: "https://chat.example.com/hook", Secret: "s3cr3t"}},
			SMTP:     &notify.SMTPConfig{Host: "s3cr3t", Username: "s3cr3t", Password: "s3cr3t", From: "s3cr3t"},
		},
	}}
	if got, want := indentedJSON(t, a), indentedJSON(t, want); got != want {
		t.Errorf("after expandPlaceholders got\n%s\nwant\n%s", got, want)
	}
}

// Every configured string goes through placeholder replacement, down to the
// provider's and the notifiers', so a field added later cannot be left out.
func TestExpandPlaceholdersReachesEveryConfiguredString(t *testing.T) {
	t.Setenv("GH_TEST_VALUE", "expanded")
	a := new(App)
	configStrings(reflect.ValueOf(a), "App", func(_ string, s reflect.Value) { s.SetString("{env.GH_TEST_VALUE}") })
	a.expandPlaceholders()
	configStrings(reflect.ValueOf(a), "App", func(path string, s reflect.Value) {
		if s.String() != "expanded" {
			t.Errorf("%s = %q after expandPlaceholders; want %q", path, s.String(), "expanded")
		}
	})
}

// configStrings calls fn with every string of a configuration, named by its
// path, first making room for one where a pointer is nil or a slice is empty.
// What is not configuration is left out: unexported fields, fields without a
// JSON key, and maps (token_lifetimes is keyed by token kind).
func configStrings(v reflect.Value, path string, fn func(path string, s reflect.Value)) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		configStrings(v.Elem(), path, fn)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() && f.Tag.Get("json") != "-" {
				configStrings(v.Field(i), path+"."+f.Name, fn)
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		}
		for i := range v.Len() {
			configStrings(v.Index(i), fmt.Sprintf("%s[%d]", path, i), fn)
		}
	case reflect.String:
		fn(path, v)
	}
}

// Braces that are not a known placeholder stay as they are: a secret with
// "{…}" in it must not lose characters (ReplaceAll deleted "{cr}").
func TestExpandPlaceholdersKeepsUnknownBraces(t *testing.T) {
	t.Setenv("GH_TEST_SECRET", "s3cr3t")
	a := validApp()
	a.OIDC.ClientSecret = "s3{cr}et"
	a.Secret = "{not-a-placeholder}-and-{env.GH_TEST_SECRET}-0123456789abcdef"
	a.Notify = &notify.Config{Webhooks: []notify.WebhookConfig{{URL: "https://hooks.example/x", Secret: "{x}{y}"}}}
	a.expandPlaceholders()
	if a.OIDC.ClientSecret != "s3{cr}et" || a.Secret != "{not-a-placeholder}-and-s3cr3t-0123456789abcdef" || a.Notify.Webhooks[0].Secret != "{x}{y}" {
		t.Fatalf("client_secret %q, secret %q, webhook secret %q: braces were changed", a.OIDC.ClientSecret, a.Secret, a.Notify.Webhooks[0].Secret)
	}
}

// An unset variable becomes empty, so Validate names the directive it left blank.
func TestUnsetEnvironmentVariableFailsValidation(t *testing.T) {
	a := validApp()
	a.OIDC.ClientID = "{env.GH_TEST_SURELY_UNSET_VARIABLE}"
	a.expandPlaceholders()
	err := defaulted(a).Validate()
	if err == nil || !strings.Contains(err.Error(), "gatehouse: oidc: client_id is required") {
		t.Errorf("Validate error = %v; want one naming oidc client_id", err)
	}
}
