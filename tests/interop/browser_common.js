// Shared by the *_browser.js scripts: argument parsing, a hard deadline, and a
// headless Debian Chromium driven by playwright-core (no browser download: the system binary).
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");

let chromium;
try {
  ({ chromium } = require("playwright-core"));
} catch (e) {
  console.error("SETUP: node package 'playwright-core' is missing: npm ci --prefix tests/interop");
  process.exit(3);
}

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/// `node script.js http://HOST:PORT/ [--timeout SECONDS]` -> { base: URL, timeoutSecs }.
function parseArgs(usage, defaultTimeout) {
  const args = process.argv.slice(2);
  const url = args.find((a) => !a.startsWith("--"));
  const ti = args.indexOf("--timeout");
  const timeoutSecs = ti >= 0 ? Number(args[ti + 1]) : defaultTimeout;
  if (!url || !(timeoutSecs > 0)) {
    console.error(`usage: ${usage}`);
    process.exit(2);
  }
  return { base: new URL(url), timeoutSecs };
}

let deadlineAt = Infinity;

/// Milliseconds a wait may take so that it fails with its own message before the run's
/// deadline: what is left of the deadline, less a margin for the report (at least 500 ms).
function budget() {
  return Math.max(500, deadlineAt - Date.now() - 2000);
}

/// Runs `body(context, log)` in a fresh headless Chromium; exits 0 if it resolves, 1 if it
/// throws or the deadline passes. `log(...)` lines go to stderr and are kept for the report.
/// `extraArgs`: more Chromium flags (wss_browser.js trusts its test certificate with one).
function run(timeoutSecs, body, extraArgs = []) {
  if (!fs.existsSync(CHROMIUM)) {
    console.error(`SETUP: no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
    process.exit(3);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "wsloop-chromium-"));
  let context = null;
  const cleanup = () => {
    try {
      fs.rmSync(userDataDir, { recursive: true, force: true });
    } catch (_) {}
  };
  let failing = false;
  const fail = (message) => {
    if (failing) return;
    failing = true;
    console.error(`FAIL: ${message}`);
    // Close the browser (at most 3 s) so that its profile can be removed; playwright-core also
    // kills the browsers it launched when this process exits.
    const closed = context ? context.close().catch(() => {}) : Promise.resolve();
    Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]).then(() => {
      cleanup();
      process.exit(1);
    });
  };
  const deadline = setTimeout(() => fail(`timed out after ${timeoutSecs}s`), timeoutSecs * 1000);
  deadlineAt = Date.now() + timeoutSecs * 1000;
  const log = (...parts) => console.error("[browser]", ...parts);

  (async () => {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS.concat(extraArgs),
      timeout: timeoutSecs * 1000,
    });
    context.setDefaultTimeout(timeoutSecs * 1000);
    await body(context, log);
    await context.close();
  })().then(
    () => {
      clearTimeout(deadline);
      cleanup();
      process.exit(0);
    },
    (e) => fail(e && e.stack ? e.stack : String(e)),
  );
}

/// Opens `url` in `page` (default: the context's blank first tab, else a new tab), logging the
/// page's console errors, uncaught errors and failed requests.
async function openPage(context, url, name, log, existing) {
  const page =
    existing || context.pages().find((p) => p.url() === "about:blank") || (await context.newPage());
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") log(`${name} console.${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => log(`${name} page error: ${e.message}`));
  page.on("requestfailed", (r) => log(`${name} request failed: ${r.url()} ${r.failure() && r.failure().errorText}`));
  page.on("response", (r) => {
    if (r.status() >= 400) log(`${name} HTTP ${r.status()} for ${r.url()}`);
  });
  const response = await page.goto(url, { waitUntil: "load" });
  if (!response || response.status() !== 200) {
    throw new Error(`${name}: GET ${url} -> ${response ? response.status() : "no response"}`);
  }
  return page;
}

/// Waits until `fn(arg)` is true in the chat page `p` (named `name` in the report); fails with
/// `what`, the page's status and its log when it is not by the deadline.
async function until(p, name, what, fn, arg) {
  try {
    await p.waitForFunction(fn, arg, { polling: 50, timeout: budget() });
  } catch (e) {
    const status = await p.textContent("#status").catch(() => "?");
    const lines = await p.$$eval("#log li", (lis) => lis.map((li) => li.textContent)).catch(() => []);
    throw new Error(`${name}: ${what} never happened; status ${JSON.stringify(status)}; log ${JSON.stringify(lines)}`);
  }
}

module.exports = { parseArgs, run, openPage, budget, until };
