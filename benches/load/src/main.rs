//! wsloop-load: a WebSocket load generator on a mio event loop, with its own
//! minimal RFC 6455 client. See `wsloop-load help`.
//!
//! Every mode prints human-readable lines and then one machine-readable line
//! `RESULT {json}`. Any verification failure, unexpected close or timeout
//! ends the run with a message on stderr and exit status 1.

mod args;
mod broadcast;
mod conn;
mod deflate;
mod echo;
mod error;
mod handshake;
mod idle;
mod net;
mod payload;
mod report;
mod sse;
mod stats;
mod tls;
mod ws;

use std::process::ExitCode;

use args::Args;
use error::Result;
use net::Target;
use report::Report;

const USAGE: &str = "\
wsloop-load: WebSocket load generator (loopback targets only)

USAGE:
  wsloop-load echo --url ws[s]://127.0.0.1:PORT/echo -c N -d D -s S -t SECS
                   [--binary] [--json] [--deflate] [--warmup SECS] [--server-pid PID]
      N connections, D messages of S bytes in flight on each, for SECS
      seconds; every echo is verified byte for byte. Reports msgs/s, MB/s,
      p50/p99 round trip and, with --server-pid, msgs per server CPU-second.
  wsloop-load handshake --url ws://... -w WORKERS -t SECS [--warmup SECS]
                   [--server-pid PID]
      WORKERS concurrent loops of connect, upgrade, close handshake.
  wsloop-load idle --url ws://... -c N --server-pid PID [--hold SECS]
                   [--deflate] [--messages K [-s S] [--json]]
      Server RSS per open idle connection (VmRSS after - before) / N. With
      --messages, each connection first echoes K messages of S bytes
      (verified), then idles.
  wsloop-load broadcast --url ws://127.0.0.1:PORT/chat -m RECEIVERS -s S
                   -t SECS [--rate R] [--window K] [--binary] [--json] [--deflate]
                   [--warmup SECS] [--server-pid PID]
      RECEIVERS connections plus one sender; at most K messages outstanding.
      Messages without the #WSLB marker (join/leave notices) are ignored.
  wsloop-load room --url ws://127.0.0.1:PORT/chat?room=R -m RECEIVERS -s S
                   -t SECS [--events /rooms/R/events] [--window K]
                   [--warmup SECS] [--server-pid PID]
      A demo chat room: one WebSocket sender and RECEIVERS that listen as
      Server-Sent Events on --events (GET, Accept: text/event-stream) or,
      without it, as /chat WebSockets of the same room. Each receiver must
      get every message (m<seq> in the chat JSON) in order.
  wsloop-load sse-idle --url ws://127.0.0.1:PORT/ --events /rooms/R/events
                   -c N --server-pid PID [--hold SECS]
      Server RSS per open idle event stream (after - before) / N.

