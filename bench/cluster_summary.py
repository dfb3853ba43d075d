#!/usr/bin/env python3
"""Summarizes a bench/cluster.sh run: issue 13's cluster targets, a three-node
flit cluster against a three-node NATS cluster, medians over the repetitions.

Targets (flit-loadgen's figures, flit:// against the flit cluster, nats://
against the NATS cluster; senders on node A, receivers on node B):
  1. cross-node request/reply: p50 and p99 <= 0.5x the NATS cluster's;
  2. cross-node pub/sub 1->1 msg/s >= 2x the NATS cluster's;
  3. interest propagation (subscribe + flush on B, publish on A): flit's
     p99 <= 1 ms; the first publishes lost are counted for both (no target);
  4. same-node request/reply on the cluster: a reference, no target.
The independent client (nats-py, cross-node request/reply against flit's NATS
listeners and the NATS cluster) is printed beside them, not judged: its
asyncio overhead dominates its absolute figures.

Usage: cluster_summary.py OUTPUT_DIR   (reads runs/*.json, runs/*.server-cpu,
       machine.md, invocation.txt; writes summary.md and prints it)
"""
import glob
import json
import os
import statistics
import sys
from collections import defaultdict

THROUGHPUT = "throughput_msgs_per_s"
LATENCIES = ("p50", "p99", "p999", "max")
SCENARIOS = (
    ("reqrep-cross", "request/reply, requester on A, responder on B (round trip, us)"),
    ("pubsub-cross", "pub/sub 1->1, publisher on A, subscriber on B (one way, us)"),
    ("propagation-cross", "interest propagation: subscribe + flush on B, publish on A (flush -> first arrival, us)"),
    ("propagation-same", "interest propagation on one node: subscriber and publisher on A (reference)"),
    ("reqrep-same", "request/reply, requester and responder on A (reference)"),
    ("independent", "nats-py request/reply, requester on A, responder on B (round trip, us)"),
)
TARGETS = ("flit", "flit-nats", "nats", "flit-nats-py", "nats-py")

out = sys.argv[1]
reports = defaultdict(list)
for path in sorted(glob.glob(os.path.join(out, "runs", "*.json"))):
    scenario, target, _rep = os.path.basename(path)[: -len(".json")].rsplit(".", 2)
    with open(path) as handle:
        reports[(scenario, target)].append(json.load(handle))


def value(report, key):
    if key in LATENCIES:
        return report["latency_us"][key]
    if key in ("iterations", "first_publish_lost", "publishes_lost", "timeouts"):
        return (report.get("propagation") or {}).get(key)
    if key.startswith("flush_"):
        return ((report.get("propagation") or {}).get("flush_us") or {}).get(key[len("flush_"):])
    return report.get(key)


def values(scenario, target, key):
    found = [value(r, key) for r in reports.get((scenario, target), [])]
    return [v for v in found if v is not None]


def median(scenario, target, key):
    found = values(scenario, target, key)
    return statistics.median(found) if found else None


def total(scenario, target, key):
    found = values(scenario, target, key)
    return sum(found) if found else None


def cluster_busy(scenario, target):
    """Median share of one core the three nodes used together over each whole command."""
    shares = []
    for path in glob.glob(os.path.join(out, "runs", f"{scenario}.{target}.*.server-cpu")):
        ticks, per_second, wall_ns = (int(word) for word in open(path).read().split())
        shares.append(ticks / per_second / (wall_ns / 1e9))
    return statistics.median(shares) if shares else None


def show(number):
    if number is None:
        return "-"
    if number >= 1e6:
        return f"{number / 1e6:.2f} M"
    if number >= 1e4:
        return f"{number / 1e3:.0f} k"
    return f"{number:.1f}"


def ratio(numerator, denominator):
    return numerator / denominator if numerator is not None and denominator else None


def verdict(measured, limit, at_most):
    if measured is None:
        return "not measured"
    return "**met**" if (measured <= limit if at_most else measured >= limit) else "**not met**"


def lost_share(scenario, target):
    lost, iterations = total(scenario, target, "first_publish_lost"), total(scenario, target, "iterations")
    if not iterations:
        return "-"
    return f"{lost} / {iterations} ({100.0 * lost / iterations:.1f}%)"


invocation = open(os.path.join(out, "invocation.txt")).read().strip()
lines = ["# A three-node flit cluster against a three-node NATS cluster (issue 13)", ""]
lines += open(os.path.join(out, "machine.md")).read().rstrip().splitlines()
lines += ["", f"Reproduce: `{invocation}`", "", "## Targets", ""]
lines += [
    "Medians over the repetitions (flit-loadgen; flit:// against flit, nats:// against nats-server).",
    "",
    "| target | flit | NATS cluster | flit / NATS | limit | verdict |",
    "|---|---:|---:|---:|---|---|",
]
for key, label in (("p50", "p50"), ("p99", "p99")):
    flit, nats = median("reqrep-cross", "flit", key), median("reqrep-cross", "nats", key)
    r = ratio(flit, nats)
    lines.append(
        f"| 1. cross-node reqrep {label} (us) | {show(flit)} | {show(nats)} | "
        f"{'-' if r is None else f'{r:.2f}x'} | <= 0.5x | {verdict(r, 0.5, True)} |"
    )
