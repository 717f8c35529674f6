//! Past one process: a message bus shared by every server of a cluster, so `publish`,
//! `broadcast` and `send_to` reach clients on every process, and topic history is shared.
//!
//! **The seam with an engine** is the [`MessageBus`] trait: open a connection that publishes
//! (and records and reads history), and run a subscription. [`RedisBus`] is the one engine
//! here (`wsloop serve --redis URL`); NATS or a Valkey cluster would be another implementation
//! of the same four operations.
//!
//! **The bridge** (`bridge.rs`) is two threads per server. The *publisher* takes jobs from a
//! bounded queue the event loops and handles fill — live messages, recorded messages, history
//! reads — and sends them in batches (one round trip per batch). The *subscriber* receives
//! what every process published, frames each message once, and hands it to the loops through
//! their inboxes, exactly as a [`ServerHandle`](crate::server::ServerHandle) push would.
//!
//! **What is guaranteed.** Local delivery never waits for the bus: a live message is delivered
//! to this process's receivers at once and queued for the bus; its echo from the bus is skipped
//! by its origin node (no double delivery). Recorded messages are the one exception: their id
//! is assigned by the bus, in the same atomic step that publishes them, so the origin delivers
//! them when they come back from the bus, like every other node — which is what makes history
//! order equal delivery order everywhere. Live delivery across processes is at most once: while
//! the bus is unreachable nothing is queued for later (messages are delivered locally and
//! counted as dropped for the bus; recorded messages are delivered locally without an id and
//! are not in history), and the queue to the bus is bounded ([`QUEUE`]); when it is full the
//! message is delivered locally only and counted. Order is kept per publisher (one queue, one
//! connection), not across publishers on different processes, except for recorded messages,
//! which every process sees in history order.
//!
//! **Redis down.** Each thread reconnects with exponential backoff (100 ms to 5 s, jittered);
//! one log line per change of state, `wsloop_bus_connected` and `/health` show it.

mod bridge;
#[cfg(feature = "redis")]
mod redis;
pub(crate) mod wire;

pub(crate) use self::bridge::start;
#[cfg(feature = "redis")]
pub use self::redis::RedisBus;

use super::fanout::{Outgoing, Target};
use super::history::{HistoryId, Stamped};
use crate::server::budget::{Charge, MemoryBudget};
use crate::server::ConnId;
use log::{info, warn};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Jobs queued for the bus at most; past it messages are delivered locally only and counted as
/// dropped (no unbounded buffering when the bus is slow). The queue is bounded by bytes too
/// (see `BusLink`): an eighth of the memory budget, charged to it.
pub const QUEUE: usize = 16 * 1024;
/// Jobs sent in one batch (one round trip).
const BATCH: usize = 512;
/// Bytes sent in one batch at most (past the first job): the engine packs a batch into one
/// buffer, which this bounds.
const BATCH_BYTES: usize = 4 << 20;
/// Bytes charged per queued job besides its payload (the job itself, the channel's slot).
const JOB_OVERHEAD: usize = 128;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The publisher pings when idle this long, so a dead connection is noticed before a message
/// is lost on it.
const IDLE_PING: Duration = Duration::from_secs(1);

/// A channel of the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Topic messages and broadcasts: every node listens.
    Fanout,
    /// Messages for the connections of one node (`send_to`): only that node listens.
    Node(u32),
}

/// An error from a bus engine (connection refused, lost, or a bad reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusError(pub String);

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BusError {}

/// How long recorded messages are kept: per topic, at most `max_len` of them, none older than
/// `ttl`; and in how many topics at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryBounds {
    /// Messages kept per topic (at least; engines may trim approximately).
    pub max_len: usize,
    /// Age past which messages are not replayed.
    pub ttl: Duration,
    /// Topics with history at most (a topic idle past `ttl` does not count): a message that
    /// would start one past it is published live but not recorded.
    pub max_topics: usize,
}

