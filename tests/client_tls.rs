//! `wss://` in the client and `wsloop client` (issue 20, items 4 and 5), against a small TLS
//! echo server written here with rustls' `ServerConnection` over `std::net` (so these tests
//! need nothing installed) and certificates generated per run with rcgen: a throwaway CA and
//! leaves that are good, for another name, expired, or from a CA the client does not trust.

mod common;
#[path = "interop/harness.rs"]
mod harness;

use common::pki::TestCa;
use common::process::wsloop_bin;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use wsloop::client::{Backoff, Client, ClientEvent, ConnectionState, Error, Phase, ReconnectingClient, TlsError};
use wsloop::handshake::{write_accept_response, ParseStatus, RequestParser};
use wsloop::protocol::{Config, OwnedEvent, WebSocket};
use wsloop::CloseCode;

// ---------------------------------------------------------------------------------------------
// Certificates

/// A CA, its PEM written to a file for `--ca`.
struct Ca {
    ca: TestCa,
    pem_file: PathBuf,
}

/// A directory for this test's files, removed by nobody (it is small and under the temp dir).
fn temp_file(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wsloop-client-tls-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn ca(name: &str) -> Ca {
    let ca = TestCa::new(name);
    let pem_file = temp_file("ca.pem");
    std::fs::write(&pem_file, ca.cert.pem()).unwrap();
    Ca { ca, pem_file }
}

/// A leaf for `names` (DNS names or IP addresses) signed by `ca`; `expired` puts its validity
/// in the past.
fn leaf(ca: &Ca, names: &[&str], expired: bool) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let leaf = ca.ca.leaf(names, names[0], expired);
    (leaf.chain_der(&ca.ca), leaf.key_der())
}

/// A leaf for localhost and 127.0.0.1 written as PEM files (chain, key) for another program.
fn leaf_files(ca: &Ca, tag: &str) -> (PathBuf, PathBuf) {
    let leaf = ca.ca.leaf(&["localhost", "127.0.0.1"], "localhost", false);
    let (cert_file, key_file) = (temp_file(&format!("{tag}.pem")), temp_file(&format!("{tag}.key")));
    std::fs::write(&cert_file, leaf.chain_pem(&ca.ca)).unwrap();
    std::fs::write(&key_file, leaf.key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

// ---------------------------------------------------------------------------------------------
// A TLS WebSocket echo server

/// What the server does on one connection.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Echo every message; answer Close.
    Echo,
    /// Echo, but update the traffic keys (TLS 1.3 KeyUpdate, asking for the client's too)
    /// before every echo.
    EchoWithKeyUpdates,
    /// Echo one message, then drop TCP without a Close frame.
    DropAfterOne,
}

/// What the server saw on one connection.
#[derive(Debug)]
struct Report {
    /// The SNI name the client sent.
    sni: Option<String>,
    /// The ALPN protocol agreed.
    alpn: Option<Vec<u8>>,
    /// Messages echoed.
    echoed: usize,
    /// After the WebSocket close, the client sent close_notify before closing TCP.
    close_notify: bool,
}

struct TlsServer {
    addr: SocketAddr,
    reports: mpsc::Receiver<Report>,
}

impl TlsServer {
    fn url(&self, host: &str, path: &str) -> String {
        format!("wss://{host}:{}{path}", self.addr.port())
    }

    fn report(&self) -> Report {
        self.reports
            .recv_timeout(Duration::from_secs(10))
            .expect("the server reported no connection")
    }
}

/// Serves TLS on a loopback port with this chain and key; connection `i` (from 0) runs
/// `mode(i)`.
fn tls_server(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    mode: impl Fn(usize) -> Mode + Send + 'static,
) -> TlsServer {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, reports) = mpsc::channel();
    std::thread::spawn(move || {
        for (i, tcp) in listener.incoming().enumerate() {
            let Ok(tcp) = tcp else { continue };
            let (config, tx, mode) = (config.clone(), tx.clone(), mode(i));
            std::thread::spawn(move || {
                if let Some(report) = serve_one(tcp, config, mode) {
                    let _ = tx.send(report);
                }
            });
        }
    });
    TlsServer { addr, reports }
}

