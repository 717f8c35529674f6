//! Everything that can go wrong on the client's side, one variant per cause, each naming the
//! rule of RFC 6455 it comes from where there is one.

use super::refusal::Refusal;
use super::url::UrlError;
use crate::error::{ProtocolError, SendError};
use crate::frame::CloseCode;
use crate::handshake::client::ClientHandshakeError;
use crate::handshake::reason_phrase;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// The wait that ran out of time (see [`ClientBuilder`](super::ClientBuilder) for each
/// timeout and its default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Resolving the host name and opening the TCP connection.
    Connect,
    /// Sending the request and receiving the whole response head (RFC 6455 §4.1).
    Handshake,
    /// Waiting for bytes from the server. The connection is still usable: call `recv` again.
    Read,
    /// Writing to the server (the connection is unusable afterwards: a frame may be cut).
    Write,
    /// Waiting for the server's Close and its closing of TCP after ours (RFC 6455 §7.1.1,
    /// §7.1.2).
    Close,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connecting",
            Phase::Handshake => "waiting for the opening handshake's response",
            Phase::Read => "waiting for data from the server",
            Phase::Write => "writing to the server",
            Phase::Close => "waiting for the server to finish the close handshake",
        })
    }
}

/// A client error. The variants say which step failed and why; [`Error::close_code`] gives the
/// close code the connection ended with, for exit statuses and logs.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a WebSocket URI (RFC 6455 §3).
    Url(UrlError),
    /// A `wss://` URL, and this build has no TLS (the `tls` cargo feature is off).
    TlsNotSupported,
    /// The TLS handshake of a `wss://` connection failed (RFC 6455 §4.1 item 5), or the TLS
    /// settings could not be used: see [`TlsError`] for each cause.
    Tls(TlsError),
    /// A header given to the builder cannot be sent: not an HTTP token name, a value with CR,
    /// LF or NUL, or a header the handshake sets itself.
    InvalidHeader {
        /// The header's name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A subprotocol name that is not an HTTP token (RFC 6455 §4.1 item 10).
    InvalidProtocol(String),
    /// The host name did not resolve to any address.
    Resolve {
        /// The host as in the URL.
        host: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// No address of the host accepted a TCP connection (RFC 6455 §4.1, "If the connection
    /// could not be opened").
    Connect {
        /// `host:port` as tried.
        target: String,
        /// The last address's error.
        source: io::Error,
    },
    /// A wait ran past its timeout.
    Timeout(Phase),
    /// The server closed the connection before its response head was complete.
    HandshakeClosed {
        /// Bytes of response received before the close.
        received: usize,
    },
    /// The server answered the upgrade with a status other than 101 (RFC 6455 §4.1: "the
    /// client handles the response per HTTP procedures"): its status, headers and body.
    Refused(Box<Refusal>),
    /// The server's response breaks a rule of RFC 6455 §4.1 (or RFC 7692 §7).
    Handshake(ClientHandshakeError),
    /// The server broke a framing rule; the connection was failed with the error's close code
    /// (RFC 6455 §7.1.7). A masked server frame is [`ProtocolError::MaskedServerFrame`], 1002.
    Protocol(ProtocolError),
    /// The TCP connection ended without a Close frame: close code 1006 (RFC 6455 §7.1.5).
    ClosedAbnormally,
    /// The connection is closed (the close handshake finished, or it failed before): nothing
    /// more can be sent or received.
    Closed,
    /// The core refused to frame what was asked (e.g. a control payload over 125 bytes,
    /// RFC 6455 §5.5, or a close code not allowed on the wire, §7.4).
    Send(SendError),
    /// Another I/O error.
    Io(io::Error),
}

impl Error {
    /// The close code this connection ended with, as RFC 6455 §7.1.5 defines it, when the error
    /// ended it: the code we failed the connection with for a protocol error, 1006 when TCP
    /// closed without a Close frame. `None` for errors before the connection opened, timeouts
    /// of a read (the connection is still open), and misuse.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Protocol(e) => Some(e.close_code()),
            Error::ClosedAbnormally | Error::Io(_) | Error::Timeout(Phase::Write | Phase::Close) => {
                Some(CloseCode::ABNORMAL)
            }
            _ => None,
        }
    }

    /// Whether the connection can still be used after this error: only a read timeout leaves
    /// it open.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, Error::Timeout(Phase::Read))
    }

    pub(crate) fn io(e: io::Error, phase: Phase) -> Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout(phase),
            _ => Error::Io(e),
        }
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Error {
        match e {
            SendError::Closing => Error::Closed,
            other => Error::Send(other),
        }
    }
}

