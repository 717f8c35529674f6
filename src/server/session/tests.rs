//! The two phases and their hand-off, driven on plain byte vectors: no socket, no `mio`, a
//! loop state of its own and a clock the test sets.

use super::http::{HttpConn, HttpOutcome};
use super::transport::{Closing, Transport};
use super::ws::{Opening, WsConn};
use super::{Cx, Io, Session};
use crate::frame::CloseCode;
use crate::handshake::Request;
use crate::protocol::{Config, OwnedEvent, WebSocket, WebSocketCore};
use crate::server::context::LoopState;
use crate::server::shared::Core;
use crate::server::throttle::Throttle;
use crate::server::{
    Accept, ConnId, Context, Handler, Message, MessageRate, RateLimitAction, RequestContext, Response, ServerConfig,
};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Answers `/hello`, accepts upgrades but to `/refuse`, echoes messages and remembers the
/// close codes it was told about.
#[derive(Default)]
struct App {
    closes: Mutex<Vec<u16>>,
    /// The round trips `on_pong` was told, in ms, and what `ctx.rtt()` said then.
    pongs: Mutex<Vec<(u128, Option<Duration>)>>,
}

impl Handler for App {
    type State = u32;

    fn on_request(&self, request: &Request, _: &mut RequestContext<'_>) -> Response {
        match request.path() {
            "/hello" => Response::text(200, "hi\n"),
            _ => Response::status(404),
        }
    }

    fn on_upgrade(&self, request: &Request, _: &mut RequestContext<'_>) -> Result<Accept<u32>, Response> {
        match request.path() {
            "/refuse" => Err(Response::status(403)),
            "/premium" => Ok(Accept::new(0).message_rate(MessageRate::OFF)),
            _ => Ok(Accept::new(0)),
        }
    }

    fn on_message(&self, ctx: &mut Context<'_, u32>, message: Message<'_>) {
        *ctx.state_mut() += 1;
        ctx.send(message);
    }

    fn on_close(&self, _: &mut Context<'_, u32>, code: CloseCode, _: &str) {
        if let Ok(mut c) = self.closes.lock() {
            c.push(code.0);
        }
    }

    fn on_pong(&self, ctx: &mut Context<'_, u32>, rtt: Duration) {
        if let Ok(mut p) = self.pongs.lock() {
            p.push((rtt.as_millis(), ctx.rtt()));
        }
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        threads: 1,
        ping_interval: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        ..ServerConfig::default()
    }
}

fn loop_state() -> LoopState {
    let mut lp = LoopState::new(0, Core::detached(config()));
    lp.message_allowance = u32::MAX;
    lp
}

fn transport() -> Transport {
    Transport::new(ConnId::new(1, 0, 0, 1), SocketAddr::from(([127, 0, 0, 1], 40000)))
}

/// Everything queued on the transport, as the socket would take it.
fn written(t: &mut Transport, lp: &mut LoopState) -> Vec<u8> {
    let mut wire = Vec::new();
    if let Err(e) = t.out.write_to(&mut wire, &mut lp.pool) {
        panic!("writing to a Vec failed: {e}");
    }
    wire
}

const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A masked client text frame.
fn client_text(text: &str) -> Vec<u8> {
    let mut client = WebSocket::client(Config::default());
    let mut out = Vec::new();
    if let Err(e) = client.send_text(text, &mut out) {
        panic!("client frame: {e}");
    }
    out
}

/// Parses what the server sent after its handshake response as a client would.
fn server_events(wire: &[u8]) -> Vec<OwnedEvent> {
    let mut client = WebSocket::client(Config::default());
    let mut bytes = wire.to_vec();
    let mut answers = Vec::new();
    match client.receive_all(&mut bytes, &mut answers) {
        Ok(events) => events,
        Err(e) => panic!("the server sent an invalid frame: {e}"),
    }
}

fn head_and_rest(wire: &[u8]) -> (String, &[u8]) {
    let end = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(wire)));
    let (head, rest) = wire.split_at(end + 4);
    (String::from_utf8_lossy(head).into_owned(), rest)
}

// ----- the HTTP phase --------------------------------------------------------------------

