#!/usr/bin/env node
// The chat page in a real browser: two tabs of headless Chromium on `/`, each with its own
// WebSocket to `/chat` in the default room; a message typed in tab 1 must show up in tab 2 (and
// in tab 1 itself, since the server publishes to every member of the room).
//
// Usage: node tests/interop/chat_browser.js http://127.0.0.1:PORT/ [--timeout SECONDS]
//
// Checks:
//   1. GET / answers 200 in both tabs and both reach `document.body.dataset.connected === "1"`
//      (the browser's own WebSocket handshake with wsloop succeeded);
//   2. tab 2's `#log` shows a join notice (the JSON notices are parsed and rendered as such);
//   3. tab 1 re-joins as "alice" (the name is decided at the upgrade, so the page reconnects);
//      after typing in its `#msg` and pressing Enter, tab 2's `#log` shows `alice: MESSAGE`
//      and so does tab 1's;
//   4. closing tab 1 shows a leave notice in tab 2 and `· 1 online`.
// Prints OK and exits 0; prints FAIL: ... and exits 1 otherwise (including the deadline).
"use strict";

const { parseArgs, run, openPage, budget } = require("./browser_common");

const { base, timeoutSecs } = parseArgs("node chat_browser.js http://HOST:PORT/ [--timeout SECONDS]", 30);
const url = new URL("/", base).toString();
const message = `hello from tab 1, ${process.pid}-${Date.now()} ✓`;

async function waitForLine(page, text, name) {
  try {
    await page.waitForFunction(
      (t) => Array.from(document.querySelectorAll("#log li")).some((li) => li.textContent === t),
      text,
      { polling: 50, timeout: budget() },
    );
  } catch (e) {
    const lines = await page.$$eval("#log li", (lis) => lis.map((li) => li.textContent)).catch(() => []);
    const status = await page.textContent("#status").catch(() => "?");
    throw new Error(`${name}'s #log never showed ${JSON.stringify(text)}; status ${JSON.stringify(status)}; log ${JSON.stringify(lines)}`);
  }
}

run(timeoutSecs, async (context, log) => {
  const page1 = await openPage(context, url, "tab 1", log);
  const page2 = await openPage(context, url, "tab 2", log);
  for (const [page, name] of [[page1, "tab 1"], [page2, "tab 2"]]) {
    try {
      await page.waitForFunction(() => document.body.dataset.connected === "1", null, {
        polling: 50,
        timeout: budget(),
      });
    } catch (e) {
      const status = await page.textContent("#status").catch(() => "?");
      throw new Error(`${name} never connected: #status is ${JSON.stringify(status)}`);
    }
  }
  log("both tabs connected");
  // Tab 2 joined while tab 1 was there: both see at least tab 2's join notice.
  await page2.waitForSelector("#log li.notice", { state: "attached", timeout: budget() });

  await page1.fill("#name", "alice");
  await page1.click("#joinbtn");
  try {
    await page1.waitForFunction(
      () => document.body.dataset.opens === "2" && document.body.dataset.connected === "1",
      null,
      { polling: 50, timeout: budget() },
    );
  } catch (e) {
    const status = await page1.textContent("#status").catch(() => "?");
    throw new Error(`tab 1 never re-joined as alice: #status is ${JSON.stringify(status)}`);
  }
  await page1.fill("#msg", message);
  await page1.press("#msg", "Enter");
  const line = `alice: ${message}`;
  await waitForLine(page2, line, "tab 2");
  log("tab 2 got the message");
  await waitForLine(page1, line, "tab 1");
  const input = await page1.inputValue("#msg");
  if (input !== "") throw new Error(`tab 1's #msg was not cleared after sending: ${JSON.stringify(input)}`);
  const received2 = await page2.evaluate(() => document.body.dataset.received);
  if (received2 !== "1") throw new Error(`tab 2 counted ${received2} chat messages, expected 1`);
  // Closing tab 1 closes its WebSocket: tab 2 gets the leave notice and one client online.
  await page1.close();
  try {
    await page2.waitForFunction(
      () =>
        Array.from(document.querySelectorAll("#log li.notice")).some((li) => li.textContent.endsWith(" left")) &&
        document.getElementById("online").textContent.includes("1 online"),
      null,
      { polling: 50, timeout: budget() },
    );
  } catch (e) {
    const lines = await page2.$$eval("#log li", (lis) => lis.map((li) => li.textContent)).catch(() => []);
    throw new Error(`tab 2 got no leave notice after tab 1 closed; log ${JSON.stringify(lines)}`);
  }
  log("tab 2 saw tab 1 leave");
  console.log("OK");
});
