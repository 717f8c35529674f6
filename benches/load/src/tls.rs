//! TLS (`wss://`, `--tls`) for the load generator.
//!
//! rustls is sans-IO: [`TlsStream`] moves records between a non-blocking
//! socket and a `rustls::ClientConnection` with `read_tls` /
//! `process_new_packets` / `reader` and `writer` / `write_tls`, so TLS
//! connections run in the same mio loop as plain ones, with the same
//! edge-triggered rule: read and write until the socket says `WouldBlock`.
//!
//! Certificates: `--ca FILE` verifies the server against the CA(s) in FILE
//! (what a real client does). `--insecure` accepts ANY certificate for any
//! name; it exists only so this load generator can measure a server with a
//! throwaway self-signed certificate. It still checks the handshake
//! signatures, so the client does the same cryptographic work either way.
//! Never use such a verifier in anything but a benchmark.
//!
//! Session resumption is disabled: every connection does a full handshake,
//! the worst case, so the `handshake` mode measures exactly that.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::bail;
use crate::error::{Error, Result};

/// How to verify the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Trust the CA certificate(s) in this PEM file.
    Ca(std::path::PathBuf),
    /// Accept any certificate (benchmarking only; see the module docs).
    Insecure,
}

/// Shared client configuration plus the name sent as SNI and verified.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsClient {
    /// `host` is the URL's authority (`127.0.0.1:9001`, `[::1]:9001`,
    /// `localhost:9001`); the port is dropped for SNI and verification.
    pub fn new(host: &str, trust: &Trust) -> Result<TlsClient> {
        let provider = Arc::new(ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error(format!("TLS setup: {e}")))?;
        let mut config = match trust {
            Trust::Ca(path) => {
                let mut roots = RootCertStore::empty();
                for cert in load_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| Error(format!("--ca {}: {e}", path.display())))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider.signature_verification_algorithms)))
                .with_no_client_auth(),
        };
        // What browsers offer; wsloop's TLS port answers with http/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = Resumption::disabled();
        Ok(TlsClient {
            config: Arc::new(config),
            name: server_name(host)?,
        })
    }

    /// A fresh client session (its ClientHello is queued at once).
    pub fn start(&self) -> Result<TlsStream> {
        let conn = ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| Error(format!("TLS session: {e}")))?;
        Ok(TlsStream { conn })
    }
}

/// The SNI / verification name of a URL authority (IP addresses included).
fn server_name(host: &str) -> Result<ServerName<'static>> {
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    ServerName::try_from(bare.to_owned()).map_err(|e| Error(format!("TLS server name {bare:?}: {e}")))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error(format!("--ca {}: {e}", path.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error(format!("--ca {}: {e}", path.display())))?;
    if certs.is_empty() {
        bail!("--ca {}: no CERTIFICATE in the file", path.display());
    }
    Ok(certs)
}

/// Accepts any certificate chain and name, but verifies the handshake
/// signatures with the provider's algorithms. For benchmarks only.
#[derive(Debug)]
struct AcceptAnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// One TLS client session over a non-blocking socket it does not own.
/// `read` and `write` behave like the socket's: `WouldBlock` when nothing
/// can be done now, `Ok(0)` from `read` at the end of the stream.
pub struct TlsStream {
    conn: ClientConnection,
}

impl TlsStream {
    /// Decrypted bytes into `buf`. Reads TLS records from `sock` only when
    /// no plaintext is buffered, so rustls' receive buffer never overflows.
    pub fn read<S: Read + Write>(&mut self, sock: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                // Ok(0): the server sent close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // TCP ended without close_notify: for a load generator that
                // is just the end of the stream (the WebSocket layer decides
                // whether it was expected).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.conn.read_tls(sock)? == 0 {
                return Ok(0);
            }
            if let Err(e) = self.conn.process_new_packets() {
                // rustls queued an alert describing the failure: try to send it.
                let _ = self.flush(sock);
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")));
            }
            // Handshake replies, key updates: send what processing queued.
            match self.flush(sock) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Encrypts (a prefix of) `data` and sends what the socket takes.
    /// Returns how many plaintext bytes rustls accepted; `WouldBlock` when it
    /// accepted none (its buffer is full, or the handshake is still under way
    /// and its buffer for early plaintext is full).
    pub fn write<S: Read + Write>(&mut self, sock: &mut S, data: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(data)?;
        match self.flush(sock) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if n == 0 && !data.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Sends the TLS records rustls has queued, until done or `WouldBlock`.
    pub fn flush<S: Read + Write>(&mut self, sock: &mut S) -> io::Result<()> {
        while self.conn.wants_write() {
            if self.conn.write_tls(sock)? == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0 bytes"));
            }
        }
        Ok(())
    }

