//! The server's counters, and their Prometheus text form (exposition format 0.0.4) for a
//! `/metrics` route.
//!
//! Hot counters live per event loop, each written only by its own loop (relaxed atomics, no
//! contention) and summed or labelled by loop when read. Rarely changing tables (handshakes by
//! status, WebSockets by path, close codes) sit behind a mutex touched once per connection.

use super::limiter::Reason;
use super::throttle::Limit;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Distinct paths and close codes tracked at most; past it they are counted under "other" so
/// a client cannot grow the tables.
const MAX_LABELS: usize = 64;

/// Counters one event loop keeps.
#[derive(Debug, Default)]
pub(crate) struct LoopStats {
    pub(crate) connections: AtomicI64,
    pub(crate) websockets: AtomicI64,
    /// Open `text/event-stream` responses (`session/sse.rs`).
    pub(crate) event_streams: AtomicI64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) backpressure_pauses: AtomicU64,
    pub(crate) slow_consumer_closes: AtomicU64,
    pub(crate) queued_bytes: AtomicI64,
    pub(crate) memory_sheds: AtomicU64,
    pub(crate) handler_panics: AtomicU64,
    /// Upgrades and responses deferred by a handler and not decided yet.
    pub(crate) pending_decisions: AtomicI64,
}

/// Each loop's counters have exactly one writer, the loop's own thread (they are reached only
/// through its `LoopState`); other threads only read them (`/metrics`, `ServerInfo`). So an
/// update is a plain load and store, not a locked read-modify-write: no update can be lost,
/// and a counter bumped for every message no longer costs a `lock` instruction each time
/// (measured at 41% of `Context::send`'s samples in a profile of 32-byte echo).
impl LoopStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    pub(crate) fn gauge(counter: &AtomicI64, delta: i64) {
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(delta), Ordering::Relaxed);
    }
}

/// Label tables.
#[derive(Debug, Default)]
struct Tables {
    handshakes: BTreeMap<u16, u64>,
    http_requests: BTreeMap<u16, u64>,
    websockets_by_path: BTreeMap<String, i64>,
    close_sent: BTreeMap<u16, u64>,
    close_received: BTreeMap<u16, u64>,
}

fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, other: K) {
    let key = if map.len() >= MAX_LABELS && !map.contains_key(&key) {
        other
    } else {
        key
    };
    *map.entry(key).or_default() += 1;
}

/// Every counter of one server.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) started: Instant,
    pub(crate) loops: Vec<LoopStats>,
    pub(crate) accept_errors: AtomicU64,
    /// Connections refused by the per-address limits, by [`Reason::index`].
    pub(crate) limit_refusals: [AtomicU64; 3],
    /// TLS handshakes completed (0) and failed (1): a TLS connection that closed before its
    /// handshake finished, for any reason (alert, timeout, plain HTTP, peer gone).
    pub(crate) tls_handshakes: [AtomicU64; 2],
    /// WebSockets closed (1008) by their message rate, by [`Limit::index`].
    rate_closes: [AtomicU64; 2],
    /// Milliseconds WebSockets were not read because of their message rate, by [`Limit::index`].
    throttled_ms: [AtomicU64; 2],
    tables: Mutex<Tables>,
}

/// Which end sent a Close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseSide {
    Sent,
    Received,
}

