//! Rooms over Server-Sent Events (issue 23): `GET /rooms/{room}/events` of `wsloop serve`, run
//! as a child process and read by a raw TCP client that parses the event stream itself
//! (WHATWG HTML §9.2.6: `id:`, `event:`, `data:` fields, a blank line dispatches, a line
//! starting with `:` is a comment).
//!
//! The Redis tests need `redis-server` (skipped without it unless `WSLOOP_REQUIRE_REDIS=1`).

mod common;

use common::chat::{next_text, post_message, spawn_publishers};
use common::health::{get, json_number};
use common::process::{ServerProcess, Spawn};
use common::redis::{available, RedisServer};
use common::wait::{eventually, serial};
use common::{chat_notice, http, json_field, Client};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

/// One dispatched event, or a comment line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sse {
    Event {
        id: Option<String>,
        name: Option<String>,
        data: String,
    },
    Comment(String),
}

/// A raw event-stream reader: the request, the head, then events from a reader thread.
struct Stream {
    head: String,
    events: mpsc::Receiver<Sse>,
    socket: TcpStream,
}

impl Stream {
    /// `GET /rooms/{room}/events` with `extra` header lines; panics unless the answer is 200.
    fn open(addr: SocketAddr, room: &str, extra: &str) -> Stream {
        let (status, head, stream) = Self::request(addr, &format!("/rooms/{room}/events"), extra);
        assert_eq!(status, 200, "{head}");
        stream.expect("a stream with a 200")
    }

    /// Any request with an event-stream `Accept`; (status, head, the stream if 200).
    fn request(addr: SocketAddr, target: &str, extra: &str) -> (u16, String, Option<Stream>) {
        Self::request_on(TcpStream::connect(addr).expect("connect"), target, extra)
    }

    /// [`Stream::request`] on a connection that may have carried requests before.
    fn request_on(mut socket: TcpStream, target: &str, extra: &str) -> (u16, String, Option<Stream>) {
        socket.set_read_timeout(Some(DEADLINE)).unwrap();
        let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n{extra}\r\n");
        socket.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(socket.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).unwrap_or(0);
            assert!(n > 0, "EOF inside the head: {head:?}");
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        if status != 200 {
            return (status, head, None);
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut id, mut name, mut data): (Option<String>, Option<String>, Option<String>) = (None, None, None);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end_matches('\n');
                if line.is_empty() {
                    if let Some(data) = data.take() {
                        let _ = tx.send(Sse::Event {
                            id: id.take(),
                            name: name.take(),
                            data,
                        });
                    }
                    id = None;
                    name = None;
                    continue;
                }
                if let Some(c) = line.strip_prefix(':') {
                    let _ = tx.send(Sse::Comment(c.trim().to_owned()));
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                match field {
                    "id" => id = Some(value),
                    "event" => name = Some(value),
                    "data" => match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(&value);
                        }
                        None => data = Some(value),
                    },
                    _ => {}
                }
            }
        });
        let stream = Stream {
            head: head.clone(),
            events: rx,
            socket,
        };
        (status, head, Some(stream))
    }

    /// The next event (comments skipped); panics after the deadline or at EOF.
    fn next_event(&mut self) -> (Option<String>, Option<String>, String) {
        loop {
            match self.events.recv_timeout(DEADLINE) {
                Ok(Sse::Event { id, name, data }) => return (id, name, data),
                Ok(Sse::Comment(_)) => continue,
                Err(e) => panic!("no event: {e} {}", self.head),
            }
        }
    }

    /// The next chat message as (text, mid, the SSE id), skipping presence notices; a resync
    /// event comes back as ("RESYNC", "", "").
    fn next_chat(&mut self) -> (String, String, String) {
        loop {
            let (id, name, data) = self.next_event();
            if name.as_deref() == Some("resync") {
                assert!(data.starts_with("{\"type\":\"resync\""), "{data}");
                return ("RESYNC".into(), String::new(), String::new());
            }
            if chat_notice(&data) {
                assert_eq!(id, None, "a presence notice is not in history: {data}");
                continue;
            }
            assert!(data.starts_with("{\"type\":\"message\""), "{data}");
            let mid = json_field(&data, "mid").unwrap_or_default();
            return (
                json_field(&data, "text").unwrap_or_default(),
                mid,
                id.unwrap_or_default(),
            );
        }
    }
}