    /// Negotiated protocol version and cipher suite, for the report.
    pub fn describe(&self) -> String {
        match (self.conn.protocol_version(), self.conn.negotiated_cipher_suite()) {
            (Some(v), Some(s)) => format!("{v:?} {:?}", s.suite()),
            _ => "handshake not finished".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::WsConn;
    use crate::ws;
    use mio::{Events, Interest, Poll, Token};
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls::pki_types::PrivateKeyDer;
    use rustls::{ServerConfig, ServerConnection, StreamOwned};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    /// A test CA (PEM) and a server certificate it signed for `names`.
    struct Pki {
        ca_pem: String,
        server: Arc<ServerConfig>,
    }

    fn pki(names: &[&str]) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "wsloop-load test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        let server = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            server: Arc::new(server),
        }
    }

    fn write_ca(pem: &str, tag: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("wsloop-load-test-{}-{tag}.pem", std::process::id()));
        std::fs::write(&path, pem).unwrap();
        path
    }

    /// A blocking WebSocket echo server behind an in-process rustls server:
    /// answers the upgrade, echoes every data frame, answers the close frame,
    /// sends close_notify. Returns how many messages it echoed (or why the
    /// TLS session failed, for the tests where the client must refuse it).
    fn echo_server(listener: TcpListener, config: Arc<ServerConfig>) -> Served {
        let (tcp, _) = listener.accept().map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = ServerConnection::new(config).map_err(|e| e.to_string())?;
        let mut s = StreamOwned::new(conn, tcp);
        let mut req = Vec::new();
        let mut b = [0u8; 1];
        while !req.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).map_err(|e| e.to_string())?;
            req.push(b[0]);
        }
        let req = String::from_utf8(req).unwrap();
        let key = req.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            ws::accept_for(key)
        );
        s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        let mut echoed = 0;
        loop {
            let mut h = [0u8; 2];
            s.read_exact(&mut h).map_err(|e| e.to_string())?;
            let mut len = (h[1] & 0x7F) as u64;
            if len == 126 {
                let mut x = [0u8; 2];
                s.read_exact(&mut x).map_err(|e| e.to_string())?;
                len = u16::from_be_bytes(x).into();
            } else if len == 127 {
                let mut x = [0u8; 8];
                s.read_exact(&mut x).map_err(|e| e.to_string())?;
                len = u64::from_be_bytes(x);
            }
            let mut mask = [0u8; 4];
            s.read_exact(&mut mask).map_err(|e| e.to_string())?;
            let mut payload = vec![0u8; len as usize];
            s.read_exact(&mut payload).map_err(|e| e.to_string())?;
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
            let mut out = vec![h[0]];
            match payload.len() {
                n if n < 126 => out.push(n as u8),
                n if n <= 0xFFFF => {
                    out.push(126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(127);
                    out.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            out.extend_from_slice(&payload);
            s.write_all(&out).map_err(|e| e.to_string())?;
            if h[0] & 0x0F == ws::OP_CLOSE {
                s.conn.send_close_notify();
                s.flush().map_err(|e| e.to_string())?;
                return Ok(echoed);
            }
            echoed += 1;
        }
    }

    /// What the echo server did: messages echoed, or why it failed.
    type Served = std::result::Result<usize, String>;
    /// What the client got back, and the negotiated version and suite.
    type Echoed = (Vec<Vec<u8>>, String);

    /// Connects through `trust` to an echo server holding a certificate for
    /// `names`, sends `sizes.len()` binary messages at once, waits for their
    /// echoes and the close handshake. Returns the echoes, the TLS summary
    /// and the server's result.
    fn exchange(names: &[&str], trust: impl FnOnce(&Pki) -> Trust, sizes: &[usize]) -> (Result<Echoed>, Served) {
        let pki = pki(names);
        let trust = trust(&pki);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = pki.server.clone();
        let server = std::thread::spawn(move || echo_server(listener, config));
        let client = (|| {
            let tls = TlsClient::new(&addr.to_string(), &trust)?;
            let mut c = WsConn::connect(addr, &addr.to_string(), "/echo", 7, false)?;
            c.tls = Some(Box::new(tls.start()?));
            let mut poll = Poll::new()?;
            let mut events = Events::with_capacity(16);
            poll.registry()
                .register(&mut c.stream, Token(0), Interest::READABLE | Interest::WRITABLE)?;
            let msgs: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(k, &n)| (0..n).map(|i| (i * 7 + k) as u8).collect())
                .collect();
            let mut got = Vec::new();
            let mut queued = false;
            let deadline = Instant::now() + Duration::from_secs(10);
            while !c.is_closed() {
                if Instant::now() > deadline {
                    bail!("timed out in {:?}", c.phase);
                }
                poll.poll(&mut events, Some(Duration::from_millis(50)))?;
                c.drive(&mut |_, p| {
                    got.push(p.to_vec());
                    Ok(())
                })?;
                if c.is_open() && !queued {
                    queued = true;
                    for m in &msgs {
                        c.queue_with(ws::OP_BINARY, m.len(), |out| out.extend_from_slice(m))?;
                    }
                    c.flush()?;
                }
                if got.len() == msgs.len() && !c.close_sent {
                    c.queue_close(1000);
                    c.flush()?;
                }
            }
            if got != msgs {
                bail!("echoes differ from what was sent");
            }
            let desc = c.tls.as_ref().map(|t| t.describe()).unwrap_or_default();
            Ok((got, desc))
        })();
        // A refused certificate ends the server's side with an error too.
        let served = server.join().unwrap();
        (client, served)
    }

    #[test]
    fn echoes_over_tls_verified_by_ca() {
        let (client, served) = exchange(
            &["127.0.0.1"],
            |p| Trust::Ca(write_ca(&p.ca_pem, "ok")),
            // Small, then several records' worth (rustls buffers 64 KiB of
            // plaintext at a time, so writes go in parts).
            &[5, 300_000, 70_000, 1],
        );
        let (got, desc) = client.unwrap();
        assert_eq!(got.len(), 4);
        assert!(desc.starts_with("TLSv1_3"), "{desc}");
        assert_eq!(served, Ok(4));
    }

    #[test]
    fn insecure_accepts_any_certificate() {
        let (client, served) = exchange(&["not-this-host.example"], |_| Trust::Insecure, &[32]);
        assert_eq!(client.unwrap().0, vec![(0..32u8).map(|i| i * 7).collect::<Vec<u8>>()]);
        assert_eq!(served, Ok(1));
    }

    #[test]
    fn ca_refuses_a_certificate_for_another_name() {
        let (client, served) = exchange(
            &["not-this-host.example"],
            |p| Trust::Ca(write_ca(&p.ca_pem, "name")),
            &[32],
        );
        let e = client.err().unwrap().0;
        assert!(
            e.contains("invalid peer certificate") && e.contains("not valid for name"),
            "{e}"
        );
        assert!(served.is_err());
    }

    #[test]
    fn ca_refuses_an_unknown_issuer() {
        let other = pki(&["127.0.0.1"]);
        let (client, served) = exchange(&["127.0.0.1"], |_| Trust::Ca(write_ca(&other.ca_pem, "issuer")), &[32]);
        let e = client.err().unwrap().0;
        // Same issuer name, other key: webpki reports the signature.
        assert!(e.contains("invalid peer certificate"), "{e}");
        assert!(served.is_err());
    }

    #[test]
    fn bad_ca_files_are_refused() {
        let empty = write_ca("not a certificate\n", "empty");
        let e = TlsClient::new("127.0.0.1:1", &Trust::Ca(empty)).err().unwrap().0;
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let missing = std::env::temp_dir().join("wsloop-load-test-no-such-file.pem");
        assert!(TlsClient::new("127.0.0.1:1", &Trust::Ca(missing)).is_err());
    }

    #[test]
    fn server_names_drop_the_port() {
        let n = |h: &str| server_name(h).unwrap().to_str().into_owned();
        assert_eq!(n("127.0.0.1:9001"), "127.0.0.1");
        assert_eq!(n("[::1]:9001"), "::1");
        assert_eq!(n("localhost:9001"), "localhost");
        assert_eq!(n("localhost"), "localhost");
        assert!(server_name("bad name:1").is_err());
    }
}
