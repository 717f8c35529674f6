//! Compressing one message (RFC 7692 §7.2.1), with or without context takeover.

use flate2::{Compress, Compression, FlushCompress, Status};

use super::params::{DirectionParams, MIN_ZLIB_WINDOW_BITS};
use super::pool;
use super::{DeflateError, EMPTY_STORED_BLOCK};

/// Compresses whole messages for one direction of a connection (RFC 7692 §7.2.1), or for a
/// broadcast ([`super::encode_compressed_frame`]).
///
/// The DEFLATE state is allocated on the first message. With `no_context_takeover` it goes
/// back to a per-thread pool after every message (RFC 7692 §7.2.1: "MUST start compressing
/// each new message with an empty LZ77 sliding window"), so an idle connection holds none;
/// with context takeover it is kept, and each message may refer to earlier ones.
///
/// ```
/// use wsloop::deflate::{DirectionParams, MessageCompressor};
///
/// let mut c = MessageCompressor::new(DirectionParams { no_context_takeover: true, max_window_bits: 15 }, 6);
/// let mut payload = Vec::new();
/// c.compress(b"Hello", &mut payload).unwrap();
/// // RFC 7692 §7.2.3.1: one fixed-Huffman block, the trailing 00 00 ff ff removed.
/// assert_eq!(payload, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
/// assert!(!c.is_allocated());
/// ```
#[derive(Debug)]
pub struct MessageCompressor {
    direction: DirectionParams,
    level: u8,
    state: Option<Compress>,
}

impl MessageCompressor {
    /// A compressor for messages sent in `direction`, at zlib `level` 0..=9 (0: stored blocks
    /// only; 1 fastest; 9 smallest). Nothing is allocated yet.
    pub fn new(direction: DirectionParams, level: u8) -> Self {
        MessageCompressor {
            direction,
            level: level.min(9),
            state: None,
        }
    }

    /// The direction's parameters.
    pub fn direction(&self) -> DirectionParams {
        self.direction
    }

    /// Whether this compressor can honour its window limit. zlib cannot produce raw DEFLATE
    /// with a 256-byte window, so with `max_window_bits` 8 every message goes uncompressed
    /// (see [`super::MIN_ZLIB_WINDOW_BITS`]).
    pub fn can_compress(&self) -> bool {
        self.direction.max_window_bits >= MIN_ZLIB_WINDOW_BITS
    }

    /// Whether a DEFLATE state is allocated now.
    pub fn is_allocated(&self) -> bool {
        self.state.is_some()
    }

    /// Bytes of DEFLATE state held now (an estimate from the backend's layout, see
    /// [`super::compressor_bytes`]).
    pub fn held_bytes(&self) -> usize {
        if self.state.is_some() {
            super::compressor_bytes(self.direction.max_window_bits)
        } else {
            0
        }
    }

    /// Compresses one whole message and appends its payload to `out`: DEFLATE blocks ending in
    /// a sync flush, with the flush's empty stored block `00 00 ff ff` removed (RFC 7692
    /// §7.2.1 steps 1–3).
    ///
    /// On error nothing is appended and the state is dropped, so the next message starts from
    /// an empty window; the peer's window still holds everything this compressor could refer
    /// to, so that stays in step.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        if !self.can_compress() {
            return Err(DeflateError::WindowTooSmall);
        }
        let start = out.len();
        let mut state = match self.state.take() {
            Some(s) => s,
            None => pool::take_compressor(self.direction.max_window_bits, self.level).unwrap_or_else(|| {
                Compress::new_with_window_bits(
                    Compression::new(u32::from(self.level)),
                    false,
                    self.direction.max_window_bits,
                )
            }),
        };
        match sync_flush(&mut state, message, out) {
            Ok(()) if out.len() == start => {
                // Nothing to flush: an empty message right after another sync flush (context
                // takeover), where the stream already ends on a byte boundary. An empty
                // message is then the single octet 0x00 (RFC 7692 §7.2.3.6): the header of an
                // empty stored block, which the receiver completes with the 00 00 ff ff it
                // appends.
                out.push(0x00);
                self.after_message(state);
                Ok(())
            }
            Ok(()) if out.ends_with(&EMPTY_STORED_BLOCK) && out.len() >= start + EMPTY_STORED_BLOCK.len() => {
                out.truncate(out.len() - EMPTY_STORED_BLOCK.len());
                self.after_message(state);
                Ok(())
            }
            _ => {
                out.truncate(start);
                Err(DeflateError::Compress)
            }
        }
    }

    /// Keeps the state for the next message (context takeover) or gives it back.
    fn after_message(&mut self, mut state: Compress) {
        if self.direction.no_context_takeover {
            state.reset();
            pool::give_compressor(self.direction.max_window_bits, self.level, state);
        } else {
            self.state = Some(state);
        }
    }

    /// Drops the DEFLATE state (back to the pool), e.g. when the connection ends. The next
    /// message starts from an empty window, which is always safe for the receiver.
    pub fn release(&mut self) {
        if let Some(mut s) = self.state.take() {
            s.reset();
            pool::give_compressor(self.direction.max_window_bits, self.level, s);
        }
    }
}

impl Drop for MessageCompressor {
    fn drop(&mut self) {
        self.release();
    }
}

impl Clone for MessageCompressor {
    /// A clone starts with no state: a DEFLATE window is not copied. Only safe at a message
    /// boundary, like [`MessageCompressor::release`].
    fn clone(&self) -> Self {
        MessageCompressor::new(self.direction, self.level)
    }
}

/// Feeds all of `input` with `Z_SYNC_FLUSH` (RFC 7692 §7.3), growing `out` as needed.
fn sync_flush(state: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
    let mut consumed = 0usize;
    // DEFLATE's worst case is a few bytes per 16 KiB stored block, plus the flush.
    out.reserve(input.len() + input.len() / 1024 + 64);
    loop {
        if out.capacity() == out.len() {
            out.reserve(out.len().max(64));
        }
        let before_in = state.total_in();
        let rest = input.get(consumed..).unwrap_or_default();
        let status = state
            .compress_vec(rest, out, FlushCompress::Sync)
            .map_err(|_| DeflateError::Compress)?;
        consumed += usize::try_from(state.total_in() - before_in).unwrap_or(usize::MAX);
        if status == Status::StreamEnd {
            return Err(DeflateError::Compress);
        }
        // The flush is complete once all input is in and the output was not filled up.
        if consumed >= input.len() && out.len() < out.capacity() {
            return Ok(());
        }
    }
}
