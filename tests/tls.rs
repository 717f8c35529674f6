//! `https://` and `wss://` (issue 20, server side): `wsloop serve --tls-cert/--tls-key` run as a
//! child process, certificates made per run with rcgen (a throwaway CA and a leaf for
//! `localhost` and 127.0.0.1), and clients that are ours (rustls in blocking mode), Python's
//! `websockets` and curl. Then the bad input: plain HTTP and garbage on the TLS port, a
//! half-sent ClientHello and a silent client cut at the handshake timeout, and a flood of
//! half-open handshakes while `/health` over TLS keeps answering.

mod common;
#[path = "interop/harness.rs"]
mod harness;

use common::pki::TestCa;
use common::process::{ServerProcess, Spawn};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

// ----- certificates --------------------------------------------------------------------------

/// A CA and the files of one leaf it signed, in a temporary directory removed on drop.
struct Pki {
    dir: PathBuf,
    ca: TestCa,
}

impl Pki {
    fn new(test: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("wsloop-tls-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa::new("wsloop test CA");
        std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
        Pki { dir, ca }
    }

    /// Writes a new leaf for localhost and 127.0.0.1 (chain: leaf then CA) to cert.pem and
    /// key.pem; returns its DER, to recognise it on the wire.
    fn leaf(&self, name: &str) -> CertificateDer<'static> {
        let leaf = self.ca.leaf(&["localhost", "127.0.0.1"], name, false);
        std::fs::write(self.cert(), leaf.chain_pem(&self.ca)).unwrap();
        std::fs::write(self.key(), leaf.key.serialize_pem()).unwrap();
        leaf.cert.der().clone()
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.ca.client_config()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve(pki: &Pki, extra: &[&str]) -> ServerProcess {
    let cert = pki.cert().to_string_lossy().into_owned();
    let key = pki.key().to_string_lossy().into_owned();
    let mut args = vec!["--tls-cert", &cert, "--tls-key", &key, "--threads", "1"];
    args.extend_from_slice(extra);
    // Owned strings outlive the spawn: the process copies its arguments.
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    ServerProcess::start(Spawn {
        args: args.iter().map(String::as_str).collect(),
        ..Default::default()
    })
}

// ----- a blocking rustls client --------------------------------------------------------------

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects and completes the TLS handshake for `localhost`.
fn connect(pki: &Pki, addr: SocketAddr) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(pki.client_config(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    tls
}

/// The leaf certificate the server presented.
fn presented(tls: &Tls) -> CertificateDer<'static> {
    tls.conn.peer_certificates().expect("server certificates")[0].clone()
}

/// One HTTP/1.1 request on `tls`; returns the response head and body (read by Content-Length).
fn request(tls: &mut Tls, path: &str) -> (String, String) {
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    tls.flush().unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tls.read(&mut byte).expect("response head");
        assert_eq!(n, 1, "closed in the response head: {}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("Content-Length");
    let mut body = vec![0u8; len];
    tls.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

/// GET /health on a new TLS connection: status line and how long the whole exchange took.
fn tls_health(pki: &Pki, addr: SocketAddr) -> (String, Duration) {
    let t = Instant::now();
    let mut tls = connect(pki, addr);
    let (head, _) = request(&mut tls, "/health");
    (head.lines().next().unwrap_or("").to_owned(), t.elapsed())
}

/// A client frame (RFC 6455 §5.2): FIN, `opcode`, masked with a fixed key (§5.3).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// Reads one unmasked server frame with a short payload: (first byte, payload).
fn server_frame(tls: &mut Tls) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tls.read_exact(&mut head).unwrap();
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = usize::from(head[1] & 0x7f);
    assert!(len < 126);
    let mut payload = vec![0u8; len];
    tls.read_exact(&mut payload).unwrap();
    (head[0], payload)
}

/// Upgrades `tls` to a WebSocket on `path` (the request by hand).
fn upgrade(tls: &mut Tls, path: &str) {
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    tls.flush().unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(tls.read(&mut byte).unwrap(), 1, "closed during the upgrade");
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // RFC 6455 §1.3's example key and its accept value.
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
}

fn echo(tls: &mut Tls, text: &str) {
    tls.write_all(&client_frame(0x1, text.as_bytes())).unwrap();
    tls.flush().unwrap();
    let (b0, payload) = server_frame(tls);
    assert_eq!(b0, 0x81, "a final text frame");
    assert_eq!(payload, text.as_bytes());
}

/// The bytes of a real ClientHello (rustls' own), for the hostile tests to send in part.
fn client_hello(pki: &Pki) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(pki.client_config(), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    assert!(hello.len() > 100, "a ClientHello of {} bytes", hello.len());
    hello
}

/// Reads until EOF, an error or `within`; returns what came and when it ended.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration, bool) {
    let t = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, t.elapsed(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A reset is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, t.elapsed(), true),
            Err(_) => return (got, t.elapsed(), false),
        }
    }
}

