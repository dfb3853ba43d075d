#!/usr/bin/env bash
# The ring data path (multishot receives into provided buffers and, since
# 42dcdf9, sends submitted through the ring) against readiness + recv + send,
# measured side by side in one run with one binary
# (`flit serve --receive ring|readiness`), alternating REPS times:
#   reqrep-park   one requester, one responder, --idle park: p50/p99 and the
#                 server's system calls per round trip (perf, raw_syscalls)
#   reqrep-spin   the same with --idle spin
#   pubsub        closed-loop 1 -> 1 throughput and system calls per delivery
# Modes: readiness, ring (both with park mode's default 50 us spin before
# parking), and ring-nospin: ring with --spin-before-park-us 0, where a pass's
# sends are submitted in the system call the shard parks in (park scenarios
# only; in spin mode the setting does nothing).
# System calls are counted over the server's whole run (warm-up and drain
# included) and divided by what its shard reports at exit (messages_in,
# deliveries), so they are per message the server really handled.
#
#   bench/receive_path.sh [OUT_DIR]       (REPS, DURATION, WARMUP as in side_by_side.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-bench-results/$(date +%Y-%m-%d)-receive-path}
REPS=${REPS:-3}
source bench/side_by_side.sh
command -v perf >/dev/null || { echo "perf is needed (linux-perf)" >&2; exit 2; }
mkdir -p "$out/runs"
commands="$out/commands.txt"
: > "$commands"
machine_header > "$out/machine.md"
echo "- flit $(git rev-parse --short HEAD), one binary, --receive ring vs --receive readiness" >> "$out/machine.md"

# run MODE SCENARIO IDLE REP -- loadgen arguments
run() {
  local mode=$1 scenario=$2 idle=$3 rep=$4
  shift 5
  local server_flags=(--receive "$mode")
  [ "$mode" = ring-nospin ] && server_flags=(--receive ring --spin-before-park-us 0)
  local port name server_pid perf_pid
  port=$(free_port)
  name="$scenario.$mode.$rep"
  taskset -c "$SERVER_CPU" "$flit" serve --listen "127.0.0.1:$port" --shards 1 --idle "$idle" --no-pin \
    "${server_flags[@]}" > "$out/runs/$name.server.log" 2>&1 &
  server_pid=$!
  wait_for_port "$port"
  perf stat -x, -e raw_syscalls:sys_enter -p "$server_pid" -o "$out/runs/$name.perf" &
  perf_pid=$!
  local command=("$loadgen" --target "flit://127.0.0.1:$port" --idle spin --cpu "$LOADGEN_CPU"
    --duration "$DURATION" --warmup "$WARMUP" --server-pid "$server_pid" --quiet
    --json "$out/runs/$name.json" "$@")
  echo "$name (server --idle $idle ${server_flags[*]}): ${command[*]}" >> "$commands"
  "${command[@]}" > "$out/runs/$name.txt" 2>&1 || echo "FAILED: $name" >&2
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

for rep in $(seq 1 "$REPS"); do
  for mode in readiness ring; do
    run "$mode" reqrep-park park "$rep" -- --scenario reqrep
    run "$mode" reqrep-spin spin "$rep" -- --scenario reqrep
    run "$mode" pubsub park "$rep" -- --scenario pubsub --window 4096
  done
  run ring-nospin reqrep-park park "$rep" -- --scenario reqrep
  run ring-nospin pubsub park "$rep" -- --scenario pubsub --window 4096
  echo "rep $rep done" >&2
done

python3 - "$out" <<'PY' > "$out/summary.md"
import glob, json, os, re, statistics, sys
out = sys.argv[1]
rows = {}
for path in sorted(glob.glob(f"{out}/runs/*.json")):
    scenario, mode, rep = os.path.basename(path)[:-5].rsplit(".", 2)
    base = path[:-5]
    report = json.load(open(path))
    perf = open(base + ".perf").read()
    syscalls = int(re.search(r"^(\d+),,raw_syscalls:sys_enter", perf, re.M).group(1))
    log = open(base + ".server.log").read()
    stats = lambda key: sum(int(value) for value in re.findall(rf"\b{key}=(\d+)", log))
    handled = stats("messages_in") / 2 if scenario.startswith("reqrep") else stats("deliveries")
    rows.setdefault((scenario, mode), []).append({
        "p50": report["latency_us"]["p50"], "p99": report["latency_us"]["p99"],
        "msgs": report["throughput_msgs_per_s"], "syscalls_per": syscalls / handled if handled else float("nan"),
    })
def median(scenario, mode, key):
    return statistics.median(row[key] for row in rows[(scenario, mode)])
print("# The ring data path vs readiness + recv/send (medians; every run in runs/)\n")
print(open(f"{out}/machine.md").read())
print("| scenario | metric | readiness | ring | ring / readiness | ring-nospin | ring-nospin / readiness |")
print("|---|---|---:|---:|---:|---:|---:|")
for scenario, keys in [("reqrep-park", ["p50", "p99", "syscalls_per"]), ("reqrep-spin", ["p50", "p99", "syscalls_per"]),
                       ("pubsub", ["msgs", "p50", "syscalls_per"])]:
    for key in keys:
        before, after = median(scenario, "readiness", key), median(scenario, "ring", key)
        line = f"| {scenario} | {key} | {before:,.3f} | {after:,.3f} | {after / before:.3f} |"
        if (scenario, "ring-nospin") in rows:
            nospin = median(scenario, "ring-nospin", key)
            line += f" {nospin:,.3f} | {nospin / before:.3f} |"
        else:
            line += " - | - |"
        print(line)
print("\nlatency in microseconds; msgs in messages/s; syscalls_per: server system calls per round trip (reqrep) "
      "or per delivered message (pubsub).\n\nEvery run (reps in order):\n")
for (scenario, mode), values in sorted(rows.items()):
    print(f"- {scenario} {mode}: " + "; ".join(
        f"p50 {row['p50']:.1f} p99 {row['p99']:.1f} msg/s {row['msgs']:,.0f} syscalls/op {row['syscalls_per']:.3f}"
        for row in values))
PY
cat "$out/summary.md"
