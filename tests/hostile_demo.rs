//! The hostile suite for what the demo application builds on the transport (issue 18): `wsloop
//! serve` as a child process, attacked through `/chat` and the HTTP routes. Loopback only, one
//! attack at a time, each bounded in time.
//!
//! `WSLOOP_BIN=/path/to/wsloop cargo test --test hostile_demo` runs the same attacks against
//! another build (e.g. an older one, to see which attacks it fails).

mod common;

use common::health::{watch_health, HealthReport};
use common::process::{raw_exchange, status_of, ServerProcess, Spawn};
use common::wait::serial;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wsloop::client::{Client, ClientEvent, CloseStatus, Error, OwnedMessage};
use wsloop::CloseCode;

const MIB: u64 = 1 << 20;

/// The budget the memory attacks run under (`--max-memory`).
const BUDGET: u64 = 128 * MIB;

/// What the process holds beyond the budget whatever the attack: code, thread stacks, the
/// allocator's slack, the loop's buffers, and the received message's copy for its handler (a
/// loop scratch buffer the budget does not count, up to the 40 MiB message sent here).
const FIXED_OVERHEAD: u64 = 64 * MIB;

/// `/health` polled on fresh connections every 25 ms until stopped: the worst time and the
/// number of answers other than 200.
struct HealthWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<HealthReport>,
}

impl HealthWatch {
    fn start(addr: std::net::SocketAddr) -> HealthWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = watch_health(addr, Duration::from_millis(25), stop.clone());
        HealthWatch { stop, thread }
    }

    /// Stops; returns (worst milliseconds, failures).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.thread.join().unwrap_or_default();
        (r.worst.as_millis() as u64, r.failures)
    }
}

/// A `/chat` member speaking permessage-deflate, as browsers do.
fn chat_client(addr: std::net::SocketAddr, query: &str) -> Client {
    let client = Client::builder(format!("ws://{addr}/chat?{query}"))
        .deflate(true)
        .read_timeout(Some(Duration::from_millis(200)))
        .connect()
        .expect("connect to /chat");
    assert!(client.deflate().is_some(), "the server accepted permessage-deflate");
    client
}

/// Reads until the server's Close (or the connection ends, or `within` passes); returns the
/// Close and the text messages seen before it.
fn until_close(client: &mut Client, within: Duration) -> (Option<Option<CloseStatus>>, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut texts = Vec::new();
    while Instant::now() < deadline {
        match client.recv() {
            Ok(ClientEvent::Text(t)) => texts.push(t),
            Ok(ClientEvent::Close(status)) => return (Some(status), texts),
            Ok(_) | Err(Error::Timeout(_)) => {}
            Err(e) => {
                eprintln!("connection ended without a Close: {e}");
                return (None, texts);
            }
        }
    }
    (None, texts)
}

/// A `/chat` member reading at full speed in its own thread until stopped; returns the text
/// messages it got.
fn reader(mut client: Client, stop: Arc<AtomicBool>) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut texts = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match client.recv() {
                Ok(ClientEvent::Text(t)) => texts.push(t),
                Ok(ClientEvent::Close(_)) => break,
                Ok(_) | Err(Error::Timeout(_)) => {}
                Err(_) => break,
            }
        }
        texts
    })
}

/// The attack of issue 18, break 4, at the size `text_mib` MiB of `\x01`: sent compressed
/// (a few dozen KB on the wire) by one `/chat` member while another reads; returns what the
/// sender was closed with, the peak RSS, the worst `/health` time and failures, and what the
/// reader got.
struct BombOutcome {
    close: Option<Option<CloseStatus>>,
    peak_rss: u64,
    worst_health_ms: u64,
    health_failures: u64,
    reader_texts: Vec<String>,
    took: Duration,
}

