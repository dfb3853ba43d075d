#!/usr/bin/env bash
# Issue 13: a three-node flit cluster against a three-node NATS cluster, the
# same load generator for both, messages crossing nodes. Each repetition
# starts one cluster, runs every scenario against it, stops it, then does the
# same with the other (flit first in odd repetitions, NATS first in even
# ones). All three nodes of a cluster share SERVER_CPU (taskset; flit: one
# shard per node, --idle park --spin-before-park-us 0 --no-pin: with three
# nodes on one core, the default 50 us spin before parking keeps the core
# from the node that has work; measured on this machine, cross-node reqrep
# p50 163 us with the spin, 108 us without); the clients run on LOADGEN_CPU.
# Node A (1) takes the senders (publishers, requesters), node B (2) the
# receivers (subscribers, responders: flit-loadgen --receiver-target); node 3
# is a member that carries no client. Medians in summary.md
# (bench/cluster_summary.py).
#
#   bench/cluster.sh [OUT_DIR]          (default bench-results/2026-11-30-cluster)
# Environment: REPETITIONS (3), DURATION (5s; the nats-py check takes whole
#   seconds), WARMUP (1s), SERVER_CPU (0), LOADGEN_CPU (1), PAYLOAD (64),
#   NATS_SERVER (nats-server on PATH), PROBE_INTERVAL_US (50), SPIN_BEFORE_PARK_US (0),
#   SCENARIOS (all: "reqrep-cross pubsub-cross propagation reqrep-same independent").
#   A quick check: REPETITIONS=1 DURATION=2s bench/cluster.sh /tmp/cluster-smoke
#
# Scenarios (runs/<scenario>.<target>.<rep>.{json,hgrm,txt}; target: flit
# (flit-loadgen flit:// to the native listeners), flit-nats (flit-loadgen
# nats:// to flit's NATS listeners), nats (flit-loadgen nats:// to
# nats-server), flit-nats-py and nats-py (the independent client)):
#   reqrep-cross       1 requester on A, 1 responder on B, one at a time, parked; round trip
#                      (flit, flit-nats, nats)
#   pubsub-cross       1 publisher on A, 1 subscriber on B, closed loop, window 4096, spinning; msg/s
#   propagation-cross  subscriber on B subscribes + flushes, publisher on A publishes at once and every
#                      PROBE_INTERVAL_US until it arrives: flush -> first arrival, first publishes lost
#   propagation-same   the same with both on A (the reference: a flush is a barrier on its own node)
#   reqrep-same        requester and responder both on A (the reference)
#   independent        nats-py (bench/nats-independent/cluster_reqrep.py) requester on A, responder on B,
#                      against flit's NATS listeners (flit-nats-py) and the NATS cluster (nats-py)
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPETITIONS:-3}
DURATION=${DURATION:-5s}
PAYLOAD=${PAYLOAD:-64}
PROBE_INTERVAL_US=${PROBE_INTERVAL_US:-50}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || true)}
[[ -x $NATS_SERVER ]] || { echo "nats-server not found: install it (see bench/compare.sh) or set NATS_SERVER" >&2; exit 1; }
SPIN_BEFORE_PARK_US=${SPIN_BEFORE_PARK_US:-0}
SCENARIOS=${SCENARIOS:-reqrep-cross pubsub-cross propagation reqrep-same independent}
invocation="SCENARIOS='$SCENARIOS' SPIN_BEFORE_PARK_US=$SPIN_BEFORE_PARK_US REPETITIONS=$REPS DURATION=$DURATION WARMUP=${WARMUP:-1s} SERVER_CPU=${SERVER_CPU:-0} LOADGEN_CPU=${LOADGEN_CPU:-1} PAYLOAD=$PAYLOAD PROBE_INTERVAL_US=$PROBE_INTERVAL_US bench/cluster.sh${1:+ $1}"
out=${1:-bench-results/2026-11-30-cluster}
# The settings, the release build, free_port, wait_for_port and machine_header.
source bench/side_by_side.sh
flit=${CARGO_TARGET_DIR:-target}/release/flit
loadgen=${CARGO_TARGET_DIR:-target}/release/flit-loadgen
seconds() { python3 -c "import sys; t=sys.argv[1]; print(float(t[:-2])/1000 if t.endswith('ms') else float(t.rstrip('s')))" "$1"; }
mkdir -p "$out/runs"
out=$(cd "$out" && pwd)
scratch=$(mktemp -d)
commands="$out/commands.txt"
: > "$commands"
echo "$invocation" > "$out/invocation.txt"
started=$(date +%s)
{
  machine_header
  echo "- clusters: 3 nodes each, all three on CPU $SERVER_CPU (taskset); flit-loadgen and nats-py on CPU $LOADGEN_CPU"
  echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- rustc: $(rustc --version)"
  echo "- flit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo '+dirty'); per node: flit serve --shards 1 --idle park --spin-before-park-us $SPIN_BEFORE_PARK_US --no-pin --listen --nats-listen --metrics --cluster-name --cluster-listen --node-id --cluster-secret-file [--cluster-seeds], loopback"
  echo "- nats-server --version: $("$NATS_SERVER" --version 2>&1 | head -1) ($NATS_SERVER); per node: -a 127.0.0.1 -p P -m M --cluster nats://127.0.0.1:R --routes (the other two) --cluster_name bench"
  echo "- independent client: nats-py $(python3 -c 'import nats.aio.client as c; print(c.__version__)'), asyncio, bench/nats-independent/cluster_reqrep.py"
} > "$out/machine.md"

