//! Replays in progress: the seam between a topic's history and its live messages for each
//! connection that asked to catch up (`Context::subscribe_since`; the rules are in
//! `history.rs`), and the pacing that keeps a replay under the receiver's outbound limit.
//!
//! **Paced by the receiver's drain.** A replay is never queued whole: the loop asks
//! [`Recoveries::pump`] for the next frames only when the connection's queue is under its
//! low-water mark, and gets at most what fits up to the high-water mark. So a client catching
//! up on 100 MB of history holds at most a queue's worth of it at a time, and is never closed
//! for the size of its own replay (issue 18, break 6).
//!
//! - **Without a bus** the rest of the replay stays in the in-memory history: each pump reads
//!   the next page after a cursor. Meanwhile live recorded messages of the topic are skipped
//!   for this connection, since the history will supply them; when a page reaches the end of
//!   the ring (read under its lock, so every message recorded before is in it), the floor
//!   becomes the ring's last id and live delivery takes over — no gap, no duplicate.
//! - **With a bus** the replay comes back whole from Redis: its frames (charged to the memory
//!   budget while they wait) are sent a pump at a time, then the notice if it was incomplete,
//!   then the live messages held meanwhile, still paced.

use super::history::{Entry, HistoryId, MemoryHistory, Page, Replay};
use crate::server::budget::{Frame, Tag};
use crate::server::context::LoopState;
use crate::server::ConnId;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// The most live messages held for one connection while its replay is read; past it the
/// oldest are dropped and the client is told to resync.
pub(crate) const HELD_MAX: usize = 4096;

/// Entries read from the in-memory history per pump at most.
const PAGE_ENTRIES: usize = 256;

impl LoopState {
    /// Subscribes `id` to `topic`, first with what was recorded there after `since` (a
    /// [`HistoryId`] as text), then live: the start of a replay, for a WebSocket
    /// (`Context::subscribe_since`) and an event stream (`EventStream::subscribe_since`) alike.
    /// `notice` (binary?, bytes) goes out instead of an incomplete replay. False when `since`
    /// is not an id: subscribed, no replay begun, and the caller sends the notice its own way.
    pub(crate) fn subscribe_since(&mut self, id: ConnId, topic: &str, since: &str, notice: (bool, Vec<u8>)) -> bool {
        self.topics.subscribe(id, topic);
        let Ok(since) = since.parse::<HistoryId>() else {
            return false;
        };
        let core = self.core.clone();
        match &core.bus {
            Some(bus) => {
                // Held first, then asked: see the seam in history.rs.
                self.recoveries.begin(id, topic, since, notice);
                if !bus.replay(id, topic, since) {
                    // The notice goes out through the same pacing (the loop pumps it).
                    self.recoveries
                        .finish(id, topic, Replay::Unavailable, |e| core.frame_parts(e.binary, &e.bytes));
                }
            }
            None => {
                // The loop reads the history a page at a time as this connection drains
                // (`Recoveries::pump`), under the history's lock.
                self.recoveries.begin_from_history(id, topic, since, notice);
            }
        }
        true
    }
}

/// What is left of one replay to send.
#[derive(Debug)]
enum Pending {
    /// Without a bus: read from the in-memory history, after `cursor`.
    History { cursor: HistoryId },
    /// With a bus: the replay's frames not yet sent.
    Frames(VecDeque<Arc<Frame>>),
}

/// One topic of one connection that asked for a replay.
#[derive(Debug)]
struct Slot {
    topic: Arc<str>,
    /// Live messages at or below this id were (or will be) in the replay: skipped.
    floor: HistoryId,
    /// `Some` while live recorded messages must wait behind the replay (bus: the read is
    /// outstanding or its frames are still being sent).
    held: Option<VecDeque<(HistoryId, Arc<Frame>)>>,
    /// Held messages were dropped (the buffer was full).
    overflowed: bool,
    /// What to send if the replay is incomplete.
    notice: Option<(bool, Vec<u8>)>,
    /// The notice is due once the pending frames are out.
    notice_due: bool,
    /// What remains of the replay, sent as the receiver drains.
    pending: Option<Pending>,
    /// With a bus: the replay was asked for and has not come back. Nothing of this slot goes
    /// out meanwhile — a held message sent now would end the hold ahead of the replay, and
    /// the replay, come back, would have no place left (its messages lost, no notice).
    asked: bool,
}

