//! The mio server: HTTP and WebSocket on one port, one event loop per core.
//!
//! A thin shell over the sans-IO core: it accepts TCP connections, parses request heads with
//! [`crate::handshake::RequestParser`], answers plain HTTP through [`Handler::on_request`],
//! upgrades WebSocket requests (RFC 6455 §4.2) and then moves bytes between each socket and its
//! [`crate::protocol::WebSocket`], calling the [`Handler`] for each message.
//!
//! ```no_run
//! use wsloop::server::{Context, Handler, Message, Server};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
//!         ctx.send(message);
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     Server::new(Echo).bind("127.0.0.1:9001".parse().unwrap()).run()
//! }
//! ```
//!
//! **Threads.** Each loop has its own listening socket bound with `SO_REUSEPORT` to the same
//! address, and the kernel spreads new connections across them. The alternative — one acceptor
//! thread handing sockets to the loops through `mio::Waker` — costs a cross-thread handoff and a
//! wakeup per connection, and its acceptor becomes a bottleneck under handshake-heavy load
//! (`benches/load`'s handshake mode: every connection is new). With `SO_REUSEPORT` there is no
//! handoff at all and a single-threaded server is just one loop. The price: the kernel balances
//! by hash, not by load, and another process of the same user could bind the same port too.

mod config;
pub mod demo;
mod event_loop;
mod handler;
mod outbound;

pub use config::ServerConfig;
pub use handler::{Accept, ConnId, Context, Handler, Message, Response, SendStatus, ServerInfo};

use event_loop::{EventLoop, Inbox, Shared};
use log::info;
use mio::{Poll, Waker};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A server under construction: a handler plus a [`ServerConfig`], with a setter for every
/// limit and timeout.
pub struct Server {
    config: ServerConfig,
    handler: Arc<dyn Handler>,
}

impl Server {
    /// A server running `handler` with the default [`ServerConfig`].
    pub fn new<H: Handler>(handler: H) -> Self {
        Server {
            config: ServerConfig::default(),
            handler: Arc::new(handler),
        }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`ServerConfig::bind`].
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.config.bind = addr;
        self
    }

    /// See [`ServerConfig::threads`] (at least 1).
    pub fn threads(mut self, n: usize) -> Self {
        self.config.threads = n.max(1);
        self
    }

    /// See [`ServerConfig::max_connections`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// See [`crate::handshake::RequestLimits::max_header_bytes`].
    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.config.request_limits.max_header_bytes = n;
        self
    }

    /// See [`crate::protocol::Config::max_message_size`].
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.config.websocket.max_message_size = n;
        self
    }

    /// See [`crate::protocol::Config::max_frame_size`].
    pub fn max_frame_size(mut self, n: u64) -> Self {
        self.config.websocket.max_frame_size = n;
        self
    }

    /// See [`ServerConfig::backpressure_high_water`].
    pub fn backpressure_high_water(mut self, n: usize) -> Self {
        self.config.backpressure_high_water = n;
        self
    }

    /// See [`ServerConfig::max_outbound`].
    pub fn max_outbound(mut self, n: usize) -> Self {
        self.config.max_outbound = n;
        self
    }

    /// See [`ServerConfig::handshake_timeout`].
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.config.handshake_timeout = d;
        self
    }

    /// See [`ServerConfig::keepalive_timeout`].
    pub fn keepalive_timeout(mut self, d: Duration) -> Self {
        self.config.keepalive_timeout = d;
        self
    }

    /// See [`ServerConfig::ping_interval`].
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.config.ping_interval = d;
        self
    }

    /// See [`ServerConfig::idle_timeout`].
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.idle_timeout = d;
        self
    }

    /// See [`ServerConfig::close_timeout`].
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.config.close_timeout = d;
        self
    }

    /// See [`ServerConfig::shutdown_grace`].
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.config.shutdown_grace = d;
        self
    }

    /// See [`ServerConfig::trace`].
    pub fn trace(mut self, on: bool) -> Self {
        self.config.trace = on;
        self
    }

    /// Binds the listeners and starts the event loops; returns at once.
    pub fn start(self) -> io::Result<ServerHandle> {
        let threads = self.config.threads.max(1);
        let first = bind_listener(self.config.bind)?;
        // With port 0 the kernel picks a port; the other loops must join that one.
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..threads {
            listeners.push(bind_listener(local_addr)?);
        }
        let mut polls = Vec::with_capacity(threads);
        let mut inboxes = Vec::with_capacity(threads);
        for _ in 0..threads {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), EventLoop::waker_token())?;
            inboxes.push(Inbox {
                queue: Mutex::new(Vec::new()),
                waker,
            });
            polls.push(poll);
        }
        let shared = Arc::new(Shared {
            config: self.config,
            handler: self.handler,
            info: ServerInfo::new(),
            inboxes,
            shutdown: AtomicBool::new(false),
        });
        let mut handles = Vec::with_capacity(threads);
        for (idx, (poll, listener)) in polls.into_iter().zip(listeners).enumerate() {
            let listener = mio::net::TcpListener::from_std(listener);
            let event_loop = EventLoop::new(idx, poll, listener, shared.clone())?;
            let handle = std::thread::Builder::new()
                .name(format!("wsloop-{idx}"))
                .spawn(move || event_loop.run())?;
            handles.push(handle);
        }
        info!(
            "listening on {local_addr} ({threads} event loop{})",
            if threads == 1 { "" } else { "s" }
        );
        Ok(ServerHandle {
            local_addr,
            shared,
            threads: handles,
        })
    }

    /// Starts the server and serves until SIGINT or SIGTERM, then shuts down gracefully (stop
    /// accepting, Close 1001 to every WebSocket, wait up to the grace period) and returns.
    /// A second signal exits at once.
    pub fn run(self) -> io::Result<()> {
        let handle = self.start()?;
        let shared = handle.shared.clone();
        let mut signals =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
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
                    shared.shutdown.store(true, Ordering::Release);
                    shared.wake_all();
                }
            })?;
        handle.join()
    }
}

fn bind_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Small messages go out at once (no Nagle delay); accepted sockets inherit this on Linux.
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// A running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Server-wide figures.
    pub fn info(&self) -> &ServerInfo {
        &self.shared.info
    }

    /// Begins a graceful shutdown (as SIGTERM does); returns at once.
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.wake_all();
    }

    /// Waits for every event loop to finish.
    pub fn join(mut self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                result = Err(io::Error::other("an event loop panicked"));
            }
        }
        info!("server stopped");
        result
    }
}

impl Drop for ServerHandle {
    /// A handle dropped without `join` still stops the server (tests rely on this).
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
        }
    }
}
