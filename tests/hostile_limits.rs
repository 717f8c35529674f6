//! The hostile suite, rate limits (issue 22): one client address opening more connections
//! than `--max-connections-per-ip`, or opening them faster than `--upgrade-rate-per-ip`, is
//! answered `429 Too Many Requests` with `Retry-After` before any 101, and closed; the others
//! carry on. A WebSocket sending faster than `--message-rate` is throttled (nothing lost) or
//! closed with 1008; behind `--trust-proxy` the limits count the forwarded client, and nobody
//! else's forwarding headers are believed. Each test runs `wsloop serve` as a child process
//! and talks to it over loopback from 127.0.0.1.

mod common;

use common::health::metric;
use common::process::{health, status_of, ServerProcess, Spawn};
use common::wait::{eventually, serial};
use common::Client;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use wsloop::frame::CloseCode;
use wsloop::protocol::OwnedEvent;

const UPGRADE: &str = "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A connection that asked to upgrade: its status, `Retry-After` (if any), and the stream.
struct Attempt {
    status: Option<u16>,
    retry_after: Option<u64>,
    stream: TcpStream,
}

/// Sends an upgrade request on a new connection and reads the response head.
fn upgrade(addr: SocketAddr) -> Attempt {
    upgrade_with(addr, "")
}

/// [`upgrade`] with an extra header line (`"Name: value"`, or empty for none).
fn upgrade_with(addr: SocketAddr, header: &str) -> Attempt {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = if header.is_empty() {
        UPGRADE.to_owned()
    } else {
        UPGRADE.replace("\r\n\r\n", &format!("\r\n{header}\r\n\r\n"))
    };
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let retry_after = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().parse().ok())?
    });
    Attempt {
        status: status_of(&head),
        retry_after,
        stream,
    }
}

/// Whether the server closes the connection (after the body of its answer).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).is_ok()
}

fn refusals(addr: SocketAddr, reason: &str) -> Option<f64> {
    metric(addr, &format!("wsloop_limit_refusals_total{{reason=\"{reason}\"}}"))
}

