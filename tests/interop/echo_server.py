#!/usr/bin/env python3
"""An echo server with the third-party `websockets` library, for wsloop's client tests.

Usage: python3 tests/interop/echo_server.py [PORT [CERT KEY]]   (PORT 0 or absent: a free port)

With CERT and KEY (PEM files: the certificate chain and its private key) it serves wss://.

Prints "LISTENING <port>" on stdout once it accepts connections, then serves on 127.0.0.1
until killed. Per connection (permessage-deflate offered by the client is accepted, messages
up to 64 MiB):
  - a text message "close CODE REASON..." makes the server close with that code and reason;
  - a text message "ping" makes the server send a ping "srv" and, once its pong arrives,
    the text "pong srv";
  - every other message is sent back as it came: text as text, binary as binary.
"""

import ssl
import sys

try:
    from websockets.sync.server import serve
except ImportError:  # pragma: no cover - reported to the Rust test as a setup problem
    print("SETUP: python package 'websockets' is missing: pip install -r tests/interop/requirements.txt",
          file=sys.stderr)
    sys.exit(3)


def handler(ws):
    for message in ws:
        if isinstance(message, str) and message.startswith("close "):
            parts = message.split(" ", 2)
            ws.close(code=int(parts[1]), reason=parts[2] if len(parts) > 2 else "")
            return
        if message == "ping":
            if ws.ping(b"srv").wait(10):
                ws.send("pong srv")
            continue
        ws.send(message)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    context = None
    if len(sys.argv) > 3:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
    with serve(handler, "127.0.0.1", port, max_size=64 * 2**20, compression="deflate",
               ssl=context) as server:
        print("LISTENING %d" % server.socket.getsockname()[1], flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
