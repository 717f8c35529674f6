//! The message rate of one WebSocket (issue 22, item 3): `--message-rate N` with
//! `--message-burst B`, and `--message-bytes-rate` beside it.
//!
//! Sans-IO: [`Throttle`] is told of each complete data message and the time (the loop's
//! milliseconds), and answers whether the message may go on and until when reading must wait.
//! It is a GCRA (`limiter::gcra`, the same step as the per-address rate): one "theoretical
//! arrival time" per limit, moved on by each message's cost.
//!
//! Messages are counted whole (a fragmented message once, when complete); control frames are
//! not counted: a Ping is the protocol's, and answering it keeps the connection alive.
//!
//! With [`RateLimitAction::Throttle`] (the default) nothing is lost: once a message has used
//! up the allowance, the connection is not read until it has refilled, exactly as when its
//! outbound queue is backed up — bytes already read wait in the connection's stash, in order,
//! and TCP pushes back on the sender. With [`RateLimitAction::Close`] a message over the
//! allowance is not delivered; the connection is closed with 1008 (RFC 6455 §7.4.1, policy
//! violation).

use super::limiter::gcra;
use super::timers::Millis;

/// What happens to a WebSocket that sends faster than its [`MessageRate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateLimitAction {
    /// Stop reading it until the allowance refills: every message is delivered, later. The
    /// default.
    #[default]
    Throttle,
    /// Close it with 1008 (policy violation); the message over the allowance is not delivered.
    Close,
}

/// A limit on what one WebSocket may send: data messages per second (with a burst) and
/// payload bytes per second, and what to do past them. The server's is
/// [`ServerConfig::message_rate`](super::ServerConfig::message_rate); an upgrade may set a
/// connection's own with [`Accept::message_rate`](super::Accept::message_rate) (a premium user
/// gets more).
///
/// ```
/// use wsloop::server::{MessageRate, RateLimitAction};
/// let rate = MessageRate::per_second(100).with_burst(20).with_action(RateLimitAction::Close);
/// assert!(!rate.is_off());
/// assert!(MessageRate::OFF.is_off());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageRate {
    /// Data messages per second; 0 = no limit on the count.
    pub per_second: u32,
    /// Messages allowed at once after a quiet spell; 0 means `per_second` (a second's worth).
    pub burst: u32,
    /// Payload bytes per second over all data messages, with a second's worth as burst (a
    /// larger message waits for a full allowance, then passes); 0 = no limit on bytes.
    pub bytes_per_second: u64,
    /// Throttle (the default) or close.
    pub action: RateLimitAction,
}

impl MessageRate {
    /// No limit.
    pub const OFF: MessageRate = MessageRate {
        per_second: 0,
        burst: 0,
        bytes_per_second: 0,
        action: RateLimitAction::Throttle,
    };

    /// `n` messages per second, burst `n`, throttled.
    pub fn per_second(n: u32) -> MessageRate {
        MessageRate {
            per_second: n,
            ..MessageRate::OFF
        }
    }

    /// Messages allowed at once (0: `per_second`).
    pub fn with_burst(mut self, burst: u32) -> MessageRate {
        self.burst = burst;
        self
    }

    /// A limit on payload bytes per second beside the message count (0: none).
    pub fn with_bytes_per_second(mut self, bytes: u64) -> MessageRate {
        self.bytes_per_second = bytes;
        self
    }

    /// What to do past the limit.
    pub fn with_action(mut self, action: RateLimitAction) -> MessageRate {
        self.action = action;
        self
    }

    /// Neither a message nor a byte limit.
    pub fn is_off(&self) -> bool {
        self.per_second == 0 && self.bytes_per_second == 0
    }
}

/// Which limit a message ran into (the `reason` label in `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    Messages,
    Bytes,
}