/// One connection: TLS, the upgrade, then the echo loop. `None` if the client went away
/// before the upgrade (a refused certificate).
fn serve_one(tcp: TcpStream, config: Arc<ServerConfig>, mode: Mode) -> Option<Report> {
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = StreamOwned::new(ServerConnection::new(config).unwrap(), tcp);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (request, used) = loop {
        let n = tls.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        match RequestParser::default().parse(&buf) {
            Ok(ParseStatus::Complete { request, head_len }) => break (request, head_len),
            Ok(ParseStatus::Partial) => continue,
            Err(e) => panic!("the client's request does not parse: {e:?}"),
        }
    };
    let mut report = Report {
        sni: tls.conn.server_name().map(str::to_owned),
        alpn: tls.conn.alpn_protocol().map(<[u8]>::to_vec),
        echoed: 0,
        close_notify: false,
    };
    let mut out = Vec::new();
    let key = request.header_str("sec-websocket-key").unwrap_or("").to_owned();
    write_accept_response(&mut out, key.as_bytes(), None, &[]);
    tls.write_all(&out).unwrap();
    let mut ws = WebSocket::server(Config::default());

    let mut pending = buf[used..].to_vec();
    loop {
        while !pending.is_empty() {
            out.clear();
            let received = ws
                .receive(&mut pending, &mut out)
                .expect("the client broke the protocol");
            let consumed = received.consumed;
            let event = received.event.map(|e| e.to_owned_event());
            pending.drain(..consumed);
            let is_message = matches!(event, Some(OwnedEvent::Text(_) | OwnedEvent::Binary(_)));
            match event {
                Some(OwnedEvent::Text(t)) => ws.send_text(&t, &mut out).unwrap(),
                Some(OwnedEvent::Binary(b)) => ws.send_binary(&b, &mut out).unwrap(),
                Some(OwnedEvent::Close(_)) => {
                    // The core wrote the Close reply into `out`; then wait for the client's
                    // close_notify, which rustls reports as a clean end of stream.
                    tls.write_all(&out).unwrap();
                    report.close_notify = loop {
                        match tls.read(&mut chunk) {
                            Ok(0) => break true,
                            Ok(_) => continue,
                            Err(_) => break false,
                        }
                    };
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                    return Some(report);
                }
                _ => {}
            }
            if is_message {
                report.echoed += 1;
                if mode == Mode::EchoWithKeyUpdates {
                    tls.conn.refresh_traffic_keys().unwrap();
                }
            }
            tls.write_all(&out).unwrap();
            if mode == Mode::DropAfterOne && report.echoed == 1 {
                let _ = tls.sock.shutdown(std::net::Shutdown::Both);
                return Some(report);
            }
        }
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return Some(report),
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A CA, and an echo server with a leaf for localhost and 127.0.0.1 signed by it.
fn good_server(mode: Mode) -> (Ca, TlsServer) {
    let ca = ca("wsloop test CA");
    let (chain, key) = leaf(&ca, &["localhost", "127.0.0.1"], false);
    let server = tls_server(chain, key, move |_| mode);
    (ca, server)
}

fn builder(url: &str, ca: &Ca) -> wsloop::client::ClientBuilder {
    Client::builder(url)
        .tls_ca_file(&ca.pem_file)
        .connect_timeout(Duration::from_secs(5))
        .handshake_timeout(Duration::from_secs(5))
        .read_timeout(Some(Duration::from_secs(5)))
        .close_timeout(Duration::from_secs(3))
}

fn tls_error(result: Result<Client, Error>) -> TlsError {
    match result {
        Err(Error::Tls(e)) => e,
        Err(other) => panic!("expected a TLS error, got {other:?}"),
        Ok(_) => panic!("expected a TLS error, the connection opened"),
    }
}

// ---------------------------------------------------------------------------------------------
// The library

#[test]
fn echo_over_wss_by_ip_and_by_name_with_a_private_ca() {
    let (ca, server) = good_server(Mode::Echo);
    for (host, sni) in [("127.0.0.1", None), ("localhost", Some("localhost".to_owned()))] {
        let mut client = builder(&server.url(host, "/echo"), &ca).connect().unwrap();
        client.send_text("hello over TLS").unwrap();
        assert_eq!(client.recv().unwrap(), ClientEvent::Text("hello over TLS".into()));
        // Larger than a TLS record (16 KiB) and than rustls' send buffer (64 KiB).
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        client.send_binary(&big).unwrap();
        assert_eq!(client.recv().unwrap(), ClientEvent::Binary(big));
        let status = client.close(CloseCode::NORMAL, "bye").unwrap().unwrap();
        assert_eq!(status.code, CloseCode::NORMAL);
        let report = server.report();
        assert_eq!(report.sni, sni, "SNI for {host}");
        assert_eq!(report.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(report.echoed, 2);
        assert!(report.close_notify, "no close_notify before TCP closed");
    }
}

#[test]
fn a_certificate_for_another_host_is_a_name_mismatch() {
    let ca = ca("wsloop test CA");
    let (chain, key) = leaf(&ca, &["localhost"], false);
    let server = tls_server(chain, key, |_| Mode::Echo);
    let e = tls_error(builder(&server.url("127.0.0.1", "/"), &ca).connect());
    assert_eq!(
        e,
        TlsError::NameMismatch {
            host: "127.0.0.1".into(),
            presented: vec!["localhost".into()]
        }
    );
    let text = Error::Tls(e).to_string();
    assert!(
        text.contains("certificate for localhost is not valid for 127.0.0.1"),
        "{text}"
    );
}

#[test]
fn an_untrusted_ca_is_an_unknown_issuer() {
    let (_ca, server) = good_server(Mode::Echo);
    // Mozilla's roots (the default) do not know the test CA, nor does another CA file.
    let e = tls_error(
        Client::builder(server.url("127.0.0.1", "/"))
            .handshake_timeout(Duration::from_secs(5))
            .connect(),
    );
    assert_eq!(
        e,
        TlsError::UnknownIssuer {
            host: "127.0.0.1".into()
        }
    );
    assert!(Error::Tls(e).to_string().contains("unknown issuer (use --ca FILE"));
    let other = ca("another CA");
    let e = tls_error(builder(&server.url("localhost", "/"), &other).connect());
    assert!(
        matches!(e, TlsError::UnknownIssuer { ref host } if host == "localhost"),
        "{e:?}"
    );
}

#[test]
fn an_expired_certificate_is_refused_as_expired() {
    let ca = ca("wsloop test CA");
    let (chain, key) = leaf(&ca, &["localhost", "127.0.0.1"], true);
    let server = tls_server(chain, key, |_| Mode::Echo);
    let e = tls_error(builder(&server.url("127.0.0.1", "/"), &ca).connect());
    let TlsError::Expired { host, detail } = &e else {
        panic!("expected Expired, got {e:?}")
    };
    assert_eq!(host, "127.0.0.1");
    assert!(detail.contains("valid until 2021-01-01 00:00:00 UTC"), "{detail}");
    assert!(Error::Tls(e).to_string().contains("has expired"));
}

#[test]
fn a_bad_ca_file_is_named() {
    let path = temp_file("not-a-cert.pem");
    std::fs::write(&path, "hello\n").unwrap();
    let e = tls_error(Client::builder("wss://127.0.0.1:1/").tls_ca_file(&path).connect());
    assert!(matches!(e, TlsError::CaFile { .. }), "{e:?}");
    assert!(Error::Tls(e).to_string().contains("no PEM CERTIFICATE"));
}

#[test]
fn wss_to_a_plain_server_says_so() {
    // Answers anything with a plain HTTP 400, as a ws:// server does to a ClientHello.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut tcp, _)) = listener.accept() {
            let mut chunk = [0u8; 1024];
            let _ = tcp.read(&mut chunk);
            let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let e = tls_error(Client::builder(format!("wss://{addr}/")).connect());
    assert!(matches!(e, TlsError::Handshake { .. }), "{e:?}");
    assert!(e.to_string().contains("use ws://"), "{e}");
}

#[test]
fn the_tls_handshake_counts_against_the_handshake_timeout() {
    // Accepts TCP, never answers the ClientHello.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(Duration::from_secs(3));
        drop(conn);
    });
    let started = Instant::now();
    let e = Client::builder(format!("wss://{addr}/"))
        .handshake_timeout(Duration::from_millis(300))
        .connect()
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(Phase::Handshake)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    holder.join().unwrap();
}

#[test]
fn split_halves_over_tls_send_while_the_reader_is_blocked() {
    let (ca, server) = good_server(Mode::Echo);
    let client = builder(&server.url("127.0.0.1", "/"), &ca)
        .read_timeout(Some(Duration::from_secs(20)))
        .connect()
        .unwrap();
    let (mut reader, writer) = client.split();
    let (tx, rx) = mpsc::channel();
    let reading = std::thread::spawn(move || {
        // Blocks in the socket read until the echo of what the writer sends below arrives.
        let started = Instant::now();
        let first = reader.recv();
        tx.send(started.elapsed()).unwrap();
        let mut got = vec![first.unwrap()];
        for _ in 0..400 {
            got.push(reader.recv().unwrap());
        }
        (reader, got)
    });
    std::thread::sleep(Duration::from_millis(300));
    // If the reader held the TLS session's lock while blocked, this send would wait for its
    // read timeout (20 s) and the echo would be that late.
    let sent_at = Instant::now();
    writer.send_text("first").unwrap();
    assert!(
        sent_at.elapsed() < Duration::from_secs(5),
        "send blocked {:?}",
        sent_at.elapsed()
    );
    let waited = rx.recv_timeout(Duration::from_secs(10)).expect("no echo");
    assert!(waited < Duration::from_secs(5), "the echo took {waited:?}");
    // Four writers at once while the reader drains.
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let w = writer.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    w.send_text(&format!("{t}:{i}")).unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let (reader, got) = reading.join().unwrap();
    assert_eq!(got[0], ClientEvent::Text("first".into()));
    for t in 0..4 {
        let mine: Vec<String> = got
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Text(s) if s.starts_with(&format!("{t}:")) => Some(s.clone()),
                _ => None,
            })
            .collect();
        let expected: Vec<String> = (0..100).map(|i| format!("{t}:{i}")).collect();
        assert_eq!(mine, expected, "writer {t}'s messages out of order or lost");
    }
    let mut client = Client::reunite(reader, writer).unwrap();
    assert_eq!(
        client.close(CloseCode::NORMAL, "").unwrap().unwrap().code,
        CloseCode::NORMAL
    );
    assert_eq!(server.report().echoed, 401);
}

