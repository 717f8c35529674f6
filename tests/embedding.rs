//! The library as an embedding application uses it: per-connection state from the upgrade,
//! pushing from other threads, subscriptions from every callback, backpressure with
//! `on_drain`, panics in handlers. Over real loopback TCP, driven by the crate's client core.

mod common;

use common::events::text;
use common::wait::eventually;
use common::{http, start, Client, TIMEOUT};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use wsloop::handshake::Request;
use wsloop::protocol::OwnedEvent;
use wsloop::server::{Accept, ConnId, Context, Handler, Message, PushError, RequestContext, Response, SendStatus};
use wsloop::CloseCode;

// ----- state from the upgrade ------------------------------------------------------------------

/// Who the client is, decided once in on_upgrade.
struct User {
    name: String,
    messages: usize,
}

#[derive(Default)]
struct StateApp {
    peers_seen: Mutex<Vec<SocketAddr>>,
    closed: Mutex<Vec<(String, usize, u16)>>,
}

impl Handler for StateApp {
    type State = User;

    fn on_upgrade(&self, req: &Request, ctx: &mut RequestContext<'_>) -> Result<Accept<User>, Response> {
        self.peers_seen.lock().unwrap().push(ctx.peer_addr());
        match req.header_str("x-user") {
            Some(name) => Ok(Accept::new(User {
                name: name.to_owned(),
                messages: 0,
            })),
            None => Err(Response::text(401, "who are you?\n")),
        }
    }

    fn on_open(&self, ctx: &mut Context<'_, User>) {
        let greeting = format!("hello {}", ctx.state().name);
        ctx.send_text(&greeting);
    }

    fn on_message(&self, ctx: &mut Context<'_, User>, message: Message<'_>) {
        ctx.state_mut().messages += 1;
        // The request's headers are still there after the upgrade.
        let agent = ctx
            .request()
            .and_then(|r| r.header_str("x-agent"))
            .unwrap_or("none")
            .to_owned();
        let reply = format!(
            "{} #{} via {agent}: {:?}",
            ctx.state().name,
            ctx.state().messages,
            message
        );
        ctx.send_text(&reply);
    }

    fn on_close(&self, ctx: &mut Context<'_, User>, code: CloseCode, _reason: &str) {
        let u = ctx.state();
        self.closed.lock().unwrap().push((u.name.clone(), u.messages, code.0));
    }
}