#[test]
fn http_phase_answers_pipelined_requests_and_stays_open() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    let mut h = HttpConn::new(lp.core.config.request_limits, 1000);
    let mut input =
        b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    let outcome: HttpOutcome<u32> = h.receive(&mut t, &mut input, &mut cx);
    assert!(matches!(outcome, HttpOutcome::Used(n) if n == input.len()));
    let wire = String::from_utf8_lossy(&written(&mut t, &mut lp)).into_owned();
    assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
    assert!(wire.contains("\r\n\r\nhi\n"), "{wire}");
    assert!(wire.contains("HTTP/1.1 404 Not Found\r\n"), "{wire}");
    assert_eq!(t.closing, Closing::No, "keep-alive: the connection stays open");
    assert!(h.is_idle());
}

#[test]
fn http_phase_keeps_a_head_that_arrives_in_pieces() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    let mut h = HttpConn::new(lp.core.config.request_limits, 1000);
    let request = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (first, second) = request.split_at(17);
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    let outcome: HttpOutcome<u32> = h.receive(&mut t, &mut first.to_vec(), &mut cx);
    assert!(matches!(outcome, HttpOutcome::Used(17)));
    assert!(t.out.is_empty(), "nothing answered before the head is whole");
    assert!(h.holding() >= 17, "the partial head is held (and charged)");
    let outcome: HttpOutcome<u32> = h.receive(&mut t, &mut second.to_vec(), &mut cx);
    assert!(matches!(outcome, HttpOutcome::Used(_)));
    let wire = String::from_utf8_lossy(&written(&mut t, &mut lp)).into_owned();
    assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
}

#[test]
fn http_phase_refuses_a_malformed_head_and_closes() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    let mut h = HttpConn::new(lp.core.config.request_limits, 1000);
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    let outcome: HttpOutcome<u32> = h.receive(
        &mut t,
        &mut b"GET / HTTP/1.1\r\nHost localhost\r\n\r\n".to_vec(),
        &mut cx,
    );
    assert!(matches!(outcome, HttpOutcome::Used(_)));
    let wire = String::from_utf8_lossy(&written(&mut t, &mut lp)).into_owned();
    assert!(wire.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{wire}");
    assert_eq!(t.closing, Closing::AfterFlush);
}

#[test]
fn http_phase_hands_over_the_websocket_and_the_bytes_behind_the_request() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    let mut h = HttpConn::new(lp.core.config.request_limits, 1000);
    let frame = client_text("right behind");
    let mut input = [UPGRADE, &frame].concat();
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    let HttpOutcome::Upgraded { used, trailing, .. } = h.receive::<u32, _>(&mut t, &mut input, &mut cx) else {
        panic!("the upgrade was not handed over");
    };
    assert_eq!(used, UPGRADE.len(), "the HTTP phase took the head and nothing more");
    assert!(
        trailing.is_empty(),
        "read in one piece, the frame stays in the caller's input"
    );
    let wire = written(&mut t, &mut lp);
    let (head, rest) = head_and_rest(&wire);
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
    // RFC 6455 §1.3's example key and its accept value.
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    assert!(rest.is_empty());

    // The same request in two pieces: the frame arrives buffered behind the head, and comes
    // back as the trailing bytes to feed first.
    let mut t = transport();
    let mut h = HttpConn::new(lp.core.config.request_limits, 1000);
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    let (a, b) = input.split_at(20);
    let first: HttpOutcome<u32> = h.receive(&mut t, &mut a.to_vec(), &mut cx);
    assert!(matches!(first, HttpOutcome::Used(20)));
    let HttpOutcome::Upgraded { used, trailing, .. } = h.receive::<u32, _>(&mut t, &mut b.to_vec(), &mut cx) else {
        panic!("the upgrade was not handed over");
    };
    assert_eq!(used, b.len());
    assert_eq!(trailing, frame, "the frame behind the head is handed over whole");
}