#[test]
fn key_updates_from_the_server_are_followed() {
    let (ca, server) = good_server(Mode::EchoWithKeyUpdates);
    let mut client = builder(&server.url("127.0.0.1", "/"), &ca).connect().unwrap();
    for i in 0..20 {
        let text = format!("message {i}");
        client.send_text(&text).unwrap();
        assert_eq!(client.recv().unwrap(), ClientEvent::Text(text));
    }
    client.close(CloseCode::NORMAL, "").unwrap();
    let report = server.report();
    assert_eq!(report.echoed, 20);
    assert!(report.close_notify);
}

#[test]
fn the_reconnecting_client_works_over_wss() {
    let ca = ca("wsloop test CA");
    let (chain, key) = leaf(&ca, &["localhost", "127.0.0.1"], false);
    // The first connection drops after one echo; the next ones echo.
    let server = tls_server(chain, key, |i| if i == 0 { Mode::DropAfterOne } else { Mode::Echo });
    let states = Arc::new(Mutex::new(Vec::new()));
    let seen = states.clone();
    let mut client = ReconnectingClient::new(builder(&server.url("127.0.0.1", "/"), &ca))
        .backoff(Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(100),
        })
        .max_retries(5)
        .on_state(move |s| seen.lock().unwrap().push(s.clone()));
    let sender = client.sender();
    client.connect().unwrap();
    sender.send_text("one").unwrap();
    assert_eq!(client.recv().unwrap(), ClientEvent::Text("one".into()));
    // The drop is noticed by the next recv, which reconnects and then waits for data; send
    // once the second connection is open.
    let poke = {
        let (sender, states) = (sender.clone(), states.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            let opens = || {
                states
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|s| **s == ConnectionState::Open)
                    .count()
            };
            while opens() < 2 {
                assert!(Instant::now() < deadline, "never reconnected");
                std::thread::sleep(Duration::from_millis(10));
            }
            sender.send_text("two").unwrap();
        })
    };
    match client.recv() {
        Ok(ClientEvent::Text(t)) => assert_eq!(t, "two"),
        other => panic!("unexpected {other:?}"),
    }
    poke.join().unwrap();
    sender.close(CloseCode::NORMAL, "").unwrap();
    let states = states.lock().unwrap().clone();
    let opens = states.iter().filter(|s| **s == ConnectionState::Open).count();
    assert_eq!(opens, 2, "{states:?}");
    assert!(
        states
            .iter()
            .any(|s| matches!(s, ConnectionState::Closed { code, .. } if *code == CloseCode::ABNORMAL)),
        "{states:?}"
    );
}

