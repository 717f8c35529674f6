#!/usr/bin/env node
// The /learn page in a real browser: the handshake it shows must be the one Chromium really made,
// and a message typed on the page must come back explained as frames.
//
// Usage: node tests/interop/learn_browser.js http://127.0.0.1:PORT/ [--timeout SECONDS]
//
// The page's DOM contract: `#key` and `#accept` (the Sec-WebSocket-Key the browser sent and the
// Sec-WebSocket-Accept the server answered), optional `#browser-accept` (the same accept computed
// in the page), `body[data-ready="1"]` once the handshake is shown, and `body[data-frames="N"]`
// counting the frame explanations rendered.
//
// permessage-deflate (RFC 7692): the page also shows the extension negotiation (`#ext-offered`,
// `body[data-extension]`: the Sec-WebSocket-Extensions it says the 101 carried,
// `body[data-browser-extensions]`: the page's `WebSocket.extensions`), and each frame table is
// a `[data-compressed="1"|"0"]` box inside a `[data-side="received"|"sent"]` column, with the
// inflated text of a compressed message in a `.inflated-text` cell (as a JSON string).
//
// Prints three JSON lines on stdout (the Rust test tests/browser.rs checks the values with
// wsloop::handshake::accept_key):
//   {"stage":"handshake","key":...,"accept":...,"browserAccept":...|null,"browserMatch":"1"|"0"|null,
//    "wireKey":...|null,"wireAccept":...|null,"wireError":...|null,
//    "wireOffer":...|null,"wireExtensions":...|null,"browserExtensions":...|null,
//    "shownOffer":...|null,"shownExtensions":...|null}
//   {"stage":"frames","frames":N,"message":...,"messageShown":true|false,"echoShown":true|false,
//    "receivedCompressed":true|false,"receivedInflated":true|false}
//   {"stage":"long","frames":N,"length":N,"echoShown":true|false,"receivedCompressed":...,
//    "receivedInflated":...,"sentCompressed":...,"sentInflated":...}
// `wireKey`/`wireAccept`/`wireOffer`/`wireExtensions` are the handshake headers (Sec-WebSocket-
// Key, -Accept, the request's and the response's -Extensions) as Chromium's DevTools protocol saw
// them on the wire (null if it did not report them, or the header was absent; `wireError` says
// why when DevTools reported nothing). `messageShown`: the frame explanations rendered after
// sending show the message decoded (as the JSON string the page prints); `echoShown`: the page
// shows "The server echoed: " and the message. `receivedCompressed`: the browser's frame of the
// message is shown compressed (RSV1); `receivedInflated`: a compressed frame of it is shown
// inflated to exactly the message typed. The "long" stage types a message above the server's
// compression threshold and reports the same for both sides (`sent*`: the server's echo). The
// script does not judge these values: tests/browser.rs does, and with WSLOOP_REQUIRE_BROWSER=1 a
// null among the wire values fails. Exits 0 when the page got ready and rendered at least one
// frame after each message; 1 otherwise (FAIL: ... on stderr), including the deadline.
//
// WSLOOP_LEARN_NO_DEVTOOLS=1 skips the DevTools hook (the wire values are then null): the test
// that proves a missing wire value fails the mandatory check uses it.
"use strict";

const { parseArgs, run, openPage, budget } = require("./browser_common");

const { base, timeoutSecs } = parseArgs("node learn_browser.js http://HOST:PORT/ [--timeout SECONDS]", 30);
const url = new URL("/learn", base).toString();
const message = "Hello, wsloop!";
// Above the server's default compression threshold (128 bytes): the echo comes back compressed.
const longMessage = "Hello, wsloop! Compress me, please. ".repeat(8).trim();
// The page's message input: a known id if it has one, else the first text input.
const INPUTS = ["#msg", "#message", "#input", "#text", "input[type=text]", "input:not([type])", "textarea"];
const BUTTONS = ["#send-button", "button#send", "form button[type=submit]", "form button:not([type])", "button"];

function header(headers, name) {
  if (!headers) return null;
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === name) return String(v).trim();
  }
  return null;
}

async function firstVisible(page, selectors) {
  for (const sel of selectors) {
    for (const el of await page.$$(sel)) {
      if ((await el.isVisible()) && (await el.isEnabled())) return { sel, el };
    }
  }
  return null;
}

async function frameCount(page) {
  return page.evaluate(() => Number(document.body.dataset.frames || "0"));
}

