#!/usr/bin/env bash
# Load test on loopback: plain Caddy reverse_proxy, Gatehouse with a bearer
# token, and Gatehouse with a session, all in front of the same trivial
# backend (Caddy answering a 213-byte JSON). As in shared/performance.md, wrk
# runs pinned to core 0 and the proxies and the backend to core 1.
#
#   bench/run.sh [seconds per run, default 10] [connections, default 32]
#
# Needs wrk (apt-get install -y wrk). Prints requests/s, p50 and p99 for each
# setup and the ratio to plain Caddy. Every run is bounded; nothing but
# 127.0.0.1 is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-32}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/caddy" ./cmd/caddy
go build -o "$work/setup" ./bench/setup

BACKEND=127.0.0.1:18081 PLAIN=127.0.0.1:18082 GATE=127.0.0.1:18083
body='{"id":"chatcmpl-bench","object":"chat.completion","model":"llama3","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
cat >"$work/backend.Caddyfile" <<CFG
{
	admin off
	log default {
		output discard
	}
}
http://$BACKEND {
	header Content-Type application/json
	respond \`$body\`
}
CFG
cat >"$work/plain.Caddyfile" <<CFG
{
	admin off
	log default {
		output discard
	}
}
http://$PLAIN {
	reverse_proxy $BACKEND
}
CFG
cat >"$work/gate.Caddyfile" <<CFG
{
	admin off
	log default {
		output discard
	}
	gatehouse {
		public_url http://$GATE
		store sqlite $work/data/gatehouse.db
		dev_idp {
			user alice@example.com "Alice"
		}
		bootstrap_admin alice@example.com
	}
}
http://$GATE {
	gatehouse_api
	gatehouse
	reverse_proxy $BACKEND
}
CFG

start() { # name config
	taskset -c 1 "$work/caddy" run --config "$work/$2" --adapter caddyfile >"$work/$1.log" 2>&1 &
	pids+=($!)
}
wait_up() { # url
	for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
	echo "server at $1 did not come up" >&2; exit 1
}
start backend backend.Caddyfile
start plain plain.Caddyfile
start gate gate.Caddyfile
wait_up "http://$BACKEND/"; wait_up "http://$PLAIN/"; wait_up "http://$GATE/api/health"
eval "$("$work/setup" -url "http://$GATE")"

run() { # label url [header]
	local out
	if [ -n "${3:-}" ]; then
		taskset -c 0 wrk -t1 -c"$CONNS" -d2s -H "$3" "$2" >/dev/null # warm-up
		out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "$3" "$2")
	else
		taskset -c 0 wrk -t1 -c"$CONNS" -d2s "$2" >/dev/null
		out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$2")
	fi
	if grep -q "Non-2xx" <<<"$out"; then
		echo "$1: some responses were not 2xx:" >&2; echo "$out" >&2; exit 1
	fi
	local rps p50 p99
	rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	p50=$(awk '$1=="50%" {print $2}' <<<"$out")
	p99=$(awk '$1=="99%" {print $2}' <<<"$out")
	echo "$1|$rps|$p50|$p99"
}

results=()
results+=("$(run "plain Caddy reverse_proxy" "http://$PLAIN/v1/ping")")
results+=("$(run "Gatehouse, bearer token" "http://$GATE/v1/ping" "Authorization: Bearer $TOKEN")")
results+=("$(run "Gatehouse, session cookie" "http://$GATE/v1/ping" "Cookie: $COOKIE")")

plain_rps=$(cut -d'|' -f2 <<<"${results[0]}")
printf '\n%-28s %12s %8s %10s %10s\n' "setup (${DURATION}s, ${CONNS} conns)" "requests/s" "÷ plain" "p50" "p99"
for r in "${results[@]}"; do
	IFS='|' read -r name rps p50 p99 <<<"$r"
	ratio=$(awk -v a="$rps" -v b="$plain_rps" 'BEGIN {printf "%.2f", a/b}')
	printf '%-28s %12s %8s %10s %10s\n' "$name" "$rps" "$ratio" "$p50" "$p99"
done
