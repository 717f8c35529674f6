//! The bridge's two threads (see the module docs of `bus`): the *publisher*, which sends the
//! queued jobs to the engine in batches and reconnects with backoff, and the *subscriber*,
//! which receives what every process published and hands it to the loops' inboxes.

use super::{
    wire, BusError, BusPublisher, BusStats, Channel, HistoryBounds, Job, Record, SubscriberSink, BACKOFF_MAX,
    BACKOFF_MIN, BATCH, BATCH_BYTES, IDLE_PING,
};
use crate::server::budget::{Frame, Tag};
use crate::server::fanout::{Outgoing, Target};
use crate::server::history::{Entry, Replay};
use crate::server::runtime::inbox::Command;
use crate::server::shared::Core;
use crate::server::{ConnId, Message};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts the bridge's two threads.
pub(crate) fn start(core: &Arc<Core>) -> std::io::Result<()> {
    let Some(link) = core.bus.as_ref() else { return Ok(()) };
    let rx = link.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(rx) = rx else { return Ok(()) };
    let c = core.clone();
    std::thread::Builder::new()
        .name("wsloop-bus-pub".into())
        .spawn(move || publisher(&c, rx))?;
    let c = core.clone();
    std::thread::Builder::new()
        .name("wsloop-bus-sub".into())
        .spawn(move || subscriber(&c))?;
    Ok(())
}

fn stopped(core: &Core) -> bool {
    core.shutdown.load(Ordering::Acquire) || core.running.load(Ordering::Acquire) == 0
}

/// Exponential backoff with jitter.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// The next wait: between half and all of the current step, which then doubles.
    fn step(&mut self) -> Duration {
        let mut r = [0u8; 2];
        let _ = getrandom::getrandom(&mut r);
        let frac = f64::from(u16::from_ne_bytes(r)) / f64::from(u16::MAX);
        let wait = self.next.mul_f64(0.5 + frac / 2.0);
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }
}

/// Sleeps `d` in short slices; false if the server stopped meanwhile.
fn nap(core: &Core, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stopped(core) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
    }
    !stopped(core)
}

fn bounds(core: &Core) -> HistoryBounds {
    HistoryBounds {
        max_len: core.config.history_size,
        ttl: core.config.history_ttl,
        max_topics: core.config.history_rooms,
    }
}

/// Hands a replay answer to the connection's loop.
fn answer_replay(core: &Core, conn: ConnId, topic: Arc<str>, result: Replay) {
    if let Some(inbox) = core.inboxes.get(conn.loop_index()) {
        inbox.push([Command::Replay { conn, topic, result }]);
    }
}

/// A recorded message the bus could not take: delivered locally, without an id.
fn deliver_unrecorded(core: &Core, r: &Record) {
    let mut bytes = r.prefix.clone();
    bytes.extend_from_slice(&r.suffix);
    if !r.binary && std::str::from_utf8(&bytes).is_err() {
        return;
    }
    let og = Outgoing {
        target: Target::Topic(r.topic.clone()),
        frame: core.frame_parts(r.binary, &bytes),
        exclude: None,
        from: None,
    };
    core.push_to_loops(&og);
}

/// Jobs that cannot go to the bus: live messages are dropped (already delivered locally),
/// recorded ones delivered locally, replays answered "unavailable".
fn fail_jobs(core: &Core, stats: &BusStats, jobs: Vec<Job>, deliver_records: bool) {
    for job in jobs {
        match job {
            Job::Publish(..) => stats.drop_n(1),
            Job::Record(r) => {
                stats.drop_n(1);
                if deliver_records {
                    deliver_unrecorded(core, &r);
                }
            }
            Job::Replay { conn, topic, since: _ } => answer_replay(core, conn, topic, Replay::Unavailable),
        }
    }
}

