//! Reaching a running server from anywhere: [`ServerHandle`] (cloneable, `Send + Sync`) and
//! the per-loop inboxes it writes to; [`RunningServer`], what `Server::start` returns; and
//! [`ServerInfo`], the server-wide figures.
//!
//! A push from another thread is framed once on the caller's thread, then queued in the inbox
//! of every loop that has receivers and the loop is woken through its `mio::Waker` (at most
//! one wake per batch: a flag says a wake is already pending). Each loop drains its inbox in
//! order, so messages from one sender arrive in the order they were pushed.
//!
//! A loop without a poller — the fuzz harness, a unit test driving sessions on byte vectors
//! ([`Core::detached`]) — has an inbox without a waker: whoever drives it drains it.

use super::budget::{Frame, MemoryBudget};
use super::bus::{BusInfo, BusLink, BusStats, MessageBus, Queued};
use super::fanout::{Outgoing, Target};
use super::history::{HistoryFigures, MemoryHistory, Replay, Stamped};
use super::metrics::Metrics;
use super::observer::ServerObserver;
use super::{ConnId, Message, ServerConfig};
use crate::frame::{self, CloseCode};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Work for a loop from outside it.
pub(crate) enum Command {
    /// Deliver a framed message to this loop's receivers.
    Deliver(Outgoing),
    /// Start the closing handshake of one connection.
    Close {
        id: ConnId,
        code: CloseCode,
        reason: String,
    },
    /// A subscriber on another loop is backed up: stop reading from this publisher.
    Hold(ConnId),
    /// That subscriber has drained (or given up holding): the publisher may go on.
    Release(ConnId),
    /// A connection accepted by another loop, handed over to balance the loops.
    Adopt(mio::net::TcpStream, SocketAddr),
    /// The history a connection asked for (`subscribe_since`) was read from the message bus.
    Replay {
        conn: ConnId,
        topic: Arc<str>,
        result: Replay,
    },
}

/// One loop's mailbox.
pub(crate) struct Inbox {
    queue: Mutex<VecDeque<Command>>,
    /// `None` for a loop driven by a harness rather than a poller: nothing sleeps, so there
    /// is nothing to wake.
    waker: Option<mio::Waker>,
    /// A wake is on its way; further pushes need not wake again.
    notified: AtomicBool,
    /// Commands queued, readable without the lock (publishers are held while it is high).
    queued: AtomicUsize,
    /// The generation of each occupied slot of the loop (0: free), so a push to a connection
    /// that has gone can be answered "gone" on the caller's thread.
    live: Mutex<Vec<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inbox {
    pub(crate) fn new(waker: Option<mio::Waker>) -> Inbox {
        Inbox {
            queue: Mutex::new(VecDeque::new()),
            waker,
            notified: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            live: Mutex::new(Vec::new()),
        }
    }

    /// Queues commands and wakes the loop unless a wake is already pending.
    pub(crate) fn push(&self, commands: impl IntoIterator<Item = Command>) {
        {
            let mut q = lock(&self.queue);
            let before = q.len();
            q.extend(commands);
            self.queued.fetch_add(q.len() - before, Ordering::Relaxed);
        }
        self.wake();
    }

    /// Commands waiting for the loop.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn wake(&self) {
        let Some(waker) = &self.waker else { return };
        if !self.notified.swap(true, Ordering::AcqRel) {
            if let Err(e) = waker.wake() {
                log::warn!("waking an event loop failed: {e}");
            }
        }
    }

    /// Takes up to `max` commands (the loop's side). Clears the wake flag first, so a push that
    /// lands after the take wakes the loop again.
    pub(crate) fn take(&self, max: usize, into: &mut Vec<Command>) -> bool {
        self.notified.store(false, Ordering::Release);
        let mut q = lock(&self.queue);
        let n = q.len().min(max);
        into.extend(q.drain(..n));
        self.queued.fetch_sub(n.min(self.queued()), Ordering::Relaxed);
        !q.is_empty()
    }

