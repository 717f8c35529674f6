#!/usr/bin/env node
// Headless Chromium over https:// and wss:// against wsloop serving TLS with a test certificate.
//
// Usage: node wss_browser.js https://HOST:PORT/ --cert LEAF.pem [--timeout SECONDS]
//
// Chromium is told to trust the server's certificate by its key alone
// (`--ignore-certificate-errors-spki-list` with the base64 SHA-256 of the leaf's
// SubjectPublicKeyInfo, computed here from LEAF.pem: the first certificate in the file), so
// every other TLS check stays on. Then: GET /health over https answers 200; a page script on
// that origin opens `wss://HOST:PORT/echo` and gets back, as sent, a text, a non-ASCII text and
// a 100,000-byte binary (several TLS records); the close with 1000 is answered with 1000.
// Prints OK and exits 0; prints FAIL: ... and exits 1 otherwise; exits 3 when a package or the
// browser is missing.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const { parseArgs, run, openPage } = require("./browser_common");

const { base, timeoutSecs } = parseArgs(
  "node wss_browser.js https://HOST:PORT/ --cert LEAF.pem [--timeout SECONDS]",
  30,
);
const ci = process.argv.indexOf("--cert");
if (ci < 0 || !process.argv[ci + 1]) {
  console.error("usage: node wss_browser.js https://HOST:PORT/ --cert LEAF.pem [--timeout SECONDS]");
  process.exit(2);
}
const leaf = new crypto.X509Certificate(fs.readFileSync(process.argv[ci + 1]));
const spki = crypto
  .createHash("sha256")
  .update(leaf.publicKey.export({ type: "spki", format: "der" }))
  .digest("base64");

run(
  timeoutSecs,
  async (context, log) => {
    const page = await openPage(context, new URL("/health", base).toString(), "https page", log);
    const wsUrl = new URL("/echo", base);
    wsUrl.protocol = "wss:";
    const result = await page.evaluate(async (url) => {
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      const next = () =>
        new Promise((resolve, reject) => {
          ws.onmessage = (e) => resolve(e.data);
          ws.onerror = () => reject(new Error("WebSocket error"));
          ws.onclose = (e) => reject(new Error(`closed early: ${e.code} ${e.reason}`));
        });
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error(`could not open ${url}`));
      });
      const out = { protocol: location.protocol, checks: [] };
      for (const text of ["hello over wss", "ünïcödé ✓ 🦀"]) {
        const got = next();
        ws.send(text);
        const echo = await got;
        out.checks.push(echo === text ? "text ok" : `text mismatch: ${JSON.stringify(echo)}`);
      }
      const big = new Uint8Array(100000);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 251;
      const got = next();
      ws.send(big);
      const echo = await got;
      const same =
        echo instanceof ArrayBuffer &&
        echo.byteLength === big.length &&
        new Uint8Array(echo).every((b, i) => b === big[i]);
      out.checks.push(same ? "binary ok" : `binary mismatch (${echo && echo.byteLength} bytes)`);
      out.close = await new Promise((resolve) => {
        ws.onclose = (e) => resolve(e.code);
        ws.close(1000);
      });
      return out;
    }, wsUrl.toString());
    log(JSON.stringify(result));
    if (result.protocol !== "https:") throw new Error(`the page is not over https: ${result.protocol}`);
    const bad = result.checks.filter((c) => !c.endsWith(" ok"));
    if (bad.length || result.checks.length !== 3) throw new Error(`echo over wss: ${result.checks.join("; ")}`);
    if (result.close !== 1000) throw new Error(`close answered with ${result.close}, not 1000`);
    console.log("OK");
  },
  [`--ignore-certificate-errors-spki-list=${spki}`],
);
