#!/usr/bin/env bash
# Run the Autobahn|Testsuite fuzzingclient (RFC 6455 conformance) against wsloop.
#
# Usage: bash autobahn/run.sh
#
# Steps: install wstest if missing -> cargo build --release -> start
# `wsloop serve --bind 127.0.0.1:PORT` on a free port -> wait until it accepts connections ->
# wstest -m fuzzingclient (bounded by a timeout) -> stop the server -> summarize.py.
# Reports land in autobahn/reports/ (gitignored); open reports/index.html in a browser for
# wstest's own report. The exit status is summarize.py's (0 = all cases as expected), or
# non-zero if a step before it failed, wstest timed out, or the server died during the run.
#
# Environment (all optional):
#   AUTOBAHN_CASES     comma-separated case patterns to run, default "*" (e.g. "1.*,2.*,6.4.*")
#   AUTOBAHN_EXCLUDE   comma-separated case patterns to skip, default none (e.g. "9.*,12.*,13.*")
#   AUTOBAHN_TIMEOUT   seconds allowed for the whole wstest run, default 1800
#   AUTOBAHN_PREFIX    where install-wstest.sh installs wstest, default ~/.cache/wsloop-wstest
#   WSTEST             an existing wstest launcher to use instead of installing one
#   WSLOOP_BIN         an existing wsloop binary to test instead of building target/release/wsloop
#   AUTOBAHN_TLS=1     serve wss:// (a self-signed certificate made with openssl for this run;
#                      wstest's Twisted client does not check it) and test over TLS
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # .../autobahn
REPO=$(cd "$HERE/.." && pwd)
REPORTS=$HERE/reports
CASES=${AUTOBAHN_CASES:-*}
EXCLUDE=${AUTOBAHN_EXCLUDE:-}
TIMEOUT=${AUTOBAHN_TIMEOUT:-1800}
SERVER_PID=
WSTEST_PID=

log() { echo "[autobahn] $*" >&2; }

