#!/usr/bin/env python3
"""Summarizes a bench/nats_listener.sh run: issue 12's targets for flit's NATS
listener, each with its measured value, limit and verdict.

Targets (the flit-loadgen figures are judged; async-nats's are printed beside them):
  1. request/reply through flit's NATS listener: p99 <= 0.5x nats-server's, p50 <= 0.7x;
  2. pub/sub 1->1 and fan-out 1->10 through it: msg/s >= 2x nats-server's;
  3. request/reply p50 through it <= 1.2x through flit's native listener (same process).
A limit made from a nats-server figure counts only where flit-loadgen's figure
for nats-server is within 10% of the independent client's (async-nats) for
the same metric (the rule of bench/compare.sh and docs/BENCHMARKS.md); the
verdict is then `uncounted`, whatever the ratio.

Usage: nats_listener_summary.py OUTPUT_DIR   (reads runs/*.json, runs/*.server.log,
       machine.md, invocation.txt; writes summary.md)
"""
import glob
import json
import os
import re
import statistics
import sys
from collections import defaultdict

AGREEMENT = 0.10
GROUPS = ("reqrep", "pubsub", "fanout-10")
TARGETS = ("flit-nats", "flit-native", "nats", "flit-nats-independent", "nats-independent")
LATENCIES = (("p50", "p50"), ("p99", "p99"), ("p99.9", "p999"), ("max", "max"))
THROUGHPUT = "throughput_msgs_per_s"
# Counters flit logs at shutdown that say the NATS listener misbehaved (or a client did).
TROUBLE = ("protocol_errors", "slow_consumer_evictions", "connections_refused", "no_responders")

out = sys.argv[1]
reports = defaultdict(list)
for path in sorted(glob.glob(os.path.join(out, "runs", "*.json"))):
    group, target, _rep = os.path.basename(path)[: -len(".json")].rsplit(".", 2)
    with open(path) as handle:
        reports[(group, target)].append(json.load(handle))


def values(group, target, key):
    found = reports.get((group, target), [])
    return [r["latency_us"][key] if key in dict(LATENCIES).values() else r[key] for r in found]


def server_busy(group, target):
    """Median share of one core the server used over each whole command (runs/*.server-cpu)."""
    shares = []
    for path in glob.glob(os.path.join(out, "runs", f"{group}.{target}.*.server-cpu")):
        ticks, per_second, wall_ns = (int(word) for word in open(path).read().split())
        shares.append(ticks / per_second / (wall_ns / 1e9))
    return statistics.median(shares) if shares else None


def median(group, target, key):
    found = values(group, target, key)
    return statistics.median(found) if found else None


def show(value):
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e4:
        return f"{value / 1e3:.0f} k"
    return f"{value:.1f}"


def ratio(numerator, denominator):
    return numerator / denominator if numerator is not None and denominator else None


def nats_agreement(group, key):
    """flit-loadgen's nats-server figure over async-nats's, minus one; None when either is missing."""
    ours = ratio(median(group, "nats", key), median(group, "nats-independent", key))
    return None if ours is None else ours - 1


def reproduce(group):
    with open(os.path.join(out, "invocation.txt")) as handle:
        invocation = handle.read().strip()
    return "`" + re.sub(r"SCENARIOS='[^']*'", f"SCENARIOS={group}", invocation) + "`"


rows = []


def target(name, group, key, against, factor, better):
    """One of issue 12's targets: flit-nats's median over `against`'s, limit `factor`."""
    flit, other = median(group, "flit-nats", key), median(group, against, key)
    measured = ratio(flit, other)
    if against == "nats":
        independent = ratio(median(group, "flit-nats-independent", key), median(group, "nats-independent", key))
        difference = nats_agreement(group, key)
        check = "no async-nats figure" if difference is None else f"{difference * 100:+.0f}%"
        counts = difference is not None and abs(difference) <= AGREEMENT
    else:
        independent, check, counts = None, "n/a (no nats-server figure)", True
    if measured is None:
        verdict = "not measured"
    elif not counts:
        verdict = "uncounted"
    else:
        met = measured <= factor if better == "lower" else measured >= factor
        verdict = "met" if met else "missed"
    limit = f"{'<=' if better == 'lower' else '>='} {factor}x"
    by_independent = "-" if independent is None else f"{independent:.2f}x"
    rows.append(f"| {name} | {show(flit)} / {show(other)} = {'-' if measured is None else f'{measured:.2f}x'} "
                f"| {limit} | {by_independent} | {check} | **{verdict}** | {reproduce(group)} |")


