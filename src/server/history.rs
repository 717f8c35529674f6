//! Topic history and replay on reconnect: what a client missed while it was away, then live
//! messages, with no gap and no duplicate at the seam.
//!
//! **Recorded messages.** Only messages published with `publish_recorded` go into a topic's
//! history (chat lines, not presence notices, which are stale by the time anyone replays them).
//! Each gets a [`HistoryId`] and carries it inside its own bytes: a [`Stamped`] message is a
//! prefix and a suffix, and the server sends `prefix + id + suffix` — the demo puts the id in
//! its JSON as `"mid"`. Without a message bus the ids come from an in-memory ring per topic
//! ([`MemoryHistory`], this process only); with Redis they are Redis Stream ids (see
//! `bus/redis.rs`). Both have the same form, `MS-SEQ`, and the same bounds: at most
//! `history_size` messages per topic, none older than `history_ttl`.
//!
//! **Replay** (`Context::subscribe_since(topic, since, notice)`). A reconnecting client names
//! the last id it saw. The server sends every recorded message after it, in order, then live
//! ones; or, when it cannot be sure the replay is complete — the id was trimmed away, is from
//! another history (a restarted single process), or the bus is unreachable — the `notice` the
//! handler gave, so the client can resync (the demo sends `{"type":"resync",…}`).
//!
//! **The seam** — how "missed, then live" has no gap and no duplicate:
//!
//! 1. The connection is subscribed to the topic *first*, before history is read. From that
//!    moment every message recorded later reaches it live.
//! 2. History is read *after* that: everything recorded before the read is in it. So every
//!    message after `since` is in the read or arrives live (no gap); a message recorded around
//!    the read may be in both.
//! 3. While the read is outstanding (Redis: a round trip on the bus thread), live recorded
//!    messages for that connection and topic are held in a bounded buffer ([`Recoveries`])
//!    instead of being sent, so nothing live overtakes the replay.
//! 4. When the read comes back the loop sends the replay, then the held messages, skipping
//!    every id at or below the *floor* = the larger of `since` and the last replayed id: those
//!    were in the replay (no duplicate). The floor stays for the life of the subscription, so a
//!    message still in flight to this loop when the replay finished is skipped too.
//!
//! Without a bus step 2 is synchronous (the ring is read under its lock on the loop thread),
//! so step 3 is not needed: the replay is queued to the connection at once, and live messages
//! come after it through the loop. The floor does the rest.
//!
//! Compared with Socket.IO's connection state recovery (one `offset` per socket, recovery only
//! with an adapter that keeps a session store, on by default for 2 minutes, all-or-nothing:
//! `socket.recovered` false and the client starts over) and Centrifugo's history (per channel
//! stream with `offset` + `epoch`, `recover: true` on subscribe, a `recovered` flag and, when
//! positions are lost, the client is told and resyncs): wsloop's ids are totally ordered per
//! topic (Redis assigns them and publishes in one script, so history order is delivery order
//! on every node), the seam is closed by buffering on the server rather than by the client
//! de-duplicating, the replay is per topic not per socket session (nothing is kept for a
//! client that went away; any client that knows an id can catch up), and the "too old" answer
//! is an application message the handler chooses rather than a protocol flag.

use super::ConnId;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a recorded message sits in its topic's history: milliseconds and a sequence number
/// within the millisecond, compared in that order. Text form `MS-SEQ` (a Redis Stream id),
/// e.g. `1718000000000-3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HistoryId {
    ms: u64,
    seq: u64,
}

impl HistoryId {
    /// The id with these parts.
    pub fn new(ms: u64, seq: u64) -> HistoryId {
        HistoryId { ms, seq }
    }

    /// Milliseconds since the Unix epoch when it was recorded (Redis's clock, or this
    /// process's without a bus).
    pub fn millis(self) -> u64 {
        self.ms
    }

    /// The sequence number within that millisecond.
    pub fn seq(self) -> u64 {
        self.seq
    }
}