fn control_character_bomb(text_mib: usize) -> BombOutcome {
    let budget = BUDGET.to_string();
    let server = ServerProcess::start(Spawn {
        args: vec!["--threads", "1", "--max-memory", &budget],
        ..Spawn::default()
    });
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let listener = reader(chat_client(addr, "room=bomb&name=reader"), stop.clone());
    let mut sender = chat_client(addr, "room=bomb&name=bomber");
    let watch = HealthWatch::start(addr);
    std::thread::sleep(Duration::from_millis(100));

    let started = Instant::now();
    let bomb = "\u{1}".repeat(text_mib << 20);
    sender.send(OwnedMessage::Text(bomb)).expect("send the bomb");
    let (close, _) = until_close(&mut sender, Duration::from_secs(60));
    let took = started.elapsed();
    // Give a message that did go out time to reach the reader, and the process time to settle.
    std::thread::sleep(Duration::from_millis(500));

    // The room still works: an ordinary message with a control character in it goes through.
    let mut after = chat_client(addr, "room=bomb&name=after");
    after.send(OwnedMessage::Text("still here\u{1}".into())).expect("send");
    std::thread::sleep(Duration::from_millis(500));

    let (worst_health_ms, health_failures) = watch.finish();
    let peak_rss = server.peak_rss();
    stop.store(true, Ordering::Relaxed);
    let reader_texts = listener.join().unwrap_or_default();
    BombOutcome {
        close,
        peak_rss,
        worst_health_ms,
        health_failures,
        reader_texts,
        took,
    }
}

fn check_bomb(o: &BombOutcome, text_mib: usize, reason_says: &str) {
    let biggest = o.reader_texts.iter().map(|t| t.len()).max().unwrap_or(0);
    eprintln!(
        "{text_mib} MiB of \\x01 compressed to /chat, budget {} MiB: sender closed with {:?} after {:?}; \
         peak RSS {} MiB; worst /health {} ms ({} failures); the reader got {} texts, the largest {biggest} bytes",
        BUDGET / MIB,
        o.close,
        o.took,
        o.peak_rss / MIB,
        o.worst_health_ms,
        o.health_failures,
        o.reader_texts.len(),
    );
    match &o.close {
        Some(Some(CloseStatus { code, reason })) => {
            assert_eq!(*code, CloseCode::MESSAGE_TOO_BIG, "reason {reason:?}");
            assert!(reason.contains(reason_says), "reason {reason:?}");
        }
        other => panic!("the sender was not closed with 1009: {other:?}"),
    }
    assert!(
        o.peak_rss < BUDGET + FIXED_OVERHEAD,
        "peak RSS {} MiB, over the budget of {} MiB plus {} MiB",
        o.peak_rss / MIB,
        BUDGET / MIB,
        FIXED_OVERHEAD / MIB
    );
    // Generous: a debug build inflates the whole message (a transport step this test does not
    // cover) on the loop thread of a machine shared with other builds. Before the escaped
    // size was checked, /health timed out (10 s) here.
    assert!(o.worst_health_ms < 5000, "/health took {} ms", o.worst_health_ms);
    assert_eq!(o.health_failures, 0, "/health failed");
    assert!(biggest < 1 << 20, "the reader was sent a {biggest}-byte message");
    assert!(
        o.reader_texts
            .iter()
            .any(|t| t.contains("\"text\":\"still here\\u0001\"")),
        "an ordinary message after the attack did not arrive: {:?}",
        o.reader_texts
    );
}

/// Issue 18, break 4: 40 MiB of `\x01` (compressed to a few dozen KB) passes the transport's
/// 64 MiB message limit, but as JSON it is 240 MiB. It is refused before the JSON is built:
/// the sender is closed 1009, nobody is sent anything, memory stays within the budget.
#[test]
fn compressed_control_characters_over_the_limit_once_escaped_are_refused() {
    let _one = serial();
    let outcome = control_character_bomb(40);
    check_bomb(&outcome, 40, "once escaped as JSON: over the limit of 67108864 bytes");
}

/// The same attack at 10 MiB: 60 MiB as JSON, within the 64 MiB limit, but the copies
/// publishing makes do not fit a 128 MiB budget. Refused the same way, with the budget named.
#[test]
fn control_characters_within_the_limit_but_over_the_budget_once_escaped_are_refused() {
    let _one = serial();
    let outcome = control_character_bomb(10);
    check_bomb(&outcome, 10, "does not fit the memory budget");
}

