//! Every limit and timeout of the server, with its documented default.

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
    /// Event-loop threads, each with its own `SO_REUSEPORT` listener. Default: one per core.
    pub threads: usize,
    /// Most open TCP connections (HTTP and WebSocket together); a connection over it gets
    /// `503 Service Unavailable` and is closed. Default 100,000.
    pub max_connections: usize,
    /// Request head limits: bytes (default 8 KiB) and header count (default 64); over them: 431.
    pub request_limits: RequestLimits,
    /// Frame and message limits of each WebSocket (default 64 MiB each; over them: close 1009).
    pub websocket: protocol::Config,
    /// When a connection's outbound queue passes this many bytes, the server stops reading
    /// from it until the queue drains (so a client that sends but never reads cannot grow
    /// server memory), and `send` reports backpressure. Default 1 MiB.
    pub backpressure_high_water: usize,
    /// A message sent to a connection whose queue is already over this many bytes (a slow
    /// broadcast receiver) is not queued: the connection is closed with 1008 instead.
    /// Default 16 MiB.
    pub max_outbound: usize,
    /// Time allowed from accept to a complete request head (slowloris guard). Default 10 s.
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
    /// Print an annotated trace of every handshake and frame (the `explain` renderer).
    /// Default off.
    pub trace: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: 100_000,
            request_limits: RequestLimits::default(),
            websocket: protocol::Config::default(),
            backpressure_high_water: 1 << 20,
            max_outbound: 16 << 20,
            handshake_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            trace: false,
        }
    }
}
