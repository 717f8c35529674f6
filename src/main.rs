//! The `wsloop` command: the demo server (`serve`, the default; the app is in `demo/`), a
//! WebSocket client (`client`, in `client_cmd.rs`) and the teaching commands (`explain`).
//! Flags and the demo app only; everything else is the library.

mod client_cmd;
mod demo;

use clap::{Args, Parser, Subcommand};
use demo::DemoApp;
use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use wsloop::explain::{self, ServerTrace, Style};
#[cfg(feature = "redis")]
use wsloop::server::bus::RedisBus;
use wsloop::server::{
    Cidr, DeflateMode, MessageRate, OriginPolicy, RateLimitAction, Server, ServerConfig, ShutdownSignals,
};

/// A WebSocket server written by hand from RFC 6455: HTTP and WebSocket on one port.
///
/// With no command, `wsloop` runs `serve` with the defaults: http://127.0.0.1:3000 serves a
/// chat page at /, /health, /metrics, /learn, and WebSockets at /echo, /chat and /learn.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the demo: / (chat page), /health, /metrics, /learn; WebSockets on /echo, /chat, /learn.
    Serve(ServeArgs),
    /// Connect to a WebSocket server: send stdin lines, print what arrives; or --send, --echo.
    Client(client_cmd::ClientArgs),
    /// Explain the opening handshake or a frame, step by step, with the RFC's rules.
    #[command(subcommand)]
    Explain(ExplainCommand),
}