/// A message to record in a topic's history and publish, as one atomic step: the engine
/// assigns the id `ID` (ordered per topic) and publishes
/// `head + ID + tail + prefix + ID + suffix` on [`Channel::Fanout`]; history keeps
/// `prefix`, `suffix` and `binary`, and gives back `prefix + ID + suffix`.
#[derive(Debug, Clone)]
pub struct Record {
    /// The topic whose history it joins.
    pub topic: Arc<str>,
    /// The bus header before the id.
    pub head: Vec<u8>,
    /// The bus header after the id (ends with the line feed).
    pub tail: Vec<u8>,
    /// The message before its id.
    pub prefix: Vec<u8>,
    /// The message after its id.
    pub suffix: Vec<u8>,
    /// A binary message (else text).
    pub binary: bool,
}

/// One recorded message, as history gives it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its place in the topic's history.
    pub id: HistoryId,
    /// A binary message (else text, valid UTF-8).
    pub binary: bool,
    /// The whole message, id filled in.
    pub bytes: Vec<u8>,
}

/// One connection of an engine that publishes, records and reads history. Used by one thread.
pub trait BusPublisher: Send {
    /// Publishes these messages in order (one round trip if the engine can).
    fn publish(&mut self, batch: &[(Channel, Vec<u8>)]) -> Result<(), BusError>;
    /// Records and publishes each message (see [`Record`]); in order. For each, whether it was
    /// recorded: `false` when it would have started a topic past `bounds.max_topics` — then
    /// the engine published it live, unrecorded, to the other nodes, and the caller delivers
    /// it locally.
    fn record(&mut self, batch: &[Record], bounds: HistoryBounds) -> Result<Vec<bool>, BusError>;
    /// What `topic` recorded after `since`: `Some(entries)` (oldest first, at most
    /// `bounds.max_len`) if that is everything, `None` if `since` is no longer (or never was)
    /// in the history, so a replay from it would have a gap.
    fn history(
        &mut self,
        topic: &str,
        since: HistoryId,
        bounds: HistoryBounds,
    ) -> Result<Option<Vec<HistoryEntry>>, BusError>;
    /// Checks the connection.
    fn ping(&mut self) -> Result<(), BusError>;
}

/// Where a subscription delivers.
pub trait SubscriberSink {
    /// The subscription is in place: from now on messages arrive.
    fn subscribed(&mut self);
    /// One message.
    fn message(&mut self, bytes: &[u8]);
    /// False when the server is shutting down: return `Ok(())` soon (within about a second).
    fn keep_going(&self) -> bool;
}

/// A message bus engine. See the module docs.
pub trait MessageBus: Send + Sync + 'static {
    /// For logs and `/health`: the engine and where (no password), e.g. `redis 127.0.0.1:6379`.
    fn describe(&self) -> String;
    /// Opens a publishing connection.
    fn publisher(&self) -> Result<Box<dyn BusPublisher>, BusError>;
    /// Subscribes to `channels` and delivers to `sink` until the connection fails (`Err`) or
    /// `sink.keep_going()` turns false (`Ok`).
    fn subscribe(&self, channels: &[Channel], sink: &mut dyn SubscriberSink) -> Result<(), BusError>;
}

/// The bus's figures, as `/health` and `/metrics` show them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusInfo {
    /// `MessageBus::describe`.
    pub engine: String,
    /// Both connections are up.
    pub connected: bool,
    /// Messages sent to the bus.
    pub published: u64,
    /// Messages received from the bus and handed to the loops (own echoes not counted).
    pub received: u64,
    /// Messages not sent (bus unreachable, queue full, failed batch) or not delivered
    /// (malformed, over the memory budget).
    pub dropped: u64,
    /// Recorded messages refused: the queue to the bus was full (by count or bytes), or
    /// they would have started a topic past the limit on topics with history.
    pub refused: u64,
    /// Bytes queued for the bus now (charged to the memory budget).
    pub queued_bytes: usize,
    /// Times a connection to the bus was (re)established.
    pub connects: u64,
}

#[derive(Debug, Default)]
pub(crate) struct BusStats {
    engine: String,
    connected: AtomicBool,
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
    queued_bytes: AtomicUsize,
    connects: AtomicU64,
    /// Bumped when the subscription fails: the publisher's connection (likely to the same dead
    /// server, and not yet used since) is reopened before it is trusted with a message.
    epoch: AtomicU64,
    /// (publisher up, subscriber up, last announced state).
    state: Mutex<(bool, bool, Option<bool>)>,
}