#[test]
fn state_set_at_the_upgrade_reaches_every_callback() {
    let app = Arc::new(StateApp::default());
    let server = start(ArcHandler(app.clone()), |s| s);
    let addr = server.local_addr();
    let (status, _, _) = http(
        addr,
        "GET /x HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(status, 401);

    let mut c = Client::connect_with(addr, "/x", &[("X-User", "ada"), ("X-Agent", "probe/1")], &[]);
    assert_eq!(text(c.next()), "hello ada");
    c.send_text("one");
    c.send_text("two");
    assert_eq!(text(c.next()), "ada #1 via probe/1: Text(\"one\")");
    assert_eq!(text(c.next()), "ada #2 via probe/1: Text(\"two\")");
    let local = c.stream.local_addr().unwrap();
    c.close(CloseCode(4001), "bye");
    assert!(c.wait_eof());
    eventually("on_close", TIMEOUT, || !app.closed.lock().unwrap().is_empty());
    assert_eq!(*app.closed.lock().unwrap(), vec![("ada".to_owned(), 2, 4001)]);
    assert!(
        app.peers_seen.lock().unwrap().contains(&local),
        "on_upgrade saw the peer address"
    );
}

/// Lets a test keep an `Arc` to the handler it gave the server.
struct ArcHandler<H>(Arc<H>);

impl<H: Handler> Handler for ArcHandler<H> {
    type State = H::State;
    fn on_request(&self, r: &Request, ctx: &mut RequestContext<'_>) -> Response {
        self.0.on_request(r, ctx)
    }
    fn on_upgrade(&self, r: &Request, ctx: &mut RequestContext<'_>) -> Result<Accept<H::State>, Response> {
        self.0.on_upgrade(r, ctx)
    }
    fn on_open(&self, ctx: &mut Context<'_, H::State>) {
        self.0.on_open(ctx)
    }
    fn on_message(&self, ctx: &mut Context<'_, H::State>, m: Message<'_>) {
        self.0.on_message(ctx, m)
    }
    fn on_close(&self, ctx: &mut Context<'_, H::State>, code: CloseCode, reason: &str) {
        self.0.on_close(ctx, code, reason)
    }
    fn on_drain(&self, ctx: &mut Context<'_, H::State>) {
        self.0.on_drain(ctx)
    }
}

// ----- on_drain --------------------------------------------------------------------------------

/// Streams CHUNKS chunks of 64 KiB, stopping at every Backpressure and going on in on_drain.
struct Streamer;

const CHUNKS: u32 = 200;

impl Handler for Streamer {
    /// The next chunk to send.
    type State = u32;

    fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept<u32>, Response> {
        Ok(Accept::new(0))
    }

    fn on_open(&self, ctx: &mut Context<'_, u32>) {
        pump(ctx);
    }

    fn on_drain(&self, ctx: &mut Context<'_, u32>) {
        pump(ctx);
    }
}

fn pump(ctx: &mut Context<'_, u32>) {
    while *ctx.state() < CHUNKS {
        let n = *ctx.state();
        let mut chunk = vec![(n % 251) as u8; 64 * 1024];
        chunk[..4].copy_from_slice(&n.to_be_bytes());
        *ctx.state_mut() += 1;
        if ctx.send_binary(&chunk) == SendStatus::Backpressure {
            return; // on_drain will call us again
        }
    }
}

/// Issue 9 item 4: on_drain used to fire only once, so a sender that paused twice stalled.
#[test]
fn on_drain_fires_after_every_backpressure() {
    let server = start(Streamer, |s| s.configure(|c| c.backpressure_high_water = 256 * 1024));
    let mut c = Client::connect(server.local_addr(), "/stream");
    for n in 0..CHUNKS {
        match c.next() {
            Some(OwnedEvent::Binary(b)) => {
                assert_eq!(b.len(), 64 * 1024);
                assert_eq!(u32::from_be_bytes([b[0], b[1], b[2], b[3]]), n, "chunk order");
            }
            other => panic!("chunk {n} of {CHUNKS} never came: {other:?}"),
        }
    }
}

// ----- subscriptions from every callback -------------------------------------------------------

/// `/sub` subscribes to "t" in on_open and unsubscribes in on_close; `/other` never
/// subscribes. Commands over the socket: "sub X", "unsub X", "topics", "pub X text".
#[derive(Default)]
struct Topics {
    ids: Mutex<Vec<ConnId>>,
    drained: Mutex<bool>,
}

impl Handler for Topics {
    type State = ();

    fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
        Ok(Accept::default())
    }

    fn on_open(&self, ctx: &mut Context<'_>) {
        self.ids.lock().unwrap().push(ctx.id());
        if ctx.path() == "/sub" {
            ctx.subscribe("t");
        }
        let id = ctx.id().to_string();
        ctx.send_text(&id);
    }

    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        let Message::Text(t) = message else { return };
        if let Some(topic) = t.strip_prefix("sub ") {
            ctx.subscribe(topic);
        } else if let Some(topic) = t.strip_prefix("unsub ") {
            ctx.unsubscribe(topic);
        } else if let Some(rest) = t.strip_prefix("pub ") {
            let (topic, body) = rest.split_once(' ').unwrap_or((rest, ""));
            ctx.publish(topic, Message::Text(body));
            return;
        } else if t == "flood" {
            // Fill the queue so on_drain runs, and subscribe from there.
            while ctx.send_binary(&[0u8; 64 * 1024]) != SendStatus::Backpressure {}
            return;
        }
        let topics = ctx.topics().collect::<Vec<_>>().join(",");
        ctx.send_text(&format!("topics: {topics}"));
    }

    fn on_drain(&self, ctx: &mut Context<'_>) {
        ctx.subscribe("from-drain");
        *self.drained.lock().unwrap() = true;
    }

    fn on_close(&self, ctx: &mut Context<'_>, _: CloseCode, _: &str) {
        if ctx.path() == "/sub" {
            ctx.unsubscribe("t");
        }
        // Subscribing while closing changes nothing for anyone.
        ctx.subscribe("t");
    }
}

