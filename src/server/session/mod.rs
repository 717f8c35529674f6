//! One connection's life, sans-IO like the protocol core: bytes and the loop's clock go in;
//! bytes to send (its [`Outbound`] queue), handler calls and the next deadline come out.
//!
//! A connection has two phases and one transport:
//!
//! - [`http::HttpConn`] speaks HTTP/1.1: request heads and bodies, keep-alive, answers, and the
//!   upgrade decision (RFC 6455 §4.2). An accepted upgrade hands over the WebSocket phase and
//!   the bytes that followed the request.
//! - [`ws::WsConn`] speaks WebSocket: the core [`crate::protocol::WebSocket`], the callbacks,
//!   heartbeats, fan-out deliveries and congestion.
//! - [`transport::Transport`] is what both share and what survives the hand-off: the outbound
//!   queue, the input stash, read pauses, the closing steps and the budget charge.
//!
//! [`Session`] holds the transport and the current phase, and is all the event loop sees. It
//! never touches a socket: the loop reads into a buffer and calls [`Session::receive`], writes
//! what [`Session::out`] holds, tells it about end of input ([`Session::on_eof`]), writes
//! ([`Session::after_flush`]) and time ([`Session::next_deadline`], [`Session::on_timeout`]),
//! and looks at [`Session::io`] to know when to half-close or drop the socket. The one
//! exception is optional: a large message a handler sends may be written straight from its
//! buffer through a `Write` the loop lends. Unit tests (`tests.rs`) drive both phases with
//! plain byte vectors.
//!
//! [`Outbound`]: super::outbound::Outbound

mod congestion;
mod http;
mod sse;
#[cfg(test)]
mod tests;
mod transport;
mod ws;

use super::budget::Frame;
use super::context::LoopState;
use super::limiter::Refusal;
use super::timers::{Millis, Stamp, STAMP_RANGE};
use super::{ConnId, Handler};
use crate::frame::CloseCode;
use congestion::Backlog;
use http::{HttpConn, HttpOutcome};
use log::debug;
use sse::SseConn;
use std::io::Write;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;
use transport::Closing;
pub(crate) use transport::Transport;
use ws::WsConn;

/// How long a connection refused by the per-address limits at accept may take to send the
/// request its refusal answers.
const REFUSED_WAIT_MS: Millis = 1000;

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

/// One publication's encodings, each made at most once per loop for all the receivers that
/// take it (`drive::deliver_local`): with permessage-deflate, the compressed frame the
/// receivers without context takeover share (`ws.rs`, `None` inside when it did not pay);
/// the event the streams share (`sse.rs`).
#[derive(Debug, Default)]
pub(crate) struct Encodings {
    pub(crate) deflated: Option<Option<Arc<Frame>>>,
    pub(crate) event: Option<Arc<Frame>>,
}

#[allow(clippy::large_enum_variant)] // on purpose: see `Ws`
enum Phase<S> {
    Http(Box<HttpConn>),
    /// Inline, not boxed: an idle WebSocket is most of what a server holds, and a box costs an
    /// allocation header and a pointer per connection.
    Ws(WsConn<S>),
    /// A Server-Sent Events stream (`sse.rs`): boxed, so the session stays the size of an
    /// idle WebSocket's.
    Sse(Box<SseConn>),
}

/// What a session needs from the loop for one step: the loop's state, the handler, and
/// (optionally) the socket for direct writes of large messages.
pub(crate) struct Cx<'a, H> {
    pub(crate) lp: &'a mut LoopState,
    pub(crate) handler: &'a H,
    pub(crate) direct: Option<&'a mut dyn Write>,
}

/// One connection: its transport and the phase it is in. See the module docs.
pub(crate) struct Session<S> {
    t: Transport,
    phase: Phase<S>,
}

/// The loop reads the transport's fields (`id`, `out`, `bytes_in`, `bytes_out`, `timer_at`)
/// through the session.
impl<S> Deref for Session<S> {
    type Target = Transport;
    fn deref(&self) -> &Transport {
        &self.t
    }
}

impl<S> DerefMut for Session<S> {
    fn deref_mut(&mut self) -> &mut Transport {
        &mut self.t
    }
}

