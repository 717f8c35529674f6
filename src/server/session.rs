//! One connection's life, sans-IO like the protocol core: bytes and the loop's clock go in;
//! bytes to send (its [`Outbound`] queue), handler calls and the next deadline come out.
//!
//! A session starts speaking HTTP/1.1: it parses request heads and bodies (RFC 9112), answers
//! plain requests through [`Handler::on_request`] and, for an upgrade (RFC 6455 §4.2), applies
//! the checks and the Origin policy, asks [`Handler::on_upgrade`] and switches to WebSocket,
//! where the core [`WebSocket`] turns bytes into messages for [`Handler::on_message`].
//!
//! It never touches a socket: the event loop reads into a buffer and calls
//! [`Session::receive`], writes what [`Session::out`] holds, tells it about end of input
//! ([`Session::on_eof`]), writes ([`Session::after_flush`]) and time
//! ([`Session::next_deadline`], [`Session::on_timeout`]), and looks at [`Session::io`] to know
//! when to half-close or drop the socket. The one exception is optional: a large message a
//! handler sends may be written straight from its buffer through a `Write` the loop lends.
//! Unit tests drive it with plain byte vectors.

use super::budget::{Charge, Frame};
use super::context::{Capture, ConnParts, Context, LoopState, RequestContext, WsFlags, WsRef};
use super::host;
use super::http::{self, OriginVerdict};
use super::metrics::{CloseSide, LoopStats};
use super::outbound::Outbound;
use super::timers::Millis;
use super::{Accept, ConnId, DeflateMode, Handler, Message, Response};
use crate::deflate::{self, BroadcastCompressor, Encoded};
use crate::frame::CloseCode;
use crate::handshake::deflate::negotiate_deflate;
use crate::handshake::{self, ParseStatus, Request, RequestParser};
use crate::observe::Direction;
use crate::protocol::{Event, State, WebSocket};
use log::{debug, error, info};
use std::io::Write;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Broadcast frames up to this size are copied into each receiver's queue (they coalesce with
/// other small frames into one write); larger ones are shared.
const SHARE_ABOVE: usize = 512;
/// After our last byte and a half-close, how long to keep draining the peer's bytes so the
/// kernel does not answer them with a reset that could destroy our Close frame in flight.
const LINGER_MS: Millis = 2000;

/// What the loop should do with the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Io {
    /// Read (unless paused) and write.
    Open,
    /// Write what is queued, then this session moves on by itself.
    Flushing,
    /// Everything is sent: shut the write side and read (discarding) until the peer closes
    /// or the linger deadline.
    Linger,
    /// Close the socket now.
    Done,
}

/// What happened to a message delivered to this session by fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Not a WebSocket, or closing: nothing queued.
    Skipped,
    /// Queued.
    Queued,
    /// Queued, and this receiver is backed up: the publisher should be paused.
    Congested,
    /// Not queued: the receiver was too far behind and is being closed (1008).
    SlowConsumerClosed,
}

/// A receiver that is backed up (its queue passed the high-water mark) and the publishers it
/// holds back.
#[derive(Debug)]
struct Congestion {
    since: Millis,
    /// Held back long enough: it no longer pauses publishers; its queue grows until
    /// `max_outbound` closes it, or it drains.
    stalled: bool,
    holding: Vec<ConnId>,
}

struct PendingBody {
    request: Request,
    remaining: usize,
    keep_alive: bool,
}

struct HttpState {
    /// A response went out and the connection waits for the next request (keep-alive).
    between_requests: bool,
    parser: RequestParser,
    /// Bytes of a request head (or pipelined requests) that arrived in pieces.
    buf: Vec<u8>,
    pending: Option<PendingBody>,
}

struct WsState<S> {
    ws: WebSocket,
    /// The request target: path and query string, as the client sent them; shared by every
    /// connection of the loop with the same target (see `LoopState::intern_target`).
    target: Arc<str>,
    request: Option<Box<Request>>,
    state: S,
    flags: WsFlags,
    ping_outstanding: bool,
    /// The code `on_close` was called with, once it has been: what the close log line states.
    close_notified: Option<CloseCode>,
    /// permessage-deflate was allowed for this connection at the upgrade (the server's mode
    /// was not off and the handler did not turn it off): what [`Context::deflate_policy`] reads.
    deflate_allowed: bool,
    capture: Option<Box<Capture>>,
}

enum Phase<S> {
    Http(Box<HttpState>),
    /// Inline, not boxed: an idle WebSocket is most of what a server holds, and a box costs an
    /// allocation header and a pointer per connection.
    Ws(WsState<S>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    No,
    /// Close once the queue is empty.
    AfterFlush,
    Linger,
    Done,
}

/// What a session needs from the loop for one step: the loop's state, the handler, and
/// (optionally) the socket for direct writes of large messages.
pub(crate) struct Cx<'a, H> {
    pub(crate) lp: &'a mut LoopState,
    pub(crate) handler: &'a H,
    pub(crate) direct: Option<&'a mut dyn Write>,
}

/// One connection. See the module docs.
pub(crate) struct Session<S> {
    pub(crate) id: ConnId,
    peer: CompactAddr,
    phase: Phase<S>,
    pub(crate) out: Outbound,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    last_recv: Millis,
    /// HTTP: handshake or keep-alive deadline. Closing: close or linger deadline. WebSocket
    /// after our Close: when to give up waiting for the peer's.
    deadline: Millis,
    closing: Closing,
    /// The peer has closed its side.
    eof: bool,
    /// Input taken from the socket but not processed yet (the session paused in the middle).
    stash: Stash,
    /// Not read: our own queue is over the high-water mark.
    backpressured: bool,
    /// Not read: this many backed-up subscribers hold this publisher.
    holds: u16,
    congestion: Option<Box<Congestion>>,
    /// When the loop's timers will call this session back.
    pub(crate) timer_at: Millis,
    charge: Charge,
    queued_reported: u32,
}

/// The peer's address in 8 bytes for IPv4 (a `SocketAddr` takes 32 on every connection);
/// IPv6 addresses are boxed.
enum CompactAddr {
    V4([u8; 4], u16),
    V6(Box<SocketAddr>),
}

impl CompactAddr {
    fn new(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => CompactAddr::V4(a.ip().octets(), a.port()),
            v6 => CompactAddr::V6(Box::new(v6)),
        }
    }

    fn get(&self) -> SocketAddr {
        match self {
            CompactAddr::V4(ip, port) => SocketAddr::from((*ip, *port)),
            CompactAddr::V6(a) => **a,
        }
    }
}

/// Input taken from the socket but not processed yet; boxed, since almost every connection
/// never needs one (8 bytes instead of a `Vec`'s 24 on every connection).
#[derive(Default)]
#[allow(clippy::box_collection)] // on purpose: 8 bytes while absent, where a Vec takes 24
struct Stash(Option<Box<Vec<u8>>>);

impl Stash {
    fn is_empty(&self) -> bool {
        self.0.as_ref().map_or(true, |v| v.is_empty())
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.0.get_or_insert_with(Default::default).extend_from_slice(bytes);
    }

