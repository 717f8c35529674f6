//! Interop with WebSocket clients that are not ours: Python's `websockets` and Node's `ws` run an
//! echo round trip (text, binary, 4 KiB JSON, ping, close 1000) against the demo server over
//! loopback, without extensions and with permessage-deflate under each `--deflate` mode.
//!
//! Prerequisites (see tests/interop/README.md):
//! `pip install -r tests/interop/requirements.txt` and `npm ci --prefix tests/interop`.
//! Without them each test prints `skipped: ...` and passes, unless `WSLOOP_REQUIRE_INTEROP=1`,
//! which makes a missing prerequisite a failure (CI sets it).

mod common;
#[path = "interop/harness.rs"]
mod harness;

use common::demo_server;
use harness::{expect_check_failure, expect_ok, node_missing, prerequisites, probe, python, script};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use wsloop::handshake::Request;
use wsloop::server::{Accept, Context, DeflateMode, Handler, Message, RequestContext, Response, RunningServer};

const REQUIRE: &str = "WSLOOP_REQUIRE_INTEROP";
/// The scripts' own timeout, then ours on top, after which the child is killed.
const SCRIPT_TIMEOUT_SECS: u64 = 10;
const DEADLINE: Duration = Duration::from_secs(SCRIPT_TIMEOUT_SECS + 20);

fn python_ready(test: &str) -> bool {
    let py = python();
    let missing: Vec<String> = probe(&py, &["-c", "import websockets.sync.client"])
        .into_iter()
        .collect();
    prerequisites(test, REQUIRE, &missing, "pip install -r tests/interop/requirements.txt").is_ok()
}

fn node_ready(test: &str) -> bool {
    prerequisites(test, REQUIRE, &node_missing(&["ws"]), "npm ci --prefix tests/interop").is_ok()
}

fn python_client(addr: SocketAddr, path: &str, timeout_secs: u64) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(script("client.py"))
        .arg(format!("ws://{addr}{path}"))
        .args(["--timeout", &timeout_secs.to_string()]);
    cmd
}

fn node_client(addr: SocketAddr, path: &str, timeout_secs: u64) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(script("client.js"))
        .arg(format!("ws://{addr}{path}"))
        .args(["--timeout", &timeout_secs.to_string()]);
    cmd
}

#[test]
fn python_websockets_echo_round_trip() {
    if !python_ready("python_websockets_echo_round_trip") {
        return;
    }
    let server = demo_server(|s| s);
    expect_ok(
        "python websockets client on /echo",
        &mut python_client(server.local_addr(), "/echo", SCRIPT_TIMEOUT_SECS),
        DEADLINE,
    );
}

#[test]
fn node_ws_echo_round_trip() {
    if !node_ready("node_ws_echo_round_trip") {
        return;
    }
    let server = demo_server(|s| s);
    expect_ok(
        "node ws client on /echo",
        &mut node_client(server.local_addr(), "/echo", SCRIPT_TIMEOUT_SECS),
        DEADLINE,
    );
}

/// Both clients against the demo on more threads, several times in parallel: the kernel spreads
/// the connections over the loops (SO_REUSEPORT).
#[test]
fn both_clients_against_a_multi_loop_server() {
    if !python_ready("both_clients_against_a_multi_loop_server")
        || !node_ready("both_clients_against_a_multi_loop_server")
    {
        return;
    }
    let server = demo_server(|s| s.configure(|c| c.threads = 2));
    let addr = server.local_addr();
    let runs: Vec<_> = (0..3)
        .flat_map(|_| {
            [
                python_client(addr, "/echo", SCRIPT_TIMEOUT_SECS),
                node_client(addr, "/echo", SCRIPT_TIMEOUT_SECS),
            ]
        })
        .map(|mut cmd| std::thread::spawn(move || harness::run(&mut cmd, DEADLINE).expect("starts")))
        .collect();
    for (i, run) in runs.into_iter().enumerate() {
        let out = run.join().unwrap();
        assert!(
            out.success() && out.stdout.contains("OK"),
            "client {i} ({}) failed: {}",
            if i % 2 == 0 { "python" } else { "node" },
            out.describe()
        );
    }
}

// permessage-deflate (RFC 7692, issue 11): both clients offer it as they do by default, and the
// demo answers under each mode.

/// Bytes of the messages each script sends (and gets back): the text, the 76,800-byte binary
/// and the 4 KiB JSON.
const PLAIN_MESSAGE_BYTES: u64 = 76_800 + 4096;

/// What a client run with `--deflate` against the demo in `mode` must show: the extension it
/// reports, and the bytes the server read and wrote (compressed both ways, or not at all).
fn deflate_round_trip(test: &str, client: &mut Command, mode: DeflateMode) {
    let server = demo_server(|s| s.configure(|c| c.deflate = mode));
    let addr = server.local_addr();
    client.arg(format!("ws://{addr}/echo")).arg("--deflate");
    let out = expect_ok(test, client, DEADLINE);
    let extension = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("EXTENSION: "))
        .unwrap_or_else(|| panic!("{test}: no EXTENSION line: {}", out.describe()))
        .trim()
        .to_owned();
    let (_, _, bytes_in, bytes_out) = server.info().traffic();
    let summary = format!("{test}: extension {extension:?}, server read {bytes_in} B and wrote {bytes_out} B");
    harness::note(&summary);
    match mode {
        DeflateMode::Off => {
            assert_eq!(extension, "none", "{summary}");
            assert!(
                bytes_in > PLAIN_MESSAGE_BYTES && bytes_out > PLAIN_MESSAGE_BYTES,
                "{summary}"
            );
        }
        DeflateMode::Shared => assert_eq!(
            extension, "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "{summary}"
        ),
        DeflateMode::Dedicated { .. } => assert_eq!(extension, "permessage-deflate", "{summary}"),
    }
    if mode != DeflateMode::Off {
        // The binary and the JSON went compressed both ways (each client compresses messages
        // of 1 KiB and more at least; the server at 128 bytes and more) and came back intact:
        // each direction took fewer bytes than the 4 KiB JSON alone would uncompressed.
        assert!(bytes_in < 4096 && bytes_out < 4096, "{summary}");
    }
}

