//! Every limit and timeout of the server, with its default stated once, here: the builder
//! (`Server`), the `wsloop serve` flags and the README all read these values.

use super::http::OriginPolicy;
use crate::handshake::deflate::DeflatePolicy;
use crate::handshake::RequestLimits;
use crate::protocol;
use std::net::SocketAddr;
use std::time::Duration;

/// The server's limits and timeouts. `ServerConfig::default()` is what `wsloop serve` runs
/// with; [`Server::configure`](crate::server::Server::configure) changes any field (the type is
/// `non_exhaustive`, so it is built from its default, never as a literal).
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
    /// Most open connections from one client address (an IPv6 address counts by its /64); a
    /// connection over it has its request answered `429 Too Many Requests` with
    /// `Retry-After` and is closed. 0 (the default) is no limit: behind NAT or a proxy many
    /// users share one address.
    pub max_connections_per_ip: usize,
    /// New connections (and upgrades or event streams on connections that already made a
    /// request) per second from one client address, burst the same; over it: `429` with
    /// `Retry-After` (seconds until the limiter admits one again). 0 (the default) is off. With either per-address
    /// limit on, the addresses tracked at once are bounded (`max_connections` + 65,536, charged
    /// to the memory budget); when that table is full of addresses in use, a new address is
    /// refused `503` with `Retry-After: 1`.
    pub upgrade_rate_per_ip: u32,
    /// What one WebSocket may send: data messages per second (with a burst) and payload bytes
    /// per second; past it the connection is not read until its allowance refills (nothing
    /// lost) or, with [`RateLimitAction::Close`](super::RateLimitAction::Close), closed with
    /// 1008. An upgrade may set a connection's own ([`Accept::message_rate`](super::Accept::message_rate)).
    /// Default off: what rate is abusive depends on the application.
    pub message_rate: super::MessageRate,
    /// Peers whose forwarding headers are believed (`--trust-proxy`, repeatable): for a
    /// connection from one of these ranges the client's address is read from `Forwarded`
    /// (RFC 7239) or `X-Forwarded-For` — the rightmost address not in a trusted range — and
    /// the per-address limits, the logs and [`Context::client_addr`](super::Context::client_addr)
    /// use it; the proxy's own address is not limited. From any other peer these headers are
    /// ignored. Default none: believing them from anyone would let every client pick its
    /// address.
    pub trusted_proxies: Vec<super::Cidr>,
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
    /// Default 60 s (a Ping went out at 30 s). This and the other timeouts here count at most
    /// 24.8 days: a connection keeps its deadlines in 32 bits.
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
    /// Names the server answers to besides loopback ones, when bound to a loopback address
    /// (`--allowed-host`, repeatable): a request whose `Host` is not `localhost`,
    /// `*.localhost`, `127.0.0.0/8` or `[::1]` (with or without a port) nor one of these is
    /// refused `421 Misdirected Request` before any route or upgrade — the defence against
    /// DNS rebinding (see `http/host.rs`). `.example.com` admits that name and every name under it;
    /// `*` admits any `Host`. Not applied when bound to a non-loopback address. Default none.
    pub allowed_hosts: Vec<String>,
    /// permessage-deflate (RFC 7692): off, shared or dedicated; see [`DeflateMode`]. The
    /// threshold and level are in [`ServerConfig::websocket`]. Default shared.
    pub deflate: DeflateMode,
    /// Recorded messages kept per topic for replay on reconnect (`publish_recorded`,
    /// `subscribe_since`; in memory, or in a Redis Stream with a message bus, where trimming
    /// is approximate: `MAXLEN ~`). 0 keeps none. Default 100.
    pub history_size: usize,
    /// Recorded messages older than this are not replayed (and a Redis history key expires
    /// after this long without a message). Default 300 s.
    pub history_ttl: Duration,
    /// Rooms (topics) with recorded history at most, so a flood of distinct room names
    /// cannot grow memory (or Redis) without bound. A room whose last recorded message is
    /// older than `history_ttl` no longer counts (in memory a timer removes it; in Redis its
    /// key expires). A recorded message that would start a room past the limit is refused:
    /// `RequestContext::publish_recorded` returns `PushError::OverBudget` (the demo's POST
    /// answers 503), a WebSocket's is delivered live without an id. In memory the rooms are
    /// also bounded by bytes (an eighth of `max_memory`, charged to it, about 400 bytes per
    /// room plus its messages): past that the rooms written to longest ago are dropped. With
    /// Redis the refusal happens in Redis (the message is published live, not recorded) and
    /// is counted in `wsloop_bus_history_refused_total`. Default 10,000.
    pub history_rooms: usize,
    /// Serve `https://` and `wss://` on the port instead of plain HTTP: every route as over
    /// TCP, the TLS handshake counted against `handshake_timeout`. Build it from PEM files
    /// ([`TlsConfig::from_pem_files`](super::tls::TlsConfig::from_pem_files); `wsloop serve
    /// --tls-cert/--tls-key`) or bring a `rustls::ServerConfig` ([`TlsConfig::new`](super::tls::TlsConfig::new)).
    /// Default `None`: plain TCP.
    #[cfg(feature = "tls")]
    pub tls: Option<super::tls::TlsConfig>,
}

