#!/usr/bin/env python3
"""Summarizes a bench/durable.sh run: medians over the rounds per
(measurement, configuration), and issue 11's five targets, each `met` or
`MISSED` with the measured value and the limit.

Usage: durable_summary.py OUTPUT_DIR   (reads OUTPUT_DIR/runs/*.json, writes OUTPUT_DIR/summary.md)
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
    label, _rep = os.path.basename(path)[: -len(".json")].rsplit(".", 1)
    with open(path) as handle:
        runs[label].append(json.load(handle))


def median(label, key):
    """Median over the rounds of a report field (`latency_us.p99` reaches into latency)."""
    values = []
    for report in runs.get(label, []):
        value = report
        for part in key.split("."):
            value = value[part]
        values.append(value)
    return statistics.median(values) if values else None


def spread(label, key):
    values = [report["latency_us"][key] if key.startswith("p") else report[key] for report in runs.get(label, [])]
    return (min(values), max(values)) if values else (None, None)


def number(value, digits=0):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


lines = ["# Durable publishing: flit streams vs NATS JetStream", ""]
lines.append("Medians over the rounds (see machine.md, commands.txt; every run's JSON, .hgrm and text in runs/).")
lines.append("Latency: publish -> acknowledgement, µs. `errors`: refused publishes; `lost`: never acknowledged.")
lines.append("")
floor_p50 = median("disk-floor", "p50")
floor_p99 = median("disk-floor", "p99")
lines.append("## Disk floor (4 KiB append + fdatasync, same directory as the servers)")
lines.append("")
lines.append("| p50 µs | p99 µs | p99.9 µs | rounds |")
lines.append("|---:|---:|---:|---:|")
lines.append(f"| {number(floor_p50)} | {number(floor_p99)} | {number(median('disk-floor', 'p999'))} | {len(runs.get('disk-floor', []))} |")
lines.append("")

kinds = ["flit-always", "flit-interval", "flit-memory", "nats-default", "nats-always"]
shape_names = {"1x1": "1 publisher, 1 in flight", "1x256": "1 publisher, 256 in flight",
               "64x4": "64 publishers x 4 in flight"}
for shape, title in shape_names.items():
    lines.append(f"## Acknowledged publishing, {title}")
    lines.append("")
    lines.append("| configuration | msg/s | p50 | p90 | p99 | p99.9 | max | p99 range | errors | lost | server CPU s | rounds |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for kind in kinds:
        label = f"durable-{shape}.{kind}"
        if label not in runs:
            continue
        low, high = spread(label, "p99")
        lines.append(
            f"| {kind} | {number(median(label, 'throughput_msgs_per_s'))} | {number(median(label, 'latency_us.p50'))} "
            f"| {number(median(label, 'latency_us.p90'))} | {number(median(label, 'latency_us.p99'))} "
            f"| {number(median(label, 'latency_us.p999'))} | {number(median(label, 'latency_us.max'))} "
            f"| {number(low)}-{number(high)} | {number(median(label, 'errors'))} | {number(median(label, 'lost'))} "
            f"| {number(median(label, 'server_cpu_s'), 2)} | {len(runs[label])} |"
        )
    lines.append("")

lines.append("## Replay (stored messages to one consumer, after a restart on the same data directory)")
lines.append("")
lines.append("| server | messages | msg/s | fill msg/s (256 in flight) | rounds |")
lines.append("|---|---:|---:|---:|---:|")
for kind in ["flit-always", "nats-default"]:
    label = f"replay.{kind}"
    if label in runs:
        lines.append(
            f"| {kind} | {number(median(label, 'received'))} | {number(median(label, 'throughput_msgs_per_s'))} "
            f"| {number(median(f'fill.{kind}', 'throughput_msgs_per_s'))} | {len(runs[label])} |"
        )
lines.append("")

lines.append("## Core pub/sub on a subject no stream captures (closed loop, window 4096)")
lines.append("")
lines.append("| flit | msg/s median | msg/s range | p99 µs | rounds |")
lines.append("|---|---:|---|---:|---:|")
for kind, name in [("flit-none", "no stream defined"), ("flit-always", "one stream defined")]:
    label = f"pubsub.{kind}"
    if label in runs:
        low, high = spread(label, "throughput_msgs_per_s")
        lines.append(
            f"| {name} | {number(median(label, 'throughput_msgs_per_s'))} | {number(low)}-{number(high)} "
            f"| {number(median(label, 'latency_us.p99'))} | {len(runs[label])} |"
        )
lines.append("")

targets = []


def target(name, value, limit, met, unit=""):
    if value is None or limit is None:
        targets.append(f"| {name} | not measured | | |")
        return
    verdict = "met" if met(value, limit) else "MISSED"
    targets.append(f"| {name} | {number(value, 1)}{unit} | {number(limit, 1)}{unit} | {verdict} |")


def ratio(a, b):
    return None if a is None or b is None else a * b


le = lambda value, limit: value <= limit
ge = lambda value, limit: value >= limit
d = "durable-"
target("1. always, 1x1: ack p50 <= 1.5 x disk floor p50", median(d + "1x1.flit-always", "latency_us.p50"),
       ratio(floor_p50, 1.5), le, " µs")
target("1. always, 1x1: ack p99 <= 0.5 x JetStream always p99", median(d + "1x1.flit-always", "latency_us.p99"),
       ratio(median(d + "1x1.nats-always", "latency_us.p99"), 0.5), le, " µs")
for shape in ["1x256", "64x4"]:
    flit = f"{d}{shape}.flit-always"
    nats_default, nats_always = f"{d}{shape}.nats-default", f"{d}{shape}.nats-always"
    target(f"2. always, {shape}: msg/s >= JetStream default", median(flit, "throughput_msgs_per_s"),
           median(nats_default, "throughput_msgs_per_s"), ge)
    target(f"2. always, {shape}: msg/s >= 20 x JetStream always", median(flit, "throughput_msgs_per_s"),
           ratio(median(nats_always, "throughput_msgs_per_s"), 20), ge)
    target(f"2. always, {shape}: ack p99 <= JetStream default p99", median(flit, "latency_us.p99"),
           median(nats_default, "latency_us.p99"), le, " µs")
    for kind in ["interval", "memory"]:
        flit = f"{d}{shape}.flit-{kind}"
        target(f"3. {kind}, {shape}: msg/s >= 2 x JetStream default", median(flit, "throughput_msgs_per_s"),
               ratio(median(nats_default, "throughput_msgs_per_s"), 2), ge)
        target(f"3. {kind}, {shape}: ack p99 <= 0.5 x JetStream default p99", median(flit, "latency_us.p99"),
               ratio(median(nats_default, "latency_us.p99"), 0.5), le, " µs")
target("4. replay of stored messages: msg/s >= 2 x JetStream", median("replay.flit-always", "throughput_msgs_per_s"),
       ratio(median("replay.nats-default", "throughput_msgs_per_s"), 2), ge)
none_low, none_high = spread("pubsub.flit-none", "throughput_msgs_per_s")
with_stream = median("pubsub.flit-always", "throughput_msgs_per_s")
without = median("pubsub.flit-none", "throughput_msgs_per_s")
if with_stream is not None and without is not None:
    # Within noise: the median with a stream lies inside the range of the runs
    # without one, or within 5% of their median.
    within = (none_low <= with_stream <= none_high) or abs(with_stream / without - 1) <= 0.05
    targets.append(
        f"| 5. core pub/sub unchanged with a stream defined (msg/s; within the no-stream range or 5%) "
        f"| {number(with_stream)} | {number(without)} (range {number(none_low)}-{number(none_high)}) "
        f"| {'met' if within else 'MISSED'} |"
    )
else:
    targets.append("| 5. core pub/sub unchanged with a stream defined | not measured | | |")

lines.append("## Issue 11 targets")
lines.append("")
lines.append("| target | flit | limit | verdict |")
lines.append("|---|---:|---:|---|")
lines.extend(targets)
lines.append("")
with open(os.path.join(out, "summary.md"), "w") as handle:
    handle.write("\n".join(lines))
print("\n".join(lines))
