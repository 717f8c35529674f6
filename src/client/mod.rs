//! A blocking WebSocket client over `std::net`, on the same sans-IO core as the server
//! (RFC 6455 §4.1 for the opening handshake, §5–§8 for everything after).
//!
//! ```no_run
//! use wsloop::client::{Client, ClientEvent, OwnedMessage};
//! use wsloop::CloseCode;
//!
//! let mut client = Client::connect("ws://127.0.0.1:3000/echo")?;
//! client.send(OwnedMessage::Text("hello".into()))?;
//! if let ClientEvent::Text(echo) = client.recv()? {
//!     println!("{echo}");
//! }
//! let server_said = client.close(CloseCode::NORMAL, "done")?; // waits for the server's Close
//! # Ok::<(), wsloop::client::Error>(())
//! ```
//!
//! - **Connecting**: [`Client::connect`], or [`Client::builder`] for headers, `Origin`,
//!   subprotocols, permessage-deflate, limits and timeouts ([`ClientBuilder`] lists each
//!   default).
//! - **`wss://`** runs TLS with rustls before the opening handshake (RFC 6455 §4.1 item 5):
//!   SNI from the host, Mozilla's roots (webpki-roots) or a CA file
//!   ([`ClientBuilder::tls_ca_file`]), ALPN `http/1.1`; [`Error::Tls`] says why a certificate
//!   was refused ([`TlsError`]). Without the `tls` feature, [`Error::TlsNotSupported`].
//! - **Every wait has a timeout**: connect (name resolution included), handshake, each read,
//!   each write, and the close handshake. A read timeout leaves the connection usable.
//! - **A refused upgrade says what the server said**: a status other than 101 is
//!   [`Error::Refused`] with the status, headers and body ([`Refusal`]), read to the body's end
//!   (at most [`MAX_REFUSAL_BODY`]); a 401's `WWW-Authenticate` or a 429's `Retry-After` is there.
//! - **A bad server gets a precise error**: [`Error::Handshake`] names the check of RFC 6455
//!   §4.1 the response failed (no `Upgrade`, wrong accept, an extension
//!   or subprotocol not offered, a head over 16 KiB), [`Error::HandshakeClosed`] a server that
//!   hung up mid-handshake, [`Error::Protocol`] a framing rule broken after it (a masked frame
//!   fails the connection with 1002).
//! - **Reading and writing from different threads**: [`Client::split`] gives a
//!   [`ClientReader`] and a cloneable [`ClientWriter`]. They are two handles of the socket
//!   (`try_clone`) around one protocol state behind a mutex; a blocked read holds no lock.
//!   The design, and why replies to pings cannot be held up by a blocked writer, is in the
//!   docs of `conn.rs`.
//! - **Reconnecting**: [`ReconnectingClient`] reconnects with exponential backoff and jitter
//!   and reports each state change.
//! - **Watching the wire**: a [`ClientObserver`] sees the handshake and every frame, raw;
//!   `wsloop client --trace` installs one that prints them annotated.
//!
//! The sans-IO parts, [`Opening`] (the handshake) and [`Inbound`] (read buffer to events), are
//! public so that fuzz targets drive exactly the code the client runs.

mod config;
mod conn;
mod error;
mod event;
mod inbound;
mod net;
mod observer;
mod opening;
mod reconnect;
mod refusal;
mod tls;
mod url;
#[cfg(feature = "tls")]
mod x509;

pub use crate::handshake::client::ClientHandshakeError;
pub use crate::message::OwnedMessage;
pub use config::{
    ClientBuilder, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_READ_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
};
pub use conn::{ClientReader, ClientWriter};
pub use error::{Error, Phase, TlsError};
pub use event::{ClientEvent, CloseStatus};
pub use inbound::{Inbound, READ_CHUNK};
pub use observer::{CertificateSummary, ClientObserver, TlsInfo};
pub use opening::{Opened, Opening, OpeningStatus, MAX_RESPONSE_HEAD};
pub use reconnect::{Backoff, ConnectionState, ReconnectSender, ReconnectingClient};
pub use refusal::{Refusal, MAX_REFUSAL_BODY};
pub use url::{Host, UrlError, WsUrl, DEFAULT_WSS_PORT, DEFAULT_WS_PORT};

use crate::deflate::DeflateParams;
use crate::frame::CloseCode;
use crate::handshake::client::ClientHandshake;
use crate::protocol::WebSocket;
use config::ClientConfig;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An open WebSocket connection to a server, used from one thread; [`Client::split`] it to
/// read and write from different threads.
///
/// End it with [`Client::close`]: dropping an open client just closes TCP, and the server sees
/// close code 1006 (RFC 6455 §7.1.5). Nothing blocks in `drop`.
#[derive(Debug)]
pub struct Client {
    reader: ClientReader,
    writer: ClientWriter,
}

impl Client {
    /// Connects to `url` with the default settings (see [`ClientBuilder`]).
    pub fn connect(url: &str) -> Result<Client, Error> {
        ClientBuilder::new(url).connect()
    }