/// Issue 9 item 5: A and D subscribe; A drops its TCP connection and unsubscribes in on_close.
/// That must change A's membership only: D keeps receiving, and E, a new connection that may
/// reuse A's slot and never subscribed, receives nothing from the topic.
#[test]
fn unsubscribing_in_on_close_touches_only_that_connection() {
    let app = Arc::new(Topics::default());
    let server = start(ArcHandler(app.clone()), |s| s);
    let addr = server.local_addr();
    let handle = server.handle();
    let mut a = Client::connect(addr, "/sub");
    let a_id: ConnId = text(a.next()).parse().unwrap();
    let mut d = Client::connect(addr, "/sub");
    let _d_id = text(d.next());
    drop(a); // TCP gone, no Close frame
    eventually("A to go", TIMEOUT, || {
        handle.send_to(a_id, Message::Text("?")) == Err(PushError::Gone)
    });
    let mut e = Client::connect(addr, "/other");
    let e_id: ConnId = text(e.next()).parse().unwrap();
    assert_eq!(e_id.to_string().rsplit_once('.').map(|_| ()), Some(()));

    handle.publish("t", Message::Text("news")).unwrap();
    handle.send_to(e_id, Message::Text("marker")).unwrap();
    assert_eq!(text(d.next()), "news", "D lost its subscription");
    assert_eq!(text(e.next()), "marker", "E received a topic it never joined");
    e.send_text("topics");
    assert_eq!(text(e.next()), "topics: ");
}

#[test]
fn subscribe_and_unsubscribe_work_from_every_callback() {
    let app = Arc::new(Topics::default());
    let server = start(ArcHandler(app.clone()), |s| {
        s.configure(|c| c.backpressure_high_water = 64 * 1024)
    });
    let mut c = Client::connect(server.local_addr(), "/sub");
    let _id = text(c.next());
    c.send_text("topics");
    assert_eq!(text(c.next()), "topics: t", "from on_open");
    c.send_text("sub u");
    assert_eq!(text(c.next()), "topics: t,u", "from on_message");
    c.send_text("unsub t");
    assert_eq!(text(c.next()), "topics: u");
    c.send_text("flood");
    // Read the flood; the queue drains and on_drain subscribes.
    c.send_text("topics");
    let reply = loop {
        match c.next_message() {
            Some(OwnedEvent::Binary(_)) => continue,
            other => break text(other),
        }
    };
    assert!(*app.drained.lock().unwrap(), "on_drain ran");
    assert_eq!(reply, "topics: u,from-drain", "from on_drain");
}

// ----- panics ------------------------------------------------------------------------------------

struct Fragile;

impl Handler for Fragile {
    type State = ();

    fn on_request(&self, req: &Request, _: &mut RequestContext<'_>) -> Response {
        if req.path() == "/boom" {
            panic!("boom in on_request");
        }
        Response::text(200, "fine\n")
    }

    fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
        Ok(Accept::default())
    }

    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        if message == Message::Text("boom") {
            panic!("boom in on_message");
        }
        ctx.send(message);
    }
}

/// Issue 9 item 8: a panicking handler closes its own connection (1011, or HTTP 500) and
/// nothing else.
#[test]
fn a_panicking_handler_closes_only_its_connection() {
    let server = start(Fragile, |s| s);
    let addr = server.local_addr();
    let mut calm = Client::connect(addr, "/x");
    let mut doomed = Client::connect(addr, "/x");
    doomed.send_text("boom");
    match doomed.next() {
        Some(OwnedEvent::Close(Some((code, _)))) => assert_eq!(code, CloseCode::INTERNAL_ERROR),
        other => panic!("expected Close 1011, got {other:?}"),
    }
    calm.send_text("still here");
    assert_eq!(text(calm.next()), "still here");
    assert_eq!(http(addr, "GET /boom HTTP/1.1\r\nHost: localhost\r\n\r\n").0, 500);
    assert_eq!(http(addr, "GET /fine HTTP/1.1\r\nHost: localhost\r\n\r\n").0, 200);
    let fresh = &mut Client::connect(addr, "/x");
    fresh.send_text("and new ones");
    assert_eq!(text(fresh.next()), "and new ones");
    eventually("the panic counter", TIMEOUT, || {
        server
            .info()
            .prometheus()
            .contains("wsloop_handler_panics_total{loop=\"0\"} 2")
    });
}

