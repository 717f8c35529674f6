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

    #[cfg(test)]
    pub(crate) fn charged(&self) -> usize {
        self.charged as usize
    }
}

/// A framed message shared by many outbound queues (encode-once broadcast); its bytes are
/// charged to the budget while it lives.
#[derive(Debug)]
pub(crate) struct Frame {
    bytes: Box<[u8]>,
    budget: Arc<MemoryBudget>,
}

impl Frame {
    pub(crate) fn new(bytes: Vec<u8>, budget: &Arc<MemoryBudget>) -> Arc<Frame> {
        let bytes = bytes.into_boxed_slice();
        budget.add(bytes.len());
        Arc::new(Frame {
            bytes,
            budget: budget.clone(),
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The opcode and payload of a plain (unmasked, uncompressed, single-frame) message frame,
    /// for a receiver that must encode the message its own way (permessage-deflate with
    /// context takeover).
    pub(crate) fn message(&self) -> Option<(crate::frame::Opcode, &[u8])> {
        match crate::frame::parse_header(&self.bytes) {
            Ok(crate::frame::HeaderStatus::Complete(h)) => {
                Some((h.opcode, self.bytes.get(h.header_len()..).unwrap_or_default()))
            }
            _ => None,
        }
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
