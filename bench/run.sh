#!/usr/bin/env bash
# Load test on loopback, side by side: plain Caddy reverse_proxy and Gatehouse
# in front of the same trivial backend (Caddy answering a 213-byte chat
# completion with usage), for a GET and a chat POST (≈250 B body, the model
# read from it). Gatehouse meters every answer and checks quotas: the token
# and the signed-in admin both have limits.
#
#   bench/run.sh [seconds per run, default 10] [connections, default 32] [rounds, default 3]
#
# Environment: PIN=1 runs wrk on core 0 and the servers on core 1 (default:
# nothing pinned, as the issue's figures are measured); PROFILE=dir writes CPU
# and allocation profiles of each proxy (pprof, from Caddy's admin endpoint
# on 127.0.0.1), taken during each setup's run in the last round.
#
# The setups run in turn, round after round, and the median round of each is
# reported, so a noisy moment on the machine hurts all of them alike. Needs
# wrk (apt-get install -y wrk). Prints requests/s, p50, p99, the ratio to
# plain Caddy, and the CPU time per request of the proxy and of the backend
# (user + system, from /proc). Every run is bounded; nothing but 127.0.0.1 is
# contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-32}
ROUNDS=${3:-3}
PROFILE=${PROFILE:-}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
if [ -n "${PIN:-}" ]; then
	client=(taskset -c 0) server=(taskset -c 1)
else
	client=() server=()
fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/caddy" ./cmd/caddy
go build -o "$work/setup" ./bench/setup

BACKEND=127.0.0.1:18081 PLAIN=127.0.0.1:18082 GATE=127.0.0.1:18083 ADMIN=127.0.0.1:18084 PLAIN_ADMIN=127.0.0.1:18085
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
	admin $PLAIN_ADMIN
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
	admin $ADMIN
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
cat >"$work/chat.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"llama3","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say ok, and nothing else, please. This is a load test of the proxy in front of you."}],"max_tokens":16,"temperature":0}'
LUA

declare -A pid
start() { # name config
	"${server[@]}" "$work/caddy" run --config "$work/$2" --adapter caddyfile >"$work/$1.log" 2>&1 &
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
eval "$("$work/setup" -url "http://$GATE" -limits)"
echo "bearer token: ${#TOKEN} bytes; session cookie: ${#COOKIE} bytes" >&2

profile() { # name admin: CPU and allocation profiles of a proxy during a run
	curl -s -o "$PROFILE/$1.cpu.pprof" "http://$2/debug/pprof/profile?seconds=$((DURATION - 2))" &
	local p=$!
	sleep $((DURATION - 1))
	curl -s -o "$PROFILE/$1.allocs.pprof" "http://$2/debug/pprof/allocs"
	wait $p
}

run() { # label proxy-pid url header lua profile-name
	local out before after bbefore bafter
	local args=()
	[ -n "$4" ] && args+=(-H "$4")
	[ -n "$5" ] && args+=(-s "$5")
	"${client[@]}" wrk -t1 -c"$CONNS" -d2s "${args[@]}" "$3" >/dev/null # warm-up
	before=$(cpu_ticks "$2") bbefore=$(cpu_ticks "${pid[backend]}")
	local prof=""
	if [ -n "$6" ]; then
		local admin=$ADMIN
		[ "$2" = "${pid[plain]}" ] && admin=$PLAIN_ADMIN
		profile "$6" "$admin" &
		prof=$!
	fi
	out=$("${client[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${args[@]}" "$3")
	after=$(cpu_ticks "$2") bafter=$(cpu_ticks "${pid[backend]}")
	[ -z "$prof" ] || wait "$prof"
	if grep -q "Non-2xx" <<<"$out"; then
		echo "$1: some responses were not 2xx:" >&2; echo "$out" >&2; exit 1
	fi
	local rps p50 p99 requests cpu bcpu
	rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	p50=$(awk '$1=="50%" {print $2}' <<<"$out")
	p99=$(awk '$1=="99%" {print $2}' <<<"$out")
	requests=$(awk '/requests in/ {print $1}' <<<"$out")
	cpu=$(awk -v t=$((after - before)) -v hz="$TCK" -v n="$requests" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')
	bcpu=$(awk -v t=$((bafter - bbefore)) -v hz="$TCK" -v n="$requests" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')
	echo "$1|$rps|$p50|$p99|$cpu|$bcpu"
}

# label | proxy | url | header | wrk script | plain setup it is compared with
setups=(
	"plain Caddy, GET|plain|http://$PLAIN/v1/ping|||0"
	"Gatehouse, bearer, GET|gate|http://$GATE/v1/ping|Authorization: Bearer $TOKEN||0"
	"Gatehouse, session, GET|gate|http://$GATE/v1/ping|Cookie: $COOKIE||0"
	"plain Caddy, POST chat|plain|http://$PLAIN/v1/chat/completions||$work/chat.lua|3"
	"Gatehouse, bearer, POST chat|gate|http://$GATE/v1/chat/completions|Authorization: Bearer $TOKEN|$work/chat.lua|3"
)
[ -n "$PROFILE" ] && mkdir -p "$PROFILE"
declare -A all
for round in $(seq "$ROUNDS"); do
	line=()
	for i in "${!setups[@]}"; do
		IFS='|' read -r label proxy url hdr lua _ <<<"${setups[$i]}"
		prof=""
		if [ -n "$PROFILE" ] && [ "$round" = "$ROUNDS" ]; then
			prof=$(tr 'A-Z' 'a-z' <<<"$label" | tr -cs 'a-z\n' _)
		fi
		all[$i,$round]=$(run "$label" "${pid[$proxy]}" "$url" "$hdr" "$lua" "$prof")
		line+=("$(cut -d'|' -f2 <<<"${all[$i,$round]}")")
	done
	echo "round $round: ${line[*]}" >&2
done
median() { # index → the result line of the median round by requests/s
	for round in $(seq "$ROUNDS"); do echo "${all[$1,$round]}"; done | sort -t'|' -k2 -g | sed -n "$(((ROUNDS + 1) / 2))p"
}

printf '\n%-30s %11s %8s %9s %9s %13s %15s\n' "setup (${DURATION}s×${ROUNDS}, ${CONNS} conns)" "requests/s" "÷ plain" "p50" "p99" "proxy CPU/req" "backend CPU/req"
for i in "${!setups[@]}"; do
	base=$(cut -d'|' -f6 <<<"${setups[$i]}")
	IFS='|' read -r name rps p50 p99 cpu bcpu <<<"$(median "$i")"
	base_rps=$(median "$base" | cut -d'|' -f2)
	base_cpu=$(median "$base" | cut -d'|' -f5)
	ratio=$(awk -v a="$rps" -v b="$base_rps" 'BEGIN {printf "%.2f", a/b}')
	added=$(awk -v a="$cpu" -v b="$base_cpu" 'BEGIN {d = a - b; printf "%s%.1f", (d >= 0 ? "+" : ""), d}')
	[ "$i" = "$base" ] && added=""
	printf '%-30s %11s %8s %9s %9s %8s µs %-6s %9s µs\n' "$name" "$rps" "$ratio" "$p50" "$p99" "$cpu" "$added" "$bcpu"
done
if [ -n "$PROFILE" ]; then
	cp "$work/caddy" "$PROFILE/caddy"
	echo "profiles in $PROFILE: go tool pprof -top $PROFILE/caddy $PROFILE/gatehouse_bearer_get.cpu.pprof" >&2
fi
exit 0
