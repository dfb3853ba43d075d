#!/usr/bin/env bash
# What the live metrics cost on the message path, measured side by side in
# one run: the same loadgen scenarios against
#   before   - a flit built from the commit before the metrics existed,
#   after    - this tree's flit, metrics listener off,
#   scraped  - this tree's flit with --metrics, scraped every 100 ms during the run
#              (Prometheus scrapes every 15 s: this is 150x harsher).
# Runs rotate through the three servers REPS times, so drift on a shared
# machine hits all three alike. Medians are in summary.md.
#
#   bench/metrics_cost.sh BEFORE_FLIT_BINARY [OUT_DIR]
#   e.g. git worktree add /tmp/flit-before 517d8e8 &&
#        (cd /tmp/flit-before && cargo build --release -p flit-router) &&
#        bench/metrics_cost.sh /tmp/flit-before/target/release/flit
set -euo pipefail
cd "$(dirname "$0")/.."

before=${1:?usage: bench/metrics_cost.sh BEFORE_FLIT_BINARY [OUT_DIR]}
out=${2:-bench-results/$(date +%Y-%m-%d)-metrics-cost}
source bench/side_by_side.sh
after=$flit
mkdir -p "$out/runs"
commands="$out/commands.txt"
: > "$commands"
{
  machine_header
  echo "- before: $before ($("$before" --version 2>/dev/null || echo unknown)); after: $after at $(git rev-parse --short HEAD)"
} > "$out/machine.md"

server_pid=""
scraper_pid=""

# run VARIANT SCENARIO IDLE REP -- loadgen arguments
run() {
  local variant=$1 scenario=$2 idle=$3 rep=$4
  shift 5
  local binary=$after metrics=()
  [[ $variant == before ]] && binary=$before
  local port metrics_port
  port=$(free_port)
  if [[ $variant == scraped ]]; then
    metrics_port=$(free_port)
    metrics=(--metrics "127.0.0.1:$metrics_port")
  fi
  taskset -c "$SERVER_CPU" "$binary" serve --listen "127.0.0.1:$port" --shards 1 --idle "$idle" --no-pin \
    "${metrics[@]}" > "$out/runs/server.log" 2>&1 &
  server_pid=$!
  wait_for_port "$port"
  if [[ $variant == scraped ]]; then
    # The scraper shares the loadgen's CPU, not the shard's.
    taskset -c "$LOADGEN_CPU" bash -c "while true; do curl -s -o /dev/null http://127.0.0.1:$metrics_port/metrics; sleep 0.1; done" &
    scraper_pid=$!
  fi
  local name="$scenario.$variant.$rep"
  local command=("$loadgen" --target "flit://127.0.0.1:$port" --idle spin --cpu "$LOADGEN_CPU"
    --duration "$DURATION" --warmup "$WARMUP" --server-pid "$server_pid" --quiet
    --json "$out/runs/$name.json" "$@")
  echo "$name (server idle=$idle): ${command[*]}" >> "$commands"
  "${command[@]}" > "$out/runs/$name.txt" 2>&1 || echo "FAILED: $name" >&2
  if [[ -n $scraper_pid ]]; then kill "$scraper_pid" 2>/dev/null || true; wait "$scraper_pid" 2>/dev/null || true; scraper_pid=""; fi
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

for rep in $(seq 1 "$REPS"); do
  for variant in before after scraped; do
    run "$variant" reqrep-spin spin "$rep" -- --scenario reqrep
    run "$variant" pubsub-throughput park "$rep" -- --scenario pubsub --window 4096
    run "$variant" fanout-10 park "$rep" -- --scenario fanout --subscribers 10
  done
  echo "rep $rep done" >&2
done

python3 - "$out" <<'PY' > "$out/summary.md"
import json, glob, os, statistics, sys
out = sys.argv[1]
runs = {}
for path in glob.glob(f"{out}/runs/*.json"):
    scenario, variant, _rep = os.path.basename(path)[:-5].rsplit(".", 2)
    runs.setdefault((scenario, variant), []).append(json.load(open(path)))
def median(scenario, variant, key):
    values = [r["latency_us"][key] if key.startswith("p") else r[key] for r in runs.get((scenario, variant), [])]
    return statistics.median(values) if values else float("nan"), values
print("# Metrics cost: medians (all values listed in runs/)\n")
print(open(f"{out}/machine.md").read())
print("| scenario | metric | before | after | scraped | after/before | scraped/before |")
print("|---|---|---:|---:|---:|---:|---:|")
for scenario, keys in [("reqrep-spin", ["p50", "p99", "throughput_msgs_per_s"]),
                       ("pubsub-throughput", ["throughput_msgs_per_s", "p50", "p99"]),
                       ("fanout-10", ["throughput_msgs_per_s", "p99"])]:
    for key in keys:
        b, _ = median(scenario, "before", key)
        a, _ = median(scenario, "after", key)
        s, _ = median(scenario, "scraped", key)
        print(f"| {scenario} | {key} | {b:,.1f} | {a:,.1f} | {s:,.1f} | {a/b:.3f} | {s/b:.3f} |")
print("\nlatency in microseconds, throughput in messages/s (fanout: deliveries/s).")
print("\nEvery run (reps in order):\n")
for (scenario, variant), reports in sorted(runs.items()):
    print(f"- {scenario} {variant}: p50 {[r['latency_us']['p50'] for r in reports]}, "
          f"msg/s {[round(r['throughput_msgs_per_s']) for r in reports]}")
PY
cat "$out/summary.md"
