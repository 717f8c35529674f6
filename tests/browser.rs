//! The demo's pages in a real browser: headless Debian Chromium driven by playwright-core
//! (tests/interop/*_browser.js) against the demo server over loopback.
//!
//! Prerequisites (see tests/interop/README.md): `apt-get install -y chromium` and
//! `npm ci --prefix tests/interop`. Without them each test prints `skipped: ...` and passes,
//! unless `WSLOOP_REQUIRE_BROWSER=1`, which makes a missing prerequisite a failure (CI sets it).

mod common;
#[path = "interop/harness.rs"]
mod harness;

use common::demo_server;
use harness::{chromium, expect_check_failure, expect_ok, node_missing, prerequisites, script};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;
use wsloop::handshake::accept_key;
use wsloop::server::demo::DemoApp;
use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response, Server};
use wsloop::{handshake::Request, CloseCode};

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

/// The demo, except that `/chat` sends each message back to its sender only.
struct NoBroadcast(DemoApp);

impl Handler for NoBroadcast {
    type State = ();
    fn on_request(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Response {
        self.0.on_request(request, ctx)
    }
    fn on_upgrade(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Result<Accept, Response> {
        self.0.on_upgrade(request, ctx)
    }
    fn on_open(&self, ctx: &mut Context<'_>) {
        self.0.on_open(ctx)
    }
    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        // The demo would `ctx.publish(CHAT_TOPIC, message)` here.
        ctx.send(message);
    }
    fn on_close(&self, ctx: &mut Context<'_>, code: CloseCode, reason: &str) {
        self.0.on_close(ctx, code, reason)
    }
}

/// The check can fail: with no broadcast, tab 2 never sees tab 1's message.
#[test]
fn chat_check_fails_without_broadcast() {
    if !browser_ready("chat_check_fails_without_broadcast") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::new(NoBroadcast(DemoApp::new()))
        .bind("127.0.0.1:0".parse().unwrap())
        .threads(1)
        .start()
        .expect("server starts");
    expect_check_failure(
        "chat_browser.js vs a chat without broadcast",
        &mut browser_script("chat_browser.js", server.local_addr(), 10),
        DEADLINE,
        "tab 2's #log never showed",
    );
}

fn run_learn(addr: SocketAddr, timeout_secs: u64) -> harness::Output {
    harness::run(&mut browser_script("learn_browser.js", addr, timeout_secs), DEADLINE).expect("node starts")
}

/// Checks what learn_browser.js printed: the handshake the page shows against the crate's own
/// `accept_key` and against what Chromium saw on the wire, then the frames rendered.
fn check_learn(out: &harness::Output) -> Result<(), String> {
    let stages: HashMap<String, HashMap<String, Json>> = out
        .stdout
        .lines()
        .filter_map(|l| parse_flat_object(l.trim()))
        .filter_map(|obj| match obj.get("stage") {
            Some(Json::Str(stage)) => Some((stage.clone(), obj)),
            _ => None,
        })
        .collect();

    // The handshake as the page shows it, checked even if the frames step failed.
    let hs = stages
        .get("handshake")
        .ok_or("learn_browser.js printed no handshake line")?;
    let field = |name: &str| match hs.get(name) {
        Some(Json::Str(s)) => Some(s.clone()),
        _ => None,
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
    if let Some(browser_accept) = field("browserAccept").filter(|s| !s.is_empty()) {
        if browser_accept != accept {
            return Err(format!(
                "#browser-accept {browser_accept:?} differs from #accept {accept:?}"
            ));
        }
    }
    if let Some(m) = field("browserMatch") {
        if m != "1" {
            return Err(format!(
                "the page says its own accept differs (body[data-browser-match={m:?}])"
            ));
        }
    }
    // What Chromium's DevTools protocol saw on the wire, when it reports it.
    if let Some(wire_key) = field("wireKey") {
        if wire_key != key {
            return Err(format!(
                "#key {key:?} is not the Sec-WebSocket-Key the browser sent ({wire_key:?})"
            ));
        }
    }
    if let Some(wire_accept) = field("wireAccept") {
        if wire_accept != accept {
            return Err(format!(
                "#accept {accept:?} is not the Sec-WebSocket-Accept the browser got ({wire_accept:?})"
            ));
        }
    }

    if !out.success() {
        return Err("learn_browser.js failed".into());
    }
    match stages.get("frames").and_then(|f| f.get("frames")) {
        Some(Json::Num(n)) if *n >= 1.0 => Ok(()),
        other => Err(format!("body[data-frames] after sending a message: {other:?}")),
    }
}

#[test]
fn learn_page_shows_the_real_handshake_and_frames() {
    if !browser_ready("learn_page_shows_the_real_handshake_and_frames") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = demo_server(|s| s);
    let out = run_learn(server.local_addr(), SCRIPT_TIMEOUT_SECS);
    if let Err(e) = check_learn(&out) {
        panic!("/learn: {e}\n{}", out.describe());
    }
}

/// The demo, with `/learn` broken one way or another.
struct BrokenLearn {
    demo: DemoApp,
    /// Claim a wrong Sec-WebSocket-Accept in the handshake explanation.
    wrong_accept: bool,
    /// Echo without the frame explanation.
    no_frames: bool,
}

impl Handler for BrokenLearn {
    type State = ();
    fn on_request(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Response {
        self.demo.on_request(request, ctx)
    }
    fn on_upgrade(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Result<Accept, Response> {
        self.demo.on_upgrade(request, ctx)
    }
    fn on_open(&self, ctx: &mut Context<'_>) {
        if !self.wrong_accept {
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
    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        if self.no_frames {
            ctx.send(message);
        } else {
            self.demo.on_message(ctx, message)
        }
    }
    fn on_close(&self, ctx: &mut Context<'_>, code: CloseCode, reason: &str) {
        self.demo.on_close(ctx, code, reason)
    }
}

/// The check can fail: a page showing a wrong accept, or rendering no frames, is caught.
#[test]
fn learn_check_fails_on_a_broken_learn_endpoint() {
    if !browser_ready("learn_check_fails_on_a_broken_learn_endpoint") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let start = |wrong_accept, no_frames| {
        let demo = DemoApp::new();
        Server::new(BrokenLearn {
            demo,
            wrong_accept,
            no_frames,
        })
        .bind("127.0.0.1:0".parse().unwrap())
        .threads(1)
        .start()
        .expect("server starts")
    };

    let server = start(true, false);
    let out = run_learn(server.local_addr(), 10);
    let err = check_learn(&out).expect_err("a wrong #accept must fail the check");
    assert!(
        err.contains("is not base64(SHA-1(#key + GUID))"),
        "{err}\n{}",
        out.describe()
    );

    let server = start(false, true);
    let out = run_learn(server.local_addr(), 10);
    let err = check_learn(&out).expect_err("no frames rendered must fail the check");
    assert!(
        err == "learn_browser.js failed" && out.stderr.contains("body[data-frames] stayed at"),
        "{err}\n{}",
        out.describe()
    );
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
