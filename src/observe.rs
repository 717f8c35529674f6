//! What an observer sees, in the core's terms: the words the server's
//! [`ServerObserver`](crate::server::ServerObserver) and the client's
//! [`ClientObserver`](crate::client::ClientObserver) are told the wire in, shared with whatever renders
//! it (the `--trace` printers of the teaching module).
//!
//! The rest of what an observer is shown is core already: requests as
//! [`Request`](crate::handshake::Request), broken rules as
//! [`ProtocolError`](crate::ProtocolError), the agreed permessage-deflate as
//! [`DeflateParams`](crate::deflate::DeflateParams), and frames as raw bytes (RFC 6455 §5.2).
//! Keeping these here, below both the runtime and the teaching module, is what lets the
//! runtime hand bytes to an observer without depending on any renderer.

/// Which way observed bytes crossed the wire, seen from the observing endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the peer to us.
    Received,
    /// From us to the peer.
    Sent,
}