#[test]
fn thirty_upgrades_from_one_address_with_a_cap_of_twenty() {
    let _serial = serial();
    let server = ServerProcess::start(Spawn {
        args: vec!["--max-connections-per-ip", "20", "--threads", "2"],
        ..Default::default()
    });
    let addr = server.addr;
    // The start-up probe's connection must be gone before counting.
    std::thread::sleep(Duration::from_millis(300));
    let attempts: Vec<Attempt> = (0..30).map(|_| upgrade(addr)).collect();
    let mut open = Vec::new();
    let mut refused = 0;
    for mut a in attempts {
        match a.status {
            Some(101) => open.push(a.stream),
            Some(429) => {
                refused += 1;
                assert!(a.retry_after.is_some_and(|s| s >= 1), "429 without Retry-After");
                assert!(closed_by_server(&mut a.stream), "a refused connection is closed");
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((open.len(), refused), (20, 10), "20 upgraded, 10 refused");

    // Five leave: five new ones get in (once the server has seen them go), and no more.
    open.truncate(15);
    let mut admitted = 0;
    eventually("five new upgrades accepted", Duration::from_secs(10), || {
        let a = upgrade(addr);
        if a.status == Some(101) {
            open.push(a.stream);
            admitted += 1;
        }
        admitted == 5
    });
    let extra = upgrade(addr);
    assert_eq!(extra.status, Some(429), "20 open again: the next is refused");

    // The refusals are counted by reason (once the WebSockets are gone there is room for
    // the /metrics request itself).
    open.clear();
    eventually("refusals counted", Duration::from_secs(10), || {
        refusals(addr, "connections_per_ip").is_some_and(|n| n >= 11.0)
    });
}

#[test]
fn forty_quick_upgrades_at_ten_per_second() {
    let _serial = serial();
    let server = ServerProcess::start(Spawn {
        args: vec!["--upgrade-rate-per-ip", "10", "--threads", "2"],
        ..Default::default()
    });
    let addr = server.addr;
    // A full burst to start with (the start-up probe took one).
    std::thread::sleep(Duration::from_millis(1100));
    let mut upgraded = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        let mut a = upgrade(addr);
        match a.status {
            Some(101) => upgraded.push(a.stream),
            Some(429) => {
                refused += 1;
                let secs = a.retry_after.expect("429 with Retry-After");
                assert!((1..=2).contains(&secs), "Retry-After {secs} s at 10/s");
                assert!(closed_by_server(&mut a.stream), "a refused connection is closed");
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        (8..=14).contains(&upgraded.len()),
        "{} upgraded, {refused} refused",
        upgraded.len()
    );
    assert_eq!(upgraded.len() + refused, 40);
    // Open WebSockets do not count against the rate: after the Retry-After the next one gets in.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(upgrade(addr).status, Some(101), "admitted again after Retry-After");
    let counted = refusals(addr, "upgrade_rate_per_ip").unwrap_or(0.0);
    assert_eq!(counted, refused as f64, "refusals counted by reason");
}

#[test]
fn an_upgrade_after_a_request_on_a_kept_alive_connection_pays_the_rate_again() {
    let _serial = serial();
    let server = ServerProcess::start(Spawn {
        args: vec!["--upgrade-rate-per-ip", "2", "--threads", "1"],
        ..Default::default()
    });
    let addr = server.addr;
    // Let the start-up probe's token come back: a burst of 2.
    std::thread::sleep(Duration::from_millis(1100));
    // One connection (one token): a plain request, then an upgrade on it (a second token).
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let (status, _, _) = common::read_response(&mut s);
    assert_eq!(status, 200);
    s.write_all(UPGRADE.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && matches!(s.read(&mut byte), Ok(1)) {
        head.push(byte[0]);
    }
    assert_eq!(status_of(&head), Some(101), "{}", String::from_utf8_lossy(&head));
    // The burst is spent: a new connection now is refused.
    let next = upgrade(addr);
    assert_eq!(next.status, Some(429));
    assert_eq!(next.retry_after, Some(1));
}

// ----- the message rate -------------------------------------------------------------------

#[test]
fn a_thousand_messages_at_200_per_second_are_all_echoed_in_order_and_others_stay_fast() {
    let _serial = serial();
    let server = ServerProcess::start(Spawn {
        args: vec!["--message-rate", "200", "--threads", "2"],
        ..Default::default()
    });
    let addr = server.addr;
    let mut flood = Client::connect(addr, "/echo");
    // All 1,000 in one write: the server reads them as fast as its limit lets it.
    let mut frames = Vec::new();
    for i in 0..1000 {
        flood.ws.send_text(&format!("m{i}"), &mut frames).unwrap();
    }
    let started = Instant::now();
    flood.stream.write_all(&frames).unwrap();

    // Meanwhile another connection's echo round trip stays fast.
    let probe = std::thread::spawn(move || {
        let mut other = Client::connect(addr, "/echo");
        let mut worst = Duration::ZERO;
        for i in 0..10 {
            std::thread::sleep(Duration::from_millis(200));
            let sent = Instant::now();
            other.send_text(&format!("probe {i}"));
            let got = other.next_message();
            worst = worst.max(sent.elapsed());
            assert_eq!(got, Some(OwnedEvent::Text(format!("probe {i}"))));
        }
        worst
    });

    let mut last = Duration::ZERO;
    for i in 0..1000 {
        match flood.next_message() {
            Some(OwnedEvent::Text(t)) => assert_eq!(t, format!("m{i}"), "echoed in order"),
            other => panic!("message {i}: {other:?}"),
        }
        last = started.elapsed();
        if i == 199 {
            // The burst: a second's worth goes through at once.
            assert!(last < Duration::from_secs(3), "the burst took {last:?}");
        }
    }
    // 800 past the burst of 200, at 5 ms each: 4 s.
    assert!(
        last >= Duration::from_secs(3),
        "1,000 messages at 200/s echoed in {last:?}"
    );
    let worst = probe.join().expect("probe thread");
    assert!(
        worst < Duration::from_millis(500),
        "another connection's round trip took {worst:?}"
    );
    let throttled = metric(addr, "wsloop_throttled_seconds_total{reason=\"message_rate\"}").unwrap_or(0.0);
    assert!(throttled >= 3.0, "throttled {throttled} s");
}

#[test]
fn over_the_message_rate_with_the_close_action_closes_1008() {
    let _serial = serial();
    let server = ServerProcess::start(Spawn {
        args: vec!["--message-rate", "5", "--rate-limit-action", "close", "--threads", "1"],
        ..Default::default()
    });
    let addr = server.addr;
    let mut c = Client::connect(addr, "/echo");
    let mut frames = Vec::new();
    for i in 0..20 {
        c.ws.send_text(&format!("m{i}"), &mut frames).unwrap();
    }
    c.stream.write_all(&frames).unwrap();
    let mut echoed = 0;
    let code = loop {
        match c.next() {
            Some(OwnedEvent::Text(t)) => {
                assert_eq!(t, format!("m{echoed}"));
                echoed += 1;
            }
            Some(OwnedEvent::Close(close)) => break close.map(|(code, _)| code),
            Some(_) => continue,
            None => panic!("closed without a Close frame after {echoed} echoes"),
        }
    };
    assert_eq!(code, Some(CloseCode::POLICY_VIOLATION));
    assert_eq!(echoed, 5, "the burst, and not the message over it");
    assert!(c.wait_eof(), "the server closes the connection");
    let closes = refusals(addr, "message_rate").unwrap_or(0.0);
    assert_eq!(closes, 1.0, "counted in /metrics");
    // A connection within its rate is unaffected.
    let mut calm = Client::connect(addr, "/echo");
    calm.send_text("calm");
    assert_eq!(calm.next_message(), Some(OwnedEvent::Text("calm".into())));
}

// ----- behind a trusted proxy ---------------------------------------------------------------

/// 30 upgrades, each with the header `header(i)`: (upgraded, refused with 429).
fn thirty_upgrades(addr: SocketAddr, header: impl Fn(usize) -> String) -> (Vec<TcpStream>, usize) {
    let mut open = Vec::new();
    let mut refused = 0;
    for i in 0..30 {
        let mut a = upgrade_with(addr, &header(i));
        match a.status {
            Some(101) => open.push(a.stream),
            Some(429) => {
                refused += 1;
                assert!(closed_by_server(&mut a.stream), "a refused connection is closed");
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    (open, refused)
}

fn capped_server(extra: &[&'static str]) -> ServerProcess {
    let mut args = vec!["--max-connections-per-ip", "20", "--threads", "2"];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(Spawn {
        args,
        ..Default::default()
    });
    // The start-up probe's connection must be gone before counting.
    std::thread::sleep(Duration::from_millis(300));
    server
}

#[test]
fn thirty_upgrades_with_distinct_forwarded_clients_through_a_trusted_proxy() {
    let _serial = serial();
    let server = capped_server(&["--trust-proxy", "127.0.0.1/32"]);
    let (open, refused) = thirty_upgrades(server.addr, |i| format!("X-Forwarded-For: 198.51.100.{i}"));
    assert_eq!(
        (open.len(), refused),
        (30, 0),
        "each forwarded client has its own count"
    );
    // The proxy's own address is not capped, but each client is: 30 upgrades naming one
    // client through the same proxy are capped at 20 (RFC 7239 Forwarded this time).
    let (same, refused) = thirty_upgrades(server.addr, |_| "Forwarded: for=\"[2001:db8::7]:4711\"".into());
    assert_eq!((same.len(), refused), (20, 10));
}

#[test]
fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let _serial = serial();
    // No proxy trusted at all, then one trusted range that the peer (127.0.0.1) is not in.
    for extra in [
        &[][..],
        &["--trust-proxy", "10.0.0.0/8", "--trust-proxy", "::1/128"][..],
    ] {
        let server = capped_server(extra);
        let (open, refused) = thirty_upgrades(server.addr, |i| format!("X-Forwarded-For: 198.51.100.{i}"));
        assert_eq!(
            (open.len(), refused),
            (20, 10),
            "spoofed X-Forwarded-For with {extra:?}"
        );
        drop(open);
    }
}

#[test]
fn a_malformed_forwarded_header_from_a_trusted_proxy_is_ignored() {
    let _serial = serial();
    let server = capped_server(&["--trust-proxy", "127.0.0.1/32"]);
    // Malformed, each differently: none names a client, so all count as the proxy's own
    // address (capped like any client's when it names none).
    let bad = |i: usize| match i % 5 {
        0 => format!("Forwarded: for=\"[2001:db8::{i}\""),
        1 => format!("Forwarded: for=[2001:db8::{i}]"),
        2 => format!("Forwarded: for=198.51.100.{i};for=203.0.113.{i}"),
        3 => format!("Forwarded: for=\"198.51.100.{i}"),
        _ => format!("Forwarded: for=300.0.0.{i}"),
    };
    let (open, refused) = thirty_upgrades(server.addr, bad);
    assert_eq!((open.len(), refused), (20, 10), "malformed headers named nobody");
    drop(open);
    let (status, _) = health(server.addr, Duration::from_secs(5));
    assert_eq!(status, Some(200), "the server is fine");
}

#[test]
fn a_bad_trust_proxy_range_is_a_clear_error() {
    let out = std::process::Command::new(common::process::wsloop_bin())
        .args(["serve", "--trust-proxy", "10.0.0.0/33"])
        .output()
        .expect("run wsloop");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a CIDR range") && err.contains("10.0.0.0/33"), "{err}");
}