    pub(crate) fn set_live(&self, slot: usize, generation: u32) {
        let mut live = lock(&self.live);
        if live.len() <= slot {
            live.resize(slot + 1, 0);
        }
        if let Some(g) = live.get_mut(slot) {
            *g = generation;
        }
    }

    fn is_live(&self, id: ConnId) -> bool {
        lock(&self.live)
            .get(id.slot())
            .is_some_and(|&g| g != 0 && g == id.generation())
    }
}

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
        Core {
            config,
            node,
            info: ServerInfo {
                metrics: Metrics::new(loops),
                budget,
                bus: bus.as_ref().map(|b| b.stats.clone()),
                history: history.shared_figures(),
            },
            inboxes,
            observer,
            shutdown: AtomicBool::new(false),
            running: AtomicUsize::new(loops),
            local_addr,
            next_loop: AtomicUsize::new(0),
            bus,
            history,
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
                        frame: self.frame_parts(entry.binary, &entry.bytes),
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

/// Why a push through a [`ServerHandle`] was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// No such connection (it closed, or the id is from another server).
    Gone,
    /// The server has shut down.
    ShutDown,
    /// The server's memory budget is used up; try again later.
    OverBudget,
    /// [`ServerHandle::close`] with a code that may not go on the wire (RFC 6455 §7.4; see
    /// [`CloseCode::is_valid_on_wire`]): nothing was done.
    InvalidCloseCode(u16),
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Gone => "no such connection",
            PushError::ShutDown => "the server has shut down",
            PushError::OverBudget => "the server's memory budget is used up",
            PushError::InvalidCloseCode(code) => {
                return write!(f, "close code {code} may not be sent (RFC 6455 §7.4)");
            }
        })
    }
}

impl std::error::Error for PushError {}