COMMON OPTIONS:
  --tls                   TLS (as a wss:// URL does): rustls with the ring
                          provider, driven from the same mio loop; full
                          handshakes (no session resumption), ALPN http/1.1
  --ca FILE               with TLS: verify the server against the CA
                          certificate(s) in FILE (PEM)
  --insecure              with TLS: accept ANY certificate for any name (it
                          still checks handshake signatures). For benchmarks
                          against a throwaway certificate only
  --connect-timeout SECS  connect + upgrade limit per connection (default 10)
  --stall SECS            fail when nothing progresses this long (default 10)
  --json                  JSON-like chat text as payload filler (default:
                          random printable bytes, which barely compress)
  --deflate               offer permessage-deflate (RFC 7692) as browsers do
                          and fail if the server declines; every message is
                          then sent compressed, what the server sends
                          compressed is inflated before it is verified

Defaults: -c 1 (idle: 1000), -d 1, -s 32 (idle: 1024), -t 5, -w 32, -m 100,
--window 8, --warmup 1, --hold 3, --messages 0.";

fn main() -> ExitCode {
    match run() {
        Ok(Some(report)) => {
            println!("RESULT {}", report.to_json());
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsloop-load: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<Option<Report>> {
    let mut a = Args::parse(std::env::args().skip(1))?;
    if matches!(a.mode.as_str(), "help" | "-h" | "--help") || a.switch(&["-h", "--help"]) {
        println!("{USAGE}");
        return Ok(None);
    }
    let url: String = a.required(&["--url", "-u"])?;
    let mut target = Target::parse(&url)?;
    // TLS: a wss:// URL or --tls (same thing for a ws:// URL), verified with
    // --ca FILE, or --insecure (accept any certificate; benchmarks only).
    let tls = a.switch(&["--tls"]) || target.wss;
    let ca: Option<std::path::PathBuf> = a.opt(&["--ca"])?;
    let insecure = a.switch(&["--insecure"]);
    if tls {
        let trust = match (ca, insecure) {
            (Some(path), false) => tls::Trust::Ca(path),
            (None, true) => tls::Trust::Insecure,
            (Some(_), true) => bail!("give either --ca FILE or --insecure, not both"),
            (None, false) => bail!("TLS needs --ca FILE (the CA that signed the server's certificate) or --insecure"),
        };
        target.tls = Some(tls::TlsClient::new(&target.host, &trust)?);
    } else if ca.is_some() || insecure {
        bail!("--ca and --insecure need --tls or a wss:// URL");
    }
    let connect_timeout = a.secs(&["--connect-timeout"], 10.0)?;
    let stall = a.secs(&["--stall"], 10.0)?;
    let server_pid: Option<u32> = a.opt(&["--server-pid", "-p"])?;
    let mut report = Report::default();
    report.str("url", &url);
    report.bool("tls", tls);
    report.opt_int("server_pid", server_pid.map(u64::from));

    match a.mode.clone().as_str() {
        "echo" => {
            let o = echo::EchoOpts {
                target,
                conns: a.get(&["-c", "--connections"], 1)?,
                depth: a.get(&["-d", "--depth"], 1)?,
                size: a.get(&["-s", "--size"], 32)?,
                secs: a.secs(&["-t", "--time"], 5.0)?,
                warmup: a.secs(&["--warmup"], 1.0)?,
                binary: a.switch(&["--binary"]),
                json: a.switch(&["--json"]),
                deflate: a.switch(&["--deflate"]),
                server_pid,
                connect_timeout,
                stall,
            };
            a.finish()?;
            echo::run(&o, &mut report)?;
        }
        "handshake" => {
            let o = handshake::HandshakeOpts {
                target,
                workers: a.get(&["-w", "--workers"], 32)?,
                secs: a.secs(&["-t", "--time"], 5.0)?,
                warmup: a.secs(&["--warmup"], 1.0)?,
                server_pid,
                timeout: connect_timeout.max(stall),
            };
            a.finish()?;
            handshake::run(&o, &mut report)?;
        }
        "idle" => {
            let Some(pid) = server_pid else {
                bail!("idle needs --server-pid: the server's RSS is what it measures");
            };
            let o = idle::IdleOpts {
                target,
                conns: a.get(&["-c", "--connections"], 1000)?,
                server_pid: pid,
                hold: a.secs(&["--hold"], 3.0)?,
                connect_timeout,
                deflate: a.switch(&["--deflate"]),
                messages: a.get(&["--messages"], 0)?,
                size: a.get(&["-s", "--size"], 1024)?,
                json: a.switch(&["--json"]),
            };
            a.finish()?;
            idle::run(&o, &mut report)?;
        }
        "broadcast" => {
            let o = broadcast::BroadcastOpts {
                target,
                receivers: a.get(&["-m", "--receivers"], 100)?,
                size: a.get(&["-s", "--size"], 32)?,
                secs: a.secs(&["-t", "--time"], 5.0)?,
                warmup: a.secs(&["--warmup"], 1.0)?,
                rate: a.opt(&["--rate", "-r"])?,
                window: a.get(&["--window", "-k"], 8)?,
                binary: a.switch(&["--binary"]),
                json: a.switch(&["--json"]),
                deflate: a.switch(&["--deflate"]),
                server_pid,
                connect_timeout,
                stall,
            };
            a.finish()?;
            broadcast::run(&o, &mut report)?;
        }
        "room" => {
            let o = sse::RoomOpts {
                target,
                events_path: a.opt(&["--events"])?,
                receivers: a.get(&["-m", "--receivers"], 100)?,
                size: a.get(&["-s", "--size"], 32)?,
                secs: a.secs(&["-t", "--time"], 5.0)?,
                warmup: a.secs(&["--warmup"], 1.0)?,
                window: a.get(&["--window", "-k"], 8)?,
                server_pid,
                connect_timeout,
                stall,
            };
            a.finish()?;
            sse::run_room(&o, &mut report)?;
        }
        "sse-idle" => {
            let Some(pid) = server_pid else {
                bail!("sse-idle needs --server-pid: the server's RSS is what it measures");
            };
            let o = sse::SseIdleOpts {
                target,
                events_path: a.required(&["--events"])?,
                conns: a.get(&["-c", "--connections"], 1000)?,
                server_pid: pid,
                hold: a.secs(&["--hold"], 3.0)?,
                connect_timeout,
            };
            a.finish()?;
            sse::run_idle(&o, &mut report)?;
        }
        other => bail!("unknown mode {other:?} (see `wsloop-load help`)"),
    }
    Ok(Some(report))
}
