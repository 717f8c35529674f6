//! Watching the wire from outside the loop: a [`ServerObserver`] the embedding program installs
//! (`Server::observer`) is shown every handshake and every frame, raw. The loop only hands
//! bytes over, in the core's words ([`crate::observe`]); formatting happens wherever the
//! observer wants it (`wsloop serve --trace` installs a printer from the teaching module).

use super::ConnId;
use crate::handshake::Request;
use crate::observe::Direction;
use std::net::SocketAddr;

/// Sees what crosses the wire. Called on the event loop: return quickly.
pub trait ServerObserver: Send + Sync + 'static {
    /// An upgrade request and the server's answer (the 101, or a refusal).
    fn handshake(&self, id: ConnId, peer: SocketAddr, request: &Request, response: &[u8]) {
        let _ = (id, peer, request, response);
    }

    /// Frame bytes as they crossed the wire (received ones still masked). One call may hold
    /// several frames, or part of one.
    fn frames(&self, id: ConnId, peer: SocketAddr, direction: Direction, wire: &[u8]) {
        let _ = (id, peer, direction, wire);
    }

    /// A TLS handshake completed (before the HTTP request on that connection): what was
    /// agreed. Only with the `tls` feature and a TLS configuration.
    fn tls_handshake(&self, id: ConnId, peer: SocketAddr, info: &TlsInfo) {
        let _ = (id, peer, info);
    }

    /// The peer broke a protocol rule; the connection is failing with `error`'s close code.
    fn protocol_error(&self, id: ConnId, peer: SocketAddr, error: &crate::ProtocolError) {
        let _ = (id, peer, error);
    }
}

/// What a completed TLS handshake agreed on, in words (RFC 8446 §4.1, RFC 5246 §7.4.1):
/// shown by `wsloop serve --trace`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// `TLSv1_3` or `TLSv1_2`.
    pub version: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// The ALPN protocol agreed (RFC 7301), if the client offered any.
    pub alpn: Option<String>,
    /// The host name the client asked for with SNI (RFC 6066 §3), if it sent one (a client
    /// connecting to an IP address sends none).
    pub sni: Option<String>,
}
