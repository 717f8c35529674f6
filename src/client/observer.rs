//! Watching a client's wire from outside: a [`ClientObserver`] installed with
//! [`ClientBuilder::observer`](super::ClientBuilder::observer) is shown the handshake and every
//! frame, raw, on the thread that read or wrote them. The client only hands bytes over, in the
//! core's words ([`crate::observe`]); what to make of them is the observer's business
//! (`wsloop client --trace` installs a printer from the teaching module).

use crate::deflate::DeflateParams;
use crate::error::ProtocolError;
use crate::observe::Direction;

/// Sees what crosses a client's wire. Called synchronously: keep it quick.
pub trait ClientObserver: Send + Sync + 'static {
    /// A `wss://` connection finished its TLS handshake (before the HTTP handshake, RFC 6455
    /// §4.1 item 5): what was agreed, and the certificate the server presented.
    fn tls(&self, info: &TlsInfo) {
        let _ = info;
    }

    /// The request we sent and the response head received (the whole head, or as much as
    /// arrived before the handshake failed).
    fn handshake(&self, request: &[u8], response: &[u8]) {
        let _ = (request, response);
    }

    /// The handshake succeeded with this subprotocol and permessage-deflate configuration.
    fn open(&self, protocol: Option<&str>, deflate: Option<&DeflateParams>) {
        let _ = (protocol, deflate);
    }

    /// Whole frames as they crossed the wire: sent ones masked, received ones as the server
    /// sent them. A received batch is every frame that completed one event.
    fn frames(&self, direction: Direction, wire: &[u8]) {
        let _ = (direction, wire);
    }

    /// The server broke a rule; the connection fails with `error`'s close code.
    fn protocol_error(&self, error: &ProtocolError) {
        let _ = error;
    }
}

/// The outcome of a client's TLS handshake, for observers (`wsloop client --trace`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The protocol version agreed, e.g. `TLSv1_3`.
    pub version: String,
    /// The cipher suite agreed, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// The application protocol agreed by ALPN (RFC 7301), if the server chose one.
    pub alpn: Option<String>,
    /// The name sent as SNI (RFC 6066 §3); `None` for an IP address, which SNI cannot carry.
    pub sni: Option<String>,
    /// The name or address the certificate was verified against.
    pub verified_for: String,
    /// How many certificates the server sent (its own first, then intermediates).
    pub chain_len: usize,
    /// The server's own certificate, as far as it could be read.
    pub certificate: Option<CertificateSummary>,
}

/// A few fields of an X.509 certificate (RFC 5280 §4.1), read for display only: the
/// verification itself is rustls' (webpki).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateSummary {
    /// The subject's distinguished name, e.g. `CN=localhost, O=wsloop test`.
    pub subject: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// notBefore, as `YYYY-MM-DD HH:MM:SS UTC`.
    pub not_before: String,
    /// notAfter, as `YYYY-MM-DD HH:MM:SS UTC`.
    pub not_after: String,
    /// subjectAltName entries (RFC 5280 §4.2.1.6): `DNS:name` and `IP:address`.
    pub alt_names: Vec<String>,
}