/// A configured duration in the loop's milliseconds, at most [`STAMP_RANGE`] (24.8 days): a
/// connection keeps its deadlines in 32 bits (`timers::Stamp`), exact that far from now, so a
/// longer timeout counts as 24.8 days.
fn ms(d: Duration) -> Millis {
    // In u64: `as_millis` is u128 arithmetic, and this runs on every rearm of a timer.
    let whole = d.as_secs().min(STAMP_RANGE / 1000 + 1) * 1000;
    (whole + u64::from(d.subsec_millis())).min(STAMP_RANGE)
}

/// Runs a handler callback, turning a panic into an error message.
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
        let deadline = lp.now + ms(config.handshake_timeout);
        // The transport keeps the slot and generation; the node and loop are `lp`'s.
        debug_assert_eq!((id.node(), id.loop_index()), (lp.core.node, lp.idx));
        Session {
            t: Transport::new(id, peer),
            phase: Phase::Http(Box::new(HttpConn::new(config.request_limits, deadline))),
        }
    }

    /// The per-address limits refused this connection at accept: its first request is
    /// answered with the refusal, and it has at most a second to send it (an address over its
    /// limit must not hold sockets open by sending nothing).
    pub(crate) fn refuse_first_request(&mut self, refusal: Refusal, lp: &LoopState) {
        if let Phase::Http(h) = &mut self.phase {
            h.refuse_first_request(
                refusal,
                lp.now + ms(lp.core.config.handshake_timeout).min(REFUSED_WAIT_MS),
            );
        }
    }

    // ----- state the loop reads ------------------------------------------------------------

    /// What the loop should do with the socket now.
    pub(crate) fn io(&self) -> Io {
        match self.t.closing {
            Closing::No => Io::Open,
            Closing::AfterFlush => Io::Flushing,
            Closing::Linger => Io::Linger,
            Closing::Done => Io::Done,
        }
    }

    /// Whether the loop should read from the socket (and feed the bytes in).
    pub(crate) fn wants_read(&self) -> bool {
        self.t.wants_read()
    }

    /// Whether the loop may write the queue now. An HTTP request that published into a
    /// backed-up topic waits for its answer while a receiver holds it: the response is the
    /// publisher's signal to go on, so it goes out once the receivers have drained (or
    /// stopped holding, after `fanout_stall_timeout`).
    pub(crate) fn may_write(&self) -> bool {
        !(self.t.holds > 0 && matches!(self.phase, Phase::Http(_)) && self.t.is_open())
    }

    /// Not read now: backed up, held by a receiver, or throttled by its message rate.
    pub(crate) fn read_paused(&self) -> bool {
        self.t.read_paused()
    }

    /// Not read because its own queue is over the high-water mark (the fuzz harness checks it).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn is_backpressured(&self) -> bool {
        self.t.backpressured
    }

    /// Whether an input stash waits to be fed (and reading is not paused).
    pub(crate) fn stash_ready(&self) -> bool {
        self.t.stash_ready()
    }

    /// Takes the stash out to feed it; the caller gives back what it did not use with
    /// [`Session::stash_rest`].
    pub(crate) fn take_stash(&mut self) -> Vec<u8> {
        self.t.take_stash()
    }

    /// Keeps input the session did not take (it paused in the middle of it).
    pub(crate) fn stash_rest(&mut self, rest: &[u8]) {
        self.t.stash_rest(rest);
    }

    /// Bytes this connection holds in buffers, for the memory budget: queued output it owns,
    /// stashed input, a request head or body in progress and a WebSocket message being
    /// reassembled. Only bytes that arrived count: a declared `Content-Length` or frame length
    /// is a promise, checked against the limits (and the budget's headroom) when it is read,
    /// never charged in advance — otherwise sockets that declare much and send nothing would
    /// use up the budget for everyone (issue 18, break 3).
    pub(crate) fn holding(&self) -> usize {
        let phase = match &self.phase {
            Phase::Http(h) => h.holding(),
            Phase::Ws(w) => w.holding(),
            Phase::Sse(_) => 0,
        };
        self.t.holding() + phase
    }

    /// What closing this connection would let go of, to choose whom to shed when the server is
    /// over its memory budget: what it holds itself plus the shared broadcast frames its queue
    /// still references. Those frames are charged to the budget once (by the frame, not by any
    /// receiver), so they are not in [`Session::holding`]; but a subscriber that stopped
    /// reading keeps every frame published since alive, and it is the one to close.
    pub(crate) fn shed_weight(&self) -> usize {
        self.holding()
            .saturating_add(self.t.out.len().saturating_sub(self.t.out.owned_len()))
    }

    /// Charges what the connection holds to the budget and its queue to the loop's gauge.
    pub(crate) fn settle(&mut self, lp: &LoopState) {
        let holding = self.holding();
        self.t.settle(lp.core.budget(), lp.stats(), holding);
    }

    /// Gives back everything charged (the connection is going).
    pub(crate) fn release_charges(&mut self, lp: &LoopState) {
        self.t.release_charges(lp.core.budget(), lp.stats());
    }

    // ----- input ---------------------------------------------------------------------------

    /// Feeds bytes read from the socket; returns how many were consumed. It stops early, with
    /// input left, after a callback that published (the loop delivers, then feeds the rest)
    /// or when the session must not take more now ([`Session::wants_read`] turns false: the
    /// loop stashes the rest).
    pub(crate) fn receive<H: Handler<State = S>>(&mut self, input: &mut [u8], cx: &mut Cx<'_, H>) -> usize {
        if !self.t.is_open() {
            // Closing: whatever the peer still sends is read and dropped.
            return input.len();
        }
        let t = &mut self.t;
        let outcome = match &mut self.phase {
            Phase::Ws(w) => return w.receive(t, input, cx),
            // Nothing comes upstream on an event stream: read and dropped.
            Phase::Sse(_) => return input.len(),
            Phase::Http(h) => h.receive(t, input, cx),
        };
        match outcome {
            HttpOutcome::Used(n) => {
                if let Some(stream) = match &mut self.phase {
                    Phase::Http(h) => h.take_stream(),
                    _ => None,
                } {
                    // The handler turned the request into an event stream: the head is
                    // queued, and from here the connection carries events.
                    t.clear_stash();
                    self.phase = Phase::Sse(stream);
                }
                n
            }
            HttpOutcome::Upgraded { ws, used, mut trailing } => {
                // The hand-off (RFC 6455 §4.2.2): from the byte after the request on, the
                // connection speaks WebSocket; the transport, with the 101 queued, carries on.
                self.phase = Phase::Ws(*ws);
                let Phase::Ws(w) = &mut self.phase else { return used };
                w.open(t, cx);
                if !t.is_open() {
                    return input.len();
                }
                if trailing.is_empty() {
                    used + w.receive(t, input.get_mut(used..).unwrap_or_default(), cx)
                } else {
                    let taken = w.receive(t, &mut trailing, cx);
                    // These bytes came before anything still in the caller's hands.
                    t.stash_rest(trailing.get(taken..).unwrap_or_default());
                    used
                }
            }
        }
    }

    /// The peer closed its side. A request or message that arrived whole before it is still
    /// answered: the queue is flushed (within the close timeout), then the connection closed.
    pub(crate) fn on_eof<H: Handler<State = S>>(&mut self, cx: &mut Cx<'_, H>) {
        let t = &mut self.t;
        t.eof = true;
        match t.closing {
            Closing::Linger | Closing::Done => {
                t.closing = Closing::Done;
                return;
            }
            Closing::AfterFlush => return,
            Closing::No => {}
        }
        match &mut self.phase {
            Phase::Http(h) => h.on_eof(t, cx.lp),
            // The client went away: nobody will read the events still queued.
            Phase::Sse(_) => t.out.drop_unstarted(&mut cx.lp.pool),
            Phase::Ws(w) => {
                let code = w.ws.close_code().unwrap_or(CloseCode::ABNORMAL);
                w.notify_close(t, cx, code, "peer closed the connection");
            }
        }
        t.clear_stash();
        if t.out.is_empty() {
            t.closing = Closing::Done;
        } else {
            t.closing = Closing::AfterFlush;
            t.closing_deadline = Stamp::new(cx.lp.now + ms(cx.lp.core.config.close_timeout), cx.lp.now);
        }
    }

    // ----- fan-out -------------------------------------------------------------------------

    /// Queues a message published by someone (see [`WsConn::deliver`]); an HTTP connection
    /// takes none.
    /// Inlined into the fan-out's loop: it runs once per receiver of every publication.
    #[inline]
    pub(crate) fn deliver(&mut self, frame: &Arc<Frame>, encodings: &mut Encodings, lp: &mut LoopState) -> Delivery {
        match &mut self.phase {
            Phase::Ws(w) => w.deliver(&mut self.t, frame, &mut encodings.deflated, lp),
            Phase::Sse(s) => s.deliver(&mut self.t, frame, &mut encodings.event, lp),
            Phase::Http(_) => Delivery::Skipped,
        }
    }

    /// The fan-out congestion of a receiver (a WebSocket or an event stream).
    fn backlog(&mut self) -> Option<&mut Backlog> {
        match &mut self.phase {
            Phase::Ws(w) => Some(&mut w.congestion),
            Phase::Sse(s) => Some(&mut s.congestion),
            Phase::Http(_) => None,
        }
    }

    /// Whether publications reach this connection: an open WebSocket or event stream.
    pub(crate) fn takes_publications(&self) -> bool {
        self.t.is_open() && matches!(self.phase, Phase::Ws(_) | Phase::Sse(_))
    }

    /// Records that this backed-up receiver holds `publisher`; true if it did not already.
    pub(crate) fn hold(&mut self, publisher: ConnId) -> bool {
        self.backlog().is_some_and(|b| b.hold(publisher))
    }

    /// This publisher is held by one more backed-up receiver.
    pub(crate) fn add_hold(&mut self, lp: &LoopState) {
        if self.t.holds == 0 {
            super::metrics::LoopStats::add(&lp.stats().backpressure_pauses, 1);
        }
        self.t.holds = self.t.holds.saturating_add(1);
    }

    /// One receiver let go; true if reading may resume.
    pub(crate) fn release_hold(&mut self, lp: &LoopState) -> bool {
        let t = &mut self.t;
        t.holds = t.holds.saturating_sub(1);
        if let Phase::Http(h) = &mut self.phase {
            if t.holds == 0 && t.is_open() {
                // A held request's answer goes out now: the keep-alive wait starts from here.
                let keepalive = lp.now + ms(lp.core.config.keepalive_timeout);
                h.request_deadline = h.request_deadline.max(keepalive);
            }
        }
        !t.read_paused()
    }

    /// The publishers this receiver holds, taken (it no longer holds them).
    pub(crate) fn take_held(&mut self) -> Vec<ConnId> {
        self.backlog().map(Backlog::take_held).unwrap_or_default()
    }

    // ----- writing and time ----------------------------------------------------------------

    /// Called after the loop wrote from the queue: moves closing states along, lifts
    /// backpressure, fires `on_drain`. Returns (reading may resume, publishers to release).
    pub(crate) fn after_flush<H: Handler<State = S>>(&mut self, cx: &mut Cx<'_, H>) -> (bool, Vec<ConnId>) {
        let low_water = cx.lp.core.config.backpressure_high_water / 2;
        let drained = self.t.out.len() <= low_water;
        let released = match self.backlog() {
            Some(b) if drained => b.decongest(),
            _ => Vec::new(),
        };
        let t = &mut self.t;
        let mut resume = false;
        if drained && t.backpressured {
            t.backpressured = false;
            resume = !t.read_paused();
        }
        if t.out.is_empty() {
            let handshake_done = match &self.phase {
                Phase::Ws(w) => w.ws.state() == crate::protocol::State::Closed,
                Phase::Http(_) | Phase::Sse(_) => false,
            };
            t.flushed(cx.lp.now, handshake_done);
            if let Phase::Ws(w) = &mut self.phase {
                if std::mem::take(&mut w.flags.drain_armed) && t.is_open() {
                    w.call(t, cx, true, |h, ctx| h.on_drain(ctx), "on_drain");
                }
            }
        }
        (resume, released)
    }

    /// When this session wants to be called back ([`Session::on_timeout`]).
    pub(crate) fn next_deadline(&self, lp: &LoopState) -> Millis {
        if !self.t.is_open() {
            return self.t.closing_deadline.get(lp.now);
        }
        match &self.phase {
            // A request held by a backed-up room is not timed out: its message was delivered,
            // and the hold ends when the receivers drain or stop holding (their stall timeout).
            Phase::Http(h) if self.t.holds > 0 => {
                let keepalive = ms(lp.core.config.keepalive_timeout);
                h.request_deadline.max(lp.now + keepalive)
            }
            Phase::Http(h) => h.request_deadline,
            Phase::Ws(w) => w.next_deadline(lp),
            Phase::Sse(s) => s.next_deadline(&self.t, lp),
        }
    }

    /// Time has come: ping, give up on a silent peer, stop waiting. Returns why the
    /// connection must be dropped now (if it must), and publishers to release.
    pub(crate) fn on_timeout<H: Handler<State = S>>(
        &mut self,
        cx: &mut Cx<'_, H>,
    ) -> (Option<&'static str>, Vec<ConnId>) {
        let now = cx.lp.now;
        let t = &mut self.t;
        if !t.is_open() {
            let why = if t.closing == Closing::Linger {
                "linger over"
            } else {
                "close timeout"
            };
            return (Some(why).filter(|_| now >= t.closing_deadline.get(now)), Vec::new());
        }
        match &mut self.phase {
            Phase::Http(h) if h.is_waiting() => {
                if now >= h.request_deadline {
                    h.give_up(t, cx.lp, "no decision within the handshake timeout");
                }
                (None, Vec::new())
            }
            Phase::Http(h) => (
                Some("handshake or keep-alive timeout").filter(|_| now >= h.request_deadline),
                Vec::new(),
            ),
            Phase::Ws(w) => w.on_timeout(t, cx.lp),
            Phase::Sse(s) => s.on_timeout(t, cx.lp),
        }
    }

    /// The server is shutting down: Close 1001 to a WebSocket, close an idle HTTP connection.
    /// Returns true if the connection can be dropped at once.
    pub(crate) fn begin_shutdown(&mut self, lp: &mut LoopState) -> bool {
        let t = &mut self.t;
        if !t.is_open() {
            return false;
        }
        match &mut self.phase {
            Phase::Http(h) if h.is_waiting() => {
                h.give_up(t, lp, "the server is shutting down");
                false
            }
            Phase::Http(h) if h.is_idle() && t.out.is_empty() => true,
            Phase::Http(_) => {
                t.start_closing(lp.now, ms(lp.core.config.close_timeout));
                false
            }
            Phase::Ws(w) => {
                w.shutdown(t, lp);
                false
            }
            Phase::Sse(s) => {
                s.shutdown(t, lp);
                false
            }
        }
    }

    /// A close asked for through the server handle.
    pub(crate) fn close_from_handle(&mut self, lp: &mut LoopState, code: CloseCode, reason: &str) {
        match (&mut self.phase, self.t.is_open()) {
            (Phase::Ws(w), true) => w.request_close(&mut self.t, lp, code, reason),
            // An event stream has no close code to carry: it ends after what is queued.
            (Phase::Sse(_), true) => self.t.start_closing(lp.now, ms(lp.core.config.close_timeout)),
            _ => {}
        }
    }

    /// Shed to keep the server under its memory budget: a Close 1013 (best effort; the
    /// connection is dropped right after one write).
    pub(crate) fn shed(&mut self, lp: &mut LoopState) {
        let t = &mut self.t;
        t.clear_stash();
        // Its queued messages are the memory to give back: dropped (all but the rest of a
        // frame already partly on the wire), so that the Close frame with 1013 is what the
        // client reads next, once it reads at all; the close timeout bounds the wait.
        t.out.drop_unstarted(&mut lp.pool);
        if let Phase::Ws(w) = &mut self.phase {
            w.request_close(t, lp, CloseCode::TRY_AGAIN_LATER, "server memory budget exhausted");
        }
        if t.is_open() {
            t.start_closing(lp.now, ms(lp.core.config.close_timeout));
        } else {
            t.closing = Closing::Done;
        }
    }

    /// The connection is going: `on_close` if it has not been called (with `code`), and the
    /// line for the log.
    pub(crate) fn finish<H: Handler<State = S>>(&mut self, cx: &mut Cx<'_, H>, code: CloseCode, why: &str) {
        match &mut self.phase {
            Phase::Ws(w) => w.finish(&mut self.t, cx, code, why),
            Phase::Sse(s) => s.finish(&self.t, cx.lp, why),
            Phase::Http(h) => {
                h.abandon(&mut self.t, cx.lp);
                debug!("http connection {} closed ({why})", self.t.peer());
            }
        }
    }

    /// A handler deferred the answer to this connection's request (`deferred.rs`).
    pub(crate) fn awaiting_decision(&self) -> bool {
        matches!(&self.phase, Phase::Http(h) if h.is_waiting())
    }

    /// A deferred decision came through the inbox: applied as the callback returning it
    /// would have been. Returns whether reading may resume (the stash first: what the
    /// client sent behind the request).
    pub(crate) fn decide<H: Handler<State = S>>(
        &mut self,
        decision: super::deferred::Decision,
        cx: &mut Cx<'_, H>,
    ) -> bool {
        let t = &mut self.t;
        let Phase::Http(h) = &mut self.phase else { return false };
        if !t.is_open() {
            return false;
        }
        if let Some(ws) = h.decide(t, decision, cx) {
            // The hand-off, as in `receive` (RFC 6455 §4.2.2).
            self.phase = Phase::Ws(*ws);
            if let Phase::Ws(w) = &mut self.phase {
                w.open(t, cx);
            }
        }
        t.is_open() && !t.read_paused()
    }
}