impl From<UrlError> for Error {
    fn from(e: UrlError) -> Error {
        Error::Url(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Url(e) => write!(f, "invalid URL: {e}"),
            Error::TlsNotSupported => f.write_str(
                "TLS is not supported by this build: wss:// needs a TLS handshake (RFC 6455 §4.1 item 5), and \
                 wsloop was built without its `tls` feature; rebuild with it, or use ws://",
            ),
            Error::Tls(e) => write!(f, "TLS: {e}"),
            Error::InvalidHeader { name, why } => write!(f, "header {name:?} cannot be sent: {why}"),
            Error::InvalidProtocol(p) => write!(f, "subprotocol {p:?} is not an HTTP token (RFC 6455 §4.1 item 10)"),
            Error::Resolve { host, source } => write!(f, "cannot resolve {host}: {source}"),
            Error::Connect { target, source } => write!(f, "cannot connect to {target}: {source}"),
            Error::Timeout(phase) => write!(f, "timed out {phase}"),
            Error::HandshakeClosed { received: 0 } => {
                f.write_str("the server closed the connection without answering the opening handshake (RFC 6455 §4.1)")
            }
            Error::HandshakeClosed { received } => write!(
                f,
                "the server closed the connection in the middle of its handshake response, after {received} bytes \
                 (RFC 6455 §4.1)"
            ),
            Error::Refused(r) => {
                let reason = if r.reason.is_empty() {
                    reason_phrase(r.status)
                } else {
                    r.reason.as_str()
                };
                write!(
                    f,
                    "the server refused the upgrade: {} {reason}, not 101 Switching Protocols (RFC 6455 §4.1)",
                    r.status
                )?;
                let body = r.body_text();
                let body = body.trim();
                if !body.is_empty() {
                    let short: String = body.chars().take(200).collect();
                    let more = if short.len() < body.len() { "..." } else { "" };
                    write!(f, ": {short:?}{more}")?;
                }
                Ok(())
            }
            Error::Handshake(e) => write_handshake_error(f, e),
            Error::Protocol(e) => write!(f, "the server broke the protocol: {e}"),
            Error::ClosedAbnormally => f.write_str(
                "the server closed the TCP connection without a Close frame (RFC 6455 §7.1.5: close code 1006)",
            ),
            Error::Closed => f.write_str("the WebSocket connection is closed"),
            Error::Send(e) => write!(f, "cannot send: {e}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

/// Each broken check of the server's response, with its number in RFC 6455 §4.1's list ("The
/// client MUST validate the server's response as follows").
fn write_handshake_error(f: &mut fmt::Formatter<'_>, e: &ClientHandshakeError) -> fmt::Result {
    f.write_str("opening handshake failed: ")?;
    match e {
        ClientHandshakeError::Malformed(why) => {
            write!(f, "the response is not a valid HTTP/1.1 response head: {why} (RFC 6455 §4.1)")
        }
        ClientHandshakeError::NotSwitchingProtocols(status) => write!(
            f,
            "the server answered {status} {}, not 101 Switching Protocols (RFC 6455 §4.1, check 1)",
            reason_phrase(*status)
        ),
        ClientHandshakeError::UpgradeNotWebSocket => {
            f.write_str("the response lacks \"Upgrade: websocket\" (RFC 6455 §4.1, check 2)")
        }
        ClientHandshakeError::ConnectionNotUpgrade => {
            f.write_str("the response lacks \"Connection: Upgrade\" (RFC 6455 §4.1, check 3)")
        }
        ClientHandshakeError::WrongAccept => f.write_str(
            "Sec-WebSocket-Accept is missing or is not base64(SHA-1(our key + \"258EAFA5-E914-47DA-95CA-C5AB0DC85B11\")) \
             (RFC 6455 §4.1, check 4)",
        ),
        ClientHandshakeError::UnofferedExtension(x) => write!(
            f,
            "the server chose extension {x:?}, which the client did not offer (RFC 6455 §4.1, check 5)"
        ),
        ClientHandshakeError::UnofferedProtocol(p) => write!(
            f,
            "the server chose subprotocol {p:?}, which the client did not offer (RFC 6455 §4.1, check 6)"
        ),
        ClientHandshakeError::InvalidDeflateAnswer(d) => write!(
            f,
            "the server's permessage-deflate answer is invalid: {d} (RFC 7692 §7: the client MUST fail the connection)"
        ),
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Url(e) => Some(e),
            Error::Resolve { source, .. } | Error::Connect { source, .. } | Error::Io(source) => Some(source),
            Error::Handshake(e) => Some(e),
            Error::Tls(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Send(e) => Some(e),
            _ => None,
        }
    }
}

/// Why the TLS layer of a `wss://` connection failed. RFC 6455 §4.1 item 5: "If /secure/ is
/// true, the client MUST perform a TLS handshake ... If the TLS handshake fails (e.g., the
/// server certificate could not be verified), then the client MUST _Fail the WebSocket
/// Connection_". The certificate checks are those of RFC 5280 §6 (path validation) and
/// RFC 6125 §6 (the name), done by rustls' webpki.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate chains to a trusted root, but names other hosts than the URL's.
    NameMismatch {
        /// The host from the URL.
        host: String,
        /// The names the certificate is valid for (its subjectAltName entries), when known.
        presented: Vec<String>,
    },
    /// The chain does not lead to a trusted root: a self-signed or private-CA certificate
    /// (trust that CA with `--ca FILE` / [`ClientBuilder::tls_ca_file`](super::ClientBuilder::tls_ca_file)).
    UnknownIssuer {
        /// The host from the URL.
        host: String,
    },
    /// The certificate's validity ended (RFC 5280 §4.1.2.5, notAfter).
    Expired {
        /// The host from the URL.
        host: String,
        /// When it expired and the time now, when known.
        detail: String,
    },
    /// The certificate's validity has not begun yet (RFC 5280 §4.1.2.5, notBefore).
    NotYetValid {
        /// The host from the URL.
        host: String,
        /// When it starts, when known.
        detail: String,
    },
    /// The certificate was refused for another reason (revoked, bad signature, bad encoding...).
    BadCertificate {
        /// The host from the URL.
        host: String,
        /// What rustls said.
        detail: String,
    },
    /// The handshake itself failed: the server sent an alert, offered nothing in common, or
    /// broke the TLS protocol.
    Handshake {
        /// The host from the URL.
        host: String,
        /// What rustls said.
        detail: String,
    },
    /// The server closed TCP during the TLS handshake, before it was complete.
    HandshakeClosed {
        /// The host from the URL.
        host: String,
    },
    /// The CA file given to trust could not be used.
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why: unreadable, no certificate in it, or a certificate that does not parse.
        detail: String,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::NameMismatch { host, presented } if presented.is_empty() => {
                write!(f, "the server's certificate is not valid for {host} (RFC 6125 §6)")
            }
            TlsError::NameMismatch { host, presented } => write!(
                f,
                "the server's certificate for {} is not valid for {host} (RFC 6125 §6)",
                presented.join(", ")
            ),
            TlsError::UnknownIssuer { host } => write!(
                f,
                "the certificate of {host} does not chain to a trusted root: unknown issuer (use --ca FILE to \
                 trust a private CA)"
            ),
            TlsError::Expired { host, detail } => {
                write!(f, "the certificate of {host} has expired")?;
                if !detail.is_empty() {
                    write!(f, " ({detail})")?;
                }
                Ok(())
            }
            TlsError::NotYetValid { host, detail } => {
                write!(f, "the certificate of {host} is not valid yet")?;
                if !detail.is_empty() {
                    write!(f, " ({detail})")?;
                }
                Ok(())
            }
            TlsError::BadCertificate { host, detail } => write!(f, "the certificate of {host} was refused: {detail}"),
            TlsError::Handshake { host, detail } => write!(f, "the handshake with {host} failed: {detail}"),
            TlsError::HandshakeClosed { host } => {
                write!(f, "{host} closed the connection during the TLS handshake")
            }
            TlsError::CaFile { path, detail } => write!(f, "cannot use CA file {}: {detail}", path.display()),
        }
    }
}

impl std::error::Error for TlsError {}
