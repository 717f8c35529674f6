//! HTTP responses by RFC 9110 and the API edges a newcomer's app found (issue 19): 204 and 304
//! framing read by a real HTTP client (Python's `http.client`) on one keep-alive connection,
//! framing headers a handler cannot double, close codes that may not go on the wire, the close
//! log line, and the `wsloop serve` banner and bind error.
//!
//! The Python test needs `python3` (only its standard library). Without it the test prints
//! `skipped: ...` and passes, unless `WSLOOP_REQUIRE_INTEROP=1` makes that a failure.

mod common;
#[path = "interop/harness.rs"]
mod harness;

use common::events::text;
use common::lines::lines_of;
use common::process::{wsloop_bin, ServerProcess, Spawn};
use common::{read_response, Client, TIMEOUT};
use harness::{prerequisites, probe, python};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use wsloop::handshake::Request;
use wsloop::protocol::OwnedEvent;
use wsloop::server::{Accept, ConnId, Context, Handler, Message, PushError, RequestContext, Response, RunningServer};
use wsloop::CloseCode;

const REQUIRE: &str = "WSLOOP_REQUIRE_INTEROP";

/// Answers with the statuses under test; every other path with `after <path>`.
#[derive(Default)]
struct Statuses {
    opened: Mutex<Vec<ConnId>>,
}

impl Handler for Statuses {
    type State = ();

    fn on_request(&self, request: &Request, _: &mut RequestContext<'_>) -> Response {
        match request.path() {
            "/no-content" => Response::status(204),
            "/not-modified" => Response::status(304),
            // A handler that gives a 304 a body: the server must not send it (RFC 9110 §15.4.5).
            "/not-modified-with-body" => Response::text(304, "a body a 304 may not carry\n"),
            // Framing headers pushed straight into the public field, past the builder: the
            // server's own framing must still be the only one on the wire.
            "/framing" => {
                let mut r = Response::text(200, "four");
                for (n, v) in [
                    ("Content-Length", "999"),
                    ("Transfer-Encoding", "chunked"),
                    ("Connection", "close"),
                    ("X-Kept", "yes"),
                ] {
                    r.headers.push((n.into(), v.into()));
                }
                r
            }
            path => Response::text(200, format!("after {path}\n")),
        }
    }

    fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
        Ok(Accept::default())
    }

    fn on_open(&self, ctx: &mut Context<'_>) {
        self.opened.lock().unwrap().push(ctx.id());
    }

    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        let Message::Text(text) = message else { return };
        match text.strip_prefix("close ").map(str::parse::<u16>) {
            Some(Ok(code)) => match ctx.close(CloseCode(code), "asked to") {
                Ok(()) => {}
                Err(e) => {
                    ctx.send_text(&format!("refused: {e}"));
                }
            },
            _ => {
                ctx.send_text(text);
            }
        }
    }
}

fn start(handler: Statuses) -> (RunningServer, Arc<Statuses>) {
    let handler = Arc::new(handler);
    let server = common::start(ArcHandler(handler.clone()), |s| s);
    (server, handler)
}

/// Lets the test keep a reference to the handler it gave the server.
struct ArcHandler(Arc<Statuses>);

