package gatehouse

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/devidp"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/notify"
)

// The expected JSON of testdata/*.caddyfiletest is what the adapter printed
// once and a person then checked; -update rewrites it after a deliberate change.
var updateFixtures = flag.Bool("update", false, "rewrite the expected JSON of testdata/*.caddyfiletest")

// fixtureSeparator splits a .caddyfiletest into its Caddyfile and expected JSON,
// as in Caddy's own caddytest/integration/caddyfile_adapt fixtures.
const fixtureSeparator = "----------"

func TestUnmarshalCaddyfileBuildsTheApp(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  core.Options // the app's configuration
	}{
		{
			name:  "empty block",
			input: "gatehouse {\n}",
			want:  core.Options{},
		},
		{
			name:  "no block",
			input: `gatehouse`,
			want:  core.Options{},
		},
		{
			name: "every top-level subdirective",
			input: `gatehouse {
				public_url           https://chat.example.com
				store                sqlite /var/lib/gatehouse/gh.db
				redis                redis://127.0.0.1:6379/0
				bootstrap_admin      alice@example.com
				policy               ./policy.d
				secret               {env.GATEHOUSE_SECRET}
				secret_file          /etc/gatehouse/key
				api_prefix           /gh-api
				pages_prefix         /gh
				session_lifetime     12h
				session_idle_timeout 30m
				signing_algorithm    EdDSA
			}`,
			want: core.Options{
				PublicURL:          "https://chat.example.com",
				Store:              &core.StoreConfig{Driver: "sqlite", DSN: "/var/lib/gatehouse/gh.db"},
				Redis:              "redis://127.0.0.1:6379/0",
				BootstrapAdmins:    []string{"alice@example.com"},
				PolicyPaths:        []string{"./policy.d"},
				Secret:             "{env.GATEHOUSE_SECRET}",
				SecretFile:         "/etc/gatehouse/key",
				APIPrefix:          "/gh-api",
				PagesPrefix:        "/gh",
				SessionLifetime:    caddy.Duration(12 * time.Hour),
				SessionIdleTimeout: caddy.Duration(30 * time.Minute),
				SigningAlgorithm:   "EdDSA",
			},
		},
		{
			name:  "store postgres with a placeholder URL",
			input: gatehouseBlock("store postgres {env.DATABASE_URL}"),
			want:  core.Options{Store: &core.StoreConfig{Driver: "postgres", DSN: "{env.DATABASE_URL}"}},
		},
		{
			name:  "store with a driver only",
			input: gatehouseBlock("store sqlite"),
			want:  core.Options{Store: &core.StoreConfig{Driver: "sqlite"}},
		},
		{
			name:  "durations in Caddy's day unit",
			input: gatehouseBlock("session_lifetime 7d"),
			want:  core.Options{SessionLifetime: caddy.Duration(7 * 24 * time.Hour)},
		},
		{
			name:  "key_prepublish",
			input: gatehouseBlock("key_prepublish 20m"),
			want:  core.Options{KeyPrepublish: caddy.Duration(20 * time.Minute)},
		},
		{
			name: "bootstrap_admin and policy repeat and take several arguments",
			input: `gatehouse {
				bootstrap_admin alice@example.com bob@example.com
				bootstrap_admin carol@example.com
				policy ./base.rego ./extra.d
				policy /etc/gatehouse/override.rego
			}`,
			want: core.Options{
				BootstrapAdmins: []string{"alice@example.com", "bob@example.com", "carol@example.com"},
				PolicyPaths:     []string{"./base.rego", "./extra.d", "/etc/gatehouse/override.rego"},
			},
		},
		{
			name: "oidc block",
			input: `gatehouse {
				oidc {
					issuer        https://accounts.example.com
					client_id     gatehouse
					client_secret {env.OIDC_CLIENT_SECRET}
					scopes        openid email profile groups
				}
			}`,
			want: core.Options{OIDC: &identity.RPConfig{
				Issuer:       "https://accounts.example.com",
				ClientID:     "gatehouse",
				ClientSecret: "{env.OIDC_CLIENT_SECRET}",
				Scopes:       []string{"openid", "email", "profile", "groups"},
			}},
		},
		{
			name: "several named providers beside the unnamed one",
			input: `gatehouse {
				oidc {
					issuer    https://accounts.example.com
					client_id gatehouse
				}
				oidc partners {
					title     "Partner sign-in"
					issuer    https://partners.example.com
					client_id gh
				}
				oidc staff {
					issuer    https://staff.example.com
					client_id gh
				}
			}`,
			want: core.Options{
				OIDC: &identity.RPConfig{Issuer: "https://accounts.example.com", ClientID: "gatehouse"},
				OIDCProviders: []*identity.RPConfig{
					{Name: "partners", Title: "Partner sign-in", Issuer: "https://partners.example.com", ClientID: "gh"},
					{Name: "staff", Issuer: "https://staff.example.com", ClientID: "gh"},
				},
			},
		},
		{
			name:  "oidc without a block is an empty registration for Validate to reject",
			input: "gatehouse {\n oidc\n public_url https://a.example\n}",
			want:  core.Options{OIDC: &identity.RPConfig{}, PublicURL: "https://a.example"},
		},
		{
			name: "dev_idp users with and without a name",
			input: `gatehouse {
				dev_idp {
					user alice@example.com "Alice Admin"
					user bob@example.com
				}
			}`,
			want: core.Options{DevIdP: &devidp.Config{Users: []devidp.User{
				{Email: "alice@example.com", Name: "Alice Admin"},
				{Email: "bob@example.com"},
			}}},
		},
		{
			name: "notify with webhooks and smtp",
			input: `gatehouse {
				notify {
					webhook https://hooks.example.com/a {env.WEBHOOK_SECRET}
					webhook http://10.0.0.5:9000/b s3cr3t
					smtp {
						host     smtp.example.com
						port     587
						username gatehouse
						password {env.SMTP_PASSWORD}
						from     gatehouse@example.com
						tls      tls
					}
				}
			}`,
			want: core.Options{Notify: &notify.Config{
				Webhooks: []notify.WebhookConfig{
					{URL: "https://hooks.example.com/a", Secret: "{env.WEBHOOK_SECRET}"},
					{URL: "http://10.0.0.5:9000/b", Secret: "s3cr3t"},
				},
				SMTP: &notify.SMTPConfig{
					Host:     "smtp.example.com",
					Port:     587,
					Username: "gatehouse",
					Password: "{env.SMTP_PASSWORD}",
					From:     "gatehouse@example.com",
					TLS:      "tls",
				},
			}},
		},
		{
			name:  "smtp tls starttls",
			input: gatehouseBlock("notify {", "smtp {", "tls starttls", "}", "}"),
			want:  core.Options{Notify: &notify.Config{SMTP: &notify.SMTPConfig{TLS: "starttls"}}},
		},
		{
			name:  "smtp tls none and the highest port",
			input: gatehouseBlock("notify {", "smtp {", "tls none", "port 65535", "}", "}"),
			want:  core.Options{Notify: &notify.Config{SMTP: &notify.SMTPConfig{TLS: "none", Port: 65535}}},
		},
		{
			name: "blocks followed by more top-level subdirectives",
			input: `gatehouse {
				oidc {
					issuer https://idp.example
				}
				notify {
					smtp {
						host mail.example
					}
					webhook https://hooks.example/x k
				}
				public_url http://localhost:8080
			}`,
			want: core.Options{
				OIDC:      &identity.RPConfig{Issuer: "https://idp.example"},
				Notify:    &notify.Config{SMTP: &notify.SMTPConfig{Host: "mail.example"}, Webhooks: []notify.WebhookConfig{{URL: "https://hooks.example/x", Secret: "k"}}},
				PublicURL: "http://localhost:8080",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got App
			if err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatalf("UnmarshalCaddyfile: %v", err)
			}
			gotJSON, wantJSON := indentedJSON(t, &got), indentedJSON(t, &App{Options: tt.want})
			if gotJSON != wantJSON {
				t.Errorf("got app\n%s\nwant\n%s", gotJSON, wantJSON)
			}
		})
	}
}

