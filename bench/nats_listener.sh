#!/usr/bin/env bash
# Issue 12: flit's NATS listener (`flit serve --nats-listen`) against
# nats-server, and against flit's own native listener, side by side in one
# run. Every repetition runs every measurement once, alternating servers
# (flit, nats-server, flit, nats-server, ...), one server at a time, pinned
# to SERVER_CPU (flit --shards 1, nats-server under taskset like
# bench/compare.sh); the clients run on LOADGEN_CPU. Medians in summary.md.
#
#   bench/nats_listener.sh [OUT_DIR]        (default bench-results/<date>-nats-listener)
# Environment: REPETITIONS (3), DURATION (5s), WARMUP (1s), SERVER_CPU (0),
#   LOADGEN_CPU (1), PAYLOAD (64), NATS_SERVER (nats-server on PATH),
#   SCENARIOS (all: "reqrep pubsub fanout-10"; a subset reruns only those groups).
#
# Groups (runs/<group>.<target>.<rep>.{json,hgrm,txt}; server logs beside them):
#   reqrep     1 requester, 1 responder, sequential (window 1), everything parked:
#              flit-nats (flit-loadgen nats:// to flit's NATS listener) and
#              flit-native (flit-loadgen flit:// to the same flit process, order
#              swapped every repetition), nats (flit-loadgen to nats-server), and
#              the independent async-nats client (bench/nats-independent) against
#              both NATS endpoints: flit-nats-independent, nats-independent.
#   pubsub     1 publisher, 1 subscriber, closed loop, window 4096
#   fanout-10  1 publisher, 10 subscribers, closed loop
#              (flit-loadgen spins in pubsub/fanout, as in compare.sh; async-nats parks)
# bench/nats_listener_summary.py writes summary.md: issue 12's targets with
# value, limit and verdict; a ratio against nats-server counts only where
# flit-loadgen's nats-server figure is within 10% of async-nats's.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPETITIONS:-3}
DURATION=${DURATION:-5s}
PAYLOAD=${PAYLOAD:-64}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || true)}
[[ -x $NATS_SERVER ]] || { echo "nats-server not found: install it (see bench/compare.sh) or set NATS_SERVER" >&2; exit 1; }
SCENARIOS=${SCENARIOS:-reqrep pubsub fanout-10}
invocation="SCENARIOS='$SCENARIOS' REPETITIONS=$REPS DURATION=$DURATION WARMUP=${WARMUP:-1s} SERVER_CPU=${SERVER_CPU:-0} LOADGEN_CPU=${LOADGEN_CPU:-1} PAYLOAD=$PAYLOAD bench/nats_listener.sh${1:+ $1}"
out=${1:-bench-results/$(date -u +%Y-%m-%d)-nats-listener}
# The settings, the release build, free_port, wait_for_port and machine_header.
source bench/side_by_side.sh
flit=${CARGO_TARGET_DIR:-target}/release/flit
loadgen=${CARGO_TARGET_DIR:-target}/release/flit-loadgen
independent=$(bench/nats-independent/build.sh)
mkdir -p "$out/runs"
out=$(cd "$out" && pwd)
commands="$out/commands.txt"
: > "$commands"
echo "$invocation" > "$out/invocation.txt"
started=$(date +%s)
{
  machine_header
  echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- rustc: $(rustc --version)"
  echo "- flit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo '+dirty'); flit serve --shards 1 --idle park --no-pin, --listen and --nats-listen on loopback port 0"
  echo "- nats-server --version: $("$NATS_SERVER" --version 2>&1 | head -1) ($NATS_SERVER)"
  echo "- independent NATS client: bench/nats-independent (async-nats $(sed -n '/^name = "async-nats"$/{n;s/version = "\(.*\)"/\1/p}' bench/nats-independent/Cargo.lock), tokio current-thread runtime, parks)"
} > "$out/machine.md"

server_pid=""
native_address=""
nats_address=""

# start_flit LOG: one shard on SERVER_CPU, both listeners; reads their
# addresses from the ready line (the first line flit prints on stdout).
start_flit() {
  taskset -c "$SERVER_CPU" "$flit" serve --listen 127.0.0.1:0 --nats-listen 127.0.0.1:0 --shards 1 --idle park \
    --no-pin --data-dir "$out/flit-data" > "$1" 2>&1 &
  server_pid=$!
  local ready=""
  for _ in $(seq 1 100); do
    ready=$(grep -m1 '^flit ready ' "$1" || true)
    [[ -n $ready ]] && break
    sleep 0.05
  done
  native_address=$(sed -n 's/.* listen=\([^ ]*\).*/\1/p' <<< "$ready")
  nats_address=$(sed -n 's/.* nats=\([^ ]*\).*/\1/p' <<< "$ready")
  [[ -n $native_address && -n $nats_address ]] || { echo "flit did not start: $(cat "$1")" >&2; exit 1; }
}

