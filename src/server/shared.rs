//! The state every loop and every handle share: the configuration, the memory budget and
//! metrics ([`ServerInfo`]), the loops' inboxes, the history or the bus, and the few
//! operations on them that every publication path uses (framing once, recording, pushing to
//! every loop).

use super::budget::{Frame, MemoryBudget, Tag};
use super::bus::{BusLink, MessageBus, Queued};
use super::fanout::{Outgoing, Target};
use super::handle::{PushError, ServerInfo};
use super::history::{MemoryHistory, Stamped};
use super::limiter::{Limits, PerIp};
use super::metrics::Metrics;
use super::observer::ServerObserver;
use super::runtime::inbox::{Command, Inbox};
use super::{ConnId, Message, ServerConfig};
use crate::frame;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

/// Addresses the per-address table tracks beyond `max_connections`: those with no connection
/// open but still inside their rate window (about a second).
const PER_IP_SPARE_ENTRIES: usize = 65_536;

/// The state every loop and every handle share.
pub(crate) struct Core {
    pub(crate) config: ServerConfig,
    pub(crate) node: u32,
    pub(crate) info: ServerInfo,
    pub(crate) inboxes: Vec<Inbox>,
    pub(crate) observer: Option<Arc<dyn ServerObserver>>,
    pub(crate) shutdown: AtomicBool,
    /// Event loops still running.
    pub(crate) running: AtomicUsize,
    pub(crate) local_addr: SocketAddr,
    /// Round-robin counter for spreading accepted connections over the loops.
    pub(crate) next_loop: AtomicUsize,
    /// The message bus shared with other processes, if any (see `bus/mod.rs`).
    pub(crate) bus: Option<BusLink>,
    /// Topic history when there is no bus.
    pub(crate) history: MemoryHistory,
    /// Open connections and the connection rate per client address, when either limit is on
    /// (see `limiter.rs`). Shared: the connections of one address land on different loops.
    pub(crate) per_ip: Option<Arc<PerIp>>,
}

impl Core {
    /// The state shared by the loops whose inboxes are given (one per loop), with the memory
    /// budget, history and metrics the configuration asks for.
    pub(crate) fn new(
        config: ServerConfig,
        node: u32,
        inboxes: Vec<Inbox>,
        local_addr: SocketAddr,
        observer: Option<Arc<dyn ServerObserver>>,
        bus: Option<Arc<dyn MessageBus>>,
    ) -> Core {
        let loops = inboxes.len();
        let budget = MemoryBudget::new(config.max_memory);
        let bus = bus.map(|engine| BusLink::new(engine, budget.clone()));
        // In-memory history may hold at most an eighth of the memory budget, charged to it.
        let history = MemoryHistory::new(
            config.history_size,
            config.history_ttl,
            config.max_memory / 8,
            config.history_rooms,
            budget.clone(),
            super::history::now_ms(),
        );
        let per_ip = PerIp::new(
            Limits {
                connections: config.max_connections_per_ip,
                rate: config.upgrade_rate_per_ip,
            },
            // Entries with open connections are at most `max_connections`; the rest is room
            // for addresses inside their rate window.
            config.max_connections.saturating_add(PER_IP_SPARE_ENTRIES),
            budget.clone(),
        );
        Core {
            config,
            node,
            info: ServerInfo {
                metrics: Metrics::new(loops),
                budget,
                bus: bus.as_ref().map(|b| b.stats.clone()),
                history: history.shared_figures(),
                subscribers: Arc::new(super::fanout::SubscriberCounts::new(loops)),
            },
            inboxes,
            observer,
            shutdown: AtomicBool::new(false),
            running: AtomicUsize::new(loops),
            local_addr,
            next_loop: AtomicUsize::new(0),
            bus,
            history,
            per_ip,
        }
    }

