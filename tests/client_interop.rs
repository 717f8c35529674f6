//! The client against WebSocket servers that are not ours: Python `websockets` and Node `ws`
//! echo servers (tests/interop/echo_server.py, echo_server.js) on a free loopback port. Text
//! and binary, 16 MiB messages, a ping from the server, close codes both ways, and
//! permessage-deflate as each library negotiates it.
//!
//! Prerequisites as for tests/interop.rs: `pip install -r tests/interop/requirements.txt` and
//! `npm ci --prefix tests/interop`. Without them each test prints `skipped: ...` and passes,
//! unless `WSLOOP_REQUIRE_INTEROP=1` (CI sets it).

#[path = "interop/harness.rs"]
mod harness;

use harness::{node_missing, prerequisites, probe, python, script, ServerChild};
use std::process::Command;
use std::time::Duration;
use wsloop::client::{Client, ClientEvent, CloseStatus, OwnedMessage};
use wsloop::CloseCode;

const REQUIRE: &str = "WSLOOP_REQUIRE_INTEROP";

fn python_server(test: &str) -> Option<ServerChild> {
    let py = python();
    let missing: Vec<String> = probe(&py, &["-c", "import websockets.sync.server"])
        .into_iter()
        .collect();
    prerequisites(test, REQUIRE, &missing, "pip install -r tests/interop/requirements.txt").ok()?;
    let mut cmd = Command::new(py);
    cmd.arg(script("echo_server.py")).arg("0");
    Some(ServerChild::start(&mut cmd, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{test}: {e}")))
}

fn node_server(test: &str) -> Option<ServerChild> {
    prerequisites(test, REQUIRE, &node_missing(&["ws"]), "npm ci --prefix tests/interop").ok()?;
    let mut cmd = Command::new("node");
    cmd.arg(script("echo_server.js")).arg("0");
    Some(ServerChild::start(&mut cmd, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{test}: {e}")))
}

fn connect(server: &ServerChild, deflate: bool) -> Client {
    Client::builder(server.url())
        .deflate(deflate)
        .read_timeout(Some(Duration::from_secs(20)))
        .connect()
        .expect("connect")
}

/// The next data message, skipping pings and pongs.
fn next_message(client: &mut Client) -> OwnedMessage {
    loop {
        match client.recv().expect("recv") {
            ClientEvent::Text(t) => return OwnedMessage::Text(t),
            ClientEvent::Binary(b) => return OwnedMessage::Binary(b),
            ClientEvent::Ping(_) | ClientEvent::Pong(_) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Everything one server is checked for.
fn round_trips(server: &ServerChild, deflate: bool) {
    let mut client = connect(server, deflate);
    assert_eq!(
        client.deflate().is_some(),
        deflate,
        "permessage-deflate negotiated as offered"
    );
    for message in [
        OwnedMessage::Text("héllo ✓".into()),
        OwnedMessage::Binary((0..=255).collect()),
        OwnedMessage::Text("compressible ".repeat(10_000)),
        OwnedMessage::Text(String::new()),
    ] {
        client.send(message.clone()).unwrap();
        assert_eq!(next_message(&mut client), message);
    }
    let big: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    client.send_binary(&big).unwrap();
    assert!(
        next_message(&mut client) == OwnedMessage::Binary(big),
        "16 MiB binary echo differs"
    );
    let text = "16 MiB of text, ✓ ".repeat((16 << 20) / 20);
    client.send_text(&text).unwrap();
    assert!(
        next_message(&mut client) == OwnedMessage::Text(text),
        "16 MiB text echo differs"
    );

    // The server pings; the client's automatic pong must carry the payload back.
    client.send_text("ping").unwrap();
    let mut saw_ping = false;
    loop {
        match client.recv().unwrap() {
            ClientEvent::Ping(p) => {
                assert_eq!(p, b"srv");
                saw_ping = true;
            }
            ClientEvent::Text(t) => {
                assert_eq!(t, "pong srv");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(saw_ping);

    // The client closes with 4001: the server answers with a Close of its own.
    let status = client.close(CloseCode(4001), "client done").unwrap();
    assert_eq!(status.map(|s| s.code), Some(CloseCode(4001)));

    // The server closes with 4002 "bye": the client reports it and echoes it.
    let mut client = connect(server, deflate);
    client.send_text("close 4002 bye").unwrap();
    assert_eq!(
        client.recv().unwrap(),
        ClientEvent::Close(Some(CloseStatus {
            code: CloseCode(4002),
            reason: "bye".into()
        }))
    );
}

#[test]
fn python_websockets_server() {
    let Some(server) = python_server("python_websockets_server") else {
        return;
    };
    round_trips(&server, false);
}

#[test]
fn python_websockets_server_with_deflate() {
    let Some(server) = python_server("python_websockets_server_with_deflate") else {
        return;
    };
    round_trips(&server, true);
}

#[test]
fn node_ws_server() {
    let Some(server) = node_server("node_ws_server") else {
        return;
    };
    round_trips(&server, false);
}

#[test]
fn node_ws_server_with_deflate() {
    let Some(server) = node_server("node_ws_server_with_deflate") else {
        return;
    };
    round_trips(&server, true);
}