/// Against Node `ws` serving wss with Node's `https` (OpenSSL): the same as with Python below.
/// Skipped (passing) without Node's `ws`, unless `WSLOOP_REQUIRE_INTEROP=1`.
#[test]
fn echo_over_wss_with_node_ws() {
    let test = "echo_over_wss_with_node_ws";
    if harness::prerequisites(
        test,
        "WSLOOP_REQUIRE_INTEROP",
        &harness::node_missing(&["ws"]),
        "npm ci --prefix tests/interop",
    )
    .is_err()
    {
        return;
    }
    let ca = ca("wsloop test CA");
    let (cert_file, key_file) = leaf_files(&ca, "node-leaf");
    let mut cmd = Command::new("node");
    cmd.arg(harness::script("echo_server.js"))
        .arg("0")
        .arg(&cert_file)
        .arg(&key_file);
    let server =
        harness::ServerChild::start(&mut cmd, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{test}: {e}"));
    for deflate in [false, true] {
        let mut client = builder(&format!("wss://localhost:{}/", server.port), &ca)
            .deflate(deflate)
            .close_timeout(Duration::from_secs(10))
            .connect()
            .unwrap();
        assert_eq!(client.deflate().is_some(), deflate);
        client.send_text("hello, Node").unwrap();
        assert_eq!(client.recv().unwrap(), ClientEvent::Text("hello, Node".into()));
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 13) as u8).collect();
        client.send_binary(&big).unwrap();
        assert_eq!(client.recv().unwrap(), ClientEvent::Binary(big));
        let status = client.close(CloseCode::NORMAL, "").unwrap().unwrap();
        assert_eq!(status.code, CloseCode::NORMAL);
    }
}