    fn take(&mut self) -> Vec<u8> {
        self.0.take().map(|b| *b).unwrap_or_default()
    }

    fn clear(&mut self) {
        self.0 = None;
    }
}

/// Runs a handler callback, turning a panic into an error message.
/// The most a loop's scratch copy of a deflated message keeps between messages.
const SCRATCH_KEEP: usize = 64 * 1024;

/// What an incoming message or body may still grow to: up to the level where shedding stops,
/// so admitting it never forces a shed (RFC 6455 §10.4).
///
/// **Fair share.** However the rest of the budget is taken (compressors, a join storm's
/// notices, history), every connection may always have a message of its share of the last
/// tenth in flight: `limit / 10 / connections`. The shares add up to that tenth, so they cannot
/// take the server past its budget, and no one client's (or mode's) use of the budget refuses
/// every other connection's messages.
fn budget_headroom(lp: &LoopState) -> usize {
    lp.core.info.message_room()
}

fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic without a message".to_owned()
        }
    })
}

impl<S: Send + 'static> Session<S> {
    pub(crate) fn new(id: ConnId, peer: SocketAddr, lp: &LoopState) -> Self {
        let config = &lp.core.config;
        Session {
            id,
            peer: CompactAddr::new(peer),
            phase: Phase::Http(Box::new(HttpState {
                between_requests: false,
                parser: RequestParser::new(config.request_limits),
                buf: Vec::new(),
                pending: None,
            })),
            out: Outbound::default(),
            bytes_in: 0,
            bytes_out: 0,
            last_recv: lp.now,
            deadline: lp.now + config.handshake_timeout.as_millis() as Millis,
            closing: Closing::No,
            eof: false,
            stash: Stash::default(),
            backpressured: false,
            holds: 0,
            congestion: None,
            timer_at: super::timers::NOT_SCHEDULED,
            charge: Charge::default(),
            queued_reported: 0,
        }
    }

    // ----- state the loop reads ------------------------------------------------------------

    /// The peer's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer.get()
    }

    /// What the loop should do with the socket now.
    pub(crate) fn io(&self) -> Io {
        match self.closing {
            Closing::No => Io::Open,
            Closing::AfterFlush => Io::Flushing,
            Closing::Linger => Io::Linger,
            Closing::Done => Io::Done,
        }
    }

    /// Whether the loop should read from the socket (and feed the bytes in).
    pub(crate) fn wants_read(&self) -> bool {
        match self.closing {
            Closing::No => !self.eof && !self.read_paused() && self.stash.is_empty(),
            Closing::Linger => !self.eof,
            Closing::AfterFlush | Closing::Done => false,
        }
    }

    fn read_paused(&self) -> bool {
        self.backpressured || self.holds > 0
    }

    /// Whether the loop may write the queue now. An HTTP request that published into a
    /// backed-up topic waits for its answer while a receiver holds it: the response is the
    /// publisher's signal to go on, so it goes out once the receivers have drained (or
    /// stopped holding, after `fanout_stall_timeout`).
    pub(crate) fn may_write(&self) -> bool {
        !(self.holds > 0 && matches!(self.phase, Phase::Http(_)) && self.closing == Closing::No)
    }

    /// Not read because its own queue is over the high-water mark (the fuzz harness checks it).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn is_backpressured(&self) -> bool {
        self.backpressured
    }

    /// Whether an input stash waits to be fed (and reading is not paused).
    pub(crate) fn stash_ready(&self) -> bool {
        !self.stash.is_empty() && self.closing == Closing::No && !self.read_paused()
    }

    /// Takes the stash out to feed it; the caller gives back what it did not use with
    /// [`Session::stash_rest`].
    pub(crate) fn take_stash(&mut self) -> Vec<u8> {
        self.stash.take()
    }

    /// Keeps input the session did not take (it paused in the middle of it).
    pub(crate) fn stash_rest(&mut self, rest: &[u8]) {
        if self.closing == Closing::No && !rest.is_empty() {
            self.stash.extend_from_slice(rest);
        }
    }

    /// Bytes this connection holds in buffers, for the memory budget: queued output it owns,
    /// stashed input, a request head or body in progress and a WebSocket message being
    /// reassembled. Only bytes that arrived count: a declared `Content-Length` or frame length
    /// is a promise, checked against the limits (and the budget's headroom) when it is read,
    /// never charged in advance — otherwise sockets that declare much and send nothing would
    /// use up the budget for everyone (issue 18, break 3).
    pub(crate) fn holding(&self) -> usize {
        let phase = match &self.phase {
            Phase::Http(h) => h.buf.capacity() + h.pending.as_ref().map_or(0, |p| p.request.body().len()),
            // Reassembly, inflated text and compressor state.
            Phase::Ws(w) => w.ws.memory_held(),
        };
        self.out.owned_len() + self.stash.len() + phase
    }

    /// What closing this connection would let go of, to choose whom to shed when the server is
    /// over its memory budget: what it holds itself plus the shared broadcast frames its queue
    /// still references. Those frames are charged to the budget once (by the frame, not by any
    /// receiver), so they are not in [`Session::holding`]; but a subscriber that stopped
    /// reading keeps every frame published since alive, and it is the one to close.
    pub(crate) fn shed_weight(&self) -> usize {
        self.holding()
            .saturating_add(self.out.len().saturating_sub(self.out.owned_len()))
    }

    /// Charges what the connection holds to the budget and its queue to the loop's gauge.
    pub(crate) fn settle(&mut self, lp: &LoopState) {
        self.charge.settle(lp.core.budget(), self.holding());
        let queued = u32::try_from(self.out.len()).unwrap_or(u32::MAX);
        if queued != self.queued_reported {
            LoopStats::gauge(
                &lp.stats().queued_bytes,
                i64::from(queued) - i64::from(self.queued_reported),
            );
            self.queued_reported = queued;
        }
    }

    /// Gives back everything charged (the connection is going).
    pub(crate) fn release_charges(&mut self, lp: &LoopState) {
        self.charge.settle(lp.core.budget(), 0);
        LoopStats::gauge(&lp.stats().queued_bytes, -i64::from(self.queued_reported));
        self.queued_reported = 0;
    }

    // ----- input ---------------------------------------------------------------------------

    /// Feeds bytes read from the socket; returns how many were consumed. It stops early, with
    /// input left, after a callback that published (the loop delivers, then feeds the rest)
    /// or when the session must not take more now ([`Session::wants_read`] turns false: the
    /// loop stashes the rest).
    pub(crate) fn receive<H: Handler<State = S>>(&mut self, input: &mut [u8], cx: &mut Cx<'_, H>) -> usize {
        self.last_recv = cx.lp.now;
        match self.closing {
            Closing::No => {}
            // Closing: whatever the peer still sends is read and dropped.
            _ => return input.len(),
        }
        match self.phase {
            Phase::Http(_) => self.http_receive(input, cx),
            Phase::Ws(_) => self.ws_receive(input, cx),
        }
    }

    /// The peer closed its side. A request or message that arrived whole before it is still
    /// answered: the queue is flushed, then the connection closed.
    pub(crate) fn on_eof<H: Handler<State = S>>(&mut self, cx: &mut Cx<'_, H>) {
        self.eof = true;
        match self.closing {
            Closing::Linger | Closing::Done => {
                self.closing = Closing::Done;
                return;
            }
            Closing::AfterFlush => return,
            Closing::No => {}
        }
        match &mut self.phase {
            Phase::Http(h) => {
                if let Some(p) = &h.pending {
                    debug!(
                        "{}: request dropped, the body ended {} bytes short of its Content-Length",
                        self.peer.get(),
                        p.remaining
                    );
                } else if !h.buf.is_empty() {
                    debug!("{}: connection closed inside a request head", self.peer.get());
                }
                h.pending = None;
                h.buf = Vec::new();
            }
            Phase::Ws(w) => {
                let code = w.ws.close_code().unwrap_or(CloseCode::ABNORMAL);
                self.notify_close(cx, code, "peer closed the connection");
            }
        }
        self.stash.clear();
        self.closing = if self.out.is_empty() {
            Closing::Done
        } else {
            Closing::AfterFlush
        };
    }

    // ----- HTTP ----------------------------------------------------------------------------

    fn http_receive<H: Handler<State = S>>(&mut self, input: &mut [u8], cx: &mut Cx<'_, H>) -> usize {
        let Phase::Http(h) = &mut self.phase else { return 0 };
        if std::mem::take(&mut h.between_requests) {
            // The next request on a kept-alive connection: it has the handshake timeout to
            // arrive whole (from accept, the first request has it already).
            self.deadline = cx.lp.now + cx.lp.core.config.handshake_timeout.as_millis() as Millis;
        }
        let mut buffered = std::mem::take(&mut h.buf);
        if buffered.is_empty() {
            // Parse straight from the read buffer; copy only what is left incomplete.
            match self.http_process(input, cx) {
                HttpStep::NeedMore(n) => {
                    if let Phase::Http(h) = &mut self.phase {
                        h.buf.extend_from_slice(input.get(n..).unwrap_or_default());
                    }
                    input.len()
                }
                HttpStep::Upgraded(n) => n + self.ws_receive(input.get_mut(n..).unwrap_or_default(), cx),
                // Responses are piling up for a client that does not read them: the rest
                // waits (the loop stashes it) until the queue drains.
                HttpStep::Paused(n) => n,
                HttpStep::Closed => input.len(),
            }
        } else {
            buffered.extend_from_slice(input);
            match self.http_process(&mut buffered, cx) {
                HttpStep::NeedMore(n) => {
                    buffered.drain(..n.min(buffered.len()));
                    if let Phase::Http(h) = &mut self.phase {
                        h.buf = buffered;
                    }
                }
                HttpStep::Upgraded(n) => {
                    let mut rest = buffered.split_off(n.min(buffered.len()));
                    let used = self.ws_receive(&mut rest, cx);
                    // These bytes came before anything still in the caller's hands.
                    self.stash_rest(rest.get(used..).unwrap_or_default());
                }
                HttpStep::Paused(n) => self.stash_rest(buffered.get(n..).unwrap_or_default()),
                HttpStep::Closed => {}
            }
            input.len()
        }
    }

    /// Parses requests from `data` (which starts at a request head or inside a body) and
    /// answers them.
    fn http_process<H: Handler<State = S>>(&mut self, data: &mut [u8], cx: &mut Cx<'_, H>) -> HttpStep {
        let mut pos = 0;
        loop {
            let Phase::Http(h) = &mut self.phase else {
                return HttpStep::Closed;
            };
            if let Some(p) = &mut h.pending {
                let take = p.remaining.min(data.len() - pos);
                p.request
                    .body_mut()
                    .extend_from_slice(data.get(pos..pos + take).unwrap_or_default());
                pos += take;
                p.remaining -= take;
                if p.remaining > 0 {
                    return HttpStep::NeedMore(pos);
                }
                if let Some(p) = h.pending.take() {
                    self.respond(p.request, p.keep_alive, cx);
                }
                if self.closing != Closing::No {
                    return HttpStep::Closed;
                }
                let spent = cx.lp.spend_allowance();
                if self.read_paused() || cx.lp.has_publications() || spent {
                    // What the request published is delivered (and this connection held if a
                    // receiver is backed up) before the next request is read.
                    return HttpStep::Paused(pos);
                }
                continue;
            }
            if pos == data.len() {
                return HttpStep::NeedMore(pos);
            }
            let (request, head_len) = match h.parser.parse(data.get(pos..).unwrap_or_default()) {
                Ok(ParseStatus::Partial) => return HttpStep::NeedMore(pos),
                Err(e) => {
                    debug!("bad request from {}: {e}", self.peer.get());
                    cx.lp.core.metrics().http_request(e.status());
                    let bytes = e.response();
                    self.queue_bytes(cx.lp, &bytes);
                    self.start_closing(cx.lp);
                    return HttpStep::Closed;
                }
                Ok(ParseStatus::Complete { request, head_len }) => (request, head_len),
            };
            pos += head_len;
            h.parser = RequestParser::new(cx.lp.core.config.request_limits);
            // DNS rebinding (host.rs): before any route, Origin check or upgrade.
            let config = &cx.lp.core.config;
            if let Err(refused) = host::check_host(&request, config.bind.ip(), &config.allowed_hosts) {
                if request.wants_upgrade() {
                    cx.lp.core.metrics().handshake(refused.status);
                }
                self.refuse_http(cx, &request, refused.status, refused.reason);
                return HttpStep::Closed;
            }
            let length = http::body_length(&request);
            if request.wants_upgrade() {
                if length != Ok(0) {
                    let reason = "an upgrade request may not carry a body";
                    self.refuse_http(cx, &request, 400, reason);
                    cx.lp.core.metrics().handshake(400);
                    return HttpStep::Closed;
                }
                return if self.upgrade(request, cx) {
                    HttpStep::Upgraded(pos)
                } else {
                    HttpStep::Closed
                };
            }
            let keep_alive = http::wants_keep_alive(&request);
            match length {
                Err(e) => {
                    self.refuse_http(cx, &request, e.status(), e.reason());
                    return HttpStep::Closed;
                }
                Ok(n) if n > cx.lp.core.config.max_body_size as u64 => {
                    let reason = format!(
                        "request body over the limit of {} bytes",
                        cx.lp.core.config.max_body_size
                    );
                    self.refuse_http(cx, &request, 413, &reason);
                    return HttpStep::Closed;
                }
                Ok(n) if n as usize > budget_headroom(cx.lp) => {
                    // A declared length is checked, not charged (see `holding`): a body that
                    // could not fit in what is left of the budget is refused up front, as a
                    // WebSocket message is from its frame header.
                    self.refuse_http(cx, &request, 503, "server memory budget exhausted, try again later");
                    return HttpStep::Closed;
                }
                Ok(0) => {
                    self.respond(request, keep_alive, cx);
                    if self.closing != Closing::No {
                        return HttpStep::Closed;
                    }
                    let spent = cx.lp.spend_allowance();
                    if self.read_paused() || cx.lp.has_publications() || spent {
                        return HttpStep::Paused(pos);
                    }
                }
                Ok(n) => {
                    if let Phase::Http(h) = &mut self.phase {
                        h.pending = Some(PendingBody {
                            request,
                            remaining: n as usize,
                            keep_alive,
                        });
                    }
                }
            }
        }
    }

    /// Answers with a status and closes (framing errors, bodies over the limit).
    fn refuse_http<H>(&mut self, cx: &mut Cx<'_, H>, request: &Request, status: u16, reason: &str) {
        debug!(
            "{} {} {} -> {status}: {reason}",
            self.peer.get(),
            request.method(),
            request.path()
        );
        cx.lp.core.metrics().http_request(status);
        let mut response = Response::text(
            status,
            format!("{status} {}: {reason}\n", handshake::reason_phrase(status)),
        );
        if status == 503 {
            // RFC 9110 §10.2.3: when to come back (the budget frees as queues drain).
            response.headers.push(("Retry-After".into(), "1".into()));
        }
        let bytes = response.to_bytes(false, request.method() == "HEAD");
        self.queue_bytes(cx.lp, &bytes);
        self.start_closing(cx.lp);
    }

    /// Answers one complete plain request: CORS preflight, the Origin rule for
    /// state-changing methods, then the handler.
    fn respond<H: Handler<State = S>>(&mut self, request: Request, keep_alive: bool, cx: &mut Cx<'_, H>) {
        let mut keep_alive = keep_alive && !cx.lp.shutting_down;
        let head_only = request.method() == "HEAD";
        let verdict = http::check_origin(&request, &cx.lp.core.config.origin_policy);
        let mut response = if http::is_preflight(&request) {
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
                id: self.id,
                peer: self.peer.get(),
                lp: &mut *cx.lp,
            };
            let handler = cx.handler;
            match guarded(|| handler.on_request(&request, &mut rcx)) {
                Ok(mut r) => {
                    if let OriginVerdict::Allowed(origin) = verdict {
                        r.headers
                            .push(("Access-Control-Allow-Origin".into(), origin.to_owned()));
                        r.headers.push(("Vary".into(), "Origin".into()));
                    }
                    r
                }
                Err(panic) => {
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
        cx.lp.core.metrics().http_request(response.status);
        debug!(
            "{} {} {} -> {}",
            self.peer.get(),
            request.method(),
            request.target(),
            response.status
        );
        if head_only {
            response.body.shrink_to_fit();
        }
        let bytes = response.to_bytes(keep_alive, head_only);
        self.queue_bytes(cx.lp, &bytes);
        // A client pipelining requests without reading the answers is paused like any other.
        self.check_backpressure(cx.lp);
        if keep_alive {
            self.deadline = cx.lp.now + cx.lp.core.config.keepalive_timeout.as_millis() as Millis;
            if let Phase::Http(h) = &mut self.phase {
                h.between_requests = true;
            }
        } else {
            self.start_closing(cx.lp);
        }
    }

    /// Checks an upgrade request and either switches to WebSocket (true) or queues the refusal.
    fn upgrade<H: Handler<State = S>>(&mut self, request: Request, cx: &mut Cx<'_, H>) -> bool {
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
                        id: self.id,
                        peer: self.peer.get(),
                        lp: &mut *cx.lp,
                    };
                    let handler = cx.handler;
                    match guarded(|| handler.on_upgrade(&request, &mut rcx)) {
                        Err(panic) => {
                            error!("handler panicked in on_upgrade for {}: {panic}", request.path());
                            LoopStats::add(&cx.lp.stats().handler_panics, 1);
                            refusal = Some((Response::status(500).to_bytes(false, false), 500, panic));
                        }
                        Ok(Err(resp)) => {
                            let why = format!("refused by the handler with {}", resp.status);
                            refusal = Some((resp.to_bytes(false, false), resp.status, why));
                        }
                        Ok(Ok(accept)) => accepted = Some((up, accept)),
                    }
                }
            },
        }
        let Some((up, accept)) = accepted else {
            let (bytes, status, why) =
                refusal.unwrap_or_else(|| (Response::status(500).to_bytes(false, false), 500, String::new()));
            debug!("handshake from {} refused: {why}", self.peer.get());
            core.metrics().handshake(status);
            if let Some(obs) = &core.observer {
                obs.handshake(self.id, self.peer.get(), &request, &bytes);
            }
            self.queue_bytes(cx.lp, &bytes);
            self.start_closing(cx.lp);
            return false;
        };
        let Accept {
            state,
            mut protocol,
            capture_frames,
            keep_request,
            deflate,
            headers,
        } = accept;
        if protocol.as_ref().is_some_and(|p| !up.protocols.contains(p)) {
            log::warn!("handler chose subprotocol {protocol:?} that the client did not offer; answering without one");
            protocol = None;
        }
        let extra: Vec<(&str, &str)> = headers
            .iter()
            // `Accept::try_with_header` refused these already; a second line of defence, so
            // the handshake's own headers can never go out twice (RFC 6455 §4.2.2).
            .filter(|(n, v)| super::handler::header_allowed(n, v))
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
        let mut response = Vec::with_capacity(200);
        handshake::write_accept_response_with_extensions(
            &mut response,
            up.key.as_bytes(),
            protocol.as_deref(),
            negotiated.as_ref().map(|(_, answer)| answer.as_str()),
            &extra,
        );
        core.metrics().handshake(101);
        if let Some(obs) = &core.observer {
            obs.handshake(self.id, self.peer.get(), &request, &response);
        }
        self.queue_bytes(cx.lp, &response);
        // Shedding drops queued messages but never the 101: a client must be able to read the
        // 1013 that follows it.
        self.out.protect_queued();
        let target = cx.lp.intern_target(request.target());
        let path = request.path().to_owned();
        info!("open {} {} #{}", self.peer.get(), path, self.id);
        debug!("open #{} target {}", self.id, request.target());
        let observe = core.observer.is_some();
        let capture = (capture_frames || observe).then(|| {
            Box::new(Capture {
                request: request.clone(),
                response: if capture_frames { response } else { Vec::new() },
                frames_in: Vec::new(),
            })
        });
        let mut ws = WebSocket::server(config.websocket);
        if let Some((params, _)) = negotiated {
            ws = ws.with_deflate(params);
        }
        self.phase = Phase::Ws(WsState {
            ws,
            target,
            request: keep_request.then(|| Box::new(request)),
            state,
            flags: WsFlags::default(),
            ping_outstanding: false,
            close_notified: None,
            deflate_allowed: deflate && config.deflate.policy().is_some(),
            capture,
        });
        self.last_recv = cx.lp.now;
        LoopStats::gauge(&cx.lp.stats().websockets, 1);
        core.metrics().websocket_path(&path, 1);
        self.call(cx, true, |h, ctx| h.on_open(ctx), "on_open");
        true
    }

    // ----- WebSocket -----------------------------------------------------------------------

    fn ws_receive<H: Handler<State = S>>(&mut self, input: &mut [u8], cx: &mut Cx<'_, H>) -> usize {
        let core = cx.lp.core.clone();
        let Phase::Ws(w) = &mut self.phase else { return 0 };
        w.ping_outstanding = false;
        // Kept (raw, still masked) for the observer and `Context::frames_in`: receive()
        // unmasks in place.
        let raw = w.capture.is_some().then(|| input.to_vec());
        let mut pos = 0;
        while pos < input.len() {
            let Phase::Ws(w) = &mut self.phase else {
                return input.len();
            };
            let WsState {
                ws,
                target,
                request,
                state,
                flags,
                deflate_allowed,
                capture,
                ..
            } = w;
            // A message may only grow as far as the memory budget allows (RFC 6455 §10.4):
            // up to the level where shedding stops, so admitting it never forces a shed.
            let room = ws.buffered_message_len().saturating_add(budget_headroom(cx.lp));
            ws.set_max_message_size(core.config.websocket.max_message_size.min(room));
            let ws_state = ws.state();
            // With permessage-deflate the handler may compress with this connection's
            // compressor, so the message is copied out of the `WebSocket` first (the inflated
            // bytes live in it); without, it is handed over where it lies, zero-copy.
            let deflate_on = ws.deflate_params().is_some();
            let start = pos;
            let mut auto = Vec::new();
            let received = match ws.receive(input.get_mut(pos..).unwrap_or_default(), &mut auto) {
                Ok(r) => r,
                Err(err) => {
                    debug!("{} broke the protocol: {err}", self.peer.get());
                    if let Some(obs) = &core.observer {
                        obs.protocol_error(self.id, self.peer.get(), &err);
                        obs.frames(self.id, self.peer.get(), Direction::Sent, &auto);
                    }
                    core.metrics().close_code(CloseSide::Sent, err.close_code().0);
                    self.queue_bytes(cx.lp, &auto);
                    self.notify_close(cx, err.close_code(), err.close_reason());
                    self.start_closing(cx.lp);
                    return input.len();
                }
            };
            pos += received.consumed;
            let Some(event) = received.event else {
                self.queue_bytes(cx.lp, &auto);
                break;
            };
            cx.lp.message_allowance = cx.lp.message_allowance.saturating_sub(1);
            if let (Some(c), Some(raw)) = (capture.as_mut(), raw.as_ref()) {
                c.frames_in.extend_from_slice(raw.get(start..pos).unwrap_or_default());
                if let Some(obs) = &core.observer {
                    obs.frames(self.id, self.peer.get(), Direction::Received, &c.frames_in);
                }
            }
            let mut closed_by_peer = None;
            let mut text_copy = std::mem::take(&mut cx.lp.text_scratch);
            let mut binary_copy = std::mem::take(&mut cx.lp.binary_scratch);
            let mut copied = None;
            let message = match event {
                Event::Text(t) if deflate_on => {
                    text_copy.push_str(t);
                    copied = Some(true);
                    None
                }
                Event::Binary(b) if deflate_on => {
                    binary_copy.extend_from_slice(b);
                    copied = Some(false);
                    None
                }
                Event::Text(t) => Some(Message::Text(t)),
                Event::Binary(b) => Some(Message::Binary(b)),
                Event::Close(frame) => {
                    let (code, reason) =
                        frame.map_or((CloseCode::NO_STATUS, String::new()), |f| (f.code, f.reason.to_owned()));
                    core.metrics().close_code(CloseSide::Received, code.0);
                    if !auto.is_empty() {
                        core.metrics().close_code(CloseSide::Sent, code.0);
                    }
                    closed_by_peer = Some((code, reason));
                    None
                }
                Event::Ping(_) | Event::Pong(_) => None,
            };
            // The protocol's own answer (Pong, Close reply) goes out first; a peer that sends
            // pings and never reads the pongs is paused like one that never reads echoes.
            if !auto.is_empty() {
                if let Some(obs) = &core.observer {
                    obs.frames(self.id, self.peer.get(), Direction::Sent, &auto);
                }
                self.out.append(&mut cx.lp.pool, |v| v.extend_from_slice(&auto));
                if !self.backpressured && self.out.len() > core.config.backpressure_high_water {
                    self.backpressured = true;
                    LoopStats::add(&cx.lp.stats().backpressure_pauses, 1);
                }
            }
            let (message, ws_ref) = match (message, copied) {
                (Some(m), _) => (Some(m), WsRef::Snapshot(ws_state)),
                (None, Some(true)) => (Some(Message::Text(&text_copy)), WsRef::Live(ws)),
                (None, Some(false)) => (Some(Message::Binary(&binary_copy)), WsRef::Live(ws)),
                (None, None) => (None, WsRef::Snapshot(ws_state)),
            };
            if let Some(message) = message {
                LoopStats::add(&cx.lp.stats().messages_in, 1);
                // Copies of what the handler sends, for the observer and `Context::frames_out`.
                let mut tap = capture.is_some().then(Vec::new);
                let mut ctx = Context {
                    conn: ConnParts {
                        id: self.id,
                        peer: self.peer.get(),
                        target,
                        request: request.as_deref(),
                        state,
                        ws: ws_ref,
                        out: &mut self.out,
                        can_send: true,
                        flags: &mut *flags,
                        deflate_allowed: *deflate_allowed,
                        capture: capture.as_deref(),
                        tap: tap.as_mut(),
                        direct: cx.direct.as_mut().map(|d| &mut **d as &mut dyn Write),
                    },
                    lp: &mut *cx.lp,
                };
                let handler = cx.handler;
                let result = guarded(|| handler.on_message(&mut ctx, message));
                text_copy.clear();
                binary_copy.clear();
                // Kept for the next message, but not at the size of the largest ever seen:
                // a loop's scratch must not stay at 64 MiB, uncharged, after one such message.
                text_copy.shrink_to(SCRATCH_KEEP);
                binary_copy.shrink_to(SCRATCH_KEEP);
                cx.lp.text_scratch = text_copy;
                cx.lp.binary_scratch = binary_copy;
                if let (Some(obs), Some(tap)) = (&core.observer, tap.filter(|t| !t.is_empty())) {
                    obs.frames(self.id, self.peer.get(), Direction::Sent, &tap);
                }
                if let Some(c) = capture.as_mut() {
                    c.frames_in.clear();
                }
                if let Err(panic) = result {
                    self.handler_panicked(cx, "on_message", &panic);
                    return input.len();
                }
                self.after_callback(cx);
            } else if let Some(c) = capture.as_mut() {
                c.frames_in.clear();
            }
            if let Some((code, reason)) = closed_by_peer {
                self.notify_close(cx, code, &reason);
                // RFC 6455 §7.1.1: the server closes the TCP connection first, once our Close
                // reply (already queued) is out.
                self.start_closing(cx.lp);
                return input.len();
            }
            if self.closing != Closing::No {
                return input.len();
            }
            if cx.lp.has_publications() || self.read_paused() || cx.lp.message_allowance == 0 {
                // Let the loop deliver what was published (and pause us if a subscriber is
                // backed up) before the next message; past this turn's allowance, the rest
                // waits for the next turn.
                break;
            }
        }
        if let Phase::Ws(w) = &mut self.phase {
            w.ws.release_event();
        }
        pos
    }

    /// Applies what a callback asked for: a close, a failed direct write, backpressure.
    fn after_callback<H>(&mut self, cx: &mut Cx<'_, H>) {
        let Phase::Ws(w) = &mut self.phase else { return };
        let direct = std::mem::take(&mut cx.lp.direct_written);
        if direct > 0 {
            self.bytes_out += direct;
            LoopStats::add(&cx.lp.stats().bytes_out, direct);
        }
        if w.flags.write_failed {
            self.closing = Closing::Done;
            return;
        }
        if let Some(request) = w.flags.close_request.take() {
            let (code, reason) = *request;
            self.request_close(cx.lp, code, &reason);
        }
        self.check_backpressure(cx.lp);
    }

    fn check_backpressure(&mut self, lp: &LoopState) {
        if !self.backpressured && self.out.len() > lp.core.config.backpressure_high_water {
            // Stop reading until the peer takes what we queued (RFC 6455 leaves flow control
            // to TCP; this keeps our memory bounded).
            self.backpressured = true;
            LoopStats::add(&lp.stats().backpressure_pauses, 1);
        }
    }

    fn handler_panicked<H>(&mut self, cx: &mut Cx<'_, H>, callback: &str, panic: &str) {
        error!(
            "handler panicked in {callback} for #{} {}: {panic}",
            self.id,
            self.peer.get()
        );
        LoopStats::add(&cx.lp.stats().handler_panics, 1);
        if let Phase::Ws(w) = &mut self.phase {
            w.flags.close_request = None;
        }
        // RFC 6455 §7.4.1: 1011, "an unexpected condition that prevented it from fulfilling
        // the request". The connection is read no more; on_close still runs when it goes, so
        // the application can clean up.
        self.request_close(cx.lp, CloseCode::INTERNAL_ERROR, "internal error");
        self.start_closing(cx.lp);
    }

    /// Runs a callback other than on_message with a [`Context`].
    fn call<H: Handler<State = S>>(
        &mut self,
        cx: &mut Cx<'_, H>,
        can_send: bool,
        f: impl FnOnce(&H, &mut Context<'_, S>),
        name: &str,
    ) {
        let core = cx.lp.core.clone();
        let Phase::Ws(w) = &mut self.phase else { return };
        let WsState {
            ws,
            target,
            request,
            state,
            flags,
            deflate_allowed,
            capture,
            ..
        } = w;
        let mut tap = capture.is_some().then(Vec::new);
        let mut ctx = Context {
            conn: ConnParts {
                id: self.id,
                peer: self.peer.get(),
                target,
                request: request.as_deref(),
                can_send: can_send && ws.can_send(),
                state,
                ws: WsRef::Live(ws),
                out: &mut self.out,
                flags: &mut *flags,
                deflate_allowed: *deflate_allowed,
                capture: capture.as_deref(),
                tap: tap.as_mut(),
                direct: None,
            },
            lp: &mut *cx.lp,
        };
        let handler = cx.handler;
        let result = guarded(|| f(handler, &mut ctx));
        if let (Some(obs), Some(tap)) = (&core.observer, tap.filter(|t| !t.is_empty())) {
            obs.frames(self.id, self.peer.get(), Direction::Sent, &tap);
        }
        match result {
            Ok(()) => self.after_callback(cx),
            Err(panic) if can_send => self.handler_panicked(cx, name, &panic),
            Err(panic) => {
                error!(
                    "handler panicked in {name} for #{} {}: {panic}",
                    self.id,
                    self.peer.get()
                );
                LoopStats::add(&cx.lp.stats().handler_panics, 1);
            }
        }
    }

    /// Calls `on_close` once.
    fn notify_close<H: Handler<State = S>>(&mut self, cx: &mut Cx<'_, H>, code: CloseCode, reason: &str) {
        let Phase::Ws(w) = &mut self.phase else { return };
        if w.close_notified.is_some() {
            return;
        }
        w.close_notified = Some(code);
        self.call(cx, false, |h, ctx| h.on_close(ctx, code, reason), "on_close");
    }

    /// Starts the closing handshake on our side (RFC 6455 §7.1.2).
    fn request_close(&mut self, lp: &mut LoopState, code: CloseCode, reason: &str) {
        let Phase::Ws(w) = &mut self.phase else { return };
        let ws = &mut w.ws;
        let mut bytes = Vec::new();
        match ws.close(code, reason, &mut bytes) {
            Ok(()) => {
                lp.core.metrics().close_code(CloseSide::Sent, code.0);
                if let Some(obs) = &lp.core.observer {
                    obs.frames(self.id, self.peer.get(), Direction::Sent, &bytes);
                }
                self.out.append(&mut lp.pool, |v| v.extend_from_slice(&bytes));
                self.deadline = lp.now + lp.core.config.close_timeout.as_millis() as Millis;
            }
            Err(e) => debug!("close for #{} not sent: {e}", self.id),
        }
    }

    fn start_closing(&mut self, lp: &LoopState) {
        if self.closing == Closing::No {
            self.closing = Closing::AfterFlush;
            self.deadline = lp.now + lp.core.config.close_timeout.as_millis() as Millis;
            self.stash.clear();
        }
    }

    fn queue_bytes(&mut self, lp: &mut LoopState, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.out.append(&mut lp.pool, |v| v.extend_from_slice(bytes));
        }
    }

    // ----- fan-out -------------------------------------------------------------------------

    /// Queues a message published by someone. Encode-once: `frame` (plain) is shared by every
    /// receiver, and so is `compressed`, the permessage-deflate frame this loop makes of it the
    /// first time a shared-mode subscriber needs it (`None` until then; `Some(None)` when the
    /// message is not worth compressing). A subscriber with context takeover compresses its
    /// own copy (RFC 7692 §7.2.1: its compressor's window must see every message it sends).
    pub(crate) fn deliver(
        &mut self,
        frame: &Arc<Frame>,
        compressed: &mut Option<Option<Arc<Frame>>>,
        lp: &mut LoopState,
    ) -> Delivery {
        let Phase::Ws(w) = &mut self.phase else {
            return Delivery::Skipped;
        };
        if !w.ws.can_send() || self.closing != Closing::No {
            return Delivery::Skipped;
        }
        let config = &lp.core.config;
        if self.out.len() > config.max_outbound {
            // A receiver this far behind is closed rather than buffered without bound.
            debug!(
                "closing slow receiver {} (queue {} bytes)",
                self.peer.get(),
                self.out.len()
            );
            LoopStats::add(&lp.stats().slow_consumer_closes, 1);
            self.request_close(
                lp,
                CloseCode::POLICY_VIOLATION,
                "too slow: outbound queue over its limit",
            );
            return Delivery::SlowConsumerClosed;
        }
        let shared = match w.ws.deflate_params() {
            None => Some(frame.clone()),
            Some(params) => {
                let websocket = &config.websocket;
                let bc = lp.broadcast.get_or_insert_with(|| {
                    BroadcastCompressor::with_level(
                        deflate::MAX_WINDOW_BITS,
                        websocket.deflate_level,
                        websocket.deflate_threshold,
                    )
                });
                if bc.suits(Some(params)) {
                    let variant = compressed.get_or_insert_with(|| {
                        let (opcode, payload) = frame.payload()?;
                        let mut bytes = Vec::with_capacity(payload.len() / 2 + 16);
                        match bc.encode(opcode, payload, &mut bytes) {
                            Encoded::Compressed => Some(Frame::new(bytes, lp.core.budget())),
                            Encoded::Plain => None,
                        }
                    });
                    Some(variant.clone().unwrap_or_else(|| frame.clone()))
                } else {
                    None
                }
            }
        };
        match shared {
            Some(f) => {
                if f.len() <= SHARE_ABOVE {
                    self.out.append(&mut lp.pool, |v| v.extend_from_slice(f.bytes()));
                } else {
                    self.out.push_shared(f.clone(), &mut lp.pool);
                }
                if let Some(obs) = &lp.core.observer {
                    obs.frames(self.id, self.peer.get(), Direction::Sent, f.bytes());
                }
            }
            None => {
                // This subscriber's own compressor (context takeover, or a smaller window).
                let Some((opcode, payload)) = frame.payload() else {
                    return Delivery::Skipped;
                };
                let ws = &mut w.ws;
                let mut sent = Vec::new();
                let r = self.out.append(&mut lp.pool, |v| {
                    let start = v.len();
                    let r = ws.send_frame_compressed(opcode, payload, v);
                    sent.extend_from_slice(v.get(start..).unwrap_or_default());
                    r
                });
                if r.is_err() {
                    return Delivery::Skipped;
                }
                if let Some(obs) = &lp.core.observer {
                    obs.frames(self.id, self.peer.get(), Direction::Sent, &sent);
                }
            }
        }
        LoopStats::add(&lp.stats().messages_out, 1);
        if self.out.len() <= config.backpressure_high_water {
            return Delivery::Queued;
        }
        let now = lp.now;
        let c = self.congestion.get_or_insert_with(|| {
            Box::new(Congestion {
                since: now,
                stalled: false,
                holding: Vec::new(),
            })
        });
        if c.stalled {
            Delivery::Queued
        } else {
            Delivery::Congested
        }
    }

    /// Records that this backed-up receiver holds `publisher`; true if it did not already.
    pub(crate) fn hold(&mut self, publisher: ConnId) -> bool {
        match &mut self.congestion {
            Some(c) if !c.stalled && !c.holding.contains(&publisher) => {
                c.holding.push(publisher);
                true
            }
            _ => false,
        }
    }

    /// This publisher is held by one more backed-up receiver.
    pub(crate) fn add_hold(&mut self, lp: &LoopState) {
        if self.holds == 0 {
            LoopStats::add(&lp.stats().backpressure_pauses, 1);
        }
        self.holds = self.holds.saturating_add(1);
    }

    /// One receiver let go; true if reading may resume.
    pub(crate) fn release_hold(&mut self, lp: &LoopState) -> bool {
        self.holds = self.holds.saturating_sub(1);
        if self.holds == 0 && matches!(self.phase, Phase::Http(_)) && self.closing == Closing::No {
            // A held request's answer goes out now: the keep-alive wait starts from here.
            let keepalive = lp.core.config.keepalive_timeout.as_millis() as Millis;
            self.deadline = self.deadline.max(lp.now + keepalive);
        }
        !self.read_paused()
    }

    /// The publishers this receiver holds, taken (it no longer holds them).
    pub(crate) fn take_held(&mut self) -> Vec<ConnId> {
        self.congestion
            .as_mut()
            .map(|c| std::mem::take(&mut c.holding))
            .unwrap_or_default()
    }

    // ----- writing and time ----------------------------------------------------------------

    /// Called after the loop wrote from the queue: moves closing states along, lifts
    /// backpressure, fires `on_drain`. Returns (reading may resume, publishers to release).
    pub(crate) fn after_flush<H: Handler<State = S>>(&mut self, cx: &mut Cx<'_, H>) -> (bool, Vec<ConnId>) {
        let config = &cx.lp.core.config;
        let low_water = config.backpressure_high_water / 2;
        let mut resume = false;
        let mut released = Vec::new();
        if self.congestion.is_some() && self.out.len() <= low_water {
            released = self.take_held();
            self.congestion = None;
        }
        if self.backpressured && self.out.len() <= low_water {
            self.backpressured = false;
            resume = !self.read_paused();
        }
        if self.out.is_empty() {
            if self.closing == Closing::AfterFlush {
                let handshake_done = match &self.phase {
                    Phase::Ws(w) => w.ws.state() == State::Closed,
                    Phase::Http(_) => false,
                };
                if handshake_done || self.eof {
                    // Both Close frames exchanged (or the peer is gone): a plain close() sends
                    // FIN after our data, no reset, so no need to linger.
                    self.closing = Closing::Done;
                } else {
                    self.closing = Closing::Linger;
                    self.deadline = cx.lp.now + LINGER_MS;
                }
            }
            let drain = match &mut self.phase {
                Phase::Ws(w) => std::mem::take(&mut w.flags.drain_armed),
                Phase::Http(_) => false,
            };
            if drain && self.closing == Closing::No {
                self.call(cx, true, |h, ctx| h.on_drain(ctx), "on_drain");
            }
        }
        (resume, released)
    }

    /// When this session wants to be called back ([`Session::on_timeout`]).
    pub(crate) fn next_deadline(&self, lp: &LoopState) -> Millis {
        let config = &lp.core.config;
        if self.closing != Closing::No {
            return self.deadline;
        }
        match &self.phase {
            // A request held by a backed-up room is not timed out: its message was delivered,
            // and the hold ends when the receivers drain or stop holding (their stall timeout).
            Phase::Http(_) if self.holds > 0 => {
                let keepalive = config.keepalive_timeout.as_millis() as Millis;
                self.deadline.max(lp.now + keepalive)
            }
            Phase::Http(_) => self.deadline,
            Phase::Ws(w) if w.ws.state() == State::CloseSent => self.deadline,
            Phase::Ws(w) => {
                let ping = config.ping_interval.as_millis() as Millis;
                let idle = config.idle_timeout.as_millis() as Millis;
                let silence = if w.ping_outstanding { idle } else { ping.min(idle) };
                let mut at = self.last_recv + silence;
                if let Some(c) = self.congestion.as_ref().filter(|c| !c.stalled) {
                    at = at.min(c.since + config.fanout_stall_timeout.as_millis() as Millis);
                }
                at
            }
        }
    }

    /// Time has come: ping, give up on a silent peer, stop waiting. Returns why the
    /// connection must be dropped now (if it must), and publishers to release.
    pub(crate) fn on_timeout<H: Handler<State = S>>(
        &mut self,
        cx: &mut Cx<'_, H>,
    ) -> (Option<&'static str>, Vec<ConnId>) {
        let now = cx.lp.now;
        let config = &cx.lp.core.config;
        if self.closing != Closing::No {
            let why = if self.closing == Closing::Linger {
                "linger over"
            } else {
                "close timeout"
            };
            return (Some(why).filter(|_| now >= self.deadline), Vec::new());
        }
        let (ping, idle) = (
            config.ping_interval.as_millis() as Millis,
            config.idle_timeout.as_millis() as Millis,
        );
        let stall = config.fanout_stall_timeout.as_millis() as Millis;
        let mut released = Vec::new();
        if let Some(c) = self
            .congestion
            .as_mut()
            .filter(|c| !c.stalled && now >= c.since + stall)
        {
            // Backed up for too long: stop holding publishers back; if it keeps not reading,
            // its queue passes max_outbound and it is closed.
            c.stalled = true;
            released = std::mem::take(&mut c.holding);
            debug!(
                "#{} {}: subscriber stalled, releasing its publishers",
                self.id,
                self.peer.get()
            );
        }
        let Phase::Ws(w) = &mut self.phase else {
            let why = Some("handshake or keep-alive timeout").filter(|_| now >= self.deadline);
            return (why, released);
        };
        if w.ws.state() == State::CloseSent {
            return (
                Some("no answer to our Close").filter(|_| now >= self.deadline),
                released,
            );
        }
        let silent = now.saturating_sub(self.last_recv);
        if silent >= idle {
            return (Some("heartbeat: peer silent"), released);
        }
        if silent >= ping && !w.ping_outstanding && w.ws.can_send() {
            w.ping_outstanding = true;
            let mut bytes = Vec::new();
            if w.ws.send_ping(b"wsloop heartbeat", &mut bytes).is_ok() {
                if let Some(obs) = &cx.lp.core.observer {
                    obs.frames(self.id, self.peer.get(), Direction::Sent, &bytes);
                }
                self.out.append(&mut cx.lp.pool, |v| v.extend_from_slice(&bytes));
            }
        }
        (None, released)
    }

    /// The server is shutting down: Close 1001 to a WebSocket, close an idle HTTP connection.
    /// Returns true if the connection can be dropped at once.
    pub(crate) fn begin_shutdown(&mut self, lp: &mut LoopState) -> bool {
        if self.closing != Closing::No {
            return false;
        }
        match &self.phase {
            Phase::Http(h) if h.buf.is_empty() && h.pending.is_none() && self.out.is_empty() => true,
            Phase::Http(_) => {
                self.start_closing(lp);
                false
            }
            Phase::Ws(_) => {
                self.request_close(lp, CloseCode::GOING_AWAY, "server shutting down");
                self.deadline = lp.now + lp.core.config.shutdown_grace.as_millis() as Millis;
                false
            }
        }
    }

    /// A close asked for through the server handle.
    pub(crate) fn close_from_handle(&mut self, lp: &mut LoopState, code: CloseCode, reason: &str) {
        if self.closing == Closing::No {
            self.request_close(lp, code, reason);
        }
    }

    /// Shed to keep the server under its memory budget: a Close 1013 (best effort; the
    /// connection is dropped right after one write).
    pub(crate) fn shed(&mut self, lp: &mut LoopState) {
        self.stash.clear();
        // Its queued messages are the memory to give back: dropped (all but the rest of a
        // frame already partly on the wire), so that the Close frame with 1013 is what the
        // client reads next, once it reads at all; the close timeout bounds the wait.
        self.out.drop_unstarted(&mut lp.pool);
        self.request_close(lp, CloseCode::TRY_AGAIN_LATER, "server memory budget exhausted");
        if self.closing == Closing::No {
            self.closing = Closing::AfterFlush;
            self.deadline = lp.now + lp.core.config.close_timeout.as_millis() as Millis;
        } else {
            self.closing = Closing::Done;
        }
    }

    /// The connection is going: `on_close` if it has not been called (with `code`), and the
    /// line for the log.
    pub(crate) fn finish<H: Handler<State = S>>(&mut self, cx: &mut Cx<'_, H>, code: CloseCode, why: &str) {
        let Phase::Ws(w) = &mut self.phase else {
            debug!("http connection {} closed ({why})", self.peer.get());
            return;
        };
        let code = w.ws.close_code().unwrap_or(code);
        let path = w.target.split_once('?').map_or(&*w.target, |(p, _)| p).to_owned();
        self.notify_close(cx, code, why);
        // The log states the code `on_close` got, which may have been decided earlier (1006
        // when the peer's TCP connection ended without a Close, RFC 6455 §7.1.5).
        let code = match &self.phase {
            Phase::Ws(w) => w.close_notified.unwrap_or(code),
            Phase::Http(_) => code,
        };
        LoopStats::gauge(&cx.lp.stats().websockets, -1);
        cx.lp.core.metrics().websocket_path(&path, -1);
        info!(
            "close {} {} #{} code={} in={} out={} ({why})",
            self.peer.get(),
            path,
            self.id,
            code.0,
            self.bytes_in,
            self.bytes_out
        );
    }
}