#[test]
fn http_phase_refuses_an_upgrade_the_handler_refuses() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    let mut h = HttpConn::new(lp.core.config.request_limits, 1000);
    let request = String::from_utf8_lossy(UPGRADE).replace("/chat", "/refuse");
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    let outcome: HttpOutcome<u32> = h.receive(&mut t, &mut request.into_bytes(), &mut cx);
    assert!(matches!(outcome, HttpOutcome::Used(_)));
    let wire = String::from_utf8_lossy(&written(&mut t, &mut lp)).into_owned();
    assert!(wire.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{wire}");
    assert_eq!(t.closing, Closing::AfterFlush);
}

// ----- the WebSocket phase ---------------------------------------------------------------

fn ws_conn(lp: &mut LoopState) -> WsConn<u32> {
    let opening = Opening {
        ws: WebSocketCore::server(),
        target: lp.intern_target("/chat"),
        request: None,
        state: 0,
        deflate_allowed: false,
        capture: None,
        throttle: None,
    };
    WsConn::new(opening, lp.now)
}

fn ws_conn_limited(lp: &mut LoopState, rate: MessageRate) -> WsConn<u32> {
    let opening = Opening {
        ws: WebSocketCore::server(),
        target: lp.intern_target("/chat"),
        request: None,
        state: 0,
        deflate_allowed: false,
        capture: None,
        throttle: Throttle::new(rate),
    };
    WsConn::new(opening, lp.now)
}

fn texts(events: &[OwnedEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            OwnedEvent::Text(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn ws_phase_throttled_stops_taking_input_and_resumes_on_its_timer() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    // 2 per second, burst 2: two at once, then one per 500 ms.
    let mut w = ws_conn_limited(&mut lp, MessageRate::per_second(2));
    let mut client = WebSocket::client(Config::default());
    let mut input = Vec::new();
    for i in 0..5 {
        assert!(client.send_text(&format!("m{i}"), &mut input).is_ok());
    }
    let one = input.len() / 5;
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    let used = w.receive(&mut t, &mut input, &mut cx);
    assert_eq!(used, 2 * one, "the burst is taken, the rest left for the stash");
    assert!(t.read_paused() && !t.wants_read(), "not read while throttled");
    assert_eq!(w.next_deadline(&lp), 500, "woken when the allowance has room");
    assert_eq!(texts(&server_events(&written(&mut t, &mut lp))), ["m0", "m1"]);
    // Too early: still paused.
    lp.now = 499;
    let _ = w.on_timeout(&mut t, &mut lp);
    assert!(t.read_paused());
    lp.now = 500;
    let _ = w.on_timeout(&mut t, &mut lp);
    assert!(!t.read_paused(), "the timer lifts the pause");
    let mut rest = input[used..].to_vec();
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    let used = w.receive(&mut t, &mut rest, &mut cx);
    assert_eq!(used, one, "one message per interval");
    assert!(t.read_paused());
    assert_eq!(w.next_deadline(&lp), 1000);
    assert_eq!(texts(&server_events(&written(&mut t, &mut lp))), ["m2"]);
    assert!(lp
        .core
        .metrics()
        .render(0, 1, &[])
        .contains("wsloop_throttled_seconds_total{reason=\"message_rate\"} 1.000"));
}

#[test]
fn ws_phase_does_not_count_control_frames() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    let mut w = ws_conn_limited(&mut lp, MessageRate::per_second(1));
    let mut client = WebSocket::client(Config::default());
    let mut input = Vec::new();
    let ok = client
        .send_ping(b"a", &mut input)
        .and(client.send_ping(b"b", &mut input))
        .and(client.send_text("one", &mut input))
        .and(client.send_ping(b"c", &mut input));
    assert!(ok.is_ok());
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    let used = w.receive(&mut t, &mut input, &mut cx);
    assert!(used < input.len(), "paused after the one message its allowance holds");
    let events = server_events(&written(&mut t, &mut lp));
    assert_eq!(
        events,
        vec![
            OwnedEvent::Pong(b"a".to_vec()),
            OwnedEvent::Pong(b"b".to_vec()),
            OwnedEvent::Text("one".into())
        ]
    );
}

#[test]
fn ws_phase_over_its_rate_with_the_close_action_closes_1008() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    let rate = MessageRate::per_second(2).with_action(RateLimitAction::Close);
    let mut w = ws_conn_limited(&mut lp, rate);
    let mut client = WebSocket::client(Config::default());
    let mut input = Vec::new();
    for i in 0..4 {
        assert!(client.send_text(&format!("m{i}"), &mut input).is_ok());
    }
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    w.receive(&mut t, &mut input, &mut cx);
    let events = server_events(&written(&mut t, &mut lp));
    assert!(
        matches!(
            events.as_slice(),
            [OwnedEvent::Text(a), OwnedEvent::Text(b), OwnedEvent::Close(Some((CloseCode(1008), _)))] if a == "m0" && b == "m1"
        ),
        "{events:?}"
    );
    assert_eq!(t.closing, Closing::AfterFlush, "nothing more is read");
}

