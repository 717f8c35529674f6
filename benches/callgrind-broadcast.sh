#!/usr/bin/env bash
# User-space instructions per broadcast delivery, by callgrind (issue 24): counts that do not
# depend on how busy the machine is, for A/B comparisons of the fan-out path.
#
#   benches/callgrind-broadcast.sh BINARY RECEIVERS [PORT]
#   e.g. benches/callgrind-broadcast.sh target/release/wsloop 1000
#
# Starts `BINARY serve --threads 1` under valgrind's callgrind (RUST_LOG=warn) and drives
# /chat with `wsloop-load broadcast -m RECEIVERS -s 32 --binary --window 8`. Once all
# RECEIVERS + 1 WebSockets are open (by /metrics; it waits up to 10 minutes: 10,000 take about
# 4 under valgrind) and 3 s more have passed, callgrind's
# counters are zeroed (callgrind_control -z); 8 s later they are dumped (-d). The deliveries
# in that window come from /metrics (wsloop_messages_sent_total counts each fan-out delivery),
# so connection setup and the demo's join notices are not in the figure. Prints total Ir,
# deliveries and Ir per delivery; the dump stays in OUT (default /tmp) for callgrind_annotate.
# Needs valgrind, curl and the load generator (benches/load, built with --release).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$1 M=$2 PORT=${3:-19580}
LOAD=${LOAD:-$ROOT/benches/load/target/release/wsloop-load}
OUT=${OUT:-/tmp}/callgrind-bcast-$M-$$
met() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v k="$1" 'index($1, k"{")==1 {print $2}'; }
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT.cg" "$BIN" serve \
    --bind "127.0.0.1:$PORT" --threads 1 >"$OUT.server.log" 2>&1 &
VP=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.2; done
"$LOAD" broadcast --url "ws://127.0.0.1:$PORT/chat" -m "$M" -s 32 --binary --window 8 -t 60 \
    --warmup 1 >"$OUT.load.log" 2>&1 &
LP=$!
for _ in $(seq 3000); do [ "$(met wsloop_websockets)" = $((M + 1)) ] && break; sleep 0.2; done
sleep 3
m1=$(met wsloop_messages_sent_total)
callgrind_control -z "$VP" >/dev/null
sleep 8
callgrind_control -d "$VP" >/dev/null
m2=$(met wsloop_messages_sent_total)
kill "$LP" 2>/dev/null
wait "$LP" 2>/dev/null
kill -INT "$VP"
wait "$VP"
cg=$(ls -t "$OUT".cg.* 2>/dev/null | head -1)
ir=$(callgrind_annotate "$cg" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
n=$((m2 - m1))
[ "$n" -gt 0 ] || { echo "no deliveries measured (see $OUT.*.log)" >&2; exit 1; }
echo "bin=$BIN receivers=$M deliveries=$n Ir=$ir Ir/delivery=$((ir / n)) dump=$cg"
