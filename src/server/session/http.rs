//! The HTTP/1.1 phase: request heads and bodies (RFC 9112), keep-alive, answers from
//! [`Handler::on_request`], and the upgrade decision (RFC 6455 §4.2). An accepted upgrade ends
//! the phase: [`HttpConn::receive`] hands back the WebSocket phase and the bytes that followed
//! the request, and the session switches over.

use super::super::context::{Capture, LoopState, RequestContext};
use super::super::deferred::{Decision, DecisionSlot, Deferrable, Deferral, Deferred, PENDING_CHARGE};
use super::super::http::host;
use super::super::http::{self, OriginVerdict};
use super::super::limiter::Refusal;
use super::super::metrics::LoopStats;
use super::super::proxy;
use super::super::throttle::Throttle;
use super::super::timers::Millis;
use super::super::{Accept, DeflateMode, Handler, Response};
use super::transport::Transport;
use super::ws::{Opening, WsConn};
use super::{guarded, ms, Cx};
use crate::handshake::deflate::negotiate_deflate;
use crate::handshake::{self, ParseStatus, Request, RequestParser, UpgradeRequest};
use crate::protocol::WebSocketCore;
use log::{debug, error, warn};
use std::any::TypeId;
use std::sync::Arc;

struct PendingBody {
    request: Request,
    remaining: usize,
    keep_alive: bool,
}

/// One connection while it speaks HTTP. See the module docs.
pub(crate) struct HttpConn {
    /// A response went out and the connection waits for the next request (keep-alive).
    between_requests: bool,
    parser: RequestParser,
    /// Bytes of a request head (or pipelined requests) that arrived in pieces.
    buf: Vec<u8>,
    pending: Option<PendingBody>,
    /// When the request being read must be whole (the handshake timeout), or the next one
    /// must start (the keep-alive timeout).
    pub(super) request_deadline: Millis,
    /// Requests whose head was read on this connection.
    requests: u32,
    /// The per-address limits refused this connection at accept: the first request gets it.
    refusal: Option<Refusal>,
    /// A decision the handler deferred on the current request (`deferred.rs`): nothing
    /// more is read until it comes, or the handshake timeout.
    waiting: Option<Box<Waiting>>,
    /// The last request's handler turned it into an event stream (`sse.rs`): the session
    /// takes it and the HTTP phase ends.
    stream: Option<Box<super::sse::SseConn>>,
}

/// A request whose answer a handler deferred.
struct Waiting {
    slot: Arc<DecisionSlot>,
    request: Request,
    kind: WaitKind,
}

enum WaitKind {
    /// An upgrade that passed the RFC 6455 §4.2.1 checks and the Origin policy.
    Upgrade(UpgradeRequest),
    /// A plain request: whether the connection stays open after it, and the origin the CORS
    /// headers name.
    Response {
        keep_alive: bool,
        allowed_origin: Option<String>,
    },
}

/// What feeding the HTTP phase came to.
pub(super) enum HttpOutcome<S> {
    /// This many bytes of the input were used; the rest (if any) waits, stashed by the caller.
    Used(usize),
    /// An accepted upgrade: the 101 is queued and the WebSocket phase takes over. `used`
    /// bytes of the input were the HTTP phase's; `trailing` are bytes that arrived before
    /// the rest of the input (frames sent right behind the request), to be fed first.
    Upgraded {
        ws: Box<WsConn<S>>,
        used: usize,
        trailing: Vec<u8>,
    },
}

/// Where parsing HTTP input stopped.
enum Step<S> {
    /// Everything up to here was used; the rest is an incomplete head.
    NeedMore(usize),
    /// The head up to here was an accepted upgrade; the rest is WebSocket frames.
    Upgraded(usize, Box<WsConn<S>>),
    /// Everything up to here was answered, and reading pauses (published messages to
    /// deliver, a full queue, a spent allowance): the rest waits.
    Paused(usize),
    /// The connection is closing; ignore the rest.
    Closed,
}

impl HttpConn {
    pub(super) fn new(limits: handshake::RequestLimits, deadline: Millis) -> HttpConn {
        HttpConn {
            between_requests: false,
            parser: RequestParser::new(limits),
            buf: Vec::new(),
            pending: None,
            request_deadline: deadline,
            requests: 0,
            refusal: None,
            waiting: None,
            stream: None,
        }
    }

