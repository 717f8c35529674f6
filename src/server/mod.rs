//! The mio server: HTTP and WebSocket on one port, one event loop per core.
//!
//! A thin shell over the sans-IO core. Each connection is a [`session`](self) that parses
//! requests with [`crate::handshake::RequestParser`], answers plain HTTP through
//! [`Handler::on_request`], upgrades WebSocket requests (RFC 6455 §4.2) and then feeds bytes to
//! its [`crate::protocol::WebSocket`], calling the [`Handler`] for each message. The event loop
//! around the sessions only moves bytes, routes published messages and keeps time.
//!
//! ```no_run
//! use wsloop::handshake::Request;
//! use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response, Server};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     type State = ();
//!     fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
//!         Ok(Accept::default())
//!     }
//!     fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
//!         ctx.send(message);
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     Server::new(Echo).configure(|c| c.bind = "127.0.0.1:9001".parse().unwrap()).run()
//! }
//! ```
//!
//! **Handlers run on the event loop and must not block**; see [`handler`](Handler) for the
//! pattern for slow work.
//!
//! **Threads and the port.** By default the port is bound exclusively (a second server on it
//! fails with "address in use") and every loop watches the one listening socket; whichever
//! loop accepts a connection hands it to the next loop in turn, so connections are spread
//! evenly and deterministically. With `reuse_port` each loop binds its own `SO_REUSEPORT`
//! listener and the kernel spreads connections by hash, with no hand-off — and other processes
//! may join the port, which is how N processes serve one port.
//!
//! **Memory.** Every buffer a connection holds is charged to one server-wide budget
//! ([`ServerConfig::max_memory`]); see `runtime/budget.rs` for what it covers and what happens when
//! it runs out.

mod config;
mod conn_id;
mod context;
mod deferred;
mod event_stream;
/// Hooks for the fuzz targets (fuzz/), public with the `fuzzing` feature only: not a stable
/// API. Compiled for the crate's own unit tests too, which replay the harness.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(all(test, not(feature = "fuzzing")))]
mod fuzzing;
mod handle;
mod handler;
pub mod http;
mod limiter;
mod metrics;
mod observer;
mod proxy;
mod pubsub;
mod runtime;
mod session;
mod shared;
mod throttle;
/// TLS configuration (`https://`, `wss://`): see [`tls::TlsConfig`].
#[cfg(feature = "tls")]
pub mod tls;

pub use config::{DeflateMode, ServerConfig};
pub use conn_id::{ConnId, ParseConnIdError};
pub use context::{Context, RequestContext};
pub use deferred::{DecideError, PendingResponse, PendingUpgrade};
pub use event_stream::EventStream;
pub use handle::{PushError, RunningServer, ServerHandle, ServerInfo};
pub use handler::{Accept, Handler, HeaderError, Message, Response, SendStatus};
pub use history::{HistoryId, ParseHistoryIdError, Stamped};
pub use http::OriginPolicy;
pub use observer::{ServerObserver, TlsInfo};
pub use proxy::{Cidr, CidrError};
pub use pubsub::bus;
use pubsub::{fanout, history, replay};
use runtime::{budget, drive, event_loop, outbound, slab, timers};
pub use throttle::{MessageRate, RateLimitAction};

use event_loop::{EventLoop, WAKER};
use log::info;
use mio::{Poll, Waker};
use runtime::inbox::Inbox;
use shared::Core;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// A server under construction: a handler plus a [`ServerConfig`] ([`Server::configure`]
/// changes any of its fields), an optional observer and an optional message bus.
pub struct Server<H: Handler> {
    config: ServerConfig,
    handler: Arc<H>,
    observer: Option<Arc<dyn ServerObserver>>,
    bus: Option<Arc<dyn bus::MessageBus>>,
}

impl<H: Handler> Server<H> {
    /// A server running `handler` with the default [`ServerConfig`].
    pub fn new(handler: H) -> Self {
        Server {
            config: ServerConfig::default(),
            handler: Arc::new(handler),
            observer: None,
            bus: None,
        }
    }

    /// Replaces the whole configuration (e.g. one built once and shared by several servers).
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Changes the configuration in place: every limit and timeout is a field of
    /// [`ServerConfig`], documented there once, with its default.
    ///
    /// ```
    /// # use wsloop::server::{Accept, Handler, RequestContext, Response, Server};
    /// # struct App;
    /// # impl Handler for App {
    /// #     type State = ();
    /// #     fn on_upgrade(&self, _: &wsloop::handshake::Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
    /// #         Ok(Accept::default())
    /// #     }
    /// # }
    /// use std::time::Duration;
    ///
    /// let server = Server::new(App).configure(|c| {
    ///     c.bind = "127.0.0.1:0".parse().unwrap();
    ///     c.threads = 2;
    ///     c.idle_timeout = Duration::from_secs(120);
    ///     c.websocket.max_message_size = 1 << 20;
    /// });
    /// # drop(server);
    /// ```
    pub fn configure(mut self, change: impl FnOnce(&mut ServerConfig)) -> Self {
        change(&mut self.config);
        self
    }

