// Command caddy is Caddy with Gatehouse compiled in: the same binary xcaddy
// would generate from `xcaddy build --with github.com/gatehouse/gatehouse`.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/gatehouse/gatehouse"
)

func main() {
	caddycmd.Main()
}