    /// Charges a new long-lived stream on this connection — a WebSocket upgrade, or an event
    /// stream a handler opened — to its client's address (limiter.rs): a connection's
    /// admission at accept paid for its first request; a stream after earlier requests on it
    /// pays the rate once more. Through a trusted proxy (`via_proxy`: not admitted at accept)
    /// the stream is a new connection of the client the proxy names, counted until the
    /// connection closes. The refusal, if over a limit.
    fn charge_stream(&self, t: &mut Transport, lp: &LoopState, via_proxy: bool) -> Option<Refusal> {
        let per_ip = lp.core.per_ip.as_ref()?;
        if via_proxy {
            if t.ip_counted() {
                return None;
            }
            return match per_ip.admit(t.client().ip(), lp.now) {
                Ok(()) => {
                    t.set_ip_counted();
                    None
                }
                Err(r) => Some(r),
            };
        }
        if !(self.requests > 1 && t.ip_counted()) {
            return None;
        }
        per_ip.upgrade(t.peer().ip(), lp.now).err()
    }

    /// See `Session::refuse_first_request`.
    pub(super) fn refuse_first_request(&mut self, refusal: Refusal, deadline: Millis) {
        self.refusal = Some(refusal);
        self.request_deadline = self.request_deadline.min(deadline);
    }

    /// The event stream the last request opened, if it did.
    pub(super) fn take_stream(&mut self) -> Option<Box<super::sse::SseConn>> {
        self.stream.take()
    }

    /// A request head or body in progress.
    pub(super) fn holding(&self) -> usize {
        let waiting = self
            .waiting
            .as_ref()
            .map_or(0, |w| PENDING_CHARGE + w.request.body().len());
        self.buf.capacity() + self.pending.as_ref().map_or(0, |p| p.request.body().len()) + waiting
    }

