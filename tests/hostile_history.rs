//! The hostile suite for what history and the message bus hold (issue 18, breaks 5 and 7):
//! `wsloop serve` as a child process, a small `--max-memory` so the bounds mean something.
//!
//! - A flood of POSTs to distinct room names: history is charged to the memory budget, the
//!   rooms it keeps are bounded by bytes, `/health` keeps answering, and the rooms are gone
//!   (their bytes back) soon after the TTL, with no further traffic. `--history-rooms` caps
//!   them by count: a POST to one room too many gets 503 + Retry-After.
//! - Redis paused (SIGSTOP) under 1 MiB POSTs: the queue to the bus is charged and bounded by
//!   bytes (refusals are 503s), the server's RSS stays near the budget, and it recovers on
//!   SIGCONT. A flood over distinct rooms with Redis leaves at most `--history-rooms` streams
//!   in Redis.
//!
//! `WSLOOP_BIN=/path/to/wsloop cargo test --test hostile_history` runs them against another
//! build. The Redis tests need `redis-server` (skipped without it unless
//! `WSLOOP_REQUIRE_REDIS=1`).

mod common;

use common::health::{get, json_number, memory_used, metric};
use common::process::{rss_of, ServerProcess, Spawn};
use common::redis::{available, RedisServer};
use common::wait::{eventually, serial};
use common::{chat_notice, json_field, read_response, Client};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wsloop::protocol::OwnedEvent;

const MIB: u64 = 1 << 20;
/// The budget every test runs with.
const BUDGET: u64 = 64 * MIB;
/// What a debug build of the server holds besides its budget (code, allocator slack, thread
/// stacks, the bus's batch buffer): generous, so only a real leak passes it.
const OVERHEAD: u64 = 64 * MIB;

/// A keep-alive HTTP connection that POSTs to rooms.
struct Poster {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Poster {
    fn new(addr: SocketAddr) -> Poster {
        Poster { addr, stream: None }
    }

    /// POSTs `body` to `room`; (status, head). Reconnects if the server closed.
    fn post(&mut self, room: &str, body: &[u8]) -> (u16, String) {
        for _ in 0..3 {
            let stream = match self.stream.as_mut() {
                Some(s) => s,
                None => {
                    let s = TcpStream::connect(self.addr).expect("connect");
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    s.set_nodelay(true).unwrap();
                    self.stream.insert(s)
                }
            };
            // Head and body in one write: no Nagle wait between them.
            let mut request = format!(
                "POST /rooms/{room}/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            request.extend_from_slice(body);
            let sent = stream.write_all(&request);
            if sent.is_err() {
                self.stream = None;
                continue;
            }
            let (status, head, _) = read_response(stream);
            if head.to_ascii_lowercase().contains("connection: close") {
                self.stream = None;
            }
            return (status, head);
        }
        panic!("could not POST to {room}");
    }
}

/// Samples `/health` (latency, memory_used) and the server's RSS until stopped.
struct Probe {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(Duration, u64, u64)>>,
}

impl Probe {
    fn start(addr: SocketAddr, pid: u32) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut worst, mut used, mut rss) = (Duration::ZERO, 0, 0);
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                let body = get(addr, "/health");
                worst = worst.max(t.elapsed());
                used = used.max(json_number(&body, "memory_used").unwrap_or(0));
                rss = rss.max(rss_of(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            (worst, used, rss)
        });
        Probe {
            stop,
            thread: Some(thread),
        }
    }

