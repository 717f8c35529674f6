//! Issue 21 item 4, the server side: what a newcomer's first app ran into, over real loopback
//! TCP. Subscribing a connection from another thread and counting a topic's subscribers;
//! using the connection's state and its actions together (the state's field as the topic);
//! a publication and a send reaching the sender in call order; a server-side ping with a
//! round-trip figure per connection.

mod common;

use common::events::text;
use common::wait::eventually;
use common::{start, Client, TIMEOUT};
use std::time::Duration;
use wsloop::handshake::Request;
use wsloop::protocol::OwnedEvent;
use wsloop::server::{Accept, ConnId, Context, Handler, Message, PushError, RequestContext, Response, ServerHandle};
use wsloop::CloseCode;

/// Each connection's room is its path; it joins it at open, without cloning it out of the
/// state, and says its id.
struct App;

struct Member {
    room: String,
}

impl Handler for App {
    type State = Member;

    fn on_upgrade(&self, req: &Request, _: &mut RequestContext<'_>) -> Result<Accept<Member>, Response> {
        let room = req.path().trim_start_matches('/').to_owned();
        Ok(Accept::new(Member { room }))
    }

    fn on_open(&self, ctx: &mut Context<'_, Member>) {
        // Item 2: the state's field as the topic, no clone (`ctx.subscribe(&ctx.state().room)`
        // is E0502).
        ctx.with_state(|member, ctx| ctx.subscribe(&member.room));
        let id = ctx.id().to_string();
        ctx.send_text(&id);
    }

    fn on_message(&self, ctx: &mut Context<'_, Member>, message: Message<'_>) {
        let Message::Text(line) = message else { return };
        let (command, arg) = line.split_once(' ').unwrap_or((line, ""));
        match command {
            "count" => {
                let reply = format!("{arg} {}", ctx.subscriber_count(arg));
                ctx.send_text(&reply);
            }
            // Item 3: every way a message reaches the sender, interleaved with sends.
            "order" => {
                let me = ctx.id();
                ctx.with_state(|member, ctx| ctx.publish(&member.room, Message::Text("published")));
                ctx.send_text("sent");
                ctx.broadcast(Message::Text("broadcast"));
                ctx.send_text("sent again");
                ctx.send_to(me, Message::Text("to self")).unwrap();
                ctx.with_state(|member, ctx| ctx.publish_to_others(&member.room, Message::Text("to others")));
                ctx.send_text("last");
            }
            // The same, with messages long enough to be compressed (permessage-deflate).
            "order-long" => {
                let long = |what: &str| format!("{what} {}", "x".repeat(4000));
                ctx.with_state(|member, ctx| ctx.publish(&member.room, Message::Text(&long("published"))));
                ctx.send_text(&long("sent"));
                ctx.broadcast(Message::Text(&long("broadcast")));
                ctx.send_text(&long("last"));
            }
            "publish-close" => {
                ctx.with_state(|member, ctx| ctx.publish(&member.room, Message::Text("before the close")));
                ctx.close(CloseCode::NORMAL, "bye").unwrap();
            }
            "ping" => {
                ctx.ping();
                ctx.send_text("pinged");
            }
            "rtt" => {
                let reply = match ctx.rtt() {
                    Some(rtt) => format!("rtt {}", rtt.as_millis()),
                    None => "rtt none".to_owned(),
                };
                ctx.send_text(&reply);
            }
            _ => {}
        }
    }

    fn on_pong(&self, ctx: &mut Context<'_, Member>, rtt: Duration) {
        let line = format!("pong {}", rtt.as_millis());
        ctx.send_text(&line);
    }
}

fn join(addr: std::net::SocketAddr, room: &str) -> (Client, ConnId) {
    let mut c = Client::connect(addr, room);
    let id = text(c.next()).parse().expect("the id comes first");
    (c, id)
}

/// The next data message, pings and pongs skipped.
fn next_text(c: &mut Client) -> String {
    text(c.next_message())
}

/// Nothing but `expected` arrives next (a marker the test asked for proves nothing else was
/// queued before it).
fn next_is(c: &mut Client, expected: &str) {
    assert_eq!(next_text(c), expected);
}