    /// A builder for `url`, to set headers, subprotocols, deflate, limits and timeouts.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// Opens TCP, runs TLS for `wss://` (RFC 6455 §4.1 item 5), sends the request and checks
    /// the response (RFC 6455 §4.1).
    pub(crate) fn connect_with(url: &str, config: &ClientConfig) -> Result<Client, Error> {
        let url = WsUrl::parse(url)?;
        #[cfg(feature = "tls")]
        let tls_config = if url.is_secure() {
            Some(config.tls.rustls_config()?)
        } else {
            None
        };
        #[cfg(not(feature = "tls"))]
        if url.is_secure() {
            return Err(Error::TlsNotSupported);
        }
        let headers = config.request_headers()?;
        let protocols: Vec<&str> = config.protocols.iter().map(String::as_str).collect();
        let mut handshake = ClientHandshake::new(&protocols);
        if let Some(offer) = config.deflate {
            handshake = handshake.with_deflate(offer);
        }
        let opening = Opening::new(handshake, &url, &headers);
        let stream = net::connect(&url, config.connect_timeout)?;
        // Small frames (a Pong, a typed line) go out at once rather than after Nagle's delay.
        let _ = stream.set_nodelay(true);
        // One deadline for the TLS handshake and the opening handshake after it.
        let deadline = later(Instant::now(), config.handshake_timeout);
        #[cfg(feature = "tls")]
        let tls = match tls_config {
            Some(tls_config) => Some(Arc::new(tls::handshake(
                &stream,
                &url,
                tls_config,
                deadline,
                config.observer.as_ref(),
            )?)),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls: Option<Arc<tls::TlsSession>> = None;
        let mut raw = tls::RawBuf::default();
        let host = url.host().to_string();
        let (opened, response) = run_handshake(
            HandshakeIo {
                tcp: &stream,
                tls: tls.as_deref(),
                raw: &mut raw,
                scratch: Vec::new(),
                host: &host,
            },
            opening,
            config,
            deadline,
        )?;
        let mut ws = WebSocket::client(config.websocket);
        if let Some(params) = opened.deflate {
            ws = ws.with_deflate(params);
        }
        stream
            .set_write_timeout(Some(config.write_timeout.max(Duration::from_millis(1))))
            .map_err(Error::Io)?;
        let (reader, writer) = conn::halves(conn::Parts {
            stream,
            tls,
            raw,
            ws,
            first_frames: response.get(opened.head_len..).unwrap_or_default().to_vec(),
            read_timeout: config.read_timeout,
            close_timeout: config.close_timeout,
            observer: config.observer.clone(),
            protocol: opened.protocol,
            deflate: opened.deflate,
            host,
        })
        .map_err(Error::Io)?;
        Ok(Client { reader, writer })
    }

    /// Sends a data message (RFC 6455 §5.6).
    pub fn send(&mut self, message: OwnedMessage) -> Result<(), Error> {
        self.writer.send(message)
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.writer.send_text(text)
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.writer.send_binary(data)
    }

    /// Sends a Ping (RFC 6455 §5.5.2); the Pong comes back as [`ClientEvent::Pong`].
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.writer.ping(payload)
    }

    /// Receives the next event; see [`ClientReader::recv`].
    pub fn recv(&mut self) -> Result<ClientEvent, Error> {
        self.reader.recv()
    }

    /// Receives the next event, waiting at most `timeout`; see [`ClientReader::recv_timeout`].
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use wsloop::client::{Client, Error, Phase};
    ///
    /// let mut client = Client::connect("ws://127.0.0.1:3000/echo")?;
    /// match client.recv_timeout(Duration::from_millis(100)) {
    ///     Ok(event) => println!("{event:?}"),
    ///     Err(Error::Timeout(Phase::Read)) => println!("nothing yet; the connection is still open"),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: std::time::Duration) -> Result<ClientEvent, Error> {
        self.reader.recv_timeout(timeout)
    }

    /// The full closing handshake (RFC 6455 §7.1.2, §7.1.1): sends Close with `code` and
    /// `reason`, reads until the server's Close (data messages still arriving are dropped,
    /// §7.1.2 allows them), waits for the server to close TCP, and returns the server's status.
    /// All of it within the close timeout ([`Error::Timeout`]`(Phase::Close)` after it; the TCP
    /// connection is then closed by us). If the server had closed first, returns its status.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<Option<CloseStatus>, Error> {
        if let Some(status) = self.reader.peer_close() {
            return Ok(status.clone());
        }
        self.writer.close(code, reason)?;
        loop {
            match self.reader.recv() {
                Ok(ClientEvent::Close(status)) => return Ok(status),
                Ok(_) | Err(Error::Timeout(Phase::Read)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Two halves, to receive on one thread while sending from others.
    pub fn split(self) -> (ClientReader, ClientWriter) {
        (self.reader, self.writer)
    }

    /// Puts halves from [`Client::split`] back together, e.g. to finish with
    /// [`Client::close`]; gives them back if they belong to different connections.
    #[allow(clippy::result_large_err)] // a mismatch is a caller's bug, rare and not hot
    pub fn reunite(reader: ClientReader, writer: ClientWriter) -> Result<Client, (ClientReader, ClientWriter)> {
        if reader.same_connection(&writer) {
            Ok(Client { reader, writer })
        } else {
            Err((reader, writer))
        }
    }

    /// A sending handle that works alongside this client (e.g. from a timer thread).
    pub fn writer(&self) -> ClientWriter {
        self.writer.clone()
    }

    /// The subprotocol the server chose, if any (RFC 6455 §4.1, "_Subprotocol In Use_").
    pub fn protocol(&self) -> Option<&str> {
        self.writer.protocol()
    }

    /// The permessage-deflate parameters agreed, if any (RFC 7692 §7).
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.writer.deflate()
    }

    /// The server's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.writer.peer_addr()
    }
}

