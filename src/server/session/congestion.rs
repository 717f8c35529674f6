//! Fan-out backpressure for one receiver, the same for a WebSocket (`ws.rs`) and an event
//! stream (`sse.rs`): once its queue passes the high-water mark it is congested and holds back
//! the publishers that keep feeding it, until the queue drains to the low-water mark (the
//! session's `after_flush`) or the stall timeout passes. A stalled receiver no longer holds
//! anyone: its queue grows until `max_outbound` closes it, or it drains. Sans-IO: the clock
//! comes in as `now`.

use super::super::timers::Millis;
use super::super::ConnId;
use super::Delivery;

/// A receiver that is backed up and the publishers it holds back.
#[derive(Debug)]
struct Congestion {
    since: Millis,
    /// Held back long enough: it no longer pauses publishers.
    stalled: bool,
    holding: Vec<ConnId>,
}

/// A receiver's congestion, if it has any. Boxed inside: a receiver that is not backed up
/// (nearly all of them) pays one pointer for it.
#[derive(Debug, Default)]
pub(super) struct Backlog(Option<Box<Congestion>>);

impl Backlog {
    /// A message was just queued and the queue now holds `queued` bytes: past `high_water`
    /// the receiver is congested (from `now`, if it was not already). The answer for the
    /// publisher: `Congested` (pause it) unless the receiver has stalled.
    pub(super) fn after_queue(&mut self, queued: usize, high_water: usize, now: Millis) -> Delivery {
        if queued <= high_water {
            return Delivery::Queued;
        }
        let c = self.0.get_or_insert_with(|| {
            Box::new(Congestion {
                since: now,
                stalled: false,
                holding: Vec::new(),
            })
        });
        if c.stalled {
            Delivery::Queued
        } else {
            Delivery::Congested
        }
    }

    /// Records that this backed-up receiver holds `publisher`; true if it did not already.
    pub(super) fn hold(&mut self, publisher: ConnId) -> bool {
        match &mut self.0 {
            Some(c) if !c.stalled && !c.holding.contains(&publisher) => {
                c.holding.push(publisher);
                true
            }
            _ => false,
        }
    }

    /// The publishers this receiver holds, taken (it no longer holds them).
    pub(super) fn take_held(&mut self) -> Vec<ConnId> {
        self.0
            .as_mut()
            .map(|c| std::mem::take(&mut c.holding))
            .unwrap_or_default()
    }

    /// The queue drained to the low-water mark: no longer congested; the publishers it held.
    pub(super) fn decongest(&mut self) -> Vec<ConnId> {
        let held = self.take_held();
        self.0 = None;
        held
    }

    /// When a congestion that has not stalled yet will, after `stall` of it.
    pub(super) fn stall_deadline(&self, stall: Millis) -> Option<Millis> {
        self.0.as_ref().filter(|c| !c.stalled).map(|c| c.since + stall)
    }

    /// Past the stall timeout at `now`: the receiver stops holding publishers; the ones it
    /// held, to release (`None` if it did not stall now).
    pub(super) fn stall_if_due(&mut self, now: Millis, stall: Millis) -> Option<Vec<ConnId>> {
        let c = self.0.as_mut().filter(|c| !c.stalled && now >= c.since + stall)?;
        c.stalled = true;
        Some(std::mem::take(&mut c.holding))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> ConnId {
        ConnId::new(0, 0, n, 1)
    }

    #[test]
    fn congests_past_high_water_holds_each_publisher_once_and_stalls() {
        let mut b = Backlog::default();
        assert_eq!(b.after_queue(100, 100, 0), Delivery::Queued);
        assert!(!b.hold(id(1)), "not congested: holds nobody");
        assert_eq!(b.after_queue(101, 100, 10), Delivery::Congested);
        assert!(b.hold(id(1)));
        assert!(!b.hold(id(1)), "already held");
        assert!(b.hold(id(2)));
        // The congestion counts from when it began, not from the latest message.
        assert_eq!(b.after_queue(500, 100, 40), Delivery::Congested);
        assert_eq!(b.stall_deadline(1000), Some(1010));
        assert_eq!(b.stall_if_due(1009, 1000), None);
        assert_eq!(b.stall_if_due(1010, 1000), Some(vec![id(1), id(2)]));
        assert_eq!(b.stall_deadline(1000), None);
        assert_eq!(
            b.after_queue(600, 100, 1100),
            Delivery::Queued,
            "stalled: pauses nobody"
        );
        assert!(!b.hold(id(3)));
        assert!(b.decongest().is_empty());
        assert_eq!(b.after_queue(101, 100, 2000), Delivery::Congested, "congested anew");
        assert!(b.hold(id(3)));
        assert_eq!(b.take_held(), vec![id(3)]);
        assert_eq!(b.take_held(), Vec::<ConnId>::new());
    }
}