pids=()
native=()   # flit native listeners, node 1..3 at index 0..2
nats=()     # NATS client addresses (flit's NATS listeners, or nats-server's)
stop_cluster() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop_cluster; rm -rf "$scratch"' EXIT

# start_flit LOG_PREFIX: three nodes, node i seeded with nodes 1..i-1; waits
# until every node lists three nodes up.
start_flit() {
  (umask 077 && openssl rand -hex 32 > "$scratch/cluster.secret")
  local i seeds="" routes=() metrics=()
  native=() nats=()
  for i in 1 2 3; do
    native+=("127.0.0.1:$(free_port)") nats+=("127.0.0.1:$(free_port)")
    routes+=("127.0.0.1:$(free_port)") metrics+=("127.0.0.1:$(free_port)")
  done
  for i in 0 1 2; do
    local command=("$flit" serve --shards 1 --idle park --spin-before-park-us "$SPIN_BEFORE_PARK_US" --no-pin --listen "${native[$i]}" --nats-listen "${nats[$i]}"
      --metrics "${metrics[$i]}" --cluster-name bench --cluster-listen "${routes[$i]}" --node-id $((i + 1))
      --cluster-secret-file "$scratch/cluster.secret")
    [[ -n $seeds ]] && command+=(--cluster-seeds "$seeds")
    echo "flit node $((i + 1)): taskset -c $SERVER_CPU ${command[*]}" >> "$commands"
    taskset -c "$SERVER_CPU" "${command[@]}" > "$1.node$((i + 1)).log" 2>&1 &
    pids+=($!)
    seeds=${seeds:+$seeds,}${routes[$i]}
  done
  for i in 0 1 2; do
    for _ in $(seq 1 200); do
      [[ $("$flit" cluster ls --server "${metrics[$i]}" 2>/dev/null | grep -c ' up ') == 3 ]] && continue 2
      sleep 0.05
    done
    echo "flit node $((i + 1)) did not see three nodes up: $(cat "$1.node$((i + 1)).log")" >&2
    exit 1
  done
}

# start_nats LOG_PREFIX: three nats-servers, each routed to the other two;
# waits until each has routes to both others.
start_nats() {
  local i j ports=() routes=() monitors=()
  nats=()
  for i in 1 2 3; do ports+=("$(free_port)") routes+=("$(free_port)") monitors+=("$(free_port)"); done
  for i in 0 1 2; do
    local others=()
    for j in 0 1 2; do [[ $j != "$i" ]] && others+=("nats://127.0.0.1:${routes[$j]}"); done
    local command=("$NATS_SERVER" -a 127.0.0.1 -p "${ports[$i]}" -m "${monitors[$i]}"
      --cluster "nats://127.0.0.1:${routes[$i]}" --routes "$(IFS=,; echo "${others[*]}")" --cluster_name bench)
    echo "nats node $((i + 1)): taskset -c $SERVER_CPU ${command[*]}" >> "$commands"
    taskset -c "$SERVER_CPU" "${command[@]}" > "$1.node$((i + 1)).log" 2>&1 &
    pids+=($!)
    nats+=("127.0.0.1:${ports[$i]}")
  done
  for i in 0 1 2; do
    wait_for_port "${monitors[$i]}"
    for _ in $(seq 1 200); do
      # Route pooling (2.10+) opens several routes per peer: count the peers.
      peers=$(curl -s "http://127.0.0.1:${monitors[$i]}/routez" |
        python3 -c 'import json,sys; print(len({r.get("remote_id") for r in json.load(sys.stdin).get("routes") or []}))' 2>/dev/null || echo 0)
      [[ $peers -ge 2 ]] && continue 2
      sleep 0.05
    done
    echo "nats node $((i + 1)) did not route to both others: $(cat "$1.node$((i + 1)).log")" >&2
    exit 1
  done
}

