//! Deadlines for the loop's connections: a min-heap keyed by the earliest time each connection
//! asked to be called back, so a loop turn looks only at connections whose time has come
//! instead of sweeping all of them (quinn-proto's `poll_timeout` / `handle_timeout` shape).
//!
//! Entries are never removed early. A connection remembers the deadline it is scheduled at
//! ([`Timers::arm`] compares against it); when an entry comes due the loop asks the connection
//! for its real next deadline, which may have moved later (activity pushes an idle deadline
//! back) — then it is simply scheduled again. An entry for a connection that has gone, or a
//! stale entry superseded by an earlier one, is skipped. So the heap holds about one entry per
//! connection, and activity costs nothing here.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Milliseconds on the loop's clock.
pub(crate) type Millis = u64;

/// A connection's `scheduled` value when no entry of the heap is its (8 bytes per connection
/// instead of an `Option`'s 16).
pub(crate) const NOT_SCHEDULED: Millis = Millis::MAX;

/// A pending callback: when, and for which slot and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Millis,
    slot: u32,
    generation: u32,
}

/// The heap.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    /// Makes sure the connection is called back no later than `deadline`. `scheduled` is the
    /// deadline the connection is already scheduled at ([`NOT_SCHEDULED`]: none); it is
    /// updated.
    pub(crate) fn arm(&mut self, slot: usize, generation: u32, deadline: Millis, scheduled: &mut Millis) {
        if *scheduled <= deadline {
            return;
        }
        *scheduled = deadline;
        self.heap.push(Reverse(Entry {
            at: deadline,
            slot: slot as u32,
            generation,
        }));
    }

    /// The earliest deadline in the heap (possibly stale: waking for it is harmless).
    pub(crate) fn next(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Pops one entry due at `now`: `(slot, generation, at)`. The caller checks that the
    /// connection still exists and is still scheduled at `at` (otherwise the entry is stale).
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<(usize, u32, Millis)> {
        if self.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            self.heap.pop().map(|Reverse(e)| (e.slot as usize, e.generation, e.at))
        } else {
            None
        }
    }

    /// Entries held (for tests and metrics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_entries_come_out_in_deadline_order_and_later_arms_are_free() {
        let mut t = Timers::default();
        let mut a = NOT_SCHEDULED;
        let mut b = NOT_SCHEDULED;
        t.arm(1, 1, 500, &mut a);
        t.arm(2, 1, 100, &mut b);
        t.arm(1, 1, 900, &mut a); // later than scheduled: no new entry
        assert_eq!((t.len(), a), (2, 500));
        t.arm(1, 1, 50, &mut a); // earlier: a new entry, the old one goes stale
        assert_eq!((t.len(), a), (3, 50));
        assert_eq!(t.next(), Some(50));
        assert_eq!(t.pop_due(40), None);
        assert_eq!(t.pop_due(1000), Some((1, 1, 50)));
        assert_eq!(t.pop_due(1000), Some((2, 1, 100)));
        assert_eq!(t.pop_due(1000), Some((1, 1, 500)), "stale entry: the caller skips it");
        assert_eq!(t.pop_due(1000), None);
    }
}