func TestUnmarshalCaddyfileRejects(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantErr []string // substrings of the error, in any order
	}{
		{
			name:    "argument on the option itself",
			input:   "gatehouse extra {\n}",
			wantErr: []string{"wrong argument count", "'extra'"},
		},
		{
			name:    "unknown top-level subdirective",
			input:   "gatehouse {\n\tpublic_url https://a.example\n\tpubic_url https://b.example\n}",
			wantErr: []string{"gatehouse: unrecognized subdirective pubic_url", "Testfile:3"},
		},
		{
			name:    "unknown oidc subdirective",
			input:   gatehouseBlock("oidc {", "issuer https://idp.example", "client https://x", "}"),
			wantErr: []string{"gatehouse: oidc: unrecognized subdirective client"},
		},
		{
			name:    "two unnamed oidc blocks",
			input:   gatehouseBlock("oidc {\n issuer https://a.example\n}\noidc {\n issuer https://b.example\n}"),
			wantErr: []string{"oidc without a name is configured twice"},
		},
		{
			name:    "oidc with two names",
			input:   gatehouseBlock("oidc a b {\n issuer https://a.example\n}"),
			wantErr: []string{"wrong argument count"},
		},
		{
			name:    "unknown dev_idp subdirective",
			input:   gatehouseBlock("dev_idp {", "users alice@example.com", "}"),
			wantErr: []string{"gatehouse: dev_idp: unrecognized subdirective users"},
		},
		{
			name:    "unknown notify subdirective",
			input:   gatehouseBlock("notify {", "email a@example.com", "}"),
			wantErr: []string{"gatehouse: notify: unrecognized subdirective email"},
		},
		{
			name:    "unknown smtp subdirective",
			input:   gatehouseBlock("notify {", "smtp {", "user me", "}", "}"),
			wantErr: []string{"gatehouse: notify: smtp: unrecognized subdirective user"},
		},
		{name: "public_url without argument", input: gatehouseBlock("public_url"), wantErr: []string{"wrong argument count", "'public_url'"}},
		{name: "public_url with two arguments", input: gatehouseBlock("public_url https://a.example https://b.example"), wantErr: []string{"wrong argument count", "'https://b.example'"}},
		{name: "store without argument", input: gatehouseBlock("store"), wantErr: []string{"wrong argument count", "'store'"}},
		{name: "store with three arguments", input: gatehouseBlock("store sqlite a.db b.db"), wantErr: []string{"wrong argument count"}},
		{name: "redis without argument", input: gatehouseBlock("redis"), wantErr: []string{"wrong argument count", "'redis'"}},
		{name: "bootstrap_admin without argument", input: gatehouseBlock("bootstrap_admin"), wantErr: []string{"wrong argument count", "'bootstrap_admin'"}},
		{name: "policy without argument", input: gatehouseBlock("policy"), wantErr: []string{"wrong argument count", "'policy'"}},
		{name: "secret without argument", input: gatehouseBlock("secret"), wantErr: []string{"wrong argument count", "'secret'"}},
		{name: "secret_file with two arguments", input: gatehouseBlock("secret_file a b"), wantErr: []string{"wrong argument count"}},
		{name: "api_prefix without argument", input: gatehouseBlock("api_prefix"), wantErr: []string{"wrong argument count", "'api_prefix'"}},
		{name: "pages_prefix with two arguments", input: gatehouseBlock("pages_prefix /a /b"), wantErr: []string{"wrong argument count"}},
		{name: "signing_algorithm without argument", input: gatehouseBlock("signing_algorithm"), wantErr: []string{"wrong argument count", "'signing_algorithm'"}},
		{name: "session_lifetime without argument", input: gatehouseBlock("session_lifetime"), wantErr: []string{"wrong argument count", "'session_lifetime'"}},
		{name: "session_lifetime bad duration", input: gatehouseBlock("session_lifetime forever"), wantErr: []string{`gatehouse: bad duration "forever"`}},
		{name: "session_idle_timeout bad duration", input: gatehouseBlock("session_idle_timeout 10"), wantErr: []string{`gatehouse: bad duration "10"`}},
		{name: "session_idle_timeout with two arguments", input: gatehouseBlock("session_idle_timeout 1h 2h"), wantErr: []string{"wrong argument count"}},
		{name: "oidc with the issuer for a name", input: gatehouseBlock("oidc https://idp.example {", "client_id x", "}"), wantErr: []string{"oidc https://idp.example: that is the provider's name; its issuer goes inside the block"}},
		{name: "oidc issuer without argument", input: gatehouseBlock("oidc {", "issuer", "}"), wantErr: []string{"wrong argument count", "'issuer'"}},
		{name: "oidc client_id with two arguments", input: gatehouseBlock("oidc {", "client_id a b", "}"), wantErr: []string{"wrong argument count"}},
		{name: "oidc client_secret without argument", input: gatehouseBlock("oidc {", "client_secret", "}"), wantErr: []string{"wrong argument count", "'client_secret'"}},
		{name: "oidc scopes without argument", input: gatehouseBlock("oidc {", "scopes", "}"), wantErr: []string{"wrong argument count", "'scopes'"}},
		{name: "dev_idp with an argument", input: gatehouseBlock("dev_idp on {", "user a@example.com", "}"), wantErr: []string{"wrong argument count"}},
		{name: "dev_idp user without argument", input: gatehouseBlock("dev_idp {", "user", "}"), wantErr: []string{"wrong argument count", "'user'"}},
		{name: "dev_idp user with three arguments", input: gatehouseBlock("dev_idp {", "user a@example.com Alice Admin", "}"), wantErr: []string{"wrong argument count"}},
		{name: "notify with an argument", input: gatehouseBlock("notify all {", "webhook https://h.example k", "}"), wantErr: []string{"wrong argument count"}},
		{name: "webhook with one argument", input: gatehouseBlock("notify {", "webhook https://hooks.example.com", "}"), wantErr: []string{"gatehouse: notify: webhook takes <url> <secret>"}},
		{name: "webhook with three arguments", input: gatehouseBlock("notify {", "webhook https://hooks.example.com k extra", "}"), wantErr: []string{"gatehouse: notify: webhook takes <url> <secret>"}},
		{name: "smtp with an argument", input: gatehouseBlock("notify {", "smtp mail.example {", "port 25", "}", "}"), wantErr: []string{"wrong argument count"}},
		{name: "smtp port not a number", input: gatehouseBlock("notify {", "smtp {", "port submission", "}", "}"), wantErr: []string{`gatehouse: notify: smtp: bad port "submission"`}},
		{name: "smtp port zero", input: gatehouseBlock("notify {", "smtp {", "port 0", "}", "}"), wantErr: []string{`gatehouse: notify: smtp: bad port "0"`}},
		{name: "smtp port above 65535", input: gatehouseBlock("notify {", "smtp {", "port 65536", "}", "}"), wantErr: []string{`gatehouse: notify: smtp: bad port "65536"`}},
		{name: "smtp port without argument", input: gatehouseBlock("notify {", "smtp {", "port", "}", "}"), wantErr: []string{"wrong argument count", "'port'"}},
		{name: "smtp tls bad value", input: gatehouseBlock("notify {", "smtp {", "tls ssl", "}", "}"), wantErr: []string{`gatehouse: notify: smtp: tls must be starttls, tls or none, not "ssl"`}},
		{name: "smtp tls without argument", input: gatehouseBlock("notify {", "smtp {", "tls", "}", "}"), wantErr: []string{"wrong argument count", "'tls'"}},
		{name: "smtp host without argument", input: gatehouseBlock("notify {", "smtp {", "host", "}", "}"), wantErr: []string{"wrong argument count", "'host'"}},
		{name: "smtp username with two arguments", input: gatehouseBlock("notify {", "smtp {", "username a b", "}", "}"), wantErr: []string{"wrong argument count"}},
		{name: "smtp password without argument", input: gatehouseBlock("notify {", "smtp {", "password", "}", "}"), wantErr: []string{"wrong argument count", "'password'"}},
		{name: "smtp from without argument", input: gatehouseBlock("notify {", "smtp {", "from", "}", "}"), wantErr: []string{"wrong argument count", "'from'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got App
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil {
				t.Fatalf("UnmarshalCaddyfile accepted the input; got app %s", indentedJSON(t, &got))
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

// The directives are parsed by Caddy's HTTP Caddyfile adapter, so they are
// tested through it.
func TestDirectivesRejectArgumentsAndBlocks(t *testing.T) {
	tests := []struct {
		name    string
		site    string
		wantErr string
	}{
		{"gatehouse with an argument", "gatehouse strict", "wrong argument count"},
		{"gatehouse with a block", "gatehouse {\n\t\tmode strict\n\t}", "gatehouse: unrecognized subdirective mode"},
		{"gatehouse_api with an argument", "gatehouse_api all", "wrong argument count"},
		{"gatehouse_api with a block", "gatehouse_api {\n\t\tprefix /api\n\t}", "gatehouse_api: unrecognized subdirective prefix"},
		{"model route without a method", "gatehouse {\n\t\tmodel_routes /v1/chat\n\t}", `must be a quoted "METHOD /path"`},
		{"model route with a lower-case method", "gatehouse {\n\t\tmodel_routes \"post /v1/chat\"\n\t}", `must be a quoted "METHOD /path"`},
		{"allow_ambiguous_paths with an argument", "gatehouse {\n\t\tallow_ambiguous_paths yes\n\t}", "wrong argument count"},
		{"listing_routes without arguments", "gatehouse {\n\t\tlisting_routes\n\t}", "wrong argument count"},
		{"max_body not a size", "gatehouse {\n\t\tmax_body lots\n\t}", `max_body: bad size "lots"`},
		{"max_body over 1GB", "gatehouse {\n\t\tmax_body 2GB\n\t}", `max_body: bad size "2GB"`},
		{"meter_stream_usage neither on nor off", "gatehouse {\n\t\tmeter_stream_usage no\n\t}", `meter_stream_usage must be on or off, not "no"`},
		{"meter_stream_usage without an argument", "gatehouse {\n\t\tmeter_stream_usage\n\t}", "wrong argument count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := "example.com {\n\t" + tt.site + "\n\treverse_proxy 127.0.0.1:11434\n}\n"
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
			if err == nil {
				t.Fatalf("adapting\n%s\nsucceeded; want an error containing %q", input, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestCaddyfileAdapt runs the testdata/*.caddyfiletest fixtures: each is a
// Caddyfile, a line of ten dashes, and the JSON the caddyfile adapter must
// produce for it (compared as JSON values, so key order and indentation do not matter).
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.caddyfiletest fixtures")
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("the caddyfile adapter is not registered")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			before, after, ok := strings.Cut(string(data), fixtureSeparator)
			if !ok {
				t.Fatalf("%s has no %s line between the Caddyfile and the JSON", file, fixtureSeparator)
			}
			input := strings.TrimSpace(before) + "\n"

			adapted, warnings, err := adapter.Adapt([]byte(input), nil)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			// Caddy's own fixture runner only logs warnings too; the one
			// expected here is "not formatted", for the aligned spec example.
			for _, w := range warnings {
				t.Logf("adapter warning: %s:%d: %s: %s", file, w.Line, w.Directive, w.Message)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, adapted, "", "\t"); err != nil {
				t.Fatalf("adapter output is not JSON: %v", err)
			}

			if *updateFixtures {
				out := strings.TrimSpace(before) + "\n" + fixtureSeparator + "\n" + pretty.String() + "\n"
				if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}

			var got, want any
			if err := json.Unmarshal(adapted, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(after), &want); err != nil {
				t.Fatalf("expected JSON in %s: %v", file, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("adapted JSON differs from %s; got:\n%s", file, pretty.String())
			}
		})
	}
}

func indentedJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return string(b)
}

// gatehouseBlock writes a gatehouse global option block, one line per argument.
func gatehouseBlock(lines ...string) string {
	return "gatehouse {\n" + strings.Join(lines, "\n") + "\n}"
}

// TestGuardDirectiveOptions: the guard's block reaches the handler's JSON.
func TestGuardDirectiveOptions(t *testing.T) {
	input := "example.com {\n\tgatehouse {\n\t\tmodel_routes \"POST /v1/chat/completions\" \"POST /api/chat\"\n\t\tlisting_routes \"GET /v1/models\"\n\t\tmax_body 16MB\n\t\tallow_ambiguous_paths\n\t\tmeter_stream_usage off\n\t\tidentity_headers user_id assertion\n\t}\n\treverse_proxy 127.0.0.1:11434\n}\n"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"allow_ambiguous_paths":true,"handler":"gatehouse","identity_headers":["user_id","assertion"],"listing_routes":["GET /v1/models"],"max_body_bytes":16000000,"meter_stream_usage":false,"model_routes":["POST /v1/chat/completions","POST /api/chat"]}`
	if !strings.Contains(string(out), want) {
		t.Fatalf("adapted JSON lacks %s:\n%s", want, out)
	}
	for _, bad := range []string{"identity_headers", "identity_headers cookie", "identity_headers none role"} {
		in := "example.com {\n\tgatehouse {\n\t\t" + bad + "\n\t}\n}\n"
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(in), nil); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

// TestTokenOptions: token_lifetime, token_audience and max_staleness.
func TestTokenOptions(t *testing.T) {
	d := caddyfile.NewTestDispenser("gatehouse {\n\ttoken_lifetime personal 7d\n\ttoken_lifetime system 30d\n\ttoken_audience llm-gateway billing\n\tmax_staleness 10s\n}")
	var a App
	if err := a.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if time.Duration(a.TokenLifetimes["personal"]) != 7*24*time.Hour || time.Duration(a.TokenLifetimes["system"]) != 30*24*time.Hour ||
		strings.Join(a.TokenAudiences, ",") != "llm-gateway,billing" || time.Duration(a.MaxStaleness) != 10*time.Second {
		t.Fatalf("parsed %+v %v %v", a.TokenLifetimes, a.TokenAudiences, a.MaxStaleness)
	}
	for _, bad := range []string{"token_lifetime personal", "token_lifetime personal soon", "token_audience", "max_staleness -1s"} {
		if err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n\t" + bad + "\n}")); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	v := defaulted(validApp())
	v.TokenLifetimes = map[string]caddy.Duration{"robot": caddy.Duration(time.Hour)}
	if err := v.Validate(); err == nil || !strings.Contains(err.Error(), `unknown token kind "robot"`) {
		t.Fatalf("Validate: %v", err)
	}
}

// TestUsageRetentionOption: usage_retention takes Caddy's durations, days
// included, and must keep at least a day.
func TestUsageRetentionOption(t *testing.T) {
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n\tusage_retention 30d\n}")); err != nil {
		t.Fatal(err)
	}
	if time.Duration(a.UsageRetention) != 30*24*time.Hour {
		t.Fatalf("usage_retention = %v, want 720h", time.Duration(a.UsageRetention))
	}
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n\tusage_retention soon\n}")); err == nil {
		t.Error("usage_retention soon was accepted")
	}
	v := defaulted(validApp())
	v.UsageRetention = caddy.Duration(time.Hour)
	if err := v.Validate(); err == nil || !strings.Contains(err.Error(), "usage_retention must be at least 1d") {
		t.Fatalf("Validate: %v", err)
	}
}