flit, nats = median("pubsub-cross", "flit", THROUGHPUT), median("pubsub-cross", "nats", THROUGHPUT)
r = ratio(flit, nats)
lines.append(
    f"| 2. cross-node pub/sub 1->1 msg/s | {show(flit)} | {show(nats)} | "
    f"{'-' if r is None else f'{r:.2f}x'} | >= 2x | {verdict(r, 2.0, False)} |"
)
for key in ("p50", "p99"):
    flit, nats = median("propagation-cross", "flit", key), median("propagation-cross", "nats", key)
    r = ratio(flit, nats)
    limit, judged = ("flit <= 1000 us", verdict(flit, 1000.0, True)) if key == "p99" else ("-", "-")
    lines.append(
        f"| 3. propagation {key} (us), flush on B -> arrival from A | {show(flit)} | {show(nats)} | "
        f"{'-' if r is None else f'{r:.2f}x'} | {limit} | {judged} |"
    )
lines.append(
    f"| 3. first publish after the flush lost (all reps) | {lost_share('propagation-cross', 'flit')} | "
    f"{lost_share('propagation-cross', 'nats')} | - | (counted; 0 where the flush is a cluster-wide barrier) | - |"
)
for key in ("p50", "p99"):
    flit, nats = median("propagation-cross", "flit", f"flush_{key}"), median("propagation-cross", "nats", f"flush_{key}")
    r = ratio(flit, nats)
    lines.append(
        f"| 3. the subscribe + flush on B itself, {key} (us) | {show(flit)} | {show(nats)} | "
        f"{'-' if r is None else f'{r:.2f}x'} | - | - |"
    )
for key in ("p50", "p99"):
    flit, nats = median("reqrep-same", "flit", key), median("reqrep-same", "nats", key)
    r = ratio(flit, nats)
    lines.append(
        f"| 4. same-node reqrep {key} (us), reference | {show(flit)} | {show(nats)} | "
        f"{'-' if r is None else f'{r:.2f}x'} | - | - |"
    )
for key in ("p50", "p99"):
    flit, nats = median("independent", "flit-nats-py", key), median("independent", "nats-py", key)
    r = ratio(flit, nats)
    lines.append(
        f"| cross-check: nats-py cross-node reqrep {key} (us), flit NATS listeners | {show(flit)} | {show(nats)} | "
        f"{'-' if r is None else f'{r:.2f}x'} | (printed, not judged) | - |"
    )
flit_nats, nats = median("reqrep-cross", "flit-nats", "p50"), median("reqrep-cross", "nats", "p50")
r = ratio(flit_nats, nats)
lines.append(
    f"| cross-check: flit-loadgen nats:// cross-node reqrep p50 (us), flit NATS listeners | {show(flit_nats)} | "
    f"{show(nats)} | {'-' if r is None else f'{r:.2f}x'} | (printed, not judged) | - |"
)

for scenario, title in SCENARIOS:
    targets = [t for t in TARGETS if (scenario, t) in reports]
    if not targets:
        continue
    lines += ["", f"## {scenario}", "", title, ""]
    propagation = scenario.startswith("propagation")
    header = "| target | n | msg/s | lost | errors | p50 | p99 | p99.9 | max | p99 min-max | cluster busy |"
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    if propagation:
        header = (
            "| target | n | iterations | first publish lost | publishes lost | timeouts | errors "
            "| p50 | p99 | p99.9 | max | p99 min-max | flush p50 | flush p99 | cluster busy |"
        )
        rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    lines += [header, rule]
    for target in targets:
        n = len(reports[(scenario, target)])
        p99s = values(scenario, target, "p99")
        spread = f"{min(p99s):.1f}-{max(p99s):.1f}" if p99s else "-"
        busy = cluster_busy(scenario, target)
        busy = "-" if busy is None else f"{100 * busy:.0f}%"
        latencies = " | ".join(show(median(scenario, target, key)) for key in LATENCIES)
        if propagation:
            counts = " | ".join(
                str(total(scenario, target, key))
                for key in ("iterations", "first_publish_lost", "publishes_lost", "timeouts", "errors")
            )
            flush = " | ".join(show(median(scenario, target, key)) for key in ("flush_p50", "flush_p99"))
            lines.append(f"| {target} | {n} | {counts} | {latencies} | {spread} | {flush} | {busy} |")
        else:
            counts = f"{show(median(scenario, target, THROUGHPUT))} | {total(scenario, target, 'lost')} | " + str(
                total(scenario, target, "errors")
            )
            lines.append(f"| {target} | {n} | {counts} | {latencies} | {spread} | {busy} |")

lines += [
    "",
    "n: repetitions; msg/s, latencies: medians over them; lost, errors, iterations: totals. Propagation: "
    "`first publish lost` counts iterations whose publish sent right after the subscriber's flush returned "
    "never arrived; `publishes lost` all probes before the first that arrived; `flush p50/p99` the subscribe + flush "
    "itself (a cluster-wide subscribe barrier lengthens it). cluster busy: CPU of the three "
    "nodes together over each whole command (setup, warm-up and drain included), as a share of one core.",
]
summary = "\n".join(lines) + "\n"
with open(os.path.join(out, "summary.md"), "w") as handle:
    handle.write(summary)
print(summary)
