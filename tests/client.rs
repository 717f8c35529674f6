//! The client against the project's own server (`wsloop::server`, the demo app and small
//! handlers, on port 0 over loopback): echo of text and binary up to 16 MiB, pings, the close
//! handshake both ways, subprotocols, headers and Origin, permessage-deflate, reading and
//! writing from two threads, and reconnecting after a server restart on the same port.

mod common;

use common::demo_server;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsloop::client::{
    Backoff, Client, ClientEvent, CloseStatus, ConnectionState, Error, OwnedMessage, ReconnectingClient,
};
use wsloop::handshake::{select_subprotocol, Request};
use wsloop::server::{self, Accept, Context, Handler, RequestContext, Response, Server};
use wsloop::CloseCode;

fn echo_url(server: &wsloop::server::RunningServer) -> String {
    format!("ws://{}/echo", server.local_addr())
}

/// The next data message, skipping pings and pongs.
fn next_message(client: &mut Client) -> OwnedMessage {
    loop {
        match client.recv().expect("recv") {
            ClientEvent::Ping(_) | ClientEvent::Pong(_) => continue,
            ClientEvent::Text(t) => return OwnedMessage::Text(t),
            ClientEvent::Binary(b) => return OwnedMessage::Binary(b),
            e => panic!("expected a message, got {e:?}"),
        }
    }
}

#[test]
fn echo_text_binary_ping_and_a_clean_close() {
    let server = demo_server(|s| s);
    let mut client = Client::connect(&echo_url(&server)).unwrap();
    assert_eq!(client.protocol(), None);
    client.send(OwnedMessage::Text("héllo ✓".into())).unwrap();
    assert_eq!(next_message(&mut client), OwnedMessage::Text("héllo ✓".into()));
    let binary: Vec<u8> = (0..=255).collect();
    client.send_binary(&binary).unwrap();
    assert_eq!(next_message(&mut client), OwnedMessage::Binary(binary));
    client.send_text("").unwrap();
    assert_eq!(next_message(&mut client), OwnedMessage::Text(String::new()));
    client.ping(b"p1").unwrap();
    assert_eq!(client.recv().unwrap(), ClientEvent::Pong(b"p1".to_vec()));
    let status = client.close(CloseCode::NORMAL, "done").unwrap();
    assert_eq!(
        status,
        Some(CloseStatus {
            code: CloseCode::NORMAL,
            reason: String::new()
        })
    );
    assert!(matches!(client.send_text("late"), Err(Error::Closed)));
    assert!(matches!(client.recv(), Err(Error::Closed)));
}

#[test]
fn sixteen_mib_messages_both_ways() {
    let server = demo_server(|s| s);
    let mut client = Client::connect(&echo_url(&server)).unwrap();
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    client.send_binary(&big).unwrap();
    assert!(
        next_message(&mut client) == OwnedMessage::Binary(big),
        "16 MiB binary echo differs"
    );
    let text = "wsloop ✓ ".repeat((16 << 20) / 10);
    client.send_text(&text).unwrap();
    assert!(
        next_message(&mut client) == OwnedMessage::Text(text),
        "16 MiB text echo differs"
    );
    client.close(CloseCode::NORMAL, "").unwrap();
}

#[test]
fn a_message_over_the_clients_limit_fails_with_1009() {
    let server = demo_server(|s| s);
    let mut client = Client::builder(echo_url(&server))
        .limits(wsloop::protocol::Config::default().max_message_size(1000))
        .connect()
        .unwrap();
    client.send_binary(&[7; 2000]).unwrap();
    let e = client.recv().unwrap_err();
    assert!(
        matches!(e, Error::Protocol(wsloop::ProtocolError::MessageTooLarge)),
        "{e:?}"
    );
    assert_eq!(e.close_code(), Some(CloseCode::MESSAGE_TOO_BIG));
}

#[test]
fn a_server_shutdown_is_a_close_1001() {
    let server = demo_server(|s| s.configure(|c| c.shutdown_grace = Duration::from_secs(2)));
    let mut client = Client::connect(&echo_url(&server)).unwrap();
    client.send_text("x").unwrap();
    assert_eq!(next_message(&mut client), OwnedMessage::Text("x".into()));
    server.shutdown();
    match client.recv().unwrap() {
        ClientEvent::Close(Some(s)) => assert_eq!(s.code, CloseCode::GOING_AWAY),
        other => panic!("{other:?}"),
    }
    assert!(matches!(client.recv(), Err(Error::Closed)));
}

