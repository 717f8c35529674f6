#!/usr/bin/env bash
# Run the Autobahn|Testsuite fuzzingserver (RFC 6455 conformance of a CLIENT) against
# `wsloop client`.
#
# Usage: bash autobahn/run-client.sh
#
# Steps: install wstest if missing -> cargo build --release -> start `wstest -m fuzzingserver`
# on a free port -> `wsloop client --listen .../getCaseCount` -> for each case i,
# `wsloop client --echo [--deflate] .../runCase?case=i&agent=wsloop` -> `wsloop client --listen
# .../updateReports?agent=wsloop` -> stop wstest -> summarize.py against
# expected-results-client.json, with the same strict verdict as the server run.
# Reports land in autobahn/reports-client/ (gitignored). The exit status is summarize.py's
# (0 = every case as expected), or non-zero if a step before it failed or the run timed out.
#
# Environment (all optional):
#   AUTOBAHN_CASES           comma-separated case patterns to run, default "*"
#   AUTOBAHN_EXCLUDE         comma-separated case patterns to skip, default none
#   AUTOBAHN_TIMEOUT         seconds allowed for all the cases together, default 1800
#   AUTOBAHN_CLIENT_DEFLATE  1 (default): offer permessage-deflate, so 12.* and 13.* run;
#                            0: offer nothing; those cases are then UNIMPLEMENTED, and expected
#                            so (summarize.py --no-deflate)
#   AUTOBAHN_PREFIX          where install-wstest.sh installs wstest, default ~/.cache/wsloop-wstest
#   WSTEST                   an existing wstest launcher to use instead of installing one
#   WSLOOP_BIN               an existing wsloop binary to use instead of building target/release/wsloop
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # .../autobahn
REPO=$(cd "$HERE/.." && pwd)
REPORTS=$HERE/reports-client
CASES=${AUTOBAHN_CASES:-*}
EXCLUDE=${AUTOBAHN_EXCLUDE:-}
TIMEOUT=${AUTOBAHN_TIMEOUT:-1800}
DEFLATE=${AUTOBAHN_CLIENT_DEFLATE:-1}
AGENT=wsloop
WSTEST_PID=

log() { echo "[autobahn-client] $*" >&2; }

# Stop wstest however we leave (normal end, error, Ctrl-C, SIGTERM), by its PID only.
stop_wstest() {
  local pid=$WSTEST_PID
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  WSTEST_PID=
}
trap stop_wstest EXIT
trap 'exit 130' INT TERM

# --- 1. wstest and the client binary. ---------------------------------------------------------
if [ -z "${WSTEST:-}" ]; then
  WSTEST=$("$HERE/install-wstest.sh" | tail -n1)
fi
[ -x "$WSTEST" ] || { log "wstest launcher not found: $WSTEST"; exit 1; }
WSTEST=$(realpath "$WSTEST")
if [ -n "${WSLOOP_BIN:-}" ]; then
  [ -x "$WSLOOP_BIN" ] || { log "WSLOOP_BIN is not an executable file: $WSLOOP_BIN"; exit 1; }
  BIN=$(realpath "$WSLOOP_BIN")
else
  log "cargo build --release"
  (cd "$REPO" && cargo build --release)
  BIN=$REPO/target/release/wsloop
fi
CLIENT_FLAGS=(--connect-timeout 10 --read-timeout 60 --close-timeout 10)
[ "$DEFLATE" = 1 ] && CLIENT_FLAGS+=(--deflate)

# --- 2. Fresh reports dir, the spec, a free port. ----------------------------------------------
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 - "$HERE/fuzzingserver.json" "$REPORTS/spec.json" "$PORT" "$CASES" "$EXCLUDE" <<'EOF'
import json, sys
template, out, port, cases, exclude = sys.argv[1:]
split = lambda s: [p.strip() for p in s.split(",") if p.strip()]
with open(template) as f:
    spec = json.load(f)
spec["url"] = spec["url"].replace("PORT", port)
spec["cases"] = split(cases) or ["*"]
spec["exclude-cases"] = split(exclude)
with open(out, "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
EOF

# --- 3. wstest as the server (no embedded web server: -u 0), from autobahn/ (outdir is relative).
log "wstest -m fuzzingserver on 127.0.0.1:$PORT (log: $REPORTS/wstest.log)"
(cd "$HERE" && exec "$WSTEST" -m fuzzingserver -u 0 -s "$REPORTS/spec.json") > "$REPORTS/wstest.log" 2>&1 &
WSTEST_PID=$!
deadline=$((SECONDS + 30))
until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
  if ! kill -0 "$WSTEST_PID" 2>/dev/null; then
    log "wstest exited before listening; its log:"; tail -n 30 "$REPORTS/wstest.log" >&2; exit 1
  fi
  [ "$SECONDS" -lt "$deadline" ] || { log "wstest did not listen within 30 s"; exit 1; }
  sleep 0.1
done

# --- 4. The client does what Autobahn asks of it. -----------------------------------------------
URL=ws://127.0.0.1:$PORT
COUNT=$("$BIN" client --listen "$URL/getCaseCount" 2>>"$REPORTS/client.log")
[[ "$COUNT" =~ ^[0-9]+$ ]] || { log "getCaseCount answered ${COUNT@Q}"; exit 1; }
log "$COUNT cases; client: wsloop client --echo ${CLIENT_FLAGS[*]} (log: $REPORTS/client.log)"
start=$SECONDS
timed_out=0
for i in $(seq 1 "$COUNT"); do
  if [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
    timed_out=1; log "TIMED OUT after ${TIMEOUT}s, at case $i of $COUNT"; break
  fi
  # The exit status is the case's close code class (3 for cases that end in 1002, 1007, ...):
  # wstest judges the case, not us. A case that hangs the client is cut after 120 s.
  rc=0
  timeout -k 5 120 "$BIN" client --echo "${CLIENT_FLAGS[@]}" "$URL/runCase?case=$i&agent=$AGENT" \
    >>"$REPORTS/client.log" 2>&1 || rc=$?
  echo "case $i: exit $rc" >> "$REPORTS/client.log"
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || log "case $i: the client was killed after 120 s"
done
log "cases ran in $((SECONDS - start)) s"
"$BIN" client --listen "$URL/updateReports?agent=$AGENT" >>"$REPORTS/client.log" 2>&1 || {
  log "updateReports failed; see $REPORTS/client.log"; exit 1; }
stop_wstest

# --- 5. Summary (last stdout line: "autobahn: N cases, N ok, ..."). ---------------------------
summary_rc=0
SUMMARIZE_FLAGS=(--reports "$REPORTS" --expected "$HERE/expected-results-client.json")
[ "$DEFLATE" = 1 ] || SUMMARIZE_FLAGS+=(--no-deflate)
python3 "$HERE/summarize.py" "${SUMMARIZE_FLAGS[@]}" || summary_rc=$?
[ "$summary_rc" -eq 0 ] || exit "$summary_rc"
[ "$timed_out" -eq 0 ] || exit 1
exit 0
