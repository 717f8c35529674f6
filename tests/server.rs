//! The server over real loopback TCP, driven by the crate's own client core.

mod common;

use common::events::{text, welcome_id};
use common::{demo_server, http, read_response, Client, TIMEOUT};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use wsloop::frame::{encode_frame, Opcode};
use wsloop::handshake::client::ClientHandshake;
use wsloop::protocol::OwnedEvent;
use wsloop::CloseCode;

#[test]
fn http_routes_and_websocket_share_one_port() {
    let server = demo_server(|s| s);
    let addr = server.local_addr();
    let (status, head, body) = http(addr, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, 200);
    assert!(head.contains("Content-Type: application/json"));
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    assert!(body.contains("\"uptime_seconds\":"), "{body}");
    let (status, _, body) = http(addr, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, 200);
    assert!(body.contains("new WebSocket"));
    assert_eq!(http(addr, "GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n").0, 404);
    let (status, head, _) = http(addr, "DELETE /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET"));

    // Keep-alive: two requests on one connection, the second pipelined behind the first.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (a, head_a, _) = read_response(&mut s);
    let (b, _, _) = read_response(&mut s);
    assert_eq!((a, b), (200, 404));
    assert!(head_a.contains("Connection: keep-alive"));

    // And a WebSocket on the same port.
    let mut c = Client::connect(addr, "/echo");
    c.send_text("same port");
    assert_eq!(c.next(), Some(OwnedEvent::Text("same port".into())));
    let (_, _, body) = http(addr, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(body.contains("\"websockets\":1"), "{body}");
}