    /// Between requests, with nothing half-read or waiting.
    pub(super) fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.pending.is_none() && self.waiting.is_none()
    }

    /// A handler deferred the answer to the current request.
    pub(super) fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Starts waiting for a deferred decision: the connection is not read, and the decision
    /// has the handshake timeout to come.
    fn wait(&mut self, t: &mut Transport, waiting: Waiting, lp: &LoopState) {
        self.waiting = Some(Box::new(waiting));
        t.waiting = true;
        self.request_deadline = lp.now + ms(lp.core.config.handshake_timeout);
        LoopStats::gauge(&lp.stats().pending_decisions, 1);
    }

    /// Stops waiting (decided, timed out, or the connection is going).
    fn end_wait(&mut self, t: &mut Transport, lp: &LoopState) -> Option<Box<Waiting>> {
        let w = self.waiting.take()?;
        t.waiting = false;
        LoopStats::gauge(&lp.stats().pending_decisions, -1);
        Some(w)
    }

    /// The connection is going while a decision is pending: its token now says `Gone`.
    pub(super) fn abandon(&mut self, t: &mut Transport, lp: &LoopState) {
        if let Some(w) = self.end_wait(t, lp) {
            w.slot.end();
        }
    }

    /// The handshake timeout passed (`why`), or the server is shutting down, with a decision
    /// still pending: the client gets `503` (RFC 9110 §15.6.4) and the connection closes. A
    /// decision already on its way through the inbox is waited for a moment more instead.
    pub(super) fn give_up(&mut self, t: &mut Transport, lp: &mut LoopState, why: &str) {
        let Some(w) = &self.waiting else { return };
        if !w.slot.end() {
            self.request_deadline = lp.now + ms(lp.core.config.close_timeout);
            return;
        }
        let Some(w) = self.end_wait(t, lp) else { return };
        if matches!(w.kind, WaitKind::Upgrade(_)) {
            lp.core.metrics().handshake(503);
        }
        answer_and_close(t, lp, &w.request, 503, why, Some(1));
    }

    /// A decision came from the handler's token; an accepted upgrade returns the WebSocket
    /// phase (the 101 queued).
    pub(super) fn decide<S: Send + 'static, H: Handler<State = S>>(
        &mut self,
        t: &mut Transport,
        decision: Decision,
        cx: &mut Cx<'_, H>,
    ) -> Option<Box<WsConn<S>>> {
        let w = self.end_wait(t, cx.lp)?;
        let Waiting { request, kind, .. } = *w;
        match (kind, decision) {
            (WaitKind::Upgrade(up), Decision::Upgrade(Ok(accept))) => match accept.downcast::<Accept<S>>() {
                Ok(accept) => Some(open_upgrade(t, request, up, *accept, cx)),
                Err(_) => {
                    error!("a pending upgrade was accepted with a state other than Handler::State: answering 500");
                    let bytes = Response::status(500).to_bytes(false, false);
                    refuse_upgrade(t, cx, &request, &bytes, 500, "state of the wrong type");
                    None
                }
            },
            (WaitKind::Upgrade(_), Decision::Upgrade(Err(response))) => {
                let why = format!("refused by the handler with {}", response.status);
                refuse_upgrade(t, cx, &request, &response.to_bytes(false, false), response.status, &why);
                None
            }
            (
                WaitKind::Response {
                    keep_alive,
                    allowed_origin,
                },
                Decision::Respond(response),
            ) => {
                let keep_alive = keep_alive && !cx.lp.shutting_down;
                let response = with_cors(response, allowed_origin.as_deref());
                self.send_response(t, &request, response, keep_alive, cx);
                None
            }
            _ => {
                // Tokens are typed by kind; this is a bug, answered rather than panicked on.
                error!("a decision of the wrong kind reached a pending request: answering 500");
                answer_and_close(t, cx.lp, &request, 500, "decision of the wrong kind", None);
                None
            }
        }
    }

    /// The peer closed its side: a request it did not finish is dropped.
    pub(super) fn on_eof(&mut self, t: &mut Transport, lp: &LoopState) {
        self.abandon(t, lp);
        if let Some(p) = &self.pending {
            debug!(
                "{}: request dropped, the body ended {} bytes short of its Content-Length",
                t.peer(),
                p.remaining
            );
        } else if !self.buf.is_empty() {
            debug!("{}: connection closed inside a request head", t.peer());
        }
        self.pending = None;
        self.buf = Vec::new();
    }

    /// Feeds bytes read from the socket.
    pub(super) fn receive<S: Send + 'static, H: Handler<State = S>>(
        &mut self,
        t: &mut Transport,
        input: &mut [u8],
        cx: &mut Cx<'_, H>,
    ) -> HttpOutcome<S> {
        if self.waiting.is_some() {
            // Not read while waiting; input that reaches here anyway keeps its order.
            t.stash_rest(input);
            return HttpOutcome::Used(input.len());
        }
        if std::mem::take(&mut self.between_requests) {
            // The next request on a kept-alive connection: it has the handshake timeout to
            // arrive whole (from accept, the first request has it already).
            self.request_deadline = cx.lp.now + ms(cx.lp.core.config.handshake_timeout);
        }
        let mut buffered = std::mem::take(&mut self.buf);
        if buffered.is_empty() {
            // Parse straight from the read buffer; copy only what is left incomplete.
            match self.process(t, input, cx) {
                Step::NeedMore(n) => {
                    self.buf.extend_from_slice(input.get(n..).unwrap_or_default());
                    HttpOutcome::Used(input.len())
                }
                Step::Upgraded(n, ws) => HttpOutcome::Upgraded {
                    ws,
                    used: n,
                    trailing: Vec::new(),
                },
                // Responses are piling up for a client that does not read them: the rest
                // waits (the caller stashes it) until the queue drains.
                Step::Paused(n) => HttpOutcome::Used(n),
                Step::Closed => HttpOutcome::Used(input.len()),
            }
        } else {
            buffered.extend_from_slice(input);
            match self.process(t, &mut buffered, cx) {
                Step::NeedMore(n) => {
                    buffered.drain(..n.min(buffered.len()));
                    self.buf = buffered;
                }
                Step::Upgraded(n, ws) => {
                    let trailing = buffered.split_off(n.min(buffered.len()));
                    return HttpOutcome::Upgraded {
                        ws,
                        used: input.len(),
                        trailing,
                    };
                }
                Step::Paused(n) => t.stash_rest(buffered.get(n..).unwrap_or_default()),
                Step::Closed => {}
            }
            HttpOutcome::Used(input.len())
        }
    }

    /// Parses requests from `data` (which starts at a request head or inside a body) and
    /// answers them.
    fn process<S: Send + 'static, H: Handler<State = S>>(
        &mut self,
        t: &mut Transport,
        data: &mut [u8],
        cx: &mut Cx<'_, H>,
    ) -> Step<S> {
        let mut pos = 0;
        loop {
            if let Some(p) = &mut self.pending {
                let take = p.remaining.min(data.len() - pos);
                p.request
                    .body_mut()
                    .extend_from_slice(data.get(pos..pos + take).unwrap_or_default());
                pos += take;
                p.remaining -= take;
                if p.remaining > 0 {
                    return Step::NeedMore(pos);
                }
                if let Some(p) = self.pending.take() {
                    self.respond(t, p.request, p.keep_alive, cx);
                }
                if !t.is_open() || self.stream.is_some() {
                    return Step::Closed;
                }
                let spent = cx.lp.spend_allowance();
                if t.read_paused() || cx.lp.has_publications() || spent {
                    // What the request published is delivered (and this connection held if a
                    // receiver is backed up) before the next request is read.
                    return Step::Paused(pos);
                }
                continue;
            }
            if pos == data.len() {
                return Step::NeedMore(pos);
            }
            let (request, head_len) = match self.parser.parse(data.get(pos..).unwrap_or_default()) {
                Ok(ParseStatus::Partial) => return Step::NeedMore(pos),
                Err(e) => {
                    debug!("bad request from {}: {e}", t.peer());
                    cx.lp.core.metrics().http_request(e.status());
                    t.queue(&mut cx.lp.pool, &e.response());
                    t.start_closing(cx.lp.now, ms(cx.lp.core.config.close_timeout));
                    return Step::Closed;
                }
                Ok(ParseStatus::Complete { request, head_len }) => (request, head_len),
            };
            pos += head_len;
            self.parser = RequestParser::new(cx.lp.core.config.request_limits);
            self.requests = self.requests.saturating_add(1);
            // Behind a trusted proxy (proxy.rs) the client is the one its headers name.
            let trusted = &cx.lp.core.config.trusted_proxies;
            let via_proxy = !trusted.is_empty() && proxy::trusted(trusted, t.peer().ip());
            if via_proxy && !t.ip_counted() {
                let (named, malformed) = proxy::forwarded_client(&request, trusted);
                if let Some(proxy::Malformed(header)) = malformed {
                    debug!("{}: malformed {header} header ignored", t.peer());
                }
                t.set_client(named);
            }
            // Per-address limits (limiter.rs): before any route, check or upgrade. A
            // connection's admission paid for its first request; an upgrade after earlier
            // requests on the same connection pays the rate once more. A trusted proxy's
            // connection was not admitted at accept (the proxy's own address is not limited):
            // an upgrade through it is a new connection of the client it names, counted until
            // the connection closes.
            let refusal = self.refusal.take().or_else(|| {
                if !request.wants_upgrade() {
                    return None;
                }
                self.charge_stream(t, cx.lp, via_proxy)
            });
            if let Some(r) = refusal {
                cx.lp.core.metrics().limit_refused(r.reason);
                if request.wants_upgrade() {
                    cx.lp.core.metrics().handshake(r.reason.status());
                }
                answer_and_close(
                    t,
                    cx.lp,
                    &request,
                    r.reason.status(),
                    r.reason.text(),
                    Some(r.retry_after),
                );
                return Step::Closed;
            }
            // DNS rebinding (host.rs): before any route, Origin check or upgrade.
            let config = &cx.lp.core.config;
            if let Err(refused) = host::check_host(&request, config.bind.ip(), &config.allowed_hosts) {
                if request.wants_upgrade() {
                    cx.lp.core.metrics().handshake(refused.status);
                }
                refuse(t, cx, &request, refused.status, refused.reason);
                return Step::Closed;
            }
            let length = http::body_length(&request);
            if request.wants_upgrade() {
                if length != Ok(0) {
                    let reason = "an upgrade request may not carry a body";
                    refuse(t, cx, &request, 400, reason);
                    cx.lp.core.metrics().handshake(400);
                    return Step::Closed;
                }
                return match upgrade(t, request, cx) {
                    UpgradeStep::Open(ws) => Step::Upgraded(pos, ws),
                    UpgradeStep::Wait(w) => {
                        // What follows the request (frames, if accepted) waits in the stash.
                        self.wait(t, w, cx.lp);
                        Step::Paused(pos)
                    }
                    UpgradeStep::Closed => Step::Closed,
                };
            }
            let keep_alive = http::wants_keep_alive(&request);
            let max_body = cx.lp.core.config.max_body_size;
            match length {
                Err(e) => {
                    refuse(t, cx, &request, e.status(), e.reason());
                    return Step::Closed;
                }
                Ok(n) if n > max_body as u64 => {
                    let reason = format!("request body over the limit of {max_body} bytes");
                    refuse(t, cx, &request, 413, &reason);
                    return Step::Closed;
                }
                Ok(n) if n as usize > cx.lp.core.info.message_room() => {
                    // A declared length is checked, not charged (see `Session::holding`): a
                    // body that could not fit in what is left of the budget is refused up
                    // front, as a WebSocket message is from its frame header.
                    refuse(t, cx, &request, 503, "server memory budget exhausted, try again later");
                    return Step::Closed;
                }
                Ok(0) => {
                    self.respond(t, request, keep_alive, cx);
                    if !t.is_open() || self.stream.is_some() {
                        return Step::Closed;
                    }
                    let spent = cx.lp.spend_allowance();
                    if t.read_paused() || cx.lp.has_publications() || spent {
                        return Step::Paused(pos);
                    }
                }
                Ok(n) => {
                    self.pending = Some(PendingBody {
                        request,
                        remaining: n as usize,
                        keep_alive,
                    });
                }
            }
        }
    }

    /// Answers one complete plain request: CORS preflight, the Origin rule for
    /// state-changing methods, then the handler.
    fn respond<H: Handler>(&mut self, t: &mut Transport, request: Request, keep_alive: bool, cx: &mut Cx<'_, H>) {
        let mut keep_alive = keep_alive && !cx.lp.shutting_down;
        let verdict = http::check_origin(&request, &cx.lp.core.config.origin_policy);
        let mut allowed_origin = None;
        let response = if http::is_preflight(&request) {
            match verdict {
                OriginVerdict::Allowed(origin) => {
                    let mut r = Response::status(204);
                    r.body.clear();
                    r.content_type.clear();
                    r.headers = http::preflight_headers(&request, origin);
                    r
                }
                _ => Response::text(403, "403 Forbidden: origin not allowed\n"),
            }
        } else if let (OriginVerdict::Refused(why), true) = (verdict, http::is_unsafe_method(request.method())) {
            Response::text(403, format!("403 Forbidden: {why}\n"))
        } else {
            let mut rcx = RequestContext {
                id: t.id(cx.lp),
                peer: t.peer(),
                client: t.client(),
                lp: &mut *cx.lp,
                deferrable: Deferrable::Response,
                deferral: Deferral::default(),
            };
            let handler = cx.handler;
            let result = guarded(|| handler.on_request(&request, &mut rcx));
            let deferred = std::mem::take(&mut rcx.deferral).outcome();
            if let OriginVerdict::Allowed(origin) = verdict {
                allowed_origin = Some(origin.to_owned());
            }
            match (result, deferred) {
                (Ok(_), Deferred::Pending(slot)) => {
                    // An event stream is opened by the answer `on_request` returns; a
                    // deferred answer cannot open one, so what it subscribed is undone now
                    // rather than left to a later request's answer.
                    if let Some(opening) = cx.lp.stream_opening.take() {
                        if opening.id == t.id(cx.lp) {
                            cx.lp.topics.remove_conn(t.id(cx.lp));
                            cx.lp.recoveries.remove_conn(t.id(cx.lp));
                            warn!(
                                "on_request for {}: a deferred answer cannot open an event stream",
                                request.path()
                            );
                        }
                    }
                    let kind = WaitKind::Response {
                        keep_alive,
                        allowed_origin,
                    };
                    self.wait(t, Waiting { slot, request, kind }, cx.lp);
                    return;
                }
                (Ok(_), Deferred::Invalid(why)) => {
                    error!("on_request for {} {}: {why}", request.method(), request.path());
                    keep_alive = false;
                    Response::status(500)
                }
                (Ok(r), Deferred::No) => with_cors(r, allowed_origin.as_deref()),
                (Err(panic), deferred) => {
                    if let Deferred::Pending(slot) = deferred {
                        slot.end();
                    }
                    error!(
                        "handler panicked in on_request for {} {}: {panic}",
                        request.method(),
                        request.path()
                    );
                    LoopStats::add(&cx.lp.stats().handler_panics, 1);
                    keep_alive = false;
                    Response::status(500)
                }
            }
        };
        if response.status == 403 {
            keep_alive = false;
        }
        self.send_response(t, &request, response, keep_alive, cx);
    }

    /// Sends the answer to a plain request (now, or once a deferred one is decided) and
    /// waits for the next request or closes.
    fn send_response<H>(
        &mut self,
        t: &mut Transport,
        request: &Request,
        mut response: Response,
        keep_alive: bool,
        cx: &mut Cx<'_, H>,
    ) {
        let head_only = request.method() == "HEAD";
        // An event stream is about to open (sse::begin's conditions): it is charged to the
        // per-address limits like an upgrade, and refused as one would be — the handler's
        // subscriptions undone, nothing of the stream sent.
        let opens_stream = response.status == 200
            && request.method() == "GET"
            && !cx.lp.shutting_down
            && cx.lp.stream_opening.as_ref().is_some_and(|o| o.id == t.id(cx.lp));
        if opens_stream {
            let trusted = &cx.lp.core.config.trusted_proxies;
            let via_proxy = !trusted.is_empty() && proxy::trusted(trusted, t.peer().ip());
            if let Some(r) = self.charge_stream(t, cx.lp, via_proxy) {
                cx.lp.stream_opening = None;
                cx.lp.topics.remove_conn(t.id(cx.lp));
                cx.lp.recoveries.remove_conn(t.id(cx.lp));
                cx.lp.core.metrics().limit_refused(r.reason);
                let (status, reason) = (r.reason.status(), r.reason.text());
                answer_and_close(t, cx.lp, request, status, reason, Some(r.retry_after));
                return;
            }
        }
        cx.lp.core.metrics().http_request(response.status);
        debug!(
            "{} {} {} -> {}",
            t.client(),
            request.method(),
            request.target(),
            response.status
        );
        if let Some(opening) = cx.lp.stream_opening.take() {
            self.stream = super::sse::begin(t, cx.lp, request, &response, &opening);
            if self.stream.is_some() {
                return;
            }
        }
        if head_only {
            response.body.shrink_to_fit();
        }
        let bytes = response.to_bytes(keep_alive, head_only);
        t.queue(&mut cx.lp.pool, &bytes);
        // A client pipelining requests without reading the answers is paused like any other.
        let config = &cx.lp.core.config;
        t.check_backpressure(config.backpressure_high_water, cx.lp.stats());
        if keep_alive {
            self.request_deadline = cx.lp.now + ms(config.keepalive_timeout);
            self.between_requests = true;
        } else {
            t.start_closing(cx.lp.now, ms(config.close_timeout));
        }
    }
}

