# Shared by bench/metrics_cost.sh and bench/hardening_cost.sh (sourced, not
# run): the run settings, the release build, and small helpers.
#   REPS, DURATION, WARMUP      repetitions and the length of each run
#   SERVER_CPU, LOADGEN_CPU     the cores the server and the load generator get

REPS=${REPS:-5}
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-1s}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}

cargo build --release -p flit-router -p flit-loadgen >&2
flit=target/release/flit
loadgen=target/release/flit-loadgen

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# wait_for_port PORT: until something listens there (5 s at most).
wait_for_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# machine_header: the first lines of machine.md.
machine_header() {
  echo "# Machine"
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
  echo "- kernel: $(uname -r)"
  echo "- server pinned to CPU $SERVER_CPU, loadgen to CPU $LOADGEN_CPU; $REPS reps of $DURATION after $WARMUP warm-up"
}