#[test]
fn ws_phase_throttled_past_the_idle_timeout_is_not_taken_for_silent() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    // 100 bytes/s: a 5,000-byte message puts it 50 s in debt, past the 30 s idle timeout.
    let mut w = ws_conn_limited(&mut lp, MessageRate::OFF.with_bytes_per_second(100));
    let mut client = WebSocket::client(Config::default());
    let mut input = Vec::new();
    let ok = client
        .send_text(&"x".repeat(5000), &mut input)
        .and(client.send_text("next", &mut input));
    assert!(ok.is_ok());
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    let used = w.receive(&mut t, &mut input, &mut cx);
    assert!(used < input.len() && t.read_paused());
    let until = w.next_deadline(&lp);
    assert_eq!(until, 49_000, "debt of 49 s past the one-second burst");
    lp.now = until;
    let (why, _) = w.on_timeout(&mut t, &mut lp);
    assert_eq!(why, None, "not dropped for a silence we imposed");
    assert!(!t.read_paused());
    assert_eq!(
        w.next_deadline(&lp),
        until + 10_000,
        "the heartbeat counts from the resume"
    );
}

#[test]
fn an_upgrade_may_give_its_connection_its_own_message_rate() {
    let mut config = config();
    config.message_rate = MessageRate::per_second(1);
    let mut lp = LoopState::new(0, Core::detached(config));
    lp.message_allowance = u32::MAX;
    let app = App::default();
    let echoes = |path: &str, lp: &mut LoopState| {
        let mut s: Session<u32> = Session::new(ConnId::new(1, 0, 0, 1), SocketAddr::from(([127, 0, 0, 1], 1)), lp);
        let head = String::from_utf8_lossy(UPGRADE).replace("/chat", path);
        let mut input = head.into_bytes();
        for i in 0..5 {
            input.extend_from_slice(&client_text(&format!("m{i}")));
        }
        let mut cx = Cx {
            lp,
            handler: &app,
            direct: None,
        };
        let used = s.receive(&mut input, &mut cx);
        s.stash_rest(input.get(used..).unwrap_or_default());
        let wire = written(&mut s.t, lp);
        texts(&server_events(head_and_rest(&wire).1)).len()
    };
    assert_eq!(echoes("/chat", &mut lp), 1, "the server's rate: one, then throttled");
    assert_eq!(echoes("/premium", &mut lp), 5, "its own rate: no limit");
}

// ----- behind a trusted proxy ------------------------------------------------------------

/// Remembers the client address each upgrade saw.
#[derive(Default)]
struct Clients(Mutex<Vec<(SocketAddr, SocketAddr)>>);

impl Handler for Clients {
    type State = ();

    fn on_upgrade(&self, _: &Request, cx: &mut RequestContext<'_>) -> Result<Accept, Response> {
        if let Ok(mut seen) = self.0.lock() {
            seen.push((cx.peer_addr(), cx.client_addr()));
        }
        Ok(Accept::default())
    }
}

