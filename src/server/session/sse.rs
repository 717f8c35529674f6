//! The Server-Sent Events phase (WHATWG HTML §9.2): what the HTTP phase hands over when a
//! handler turned a request into an event stream ([`RequestContext::event_stream`]). From the
//! head on, the connection only carries events: each publication of the stream's topics is
//! encoded as one (`id:` its history id if recorded, `data:` its text), a comment line keeps
//! idle proxies from closing it, and it is under the same congestion and slow-receiver rules
//! as a WebSocket subscriber (`ws.rs`). What the client sends after its request is read and
//! dropped: an event stream has no messages upstream.
//!
//! [`RequestContext::event_stream`]: super::super::RequestContext::event_stream

use super::super::budget::{Frame, Tag};
use super::super::context::LoopState;
use super::super::event_stream::StreamOpening;
use super::super::handler::header_allowed;
use super::super::metrics::LoopStats;
use super::super::timers::Millis;
use super::super::{ConnId, Response};
use super::congestion::Backlog;
use super::transport::Transport;
use super::ws::SHARE_ABOVE;
use super::{ms, Delivery};
use crate::frame::Opcode;
use crate::handshake::Request;
use log::{debug, info};
use std::sync::Arc;

/// The heartbeat: a comment line, ignored by `EventSource` (§9.2.6: a line starting with a
/// colon), enough for a proxy to see the response is alive.
pub(super) const PING: &[u8] = b": ping\n\n";

/// One event stream. See the module docs.
#[derive(Debug)]
pub(crate) struct SseConn {
    /// When something last went into the queue: the heartbeat counts from here.
    last_beat: Millis,
    /// `bytes_out` when last looked at, and when: a queue that has not moved for the idle
    /// timeout belongs to a client that does not read.
    progress_bytes: u64,
    progress_at: Millis,
    /// Fan-out backpressure: the session reaches it for `hold`, `take_held`, `decongest`.
    pub(super) congestion: Backlog,
    /// The request's path, for the log.
    path: Box<str>,
}

/// The handler asked for an event stream while answering `request` with `response`: opens it
/// (the head and what goes first are queued) when the answer is a `200` to a `GET`, else
/// undoes its subscriptions and leaves the response to go out as usual.
pub(super) fn begin(
    t: &mut Transport,
    lp: &mut LoopState,
    request: &Request,
    response: &Response,
    opening: &StreamOpening,
) -> Option<Box<SseConn>> {
    if opening.id != t.id(lp) {
        // Asked for outside `on_request` (an upgrade's): not this request's to undo.
        return None;
    }
    if response.status != 200 || request.method() != "GET" || lp.shutting_down {
        lp.topics.remove_conn(t.id(lp));
        lp.recoveries.remove_conn(t.id(lp));
        return None;
    }
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    let mut cache_control = false;
    for (name, value) in &response.headers {
        if !header_allowed(name, value) || name.eq_ignore_ascii_case("content-type") {
            continue;
        }
        cache_control |= name.eq_ignore_ascii_case("cache-control");
        for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
            head.extend_from_slice(part);
        }
    }
    head.extend_from_slice(b"Content-Type: text/event-stream\r\n");
    if !cache_control {
        // An event stream is never to be replayed from a cache (RFC 9111 §5.2.2.5).
        head.extend_from_slice(b"Cache-Control: no-store\r\n");
    }
    // No Content-Length and no chunking: the body ends when the connection does (RFC 9112
    // §6.3, rule 8), said up front. `X-Accel-Buffering` asks nginx not to buffer it.
    head.extend_from_slice(b"X-Accel-Buffering: no\r\nConnection: close\r\n\r\n");
    if let Some(retry) = opening.retry {
        head.extend_from_slice(format!("retry: {retry}\n\n").as_bytes());
    }
    for notice in &opening.notices {
        encode(Tag::Notice, notice.as_bytes(), &mut head);
    }
    t.queue(&mut lp.pool, &head);
    // Shedding drops queued events, never the head: the client reads a well-formed stream
    // up to where it was cut.
    t.out.protect_queued();
    LoopStats::gauge(&lp.stats().event_streams, 1);
    info!("event stream {} {} #{}", t.client(), request.path(), t.id(lp));
    Some(Box::new(SseConn {
        last_beat: lp.now,
        progress_bytes: t.bytes_out,
        progress_at: lp.now,
        congestion: Backlog::default(),
        path: request.path().into(),
    }))
}

/// One event: `id:` (a recorded message) or `event: resync` (a replay's notice), then the
/// text as `data:` lines — one per line of it, since a line break ends a field (§9.2.5: CR,
/// LF or CRLF) — and the blank line that dispatches it.
pub(crate) fn encode(tag: Tag, text: &[u8], out: &mut Vec<u8>) {
    match tag {
        Tag::Recorded(id) => out.extend_from_slice(format!("id: {id}\n").as_bytes()),
        Tag::Notice => out.extend_from_slice(b"event: resync\n"),
        Tag::Plain => {}
    }
    let mut rest = text;
    loop {
        let end = rest.iter().position(|&b| b == b'\n' || b == b'\r');
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(rest.get(..end.unwrap_or(rest.len())).unwrap_or_default());
        out.push(b'\n');
        let Some(end) = end else { break };
        let skip = if rest.get(end..end + 2) == Some(b"\r\n") { 2 } else { 1 };
        rest = rest.get(end + skip..).unwrap_or_default();
    }
    out.push(b'\n');
}

