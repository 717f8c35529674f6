//! `wss://`: TLS between the socket and the WebSocket connection (RFC 6455 §4.1 item 5: "If
//! /secure/ is true, the client MUST perform a TLS handshake over the connection after opening
//! the connection and before sending the handshake data"), with rustls.
//!
//! **Why one mutex around the TLS session.** rustls is sans-IO: `read_tls` takes ciphertext in,
//! `process_new_packets` decrypts, `reader()` hands out plaintext; `writer()` takes plaintext
//! and `write_tls` hands out records. Both halves of a connection need the one session (the
//! record sequence numbers and keys of both directions live in it, and a KeyUpdate received by
//! the reader changes the writer's keys, RFC 8446 §4.6.3), so it sits behind a mutex that is
//! held only while bytes move between memory buffers, never during a socket call:
//!
//! - the reader blocks in the socket `read` holding no lock, then locks to feed the bytes in
//!   and take the plaintext out;
//! - the writer (under the connection's writer mutex, which orders the wire) locks to turn
//!   plaintext into records, unlocks, and writes the records to the socket.
//!
//! So a writer blocked on a full socket never stops the reader from draining, just as over
//! plain TCP (see `conn.rs`). Records the session produces while *reading* (alerts) wait in
//! the session until whoever holds the writer mutex next writes, and the reader nudges that as
//! it does for Pongs (`Shared::flush_pending`); so does close_notify. The reply to a KeyUpdate
//! that asks for one, rustls holds back until our next application data record, which RFC 8446
//! §4.6.3 allows ("prior to sending its next Application Data record").
//!
//! Without the `tls` feature the types here are empty and `wss://` gives
//! [`Error::TlsNotSupported`](super::Error::TlsNotSupported).

#[cfg(feature = "tls")]
pub(crate) use imp::*;
#[cfg(not(feature = "tls"))]
pub(crate) use off::*;

#[cfg(not(feature = "tls"))]
mod off {
    use super::super::error::{Error, Phase};
    use std::io;
    use std::net::TcpStream;

    /// An I/O error as the client reports it (no TLS errors to find inside without TLS).
    pub(crate) fn from_io(e: io::Error, phase: Phase, _host: &str) -> Error {
        Error::io(e, phase)
    }

    /// No TLS in this build: no session can exist.
    pub(crate) enum TlsSession {}

    /// Raw bytes read but not yet decrypted (none without TLS).
    #[derive(Debug, Default)]
    pub(crate) struct RawBuf {
        _none: (),
    }

    impl TlsSession {
        pub(crate) fn write_all(&self, _: &TcpStream, _: &[u8], _: &mut Vec<u8>) -> io::Result<()> {
            match *self {}
        }
        pub(crate) fn read(&self, _: &TcpStream, _: &mut RawBuf, _: &mut [u8]) -> io::Result<usize> {
            match *self {}
        }
        pub(crate) fn wants_write(&self) -> bool {
            match *self {}
        }
        pub(crate) fn send_close_notify(&self) {
            match *self {}
        }
    }
}