fn metric(pki: &Pki, addr: SocketAddr, line_start: &str) -> f64 {
    let mut tls = connect(pki, addr);
    let (_, body) = request(&mut tls, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
}

// ----- the tests -----------------------------------------------------------------------------

#[test]
fn https_health_and_wss_echo_over_one_port() {
    let pki = Pki::new("basic");
    let leaf = pki.leaf("wsloop leaf one");
    let server = serve(&pki, &[]);
    let mut tls = connect(&pki, server.addr);
    assert_eq!(presented(&tls), leaf, "the server presents the leaf from --tls-cert");
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]), "ALPN http/1.1");
    let (head, body) = request(&mut tls, "/health");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    // Keep-alive: a second request on the same TLS connection.
    let (head, _) = request(&mut tls, "/health");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let mut ws = connect(&pki, server.addr);
    upgrade(&mut ws, "/echo");
    echo(&mut ws, "hello over TLS");
    echo(&mut ws, "and again");
    // Close 1000 (RFC 6455 §5.5.1): echoed, then the server's close_notify and FIN.
    ws.write_all(&client_frame(0x8, &[0x03, 0xe8])).unwrap();
    ws.flush().unwrap();
    let (b0, payload) = server_frame(&mut ws);
    assert_eq!((b0, payload.as_slice()), (0x88, &[0x03, 0xe8][..]));
    let mut rest = Vec::new();
    // A clean TLS end: read_to_end returns Ok only after the peer's close_notify (rustls
    // reports a bare TCP FIN as UnexpectedEof).
    ws.read_to_end(&mut rest)
        .expect("the server sends close_notify before closing");
    assert!(rest.is_empty());

    assert!(metric(&pki, server.addr, "wsloop_tls_handshakes_total{result=\"ok\"}") >= 3.0);
}

