#!/usr/bin/env bash
# Load test on loopback: plain Caddy reverse_proxy, Gatehouse with a bearer
# token, and Gatehouse with a session, all in front of the same trivial
# backend (Caddy answering a 213-byte JSON). As in shared/performance.md, wrk
# runs pinned to core 0 and the proxies and the backend to core 1.
#
#   bench/run.sh [seconds per run, default 10] [connections, default 32] [rounds, default 3]
#
# The three setups run in turn, round after round, and the median round of
# each is reported, so a noisy moment on the machine hurts all of them alike.
# Needs wrk (apt-get install -y wrk). Prints requests/s, p50 and p99 for each
# setup and the ratio to plain Caddy. Every run is bounded; nothing but
# 127.0.0.1 is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-32}
ROUNDS=${3:-3}
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
	bind 127.0.0.1
	gatehouse_api
	gatehouse
	reverse_proxy $BACKEND
}
CFG

declare -A pid
start() { # name config
	taskset -c 1 "$work/caddy" run --config "$work/$2" --adapter caddyfile >"$work/$1.log" 2>&1 &
	pids+=($!)
	pid[$1]=$!
}
TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system time of a process
wait_up() { # url
	for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
	echo "server at $1 did not come up" >&2; exit 1
}
start backend backend.Caddyfile
start plain plain.Caddyfile
start gate gate.Caddyfile
wait_up "http://$BACKEND/"; wait_up "http://$PLAIN/"; wait_up "http://$GATE/api/health"
eval "$("$work/setup" -url "http://$GATE")"

run() { # label proxy-pid url [header]
	local out before after
	local hdr=()
	[ -n "${4:-}" ] && hdr=(-H "$4")
	taskset -c 0 wrk -t1 -c"$CONNS" -d2s "${hdr[@]}" "$3" >/dev/null # warm-up
	before=$(cpu_ticks "$2")
	out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" "$3")
	after=$(cpu_ticks "$2")
	if grep -q "Non-2xx" <<<"$out"; then
		echo "$1: some responses were not 2xx:" >&2; echo "$out" >&2; exit 1
	fi
	local rps p50 p99 requests cpu
	rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	p50=$(awk '$1=="50%" {print $2}' <<<"$out")
	p99=$(awk '$1=="99%" {print $2}' <<<"$out")
	requests=$(awk '/requests in/ {print $1}' <<<"$out")
	cpu=$(awk -v t=$((after - before)) -v hz="$TCK" -v n="$requests" 'BEGIN {printf "%.0f", t * 1e6 / hz / n}')
	echo "$1|$rps|$p50|$p99|$cpu"
}

labels=("plain Caddy reverse_proxy" "Gatehouse, bearer token" "Gatehouse, session cookie")
declare -A all
for round in $(seq "$ROUNDS"); do
	all[0,$round]=$(run "${labels[0]}" "${pid[plain]}" "http://$PLAIN/v1/ping")
	all[1,$round]=$(run "${labels[1]}" "${pid[gate]}" "http://$GATE/v1/ping" "Authorization: Bearer $TOKEN")
	all[2,$round]=$(run "${labels[2]}" "${pid[gate]}" "http://$GATE/v1/ping" "Cookie: $COOKIE")
	echo "round $round: $(for i in 0 1 2; do cut -d'|' -f2 <<<"${all[$i,$round]}"; done | paste -sd' ')" >&2
done
median() { # index → the result line of the median round by requests/s
	for round in $(seq "$ROUNDS"); do echo "${all[$1,$round]}"; done | sort -t'|' -k2 -g | sed -n "$(((ROUNDS + 1) / 2))p"
}
results=("$(median 0)" "$(median 1)" "$(median 2)")

plain_rps=$(cut -d'|' -f2 <<<"${results[0]}")
printf '\n%-28s %12s %8s %10s %10s %14s\n' "setup (${DURATION}s×${ROUNDS}, ${CONNS} conns)" "requests/s" "÷ plain" "p50" "p99" "proxy CPU/req"
for r in "${results[@]}"; do
	IFS='|' read -r name rps p50 p99 cpu <<<"$r"
	ratio=$(awk -v a="$rps" -v b="$plain_rps" 'BEGIN {printf "%.2f", a/b}')
	printf '%-28s %12s %8s %10s %10s %12s µs\n' "$name" "$rps" "$ratio" "$p50" "$p99" "$cpu"
done