# The cluster's user + system CPU so far (all three nodes), in clock ticks.
cluster_ticks() {
  local pid total=0
  for pid in "${pids[@]}"; do total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat") )); done
  echo "$total"
}

# record NAME -- command...: runs one measurement, keeps its stdout, the exact
# command, and NAME.server-cpu: "TICKS TICKS_PER_SECOND WALL_NS" (the three
# nodes together, over the whole command).
record() {
  local name=$1 ticks started_ns
  shift 2
  echo "$name: $*" >> "$commands"
  ticks=$(cluster_ticks)
  started_ns=$(date +%s%N)
  if ! "$@" > "$out/runs/$name.txt" 2>&1; then
    echo "FAILED: $name (see $out/runs/$name.txt)" >&2
  fi
  echo "$(( $(cluster_ticks) - ticks )) $(getconf CLK_TCK) $(( $(date +%s%N) - started_ns ))" > "$out/runs/$name.server-cpu"
}

# with_loadgen NAME SCHEME SENDER RECEIVER IDLE -- scenario arguments
with_loadgen() {
  local name=$1 scheme=$2 sender=$3 receiver=$4 idle=$5
  shift 6
  record "$name" -- "$loadgen" --target "$scheme://$sender" --receiver-target "$scheme://$receiver" --idle "$idle" \
    --cpu "$LOADGEN_CPU" --duration "$DURATION" --warmup "$WARMUP" --payload "$PAYLOAD" --quiet \
    --json "$out/runs/$name.json" --hgrm "$out/runs/$name.hgrm" "$@"
}

wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# scenarios CLUSTER REP: everything against the running cluster; CLUSTER is
# flit or nats. A = node 1, B = node 2.
scenarios() {
  local cluster=$1 rep=$2 scheme a b
  if [[ $cluster == flit ]]; then scheme=flit a=${native[0]} b=${native[1]}; else scheme=nats a=${nats[0]} b=${nats[1]}; fi
  if wants reqrep-cross; then
    with_loadgen "reqrep-cross.$cluster.$rep" "$scheme" "$a" "$b" park -- --scenario reqrep
    [[ $cluster == flit ]] &&
      with_loadgen "reqrep-cross.flit-nats.$rep" nats "${nats[0]}" "${nats[1]}" park -- --scenario reqrep
  fi
  if wants pubsub-cross; then
    with_loadgen "pubsub-cross.$cluster.$rep" "$scheme" "$a" "$b" spin -- --scenario pubsub --window 4096
  fi
  if wants propagation; then
    with_loadgen "propagation-cross.$cluster.$rep" "$scheme" "$a" "$b" spin -- --scenario propagation \
      --probe-interval-us "$PROBE_INTERVAL_US"
    with_loadgen "propagation-same.$cluster.$rep" "$scheme" "$a" "$a" spin -- --scenario propagation \
      --probe-interval-us "$PROBE_INTERVAL_US"
  fi
  if wants reqrep-same; then
    with_loadgen "reqrep-same.$cluster.$rep" "$scheme" "$a" "$a" park -- --scenario reqrep
  fi
  if wants independent; then
    local name=$cluster-nats-py
    [[ $cluster == nats ]] && name=nats-py
    record "independent.$name.$rep" -- taskset -c "$LOADGEN_CPU" python3 bench/nats-independent/cluster_reqrep.py \
      --requester-server "${nats[0]}" --responder-server "${nats[1]}" --duration "$(seconds "$DURATION")" \
      --warmup "$(seconds "$WARMUP")" --payload "$PAYLOAD" --json "$out/runs/independent.$name.$rep.json"
  fi
}

for rep in $(seq 1 "$REPS"); do
  order="flit nats"
  (( rep % 2 == 0 )) && order="nats flit"
  for cluster in $order; do
    "start_$cluster" "$out/runs/$cluster.$rep"
    scenarios "$cluster" "$rep"
    stop_cluster
  done
  echo "[cluster] round $rep of $REPS done ($(( $(date +%s) - started )) s)" >&2
done

{
  echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- wall time: $(( $(date +%s) - started )) s"
} >> "$out/machine.md"
python3 bench/cluster_summary.py "$out"