#[test]
fn serve_trace_shows_the_tls_handshake() {
    let pki = Pki::new("trace");
    pki.leaf("wsloop trace");
    let cert = pki.cert().to_string_lossy().into_owned();
    let key = pki.key().to_string_lossy().into_owned();
    let mut child = Command::new(common::process::wsloop_bin())
        .args(["serve", "--bind", "127.0.0.1:0", "--threads", "1", "--trace"])
        .args(["--tls-cert", &cert, "--tls-key", &key])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Lines through a channel, so that a line that never comes fails the test at a deadline
    // instead of hanging it.
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stdout).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let banner = rx.recv_timeout(TIMEOUT).expect("the banner");
    assert!(banner.starts_with("wsloop serving on https://"), "{banner}");
    assert!(banner.contains("wss://"), "{banner}");
    let addr: SocketAddr = banner["wsloop serving on https://".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (status, _) = tls_health(&pki, addr);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let line = rx.recv_timeout(TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("a trace line for the TLS handshake");
    assert!(line.contains("TLS handshake done: TLSv1_3 TLS13_"), "{line}");
    assert!(line.contains("ALPN http/1.1"), "{line}");
    assert!(line.contains("SNI localhost"), "{line}");
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_only() {
    let pki = Pki::new("reload");
    let first = pki.leaf("wsloop first");
    let server = serve(&pki, &[]);
    let mut old = connect(&pki, server.addr);
    assert_eq!(presented(&old), first);
    upgrade(&mut old, "/echo");
    echo(&mut old, "before the reload");

    let second = pki.leaf("wsloop second");
    assert_ne!(first, second);
    let pid = server.child.id().to_string();
    let hup = |what: &str| {
        assert!(
            Command::new("kill").args(["-HUP", &pid]).status().unwrap().success(),
            "{what}"
        );
    };
    hup("send SIGHUP");
    common::wait::eventually("the reload is logged", TIMEOUT, || {
        server.log_text().contains("SIGHUP: TLS certificate and key read again")
    });
    let fresh = connect(&pki, server.addr);
    assert_eq!(presented(&fresh), second, "a new connection gets the new certificate");
    // The open connection keeps its session (and the certificate it was accepted with).
    echo(&mut old, "after the reload");

    // A bad file: logged, and the current certificate stays.
    std::fs::write(pki.key(), "not a key\n").unwrap();
    hup("send SIGHUP");
    common::wait::eventually("the failed reload is logged", TIMEOUT, || {
        server.log_text().contains("TLS reload failed")
    });
    assert!(
        server.log_text().contains("key.pem"),
        "the error names the file: {}",
        server.log_text()
    );
    let still = connect(&pki, server.addr);
    assert_eq!(presented(&still), second);
    let mut server = server;
    assert!(server.alive());
}

#[test]
fn bad_tls_flags_and_files_are_refused_with_the_file_named() {
    let pki = Pki::new("flags");
    pki.leaf("wsloop flags");
    let cert = pki.cert().to_string_lossy().into_owned();
    let key = pki.key().to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let out = Command::new(common::process::wsloop_bin())
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--tls-cert", &cert]);
    assert!(e.contains("--tls-key"), "{e}");
    let e = run(&["--tls-key", &key]);
    assert!(e.contains("--tls-cert"), "{e}");
    let missing = pki.dir.join("missing.pem").to_string_lossy().into_owned();
    let e = run(&["--tls-cert", &missing, "--tls-key", &key]);
    assert!(e.contains("missing.pem"), "{e}");
    // The key given as the certificate: no certificate in it.
    let e = run(&["--tls-cert", &key, "--tls-key", &key]);
    assert!(e.contains("no certificate found"), "{e}");
    let e = run(&["--tls-cert", &cert, "--tls-key", &cert]);
    assert!(e.contains("no private key found"), "{e}");
}

#[test]
fn plain_http_and_garbage_on_the_tls_port_are_closed_and_the_server_stays_up() {
    let pki = Pki::new("garbage");
    pki.leaf("wsloop garbage");
    let server = serve(&pki, &[]);

    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (got, _, closed) = read_until_closed(&mut plain, TIMEOUT);
    assert!(closed, "closed after the answer");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("https://"), "{text}");

    // Binary garbage: an alert (content type 21, RFC 8446 §5.1) or a bare close.
    for garbage in [
        &[0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9][..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef][..],
        &[0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5][..],
    ] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(garbage).unwrap();
        let (got, _, closed) = read_until_closed(&mut s, TIMEOUT);
        assert!(closed, "{garbage:02x?}: the connection is closed");
        assert!(
            got.is_empty() || got[0] == 21,
            "{garbage:02x?}: only an alert comes back: {got:02x?}"
        );
    }

    let (status, _) = tls_health(&pki, server.addr);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(metric(&pki, server.addr, "wsloop_tls_handshakes_total{result=\"failed\"}") >= 4.0);
    let mut server = server;
    assert!(server.alive());
}

