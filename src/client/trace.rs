//! `wsloop client --trace`: an [`Observer`] that explains the opening handshake and every frame
//! as the client sends and receives them, with [`crate::explain`]'s renderer, so a learner sees
//! the client mask each frame with a fresh key (RFC 6455 §5.3) and the server's frames arrive
//! unmasked (§5.1).

use super::observer::Observer;
use crate::deflate::DeflateParams;
use crate::error::ProtocolError;
use crate::explain::{trace_frames_for, Direction, Style};
use crate::handshake::accept_key;
use crate::protocol::Role;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Prints a trace of one client connection to a writer (standard output for the CLI), line by
/// line as things happen, from whichever thread read or wrote them.
pub struct TracePrinter {
    out: Mutex<Box<dyn Write + Send>>,
    style: Style,
    deflate: AtomicBool,
}

impl TracePrinter {
    /// Traces to `out`.
    pub fn new(out: impl Write + Send + 'static, style: Style) -> TracePrinter {
        TracePrinter {
            out: Mutex::new(Box::new(out)),
            style,
            deflate: AtomicBool::new(false),
        }
    }

    /// Traces to standard output, in colour on a terminal ([`Style::detect`]).
    pub fn stdout() -> TracePrinter {
        TracePrinter::new(std::io::stdout(), Style::detect())
    }

    fn print(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Tracing must never fail the connection: a closed stdout only loses the trace.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

impl Observer for TracePrinter {
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
        self.print(&trace_frames_for(Role::Client, direction, wire, deflate, self.style));
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
