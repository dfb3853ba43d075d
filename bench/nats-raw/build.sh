#!/usr/bin/env bash
# Builds nats-raw (its own cargo workspace, no dependencies) into
# target/nats-raw/ and prints the binary's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cargo build --release --locked --quiet --manifest-path "$root/bench/nats-raw/Cargo.toml" \
  --target-dir "$root/target/nats-raw" >&2
echo "$root/target/nats-raw/release/nats-raw"
