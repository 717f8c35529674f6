//! permessage-deflate on one connection (RFC 7692 §6, §7.2): which messages are compressed,
//! and the two directions' compressor and inflater.

use crate::deflate::{DeflateError, DeflateParams, MessageCompressor, MessageInflater};
use crate::error::ProtocolError;

use super::Role;

/// A connection's permessage-deflate state, in the connection's boxed `Ext` so a server
/// without it pays one pointer.
#[derive(Debug, Clone)]
pub(super) struct PerMessageDeflate {
    pub params: DeflateParams,
    /// Compresses what we send (RFC 7692 §7.2.1).
    pub compressor: MessageCompressor,
    /// Inflates what the peer sends (RFC 7692 §7.2.2).
    pub inflater: MessageInflater,
    /// The message being received had RSV1 set on its first frame: a "compressed message"
    /// (RFC 7692 §6).
    pub receiving_compressed: bool,
    /// Compressed payload bytes of that message so far, bounded like an uncompressed one.
    pub compressed_in: u64,
    /// The reassembly buffer while lent out as an inflated text message: `String::from_utf8`
    /// checks the last piece and converts in one pass, where a check and then `from_utf8` for
    /// the `&str` would read the message twice (measured: 12-14% of a 1 KiB receive). Here,
    /// not in `WebSocket`, so connections without deflate do not carry it.
    pub text: String,
}

impl PerMessageDeflate {
    pub fn new(params: DeflateParams, role: Role, level: u8) -> Self {
        PerMessageDeflate {
            params,
            compressor: MessageCompressor::new(params.sent_by(role), level),
            inflater: MessageInflater::new(params.received_by(role)),
            receiving_compressed: false,
            compressed_in: 0,
            text: String::new(),
        }
    }

    /// Heap bytes held by the (de)compressor states and the lent text, beyond this struct
    /// (which lives in the connection's `Ext` box, counted there).
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.compressor.held_bytes() + self.inflater.held_bytes()
    }
}

/// The protocol error an inflate failure fails the connection with.
pub(super) fn inflate_error(e: DeflateError) -> ProtocolError {
    match e {
        DeflateError::TooLarge => ProtocolError::DecompressedMessageTooLarge,
        _ => ProtocolError::InvalidCompressedData,
    }
}