fn upgrade_through(trusted: &[&str], peer: [u8; 4], header: &str) -> (SocketAddr, SocketAddr) {
    let mut config = config();
    config.trusted_proxies = trusted.iter().map(|c| c.parse().unwrap()).collect();
    let mut lp = LoopState::new(0, Core::detached(config));
    let app = Clients::default();
    let peer = SocketAddr::from((peer, 5555));
    let mut s: Session<()> = Session::new(ConnId::new(1, 0, 0, 1), peer, &lp);
    let head = String::from_utf8_lossy(UPGRADE).replace("\r\n\r\n", &format!("\r\n{header}\r\n\r\n"));
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    s.receive(&mut head.into_bytes(), &mut cx);
    let seen = app.0.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 1, "one upgrade");
    assert_eq!(s.peer(), peer, "the peer stays the TCP peer");
    seen[0]
}

#[test]
fn a_trusted_proxy_names_the_client_and_others_cannot() {
    let client: SocketAddr = "198.51.100.7:0".parse().unwrap();
    let (peer, got) = upgrade_through(&["127.0.0.1/32"], [127, 0, 0, 1], "X-Forwarded-For: 198.51.100.7");
    assert_eq!((peer.ip(), got), ("127.0.0.1".parse().unwrap(), client));
    let (_, got) = upgrade_through(
        &["127.0.0.0/8"],
        [127, 0, 0, 1],
        "Forwarded: for=\"[2001:db8::1]:4711\"",
    );
    assert_eq!(got, "[2001:db8::1]:4711".parse().unwrap());
    // From a peer outside the trusted ranges (or with none trusted) the header is ignored.
    let (peer, got) = upgrade_through(&["10.0.0.0/8"], [127, 0, 0, 1], "X-Forwarded-For: 198.51.100.7");
    assert_eq!(got, peer);
    let (peer, got) = upgrade_through(&[], [127, 0, 0, 1], "X-Forwarded-For: 198.51.100.7");
    assert_eq!(got, peer);
    // A malformed header is ignored: the client is the proxy itself.
    let (peer, got) = upgrade_through(&["127.0.0.1/32"], [127, 0, 0, 1], "Forwarded: for=\"[oops");
    assert_eq!(got, peer);
}

#[test]
fn ws_phase_echoes_and_answers_a_ping_first() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    let mut w = ws_conn(&mut lp);
    let mut client = WebSocket::client(Config::default());
    let mut input = Vec::new();
    let ok = client
        .send_ping(b"p", &mut input)
        .and(client.send_text("one", &mut input));
    assert!(ok.is_ok());
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    let used = w.receive(&mut t, &mut input, &mut cx);
    assert_eq!(used, input.len());
    let events = server_events(&written(&mut t, &mut lp));
    assert_eq!(
        events,
        vec![OwnedEvent::Pong(b"p".to_vec()), OwnedEvent::Text("one".into())]
    );
}

#[test]
fn ws_phase_answers_a_close_and_tells_the_handler_once() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    let mut w = ws_conn(&mut lp);
    let mut client = WebSocket::client(Config::default());
    let mut input = Vec::new();
    assert!(client.close(CloseCode(4001), "bye", &mut input).is_ok());
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    w.receive(&mut t, &mut input, &mut cx);
    // RFC 6455 §5.5.1: the reply echoes the code (the reason is ours to give); §7.1.1: the server then closes TCP first.
    let events = server_events(&written(&mut t, &mut lp));
    assert!(
        matches!(events.as_slice(), [OwnedEvent::Close(Some((CloseCode(4001), _)))]),
        "{events:?}"
    );
    assert_eq!(t.closing, Closing::AfterFlush);
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    w.finish(&mut t, &mut cx, CloseCode::ABNORMAL, "gone");
    assert_eq!(app.closes.lock().map(|c| c.clone()).unwrap_or_default(), vec![4001]);
}

#[test]
fn ws_phase_closes_1002_on_an_unmasked_frame() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    let mut w = ws_conn(&mut lp);
    // A server-style (unmasked) text frame from the client: RFC 6455 §5.1.
    let mut input = vec![0x81, 0x02, b'h', b'i'];
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    w.receive(&mut t, &mut input, &mut cx);
    let events = server_events(&written(&mut t, &mut lp));
    assert!(
        matches!(events.as_slice(), [OwnedEvent::Close(Some((CloseCode(1002), _)))]),
        "{events:?}"
    );
    assert_eq!(t.closing, Closing::AfterFlush);
    assert_eq!(app.closes.lock().map(|c| c.clone()).unwrap_or_default(), vec![1002]);
}