/// What an idle WebSocket costs in the loop's slab, the largest part of the server's memory per
/// idle connection (BENCHMARKS.md breaks the rest down). A field added to these structs
/// shows up on every connection; this test makes that a decision, not an accident.
#[cfg(all(test, target_pointer_width = "64"))]
mod idle_size {
    use std::mem::size_of;

    /// Timeouts count at most 24.8 days, so every deadline a connection keeps in 32 bits
    /// (`timers::Stamp`) reads back exactly; shorter ones keep their milliseconds.
    #[test]
    fn a_timeout_counts_at_most_what_a_stamp_holds() {
        use super::{ms, STAMP_RANGE};
        use std::time::Duration;
        assert_eq!(ms(Duration::from_millis(1500)), 1500);
        assert_eq!(ms(Duration::from_secs(60)), 60_000);
        assert_eq!(ms(Duration::from_millis(STAMP_RANGE)), STAMP_RANGE);
        assert_eq!(ms(Duration::from_secs(100 * 86_400)), STAMP_RANGE);
        assert_eq!(ms(Duration::MAX), STAMP_RANGE);
    }

    #[test]
    fn an_idle_connection_stays_within_its_byte_budget() {
        let sizes = [
            ("Session<()>", size_of::<super::Session<()>>(), 160),
            // The demo's State (`wsloop serve`, src/demo/): an optional boxed member.
            (
                "Session<demo State>",
                size_of::<super::Session<Option<Box<String>>>>(),
                168,
            ),
            // The WebSocket phase: with the heartbeat clock, the close reply's deadline and
            // congestion, which were the session's before the phases were split.
            ("WsConn<()>", size_of::<super::ws::WsConn<()>>(), 80),
            ("Transport", size_of::<super::Transport>(), 80),
            (
                "protocol::WebSocketCore",
                size_of::<crate::protocol::WebSocketCore>(),
                24,
            ),
            // Once per loop (the server's config), lent to each connection's core per call.
            ("protocol::Config", size_of::<crate::protocol::Config>(), 32),
            // The deadlines and the last-heard time a connection keeps (four of them).
            ("timers::Stamp", size_of::<crate::server::timers::Stamp>(), 4),
            ("Outbound", size_of::<crate::server::outbound::Outbound>(), 8),
            // Public, across threads; the transport keeps only its slot and generation (8).
            ("ConnId", size_of::<crate::server::ConnId>(), 16),
        ];
        for (name, size, budget) in sizes {
            eprintln!("{name}: {size} bytes (budget {budget})");
            assert!(size <= budget, "{name} grew to {size} bytes, over its {budget}");
        }
    }
}
