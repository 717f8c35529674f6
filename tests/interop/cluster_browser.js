#!/usr/bin/env node
// Two wsloop processes sharing Redis, a browser tab on each, one room: they chat across the
// processes; process B is stopped and started again; B's page reconnects by itself with the
// id of the last message it saw and shows exactly what it missed, once each, in order, then
// chats on.
//
// Usage: node tests/interop/cluster_browser.js http://A/ http://B/ [--timeout SECONDS]
//
// The stop and the start are the test's job: this script prints `STOP_B`, waits for a line on
// stdin (B is down), then prints `START_B` and waits for another (B is back on its port).
// Prints OK and exits 0; prints FAIL: ... and exits 1 otherwise (including the deadline).
"use strict";

const readline = require("readline");
const { parseArgs, run, openPage, until } = require("./browser_common");

const { base, timeoutSecs } = parseArgs("node cluster_browser.js http://A/ http://B/ [--timeout SECONDS]", 60);
const baseB = new URL(process.argv.slice(2).filter((a) => /^https?:/.test(a))[1] || "missing B URL");
const page = (b, name) => new URL(`/?room=alpha&name=${name}`, b).toString();
const stdinLines = readline.createInterface({ input: process.stdin });
const nextStdinLine = () => new Promise((resolve) => stdinLines.once("line", resolve));

async function chatLines(p) {
  return p.$$eval("#log li", (lis) => lis.filter((li) => li.className !== "notice").map((li) => li.textContent));
}

const connected = (n) => document.body.dataset.connected === "1" && document.body.dataset.opens === String(n);
const disconnected = () => document.body.dataset.connected === "0";
const shows = (t) => Array.from(document.querySelectorAll("#log li")).some((li) => li.textContent === t);

async function say(p, text) {
  await p.fill("#msg", text);
  await p.press("#msg", "Enter");
}

function same(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

run(timeoutSecs, async (context, log) => {
  const ann = await openPage(context, page(base, "ann"), "ann", log);
  const bob = await openPage(context, page(baseB, "bob"), "bob", log, await context.newPage());
  await until(ann, "ann", "the first connection (process A)", connected, 1);
  await until(bob, "bob", "the first connection (process B)", connected, 1);
  await say(ann, "hello from A");
  await until(bob, "bob", "ann's message through Redis", shows, "ann: hello from A");
  await say(bob, "hello from B");
  await until(ann, "ann", "bob's message through Redis", shows, "bob: hello from B");
  log("the two processes chat; asking for B to stop");

  console.log("STOP_B");
  await nextStdinLine();
  await until(bob, "bob", "noticing that B went away", disconnected);
  for (const t of ["missed 1", "missed 2", "missed 3"]) await say(ann, t);
  await until(ann, "ann", "its own messages while B is down", shows, "ann: missed 3");
  log("ann spoke while B was down; asking for B to start");

  console.log("START_B");
  await nextStdinLine();
  await until(bob, "bob", "reconnecting to the new B by itself", connected, 2);
  await until(bob, "bob", "the replay of what it missed", shows, "ann: missed 3");
  await say(bob, "back");
  await until(ann, "ann", "bob's message after the restart", shows, "bob: back");
  await until(bob, "bob", "its own message after the restart", shows, "bob: back");

  const want = ["ann: hello from A", "bob: hello from B", "ann: missed 1", "ann: missed 2", "ann: missed 3", "bob: back"];
  for (const [p, n] of [[ann, "ann"], [bob, "bob"]]) {
    const got = await chatLines(p);
    if (!same(got, want)) throw new Error(`${n}'s messages: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
  }
  const resyncs = await bob.evaluate(() => document.body.dataset.resyncs || "0");
  if (resyncs !== "0") throw new Error(`bob was told to resync ${resyncs} time(s)`);
  console.log("OK");
});
