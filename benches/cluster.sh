#!/usr/bin/env bash
# Cross-process fan-out: wsloop --redis against Socket.IO 4 + @socket.io/redis-adapter, same
# topology: one local redis-server, two server processes, M subscribers in one room on each,
# one publisher on each at RATE messages/s, driven by benches/cluster.rs. Also the in-process
# baseline: one wsloop (no Redis) with all 2M subscribers and both publishers.
#
#   benches/cluster.sh            (env: M=500 RATE=100 SECS=10 RUNS=3 THREADS=1)
#
# Prints one JSON line per run on stdout. Loopback only; every run is bounded in time.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
M=${M:-500}; RATE=${RATE:-100}; SECS=${SECS:-10}; RUNS=${RUNS:-3}; THREADS=${THREADS:-1}
cd "$ROOT"
cargo build --release -q
cargo bench --bench cluster --no-run -q 2>/dev/null
DRIVER=$(ls -t target/release/deps/cluster-* | grep -v '\.d$' | head -1)
[ -d benches/peers/socketio/node_modules ] || npm ci --prefix benches/peers/socketio --no-audit --no-fund --loglevel=error
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; wait 2>/dev/null || true; }
trap cleanup EXIT

run() { # kind mode
  local kind=$1 mode=$2 rp pa pb a b ra=""
  rp=$(port); pa=$(port); pb=$(port)
  if [ "$mode" != local ]; then
    redis-server --port "$rp" --bind 127.0.0.1 --save '' --appendonly no --dir /tmp --loglevel warning &
    ra=$!; PIDS+=("$ra"); wait_port "$rp"
  fi
  local url="redis://127.0.0.1:$rp"
  if [ "$kind" = wsloop ]; then
    local bus=(); [ "$mode" != local ] && bus=(--redis "$url")
    RUST_LOG=warn target/release/wsloop serve --bind "127.0.0.1:$pa" --threads "$THREADS" "${bus[@]}" >/dev/null 2>&1 & a=$!
    PIDS+=("$a")
    if [ "$mode" != local ]; then
      RUST_LOG=warn target/release/wsloop serve --bind "127.0.0.1:$pb" --threads "$THREADS" "${bus[@]}" >/dev/null 2>&1 & b=$!
      PIDS+=("$b")
    fi
  else
    node benches/peers/socketio/server.js "$pa" "$url" >/dev/null 2>&1 & a=$!; PIDS+=("$a")
    node benches/peers/socketio/server.js "$pb" "$url" >/dev/null 2>&1 & b=$!; PIDS+=("$b")
  fi
  wait_port "$pa"; [ "$mode" = local ] || wait_port "$pb"
  [ "$mode" = local ] && { pb=$pa; b=$a; }
  local pids="$a"; [ "$b" != "$a" ] && pids="$a,$b"
  sleep 1 # the bus connects (wsloop logs it; Socket.IO has no such signal)
  "$DRIVER" --kind "$kind" --a "127.0.0.1:$pa" --b "127.0.0.1:$pb" --pids "$pids" ${ra:+--redis-pid "$ra"} \
    -m "$M" --rate "$RATE" -t "$SECS" --warmup 2 | sed "s/^{/{\"mode\":\"$mode\",/"
  cleanup; PIDS=()
}

for r in $(seq "$RUNS"); do
  run wsloop redis
  run socketio redis
  run wsloop local
done
