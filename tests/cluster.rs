//! Past one process (issue 13): servers sharing a real Redis — publish, broadcast and send_to
//! across processes, exactly once; Redis killed and restarted mid-run; replay on reconnect
//! with no gap and no duplicate while live traffic flows; the "too old" answer. The in-memory
//! replay (no Redis) is checked here too, with the same assertions.
//!
//! Each test starts its own `redis-server` on a free port (see common/redis.rs); without the
//! binary the Redis tests are skipped with a message, unless `WSLOOP_REQUIRE_REDIS=1` (CI).

mod common;

use common::chat::{next_text, post_message, spawn_publishers};
use common::demo::DemoApp;
use common::health::get;
use common::process::{ServerProcess, Spawn};
use common::redis::{available, RedisServer};
use common::wait::eventually;
use common::{chat_notice, json_field, Client};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wsloop::handshake::Request;
use wsloop::protocol::OwnedEvent;
use wsloop::server::bus::RedisBus;
use wsloop::server::{
    Accept, ConnId, Context, Handler, Message, RequestContext, Response, RunningServer, Server, ServerHandle,
};

const DEADLINE: Duration = Duration::from_secs(20);

fn node_server(redis: &str, node: u32) -> RunningServer {
    Server::new(DemoApp::new())
        .configure(|c| {
            c.bind = "127.0.0.1:0".parse().unwrap();
            c.threads = 2;
            c.node_id = Some(node);
            // More than the replay test's publishers can post while its client is away.
            c.history_size = 10_000;
        })
        .message_bus(RedisBus::new(redis).unwrap())
        .start()
        .expect("server starts")
}

fn bus_connected(h: &ServerHandle) -> bool {
    h.info().bus().is_some_and(|b| b.connected)
}

fn health(addr: SocketAddr) -> String {
    get(addr, "/health")
}

fn metrics(addr: SocketAddr) -> String {
    get(addr, "/metrics")
}

/// The next chat message's (text, mid), skipping notices; a resync notice is returned as
/// ("RESYNC", "").
fn next_chat(c: &mut Client) -> (String, String) {
    loop {
        let t = next_text(c);
        if t.starts_with("{\"type\":\"resync\"") {
            return ("RESYNC".into(), String::new());
        }
        if chat_notice(&t) {
            continue;
        }
        if t.starts_with("{\"type\":\"message\"") {
            return (json_field(&t, "text").unwrap(), json_field(&t, "mid").unwrap());
        }
        return (t, String::new());
    }
}

/// The connection id the demo's welcome names.
fn welcome_id(c: &mut Client) -> ConnId {
    common::events::welcome_id(Some(OwnedEvent::Text(next_text(c))))
}

/// Child processes, the CLI flag: a message sent on A reaches B's member once, and A's
/// members once each (the origin does not deliver its own publish twice).
#[test]
fn serve_with_redis_shares_a_room_between_two_processes() {
    if !available("serve_with_redis_shares_a_room_between_two_processes") {
        return;
    }
    let redis = RedisServer::start();
    let url = redis.url();
    let spawn = || {
        ServerProcess::start(Spawn {
            args: vec!["--redis", &url, "--threads", "2"],
            ..Spawn::default()
        })
    };
    let (a, b) = (spawn(), spawn());
    for p in [&a, &b] {
        eventually("the bus connects", DEADLINE, || {
            health(p.addr).contains("\"connected\":true")
        });
    }
    let mut a1 = Client::connect(a.addr, "/chat?room=r&name=a1");
    let mut a2 = Client::connect(a.addr, "/chat?room=r&name=a2");
    let mut b1 = Client::connect(b.addr, "/chat?room=r&name=b1");
    a1.send_text("one");
    a1.send_text("two");
    b1.send_text("three");
    for c in [&mut a1, &mut a2, &mut b1] {
        let got: Vec<String> = (0..3).map(|_| next_chat(c).0).collect();
        // One per publisher in order; A's two and B's one may interleave either way.
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, ["one", "three", "two"], "{got:?}");
        assert!(got.iter().position(|t| t == "one") < got.iter().position(|t| t == "two"));
    }
    // No copy left over: the next message anyone sees is the next one sent.
    post_message(b.addr, "r", "four");
    for c in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(next_chat(c).0, "four");
    }
    // And both processes count it: B published, A received.
    let m = metrics(a.addr);
    assert!(m.contains("wsloop_bus_connected 1"), "{m}");
    assert!(!m.contains("wsloop_bus_received_total 0\n"), "{m}");
}