/// The library's defaults: every flag's default below is read from here, so the binary, the
/// builder and the README (checked by tests/readme.rs) cannot disagree.
fn defaults() -> ServerConfig {
    ServerConfig::default()
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value_t = defaults().bind)]
    bind: SocketAddr,
    /// Event-loop threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Bind with SO_REUSEPORT: several processes may serve the same port (default: the port
    /// is bound exclusively and a second server gets "address in use").
    #[arg(long)]
    reuse_port: bool,
    /// Print an annotated trace of every handshake and frame, per connection (from a separate
    /// thread; if it falls behind, events are dropped and counted).
    #[arg(long)]
    trace: bool,
    /// Most open connections; over it new connections get HTTP 503.
    #[arg(long, default_value_t = defaults().max_connections)]
    max_connections: usize,
    /// Most open connections from one client address (IPv6: its /64); over it a new
    /// connection's request gets HTTP 429 with Retry-After. 0 = no limit (NAT and proxies put
    /// many users behind one address).
    #[arg(long, default_value_t = defaults().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// New connections and upgrades per second from one client address, burst the same; over
    /// it: HTTP 429 with Retry-After. 0 = off.
    #[arg(long, default_value_t = defaults().upgrade_rate_per_ip)]
    upgrade_rate_per_ip: u32,
    /// Data messages per second one WebSocket may send (burst: --message-burst); past it the
    /// connection is not read until its allowance refills (nothing lost), or closed with 1008
    /// with --rate-limit-action close. 0 = off.
    #[arg(long, default_value_t = defaults().message_rate.per_second)]
    message_rate: u32,
    /// Messages a WebSocket may send at once after a quiet spell (0: the --message-rate).
    #[arg(long, default_value_t = defaults().message_rate.burst)]
    message_burst: u32,
    /// Payload bytes per second one WebSocket may send, burst a second's worth (a larger
    /// message waits for a full allowance); past it: as --message-rate. 0 = off.
    #[arg(long, default_value_t = defaults().message_rate.bytes_per_second)]
    message_bytes_rate: u64,
    /// What happens to a WebSocket over --message-rate or --message-bytes-rate: throttle (not
    /// read until its allowance refills) or close (1008).
    #[arg(long, value_name = "ACTION", default_value = "throttle", value_parser = ["throttle", "close"], hide_possible_values = true)]
    rate_limit_action: String,
    /// Believe Forwarded / X-Forwarded-For from peers in this range (repeatable; e.g.
    /// 10.0.0.0/8, ::1/128): their client address (the rightmost not in a trusted range) is
    /// what the per-address limits count and the logs show. Default: none, the headers are
    /// ignored (anyone could write them).
    #[arg(long = "trust-proxy", value_name = "CIDR")]
    trust_proxy: Vec<Cidr>,
    /// Largest request head in bytes (over it: 431).
    #[arg(long, default_value_t = defaults().request_limits.max_header_bytes)]
    max_header_bytes: usize,
    /// Largest HTTP request body in bytes (Content-Length; over it: 413).
    #[arg(long, default_value_t = defaults().max_body_size)]
    max_body_size: usize,
    /// Largest WebSocket message in bytes, all fragments together (over it: close 1009).
    #[arg(long, default_value_t = defaults().websocket.max_message_size)]
    max_message_size: usize,
    /// Largest WebSocket frame payload in bytes (over it: close 1009).
    #[arg(long, default_value_t = defaults().websocket.max_frame_size)]
    max_frame_size: u64,
    /// Memory budget in bytes for everything connections buffer (over it: big frames are
    /// refused with 1009 and the largest holders closed with 1013).
    #[arg(long, default_value_t = defaults().max_memory)]
    max_memory: usize,
    /// Outbound bytes queued for one connection before the server stops reading from it (and
    /// from publishers feeding it).
    #[arg(long, default_value_t = defaults().backpressure_high_water)]
    backpressure_high_water: usize,
    /// Outbound bytes queued for one connection past which published messages close it (1008).
    #[arg(long, default_value_t = defaults().max_outbound)]
    max_outbound: usize,
    /// Seconds a backed-up subscriber may hold back the publishers feeding it.
    #[arg(long, default_value_t = defaults().fanout_stall_timeout.as_secs_f64())]
    fanout_stall_timeout: f64,
    /// Seconds allowed from accept to a complete request head (and body).
    #[arg(long, default_value_t = defaults().handshake_timeout.as_secs_f64())]
    handshake_timeout: f64,
    /// Seconds an idle HTTP keep-alive connection is kept.
    #[arg(long, default_value_t = defaults().keepalive_timeout.as_secs_f64())]
    keepalive_timeout: f64,
    /// Seconds of silence from a WebSocket peer before the server pings it.
    #[arg(long, default_value_t = defaults().ping_interval.as_secs_f64())]
    ping_interval: f64,
    /// Seconds of silence from a WebSocket peer before the server drops it.
    #[arg(long, default_value_t = defaults().idle_timeout.as_secs_f64())]
    idle_timeout: f64,
    /// Seconds to wait for the peer's Close after ours before dropping the connection.
    #[arg(long, default_value_t = defaults().close_timeout.as_secs_f64())]
    close_timeout: f64,
    /// Seconds to wait on shutdown (SIGINT/SIGTERM) for peers to answer our Close 1001.
    #[arg(long, default_value_t = defaults().shutdown_grace.as_secs_f64())]
    shutdown_grace: f64,
    /// permessage-deflate: off, shared (no context takeover; a broadcast is compressed once per
    /// event loop; nothing held while idle) or dedicated (context takeover, per-connection
    /// (de)compressors).
    #[arg(long, value_name = "MODE", default_value_t = defaults().deflate)]
    deflate: DeflateMode,
    /// Window bits (9-15) of the dedicated deflate mode's compressors.
    #[arg(long, default_value_t = 15)]
    deflate_window_bits: u8,
    /// Messages shorter than this many bytes are sent uncompressed even with deflate.
    #[arg(long, default_value_t = defaults().websocket.deflate_threshold)]
    deflate_threshold: usize,
    /// Allow WebSocket upgrades and cross-origin HTTP requests from this Origin (repeatable;
    /// '*' allows any). Default: same-origin only — a browser page must come from this
    /// server (its Origin's host:port equals the Host header); clients that send no Origin
    /// (non-browsers) are always allowed.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// When bound to a loopback address, also answer requests whose Host is NAME (repeatable;
    /// '.example.com' for that name and every name under it, '*' for any). Default: only
    /// loopback names (localhost, *.localhost, 127.0.0.0/8, [::1]); any other Host gets 421
    /// Misdirected Request, so a web page cannot reach this server by DNS rebinding. Not
    /// applied when bound to a non-loopback address.
    #[arg(long = "allowed-host", value_name = "NAME")]
    allowed_host: Vec<String>,
    /// Share rooms, broadcasts, send_to and room history with every wsloop serving with the
    /// same Redis (e.g. redis://127.0.0.1:6379). If Redis is unreachable, at start or later,
    /// messages are still delivered to this process's clients, and the bus reconnects.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Chat messages kept per room for clients that reconnect with ?since=ID (0: none; in
    /// memory, or in a Redis Stream with --redis).
    #[arg(long, default_value_t = defaults().history_size)]
    history_size: usize,
    /// Seconds a chat message stays replayable.
    #[arg(long, default_value_t = defaults().history_ttl.as_secs_f64())]
    history_ttl: f64,
    /// Rooms with history at most (in memory or in Redis); a chat message that would start one
    /// past it is not recorded (a POST to it gets 503 with Retry-After). Rooms idle longer
    /// than --history-ttl do not count.
    #[arg(long, default_value_t = defaults().history_rooms)]
    history_rooms: usize,
    /// Serve https:// and wss:// with this certificate chain (PEM, leaf first); needs
    /// --tls-key. SIGHUP reads both files again (new connections get the new certificate).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