#[test]
fn ws_phase_heartbeat_pings_then_gives_up_on_silence() {
    let mut lp = loop_state();
    let mut t = transport();
    let mut w = ws_conn(&mut lp);
    let ping_at = w.next_deadline(&lp);
    assert_eq!(
        ping_at, 10_000,
        "the first ping is due a ping interval after the last bytes"
    );
    lp.now = ping_at;
    let (why, _) = w.on_timeout(&mut t, &mut lp);
    assert_eq!(why, None);
    let events = server_events(&written(&mut t, &mut lp));
    assert_eq!(events, vec![OwnedEvent::Ping(b"wsloop ping 10000".to_vec())]);
    assert_eq!(
        w.next_deadline(&lp),
        30_000,
        "with a ping out, the idle timeout is next"
    );
    lp.now = 30_000;
    let (why, _) = w.on_timeout(&mut t, &mut lp);
    assert_eq!(why, Some("heartbeat: peer silent"));
}

#[test]
fn ws_phase_reads_the_round_trip_off_the_pong_of_its_ping() {
    let mut lp = loop_state();
    let app = App::default();
    let mut t = transport();
    let mut w = ws_conn(&mut lp);
    let mut client = WebSocket::client(Config::default());
    let pongs = |app: &App| app.pongs.lock().map(|p| p.clone()).unwrap_or_default();
    let feed = |w: &mut WsConn<u32>, t: &mut Transport, lp: &mut LoopState, mut bytes: Vec<u8>| {
        let mut cx = Cx {
            lp,
            handler: &app,
            direct: None,
        };
        w.receive(t, &mut bytes, &mut cx);
    };

    // Before any Ping: an unsolicited Pong, even one shaped like ours, is no round trip
    // (RFC 6455 §5.5.3).
    let mut unsolicited = Vec::new();
    assert!(client.send_pong(b"wsloop ping 0", &mut unsolicited).is_ok());
    lp.now = 5;
    feed(&mut w, &mut t, &mut lp, unsolicited);
    assert!(pongs(&app).is_empty());

    // The heartbeat's Ping at 10 000 ms; the client's Pong (its protocol answers on its own)
    // read at 10 007.
    lp.now = 10_005;
    let _ = w.on_timeout(&mut t, &mut lp);
    let mut wire = written(&mut t, &mut lp);
    let mut answer = Vec::new();
    let events = client.receive_all(&mut wire, &mut answer).unwrap_or_default();
    assert_eq!(events, vec![OwnedEvent::Ping(b"wsloop ping 10005".to_vec())]);
    lp.now = 10_012;
    feed(&mut w, &mut t, &mut lp, answer.clone());
    assert_eq!(pongs(&app), vec![(7, Some(Duration::from_millis(7)))]);

    // The same Pong again: answered already, nothing new.
    lp.now = 10_050;
    feed(&mut w, &mut t, &mut lp, answer);
    assert_eq!(pongs(&app).len(), 1);
}

