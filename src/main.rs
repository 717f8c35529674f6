//! The `wsloop` command: the demo server (`serve`, the default) and the teaching commands
//! (`explain`). Flags only; everything else is the library.

use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use wsloop::explain::{self, Style};
use wsloop::server::{demo::DemoApp, Server, ServerConfig};

/// A WebSocket server written by hand from RFC 6455: HTTP and WebSocket on one port.
///
/// With no command, `wsloop` runs `serve` with the defaults: http://127.0.0.1:3000 serves a
/// chat page at /, /health, /learn, and WebSockets at /echo, /chat and /learn.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the demo: / (chat page), /health, /learn; WebSockets on /echo, /chat, /learn.
    Serve(ServeArgs),
    /// Explain the opening handshake or a frame, step by step, with the RFC's rules.
    #[command(subcommand)]
    Explain(ExplainCommand),
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    bind: SocketAddr,
    /// Event-loop threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print an annotated trace of every handshake and frame, per connection.
    #[arg(long)]
    trace: bool,
    /// Most open connections; over it new connections get HTTP 503.
    #[arg(long, default_value_t = 100_000)]
    max_connections: usize,
    /// Largest request head in bytes (over it: 431).
    #[arg(long, default_value_t = 8192)]
    max_header_bytes: usize,
    /// Largest WebSocket message in bytes, all fragments together (over it: close 1009).
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
    /// Largest WebSocket frame payload in bytes (over it: close 1009).
    #[arg(long, default_value_t = 64 << 20)]
    max_frame_size: u64,
    /// Outbound bytes queued for one connection before the server stops reading from it.
    #[arg(long, default_value_t = 1 << 20)]
    backpressure_high_water: usize,
    /// Outbound bytes queued for one connection past which broadcasts close it (1008).
    #[arg(long, default_value_t = 16 << 20)]
    max_outbound: usize,
    /// Seconds allowed from accept to a complete request head.
    #[arg(long, default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Seconds an idle HTTP keep-alive connection is kept.
    #[arg(long, default_value_t = 5.0)]
    keepalive_timeout: f64,
    /// Seconds of silence from a WebSocket peer before the server pings it.
    #[arg(long, default_value_t = 30.0)]
    ping_interval: f64,
    /// Seconds of silence from a WebSocket peer before the server drops it.
    #[arg(long, default_value_t = 60.0)]
    idle_timeout: f64,
    /// Seconds to wait for the peer's Close after ours before dropping the connection.
    #[arg(long, default_value_t = 5.0)]
    close_timeout: f64,
    /// Seconds to wait on shutdown (SIGINT/SIGTERM) for peers to answer our Close 1001.
    #[arg(long, default_value_t = 5.0)]
    shutdown_grace: f64,
    /// Accept WebSocket upgrades only from this Origin (repeatable; default: any).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origin: Vec<String>,
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
    let mut config = ServerConfig::default();
    config.bind = args.bind;
    if let Some(n) = args.threads {
        config.threads = n.max(1);
    }
    config.trace = args.trace;
    config.max_connections = args.max_connections;
    config.request_limits.max_header_bytes = args.max_header_bytes;
    config.websocket.max_message_size = args.max_message_size;
    config.websocket.max_frame_size = args.max_frame_size;
    config.backpressure_high_water = args.backpressure_high_water;
    config.max_outbound = args.max_outbound;
    config.handshake_timeout = secs(args.handshake_timeout);
    config.keepalive_timeout = secs(args.keepalive_timeout);
    config.ping_interval = secs(args.ping_interval);
    config.idle_timeout = secs(args.idle_timeout);
    config.close_timeout = secs(args.close_timeout);
    config.shutdown_grace = secs(args.shutdown_grace);
    let app = DemoApp::new().with_allowed_origins(args.allow_origin);
    println!(
        "wsloop serving on http://{} (chat page at /, /health, /learn; WebSockets at /echo, /chat, /learn)",
        args.bind
    );
    match Server::new(app).config(config).run() {
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
