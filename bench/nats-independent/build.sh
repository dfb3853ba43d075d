#!/usr/bin/env bash
# Builds the independent NATS client (its own cargo workspace and Cargo.lock,
# outside flit's: the flit workspace's CI never compiles it) into
# target/nats-independent/ and prints the binary's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cargo build --release --locked --quiet --manifest-path "$root/bench/nats-independent/Cargo.toml" \
  --target-dir "$root/target/nats-independent" >&2
echo "$root/target/nats-independent/release/nats-independent"
