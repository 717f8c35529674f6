//! The demo's pages in a real browser: headless Debian Chromium driven by playwright-core
//! (tests/interop/*_browser.js) against the demo server over loopback.
//!
//! Prerequisites (see tests/interop/README.md): `apt-get install -y chromium` and
//! `npm ci --prefix tests/interop`. Without them each test prints `skipped: ...` and passes,
//! unless `WSLOOP_REQUIRE_BROWSER=1`, which makes a missing prerequisite a failure (CI sets it).
//! The same variable makes the `/learn` values that only the browser provides (its DevTools view
//! of the handshake on the wire, the page's own SHA-1 check) mandatory: a null there fails.

mod common;
#[path = "interop/harness.rs"]
mod harness;

use common::demo::{message_json, DemoApp};
use common::demo_server;
use common::lines::{all_of, lines_of};
use harness::{chromium, expect_check_failure, expect_ok, node_missing, prerequisites, script};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wsloop::handshake::accept_key;
use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response, Server};
use wsloop::{handshake::Request, CloseCode};

/// The demo's per-connection state.
type DemoState = <DemoApp as Handler>::State;

const REQUIRE: &str = "WSLOOP_REQUIRE_BROWSER";
const SCRIPT_TIMEOUT_SECS: u64 = 40;
const DEADLINE: Duration = Duration::from_secs(SCRIPT_TIMEOUT_SECS + 20);

/// One browser at a time: three Chromiums at once on a 2-core machine only make each slower.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

fn browser_ready(test: &str) -> bool {
    let mut missing = node_missing(&["playwright-core"]);
    let chromium = chromium();
    if !chromium.is_file() {
        missing.push(format!("no Chromium at {}", chromium.display()));
    }
    prerequisites(
        test,
        REQUIRE,
        &missing,
        "apt-get install -y chromium && npm ci --prefix tests/interop",
    )
    .is_ok()
}

fn browser_script(name: &str, addr: SocketAddr, timeout_secs: u64) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(script(name))
        .arg(format!("http://{addr}/"))
        .args(["--timeout", &timeout_secs.to_string()])
        .env("CHROMIUM", chromium());
    cmd
}

#[test]
fn chat_page_between_two_browser_tabs() {
    if !browser_ready("chat_page_between_two_browser_tabs") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = demo_server(|s| s);
    expect_ok(
        "chat_browser.js",
        &mut browser_script("chat_browser.js", server.local_addr(), SCRIPT_TIMEOUT_SECS),
        DEADLINE,
    );
}

/// Issue 10 item 6: two pages in one room chat; the server restarts; every page reconnects by
/// itself and rejoins its room; a page in another room sees none of it.
#[test]
fn rooms_survive_a_server_restart() {
    if !browser_ready("rooms_survive_a_server_restart") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = demo_server(|s| s);
    let addr = server.local_addr();
    let mut child = browser_script("rooms_browser.js", addr, SCRIPT_TIMEOUT_SECS + 20)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let rx = lines_of(child.stdout.take().unwrap());
    let stderr_text = all_of(child.stderr.take().unwrap());
    let deadline = Instant::now() + DEADLINE + Duration::from_secs(20);
    let mut lines = Vec::new();
    let mut server = Some(server);
    let mut restarted = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if line == "RESTART" {
                    let old = server.take().expect("one restart");
                    old.shutdown();
                    old.join().unwrap();
                    // The same port, a new process state: no room, no member survives.
                    restarted = Some(
                        Server::new(DemoApp::new())
                            .configure(|c| {
                                c.bind = addr;
                                c.threads = 1;
                            })
                            .start()
                            .expect("rebind the same port"),
                    );
                    let stdin = child.stdin.as_mut().unwrap();
                    writeln!(stdin, "restarted").unwrap();
                    stdin.flush().unwrap();
                }
                lines.push(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().unwrap();
    let stderr = stderr_text.join().unwrap();
    drop(restarted);
    assert!(
        status.success() && lines.iter().any(|l| l == "OK"),
        "rooms_browser.js failed ({status}):\n--- stdout ---\n{}\n--- stderr ---\n{stderr}",
        lines.join("\n")
    );
    assert!(
        lines.iter().any(|l| l == "RESTART"),
        "the script never asked for the restart"
    );
}

/// What a [`Broken`] demo gets wrong, for checks that must fail.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Break {
    /// `/chat` sends each message back to its sender only.
    Broadcast,
    /// `/rooms/{room}/events` opens a stream subscribed to nothing.
    EventStreams,
}

/// The demo with one thing broken.
struct Broken(DemoApp, Break);