/// `start + timeout`, for any timeout a caller may set: one beyond what `Instant` can hold
/// (`Duration::MAX`, say) means a year, which no wait here needs.
pub(crate) fn later(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout)
        .or_else(|| start.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(start)
}

/// The socket during the opening handshake: plain, or through the TLS session.
struct HandshakeIo<'a> {
    tcp: &'a TcpStream,
    tls: Option<&'a tls::TlsSession>,
    raw: &'a mut tls::RawBuf,
    scratch: Vec<u8>,
    /// The URL's host, for error messages.
    host: &'a str,
}

impl Read for HandshakeIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls {
            Some(tls) => tls.read(self.tcp, self.raw, buf),
            None => (&mut &*self.tcp).read(buf),
        }
    }
}

impl Write for HandshakeIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.tls {
            Some(tls) => tls.write_all(self.tcp, buf, &mut self.scratch).map(|()| buf.len()),
            None => (&mut &*self.tcp).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends the request and reads the response head, all before `deadline`. Returns what was
/// agreed and every response byte read (the head, then possibly frames).
fn run_handshake(
    mut io: HandshakeIo<'_>,
    mut opening: Opening,
    config: &ClientConfig,
    deadline: Instant,
) -> Result<(Opened, Vec<u8>), Error> {
    let left = |deadline: Instant| -> Result<Duration, Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(Phase::Handshake));
        }
        Ok(left.max(Duration::from_millis(1)))
    };
    let observe = |opening: &Opening, upto: usize| {
        if let Some(obs) = &config.observer {
            let response = opening.response();
            obs.handshake(opening.request(), response.get(..upto).unwrap_or(response));
        }
    };
    let host = io.host;
    let failed = |e: io::Error| tls::from_io(e, Phase::Handshake, host);
    io.tcp.set_write_timeout(Some(left(deadline)?)).map_err(Error::Io)?;
    io.write_all(opening.request()).map_err(failed)?;
    let mut chunk = vec![0u8; 8 * 1024];
    // A refusal whose body is still coming ends with what came when the server closes or the
    // time runs out (RFC 9112 §6.3): the caller gets the status and headers either way.
    let refused = |opening: &mut Opening| opening.end().map(|r| Error::Refused(Box::new(r)));
    let opened = loop {
        let wait = match left(deadline) {
            Ok(wait) => wait,
            Err(timeout) => return Err(refused(&mut opening).unwrap_or(timeout)),
        };
        io.tcp.set_read_timeout(Some(wait)).map_err(Error::Io)?;
        let n = match io.read(&mut chunk) {
            Ok(0) => {
                observe(&opening, usize::MAX);
                return Err(refused(&mut opening).unwrap_or(Error::HandshakeClosed {
                    received: opening.response().len(),
                }));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                observe(&opening, usize::MAX);
                return Err(refused(&mut opening).unwrap_or(Error::HandshakeClosed {
                    received: opening.response().len(),
                }));
            }
            Err(e) => {
                let e = failed(e);
                return Err(match e {
                    Error::Timeout(_) => refused(&mut opening).unwrap_or(e),
                    e => e,
                });
            }
        };
        match opening.feed(chunk.get(..n).unwrap_or_default()) {
            Ok(OpeningStatus::Partial) => continue,
            Ok(OpeningStatus::Open(opened)) => break opened,
            Ok(OpeningStatus::Refused(refusal)) => {
                observe(&opening, usize::MAX);
                return Err(Error::Refused(Box::new(refusal)));
            }
            Err(e) => {
                observe(&opening, usize::MAX);
                return Err(Error::Handshake(e));
            }
        }
    };
    observe(&opening, opened.head_len);
    if let Some(obs) = &config.observer {
        obs.open(opened.protocol.as_deref(), opened.deflate.as_ref());
    }
    Ok((opened, opening.into_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn halves_cross_threads() {
        send_sync::<ClientWriter>();
        send_sync::<ReconnectSender>();
        send::<ClientReader>();
        send::<Client>();
        send::<ReconnectingClient>();
        send_sync::<Error>();
    }

    #[test]
    fn any_timeout_gives_a_deadline() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::from_secs(1)), now + Duration::from_secs(1));
        assert!(later(now, Duration::MAX) > now + Duration::from_secs(3600));
    }
}