impl Slot {
    fn new(topic: &str, floor: HistoryId, notice: (bool, Vec<u8>)) -> Slot {
        Slot {
            topic: topic.into(),
            floor,
            held: None,
            overflowed: false,
            notice: Some(notice),
            notice_due: false,
            pending: None,
            asked: false,
        }
    }

    /// Whether anything of the replay, its notice or the held messages is to go out now
    /// (not while the replay is still asked of the bus: the held messages wait behind it).
    fn pacing(&self) -> bool {
        !self.asked && (self.pending.is_some() || self.notice_due || self.held.as_ref().is_some_and(|h| !h.is_empty()))
    }
}

/// What a live recorded message should do for one receiver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    Deliver,
    /// Held until the replay is sent.
    Held,
    /// Already in the replay (or the replay, still being read from history, will have it).
    Duplicate,
}

/// The replay state of this loop's connections (one owner, keyed by connection, removed with
/// it in one place, like `Topics`).
#[derive(Debug, Default)]
pub(crate) struct Recoveries {
    by_conn: HashMap<ConnId, Vec<Slot>>,
}

impl Recoveries {
    fn slot(&mut self, id: ConnId, topic: &str) -> Option<&mut Slot> {
        self.by_conn
            .get_mut(&id)
            .and_then(|slots| slots.iter_mut().find(|s| &*s.topic == topic))
    }

    fn insert(&mut self, id: ConnId, slot: Slot) {
        let slots = self.by_conn.entry(id).or_default();
        slots.retain(|s| s.topic != slot.topic);
        slots.push(slot);
    }

    /// With a bus: starts holding live messages of `topic` for `id` until the replay, asked
    /// for on the bus, comes back ([`Recoveries::finish`]) and has been sent.
    pub(crate) fn begin(&mut self, id: ConnId, topic: &str, since: HistoryId, notice: (bool, Vec<u8>)) {
        let mut slot = Slot::new(topic, since, notice);
        slot.held = Some(VecDeque::new());
        slot.asked = true;
        self.insert(id, slot);
    }

    /// Without a bus: the replay is read from the in-memory history a page at a time by
    /// [`Recoveries::pump`], starting after `since`.
    pub(crate) fn begin_from_history(&mut self, id: ConnId, topic: &str, since: HistoryId, notice: (bool, Vec<u8>)) {
        let mut slot = Slot::new(topic, since, notice);
        slot.pending = Some(Pending::History { cursor: since });
        self.insert(id, slot);
    }

