//! The hostile suite, per-address limits (issue 22, items 1, 2 and 5): one client address
//! opening more connections than `--max-connections-per-ip`, or opening them faster than
//! `--upgrade-rate-per-ip`, is answered `429 Too Many Requests` with `Retry-After` before any
//! 101, and closed; the others carry on. Each test runs `wsloop serve` as a child process and
//! talks to it over loopback from 127.0.0.1.

mod common;

use common::health::metric;
use common::process::{status_of, ServerProcess, Spawn};
use common::wait::{eventually, serial};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(UPGRADE.as_bytes()).unwrap();
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
