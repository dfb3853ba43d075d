#!/usr/bin/env bash
# Starts a three-node flit cluster on this machine (node1.toml .. node3.toml),
# waits until every node is meshed, prints `flit cluster ls` from node 1, and
# stops all three on Ctrl-C (or when FLIT_CLUSTER_DEMO_SECONDS have passed).
#   deploy/cluster/start.sh            # uses target/release/flit, building it if missing
# Clients: native on 127.0.0.1:4224-4226, NATS on 127.0.0.1:4222/4322/4422
# (a NATS client given one of them learns the others from INFO connect_urls).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
flit=${FLIT:-$root/target/release/flit}
[[ -x $flit ]] || (cd "$root" && cargo build --release -p flit-router)
cd "$here"
[[ -s cluster.secret ]] || (umask 077 && openssl rand -hex 32 > cluster.secret)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for node in 1 2 3; do
  "$flit" serve --config "node$node.toml" > "node$node.out" 2> "node$node.log" &
  pids+=($!)
done
for node in 1 2 3; do
  for _ in $(seq 100); do grep -q "^flit ready" "node$node.out" 2>/dev/null && break; sleep 0.1; done
  head -1 "node$node.out"
done
for _ in $(seq 100); do
  [[ $("$flit" cluster ls --server 127.0.0.1:8222 | grep -c ' up ') == 3 ]] && break
  sleep 0.1
done
"$flit" cluster ls --server 127.0.0.1:8222
if [[ -n ${FLIT_CLUSTER_DEMO_SECONDS:-} ]]; then sleep "$FLIT_CLUSTER_DEMO_SECONDS"; else wait; fi