target("1. reqrep p99 (us), flit NATS / nats-server", "reqrep", "p99", "nats", 0.5, "lower")
target("1. reqrep p50 (us), flit NATS / nats-server", "reqrep", "p50", "nats", 0.7, "lower")
target("2. pub/sub 1->1 msg/s, flit NATS / nats-server", "pubsub", THROUGHPUT, "nats", 2, "higher")
target("2. fan-out 1->10 delivered msg/s, flit NATS / nats-server", "fanout-10", THROUGHPUT, "nats", 2, "higher")
target("3. reqrep p50 (us), flit NATS / flit native", "reqrep", "p50", "flit-native", 1.2, "lower")

lines = ["# flit's NATS listener vs nats-server and vs flit's native listener (issue 12)", ""]
machine = os.path.join(out, "machine.md")
if os.path.exists(machine):
    lines += open(machine).read().splitlines() + [""]
lines += [
    "## Targets", "",
    "`measured`: medians by flit-loadgen (flit's NATS listener / the reference = ratio). `async-nats`: the same",
    "ratio measured by the independent client (printed, not judged). `NATS check`: flit-loadgen's nats-server",
    f"figure against async-nats's; a ratio against nats-server counts only within {AGREEMENT * 100:.0f}%, else `uncounted`.",
    "", "| target | measured | limit | async-nats | NATS check | verdict | reproduce |", "|---|---|---|---|---|---|---|",
] + rows + [""]

for group in GROUPS:
    present = [t for t in TARGETS if (group, t) in reports]
    if not present:
        continue
    lines += [f"## {group}", "", "| target | n | msg/s | lost | errors | " + " | ".join(k for k, _ in LATENCIES)
              + " | p99 min-max | server busy |", "|---|---:|---:|---:|---:|" + "---:|" * len(LATENCIES) + "---|---:|"]
    for name in present:
        p99 = values(group, name, "p99")
        cells = [name, str(len(reports[(group, name)])), show(median(group, name, THROUGHPUT)),
                 f'{median(group, name, "lost"):.0f}', f'{median(group, name, "errors"):.0f}']
        cells += [show(median(group, name, key)) for _, key in LATENCIES]
        busy = server_busy(group, name)
        cells += [f"{show(min(p99))}-{show(max(p99))}", "-" if busy is None else f"{busy * 100:.0f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
lines += ["`server busy`: the server's CPU time over each whole command (connect, warm-up, measurement, drain) divided",
          "by its wall time, median over the runs: near 100% the server was the limit. Latency in µs (reqrep: round",
          "trip; pub/sub and fan-out: one way); msg/s counts deliveries.", ""]

# Anything that went wrong: a failed run (no JSON), lost deliveries, errors, or flit's trouble counters.
problems = []
for text in sorted(glob.glob(os.path.join(out, "runs", "*.txt"))):
    if not os.path.exists(text[: -len(".txt")] + ".json"):
        problems.append(f"- {os.path.basename(text)}: no report (the run failed; see the file)")
for (group, name), found in sorted(reports.items()):
    for index, report in enumerate(found):
        if report.get("lost") or report.get("errors"):
            problems.append(f"- {group}.{name} run {index + 1}: lost {report.get('lost')}, errors {report.get('errors')}")
for log in sorted(glob.glob(os.path.join(out, "runs", "*.flit*.server.log"))):
    counters = re.findall(r"\b(" + "|".join(TROUBLE) + r")=(\d+)", open(log).read())
    nonzero = [f"{counter}={count}" for counter, count in counters if count != "0"]
    if nonzero:
        problems.append(f"- {os.path.basename(log)}: {', '.join(nonzero)}")
lines += ["## Problems", ""] + (problems or ["none: every run reported, nothing lost, no errors, flit's trouble counters all 0"])
lines += ["", "Commands: `commands.txt` (every run, exactly). Raw runs: `runs/` (JSON, .hgrm, stdout, server logs)."]
with open(os.path.join(out, "summary.md"), "w") as handle:
    handle.write("\n".join(lines) + "\n")
print("\n".join(lines))
