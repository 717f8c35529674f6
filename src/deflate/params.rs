//! The "agreed parameters" of permessage-deflate (RFC 7692 §5, §7.1), as both ends use them
//! once the handshake is over.

use crate::protocol::Role;

/// The largest LZ77 window, 2^15 = 32,768 bytes (RFC 7692 §7.2.1: "MUST NOT use an LZ77
/// sliding window longer than 32,768 bytes").
pub const MAX_WINDOW_BITS: u8 = 15;
/// The smallest window a `*_max_window_bits` parameter may name (RFC 7692 §7.1.2).
pub const MIN_WINDOW_BITS: u8 = 8;
/// The smallest window flate2 (like zlib) can compress raw DEFLATE with: zlib's `deflateInit2`
/// refuses `windowBits` 8 without the zlib wrapper, and silently uses 9 with it. A compressor
/// limited to 8 therefore sends every message uncompressed (legal: RFC 7692 §6 lets any message
/// go uncompressed). Inflating needs no such care: a larger window decodes anything a
/// 256-byte window produced (RFC 7692 §7.2.2: the receiver "MAY reduce" its window).
pub const MIN_ZLIB_WINDOW_BITS: u8 = 9;

/// What both ends agreed to in the handshake (RFC 7692 §7.1), with the defaults the RFC gives
/// for absent parameters filled in: no `*_no_context_takeover` means context takeover is
/// allowed, no `*_max_window_bits` means 15.
///
/// The `server_*` fields govern messages the server sends, the `client_*` fields messages the
/// client sends (RFC 7692 §7: "The extension parameters with the "client_" prefix are used by
/// the client to configure its compressor and by the server to configure its decompressor").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeflateParams {
    /// The server starts each message with an empty window (RFC 7692 §7.1.1.1).
    pub server_no_context_takeover: bool,
    /// The client starts each message with an empty window (RFC 7692 §7.1.1.2).
    pub client_no_context_takeover: bool,
    /// The server compresses with a window of at most 2^bits bytes, 8..=15 (RFC 7692 §7.1.2.1).
    pub server_max_window_bits: u8,
    /// The client compresses with a window of at most 2^bits bytes, 8..=15 (RFC 7692 §7.1.2.2).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// `permessage-deflate` with no parameters: context takeover both ways, 32 KiB windows.
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// How one direction of a connection compresses: what the sender must do and the receiver may
/// rely on (RFC 7692 §7.2.1, §7.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirectionParams {
    /// Each message starts with an empty LZ77 window.
    pub no_context_takeover: bool,
    /// The sender's window is at most 2^bits bytes.
    pub max_window_bits: u8,
}

impl DeflateParams {
    /// The "shared" configuration: no context takeover either way, 32 KiB windows. Idle
    /// connections hold no (de)compressor, and a server can compress a broadcast once for
    /// every subscriber.
    pub fn no_context_takeover() -> Self {
        DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateParams::default()
        }
    }

    /// The direction of messages sent by `role`.
    pub fn sent_by(&self, role: Role) -> DirectionParams {
        match role {
            Role::Server => DirectionParams {
                no_context_takeover: self.server_no_context_takeover,
                max_window_bits: self.server_max_window_bits,
            },
            Role::Client => DirectionParams {
                no_context_takeover: self.client_no_context_takeover,
                max_window_bits: self.client_max_window_bits,
            },
        }
    }

    /// The direction of messages received by `role` (sent by the other end).
    pub fn received_by(&self, role: Role) -> DirectionParams {
        match role {
            Role::Server => self.sent_by(Role::Client),
            Role::Client => self.sent_by(Role::Server),
        }
    }
}
