//! Decisions that wait on I/O (issue 21): an upgrade or an HTTP response deferred by the
//! handler and completed later from another thread, over real loopback TCP.

mod common;

use common::events::text;
use common::wait::eventually;
use common::{read_response, start, Client, TIMEOUT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::Duration;
use wsloop::handshake::Request;
use wsloop::server::{
    Accept, Context, DecideError, Handler, Message, PendingResponse, PendingUpgrade, RequestContext, Response,
    RunningServer,
};

/// Hands every deferred decision to the test thread; `/now` answers at once.
struct Deferring {
    upgrades: Mutex<Sender<PendingUpgrade<String>>>,
    responses: Mutex<Sender<(String, PendingResponse)>>,
}

impl Handler for Deferring {
    type State = String;

    fn on_request(&self, req: &Request, ctx: &mut RequestContext<'_>) -> Response {
        match req.path() {
            "/now" => Response::text(200, "now"),
            "/wrong" => {
                // A misuse: an upgrade token in on_request answers 500, its completion errs.
                let token = ctx.defer_upgrade::<String>();
                let _ = self
                    .responses
                    .lock()
                    .unwrap()
                    .send(("wrong".into(), ctx.defer_response()));
                drop(token);
                Response::text(200, "not used")
            }
            path => {
                let token = ctx.defer_response();
                let _ = self.responses.lock().unwrap().send((path.to_owned(), token));
                Response::text(200, "not used: deferred")
            }
        }
    }

    fn on_upgrade(&self, req: &Request, ctx: &mut RequestContext<'_>) -> Result<Accept<String>, Response> {
        let token = ctx.defer_upgrade::<String>();
        if req.path() == "/twice" {
            let second = ctx.defer_upgrade::<String>();
            let _ = self.upgrades.lock().unwrap().send(second);
        }
        let _ = self.upgrades.lock().unwrap().send(token);
        Err(Response::status(500)) // not used
    }

    fn on_open(&self, ctx: &mut Context<'_, String>) {
        let hello = format!("hello {}", ctx.state());
        ctx.send_text(&hello);
    }

    fn on_message(&self, ctx: &mut Context<'_, String>, message: Message<'_>) {
        let line = format!("{}: {}", ctx.state(), String::from_utf8_lossy(message.bytes()));
        ctx.send_text(&line);
    }
}

type Decisions = (Receiver<PendingUpgrade<String>>, Receiver<(String, PendingResponse)>);

fn server(handshake_timeout: Duration, max_connections: usize) -> (RunningServer, Decisions) {
    let (up_tx, up_rx) = channel();
    let (resp_tx, resp_rx) = channel();
    let app = Deferring {
        upgrades: Mutex::new(up_tx),
        responses: Mutex::new(resp_tx),
    };
    let server = start(app, |s| {
        s.configure(|c| {
            c.handshake_timeout = handshake_timeout;
            c.max_connections = max_connections;
        })
    });
    (server, (up_rx, resp_rx))
}

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

fn raw(addr: SocketAddr, request: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s
}

fn pending_gauge(server: &RunningServer) -> f64 {
    server
        .info()
        .prometheus()
        .lines()
        .filter_map(|l| l.strip_prefix("wsloop_pending_decisions{"))
        .filter_map(|l| l.split_once("} ").and_then(|(_, v)| v.trim().parse::<f64>().ok()))
        .sum()
}

fn nothing_arrives(s: &mut TcpStream, for_: Duration) {
    s.set_read_timeout(Some(for_)).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
        other => panic!("expected silence while the decision is pending, got {other:?}"),
    }
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
}

#[test]
fn a_pending_upgrade_accepted_from_another_thread_opens_with_its_state() {
    let (server, (upgrades, _)) = server(Duration::from_secs(10), 100);
    let addr = server.local_addr();
    // A frame sent right behind the request waits in order until the upgrade is decided.
    let mut first = Vec::new();
    wsloop::protocol::WebSocket::client(Default::default())
        .send_text("early", &mut first)
        .unwrap();
    let client = std::thread::spawn(move || {
        let mut c = Client::connect_with(addr, "/ws", &[], &first);
        let hello = text(c.next());
        let echoed = text(c.next());
        c.close(wsloop::CloseCode::NORMAL, "");
        (hello, echoed)
    });
    let token = upgrades.recv_timeout(TIMEOUT).expect("on_upgrade deferred");
    eventually("pending gauge", TIMEOUT, || pending_gauge(&server) == 1.0);
    let decider = std::thread::spawn(move || token.accept(Accept::new("ada".to_owned())));
    assert_eq!(decider.join().unwrap(), Ok(()));
    let (hello, echoed) = client.join().unwrap();
    assert_eq!(hello, "hello ada");
    assert_eq!(echoed, "ada: early");
    assert_eq!(pending_gauge(&server), 0.0);
}