# Stop the server (and wstest, if still running) however we leave: normal end, error, Ctrl-C,
# SIGTERM. Only the processes this script started are signalled, by their PIDs.
stop_pid() {  # stop_pid PID: SIGTERM, up to 5 s to exit, then SIGKILL
  local pid=$1
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
stop_server() { stop_pid "$SERVER_PID"; SERVER_PID=; }
# shellcheck disable=SC2317  # only ever called from the EXIT trap
cleanup() { stop_pid "$WSTEST_PID"; stop_server; }
trap cleanup EXIT
trap 'exit 130' INT TERM   # turn signals into an exit so the EXIT trap runs

# --- 1. wstest (installs into ~/.cache/wsloop-wstest the first time, ~25 s). -----------------
if [ -z "${WSTEST:-}" ]; then
  WSTEST=$("$HERE/install-wstest.sh" | tail -n1)
fi
[ -x "$WSTEST" ] || { log "wstest launcher not found: $WSTEST"; exit 1; }
WSTEST=$(realpath "$WSTEST")   # absolute: wstest runs from autobahn/

# --- 2. The server binary. --------------------------------------------------------------------
if [ -n "${WSLOOP_BIN:-}" ]; then
  [ -x "$WSLOOP_BIN" ] || { log "WSLOOP_BIN is not an executable file: $WSLOOP_BIN"; exit 1; }
  BIN=$(realpath "$WSLOOP_BIN")   # absolute: the server runs from the repository root
else
  log "cargo build --release"
  (cd "$REPO" && cargo build --release)
  BIN=$REPO/target/release/wsloop
fi

# --- 3. Fresh reports dir and the spec (the committed template, port and case filter filled in).
# Old per-case files would otherwise mix with this run's in the HTML report.
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
# Ask the kernel for a free port (bind to port 0). Another process could take it before the
# server binds, but on a test machine that is rare, and the server would then fail loudly.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# spec.json stays in reports/ so summarize.py knows whether this was a full or a subset run.
python3 - "$HERE/fuzzingclient.json" "$REPORTS/spec.json" "$PORT" "$CASES" "$EXCLUDE" <<'EOF'
import json, os, sys
template, out, port, cases, exclude = sys.argv[1:]
split = lambda s: [p.strip() for p in s.split(",") if p.strip()]
with open(template) as f:
    spec = json.load(f)
spec["outdir"] = "./reports"            # relative to autobahn/, where wstest runs
for server in spec["servers"]:
    server["url"] = server["url"].replace("PORT", port)
    if os.environ.get("AUTOBAHN_TLS") == "1":
        server["url"] = server["url"].replace("ws://", "wss://", 1)
spec["cases"] = split(cases) or ["*"]
spec["exclude-cases"] = split(exclude)
with open(out, "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
EOF

# --- 4. Start the server exactly as a user would, only the bind address changed. --------------
TLS_ARGS=()
if [ "${AUTOBAHN_TLS:-}" = "1" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$REPORTS/key.pem" -out "$REPORTS/cert.pem" 2>/dev/null
  TLS_ARGS=(--tls-cert "$REPORTS/cert.pem" --tls-key "$REPORTS/key.pem")
fi
log "starting: $BIN serve --bind 127.0.0.1:$PORT ${TLS_ARGS[*]} (log: $REPORTS/server.log)"
# From the repository root, like `target/release/wsloop serve` typed there; `exec` so that
# SERVER_PID is the server itself.
(cd "$REPO" && exec "$BIN" serve --bind "127.0.0.1:$PORT" "${TLS_ARGS[@]}") > "$REPORTS/server.log" 2>&1 &
SERVER_PID=$!

# Wait (at most 30 s) until the port accepts a TCP connection; bail out if the server died.
deadline=$((SECONDS + 30))
until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID" && status=0 || status=$?
    SERVER_PID=
    log "the server exited (status $status) before accepting connections; its log:"
    tail -n 30 "$REPORTS/server.log" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "the server did not accept connections on 127.0.0.1:$PORT within 30 s; its log:"
    tail -n 30 "$REPORTS/server.log" >&2
    exit 1
  fi
  sleep 0.1
done

# --- 5. wstest, bounded: a hung case must not hang CI. -----------------------------------------
log "wstest -m fuzzingclient: cases=[$CASES] exclude=[$EXCLUDE] timeout=${TIMEOUT}s (log: $REPORTS/wstest.log)"
start=$SECONDS
wstest_rc=0
# Run in the background and `wait`: bash runs the INT/TERM trap at once during `wait`, whereas it
# would defer it until a foreground wstest ended (up to TIMEOUT). `timeout` passes SIGTERM on to
# wstest. wstest runs in autobahn/ because the spec's outdir is ./reports.
(cd "$HERE" && exec timeout -k 10 "$TIMEOUT" "$WSTEST" -m fuzzingclient -s "$REPORTS/spec.json") \
  > "$REPORTS/wstest.log" 2>&1 &
WSTEST_PID=$!
wait "$WSTEST_PID" || wstest_rc=$?
WSTEST_PID=
log "wstest exited $wstest_rc after $((SECONDS - start)) s"

# --- 6. Stop the server; a server that is already gone crashed during the run. ----------------
server_died=0
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  wait "$SERVER_PID" && status=0 || status=$?
  SERVER_PID=
  server_died=1
  log "the server died during the run (status $status); tail of its log:"
  tail -n 30 "$REPORTS/server.log" >&2
fi
stop_server

if [ "$wstest_rc" -ne 0 ]; then
  tail -n 20 "$REPORTS/wstest.log" >&2
  if [ "$wstest_rc" -eq 124 ] || [ "$wstest_rc" -eq 137 ]; then
    log "wstest TIMED OUT after ${TIMEOUT}s (reports are incomplete)"
  fi
fi

# --- 7. Summary (last stdout line: "autobahn: N cases, N ok, ..."). ---------------------------
summary_rc=0
python3 "$HERE/summarize.py" --reports "$REPORTS" || summary_rc=$?
if [ "$summary_rc" -ne 0 ]; then exit "$summary_rc"; fi
if [ "$wstest_rc" -ne 0 ] || [ "$server_died" -ne 0 ]; then exit 1; fi
exit 0