/// Answers with a status and closes (framing errors, bodies over the limit).
fn refuse<H>(t: &mut Transport, cx: &mut Cx<'_, H>, request: &Request, status: u16, reason: &str) {
    // RFC 9110 §10.2.3: when to come back (the budget frees as queues drain).
    let retry_after = (status == 503).then_some(1);
    answer_and_close(t, cx.lp, request, status, reason, retry_after);
}

/// The CORS headers of an allowed cross-origin request (see `http::check_origin`).
fn with_cors(mut r: Response, allowed_origin: Option<&str>) -> Response {
    if let Some(origin) = allowed_origin {
        r.headers
            .push(("Access-Control-Allow-Origin".into(), origin.to_owned()));
        r.headers.push(("Vary".into(), "Origin".into()));
    }
    r
}

/// Answers with a status (and `Retry-After` in seconds, RFC 9110 §10.2.3, if given) and closes.
fn answer_and_close(
    t: &mut Transport,
    lp: &mut LoopState,
    request: &Request,
    status: u16,
    reason: &str,
    retry_after: Option<u64>,
) {
    debug!(
        "{} {} {} -> {status}: {reason}",
        t.client(),
        request.method(),
        request.path()
    );
    lp.core.metrics().http_request(status);
    let mut response = Response::text(
        status,
        format!("{status} {}: {reason}\n", handshake::reason_phrase(status)),
    );
    if let Some(secs) = retry_after {
        response.headers.push(("Retry-After".into(), secs.to_string()));
    }
    let bytes = response.to_bytes(false, request.method() == "HEAD");
    t.queue(&mut lp.pool, &bytes);
    t.start_closing(lp.now, ms(lp.core.config.close_timeout));
}