fn count(handle: &ServerHandle, topic: &str) -> usize {
    handle.subscriber_count(topic)
}

#[test]
fn a_connection_is_subscribed_and_unsubscribed_from_another_thread_and_topics_are_counted() {
    let server = start(App, |s| s.configure(|c| c.threads = 2));
    let addr = server.local_addr();
    let handle = server.handle();
    assert_eq!(count(&handle, "news"), 0);
    assert_eq!(count(&handle, "lobby"), 0);

    // Joining counts (on both loops: connections are spread over them).
    let mut clients: Vec<(Client, ConnId)> = (0..4).map(|_| join(addr, "/lobby")).collect();
    let loops: std::collections::HashSet<usize> = clients.iter().map(|(_, id)| id.loop_index()).collect();
    assert_eq!(loops.len(), 2, "the clients landed on both loops");
    eventually("four in the lobby", TIMEOUT, || count(&handle, "lobby") == 4);
    assert_eq!(
        server.info().subscriber_count("lobby"),
        4,
        "the same figure from ServerInfo"
    );

    // Subscribed from another thread: a publication right after reaches each of them (the
    // subscription and the publication go through the connection's loop in call order).
    let ids: Vec<ConnId> = clients.iter().map(|(_, id)| *id).collect();
    let h = handle.clone();
    std::thread::spawn(move || {
        for &id in &ids[..3] {
            h.subscribe(id, "news").unwrap();
        }
        h.publish("news", Message::Text("headline")).unwrap();
    })
    .join()
    .unwrap();
    for (c, _) in clients.iter_mut().take(3) {
        next_is(c, "headline");
    }
    eventually("three on news", TIMEOUT, || count(&handle, "news") == 3);
    // The loop side reads the same figure, across loops.
    clients[3].0.send_text("count news");
    next_is(&mut clients[3].0, "news 3");
    clients[3].0.send_text("count lobby");
    next_is(&mut clients[3].0, "lobby 4");

    // Unsubscribed from another thread: no more news for it.
    let first = clients[0].1;
    let h = handle.clone();
    std::thread::spawn(move || h.unsubscribe(first, "news").unwrap())
        .join()
        .unwrap();
    handle.publish("news", Message::Text("second")).unwrap();
    handle.send_to(first, Message::Text("marker")).unwrap();
    next_is(&mut clients[0].0, "marker");
    next_is(&mut clients[1].0, "second");
    next_is(&mut clients[2].0, "second");
    eventually("two on news", TIMEOUT, || count(&handle, "news") == 2);

    // Leaving: a clean close and a dropped TCP connection both count down.
    let (mut closing, _) = clients.remove(1);
    closing.close(CloseCode::NORMAL, "");
    assert!(closing.wait_eof());
    eventually("one on news", TIMEOUT, || count(&handle, "news") == 1);
    drop(clients.remove(1)); // the one still on news
    eventually("nobody on news", TIMEOUT, || count(&handle, "news") == 0);
    eventually("two in the lobby", TIMEOUT, || count(&handle, "lobby") == 2);
    clients.clear();
    eventually("nobody in the lobby", TIMEOUT, || count(&handle, "lobby") == 0);

    // A connection that has gone: Gone, as for a push to it.
    assert_eq!(handle.subscribe(first, "news"), Err(PushError::Gone));
    assert_eq!(handle.unsubscribe(first, "news"), Err(PushError::Gone));
    server.shutdown();
    server.join().unwrap();
    assert_eq!(handle.subscribe(first, "news"), Err(PushError::ShutDown));
}

#[test]
fn what_the_sender_gets_arrives_in_call_order() {
    let server = start(App, |s| s);
    let addr = server.local_addr();
    let (mut ada, _) = join(addr, "/room");
    let (mut bob, _) = join(addr, "/room");
    ada.send_text("order");
    for expected in ["published", "sent", "broadcast", "sent again", "to self", "last"] {
        next_is(&mut ada, expected);
    }
    // Once each, and nothing the sender left itself out of.
    ada.send_text("count room");
    next_is(&mut ada, "room 2");
    // The other member gets the publications in their order too.
    for expected in ["published", "broadcast", "to others"] {
        next_is(&mut bob, expected);
    }

    // A publication before a close reaches the sender before the Close frame.
    ada.send_text("publish-close");
    next_is(&mut ada, "before the close");
    assert!(matches!(ada.next(), Some(OwnedEvent::Close(Some(_)))));
    next_is(&mut bob, "before the close");
}

