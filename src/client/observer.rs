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
