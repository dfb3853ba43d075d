#!/usr/bin/env python3
"""Summarizes a bench/compare.sh run: medians per (group, target) over the
repetitions, ratios flit/NATS and flit/floor, and the issue's targets.

The NATS check (issue 10): a group may hold, beside flit-loadgen's `nats`
runs, runs of an independent client (`nats-independent`, the async-nats
crate, bench/nats-independent). A flit / NATS ratio counts only where the
load generator's NATS figure is within 10% of the independent client's for
the same metric; where they disagree by more the ratio is printed and marked
`not counted`, and where the group has no independent figure for it,
`unchecked`. bench/nats_instrument.sh uses the same check to compare load
generator builds (targets `nats`, `nats-before`, ...) with the independent client.

Usage: summarize.py [--no-targets] OUTPUT_DIR   (reads OUTPUT_DIR/runs/*.json, writes OUTPUT_DIR/summary.md;
       --no-targets leaves out the issue-3 targets and shard scaling, for runs that are not bench/compare.sh's)
"""
import glob
import json
import os
import statistics
import sys
from collections import defaultdict

targets_wanted = "--no-targets" not in sys.argv[1:]
out = [argument for argument in sys.argv[1:] if argument != "--no-targets"][0]
runs = defaultdict(list)
for path in sorted(glob.glob(os.path.join(out, "runs", "*.json"))):
    name = os.path.basename(path)[: -len(".json")]
    label, _rep = name.rsplit(".", 1)
    group, target = label.split(".", 1)
    with open(path) as handle:
        runs[(group, target)].append(json.load(handle))

KEYS = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p999"), ("p99.99", "p9999"), ("max", "max")]
INDEPENDENT = "nats-independent"
# bench/nats_instrument.sh's plainest raw-protocol client: a cross-check printed beside the rule, not part of it.
RAW = "nats-raw"
# How far the load generator's NATS figure may be from the independent client's for a ratio to count.
AGREEMENT = 0.10


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


def nats_check(group, key, target="nats", reference=INDEPENDENT):
    """(state, loadgen, independent, difference) for one metric of one group:
    state is "agrees" (within AGREEMENT), "disagrees" or "unchecked"."""
    ours, theirs = stat(group, target, key), stat(group, reference, key)
    if ours is None or not theirs:
        return "unchecked", ours, theirs, None
    difference = ours / theirs - 1
    return ("agrees" if abs(difference) <= AGREEMENT else "disagrees"), ours, theirs, difference


def counted(group, key):
    """How a flit / NATS ratio on `key` stands under the NATS check, as a suffix."""
    state = nats_check(group, key)[0]
    return {"agrees": "", "disagrees": " (not counted)", "unchecked": " (unchecked)"}[state]


def check_line(group, target, reference=INDEPENDENT):
    """One line: the load generator's NATS figures against the independent client's."""
    parts = []
    for label, key in (("msg/s", "throughput_msgs_per_s"), ("p50", "p50"), ("p99", "p99")):
        state, ours, theirs, difference = nats_check(group, key, target, reference)
        if state == "unchecked":
            continue
        verdict = "agree" if state == "agrees" else "DISAGREE"
        parts.append(f"{label} {fmt(ours)} vs {fmt(theirs)} ({difference * 100:+.0f}%, {verdict})")
    if not parts:
        return None
    if reference == RAW:
        return f"Cross-check, `{target}` vs `{RAW}` (raw protocol, not part of the rule): " + ", ".join(parts)
    busy = median([r.get("client_cpu_s", None) and r["client_cpu_s"] / r["duration_s"] for r in runs[(group, INDEPENDENT)]])
    note = f"; the independent client was busy {busy * 100:.0f}% of its core" if busy is not None else ""
    return (f"NATS check, `{target}` vs `{INDEPENDENT}` (async-nats), "
            f"within {AGREEMENT * 100:.0f}% to count: " + ", ".join(parts) + note)


lines = ["# flit vs NATS vs the loopback floor", ""]
machine = os.path.join(out, "machine.md")
if os.path.exists(machine):
    lines += open(machine).read().splitlines() + [""]
