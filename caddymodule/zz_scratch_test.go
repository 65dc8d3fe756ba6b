package caddymodule

import (
	"testing"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestZZScratch(t *testing.T) {
	for _, m := range []func(*App){
		func(a *App) { a.Notify = &NotifyConfig{Webhooks: []WebhookConfig{{URL: "https://", Secret: "k"}}} },
		func(a *App) { a.Notify = &NotifyConfig{Webhooks: []WebhookConfig{{URL: "http:foo", Secret: "k"}}} },
		func(a *App) { a.Notify = &NotifyConfig{SMTP: &SMTPConfig{Host: "h", From: "f", TLS: "bogus", Port: 99999}} },
		func(a *App) { a.PublicURL = "https://chat.example.com?x=1" },
		func(a *App) { a.PublicURL = "https://user:pw@chat.example.com#frag" },
		func(a *App) { a.SessionLifetime = -1 },
		func(a *App) { a.APIPrefix = "/dev-idp" },
		func(a *App) { a.APIPrefix = "/a b" },
	} {
		a := validApp(); m(a)
		t.Logf("%v", defaulted(a).Validate())
	}
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\nsession_lifetime -2h\noidc {\nissuer x\n}\noidc {\nclient_id y\n}\n}"))
	t.Logf("%v %s", err, indentedJSON(t, &a))
	defer func() { t.Logf("recovered: %v", recover()) }()
	b := validApp(); t.Logf("%v", b.Validate())
}