/// How the server answers permessage-deflate offers (RFC 7692), and what each connection costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeflateMode {
    /// Decline every offer: messages go uncompressed. No CPU or memory spent on compression.
    Off,
    /// Accept with `server_no_context_takeover` and `client_no_context_takeover`: every
    /// message is compressed on its own, so (de)compressors are borrowed per message from a
    /// small per-thread pool — an idle connection holds no compression state — and a published
    /// message is compressed **once per event loop** and the same compressed frame queued for
    /// every subscriber. Ratios are lower than with context takeover on small similar messages.
    /// The default: browsers always offer deflate, and this mode costs nothing while idle.
    Shared,
    /// Accept with context takeover both ways: a compressor and an inflater per connection for
    /// its lifetime (about 380 KB + 48 KB at 15 window bits, allocated on the first compressed
    /// message), the best ratio on streams of similar messages; each subscriber compresses
    /// its own copy of a broadcast.
    Dedicated {
        /// The LZ77 window, 9..=15 bits, both directions.
        window_bits: u8,
    },
}

impl DeflateMode {
    /// The negotiation policy of this mode (`None` when off).
    pub fn policy(self) -> Option<DeflatePolicy> {
        match self {
            DeflateMode::Off => None,
            DeflateMode::Shared => Some(DeflatePolicy::default()),
            DeflateMode::Dedicated { window_bits } => Some(DeflatePolicy::context_takeover(window_bits)),
        }
    }
}

impl std::str::FromStr for DeflateMode {
    type Err = String;

    /// `off`, `shared` or `dedicated` (15 window bits); the window of the dedicated mode is set
    /// separately.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(DeflateMode::Off),
            "shared" => Ok(DeflateMode::Shared),
            "dedicated" => Ok(DeflateMode::Dedicated { window_bits: 15 }),
            _ => Err(format!("{s:?}: expected off, shared or dedicated")),
        }
    }
}

impl std::fmt::Display for DeflateMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeflateMode::Off => "off",
            DeflateMode::Shared => "shared",
            DeflateMode::Dedicated { .. } => "dedicated",
        })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            reuse_port: false,
            node_id: None,
            max_connections: 100_000,
            max_connections_per_ip: 0,
            upgrade_rate_per_ip: 0,
            message_rate: super::MessageRate::OFF,
            trusted_proxies: Vec::new(),
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
            allowed_hosts: Vec::new(),
            deflate: DeflateMode::Shared,
            history_size: 100,
            history_ttl: Duration::from_secs(300),
            history_rooms: 10_000,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}