/// In-process servers with their own node ids: live `publish` (unrecorded), `broadcast` and
/// `send_to` from a `ServerHandle` cross to the other process exactly once.
#[test]
fn handle_publish_broadcast_and_send_to_cross_processes_once() {
    if !available("handle_publish_broadcast_and_send_to_cross_processes_once") {
        return;
    }
    let redis = RedisServer::start();
    let a = node_server(&redis.url(), 0xa);
    let b = node_server(&redis.url(), 0xb);
    let (ha, hb) = (a.handle(), b.handle());
    eventually("both buses connect", DEADLINE, || {
        bus_connected(&ha) && bus_connected(&hb)
    });
    let mut ca = Client::connect(a.local_addr(), "/chat?room=r");
    let mut cb = Client::connect(b.local_addr(), "/chat?room=r");
    let mut ea = Client::connect(a.local_addr(), "/echo");
    let mut eb = Client::connect(b.local_addr(), "/echo");
    let _ = welcome_id(&mut ca);
    let b_id = welcome_id(&mut cb);
    assert_eq!(b_id.node(), 0xb);

    ha.publish("room:r", Message::Text("p1")).unwrap();
    ha.publish("room:r", Message::Text("p2")).unwrap();
    for c in [&mut ca, &mut cb] {
        assert_eq!(next_chat(c).0, "p1");
        assert_eq!(next_chat(c).0, "p2", "a copy of p1, or p2 lost");
    }

    hb.broadcast(Message::Text("all")).unwrap();
    for c in [&mut ca, &mut cb, &mut ea, &mut eb] {
        assert_eq!(next_chat(c).0, "all");
    }

    // A connection on B, named by its id, from A.
    ha.send_to(b_id, Message::Text("direct")).unwrap();
    assert_eq!(next_chat(&mut cb).0, "direct");
    // Nobody else got it: everyone's next message is the next broadcast.
    ha.broadcast(Message::Text("after")).unwrap();
    for c in [&mut ca, &mut cb, &mut ea, &mut eb] {
        assert_eq!(next_chat(c).0, "after");
    }
}

/// `/dm`: a text `ID|TEXT` is sent to connection ID with `Context::send_to`.
struct Dm;

impl Handler for Dm {
    type State = ();
    fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
        Ok(Accept::default())
    }
    fn on_open(&self, ctx: &mut Context<'_>) {
        let id = ctx.id().to_string();
        ctx.send_text(&id);
    }
    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        if let Message::Text(t) = message {
            if let Some((to, text)) = t.split_once('|') {
                let result = match to.parse() {
                    Ok(id) => ctx.send_to(id, Message::Text(text)),
                    Err(_) => Ok(()),
                };
                ctx.send_text(&format!("sent: {result:?}"));
            }
        }
    }
}

#[test]
fn context_send_to_reaches_a_connection_on_another_process() {
    if !available("context_send_to_reaches_a_connection_on_another_process") {
        return;
    }
    let redis = RedisServer::start();
    let start = |node| {
        Server::new(Dm)
            .configure(|c| {
                c.bind = "127.0.0.1:0".parse().unwrap();
                c.threads = 2;
                c.node_id = Some(node);
            })
            .message_bus(RedisBus::new(&redis.url()).unwrap())
            .start()
            .unwrap()
    };
    let (a, b) = (start(1), start(2));
    eventually("both buses connect", DEADLINE, || {
        bus_connected(&a.handle()) && bus_connected(&b.handle())
    });
    let mut x = Client::connect(a.local_addr(), "/");
    let mut y = Client::connect(b.local_addr(), "/");
    let _x_id = next_text(&mut x);
    let y_id = next_text(&mut y);
    x.send_text(&format!("{y_id}|hello y"));
    assert_eq!(next_text(&mut x), "sent: Ok(())");
    assert_eq!(next_text(&mut y), "hello y");
    // A local id that is gone is still refused at once.
    x.send_text("00000001.0.999.1|nobody");
    assert_eq!(next_text(&mut x), "sent: Err(Gone)");
}