#[test]
fn a_half_sent_client_hello_and_a_silent_client_are_cut_at_the_handshake_timeout() {
    let pki = Pki::new("timeout");
    pki.leaf("wsloop timeout");
    let server = serve(&pki, &["--handshake-timeout", "1"]);
    let hello = client_hello(&pki);

    let start = Instant::now();
    let mut half = TcpStream::connect(server.addr).unwrap();
    half.write_all(&hello[..hello.len() / 2]).unwrap();
    // TLS done, then no request: the same deadline (it runs from accept).
    let silent = connect(&pki, server.addr);
    let mut silent_tcp = silent.sock.try_clone().unwrap();

    let (_, _, closed) = read_until_closed(&mut half, TIMEOUT);
    assert!(closed, "the half-sent ClientHello is cut");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "cut by the timeout, not at once: {took:?}"
    );
    let (_, _, closed) = read_until_closed(&mut silent_tcp, TIMEOUT);
    assert!(closed, "the silent client is cut");
    assert!(start.elapsed() >= Duration::from_millis(800), "{:?}", start.elapsed());
    let (status, _) = tls_health(&pki, server.addr);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
}

#[test]
fn a_flood_of_half_open_handshakes_does_not_starve_health() {
    let pki = Pki::new("flood");
    pki.leaf("wsloop flood");
    let server = serve(&pki, &[]);
    let hello = client_hello(&pki);
    let mut flood = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        // Every part of a ClientHello but its last bytes: each waits for the rest.
        let cut = hello.len() - 1 - (i % 20);
        s.write_all(&hello[..cut]).unwrap();
        flood.push(s);
    }
    // Complete handshakes too, in a burst, while the half-open ones sit there.
    let burst: Vec<_> = (0..20).map(|_| connect(&pki, server.addr)).collect();
    for _ in 0..5 {
        let (status, took) = tls_health(&pki, server.addr);
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(
            took < Duration::from_secs(2),
            "/health over TLS took {took:?} during the flood"
        );
    }
    drop(burst);
    let mut server = server;
    assert!(server.alive());
    drop(flood);
}

/// A flood of complete ClientHellos (each sent, then the socket closed: the server pays the
/// key exchange and signature, the flooder nothing) must not starve a new client's handshake.
/// Handshakes wait their turn in arrival order: before, a handshake put off to the next turn
/// was overtaken every turn by the flood's newer ones and cut at the handshake timeout.
#[test]
fn a_client_hello_flood_does_not_starve_new_handshakes() {
    let pki = Pki::new("hello-flood");
    pki.leaf("wsloop hello flood");
    let server = serve(&pki, &["--handshake-timeout", "5"]);
    let hello = Arc::new(client_hello(&pki));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let (hello, stop, addr) = (hello.clone(), stop.clone(), server.addr);
            std::thread::spawn(move || {
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(mut s) = TcpStream::connect(addr) {
                        let _ = s.write_all(&hello);
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Each on a new connection, its handshake in the queue with the flood's.
    let results: Vec<_> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tls_health(&pki, server.addr).0));
            (
                got.unwrap_or_else(|_| "no answer (the handshake was cut)".to_owned()),
                t.elapsed(),
            )
        })
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent: u64 = flooders.into_iter().map(|t| t.join().unwrap()).sum();
    for (status, took) in &results {
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "a new TLS client during a flood of {sent} ClientHellos: {status} after {took:?}"
        );
    }
}

#[test]
fn curl_gets_health_over_https() {
    if Command::new("curl").arg("--version").output().is_err() {
        harness::note("curl_gets_health_over_https: skipped: no curl");
        return;
    }
    let pki = Pki::new("curl");
    pki.leaf("wsloop curl");
    let server = serve(&pki, &[]);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(pki.ca_file())
        .arg(format!("https://localhost:{}/health", server.addr.port()))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("\"status\":\"ok\""), "{body}");
}

