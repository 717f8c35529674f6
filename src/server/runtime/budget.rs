//! The server-wide memory budget: one counter of the bytes every connection holds in its
//! buffers (request heads and bodies in progress, WebSocket messages being reassembled, input
//! waiting while a connection is paused, outbound queues) plus every framed broadcast message
//! (counted once, however many queues share it).
//!
//! Each connection charges what it holds after every step ([`Charge::settle`]); a shared frame
//! charges itself when it is built and gives the bytes back when the last queue lets go of it.
//! When the total would pass the limit, the loops refuse new large messages (a frame whose
//! length does not fit what is left fails with 1009 from its header alone) and close the
//! connections holding the most (1013, "try again later"), so the process stays under it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The counter and its limit.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub(crate) fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes currently charged.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the total is past the limit.
    pub(crate) fn exceeded(&self) -> bool {
        self.used() > self.limit
    }

    fn add(&self, n: usize) {
        if n > 0 {
            self.used.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn sub(&self, n: usize) {
        if n > 0 {
            // Never below zero, even if a caller's arithmetic were off.
            let _ = self
                .used
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| Some(u.saturating_sub(n)));
        }
    }
}

/// What one connection has charged to the budget.
#[derive(Debug, Default)]
pub(crate) struct Charge {
    charged: u32,
}

impl Charge {
    /// Sets this connection's share to `holding` bytes.
    pub(crate) fn settle(&mut self, budget: &MemoryBudget, holding: usize) {
        // One connection never holds 4 GiB (its limits are far below); saturate if it did.
        let holding = u32::try_from(holding).unwrap_or(u32::MAX);
        if holding > self.charged {
            budget.add((holding - self.charged) as usize);
        } else {
            budget.sub((self.charged - holding) as usize);
        }
        self.charged = holding;
    }

    /// This connection's share now (what closing it gives back).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn charged(&self) -> usize {
        self.charged as usize
    }
}

/// A framed message shared by many outbound queues (encode-once broadcast); its bytes are
/// charged to the budget while it lives. A message framed here (`Frame::message`) keeps where
/// its payload starts, so whoever needs the message rather than the frame (a receiver with its
/// own compressor, the bus) reads it without parsing the frame back.
#[derive(Debug)]
pub(crate) struct Frame {
    bytes: Box<[u8]>,
    budget: Arc<MemoryBudget>,
    /// For a plain message frame: its opcode and where its payload starts.
    message: Option<(crate::frame::Opcode, u8)>,
    /// What the message is to a topic's history: an event stream (`session/sse.rs`) names a
    /// recorded message's id in its `id:` field and sends a replay's notice as its own event.
    tag: Tag,
}

/// What a published message is to a topic's history (see [`Frame::tag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Tag {
    /// A plain publication.
    #[default]
    Plain,
    /// A recorded message, with its place in the topic's history.
    Recorded(crate::server::history::HistoryId),
    /// The notice of a replay that could not be complete (the client must resync).
    Notice,
}

impl Frame {
    /// Bytes already framed (a compressed variant, or a test's bytes): not readable as a
    /// message.
    pub(crate) fn new(bytes: Vec<u8>, budget: &Arc<MemoryBudget>) -> Arc<Frame> {
        Self::charged(bytes, budget, None, Tag::Plain)
    }

    /// One unmasked, final frame carrying `payload` (a server's frame, RFC 6455 §5.1–§5.2).
    pub(crate) fn message(opcode: crate::frame::Opcode, payload: &[u8], budget: &Arc<MemoryBudget>) -> Arc<Frame> {
        Self::tagged(opcode, payload, Tag::Plain, budget)
    }

    /// [`Frame::message`] for a recorded message or a replay's notice.
    pub(crate) fn tagged(
        opcode: crate::frame::Opcode,
        payload: &[u8],
        tag: Tag,
        budget: &Arc<MemoryBudget>,
    ) -> Arc<Frame> {
        let mut v = Vec::with_capacity(payload.len() + 10);
        crate::frame::encode_frame(&mut v, true, opcode, None, payload);
        // The header is at most 10 bytes (RFC 6455 §5.2): it fits.
        let header = u8::try_from(v.len() - payload.len()).unwrap_or(u8::MAX);
        Self::charged(v, budget, Some((opcode, header)), tag)
    }

    fn charged(
        bytes: Vec<u8>,
        budget: &Arc<MemoryBudget>,
        message: Option<(crate::frame::Opcode, u8)>,
        tag: Tag,
    ) -> Arc<Frame> {
        let bytes = bytes.into_boxed_slice();
        budget.add(bytes.len());
        Arc::new(Frame {
            bytes,
            budget: budget.clone(),
            message,
            tag,
        })
    }

    /// What the message is to a topic's history.
    pub(crate) fn tag(&self) -> Tag {
        self.tag
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The opcode and payload of a message framed with [`Frame::message`], for a receiver that
    /// must encode the message its own way (permessage-deflate with context takeover) or the
    /// bus; `None` for other bytes.
    pub(crate) fn payload(&self) -> Option<(crate::frame::Opcode, &[u8])> {
        let (opcode, at) = self.message?;
        Some((opcode, self.bytes.get(usize::from(at)..)?))
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        self.budget.sub(self.bytes.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_frame_keeps_its_payload_without_parsing_back() {
        use crate::frame::Opcode;
        let budget = MemoryBudget::new(1 << 20);
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload = vec![7u8; len];
            let f = Frame::message(Opcode::Binary, &payload, &budget);
            let mut want = Vec::new();
            crate::frame::encode_frame(&mut want, true, Opcode::Binary, None, &payload);
            assert_eq!(f.bytes(), &want[..], "{len}");
            assert_eq!(f.payload(), Some((Opcode::Binary, &payload[..])), "{len}");
            assert_eq!(budget.used(), want.len(), "charged");
        }
        assert_eq!(
            Frame::new(vec![0x81, 1, b'a'], &budget).payload(),
            None,
            "bytes framed elsewhere"
        );
    }

    #[test]
    fn charges_settle_and_frames_give_back_on_drop() {
        let budget = MemoryBudget::new(1000);
        let mut a = Charge::default();
        a.settle(&budget, 600);
        assert_eq!((budget.used(), budget.exceeded()), (600, false));
        let frame = Frame::new(vec![0; 500], &budget);
        let shared = frame.clone();
        assert!(budget.exceeded());
        drop(frame);
        assert_eq!(budget.used(), 1100, "still shared");
        drop(shared);
        assert_eq!(budget.used(), 600);
        a.settle(&budget, 100);
        assert_eq!((budget.used(), a.charged()), (100, 100));
        a.settle(&budget, 0);
        assert_eq!(budget.used(), 0);
    }
}