impl SseConn {
    /// Queues a publication as an event: the same rules as `WsConn::deliver` (closed past
    /// `max_outbound`, congested past the high-water mark), without its frame.
    /// The event is encoded once per publication (`event`, shared by the streams it goes
    /// to): copied into the queue when small, else the queue holds the shared bytes.
    pub(super) fn deliver(
        &mut self,
        t: &mut Transport,
        frame: &Arc<Frame>,
        event: &mut Option<Arc<Frame>>,
        lp: &mut LoopState,
    ) -> Delivery {
        if !t.is_open() {
            return Delivery::Skipped;
        }
        let config = &lp.core.config;
        if t.out.len() > config.max_outbound {
            debug!("closing slow event stream {} (queue {} bytes)", t.peer(), t.out.len());
            LoopStats::add(&lp.stats().slow_consumer_closes, 1);
            t.out.drop_unstarted(&mut lp.pool);
            t.start_closing(lp.now, ms(config.close_timeout));
            return Delivery::SlowConsumerClosed;
        }
        // Text only: an event stream is UTF-8 (§9.2.5), a binary message has no place in it.
        let Some((Opcode::Text, text)) = frame.payload() else {
            return Delivery::Skipped;
        };
        if t.out.is_empty() {
            // The stuck clock starts when the queue stops being empty.
            self.progress_bytes = t.bytes_out;
            self.progress_at = lp.now;
        }
        let event = event.get_or_insert_with(|| {
            let mut v = Vec::with_capacity(text.len() + 32);
            encode(frame.tag(), text, &mut v);
            Frame::new(v, lp.core.budget())
        });
        if event.len() <= SHARE_ABOVE {
            t.queue(&mut lp.pool, event.bytes());
        } else {
            t.out.push_shared(event.clone(), &mut lp.pool);
        }
        self.last_beat = lp.now;
        LoopStats::add(&lp.stats().messages_out, 1);
        self.congestion
            .after_queue(t.out.len(), config.backpressure_high_water, lp.now)
    }

    /// The heartbeat, the stuck-queue check or a congestion's stall timeout.
    pub(super) fn next_deadline(&self, t: &Transport, lp: &LoopState) -> Millis {
        let config = &lp.core.config;
        let mut at = self.last_beat + ms(config.ping_interval);
        if !t.out.is_empty() {
            at = at.min(self.progress_at + ms(config.idle_timeout));
        }
        if let Some(stall) = self.congestion.stall_deadline(ms(config.fanout_stall_timeout)) {
            at = at.min(stall);
        }
        at
    }

    /// Time has come: stop holding publishers after the stall timeout, give up on a queue
    /// that has not moved for the idle timeout, or send the heartbeat.
    pub(super) fn on_timeout(&mut self, t: &mut Transport, lp: &mut LoopState) -> (Option<&'static str>, Vec<ConnId>) {
        let now = lp.now;
        let config = &lp.core.config;
        let mut released = Vec::new();
        if t.bytes_out != self.progress_bytes || t.out.is_empty() {
            self.progress_bytes = t.bytes_out;
            self.progress_at = now;
        }
        if let Some(held) = self.congestion.stall_if_due(now, ms(config.fanout_stall_timeout)) {
            released = held;
            debug!(
                "#{} {}: event stream stalled, releasing its publishers",
                t.id(lp),
                t.peer()
            );
        }
        if !t.out.is_empty() && now >= self.progress_at + ms(config.idle_timeout) {
            return (Some("event stream not read"), released);
        }
        if now >= self.last_beat + ms(config.ping_interval) {
            self.last_beat = now;
            if t.out.is_empty() {
                self.progress_bytes = t.bytes_out;
                self.progress_at = now;
                t.queue(&mut lp.pool, PING);
            }
        }
        (None, released)
    }

    /// The server is shutting down: what is queued goes out, then the connection closes
    /// (an `EventSource` reconnects, to another process or later).
    pub(super) fn shutdown(&mut self, t: &mut Transport, lp: &LoopState) {
        t.start_closing(lp.now, ms(lp.core.config.shutdown_grace));
    }

    /// The stream is going: counted and logged.
    pub(super) fn finish(&mut self, t: &Transport, lp: &LoopState, why: &str) {
        LoopStats::gauge(&lp.stats().event_streams, -1);
        info!(
            "event stream closed {} {} #{} out={} ({why})",
            t.client(),
            self.path,
            t.id(lp),
            t.bytes_out
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::history::HistoryId;

    fn event(tag: Tag, text: &str) -> String {
        let mut out = Vec::new();
        encode(tag, text.as_bytes(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// §9.2.5: CR, LF and CRLF each end a line, so each line of the text is its own `data:`
    /// field, and the client joins them with LF again.
    #[test]
    fn every_line_is_a_data_field_and_a_blank_line_ends_the_event() {
        assert_eq!(
            event(Tag::Recorded(HistoryId::new(17, 2)), "{\"a\":1}"),
            "id: 17-2\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(event(Tag::Plain, ""), "data: \n\n");
        assert_eq!(
            event(Tag::Plain, "a\nb\r\nc\rd\n"),
            "data: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
        );
        assert_eq!(
            event(Tag::Notice, "{\"type\":\"resync\"}"),
            "event: resync\ndata: {\"type\":\"resync\"}\n\n"
        );
        // A text that tries to start a field of its own stays inside data.
        assert_eq!(event(Tag::Plain, "x\n\nid: 9-9"), "data: x\ndata: \ndata: id: 9-9\n\n");
    }
}