const PYTHON_WSS: &str = r#"
import ssl, sys
from websockets.sync.client import connect
ctx = ssl.create_default_context(cafile=sys.argv[2])
with connect(sys.argv[1], ssl=ctx, open_timeout=10, close_timeout=5) as ws:
    for msg in ["hello", "x" * 100000, b"\x00\x01\x02"]:
        ws.send(msg)
        got = ws.recv(timeout=10)
        assert got == msg, (len(got), len(msg))
print("ok")
"#;

#[test]
fn python_websockets_over_wss() {
    let py = harness::python();
    let missing: Vec<String> = harness::probe(&py, &["-c", "import websockets.sync.client"])
        .into_iter()
        .collect();
    if harness::prerequisites(
        "python_websockets_over_wss",
        "WSLOOP_REQUIRE_INTEROP",
        &missing,
        "pip install -r tests/interop/requirements.txt",
    )
    .is_err()
    {
        return;
    }
    let pki = Pki::new("python");
    pki.leaf("wsloop python");
    let server = serve(&pki, &[]);
    let out = Command::new(&py)
        .args(["-c", PYTHON_WSS])
        .arg(format!("wss://localhost:{}/echo", server.addr.port()))
        .arg(pki.ca_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// The library path: a caller's own rustls configuration (here with no ALPN), replaced while
/// the server runs.
#[test]
fn a_library_user_brings_and_replaces_a_rustls_config() {
    use wsloop::server::tls::{server_config_from_pem, TlsConfig};
    let pki = Pki::new("library");
    let first = pki.leaf("wsloop library one");
    let mut config = server_config_from_pem(&pki.cert(), &pki.key()).unwrap();
    config.alpn_protocols.clear();
    let tls = TlsConfig::new(Arc::new(config));
    let server = common::demo_server(|s| {
        let tls = tls.clone();
        s.configure(move |c| c.tls = Some(tls))
    });
    let addr = server.local_addr();
    assert!(server.handle().is_tls());
    let mut conn = connect(&pki, addr);
    assert_eq!(presented(&conn), first);
    assert_eq!(conn.conn.alpn_protocol(), None, "the caller's configuration, as given");
    let (head, _) = request(&mut conn, "/health");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Not read from files: nothing to reload, and the server says so.
    assert!(server.handle().reload_tls().is_err());
    let second = pki.leaf("wsloop library two");
    tls.replace(Arc::new(server_config_from_pem(&pki.cert(), &pki.key()).unwrap()));
    assert_eq!(presented(&connect(&pki, addr)), second);
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn open_tls_connections_are_charged_to_the_memory_budget() {
    let pki = Pki::new("budget");
    pki.leaf("wsloop budget");
    let server = serve(&pki, &[]);
    let used = || {
        let mut tls = connect(&pki, server.addr);
        let (_, body) = request(&mut tls, "/health");
        common::health::json_number(&body, "memory_used").expect("memory_used in /health")
    };
    let base = used();
    let open: Vec<Tls> = (0..10)
        .map(|_| {
            let mut ws = connect(&pki, server.addr);
            upgrade(&mut ws, "/echo");
            ws
        })
        .collect();
    let with = used();
    assert!(
        with >= base + 10 * 8000,
        "10 idle wss connections: {base} -> {with} bytes charged"
    );
    drop(open);
    common::wait::eventually("the charges are given back", TIMEOUT, || used() + 10 * 8000 <= with);
}

/// What rustls holds is charged to the memory budget, so it must also count when the server
/// chooses whom to close to get back under it. Before, a TLS connection weighed only what its
/// session held: idle `wss://` connections (8 KiB each, nothing in their sessions) could take
/// the server past its budget with no one to shed, and then it read no one, `/health`
/// included.
#[test]
fn tls_connections_past_the_memory_budget_are_shed_and_the_server_reads_again() {
    let pki = Pki::new("shed");
    pki.leaf("wsloop shed");
    // Room for about 60 idle TLS connections.
    let server = serve(&pki, &["--max-memory", "500000"]);
    let mut open = Vec::new();
    for _ in 0..90 {
        let ws = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut ws = connect_within(&pki, server.addr, Duration::from_secs(3));
            upgrade(&mut ws, "/echo");
            ws
        }));
        match ws {
            Ok(ws) => open.push(ws),
            Err(_) => break,
        }
    }
    let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut tls = connect_within(&pki, server.addr, Duration::from_secs(3));
        request(&mut tls, "/metrics")
    }));
    let (head, body) = probe.unwrap_or_else(|_| {
        panic!(
            "after {} idle wss connections over a 500,000-byte budget the server reads no one",
            open.len()
        )
    });
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let sheds: f64 = body
        .lines()
        .filter_map(|l| l.strip_prefix("wsloop_memory_sheds_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    assert!(sheds >= 1.0, "no connection was shed:\n{body}");
}

/// [`connect`] with a shorter read timeout, for a server that may not answer.
fn connect_within(pki: &Pki, addr: SocketAddr, within: Duration) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(within)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(pki.client_config(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    tls
}

/// Node's `ws` client over wss (Node's TLS is OpenSSL; the test CA via `NODE_EXTRA_CA_CERTS`),
/// without and with permessage-deflate: tests/interop/client.js's checks. Skipped (passing)
/// without Node's `ws`, unless `WSLOOP_REQUIRE_INTEROP=1`.
#[test]
fn node_ws_client_over_wss() {
    if harness::prerequisites(
        "node_ws_client_over_wss",
        "WSLOOP_REQUIRE_INTEROP",
        &harness::node_missing(&["ws"]),
        "npm ci --prefix tests/interop",
    )
    .is_err()
    {
        return;
    }
    let pki = Pki::new("node");
    pki.leaf("wsloop node");
    let server = serve(&pki, &[]);
    for deflate in [false, true] {
        let mut cmd = Command::new("node");
        cmd.arg(harness::script("client.js"))
            .arg(format!("wss://localhost:{}/echo", server.addr.port()))
            .args(["--timeout", "30"])
            .env("NODE_EXTRA_CA_CERTS", pki.ca_file());
        if deflate {
            cmd.arg("--deflate");
        }
        harness::expect_ok("node client.js over wss", &mut cmd, Duration::from_secs(50));
    }
}

/// Headless Chromium: /health over https and an echo over wss from a page of that origin
/// (tests/interop/wss_browser.js; the certificate trusted by its key with
/// `--ignore-certificate-errors-spki-list`). Skipped (passing) without Chromium and
/// playwright-core, unless `WSLOOP_REQUIRE_BROWSER=1`.
#[test]
fn chromium_echoes_over_wss() {
    let mut missing = harness::node_missing(&["playwright-core"]);
    if !harness::chromium().is_file() {
        missing.push(format!("no Chromium at {}", harness::chromium().display()));
    }
    if harness::prerequisites(
        "chromium_echoes_over_wss",
        "WSLOOP_REQUIRE_BROWSER",
        &missing,
        "apt-get install -y chromium && npm ci --prefix tests/interop",
    )
    .is_err()
    {
        return;
    }
    let pki = Pki::new("chromium");
    pki.leaf("wsloop chromium");
    let server = serve(&pki, &[]);
    let mut cmd = Command::new("node");
    cmd.arg(harness::script("wss_browser.js"))
        .arg(format!("https://localhost:{}/", server.addr.port()))
        .arg("--cert")
        .arg(pki.cert())
        .args(["--timeout", "40"])
        .env("CHROMIUM", harness::chromium());
    let out = harness::expect_ok("wss_browser.js", &mut cmd, Duration::from_secs(60));
    assert!(out.stdout.contains("OK"), "{}", out.describe());
}
