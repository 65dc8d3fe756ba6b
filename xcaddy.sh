#!/usr/bin/env bash
# Builds and runs Caddy with Gatehouse compiled in.
#   ./xcaddy.sh build   writes ./caddy (cmd/caddy: caddycmd.Main + standard modules + Gatehouse)
#   ./xcaddy.sh run     builds, then runs ./caddy with Caddyfile.example
#   ./xcaddy.sh test    runs every test (unit, policy, store conformance, end-to-end)
#   ./xcaddy.sh <args>  builds, then passes the arguments to ./caddy (e.g. list-modules)
set -euo pipefail
cd "$(dirname "$0")"

build() {
	go build -trimpath -o ./caddy ./cmd/caddy
}

case "${1:-run}" in
build)
	build
	;;
run)
	build
	shift || true
	exec ./caddy run --config Caddyfile.example --adapter caddyfile "$@"
	;;
test)
	shift
	# gotestsum (pinned as a tool in go.mod) prints a summary at the end.
	exec go tool gotestsum --format pkgname-and-test-fails --format-hide-empty-pkg -- -count=1 -timeout 30m "$@" ./...
	;;
*)
	build
	exec ./caddy "$@"
	;;
esac
