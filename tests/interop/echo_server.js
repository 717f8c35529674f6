#!/usr/bin/env node
// An echo server with the third-party Node `ws` library, for wsloop's client tests.
//
// Usage: node tests/interop/echo_server.js [PORT [CERT KEY]]   (PORT 0 or absent: a free port)
//
// With CERT and KEY (PEM files: the certificate chain and its private key) it serves wss://.
//
// Prints "LISTENING <port>" on stdout once it accepts connections, then serves on 127.0.0.1
// until killed. Per connection (permessage-deflate accepted when offered, messages up to 64 MiB):
//   - a text message "close CODE REASON..." makes the server close with that code and reason;
//   - a text message "ping" makes the server send a ping "srv" and, once its pong arrives,
//     the text "pong srv";
//   - every other message is sent back as it came: text as text, binary as binary.
"use strict";

let WebSocketServer;
try {
  ({ WebSocketServer } = require("ws"));
} catch (e) {
  console.error("SETUP: node package 'ws' is missing: npm ci --prefix tests/interop");
  process.exit(3);
}

const port = Number(process.argv[2] || 0);
const [certFile, keyFile] = process.argv.slice(3, 5);
let server = null;
if (certFile && keyFile) {
  const fs = require("fs");
  server = require("https").createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) });
}
const wss = new WebSocketServer({
  ...(server ? { server } : { host: "127.0.0.1", port }),
  perMessageDeflate: true,
  maxPayload: 64 * 1024 * 1024,
});

wss.on("listening", () => {
  console.log(`LISTENING ${wss.address().port}`);
});
if (server) {
  server.listen(port, "127.0.0.1", () => console.log(`LISTENING ${server.address().port}`));
}

wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    if (!isBinary) {
      const text = data.toString("utf8");
      if (text.startsWith("close ")) {
        const [, code, ...reason] = text.split(" ");
        ws.close(Number(code), reason.join(" "));
        return;
      }
      if (text === "ping") {
        ws.once("pong", (payload) => ws.send(`pong ${payload.toString()}`));
        ws.ping("srv");
        return;
      }
    }
    ws.send(data, { binary: isBinary });
  });
});
