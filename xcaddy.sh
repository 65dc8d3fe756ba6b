#!/usr/bin/env bash
# Builds and runs Caddy with Gatehouse compiled in.
#   ./xcaddy.sh build   writes ./caddy (cmd/caddy: caddycmd.Main + standard modules + Gatehouse)
#   ./xcaddy.sh run     builds, then runs ./caddy with Caddyfile.example
#   ./xcaddy.sh test    gofmt, go vet, staticcheck, then every test (unit, policy, store conformance, end-to-end)
#   ./xcaddy.sh <args>  builds, then passes the arguments to ./caddy (e.g. list-modules)
set -euo pipefail
cd "$(dirname "$0")"

# firstBuild says what a build on a fresh machine does: without Go's module
# and build caches it downloads Caddy, OPA and the rest and compiles them,
# which takes minutes and fills about 3.7 GB; later builds take seconds.
firstBuild() {
	local mods
	mods=$(go env GOMODCACHE 2>/dev/null || true)
	if [ -n "$mods" ] && [ -d "$mods/github.com/caddyserver/caddy" ]; then
		return
	fi
	echo "xcaddy.sh: first build on this machine: downloading the Go modules (Caddy, OPA, …) and compiling them." >&2
	echo "xcaddy.sh: this takes about 3 to 5 minutes and about 3.7 GB of Go caches ($mods and $(go env GOCACHE)); later builds take seconds." >&2
}

build() {
	firstBuild
	local start=$SECONDS
	go build -trimpath -o ./caddy ./cmd/caddy
	if [ $((SECONDS - start)) -ge 20 ]; then
		echo "xcaddy.sh: built ./caddy in $((SECONDS - start)) s" >&2
	fi
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
	firstBuild
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
