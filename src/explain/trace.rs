//! The `--trace` printers: observers that render what crosses the wire with this module's
//! renderer, [`ServerTrace`] for `wsloop serve --trace` and [`ClientTrace`] for
//! `wsloop client --trace`.
//!
//! They live here, not in the runtime, so the dependency points one way: the server and the
//! client only hand raw bytes to an observer ([`ServerObserver`](crate::server::ServerObserver),
//! [`ClientObserver`](crate::client::ClientObserver): their own traits, in the core's words from
//! [`crate::observe`]); the teaching module implements those traits.
//!
//! [`ServerTrace`] copies the bytes into a bounded queue and a printer thread renders them.
//! When the printer falls behind (a slow terminal, a full pipe), events are dropped and
//! counted, never waited for: tracing cannot block the server's event loop.
//!
//! [`ClientTrace`] explains the opening handshake and every frame as the client sends and
//! receives them, so a learner sees the client mask each frame with a fresh key
//! (RFC 6455 §5.3) and the server's frames arrive unmasked (§5.1).

use super::Style;
use crate::client;
use crate::deflate::DeflateParams;
use crate::error::ProtocolError;
use crate::handshake::{accept_key, Request};
use crate::observe::Direction;
use crate::protocol::Role;
use crate::server::{self, ConnId};
use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------------------------------------
// `wsloop serve --trace`

enum TraceEvent {
    Handshake {
        id: ConnId,
        peer: SocketAddr,
        request: Box<Request>,
        response: Vec<u8>,
    },
    Frames {
        id: ConnId,
        peer: SocketAddr,
        direction: Direction,
        wire: Vec<u8>,
    },
    Error {
        id: ConnId,
        peer: SocketAddr,
        text: String,
    },
    Tls {
        id: ConnId,
        peer: SocketAddr,
        info: server::TlsInfo,
    },
}

/// Bytes of one frames event copied into the queue at most; the rest is summarised.
const MAX_TRACE_BYTES: usize = 64 * 1024;

/// Prints an annotated trace of every handshake and frame to standard output, from its own
/// thread, through a queue of bounded length. See the module docs.
pub struct ServerTrace {
    tx: SyncSender<TraceEvent>,
    dropped: Arc<AtomicU64>,
}

impl ServerTrace {
    /// Starts the printer thread with room for `capacity` events in the queue.
    pub fn stdout(capacity: usize) -> std::io::Result<ServerTrace> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let seen = dropped.clone();
        std::thread::Builder::new()
            .name("wsloop-trace".into())
            .spawn(move || print_events(rx, &seen))?;
        Ok(ServerTrace { tx, dropped })
    }

    /// Events dropped because the printer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, event: TraceEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl server::ServerObserver for ServerTrace {
    fn handshake(&self, id: ConnId, peer: SocketAddr, request: &Request, response: &[u8]) {
        self.send(TraceEvent::Handshake {
            id,
            peer,
            request: Box::new(request.clone()),
            response: response.to_vec(),
        });
    }

    fn frames(&self, id: ConnId, peer: SocketAddr, direction: Direction, wire: &[u8]) {
        let wire = wire.get(..MAX_TRACE_BYTES).unwrap_or(wire).to_vec();
        self.send(TraceEvent::Frames {
            id,
            peer,
            direction,
            wire,
        });
    }

    fn tls_handshake(&self, id: ConnId, peer: SocketAddr, info: &server::TlsInfo) {
        self.send(TraceEvent::Tls {
            id,
            peer,
            info: info.clone(),
        });
    }

    fn protocol_error(&self, id: ConnId, peer: SocketAddr, error: &ProtocolError) {
        self.send(TraceEvent::Error {
            id,
            peer,
            text: format!("!! {error}"),
        });
    }
}

fn print_events(rx: Receiver<TraceEvent>, dropped: &AtomicU64) {
    let style = Style::detect();
    let mut reported = 0;
    for event in rx {
        let (id, peer, text) = match event {
            TraceEvent::Handshake {
                id,
                peer,
                request,
                response,
            } => (id, peer, super::trace_handshake(&request, &response, style)),
            TraceEvent::Frames {
                id,
                peer,
                direction,
                wire,
            } => (id, peer, super::trace_frames(direction, &wire, style)),
            TraceEvent::Error { id, peer, text } => (id, peer, text),
            TraceEvent::Tls { id, peer, info } => (id, peer, trace_tls(&info)),
        };
        let mut out = std::io::stdout().lock();
        let now = dropped.load(Ordering::Relaxed);
        if now > reported {
            let _ = writeln!(
                out,
                "[trace] {} events dropped: the printer fell behind",
                now - reported
            );
            reported = now;
        }
        for line in text.lines() {
            let _ = writeln!(out, "[#{id} {peer}] {line}");
        }
        let _ = out.flush();
    }
}

/// The outcome of a server's TLS handshake, shown before the HTTP request it carries.
fn trace_tls(info: &server::TlsInfo) -> String {
    format!(
        "TLS handshake done: {} {}, ALPN {}, SNI {}\n",
        info.version,
        info.cipher_suite,
        info.alpn.as_deref().unwrap_or("(none offered)"),
        info.sni.as_deref().unwrap_or("(none sent)")
    )
}

// ---------------------------------------------------------------------------------------------
// `wsloop client --trace`

/// Prints a trace of one client connection to a writer (standard output for the CLI), line by
/// line as things happen, from whichever thread read or wrote them.
pub struct ClientTrace {
    out: Mutex<Box<dyn Write + Send>>,
    style: Style,
    deflate: AtomicBool,
}