fn deflate_client(use_python: bool) -> Command {
    let mut cmd = if use_python {
        let mut c = Command::new(python());
        c.arg(script("client.py"));
        c
    } else {
        let mut c = Command::new("node");
        c.arg(script("client.js"));
        c
    };
    cmd.args(["--timeout", &SCRIPT_TIMEOUT_SECS.to_string()]);
    cmd
}

const MODES: [DeflateMode; 3] = [
    DeflateMode::Shared,
    DeflateMode::Dedicated { window_bits: 15 },
    DeflateMode::Off,
];

#[test]
fn python_websockets_with_permessage_deflate() {
    if !python_ready("python_websockets_with_permessage_deflate") {
        return;
    }
    for mode in MODES {
        deflate_round_trip(
            &format!("python websockets, --deflate {mode}"),
            &mut deflate_client(true),
            mode,
        );
    }
}

#[test]
fn node_ws_with_permessage_deflate() {
    if !node_ready("node_ws_with_permessage_deflate") {
        return;
    }
    for mode in MODES {
        deflate_round_trip(&format!("node ws, --deflate {mode}"), &mut deflate_client(false), mode);
    }
}

// The checks can fail: the same scripts against servers that get echo wrong.

/// Echoes every message with its last byte changed.
struct CorruptEcho;

impl Handler for CorruptEcho {
    type State = ();
    fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
        Ok(Accept::default())
    }
    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        match message {
            Message::Text(t) => {
                let mut s = t.to_string();
                s.pop();
                s.push('!');
                ctx.send_text(&s);
            }
            Message::Binary(b) => {
                let mut v = b.to_vec();
                if let Some(last) = v.last_mut() {
                    *last ^= 1;
                }
                ctx.send_binary(&v);
            }
        };
    }
}

/// Echoes text as text, but binary messages as text and never the other way round: the payload
/// bytes match, only the opcode is wrong.
struct BinaryAsText;

impl Handler for BinaryAsText {
    type State = ();
    fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
        Ok(Accept::default())
    }
    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        match message {
            Message::Text(t) => ctx.send_text(t),
            Message::Binary(b) => ctx.send_text(&String::from_utf8_lossy(b)),
        };
    }
}

/// Accepts and never answers.
struct Silent;

impl Handler for Silent {
    type State = ();
    fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
        Ok(Accept::default())
    }
}

fn start(handler: impl Handler) -> RunningServer {
    common::start(handler, |s| s)
}

#[test]
fn python_client_fails_on_a_broken_echo() {
    if !python_ready("python_client_fails_on_a_broken_echo") {
        return;
    }
    let corrupt = start(CorruptEcho);
    expect_check_failure(
        "python client vs corrupting echo",
        &mut python_client(corrupt.local_addr(), "/echo", SCRIPT_TIMEOUT_SECS),
        DEADLINE,
        "text echo mismatch",
    );
    let wrong_type = start(BinaryAsText);
    expect_check_failure(
        "python client vs binary-as-text echo",
        &mut python_client(wrong_type.local_addr(), "/echo", SCRIPT_TIMEOUT_SECS),
        DEADLINE,
        "binary echo came back as str",
    );
    let silent = start(Silent);
    expect_check_failure(
        "python client vs silent server",
        &mut python_client(silent.local_addr(), "/echo", 2),
        DEADLINE,
        "timed out",
    );
    // The demo's /chat answers with a welcome first: not an echo endpoint.
    let demo = demo_server(|s| s);
    expect_check_failure(
        "python client vs /chat",
        &mut python_client(demo.local_addr(), "/chat", SCRIPT_TIMEOUT_SECS),
        DEADLINE,
        "{\"type\":\"welcome\"",
    );
}

#[test]
fn node_client_fails_on_a_broken_echo() {
    if !node_ready("node_client_fails_on_a_broken_echo") {
        return;
    }
    let corrupt = start(CorruptEcho);
    expect_check_failure(
        "node client vs corrupting echo",
        &mut node_client(corrupt.local_addr(), "/echo", SCRIPT_TIMEOUT_SECS),
        DEADLINE,
        "FAIL (text echo)",
    );
    let wrong_type = start(BinaryAsText);
    expect_check_failure(
        "node client vs binary-as-text echo",
        &mut node_client(wrong_type.local_addr(), "/echo", SCRIPT_TIMEOUT_SECS),
        DEADLINE,
        "binary echo came back as a text message",
    );
    let silent = start(Silent);
    expect_check_failure(
        "node client vs silent server",
        &mut node_client(silent.local_addr(), "/echo", 2),
        DEADLINE,
        "timed out",
    );
    let demo = demo_server(|s| s);
    expect_check_failure(
        "node client vs a 404 path",
        &mut node_client(demo.local_addr(), "/nowhere", SCRIPT_TIMEOUT_SECS),
        DEADLINE,
        "HTTP 404 instead of 101",
    );
}