impl Limit {
    pub(crate) const ALL: [Limit; 2] = [Limit::Messages, Limit::Bytes];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Limit::Messages => "message_rate",
            Limit::Bytes => "message_bytes_rate",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

const US_PER_S: u64 = 1_000_000;

/// One connection's message-rate state (sans-IO). See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    rate: MessageRate,
    /// GCRA state of each limit, microseconds on the loop's clock.
    msg_tat: u64,
    byte_tat: u64,
    /// Reading is paused until this time (the loop's milliseconds); 0 = not paused.
    pub(crate) until: Millis,
}

impl Throttle {
    /// `None` when `rate` limits nothing.
    pub(crate) fn new(rate: MessageRate) -> Option<Throttle> {
        (!rate.is_off()).then_some(Throttle {
            rate,
            msg_tat: 0,
            byte_tat: 0,
            until: 0,
        })
    }

    pub(crate) fn action(&self) -> RateLimitAction {
        self.rate.action
    }

    /// (cost of one message, window) in microseconds.
    fn messages(&self) -> Option<(u64, u64)> {
        let n = u64::from(self.rate.per_second);
        (n > 0).then(|| {
            let t = (US_PER_S / n).max(1);
            let burst = if self.rate.burst == 0 {
                n
            } else {
                u64::from(self.rate.burst)
            };
            (t, t.saturating_mul(burst))
        })
    }

    /// (cost of `len` bytes, window) in microseconds: the window is one second.
    fn bytes(&self, len: usize) -> Option<(u64, u64)> {
        let rate = self.rate.bytes_per_second;
        (rate > 0).then(|| {
            let cost = (len as u128 * u128::from(US_PER_S)).div_ceil(u128::from(rate));
            (u64::try_from(cost).unwrap_or(u64::MAX), US_PER_S)
        })
    }

    /// A complete data message of `len` payload bytes arrived at `now_ms`. Throttling, it is
    /// always taken (the connection was read only while the allowance had room) and charged;
    /// closing, one over the allowance is refused (and not charged): the limit it broke.
    pub(crate) fn message(&mut self, len: usize, now_ms: Millis) -> Result<(), Limit> {
        let now = now_ms.saturating_mul(1000);
        let msg = self
            .messages()
            .map(|(cost, window)| gcra(self.msg_tat, now, cost, window));
        let bytes = self
            .bytes(len)
            .map(|(cost, window)| gcra(self.byte_tat, now, cost, window));
        if self.rate.action == RateLimitAction::Close {
            if let Some(Err(_)) = msg {
                return Err(Limit::Messages);
            }
            if let Some(Err(_)) = bytes {
                return Err(Limit::Bytes);
            }
        }
        // Throttling, a message over the allowance (possible only right after a change of the
        // clock's turn) is charged from where the allowance stands: it makes the next wait
        // longer.
        if let Some((cost, _)) = self.messages() {
            self.msg_tat = msg
                .and_then(Result::ok)
                .unwrap_or(self.msg_tat.max(now).saturating_add(cost));
        }
        if let Some((cost, _)) = self.bytes(len) {
            self.byte_tat = bytes
                .and_then(Result::ok)
                .unwrap_or(self.byte_tat.max(now).saturating_add(cost));
        }
        Ok(())
    }