/// A handle to a running server, usable from any thread: push messages, close connections,
/// read the counts, shut down. Cloning is cheap (one `Arc`).
///
/// A clock: a thread of the application's own pushes a tick to every connection subscribed to
/// `"clock"`, through the event loops that own them, until the server shuts down.
///
/// ```
/// use std::time::Duration;
/// use wsloop::client::{Client, ClientEvent};
/// use wsloop::handshake::Request;
/// use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response, Server};
///
/// struct Clock;
///
/// impl Handler for Clock {
///     type State = ();
///     fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
///         Ok(Accept::default())
///     }
///     fn on_open(&self, ctx: &mut Context<'_>) {
///         ctx.subscribe("clock");
///         ctx.send_text("subscribed");
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let addr = "127.0.0.1:0".parse()?;
/// let server = Server::new(Clock).configure(|c| {
///     c.bind = addr;
///     c.threads = 2;
/// });
/// let server = server.start()?;
/// let mut client = Client::connect(&format!("ws://{}/", server.local_addr()))?;
/// assert_eq!(client.recv()?, ClientEvent::Text("subscribed".into()));
///
/// let handle = server.handle();
/// let ticker = std::thread::spawn(move || {
///     let mut n = 0;
///     // An error means the server has shut down: the thread ends.
///     while handle.publish("clock", Message::Text(&format!("tick {n}"))).is_ok() {
///         n += 1;
///         std::thread::sleep(Duration::from_millis(10));
///     }
/// });
///
/// assert_eq!(client.recv()?, ClientEvent::Text("tick 0".into()));
/// assert_eq!(client.recv()?, ClientEvent::Text("tick 1".into()));
///
/// server.shutdown();
/// server.join()?;
/// ticker.join().expect("the ticker thread ends once the server is down");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) core: Arc<Core>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.core.local_addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    fn check(&self) -> Result<(), PushError> {
        if self.core.shutdown.load(Ordering::Acquire) || self.core.running.load(Ordering::Acquire) == 0 {
            return Err(PushError::ShutDown);
        }
        if self.core.budget().exceeded() {
            return Err(PushError::OverBudget);
        }
        Ok(())
    }

    fn push(&self, og: Outgoing) {
        self.core.forward(&og);
        if matches!(og.target, Target::One(id) if id.node() != self.core.node) {
            return; // on another process: the bus took it
        }
        self.core.push_to_loops(&og);
    }

    /// Sends a message to every subscriber of `topic`, on every loop.
    pub fn publish(&self, topic: &str, message: Message<'_>) -> Result<(), PushError> {
        self.check()?;
        self.push(Outgoing {
            target: Target::Topic(topic.into()),
            frame: self.core.frame(message),
            exclude: None,
            from: None,
        });
        Ok(())
    }

    /// Sends a message to every open WebSocket.
    pub fn broadcast(&self, message: Message<'_>) -> Result<(), PushError> {
        self.check()?;
        self.push(Outgoing {
            target: Target::All,
            frame: self.core.frame(message),
            exclude: None,
            from: None,
        });
        Ok(())
    }

    /// Publishes a message into `topic`'s history (see [`Stamped`]) and to its subscribers on
    /// every process; a client reconnecting with `subscribe_since` gets what it missed.
    pub fn publish_recorded(&self, topic: &str, message: Stamped<'_>) -> Result<(), PushError> {
        self.check()?;
        if let Some(og) = self.core.record(topic, &message, None, None)? {
            self.core.push_to_loops(&og);
        }
        Ok(())
    }

    /// Sends a message to one connection, on this process or (with a message bus) another.
    /// [`PushError::Gone`] if it is local and has closed (a connection that closes after the
    /// check, or one on another process, loses the message silently, as any in-flight
    /// message).
    pub fn send_to(&self, id: ConnId, message: Message<'_>) -> Result<(), PushError> {
        self.check()?;
        if !self.core.may_reach(id) {
            return Err(PushError::Gone);
        }
        self.push(Outgoing {
            target: Target::One(id),
            frame: self.core.frame(message),
            exclude: None,
            from: None,
        });
        Ok(())
    }

    /// Starts the closing handshake of one connection with this code and reason.
    /// [`PushError::InvalidCloseCode`] (and nothing done) for a code that may not go on the
    /// wire (RFC 6455 §7.4), checked here rather than on the loop so the caller sees it:
    /// the loop could only drop the request.
    pub fn close(&self, id: ConnId, code: CloseCode, reason: &str) -> Result<(), PushError> {
        if !code.is_valid_on_wire() {
            return Err(PushError::InvalidCloseCode(code.0));
        }
        if self.core.shutdown.load(Ordering::Acquire) {
            return Err(PushError::ShutDown);
        }
        if !self.core.is_live(id) {
            return Err(PushError::Gone);
        }
        if let Some(inbox) = self.core.inboxes.get(id.loop_index()) {
            inbox.push([Command::Close {
                id,
                code,
                reason: reason.to_owned(),
            }]);
        }
        Ok(())
    }

    /// Server-wide figures and counters.
    pub fn info(&self) -> &ServerInfo {
        &self.core.info
    }

    /// Open TCP connections (HTTP and WebSocket).
    pub fn open_connections(&self) -> usize {
        self.core.info.open_connections()
    }

    /// Open WebSocket sessions.
    pub fn open_websockets(&self) -> usize {
        self.core.info.open_websockets()
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.core.local_addr
    }

    /// This server's node id, the first part of every [`ConnId`] it hands out.
    pub fn node_id(&self) -> u32 {
        self.core.node
    }

    /// Begins a graceful shutdown (as SIGTERM does); returns at once.
    pub fn shutdown(&self) {
        self.core.shutdown.store(true, Ordering::Release);
        self.core.wake_all();
    }

    /// Whether the event loops are still running.
    pub fn is_running(&self) -> bool {
        self.core.running.load(Ordering::Acquire) > 0
    }
}

/// Server-wide figures, readable from any callback ([`super::Context::info`]) or thread
/// ([`ServerHandle::info`]).
#[derive(Debug)]
pub struct ServerInfo {
    pub(crate) metrics: Metrics,
    pub(crate) budget: Arc<MemoryBudget>,
    pub(crate) bus: Option<Arc<BusStats>>,
    /// The in-memory history's rooms and bytes (zero with a message bus: Redis keeps it).
    pub(crate) history: Arc<HistoryFigures>,
}