    /// (slowest /health, highest memory_used, highest RSS).
    fn finish(mut self) -> (Duration, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Break 5: POSTs to 30,000 fresh room names (or 2 s of them; the TTL is 3 s). Today's history charges
/// nothing for them (`memory_used` stays near 0 with every room held) and keeps each room
/// (about 530 bytes) for good; here they are charged, bounded by an eighth of the budget,
/// and gone about a TTL after the flood, with no traffic to trigger it.
#[test]
fn a_flood_of_distinct_rooms_is_charged_bounded_and_expires_on_time() {
    let _g = serial();
    let budget = BUDGET.to_string();
    let mut server = ServerProcess::start(Spawn {
        // The room cap out of the way (30,000 is the most this floods): what bounds the
        // rooms here is the history's byte share of the budget, which drops the oldest rooms
        // rather than refusing new ones (the cap has its own test below).
        args: vec![
            "--max-memory",
            &budget,
            "--threads",
            "1",
            "--history-ttl",
            "3",
            "--history-rooms",
            "30000",
        ],
        ..Spawn::default()
    });
    let addr = server.addr;
    let probe = Probe::start(addr, server.child.id());
    let started = Instant::now();
    let posted = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..2)
        .map(|t| {
            let posted = posted.clone();
            std::thread::spawn(move || {
                let mut p = Poster::new(addr);
                let mut statuses = std::collections::BTreeMap::new();
                for i in 0..15_000 {
                    if started.elapsed() > Duration::from_secs(2) {
                        break;
                    }
                    let (status, _) = p.post(&format!("flood-{t}-{i}"), b"a chat line of ordinary size, nothing more");
                    *statuses.entry(status).or_insert(0u64) += 1;
                    posted.fetch_add(1, Ordering::Relaxed);
                }
                statuses
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for f in flooders {
        for (k, v) in f.join().unwrap() {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    let took = started.elapsed();
    let (worst_health, _, peak_rss) = probe.finish();
    let posted = posted.load(Ordering::Relaxed);
    let used_after = memory_used(addr);
    let rooms = metric(addr, "wsloop_history_rooms");
    eprintln!(
        "distinct rooms: {posted} POSTs in {took:?} ({:.0}/s), statuses {statuses:?}, slowest /health {worst_health:?}, \
         peak RSS {} MiB, memory_used after {} KiB, history rooms {rooms:?}",
        posted as f64 / took.as_secs_f64(),
        peak_rss / MIB,
        used_after / 1024
    );
    assert!(server.alive());
    assert_eq!(statuses.get(&202), Some(&posted), "every POST published: {statuses:?}");
    assert!(posted >= 2_000, "the flood ran: {posted}");
    assert!(worst_health < Duration::from_secs(1), "/health took {worst_health:?}");
    assert!(peak_rss < BUDGET + OVERHEAD, "peak RSS {} MiB", peak_rss / MIB);
    // Each room held costs at least its overhead, and it is in the budget.
    assert!(
        used_after >= (posted.min(10_000) * 256).min(BUDGET / 8 / 2),
        "history is charged to the budget: memory_used {used_after} after {posted} rooms"
    );
    let rooms = rooms.expect("/metrics shows wsloop_history_rooms");
    assert!(
        rooms > 0.0 && rooms * 256.0 <= (BUDGET / 8) as f64,
        "{rooms} rooms within an eighth of the budget"
    );
    // No more traffic: the loop's timer alone removes them once past the TTL (3 s).
    let quiet = Instant::now();
    eventually("the rooms expire", Duration::from_secs(10), || {
        metric(addr, "wsloop_history_rooms") == Some(0.0) && memory_used(addr) < 256 * 1024
    });
    eprintln!("distinct rooms: all gone {:?} after the flood", quiet.elapsed());
    assert!(server.alive());
}

/// Break 5, the count: `--history-rooms 50`: the 51st room is refused with 503 and
/// Retry-After (not silently recorded), rooms already there still take messages, and a room
/// idle past the TTL makes room again.
#[test]
fn a_room_past_history_rooms_is_refused_with_retry_after() {
    let _g = serial();
    let budget = BUDGET.to_string();
    let server = ServerProcess::start(Spawn {
        args: vec![
            "--max-memory",
            &budget,
            "--threads",
            "1",
            "--history-ttl",
            "1",
            "--history-rooms",
            "50",
        ],
        ..Spawn::default()
    });
    let mut p = Poster::new(server.addr);
    for i in 0..50 {
        assert_eq!(p.post(&format!("r{i}"), b"hi").0, 202, "room {i}");
    }
    let (status, head) = p.post("one-too-many", b"hi");
    assert_eq!(status, 503, "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    assert_eq!(p.post("r7", b"again").0, 202, "a room with history still records");
    // Past the TTL the idle rooms no longer count.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(p.post("one-too-many", b"hi").0, 202);
}

/// Starts Redis and a server on it with a budget of `budget` bytes; waits for the bus.
fn with_redis(budget: u64, extra: &[&str]) -> Option<(RedisServer, ServerProcess)> {
    if !available("hostile_history") {
        return None;
    }
    let redis = RedisServer::start();
    let url = redis.url();
    let budget = budget.to_string();
    let mut args = vec!["--max-memory", budget.as_str(), "--redis", url.as_str()];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(Spawn {
        args,
        ..Spawn::default()
    });
    let addr = server.addr;
    eventually("the bus connects", Duration::from_secs(10), || {
        get(addr, "/health").contains("\"connected\":true")
    });
    Some((redis, server))
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// Break 7: Redis stopped (SIGSTOP) while clients POST 1 MiB bodies for 5 s. Today every
/// message waits in the bus queue (up to 16,384 of them, uncharged): RSS climbs by hundreds
/// of MiB while `memory_used` says 0. Here the queue is charged and bounded by bytes, the
/// excess is refused with 503 + Retry-After, and after SIGCONT the bus drains and records
/// again.
#[test]
fn redis_paused_under_large_posts_keeps_the_server_within_its_budget() {
    let _g = serial();
    // A smaller budget: the queue's share (an eighth) fills in a few messages, and RSS past
    // budget + overhead is reached in seconds if the queue is not bounded by bytes.
    let budget = 32 * MIB;
    let Some((redis, mut server)) = with_redis(budget, &["--threads", "2"]) else {
        return;
    };
    let addr = server.addr;
    let redis_pid = redis.pid().expect("redis runs");
    signal(redis_pid, "-STOP");
    let probe = Probe::start(addr, server.child.id());
    let body = vec![b'x'; 1 << 20];
    let started = Instant::now();
    let posters: Vec<_> = (0..3)
        .map(|t| {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut p = Poster::new(addr);
                let mut statuses = std::collections::BTreeMap::new();
                let mut retry_after = true;
                let mut i = 0;
                while started.elapsed() < Duration::from_secs(5) {
                    let (status, head) = p.post(&format!("big-{t}"), &body);
                    if status == 503 {
                        retry_after &= head.to_ascii_lowercase().contains("retry-after:");
                    }
                    *statuses.entry(status).or_insert(0u64) += 1;
                    i += 1;
                }
                (statuses, retry_after, i)
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    let mut retry_after = true;
    for p in posters {
        let (s, r, _) = p.join().unwrap();
        retry_after &= r;
        for (k, v) in s {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    let (worst_health, peak_used, peak_rss) = probe.finish();
    let queued = metric(addr, "wsloop_bus_queued_bytes");
    eprintln!(
        "redis paused: statuses {statuses:?}, peak memory_used {} MiB, peak RSS {} MiB, slowest /health {worst_health:?}, \
         queued now {queued:?}",
        peak_used / MIB,
        peak_rss / MIB
    );
    assert!(server.alive());
    assert!(peak_rss < budget + 16 * MIB, "peak RSS {} MiB", peak_rss / MIB);
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0 && retry_after,
        "a full queue refuses visibly: {statuses:?}"
    );
    assert!(
        (2 * MIB..=budget + 8 * MIB).contains(&peak_used),
        "the queue is charged: peak memory_used {peak_used}"
    );
    // Generous: a debug build escapes each 1 MiB body into JSON on the one loop.
    assert!(worst_health < Duration::from_secs(2), "/health took {worst_health:?}");

    // Redis resumes: the queue drains, its bytes go back, and messages are recorded again.
    signal(redis_pid, "-CONT");
    eventually("the queue drains and the bus is up", Duration::from_secs(30), || {
        metric(addr, "wsloop_bus_queued_bytes") == Some(0.0)
            && get(addr, "/health").contains("\"connected\":true")
            && memory_used(addr) < MIB
    });
    let mut reader = Client::connect(addr, "/chat?room=after");
    let mut p = Poster::new(addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mid = loop {
        assert!(Instant::now() < deadline, "no recorded message after SIGCONT");
        assert_eq!(p.post("after", b"back").0, 202);
        let mut mid = None;
        while let Some(OwnedEvent::Text(t)) = reader.next() {
            if chat_notice(&t) {
                continue;
            }
            mid = json_field(&t, "mid");
            break;
        }
        match mid {
            Some(m) if !m.is_empty() => break m,
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    eprintln!("redis paused: recovered, recording again (mid {mid})");
    assert!(server.alive());
}

/// Break 7, Redis's side: POSTs to 11,000 distinct rooms leave at most 10,000 history streams
/// in Redis (the default `--history-rooms`, plus the set that counts them); the rest are
/// published live, unrecorded, and counted. Today each room is a stream key that lives for the
/// TTL, however many there are.
#[test]
fn a_flood_of_distinct_rooms_leaves_at_most_history_rooms_streams_in_redis() {
    let _g = serial();
    let Some((redis, server)) = with_redis(BUDGET, &["--threads", "1"]) else {
        return;
    };
    let addr = server.addr;
    let mut p = Poster::new(addr);
    for i in 0..11_000 {
        let (status, head) = p.post(&format!("many-{i}"), b"hello");
        assert_eq!(status, 202, "{head}");
    }
    eventually("every message went through the bus", Duration::from_secs(30), || {
        metric(addr, "wsloop_bus_published_total").unwrap_or(0.0) >= 11_000.0
    });
    let streams = redis.cli(&["--scan", "--pattern", "wsloop:history:*"]).lines().count();
    let keys: u64 = redis.cli(&["DBSIZE"]).trim().parse().unwrap_or(u64::MAX);
    let used = redis.cli(&["INFO", "memory"]);
    eprintln!(
        "redis rooms: {streams} streams, {keys} keys, refused {:?}; {}",
        metric(addr, "wsloop_bus_history_refused_total"),
        used.lines().find(|l| l.starts_with("used_memory_human")).unwrap_or("")
    );
    assert_eq!(streams, 10_000, "streams capped at --history-rooms");
    assert!(keys <= 10_001, "{keys} keys");
    assert!(
        metric(addr, "wsloop_bus_history_refused_total").unwrap_or(0.0) >= 1_000.0,
        "the rooms past the limit are counted"
    );
}
