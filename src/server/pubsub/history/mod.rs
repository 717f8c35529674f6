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

use crate::server::budget::{Charge, MemoryBudget};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// Bytes charged for a room besides its messages and its name: its map slot (name pointer,
/// ring header, hash table control bytes at the table's load factor), its place in the
/// order (a B-tree entry) and the reference-counted name's header. Rounded up from the sizes
/// of those structures on 64-bit targets, so the room count the byte bound allows is an
/// underestimate rather than an overestimate.
pub(crate) const ROOM_OVERHEAD: usize = 256;
/// Bytes charged per recorded message besides its own: its slot in the ring, twice over
/// because a ring's buffer grows by doubling.
const ENTRY_OVERHEAD: usize = 2 * std::mem::size_of::<(u64, Entry)>();
/// Rooms the timer removes at most in one call, so one loop turn stays short; the rest go
/// on the next turns.
const EXPIRE_PER_TICK: usize = 16 * 1024;
/// Rooms each append also expires at most, so expiry keeps pace with a flood of new rooms
/// even between ticks.
const EXPIRE_PER_APPEND: usize = 2;
/// The timer looks at the rooms at most this often (milliseconds).
const TICK_MS: u64 = 250;

/// One topic's ring.
#[derive(Debug)]
struct Ring {
    /// Its name, shared with the map's key and the order's value.
    name: Arc<str>,
    /// (when recorded, ms; the entry), oldest first.
    entries: VecDeque<(u64, Entry)>,
    /// The last id handed out (kept when every entry has aged out, so a client that saw it
    /// missed nothing).
    last: HistoryId,
    /// Bytes charged for this ring: overhead, name and entries.
    bytes: usize,
    /// When it was last appended to (ms): the room expires `ttl` after that.
    touched: u64,
    /// Its key in [`Rooms::order`].
    order: u64,
}

/// Every ring, and what lets each append cost the same however many rooms there are: a
/// running byte total (nothing is summed) and the rooms in order of last append (a B-tree:
/// the oldest is found without a scan, for the timer and for the byte bound).
#[derive(Debug)]
struct Rooms {
    map: HashMap<Arc<str>, Ring>,
    /// Order key → room; a key grows with each append, so the first entry is the room
    /// appended to longest ago.
    order: BTreeMap<u64, Arc<str>>,
    next_order: u64,
    /// Sum of every ring's `bytes`.
    total: usize,
    /// What is charged to the memory budget (kept equal to `total`).
    charge: Charge,
    /// The latest `now` seen: time as history sees it never goes back, so the order by last
    /// append is also the order by `touched`.
    clock: u64,
    /// Rings visited (read, appended to, trimmed or removed): how tests see that an append
    /// costs the same whatever the number of rooms.
    #[cfg(test)]
    visits: usize,
}

impl Rooms {
    /// Removes a room; its bytes go back to the budget.
    fn remove(&mut self, topic: &str) {
        if let Some(ring) = self.map.remove(topic) {
            #[cfg(test)]
            {
                self.visits += 1;
            }
            self.order.remove(&ring.order);
            self.total = self.total.saturating_sub(ring.bytes);
        }
        // A table that held a flood of rooms gives its memory back once it is mostly empty
        // (amortised: it has to have shrunk to a quarter since it last grew).
        if self.map.capacity() > 64 && self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to(self.map.len() * 2);
        }
    }

    /// Removes up to `max` rooms whose last message is older than `ttl`, oldest first.
    fn expire_rooms(&mut self, now: u64, ttl: u64, max: usize) -> usize {
        let mut removed = 0;
        while removed < max {
            let Some((_, topic)) = self.order.first_key_value() else {
                break;
            };
            let topic = topic.clone();
            let Some(ring) = self.map.get(&*topic) else {
                self.order.pop_first();
                continue;
            };
            if now.saturating_sub(ring.touched) <= ttl {
                break;
            }
            self.remove(&topic);
            removed += 1;
        }
        removed
    }
}

/// The in-memory history's size, readable without its lock (`/metrics`).
#[derive(Debug, Default)]
pub(crate) struct HistoryFigures {
    rooms: AtomicUsize,
    bytes: AtomicUsize,
}

