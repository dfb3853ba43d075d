#!/usr/bin/env bash
# Is the run-to-run bimodality of request/reply latency flit's, or the
# machine's? Alternates, ROUNDS times: flit (spin, fresh process) reqrep,
# the loopback echo floor (spin, one long-lived process, stopped while flit
# runs) reqrep, and flit (park) closed-loop pub/sub; prints one line a round.
#   bench-results/2026-12-01-bimodality/run.sh > bench-results/2026-12-01-bimodality/output.txt
set -u
cd "$(dirname "$0")/../.."
loadgen=target/release/flit-loadgen
flit=target/release/flit
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { python3 -c "import json,sys;d=json.load(open('/tmp/bimodality.json'));print($1)"; }
echo_port=$(free_port)
$loadgen echo-server --listen 127.0.0.1:$echo_port --idle spin --cpu 0 >/dev/null 2>&1 &
echo_pid=$!
sleep 0.3
echo "round | flit spin reqrep p50 us | echo spin reqrep p50 us | flit/echo | flit park pubsub M msg/s"
for round in $(seq 1 "${ROUNDS:-16}"); do
  kill -STOP $echo_pid
  port=$(free_port)
  taskset -c 0 $flit serve --listen 127.0.0.1:$port --shards 1 --no-pin --idle spin >/dev/null 2>&1 &
  pid=$!; sleep 0.3
  $loadgen --target flit://127.0.0.1:$port --idle spin --cpu 1 --duration 1s --warmup 500ms --quiet \
    --json /tmp/bimodality.json --scenario reqrep >/dev/null 2>&1
  flit_p50=$(field "round(d['latency_us']['p50'],1)")
  kill $pid; wait $pid 2>/dev/null
  port=$(free_port)
  taskset -c 0 $flit serve --listen 127.0.0.1:$port --shards 1 --no-pin --idle park >/dev/null 2>&1 &
  pid=$!; sleep 0.3
  $loadgen --target flit://127.0.0.1:$port --idle spin --cpu 1 --duration 2s --warmup 500ms --quiet \
    --json /tmp/bimodality.json --scenario pubsub --window 4096 >/dev/null 2>&1
  pubsub=$(field "round(d['throughput_msgs_per_s']/1e6,2)")
  kill $pid; wait $pid 2>/dev/null
  kill -CONT $echo_pid
  $loadgen --target echo://127.0.0.1:$echo_port --idle spin --cpu 1 --duration 1s --warmup 500ms --quiet \
    --json /tmp/bimodality.json --scenario reqrep >/dev/null 2>&1
  echo_p50=$(field "round(d['latency_us']['p50'],1)")
  echo "$round | $flit_p50 | $echo_p50 | $(python3 -c "print(round($flit_p50/$echo_p50,2))") | $pubsub"
done
kill $echo_pid
