//! permessage-deflate as a handler sees it, over real loopback TCP with the crate's client core:
//! `Context::frames_out` (the bytes just sent, compressed when they were), `deflate_params`,
//! `deflate_policy`, and the `/learn` lesson explaining compressed frames (issue 11 item 7).

mod common;

use common::events::text;
use common::{demo_server, Client, TIMEOUT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use wsloop::deflate::DeflateParams;
use wsloop::handshake::client::{ClientHandshake, ResponseStatus};
use wsloop::handshake::deflate::{DeflateOffer, DeflatePolicy};
use wsloop::handshake::Request;
use wsloop::protocol::{Config, OwnedEvent, Role, WebSocket};
use wsloop::server::{Accept, Context, DeflateMode, Handler, Message, RequestContext, Response, RunningServer};

/// Connects to `path` offering permessage-deflate as browsers do (or nothing); returns the
/// client (compressing and inflating if agreed) and the agreed parameters.
fn connect(addr: SocketAddr, path: &str, offer: bool) -> (Client, Option<DeflateParams>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut hs = ClientHandshake::new(&[]);
    if offer {
        hs = hs.with_deflate(DeflateOffer::default());
    }
    stream.write_all(&hs.request(&addr.to_string(), path, &[])).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).expect("read the 101");
        assert!(
            n > 0,
            "closed during the handshake: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        match hs.parse_response(&buf).expect("a valid 101") {
            ResponseStatus::Partial => continue,
            ResponseStatus::Accepted { head_len, deflate, .. } => {
                let mut ws = WebSocket::client(Config::default());
                if let Some(p) = deflate {
                    ws = ws.with_deflate(p);
                }
                let mut client = Client {
                    stream,
                    ws,
                    events: Default::default(),
                    eof: false,
                };
                // The server may write its first message in the same packet as the 101.
                let mut rest = buf[head_len..].to_vec();
                let mut out = Vec::new();
                let events = client.ws.receive_all(&mut rest, &mut out).expect("valid frames");
                client.events.extend(events);
                return (client, deflate);
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Echoes, then reports what the handler saw: `out=HEX;params=..;policy=..`.
struct Report;

impl Handler for Report {
    type State = ();
    fn on_upgrade(&self, request: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
        match request.path() {
            "/capture" => Ok(Accept::new(()).capture_frames()),
            "/capture-no-deflate" => Ok(Accept::new(()).capture_frames().deflate(false)),
            _ => Ok(Accept::new(())),
        }
    }
    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        ctx.send(message);
        let report = format!(
            "out={};params={:?};policy={:?}",
            hex(ctx.frames_out()),
            ctx.deflate_params(),
            ctx.deflate_policy()
        );
        ctx.send_text(&report);
    }
}

fn start(mode: DeflateMode) -> RunningServer {
    common::start(Report, |s| s.configure(|c| c.deflate = mode))
}

/// Sends `message`, reads the echo and the report; returns the report's three fields.
fn exchange(client: &mut Client, message: &str) -> (Vec<u8>, String, String) {
    client.send_text(message);
    assert_eq!(text(client.next_message()), message, "the echo");
    let report = text(client.next_message());
    let mut fields = report.splitn(3, ';');
    let out = fields.next().and_then(|f| f.strip_prefix("out=")).expect("out=");
    let params = fields.next().and_then(|f| f.strip_prefix("params=")).expect("params=");
    let policy = fields.next().and_then(|f| f.strip_prefix("policy=")).expect("policy=");
    (unhex(out), params.to_owned(), policy.to_owned())
}

/// The message `wire` carries, read as a client with `params` agreed.
fn read_as_client(wire: &[u8], params: Option<DeflateParams>) -> Vec<OwnedEvent> {
    let mut ws = WebSocket::new(Role::Client, Config::default());
    if let Some(p) = params {
        ws = ws.with_deflate(p);
    }
    let mut bytes = wire.to_vec();
    ws.receive_all(&mut bytes, &mut Vec::new()).expect("valid frames")
}

#[test]
fn frames_out_is_the_echo_as_sent_compressed_when_it_was() {
    let server = start(DeflateMode::Shared);
    let (mut client, params) = connect(server.local_addr(), "/capture", true);
    let params = params.expect("deflate agreed");
    assert!(params.server_no_context_takeover && params.client_no_context_takeover);

    // Above the threshold (128 bytes by default): compressed, RSV1 set (RFC 7692 §6).
    let long = "{\"room\":\"lobby\",\"text\":\"hello\"} ".repeat(10);
    let (out, _, _) = exchange(&mut client, &long);
    assert_eq!(out[0], 0xc1, "FIN + RSV1 + text: {}", hex(&out));
    assert!(out.len() < long.len() / 2, "{} bytes for {}", out.len(), long.len());
    // Each message stands alone (no context takeover): a fresh reader inflates it.
    assert_eq!(read_as_client(&out, Some(params)), [OwnedEvent::Text(long.clone())]);
    // The same message again is compressed the same: no window carried over.
    let (again, _, _) = exchange(&mut client, &long);
    assert_eq!(again, out);

    // Under the threshold: plain, exactly the RFC 6455 frame.
    let (out, _, _) = exchange(&mut client, "Hello");
    assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
}

#[test]
fn frames_out_is_empty_without_capture() {
    let server = start(DeflateMode::Shared);
    let (mut client, params) = connect(server.local_addr(), "/plain", true);
    assert!(params.is_some());
    let (out, _, _) = exchange(&mut client, &"x".repeat(300));
    assert!(out.is_empty(), "{}", hex(&out));
}

#[test]
fn frames_out_without_deflate_is_plain() {
    let server = start(DeflateMode::Shared);
    let (mut client, params) = connect(server.local_addr(), "/capture-no-deflate", true);
    assert_eq!(params, None, "Accept::deflate(false) declines the offer");
    let long = "y".repeat(300);
    let (out, params, policy) = exchange(&mut client, &long);
    assert_eq!(&out[..4], [0x81, 0x7e, 0x01, 0x2c]);
    assert_eq!(read_as_client(&out, None), [OwnedEvent::Text(long)]);
    assert_eq!((params.as_str(), policy.as_str()), ("None", "None"));
}

#[test]
fn deflate_params_and_policy_follow_the_mode() {
    let shared = start(DeflateMode::Shared);
    let (mut c, agreed) = connect(shared.local_addr(), "/plain", true);
    let (_, params, policy) = exchange(&mut c, "hi");
    assert_eq!(params, format!("{agreed:?}"));
    assert_eq!(policy, format!("{:?}", Some(DeflatePolicy::default())));
    // No offer: nothing agreed, but the policy the (absent) offers were judged by is there.
    let (mut c, agreed) = connect(shared.local_addr(), "/plain", false);
    assert_eq!(agreed, None);
    let (_, params, policy) = exchange(&mut c, "hi");
    assert_eq!(params, "None");
    assert_eq!(policy, format!("{:?}", Some(DeflatePolicy::default())));

    let dedicated = start(DeflateMode::Dedicated { window_bits: 12 });
    let (mut c, agreed) = connect(dedicated.local_addr(), "/plain", true);
    let agreed = agreed.expect("deflate agreed");
    assert!(!agreed.server_no_context_takeover && agreed.server_max_window_bits == 12);
    let (_, params, policy) = exchange(&mut c, "hi");
    assert_eq!(params, format!("{:?}", Some(agreed)));
    assert_eq!(policy, format!("{:?}", Some(DeflatePolicy::context_takeover(12))));

    let off = start(DeflateMode::Off);
    let (mut c, agreed) = connect(off.local_addr(), "/plain", true);
    assert_eq!(agreed, None);
    let (_, params, policy) = exchange(&mut c, "hi");
    assert_eq!((params.as_str(), policy.as_str()), ("None", "None"));
}

/// A field's JSON text after `"key":` in `json`, up to the next `,` or `}` (scalars only).
fn scalar<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[at..];
    Some(&rest[..rest.find([',', '}'])?])
}

#[test]
fn learn_explains_compressed_frames_both_ways() {
    let server = demo_server(|s| s);
    let (mut client, params) = connect(server.local_addr(), "/learn", true);
    assert!(params.is_some(), "/learn accepts permessage-deflate");
    let handshake = text(client.next_message());
    assert!(handshake.starts_with("{\"wsloop\":\"handshake\""), "{handshake}");
    let extensions = &handshake[handshake.find("\"extensions\":").expect("extensions")..];
    assert_eq!(scalar(extensions, "mode"), Some("\"shared\""), "{extensions}");
    assert_eq!(scalar(extensions, "matches"), Some("true"), "{extensions}");
    assert_eq!(scalar(extensions, "decision"), Some("\"accepted\""), "{extensions}");
    assert!(
        extensions.contains(
            "\"response_header\":\"permessage-deflate; server_no_context_takeover; client_no_context_takeover\""
        ),
        "{extensions}"
    );

    // Our client compresses this (above its threshold), and so does the server's echo.
    let long = "Hello, wsloop! Compress me, please. ".repeat(8);
    client.send_text(&long);
    assert_eq!(text(client.next_message()), long);
    let frames = text(client.next_message());
    assert!(frames.starts_with("{\"wsloop\":\"frames\""), "{frames}");
    let (received, sent) = frames.split_at(frames.find("\"sent\":").expect("sent"));
    for side in [received, sent] {
        assert_eq!(scalar(side, "rsv1"), Some("true"), "{side}");
        assert_eq!(scalar(side, "compressed"), Some("true"), "{side}");
        assert_eq!(scalar(side, "tail"), Some("\"00 00 ff ff\""), "{side}");
        assert_eq!(scalar(side, "standalone"), Some("true"), "{side}");
        assert!(side.contains(&format!("\"inflated_text\":\"{long}\"")), "{side}");
        assert_eq!(scalar(side, "text"), Some("null"), "{side}");
    }
    assert!(sent.contains("\"sent_standalone\":true"), "{sent}");
    assert_eq!(frames.matches("\"error\":null").count(), 4, "{frames}");
}

#[test]
fn learn_without_deflate_says_so() {
    let server = demo_server(|s| s.configure(|c| c.deflate = DeflateMode::Off));
    let (mut client, params) = connect(server.local_addr(), "/learn", true);
    assert_eq!(params, None);
    let handshake = text(client.next_message());
    let extensions = &handshake[handshake.find("\"extensions\":").expect("extensions")..];
    assert_eq!(scalar(extensions, "mode"), Some("\"off\""), "{extensions}");
    assert_eq!(scalar(extensions, "decision"), Some("\"off\""), "{extensions}");
    assert_eq!(scalar(extensions, "response_header"), Some("null"), "{extensions}");
    assert_eq!(scalar(extensions, "matches"), Some("true"), "{extensions}");
    client.send_text(&"z".repeat(300));
    let _echo = client.next_message();
    let frames = text(client.next_message());
    assert!(!frames.contains("\"compressed\""), "plain frames_json: {frames}");
    assert!(frames.contains("\"rsv1\":false"), "{frames}");
}