#[test]
fn permessage_deflate_with_the_projects_server() {
    let server = demo_server(|s| s);
    let mut client = Client::builder(echo_url(&server)).deflate(true).connect().unwrap();
    let params = *client.deflate().expect("the demo server accepts permessage-deflate");
    assert!(params.client_no_context_takeover && params.server_no_context_takeover);
    let text = "compress me, compress me, compress me. ".repeat(20_000);
    for _ in 0..3 {
        client.send_text(&text).unwrap();
        assert!(next_message(&mut client) == OwnedMessage::Text(text.clone()));
    }
    client.send_binary(b"short").unwrap();
    assert_eq!(next_message(&mut client), OwnedMessage::Binary(b"short".to_vec()));
    client.close(CloseCode::NORMAL, "").unwrap();
}

#[test]
fn reader_and_writer_on_two_threads() {
    let server = demo_server(|s| s);
    let client = Client::connect(&echo_url(&server)).unwrap();
    let (mut reader, writer) = client.split();
    let pinger = writer.clone();
    let sender = std::thread::spawn(move || {
        for i in 0..2000 {
            writer.send_text(&format!("message {i}")).unwrap();
            if i % 100 == 0 {
                pinger.ping(b"hb").unwrap();
            }
        }
        writer
    });
    let mut got = 0;
    let mut pongs = 0;
    while got < 2000 {
        match reader.recv().unwrap() {
            ClientEvent::Text(t) => {
                assert_eq!(t, format!("message {got}"), "out of order");
                got += 1;
            }
            ClientEvent::Pong(_) => pongs += 1,
            other => panic!("{other:?}"),
        }
    }
    let writer = sender.join().unwrap();
    let mut client = Client::reunite(reader, writer).expect("the same connection");
    client.close(CloseCode::NORMAL, "").unwrap();
    assert!(pongs >= 19, "pongs {pongs}");
}

/// Refuses upgrades without a bearer token (401 before the 101), picks a subprotocol, and
/// sends back what it saw of the request.
struct Inspect;

impl Handler for Inspect {
    type State = String;
    fn on_upgrade(&self, request: &Request, _: &mut RequestContext<'_>) -> Result<Accept<String>, Response> {
        let auth = request.header_str("authorization").unwrap_or("");
        if auth != "Bearer t0ken" {
            return Err(Response::text(401, "token required"));
        }
        let offered: Vec<String> = request
            .header_tokens("sec-websocket-protocol")
            .map(str::to_owned)
            .collect();
        let seen = format!(
            "{} host={} origin={}",
            request.target(),
            request.header_str("host").unwrap_or("-"),
            request.header_str("origin").unwrap_or("-")
        );
        let mut accept = Accept::new(seen);
        if let Some(p) = select_subprotocol(&offered, &["chat.v2", "chat.v1"]) {
            accept = accept.protocol(p);
        }
        Ok(accept)
    }
    fn on_open(&self, ctx: &mut Context<'_, String>) {
        let seen = ctx.state().clone();
        ctx.send_text(&seen);
    }
}

#[test]
fn headers_origin_and_subprotocols_reach_the_server() {
    let server = Server::new(Inspect)
        .configure(|c| {
            c.bind = "127.0.0.1:0".parse().unwrap();
            c.threads = 1;
            c.origin_policy = server::OriginPolicy::from_list(vec!["http://app.example".into()]);
        })
        .start()
        .unwrap();
    let url = format!("ws://{}/room?x=%2F", server.local_addr());
    let e = Client::connect(&url).unwrap_err();
    assert!(matches!(&e, Error::Refused(r) if r.status == 401), "{e:?}");
    let mut client = Client::builder(&url)
        .header("Authorization", "Bearer t0ken")
        .origin("http://app.example")
        .protocol("chat.v1")
        .protocol("chat.v2")
        .connect()
        .unwrap();
    assert_eq!(client.protocol(), Some("chat.v2"));
    assert_eq!(
        next_message(&mut client),
        OwnedMessage::Text(format!(
            "/room?x=%2F host={} origin=http://app.example",
            server.local_addr()
        ))
    );
    client.close(CloseCode::NORMAL, "").unwrap();
    // An Origin the server does not allow is refused with 403 (RFC 6455 §10.2).
    let e = Client::builder(&url)
        .header("Authorization", "Bearer t0ken")
        .origin("http://evil.example")
        .connect()
        .unwrap_err();
    assert!(matches!(&e, Error::Refused(r) if r.status == 403), "{e:?}");
}