/// What an upgrade request came to.
enum UpgradeStep<S> {
    /// Accepted: the WebSocket phase, with the 101 queued.
    Open(Box<WsConn<S>>),
    /// The handler deferred the decision (`deferred.rs`).
    Wait(Waiting),
    /// Refused: the answer is queued and the connection closing.
    Closed,
}

/// Checks an upgrade request and asks the handler: the WebSocket phase with the 101 queued,
/// a refusal queued, or a decision to wait for.
fn upgrade<S: Send + 'static, H: Handler<State = S>>(
    t: &mut Transport,
    request: Request,
    cx: &mut Cx<'_, H>,
) -> UpgradeStep<S> {
    let core = cx.lp.core.clone();
    let config = &core.config;
    let mut refusal: Option<(Vec<u8>, u16, String)> = None;
    let mut accepted = None;
    match handshake::validate_upgrade(&request) {
        Err(e) => refusal = Some((e.response(), e.status(), e.to_string())),
        Ok(up) => match http::check_origin(&request, &config.origin_policy) {
            OriginVerdict::Refused(why) => {
                let body = format!("403 Forbidden: {why}\n");
                refusal = Some((Response::text(403, body).to_bytes(false, false), 403, why.to_owned()));
            }
            OriginVerdict::Allowed(_) | OriginVerdict::Absent => {
                let mut rcx = RequestContext {
                    id: t.id(cx.lp),
                    peer: t.peer(),
                    client: t.client(),
                    lp: &mut *cx.lp,
                    deferrable: Deferrable::Upgrade(TypeId::of::<S>()),
                    deferral: Deferral::default(),
                };
                let handler = cx.handler;
                let result = guarded(|| handler.on_upgrade(&request, &mut rcx));
                let deferred = std::mem::take(&mut rcx.deferral).outcome();
                match (result, deferred) {
                    (Err(panic), deferred) => {
                        if let Deferred::Pending(slot) = deferred {
                            slot.end();
                        }
                        error!("handler panicked in on_upgrade for {}: {panic}", request.path());
                        LoopStats::add(&cx.lp.stats().handler_panics, 1);
                        refusal = Some((Response::status(500).to_bytes(false, false), 500, panic));
                    }
                    (Ok(_), Deferred::Pending(slot)) => {
                        return UpgradeStep::Wait(Waiting {
                            slot,
                            request,
                            kind: WaitKind::Upgrade(up),
                        });
                    }
                    (Ok(_), Deferred::Invalid(why)) => {
                        error!("on_upgrade for {}: {why}", request.path());
                        refusal = Some((Response::status(500).to_bytes(false, false), 500, why.to_owned()));
                    }
                    (Ok(Err(resp)), Deferred::No) => {
                        let why = format!("refused by the handler with {}", resp.status);
                        refusal = Some((resp.to_bytes(false, false), resp.status, why));
                    }
                    (Ok(Ok(accept)), Deferred::No) => accepted = Some((up, accept)),
                }
            }
        },
    }
    let Some((up, accept)) = accepted else {
        let (bytes, status, why) =
            refusal.unwrap_or_else(|| (Response::status(500).to_bytes(false, false), 500, String::new()));
        refuse_upgrade(t, cx, &request, &bytes, status, &why);
        return UpgradeStep::Closed;
    };
    UpgradeStep::Open(open_upgrade(t, request, up, accept, cx))
}

