#!/usr/bin/env bash
# Is flit-loadgen's NATS figure right? Measures nats-server with flit-loadgen
# (one or more builds), with an independent client (bench/nats-independent,
# the async-nats crate) and, for pub/sub, with the plainest raw-protocol
# client (bench/nats-raw), one fresh server per run, alternating
# A B C ... A B C ... for REPETITIONS rounds, and summarizes with
# bench/summarize.py (which prints the 10% agreement check).
#
# Usage: bench/nats_instrument.sh [OUTPUT_DIR]   (default bench-results/<date>-nats-instrument)
# Environment: REPETITIONS (3), DURATION (3s), WARMUP (1s), SERVER_CPU (0), LOADGEN_CPU (1),
#   SCENARIOS (default "pubsub-throughput fanout-10 reqrep-park"; also fanout-100),
#   LOADGENS: space-separated LABEL=BINARY pairs, each measured as target LABEL
#     (default "nats=target/release/flit-loadgen"; e.g. add "nats-before=/tmp/flit-loadgen-5921b36"
#     to measure an older build in the same rounds),
#   LOADGEN_IDLES: the load generator's --idle modes for the throughput groups (default "park spin";
#     bench/compare.sh spins; a spin run's target is LABEL-spin); reqrep-park always parks,
#   RAW (1; 0 leaves out bench/nats-raw),
#   FLIT: a `flit` binary; if set, every load generator build also measures flit (`flit serve
#     --shards 1 --idle park`) in the throughput groups, as target flit-LABEL (flit for `nats=`),
#     to show what a load generator change does to flit's figure,
#   PERF (0; 1 records `perf stat` of each load generator process into runs/*.perf).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

REPETITIONS=${REPETITIONS:-3}
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-1s}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
SCENARIOS=${SCENARIOS:-"pubsub-throughput fanout-10 reqrep-park"}
LOADGENS=${LOADGENS:-"nats=$root/target/release/flit-loadgen"}
LOADGEN_IDLES=${LOADGEN_IDLES:-"park spin"}
RAW=${RAW:-1}
PERF=${PERF:-0}
FLIT=${FLIT:-}
out=${1:-bench-results/$(date -u +%Y-%m-%d)-nats-instrument}
mkdir -p "$out/runs"
commands="$out/commands.txt"
: > "$commands"
log() { echo "[nats-instrument] $*" >&2; }

command -v nats-server >/dev/null 2>&1 || { echo "nats-server is missing (bench/compare.sh installs it)" >&2; exit 1; }
log "building"
cargo build --release --locked -p flit-loadgen >&2
independent=$(bash "$root/bench/nats-independent/build.sh")
raw=$(bash "$root/bench/nats-raw/build.sh")