/// Where parsing HTTP input stopped.
enum HttpStep {
    /// Everything up to here was used; the rest is an incomplete head.
    NeedMore(usize),
    /// The head up to here was an accepted upgrade; the rest is WebSocket frames.
    Upgraded(usize),
    /// Everything up to here was answered, and the queue is over the high-water mark: the
    /// rest waits.
    Paused(usize),
    /// The connection is closing; ignore the rest.
    Closed,
}
/// What an idle WebSocket costs in the loop's slab, the largest part of the server's memory per
/// idle connection (BENCHMARKS.md breaks the rest down). A field added to these structs
/// shows up on every connection; this test makes that a decision, not an accident.
#[cfg(all(test, target_pointer_width = "64"))]
mod idle_size {
    use std::mem::size_of;

    #[test]
    fn an_idle_connection_stays_within_its_byte_budget() {
        let sizes = [
            ("Session<()>", size_of::<super::Session<()>>(), 304),
            // The demo's State (`wsloop serve`, src/demo/): an optional boxed member.
            (
                "Session<demo State>",
                size_of::<super::Session<Option<Box<String>>>>(),
                312,
            ),
            ("WsState<()>", size_of::<super::WsState<()>>(), 192),
            ("protocol::WebSocket", size_of::<crate::protocol::WebSocket>(), 136),
            ("protocol::Config", size_of::<crate::protocol::Config>(), 32),
            ("Outbound", size_of::<crate::server::outbound::Outbound>(), 8),
            ("ConnId", size_of::<crate::server::ConnId>(), 16),
        ];
        for (name, size, budget) in sizes {
            eprintln!("{name}: {size} bytes (budget {budget})");
            assert!(size <= budget, "{name} grew to {size} bytes, over its {budget}");
        }
    }
}