/// The HTTP route counts the escaped size too: a body of control characters whose JSON is
/// over the message limit is refused 413, and nothing is published.
#[test]
fn post_of_control_characters_over_the_limit_once_escaped_is_refused() {
    let _one = serial();
    let server = ServerProcess::start(Spawn {
        args: vec!["--max-message-size", "1000000"],
        ..Spawn::default()
    });
    let addr = server.addr;
    let post = |body: &str| {
        let request = format!(
            "POST /rooms/news/messages HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        raw_exchange(addr, request.as_bytes(), Duration::from_secs(10))
    };
    // 200,000 bytes raw (within the 1 MiB body limit), 1,200,000 as JSON.
    let refused = post(&"\u{1}".repeat(200_000));
    assert_eq!(status_of(&refused), Some(413), "{}", String::from_utf8_lossy(&refused));
    assert!(String::from_utf8_lossy(&refused).contains("once escaped as JSON: over the limit of 1000000 bytes"));
    let fine = post(&"\u{1}".repeat(1000));
    assert_eq!(status_of(&fine), Some(202), "{}", String::from_utf8_lossy(&fine));
}

/// A request as a page on `attacker.example` sends it once its name resolves to 127.0.0.1:
/// `Host` and `Origin` both the attacker's (so the same-origin check alone lets it through).
fn rebound(addr: std::net::SocketAddr, host: &str, head: &str, body: &str) -> Vec<u8> {
    let request = format!(
        "{head}\r\nHost: {host}:{port}\r\nOrigin: http://{host}:{port}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len(),
        port = addr.port()
    );
    raw_exchange(addr, request.as_bytes(), Duration::from_secs(10))
}

fn rebound_upgrade(addr: std::net::SocketAddr, host: &str) -> Vec<u8> {
    let request = format!(
        "GET /chat?room=lobby HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: http://{host}:{port}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        port = addr.port()
    );
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    std::io::Write::write_all(&mut s, request.as_bytes()).unwrap();
    // Read the response head only: a 101 keeps the connection open.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

/// Issue 18, DNS rebinding: a server bound to 127.0.0.1 refuses a page that reached it under
/// another name — its POST into a room and its `/chat` upgrade get 421 before any route, and
/// nothing reaches the room — while loopback names still work.
#[test]
fn dns_rebinding_post_and_upgrade_are_refused_on_loopback() {
    let _one = serial();
    let server = ServerProcess::start(Spawn::default());
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let listener = reader(chat_client(addr, "room=lobby&name=victim"), stop.clone());

    let post = rebound(addr, "attacker.example", "POST /rooms/lobby/messages HTTP/1.1", "pwned");
    let text = String::from_utf8_lossy(&post);
    assert_eq!(status_of(&post), Some(421), "{text}");
    assert!(text.contains("--allowed-host"), "{text}");
    let upgrade = rebound_upgrade(addr, "attacker.example");
    assert_eq!(status_of(&upgrade), Some(421), "{}", String::from_utf8_lossy(&upgrade));
    let page = rebound(addr, "attacker.example", "GET / HTTP/1.1", "");
    assert_eq!(status_of(&page), Some(421), "the page itself is not served either");

    // Loopback names pass: the same requests under localhost and 127.0.0.1.
    let ok = rebound(
        addr,
        "localhost",
        "POST /rooms/lobby/messages HTTP/1.1",
        "hello from localhost",
    );
    assert_eq!(status_of(&ok), Some(202), "{}", String::from_utf8_lossy(&ok));
    let ok = rebound_upgrade(addr, "127.0.0.1");
    assert_eq!(status_of(&ok), Some(101), "{}", String::from_utf8_lossy(&ok));

    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let texts = listener.join().unwrap_or_default();
    assert!(
        !texts.iter().any(|t| t.contains("pwned")),
        "the attacker's post reached the room"
    );
    assert!(
        texts.iter().any(|t| t.contains("hello from localhost")),
        "the loopback post did not arrive: {texts:?}"
    );
}

/// `--allowed-host` adds names (a tunnel or a reverse proxy that passes its own Host on).
#[test]
fn allowed_host_admits_a_name() {
    let _one = serial();
    let server = ServerProcess::start(Spawn {
        args: vec![
            "--allowed-host",
            "dev.example.test",
            "--allowed-host",
            ".tunnel.example",
        ],
        ..Spawn::default()
    });
    let addr = server.addr;
    for host in ["dev.example.test", "DEV.example.test", "abc.tunnel.example"] {
        let post = rebound(addr, host, "POST /rooms/lobby/messages HTTP/1.1", "hi");
        assert_eq!(
            status_of(&post),
            Some(202),
            "{host}: {}",
            String::from_utf8_lossy(&post)
        );
        let up = rebound_upgrade(addr, host);
        assert_eq!(status_of(&up), Some(101), "{host}: {}", String::from_utf8_lossy(&up));
    }
    let other = rebound(addr, "attacker.example", "POST /rooms/lobby/messages HTTP/1.1", "hi");
    assert_eq!(status_of(&other), Some(421));
}
