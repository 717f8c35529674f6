#!/usr/bin/env python3
"""Echo round trip against a wsloop echo endpoint with the third-party `websockets` client.

Usage: python3 tests/interop/client.py ws://127.0.0.1:PORT/echo [--timeout SECONDS] [--deflate]

With --deflate the client offers permessage-deflate (RFC 7692) as `websockets` does by default,
compresses what it sends and inflates what it gets; without, it offers no extension.

Checks, in order, each bounded by the timeout:
  1. the opening handshake completes (websockets validates Sec-WebSocket-Accept itself, and the
     server's permessage-deflate answer against its offer);
  2. a text message (non-ASCII, 16-bit length) comes back as the same text;
  3. a binary message (every byte value, 64-bit length) comes back as the same bytes;
  4. a 4 KiB JSON-like text message (above the server's compression threshold) comes back intact;
  5. a ping is answered by a pong;
  6. a client close with code 1000 is answered by the server's close with code 1000.
Prints `EXTENSION: <the 101's Sec-WebSocket-Extensions, or none>` once the handshake is done, then
OK, and exits 0; prints FAIL: ... to stderr and exits 1 on any mismatch, error or timeout.
"""

import argparse
import signal
import sys

try:
    from websockets.sync.client import connect
except ImportError:  # pragma: no cover - reported to the Rust test as a setup problem
    print("SETUP: python package 'websockets' is missing: pip install -r tests/interop/requirements.txt",
          file=sys.stderr)
    sys.exit(3)

TEXT = "héllo wsloop ✓ " + "x" * 200  # > 125 bytes: the 16-bit extended length
BINARY = bytes(range(256)) * 300  # 76,800 bytes: the 64-bit extended length


def json_like(size):
    """Chat-like JSON text of at least `size` bytes, the same on every run."""
    items, total = [], 2
    i = 0
    while total < size:
        item = ('{"type":"message","room":"lobby","id":"1.%d.%d","from":"user-%d",'
                '"text":"message number %d, about the weather","ts":%d}' % (i % 7, i, i % 13, i, 1700000000000 + i))
        items.append(item)
        total += len(item) + 1
        i += 1
    return "[" + ",".join(items) + "]"


JSON = json_like(4096)


def short(value, limit=80):
    r = repr(value)
    return r if len(r) <= limit else r[:limit] + f"... ({len(value)} long)"


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def on_alarm(_signum, _frame):
    fail("timed out (overall deadline)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    args = parser.parse_args()
    t = args.timeout

    # A hard deadline for the whole run, on top of the per-step timeouts below.
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(t * 2) + 1)

    try:
        with connect(args.url, open_timeout=t, close_timeout=t,
                     compression="deflate" if args.deflate else None, max_size=2**20) as ws:
            extension = ws.response.headers.get("Sec-WebSocket-Extensions")
            print(f"EXTENSION: {extension or 'none'}", flush=True)
            ws.send(TEXT)
            got = ws.recv(timeout=t)
            if not isinstance(got, str):
                fail(f"text echo came back as {type(got).__name__}, not str")
            if got != TEXT:
                fail(f"text echo mismatch: sent {short(TEXT)}, got {short(got)}")

            ws.send(BINARY)
            got = ws.recv(timeout=t)
            if not isinstance(got, bytes):
                fail(f"binary echo came back as {type(got).__name__}, not bytes")
            if got != BINARY:
                fail(f"binary echo mismatch: sent {len(BINARY)} bytes, got {len(got)} bytes")

            ws.send(JSON)
            got = ws.recv(timeout=t)
            if got != JSON:
                fail(f"JSON echo mismatch: sent {short(JSON)}, got {short(got)}")

            pong = ws.ping(b"interop")
            if not pong.wait(t):
                fail("no pong for a ping")

            ws.close(code=1000, reason="done")
            rcvd = ws.protocol.close_rcvd
            if rcvd is None:
                fail("the server sent no close frame")
            if rcvd.code != 1000:
                fail(f"server close code {rcvd.code} (reason {rcvd.reason!r}), expected 1000")
    except TimeoutError as e:
        fail(f"timed out: {e!r}")
    except Exception as e:  # noqa: BLE001 - any client error is a failed interop check
        fail(f"{type(e).__name__}: {e}")

    signal.alarm(0)
    print("OK")


if __name__ == "__main__":
    main()