#[test]
fn a_pong_payload_that_is_not_our_stamp_is_no_round_trip() {
    use super::ws::pong_rtt;
    assert_eq!(pong_rtt(b"wsloop ping 100", 107), Some(7));
    assert_eq!(pong_rtt(b"wsloop ping 100", 100), Some(0));
    // The clock's low 32 bits wrapped between Ping and Pong.
    assert_eq!(pong_rtt(b"wsloop ping 4294967295", 1 << 32), Some(1));
    for bad in [
        &b""[..],
        b"wsloop ping ",
        b"wsloop ping 12a",
        b"wsloop ping -1",
        b"wsloop ping 4294967296",
        b"wsloop ping 00000000001",
        b"wsloop heartbeat",
        b"wsloop ping 200", // sent "after" now: forged
    ] {
        assert_eq!(pong_rtt(bad, 107), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

// ----- the session: phases and hand-off together ---------------------------------------

#[test]
fn session_upgrades_and_echoes_a_frame_sent_with_the_request() {
    let mut lp = loop_state();
    let app = App::default();
    let mut s: Session<u32> = Session::new(ConnId::new(1, 0, 0, 1), SocketAddr::from(([127, 0, 0, 1], 1)), &lp);
    let mut input = [UPGRADE, &client_text("early")].concat();
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    let used = s.receive(&mut input, &mut cx);
    assert_eq!(used, input.len());
    let wire = written(&mut s.t, &mut lp);
    let (head, rest) = head_and_rest(&wire);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(server_events(rest), vec![OwnedEvent::Text("early".into())]);
    assert_eq!(s.io(), Io::Open);
    assert!(matches!(s.phase, super::Phase::Ws(_)));
}

#[test]
fn session_flushes_then_closes_when_the_peer_half_closes() {
    let mut lp = loop_state();
    let app = App::default();
    let mut s: Session<u32> = Session::new(ConnId::new(1, 0, 0, 1), SocketAddr::from(([127, 0, 0, 1], 1)), &lp);
    // Later than the handshake deadline the session was born with (10 s), which used to be
    // the deadline an EOF left in place.
    lp.now = 20_000;
    let mut input = UPGRADE.to_vec();
    let mut cx = Cx {
        lp: &mut lp,
        handler: &app,
        direct: None,
    };
    s.receive(&mut input, &mut cx);
    s.on_eof(&mut cx);
    // The 101 is still queued: it goes out, within a close timeout counted from the EOF.
    assert_eq!(s.io(), Io::Flushing);
    let close_timeout = lp.core.config.close_timeout.as_millis() as u64;
    assert_eq!(s.next_deadline(&lp), 20_000 + close_timeout);
    assert_eq!(app.closes.lock().map(|c| c.clone()).unwrap_or_default(), vec![1006]);
}

// ----- the event-stream phase ------------------------------------------------------------

/// One publication to several event streams is encoded as an event once: a small one is
/// copied from that one encoding into each queue, a large one is shared by the queues (one
/// copy in memory however many streams take it).
#[test]
fn sse_phase_encodes_a_publication_once_for_all_its_streams() {
    use super::sse;
    use crate::frame::Opcode;
    use crate::server::budget::{Frame, Tag};
    use crate::server::event_stream::StreamOpening;
    use crate::server::HistoryId;
    use std::sync::Arc;

    let mut lp = loop_state();
    let request = match Request::parse(b"GET /rooms/r/events HTTP/1.1\r\nHost: localhost\r\n\r\n", 16) {
        Ok(r) => r,
        Err(e) => panic!("a plain GET parses: {e}"),
    };
    let mut streams = Vec::new();
    for slot in 0..3 {
        let mut t = Transport::new(ConnId::new(1, 0, slot, 1), SocketAddr::from(([127, 0, 0, 1], 40000)));
        let opening = StreamOpening {
            id: t.id(&lp),
            retry: None,
            notices: Vec::new(),
        };
        let Some(s) = sse::begin(&mut t, &mut lp, &request, &Response::status(200), &opening) else {
            panic!("a 200 to a GET opens the stream");
        };
        let head = written(&mut t, &mut lp);
        assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
        streams.push((t, s));
    }
    for (text, shared) in [("hi".to_owned(), false), ("x\n".repeat(1000), true)] {
        let tag = Tag::Recorded(HistoryId::new(7, 42));
        let frame = Frame::tagged(Opcode::Text, text.as_bytes(), tag, lp.core.budget());
        let mut want = Vec::new();
        sse::encode(tag, text.as_bytes(), &mut want);
        let mut event = None;
        for (t, s) in &mut streams {
            assert_eq!(s.deliver(t, &frame, &mut event, &mut lp), super::Delivery::Queued);
        }
        let Some(event) = event else {
            panic!("the first stream encoded the event for the others");
        };
        assert_eq!(event.bytes(), &want[..]);
        // The cache and, when shared, each of the three queues.
        let holders = if shared { 4 } else { 1 };
        assert_eq!(Arc::strong_count(&event), holders, "shared: {shared}");
        for (t, _) in &mut streams {
            assert_eq!(written(t, &mut lp), want);
        }
    }
}