/// Dropping a stream closes its connection (the reader thread holds a clone of the socket).
impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// The next chat message's whole JSON for a `/chat` member, skipping notices.
fn next_chat_json(c: &mut Client) -> String {
    loop {
        let t = next_text(c);
        if !chat_notice(&t) {
            return t;
        }
    }
}

fn serve(args: &[&str]) -> ServerProcess {
    ServerProcess::start(Spawn {
        args: args.to_vec(),
        ..Spawn::default()
    })
}

/// A per-loop series of `/metrics`, summed over the loops.
fn metric_sum(addr: SocketAddr, name: &str) -> f64 {
    get(addr, "/metrics")
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn event_streams(addr: SocketAddr) -> u64 {
    json_number(&get(addr, "/health"), "event_streams").unwrap_or(u64::MAX)
}

#[test]
fn a_stream_gets_a_posted_message_and_a_chat_members_message_with_their_ids() {
    let server = serve(&["--ping-interval", "1"]);
    let addr = server.addr;
    let mut s = Stream::open(addr, "r", "");
    eventually("the stream is counted", DEADLINE, || event_streams(addr) == 1);
    let m = metric_sum(addr, "wsloop_event_streams");
    assert_eq!(m, 1.0, "/metrics counts it");

    let mut member = Client::connect(addr, "/chat?room=r&name=ada");
    post_message(addr, "r", "from http");
    let posted = next_chat_json(&mut member);
    member.send_text("from ada");
    let said = next_chat_json(&mut member);
    for want in [posted, said] {
        // The member's JSON, byte for byte, as the event's data; its id is the history id.
        loop {
            let (id, name, data) = s.next_event();
            if chat_notice(&data) {
                continue;
            }
            assert_eq!(name, None);
            assert_eq!(data, want);
            assert_eq!(id, json_field(&want, "mid"), "id: is the message's mid");
            assert!(!id.unwrap_or_default().is_empty());
            break;
        }
    }
    // The heartbeat: a comment line within a few ping intervals of silence.
    let mut pinged = false;
    for _ in 0..5 {
        match s.events.recv_timeout(Duration::from_secs(3)) {
            Ok(Sse::Comment(c)) if c == "ping" => {
                pinged = true;
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert!(pinged, "no ': ping' comment");
}

/// The replay check: publishers post numbered messages without pause; an observer on `obs`
/// (a `/chat` member) reads all of them live; a stream on `first` reads some, is dropped,
/// and — while the posts go on — reopens on `second` with `Last-Event-ID` = the last id it
/// saw. Both streams together must be exactly what the observer got, in order.
fn sse_replay_under_live_traffic(pubs: &[SocketAddr], obs: SocketAddr, first: SocketAddr, second: SocketAddr) {
    let mut o = Client::connect(obs, "/chat?room=r&name=observer");
    let _ = next_text(&mut o); // welcome
    let mut s1 = Stream::open(first, "r", "");
    let stop = Arc::new(AtomicBool::new(false));
    let publishers = spawn_publishers(pubs, &stop);
    // Only the numbered posts below are compared: a message posted before (a caller's, such
    // as a first check's "across") may still be in flight to a loop when the observer or a
    // stream joins it, and is then rightly delivered to one and not the other.
    let ours = |text: &str| text.strip_prefix('p').is_some_and(|r| r.contains('-'));
    let observed_chat = |o: &mut Client| loop {
        let j = next_chat_json(o);
        let text = json_field(&j, "text").unwrap_or_default();
        if ours(&text) {
            return (text, json_field(&j, "mid").unwrap_or_default());
        }
    };
    let mut observed: Vec<(String, String)> = Vec::new();
    let mut s_got: Vec<(String, String)> = Vec::new();
    while s_got.len() < 30 {
        let (text, mid, id) = s1.next_chat();
        assert_eq!(mid, id);
        if ours(&text) {
            s_got.push((text, mid));
        }
    }
    let last = s_got.last().map(|m| m.1.clone()).unwrap_or_default();
    drop(s1);
    while observed.len() < s_got.len() + 60 {
        observed.push(observed_chat(&mut o));
    }
    let mut s2 = Stream::open(second, "r", &format!("Last-Event-ID: {last}\r\n"));
    while observed.len() < s_got.len() + 200 {
        observed.push(observed_chat(&mut o));
    }
    stop.store(true, Ordering::Relaxed);
    for t in publishers {
        t.join().unwrap();
    }
    let ends = |v: &[(String, String)]| v.iter().filter(|(t, _)| t.ends_with("-end")).count();
    while ends(&observed) < pubs.len() {
        observed.push(observed_chat(&mut o));
    }
    let mut s2_got = Vec::new();
    while ends(&s2_got) < pubs.len() {
        let (text, mid, id) = s2.next_chat();
        assert_ne!(text, "RESYNC", "asked to resync after {s2_got:?}");
        assert_eq!(mid, id);
        if ours(&text) {
            s2_got.push((text, mid));
        }
    }
    let all: Vec<_> = s_got.iter().chain(&s2_got).cloned().collect();
    let first_diff = all.iter().zip(&observed).position(|(x, y)| x != y);
    assert!(
        all == observed,
        "first difference at {first_diff:?} (seam at {}) of {} / {}: got {:?}, observed {:?}",
        s_got.len(),
        all.len(),
        observed.len(),
        first_diff.map(|i| &all[i.saturating_sub(1)..(i + 2).min(all.len())]),
        first_diff.map(|i| &observed[i.saturating_sub(1)..(i + 2).min(observed.len())]),
    );
}

#[test]
fn last_event_id_replays_after_a_drop_with_no_gap_and_no_duplicate() {
    let server = serve(&["--threads", "2", "--history-size", "10000"]);
    let a = server.addr;
    sse_replay_under_live_traffic(&[a, a], a, a, a);
}

#[test]
fn a_bad_last_event_id_gets_resync_or_400_never_a_crash() {
    let server = serve(&["--history-size", "5"]);
    let addr = server.addr;
    let mut live = Stream::open(addr, "r", "");
    post_message(addr, "r", "first");
    let (_, first_id, _) = live.next_chat();
    for _ in 0..10 {
        post_message(addr, "r", "filler");
    }
    let future = "99999999999999-0".to_owned();
    for last in ["garbage", "1-2-3", "-1", "18446744073709551616-0", &future, &first_id] {
        let mut s = Stream::open(addr, "r", &format!("Last-Event-ID: {last}\r\n"));
        assert_eq!(s.next_chat().0, "RESYNC", "Last-Event-ID {last:?}");
        // Then live, with nothing swallowed (a future id must not hide what follows).
        post_message(addr, "r", &format!("after {last}"));
        assert_eq!(s.next_chat().0, format!("after {last}"));
    }
    // Longer than any id: refused up front.
    let huge = "9".repeat(200);
    let (status, head, _) = Stream::request(addr, "/rooms/r/events", &format!("Last-Event-ID: {huge}\r\n"));
    assert_eq!(status, 400, "{head}");
    // `?since=` on a first connect works like the header.
    let (status, _, s) = Stream::request(addr, "/rooms/r/events?since=nonsense", "");
    assert_eq!(status, 200);
    assert_eq!(s.map(|mut s| s.next_chat().0), Some("RESYNC".to_owned()));
    assert!(get(addr, "/health").contains("\"status\":\"ok\""));
}

#[test]
fn a_request_without_event_stream_in_accept_gets_406_and_other_methods_405() {
    let server = serve(&[]);
    let addr = server.addr;
    for accept in ["", "Accept: */*\r\n", "Accept: text/html, application/json\r\n"] {
        let (status, _, body) = http(
            addr,
            &format!("GET /rooms/r/events HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{accept}\r\n"),
        );
        assert_eq!(status, 406, "{accept:?}: {body}");
    }
    let (status, head, _) = http(
        addr,
        "GET /rooms/r/events HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: text/html;q=0.9, text/event-stream;q=1\r\n\r\n",
    );
    assert!(status == 200 && head.contains("text/event-stream"), "{head}");
    let (status, _, _) = http(
        addr,
        "POST /rooms/r/events HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, 405);
    let (status, _, _) = http(
        addr,
        "GET /rooms/bad%20room/events HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: text/event-stream\r\n\r\n",
    );
    assert_eq!(status, 400);
    eventually("nothing left open", DEADLINE, || event_streams(addr) == 0);
}

#[test]
fn a_stream_that_never_reads_is_closed_while_the_others_are_served() {
    let server = serve(&[
        "--backpressure-high-water",
        "65536",
        "--max-outbound",
        "262144",
        "--fanout-stall-timeout",
        "0.2",
    ]);
    let addr = server.addr;
    let mut reader = Stream::open(addr, "r", "");
    // Opened and never read: its socket buffers fill, then its queue.
    let mut idle = TcpStream::connect(addr).expect("connect");
    idle.write_all(b"GET /rooms/r/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    eventually("both counted", DEADLINE, || event_streams(addr) == 2);
    let body = "x".repeat(32 * 1024);
    let count = 600; // ~19 MiB: more than loopback buffers hold plus max-outbound
    let poster = std::thread::spawn(move || {
        for i in 0..count {
            post_message(addr, "r", &format!("{i} {body}"));
        }
    });
    for i in 0..count {
        let (text, _, _) = reader.next_chat();
        assert!(text.starts_with(&format!("{i} ")), "message {i} out of order");
    }
    poster.join().unwrap();
    eventually("the non-reader is closed", DEADLINE, || event_streams(addr) == 1);
    assert!(
        metric_sum(addr, "wsloop_slow_consumer_closes_total") >= 1.0 || server.log_text().contains("slow event stream"),
        "closed as a slow receiver"
    );
    drop(idle);
}

#[test]
fn streams_opened_and_dropped_leave_nothing_behind() {
    let server = serve(&[]);
    let addr = server.addr;
    // Only the /health request's own connection (a closed one may linger a moment).
    let baseline = 1;
    eventually("a quiet start", DEADLINE, || {
        json_number(&get(addr, "/health"), "connections") == Some(baseline)
    });
    for round in 0..5 {
        let mut streams = Vec::new();
        for _ in 0..100 {
            streams.push(Stream::open(addr, "r", ""));
        }
        eventually("all counted", DEADLINE, || event_streams(addr) == 100);
        if round % 2 == 0 {
            post_message(addr, "r", "to all");
            for s in &mut streams {
                assert_eq!(s.next_chat().0, "to all");
            }
        }
        drop(streams);
        eventually("all gone", DEADLINE, || event_streams(addr) == 0);
    }
    eventually("connections back to the baseline", DEADLINE, || {
        json_number(&get(addr, "/health"), "connections") == Some(baseline)
    });
}

#[test]
fn shutdown_ends_a_stream_cleanly() {
    let mut server = serve(&[]);
    let addr = server.addr;
    let mut s = Stream::open(addr, "r", "");
    post_message(addr, "r", "before");
    assert_eq!(s.next_chat().0, "before");
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|k| k.success()));
    // The stream ends (EOF), rather than hanging or being reset mid-event.
    match s.events.recv_timeout(DEADLINE) {
        Err(mpsc::RecvTimeoutError::Disconnected) => {}
        other => panic!("expected the end of the stream, got {other:?}"),
    }
    eventually("the server exits", DEADLINE, || !server.alive());
}

#[test]
fn with_redis_a_stream_on_b_gets_what_is_posted_on_a_and_replays_across_processes() {
    if !available("with_redis_a_stream_on_b_gets_what_is_posted_on_a_and_replays_across_processes") {
        return;
    }
    let redis = RedisServer::start();
    let url = redis.url();
    let spawn = || serve(&["--redis", &url, "--threads", "2", "--history-size", "10000"]);
    let (a, b) = (spawn(), spawn());
    for p in [&a, &b] {
        eventually("the bus connects", DEADLINE, || {
            get(p.addr, "/health").contains("\"connected\":true")
        });
    }
    let mut s = Stream::open(b.addr, "r", "");
    post_message(a.addr, "r", "across");
    let (text, mid, id) = s.next_chat();
    assert_eq!(text, "across");
    assert_eq!(mid, id);
    drop(s);
    // Dropped on B, reopened on A with Last-Event-ID, under posts to both.
    sse_replay_under_live_traffic(&[a.addr, b.addr], a.addr, b.addr, a.addr);
}

// ----- per-address limits ---------------------------------------------------------------------

/// A new stream's status and head (`extra`: header lines, each ending in CRLF).
fn try_stream(addr: SocketAddr, extra: &str) -> (u16, String, Option<Stream>) {
    Stream::request(addr, "/rooms/r/events", extra)
}

/// An event stream is a long-lived connection like a WebSocket: one address opening more than
/// `--max-connections-per-ip` of them is refused `429` with `Retry-After`, as an upgrade is.
#[test]
fn more_streams_from_one_address_than_its_cap_are_refused_429() {
    let _serial = serial();
    let server = serve(&["--max-connections-per-ip", "3"]);
    let addr = server.addr;
    // The start-up probe's connection must be gone before counting.
    eventually("a quiet start", DEADLINE, || event_streams(addr) == 0);
    std::thread::sleep(Duration::from_millis(300));
    let open: Vec<Stream> = (0..3).map(|_| Stream::open(addr, "r", "")).collect();
    let (status, head, _) = try_stream(addr, "");
    assert_eq!(status, 429, "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after: "), "{head}");
    drop(open);
    eventually("a stream opens again once the others closed", DEADLINE, || {
        try_stream(addr, "").0 == 200
    });
}

/// Behind a trusted proxy the proxy's connections are not counted at accept, the client it
/// names is: at a WebSocket upgrade, and at an event stream too. Before event streams were
/// charged, one forwarded client could hold any number of them.
#[test]
fn through_a_trusted_proxy_one_clients_streams_are_capped() {
    let _serial = serial();
    let server = serve(&["--max-connections-per-ip", "3", "--trust-proxy", "127.0.0.1/32"]);
    let addr = server.addr;
    let client = |n: u8| format!("X-Forwarded-For: 198.51.100.{n}\r\n");
    let mut open = Vec::new();
    for i in 0..3 {
        let (status, head, s) = try_stream(addr, &client(7));
        assert_eq!(status, 200, "stream {i}: {head}");
        open.extend(s);
    }
    let (status, head, _) = try_stream(addr, &client(7));
    assert_eq!(status, 429, "a fourth stream of the same client: {head}");
    // Another client behind the same proxy has its own count.
    let (status, head, other) = try_stream(addr, &client(8));
    assert_eq!(status, 200, "{head}");
    drop(other);
    // The refused request opened nothing and subscribed nothing: 3 streams of client 7.
    eventually("the other client's stream is gone", DEADLINE, || {
        event_streams(addr) == 3
    });
}

/// A stream opened on a kept-alive connection after an earlier request pays the upgrade rate
/// once more, as an upgrade there does (tests/hostile_limits.rs).
#[test]
fn a_stream_after_a_request_on_a_kept_alive_connection_pays_the_rate_again() {
    let _serial = serial();
    let server = serve(&["--upgrade-rate-per-ip", "2", "--threads", "1"]);
    let addr = server.addr;
    // Let the start-up probe's token come back: a burst of 2.
    std::thread::sleep(Duration::from_millis(1100));
    // One connection (one token): a plain request, then a stream on it (a second token).
    let mut socket = TcpStream::connect(addr).expect("connect");
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    socket
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (status, _, _) = common::read_response(&mut socket);
    assert_eq!(status, 200);
    let (status, head, _kept) = Stream::request_on(socket, "/rooms/r/events", "");
    assert_eq!(status, 200, "{head}");
    // The burst is spent: a new connection now is refused.
    let (status, head, _) = try_stream(addr, "");
    assert_eq!(status, 429, "{head}");
}