impl Handler for Broken {
    type State = DemoState;
    fn on_request(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Response {
        let events = request.path().starts_with("/rooms/") && request.path().ends_with("/events");
        if self.1 == Break::EventStreams && events {
            return ctx.event_stream().open();
        }
        self.0.on_request(request, ctx)
    }
    fn on_upgrade(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Result<Accept<DemoState>, Response> {
        self.0.on_upgrade(request, ctx)
    }
    fn on_open(&self, ctx: &mut Context<'_, DemoState>) {
        self.0.on_open(ctx)
    }
    fn on_message(&self, ctx: &mut Context<'_, DemoState>, message: Message<'_>) {
        if self.1 != Break::Broadcast {
            return self.0.on_message(ctx, message);
        }
        // The demo publishes to the whole room; this answers the sender only.
        if let (Some(m), Message::Text(t)) = (ctx.state().clone(), message) {
            let json = message_json(&m.room, Some(ctx.id()), &m.name, t);
            ctx.send_text(&json);
        }
    }
    fn on_close(&self, ctx: &mut Context<'_, DemoState>, code: CloseCode, reason: &str) {
        self.0.on_close(ctx, code, reason)
    }
}

fn start_broken(what: Break) -> wsloop::server::RunningServer {
    Server::new(Broken(DemoApp::new(), what))
        .configure(|c| {
            c.bind = "127.0.0.1:0".parse().unwrap();
            c.threads = 1;
        })
        .start()
        .expect("server starts")
}

/// The check can fail: with no broadcast, tab 2 never sees tab 1's message.
#[test]
fn chat_check_fails_without_broadcast() {
    if !browser_ready("chat_check_fails_without_broadcast") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_broken(Break::Broadcast);
    expect_check_failure(
        "chat_browser.js vs a chat without broadcast",
        &mut browser_script("chat_browser.js", server.local_addr(), 10),
        DEADLINE,
        "tab 2's #log never showed",
    );
}

/// Issue 23: the chat page's Server-Sent Events fallback (`?transport=sse`) chats with a
/// WebSocket page in the same room, and a plain `EventSource` gets the room's messages with
/// their history ids.
#[test]
fn the_sse_fallback_page_chats_with_a_websocket_page_and_eventsource_gets_ids() {
    if !browser_ready("the_sse_fallback_page_chats_with_a_websocket_page_and_eventsource_gets_ids") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = demo_server(|s| s);
    expect_ok(
        "sse_browser.js",
        &mut browser_script("sse_browser.js", server.local_addr(), SCRIPT_TIMEOUT_SECS),
        DEADLINE,
    );
}

/// The check can fail: with event streams that follow no room, the fallback page never gets
/// the WebSocket page's message.
#[test]
fn sse_check_fails_when_streams_carry_nothing() {
    if !browser_ready("sse_check_fails_when_streams_carry_nothing") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_broken(Break::EventStreams);
    expect_check_failure(
        "sse_browser.js vs event streams subscribed to nothing",
        &mut browser_script("sse_browser.js", server.local_addr(), 10),
        DEADLINE,
        "sam: wes's message through EventSource never happened",
    );
}

fn run_learn(addr: SocketAddr, timeout_secs: u64) -> harness::Output {
    run_learn_with(addr, timeout_secs, &[])
}

fn run_learn_with(addr: SocketAddr, timeout_secs: u64, env: &[(&str, &str)]) -> harness::Output {
    let mut cmd = browser_script("learn_browser.js", addr, timeout_secs);
    cmd.envs(env.iter().copied());
    harness::run(&mut cmd, DEADLINE).expect("node starts")
}

/// Checks what learn_browser.js printed: the handshake the page shows against the crate's own
/// `accept_key` and against what Chromium saw on the wire, then the frames rendered.
///
/// Some values come from the browser rather than from wsloop: the wire headers (Chromium's
/// DevTools protocol), the page's own SHA-1 (`crypto.subtle`). When `require` (the browser
/// tests are mandatory: `WSLOOP_REQUIRE_BROWSER=1`), a null among them fails the check, naming
/// the field; otherwise it is not checked and `Ok` lists it, for the test to print. A value
/// that is there must always be right, and the message must always come back on the page.
fn check_learn(out: &harness::Output, require: bool) -> Result<Vec<String>, String> {
    let stages: HashMap<String, HashMap<String, Json>> = out
        .stdout
        .lines()
        .filter_map(|l| parse_flat_object(l.trim()))
        .filter_map(|obj| match obj.get("stage") {
            Some(Json::Str(stage)) => Some((stage.clone(), obj)),
            _ => None,
        })
        .collect();
    let mut unchecked = Vec::new();

    // The handshake as the page shows it, checked even if the frames step failed.
    let hs = stages
        .get("handshake")
        .ok_or("learn_browser.js printed no handshake line")?;
    let field = |name: &str| match hs.get(name) {
        Some(Json::Str(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let mut browser_field = |name: &str, what: &str| match field(name) {
        Some(v) => Ok(Some(v)),
        None if require => Err(format!("{name} is null: {what} ({REQUIRE}=1 requires it)")),
        None => {
            unchecked.push(format!("{name} is null, not checked: {what}"));
            Ok(None)
        }
    };
    let key = field("key").ok_or("no #key shown")?;
    let accept = field("accept").ok_or("no #accept shown")?;
    let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &key);
    if decoded.map(|k| k.len()) != Ok(16) {
        return Err(format!("#key {key:?} is not a base64 16-byte nonce (RFC 6455 §4.1)"));
    }
    let expected = accept_key(key.as_bytes());
    if accept != expected {
        return Err(format!(
            "#accept {accept:?} is not base64(SHA-1(#key + GUID)) = {expected:?} for #key {key:?}"
        ));
    }
    if let Some(browser_accept) = browser_field("browserAccept", "the page showed no #browser-accept (its own SHA-1)")?
    {
        if browser_accept != accept {
            return Err(format!(
                "#browser-accept {browser_accept:?} differs from #accept {accept:?}"
            ));
        }
    }
    if let Some(m) = browser_field("browserMatch", "the page set no body[data-browser-match]")? {
        if m != "1" {
            return Err(format!(
                "the page says its own accept differs (body[data-browser-match={m:?}])"
            ));
        }
    }
    // What Chromium's DevTools protocol saw on the wire.
    let wire_why = match field("wireError") {
        Some(why) => format!("the header as sent on the wire is unknown: {why}"),
        None => "the header as sent on the wire is unknown (and wireError is null)".to_string(),
    };
    if let Some(wire_key) = browser_field("wireKey", &wire_why)? {
        if wire_key != key {
            return Err(format!(
                "#key {key:?} is not the Sec-WebSocket-Key the browser sent ({wire_key:?})"
            ));
        }
    }
    if let Some(wire_accept) = browser_field("wireAccept", &wire_why)? {
        if wire_accept != accept {
            return Err(format!(
                "#accept {accept:?} is not the Sec-WebSocket-Accept the browser got ({wire_accept:?})"
            ));
        }
    }

    // permessage-deflate (RFC 7692): agreed, as the browser itself reports it, and shown on the
    // page as what the server answered and as what the browser offered.
    let agreed = field("browserExtensions").ok_or(
        "permessage-deflate not agreed: the page's WebSocket.extensions (body[data-browser-extensions]) is empty",
    )?;
    if !agreed.contains("permessage-deflate") {
        return Err(format!(
            "permessage-deflate not agreed: the browser's WebSocket.extensions is {agreed:?}"
        ));
    }
    let shown_answer = field("shownExtensions").unwrap_or_default();
    if shown_answer != agreed {
        return Err(format!(
            "the page shows Sec-WebSocket-Extensions {shown_answer:?} in the 101, but the browser agreed {agreed:?}"
        ));
    }
    if let Some(wire_answer) = browser_field("wireExtensions", &wire_why)? {
        if !wire_answer.contains("permessage-deflate") || wire_answer != shown_answer {
            return Err(format!(
                "the 101's Sec-WebSocket-Extensions on the wire is {wire_answer:?}; the page shows {shown_answer:?}"
            ));
        }
    }
    let shown_offer = field("shownOffer").unwrap_or_default();
    if let Some(wire_offer) = browser_field("wireOffer", &wire_why)? {
        if wire_offer != shown_offer {
            return Err(format!(
                "the page shows the offer {shown_offer:?}, but the browser sent {wire_offer:?}"
            ));
        }
    }

    if !out.success() {
        return Err("learn_browser.js failed".into());
    }
    let frames = stages.get("frames").ok_or("learn_browser.js printed no frames line")?;
    match frames.get("frames") {
        Some(Json::Num(n)) if *n >= 1.0 => {}
        other => return Err(format!("body[data-frames] after sending a message: {other:?}")),
    }
    // The message the script typed must come back from the server: decoded in the frame
    // explanations and as the echo (the page's own "You sent" heading does not count).
    let must = |stage: &HashMap<String, Json>, checks: &[(&str, &str)]| {
        for (name, what) in checks {
            match stage.get(*name) {
                Some(Json::Bool(true)) => {}
                Some(Json::Bool(false)) => return Err(format!("{name} is false: {what}")),
                other => return Err(format!("{name} is {other:?}, not true: {what}")),
            }
        }
        Ok(())
    };
    must(
        frames,
        &[
            ("messageShown", "the frame explanations do not show the message sent"),
            ("echoShown", "the page does not show the server's echo of the message"),
            // Chromium compresses every message once deflate is agreed.
            (
                "receivedCompressed",
                "the browser's frame is not shown compressed (RSV1)",
            ),
            (
                "receivedInflated",
                "no compressed frame from the browser is shown inflated to the message typed",
            ),
        ],
    )?;
    let long = stages
        .get("long")
        .ok_or("learn_browser.js printed no long-message line")?;
    must(
        long,
        &[
            (
                "echoShown",
                "the page does not show the server's echo of the long message",
            ),
            (
                "receivedInflated",
                "the browser's long message is not shown inflated to the message typed",
            ),
            (
                "sentCompressed",
                "the server's echo of a message above its threshold is not shown compressed",
            ),
            (
                "sentInflated",
                "the server's compressed echo is not shown inflated to the message typed",
            ),
        ],
    )?;
    Ok(unchecked)
}

#[test]
fn learn_page_shows_the_real_handshake_and_frames() {
    if !browser_ready("learn_page_shows_the_real_handshake_and_frames") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = demo_server(|s| s);
    let out = run_learn(server.local_addr(), SCRIPT_TIMEOUT_SECS);
    match check_learn(&out, harness::required(REQUIRE)) {
        Ok(unchecked) => {
            for line in unchecked {
                harness::note(&format!(
                    "learn_page_shows_the_real_handshake_and_frames: {line} (set {REQUIRE}=1 to require)"
                ));
            }
        }
        Err(e) => panic!("/learn: {e}\n{}", out.describe()),
    }
}

/// How `BrokenLearn` breaks `/learn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LearnBreak {
    /// Claim a wrong Sec-WebSocket-Accept in the handshake explanation.
    WrongAccept,
    /// Echo without the frame explanation.
    NoFrames,
    /// Serve a page that never sets body[data-browser-match].
    NoBrowserMatch,
    /// Echo, then explain a frame carrying another message.
    FramesOfAnotherMessage,
    /// Accept `/learn` with permessage-deflate turned off (`Accept::deflate(false)`).
    NoDeflate,
}

/// The line of learn.html that reports the page's own SHA-1 comparison.
const BROWSER_MATCH_LINE: &str = r#"document.body.dataset.browserMatch = same ? "1" : "0";"#;

/// The demo, with `/learn` broken one way.
struct BrokenLearn {
    demo: DemoApp,
    broken: LearnBreak,
    /// The page to serve at `/learn` instead of the demo's, if any.
    page: Option<String>,
}

impl Handler for BrokenLearn {
    type State = DemoState;
    fn on_request(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Response {
        match &self.page {
            Some(page) if request.path() == "/learn" => Response::html(200, page.clone()),
            _ => self.demo.on_request(request, ctx),
        }
    }
    fn on_upgrade(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Result<Accept<DemoState>, Response> {
        let accept = self.demo.on_upgrade(request, ctx);
        match self.broken {
            LearnBreak::NoDeflate => accept.map(|a| a.deflate(false)),
            _ => accept,
        }
    }
    fn on_open(&self, ctx: &mut Context<'_, DemoState>) {
        if self.broken != LearnBreak::WrongAccept {
            return self.demo.on_open(ctx);
        }
        let Some((request, response)) = ctx.handshake() else {
            return;
        };
        let json = wsloop::explain::handshake_json(request, response);
        let key = request.header_str("sec-websocket-key").unwrap_or_default().to_string();
        let (right, wrong) = (accept_key(key.as_bytes()), accept_key(b"not the key"));
        let json = json.replace(&format!("\"accept\":\"{right}\""), &format!("\"accept\":\"{wrong}\""));
        ctx.send_text(&json);
    }
    fn on_message(&self, ctx: &mut Context<'_, DemoState>, message: Message<'_>) {
        match self.broken {
            LearnBreak::NoFrames => {
                ctx.send(message);
            }
            LearnBreak::FramesOfAnotherMessage => {
                let mut sent = Vec::new();
                let other = b"not the message you sent";
                wsloop::frame::encode_frame(&mut sent, true, wsloop::Opcode::Text, None, other);
                ctx.send(message);
                ctx.send_text(&wsloop::explain::frames_json(&[], &sent));
            }
            _ => self.demo.on_message(ctx, message),
        }
    }
    fn on_close(&self, ctx: &mut Context<'_, DemoState>, code: CloseCode, reason: &str) {
        self.demo.on_close(ctx, code, reason)
    }
}

fn start_broken_learn(broken: LearnBreak) -> wsloop::server::RunningServer {
    let page = (broken == LearnBreak::NoBrowserMatch).then(|| {
        let page = wsloop::explain::LEARN_HTML.replace(BROWSER_MATCH_LINE, "");
        assert_ne!(
            page,
            wsloop::explain::LEARN_HTML,
            "learn.html no longer has {BROWSER_MATCH_LINE}"
        );
        page
    });
    common::start(
        BrokenLearn {
            demo: DemoApp::new(),
            broken,
            page,
        },
        |s| s,
    )
}

/// The check can fail: a page showing a wrong accept, rendering no frames, or explaining
/// another message than the one sent is caught, mandatory or not.
#[test]
fn learn_check_fails_on_a_broken_learn_endpoint() {
    if !browser_ready("learn_check_fails_on_a_broken_learn_endpoint") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());

    let server = start_broken_learn(LearnBreak::WrongAccept);
    let out = run_learn(server.local_addr(), 10);
    for require in [false, true] {
        let err = check_learn(&out, require).expect_err("a wrong #accept must fail the check");
        assert!(
            err.contains("is not base64(SHA-1(#key + GUID))"),
            "{err}\n{}",
            out.describe()
        );
    }

    let server = start_broken_learn(LearnBreak::NoFrames);
    let out = run_learn(server.local_addr(), 10);
    let err = check_learn(&out, false).expect_err("no frames rendered must fail the check");
    assert!(
        err == "learn_browser.js failed" && out.stderr.contains("body[data-frames] stayed at"),
        "{err}\n{}",
        out.describe()
    );

    let server = start_broken_learn(LearnBreak::FramesOfAnotherMessage);
    let out = run_learn(server.local_addr(), 10);
    for require in [false, true] {
        let err = check_learn(&out, require).expect_err("frames of another message must fail the check");
        assert!(err.starts_with("messageShown is false"), "{err}\n{}", out.describe());
    }
}

/// Issue 11 item 7: with permessage-deflate turned off for `/learn`, the lesson runs (the echo
/// and its frames are fine) but the deflate checks fail: the browser agreed no extension, and
/// no frame is shown compressed.
#[test]
fn learn_check_fails_without_deflate() {
    if !browser_ready("learn_check_fails_without_deflate") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_broken_learn(LearnBreak::NoDeflate);
    let out = run_learn(server.local_addr(), 20);
    assert!(out.success(), "the lesson itself still works: {}", out.describe());
    for require in [false, true] {
        let err = check_learn(&out, require).expect_err("no deflate must fail the check");
        assert!(
            err.starts_with("permessage-deflate not agreed"),
            "{err}\n{}",
            out.describe()
        );
    }
    // What the page reported: no extension in the 101, and the frames uncompressed.
    for needle in [
        "\"browserExtensions\":\"\"",
        "\"wireExtensions\":null",
        "\"receivedCompressed\":false",
        "\"sentCompressed\":false",
    ] {
        assert!(out.stdout.contains(needle), "{needle} not in {}", out.describe());
    }
}

/// With the browser tests mandatory, a value only the browser can give that comes back null
/// fails the check, naming the field; without, it is listed as not checked.
#[test]
fn learn_check_requires_browser_values_when_mandatory() {
    if !browser_ready("learn_check_requires_browser_values_when_mandatory") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());

    let server = start_broken_learn(LearnBreak::NoBrowserMatch);
    let out = run_learn(server.local_addr(), 10);
    let err = check_learn(&out, true).expect_err("a null browserMatch must fail when mandatory");
    assert!(err.starts_with("browserMatch is null"), "{err}\n{}", out.describe());
    let unchecked = check_learn(&out, false).unwrap_or_else(|e| panic!("{e}\n{}", out.describe()));
    assert_eq!(unchecked.len(), 1, "{unchecked:?}");
    assert!(unchecked[0].starts_with("browserMatch is null"), "{unchecked:?}");

    // The DevTools hook off: the wire values are null, and the script says why.
    let server = demo_server(|s| s);
    let out = run_learn_with(server.local_addr(), 10, &[("WSLOOP_LEARN_NO_DEVTOOLS", "1")]);
    let err = check_learn(&out, true).expect_err("null wire values must fail when mandatory");
    assert!(
        err.starts_with("wireKey is null") && err.contains("WSLOOP_LEARN_NO_DEVTOOLS=1"),
        "{err}\n{}",
        out.describe()
    );
    let unchecked = check_learn(&out, false).unwrap_or_else(|e| panic!("{e}\n{}", out.describe()));
    let names: Vec<&str> = unchecked.iter().filter_map(|u| u.split(' ').next()).collect();
    assert_eq!(
        names,
        ["wireKey", "wireAccept", "wireExtensions", "wireOffer"],
        "{unchecked:?}"
    );
}

/// `check_learn` on printed lines, without a browser: each null browser value, and each
/// missing or false message check, fails as it should.
#[cfg(unix)]
#[test]
fn learn_check_on_printed_lines() {
    use std::os::unix::process::ExitStatusExt;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    let offer = "permessage-deflate; client_max_window_bits";
    let answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    let page_deflate =
        format!("\"browserExtensions\":\"{answer}\",\"shownExtensions\":\"{answer}\",\"shownOffer\":\"{offer}\"");
    let long_ok = "\"echoShown\":true,\"receivedCompressed\":true,\"receivedInflated\":true,\
                   \"sentCompressed\":true,\"sentInflated\":true";
    let output_with = |handshake: &str, frames: &str, long: &str| harness::Output {
        status: Some(std::process::ExitStatus::from_raw(0)),
        timed_out: false,
        elapsed: Duration::ZERO,
        stdout: format!(
            "{{\"stage\":\"handshake\",\"key\":\"{key}\",\"accept\":\"{accept}\",{handshake}}}\n\
             {{\"stage\":\"frames\",\"frames\":2,\"message\":\"Hello, wsloop!\",{frames}}}\n\
             {{\"stage\":\"long\",\"frames\":4,\"length\":287,{long}}}\n"
        ),
        stderr: String::new(),
    };
    let output = |handshake: &str, frames: &str| output_with(handshake, frames, long_ok);
    let fields = [
        ("browserAccept", accept),
        ("browserMatch", "1"),
        ("wireKey", key),
        ("wireAccept", accept),
        ("wireExtensions", answer),
        ("wireOffer", offer),
    ];
    // The handshake fields, with `field` (if any) set to the JSON value `null_value`.
    let handshake = |field: &str, null_value: &str| {
        let mut kvs: Vec<String> = fields
            .iter()
            .map(|(name, v)| match *name == field {
                true => format!("\"{name}\":{null_value}"),
                false => format!("\"{name}\":\"{v}\""),
            })
            .collect();
        kvs.push("\"wireError\":null".into());
        kvs.push(page_deflate.clone());
        kvs.join(",")
    };
    let all = handshake("", "");
    let shown = "\"messageShown\":true,\"echoShown\":true,\"receivedCompressed\":true,\"receivedInflated\":true";
    for require in [false, true] {
        assert_eq!(check_learn(&output(&all, shown), require), Ok(vec![]));
    }

    for (field, _) in fields {
        for null_value in ["null", "\"\""] {
            let out = output(&handshake(field, null_value), shown);
            let err = check_learn(&out, true).expect_err(field);
            assert!(err.starts_with(&format!("{field} is null")), "{field}: {err}");
            let unchecked = check_learn(&out, false).expect(field);
            assert_eq!(unchecked.len(), 1, "{field}: {unchecked:?}");
            assert!(unchecked[0].starts_with(&format!("{field} is null")), "{unchecked:?}");
        }
    }
    let mismatched = all.replace(&format!("\"wireAccept\":\"{accept}\""), "\"wireAccept\":\"x\"");
    let err = check_learn(&output(&mismatched, shown), false).expect_err("a wrong wire value");
    assert!(err.contains("is not the Sec-WebSocket-Accept the browser got"), "{err}");
    let mismatched = all.replace("\"browserMatch\":\"1\"", "\"browserMatch\":\"0\"");
    let err = check_learn(&output(&mismatched, shown), false).expect_err("browserMatch 0");
    assert!(err.contains("data-browser-match=\"0\""), "{err}");

    // permessage-deflate: not agreed, shown differently from what the browser agreed or saw.
    for (from, to, want) in [
        (
            answer,
            "",
            "permessage-deflate not agreed: the page's WebSocket.extensions",
        ),
        (
            answer,
            "x-webkit-deflate-frame",
            "permessage-deflate not agreed: the browser's",
        ),
    ] {
        let changed = all.replace(
            &format!("\"browserExtensions\":\"{from}\""),
            &format!("\"browserExtensions\":\"{to}\""),
        );
        for require in [false, true] {
            let err = check_learn(&output(&changed, shown), require).expect_err(want);
            assert!(err.starts_with(want), "{err}");
        }
    }
    let changed = all.replace(
        &format!("\"shownExtensions\":\"{answer}\""),
        "\"shownExtensions\":\"permessage-deflate\"",
    );
    let err = check_learn(&output(&changed, shown), false).expect_err("shown answer differs");
    assert!(err.starts_with("the page shows Sec-WebSocket-Extensions"), "{err}");
    let changed = all.replace(
        &format!("\"wireExtensions\":\"{answer}\""),
        "\"wireExtensions\":\"permessage-deflate\"",
    );
    let err = check_learn(&output(&changed, shown), false).expect_err("wire answer differs");
    assert!(
        err.starts_with("the 101's Sec-WebSocket-Extensions on the wire"),
        "{err}"
    );
    let changed = all.replace(&format!("\"shownOffer\":\"{offer}\""), "\"shownOffer\":\"\"");
    let err = check_learn(&output(&changed, shown), false).expect_err("offer not shown");
    assert!(err.starts_with("the page shows the offer"), "{err}");
    for (long, want) in [
        (
            long_ok.replace("\"sentCompressed\":true", "\"sentCompressed\":false"),
            "sentCompressed is false",
        ),
        (
            long_ok.replace("\"sentInflated\":true", "\"sentInflated\":false"),
            "sentInflated is false",
        ),
        (
            long_ok.replace("\"receivedInflated\":true,", ""),
            "receivedInflated is None",
        ),
    ] {
        let err = check_learn(&output_with(&all, shown, &long), true).expect_err(want);
        assert!(err.starts_with(want), "{err}");
    }
    let no_long = output(&all, shown);
    let no_long = harness::Output {
        stdout: no_long.stdout.lines().take(2).collect::<Vec<_>>().join("\n"),
        ..no_long
    };
    assert_eq!(
        check_learn(&no_long, false),
        Err("learn_browser.js printed no long-message line".to_string())
    );

    let deflate = "\"receivedCompressed\":true,\"receivedInflated\":true";
    for (frames, want) in [
        (
            "\"messageShown\":true,\"echoShown\":true,\"receivedCompressed\":false,\"receivedInflated\":true"
                .to_string(),
            "receivedCompressed is false",
        ),
        (
            "\"messageShown\":true,\"echoShown\":true,\"receivedCompressed\":true".to_string(),
            "receivedInflated is None",
        ),
        (
            format!("\"messageShown\":false,\"echoShown\":true,{deflate}"),
            "messageShown is false",
        ),
        (
            format!("\"messageShown\":null,\"echoShown\":true,{deflate}"),
            "messageShown is Some(Null)",
        ),
        (format!("\"echoShown\":true,{deflate}"), "messageShown is None"),
        (
            format!("\"messageShown\":true,\"echoShown\":false,{deflate}"),
            "echoShown is false",
        ),
        (format!("\"messageShown\":true,{deflate}"), "echoShown is None"),
    ] {
        let frames = frames.as_str();
        for require in [false, true] {
            let err = check_learn(&output(&all, frames), require).expect_err(frames);
            assert!(err.starts_with(want), "{frames}: {err}");
        }
    }
}

/// A JSON scalar, enough for the flat objects learn_browser.js prints.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

/// Parses `{"k":scalar,...}` (RFC 8259 strings, numbers, true/false/null); `None` otherwise.
fn parse_flat_object(s: &str) -> Option<HashMap<String, Json>> {
    let mut p = s.char_indices().peekable();
    let mut map = HashMap::new();
    let skip_ws = |p: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while p.peek().is_some_and(|(_, c)| c.is_ascii_whitespace()) {
            p.next();
        }
    };
    skip_ws(&mut p);
    if p.next()?.1 != '{' {
        return None;
    }
    skip_ws(&mut p);
    if p.peek()?.1 == '}' {
        p.next();
        return Some(map);
    }
    loop {
        skip_ws(&mut p);
        if p.next()?.1 != '"' {
            return None;
        }
        let key = parse_string_body(&mut p)?;
        skip_ws(&mut p);
        if p.next()?.1 != ':' {
            return None;
        }
        skip_ws(&mut p);
        let value = match p.peek()?.1 {
            '"' => {
                p.next();
                Json::Str(parse_string_body(&mut p)?)
            }
            _ => {
                let (start, _) = *p.peek()?;
                let mut end = start;
                while let Some(&(i, c)) = p.peek() {
                    if c == ',' || c == '}' || c.is_ascii_whitespace() {
                        break;
                    }
                    end = i + c.len_utf8();
                    p.next();
                }
                match &s[start..end] {
                    "true" => Json::Bool(true),
                    "false" => Json::Bool(false),
                    "null" => Json::Null,
                    n => Json::Num(n.parse().ok()?),
                }
            }
        };
        map.insert(key, value);
        skip_ws(&mut p);
        match p.next()?.1 {
            ',' => continue,
            '}' => break,
            _ => return None,
        }
    }
    skip_ws(&mut p);
    p.next().is_none().then_some(map)
}

/// The rest of a JSON string after its opening quote, through the closing quote.
fn parse_string_body(p: &mut std::iter::Peekable<std::str::CharIndices<'_>>) -> Option<String> {
    let mut out = String::new();
    let hex4 = |p: &mut std::iter::Peekable<std::str::CharIndices<'_>>| -> Option<u32> {
        let mut v = 0;
        for _ in 0..4 {
            v = v * 16 + p.next()?.1.to_digit(16)?;
        }
        Some(v)
    };
    loop {
        match p.next()?.1 {
            '"' => return Some(out),
            '\\' => match p.next()?.1 {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hi = hex4(p)?;
                    let c = if (0xD800..0xDC00).contains(&hi) {
                        if p.next()?.1 != '\\' || p.next()?.1 != 'u' {
                            return None;
                        }
                        let lo = hex4(p)?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return None;
                        }
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                    } else {
                        char::from_u32(hi)?
                    };
                    out.push(c);
                }
                _ => return None,
            },
            c if (c as u32) < 0x20 => return None,
            c => out.push(c),
        }
    }
}

