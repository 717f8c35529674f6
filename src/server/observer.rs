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

    /// The peer broke a protocol rule; the connection is failing with `error`'s close code.
    fn protocol_error(&self, id: ConnId, peer: SocketAddr, error: &crate::ProtocolError) {
        let _ = (id, peer, error);
    }
}
