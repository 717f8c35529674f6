#!/usr/bin/env node
// The chat page's Server-Sent Events fallback in a real browser (issue 23): headless Chromium's
// own EventSource, against the demo.
//
// Usage: node tests/interop/sse_browser.js http://127.0.0.1:PORT/ [--timeout SECONDS]
//
// Checks:
//   1. tab "wes" opens `/?room=fallback&name=wes` (WebSocket) and tab "sam" opens the same room
//      with `?transport=sse`; both connect, sam's over an event stream (no WebSocket to /chat);
//   2. wes types a message: sam's #log shows `wes: MESSAGE` (a WebSocket client's message
//      reaches the page through EventSource);
//   3. sam types a message (sent with POST): wes's #log shows `sam: MESSAGE`, and so does sam's;
//   4. a plain `new EventSource("/rooms/fallback/events")` in a third tab gets the next message
//      wes sends as a `message` event whose `lastEventId` is the message's history id (`mid`).
// Prints OK and exits 0; prints FAIL: ... and exits 1 otherwise (including the deadline).
"use strict";

const { parseArgs, run, openPage, until } = require("./browser_common");

const { base, timeoutSecs } = parseArgs("node sse_browser.js http://HOST:PORT/ [--timeout SECONDS]", 40);
const page = (query) => new URL(`/?room=fallback&${query}`, base).toString();
const stamp = `${process.pid}-${Date.now()}`;

const connected = () => document.body.dataset.connected === "1";
const shows = (t) => Array.from(document.querySelectorAll("#log li")).some((li) => li.textContent === t);

async function say(p, text) {
  await p.fill("#msg", text);
  await p.press("#msg", "Enter");
}

run(timeoutSecs, async (context, log) => {
  // Which tab opened a WebSocket: the fallback page must not (it was asked for SSE).
  const sockets = [];
  const wes = await openPage(context, page("name=wes"), "wes", log);
  wes.on("websocket", (ws) => sockets.push(["wes", ws.url()]));
  const sam = await context.newPage();
  sam.on("websocket", (ws) => sockets.push(["sam", ws.url()]));
  await openPage(context, page("name=sam&transport=sse"), "sam", log, sam);
  await until(wes, "wes", "connecting", connected);
  await until(sam, "sam", "connecting over an event stream", connected);
  const transport = await sam.evaluate(() => document.body.dataset.transport);
  if (transport !== "sse") throw new Error(`sam's page is on ${JSON.stringify(transport)}, not sse`);
  if (sockets.some(([who]) => who === "sam")) throw new Error(`sam opened a WebSocket: ${JSON.stringify(sockets)}`);
  log("both connected; sam over EventSource");

  const fromWs = `from the WebSocket ${stamp}`;
  await say(wes, fromWs);
  await until(sam, "sam", "wes's message through EventSource", shows, `wes: ${fromWs}`);
  log("sam got wes's message");

  const fromSse = `from the fallback ${stamp} ✓`;
  await say(sam, fromSse);
  await until(wes, "wes", "sam's POSTed message", shows, `sam: ${fromSse}`);
  await until(sam, "sam", "its own message back", shows, `sam: ${fromSse}`);
  log("wes got sam's message");

  // A plain EventSource, no page logic: the event's data is the chat JSON and its id the mid.
  const plain = await context.newPage();
  await openPage(context, new URL("/health", base).toString(), "plain", log, plain);
  await plain.evaluate(() => {
    window.got = null;
    window.opened = false;
    const source = new EventSource("/rooms/fallback/events");
    source.onopen = () => { window.opened = true; };
    source.onmessage = (e) => {
      let m = null;
      try { m = JSON.parse(e.data); } catch (_) {}
      if (m && m.type === "message" && window.got === null) {
        window.got = { id: e.lastEventId, mid: m.mid, from: m.from, text: m.text, type: e.type };
        source.close();
      }
    };
  });
  await until(plain, "plain", "the EventSource opening", () => window.opened === true);
  const third = `to a plain EventSource ${stamp}`;
  await say(wes, third);
  await until(plain, "plain", "an event from the EventSource", () => window.got !== null);
  const got = await plain.evaluate(() => window.got);
  if (got.type !== "message" || got.from !== "wes" || got.text !== third) {
    throw new Error(`the plain EventSource got ${JSON.stringify(got)}, expected wes's ${JSON.stringify(third)}`);
  }
  if (!got.mid || got.id !== got.mid) {
    throw new Error(`the event's lastEventId ${JSON.stringify(got.id)} is not the message's mid ${JSON.stringify(got.mid)}`);
  }
  log(`plain EventSource got id ${got.id}`);
  console.log("OK");
});
