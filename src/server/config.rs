//! Every limit and timeout of the server, with its default stated once, here: the builder
//! (`Server`), the `wsloop serve` flags and the README all read these values.

use super::http::OriginPolicy;
use crate::handshake::RequestLimits;
use crate::protocol;
use std::net::SocketAddr;
use std::time::Duration;

/// The server's limits and timeouts. `ServerConfig::default()` is what `wsloop serve` runs
/// with; every field has a setter on [`crate::server::Server`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:3000`.
    pub bind: SocketAddr,
    /// Event-loop threads. Default: one per core.
    pub threads: usize,
    /// Bind with `SO_REUSEPORT`: each loop gets its own listener and the kernel spreads
    /// connections over them, and other processes (of the same user) may bind the same port
    /// too — how N processes serve one port. Default false: the port is bound exclusively (a
    /// second server gets "address in use") and the loops share one listener, taking
    /// connections in turn.
    pub reuse_port: bool,
    /// This process's node id, the first part of every connection id (several processes
    /// sharing a message bus must differ). Default: random.
    pub node_id: Option<u32>,
    /// Most open TCP connections (HTTP and WebSocket together); a connection over it gets
    /// `503 Service Unavailable` and is closed. Default 100,000.
    pub max_connections: usize,
    /// Request head limits: bytes (default 8 KiB) and header count (default 64); over them: 431.
    pub request_limits: RequestLimits,
    /// Largest HTTP request body (`Content-Length`); over it: 413 and the connection is
    /// closed without reading the body. Default 1 MiB.
    pub max_body_size: usize,
    /// Frame and message limits of each WebSocket (default 64 MiB each; over them: close 1009).
    pub websocket: protocol::Config,
    /// When a connection's outbound queue passes this many bytes, `send` reports backpressure
    /// and the server stops reading from it (and from publishers feeding it) until the queue
    /// is down to half of this. Default 1 MiB.
    pub backpressure_high_water: usize,
    /// A published message for a connection whose queue is already over this many bytes is
    /// not queued: the connection is closed with 1008 instead. Default 16 MiB.
    pub max_outbound: usize,
    /// How long a subscriber over the high-water mark may hold back the publishers feeding
    /// it. After that it stops pausing them (a client that has stopped reading must not stall
    /// a room); if it still does not read, its queue reaches `max_outbound` and it is closed.
    /// Default 1 s.
    pub fanout_stall_timeout: Duration,
    /// The memory budget: bytes all connections together may hold in buffers (request heads
    /// and bodies, messages being reassembled, input waiting, outbound queues, broadcast
    /// frames). Near it, frames that do not fit are refused (1009); past it, the connections
    /// holding the most are closed (1013). Default 1 GiB.
    pub max_memory: usize,
    /// Time allowed from accept (or the end of the last request) to a complete request
    /// head and body (slowloris guard). Default 10 s.
    pub handshake_timeout: Duration,
    /// Idle time on an HTTP keep-alive connection before it is closed. Default 5 s.
    pub keepalive_timeout: Duration,
    /// A WebSocket that has sent nothing for this long is sent a Ping. Default 30 s.
    pub ping_interval: Duration,
    /// A WebSocket that has sent nothing (not even a Pong) for this long is dropped.
    /// Default 60 s (a Ping went out at 30 s).
    pub idle_timeout: Duration,
    /// After we send a Close frame, how long to wait for the peer's before dropping the TCP
    /// connection. Default 5 s.
    pub close_timeout: Duration,
    /// On shutdown, how long to wait for peers to answer our 1001 Close while queued data is
    /// flushed. Default 5 s.
    pub shutdown_grace: Duration,
    /// Which origins may open WebSockets and use the HTTP routes cross-origin. Default
    /// same-origin (see [`OriginPolicy`]).
    pub origin_policy: OriginPolicy,
    /// Recorded messages kept per topic for replay on reconnect (`publish_recorded`,
    /// `subscribe_since`; in memory, or in a Redis Stream with a message bus, where trimming
    /// is approximate: `MAXLEN ~`). 0 keeps none. Default 100.
    pub history_size: usize,
    /// Recorded messages older than this are not replayed (and a Redis history key expires
    /// after this long without a message). Default 300 s.
    pub history_ttl: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            reuse_port: false,
            node_id: None,
            max_connections: 100_000,
            request_limits: RequestLimits::default(),
            max_body_size: 1 << 20,
            websocket: protocol::Config::default(),
            backpressure_high_water: 1 << 20,
            max_outbound: 16 << 20,
            fanout_stall_timeout: Duration::from_secs(1),
            max_memory: 1 << 30,
            handshake_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            origin_policy: OriginPolicy::SameOrigin,
            history_size: 100,
            history_ttl: Duration::from_secs(300),
        }
    }
}
