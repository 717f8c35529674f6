#!/usr/bin/env bash
# Does wsloop's cost stay flat as the work grows? (issue 14, item 6)
#
#   benches/scale.sh            # all three parts, medians of RUNS runs
#
# 1. idle: server RSS growth per open idle WebSocket at IDLE_COUNTS connections
#    (wsloop-load idle; one loop, server on core 0, load generator on core 1);
# 2. broadcast: deliveries per server CPU-second and send -> last receiver
#    p50/p99 with BCAST_COUNTS receivers on one loop (32 B binary, window 8);
# 3. threads: echo (100 connections x 32 B x 16 in flight) with --threads 1
#    and --threads 2: messages/s and per server CPU-second. On a 2-core machine
#    the load generator needs a core of its own to saturate one server thread,
#    so with 2 server threads the three share 2 cores (unpinned): the result
#    says how far the load generator lets it go, not what 2 idle cores give.
#
# Environment: RUNS (3), DURATION (5), IDLE_COUNTS ("1000 10000 19000"),
# BCAST_COUNTS ("100 1000 10000"), PARTS ("idle bcast threads"), BASE_PORT
# (19700), WSLOOP_BIN (default target/release/wsloop: another build to compare).
# Connections need file descriptors on both sides: a count above
# `ulimit -n` (minus a few) fails at connect and is reported, not hidden.
# Loopback only; every run is bounded in time.

set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
IDLE_COUNTS=${IDLE_COUNTS:-"1000 10000 19000"}
BCAST_COUNTS=${BCAST_COUNTS:-"100 1000 10000"}
PARTS=${PARTS:-"idle bcast threads"}
PORT=${BASE_PORT:-19700}
OUT=${OUT:-$ROOT/benches/load/target/scale/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

log() { echo "[scale] $*" >&2; }

cargo build --release --manifest-path "$ROOT/Cargo.toml" >"$OUT/build.log" 2>&1 || { log "wsloop build failed (see $OUT/build.log)"; exit 1; }
cargo build --release --manifest-path "$ROOT/benches/load/Cargo.toml" >>"$OUT/build.log" 2>&1 || { log "wsloop-load build failed"; exit 1; }
WSLOOP="$OUT/wsloop"
cp "${WSLOOP_BIN:-$ROOT/target/release/wsloop}" "$WSLOOP"
LOAD="$ROOT/benches/load/target/release/wsloop-load"
log "wsloop: ${WSLOOP_BIN:-target/release/wsloop at $(git -C "$ROOT" rev-parse --short HEAD)}, ulimit -n $(ulimit -n), logs in $OUT"

SERVER_PID=""
start() { # pin threads
    PORT=$((PORT + 1))
    $1 env RUST_LOG=warn "$WSLOOP" serve --bind "127.0.0.1:$PORT" --threads "$2" >"$OUT/server-$PORT.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    log "server on $PORT did not start"; return 1
}
stop() { kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""; }
trap stop EXIT

# run NAME PIN_LOAD ARGS...: one load run against the started server; prints its RESULT JSON
run() {
    local name=$1 pin=$2; shift 2
    local f="$OUT/$name.txt"
    $pin "$LOAD" "$@" --server-pid "$SERVER_PID" >"$f" 2>&1
    grep '^RESULT ' "$f" | tail -1 | cut -c8- || true
}

# median FIELD: the median of FIELD over the JSON lines on stdin ("-" if none)
median() {
    python3 -c '
import json, sys, statistics
key = sys.argv[1]
vals = [json.loads(l)[key] for l in sys.stdin if l.strip()]
vals = [v for v in vals if isinstance(v, (int, float))]
print(f"{statistics.median(vals):,.0f}" if vals else "-", len(vals))' "$1"
}

for part in $PARTS; do
    case $part in
    idle)
        echo; echo "## idle: server RSS per open idle connection (one loop)"
        echo "| connections | bytes/conn (median) | ok runs |"; echo "|---:|---:|---:|"
        for n in $IDLE_COUNTS; do
            results=""
            for r in $(seq "$RUNS"); do
                start "taskset -c 0" 1 || continue
                results+="$(run "idle-$n-$r" "taskset -c 1" idle --url "ws://127.0.0.1:$PORT/echo" -c "$n")"$'\n'
                stop
            done
            read -r med ok < <(printf '%s' "$results" | median bytes_per_conn)
            echo "| $n | $med | $ok/$RUNS |"
        done ;;
    bcast)
        echo; echo "## broadcast 32 B, one loop: deliveries per server CPU-second"
        echo "| receivers | deliveries/CPU-s | deliveries/s | p50 µs | p99 µs | ok runs |"
        echo "|---:|---:|---:|---:|---:|---:|"
        for m in $BCAST_COUNTS; do
            results=""
            for r in $(seq "$RUNS"); do
                start "taskset -c 0" 1 || continue
                results+="$(run "bcast-$m-$r" "taskset -c 1" broadcast --url "ws://127.0.0.1:$PORT/chat" \
                    -m "$m" -s 32 -t "$DURATION" --binary --window 8)"$'\n'
                stop
            done
            read -r per ok < <(printf '%s' "$results" | median deliveries_per_cpu_s)
            read -r rate _ < <(printf '%s' "$results" | median deliveries_per_sec)
            read -r p50 _ < <(printf '%s' "$results" | median p50_us)
            read -r p99 _ < <(printf '%s' "$results" | median p99_us)
            echo "| $m | $per | $rate | $p50 | $p99 | $ok/$RUNS |"
        done ;;
    threads)
        echo; echo "## echo 100 conns x 32 B x 16 in flight: --threads 1 (pinned) and 2 (unpinned)"
        echo "| server threads | msgs/s | msgs per server CPU-s | load generator CPU-s | ok runs |"
        echo "|---:|---:|---:|---:|---:|"
        for t in 1 2; do
            results=""
            for r in $(seq "$RUNS"); do
                if [ "$t" = 1 ]; then start "taskset -c 0" 1 || continue; pin="taskset -c 1"
                else start "" 2 || continue; pin=""; fi
                results+="$(run "threads-$t-$r" "$pin" echo --url "ws://127.0.0.1:$PORT/echo" \
                    -c 100 -d 16 -s 32 -t "$DURATION")"$'\n'
                stop
            done
            read -r rate ok < <(printf '%s' "$results" | median msgs_per_sec)
            read -r per _ < <(printf '%s' "$results" | median msgs_per_cpu_s)
            read -r cl _ < <(printf '%s' "$results" | python3 -c '
import json, sys, statistics
v = [json.loads(l)["client_cpu_s"] for l in sys.stdin if l.strip()]
print(f"{statistics.median(v):.2f}" if v else "-")')
            echo "| $t | $rate | $per | $cl | $ok/$RUNS |"
        done ;;
    *) log "unknown part $part" ;;
    esac
done
