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
//!    messages for that connection and topic are held in a bounded buffer (`Recoveries`, in
//!    `replay.rs`)
//!    instead of being sent, so nothing live overtakes the replay.
//! 4. When the read comes back the loop sends the replay, then the held messages, skipping
//!    every id at or below the *floor* = the larger of `since` and the last replayed id: those
//!    were in the replay (no duplicate). The floor stays for the life of the subscription, so a
//!    message still in flight to this loop when the replay finished is skipped too.
//!
//! Without a bus step 2 is synchronous (the ring is read under its lock on the loop thread), a
//! page at a time as the receiver drains (see `replay.rs`): live recorded messages are left to
//! the history until a page reaches the ring's end, whose last id becomes the floor. The floor
//! does the rest.
//!
//! **Paced.** Either way the replay is sent as the receiver drains, never queued whole, so a
//! client is not closed for the size of its own replay (`replay.rs`).
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

/// One page of a topic's history after a position ([`MemoryHistory::page`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Page {
    /// The entries after the position, as many as asked for; `more` when the ring goes on
    /// past them; `last`: the last id the topic has handed out.
    Entries {
        entries: Vec<Entry>,
        more: bool,
        last: HistoryId,
    },
    /// The position is not in the history (trimmed, or from another history); `last` as
    /// above (the position itself when the topic is unknown here).
    TooOld { last: HistoryId },
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
    pub(crate) fn append(&self, topic: &str, stamp: &Stamped<'_>) -> Entry {
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

    /// Up to `max_entries` entries recorded in `topic` after `since`, stopping before they pass
    /// `max_bytes` (but at least one entry when there is one): a replay read a page at a time.
    pub(crate) fn page(&self, topic: &str, since: HistoryId, max_entries: usize, max_bytes: usize) -> Page {
        let now = now_ms();
        let mut rings = self.lock();
        let Some(ring) = rings.get_mut(topic) else {
            return Page::TooOld { last: since };
        };
        Self::expire(ring, now, self.ttl.as_millis() as u64);
        let last = ring.last;
        if since > last {
            return Page::TooOld { last };
        }
        // Ids ascend along the ring. `since` must still be in it (or be its last id, every
        // entry after it having aged out): then nothing after it was trimmed.
        let start = match ring.entries.binary_search_by(|(_, e)| e.id.cmp(&since)) {
            Ok(i) => i + 1,
            Err(_) if since == last => ring.entries.len(),
            Err(_) => return Page::TooOld { last },
        };
        let (mut entries, mut bytes) = (Vec::new(), 0usize);
        for (_, e) in ring.entries.iter().skip(start) {
            if entries.len() == max_entries || (bytes + e.bytes.len() > max_bytes && !entries.is_empty()) {
                break;
            }
            bytes += e.bytes.len();
            entries.push(e.clone());
        }
        let more = start + entries.len() < ring.entries.len();
        Page::Entries { entries, more, last }
    }

    /// What was recorded in `topic` after `since`.
    #[cfg(test)]
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

#[cfg(test)]
mod tests {
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
}