impl ServerInfo {
    /// Open TCP connections (HTTP and WebSocket).
    pub fn open_connections(&self) -> usize {
        self.metrics.connections()
    }

    /// Open WebSocket sessions.
    pub fn open_websockets(&self) -> usize {
        self.metrics.websockets()
    }

    /// Time since the server started.
    pub fn uptime(&self) -> Duration {
        self.metrics.started.elapsed()
    }

    /// Bytes charged to the memory budget now (see `ServerConfig::max_memory`).
    pub fn memory_used(&self) -> usize {
        self.budget.used()
    }

    /// The memory budget.
    pub fn memory_limit(&self) -> usize {
        self.budget.limit()
    }

    /// How many bytes a message (or what a handler builds from one) may take now: what is left
    /// of the budget below the level where shedding stops (90%), but never less than a fair
    /// share of the last tenth, `memory_limit / 10 / connections` — the rule the server
    /// itself admits incoming messages by, so that no one client's (or mode's) use of the
    /// budget refuses every other connection's messages.
    pub fn message_room(&self) -> usize {
        let tenth = self.budget.limit() / 10;
        let headroom = (tenth * 9).saturating_sub(self.budget.used());
        if headroom >= tenth {
            return headroom;
        }
        headroom.max(tenth / self.metrics.connections().max(1))
    }

    /// Messages received, messages sent (each delivery counts), bytes read, bytes written.
    pub fn traffic(&self) -> (u64, u64, u64, u64) {
        self.metrics.traffic()
    }

    /// Every counter in the Prometheus text exposition format (what `/metrics` serves).
    pub fn prometheus(&self) -> String {
        let mut text = self
            .metrics
            .render(self.budget.used(), self.budget.limit(), &self.history_gauges());
        if let Some(bus) = &self.bus {
            bus.render(&mut text);
        }
        text
    }

    fn history_gauges(&self) -> [(&'static str, &'static str, f64); 2] {
        let (rooms, bytes) = self.history.get();
        [
            (
                "wsloop_history_rooms",
                "Rooms with in-memory history (expired ones are removed by a timer).",
                rooms as f64,
            ),
            (
                "wsloop_history_bytes",
                "Bytes charged to the memory budget for in-memory history, per-room overhead included.",
                bytes as f64,
            ),
        ]
    }

    /// The message bus's state and counters; `None` without a bus.
    pub fn bus(&self) -> Option<BusInfo> {
        self.bus.as_ref().map(|b| b.info())
    }
}

/// A started server: its handle plus the loop threads to wait for. Dropping it shuts the
/// server down (tests rely on this).
pub struct RunningServer {
    pub(crate) handle: ServerHandle,
    pub(crate) threads: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// A handle for pushing messages from any thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// Server-wide figures.
    pub fn info(&self) -> &ServerInfo {
        self.handle.info()
    }

    /// Begins a graceful shutdown; returns at once.
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }

    /// Waits for every event loop to finish.
    pub fn join(mut self) -> std::io::Result<()> {
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                result = Err(std::io::Error::other("an event loop panicked"));
            }
        }
        log::info!("server stopped");
        result
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.handle.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::context::LoopState;

    #[test]
    fn a_detached_loop_queues_commands_without_a_waker() {
        let lp = LoopState::new(0, Core::detached(ServerConfig::default()));
        let inbox = lp.core.inboxes.first().unwrap();
        let id = ConnId::new(1, 0, 3, 1);
        inbox.set_live(3, 1);
        assert!(lp.core.is_live(id));
        // Pushing (from a handle, say) wakes nobody and loses nothing: the driver drains it.
        lp.handle.close(id, CloseCode::NORMAL, "bye").unwrap();
        inbox.push([Command::Release(id)]);
        assert_eq!(inbox.queued(), 2);
        let mut taken = Vec::new();
        assert!(!inbox.take(16, &mut taken), "nothing left behind");
        assert!(matches!(taken.as_slice(), [Command::Close { .. }, Command::Release(r)] if *r == id));
        assert_eq!(inbox.queued(), 0);
    }
}