run(timeoutSecs, async (context, log) => {
  // Watch the handshake on the wire through the DevTools protocol, attached before navigation.
  const page = context.pages().find((p) => p.url() === "about:blank") || (await context.newPage());
  const wire = { key: null, accept: null, offer: null, extensions: null, error: null };
  if (process.env.WSLOOP_LEARN_NO_DEVTOOLS === "1") {
    wire.error = "the DevTools hook was turned off (WSLOOP_LEARN_NO_DEVTOOLS=1)";
  } else {
    try {
      const cdp = await context.newCDPSession(page);
      const learnSockets = new Set();
      cdp.on("Network.webSocketCreated", (e) => {
        if (new URL(e.url).pathname === "/learn") learnSockets.add(e.requestId);
      });
      cdp.on("Network.webSocketWillSendHandshakeRequest", (e) => {
        if (learnSockets.has(e.requestId) && wire.key === null) {
          wire.key = header(e.request && e.request.headers, "sec-websocket-key");
          wire.offer = header(e.request && e.request.headers, "sec-websocket-extensions");
        }
      });
      cdp.on("Network.webSocketHandshakeResponseReceived", (e) => {
        if (learnSockets.has(e.requestId) && wire.accept === null) {
          wire.accept = header(e.response && e.response.headers, "sec-websocket-accept");
          wire.extensions = header(e.response && e.response.headers, "sec-websocket-extensions");
        }
      });
      await cdp.send("Network.enable");
    } catch (e) {
      wire.error = `DevTools network events unavailable: ${e.message}`;
      log(`${wire.error}; wire values will be null`);
    }
  }

  await openPage(context, url, "learn", log, page);
  try {
    await page.waitForFunction(() => document.body.dataset.ready === "1", null, {
      polling: 50,
      timeout: budget(),
    });
  } catch (e) {
    const text = await page.evaluate(() => document.body && document.body.innerText.slice(0, 300)).catch(() => "?");
    throw new Error(`/learn never set body[data-ready="1"]; page text: ${JSON.stringify(text)}`);
  }
  const shown = await page.evaluate(() => {
    const text = (id) => {
      const el = document.getElementById(id);
      return el ? el.textContent.trim() : null;
    };
    return {
      key: text("key"),
      accept: text("accept"),
      browserAccept: text("browser-accept"),
      browserMatch: document.body.dataset.browserMatch || null,
      browserExtensions: document.body.dataset.browserExtensions === undefined ? null : document.body.dataset.browserExtensions,
      shownOffer: text("ext-offered"),
      shownExtensions: document.body.dataset.extension === undefined ? null : document.body.dataset.extension,
    };
  });
  if (!shown.key) throw new Error("/learn has no #key text");
  if (!shown.accept) throw new Error("/learn has no #accept text");
  // The DevTools events may trail the page's own rendering by a moment.
  for (let i = 0; i < 40 && wire.error === null && (wire.key === null || wire.accept === null); i++) {
    await page.waitForTimeout(50);
  }
  if (wire.error === null && (wire.key === null || wire.accept === null)) {
    wire.error = "Chromium's DevTools protocol sent no handshake event for the /learn WebSocket within 2 s";
  }
  console.log(
    JSON.stringify({
      stage: "handshake",
      ...shown,
      wireKey: wire.key,
      wireAccept: wire.accept,
      wireError: wire.error,
      wireOffer: wire.offer,
      wireExtensions: wire.extensions,
    }),
  );

  const input = await firstVisible(page, INPUTS);
  if (!input) throw new Error(`/learn has no visible message input (tried ${INPUTS.join(", ")})`);

  // Types `text`, sends it (Enter, else the button) and waits for a new frame explanation.
  async function send(text) {
    const before = await frameCount(page);
    log(`typing ${text.length} characters into ${input.sel}`);
    await input.el.fill(text);
    await input.el.press("Enter");
    const grew = (b) => Number(document.body.dataset.frames || "0") >= Math.max(1, b + 1);
    try {
      await page.waitForFunction(grew, before, { polling: 50, timeout: 3000 });
    } catch (_) {
      // Enter did nothing visible: maybe the page wants its button clicked.
      const button = await firstVisible(page, BUTTONS);
      if (!button) throw new Error(`Enter in ${input.sel} rendered no frame and /learn has no button to click`);
      log(`Enter rendered no frame in 3s; clicking ${button.sel}`);
      if ((await input.el.inputValue()) === "") await input.el.fill(text);
      await button.el.click();
      try {
        await page.waitForFunction(grew, before, { polling: 50, timeout: budget() });
      } catch (e) {
        throw new Error(`body[data-frames] stayed at ${await frameCount(page).catch(() => "?")} after sending a message`);
      }
    }
    const frames = await frameCount(page);
    // Not the page's own "You sent: ..." heading: the message must come back from the server, in
    // the frame explanations (each data frame's "as text" row) and in the echo line. The
    // compression checks read the newest exchange (the page puts it first).
    const seen = await page.evaluate((m) => {
      const quoted = JSON.stringify(m);
      const text = (sel) => Array.from(document.querySelectorAll(sel)).map((e) => e.innerText);
      const newest = document.querySelector(".exchange");
      const side = (name) => (newest ? newest.querySelector(`[data-side="${name}"]`) : null);
      const compressed = (name) => {
        const s = side(name);
        return s ? s.querySelector('[data-compressed="1"]') !== null : false;
      };
      const inflated = (name) => {
        const s = side(name);
        if (!s) return false;
        return Array.from(s.querySelectorAll('[data-compressed="1"] .inflated-text')).some(
          (e) => e.textContent.trim() === quoted,
        );
      };
      return {
        messageShown: text(".exchange .frames").some((t) => t.includes(quoted)),
        echoShown: text(".exchange > p").some((t) => t.trim() === `The server echoed: ${quoted}`),
        receivedCompressed: compressed("received"),
        receivedInflated: inflated("received"),
        sentCompressed: compressed("sent"),
        sentInflated: inflated("sent"),
      };
    }, text);
    return { frames, ...seen };
  }

  const first = await send(message);
  console.log(
    JSON.stringify({
      stage: "frames",
      frames: first.frames,
      message,
      messageShown: first.messageShown,
      echoShown: first.echoShown,
      receivedCompressed: first.receivedCompressed,
      receivedInflated: first.receivedInflated,
    }),
  );
  const long = await send(longMessage);
  console.log(
    JSON.stringify({
      stage: "long",
      frames: long.frames,
      length: longMessage.length,
      echoShown: long.echoShown,
      receivedCompressed: long.receivedCompressed,
      receivedInflated: long.receivedInflated,
      sentCompressed: long.sentCompressed,
      sentInflated: long.sentInflated,
    }),
  );
});
