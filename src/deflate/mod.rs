//! permessage-deflate's payload transformation (RFC 7692 §7.2), sans-IO: compress a message,
//! inflate one in bounded steps, and build a compressed frame once for many receivers.
//!
//! - [`DeflateParams`]: the agreed parameters, from
//!   [`negotiate_deflate`](crate::handshake::deflate::negotiate_deflate) (server) or
//!   [`ClientHandshake::with_deflate`](crate::handshake::client::ClientHandshake::with_deflate)
//!   (client). Give them to [`WebSocket::with_deflate`](crate::protocol::WebSocket::with_deflate)
//!   and the connection compresses and inflates by itself.
//! - [`MessageCompressor`] and [`MessageInflater`]: one direction each, allocated on the first
//!   compressed message, released after every message when that direction has no context
//!   takeover.
//! - [`BroadcastCompressor`]: encode-once broadcast for `server_no_context_takeover`
//!   subscribers.
//!
//! ## For the server shell: the whole flow
//!
//! 1. At the upgrade: [`validate_upgrade`](crate::handshake::validate_upgrade) parses the
//!    offers into `UpgradeRequest::extensions` (a malformed header is already a 400);
//!    [`negotiate_deflate`](crate::handshake::deflate::negotiate_deflate) with the server's
//!    [`DeflatePolicy`](crate::handshake::deflate::DeflatePolicy) picks one;
//!    [`write_accept_response_with_extensions`](crate::handshake::write_accept_response_with_extensions)
//!    writes the 101 with the answer.
//! 2. The connection: [`WebSocket::with_deflate`](crate::protocol::WebSocket::with_deflate).
//!    `receive` yields inflated `Event::Text` / `Event::Binary`; `send_text` / `send_binary`
//!    compress at or above `Config::deflate_threshold`.
//! 3. Broadcast: one [`BroadcastCompressor`] per event loop; per published message, one
//!    compressed frame and one plain frame; each subscriber gets the compressed one if
//!    [`BroadcastCompressor::suits`] its [`WebSocket::deflate_params`](crate::protocol::WebSocket::deflate_params).
//! 4. Memory: charge [`WebSocket::memory_held`](crate::protocol::WebSocket::memory_held) per
//!    connection after each `receive`/`send`, and [`pooled_bytes`] once per loop thread;
//!    [`WebSocket::set_max_message_size`](crate::protocol::WebSocket::set_max_message_size)
//!    shrinks a connection's share under pressure.
//!
//! ```
//! use wsloop::deflate::{BroadcastCompressor, Encoded};
//! use wsloop::frame::{encode_frame, Opcode};
//! use wsloop::handshake::deflate::{negotiate_deflate, DeflatePolicy};
//! use wsloop::handshake::{validate_upgrade, write_accept_response_with_extensions, ParseStatus, RequestParser};
//! use wsloop::protocol::{Config, Event, WebSocket};
//!
//! // 1. The upgrade, as Chrome sends it.
//! let head = b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//! Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
//! Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
//! let Ok(ParseStatus::Complete { request, .. }) = RequestParser::default().parse(head) else { panic!() };
//! let upgrade = validate_upgrade(&request).unwrap();
//! let deflate = negotiate_deflate(&upgrade.extensions, &DeflatePolicy::default());
//! let mut response = Vec::new();
//! write_accept_response_with_extensions(
//!     &mut response,
//!     upgrade.key.as_bytes(),
//!     None,
//!     deflate.as_ref().map(|(_, answer)| answer.as_str()),
//!     &[],
//! );
//!
//! // 2. The connection.
//! let mut ws = WebSocket::server(Config::default());
//! if let Some((params, _)) = deflate {
//!     ws = ws.with_deflate(params);
//! }
//! // RFC 7692 §7.2.3.1's compressed "Hello", masked as a client sends it.
//! let key = [1, 2, 3, 4];
//! let mut frame = vec![0xc1, 0x87, 1, 2, 3, 4];
//! frame.extend([0xf2u8, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00].iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
//! let mut out = Vec::new();
//! assert_eq!(ws.receive(&mut frame, &mut out).unwrap().event, Some(Event::Text("Hello")));
//!
//! // 3. Encode-once broadcast.
//! let mut shared = BroadcastCompressor::new(15);
//! let message = "{\"room\":\"lobby\",\"text\":\"hello\"}".repeat(8);
//! let (mut compressed, mut plain) = (Vec::new(), Vec::new());
//! let kind = shared.encode(Opcode::Text, message.as_bytes(), &mut compressed);
//! encode_frame(&mut plain, true, Opcode::Text, None, message.as_bytes());
//! let for_this_one = if kind == Encoded::Compressed && shared.suits(ws.deflate_params()) {
//!     &compressed
//! } else {
//!     &plain
//! };
//! assert!(for_this_one.len() < plain.len());
//!
//! // 4. Memory: the shared mode holds no DEFLATE state between messages; the next call
//! // (here with no bytes) gives back the buffer the last event borrowed.
//! ws.receive(&mut [], &mut out).unwrap();
//! assert!(ws.memory_held() < 1024, "{}", ws.memory_held());
//! ```
//!
//! ## The zlib window-size caveat
//!
//! zlib (and zlib-rs, which flate2 uses here) cannot compress raw DEFLATE with an LZ77 window
//! of 2^8 bytes: `deflateInit2` rejects `windowBits` 8 for raw streams. RFC 7692 §7.2.1 says
//! the sender "MUST NOT use an LZ77 sliding window longer than" 2^w bytes, so quietly using 9
//! would break the agreement. Instead a direction limited to 8 sends every message
//! uncompressed, which RFC 7692 §6 always allows; offers of `server_max_window_bits=8` are
//! therefore still accepted (the client may compress towards us). Inflating, a window larger
//! than agreed is always fine (RFC 7692 §7.2.2: the receiver "MAY reduce" its window), so
//! inflaters always use 15 bits (zlib-rs allocates 32 KiB for any size anyway).
//!
//! ## Memory
//!
//! | mode | held by an idle connection | held while a message is in flight |
//! |---|---|---|
//! | off | nothing | the reassembly buffer |
//! | shared (both `*_no_context_takeover`) | nothing: states go back to a per-thread pool | one compressor or inflater, from the pool |
//! | dedicated (context takeover, `w` window bits) | [`compressor_bytes`]`(w)` + [`inflater_bytes`]`()` for its lifetime | the same |
//!
//! [`WebSocket::memory_held`](crate::protocol::WebSocket::memory_held) reports a connection's
//! share; [`pooled_bytes`] reports the thread's pool.

