#!/usr/bin/env node
// The chat page's rooms and reconnect in a real browser: three tabs of headless Chromium, two in
// room "alpha" and one in room "beta". Alpha's tabs chat; the server is restarted mid-test; the
// pages notice (Close 1001), reconnect on their own with backoff, rejoin their rooms and chat
// again; beta's tab sees none of alpha's messages, before or after.
//
// Usage: node tests/interop/rooms_browser.js http://127.0.0.1:PORT/ [--timeout SECONDS]
//
// The restart is the test's job: after the first exchange this script prints a line `RESTART`
// on stdout and waits for a line on stdin, which the test writes once the new server listens.
// Prints OK and exits 0; prints FAIL: ... and exits 1 otherwise (including the deadline).
"use strict";

const readline = require("readline");
const { parseArgs, run, openPage, until } = require("./browser_common");

const { base, timeoutSecs } = parseArgs("node rooms_browser.js http://HOST:PORT/ [--timeout SECONDS]", 60);
const page = (room, name) => new URL(`/?room=${room}&name=${name}`, base).toString();
const stdinLines = readline.createInterface({ input: process.stdin });
const nextStdinLine = () => new Promise((resolve) => stdinLines.once("line", resolve));

const connected = (n) => document.body.dataset.connected === "1" && document.body.dataset.opens === String(n);
const online = (n) => document.body.dataset.online === String(n);
const shows = (t) => Array.from(document.querySelectorAll("#log li")).some((li) => li.textContent === t);

async function say(p, text) {
  await p.fill("#msg", text);
  await p.press("#msg", "Enter");
}

run(timeoutSecs, async (context, log) => {
  const ann = await openPage(context, page("alpha", "ann"), "ann", log);
  const al = await openPage(context, page("alpha", "al"), "al", log, await context.newPage());
  const bea = await openPage(context, page("beta", "bea"), "bea", log, await context.newPage());
  for (const [p, n] of [[ann, "ann"], [al, "al"], [bea, "bea"]]) {
    await until(p, n, "the first connection", connected, 1);
  }
  await until(ann, "ann", "2 online in alpha", online, 2);
  await until(bea, "bea", "1 online in beta", online, 1);
  await say(ann, "before the restart");
  await until(al, "al", "ann's message", shows, "ann: before the restart");
  log("alpha chatted; asking for a restart");

  console.log("RESTART");
  await nextStdinLine();
  log("server restarted; waiting for the pages to come back");
  for (const [p, n] of [[ann, "ann"], [al, "al"], [bea, "bea"]]) {
    await until(p, n, "reconnecting by itself", connected, 2);
  }
  await until(ann, "ann", "2 online in alpha again", online, 2);
  await until(al, "al", "2 online in alpha again", online, 2);
  await say(al, "after the restart");
  await until(ann, "ann", "al's message after the restart", shows, "al: after the restart");

  // Beta heard nothing of alpha: no chat message at all, in either server's lifetime.
  const beaLines = await bea.$$eval("#log li", (lis) => lis.map((li) => li.textContent));
  const received = await bea.evaluate(() => document.body.dataset.received || "0");
  if (received !== "0" || beaLines.some((l) => l.includes("restart"))) {
    throw new Error(`bea in beta received alpha's messages: received=${received} log ${JSON.stringify(beaLines)}`);
  }
  console.log("OK");
});