#[test]
fn a_pending_upgrade_refused_gets_its_response() {
    let (server, (upgrades, _)) = server(Duration::from_secs(10), 100);
    let mut s = raw(server.local_addr(), &upgrade_request("/ws"));
    let token = upgrades.recv_timeout(TIMEOUT).unwrap();
    nothing_arrives(&mut s, Duration::from_millis(200));
    std::thread::spawn(move || token.refuse(Response::text(401, "bad token\n")))
        .join()
        .unwrap()
        .unwrap();
    let (status, _, body) = read_response(&mut s);
    assert_eq!((status, body.as_str()), (401, "bad token\n"));
    eventually("pending gauge back to 0", TIMEOUT, || pending_gauge(&server) == 0.0);
}

#[test]
fn nobody_deciding_within_the_handshake_timeout_answers_503() {
    let (server, (upgrades, responses)) = server(Duration::from_millis(300), 100);
    let addr = server.local_addr();
    let mut s = raw(addr, &upgrade_request("/ws"));
    let token = upgrades.recv_timeout(TIMEOUT).unwrap();
    let (status, _, _) = read_response(&mut s);
    assert_eq!(status, 503);
    assert_eq!(token.accept(Accept::new("late".into())), Err(DecideError::Gone));

    let mut h = raw(addr, "GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (_, token) = responses.recv_timeout(TIMEOUT).unwrap();
    let (status, _, _) = read_response(&mut h);
    assert_eq!(status, 503);
    assert_eq!(token.respond(Response::text(200, "late")), Err(DecideError::Gone));
    eventually("pending gauge back to 0", TIMEOUT, || pending_gauge(&server) == 0.0);
}

#[test]
fn a_client_gone_while_pending_leaves_nothing_behind() {
    let (server, (upgrades, responses)) = server(Duration::from_secs(30), 100);
    let addr = server.local_addr();
    let s = raw(addr, &upgrade_request("/ws"));
    let token = upgrades.recv_timeout(TIMEOUT).unwrap();
    let h = raw(addr, "GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (_, response) = responses.recv_timeout(TIMEOUT).unwrap();
    eventually("two pending", TIMEOUT, || pending_gauge(&server) == 2.0);
    let used = server.info().memory_used();
    assert!(used >= 2 * 1024, "pending decisions are charged to the budget: {used}");
    drop(s);
    drop(h);
    // Long before the 30 s timeout: the loop sees them leave.
    eventually("pending gauge back to 0", Duration::from_secs(5), || {
        pending_gauge(&server) == 0.0 && server.info().open_connections() == 0
    });
    assert_eq!(token.accept(Accept::new("gone".into())), Err(DecideError::Gone));
    assert_eq!(response.respond(Response::status(200)), Err(DecideError::Gone));
}

#[test]
fn a_decision_completed_twice_or_misplaced_is_an_error() {
    let (server, (upgrades, responses)) = server(Duration::from_secs(10), 100);
    let addr = server.local_addr();
    let mut s = raw(addr, &upgrade_request("/twice"));
    let second = upgrades.recv_timeout(TIMEOUT).unwrap();
    let first = upgrades.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(first.id(), second.id());
    assert_eq!(first.refuse(Response::status(403)), Ok(()));
    assert_eq!(
        second.accept(Accept::new("twice".into())),
        Err(DecideError::AlreadyDecided)
    );
    let (status, _, _) = read_response(&mut s);
    assert_eq!(status, 403, "the first decision, once");

    // defer_upgrade in on_request: 500, and its tokens decide nothing.
    let mut w = raw(addr, "GET /wrong HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (_, token) = responses.recv_timeout(TIMEOUT).unwrap();
    let (status, _, _) = read_response(&mut w);
    assert_eq!(status, 500);
    assert_eq!(token.respond(Response::status(200)), Err(DecideError::Gone));

    // A token kept after its connection went: a new connection in the same slot is not it.
    let stale = {
        let s = raw(addr, &upgrade_request("/ws"));
        let t = upgrades.recv_timeout(TIMEOUT).unwrap();
        drop(s);
        eventually("gone", TIMEOUT, || server.info().open_connections() == 0);
        t
    };
    let mut fresh = raw(addr, &upgrade_request("/ws"));
    let fresh_token = upgrades.recv_timeout(TIMEOUT).unwrap();
    assert_ne!(stale.id(), fresh_token.id());
    assert_eq!(stale.refuse(Response::status(418)), Err(DecideError::Gone));
    nothing_arrives(&mut fresh, Duration::from_millis(200));
    fresh_token.refuse(Response::status(401)).unwrap();
    assert_eq!(read_response(&mut fresh).0, 401);

    // After shutdown, a completion says so.
    let s = raw(addr, &upgrade_request("/ws"));
    let late = upgrades.recv_timeout(TIMEOUT).unwrap();
    server.shutdown();
    assert_eq!(late.accept(Accept::new("x".into())), Err(DecideError::ServerStopped));
    drop(s);
    server.join().unwrap();
}

#[test]
fn a_pending_response_holds_the_pipelined_requests_behind_it_in_order() {
    let (server, (_, responses)) = server(Duration::from_secs(10), 100);
    let mut s = raw(
        server.local_addr(),
        "GET /first HTTP/1.1\r\nHost: localhost\r\n\r\nGET /now HTTP/1.1\r\nHost: localhost\r\n\r\n\
GET /third HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    let (path, first) = responses.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(path, "/first");
    // /now would answer at once, but it is behind /first.
    nothing_arrives(&mut s, Duration::from_millis(300));
    assert!(responses.try_recv().is_err(), "/third is not read yet");
    std::thread::spawn(move || first.respond(Response::text(200, "one")))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(read_response(&mut s).2, "one");
    assert_eq!(read_response(&mut s).2, "now");
    let (path, third) = responses.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(path, "/third");
    third.respond(Response::text(200, "three")).unwrap();
    assert_eq!(read_response(&mut s).2, "three");
    // A dropped token answers 500 rather than leaving the client waiting.
    s.write_all(b"GET /dropped HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    drop(responses.recv_timeout(TIMEOUT).unwrap());
    assert_eq!(read_response(&mut s).0, 500);
}

#[test]
fn a_flood_of_pending_upgrades_is_bounded_by_max_connections() {
    let (server, (upgrades, _)) = server(Duration::from_secs(10), 8);
    let addr = server.local_addr();
    let mut socks: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = s.write_all(upgrade_request("/ws").as_bytes());
            s
        })
        .collect();
    eventually("eight pending", TIMEOUT, || pending_gauge(&server) == 8.0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pending_gauge(&server), 8.0, "never more than --max-connections");
    assert!(server.info().open_connections() <= 8);
    let tokens: Vec<_> = upgrades.try_iter().collect();
    assert_eq!(tokens.len(), 8);
    for t in tokens {
        t.refuse(Response::status(401)).unwrap();
    }
    eventually("all decided", TIMEOUT, || pending_gauge(&server) == 0.0);
    socks.clear();
}

/// Issue 21 item 4 (server side): a client that shuts down its write side while its upgrade or
/// response is pending is gone. A read of 0 cannot tell a half-close from a client that left
/// (RFC 9112 §9.6 leaves half-close to the implementation), a half-closed client can never
/// speak WebSocket, and the lookup behind a pending response is work for nobody: the
/// connection is dropped and the token says `Gone` — however the FIN arrived: in the same
/// segment as the request (read with it, before the decision was pending) or later.
#[test]
fn a_client_that_half_closes_while_pending_is_gone() {
    let (server, (upgrades, responses)) = server(Duration::from_secs(30), 100);
    let addr = server.local_addr();
    let half_closed = |request: &str, shut_first: bool| {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut w = &s;
        if shut_first {
            // Request and FIN together: the loop reads both before the handler defers.
            w.write_all(request.as_bytes()).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
        } else {
            w.write_all(request.as_bytes()).unwrap();
        }
        s
    };
    for shut_first in [false, true] {
        let s = half_closed(&upgrade_request("/ws"), shut_first);
        let token = upgrades.recv_timeout(TIMEOUT).unwrap();
        let h = half_closed("GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n", shut_first);
        let (_, response) = responses.recv_timeout(TIMEOUT).unwrap();
        if !shut_first {
            eventually("two pending", TIMEOUT, || pending_gauge(&server) == 2.0);
            s.shutdown(std::net::Shutdown::Write).unwrap();
            h.shutdown(std::net::Shutdown::Write).unwrap();
        }
        eventually(
            &format!("half-closed clients dropped (FIN with the request: {shut_first})"),
            Duration::from_secs(5),
            || pending_gauge(&server) == 0.0 && server.info().open_connections() == 0,
        );
        assert_eq!(token.accept(Accept::new("half".into())), Err(DecideError::Gone));
        assert_eq!(response.respond(Response::status(200)), Err(DecideError::Gone));
        // Nothing was written to them: they read the end of the stream, no response.
        for mut c in [s, h] {
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest);
            assert!(
                rest.is_empty(),
                "no answer to a client that left: {:?}",
                String::from_utf8_lossy(&rest)
            );
        }
    }
}
