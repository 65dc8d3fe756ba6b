#!/usr/bin/env bash
# Builds and runs Caddy with Gatehouse compiled in.
#   ./xcaddy.sh build   writes ./caddy (cmd/caddy: caddycmd.Main + standard modules + Gatehouse)
#   ./xcaddy.sh run     builds, then runs ./caddy with Caddyfile.example
#   ./xcaddy.sh test    gofmt, go vet, staticcheck, then every test (unit, policy, store conformance, end-to-end)
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
	# gofmt, go vet and staticcheck (pinned as a tool in go.mod) first; the
	# tests run either way, and the command fails if any of them did.
	lint=0
	unformatted=$(gofmt -l . | grep -v '/testdata/' || true)
	if [ -n "$unformatted" ]; then
		echo "gofmt: these files need gofmt -w:" >&2
		echo "$unformatted" >&2
		lint=1
	fi
	go vet ./... || lint=1
	go tool staticcheck ./... || lint=1
	# gotestsum (pinned as a tool in go.mod) prints a summary at the end.
	tests=0
	go tool gotestsum --format pkgname-and-test-fails --format-hide-empty-pkg -- -count=1 -timeout 30m "$@" ./... || tests=$?
	if [ "$lint" != 0 ]; then
		echo "FAIL: gofmt, go vet or staticcheck reported problems (above)" >&2
		exit 1
	fi
	exit "$tests"
	;;
*)
	build
	exec ./caddy "$@"
	;;
esac
