#!/usr/bin/env node
// Echo round trip against a wsloop echo endpoint with the third-party Node `ws` client.
//
// Usage: node tests/interop/client.js ws://127.0.0.1:PORT/echo [--timeout SECONDS]
//
// Checks, in order, under one deadline:
//   1. the opening handshake completes (ws validates Sec-WebSocket-Accept itself);
//   2. a text message (non-ASCII, 16-bit length) comes back as the same text, flagged as text;
//   3. a binary message (every byte value, 64-bit length) comes back as the same bytes, as binary;
//   4. a ping is answered by a pong with the same payload;
//   5. a client close with code 1000 is answered by the server's close with code 1000.
// Prints OK and exits 0; prints FAIL: ... to stderr and exits 1 on any mismatch, error or timeout.
"use strict";

let WebSocket;
try {
  WebSocket = require("ws");
} catch (e) {
  console.error("SETUP: node package 'ws' is missing: npm ci --prefix tests/interop");
  process.exit(3);
}

const args = process.argv.slice(2);
const url = args.find((a) => !a.startsWith("--"));
const ti = args.indexOf("--timeout");
const timeoutSecs = ti >= 0 ? Number(args[ti + 1]) : 10;
if (!url || !(timeoutSecs > 0)) {
  console.error("usage: node client.js ws://HOST:PORT/echo [--timeout SECONDS]");
  process.exit(2);
}

const TEXT = "héllo wsloop ✓ " + "x".repeat(200);
const BINARY = Buffer.alloc(256 * 300);
for (let i = 0; i < BINARY.length; i++) BINARY[i] = i % 256;
const PING = Buffer.from("interop");

function short(s, limit = 80) {
  const j = JSON.stringify(s);
  return j.length <= limit ? j : `${j.slice(0, limit)}... (${s.length} long)`;
}

let step = "handshake";
let finished = false;
function fail(message) {
  if (finished) return;
  finished = true;
  console.error(`FAIL (${step}): ${message}`);
  try {
    ws.terminate();
  } catch (_) {}
  process.exit(1);
}

const deadline = setTimeout(() => fail(`timed out after ${timeoutSecs}s`), timeoutSecs * 1000);

const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: timeoutSecs * 1000, maxPayload: 1 << 20 });

ws.on("error", (e) => fail(`${e.name}: ${e.message}`));
ws.on("unexpected-response", (_req, res) => fail(`HTTP ${res.statusCode} instead of 101`));

ws.on("open", () => {
  step = "text echo";
  ws.send(TEXT);
});

ws.on("message", (data, isBinary) => {
  if (step === "text echo") {
    if (isBinary) return fail("the text echo came back as a binary message");
    const got = data.toString("utf8");
    if (got !== TEXT) return fail(`sent ${short(TEXT)}, got ${short(got)}`);
    step = "binary echo";
    ws.send(BINARY);
  } else if (step === "binary echo") {
    if (!isBinary) return fail("the binary echo came back as a text message");
    if (!BINARY.equals(data)) return fail(`sent ${BINARY.length} bytes, got ${data.length} different bytes`);
    step = "ping";
    ws.ping(PING);
  } else {
    fail(`unexpected message (${data.length} bytes)`);
  }
});

ws.on("pong", (data) => {
  if (step !== "ping") return; // an unsolicited pong is allowed (RFC 6455 §5.5.3)
  if (!PING.equals(data)) return fail(`pong payload ${JSON.stringify(data.toString())}, expected "interop"`);
  step = "close";
  ws.close(1000, "done");
});

ws.on("close", (code, reason) => {
  if (finished) return;
  if (step !== "close") return fail(`connection closed early with code ${code} ${reason}`);
  if (code !== 1000) return fail(`server close code ${code} (${reason}), expected 1000`);
  finished = true;
  clearTimeout(deadline);
  console.log("OK");
  process.exit(0);
});
