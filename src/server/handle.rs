//! Reaching a running server from anywhere: [`ServerHandle`] (cloneable, `Send + Sync`);
//! [`RunningServer`], what `Server::start` returns; and [`ServerInfo`], the server-wide
//! figures.
//!
//! A push from another thread is framed once on the caller's thread, then queued in the inbox
//! (`runtime/inbox.rs`) of every loop that has receivers.

use super::budget::MemoryBudget;
use super::bus::{BusInfo, BusStats};
use super::fanout::{Outgoing, SubscriberCounts, Target};
use super::history::{HistoryFigures, Stamped};
use super::metrics::Metrics;
use super::runtime::inbox::Command;
use super::shared::Core;
use super::{ConnId, Message};
use crate::frame::CloseCode;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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

impl PushError {
    /// Whether trying again later may succeed: true for [`PushError::OverBudget`] (the
    /// budget frees as queues drain), false for the others (the connection or the server is
    /// gone, or the close code is wrong). A ticker retries a temporary error and stops on
    /// any other.
    pub fn is_temporary(&self) -> bool {
        matches!(self, PushError::OverBudget)
    }
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
///     loop {
///         match handle.publish("clock", Message::Text(&format!("tick {n}"))) {
///             Ok(()) => n += 1,
///             // Over the memory budget: skip this tick, try the next one.
///             Err(e) if e.is_temporary() => {}
///             // The server has shut down: the thread ends.
///             Err(_) => break,
///         }
///         std::thread::sleep(Duration::from_millis(10));
///     }
/// });
///
/// assert_eq!(client.recv()?, ClientEvent::Text("tick 0".into()));
/// assert_eq!(client.recv()?, ClientEvent::Text("tick 1".into()));
///
/// client.close(wsloop::CloseCode::NORMAL, "")?;
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

    /// Subscribes a connection of this process to `topic`, from any thread: it receives what
    /// is published there (on any loop, through any path) until it unsubscribes or closes, as
    /// if its handler had called [`Context::subscribe`](super::Context::subscribe).
    ///
    /// The subscription is applied on the connection's event loop, through the same queue as
    /// this handle's other commands, so a [`ServerHandle::publish`] made after this returns
    /// reaches the connection. [`PushError::Gone`] if the connection has closed (or is on
    /// another process: a subscription does not cross the message bus);
    /// [`PushError::OverBudget`] when the memory budget is used up (a subscription takes
    /// memory); a connection that is not a WebSocket or an event stream (an HTTP request
    /// in progress) is left alone.
    pub fn subscribe(&self, id: ConnId, topic: &str) -> Result<(), PushError> {
        self.check()?;
        self.subscription(id, topic, true)
    }

    /// Unsubscribes a connection from `topic`, from any thread (see
    /// [`ServerHandle::subscribe`]): applied on its loop, in order with this handle's other
    /// commands. [`PushError::Gone`] if the connection has closed; not subscribed is no
    /// error.
    pub fn unsubscribe(&self, id: ConnId, topic: &str) -> Result<(), PushError> {
        if self.core.shutdown.load(Ordering::Acquire) || self.core.running.load(Ordering::Acquire) == 0 {
            return Err(PushError::ShutDown);
        }
        self.subscription(id, topic, false)
    }

    fn subscription(&self, id: ConnId, topic: &str, join: bool) -> Result<(), PushError> {
        if !self.core.is_live(id) {
            return Err(PushError::Gone);
        }
        let Some(inbox) = self.core.inboxes.get(id.loop_index()) else {
            return Err(PushError::Gone);
        };
        inbox.push([Command::Subscribe {
            id,
            topic: topic.into(),
            join,
        }]);
        Ok(())
    }

    /// How many connections of this process are subscribed to `topic` now, on every loop
    /// (see [`ServerInfo::subscriber_count`]; with a message bus, this process only).
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.core.info.subscriber_count(topic)
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

    /// Reads the TLS certificate and key files again ([`TlsConfig::reload`](super::tls::TlsConfig::reload);
    /// `wsloop serve` does this on `SIGHUP`): connections accepted from now on get the new
    /// certificate, open ones keep theirs. On error (no TLS, a configuration not read from
    /// files, a missing or bad file) the current certificate stays.
    #[cfg(feature = "tls")]
    pub fn reload_tls(&self) -> Result<(), super::tls::TlsError> {
        match &self.core.config.tls {
            Some(tls) => tls.reload(),
            None => Err(super::tls::TlsError::new("this server does not serve TLS")),
        }
    }

    /// Whether the server serves TLS (`https://`, `wss://`).
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.core.config.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
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
    /// Every loop's subscriber count per topic.
    pub(crate) subscribers: Arc<SubscriberCounts>,
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

    /// Open Server-Sent Events streams (see [`RequestContext::event_stream`](super::RequestContext::event_stream)).
    /// Each is also one of [`ServerInfo::open_connections`].
    pub fn open_event_streams(&self) -> usize {
        self.metrics.event_streams()
    }

    /// How many connections of this process are subscribed to `topic` now, on every event
    /// loop: WebSockets and event streams, whether they joined in a callback or through
    /// [`ServerHandle::subscribe`]. A connection counts from its subscription until it
    /// unsubscribes or closes.
    ///
    /// With a message bus (Redis) this is **this process only**: other servers' subscribers
    /// are not counted (nothing crosses the bus to count them).
    ///
    /// A subscription made through the handle is applied on its connection's loop a moment
    /// later (see [`ServerHandle::subscribe`]); one made in a callback counts at once.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.subscribers.get(topic)
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
    use crate::server::ServerConfig;

    #[test]
    fn only_over_budget_is_temporary() {
        assert!(PushError::OverBudget.is_temporary());
        for e in [PushError::Gone, PushError::ShutDown, PushError::InvalidCloseCode(1005)] {
            assert!(!e.is_temporary(), "{e:?}");
        }
    }

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
