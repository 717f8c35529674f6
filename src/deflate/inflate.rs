//! Decompressing one message (RFC 7692 §7.2.2), in bounded steps.
//!
//! A few kilobytes of DEFLATE can stand for megabytes of output (10 MB of zeros compress to
//! about 10 KB). So the output is never sized from the input: the inflater writes into the
//! caller's buffer in steps of at most [`INFLATE_STEP`] bytes and stops with
//! [`DeflateError::TooLarge`] the moment the output would pass the caller's limit, before the
//! memory for the excess is asked for. The buffer's capacity never passes `limit + 1`.

use flate2::{Decompress, FlushDecompress, Status};

use super::params::{DirectionParams, MAX_WINDOW_BITS};
use super::pool;
use super::{DeflateError, EMPTY_STORED_BLOCK};

/// The most output bytes one step of inflating may add to the buffer.
pub const INFLATE_STEP: usize = 16 * 1024;

/// Decompresses the messages of one direction of a connection (RFC 7692 §7.2.2).
///
/// The state is allocated when the first compressed message arrives. With
/// `no_context_takeover` it goes back to a per-thread pool after every message (RFC 7692
/// §7.2.2: the receiver "MAY decompress each new message with an empty LZ77 sliding window");
/// with context takeover it is kept ("MUST decompress each new message using the LZ77 sliding
/// window used to process the last compressed message").
///
/// ```
/// use wsloop::deflate::{DirectionParams, MessageInflater};
///
/// let mut d = MessageInflater::new(DirectionParams { no_context_takeover: true, max_window_bits: 15 });
/// let mut text = Vec::new();
/// d.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut text, 1024).unwrap();
/// d.finish_message(&mut text, 1024).unwrap(); // appends 00 00 ff ff (RFC 7692 §7.2.2 step 1)
/// assert_eq!(text, b"Hello");
/// assert!(!d.is_allocated());
/// ```
#[derive(Debug)]
pub struct MessageInflater {
    direction: DirectionParams,
    state: Option<Decompress>,
}

impl MessageInflater {
    /// An inflater for messages received in `direction`. Nothing is allocated yet.
    pub fn new(direction: DirectionParams) -> Self {
        MessageInflater { direction, state: None }
    }

    /// Whether a DEFLATE state is allocated now.
    pub fn is_allocated(&self) -> bool {
        self.state.is_some()
    }

    /// Bytes of DEFLATE state held now (an estimate, see [`super::inflater_bytes`]).
    pub fn held_bytes(&self) -> usize {
        if self.state.is_some() {
            super::inflater_bytes()
        } else {
            0
        }
    }

    /// Inflates the next piece of a compressed message's payload, appending to `out`, which
    /// may not grow past `limit` bytes (RFC 6455 §10.4). Pieces may be cut anywhere.
    pub fn inflate(&mut self, compressed: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), DeflateError> {
        // Always a 15-bit window: it decodes whatever a sender limited to fewer bits produced
        // (RFC 7692 §7.2.2: the receiver "MAY reduce" its window), zlib-rs allocates 32 KiB
        // whatever the size asked, and one size lets every pooled state fit every connection.
        let state = self
            .state
            .get_or_insert_with(|| pool::take_inflater().unwrap_or_else(|| Decompress::new(false)));
        match inflate_bounded(state, compressed, out, limit) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.discard();
                Err(e)
            }
        }
    }

    /// Ends the message: inflates the `00 00 ff ff` the sender removed (RFC 7692 §7.2.2 step
    /// 1), then keeps the window (context takeover) or gives the state back.
    pub fn finish_message(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), DeflateError> {
        self.inflate(&EMPTY_STORED_BLOCK, out, limit)?;
        if self.direction.no_context_takeover {
            self.release();
        }
        Ok(())
    }

    /// Gives the state back to the pool, reset, e.g. when the connection ends. Only correct
    /// between messages, and with context takeover only if no more messages will come.
    pub fn release(&mut self) {
        if let Some(mut s) = self.state.take() {
            s.reset(false);
            pool::give_inflater(s);
        }
    }

    /// Drops a state that saw bad data: it is not reused.
    fn discard(&mut self) {
        self.state = None;
    }
}

impl Drop for MessageInflater {
    fn drop(&mut self) {
        self.release();
    }
}

impl Clone for MessageInflater {
    /// A clone starts with no state: a DEFLATE window is not copied.
    fn clone(&self) -> Self {
        MessageInflater::new(self.direction)
    }
}

/// The inflate loop. Output goes only into the buffer's spare capacity, which grows
/// geometrically by at least [`INFLATE_STEP`] but is never allocated past `limit + 1` (the one
/// byte over tells that the limit was passed).
fn inflate_bounded(state: &mut Decompress, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), DeflateError> {
    let mut consumed = 0usize;
    loop {
        if out.len() > limit {
            return Err(DeflateError::TooLarge);
        }
        let room = limit.saturating_add(1).saturating_sub(out.len());
        // Small messages get small buffers: a connection keeps its buffer between messages, so
        // the first step is sized from the input (DEFLATE rarely beats 4:1 on text), and the
        // geometric growth below takes over for the rest.
        let guess = input.len().saturating_sub(consumed).saturating_mul(4).max(256);
        let step = room.min(INFLATE_STEP).min(guess);
        if out.capacity() - out.len() < step {
            let target = out
                .capacity()
                .saturating_mul(2)
                .max(out.len() + step)
                .min(limit.saturating_add(1));
            out.reserve_exact(target.saturating_sub(out.len()));
        }
        let spare = out.capacity() - out.len();
        let rest = input.get(consumed..).unwrap_or_default();
        let (before_in, before_out) = (state.total_in(), out.len());
        let status = state
            .decompress_vec(rest, out, FlushDecompress::Sync)
            .map_err(|_| DeflateError::Corrupt)?;
        let used = usize::try_from(state.total_in() - before_in).unwrap_or(usize::MAX);
        consumed = consumed.saturating_add(used);
        let produced = out.len() - before_out;
        if out.len() > limit {
            return Err(DeflateError::TooLarge);
        }
        if status == Status::StreamEnd {
            // A block with BFINAL set ended the DEFLATE stream; RFC 7692 §7.2.1 lets more
            // blocks follow in the same message. Start a new stream whose dictionary is the
            // output so far, so later blocks can still refer back into this message.
            restart_after_final_block(state, out)?;
            if consumed >= input.len() {
                return Ok(());
            }
            continue;
        }
        if consumed >= input.len() && produced < spare {
            return Ok(());
        }
        if used == 0 && produced == 0 {
            // No progress although there is input left and room to write.
            return Err(DeflateError::Corrupt);
        }
    }
}

fn restart_after_final_block(state: &mut Decompress, out: &[u8]) -> Result<(), DeflateError> {
    state.reset(false);
    let window = 1usize << MAX_WINDOW_BITS;
    let dict = out.get(out.len().saturating_sub(window)..).unwrap_or_default();
    if !dict.is_empty() {
        state.set_dictionary(dict).map_err(|_| DeflateError::Corrupt)?;
    }
    Ok(())
}