#[test]
fn bad_handshakes_get_statuses_a_client_can_act_on() {
    let server = demo_server(|s| s);
    let addr = server.local_addr();
    let base = "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let (status, head, _) = http(addr, &base.replace("Version: 13", "Version: 8"));
    assert_eq!(status, 426);
    assert!(head.contains("Sec-WebSocket-Version: 13"));
    let (status, _, body) = http(addr, &base.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"));
    assert_eq!(status, 400);
    assert!(body.contains("16-byte"), "{body}");
    assert_eq!(http(addr, &base.replace("GET /echo", "POST /echo")).0, 405);
    assert_eq!(http(addr, &base.replace("/echo", "/nowhere")).0, 404);
    let huge = base.replace(
        "Host: localhost",
        &format!("Host: localhost\r\nX-Pad: {}", "a".repeat(9000)),
    );
    assert_eq!(http(addr, &huge).0, 431);
}

#[test]
fn echo_text_and_binary() {
    let server = demo_server(|s| s);
    let mut c = Client::connect(server.local_addr(), "/echo");
    c.send_text("héllo");
    c.send_binary(&[0, 1, 2, 255]);
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    c.send_binary(&big);
    assert_eq!(c.next(), Some(OwnedEvent::Text("héllo".into())));
    assert_eq!(c.next(), Some(OwnedEvent::Binary(vec![0, 1, 2, 255])));
    assert_eq!(c.next(), Some(OwnedEvent::Binary(big)));
}

/// The id in a `/chat` welcome.
#[test]
fn broadcast_reaches_three_clients_on_every_loop() {
    let server = demo_server(|s| s.configure(|c| c.threads = 2));
    let addr = server.local_addr();
    let mut clients: Vec<Client> = Vec::new();
    let mut loops = BTreeSet::new();
    for _ in 0..3 {
        let mut c = Client::connect(addr, "/chat");
        loops.insert(welcome_id(c.next()).loop_index());
        // Who is there, then its own join notice once it is subscribed.
        assert!(matches!(c.next(), Some(OwnedEvent::Text(t)) if t.contains("\"type\":\"presence\"")));
        assert!(matches!(c.next(), Some(OwnedEvent::Text(t)) if t.contains("\"type\":\"join\"")));
        clients.push(c);
    }
    // Connections are handed to the loops in turn, so the three span both: delivery across
    // loops is exercised every time, not when the kernel happens to spread them.
    assert_eq!(loops, BTreeSet::from([0, 1]));
    clients[0].send_text("hi all");
    clients[1].send_binary(b"\x00bin");
    // Two senders on different loops: each receiver gets both, in either order.
    for c in &mut clients {
        let mut got = vec![c.next_message().unwrap(), c.next_message().unwrap()];
        got.sort_by_key(|e| matches!(e, OwnedEvent::Binary(_)));
        assert_eq!(
            got,
            [
                OwnedEvent::Text("hi all".into()),
                OwnedEvent::Binary(b"\x00bin".to_vec())
            ]
        );
    }
}

#[test]
fn chat_rooms_send_welcome_join_presence_messages_and_leave() {
    let server = demo_server(|s| s);
    let addr = server.local_addr();
    let mut a = Client::connect(addr, "/chat?room=blue&name=ada");
    let welcome = text(a.next());
    assert!(welcome.contains("\"room\":\"blue\",\"name\":\"ada\""), "{welcome}");
    // Who is there (sent at once), then its own join notice (published to the room).
    assert!(text(a.next()).contains("\"members\":[{\"id\""));
    assert!(text(a.next()).starts_with("{\"type\":\"join\""));
    let mut b = Client::connect(addr, "/chat?room=blue&name=Bo%20B");
    let mut other = Client::connect(addr, "/chat?room=green");
    let joined = text(a.next());
    assert!(
        joined.contains("\"name\":\"Bo B\"") && joined.contains("\"online\":2"),
        "{joined}"
    );
    // The newcomer gets the list of who is there; the others only the join notice.
    assert!(text(b.next()).starts_with("{\"type\":\"welcome\""));
    let presence = text(b.next());
    assert!(
        presence.starts_with("{\"type\":\"presence\"")
            && presence.contains("\"online\":2")
            && presence.contains("\"name\":\"ada\""),
        "{presence}"
    );
    b.send_text("hi \"blue\"");
    let msg = text(a.next());
    assert_eq!(common::json_field(&msg, "text").as_deref(), Some("hi \"blue\""));
    assert_eq!(common::json_field(&msg, "from").as_deref(), Some("Bo B"));
    assert!(msg.contains("\"ts\":"), "{msg}");
    b.close(CloseCode::NORMAL, "bye");
    assert!(b.wait_eof());
    let left = text(a.next());
    assert!(
        left.contains("\"type\":\"leave\"") && left.contains("\"code\":1000") && left.contains("\"online\":1"),
        "{left}"
    );
    // The other room heard nothing of it: its next message is its own.
    other.send_text("green only");
    assert_eq!(other.next_message(), Some(OwnedEvent::Text("green only".into())));
    // Bad room names are refused before the upgrade.
    let (status, _, _) = http(
        addr,
        "GET /chat?room=no%20spaces HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(status, 400);
}

/// Issue 10 item 3: an HTTP route that triggers a broadcast, with CORS as the upgrade's.
#[test]
fn posting_to_a_room_reaches_its_websockets() {
    let server = demo_server(|s| s);
    let addr = server.local_addr();
    let mut member = Client::connect(addr, "/chat?room=news");
    let mut outsider = Client::connect(addr, "/chat?room=other");
    let body = "breaking: ünïcode";
    let req = format!(
        "POST /rooms/news/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, _) = http(addr, &req);
    assert_eq!(status, 202);
    assert_eq!(member.next_message(), Some(OwnedEvent::Text(body.into())));
    outsider.send_text("mine");
    assert_eq!(outsider.next_message(), Some(OwnedEvent::Text("mine".into())));
    // A body split across reads, and pipelined behind another request.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"POST /rooms/news/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nhello")
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(b" worldGET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).0, 202);
    assert_eq!(read_response(&mut s).0, 200);
    assert_eq!(member.next_message(), Some(OwnedEvent::Text("hello world".into())));
    // HEAD, other methods, CORS.
    let mut h = TcpStream::connect(addr).unwrap();
    h.set_read_timeout(Some(TIMEOUT)).unwrap();
    h.write_all(b"HEAD /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut head = String::new();
    h.read_to_string(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(
        length > 0 && head.ends_with("\r\n\r\n"),
        "HEAD: the GET body's length, no body: {head}"
    );
    assert_eq!(
        http(addr, "GET /rooms/news/messages HTTP/1.1\r\nHost: localhost\r\n\r\n").0,
        405
    );
    let cross = |origin: &str| {
        http(
            addr,
            &format!(
                "POST /rooms/news/messages HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nContent-Length: 1\r\n\r\nx"
            ),
        )
    };
    assert_eq!(cross("http://evil.example").0, 403, "cross-site POST refused");
    let (status, head, _) = cross(&format!("http://{addr}"));
    assert_eq!(status, 202);
    assert!(
        head.contains(&format!("Access-Control-Allow-Origin: http://{addr}")),
        "{head}"
    );
    let (status, head, _) = http(
        addr,
        &format!(
            "OPTIONS /rooms/news/messages HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"
        ),
    );
    assert_eq!(status, 204);
    assert!(
        head.contains("Access-Control-Allow-Methods:") && head.contains("Access-Control-Allow-Headers: content-type")
    );
}

/// Text of a text event (panics on anything else).
#[test]
fn a_thousand_pipelined_messages_come_back_in_order() {
    let server = demo_server(|s| s);
    let mut c = Client::connect(server.local_addr(), "/echo");
    let mut batch = Vec::new();
    for i in 0..1000 {
        c.ws.send_text(&format!("message {i}"), &mut batch).unwrap();
    }
    c.stream.write_all(&batch).unwrap();
    for i in 0..1000 {
        assert_eq!(c.next(), Some(OwnedEvent::Text(format!("message {i}"))));
    }
}

#[test]
fn a_frame_in_the_same_packet_as_the_handshake_is_not_lost() {
    let server = demo_server(|s| s);
    let mut first = Vec::new();
    encode_frame(&mut first, true, Opcode::Text, Some([1, 2, 3, 4]), b"early bird");
    let mut c = Client::connect_with(server.local_addr(), "/echo", &[], &first);
    assert_eq!(c.next(), Some(OwnedEvent::Text("early bird".into())));
}

#[test]
fn ping_gets_pong() {
    let server = demo_server(|s| s);
    let mut c = Client::connect(server.local_addr(), "/echo");
    c.send_ping(b"are you there");
    assert_eq!(c.next(), Some(OwnedEvent::Pong(b"are you there".to_vec())));
}

#[test]
fn close_handshake_then_the_server_closes_tcp() {
    let server = demo_server(|s| s);
    let mut c = Client::connect(server.local_addr(), "/echo");
    c.close(CloseCode::NORMAL, "done");
    assert_eq!(
        c.next(),
        Some(OwnedEvent::Close(Some((CloseCode::NORMAL, String::new()))))
    );
    assert!(c.wait_eof());
}

#[test]
fn protocol_violation_gets_its_close_code() {
    let server = demo_server(|s| s);
    let mut c = Client::connect(server.local_addr(), "/echo");
    // An unmasked client frame: 1002 (RFC 6455 §5.1).
    let mut bad = Vec::new();
    encode_frame(&mut bad, true, Opcode::Text, None, b"naked");
    c.stream.write_all(&bad).unwrap();
    let close = c.next();
    assert!(
        matches!(close, Some(OwnedEvent::Close(Some((CloseCode(1002), _))))),
        "{close:?}"
    );
    assert!(c.wait_eof());
}

#[test]
fn heartbeat_pings_then_drops_a_silent_peer() {
    let server = demo_server(|s| {
        s.configure(|c| {
            c.ping_interval = Duration::from_millis(300);
            c.idle_timeout = Duration::from_millis(1500);
        })
    });
    let addr = server.local_addr();
    // A peer that completes the handshake and then never answers anything.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let hs = ClientHandshake::new(&[]);
    stream.write_all(&hs.request("localhost", "/echo", &[])).unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("server never dropped the silent peer: {e}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1400), "dropped too early: {elapsed:?}");
    // The server pinged before giving up: a Ping frame (0x89) follows the 101 response.
    let head_end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        seen.get(head_end),
        Some(&0x89),
        "no ping seen: {:02x?}",
        &seen[head_end..]
    );
}

#[test]
fn a_peer_that_answers_pings_stays_connected() {
    let server = demo_server(|s| {
        s.configure(|c| {
            c.ping_interval = Duration::from_millis(200);
            c.idle_timeout = Duration::from_millis(3000);
        })
    });
    let mut c = Client::connect(server.local_addr(), "/echo");
    // Our client core answers pings automatically; keep reading for a while.
    c.stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let until = Instant::now() + Duration::from_millis(1500);
    let mut pings = 0;
    let mut chunk = [0u8; 1024];
    while Instant::now() < until {
        match c.stream.read(&mut chunk) {
            Ok(0) => panic!("server dropped a peer that answers pings"),
            Ok(n) => {
                let mut out = Vec::new();
                let mut b = chunk[..n].to_vec();
                for e in c.ws.receive_all(&mut b, &mut out).unwrap() {
                    if matches!(e, OwnedEvent::Ping(_)) {
                        pings += 1;
                    }
                }
                c.stream.write_all(&out).unwrap();
            }
            Err(_) => {}
        }
    }
    assert!(pings >= 2, "expected several heartbeats, saw {pings}");
    c.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.send_text("still here");
    assert_eq!(c.next_message(), Some(OwnedEvent::Text("still here".into())));
}

#[test]
fn handshake_timeout_drops_a_slow_client() {
    let server = demo_server(|s| s.configure(|c| c.handshake_timeout = Duration::from_millis(300)));
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n").unwrap(); // never finished
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "expected the server to close");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_client_that_never_reads_is_bounded_and_does_not_slow_others() {
    let high_water = 256 * 1024;
    let server = demo_server(|s| s.configure(|c| c.backpressure_high_water = high_water));
    let addr = server.local_addr();
    let mut hog = Client::connect(addr, "/echo");
    hog.stream.set_nonblocking(true).unwrap();
    let mut frame = Vec::new();
    hog.ws.send_binary(&vec![7u8; 16 * 1024], &mut frame).unwrap();
    // Write echo requests without ever reading the echoes, until the server stops reading.
    let mut written = 0usize;
    let mut offset = 0usize; // position inside the repeated frame, so the stream stays well-formed
    let mut blocked_for = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && blocked_for < Duration::from_millis(500) {
        match hog.stream.write(&frame[offset..]) {
            Ok(n) => {
                written += n;
                offset = (offset + n) % frame.len();
                blocked_for = Duration::ZERO;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                blocked_for += Duration::from_millis(50);
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
    // The server stopped reading: what it accepted is bounded by its high-water mark plus
    // socket buffers (a few MiB on loopback), nowhere near what an unbounded server takes.
    assert!(
        blocked_for >= Duration::from_millis(500),
        "server kept reading a client that never reads"
    );
    assert!(
        written < 64 << 20,
        "server took {written} bytes from a client that never reads"
    );

    // Meanwhile another client is served promptly.
    let mut other = Client::connect(addr, "/echo");
    let t = Instant::now();
    other.send_text("not blocked");
    assert_eq!(other.next(), Some(OwnedEvent::Text("not blocked".into())));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "other client slowed: {:?}",
        t.elapsed()
    );
}

#[test]
fn max_connections_answers_503_and_stays_healthy() {
    let server = demo_server(|s| s.configure(|c| c.max_connections = 2));
    let addr = server.local_addr();
    let mut a = Client::connect(addr, "/echo");
    let _b = Client::connect(addr, "/echo");
    let (status, _, _) = http(addr, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, 503);
    a.send_text("still fine");
    assert_eq!(a.next(), Some(OwnedEvent::Text("still fine".into())));
    a.close(CloseCode::NORMAL, "");
    assert!(a.wait_eof());
    drop(a);
    // A slot is free again as soon as the server has closed its side.
    let deadline = Instant::now() + TIMEOUT;
    while http(addr, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the closed connection's slot never came back"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn graceful_shutdown_sends_1001_and_exits() {
    let server = demo_server(|s| {
        s.configure(|c| {
            c.threads = 2;
            c.shutdown_grace = Duration::from_secs(3);
        })
    });
    let addr = server.local_addr();
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(addr, "/echo")).collect();
    server.shutdown();
    for c in &mut clients {
        let ev = c.next_message();
        assert!(
            matches!(ev, Some(OwnedEvent::Close(Some((CloseCode::GOING_AWAY, _))))),
            "{ev:?}"
        );
        assert!(c.wait_eof());
    }
    let t = Instant::now();
    server.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(TcpStream::connect(addr).is_err(), "still accepting after shutdown");
}

mod embedded {
    //! The library API as an embedding application uses it.
    use super::common::{demo::DemoApp, http, Client};
    use std::sync::{Arc, Mutex};
    use wsloop::handshake::Request;
    use wsloop::protocol::OwnedEvent;
    use wsloop::server::{Accept, ConnId, Context, Handler, Message, OriginPolicy, RequestContext, Response, Server};
    use wsloop::CloseCode;

    /// Refuses upgrades without `?token=ok`; relays each message to the connection named in it
    /// ("to <id>: text"); records close codes.
    #[derive(Default)]
    struct App {
        ids: Arc<Mutex<Vec<ConnId>>>,
        closes: Arc<Mutex<Vec<u16>>>,
    }

    fn wait_until(mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + super::TIMEOUT;
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    impl Handler for App {
        type State = ();
        fn on_upgrade(&self, req: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
            match req.query() {
                Some("token=ok") => Ok(Accept::default()),
                _ => Err(Response::text(401, "no token\n")),
            }
        }
        fn on_open(&self, ctx: &mut Context<'_>) {
            self.ids.lock().unwrap().push(ctx.id());
        }
        fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
            if let Message::Text(t) = message {
                if let Some(rest) = t.strip_prefix("to ") {
                    let (idx, text) = rest.split_once(": ").unwrap();
                    let target = self.ids.lock().unwrap()[idx.parse::<usize>().unwrap()];
                    ctx.send_to(target, Message::Text(text)).unwrap();
                }
            }
        }
        fn on_close(&self, _ctx: &mut Context<'_>, code: CloseCode, _reason: &str) {
            self.closes.lock().unwrap().push(code.0);
        }
    }

    #[test]
    fn upgrade_hook_refuses_with_its_status_and_send_to_crosses_loops() {
        let app = App::default();
        let closes = app.closes.clone();
        let app_ids = app.ids.clone();
        let server = Server::new(app)
            .configure(|c| {
                c.bind = "127.0.0.1:0".parse().unwrap();
                c.threads = 2;
            })
            .start()
            .unwrap();
        let addr = server.local_addr();
        let upgrade = "GET /x HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let (status, _, body) = http(addr, upgrade);
        assert_eq!((status, body.as_str()), (401, "no token\n"));

        let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(addr, "/x?token=ok")).collect();
        wait_until(|| app_ids.lock().unwrap().len() == 4);
        let loops: std::collections::BTreeSet<usize> =
            app_ids.lock().unwrap().iter().map(|id| id.loop_index()).collect();
        assert_eq!(loops.len(), 2, "the clients span both loops");
        // Client 0 reaches each of the others by id, on its loop and on the other.
        for i in 1..4 {
            clients[0].send_text(&format!("to {i}: hello {i}"));
            assert_eq!(clients[i].next(), Some(OwnedEvent::Text(format!("hello {i}"))));
        }
        clients[2].close(CloseCode(4001), "custom");
        assert!(clients[2].wait_eof());
        wait_until(|| !closes.lock().unwrap().is_empty());
        assert_eq!(*closes.lock().unwrap(), vec![4001]);
    }

    #[test]
    fn origin_check_refuses_other_origins_with_403() {
        let server = Server::new(DemoApp::new())
            .configure(|c| {
                c.origin_policy = OriginPolicy::List(vec!["http://good.example".into()]);
                c.bind = "127.0.0.1:0".parse().unwrap();
                c.threads = 1;
            })
            .start()
            .unwrap();
        let addr = server.local_addr();
        let upgrade = |origin: &str| {
            format!(
                "GET /echo HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
        };
        assert_eq!(http(addr, &upgrade("http://evil.example")).0, 403);
        let mut ok = Client::connect_with(addr, "/echo", &[("Origin", "http://good.example")], &[]);
        ok.send_text("welcome");
        assert_eq!(ok.next(), Some(OwnedEvent::Text("welcome".into())));
    }
}
