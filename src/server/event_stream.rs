//! Server-Sent Events (the WHATWG HTML Living Standard, §9.2 "Server-sent events"): an HTTP
//! request that a handler turns into a long-lived `text/event-stream` response subscribed to
//! topics, on the same port as the WebSockets. For clients that cannot upgrade — a proxy or
//! middlebox that refuses `Upgrade` — the same publications arrive as events.
//!
//! What a stream receives is what a WebSocket subscriber of its topics receives (`publish`,
//! `publish_recorded`, the [`ServerHandle`](super::ServerHandle), the Redis bus), each text
//! message as one event: `id:` the message's [`HistoryId`](super::HistoryId) when it was
//! recorded, `data:` its text (one `data:` line per line of it). Binary messages have no place
//! in an event stream and are left out. A stream is under the same rules as a WebSocket subscriber: a queue over
//! the high-water mark holds its publishers back, one over `max_outbound` is closed, it counts
//! against the memory budget and may be shed; a comment line (`: ping`) goes out every
//! `ping_interval` so proxies keep it open, and one whose queue has not moved for
//! `idle_timeout` is closed. It is closed (after what is queued) at shutdown.
//!
//! The wire side lives in `session/sse.rs`; this file is the handler's side.

use super::context::{LoopState, RequestContext};
use super::{ConnId, Response};

/// What a handler asked for while answering a request with [`RequestContext::event_stream`]:
/// taken by the HTTP phase when the handler returns.
#[derive(Debug)]
pub(crate) struct StreamOpening {
    /// The connection whose request this is.
    pub(crate) id: ConnId,
    /// The reconnection time to send first (`retry:`), in milliseconds.
    pub(crate) retry: Option<u32>,
    /// Notices to send right after the head (a `Last-Event-ID` that is not an id).
    pub(crate) notices: Vec<String>,
}

/// An event stream being set up by [`Handler::on_request`](super::Handler::on_request): which
/// topics it follows, from where. [`EventStream::open`] gives the response to return.
///
/// ```
/// use wsloop::handshake::Request;
/// use wsloop::server::{Accept, Handler, RequestContext, Response};
///
/// struct News;
///
/// impl Handler for News {
///     type State = ();
///
///     fn on_request(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Response {
///         if request.path() != "/news" {
///             return Response::status(404);
///         }
///         let mut stream = ctx.event_stream();
///         match request.header_str("last-event-id") {
///             // Recorded messages after that one first, then live; or a `resync` event.
///             Some(last) => stream.subscribe_since("news", last, "{\"resync\":true}"),
///             None => stream.subscribe("news"),
///         };
///         stream.open()
///     }
///
///     fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
///         Err(Response::status(404))
///     }
/// }
/// ```
pub struct EventStream<'a> {
    id: ConnId,
    lp: &'a mut LoopState,
}

impl RequestContext<'_> {
    /// Turns this request into a Server-Sent Events stream (see [`EventStream`]): subscribe it
    /// to topics, then return [`EventStream::open`]'s response. The stream opens if the
    /// handler returns a `200` to a `GET` (the head goes out with `Content-Type:
    /// text/event-stream` and the handler's other headers, no body, and the connection stays
    /// open for events); any other answer goes out as usual and the subscriptions are undone.
    /// Only for [`Handler::on_request`](super::Handler::on_request), answered there: a deferred
    /// answer ([`RequestContext::defer_response`]) cannot open a stream.
    pub fn event_stream(&mut self) -> EventStream<'_> {
        let id = self.id;
        if !self.lp.stream_opening.as_ref().is_some_and(|o| o.id == id) {
            self.lp.stream_opening = Some(Box::new(StreamOpening {
                id,
                retry: None,
                notices: Vec::new(),
            }));
        }
        EventStream { id, lp: self.lp }
    }
}

impl EventStream<'_> {
    /// Follows a topic from now on.
    pub fn subscribe(&mut self, topic: &str) -> &mut Self {
        self.lp.topics.subscribe(self.id, topic);
        self
    }

    /// Follows a topic, first with what was recorded there after `last_event_id` (the
    /// `Last-Event-ID` header a reconnecting `EventSource` sends: the `id:` of the last event
    /// it got), then live — none missed, none twice, as
    /// [`Context::subscribe_since`](super::Context::subscribe_since) does for a WebSocket. When
    /// the replay cannot be complete (the id is not one, was trimmed away, is from another
    /// history or the future, or the message bus is unreachable) the stream gets `notice` as
    /// an event named `resync` instead, and goes on live.
    pub fn subscribe_since(&mut self, topic: &str, last_event_id: &str, notice: &str) -> &mut Self {
        let notice_parts = (false, notice.as_bytes().to_vec());
        if !self
            .lp
            .subscribe_since(self.id, topic, last_event_id.trim(), notice_parts)
        {
            if let Some(o) = self.lp.stream_opening.as_mut() {
                o.notices.push(notice.to_owned());
            }
        }
        self
    }

    /// The reconnection time an `EventSource` waits after the stream ends (`retry:`), in
    /// milliseconds.
    pub fn retry(&mut self, millis: u32) -> &mut Self {
        if let Some(o) = self.lp.stream_opening.as_mut() {
            o.retry = Some(millis);
        }
        self
    }

    /// The response that opens the stream: return it from `on_request` (headers may be added,
    /// CORS ones are by the server).
    pub fn open(&mut self) -> Response {
        let mut r = Response::status(200);
        r.body.clear();
        r.content_type = "text/event-stream".into();
        r
    }
}