impl BusStats {
    pub(crate) fn info(&self) -> BusInfo {
        BusInfo {
            engine: self.engine.clone(),
            connected: self.connected.load(Ordering::Acquire),
            published: self.published.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            queued_bytes: self.queued_bytes.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
        }
    }

    fn drop_n(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// One side's state changed; logs once per change of the whole (both up, or not).
    fn set(&self, publisher: bool, up: bool, error: Option<&BusError>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if publisher {
            s.0 = up;
        } else {
            s.1 = up;
            if !up {
                s.0 = false;
                self.epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
        if up {
            self.connects.fetch_add(1, Ordering::Relaxed);
        }
        let both = s.0 && s.1;
        self.connected.store(both, Ordering::Release);
        if both && s.2 != Some(true) {
            s.2 = Some(true);
            info!("message bus: connected to {}", self.engine);
        } else if !up && s.2 != Some(false) {
            s.2 = Some(false);
            let why = error.map_or_else(String::new, |e| format!(": {e}"));
            warn!(
                "message bus: {} unreachable{why}; delivering locally only, reconnecting with backoff",
                self.engine
            );
        }
    }

    /// The Prometheus lines.
    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let i = self.info();
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        metric(
            "wsloop_bus_connected",
            "gauge",
            "1 while both connections to the message bus are up.",
            u64::from(i.connected),
        );
        metric(
            "wsloop_bus_published_total",
            "counter",
            "Messages sent to the message bus.",
            i.published,
        );
        metric(
            "wsloop_bus_received_total",
            "counter",
            "Messages received from the message bus and handed to the event loops.",
            i.received,
        );
        metric(
            "wsloop_bus_dropped_total",
            "counter",
            "Messages not sent to the bus (unreachable, queue full) or not delivered from it (malformed, over budget).",
            i.dropped,
        );
        metric(
            "wsloop_bus_history_refused_total",
            "counter",
            "Recorded messages refused: queue to the bus full, or a new topic past the limit on topics with history.",
            i.refused,
        );
        metric(
            "wsloop_bus_queued_bytes",
            "gauge",
            "Bytes queued for the message bus (charged to the memory budget).",
            i.queued_bytes as u64,
        );
        metric(
            "wsloop_bus_connects_total",
            "counter",
            "Connections to the message bus established.",
            i.connects,
        );
    }
}

enum Job {
    Publish(Channel, Vec<u8>),
    Record(Record),
    Replay {
        conn: ConnId,
        topic: Arc<str>,
        since: HistoryId,
    },
}

impl Job {
    /// The bytes it holds while queued (and in a batch), as charged to the memory budget.
    fn cost(&self) -> usize {
        JOB_OVERHEAD
            + match self {
                Job::Publish(_, bytes) => bytes.len(),
                Job::Record(r) => r.topic.len() + r.head.len() + r.tail.len() + r.prefix.len() + r.suffix.len(),
                Job::Replay { topic, .. } => topic.len(),
            }
    }
}

/// Whether the bus took a recorded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Queued: it comes back from the bus with its id.
    Yes,
    /// The queue is full (by count or by bytes), or the memory budget is: refused, so the
    /// caller can say so (a POST answers 503) instead of buffering without bound.
    Full,
    /// The bus is unreachable: the caller delivers it locally, unrecorded.
    Unavailable,
}

/// The loops' side of the bridge, kept in `Core`.
///
/// The queue to the publisher thread is bounded by count ([`QUEUE`]) and by bytes
/// (`max_bytes`, an eighth of the memory budget): a stalled bus (Redis stopped, a slow
/// network) fills it in a moment with large messages, so its bytes are charged to the memory
/// budget from the moment a job is queued until its batch is done, and a job that does not
/// fit is refused.
pub(crate) struct BusLink {
    engine: Arc<dyn MessageBus>,
    tx: SyncSender<Job>,
    rx: Mutex<Option<Receiver<Job>>>,
    pub(crate) stats: Arc<BusStats>,
    budget: Arc<MemoryBudget>,
    max_bytes: usize,
    /// The queue's share of the budget, settled to `stats.queued_bytes`.
    charge: Mutex<Charge>,
}

impl BusLink {
    pub(crate) fn new(engine: Arc<dyn MessageBus>, budget: Arc<MemoryBudget>) -> BusLink {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let stats = Arc::new(BusStats {
            engine: engine.describe(),
            ..BusStats::default()
        });
        // A `Charge` holds at most 4 GiB; the queue never needs that much.
        let max_bytes = (budget.limit() / 8).min(u32::MAX as usize);
        BusLink {
            engine,
            tx,
            rx: Mutex::new(Some(rx)),
            stats,
            budget,
            max_bytes,
            charge: Mutex::new(Charge::default()),
        }
    }

