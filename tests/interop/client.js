#!/usr/bin/env node
// Echo round trip against a wsloop echo endpoint with the third-party Node `ws` client.
//
// Usage: node tests/interop/client.js ws://127.0.0.1:PORT/echo [--timeout SECONDS] [--deflate]
//
// With --deflate the client offers permessage-deflate (RFC 7692) with `perMessageDeflate: true`
// (ws then compresses messages of 1 KiB and more, and inflates what it gets); without, no
// extension.
//
// Checks, in order, under one deadline:
//   1. the opening handshake completes (ws validates Sec-WebSocket-Accept itself, and the
//      server's permessage-deflate answer against its offer);
//   2. a text message (non-ASCII, 16-bit length) comes back as the same text, flagged as text;
//   3. a binary message (every byte value, 64-bit length) comes back as the same bytes, as binary;
//   4. a 4 KiB JSON-like text message (above the server's compression threshold) comes back
//      intact, as text;
//   5. a ping is answered by a pong with the same payload;
//   6. a client close with code 1000 is answered by the server's close with code 1000.
// Prints `EXTENSION: <the 101's Sec-WebSocket-Extensions, or none>` once open, then OK, and exits
// 0; prints FAIL: ... to stderr and exits 1 on any mismatch, error or timeout.
"use strict";

let WebSocket;
try {
  WebSocket = require("ws");
} catch (e) {
  console.error("SETUP: node package 'ws' is missing: npm ci --prefix tests/interop");
  process.exit(3);
}

const args = process.argv.slice(2);
const ti = args.indexOf("--timeout");
// The URL: the argument that is neither a flag nor the timeout's value.
const url = args.find((a, i) => !a.startsWith("--") && !(ti >= 0 && i === ti + 1));
const timeoutSecs = ti >= 0 ? Number(args[ti + 1]) : 10;
if (!url || !(timeoutSecs > 0)) {
  console.error("usage: node client.js ws://HOST:PORT/echo [--timeout SECONDS]");
  process.exit(2);
}

const TEXT = "héllo wsloop ✓ " + "x".repeat(200);
const BINARY = Buffer.alloc(256 * 300);
for (let i = 0; i < BINARY.length; i++) BINARY[i] = i % 256;
const PING = Buffer.from("interop");
const deflate = args.includes("--deflate");

// Chat-like JSON text of at least `size` bytes, the same on every run (as client.py's).
function jsonLike(size) {
  const items = [];
  let total = 2;
  for (let i = 0; total < size; i++) {
    const item =
      `{"type":"message","room":"lobby","id":"1.${i % 7}.${i}","from":"user-${i % 13}",` +
      `"text":"message number ${i}, about the weather","ts":${1700000000000 + i}}`;
    items.push(item);
    total += item.length + 1;
  }
  return `[${items.join(",")}]`;
}
const JSON_TEXT = jsonLike(4096);

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

const ws = new WebSocket(url, { perMessageDeflate: deflate, handshakeTimeout: timeoutSecs * 1000, maxPayload: 1 << 20 });
let extension = null;
ws.on("upgrade", (res) => {
  extension = res.headers["sec-websocket-extensions"] || null;
});

ws.on("error", (e) => fail(`${e.name}: ${e.message}`));
ws.on("unexpected-response", (_req, res) => fail(`HTTP ${res.statusCode} instead of 101`));

ws.on("open", () => {
  console.log(`EXTENSION: ${extension || "none"}`);
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
    step = "JSON echo";
    ws.send(JSON_TEXT);
  } else if (step === "JSON echo") {
    if (isBinary) return fail("the JSON echo came back as a binary message");
    const got = data.toString("utf8");
    if (got !== JSON_TEXT) return fail(`sent ${short(JSON_TEXT)}, got ${short(got)}`);
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