mod broadcast;
mod compress;
mod inflate;
mod params;
mod pool;

pub use broadcast::{encode_compressed_frame, BroadcastCompressor, Encoded};
pub use compress::MessageCompressor;
pub use inflate::{MessageInflater, INFLATE_STEP};
pub use params::{DeflateParams, DirectionParams, MAX_WINDOW_BITS, MIN_WINDOW_BITS, MIN_ZLIB_WINDOW_BITS};
pub use pool::{clear_pool, pooled_bytes, POOL_CAPACITY};

use std::fmt;

/// The empty stored block a sync flush ends with; removed on send, appended on receive
/// (RFC 7692 §7.2.1 step 3, §7.2.2 step 1).
pub const EMPTY_STORED_BLOCK: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Default zlib level, 0..=9. Measured on 1 KiB JSON-like messages without context takeover
/// (`benches/deflate_backends`): level 1 (zlib-rs's `deflate_quick`) compresses at ~90 MB/s to
/// 36% of the input, level 2 at ~44 MB/s to 27%, level 6 at ~38 MB/s to 26%; with takeover
/// level 1 reaches ~250-330 MB/s at 23%. A server compresses every message it sends, so the
/// default takes the 2-4x speed; [`Config::deflate_level`](crate::protocol::Config) trades it back.
pub const DEFAULT_COMPRESSION_LEVEL: u8 = 1;

/// Default size below which messages are sent uncompressed: 128 bytes. Measured with
/// `cargo bench --bench deflate -- threshold` (mean frame bytes over 64 JSON-like messages):
///
/// | message | plain | shared (no takeover) | takeover |
/// |---|---|---|---|
/// | 16–64 B | 18–66 | 18–66 (never smaller) | 14–18 |
/// | 96 B | 98 | 97 | 27 |
/// | 128 B | 132 | 116 | 44 |
/// | 256 B | 260 | 153 | 69 |
///
/// In the shared mode (the default policy) a message compressed on its own only starts to
/// shrink around 100 bytes, while every attempt costs ~5 µs (mostly resetting the 128 KiB hash
/// table) against ~25 ns for a plain frame. With context takeover even 16-byte messages
/// shrink, so a server in the dedicated mode may set [`Config::deflate_threshold`] to 16.
///
/// [`Config::deflate_threshold`]: crate::protocol::Config::deflate_threshold
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 128;

/// Why a message could not be compressed or inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeflateError {
    /// The inflated message would pass the size limit (RFC 6455 §10.4).
    TooLarge,
    /// The compressed data is not valid DEFLATE (RFC 7692 §7.2.2, RFC 1951).
    Corrupt,
    /// The compressor failed (it should not; the message is then sent uncompressed or not at
    /// all, and the state is dropped).
    Compress,
    /// The agreed window is 2^8 bytes, which zlib cannot compress with (see the module docs).
    WindowTooSmall,
}

impl fmt::Display for DeflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeflateError::TooLarge => "inflated message passes the size limit",
            DeflateError::Corrupt => "invalid DEFLATE data",
            DeflateError::Compress => "compression failed",
            DeflateError::WindowTooSmall => "a 256-byte window cannot be compressed with zlib",
        })
    }
}

impl std::error::Error for DeflateError {}

/// Heap bytes of one compressor with a 2^`window_bits` window (zlib-rs, memLevel 8): the
/// window (2·2^w) and `prev` chain (2·2^w) scale with it; hash heads, the pending/literal
/// buffers and the state are a fixed 248,960 B. Measured with a counting allocator (380,032 B
/// at 15 bits, 251,008 B at 9) and checked by `tests/deflate_memory.rs`.
pub fn compressor_bytes(window_bits: u8) -> usize {
    let w = 1usize << window_bits.clamp(MIN_ZLIB_WINDOW_BITS, MAX_WINDOW_BITS);
    4 * w + 248_960
}

/// Heap bytes of one inflater: zlib-rs allocates a 32 KiB window and its state up front,
/// whatever window size is asked for (47,552 B measured at 9, 12 and 15 bits), which is why
/// inflaters here are always built for 15 bits.
pub fn inflater_bytes() -> usize {
    47_552
}

#[cfg(test)]
mod tests;
