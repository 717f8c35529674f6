//! Encode-once broadcast: one compressed frame for every subscriber (RFC 7692 §6, §7.2.1).
//!
//! When a server agreed `server_no_context_takeover` with a client, every message it sends that
//! client starts from an empty LZ77 window, so the compressed bytes of a message do not depend
//! on the connection. A server publishing one message to many such subscribers can compress it
//! once and queue the same frame to each.
//!
//! A subscriber can take the shared frame when ([`BroadcastCompressor::suits`]):
//! - it agreed `server_no_context_takeover` (with context takeover its receiver's window must
//!   match its own compressor's, which the shared frame would not have gone through), and
//! - its `server_max_window_bits` is at least the broadcast compressor's window (RFC 7692
//!   §7.2.1: the server "MUST NOT use an LZ77 sliding window longer than" 2^w).
//!
//! Others get the uncompressed frame (always legal, RFC 7692 §6) or their own
//! [`WebSocket::send_text`](crate::protocol::WebSocket::send_text). The connection must be
//! open and not in the middle of sending a fragmented message.
//!
//! ```
//! use wsloop::deflate::{BroadcastCompressor, DeflateParams, Encoded};
//! use wsloop::frame::{encode_frame, Opcode};
//!
//! let mut shared = BroadcastCompressor::new(15);
//! let message = br#"{"room":"lobby","from":"ada","text":"hello, hello, hello, everyone"},{"room":"lobby","from":"grace","text":"hello, hello, hello, everyone"}"#;
//! let mut compressed = Vec::new();
//! let kind = shared.encode(Opcode::Text, message, &mut compressed);
//! assert_eq!(kind, Encoded::Compressed);
//! assert_eq!(compressed[0], 0xc1); // FIN, RSV1, text
//! let mut plain = Vec::new();
//! encode_frame(&mut plain, true, Opcode::Text, None, message);
//!
//! // Per subscriber, per loop turn: queue one of the two, never compress again.
//! let subscriber = DeflateParams::no_context_takeover();
//! let frame = if shared.suits(Some(&subscriber)) { &compressed } else { &plain };
//! assert_eq!(frame, &compressed);
//! assert!(!shared.suits(None)); // no deflate negotiated: the plain frame
//! ```

use super::compress::MessageCompressor;
use super::params::{DeflateParams, DirectionParams, MAX_WINDOW_BITS, MIN_ZLIB_WINDOW_BITS};
use super::{DeflateError, DEFAULT_COMPRESSION_LEVEL, DEFAULT_COMPRESSION_THRESHOLD};
use crate::frame::{apply_mask, encode_header_rsv, Opcode, RSV1};

/// Appends one whole frame holding `message` compressed by `compressor`: FIN=1, RSV1=1 (the
/// "Per-Message Compressed" bit, RFC 7692 §6), `opcode`, masked with `mask` if given (a
/// client's frame). The compressed bytes are written in place after room for the longest
/// header and moved back once their length is known, so there is no second buffer.
pub fn encode_compressed_frame(
    compressor: &mut MessageCompressor,
    opcode: Opcode,
    message: &[u8],
    mask: Option<[u8; 4]>,
    out: &mut Vec<u8>,
) -> Result<(), DeflateError> {
    let start = out.len();
    let room = 10 + if mask.is_some() { 4 } else { 0 };
    out.resize(start + room, 0);
    if let Err(e) = compressor.compress(message, out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - room;
    let header = encode_header_rsv(true, RSV1, opcode, mask, len as u64);
    let hl = header.len();
    out.copy_within(start + room.., start + hl);
    out.truncate(start + hl + len);
    if let Some(dst) = out.get_mut(start..start + hl) {
        dst.copy_from_slice(&header);
    }
    if let (Some(key), Some(payload)) = (mask, out.get_mut(start + hl..)) {
        apply_mask(payload, key, 0);
    }
    Ok(())
}

/// What [`BroadcastCompressor::encode`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// A compressed frame (RSV1 set): only for subscribers that [`BroadcastCompressor::suits`].
    Compressed,
    /// An uncompressed frame (below the threshold, or compression did not make it smaller):
    /// valid for every subscriber, with or without deflate.
    Plain,
}

/// A compressor for messages sent to many `server_no_context_takeover` subscribers: one per
/// event loop, used once per published message. Its state goes back to the per-thread pool
/// after each message, so it costs nothing between broadcasts.
#[derive(Debug, Clone)]
pub struct BroadcastCompressor {
    compressor: MessageCompressor,
    threshold: usize,
}

impl BroadcastCompressor {
    /// A compressor with a 2^`window_bits` window (9..=15), the default level and threshold.
    /// Subscribers that agreed a smaller `server_max_window_bits` need their own (or plain
    /// frames).
    pub fn new(window_bits: u8) -> Self {
        Self::with_level(window_bits, DEFAULT_COMPRESSION_LEVEL, DEFAULT_COMPRESSION_THRESHOLD)
    }

    /// Like [`BroadcastCompressor::new`] with a zlib level (1..=9) and the size below which
    /// messages go uncompressed.
    pub fn with_level(window_bits: u8, level: u8, threshold: usize) -> Self {
        let direction = DirectionParams {
            no_context_takeover: true,
            max_window_bits: window_bits.clamp(MIN_ZLIB_WINDOW_BITS, MAX_WINDOW_BITS),
        };
        BroadcastCompressor {
            compressor: MessageCompressor::new(direction, level),
            threshold,
        }
    }

    /// The window this compressor uses.
    pub fn window_bits(&self) -> u8 {
        self.compressor.direction().max_window_bits
    }

    /// Whether a subscriber with these agreed parameters (`None`: no deflate) may be sent this
    /// compressor's compressed frames.
    pub fn suits(&self, params: Option<&DeflateParams>) -> bool {
        params.is_some_and(|p| p.server_no_context_takeover && p.server_max_window_bits >= self.window_bits())
    }

    /// Appends one unmasked server frame holding `message` (Text or Binary): compressed when it
    /// is at least the threshold long and compressing makes it smaller, plain otherwise.
    pub fn encode(&mut self, opcode: Opcode, message: &[u8], out: &mut Vec<u8>) -> Encoded {
        let start = out.len();
        if message.len() >= self.threshold
            && encode_compressed_frame(&mut self.compressor, opcode, message, None, out).is_ok()
        {
            let compressed_len = out.len() - start;
            if compressed_len
                < crate::frame::encode_header(true, opcode, None, message.len() as u64).len() + message.len()
            {
                return Encoded::Compressed;
            }
            out.truncate(start);
        }
        crate::frame::encode_frame(out, true, opcode, None, message);
        Encoded::Plain
    }
}
