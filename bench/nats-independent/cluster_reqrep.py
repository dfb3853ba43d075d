#!/usr/bin/env python3
"""Cross-node request/reply by an independent NATS client (nats-py).

The cross-check for bench/cluster.sh's `reqrep-cross`: no flit-loadgen code
and no async-nats either. The responder connects to one node
(--responder-server B) and echoes every request; the requester connects to
another (--requester-server A) and sends one request at a time
(`Client.request`, nats-py's shared `_INBOX.<id>.*` reply subscription), so
each request crosses A -> B and its reply B -> A. Both connections live on
one asyncio loop in this process (pin it with taskset, as the suite does).

Before measuring, requests are retried until one is answered (a
subscription reaches the other nodes some time after its flush), then the
warm-up runs; only requests sent after it are recorded. Latency is the
round trip seen by the caller of `request` (time.perf_counter_ns), so it
includes nats-py's own asyncio overhead: compare the two clusters with each
other, not with flit-loadgen's figures.

Usage: cluster_reqrep.py --requester-server 127.0.0.1:4222 --responder-server 127.0.0.1:4322
       [--duration 5] [--warmup 1] [--payload 64] [--json PATH]
Writes flit-loadgen's report keys that apply (scenario, target, sent,
received, errors, throughput_msgs_per_s, latency_us{p50,p90,p99,p999,max,mean,count}).
"""

import argparse
import asyncio
import json
import sys
import time

import nats
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

SUBJECT = "independent.cluster.request"
SETTLE_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 1.0


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list (HdrHistogram's convention)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), int(fraction * len(sorted_values) + 0.999999)))
    return sorted_values[rank - 1]


def latency_summary(latencies_ns):
    values = sorted(latencies_ns)
    micros = lambda ns: round(ns / 1000.0, 3)  # noqa: E731
    return {
        "p50": micros(percentile(values, 0.50)),
        "p90": micros(percentile(values, 0.90)),
        "p99": micros(percentile(values, 0.99)),
        "p999": micros(percentile(values, 0.999)),
        "p9999": micros(percentile(values, 0.9999)),
        "max": micros(values[-1]) if values else 0.0,
        "mean": micros(sum(values) / len(values)) if values else 0.0,
        "count": len(values),
    }


async def main(arguments):
    responder = await nats.connect(f"nats://{arguments.responder_server}", allow_reconnect=False)
    requester = await nats.connect(f"nats://{arguments.requester_server}", allow_reconnect=False)

    async def answer(message):
        await message.respond(message.data)

    await responder.subscribe(SUBJECT, cb=answer)
    await responder.flush()
    payload = bytes(arguments.payload)

    # Until the responder's interest has reached A and the requester's reply
    # subscription has reached B.
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        try:
            await requester.request(SUBJECT, payload, timeout=0.2)
            break
        except (NatsTimeout, NoRespondersError):
            if time.monotonic() > deadline:
                sys.exit(f"no reply across nodes within {SETTLE_TIMEOUT_S} s")
            await asyncio.sleep(0.01)

    latencies = []
    errors = 0
    started = time.perf_counter_ns()
    measure_from = started + int(arguments.warmup * 1e9)
    end = measure_from + int(arguments.duration * 1e9)
    sent = 0
    while True:
        before = time.perf_counter_ns()
        if before >= end:
            break
        try:
            await requester.request(SUBJECT, payload, timeout=REQUEST_TIMEOUT_S)
            after = time.perf_counter_ns()
            if before >= measure_from:
                latencies.append(after - before)
        except (NatsTimeout, NoRespondersError):
            if before >= measure_from:
                errors += 1
        if before >= measure_from:
            sent += 1
    await requester.drain()
    await responder.drain()

    report = {
        "scenario": "reqrep",
        "client": f"nats-py {nats.aio.client.__version__}",
        "target": f"nats://{arguments.requester_server}",
        "receiver_target": f"nats://{arguments.responder_server}",
        "payload_bytes": arguments.payload,
        "duration_s": arguments.duration,
        "warmup_s": arguments.warmup,
        "sent": sent,
        "received": len(latencies),
        "lost": sent - len(latencies),
        "errors": errors,
        "throughput_msgs_per_s": len(latencies) / arguments.duration,
        "latency_us": latency_summary(latencies),
        "command": " ".join(sys.argv),
    }
    latency = report["latency_us"]
    print(
        f"nats-py reqrep {report['target']} -> {report['receiver_target']}: {len(latencies)} round trips, "
        f"{errors} errors, p50 {latency['p50']} us, p99 {latency['p99']} us, max {latency['max']} us"
    )
    if arguments.json:
        with open(arguments.json, "w") as file:
            json.dump(report, file, indent=2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requester-server", required=True, help="HOST:PORT of node A")
    parser.add_argument("--responder-server", required=True, help="HOST:PORT of node B")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not recorded")
    parser.add_argument("--payload", type=int, default=64, help="payload bytes")
    parser.add_argument("--json", help="write the report here")
    asyncio.run(main(parser.parse_args()))