impl Handler for ArcHandler {
    type State = ();
    fn on_request(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Response {
        self.0.on_request(request, ctx)
    }
    fn on_upgrade(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Result<Accept, Response> {
        self.0.on_upgrade(request, ctx)
    }
    fn on_open(&self, ctx: &mut Context<'_>) {
        self.0.on_open(ctx)
    }
    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        self.0.on_message(ctx, message)
    }
}

/// Python's `http.client` on ONE keep-alive connection: each response under test, then a
/// request behind it that must parse. A 204 with a body (or any stray byte) makes the next
/// status line garbage; the script also checks the headers themselves.
const PY_CLIENT: &str = r#"
import http.client, sys
host, port = sys.argv[1], int(sys.argv[2])
origin = "http://%s:%d" % (host, port)
conn = http.client.HTTPConnection(host, port, timeout=10)
first_sock = None

def ask(method, path, headers=None):
    global first_sock
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    if first_sock is None:
        first_sock = conn.sock
    assert conn.sock is first_sock, "%s %s: the connection was not kept alive" % (method, path)
    assert not r.will_close, "%s %s: the server closes the connection" % (method, path)
    return r, body

def behind(after):
    path = "/behind-" + after.strip("/")
    r, body = ask("GET", path)
    assert r.status == 200 and body == ("after %s\n" % path).encode(), (after, r.status, body)

cases = [
    ("OPTIONS", "/preflight", {"Origin": origin, "Access-Control-Request-Method": "POST"}, 204),
    ("GET", "/no-content", {}, 204),
    ("HEAD", "/no-content", {}, 204),
    ("GET", "/not-modified", {}, 304),
    ("GET", "/not-modified-with-body", {}, 304),
    ("HEAD", "/not-modified-with-body", {}, 304),
]
for method, path, headers, status in cases:
    r, body = ask(method, path, headers)
    assert r.status == status, (method, path, r.status)
    assert body == b"", (method, path, body)
    if status == 204:
        assert r.getheader("Content-Length") is None, (method, path, r.getheaders())
        assert r.getheader("Transfer-Encoding") is None, (method, path, r.getheaders())
    behind(path)

# HEAD answers with the Content-Length the GET would have had, and no body (RFC 9110 §9.3.2).
r, body = ask("HEAD", "/sized")
assert body == b"" and r.getheader("Content-Length") == str(len(b"after /sized\n")), r.getheaders()
behind("head")
print("OK")
"#;

#[test]
fn python_http_client_reads_204_and_304_on_one_keep_alive_connection() {
    let test = "python_http_client_reads_204_and_304_on_one_keep_alive_connection";
    let missing: Vec<String> = probe(&python(), &["-c", "import http.client"]).into_iter().collect();
    if prerequisites(
        test,
        REQUIRE,
        &missing,
        "apt-get install python3 (its standard library is enough)",
    )
    .is_err()
    {
        return;
    }
    let (server, _) = start(Statuses::default());
    let addr = server.local_addr();
    harness::expect_ok(
        "python http.client",
        Command::new(python())
            .args(["-c", PY_CLIENT])
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string()),
        Duration::from_secs(30),
    );
    server.shutdown();
    server.join().unwrap();
}