{
  echo "# Machine"
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  echo "- kernel: $(uname -r)"
  echo "- rustc: $(rustc --version)"
  echo "- flit: $(git rev-parse --short HEAD)$(git diff --quiet -- loadgen bench || echo '+dirty')"
  echo "- nats-server: $(nats-server --version 2>&1 | head -1) ($(command -v nats-server))"
  echo "- independent client: bench/nats-independent (async-nats $(grep -A1 'name = "async-nats"' bench/nats-independent/Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p'), tokio current-thread runtime, parks)"
  echo "- raw client: bench/nats-raw (publisher and subscriber threads, blocking sockets; pub/sub only)"
  echo "- load generators: $LOADGENS (--idle $LOADGEN_IDLES in the throughput groups, park in reqrep-park)"
  [ -z "$FLIT" ] || echo "- flit: $FLIT ($("$FLIT" --version 2>&1 | head -1)), --shards 1 --idle park"
  echo "- server pinned to cpu $SERVER_CPU, load generators to cpu $LOADGEN_CPU; $REPETITIONS rounds of $DURATION after $WARMUP warm-up"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.md"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
server_pid=""
port=""
server_kind=nats
start_server() {
  port=$(free_port)
  if [ "$server_kind" = flit ]; then
    taskset -c "$SERVER_CPU" "$FLIT" serve --listen "127.0.0.1:$port" --shards 1 --idle park --no-pin \
      > "$out/server.log" 2>&1 &
  else
    taskset -c "$SERVER_CPU" nats-server -a 127.0.0.1 -p "$port" > "$out/server.log" 2>&1 &
  fi
  server_pid=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
    sleep 0.05
  done
  echo "$server_kind did not start: $(cat "$out/server.log")" >&2
  exit 1
}
server_cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
# run NAME -- COMMAND...: one fresh server, the command with {PORT} and {PID} filled in.
run() {
  local name=$1
  shift 2
  start_server
  local command=()
  for word in "$@"; do
    word=${word//\{PORT\}/$port}
    command+=("${word//\{PID\}/$server_pid}")
  done
  echo "$name: ${command[*]}" >> "$commands"
  local cpu_before started prefix=()
  cpu_before=$(server_cpu_ticks)
  started=$(date +%s.%N)
  if [ "$PERF" = 1 ]; then prefix=(perf stat -e task-clock,context-switches,raw_syscalls:sys_enter -o "$out/runs/$name.perf" --); fi
  if ! "${prefix[@]}" "${command[@]}" > "$out/runs/$name.txt" 2>&1; then
    log "FAILED: $name (see $out/runs/$name.txt)"
  fi
  # The server's CPU over the whole command (setup, warm-up, measurement, drain), for every client alike.
  awk -v ticks="$(( $(server_cpu_ticks) - cpu_before ))" -v started="$started" -v now="$(date +%s.%N)" \
    'BEGIN { printf "server_cpu_s %.2f wall_s %.2f\n", ticks / 100, now - started }' > "$out/runs/$name.server-cpu"
  stop_server
}

loadgen_args() { # GROUP: flit-loadgen's arguments for it (as bench/compare.sh)
  case $1 in
    pubsub-throughput) echo "--scenario pubsub --window 4096" ;;
    fanout-*) echo "--scenario fanout --subscribers ${1#fanout-}" ;;
    reqrep-park) echo "--scenario reqrep" ;;
  esac
}
independent_args() { # GROUP: the same scenario for the independent client
  case $1 in
    pubsub-throughput) echo "--scenario pubsub --window 4096" ;;
    fanout-*) echo "--scenario fanout --subscribers ${1#fanout-} --window 1024" ;;
    reqrep-park) echo "--scenario reqrep" ;;
  esac
}

for rep in $(seq 1 "$REPETITIONS"); do
  log "round $rep of $REPETITIONS"
  for group in $SCENARIOS; do
    idles=$LOADGEN_IDLES
    [ "$group" = reqrep-park ] && idles=park
    for pair in $LOADGENS; do
      for idle in $idles; do
        label=${pair%%=*}
        binary=${pair#*=}
        [ "$idle" = park ] || label=$label-$idle
        # shellcheck disable=SC2046
        run "$group.$label.$rep" -- "$binary" --target "nats://127.0.0.1:{PORT}" --idle "$idle" --cpu "$LOADGEN_CPU" \
          --duration "$DURATION" --warmup "$WARMUP" --server-pid "{PID}" --quiet \
          --json "$out/runs/$group.$label.$rep.json" $(loadgen_args "$group")
        if [ -n "$FLIT" ] && [ "$group" != reqrep-park ]; then
          flit_label=flit${label#nats}
          server_kind=flit
          # shellcheck disable=SC2046
          run "$group.$flit_label.$rep" -- "$binary" --target "flit://127.0.0.1:{PORT}" --idle "$idle" \
            --cpu "$LOADGEN_CPU" --duration "$DURATION" --warmup "$WARMUP" --server-pid "{PID}" --quiet \
            --json "$out/runs/$group.$flit_label.$rep.json" $(loadgen_args "$group")
          server_kind=nats
        fi
      done
    done
    # shellcheck disable=SC2046
    run "$group.nats-independent.$rep" -- taskset -c "$LOADGEN_CPU" "$independent" --server "127.0.0.1:{PORT}" \
      --duration "$DURATION" --warmup "$WARMUP" --json "$out/runs/$group.nats-independent.$rep.json" \
      $(independent_args "$group")
    if [ "$RAW" = 1 ] && [ "$group" = pubsub-throughput ]; then
      run "$group.nats-raw.$rep" -- taskset -c "$LOADGEN_CPU" "$raw" --server "127.0.0.1:{PORT}" --window 4096 \
        --duration "$DURATION" --warmup "$WARMUP" --json "$out/runs/$group.nats-raw.$rep.json"
    fi
  done
done
rm -f "$out/server.log"
python3 "$root/bench/summarize.py" --no-targets "$out" >/dev/null
log "done: $out/summary.md"