/// Queues the refusal of an upgrade and starts closing.
fn refuse_upgrade<H>(t: &mut Transport, cx: &mut Cx<'_, H>, request: &Request, bytes: &[u8], status: u16, why: &str) {
    let core = cx.lp.core.clone();
    debug!("handshake from {} refused: {why}", t.peer());
    core.metrics().handshake(status);
    if let Some(obs) = &core.observer {
        obs.handshake(t.id(cx.lp), t.peer(), request, bytes);
    }
    t.queue(&mut cx.lp.pool, bytes);
    t.start_closing(cx.lp.now, ms(core.config.close_timeout));
}

/// Opens an accepted upgrade: the 101 (RFC 6455 §4.2.2) queued, the WebSocket phase made.
fn open_upgrade<S: Send + 'static, H: Handler<State = S>>(
    t: &mut Transport,
    request: Request,
    up: UpgradeRequest,
    accept: Accept<S>,
    cx: &mut Cx<'_, H>,
) -> Box<WsConn<S>> {
    let core = cx.lp.core.clone();
    let config = &core.config;
    let Accept {
        state,
        mut protocol,
        capture_frames,
        keep_request,
        deflate,
        headers,
        message_rate,
    } = accept;
    if protocol.as_ref().is_some_and(|p| !up.protocols.contains(p)) {
        log::warn!("handler chose subprotocol {protocol:?} that the client did not offer; answering without one");
        protocol = None;
    }
    let extra: Vec<(&str, &str)> = headers
        .iter()
        // `Accept::try_with_header` refused these already; a second line of defence, so
        // the handshake's own headers can never go out twice (RFC 6455 §4.2.2).
        .filter(|(n, v)| super::super::handler::header_allowed(n, v))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    // permessage-deflate (RFC 7692 §5): the first acceptable offer, under the server's mode,
    // unless the application turned it off for this connection.
    // Fair admission: past half the memory budget, a new connection of the dedicated mode
    // gets the shared mode's terms (no context takeover, pooled compressors, nothing held
    // while idle), so compressors kept for life cannot take the budget that every
    // connection's messages need.
    let budget = core.budget();
    let policy = match config.deflate {
        DeflateMode::Dedicated { .. } if budget.used() > budget.limit() / 2 => DeflateMode::Shared.policy(),
        mode => mode.policy(),
    };
    let negotiated = policy
        .filter(|_| deflate)
        .and_then(|policy| negotiate_deflate(&up.extensions, &policy));
    let write_response = |out: &mut Vec<u8>| {
        handshake::write_accept_response_with_extensions(
            out,
            up.key.as_bytes(),
            protocol.as_deref(),
            negotiated.as_ref().map(|(_, answer)| answer.as_str()),
            &extra,
        )
    };
    // The 101 goes straight into the outbound queue, unless someone keeps a copy of it.
    let observe = core.observer.is_some();
    let mut response = Vec::new();
    if capture_frames || observe {
        write_response(&mut response);
        t.queue(&mut cx.lp.pool, &response);
    } else {
        t.out.append(&mut cx.lp.pool, write_response);
    }
    core.metrics().handshake(101);
    if let Some(obs) = &core.observer {
        obs.handshake(t.id(cx.lp), t.peer(), &request, &response);
    }
    // Shedding drops queued messages but never the 101: a client must be able to read the
    // 1013 that follows it.
    t.out.protect_queued();
    let capture = (capture_frames || observe).then(|| Capture {
        request: request.clone(),
        response: if capture_frames { response } else { Vec::new() },
        frames_in: Vec::new(),
    });
    let mut ws = WebSocketCore::server();
    if let Some((params, _)) = negotiated {
        ws = ws.with_deflate(params, &config.websocket);
    }
    let opening = Opening {
        ws,
        target: cx.lp.intern_target(request.target()),
        request: keep_request.then_some(request),
        state,
        deflate_allowed: deflate && config.deflate.policy().is_some(),
        capture,
        throttle: Throttle::new(message_rate.unwrap_or(config.message_rate)),
    };
    Box::new(WsConn::new(opening, cx.lp.now))
}