#[cfg(feature = "tls")]
mod imp {
    use super::super::error::{Error, Phase, TlsError};
    use super::super::observer::{ClientObserver, TlsInfo};
    use super::super::url::{Host, WsUrl};
    use super::super::x509;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore};
    use std::io::{self, Read, Write};
    use std::net::TcpStream;
    use std::path::Path;
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
    use std::time::{Duration, Instant};

    /// Ciphertext asked for per socket read. One full TLS record (RFC 8446 §5.1: 2^14 bytes of
    /// plaintext plus at most 256 of overhead) fits.
    const RAW_CHUNK: usize = 16 * 1024 + 256;

    /// The TLS session both halves share (see the module docs).
    pub(crate) struct TlsSession {
        conn: Mutex<ClientConnection>,
    }

    /// Ciphertext read from the socket that rustls has not taken yet. rustls refuses more input
    /// while its plaintext buffer is full, so bytes may wait here between two reads; the reader
    /// owns it, no lock needed.
    #[derive(Debug, Default)]
    pub(crate) struct RawBuf {
        buf: Vec<u8>,
        start: usize,
        end: usize,
    }

    fn lock(m: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A TLS failure inside an `io::Error` (rustls wraps them so in its `Read`/`Write` paths)
    /// as it is; other errors as `io` errors of `phase`.
    pub(crate) fn from_io(e: io::Error, phase: Phase, host: &str) -> Error {
        if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return Error::Tls(map_error(tls, host));
        }
        Error::io(e, phase)
    }

    impl TlsSession {
        /// Encrypts `plain` and writes all of it, with anything else the session has queued
        /// (a KeyUpdate reply, close_notify), to `stream`. Called under the connection's writer
        /// mutex, which keeps records in order on the wire; the session's own lock is released
        /// before each socket write. `scratch` holds the records between the two.
        pub(crate) fn write_all(&self, mut stream: &TcpStream, plain: &[u8], scratch: &mut Vec<u8>) -> io::Result<()> {
            let mut rest = plain;
            loop {
                scratch.clear();
                {
                    let mut conn = lock(&self.conn);
                    if !rest.is_empty() {
                        // rustls takes at most its buffer limit (64 KiB) at a time.
                        let n = conn.writer().write(rest)?;
                        rest = rest.get(n..).unwrap_or_default();
                    }
                    while conn.wants_write() {
                        conn.write_tls(scratch)?;
                    }
                }
                if scratch.is_empty() {
                    if rest.is_empty() {
                        return Ok(());
                    }
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "TLS session took no data"));
                }
                stream.write_all(scratch)?;
            }
        }

        /// Reads plaintext into `buf`: 0 at the end of the stream (the server's close_notify,
        /// or TCP closed). Blocks in the socket read (with the socket's timeout) holding no
        /// lock. TLS records without application data (session tickets, KeyUpdate, RFC 8446
        /// §4.6) are taken in along the way; any reply they need waits in the session for the
        /// writer (the caller flushes it).
        pub(crate) fn read(&self, mut stream: &TcpStream, raw: &mut RawBuf, buf: &mut [u8]) -> io::Result<usize> {
            loop {
                {
                    let mut conn = lock(&self.conn);
                    loop {
                        match conn.reader().read(buf) {
                            Ok(n) => return Ok(n),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(e),
                        }
                        // No plaintext waits, so rustls has room: feed it what was read.
                        let Some(mut input) = raw.buf.get(raw.start..raw.end).filter(|b| !b.is_empty()) else {
                            break;
                        };
                        let before = input.len();
                        conn.read_tls(&mut input)?;
                        let taken = before - input.len();
                        if taken == 0 {
                            // Never expected with its plaintext buffer empty; refuse to spin.
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "the TLS session took no input",
                            ));
                        }
                        raw.start += taken;
                        if let Err(e) = conn.process_new_packets() {
                            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                        }
                    }
                }
                raw.buf.resize(RAW_CHUNK, 0);
                raw.start = 0;
                raw.end = 0;
                let n = stream.read(&mut raw.buf)?;
                if n == 0 {
                    // TCP ended; with no close_notify first this is a truncation, which the
                    // WebSocket layer reports as 1006 unless its Close frame came first.
                    return Ok(0);
                }
                raw.end = n;
            }
        }

        /// Whether records wait to be written.
        pub(crate) fn wants_write(&self) -> bool {
            lock(&self.conn).wants_write()
        }

        /// Queues close_notify (RFC 8446 §6.1: each party sends it before closing its write
        /// side); the next write sends it.
        pub(crate) fn send_close_notify(&self) {
            lock(&self.conn).send_close_notify();
        }
    }

    /// The rustls configuration for `settings`: the one given, or one trusting the CA file, or
    /// Mozilla's roots; ALPN `http/1.1` (RFC 7301; the WebSocket handshake is HTTP/1.1,
    /// RFC 6455 §4.1).
    pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, Error> {
        let mut roots = RootCertStore::empty();
        match ca_file {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                let ca_error = |detail: String| {
                    Error::Tls(TlsError::CaFile {
                        path: path.to_owned(),
                        detail,
                    })
                };
                let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| ca_error(e.to_string()))?;
                    roots
                        .add(cert)
                        .map_err(|e| ca_error(format!("a certificate in it cannot be a trust anchor: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(ca_error("it holds no PEM CERTIFICATE block".into()));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| {
                Error::Tls(TlsError::Handshake {
                    host: String::new(),
                    detail: e.to_string(),
                })
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The host as the certificate must name it: without the brackets of an IPv6 literal.
    pub(crate) fn host_text(host: &Host) -> String {
        match host {
            Host::Name(n) => n.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }

    /// Runs the TLS handshake on a connected socket, all before `deadline` (it counts against
    /// the handshake timeout). SNI carries the URL's host name (RFC 6066 §3); an IP address is
    /// not sent as SNI (§3 forbids it) and is verified against the certificate's iPAddress
    /// entries instead.
    pub(crate) fn handshake(
        tcp: &TcpStream,
        url: &WsUrl,
        config: Arc<ClientConfig>,
        deadline: Instant,
        observer: Option<&Arc<dyn ClientObserver>>,
    ) -> Result<TlsSession, Error> {
        let host = host_text(url.host());
        let name: ServerName<'static> = match url.host() {
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            Host::Name(n) => ServerName::try_from(n.clone()).map_err(|e| {
                Error::Tls(TlsError::Handshake {
                    host: host.clone(),
                    detail: format!("not usable as a TLS server name: {e}"),
                })
            })?,
        };
        let mut conn = ClientConnection::new(config, name).map_err(|e| Error::Tls(map_error(&e, &host)))?;
        let left = || -> Result<Duration, Error> {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(Phase::Handshake));
            }
            Ok(left.max(Duration::from_millis(1)))
        };
        let mut io = tcp;
        // Until the handshake is done and our last flight (Finished) is out.
        while conn.is_handshaking() || conn.wants_write() {
            while conn.wants_write() {
                tcp.set_write_timeout(Some(left()?)).map_err(Error::Io)?;
                conn.write_tls(&mut io).map_err(|e| Error::io(e, Phase::Handshake))?;
            }
            if !conn.is_handshaking() {
                break;
            }
            tcp.set_read_timeout(Some(left()?)).map_err(Error::Io)?;
            match conn.read_tls(&mut io) {
                Ok(0) => return Err(Error::Tls(TlsError::HandshakeClosed { host })),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(Error::Tls(TlsError::HandshakeClosed { host }))
                }
                Err(e) => return Err(Error::io(e, Phase::Handshake)),
            }
            if let Err(e) = conn.process_new_packets() {
                // Tell the server why (rustls queued the alert); it is failing anyway.
                let _ = tcp.set_write_timeout(Some(Duration::from_millis(100)));
                let _ = conn.write_tls(&mut io);
                let mut error = map_error(&e, &host);
                if let (rustls::Error::InvalidMessage(_), TlsError::Handshake { detail, .. }) = (&e, &mut error) {
                    // What a plain HTTP or ws:// server's answer looks like to TLS.
                    detail.push_str(" (is this port speaking TLS? for a plain server use ws://)");
                }
                return Err(Error::Tls(error));
            }
        }
        if let Some(obs) = observer {
            obs.tls(&info(&conn, url));
        }
        Ok(TlsSession { conn: Mutex::new(conn) })
    }

    /// What the handshake agreed, for an observer.
    fn info(conn: &ClientConnection, url: &WsUrl) -> TlsInfo {
        let certs = conn.peer_certificates().unwrap_or_default();
        TlsInfo {
            version: conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            alpn: conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
            sni: match url.host() {
                Host::Name(n) => Some(n.clone()),
                Host::Ip(_) => None,
            },
            verified_for: host_text(url.host()),
            chain_len: certs.len(),
            certificate: certs.first().and_then(|c| x509::summary(c.as_ref())),
        }
    }

    /// A rustls error as a [`TlsError`] that says what to do about it.
    pub(crate) fn map_error(e: &rustls::Error, host: &str) -> TlsError {
        let host = host.to_owned();
        let time = |t: &rustls::pki_types::UnixTime| x509::format_unix(t.as_secs());
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::NotValidForName => TlsError::NameMismatch {
                    host,
                    presented: Vec::new(),
                },
                CertificateError::NotValidForNameContext { presented, .. } => TlsError::NameMismatch {
                    host,
                    presented: presented.iter().map(|p| tidy_name(p)).collect(),
                },
                CertificateError::UnknownIssuer => TlsError::UnknownIssuer { host },
                CertificateError::Expired => TlsError::Expired {
                    host,
                    detail: String::new(),
                },
                CertificateError::ExpiredContext { time: now, not_after } => TlsError::Expired {
                    host,
                    detail: format!("valid until {}, now {}", time(not_after), time(now)),
                },
                CertificateError::NotValidYet => TlsError::NotYetValid {
                    host,
                    detail: String::new(),
                },
                CertificateError::NotValidYetContext { time: now, not_before } => TlsError::NotYetValid {
                    host,
                    detail: format!("valid from {}, now {}", time(not_before), time(now)),
                },
                _ => TlsError::BadCertificate {
                    host,
                    detail: e.to_string(),
                },
            },
            _ => TlsError::Handshake {
                host,
                detail: e.to_string(),
            },
        }
    }

    /// webpki lists presented names in Debug form (`DnsName("localhost")`,
    /// `IpAddress(127.0.0.1)`); as a reader would write them.
    fn tidy_name(p: &str) -> String {
        if let Some(inner) = p.strip_prefix("DnsName(\"").and_then(|s| s.strip_suffix("\")")) {
            return inner.to_owned();
        }
        if let Some(inner) = p.strip_prefix("IpAddress(").and_then(|s| s.strip_suffix(')')) {
            return inner.to_owned();
        }
        p.to_owned()
    }
}