#[test]
fn flat_json_parser() {
    let m =
        parse_flat_object(r#"{"stage":"handshake","key":"a\/b\"\u00e9\ud83d\ude00","n":3,"b":true,"z":null}"#).unwrap();
    assert_eq!(m["stage"], Json::Str("handshake".into()));
    assert_eq!(m["key"], Json::Str("a/b\"é😀".into()));
    assert_eq!(m["n"], Json::Num(3.0));
    assert_eq!(m["b"], Json::Bool(true));
    assert_eq!(m["z"], Json::Null);
    assert_eq!(parse_flat_object("{}"), Some(HashMap::new()));
    assert_eq!(parse_flat_object("[browser] x"), None);
    assert_eq!(parse_flat_object(r#"{"a":"x"} trailing"#), None);
    assert_eq!(parse_flat_object(r#"{"a":"unterminated}"#), None);
}

/// Issue 13: two servers sharing Redis, a page on each, one room; server B stops and starts
/// again on its port (a new node); B's page reconnects with `since` and shows exactly what it
/// missed. `history_size` 0 turns the replay off: the script must then fail.
#[cfg(feature = "redis")]
fn cluster_pages(history_size: usize) -> (bool, String) {
    let redis = common::redis::RedisServer::start();
    let start = |addr: SocketAddr, node: u32| {
        Server::new(DemoApp::new())
            .configure(|c| {
                c.bind = addr;
                c.threads = 1;
                c.node_id = Some(node);
                c.history_size = history_size;
            })
            .message_bus(wsloop::server::bus::RedisBus::new(&redis.url()).unwrap())
            .start()
            .expect("server starts")
    };
    let connected = |s: &wsloop::server::RunningServer| s.info().bus().is_some_and(|b| b.connected);
    let until = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let a = start("127.0.0.1:0".parse().unwrap(), 0xa);
    let b = start("127.0.0.1:0".parse().unwrap(), 0xb);
    until("both buses connect", &|| connected(&a) && connected(&b));
    let b_addr = b.local_addr();
    let mut child = browser_script("cluster_browser.js", a.local_addr(), SCRIPT_TIMEOUT_SECS)
        .arg(format!("http://{b_addr}/"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let rx = lines_of(child.stdout.take().unwrap());
    let stderr_text = all_of(child.stderr.take().unwrap());
    let deadline = Instant::now() + DEADLINE;
    let mut lines = Vec::new();
    let mut b = Some(b);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if line == "STOP_B" {
                    if let Some(old) = b.take() {
                        old.shutdown();
                        old.join().unwrap();
                    }
                } else if line == "START_B" {
                    let new = start(b_addr, 0xb2);
                    until("the new B's bus connects", &|| connected(&new));
                    b = Some(new);
                }
                if line == "STOP_B" || line == "START_B" {
                    let stdin = child.stdin.as_mut().unwrap();
                    writeln!(stdin, "done").unwrap();
                    stdin.flush().unwrap();
                }
                lines.push(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().unwrap();
    let stderr = stderr_text.join().unwrap();
    drop(b);
    let ok = status.success() && lines.iter().any(|l| l == "OK");
    (
        ok,
        format!(
            "cluster_browser.js ({status}):\n--- stdout ---\n{}\n--- stderr ---\n{stderr}",
            lines.join("\n")
        ),
    )
}

#[cfg(feature = "redis")]
#[test]
fn two_processes_share_a_room_and_a_restarted_page_gets_what_it_missed() {
    if !browser_ready("two_processes_share_a_room_and_a_restarted_page_gets_what_it_missed")
        || !common::redis::available("two_processes_share_a_room_and_a_restarted_page_gets_what_it_missed")
    {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let (ok, report) = cluster_pages(100);
    assert!(ok, "{report}");
}

/// The check can fail: with no history, B's page never shows what it missed.
#[cfg(feature = "redis")]
#[test]
fn cluster_check_fails_without_history() {
    if !browser_ready("cluster_check_fails_without_history")
        || !common::redis::available("cluster_check_fails_without_history")
    {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let (ok, report) = cluster_pages(0);
    assert!(!ok, "passed without history:\n{report}");
    assert!(
        report.contains("the replay of what it missed never happened"),
        "{report}"
    );
}
