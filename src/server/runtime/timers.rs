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

/// A connection's `scheduled` value when no entry of the heap is its (4 bytes per connection
/// instead of an `Option`'s 8).
pub(crate) const NOT_SCHEDULED: Stamp = Stamp(u32::MAX);

/// How far from now a [`Stamp`] stands for a time exactly: 2^31 - 1 ms, 24.8 days. Also the
/// longest a configured timeout counts for (the session's `ms`), so every deadline a
/// connection keeps is within it.
pub(crate) const STAMP_RANGE: Millis = (1 << 31) - 1;

/// A time on the loop's clock in 32 bits, for the deadlines and the last-heard time every
/// connection keeps (4 bytes each instead of 8; a tenth of the bytes of an idle connection are
/// these). It keeps the clock's low 32 bits, which wrap every 49.7 days of the loop's life;
/// [`Stamp::get`] gives back the time nearest to `now` with those bits, exact for a time
/// within [`STAMP_RANGE`] (24.8 days) of `now`. A connection's times stay that close: its
/// deadlines are at most `STAMP_RANGE` ahead ([`Stamp::new`] holds a later one there, and
/// timeouts count at most that long), and its past times are read before its next deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp(u32);

impl Stamp {
    /// `at`, for reading back while within [`STAMP_RANGE`] of `now`: a later time is held at
    /// `now + STAMP_RANGE` (a deadline comes early rather than never), an earlier one at
    /// `now - STAMP_RANGE`.
    pub(crate) fn new(at: Millis, now: Millis) -> Stamp {
        let at = at.clamp(now.saturating_sub(STAMP_RANGE), now.saturating_add(STAMP_RANGE));
        Stamp(at as u32)
    }

    /// `now` itself (always in range: no clamping on the receive path).
    pub(crate) fn at_now(now: Millis) -> Stamp {
        Stamp(now as u32)
    }

    /// The time on the loop's clock nearest to `now` whose low 32 bits this is.
    pub(crate) fn get(self, now: Millis) -> Millis {
        let ahead = self.0.wrapping_sub(now as u32) as i32;
        now.saturating_add_signed(i64::from(ahead))
    }
}

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
    /// Makes sure the connection is called back no later than `deadline` (at most
    /// [`STAMP_RANGE`] from `now`: a later one is called back then, and asked again).
    /// `scheduled` is the deadline the connection is already scheduled at ([`NOT_SCHEDULED`]:
    /// none); it is updated.
    pub(crate) fn arm(&mut self, slot: usize, generation: u32, deadline: Millis, now: Millis, scheduled: &mut Stamp) {
        let mut deadline = deadline.min(now.saturating_add(STAMP_RANGE));
        if *scheduled != NOT_SCHEDULED && scheduled.get(now) <= deadline {
            return;
        }
        // Within range of `now` (a connection's deadlines are never that far behind it).
        let mut stamp = Stamp(deadline as u32);
        if stamp == NOT_SCHEDULED {
            // The one time in 2^32 whose stamp reads "none": called back a millisecond late.
            deadline += 1;
            stamp = Stamp(deadline as u32);
        }
        *scheduled = stamp;
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
        t.arm(1, 1, 500, 0, &mut a);
        t.arm(2, 1, 100, 0, &mut b);
        t.arm(1, 1, 900, 0, &mut a); // later than scheduled: no new entry
        assert_eq!((t.len(), a.get(0)), (2, 500));
        t.arm(1, 1, 50, 0, &mut a); // earlier: a new entry, the old one goes stale
        assert_eq!((t.len(), a.get(0)), (3, 50));
        assert_eq!(t.next(), Some(50));
        assert_eq!(t.pop_due(40), None);
        assert_eq!(t.pop_due(1000), Some((1, 1, 50)));
        assert_eq!(t.pop_due(1000), Some((2, 1, 100)));
        assert_eq!(t.pop_due(1000), Some((1, 1, 500)), "stale entry: the caller skips it");
        assert_eq!(t.pop_due(1000), None);
    }

    /// The loop's clock passes 2^32 ms (49.7 days) and its low 32 bits wrap: a stamp still
    /// reads back as the same time, before and after, from anywhere within 24.8 days of it.
    #[test]
    fn a_stamp_reads_back_across_the_clocks_32_bit_wrap() {
        let wrap: Millis = 1 << 32;
        for at in [0, 5, wrap - 3, wrap, wrap + 7, 5 * wrap + 123_456] {
            for now in [
                at,
                at.saturating_sub(STAMP_RANGE),
                at + STAMP_RANGE,
                at.saturating_sub(1000),
                at + 1000,
            ] {
                assert_eq!(Stamp::new(at, now).get(now), at, "at {at}, read at {now}");
            }
        }
        // Further ahead than the range: held at its edge, so the deadline comes early.
        let now = wrap - 10;
        assert_eq!(Stamp::new(now + 3 * STAMP_RANGE, now).get(now), now + STAMP_RANGE);
        assert_eq!(Stamp::new(0, 4 * wrap).get(4 * wrap), 4 * wrap - STAMP_RANGE);
    }

    /// A deadline armed across the wrap, and one further than a stamp reaches, are still
    /// called back; the entry and the connection's stamp agree, so it is not taken as stale.
    #[test]
    fn deadlines_across_the_wrap_and_beyond_the_range_come_due() {
        let mut t = Timers::default();
        let now: Millis = (1 << 32) - 20;
        let mut a = NOT_SCHEDULED;
        let mut b = NOT_SCHEDULED;
        t.arm(1, 1, now + 50, now, &mut a);
        t.arm(2, 1, now + 10 * STAMP_RANGE, now, &mut b);
        assert_eq!(t.pop_due(now + 49), None);
        let (slot, _, at) = t.pop_due(now + 50).unwrap_or_default();
        assert_eq!((slot, a.get(now + 50), Stamp::new(at, now + 50)), (1, at, a));
        let (slot, _, at) = t.pop_due(now + STAMP_RANGE).unwrap_or_default();
        assert_eq!((slot, at, b), (2, now + STAMP_RANGE, Stamp::new(at, now + STAMP_RANGE)));
        // The one deadline whose stamp would read "none" is armed a millisecond later.
        let mut c = NOT_SCHEDULED;
        t.arm(3, 1, (1 << 32) - 1, now, &mut c);
        assert_eq!(c.get(now), 1 << 32);
        assert_ne!(c, NOT_SCHEDULED);
    }
}
