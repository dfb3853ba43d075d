#!/usr/bin/env python3
"""Summarizes a bench/compare.sh run: medians per (group, target) over the
repetitions, ratios flit/NATS and flit/floor, and the issue's targets.

Usage: summarize.py OUTPUT_DIR   (reads OUTPUT_DIR/runs/*.json, writes OUTPUT_DIR/summary.md)
"""
import glob
import json
import os
import statistics
import sys
from collections import defaultdict

out = sys.argv[1]
runs = defaultdict(list)
for path in sorted(glob.glob(os.path.join(out, "runs", "*.json"))):
    name = os.path.basename(path)[: -len(".json")]
    label, _rep = name.rsplit(".", 1)
    group, target = label.split(".", 1)
    with open(path) as handle:
        runs[(group, target)].append(json.load(handle))

KEYS = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p999"), ("p99.99", "p9999"), ("max", "max")]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (None, None)


def stat(group, target, key):
    reports = runs.get((group, target), [])
    if key in dict(KEYS).values():
        return median([r["latency_us"][key] for r in reports])
    return median([r.get(key) for r in reports])


def rss_per_connection(group, target, connections):
    reports = runs.get((group, target), [])
    values = []
    for r in reports:
        if r.get("server_rss_kib_after") is not None and r.get("server_rss_kib_before") is not None and connections:
            values.append((r["server_rss_kib_after"] - r["server_rss_kib_before"]) / connections)
    return median(values)


def fmt(value, digits=1):
    if value is None:
        return "-"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f} M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.0f} k"
    return f"{value:.{digits}f}"


lines = ["# flit vs NATS vs the loopback floor", ""]
machine = os.path.join(out, "machine.md")
if os.path.exists(machine):
    lines += open(machine).read().splitlines() + [""]
lines += [
    "Medians over the repetitions (n = runs); `spread` is min-max of p99 over the runs.",
    "Latency in microseconds: round trip for reqrep/conns, one way for pub/sub. NATS cannot spin:",
    "in the `-spin` groups only flit and the echo floor spin; NATS is measured by a spinning load generator.",
    "",
]

groups = sorted({group for group, _ in runs})
for group in groups:
    targets = sorted({t for g, t in runs if g == group})
    lines += [f"## {group}", "", "| target | n | msg/s | lost | errors | " + " | ".join(k for k, _ in KEYS) + " | p99 spread | server cpu s |",
              "|---|---|---|---|---|" + "---|" * len(KEYS) + "---|---|"]
    for target in targets:
        reports = runs[(group, target)]
        low, high = spread([r["latency_us"]["p99"] for r in reports])
        row = [target, str(len(reports)), fmt(stat(group, target, "throughput_msgs_per_s")),
               fmt(stat(group, target, "lost"), 0), fmt(stat(group, target, "errors"), 0)]
        row += [fmt(stat(group, target, key)) for _, key in KEYS]
        row += [f"{fmt(low)}-{fmt(high)}", fmt(stat(group, target, "server_cpu_s"), 2)]
        lines.append("| " + " | ".join(row) + " |")
    flit = "flit" if ("flit" in targets) else None
    if flit:
        for other, name in (("nats", "NATS"), ("echo", "floor")):
            if other in targets:
                ratios = []
                for label, key in KEYS[:5]:
                    a, b = stat(group, flit, key), stat(group, other, key)
                    ratios.append(f"{label} {a / b:.2f}x" if a and b else f"{label} -")
                ta, tb = stat(group, flit, "throughput_msgs_per_s"), stat(group, other, "throughput_msgs_per_s")
                if ta and tb:
                    ratios.append(f"msg/s {ta / tb:.2f}x")
                lines.append(f"\nflit / {name}: " + ", ".join(ratios))
    lines.append("")

# The targets.
checks = []


def check(name, value, limit, better="lower"):
    if value is None or limit is None:
        checks.append(f"| {name} | - | - | not measured |")
        return
    ok = value <= limit if better == "lower" else value >= limit
    checks.append(f"| {name} | {fmt(value, 2)} | {'<=' if better == 'lower' else '>='} {fmt(limit, 2)} | {'met' if ok else 'MISSED'} |")


def times(value, factor):
    return None if value is None else value * factor


check("1. reqrep spin p50 (us) <= 1.5 x 2 x echo-spin p50", stat("reqrep-spin", "flit", "p50"), times(stat("reqrep-spin", "echo", "p50"), 3.0))
check("1. reqrep spin p99 (us) <= 0.25 x NATS p99", stat("reqrep-spin", "flit", "p99"), times(stat("reqrep-spin", "nats", "p99"), 0.25))
check("1. reqrep spin p99.9 (us) <= 0.3 x NATS p99.9", stat("reqrep-spin", "flit", "p999"), times(stat("reqrep-spin", "nats", "p999"), 0.3))
check("2. reqrep park p50 (us) <= 1.1 x 2 x echo-park p50", stat("reqrep-park", "flit", "p50"), times(stat("reqrep-park", "echo", "p50"), 2.2))
check("2. reqrep park p99.9 (us) <= 0.7 x NATS p99.9", stat("reqrep-park", "flit", "p999"), times(stat("reqrep-park", "nats", "p999"), 0.7))
check("3. pubsub msg/s >= 3 x NATS", stat("pubsub-throughput", "flit", "throughput_msgs_per_s"), times(stat("pubsub-throughput", "nats", "throughput_msgs_per_s"), 3.0), "higher")
check("3. pubsub lost == 0", stat("pubsub-throughput", "flit", "lost"), 0)
for k in ("10", "100"):
    check(f"4. fanout 1->{k} delivered msg/s >= 3 x NATS", stat(f"fanout-{k}", "flit", "throughput_msgs_per_s"), times(stat(f"fanout-{k}", "nats", "throughput_msgs_per_s"), 3.0), "higher")
for rate in ("100k", "500k"):
    check(f"5. open loop {rate} p99.9 (us) <= 0.3 x NATS", stat(f"openloop-{rate}", "flit", "p999"), times(stat(f"openloop-{rate}", "nats", "p999"), 0.3))
    check(f"5. open loop {rate} lost == 0", stat(f"openloop-{rate}", "flit", "lost"), 0)
check("6. RSS per idle connection (KiB) <= 8", rss_per_connection("conns-10000", "flit", 10000), 8.0)
check("6. reqrep p99 with 10k conns <= 1.5 x without", stat("conns-10000", "flit", "p99"), times(stat("conns-0", "flit", "p99"), 1.5))

lines += ["## Targets (issue 3)", "", "| target | flit | limit | result |", "|---|---|---|---|"] + checks + [""]
one, two = stat("shard-scaling-1", "flit", "throughput_msgs_per_s"), stat("shard-scaling-2", "flit", "throughput_msgs_per_s")
lines += ["## Shard scaling (recorded, not a target on 2 cores)", "",
          f"pubsub closed loop: --shards 1: {fmt(one)} msg/s; --shards 2: {fmt(two)} msg/s "
          "(with 2 shards the server shares cpu 1 with the load generator).", ""]
lines += ["Commands: `commands.txt`. Raw runs: `runs/` (JSON, .hgrm, stdout). Plots: `*.svg` (first repetition of each target)."]
with open(os.path.join(out, "summary.md"), "w") as handle:
    handle.write("\n".join(lines) + "\n")
print("\n".join(lines))