/// Sends `requests` on one connection and reads the answers' bytes until the last one (a
/// 200 with a known body) has arrived whole.
fn exchange(addr: SocketAddr, requests: &str, last_body: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(requests.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.ends_with(last_body.as_bytes()) {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "EOF after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(got).unwrap()
}

#[test]
fn bodiless_statuses_go_out_as_a_head_alone() {
    let (server, _) = start(Statuses::default());
    let addr = server.local_addr();
    let host = format!("Host: {addr}\r\n");
    let wire = exchange(
        addr,
        &format!(
            "GET /no-content HTTP/1.1\r\n{host}\r\n\
             OPTIONS /x HTTP/1.1\r\n{host}Origin: http://{addr}\r\nAccess-Control-Request-Method: PUT\r\n\r\n\
             GET /not-modified-with-body HTTP/1.1\r\n{host}\r\n\
             GET /end HTTP/1.1\r\n{host}\r\n"
        ),
        "after /end\n",
    );
    let responses: Vec<&str> = wire.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(responses.len(), 4, "{wire:?}");
    for r in &responses[..3] {
        assert!(r.ends_with("\r\n\r\n"), "a head alone, no body: {r:?}");
        assert!(!r.to_ascii_lowercase().contains("content-length"), "{r:?}");
    }
    assert!(responses[0].starts_with("204 No Content\r\n"), "{wire:?}");
    assert!(responses[1].starts_with("204 No Content\r\n"), "{wire:?}");
    assert!(responses[2].starts_with("304 Not Modified\r\n"), "{wire:?}");
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn framing_headers_from_a_handler_are_never_sent_twice() {
    let (server, _) = start(Statuses::default());
    let addr = server.local_addr();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(
        format!("GET /framing HTTP/1.1\r\nHost: {addr}\r\n\r\nGET /end HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let (status, head, body) = read_response(&mut s);
    assert_eq!((status, body.as_str()), (200, "four"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert_eq!(lower.matches("content-length:").count(), 1, "{head}");
    assert!(lower.contains("content-length: 4\r\n"), "{head}");
    assert!(!lower.contains("transfer-encoding"), "{head}");
    assert_eq!(lower.matches("connection:").count(), 1, "{head}");
    assert!(lower.contains("connection: keep-alive"), "{head}");
    assert!(head.contains("X-Kept: yes\r\n"), "other headers stay: {head}");
    // Still framed right: the request behind it is answered on the same connection.
    let (status, _, body) = read_response(&mut s);
    assert_eq!((status, body.as_str()), (200, "after /end\n"));
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn closing_with_a_code_that_may_not_go_on_the_wire_is_an_error_the_handler_sees() {
    let (server, _) = start(Statuses::default());
    let mut c = Client::connect(server.local_addr(), "/");
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        c.send_text(&format!("close {code}"));
        let answer = text(c.next_message());
        assert!(
            answer.starts_with(&format!("refused: close code {code} ")),
            "{code}: {answer}"
        );
        // Nothing happened to the connection: it still echoes.
        c.send_text("still open?");
        assert_eq!(text(c.next_message()), "still open?", "{code}");
    }
    // A code that may go on the wire closes as before.
    c.send_text("close 4000");
    match c.next() {
        Some(OwnedEvent::Close(Some((code, reason)))) => {
            assert_eq!((code, reason.as_str()), (CloseCode(4000), "asked to"))
        }
        other => panic!("expected Close 4000, got {other:?}"),
    }
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn server_handle_close_with_a_code_that_may_not_go_on_the_wire_is_an_error() {
    let (server, handler) = start(Statuses::default());
    let mut c = Client::connect(server.local_addr(), "/");
    c.send_text("hello");
    assert_eq!(text(c.next_message()), "hello");
    let id = handler.opened.lock().unwrap()[0];
    let handle = server.handle();
    for code in [999u16, 1005, 1006, 1015, 5000] {
        assert_eq!(
            handle.close(id, CloseCode(code), "no"),
            Err(PushError::InvalidCloseCode(code)),
            "{code}"
        );
    }
    c.send_text("still open?");
    assert_eq!(text(c.next_message()), "still open?");
    assert_eq!(handle.close(id, CloseCode(4001), "bye"), Ok(()));
    match c.next() {
        Some(OwnedEvent::Close(Some((code, _)))) => assert_eq!(code, CloseCode(4001)),
        other => panic!("expected Close 4001, got {other:?}"),
    }
    server.shutdown();
    server.join().unwrap();
}

/// Polls the child's log until a connection's `close` line for `path` appears.
fn close_line(server: &ServerProcess, path: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    let needle = format!(" {path} #");
    loop {
        if let Some(l) = server
            .log_text()
            .lines()
            .find(|l| l.contains(" close ") && l.contains(&needle))
        {
            return l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no close line for {path}: {}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_close_log_line_states_the_code_on_close_got() {
    let server = ServerProcess::start(Spawn::default());
    // A peer that drops TCP without a Close: on_close gets 1006 (RFC 6455 §7.1.5).
    let mut c = Client::connect(server.addr, "/echo");
    c.send_text("hi");
    assert_eq!(text(c.next_message()), "hi");
    drop(c);
    let line = close_line(&server, "/echo");
    assert!(line.contains(" code=1006 "), "{line}");
    // A clean close keeps its own code.
    let mut c = Client::connect(server.addr, "/");
    c.close(CloseCode(4005), "done");
    assert!(c.wait_eof());
    let line = close_line(&server, "/");
    assert!(line.contains(" code=4005 "), "{line}");
}

/// Starts `wsloop serve ARGS` with its stdout read line by line.
fn serve(args: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = Command::new(wsloop_bin())
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wsloop");
    let rx = lines_of(child.stdout.take().expect("piped stdout"));
    (child, rx)
}

/// The address in the banner's `http://ADDR` (fails the test if there is none).
fn banner_addr(banner: &str) -> SocketAddr {
    banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
}

#[test]
fn the_banner_names_the_bound_address_after_the_bind() {
    let (mut child, lines) = serve(&["--bind", "127.0.0.1:0"]);
    let banner = lines.recv_timeout(TIMEOUT).expect("a banner on stdout");
    let _ = child.kill();
    let _ = child.wait();
    let addr = banner_addr(&banner);
    assert_ne!(addr.port(), 0, "{banner}");
}

#[test]
fn the_banner_is_live_and_a_bind_error_names_the_address() {
    let (mut child, lines) = serve(&["--bind", "127.0.0.1:0"]);
    let banner = lines.recv_timeout(TIMEOUT).expect("a banner on stdout");
    let addr = banner_addr(&banner);
    // Printed after the bind: the address answers at once.
    let health = common::http(
        addr,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(health.0, 200, "{health:?}");

    // A port already taken: the error names it, and no banner claims to serve on it.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let out = harness::run(
        Command::new(wsloop_bin()).args(["serve", "--bind", &busy]),
        Duration::from_secs(20),
    )
    .unwrap();
    assert!(!out.success(), "{}", out.describe());
    assert!(out.stderr.contains(&busy), "the error names {busy}: {}", out.describe());
    assert!(
        !out.stdout.contains("serving"),
        "no banner before a failed bind: {}",
        out.describe()
    );
}
