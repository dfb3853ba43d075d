#!/usr/bin/env bash
# reqrep spin: ring sends vs send calls in spin mode, alternating, 5 reps each.
for rep in 1 2 3 4 5; do
  for variant in ring-sends spin-syscall-sends; do
    port=$((17700 + rep * 2 + ${#variant} % 2))
    taskset -c 0 /tmp/flit-$variant serve --listen 127.0.0.1:$port --shards 1 --idle spin --no-pin > /dev/null 2>&1 &
    sp=$!; sleep 0.5
    taskset -c 1 /work/main/target/release/flit-loadgen --target flit://127.0.0.1:$port --idle spin --cpu 1 --scenario reqrep --duration 3s --warmup 1s --quiet --json /tmp/spin-$variant-$rep.json > /dev/null 2>&1
    kill $sp; wait $sp 2>/dev/null
    python3 -c "import json;r=json.load(open('/tmp/spin-$variant-$rep.json'));l=r['latency_us'];print('$variant', $rep, l['p50'], l['p99'], l['p999'])"
  done
done