/// Against Python `websockets` serving wss with the `ssl` module (OpenSSL): another TLS stack
/// and another WebSocket implementation. Skipped (passing) without the package, unless
/// `WSLOOP_REQUIRE_INTEROP=1`.
#[test]
fn echo_over_wss_with_python_websockets() {
    let test = "echo_over_wss_with_python_websockets";
    let py = harness::python();
    let missing: Vec<String> = harness::probe(&py, &["-c", "import websockets.sync.server, ssl"])
        .into_iter()
        .collect();
    if harness::prerequisites(
        test,
        "WSLOOP_REQUIRE_INTEROP",
        &missing,
        "pip install -r tests/interop/requirements.txt",
    )
    .is_err()
    {
        return;
    }
    let ca = ca("wsloop test CA");
    let (cert_file, key_file) = leaf_files(&ca, "leaf");
    let mut cmd = Command::new(py);
    cmd.arg(harness::script("echo_server.py"))
        .arg("0")
        .arg(&cert_file)
        .arg(&key_file);
    let server =
        harness::ServerChild::start(&mut cmd, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{test}: {e}"));
    for deflate in [false, true] {
        let mut client = builder(&format!("wss://localhost:{}/", server.port), &ca)
            .deflate(deflate)
            .close_timeout(Duration::from_secs(10))
            .connect()
            .unwrap();
        assert_eq!(client.deflate().is_some(), deflate);
        client.send_text("hello, OpenSSL").unwrap();
        assert_eq!(client.recv().unwrap(), ClientEvent::Text("hello, OpenSSL".into()));
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 13) as u8).collect();
        client.send_binary(&big).unwrap();
        assert_eq!(client.recv().unwrap(), ClientEvent::Binary(big));
        // The close handshake, TLS close included, ends well before the close timeout.
        let started = Instant::now();
        let status = client.close(CloseCode::NORMAL, "").unwrap().unwrap();
        assert_eq!(status.code, CloseCode::NORMAL);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "close took {:?}",
            started.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// `wsloop client`

fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(wsloop_bin())
        .arg("client")
        .args(["--connect-timeout", "5", "--read-timeout", "5", "--close-timeout", "2"])
        .args(args)
        .output()
        .expect("run wsloop client");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_sends_over_wss_with_ca() {
    let (ca, server) = good_server(Mode::Echo);
    let ca_file = ca.pem_file.to_str().unwrap();
    let url = server.url("127.0.0.1", "/echo");
    let (code, stdout, stderr) = cli(&["--ca", ca_file, &url, "--send", "hi"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "hi\n");
    assert!(server.report().close_notify);
}

#[test]
fn cli_trace_shows_the_tls_handshake_before_the_http_one() {
    let (ca, server) = good_server(Mode::Echo);
    let ca_file = ca.pem_file.to_str().unwrap();
    let url = server.url("localhost", "/echo");
    let (code, stdout, stderr) = cli(&["--trace", "--ca", ca_file, &url, "--send", "hi"]);
    assert_eq!(code, Some(0), "{stderr}");
    let tls_at = stdout.find("== TLS: TLSv1_3").unwrap_or_else(|| panic!("{stdout}"));
    let http_at = stdout
        .find("-> GET /echo HTTP/1.1")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(tls_at < http_at, "{stdout}");
    for expected in [
        "cipher suite TLS13_",
        "ALPN http/1.1",
        "SNI \"localhost\"",
        "the server sent 2 certificates",
        "subject    CN=localhost, O=wsloop tests",
        "issuer     CN=wsloop test CA",
        "names      DNS:localhost, IP:127.0.0.1",
        "✓ verified for localhost",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing from:\n{stdout}");
    }
    let valid = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("valid "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(valid.contains(" UTC to ") && valid.ends_with(" UTC"), "{valid}");
}

#[test]
fn cli_failures_over_wss_say_why() {
    let (_ca, server) = good_server(Mode::Echo);
    // No --ca: Mozilla's roots do not know the test CA.
    let (code, _, stderr) = cli(&[&server.url("127.0.0.1", "/"), "--send", "hi"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("unknown issuer (use --ca FILE"), "{stderr}");
    // A name the certificate does not carry.
    let ca2 = self::ca("wsloop test CA");
    let (chain, key) = leaf(&ca2, &["localhost"], false);
    let only_localhost = tls_server(chain, key, |_| Mode::Echo);
    let (code, _, stderr) = cli(&[
        "--ca",
        ca2.pem_file.to_str().unwrap(),
        &only_localhost.url("127.0.0.1", "/"),
        "--send",
        "hi",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("certificate for localhost is not valid for 127.0.0.1"),
        "{stderr}"
    );
}