impl ClientTrace {
    /// Traces to `out`.
    pub fn new(out: impl Write + Send + 'static, style: Style) -> ClientTrace {
        ClientTrace {
            out: Mutex::new(Box::new(out)),
            style,
            deflate: AtomicBool::new(false),
        }
    }

    /// Traces to standard output, in colour on a terminal ([`Style::detect`]).
    pub fn stdout() -> ClientTrace {
        ClientTrace::new(std::io::stdout(), Style::detect())
    }

    fn print(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Tracing must never fail the connection: a closed stdout only loses the trace.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

impl client::ClientObserver for ClientTrace {
    /// The TLS handshake's outcome, before the HTTP handshake it carries (RFC 6455 §4.1 item 5).
    fn tls(&self, info: &client::TlsInfo) {
        let style = self.style;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== TLS: {} {}, cipher suite {}, ALPN {} (RFC 7301), SNI {}",
            info.version,
            style.ok("handshake done"),
            info.cipher_suite,
            info.alpn.as_deref().unwrap_or("none agreed"),
            match &info.sni {
                Some(name) => format!("{name:?} (RFC 6066 §3)"),
                None => "not sent: the host is an IP address (RFC 6066 §3 allows names only)".into(),
            },
        );
        let _ = write!(
            s,
            "   the server sent {} certificate{}",
            info.chain_len,
            if info.chain_len == 1 { "" } else { "s" }
        );
        match &info.certificate {
            Some(c) => {
                let _ = writeln!(s, "; its own:");
                let _ = writeln!(s, "   subject    {}", c.subject);
                let _ = writeln!(s, "   issuer     {}", c.issuer);
                let _ = writeln!(s, "   valid      {} to {}", c.not_before, c.not_after);
                if !c.alt_names.is_empty() {
                    let _ = writeln!(
                        s,
                        "   names      {} (subjectAltName, RFC 5280 §4.2.1.6)",
                        c.alt_names.join(", ")
                    );
                }
            }
            None => s.push('\n'),
        }
        let _ = writeln!(
            s,
            "   {} for {} (chain to a trusted root, name and dates checked)",
            style.ok("✓ verified"),
            info.verified_for
        );
        self.print(&s);
    }

    fn handshake(&self, request: &[u8], response: &[u8]) {
        let style = self.style;
        let mut s = String::new();
        push_head(&mut s, "->", request, style);
        if response.is_empty() {
            let _ = writeln!(s, "<- {}", style.bad("(no response)"));
        } else {
            push_head(&mut s, "<-", response, style);
        }
        if let (Some(key), Some(accept)) = (
            header(request, "sec-websocket-key"),
            header(response, "sec-websocket-accept"),
        ) {
            let expected = accept_key(key.as_bytes());
            let verdict = if accept == expected {
                style.ok("✓ matches")
            } else {
                style.bad("✗ does not match")
            };
            let _ = writeln!(
                s,
                "   Sec-WebSocket-Accept should be base64(SHA-1(key + \"258EAFA5-E914-47DA-95CA-C5AB0DC85B11\")) = {expected}: {verdict} (RFC 6455 §4.1)"
            );
        }
        self.print(&s);
    }

    fn open(&self, protocol: Option<&str>, deflate: Option<&DeflateParams>) {
        self.deflate.store(deflate.is_some(), Ordering::Relaxed);
        let mut s = format!("   {}", self.style.ok("open"));
        if let Some(p) = protocol {
            let _ = write!(s, ", subprotocol {p:?}");
        }
        match deflate {
            Some(d) => {
                let _ = write!(
                    s,
                    ", permessage-deflate (client window 2^{}{}, server window 2^{}{})",
                    d.client_max_window_bits,
                    if d.client_no_context_takeover {
                        ", no context takeover"
                    } else {
                        ""
                    },
                    d.server_max_window_bits,
                    if d.server_no_context_takeover {
                        ", no context takeover"
                    } else {
                        ""
                    },
                );
            }
            None => s.push_str(", no extensions"),
        }
        s.push_str(": from now on the client masks every frame it sends (RFC 6455 §5.3)\n");
        self.print(&s);
    }

    fn frames(&self, direction: Direction, wire: &[u8]) {
        let deflate = self.deflate.load(Ordering::Relaxed);
        self.print(&super::trace_frames_for(
            Role::Client,
            direction,
            wire,
            deflate,
            self.style,
        ));
    }

    fn protocol_error(&self, error: &ProtocolError) {
        let line = format!("✗ the server broke a rule: {error}; the client fails the connection (RFC 6455 §7.1.7)");
        self.print(&format!("   {}\n", self.style.bad(&line)));
    }
}

/// Each line of an HTTP head with an arrow, control characters shown as `\xNN`.
fn push_head(out: &mut String, arrow: &str, head: &[u8], style: Style) {
    let text = String::from_utf8_lossy(head);
    for line in text.split_inclusive('\n') {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            continue;
        }
        let shown: String = line
            .chars()
            .map(|c| {
                if c.is_control() {
                    format!("\\x{:02x}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect();
        let _ = writeln!(out, "{arrow} {}", style.dim(&shown));
    }
}

/// The first value of header `name` in an HTTP head, trimmed.
fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    std::str::from_utf8(head).ok()?.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerObserver as _;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // No printer thread: the queue fills and stays full.
        let (tx, _rx) = mpsc::sync_channel(2);
        let obs = ServerTrace {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let id = ConnId::new(0, 0, 0, 1);
        for _ in 0..10 {
            obs.frames(id, peer, Direction::Sent, &[0x81, 0x00]);
        }
        assert_eq!(obs.dropped(), 8);
    }
}