    /// Whether a live recorded message `msg` of `topic` goes to `id` now.
    pub(crate) fn gate(&mut self, id: ConnId, topic: &str, msg: HistoryId, frame: &Arc<Frame>) -> Gate {
        if self.by_conn.is_empty() {
            return Gate::Deliver;
        }
        let Some(slot) = self.slot(id, topic) else {
            return Gate::Deliver;
        };
        if msg <= slot.floor || matches!(slot.pending, Some(Pending::History { .. })) {
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

    /// The replay for (`id`, `topic`) came back from the bus, framed: its frames wait to be
    /// pumped out, then the notice if it is incomplete, then the held messages; the floor is
    /// raised past the replay and stays. False if the connection is gone or was not waiting.
    pub(crate) fn finish(
        &mut self,
        id: ConnId,
        topic: &str,
        result: Replay,
        mut frame: impl FnMut(&Entry) -> Arc<Frame>,
    ) -> bool {
        let Some(slot) = self.slot(id, topic) else { return false };
        if !std::mem::take(&mut slot.asked) {
            return false;
        }
        let since = slot.floor;
        let (replay, complete) = match result {
            Replay::Complete(entries) => (entries, true),
            Replay::TooOld | Replay::Unavailable => {
                // The client resyncs: everything from now on (and what was held) goes to it.
                // A `since` from the future must not stay the floor and swallow live messages.
                slot.floor = HistoryId::new(0, 0);
                (Vec::new(), false)
            }
        };
        let frames: VecDeque<_> = replay.iter().filter(|e| e.id > since).map(&mut frame).collect();
        if let Some(last) = replay.last() {
            slot.floor = slot.floor.max(last.id);
        }
        let floor = slot.floor;
        if let Some(held) = &mut slot.held {
            held.retain(|(m, _)| *m > floor);
        }
        slot.notice_due = !complete;
        slot.pending = Some(Pending::Frames(frames));
        true
    }

    /// Whether `id` has a replay (or what follows it) still to send.
    pub(crate) fn pacing(&self, id: ConnId) -> bool {
        !self.by_conn.is_empty() && self.by_conn.get(&id).is_some_and(|s| s.iter().any(Slot::pacing))
    }

    /// The next frames of `id`'s replays, about `room` bytes of them (at least one frame when
    /// any is due), in order: replayed messages, the notice if the replay is incomplete, the
    /// live messages held meanwhile. `frame` frames a history entry, `notice` the notice.
    pub(crate) fn pump(
        &mut self,
        id: ConnId,
        mut room: usize,
        history: &MemoryHistory,
        mut frame: impl FnMut(Tag, bool, &[u8]) -> Arc<Frame>,
    ) -> Vec<Arc<Frame>> {
        let mut out = Vec::new();
        let Some(slots) = self.by_conn.get_mut(&id) else {
            return out;
        };
        for slot in slots.iter_mut() {
            if !slot.pacing() {
                continue;
            }
            let take = |f: Arc<Frame>, room: &mut usize, out: &mut Vec<Arc<Frame>>| {
                *room = room.saturating_sub(f.len());
                out.push(f);
            };
            match slot.pending.take() {
                Some(Pending::History { cursor }) => {
                    match history.page(&slot.topic, cursor, PAGE_ENTRIES, room, super::history::now_ms()) {
                        Page::Entries { entries, more, last } => {
                            let cursor = entries.last().map_or(cursor, |e| e.id);
                            for e in &entries {
                                take(frame(Tag::Recorded(e.id), e.binary, &e.bytes), &mut room, &mut out);
                            }
                            if more {
                                slot.pending = Some(Pending::History { cursor });
                            } else {
                                // Caught up under the history's lock: everything recorded up
                                // to `last` was read; later messages come live.
                                slot.floor = slot.floor.max(last);
                                slot.notice = None;
                            }
                        }
                        Page::TooOld { last } => {
                            // Never there, or trimmed while the client caught up: it must
                            // resync; live messages after `last` go on. Not `max` with the
                            // floor: a `since` from the future (another history, a clock that
                            // stepped back) must not make every live message a duplicate.
                            slot.floor = last;
                            if let Some((binary, bytes)) = slot.notice.take() {
                                take(frame(Tag::Notice, binary, &bytes), &mut room, &mut out);
                            }
                        }
                    }
                }
                Some(Pending::Frames(mut frames)) => {
                    while room > 0 {
                        let Some(f) = frames.pop_front() else { break };
                        take(f, &mut room, &mut out);
                    }
                    if !frames.is_empty() {
                        slot.pending = Some(Pending::Frames(frames));
                        continue;
                    }
                }
                None => {}
            }
            if slot.pending.is_some() || room == 0 {
                continue;
            }
            if slot.overflowed {
                slot.notice_due = true;
                slot.overflowed = false;
            }
            if std::mem::take(&mut slot.notice_due) {
                if let Some((binary, bytes)) = slot.notice.take() {
                    take(frame(Tag::Notice, binary, &bytes), &mut room, &mut out);
                }
            }
            let floor = slot.floor;
            if let Some(held) = &mut slot.held {
                while room > 0 {
                    let Some((m, f)) = held.pop_front() else { break };
                    if m > floor {
                        take(f, &mut room, &mut out);
                    }
                }
                if held.is_empty() {
                    // Everything behind the replay is out: live delivery from here.
                    slot.held = None;
                    slot.notice = None;
                }
            }
        }
        out
    }

    /// Forgets a connection that is going away.
    pub(crate) fn remove_conn(&mut self, id: ConnId) {
        // No hashing of the id into an empty map (the usual case) on every close.
        if !self.by_conn.is_empty() {
            self.by_conn.remove(&id);
        }
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
    use super::super::history::{now_ms, Stamped};
    use super::*;
    use crate::server::budget::MemoryBudget;
    use std::time::Duration;

    fn bytes_of(frames: &[Arc<Frame>]) -> Vec<Vec<u8>> {
        frames.iter().map(|f| f.bytes().to_vec()).collect()
    }

    #[test]
    fn the_seam_holds_live_messages_and_skips_what_the_replay_had() {
        let budget = MemoryBudget::new(1 << 20);
        let frame = |n: u8| Frame::new(vec![n], &budget);
        let framer = |_: Tag, _: bool, b: &[u8]| Frame::new(b.to_vec(), &budget);
        let history = MemoryHistory::new(0, Duration::ZERO, 0, 0, budget.clone(), now_ms());
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
        let replay = Replay::Complete(vec![entry(2), entry(3)]);
        assert!(r.finish(id, "t", replay, |e| framer(Tag::Plain, e.binary, &e.bytes)));
        assert!(r.pacing(id));
        // Paced: one byte of room, one frame a pump.
        assert_eq!(bytes_of(&r.pump(id, 1, &history, framer)), [vec![2]]);
        assert_eq!(r.gate(id, "t", m(5), &frame(5)), Gate::Held, "still behind the replay");
        assert_eq!(bytes_of(&r.pump(id, 1, &history, framer)), [vec![3]]);
        assert_eq!(bytes_of(&r.pump(id, 10, &history, framer)), [vec![4], vec![5]]);
        assert!(!r.pacing(id));
        assert_eq!(r.gate(id, "t", m(3), &frame(3)), Gate::Duplicate, "late copy");
        assert_eq!(r.gate(id, "t", m(6), &frame(6)), Gate::Deliver);
        assert!(
            !r.finish(id, "t", Replay::TooOld, |e| framer(Tag::Plain, e.binary, &e.bytes)),
            "once"
        );

        r.begin(id, "u", m(1), (false, b"resync".to_vec()));
        assert!(r.finish(id, "u", Replay::TooOld, |e| framer(Tag::Plain, e.binary, &e.bytes)));
        assert_eq!(bytes_of(&r.pump(id, 100, &history, framer)), [b"resync".to_vec()]);

        // A `since` from the future (a clock stepped back, another history): the notice, then
        // live messages — none taken for duplicates of a replay that never was.
        let future = HistoryId::new(u64::MAX, u64::MAX);
        r.begin(id, "v", future, (false, b"resync".to_vec()));
        // (While the bus is asked, ids below it look replayed; the client resyncs anyway.)
        assert_eq!(r.gate(id, "v", m(7), &frame(7)), Gate::Duplicate);
        assert!(r.finish(id, "v", Replay::TooOld, |e| framer(Tag::Plain, e.binary, &e.bytes)));
        assert_eq!(bytes_of(&r.pump(id, 100, &history, framer)), [b"resync".to_vec()]);
        assert_eq!(r.gate(id, "v", m(8), &frame(8)), Gate::Deliver);
        r.remove_conn(id);
        assert_eq!(r.gate(id, "t", m(0), &frame(0)), Gate::Deliver);
    }

    /// A pump while the bus read is still out (the connection drained, e.g. an event
    /// stream's head was written) must not send the held live messages ahead of the replay:
    /// that ended the hold, the replay's answer was then refused, and the client silently
    /// missed everything between `since` and the first held message.
    #[test]
    fn nothing_is_pumped_while_the_replay_is_still_asked_of_the_bus() {
        let budget = MemoryBudget::new(1 << 20);
        let frame = |n: u8| Frame::new(vec![n], &budget);
        let framer = |_: Tag, _: bool, b: &[u8]| Frame::new(b.to_vec(), &budget);
        let history = MemoryHistory::new(0, Duration::ZERO, 0, 0, budget.clone(), now_ms());
        let id = ConnId::new(1, 0, 0, 1);
        let m = |s| HistoryId::new(10, s);
        let entry = |s| Entry {
            id: m(s),
            binary: false,
            bytes: vec![s as u8],
        };
        let mut r = Recoveries::default();
        r.begin(id, "t", m(1), (false, b"resync".to_vec()));
        assert_eq!(r.gate(id, "t", m(5), &frame(5)), Gate::Held);
        assert!(!r.pacing(id), "nothing to send until the replay is back");
        assert!(r.pump(id, 100, &history, framer).is_empty(), "held behind the replay");
        assert_eq!(r.gate(id, "t", m(6), &frame(6)), Gate::Held, "still waiting");
        let replay = Replay::Complete(vec![entry(2), entry(3), entry(4), entry(5)]);
        assert!(r.finish(id, "t", replay, |e| framer(Tag::Plain, e.binary, &e.bytes)));
        assert!(r.pacing(id));
        let got = bytes_of(&r.pump(id, 100, &history, framer));
        assert_eq!(got, [vec![2], vec![3], vec![4], vec![5], vec![6]]);
        assert!(!r.pacing(id));
        assert_eq!(r.gate(id, "t", m(7), &frame(7)), Gate::Deliver);
    }

    #[test]
    fn a_replay_from_memory_is_read_a_page_at_a_time_then_goes_live() {
        let budget = MemoryBudget::new(1 << 30);
        let framer = |_: Tag, _: bool, b: &[u8]| Frame::new(b.to_vec(), &budget);
        let history = MemoryHistory::new(10_000, Duration::from_secs(600), 1 << 30, 100, budget.clone(), now_ms());
        let first = history.append("t", &Stamped::text("m0:", ""), now_ms()).id;
        let ids: Vec<HistoryId> = (1..1000)
            .map(|i| history.append("t", &Stamped::text(&format!("m{i}:"), ""), now_ms()).id)
            .collect();
        let id = ConnId::new(1, 0, 0, 1);
        let mut r = Recoveries::default();
        r.begin_from_history(id, "t", first, (false, b"resync".to_vec()));
        // While the replay is read from history, live copies are left to it.
        let live = Frame::new(vec![0], &budget);
        assert_eq!(r.gate(id, "t", ids[998], &live), Gate::Duplicate);
        let mut got = Vec::new();
        let mut pumps = 0;
        while r.pacing(id) {
            let frames = r.pump(id, 4096, &history, framer);
            assert!(
                frames.iter().map(|f| f.len()).sum::<usize>() <= 4096,
                "a pump stays near its room"
            );
            got.extend(bytes_of(&frames));
            pumps += 1;
            assert!(pumps < 1000, "the replay never ends");
        }
        assert!(pumps > 3, "paced, not whole: {pumps} pumps");
        let want: Vec<Vec<u8>> = (1..1000)
            .zip(&ids)
            .map(|(i, id)| format!("m{i}:{id}").into_bytes())
            .collect();
        assert_eq!(got, want);
        // Caught up: in-flight copies are duplicates, new messages live.
        assert_eq!(r.gate(id, "t", ids[998], &live), Gate::Duplicate);
        let next = history.append("t", &Stamped::text("new:", ""), now_ms()).id;
        assert_eq!(r.gate(id, "t", next, &live), Gate::Deliver);
    }

    #[test]
    fn a_since_from_the_future_gets_the_notice_then_live_messages() {
        let budget = MemoryBudget::new(1 << 30);
        let framer = |_: Tag, _: bool, b: &[u8]| Frame::new(b.to_vec(), &budget);
        let history = MemoryHistory::new(50, Duration::from_secs(600), 1 << 30, 100, budget.clone(), now_ms());
        history.append("t", &Stamped::text("m", ""), now_ms());
        let id = ConnId::new(1, 0, 0, 1);
        let mut r = Recoveries::default();
        r.begin_from_history(
            id,
            "t",
            HistoryId::new(now_ms() + 3_600_000, 0),
            (false, b"resync".to_vec()),
        );
        assert_eq!(bytes_of(&r.pump(id, 1 << 20, &history, framer)), [b"resync".to_vec()]);
        let next = history.append("t", &Stamped::text("new", ""), now_ms()).id;
        let live = Frame::new(vec![0], &budget);
        assert_eq!(r.gate(id, "t", next, &live), Gate::Deliver, "live after the notice");
    }

    #[test]
    fn a_replay_cut_short_by_trimming_sends_the_notice_and_goes_live() {
        let budget = MemoryBudget::new(1 << 30);
        let framer = |_: Tag, _: bool, b: &[u8]| Frame::new(b.to_vec(), &budget);
        let history = MemoryHistory::new(50, Duration::from_secs(600), 1 << 30, 100, budget.clone(), now_ms());
        let first = history.append("t", &Stamped::text("m", ""), now_ms()).id;
        for _ in 0..20 {
            history.append("t", &Stamped::text("m", ""), now_ms());
        }
        let id = ConnId::new(1, 0, 0, 1);
        let mut r = Recoveries::default();
        r.begin_from_history(id, "t", first, (false, b"resync".to_vec()));
        let page = r.pump(id, 1, &history, framer);
        assert_eq!(page.len(), 1, "one entry for one byte of room");
        // The ring moves on past the cursor before the client drains.
        for _ in 0..100 {
            history.append("t", &Stamped::text("m", ""), now_ms());
        }
        let rest = bytes_of(&r.pump(id, 1 << 20, &history, framer));
        assert_eq!(rest, [b"resync".to_vec()]);
        assert!(!r.pacing(id));
        let next = history.append("t", &Stamped::text("new", ""), now_ms()).id;
        assert_eq!(r.gate(id, "t", next, &Frame::new(vec![0], &budget)), Gate::Deliver);
    }
}
