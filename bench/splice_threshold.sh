#!/usr/bin/env bash
# Where sending a payload by reference (a vectored SENDMSG) starts to beat
# copying it into the subscriber's write buffer (issue 10, "Sends on the
# ring"): fan-out 1 -> SUBSCRIBERS, closed loop, one shard, at several payload
# sizes, with
#   copied   - --splice-payload-bytes-min 4294967295 (every payload copied),
#   spliced  - --splice-payload-bytes-min 1 (every payload by reference),
# alternated within each repetition on the same build, so drift on a shared
# machine hits both alike. Reports deliveries/s, delivered MB/s and the
# server's CPU per delivery (ns), medians over REPS (summary.md).
#
#   bench/splice_threshold.sh [OUT_DIR]
#   PAYLOADS="1024 4096 16384 24576 32768 65536" SUBSCRIBERS=10 REPS=3 DURATION=3s
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-bench-results/$(date +%Y-%m-%d)-splice-threshold}
REPS=${REPS:-3}
DURATION=${DURATION:-3s}
PAYLOADS=${PAYLOADS:-"1024 4096 16384 24576 32768 65536"}
SUBSCRIBERS=${SUBSCRIBERS:-10}
source bench/side_by_side.sh
mkdir -p "$out/runs"
commands="$out/commands.txt"
: > "$commands"
{
  machine_header
  echo "- flit: $(git rev-parse --short HEAD); fan-out 1 -> $SUBSCRIBERS, park, payloads: $PAYLOADS"
} > "$out/machine.md"

# run VARIANT PAYLOAD REP
run() {
  local variant=$1 payload=$2 rep=$3 minimum=4294967295
  [[ $variant == spliced ]] && minimum=1
  local port
  port=$(free_port)
  taskset -c "$SERVER_CPU" "$flit" serve --listen "127.0.0.1:$port" --shards 1 --no-pin \
    --splice-payload-bytes-min "$minimum" --max-payload 1048576 > "$out/runs/server.log" 2>&1 &
  local server_pid=$!
  wait_for_port "$port"
  # At most 4 MiB outstanding per subscriber (window x payload), below the
  # 8 MiB pending limit: a bigger window makes the one-core load generator a
  # slow consumer that both variants may evict.
  local window=$(( 4194304 / payload ))
  (( window > 1024 )) && window=1024
  local name="fanout-$payload.$variant.$rep"
  local command=("$loadgen" --target "flit://127.0.0.1:$port" --idle spin --cpu "$LOADGEN_CPU"
    --duration "$DURATION" --warmup "$WARMUP" --server-pid "$server_pid" --quiet
    --json "$out/runs/$name.json" --scenario fanout --subscribers "$SUBSCRIBERS" --payload "$payload" --window "$window")
  echo "$name: ${command[*]}" >> "$commands"
  "${command[@]}" > "$out/runs/$name.txt" 2>&1 || echo "FAILED: $name" >&2
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

for rep in $(seq 1 "$REPS"); do
  for payload in $PAYLOADS; do
    for variant in copied spliced; do
      run "$variant" "$payload" "$rep"
    done
  done
  echo "rep $rep done" >&2
done

python3 - "$out" <<'PY' > "$out/summary.md"
import json, glob, os, statistics, sys
out = sys.argv[1]
runs = {}
for path in glob.glob(f"{out}/runs/*.json"):
    scenario, variant, _rep = os.path.basename(path)[:-5].rsplit(".", 2)
    runs.setdefault((int(scenario.split("-")[1]), variant), []).append(json.load(open(path)))
print(open(f"{out}/machine.md").read())
print("Medians over the repetitions (min..max). cpu ns/delivery: the server's CPU time over the run")
print("(warm-up included) divided by the deliveries counted in the measured window: compare within a row only.\n")
print("| payload B | variant | n | deliveries/s (M) | delivered MB/s | server cpu ns / delivery | spliced / copied deliveries/s |")
print("|---:|---|---:|---:|---:|---:|---:|")
def median(values):
    return statistics.median(values)
for payload in sorted({key[0] for key in runs}):
    base = None
    for variant in ("copied", "spliced"):
        group = runs.get((payload, variant), [])
        if not group:
            continue
        rates = [run["throughput_msgs_per_s"] for run in group]
        megabytes = [run["throughput_mb_per_s"] for run in group]
        cpu = [run["server_cpu_s"] * 1e9 / max(run["received"], 1) for run in group]
        ratio = ""
        if variant == "copied":
            base = median(rates)
        elif base:
            ratio = f"{median(rates) / base:.2f}x"
        print(f"| {payload} | {variant} | {len(group)} | {median(rates)/1e6:.2f} ({min(rates)/1e6:.2f}..{max(rates)/1e6:.2f}) "
              f"| {median(megabytes):.0f} | {median(cpu):.0f} ({min(cpu):.0f}..{max(cpu):.0f}) | {ratio} |")
print("\nCommands: commands.txt; raw runs: runs/.")
PY
cat "$out/summary.md"