    pub(crate) fn connected(&self) -> bool {
        self.stats.connected.load(Ordering::Acquire)
    }

    /// Sets the budget's share to what is queued now (read under the lock, so the last
    /// settle sees the last change).
    fn settle(&self) {
        let mut charge = self.charge.lock().unwrap_or_else(|p| p.into_inner());
        charge.settle(&self.budget, self.stats.queued_bytes.load(Ordering::Acquire));
    }

    /// Gives back the bytes of jobs that are done (sent, failed or dropped).
    fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.stats.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.settle();
        }
    }

    /// Queues a job if its bytes fit (and the budget is not exceeded); charged until the
    /// publisher thread releases it.
    fn send(&self, job: Job) -> Result<(), Job> {
        let cost = job.cost();
        if self.budget.exceeded()
            || self
                .stats
                .queued_bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                    (q + cost <= self.max_bytes).then_some(q + cost)
                })
                .is_err()
        {
            return Err(job);
        }
        self.settle();
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(j) | TrySendError::Disconnected(j)) => {
                self.release(cost);
                Err(j)
            }
        }
    }

    /// Queues a message that was just delivered locally for the other processes: topics and
    /// broadcasts to all, a connection on another node to that node. Never blocks.
    pub(crate) fn forward(&self, node: u32, og: &Outgoing) {
        let channel = match og.target {
            Target::Topic(_) | Target::All => Channel::Fanout,
            Target::One(id) if id.node() != node => Channel::Node(id.node()),
            Target::One(_) | Target::Recorded(..) => return,
        };
        if !self.connected() {
            self.stats.drop_n(1);
            return;
        }
        let Some((opcode, payload)) = og.frame.payload() else {
            return;
        };
        let binary = opcode == crate::frame::Opcode::Binary;
        let Some(bytes) = wire::encode(node, binary, og.exclude, &og.target, payload) else {
            self.stats.drop_n(1);
            return;
        };
        if self.send(Job::Publish(channel, bytes)).is_err() {
            self.stats.drop_n(1);
        }
    }

    /// Queues a recorded message (see [`Queued`]).
    pub(crate) fn record(
        &self,
        node: u32,
        topic: &str,
        stamp: &Stamped<'_>,
        exclude: Option<ConnId>,
        from: Option<ConnId>,
    ) -> Queued {
        if !self.connected() || !wire::topic_ok(topic) {
            self.stats.drop_n(1);
            return Queued::Unavailable;
        }
        let (head, tail) = wire::recorded_head(node, stamp.binary, exclude, from, topic);
        let job = Job::Record(Record {
            topic: topic.into(),
            head,
            tail,
            prefix: stamp.prefix.to_vec(),
            suffix: stamp.suffix.to_vec(),
            binary: stamp.binary,
        });
        if self.send(job).is_err() {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Queued::Full;
        }
        Queued::Yes
    }

    /// Asks for a replay; the answer comes back as `Command::Replay` to the connection's loop.
    /// False if it cannot be asked now.
    pub(crate) fn replay(&self, conn: ConnId, topic: &str, since: HistoryId) -> bool {
        self.connected()
            && self
                .send(Job::Replay {
                    conn,
                    topic: topic.into(),
                    since,
                })
                .is_ok()
    }
}

#[cfg(test)]
mod tests;