impl HistoryFigures {
    /// (rooms with history, bytes charged for them).
    pub(crate) fn get(&self) -> (usize, usize) {
        (self.rooms.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// Why a message was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It would start a room past the limit on rooms with history.
    TooManyRooms,
}

/// The in-memory history of every topic of this process (no message bus): a ring per topic,
/// bounded by count and age; all rings together bounded by bytes (charged to the memory
/// budget, per-room overhead included) and by a number of rooms.
///
/// Costs per message do not grow with the number of rooms: the byte total is kept as it
/// changes, the room to evict or expire is the first of an ordered map, and expired rooms are
/// removed by [`MemoryHistory::tick`] (which the event loop calls) and a few at each append.
/// Time is an input: every call takes `now` (ms since the Unix epoch); nothing here reads a
/// clock.
#[derive(Debug)]
pub(crate) struct MemoryHistory {
    rooms: Mutex<Rooms>,
    max_len: usize,
    ttl: Duration,
    max_bytes: usize,
    max_rooms: usize,
    budget: Arc<MemoryBudget>,
    /// The timer's next turn (ms): read without the lock, so a loop turn that has nothing to
    /// expire costs one atomic load.
    next_tick: AtomicU64,
    /// Rooms and bytes, for `/metrics` without the lock.
    figures: Arc<HistoryFigures>,
    /// Every id this process hands out is above this: one millisecond past its start, so no
    /// id of an earlier process (which stopped before this one started) can equal one of
    /// ours and pass for a position in this history.
    epoch: HistoryId,
}

impl MemoryHistory {
    /// `max_len` messages per room, none older than `ttl`, `max_bytes` in all, `max_rooms`
    /// rooms at most; `now` is the time it starts (ms since the Unix epoch).
    pub(crate) fn new(
        max_len: usize,
        ttl: Duration,
        max_bytes: usize,
        max_rooms: usize,
        budget: Arc<MemoryBudget>,
        now: u64,
    ) -> MemoryHistory {
        MemoryHistory {
            rooms: Mutex::new(Rooms {
                map: HashMap::new(),
                order: BTreeMap::new(),
                next_order: 0,
                total: 0,
                charge: Charge::default(),
                clock: now,
                #[cfg(test)]
                visits: 0,
            }),
            max_len,
            ttl,
            max_bytes,
            max_rooms,
            budget,
            next_tick: AtomicU64::new(0),
            figures: Arc::default(),
            epoch: HistoryId::new(now + 1, 0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Rooms> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Publishes the new totals: to the budget and to the figures.
    fn settle(&self, rooms: &mut Rooms) {
        rooms.charge.settle(&self.budget, rooms.total);
        self.figures.rooms.store(rooms.map.len(), Ordering::Relaxed);
        self.figures.bytes.store(rooms.total, Ordering::Relaxed);
    }

    /// (rooms with history, bytes they are charged) now.
    #[cfg(test)]
    pub(crate) fn figures(&self) -> (usize, usize) {
        self.figures.get()
    }

    /// The figures, for `ServerInfo`.
    pub(crate) fn shared_figures(&self) -> Arc<HistoryFigures> {
        self.figures.clone()
    }

    fn expire(ring: &mut Ring, now: u64, ttl: u64) -> usize {
        let mut freed = 0;
        while let Some((at, e)) = ring.entries.front() {
            if now.saturating_sub(*at) <= ttl {
                break;
            }
            freed += e.bytes.len() + ENTRY_OVERHEAD;
            ring.entries.pop_front();
        }
        ring.bytes = ring.bytes.saturating_sub(freed);
        freed
    }

    /// The timer: removes the rooms whose last message is older than the TTL (their
    /// messages can no longer be replayed). The event loop calls it every turn; it does
    /// work at most every [`TICK_MS`], and at most [`EXPIRE_PER_TICK`] rooms per call.
    pub(crate) fn tick(&self, now: u64) {
        if now < self.next_tick.load(Ordering::Relaxed) {
            return;
        }
        let mut rooms = self.lock();
        rooms.clock = rooms.clock.max(now);
        let clock = rooms.clock;
        let removed = rooms.expire_rooms(clock, self.ttl_ms(), EXPIRE_PER_TICK);
        self.settle(&mut rooms);
        // More left: come back at the next turn, not a tick later.
        let next = if removed == EXPIRE_PER_TICK { now } else { now + TICK_MS };
        self.next_tick.store(next, Ordering::Relaxed);
    }

    /// Records a message and runs `then` with it (id filled in) before anyone else may record:
    /// the caller hands it to every loop there, so the loops receive a topic's messages in id
    /// order, as with Redis. Ids follow Redis's rule: the clock's millisecond, or the last
    /// id's with the next sequence number if the clock has not moved on (or went back).
    ///
    /// A message that would start a room past the room limit is refused (`then` not run).
    /// Past the byte bound, the rooms appended to longest ago are dropped whole.
    pub(crate) fn append_then(
        &self,
        topic: &str,
        stamp: &Stamped<'_>,
        now: u64,
        then: impl FnOnce(&Entry),
    ) -> Result<(), Refused> {
        let mut guard = self.lock();
        let rooms = &mut *guard;
        let ttl = self.ttl_ms();
        rooms.clock = rooms.clock.max(now);
        let now = rooms.clock;
        rooms.expire_rooms(now, ttl, EXPIRE_PER_APPEND);
        let order = rooms.next_order;
        rooms.next_order += 1;
        let epoch = self.epoch;
        if !rooms.map.contains_key(topic) {
            if rooms.map.len() >= self.max_rooms {
                rooms.expire_rooms(now, ttl, EXPIRE_PER_TICK);
                if rooms.map.len() >= self.max_rooms {
                    self.settle(rooms);
                    return Err(Refused::TooManyRooms);
                }
            }
            let name: Arc<str> = topic.into();
            let bytes = ROOM_OVERHEAD + name.len();
            rooms.total += bytes;
            rooms.map.insert(
                name.clone(),
                Ring {
                    name,
                    entries: VecDeque::new(),
                    last: epoch,
                    bytes,
                    touched: now,
                    order,
                },
            );
        }
        let Some(ring) = rooms.map.get_mut(topic) else {
            return Ok(()); // cannot happen: it is there or was just inserted
        };
        rooms.order.remove(&ring.order);
        let name = ring.name.clone();
        #[cfg(test)]
        {
            rooms.visits += 1;
        }
        ring.order = order;
        ring.touched = now;
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
        let before = ring.bytes;
        if self.max_len > 0 {
            ring.bytes += entry.bytes.len() + ENTRY_OVERHEAD;
            ring.entries.push_back((now, entry.clone()));
            while ring.entries.len() > self.max_len {
                if let Some((_, e)) = ring.entries.pop_front() {
                    ring.bytes = ring.bytes.saturating_sub(e.bytes.len() + ENTRY_OVERHEAD);
                }
            }
        }
        Self::expire(ring, now, ttl);
        let after = ring.bytes;
        rooms.order.insert(order, name);
        rooms.total = (rooms.total + after).saturating_sub(before);
        self.shrink(rooms, topic);
        self.settle(rooms);
        then(&entry);
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn append(&self, topic: &str, stamp: &Stamped<'_>, now: u64) -> Entry {
        let mut out = None;
        self.append_then(topic, stamp, now, |e| out = Some(e.clone()))
            .unwrap_or_else(|r| panic!("{r:?}"));
        out.unwrap_or_else(|| unreachable!())
    }

    /// Over the byte bound: drops the rooms appended to longest ago, whole, until under it.
    /// The room just appended to is the newest; if it alone is over, its oldest messages go
    /// (it keeps its last id).
    fn shrink(&self, rooms: &mut Rooms, current: &str) {
        while rooms.total > self.max_bytes {
            let Some((_, oldest)) = rooms.order.first_key_value() else {
                return;
            };
            if &**oldest != current {
                let oldest = oldest.clone();
                rooms.remove(&oldest);
                continue;
            }
            let Some(ring) = rooms.map.get_mut(current) else { return };
            #[cfg(test)]
            {
                rooms.visits += 1;
            }
            let Some((_, e)) = ring.entries.pop_front() else { return };
            let freed = e.bytes.len() + ENTRY_OVERHEAD;
            ring.bytes = ring.bytes.saturating_sub(freed);
            rooms.total = rooms.total.saturating_sub(freed);
        }
    }

    /// Up to `max_entries` entries recorded in `topic` after `since`, stopping before they pass
    /// `max_bytes` (but at least one entry when there is one): a replay read a page at a time.
    pub(crate) fn page(&self, topic: &str, since: HistoryId, max_entries: usize, max_bytes: usize, now: u64) -> Page {
        let mut guard = self.lock();
        let rooms = &mut *guard;
        rooms.clock = rooms.clock.max(now);
        let now = rooms.clock;
        let ttl = self.ttl_ms();
        let Some(ring) = rooms.map.get_mut(topic) else {
            return Page::TooOld { last: since };
        };
        let freed = Self::expire(ring, now, ttl);
        let last = ring.last;
        // Ids ascend along the ring. `since` must still be in it (or be its last id, every
        // entry after it having aged out): then nothing after it was trimmed.
        let start = if since > last {
            None
        } else {
            match ring.entries.binary_search_by(|(_, e)| e.id.cmp(&since)) {
                Ok(i) => Some(i + 1),
                Err(_) if since == last => Some(ring.entries.len()),
                Err(_) => None,
            }
        };
        let page = match start {
            None => Page::TooOld { last },
            Some(start) => {
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
        };
        rooms.total = rooms.total.saturating_sub(freed);
        self.settle(rooms);
        page
    }

    /// What was recorded in `topic` after `since`: [`MemoryHistory::page`] without bounds.
    #[cfg(test)]
    pub(crate) fn since(&self, topic: &str, since: HistoryId, now: u64) -> Replay {
        match self.page(topic, since, usize::MAX, usize::MAX, now) {
            Page::Entries { entries, .. } => Replay::Complete(entries),
            Page::TooOld { .. } => Replay::TooOld,
        }
    }
}

impl Drop for MemoryHistory {
    fn drop(&mut self) {
        let rooms = self.rooms.get_mut().unwrap_or_else(|p| p.into_inner());
        rooms.charge.settle(&self.budget, 0);
    }
}

#[cfg(test)]
mod tests;