/// Child processes: Redis dies; local delivery goes on, the state shows in /health and
/// /metrics and is logged once (not per message); Redis comes back on the same port and
/// cross-process delivery resumes by itself.
#[test]
fn redis_killed_and_restarted_mid_run() {
    if !available("redis_killed_and_restarted_mid_run") {
        return;
    }
    let mut redis = RedisServer::start();
    let port = redis.port;
    let url = redis.url();
    let spawn = || {
        ServerProcess::start(Spawn {
            args: vec!["--redis", &url, "--threads", "2"],
            ..Spawn::default()
        })
    };
    let (a, b) = (spawn(), spawn());
    for p in [&a, &b] {
        eventually("the bus connects", DEADLINE, || {
            health(p.addr).contains("\"connected\":true")
        });
    }
    let mut a1 = Client::connect(a.addr, "/chat?room=r&name=a1");
    let mut a2 = Client::connect(a.addr, "/chat?room=r&name=a2");
    let mut b1 = Client::connect(b.addr, "/chat?room=r&name=b1");
    a1.send_text("before");
    for c in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(next_chat(c).0, "before");
    }

    redis.kill();
    for p in [&a, &b] {
        eventually("the bus notices", DEADLINE, || {
            health(p.addr).contains("\"connected\":false")
        });
        assert!(metrics(p.addr).contains("wsloop_bus_connected 0"));
    }
    for i in 0..20 {
        a1.send_text(&format!("local {i}"));
    }
    for i in 0..20 {
        // Delivered here, without an id (it could not be recorded).
        for c in [&mut a1, &mut a2] {
            assert_eq!(next_chat(c), (format!("local {i}"), String::new()));
        }
    }
    let dropped = |m: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix("wsloop_bus_dropped_total "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(dropped(&metrics(a.addr)) >= 20, "{}", metrics(a.addr));

    let _redis = RedisServer::start_on(port);
    for p in [&a, &b] {
        eventually("the bus reconnects", DEADLINE, || {
            health(p.addr).contains("\"connected\":true")
        });
    }
    a1.send_text("after");
    for c in [&mut a1, &mut a2] {
        assert_eq!(
            next_chat(c).0,
            "after",
            "the first message after the reconnect is not lost"
        );
    }
    // B missed the local ones (at most once, nothing queued for later) and gets this one.
    assert_eq!(next_chat(&mut b1).0, "after");
    for p in [&a, &b] {
        let log = p.log_text();
        let down = log.matches("unreachable").count();
        let up = log.matches("message bus: connected").count();
        assert_eq!((down, up), (1, 2), "one line per change of state:\n{log}");
    }
}

/// In-process: a server whose Redis is not there at start serves locally, then connects when
/// Redis appears.
#[test]
fn redis_missing_at_start() {
    if !available("redis_missing_at_start") {
        return;
    }
    let port = common::process::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let a = node_server(&url, 1);
    let mut c1 = Client::connect(a.local_addr(), "/chat?room=r");
    let mut c2 = Client::connect(a.local_addr(), "/chat?room=r");
    c1.send_text("alone");
    assert_eq!(next_chat(&mut c2).0, "alone");
    assert!(health(a.local_addr()).contains("\"connected\":false"));
    let _redis = RedisServer::start_on(port);
    eventually("the bus connects late", DEADLINE, || bus_connected(&a.handle()));
    c1.send_text("together");
    assert_eq!(next_chat(&mut c2).0, "together");
}

/// A client that stays connected and sees everything live.
fn observer(addr: SocketAddr) -> Client {
    let mut c = Client::connect(addr, "/chat?room=r&name=observer");
    let _ = welcome_id(&mut c);
    c
}

