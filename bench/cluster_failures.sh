#!/usr/bin/env bash
# Cluster failure timings (issue 13): runs the failure tests (real `flit`
# processes on loopback, fault proxies in front of the route listeners)
# RUNS times each in release mode, collects the `MEASURED name=value` lines
# they print to stderr, and writes a markdown table (median, min, max per
# measure) with the machine and the commands.
#
# These are timings of behaviour (detection of a dead or silent peer,
# re-mesh after a heal or restart, client failover), not throughput: each
# test asserts only generous bounds; the targets (detection within 2 s of
# silence, at once on EOF) are checked here.
#
# Usage: bench/cluster_failures.sh [OUTPUT_DIR]
#   (default bench-results/2026-11-30-cluster-failures)
# Env: RUNS (3), TESTS (the cluster_* failure test files), CARGO_BUILD_JOBS.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-bench-results/2026-11-30-cluster-failures}
RUNS=${RUNS:-3}
TESTS=${TESTS:-"cluster_node_death cluster_dead_node_routing cluster_silent_peer cluster_partition cluster_restart"}
mkdir -p "$out/runs"
commands=$out/commands.txt
echo "# $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ)" > "$commands"
rm -f "$out/failures.txt"
log() { echo "[cluster_failures] $*" >&2; }

test_arguments=()
for name in $TESTS; do
  test_arguments+=(--test "$name")
done
log "building (release)"
cargo test --release --locked -p flit-router "${test_arguments[@]}" --no-run >/dev/null 2>&1

for run in $(seq 1 "$RUNS"); do
  for name in $TESTS; do
    command="cargo test --release --locked -p flit-router --test $name -- --nocapture --test-threads 1"
    echo "$command" >> "$commands"
    log "run $run/$RUNS: $name"
    if ! $command > "$out/runs/$name-$run.log" 2>&1; then
      log "FAILED: $name (run $run), see $out/runs/$name-$run.log"
      echo "FAILED $name run $run" >> "$out/failures.txt"
    fi
  done
done

{
  echo "# Machine"
  echo
  echo '```'
  lscpu | grep -E '^(Architecture|CPU\(s\)|Model name|Thread|Core|Socket|Hypervisor)' || true
  free -g | head -2 || true
  uname -srm
  echo '```'
  echo
  echo "Load average when the table was written: $(cut -d' ' -f1-3 /proc/loadavg)."
} > "$out/machine.md"

# One "name value" per MEASURED line, from every run's log.
grep -ho 'MEASURED [a-z_]*=[0-9]*' "$out"/runs/*.log | sed 's/^MEASURED //; s/=/ /' > "$out/measured.txt" || true

python3 - "$out" "$RUNS" <<'EOF'
import collections, statistics, sys
out, runs = sys.argv[1], sys.argv[2]
values = collections.OrderedDict()
for line in open(f"{out}/measured.txt"):
    name, value = line.split()
    values.setdefault(name, []).append(int(value))
with open(f"{out}/table.md", "w") as table:
    table.write(f"# Cluster failure timings ({runs} runs of each test file)\n\n")
    table.write("| measure | samples | median ms | min ms | max ms |\n|---|---:|---:|---:|---:|\n")
    for name in sorted(values):
        samples = values[name]
        table.write(f"| {name} | {len(samples)} | {statistics.median(samples):g} | {min(samples)} | {max(samples)} |\n")
print(open(f"{out}/table.md").read())
EOF
if [[ -s $out/failures.txt ]]; then
  log "some runs failed: $(tr '\n' ';' < "$out/failures.txt")"
  exit 1
fi