    /// Throttling: whether reading must pause now, and until when (the loop's milliseconds,
    /// rounded up) and for which limit. Reading goes on while one more message (of one byte,
    /// for the byte limit: the next message's size is not known) would conform.
    pub(crate) fn pause(&self, now_ms: Millis) -> Option<(Millis, Limit)> {
        let now = now_ms.saturating_mul(1000);
        let msg = self
            .messages()
            .and_then(|(cost, window)| gcra(self.msg_tat, now, cost, window).err())
            .map(|w| (w, Limit::Messages));
        let bytes = self
            .bytes(1)
            .and_then(|(_, window)| gcra(self.byte_tat, now, 0, window).err())
            .map(|w| (w, Limit::Bytes));
        let (wait_us, limit) = match (msg, bytes) {
            (Some(m), Some(b)) => {
                if b.0 > m.0 {
                    b
                } else {
                    m
                }
            }
            (m, b) => m.or(b)?,
        };
        Some((now_ms.saturating_add(wait_us.div_ceil(1000).max(1)), limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_lets_the_burst_through_then_paces_one_per_interval() {
        // 200/s, burst 200: 5 ms apart after the first 200.
        let mut t = Throttle::new(MessageRate::per_second(200)).unwrap();
        for i in 0..199 {
            assert_eq!(t.message(10, 0), Ok(()));
            assert_eq!(t.pause(0), None, "message {i} is inside the burst");
        }
        assert_eq!(t.message(10, 0), Ok(()));
        assert_eq!(t.pause(0), Some((5, Limit::Messages)), "the burst is used up");
        assert_eq!(t.pause(4), Some((5, Limit::Messages)));
        assert_eq!(t.pause(5), None, "one more has room at 5 ms");
        assert_eq!(t.message(10, 5), Ok(()));
        assert_eq!(t.pause(5), Some((10, Limit::Messages)));
        // 1,000 messages read as fast as allowed: the last one at about 4 s.
        let mut t = Throttle::new(MessageRate::per_second(200)).unwrap();
        let mut now = 0;
        for _ in 0..1000 {
            if let Some((until, _)) = t.pause(now) {
                now = until;
            }
            assert_eq!(t.message(1, now), Ok(()));
        }
        assert!((3990..=4000).contains(&now), "last message at {now} ms");
    }

    #[test]
    fn a_smaller_burst_pauses_sooner() {
        let mut t = Throttle::new(MessageRate::per_second(10).with_burst(2)).unwrap();
        assert_eq!(t.message(1, 0), Ok(()));
        assert_eq!(t.pause(0), None);
        assert_eq!(t.message(1, 0), Ok(()));
        assert_eq!(t.pause(0), Some((100, Limit::Messages)));
    }

    #[test]
    fn closing_refuses_the_message_over_the_allowance_without_charging_it() {
        let rate = MessageRate::per_second(2).with_action(RateLimitAction::Close);
        let mut t = Throttle::new(rate).unwrap();
        assert_eq!(t.message(1, 0), Ok(()));
        assert_eq!(t.message(1, 0), Ok(()));
        assert_eq!(t.message(1, 0), Err(Limit::Messages));
        assert_eq!(t.message(1, 499), Err(Limit::Messages));
        assert_eq!(t.message(1, 500), Ok(()), "half a second later one has room");
    }

    #[test]
    fn the_byte_rate_paces_by_payload_and_lets_a_large_message_through_late() {
        // 1,000 bytes/s: a second's worth at once, then paced.
        let mut t = Throttle::new(MessageRate::OFF.with_bytes_per_second(1000)).unwrap();
        assert_eq!(t.message(600, 0), Ok(()));
        assert_eq!(t.pause(0), None);
        assert_eq!(t.message(600, 0), Ok(()));
        assert_eq!(
            t.pause(0),
            Some((200, Limit::Bytes)),
            "1,200 bytes at once: 200 ms over"
        );
        // Closing: a 5,000-byte message waits for a full allowance, then passes.
        let rate = MessageRate::OFF
            .with_bytes_per_second(1000)
            .with_action(RateLimitAction::Close);
        let mut t = Throttle::new(rate).unwrap();
        assert_eq!(t.message(5000, 0), Ok(()), "a full allowance takes any one message");
        assert_eq!(t.message(1, 3000), Err(Limit::Bytes), "in debt until 5 s");
        assert_eq!(t.message(1, 4001), Ok(()));
    }

    #[test]
    fn off_is_no_throttle() {
        assert!(Throttle::new(MessageRate::OFF).is_none());
        assert!(Throttle::new(MessageRate::per_second(0).with_burst(5)).is_none());
    }
}