/// The replay check shared by the Redis and the in-memory runs. Publishers post numbered
/// messages to `pubs` without pause; an observer on `obs` reads all of them live; a client on
/// `first` reads some, drops its connection, and — while the posts go on — reconnects to
/// `second` with `since` = the last id it saw. What it got on both connections together must be
/// exactly what the observer got, in the same order.
fn replay_under_live_traffic(pubs: &[SocketAddr], obs: SocketAddr, first: SocketAddr, second: SocketAddr) {
    let mut o = observer(obs);
    let mut s1 = Client::connect(first, "/chat?room=r&name=s");
    let _ = welcome_id(&mut s1);
    let stop = Arc::new(AtomicBool::new(false));
    let publishers = spawn_publishers(pubs, &stop);
    let mut observed: Vec<(String, String)> = Vec::new();
    let mut s_got: Vec<(String, String)> = Vec::new();
    while s_got.len() < 30 {
        s_got.push(next_chat(&mut s1));
    }
    let since = s_got.last().unwrap().1.clone();
    drop(s1); // gone without a Close, as a dropped network would
              // Let a good number go by while it is away.
    while observed.len() < s_got.len() + 60 {
        observed.push(next_chat(&mut o));
    }
    let mut s2 = Client::connect(second, &format!("/chat?room=r&name=s&since={since}"));
    let _ = welcome_id(&mut s2);
    // Live traffic keeps flowing through the reconnect; stop after a good number more.
    while observed.len() < s_got.len() + 200 {
        observed.push(next_chat(&mut o));
    }
    stop.store(true, Ordering::Relaxed);
    for t in publishers {
        t.join().unwrap();
    }
    let ends = |v: &[(String, String)]| v.iter().filter(|(t, _)| t.ends_with("-end")).count();
    while ends(&observed) < pubs.len() {
        observed.push(next_chat(&mut o));
    }
    let mut s2_got = Vec::new();
    while ends(&s2_got) < pubs.len() {
        let m = next_chat(&mut s2);
        assert_ne!(m.0, "RESYNC", "asked to resync after {s2_got:?}");
        s2_got.push(m);
    }
    let all: Vec<_> = s_got.iter().chain(&s2_got).cloned().collect();
    let first_diff = all.iter().zip(&observed).position(|(x, y)| x != y);
    assert!(
        all == observed,
        "first difference at {first_diff:?} (seam at {}): client {:?} vs observer {:?}",
        s_got.len(),
        all.get(first_diff.unwrap_or(0).saturating_sub(2)..(first_diff.unwrap_or(0) + 3).min(all.len())),
        observed.get(first_diff.unwrap_or(0).saturating_sub(2)..(first_diff.unwrap_or(0) + 3).min(observed.len())),
    );
    // Ids increase strictly (the stream's order), and every message has one.
    let ids: Vec<wsloop::server::HistoryId> = all.iter().map(|(_, m)| m.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn replay_through_redis_has_no_gap_and_no_duplicate_under_live_traffic() {
    if !available("replay_through_redis_has_no_gap_and_no_duplicate_under_live_traffic") {
        return;
    }
    let redis = RedisServer::start();
    let a = node_server(&redis.url(), 0xa);
    let b = node_server(&redis.url(), 0xb);
    eventually("both buses connect", DEADLINE, || {
        bus_connected(&a.handle()) && bus_connected(&b.handle())
    });
    let (a, b) = (a.local_addr(), b.local_addr());
    // Posts on both; the client leaves B and comes back on A.
    replay_under_live_traffic(&[a, b], a, b, a);
}

#[test]
fn replay_in_memory_has_no_gap_and_no_duplicate_under_live_traffic() {
    let server = Server::new(DemoApp::new())
        .configure(|c| {
            c.bind = "127.0.0.1:0".parse().unwrap();
            c.threads = 2;
            c.history_size = 10_000;
        })
        .start()
        .unwrap();
    let a = server.local_addr();
    replay_under_live_traffic(&[a, a], a, a, a);
}

/// The "too old" answer: after more messages than history keeps, the first id gets the resync
/// notice; a malformed id too; the newest id gets no notice and just what follows.
fn too_old(addr: SocketAddr, count: usize) {
    let mut c = Client::connect(addr, "/chat?room=r");
    let _ = welcome_id(&mut c);
    let mut mids = Vec::new();
    for i in 0..count {
        post_message(addr, "r", &format!("m{i}"));
        mids.push(next_chat(&mut c).1);
    }
    let mut old = Client::connect(addr, &format!("/chat?room=r&since={}", mids[0]));
    let _ = welcome_id(&mut old);
    assert_eq!(next_chat(&mut old).0, "RESYNC");
    let mut bad = Client::connect(addr, "/chat?room=r&since=not-an-id");
    let _ = welcome_id(&mut bad);
    assert_eq!(next_chat(&mut bad).0, "RESYNC");
    // An id still kept: exactly what followed it.
    let mut recent = Client::connect(addr, &format!("/chat?room=r&since={}", mids[count - 3]));
    let _ = welcome_id(&mut recent);
    assert_eq!(next_chat(&mut recent).0, format!("m{}", count - 2));
    assert_eq!(next_chat(&mut recent).0, format!("m{}", count - 1));
    let mut newest = Client::connect(addr, &format!("/chat?room=r&since={}", mids[count - 1]));
    let _ = welcome_id(&mut newest);
    post_message(addr, "r", "live");
    for c in [&mut newest, &mut recent, &mut old, &mut bad] {
        assert_eq!(next_chat(c).0, "live");
    }
}

#[test]
fn a_trimmed_id_gets_the_resync_notice_through_redis() {
    if !available("a_trimmed_id_gets_the_resync_notice_through_redis") {
        return;
    }
    let redis = RedisServer::start();
    let a = Server::new(DemoApp::new())
        .configure(|c| {
            c.bind = "127.0.0.1:0".parse().unwrap();
            c.threads = 1;
            c.history_size = 10;
        })
        .message_bus(RedisBus::new(&redis.url()).unwrap())
        .start()
        .unwrap();
    eventually("the bus connects", DEADLINE, || bus_connected(&a.handle()));
    // MAXLEN ~ trims whole stream nodes (100 entries): send enough that the first goes.
    too_old(a.local_addr(), 350);
    let len: usize = redis.cli(&["XLEN", "wsloop:history:room:r"]).trim().parse().unwrap();
    assert!((10..350).contains(&len), "stream length {len}");
}

#[test]
fn a_trimmed_id_gets_the_resync_notice_in_memory() {
    let server = Server::new(DemoApp::new())
        .configure(|c| {
            c.bind = "127.0.0.1:0".parse().unwrap();
            c.threads = 1;
            c.history_size = 10;
        })
        .start()
        .unwrap();
    too_old(server.local_addr(), 30);
}

#[test]
fn an_id_from_before_a_restart_gets_the_resync_notice_in_memory() {
    let server = Server::new(DemoApp::new())
        .configure(|c| {
            c.bind = "127.0.0.1:0".parse().unwrap();
            c.threads = 1;
        })
        .start()
        .unwrap();
    let addr = server.local_addr();
    let mut c = Client::connect(addr, "/chat?room=r");
    let _ = welcome_id(&mut c);
    post_message(addr, "r", "x");
    let (_, mid) = next_chat(&mut c);
    drop(c);
    server.shutdown();
    server.join().unwrap();
    let again = Server::new(DemoApp::new())
        .configure(|c| {
            c.bind = addr;
            c.threads = 1;
        })
        .start()
        .unwrap();
    let mut c = Client::connect(again.local_addr(), &format!("/chat?room=r&since={mid}"));
    let _ = welcome_id(&mut c);
    assert_eq!(next_chat(&mut c).0, "RESYNC");
}

/// `/` joins topic "t"; with `?since=ID` it first records one message itself through the
/// handle (so its copy is in flight to this loop's inbox when the replay is read), then
/// subscribes from ID. Text messages are recorded.
struct InFlight;

impl Handler for InFlight {
    type State = ();
    fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
        Ok(Accept::default())
    }
    fn on_open(&self, ctx: &mut Context<'_>) {
        match ctx.query().and_then(|q| q.strip_prefix("since=")).map(str::to_owned) {
            Some(since) => {
                ctx.handle()
                    .publish_recorded("t", wsloop::server::Stamped::text("in flight ", ""))
                    .unwrap();
                ctx.subscribe_since("t", &since, Message::Text("RESYNC"));
            }
            None => ctx.subscribe("t"),
        }
    }
    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        if let Message::Text(t) = message {
            let prefix = format!("{t} ");
            ctx.publish_recorded("t", wsloop::server::Stamped::text(&prefix, ""));
        }
    }
}

/// In memory, the replay is read at once; a copy of a message it contains that is still on its
/// way to the loop must not be delivered again (the floor).
#[test]
fn in_memory_replay_skips_a_copy_still_in_flight() {
    let server = Server::new(InFlight)
        .configure(|c| {
            c.bind = "127.0.0.1:0".parse().unwrap();
            c.threads = 1;
        })
        .start()
        .unwrap();
    let mut c = Client::connect(server.local_addr(), "/");
    c.send_text("first");
    let first = next_text(&mut c);
    let since = first.strip_prefix("first ").unwrap().to_owned();
    let mut d = Client::connect(server.local_addr(), &format!("/?since={since}"));
    let replayed = next_text(&mut d);
    assert!(replayed.starts_with("in flight "), "{replayed}");
    c.send_text("next");
    assert!(next_text(&mut d).starts_with("next "), "a second copy of {replayed:?}");
}
