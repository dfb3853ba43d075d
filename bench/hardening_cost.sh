#!/usr/bin/env bash
# What TLS, authentication with per-subject permissions, and rate limiting
# cost on the message path, measured side by side in one run with the same
# load generator, rotating through the variants REPS times:
#   plain     - no TLS, no identities, no rate limit (the baseline)
#   tls       - TLS 1.3 (rustls, ECDSA P-256 certificate) on the listener
#   auth      - an identities file; the load generator's identity has publish
#               and subscribe allow lists (5 and 1 patterns) and deny lists (2 and 1)
#   ratelimit - a per-connection rate limit high enough never to trigger
#               (the bucket arithmetic on every publish, nothing refused)
#
#   bench/hardening_cost.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-bench-results/$(date +%Y-%m-%d)-hardening-cost}
source bench/side_by_side.sh
mkdir -p "$out/runs"
secrets=$(mktemp -d)
trap 'rm -rf "$secrets"' EXIT

# Certificates for this run only (not committed).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$secrets/ca.key" -out "$secrets/ca.crt" \
  -days 2 -subj "/CN=flit bench CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$secrets/server.key" -out "$secrets/server.csr" \
  -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$secrets/ext.cnf"
openssl x509 -req -in "$secrets/server.csr" -CA "$secrets/ca.crt" -CAkey "$secrets/ca.key" -CAcreateserial \
  -out "$secrets/server.crt" -days 2 -extfile "$secrets/ext.cnf" 2>/dev/null
token=$(openssl rand -hex 32)
hash=$(printf '%s\n' "$token" | "$flit" auth hash-token)
cat > "$secrets/identities.toml" <<IDENTITIES
[[identity]]
name = "loadgen"
token_sha256 = "$hash"
publish = { allow = ["orders.>", "billing.*.x", "loadgen.data", "loadgen.request", "loadgen.inbox.*"], deny = ["loadgen.secret.>", "admin.>"] }
subscribe = { allow = ["loadgen.>"], deny = ["loadgen.secret.>"] }
IDENTITIES

commands="$out/commands.txt"
: > "$commands"
{
  machine_header
  echo "- flit at $(git rev-parse --short HEAD); TLS 1.3 with an ECDSA P-256 certificate (openssl-made, this run only)"
} > "$out/machine.md"

# run VARIANT SCENARIO IDLE REP -- loadgen arguments
run() {
  local variant=$1 scenario=$2 idle=$3 rep=$4
  shift 5
  local port server_args=() client_args=()
  port=$(free_port)
  case $variant in
    tls) server_args=(--tls-cert "$secrets/server.crt" --tls-key "$secrets/server.key")
         client_args=(--tls-ca "$secrets/ca.crt") ;;
    auth) server_args=(--identities "$secrets/identities.toml"); client_args=(--token "$token") ;;
    ratelimit) server_args=(--rate-messages-per-second 100000000 --rate-bytes-per-second 100000000000) ;;
  esac
  taskset -c "$SERVER_CPU" "$flit" serve --listen "127.0.0.1:$port" --shards 1 --idle "$idle" --no-pin \
    "${server_args[@]}" > "$out/runs/server.log" 2>&1 &
  local server_pid=$!
  wait_for_port "$port"
  local name="$scenario.$variant.$rep"
  local command=("$loadgen" --target "flit://127.0.0.1:$port" --idle spin --cpu "$LOADGEN_CPU"
    --duration "$DURATION" --warmup "$WARMUP" --server-pid "$server_pid" --quiet
    --json "$out/runs/$name.json" "${client_args[@]}" "$@")
  echo "$name: ${command[*]}" | sed "s/$token/<token>/" >> "$commands"
  "${command[@]}" > "$out/runs/$name.txt" 2>&1 || echo "FAILED: $name" >&2
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

for rep in $(seq 1 "$REPS"); do
  for variant in plain tls auth ratelimit; do
    run "$variant" reqrep-spin spin "$rep" -- --scenario reqrep
    run "$variant" pubsub-throughput park "$rep" -- --scenario pubsub --window 4096
  done
  echo "rep $rep done" >&2
done
rm -f "$out/runs/server.log"
sed -i "s/$token/<token>/g" "$out"/runs/*.json "$out"/runs/*.txt 2>/dev/null || true

python3 - "$out" <<'PY' > "$out/summary.md"
import json, glob, os, statistics, sys
out = sys.argv[1]
runs = {}
for path in glob.glob(f"{out}/runs/*.json"):
    scenario, variant, _rep = os.path.basename(path)[:-5].rsplit(".", 2)
    runs.setdefault((scenario, variant), []).append(json.load(open(path)))
def median(scenario, variant, key):
    values = [r["latency_us"][key] if key.startswith("p") else r[key] for r in runs.get((scenario, variant), [])]
    return statistics.median(values) if values else float("nan")
variants = ["plain", "tls", "auth", "ratelimit"]
print("# Hardening cost: medians (every run listed below)\n")
print(open(f"{out}/machine.md").read())
print("| scenario | metric | " + " | ".join(variants) + " | " + " | ".join(f"{v}/plain" for v in variants[1:]) + " |")
print("|---|---|" + "---:|" * (2 * len(variants) - 1))
for scenario, keys in [("reqrep-spin", ["p50", "p99", "throughput_msgs_per_s"]),
                       ("pubsub-throughput", ["throughput_msgs_per_s", "p50", "p99"])]:
    for key in keys:
        values = [median(scenario, v, key) for v in variants]
        ratios = [f"{v / values[0]:.3f}" for v in values[1:]]
        print(f"| {scenario} | {key} | " + " | ".join(f"{v:,.1f}" for v in values) + " | " + " | ".join(ratios) + " |")
print("\nlatency in microseconds (request/reply: round trip; pub/sub: one way), throughput in messages/s.")
print("\nEvery run (reps in order):\n")
for (scenario, variant), reports in sorted(runs.items()):
    print(f"- {scenario} {variant}: p50 {[r['latency_us']['p50'] for r in reports]}, "
          f"msg/s {[round(r['throughput_msgs_per_s']) for r in reports]}, lost {[r['lost'] for r in reports]}, "
          f"errors {[r['errors'] for r in reports]}")
PY
cat "$out/summary.md"