// ----- pushing from other threads ----------------------------------------------------------------

/// Subscribes every connection to "feed" and tells it its id.
struct Feed;

impl Handler for Feed {
    type State = ();

    fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
        Ok(Accept::default())
    }

    fn on_open(&self, ctx: &mut Context<'_>) {
        ctx.subscribe("feed");
        let id = ctx.id().to_string();
        ctx.send_text(&id);
    }
}

/// Connects `n` clients to a 2-loop server and checks they span both loops.
fn clients_on_both_loops(addr: SocketAddr, n: usize) -> (Vec<Client>, Vec<ConnId>) {
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..n {
        let mut c = Client::connect(addr, "/feed");
        ids.push(text(c.next()).parse::<ConnId>().unwrap());
        clients.push(c);
    }
    let loops: BTreeSet<usize> = ids.iter().map(|id| id.loop_index()).collect();
    assert_eq!(
        loops,
        BTreeSet::from([0, 1]),
        "connections are handed to the loops in turn: {ids:?}"
    );
    (clients, ids)
}

#[test]
fn pushes_from_another_thread_reach_every_loop_in_order() {
    let server = start(Feed, |s| s.configure(|c| c.threads = 2));
    let (mut clients, _) = clients_on_both_loops(server.local_addr(), 4);
    let handle = server.handle();
    let pusher = std::thread::spawn(move || {
        for i in 0..2000 {
            handle.publish("feed", Message::Text(&format!("tick {i}"))).unwrap();
        }
    });
    for (k, c) in clients.iter_mut().enumerate() {
        for i in 0..2000 {
            assert_eq!(text(c.next()), format!("tick {i}"), "client {k}");
        }
    }
    pusher.join().unwrap();
}

#[test]
fn send_to_and_close_through_the_handle_and_errors_after() {
    let server = start(Feed, |s| s.configure(|c| c.threads = 2));
    let (mut clients, ids) = clients_on_both_loops(server.local_addr(), 2);
    let handle = server.handle();
    assert_eq!(handle.open_websockets(), 2);
    for (c, id) in clients.iter_mut().zip(&ids) {
        let h = handle.clone();
        let id = *id;
        std::thread::spawn(move || h.send_to(id, Message::Binary(b"direct")).unwrap())
            .join()
            .unwrap();
        assert_eq!(c.next(), Some(OwnedEvent::Binary(b"direct".to_vec())));
    }
    handle.close(ids[1], CloseCode(4000), "bye").unwrap();
    assert_eq!(
        clients[1].next(),
        Some(OwnedEvent::Close(Some((CloseCode(4000), "bye".into()))))
    );
    // Our client core answered the Close; the server then closes the TCP connection.
    assert!(clients[1].wait_eof());
    eventually("the closed id to be gone", TIMEOUT, || {
        handle.send_to(ids[1], Message::Text("late")) == Err(PushError::Gone)
    });
    let foreign: ConnId = "00000001.0.0.1".parse().unwrap();
    if foreign.node() != handle.node_id() {
        assert_eq!(handle.send_to(foreign, Message::Text("x")), Err(PushError::Gone));
    }
    server.shutdown();
    let h = server.handle();
    server.join().unwrap();
    assert_eq!(h.publish("feed", Message::Text("after")), Err(PushError::ShutDown));
    assert_eq!(h.send_to(ids[0], Message::Text("after")), Err(PushError::ShutDown));
    assert!(!h.is_running());
}

/// A connection id handed to a client comes back as the same id.
#[test]
fn conn_ids_round_trip_through_text() {
    let server = start(Feed, |s| s.configure(|c| c.threads = 2));
    let (_clients, ids) = clients_on_both_loops(server.local_addr(), 2);
    for id in ids {
        assert_eq!(id.to_string().parse::<ConnId>(), Ok(id));
        assert_eq!(id.node(), server.handle().node_id());
    }
}