start_nats() {
  local port
  port=$(free_port)
  taskset -c "$SERVER_CPU" "$NATS_SERVER" -a 127.0.0.1 -p "$port" > "$1" 2>&1 &
  server_pid=$!
  nats_address=127.0.0.1:$port
  wait_for_port "$port"
}

# stop_server: SIGTERM; flit drains and logs its shard counters (protocol
# errors, slow-consumer evictions) into the server log.
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

# The server's user + system CPU so far, in clock ticks.
server_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }

# record NAME -- command...: runs one measurement, keeps its stdout, the exact
# command, and NAME.server-cpu: "TICKS TICKS_PER_SECOND WALL_NS", the server's
# CPU over the whole command (connect, warm-up, measurement, drain), for both
# clients alike (async-nats cannot read it itself).
record() {
  local name=$1 ticks started_ns
  shift 2
  echo "$name: $*" >> "$commands"
  ticks=$(server_ticks)
  started_ns=$(date +%s%N)
  if ! "$@" > "$out/runs/$name.txt" 2>&1; then
    echo "FAILED: $name (see $out/runs/$name.txt)" >&2
  fi
  echo "$(( $(server_ticks) - ticks )) $(getconf CLK_TCK) $(( $(date +%s%N) - started_ns ))" > "$out/runs/$name.server-cpu"
}

# with_loadgen NAME URL IDLE -- scenario arguments
with_loadgen() {
  local name=$1 url=$2 idle=$3
  shift 4
  record "$name" -- "$loadgen" --target "$url" --idle "$idle" --cpu "$LOADGEN_CPU" --duration "$DURATION" \
    --warmup "$WARMUP" --payload "$PAYLOAD" --server-pid "$server_pid" --quiet \
    --json "$out/runs/$name.json" --hgrm "$out/runs/$name.hgrm" "$@"
}

# with_independent NAME ADDRESS -- scenario arguments
with_independent() {
  local name=$1 address=$2
  shift 3
  record "$name" -- taskset -c "$LOADGEN_CPU" "$independent" --server "$address" --duration "$DURATION" \
    --warmup "$WARMUP" --payload "$PAYLOAD" --json "$out/runs/$name.json" "$@"
}

# group GROUP REP LOADGEN_IDLE -- scenario arguments (both clients take them)
group() {
  local name=$1 rep=$2 idle=$3
  shift 4
  [[ " $SCENARIOS " == *" $name "* ]] || return 0
  local log="$out/runs/$name"
  start_flit "$log.flit.$rep.server.log"
  if [[ $name == reqrep ]] && (( rep % 2 == 0 )); then
    with_loadgen "$name.flit-native.$rep" "flit://$native_address" "$idle" -- "$@"
  fi
  with_loadgen "$name.flit-nats.$rep" "nats://$nats_address" "$idle" -- "$@"
  if [[ $name == reqrep ]] && (( rep % 2 == 1 )); then
    with_loadgen "$name.flit-native.$rep" "flit://$native_address" "$idle" -- "$@"
  fi
  stop_server
  start_nats "$log.nats.$rep.server.log"
  with_loadgen "$name.nats.$rep" "nats://$nats_address" "$idle" -- "$@"
  stop_server
  start_flit "$log.flit-nats-independent.$rep.server.log"
  with_independent "$name.flit-nats-independent.$rep" "$nats_address" -- "$@"
  stop_server
  start_nats "$log.nats-independent.$rep.server.log"
  with_independent "$name.nats-independent.$rep" "$nats_address" -- "$@"
  stop_server
}

for rep in $(seq 1 "$REPS"); do
  group reqrep "$rep" park -- --scenario reqrep
  group pubsub "$rep" spin -- --scenario pubsub --window 4096
  group fanout-10 "$rep" spin -- --scenario fanout --subscribers 10 --window 1024
  echo "[nats_listener] round $rep of $REPS done ($(( $(date +%s) - started )) s)" >&2
done
rm -rf "$out/flit-data"

{
  echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- wall time: $(( $(date +%s) - started )) s"
} >> "$out/machine.md"
python3 bench/nats_listener_summary.py "$out"
