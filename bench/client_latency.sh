#!/usr/bin/env bash
# Sequential request/reply latency through flit-client (blocking and tokio)
# against the load generator's own request/reply, on the same server, side by
# side: per repetition one fresh `flit serve` (1 shard, --idle SERVER_IDLE,
# pinned to SERVER_CPU), then, alternating, `flit-loadgen --scenario reqrep`
# (--idle LOADGEN_IDLE) and the client example `request_latency` in each
# mode, all pinned to CLIENT_CPU.
# The example's responder is a minimal flit-wire responder thread on the same
# cpu as the requester (the load generator also serves its requests and
# answers them on one thread), so both measure a requester's round trip
# through the server and a cheap responder.
#
# With BEFORE_REV (a git revision), the same example source is also built
# against the client of that revision (in a git worktree, its own target dir)
# and measured in the same rotation: before/after on one server.
#
# Usage: bench/client_latency.sh [OUTPUT_DIR]
# Env: REPETITIONS (3), DURATION (5s, load generator), REQUESTS (20000 per
# client run, after WARMUP_REQUESTS 2000), SERVER_CPU (0), CLIENT_CPU (1),
# MODES ("blocking async async-mt"), SERVER_IDLE (park), LOADGEN_IDLE (park),
# BEFORE_REV (none),
# BEFORE_TARGET_DIR (/tmp/client-before-target), FLIT_BIN and LOADGEN_BIN
# (default: built here).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
REPETITIONS=${REPETITIONS:-3}
DURATION=${DURATION:-5s}
REQUESTS=${REQUESTS:-20000}
WARMUP_REQUESTS=${WARMUP_REQUESTS:-2000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
MODES=${MODES:-"blocking async async-mt"}
SERVER_IDLE=${SERVER_IDLE:-park}
LOADGEN_IDLE=${LOADGEN_IDLE:-park}
BEFORE_REV=${BEFORE_REV:-}
BEFORE_TARGET_DIR=${BEFORE_TARGET_DIR:-/tmp/client-before-target}
out=${1:-bench-results/$(date +%Y-%m-%d)-client-latency}
mkdir -p "$out/runs"
commands=$out/commands.txt
: > "$commands"
log() { echo "[client_latency] $*" >&2; }

log "building (release)"
if [[ -z ${FLIT_BIN:-} || -z ${LOADGEN_BIN:-} ]]; then
  cargo build --release --locked -p flit-router -p flit-loadgen >/dev/null
fi
cargo build --release --locked -p flit-client --example request_latency >/dev/null
flit=${FLIT_BIN:-$root/target/release/flit}
loadgen=${LOADGEN_BIN:-$root/target/release/flit-loadgen}
after_example=$root/target/release/examples/request_latency
before_example=""
if [[ -n $BEFORE_REV ]]; then
  worktree=$(mktemp -d /tmp/client-latency-before.XXXXXX)
  git worktree add --detach "$worktree" "$BEFORE_REV" >/dev/null 2>&1
  cp client/examples/request_latency.rs "$worktree/client/examples/"
  log "building the example against the client of $BEFORE_REV"
  (cd "$worktree" && CARGO_TARGET_DIR=$BEFORE_TARGET_DIR cargo build --release --locked -p flit-client \
    --example request_latency >/dev/null)
  before_example=$BEFORE_TARGET_DIR/release/examples/request_latency
  git worktree remove --force "$worktree"
fi

{
  echo "# Machine"
  echo
  echo '```'
  lscpu | head -20
  echo
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "tree: $(git rev-parse --short HEAD)$(git diff --quiet -- client || echo ' + uncommitted client changes')"
  [[ -n $BEFORE_REV ]] && echo "before: client of $(git rev-parse --short "$BEFORE_REV")"
  echo "server: flit serve --shards 1 --idle $SERVER_IDLE --no-pin under taskset -c $SERVER_CPU"
  echo "clients: taskset -c $CLIENT_CPU (load generator: --cpu $CLIENT_CPU --idle $LOADGEN_IDLE)"
  echo '```'
} > "$out/machine.md"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

server_pid=""
address=""
start_server() {
  local port
  port=$(free_port)
  address=127.0.0.1:$port
  taskset -c "$SERVER_CPU" "$flit" serve --listen "$address" --shards 1 --idle "$SERVER_IDLE" --no-pin \
    > "$out/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
    sleep 0.05
  done
  echo "flit did not start: $(cat "$out/server.log")" >&2
  exit 1
}
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT

# run_client LABEL REP BINARY -- example arguments
run_client() {
  local label=$1 rep=$2 binary=$3
  shift 4
  local command=(taskset -c "$CLIENT_CPU" "$binary" --server "$address" --requests "$REQUESTS"
    --warmup "$WARMUP_REQUESTS" "$@")
  echo "$label (rep $rep): ${command[*]}" >> "$commands"
  "${command[@]}" > "$out/runs/$label.$rep.txt"
  log "$label rep $rep: $(cat "$out/runs/$label.$rep.txt")"
}

for rep in $(seq "$REPETITIONS"); do
  start_server
  command=("$loadgen" --target "flit://$address" --scenario reqrep --duration "$DURATION" --warmup 1s
    --idle "$LOADGEN_IDLE" --cpu "$CLIENT_CPU" --quiet --json "$out/runs/loadgen.$rep.json")
  echo "loadgen (rep $rep): ${command[*]}" >> "$commands"
  "${command[@]}" > "$out/runs/loadgen.$rep.txt"
  log "loadgen rep $rep: p50 $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["latency_us"]["p50"])' "$out/runs/loadgen.$rep.json") us"
  # Variants: the modes, then blocking with a subscription held, then
  # blocking against a flit-client responder; after and before alternate.
  variants=()
  for mode in $MODES; do variants+=("$mode|--mode $mode"); done
  variants+=("blocking-subscribed|--mode blocking --subscribed" "blocking-client-responder|--mode blocking --responder client")
  for variant in "${variants[@]}"; do
    name=${variant%%|*}
    read -r -a flags <<< "${variant#*|}"
    run_client "after-$name" "$rep" "$after_example" -- "${flags[@]}"
    if [[ -n $before_example ]]; then
      run_client "before-$name" "$rep" "$before_example" -- "${flags[@]}"
    fi
  done
  stop_server
done
trap - EXIT

python3 - "$out" <<'EOF'
import json, pathlib, re, statistics, sys
out = pathlib.Path(sys.argv[1])
runs = out / "runs"
rows = {}
for path in sorted(runs.glob("*.txt")):
    label, rep = path.stem.rsplit(".", 1)
    if label == "loadgen":
        latency = json.loads((runs / f"loadgen.{rep}.json").read_text())["latency_us"]
        values = {"p50": latency["p50"], "p99": latency["p99"]}
    else:
        fields = dict(re.findall(r"(\w+)=(\S+)", path.read_text()))
        values = {"p50": float(fields["p50_us"]), "p99": float(fields["p99_us"])}
    rows.setdefault(label, {})[int(rep)] = values
loadgen = rows.pop("loadgen")
def describe(samples):
    return f"{statistics.median(samples):.1f} ({min(samples):.1f}..{max(samples):.1f})"
lines = ["| variant | p50 µs median (min..max) | p99 µs median (min..max) | p50 / loadgen p50 (median of per-rep ratios) |",
         "|---|---:|---:|---:|"]
lines.append(f"| loadgen reqrep | {describe([v['p50'] for v in loadgen.values()])} | {describe([v['p99'] for v in loadgen.values()])} | 1.00 |")
order = sorted(rows, key=lambda label: (label.split("-", 1)[1], label))
for label in order:
    reps = rows[label]
    ratios = [reps[rep]["p50"] / loadgen[rep]["p50"] for rep in reps if rep in loadgen]
    lines.append(f"| {label} | {describe([v['p50'] for v in reps.values()])} | {describe([v['p99'] for v in reps.values()])} | {statistics.median(ratios):.2f} |")
(out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
log "results in $out (table.md; write README.md by hand from it)"