lines += [
    "Medians over the repetitions (n = runs); `spread` is min-max of p99 over the runs.",
    "Latency in microseconds: round trip for reqrep/conns, one way for pub/sub. NATS cannot spin:",
    "in the `-spin` groups only flit and the echo floor spin; NATS is measured by a spinning load generator.",
    f"`{INDEPENDENT}` is NATS measured by an independent client (async-nats); a flit / NATS ratio counts only",
    f"where flit-loadgen's NATS figure is within {AGREEMENT * 100:.0f}% of it: `(not counted)` where they disagree by more,",
    "`(unchecked)` where the group has no independent figure for that metric.",
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
                mark = (lambda key: counted(group, key)) if other == "nats" else (lambda key: "")
                ratios = []
                for label, key in KEYS[:5]:
                    a, b = stat(group, flit, key), stat(group, other, key)
                    ratios.append(f"{label} {a / b:.2f}x{mark(key)}" if a and b else f"{label} -")
                ta, tb = stat(group, flit, "throughput_msgs_per_s"), stat(group, other, "throughput_msgs_per_s")
                if ta and tb:
                    ratios.append(f"msg/s {ta / tb:.2f}x{mark('throughput_msgs_per_s')}")
                lines.append(f"\nflit / {name}: " + ", ".join(ratios))
    for reference in (INDEPENDENT, RAW):
        if reference not in targets:
            continue
        for target in targets:
            if target.startswith("nats") and target not in (INDEPENDENT, RAW):
                line = check_line(group, target, reference)
                if line:
                    lines.append("\n" + line)
    lines.append("")

# The server's system calls per message (issue 10): runs/NAME.syscalls, written by
# `perf stat -e raw_syscalls:sys_enter` over the measured window, divided by the messages
# (round trips for reqrep, deliveries for pub/sub) the load generator counted per second.
def syscalls_per_message(group, target):
    values = []
    for path in sorted(glob.glob(os.path.join(out, "runs", f"{group}.{target}.*.syscalls"))):
        result = path[: -len(".syscalls")] + ".json"
        if not os.path.exists(result):
            continue
        count = window = None
        for line in open(path):
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[2].startswith("raw_syscalls:sys_enter") and parts[0].isdigit():
                count = int(parts[0])
            elif parts[0] == "window_s":
                window = float(parts[1])
        with open(result) as handle:
            rate = json.load(handle).get("throughput_msgs_per_s")
        if count is not None and window and rate:
            values.append(count / (rate * window))
    return median(values)


syscall_rows = []
for group, target in sorted(runs):
    value = syscalls_per_message(group, target)
    if value is not None:
        syscall_rows.append(f"| {group} | {target} | {value:.3f} |")
if syscall_rows:
    lines += ["## Server system calls per message (issue 10)", "",
              "`perf stat -e raw_syscalls:sys_enter -p SERVER` over the measured window of the `syscalls` group's runs "
              "(their own runs: attaching perf disturbs latency tails), divided by the messages of that window (round "
              "trips for reqrep, deliveries for pub/sub); medians over the runs.", "",
              "| group | target | system calls per message |", "|---|---|---:|"] + syscall_rows + [""]

# The issue's targets.
checks = []


def check(name, value, limit, better="lower", nats=None):
    """One target; `nats` = (group, key) when the limit comes from a NATS figure, which must pass the NATS check."""
    figure = "-"
    if nats:
        state, ours, theirs, difference = nats_check(*nats)
        figure = {"agrees": f"agrees ({difference * 100:+.0f}%)" if difference is not None else "",
                  "disagrees": f"DISAGREES ({difference * 100:+.0f}%): not counted" if difference is not None else "",
                  "unchecked": "unchecked"}[state]
    if value is None or limit is None:
        checks.append(f"| {name} | - | - | not measured | {figure} |")
        return
    ok = value <= limit if better == "lower" else value >= limit
    checks.append(f"| {name} | {fmt(value, 2)} | {'<=' if better == 'lower' else '>='} {fmt(limit, 2)} | {'met' if ok else 'MISSED'} | {figure} |")


def times(value, factor):
    return None if value is None else value * factor


check("1. reqrep spin p50 (us) <= 1.5 x 2 x echo-spin p50", stat("reqrep-spin", "flit", "p50"), times(stat("reqrep-spin", "echo", "p50"), 3.0))
check("1. reqrep spin p99 (us) <= 0.25 x NATS p99", stat("reqrep-spin", "flit", "p99"), times(stat("reqrep-spin", "nats", "p99"), 0.25), nats=("reqrep-spin", "p99"))
check("1. reqrep spin p99.9 (us) <= 0.3 x NATS p99.9", stat("reqrep-spin", "flit", "p999"), times(stat("reqrep-spin", "nats", "p999"), 0.3), nats=("reqrep-spin", "p999"))
check("2. reqrep park p50 (us) <= 1.1 x 2 x echo-park p50", stat("reqrep-park", "flit", "p50"), times(stat("reqrep-park", "echo", "p50"), 2.2))
check("2. reqrep park p99.9 (us) <= 0.7 x NATS p99.9", stat("reqrep-park", "flit", "p999"), times(stat("reqrep-park", "nats", "p999"), 0.7), nats=("reqrep-park", "p999"))
check("3. pubsub msg/s >= 3 x NATS", stat("pubsub-throughput", "flit", "throughput_msgs_per_s"), times(stat("pubsub-throughput", "nats", "throughput_msgs_per_s"), 3.0), "higher",
      nats=("pubsub-throughput", "throughput_msgs_per_s"))
check("3. pubsub lost == 0", stat("pubsub-throughput", "flit", "lost"), 0)
for k in ("10", "100"):
    check(f"4. fanout 1->{k} delivered msg/s >= 3 x NATS", stat(f"fanout-{k}", "flit", "throughput_msgs_per_s"), times(stat(f"fanout-{k}", "nats", "throughput_msgs_per_s"), 3.0), "higher",
          nats=(f"fanout-{k}", "throughput_msgs_per_s"))
for rate in ("100k", "500k"):
    check(f"5. open loop {rate} p99.9 (us) <= 0.3 x NATS", stat(f"openloop-{rate}", "flit", "p999"), times(stat(f"openloop-{rate}", "nats", "p999"), 0.3), nats=(f"openloop-{rate}", "p999"))
    check(f"5. open loop {rate} lost == 0", stat(f"openloop-{rate}", "flit", "lost"), 0)
check("6. RSS per idle connection (KiB) <= 8", rss_per_connection("conns-10000", "flit", 10000), 8.0)
check("6. reqrep p99 with 10k conns <= 1.5 x without", stat("conns-10000", "flit", "p99"), times(stat("conns-0", "flit", "p99"), 1.5))

issue_3_checks = checks
checks = []
check("1. pubsub msg/s >= 3 x NATS (flit park)", stat("pubsub-throughput", "flit", "throughput_msgs_per_s"),
      times(stat("pubsub-throughput", "nats", "throughput_msgs_per_s"), 3.0), "higher", nats=("pubsub-throughput", "throughput_msgs_per_s"))
check("1. pubsub msg/s >= 3 x NATS (flit spin)", stat("pubsub-throughput", "flit-spin", "throughput_msgs_per_s"),
      times(stat("pubsub-throughput", "nats", "throughput_msgs_per_s"), 3.0), "higher", nats=("pubsub-throughput", "throughput_msgs_per_s"))
for k in ("10", "100"):
    check(f"2. fanout 1->{k} delivered msg/s >= 3 x NATS", stat(f"fanout-{k}", "flit", "throughput_msgs_per_s"),
          times(stat(f"fanout-{k}", "nats", "throughput_msgs_per_s"), 3.0), "higher", nats=(f"fanout-{k}", "throughput_msgs_per_s"))
check("3. reqrep spin p50 (us) <= 1.3 x 2 x echo-spin p50", stat("reqrep-spin", "flit", "p50"), times(stat("reqrep-spin", "echo", "p50"), 2.6))
check("3. reqrep spin p99 (us) <= 0.25 x NATS p99", stat("reqrep-spin", "flit", "p99"), times(stat("reqrep-spin", "nats", "p99"), 0.25), nats=("reqrep-spin", "p99"))
check("3. reqrep spin p99.9 (us) <= 0.3 x NATS p99.9", stat("reqrep-spin", "flit", "p999"), times(stat("reqrep-spin", "nats", "p999"), 0.3), nats=("reqrep-spin", "p999"))
check("4. reqrep park p50 (us) <= 1.1 x 2 x echo-park p50", stat("reqrep-park", "flit", "p50"), times(stat("reqrep-park", "echo", "p50"), 2.2))
check("4. the same, spin_before_park_us = 0", stat("reqrep-park", "flit-nospin", "p50"), times(stat("reqrep-park", "echo", "p50"), 2.2))
check("5. reqrep p99 with 10k idle conns <= 1.5 x without", stat("conns-10000", "flit", "p99"), times(stat("conns-0", "flit", "p99"), 1.5))
check("5. RSS per idle connection (KiB) <= 1", rss_per_connection("conns-10000", "flit", 10000), 1.0)
check("6. server system calls per reqrep round trip, park <= 2", syscalls_per_message("syscalls", "reqrep-park"), 2.0)
check("6. the same, spin_before_park_us = 0", syscalls_per_message("syscalls", "reqrep-park-nospin"), 2.0)
issue_10_checks = checks

if targets_wanted:
    lines += ["## Targets (issue 10)", "",
              "Target 6's pub/sub figure and every other system-call count are in the table above; target 7 (the clients) "
              "is bench/client_latency.sh's.", "",
              "| target | flit | limit | result | NATS figure |", "|---|---|---|---|---|"] + issue_10_checks + [""]
    checks = issue_3_checks
    lines += ["## Targets (issue 3)", "",
              f"`NATS figure`: a limit made from a NATS figure counts only where flit-loadgen's NATS figure is within "
              f"{AGREEMENT * 100:.0f}% of the independent client's (issue 10).", "",
              "| target | flit | limit | result | NATS figure |", "|---|---|---|---|---|"] + checks + [""]
    one, two = stat("shard-scaling-1", "flit", "throughput_msgs_per_s"), stat("shard-scaling-2", "flit", "throughput_msgs_per_s")
    lines += ["## Shard scaling (recorded, not a target on 2 cores)", "",
              f"pubsub closed loop: --shards 1: {fmt(one)} msg/s; --shards 2: {fmt(two)} msg/s "
              "(with 2 shards the server shares cpu 1 with the load generator).", ""]
lines += ["Commands: `commands.txt`. Raw runs: `runs/` (JSON, .hgrm, stdout). Plots: `*.svg` (first repetition of each target)."]
with open(os.path.join(out, "summary.md"), "w") as handle:
    handle.write("\n".join(lines) + "\n")
print("\n".join(lines))