    /// Installs an observer that sees every handshake and frame (see [`ServerObserver`]; what
    /// `wsloop serve --trace` installs is a printer built on this).
    pub fn observer(mut self, observer: Arc<dyn ServerObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Shares topics, broadcasts, `send_to` and topic history with every server on the same
    /// message bus (e.g. [`bus::RedisBus`]; `wsloop serve --redis URL`). Each server must have
    /// its own [`ServerConfig::node_id`] (random by default). See [`bus`] for what is guaranteed.
    pub fn message_bus(mut self, bus: impl bus::MessageBus) -> Self {
        self.bus = Some(Arc::new(bus));
        self
    }

    /// Binds the listener(s) and starts the event loops; returns at once. A bind error names
    /// the address (`cannot listen on 127.0.0.1:3000: Address already in use`).
    pub fn start(self) -> io::Result<RunningServer> {
        let threads = self.config.threads.max(1);
        let reuse_port = self.config.reuse_port;
        let first = bind_listener(self.config.bind, reuse_port)?;
        // With port 0 the kernel picks a port; the other listeners must join that one.
        let local_addr = first.local_addr()?;
        let mut listeners = Vec::with_capacity(threads);
        for _ in 1..threads {
            listeners.push(if reuse_port {
                bind_listener(local_addr, true)?
            } else {
                first.try_clone()?
            });
        }
        listeners.insert(0, first);
        let mut polls = Vec::with_capacity(threads);
        let mut inboxes = Vec::with_capacity(threads);
        for _ in 0..threads {
            let poll = Poll::new()?;
            inboxes.push(Inbox::new(Some(Waker::new(poll.registry(), WAKER)?)));
            polls.push(poll);
        }
        let node = self.config.node_id.unwrap_or_else(random_node_id);
        let core = Arc::new(Core::new(
            self.config,
            node,
            inboxes,
            local_addr,
            self.observer,
            self.bus,
        ));
        let mut handles = Vec::with_capacity(threads);
        for (idx, (poll, listener)) in polls.into_iter().zip(listeners).enumerate() {
            let listener = mio::net::TcpListener::from_std(listener);
            let event_loop = EventLoop::new(idx, poll, listener, core.clone(), self.handler.clone())?;
            let handle = std::thread::Builder::new()
                .name(format!("wsloop-{idx}"))
                .spawn(move || event_loop.run())?;
            handles.push(handle);
        }
        bus::start(&core)?;
        info!(
            "listening on {local_addr} ({threads} event loop{}{})",
            if threads == 1 { "" } else { "s" },
            if reuse_port { ", SO_REUSEPORT" } else { "" }
        );
        Ok(RunningServer {
            handle: ServerHandle { core },
            threads: handles,
        })
    }

    /// Starts the server and serves until SIGINT or SIGTERM, then shuts down gracefully (stop
    /// accepting, Close 1001 to every WebSocket, wait up to the grace period) and returns.
    /// A second signal exits at once.
    pub fn run(self) -> io::Result<()> {
        // Signals first: watching them takes a descriptor, which a flood of connections
        // accepted by the running loops could otherwise take first (EMFILE).
        let signals = ShutdownSignals::install()?;
        self.start()?.run_until(signals)
    }
}

/// SIGINT and SIGTERM, watched: install it before [`Server::start`] (watching takes a file
/// descriptor, and a server already accepting may have used them all), then hand it to
/// [`RunningServer::run_until`].
pub struct ShutdownSignals(signal_hook::iterator::Signals);

impl ShutdownSignals {
    /// Starts watching SIGINT and SIGTERM.
    pub fn install() -> io::Result<ShutdownSignals> {
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
            .map(ShutdownSignals)
    }
}

impl RunningServer {
    /// Serves until SIGINT or SIGTERM, then shuts down gracefully as [`Server::run`] does:
    /// for a caller that wants the bound address first ([`RunningServer::local_addr`], the
    /// real port when bound to port 0), e.g. to print it. It starts watching the signals
    /// only now: a server that may face a flood at once should install [`ShutdownSignals`]
    /// before starting and call [`RunningServer::run_until`].
    pub fn run_until_signal(self) -> io::Result<()> {
        let signals = ShutdownSignals::install()?;
        self.run_until(signals)
    }

    /// Serves until one of `signals` arrives, then shuts down gracefully; a second signal
    /// exits at once.
    pub fn run_until(self, signals: ShutdownSignals) -> io::Result<()> {
        let handle = self.handle();
        let mut signals = signals.0;
        std::thread::Builder::new()
            .name("wsloop-signals".into())
            .spawn(move || {
                let mut seen = 0;
                for signal in signals.forever() {
                    seen += 1;
                    if seen > 1 {
                        std::process::exit(128 + signal);
                    }
                    info!("signal {signal}: shutting down gracefully");
                    handle.shutdown();
                }
            })?;
        self.join()
    }
}

fn random_node_id() -> u32 {
    let mut bytes = [0u8; 4];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Not secret, only distinct between processes: time and pid will do.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        return t ^ std::process::id().rotate_left(16);
    }
    u32::from_ne_bytes(bytes)
}

/// [`bind_listen`], its error naming the address (the OS error alone does not say which).
fn bind_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    bind_listen(addr, reuse_port).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

fn bind_listen(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // SO_REUSEADDR only lets a restarted server bind while old connections sit in TIME_WAIT;
    // it does not let two listeners share the port on Linux. SO_REUSEPORT does, on request.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    // Small messages go out at once (no Nagle delay); accepted sockets inherit this on Linux.
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}