impl fmt::Display for HistoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Why a text is not a [`HistoryId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseHistoryIdError;

impl fmt::Display for ParseHistoryIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a history id (expected MS-SEQ, two decimal numbers)")
    }
}

impl std::error::Error for ParseHistoryIdError {}

impl FromStr for HistoryId {
    type Err = ParseHistoryIdError;

    fn from_str(s: &str) -> Result<HistoryId, ParseHistoryIdError> {
        let (ms, seq) = s.split_once('-').ok_or(ParseHistoryIdError)?;
        let num = |p: &str| {
            if !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()) {
                p.parse::<u64>().map_err(|_| ParseHistoryIdError)
            } else {
                Err(ParseHistoryIdError)
            }
        };
        Ok(HistoryId {
            ms: num(ms)?,
            seq: num(seq)?,
        })
    }
}

/// A message to record in a topic's history, with a hole for its id: the server sends
/// `prefix + id + suffix` (id in its text form, [`HistoryId`]'s `Display`). A text message's
/// three parts are all UTF-8, so the whole is too.
///
/// ```
/// use wsloop::server::Stamped;
/// // {"text":"hi","mid":"1718000000000-0"}
/// let m = Stamped::text(r#"{"text":"hi","mid":""#, r#""}"#);
/// # let _ = m;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped<'a> {
    pub(crate) binary: bool,
    pub(crate) prefix: &'a [u8],
    pub(crate) suffix: &'a [u8],
}

impl<'a> Stamped<'a> {
    /// A text message `prefix + id + suffix`.
    pub fn text(prefix: &'a str, suffix: &'a str) -> Self {
        Stamped {
            binary: false,
            prefix: prefix.as_bytes(),
            suffix: suffix.as_bytes(),
        }
    }

    /// A binary message `prefix + id + suffix` (the id as ASCII).
    pub fn binary(prefix: &'a [u8], suffix: &'a [u8]) -> Self {
        Stamped {
            binary: true,
            prefix,
            suffix,
        }
    }

    /// The bytes with `id` in the hole (an empty id when the message could not be recorded).
    pub(crate) fn fill(&self, id: &str) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.prefix.len() + id.len() + self.suffix.len());
        v.extend_from_slice(self.prefix);
        v.extend_from_slice(id.as_bytes());
        v.extend_from_slice(self.suffix);
        v
    }
}

/// One recorded message as history gives it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: HistoryId,
    pub(crate) binary: bool,
    /// The whole message, id filled in.
    pub(crate) bytes: Vec<u8>,
}

/// What a history read found after `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Everything recorded after `since`, in order (possibly nothing).
    Complete(Vec<Entry>),
    /// `since` is not in the history (trimmed, or from another history): the client must
    /// resync.
    TooOld,
    /// History could not be read (the bus is unreachable).
    Unavailable,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One topic's ring.
#[derive(Debug)]
struct Ring {
    entries: VecDeque<(u64, Entry)>,
    /// The last id handed out (kept when every entry has aged out, so a client that saw it
    /// missed nothing).
    last: HistoryId,
    bytes: usize,
}

/// The in-memory history of every topic of this process (no message bus): a ring per topic,
/// bounded by count and age, and all rings together by bytes.
#[derive(Debug)]
pub(crate) struct MemoryHistory {
    rings: Mutex<HashMap<Arc<str>, Ring>>,
    max_len: usize,
    ttl: Duration,
    max_bytes: usize,
    /// Every id this process hands out is above this: one millisecond past its start, so no
    /// id of an earlier process (which stopped before this one started) can equal one of
    /// ours and pass for a position in this history.
    epoch: HistoryId,
}