/// `serve`'s flags on their own, to get their defaults when no command is given.
#[derive(Parser)]
struct ServeDefaults {
    #[command(flatten)]
    args: ServeArgs,
}

impl Default for ServeArgs {
    fn default() -> Self {
        ServeDefaults::parse_from(["wsloop"]).args
    }
}

#[derive(Subcommand)]
enum ExplainCommand {
    /// Walk through the opening handshake (RFC 6455 §4): checks, accept computation, response.
    Handshake {
        /// The Sec-WebSocket-Key to use in an example request (default: RFC 6455 §1.3's).
        #[arg(long)]
        key: Option<String>,
        /// A raw HTTP request to check instead, from a file or `-` for stdin. A
        /// Sec-WebSocket-Extensions header is negotiated offer by offer (RFC 7692).
        #[arg(long, value_name = "FILE|-")]
        request: Option<String>,
    },
    /// Decode frames from hex field by field (RFC 6455 §5.2), or build one with --encode.
    Frame {
        /// Frame bytes in hex (spaces allowed); read from stdin when none are given. With
        /// --encode: the payload (for close: CODE [REASON]).
        args: Vec<String>,
        /// Build a frame of this kind instead of decoding: text, binary, ping, pong or close.
        #[arg(long, value_name = "KIND")]
        encode: Option<String>,
        /// The 4-byte masking key in hex (e.g. 37fa213d): build a client (masked) frame.
        #[arg(long, value_name = "KEY")]
        mask: Option<String>,
        /// Read (or build) frames as endpoints that agreed permessage-deflate (RFC 7692): RSV1
        /// marks a compressed message, shown as DEFLATE bytes, the appended 00 00 ff ff and the
        /// inflated payload.
        #[arg(long)]
        deflate: bool,
    },
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut config = defaults();
    config.bind = args.bind;
    if let Some(n) = args.threads {
        config.threads = n.max(1);
    }
    config.reuse_port = args.reuse_port;
    config.max_connections = args.max_connections;
    config.max_connections_per_ip = args.max_connections_per_ip;
    config.upgrade_rate_per_ip = args.upgrade_rate_per_ip;
    config.message_rate = MessageRate::per_second(args.message_rate)
        .with_burst(args.message_burst)
        .with_bytes_per_second(args.message_bytes_rate)
        .with_action(match args.rate_limit_action.as_str() {
            "close" => RateLimitAction::Close,
            _ => RateLimitAction::Throttle,
        });
    config.trusted_proxies = args.trust_proxy;
    config.request_limits.max_header_bytes = args.max_header_bytes;
    config.max_body_size = args.max_body_size;
    config.websocket.max_message_size = args.max_message_size;
    config.websocket.max_frame_size = args.max_frame_size;
    config.max_memory = args.max_memory;
    config.backpressure_high_water = args.backpressure_high_water;
    config.max_outbound = args.max_outbound;
    config.fanout_stall_timeout = secs(args.fanout_stall_timeout);
    config.handshake_timeout = secs(args.handshake_timeout);
    config.keepalive_timeout = secs(args.keepalive_timeout);
    config.ping_interval = secs(args.ping_interval);
    config.idle_timeout = secs(args.idle_timeout);
    config.close_timeout = secs(args.close_timeout);
    config.shutdown_grace = secs(args.shutdown_grace);
    config.origin_policy = OriginPolicy::from_list(args.allow_origin);
    config.allowed_hosts = args.allowed_host;
    config.deflate = match args.deflate {
        DeflateMode::Dedicated { .. } => DeflateMode::Dedicated {
            window_bits: args.deflate_window_bits.clamp(9, 15),
        },
        mode => mode,
    };
    config.websocket.deflate_threshold = args.deflate_threshold;
    config.history_size = args.history_size;
    config.history_ttl = secs(args.history_ttl);
    config.history_rooms = args.history_rooms;
    let tls = args.tls_cert.is_some();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        #[cfg(feature = "tls")]
        match wsloop::server::tls::TlsConfig::from_pem_files(cert, key) {
            Ok(t) => config.tls = Some(t),
            Err(e) => {
                eprintln!("wsloop: {e}");
                return ExitCode::FAILURE;
            }
        }
        // As with --redis: the flags stay in every build, refused without the feature.
        #[cfg(not(feature = "tls"))]
        {
            eprintln!(
                "wsloop: --tls-cert {} --tls-key {}: this wsloop was built without the `tls` feature",
                cert.display(),
                key.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let mut server = Server::new(DemoApp::new()).config(config);
    if let Some(url) = &args.redis {
        #[cfg(feature = "redis")]
        match RedisBus::new(url) {
            Ok(bus) => server = server.message_bus(bus),
            Err(e) => {
                eprintln!("wsloop: --redis {url}: {e}");
                return ExitCode::FAILURE;
            }
        }
        // The flag stays in every build, so --help and the README agree; without the engine
        // it is refused rather than ignored (one process would silently not share rooms).
        #[cfg(not(feature = "redis"))]
        {
            eprintln!("wsloop: --redis {url}: this wsloop was built without the `redis` feature");
            return ExitCode::FAILURE;
        }
    }
    if args.trace {
        match ServerTrace::stdout(4096) {
            Ok(trace) => server = server.observer(Arc::new(trace)),
            Err(e) => {
                eprintln!("wsloop: cannot start the trace printer: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // The banner comes after the bind, with the address bound (the real port for port 0),
    // so it never announces a server that is not there.
    // Watching the signals takes a descriptor: before the loops accept anything.
    let signals = match ShutdownSignals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("wsloop: cannot watch SIGINT/SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SIGHUP reloads the certificate; watched before the start like the others (and so that
    // its default action, ending the process, never applies to a TLS server).
    #[cfg(feature = "tls")]
    let reload = match tls.then(|| signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            eprintln!("wsloop: cannot watch SIGHUP: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match server.start() {
        Ok(running) => running,
        Err(e) => {
            eprintln!("wsloop: {e}");
            return ExitCode::FAILURE;
        }
    };
    #[cfg(feature = "tls")]
    if let Some(mut signals) = reload {
        let handle = running.handle();
        let spawned = std::thread::Builder::new().name("wsloop-sighup".into()).spawn(move || {
            for _ in signals.forever() {
                match handle.reload_tls() {
                    Ok(()) => log::info!("SIGHUP: TLS certificate and key read again; new connections get them"),
                    Err(e) => log::error!("SIGHUP: TLS reload failed, keeping the current certificate: {e}"),
                }
            }
        });
        if let Err(e) = spawned {
            eprintln!("wsloop: cannot watch SIGHUP: {e}");
            return ExitCode::FAILURE;
        }
    }
    let (http, ws) = if tls { ("https", "wss") } else { ("http", "ws") };
    println!(
        "wsloop serving on {http}://{} (chat page at /, /health, /metrics, /learn; WebSockets ({ws}://) at /echo, /chat, /learn)",
        running.local_addr()
    );
    match running.run_until(signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsloop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_input(source: &str) -> Result<Vec<u8>, String> {
    if source == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("reading stdin: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(source).map_err(|e| format!("reading {source}: {e}"))
    }
}

fn explain_cmd(cmd: ExplainCommand) -> Result<String, String> {
    let style = Style::detect();
    match cmd {
        ExplainCommand::Handshake { key, request } => {
            let bytes = request.as_deref().map(read_input).transpose()?;
            explain::explain_handshake(key.as_deref(), bytes.as_deref(), style)
        }
        ExplainCommand::Frame {
            args,
            encode,
            mask,
            deflate,
        } => match encode {
            Some(kind) if deflate => explain::explain_encode_deflate(&kind, &args.join(" "), mask.as_deref(), style),
            Some(kind) => explain::explain_encode(&kind, &args.join(" "), mask.as_deref(), style),
            None => {
                let hex = if args.is_empty() {
                    String::from_utf8_lossy(&read_input("-")?).into_owned()
                } else {
                    args.join(" ")
                };
                if deflate {
                    explain::explain_frames_deflate(&hex, style)
                } else {
                    explain::explain_frames(&hex, style)
                }
            }
        },
    }
}

fn main() -> ExitCode {
    let _ = wsloop::logging::init();
    let cli = Cli::parse();
    match cli.command {
        None => serve(ServeArgs::default()),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Client(args)) => client_cmd::run(args),
        Some(Command::Explain(cmd)) => match explain_cmd(cmd) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wsloop explain: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