    /// One loop's worth of shared state with no poller, no bus and no observer (node 1, a
    /// made-up local address): for code that drives sessions itself — the fuzz harness, unit
    /// tests that feed byte vectors — through [`LoopState::new`](super::context::LoopState::new)
    /// with index 0.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn detached(config: ServerConfig) -> Arc<Core> {
        let local_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        Arc::new(Core::new(config, 1, vec![Inbox::new(None)], local_addr, None, None))
    }

    pub(crate) fn budget(&self) -> &Arc<MemoryBudget> {
        &self.info.budget
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.info.metrics
    }

    /// Frames a message once, unmasked (a server's frame, RFC 6455 §5.1), for many receivers.
    pub(crate) fn frame(&self, message: Message<'_>) -> Arc<Frame> {
        Frame::message(message.opcode(), message.bytes(), self.budget())
    }

    /// Frames a message given as (binary?, bytes), as history and the bus keep them. Text
    /// bytes were valid UTF-8 when they were recorded.
    pub(crate) fn frame_parts(&self, binary: bool, bytes: &[u8]) -> Arc<Frame> {
        let opcode = if binary {
            frame::Opcode::Binary
        } else {
            frame::Opcode::Text
        };
        Frame::message(opcode, bytes, self.budget())
    }

    /// [`Core::frame_parts`] for a recorded message or a replay's notice (see `Tag`).
    pub(crate) fn frame_tagged(&self, tag: Tag, binary: bool, bytes: &[u8]) -> Arc<Frame> {
        let opcode = if binary {
            frame::Opcode::Binary
        } else {
            frame::Opcode::Text
        };
        Frame::tagged(opcode, bytes, tag, self.budget())
    }

    /// Queues a publication in the inbox of every loop it has receivers on: the one way a
    /// message reaches the loops from outside one (the handle, history, the bus).
    pub(crate) fn push_to_loops(&self, og: &Outgoing) {
        for (i, inbox) in self.inboxes.iter().enumerate() {
            if og.goes_to_loop(i) {
                inbox.push([Command::Deliver(og.clone())]);
            }
        }
    }

    pub(crate) fn wake_all(&self) {
        for inbox in &self.inboxes {
            inbox.wake();
        }
    }

    pub(crate) fn is_live(&self, id: ConnId) -> bool {
        id.node() == self.node && self.inboxes.get(id.loop_index()).is_some_and(|i| i.is_live(id))
    }

    /// Whether a `send_to` may go out: a live local connection, or one on another node when a
    /// bus connects the nodes (whether it is still open there cannot be known here).
    pub(crate) fn may_reach(&self, id: ConnId) -> bool {
        self.is_live(id) || (id.node() != self.node && self.bus.is_some())
    }

    /// Hands a message just delivered (or being delivered) here to the bus for the other
    /// processes.
    pub(crate) fn forward(&self, og: &Outgoing) {
        if let Some(bus) = &self.bus {
            bus.forward(self.node, og);
        }
    }

    /// A recorded message: to the bus, which gives it an id and brings it back to every node,
    /// this one included; or, without a bus, into this process's history and, framed with its
    /// id, into every loop's inbox under the history's lock (so every loop gets a topic's
    /// messages in id order, the origin's loop too). `Ok(None)` then. When the bus is
    /// unreachable (or history is off), it is returned with an empty id, not recorded, for
    /// the caller to deliver (and forward) as a plain publish. `Err(OverBudget)` when it is
    /// refused: the bus's queue is full (by bytes or count) or it would start a room past
    /// `ServerConfig::history_rooms`; nothing was delivered, [`Core::unrecorded`] gives the
    /// plain form for a caller that delivers it anyway.
    pub(crate) fn record(
        &self,
        topic: &str,
        stamp: &Stamped<'_>,
        exclude: Option<ConnId>,
        from: Option<ConnId>,
    ) -> Result<Option<Outgoing>, PushError> {
        match &self.bus {
            _ if self.config.history_size == 0 => {}
            Some(bus) => match bus.record(self.node, topic, stamp, exclude, from) {
                Queued::Yes => return Ok(None),
                Queued::Full => return Err(PushError::OverBudget),
                Queued::Unavailable => {}
            },
            None => {
                let now = super::history::now_ms();
                let appended = self.history.append_then(topic, stamp, now, |entry| {
                    self.push_to_loops(&Outgoing {
                        target: Target::Recorded(topic.into(), entry.id),
                        frame: self.frame_tagged(Tag::Recorded(entry.id), entry.binary, &entry.bytes),
                        exclude,
                        from,
                    });
                });
                return appended.map(|()| None).map_err(|_| PushError::OverBudget);
            }
        }
        Ok(Some(self.unrecorded(topic, stamp, exclude, from)))
    }

    /// A recorded message as a plain publish, with an empty id (not in history).
    pub(crate) fn unrecorded(
        &self,
        topic: &str,
        stamp: &Stamped<'_>,
        exclude: Option<ConnId>,
        from: Option<ConnId>,
    ) -> Outgoing {
        // Prefix and suffix of a text stamp came from `&str`s: the bytes are UTF-8.
        Outgoing {
            target: Target::Topic(topic.into()),
            frame: self.frame_parts(stamp.binary, &stamp.fill("")),
            exclude,
            from,
        }
    }
}