fn publisher(core: &Arc<Core>, rx: Receiver<Job>) {
    let Some(link) = core.bus.as_ref() else { return };
    let stats = link.stats.clone();
    let mut conn: Option<Box<dyn BusPublisher>> = None;
    let mut backoff = Backoff::new();
    let mut retry_at = Instant::now();
    let mut last_used = Instant::now();
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
    let mut epoch = 0;
    while !stopped(core) {
        if conn.is_some() && stats.epoch.load(Ordering::Acquire) != epoch {
            conn = None;
            retry_at = Instant::now();
        }
        if conn.is_none() && Instant::now() >= retry_at {
            let at_epoch = stats.epoch.load(Ordering::Acquire);
            match link.engine.publisher() {
                Ok(c) => {
                    epoch = at_epoch;
                    conn = Some(c);
                    backoff.reset();
                    last_used = Instant::now();
                    stats.set(true, true, None);
                }
                Err(e) => {
                    stats.set(true, false, Some(&e));
                    retry_at = Instant::now() + backoff.step();
                }
            }
        }
        let wait = if conn.is_some() {
            Duration::from_millis(200)
        } else {
            retry_at
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(200))
        };
        let mut batch_bytes = 0;
        match rx.recv_timeout(wait) {
            Ok(job) => {
                batch_bytes += job.cost();
                batch.push(job);
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some(c) = conn.as_mut() {
                    if last_used.elapsed() >= IDLE_PING {
                        last_used = Instant::now();
                        if let Err(e) = c.ping() {
                            conn = None;
                            stats.set(true, false, Some(&e));
                            retry_at = Instant::now() + backoff.step();
                        }
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while batch.len() < BATCH && batch_bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    batch_bytes += job.cost();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let Some(c) = conn.as_mut() else {
            fail_jobs(core, &stats, std::mem::take(&mut batch), true);
            link.release(batch_bytes);
            continue;
        };
        last_used = Instant::now();
        if let Err(e) = run_batch(core, &stats, c.as_mut(), &mut batch) {
            log::debug!("message bus: a batch failed: {e}");
            conn = None;
            stats.set(true, false, Some(&e));
            retry_at = Instant::now() + backoff.step();
            // What was in flight may or may not have gone out: counted, not retried (at most
            // once), not delivered locally (it may have been).
            fail_jobs(core, &stats, std::mem::take(&mut batch), false);
        }
        // Every job of the batch is done with (sent, failed or dropped): its bytes go back.
        link.release(batch_bytes);
    }
    let rest: Vec<Job> = rx.try_iter().collect();
    let rest_bytes = rest.iter().map(Job::cost).sum();
    fail_jobs(core, &stats, rest, false);
    link.release(rest_bytes);
}

/// Sends a batch: runs of live messages and of recorded messages each in one call; replays
/// one by one. Jobs done are removed from `batch`; on error what is left was not done (or
/// only partly).
fn run_batch(core: &Core, stats: &BusStats, c: &mut dyn BusPublisher, batch: &mut Vec<Job>) -> Result<(), BusError> {
    let bounds = bounds(core);
    let mut jobs = std::mem::take(batch).into_iter().peekable();
    let mut publishes: Vec<(Channel, Vec<u8>)> = Vec::new();
    let mut records: Vec<Record> = Vec::new();
    let result = (|| {
        while let Some(job) = jobs.next() {
            match job {
                Job::Publish(ch, bytes) => {
                    publishes.push((ch, bytes));
                    if !matches!(jobs.peek(), Some(Job::Publish(..))) {
                        c.publish(&publishes)?;
                        stats.published.fetch_add(publishes.len() as u64, Ordering::Relaxed);
                        publishes.clear();
                    }
                }
                Job::Record(r) => {
                    records.push(r);
                    if !matches!(jobs.peek(), Some(Job::Record(..))) {
                        let recorded = c.record(&records, bounds)?;
                        stats.published.fetch_add(records.len() as u64, Ordering::Relaxed);
                        for (r, ok) in records.iter().zip(recorded) {
                            if !ok {
                                // Past the limit on topics with history: the engine published
                                // it to the others, unrecorded; delivered here the same way.
                                stats.refused.fetch_add(1, Ordering::Relaxed);
                                deliver_unrecorded(core, r);
                            }
                        }
                        records.clear();
                    }
                }
                Job::Replay { conn, topic, since } => {
                    let result = match c.history(&topic, since, bounds) {
                        Ok(Some(entries)) => Replay::Complete(
                            entries
                                .into_iter()
                                .map(|e| Entry {
                                    id: e.id,
                                    binary: e.binary,
                                    bytes: e.bytes,
                                })
                                .collect(),
                        ),
                        Ok(None) => Replay::TooOld,
                        Err(e) => {
                            answer_replay(core, conn, topic, Replay::Unavailable);
                            return Err(e);
                        }
                    };
                    answer_replay(core, conn, topic, result);
                }
            }
        }
        Ok(())
    })();
    if result.is_err() {
        stats.drop_n((publishes.len() + records.len()) as u64);
        batch.extend(jobs);
    }
    result
}

/// The subscriber's sink: frames each message once and hands it to the loops.
struct Sink<'a> {
    core: &'a Core,
    stats: &'a BusStats,
}

impl SubscriberSink for Sink<'_> {
    fn subscribed(&mut self) {
        self.stats.set(false, true, None);
    }

    fn message(&mut self, bytes: &[u8]) {
        deliver_inbound(self.core, self.stats, bytes);
    }

    fn keep_going(&self) -> bool {
        !stopped(self.core)
    }
}

fn subscriber(core: &Arc<Core>) {
    let Some(link) = core.bus.as_ref() else { return };
    let stats = link.stats.clone();
    let channels = [Channel::Fanout, Channel::Node(core.node)];
    let mut backoff = Backoff::new();
    while !stopped(core) {
        let mut sink = Sink { core, stats: &stats };
        let started = Instant::now();
        match link.engine.subscribe(&channels, &mut sink) {
            Ok(()) => return,
            Err(e) => {
                stats.set(false, false, Some(&e));
                if started.elapsed() > BACKOFF_MAX {
                    backoff.reset(); // it had been up a while: a fresh failure
                }
            }
        }
        if !nap(core, backoff.step()) {
            return;
        }
    }
}

/// One message from the bus: checked, framed once, queued to the loops that have receivers.
pub(crate) fn deliver_inbound(core: &Core, stats: &BusStats, bytes: &[u8]) {
    let Some(m) = wire::decode(bytes) else {
        log::debug!("message bus: dropped a malformed message of {} bytes", bytes.len());
        stats.drop_n(1);
        return;
    };
    let recorded = matches!(m.target, wire::WireTarget::Recorded(..));
    if m.origin == core.node && !recorded {
        return; // delivered here when it was published
    }
    if m.payload.len() > core.config.websocket.max_message_size || core.budget().exceeded() {
        stats.drop_n(1);
        return;
    }
    let message = if m.binary {
        Message::Binary(m.payload)
    } else {
        match std::str::from_utf8(m.payload) {
            Ok(t) => Message::Text(t),
            Err(_) => {
                stats.drop_n(1);
                return;
            }
        }
    };
    let target = match m.target {
        wire::WireTarget::Topic(t) => Target::Topic(t.into()),
        wire::WireTarget::All => Target::All,
        wire::WireTarget::One(id) if id.node() == core.node && id.loop_index() < core.inboxes.len() => Target::One(id),
        wire::WireTarget::One(_) => {
            stats.drop_n(1);
            return;
        }
        wire::WireTarget::Recorded(id, topic) => Target::Recorded(topic.into(), id),
    };
    let frame: Arc<Frame> = match &target {
        // Its id travels with the frame, for receivers that name it (an event stream's `id:`).
        Target::Recorded(_, id) => Frame::tagged(message.opcode(), message.bytes(), Tag::Recorded(*id), core.budget()),
        _ => core.frame(message),
    };
    // A recorded message of this process's own comes back with its publisher: held, like a
    // local publication's, when it lands on a backed-up receiver.
    let from = m.from.filter(|id| id.node() == core.node && recorded);
    let og = Outgoing {
        target,
        frame,
        exclude: m.exclude,
        from,
    };
    log::trace!("message bus: received {:?}", og.target);
    core.push_to_loops(&og);
    stats.received.fetch_add(1, Ordering::Relaxed);
}