impl MemoryHistory {
    pub(crate) fn new(max_len: usize, ttl: Duration, max_bytes: usize) -> MemoryHistory {
        MemoryHistory {
            rings: Mutex::new(HashMap::new()),
            max_len,
            ttl,
            max_bytes,
            epoch: HistoryId::new(now_ms() + 1, 0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Ring>> {
        self.rings.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expire(ring: &mut Ring, now: u64, ttl: u64) {
        while let Some((at, e)) = ring.entries.front() {
            if now.saturating_sub(*at) <= ttl {
                break;
            }
            ring.bytes = ring.bytes.saturating_sub(e.bytes.len());
            ring.entries.pop_front();
        }
    }

    /// Records a message and runs `then` with it (id filled in) before anyone else may record:
    /// the caller hands it to every loop there, so the loops receive a topic's messages in id
    /// order, as with Redis. Ids follow Redis's rule: the clock's millisecond, or the last
    /// id's with the next sequence number if the clock has not moved on (or went back).
    pub(crate) fn append_then(&self, topic: &str, stamp: &Stamped<'_>, then: impl FnOnce(&Entry)) {
        let now = now_ms();
        let mut rings = self.lock();
        let ttl = self.ttl.as_millis() as u64;
        let epoch = self.epoch;
        let ring = match rings.get_mut(topic) {
            Some(r) => r,
            None => rings.entry(topic.into()).or_insert(Ring {
                entries: VecDeque::new(),
                last: epoch,
                bytes: 0,
            }),
        };
        let id = if now > ring.last.ms && now >= epoch.ms {
            HistoryId::new(now, 0)
        } else {
            HistoryId::new(ring.last.ms, ring.last.seq.saturating_add(1))
        };
        ring.last = id;
        let entry = Entry {
            id,
            binary: stamp.binary,
            bytes: stamp.fill(&id.to_string()),
        };
        if self.max_len > 0 {
            ring.bytes += entry.bytes.len();
            ring.entries.push_back((now, entry.clone()));
            while ring.entries.len() > self.max_len {
                if let Some((_, e)) = ring.entries.pop_front() {
                    ring.bytes = ring.bytes.saturating_sub(e.bytes.len());
                }
            }
        }
        Self::expire(ring, now, ttl);
        let total: usize = rings.values().map(|r| r.bytes).sum();
        if total > self.max_bytes {
            self.shrink(&mut rings, total, now, ttl);
        }
        then(&entry);
    }

    #[cfg(test)]
    fn append(&self, topic: &str, stamp: &Stamped<'_>) -> Entry {
        let mut out = None;
        self.append_then(topic, stamp, |e| out = Some(e.clone()));
        out.unwrap_or_else(|| unreachable!())
    }

    /// Over the byte bound: expire everything old, then drop the oldest entries of the
    /// largest rings until under it.
    fn shrink(&self, rings: &mut HashMap<Arc<str>, Ring>, mut total: usize, now: u64, ttl: u64) {
        for ring in rings.values_mut() {
            Self::expire(ring, now, ttl);
        }
        rings.retain(|_, r| !r.entries.is_empty() || now.saturating_sub(r.last.ms) <= ttl);
        total = total.min(rings.values().map(|r| r.bytes).sum());
        while total > self.max_bytes {
            let Some(ring) = rings.values_mut().max_by_key(|r| r.bytes) else {
                return;
            };
            let Some((_, e)) = ring.entries.pop_front() else { return };
            ring.bytes = ring.bytes.saturating_sub(e.bytes.len());
            total = total.saturating_sub(e.bytes.len());
        }
    }

    /// What was recorded in `topic` after `since`.
    pub(crate) fn since(&self, topic: &str, since: HistoryId) -> Replay {
        let now = now_ms();
        let mut rings = self.lock();
        let Some(ring) = rings.get_mut(topic) else {
            // Nothing recorded here in this process's life: the id is from another.
            return Replay::TooOld;
        };
        Self::expire(ring, now, self.ttl.as_millis() as u64);
        if since == ring.last {
            return Replay::Complete(Vec::new());
        }
        if since > ring.last {
            return Replay::TooOld; // never handed out: from another history
        }
        // Complete only if `since` itself is still here (or is where the ring starts): then
        // nothing after it was trimmed.
        let found = ring.entries.iter().position(|(_, e)| e.id == since);
        let Some(start) = found.map(|i| i + 1) else {
            return Replay::TooOld;
        };
        Replay::Complete(ring.entries.iter().skip(start).map(|(_, e)| e.clone()).collect())
    }
}

/// The most live messages held for one connection while its replay is read; past it the
/// oldest are dropped and the client is told to resync.
pub(crate) const HELD_MAX: usize = 4096;

/// One topic of one connection that asked for a replay.
#[derive(Debug)]
struct Slot {
    topic: Arc<str>,
    /// Live messages at or below this id were (or will be) in the replay: skipped.
    floor: HistoryId,
    /// `Some` while the replay is outstanding: live recorded messages held back.
    held: Option<VecDeque<(HistoryId, Arc<super::budget::Frame>)>>,
    /// Held messages were dropped (the buffer was full).
    overflowed: bool,
    /// What to send if the replay is incomplete.
    notice: Option<(bool, Vec<u8>)>,
}

/// What a live recorded message should do for one receiver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    Deliver,
    /// Held until the replay is sent.
    Held,
    /// Already in the replay.
    Duplicate,
}

/// A finished replay for one connection: what to send, in order.
pub(crate) struct Seam {
    pub(crate) replay: Vec<Entry>,
    /// The handler's notice (binary?, bytes), when the client must resync.
    pub(crate) notice: Option<(bool, Vec<u8>)>,
    pub(crate) held: Vec<Arc<super::budget::Frame>>,
}

/// The replay state of this loop's connections (one owner, keyed by connection, removed with
/// it in one place, like `Topics`).
#[derive(Debug, Default)]
pub(crate) struct Recoveries {
    by_conn: HashMap<ConnId, Vec<Slot>>,
}

impl Recoveries {
    /// Starts holding live messages of `topic` for `id` until [`Recoveries::finish`].
    pub(crate) fn begin(&mut self, id: ConnId, topic: &str, since: HistoryId, notice: (bool, Vec<u8>)) {
        let slots = self.by_conn.entry(id).or_default();
        slots.retain(|s| &*s.topic != topic);
        slots.push(Slot {
            topic: topic.into(),
            floor: since,
            held: Some(VecDeque::new()),
            overflowed: false,
            notice: Some(notice),
        });
    }

    /// A replay that was sent at once (no bus): only the floor is kept.
    pub(crate) fn set_floor(&mut self, id: ConnId, topic: &str, floor: HistoryId) {
        let slots = self.by_conn.entry(id).or_default();
        slots.retain(|s| &*s.topic != topic);
        slots.push(Slot {
            topic: topic.into(),
            floor,
            held: None,
            overflowed: false,
            notice: None,
        });
    }

    /// Whether a live recorded message `msg` of `topic` goes to `id` now.
    pub(crate) fn gate(&mut self, id: ConnId, topic: &str, msg: HistoryId, frame: &Arc<super::budget::Frame>) -> Gate {
        if self.by_conn.is_empty() {
            return Gate::Deliver;
        }
        let Some(slot) = self
            .by_conn
            .get_mut(&id)
            .and_then(|slots| slots.iter_mut().find(|s| &*s.topic == topic))
        else {
            return Gate::Deliver;
        };
        if msg <= slot.floor {
            return Gate::Duplicate;
        }
        match &mut slot.held {
            None => Gate::Deliver,
            Some(held) => {
                if held.len() >= HELD_MAX {
                    held.pop_front();
                    slot.overflowed = true;
                }
                held.push_back((msg, frame.clone()));
                Gate::Held
            }
        }
    }

    /// The replay for (`id`, `topic`) came back: what to send, in order; the floor is raised
    /// past the replay and stays. `None` if the connection is gone or was not waiting.
    pub(crate) fn finish(&mut self, id: ConnId, topic: &str, result: Replay) -> Option<Seam> {
        let slot = self
            .by_conn
            .get_mut(&id)
            .and_then(|slots| slots.iter_mut().find(|s| &*s.topic == topic))?;
        let held = slot.held.take()?;
        let since = slot.floor;
        let (replay, mut complete) = match result {
            Replay::Complete(entries) => (entries, true),
            Replay::TooOld | Replay::Unavailable => (Vec::new(), false),
        };
        let replay: Vec<Entry> = replay.into_iter().filter(|e| e.id > since).collect();
        if let Some(last) = replay.last() {
            slot.floor = slot.floor.max(last.id);
        }
        if slot.overflowed {
            complete = false;
        }
        let floor = slot.floor;
        let held: Vec<_> = held.into_iter().filter(|(m, _)| *m > floor).map(|(_, f)| f).collect();
        let notice = if complete { None } else { slot.notice.take() };
        slot.notice = None;
        Some(Seam { replay, notice, held })
    }

    /// Forgets a connection that is going away.
    pub(crate) fn remove_conn(&mut self, id: ConnId) {
        self.by_conn.remove(&id);
    }

    /// Forgets one topic of a connection (it unsubscribed).
    pub(crate) fn remove_topic(&mut self, id: ConnId, topic: &str) {
        if let Some(slots) = self.by_conn.get_mut(&id) {
            slots.retain(|s| &*s.topic != topic);
            if slots.is_empty() {
                self.by_conn.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::budget::{Frame, MemoryBudget};
    use super::*;

    #[test]
    fn ids_round_trip_and_order() {
        let id: HistoryId = "1718000000000-3".parse().unwrap();
        assert_eq!(id.to_string(), "1718000000000-3");
        assert!(HistoryId::new(5, 9) < HistoryId::new(6, 0));
        assert!(HistoryId::new(5, 9) < HistoryId::new(5, 10));
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-2-3",
            "+1-2",
            "1 -2",
            "99999999999999999999999-0",
        ] {
            assert!(bad.parse::<HistoryId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ring_replays_what_followed_and_knows_when_it_cannot() {
        let h = MemoryHistory::new(3, Duration::from_secs(60), 1 << 20);
        let ids: Vec<HistoryId> = (0..5)
            .map(|i| h.append("t", &Stamped::text(&format!("m{i}:"), "")).id)
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        // Kept: m2, m3, m4.
        match h.since("t", ids[2]) {
            Replay::Complete(e) => assert_eq!(
                e.iter().map(|e| e.bytes.clone()).collect::<Vec<_>>(),
                vec![
                    format!("m3:{}", ids[3]).into_bytes(),
                    format!("m4:{}", ids[4]).into_bytes()
                ]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(h.since("t", ids[4]), Replay::Complete(Vec::new()));
        assert_eq!(h.since("t", ids[1]), Replay::TooOld, "trimmed");
        assert_eq!(h.since("t", HistoryId::new(1, 0)), Replay::TooOld, "another life");
        assert_eq!(
            h.since("t", HistoryId::new(u64::MAX, 0)),
            Replay::TooOld,
            "never handed out"
        );
        assert_eq!(h.since("other", ids[4]), Replay::TooOld);
    }

    #[test]
    fn ring_stays_under_its_byte_bound() {
        let h = MemoryHistory::new(1000, Duration::from_secs(60), 1000);
        for i in 0..100 {
            h.append(&format!("t{}", i % 7), &Stamped::text(&"x".repeat(50), ""));
        }
        let total: usize = h.lock().values().map(|r| r.bytes).sum();
        assert!(total <= 1000, "{total}");
    }

    #[test]
    fn the_seam_holds_live_messages_and_skips_what_the_replay_had() {
        let budget = MemoryBudget::new(1 << 20);
        let frame = |n: u8| Frame::new(vec![0x81, 1, n], &budget);
        let id = ConnId::new(1, 0, 0, 1);
        let other = ConnId::new(1, 0, 1, 1);
        let mut r = Recoveries::default();
        let m = |s| HistoryId::new(10, s);
        r.begin(id, "t", m(1), (false, b"resync".to_vec()));
        assert_eq!(r.gate(other, "t", m(3), &frame(3)), Gate::Deliver);
        assert_eq!(r.gate(id, "u", m(3), &frame(3)), Gate::Deliver, "another topic");
        assert_eq!(r.gate(id, "t", m(1), &frame(1)), Gate::Duplicate, "at since");
        assert_eq!(r.gate(id, "t", m(3), &frame(3)), Gate::Held, "also in the replay");
        assert_eq!(r.gate(id, "t", m(4), &frame(4)), Gate::Held);
        let entry = |s| Entry {
            id: m(s),
            binary: false,
            bytes: vec![s as u8],
        };
        let seam = r.finish(id, "t", Replay::Complete(vec![entry(2), entry(3)])).unwrap();
        assert_eq!(seam.replay.iter().map(|e| e.id).collect::<Vec<_>>(), [m(2), m(3)]);
        assert_eq!(seam.held.iter().map(|f| f.bytes()[2]).collect::<Vec<_>>(), [4]);
        assert!(seam.notice.is_none());
        assert_eq!(r.gate(id, "t", m(3), &frame(3)), Gate::Duplicate, "late copy");
        assert_eq!(r.gate(id, "t", m(5), &frame(5)), Gate::Deliver);
        assert!(r.finish(id, "t", Replay::TooOld).is_none(), "once");

        r.begin(id, "u", m(1), (false, b"resync".to_vec()));
        let seam = r.finish(id, "u", Replay::TooOld).unwrap();
        assert_eq!(seam.notice, Some((false, b"resync".to_vec())));
        r.remove_conn(id);
        assert_eq!(r.gate(id, "t", m(0), &frame(0)), Gate::Deliver);
    }
}