#[test]
fn a_ping_round_trip_gives_the_connection_its_rtt() {
    let server = start(App, |s| s);
    let (mut c, _) = join(server.local_addr(), "/ping");
    c.send_text("rtt");
    next_is(&mut c, "rtt none");

    // ctx.ping(): the Ping follows what the callback sent; the client answers it as it reads.
    c.send_text("ping");
    next_is(&mut c, "pinged");
    let pong: u64 = next_text(&mut c)
        .strip_prefix("pong ")
        .expect("on_pong reports the round trip")
        .parse()
        .unwrap();
    // Loopback: milliseconds at most (the bound is generous: a loaded machine is slow).
    assert!(pong < 2000, "rtt {pong} ms");
    c.send_text("rtt");
    let rtt: u64 = next_text(&mut c).strip_prefix("rtt ").unwrap().parse().unwrap();
    assert_eq!(rtt, pong, "ctx.rtt() is the last round trip");

    // An unsolicited Pong (RFC 6455 §5.5.3), even one that looks like the server's, is no
    // round trip: no on_pong.
    for payload in [&b"wsloop ping 0"[..], b"unsolicited"] {
        let mut out = Vec::new();
        c.ws.send_pong(payload, &mut out).unwrap();
        std::io::Write::write_all(&mut c.stream, &out).unwrap();
    }
    c.send_text("rtt");
    next_is(&mut c, &format!("rtt {rtt}"));
}

#[test]
fn the_heartbeat_ping_measures_the_round_trip_too() {
    let server = start(App, |s| {
        s.configure(|c| {
            c.ping_interval = Duration::from_millis(200);
        })
    });
    let (mut c, _) = join(server.local_addr(), "/quiet");
    // Silent for the ping interval: the server pings, the client's read answers it.
    match c.next() {
        Some(OwnedEvent::Ping(payload)) => assert!(payload.starts_with(b"wsloop ping ")),
        other => panic!("expected the heartbeat ping, got {other:?}"),
    }
    let line = next_text(&mut c);
    let ms: u64 = line.strip_prefix("pong ").expect("on_pong").parse().unwrap();
    assert!(ms < 2000, "rtt {ms} ms");
    c.send_text("rtt");
    next_is(&mut c, &format!("rtt {ms}"));
}

/// With permessage-deflate (shared or per-connection compressors, RFC 7692 §7.2.1), the copy
/// sent ahead is compressed in wire order, so the client inflates every message.
#[test]
fn call_order_holds_with_permessage_deflate() {
    use wsloop::client::{Client as WsClient, ClientEvent};
    use wsloop::server::DeflateMode;
    for mode in [DeflateMode::Shared, DeflateMode::Dedicated { window_bits: 15 }] {
        let server = start(App, |s| s.configure(|c| c.deflate = mode));
        let url = format!("ws://{}/zipped", server.local_addr());
        let mut c = WsClient::builder(url).deflate(true).connect().unwrap();
        assert!(c.deflate().is_some(), "{mode:?}: deflate agreed");
        assert!(matches!(c.recv().unwrap(), ClientEvent::Text(_)), "the id");
        c.send_text("order-long").unwrap();
        for expected in ["published", "sent", "broadcast", "last"] {
            match c.recv().unwrap() {
                ClientEvent::Text(t) => assert_eq!(t.split(' ').next(), Some(expected), "{mode:?}"),
                other => panic!("{mode:?}: expected {expected}, got {other:?}"),
            }
        }
        c.send_text("count zipped").unwrap();
        assert_eq!(
            c.recv().unwrap(),
            ClientEvent::Text("zipped 1".into()),
            "{mode:?}: nothing twice"
        );
        c.close(CloseCode::NORMAL, "").unwrap();
    }
}