impl Metrics {
    pub(crate) fn new(loops: usize) -> Metrics {
        Metrics {
            started: Instant::now(),
            loops: (0..loops).map(|_| LoopStats::default()).collect(),
            accept_errors: AtomicU64::new(0),
            limit_refusals: Default::default(),
            tls_handshakes: Default::default(),
            rate_closes: Default::default(),
            throttled_ms: Default::default(),
            tables: Mutex::new(Tables::default()),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request refused by a per-address limit.
    pub(crate) fn limit_refused(&self, reason: Reason) {
        if let Some(c) = self.limit_refusals.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A WebSocket closed for going over its message rate.
    pub(crate) fn rate_closed(&self, limit: Limit) {
        if let Some(c) = self.rate_closes.get(limit.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A WebSocket paused for `ms` by its message rate.
    pub(crate) fn throttled(&self, limit: Limit, ms: u64) {
        if let Some(c) = self.throttled_ms.get(limit.index()) {
            c.fetch_add(ms, Ordering::Relaxed);
        }
    }

    pub(crate) fn handshake(&self, status: u16) {
        bump(&mut self.tables().handshakes, status, 0);
    }

    pub(crate) fn http_request(&self, status: u16) {
        bump(&mut self.tables().http_requests, status, 0);
    }

    pub(crate) fn websocket_path(&self, path: &str, delta: i64) {
        let mut t = self.tables();
        // A path already counted (the usual case) is found without allocating its key.
        if let Some(n) = t.websockets_by_path.get_mut(path) {
            *n += delta;
            return;
        }
        let key = if t.websockets_by_path.len() < MAX_LABELS {
            path.to_owned()
        } else {
            "other".to_owned()
        };
        let entry = t.websockets_by_path.entry(key).or_default();
        *entry += delta;
    }

    pub(crate) fn close_code(&self, side: CloseSide, code: u16) {
        let mut t = self.tables();
        let map = match side {
            CloseSide::Sent => &mut t.close_sent,
            CloseSide::Received => &mut t.close_received,
        };
        bump(map, code, 0);
    }

    fn sum_i(&self, f: impl Fn(&LoopStats) -> &AtomicI64) -> i64 {
        self.loops.iter().map(|l| f(l).load(Ordering::Relaxed)).sum()
    }

    fn sum_u(&self, f: impl Fn(&LoopStats) -> &AtomicU64) -> u64 {
        self.loops.iter().map(|l| f(l).load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn connections(&self) -> usize {
        self.sum_i(|l| &l.connections).max(0) as usize
    }

    pub(crate) fn websockets(&self) -> usize {
        self.sum_i(|l| &l.websockets).max(0) as usize
    }

    pub(crate) fn event_streams(&self) -> usize {
        self.sum_i(|l| &l.event_streams).max(0) as usize
    }

    /// (messages in, messages out, bytes in, bytes out) over all loops.
    pub(crate) fn traffic(&self) -> (u64, u64, u64, u64) {
        (
            self.sum_u(|l| &l.messages_in),
            self.sum_u(|l| &l.messages_out),
            self.sum_u(|l| &l.bytes_in),
            self.sum_u(|l| &l.bytes_out),
        )
    }

    /// The Prometheus text exposition of every counter; `extra` adds gauges the caller owns
    /// (name, help, value).
    pub(crate) fn render(&self, memory_used: usize, memory_limit: usize, extra: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(4096);
        let per_loop_i = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&LoopStats) -> &AtomicI64| {
            header(out, name, help, "gauge");
            for (i, l) in self.loops.iter().enumerate() {
                let _ = writeln!(out, "{name}{{loop=\"{i}\"}} {}", f(l).load(Ordering::Relaxed));
            }
        };
        let per_loop_u = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&LoopStats) -> &AtomicU64| {
            header(out, name, help, "counter");
            for (i, l) in self.loops.iter().enumerate() {
                let _ = writeln!(out, "{name}{{loop=\"{i}\"}} {}", f(l).load(Ordering::Relaxed));
            }
        };
        per_loop_i(
            &mut out,
            "wsloop_connections",
            "Open TCP connections (HTTP and WebSocket).",
            &|l| &l.connections,
        );
        per_loop_i(&mut out, "wsloop_websockets", "Open WebSocket sessions.", &|l| {
            &l.websockets
        });
        per_loop_i(
            &mut out,
            "wsloop_event_streams",
            "Open Server-Sent Events streams (text/event-stream responses).",
            &|l| &l.event_streams,
        );
        per_loop_u(
            &mut out,
            "wsloop_messages_received_total",
            "WebSocket messages received.",
            &|l| &l.messages_in,
        );
        per_loop_u(
            &mut out,
            "wsloop_messages_sent_total",
            "WebSocket messages queued to connections (each fan-out delivery counts).",
            &|l| &l.messages_out,
        );
        per_loop_u(
            &mut out,
            "wsloop_received_bytes_total",
            "Bytes read from sockets.",
            &|l| &l.bytes_in,
        );
        per_loop_u(&mut out, "wsloop_sent_bytes_total", "Bytes written to sockets.", &|l| {
            &l.bytes_out
        });
        per_loop_u(
            &mut out,
            "wsloop_backpressure_pauses_total",
            "Times a connection stopped being read because its queue, or a subscriber it feeds, was over the high-water mark.",
            &|l| &l.backpressure_pauses,
        );
        per_loop_u(
            &mut out,
            "wsloop_slow_consumer_closes_total",
            "Connections closed with 1008 because their outbound queue passed max_outbound.",
            &|l| &l.slow_consumer_closes,
        );
        per_loop_u(
            &mut out,
            "wsloop_memory_sheds_total",
            "Connections closed with 1013 to keep the server under its memory budget.",
            &|l| &l.memory_sheds,
        );
        per_loop_u(
            &mut out,
            "wsloop_handler_panics_total",
            "Handler calls that panicked (the connection was closed, the loop kept running).",
            &|l| &l.handler_panics,
        );
        per_loop_i(
            &mut out,
            "wsloop_pending_decisions",
            "Upgrades and HTTP responses a handler deferred and nobody has decided yet.",
            &|l| &l.pending_decisions,
        );
        per_loop_i(
            &mut out,
            "wsloop_queued_bytes",
            "Outbound bytes queued and not yet taken by the socket.",
            &|l| &l.queued_bytes,
        );
        header(
            &mut out,
            "wsloop_memory_budget_used_bytes",
            "Bytes charged to the memory budget.",
            "gauge",
        );
        let _ = writeln!(out, "wsloop_memory_budget_used_bytes {memory_used}");
        header(
            &mut out,
            "wsloop_memory_budget_limit_bytes",
            "The memory budget (--max-memory).",
            "gauge",
        );
        let _ = writeln!(out, "wsloop_memory_budget_limit_bytes {memory_limit}");
        header(
            &mut out,
            "wsloop_accept_errors_total",
            "Failed accept() calls (e.g. out of file descriptors).",
            "counter",
        );
        let _ = writeln!(
            out,
            "wsloop_accept_errors_total {}",
            self.accept_errors.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "wsloop_limit_refusals_total",
            "Requests refused by the per-address limits (--max-connections-per-ip, --upgrade-rate-per-ip), and WebSockets closed (1008) by their message rate (--rate-limit-action close), by reason.",
            "counter",
        );
        for reason in Reason::ALL {
            let n = self
                .limit_refusals
                .get(reason.index())
                .map_or(0, |c| c.load(Ordering::Relaxed));
            let _ = writeln!(out, "wsloop_limit_refusals_total{{reason=\"{}\"}} {n}", reason.label());
        }
        for limit in Limit::ALL {
            let n = self
                .rate_closes
                .get(limit.index())
                .map_or(0, |c| c.load(Ordering::Relaxed));
            let _ = writeln!(out, "wsloop_limit_refusals_total{{reason=\"{}\"}} {n}", limit.label());
        }
        header(
            &mut out,
            "wsloop_throttled_seconds_total",
            "Time WebSockets were not read because they sent faster than their message rate (--message-rate, --message-bytes-rate), by reason.",
            "counter",
        );
        for limit in Limit::ALL {
            let ms = self
                .throttled_ms
                .get(limit.index())
                .map_or(0, |c| c.load(Ordering::Relaxed));
            let _ = writeln!(
                out,
                "wsloop_throttled_seconds_total{{reason=\"{}\"}} {:.3}",
                limit.label(),
                ms as f64 / 1000.0
            );
        }
        header(
            &mut out,
            "wsloop_tls_handshakes_total",
            "TLS handshakes, by result (failed: the connection closed before its handshake completed).",
            "counter",
        );
        for (result, c) in ["ok", "failed"].iter().zip(&self.tls_handshakes) {
            let _ = writeln!(
                out,
                "wsloop_tls_handshakes_total{{result=\"{result}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "wsloop_uptime_seconds",
            "Seconds since the server started.",
            "gauge",
        );
        let _ = writeln!(out, "wsloop_uptime_seconds {:.3}", self.started.elapsed().as_secs_f64());
        let t = self.tables();
        let status_label = |s: u16| if s == 0 { "other".to_owned() } else { s.to_string() };
        header(
            &mut out,
            "wsloop_handshakes_total",
            "WebSocket upgrade requests by response status (101 = accepted).",
            "counter",
        );
        for (status, n) in &t.handshakes {
            let _ = writeln!(
                out,
                "wsloop_handshakes_total{{status=\"{}\"}} {n}",
                status_label(*status)
            );
        }
        header(
            &mut out,
            "wsloop_http_requests_total",
            "Plain HTTP requests by response status.",
            "counter",
        );
        for (status, n) in &t.http_requests {
            let _ = writeln!(
                out,
                "wsloop_http_requests_total{{status=\"{}\"}} {n}",
                status_label(*status)
            );
        }
        header(
            &mut out,
            "wsloop_websockets_by_path",
            "Open WebSocket sessions by request path.",
            "gauge",
        );
        for (path, n) in &t.websockets_by_path {
            let _ = writeln!(out, "wsloop_websockets_by_path{{path=\"{}\"}} {n}", label_value(path));
        }
        for (name, help, map) in [
            (
                "wsloop_close_codes_sent_total",
                "Close frames sent, by status code.",
                &t.close_sent,
            ),
            (
                "wsloop_close_codes_received_total",
                "Close frames received, by status code (1005: no code).",
                &t.close_received,
            ),
        ] {
            header(&mut out, name, help, "counter");
            for (code, n) in map {
                let _ = writeln!(out, "{name}{{code=\"{}\"}} {n}", status_label(*code));
            }
        }
        drop(t);
        for (name, help, value) in extra {
            header(&mut out, name, help, "gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, double quote, newline).
fn label_value(s: &str) -> String {
    let mut v = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => v.push_str("\\\\"),
            '"' => v.push_str("\\\""),
            '\n' => v.push_str("\\n"),
            c => v.push(c),
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_stop_growing_at_their_cap() {
        let m = Metrics::new(1);
        for code in 3000..3000 + 2 * MAX_LABELS as u16 {
            m.close_code(CloseSide::Received, code);
        }
        for i in 0..2 * MAX_LABELS {
            m.websocket_path(&format!("/p{i}"), 1);
        }
        let t = m.tables();
        assert_eq!(t.close_received.len(), MAX_LABELS + 1);
        assert_eq!(t.close_received.get(&0), Some(&(MAX_LABELS as u64)));
        assert_eq!(t.websockets_by_path.len(), MAX_LABELS + 1);
        assert_eq!(t.websockets_by_path.get("other"), Some(&(MAX_LABELS as i64)));
    }

    #[test]
    fn render_labels_each_loop_and_escapes_paths() {
        let m = Metrics::new(2);
        LoopStats::gauge(&m.loops[1].connections, 3);
        m.websocket_path("/we\"ird\\", 1);
        m.handshake(101);
        let text = m.render(10, 100, &[("wsloop_extra", "An extra gauge.", 1.5)]);
        assert!(text.contains("wsloop_connections{loop=\"0\"} 0\n"), "{text}");
        assert!(text.contains("wsloop_connections{loop=\"1\"} 3\n"), "{text}");
        assert!(
            text.contains("wsloop_websockets_by_path{path=\"/we\\\"ird\\\\\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("wsloop_handshakes_total{status=\"101\"} 1\n"), "{text}");
        assert!(text.contains("wsloop_memory_budget_used_bytes 10\n"), "{text}");
        assert!(text.contains("# TYPE wsloop_extra gauge\nwsloop_extra 1.5\n"), "{text}");
        assert_eq!(m.connections(), 3);
    }
}