#[test]
fn the_reconnecting_client_comes_back_after_a_server_restart_on_the_same_port() {
    let server = demo_server(|s| s.configure(|c| c.shutdown_grace = Duration::from_millis(500)));
    let addr = server.local_addr();
    let states = Arc::new(Mutex::new(Vec::new()));
    let (opened_tx, opened) = mpsc::channel();
    let seen = states.clone();
    let mut client = ReconnectingClient::new(Client::builder(format!("ws://{addr}/echo")))
        .backoff(Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(400),
        })
        .on_state(move |s| {
            seen.lock().unwrap().push(s.clone());
            if *s == ConnectionState::Open {
                let _ = opened_tx.send(());
            }
        });
    let sender = client.sender();
    let (messages_tx, messages) = mpsc::channel();
    let receiving = std::thread::spawn(move || loop {
        match client.recv() {
            Ok(ClientEvent::Text(t)) => {
                if messages_tx.send(t).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(Error::Closed) => return,
            Err(e) => panic!("recv: {e}"),
        }
    });
    let wait = Duration::from_secs(10);
    opened.recv_timeout(wait).expect("first open");
    sender.send_text("before").unwrap();
    assert_eq!(messages.recv_timeout(wait).unwrap(), "before");

    // Stop the server; the client sees Close 1001, retries against a closed port (1006) while
    // waiting longer each time, and is back once a new server listens on the same port.
    server.shutdown();
    server.join().unwrap();
    let down = Instant::now();
    std::thread::sleep(Duration::from_millis(600));
    assert!(sender.send_text("while down").is_err());
    let restarted = Server::new(common::demo::DemoApp::new())
        .configure(|c| {
            c.bind = addr;
            c.threads = 1;
        })
        .start()
        .expect("restart on the same port");
    opened.recv_timeout(wait).expect("reconnected by itself");
    assert!(down.elapsed() < Duration::from_secs(5));
    sender.send_text("after").unwrap();
    assert_eq!(messages.recv_timeout(wait).unwrap(), "after");

    let log = states.lock().unwrap().clone();
    let closed_1001 = log
        .iter()
        .position(|s| matches!(s, ConnectionState::Closed { code, .. } if *code == CloseCode::GOING_AWAY))
        .unwrap_or_else(|| panic!("no Closed(1001) in {log:?}"));
    let after = &log[closed_1001..];
    assert!(matches!(after[1], ConnectionState::Waiting { .. }), "{log:?}");
    assert!(
        after
            .iter()
            .any(|s| matches!(s, ConnectionState::Closed { code, .. } if *code == CloseCode::ABNORMAL)),
        "no failed attempt while the server was down: {log:?}"
    );
    let delays: Vec<Duration> = after
        .iter()
        .filter_map(|s| match s {
            ConnectionState::Waiting { delay } => Some(*delay),
            _ => None,
        })
        .collect();
    assert!(delays.len() >= 2, "{log:?}");
    // Jittered into [c/2, c] with c = 50 ms × 2^n, at most 400 ms.
    for (n, d) in delays.iter().enumerate() {
        let c = Duration::from_millis(50 * (1 << n.min(3)) as u64).min(Duration::from_millis(400));
        assert!(*d >= c / 2 && *d <= c, "retry {n}: {d:?} not in [{:?}, {c:?}]", c / 2);
    }
    assert!(matches!(log.last(), Some(ConnectionState::Open)), "{log:?}");

    sender.close(CloseCode::NORMAL, "bye").unwrap();
    receiving.join().unwrap();
    drop(restarted);
}
