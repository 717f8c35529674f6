//! The WebSocket phase (RFC 6455 §5–§7): what the HTTP phase hands over after a 101. The core
//! [`WebSocket`] turns bytes into messages for [`Handler::on_message`]; this phase runs the
//! callbacks, answers pings and Close frames, keeps the heartbeat, takes messages others
//! publish (fan-out, with congestion holding their publishers) and calls `on_close` once.

use super::super::budget::Frame;
use super::super::context::{Capture, ConnParts, Context, LoopState, WsFlags, WsRef};
use super::super::metrics::{CloseSide, LoopStats};
use super::super::throttle::{RateLimitAction, Throttle};
use super::super::timers::{Millis, Stamp};
use super::super::{ConnId, Handler, Message};
use super::congestion::Backlog;
use super::transport::Transport;
use super::{guarded, ms, Cx, Delivery};
use crate::deflate::{self, BroadcastCompressor, Encoded};
use crate::frame::CloseCode;
use crate::handshake::Request;
use crate::observe::Direction;
use crate::protocol::{Config, Event, State, WebSocketCore};
use log::{debug, error, info};
use std::io::Write;
use std::sync::Arc;

/// Broadcast frames up to this size are copied into each receiver's queue (they coalesce with
/// other small frames into one write); larger ones are shared.
pub(super) const SHARE_ABOVE: usize = 512;
/// The most a loop's scratch copy of a deflated message keeps between messages.
const SCRATCH_KEEP: usize = 64 * 1024;
/// What the server's Pings carry before the time they were sent.
const PING_PREFIX: &str = "wsloop ping ";

/// A Ping's payload: [`PING_PREFIX`] and the loop's clock (its low 32 bits, in decimal). The
/// Pong echoes it (RFC 6455 §5.5.3), so the round trip is read off the Pong with no stamp kept
/// per connection, and a client that answers only the latest of several Pings (§5.5.3 allows
/// it) still gives a true figure. The clock is the loop's, stamped by the session: nothing
/// here reads one.
fn ping_payload(now: Millis, buf: &mut [u8; 24]) -> &[u8] {
    let mut w = &mut buf[..];
    // 12 + at most 10 digits: fits; a failed write would only shorten the payload.
    let _ = write!(w, "{PING_PREFIX}{}", now as u32);
    let written = 24 - w.len();
    buf.get(..written).unwrap_or_default()
}

/// The round trip a Pong's payload says, at `now`: `None` unless it echoes one of our Pings
/// (prefix, then 1 to 10 digits of a `u32`) sent no later than `now`. Bytes from the network:
/// parsed without panicking.
pub(super) fn pong_rtt(payload: &[u8], now: Millis) -> Option<u32> {
    let digits = payload.strip_prefix(PING_PREFIX.as_bytes())?;
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let mut sent: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        sent = sent.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
    }
    // The clock's low 32 bits wrap every 49 days: a difference past half of that is a stamp
    // from the future (forged), not a 24-day round trip.
    let rtt = (now as u32).wrapping_sub(sent);
    (rtt <= u32::MAX / 2).then_some(rtt)
}

/// One WebSocket connection's protocol and application state. See the module docs.
pub(crate) struct WsConn<S> {
    pub(super) ws: WebSocketCore,
    /// The request target: path and query string, as the client sent them; shared by every
    /// connection of the loop with the same target (see `LoopState::intern_target`).
    target: Arc<str>,
    /// What few connections keep, in one box: the upgrade request (`Accept::keep_request`),
    /// the raw frames (`Accept::capture_frames`, or an observer) and the message rate's state
    /// (`throttle.rs`). Not inline: every idle connection would pay for it.
    kept: Option<Box<Kept>>,
    state: S,
    pub(super) flags: WsFlags,
    ping_outstanding: bool,
    /// The code `on_close` was called with, once it has been: what the close log line states.
    close_notified: Option<CloseCode>,
    /// permessage-deflate was allowed for this connection at the upgrade (the server's mode
    /// was not off and the handler did not turn it off): what [`Context::deflate_policy`] reads.
    deflate_allowed: bool,
    /// When the peer last sent anything: the heartbeat counts from here.
    last_recv: Stamp,
    /// After our Close: when to stop waiting for the peer's (close timeout, or the shutdown
    /// grace).
    close_reply_deadline: Stamp,
    /// Fan-out backpressure: the session reaches it for `hold`, `take_held`, `decongest`.
    pub(super) congestion: Backlog,
}

/// The upgrade request, the raw frames and the message rate, for the connections that have
/// them.
struct Kept {
    request: Option<Request>,
    capture: Option<Capture>,
    throttle: Option<Box<Throttle>>,
}

/// What the HTTP phase decided at the upgrade, for [`WsConn::new`].
pub(super) struct Opening<S> {
    pub(super) ws: WebSocketCore,
    pub(super) target: Arc<str>,
    pub(super) request: Option<Request>,
    pub(super) state: S,
    pub(super) deflate_allowed: bool,
    pub(super) capture: Option<Capture>,
    pub(super) throttle: Option<Throttle>,
}

impl<S: Send + 'static> WsConn<S> {
    pub(super) fn new(o: Opening<S>, now: Millis) -> WsConn<S> {
        WsConn {
            ws: o.ws,
            target: o.target,
            kept: (o.request.is_some() || o.capture.is_some() || o.throttle.is_some()).then(|| {
                Box::new(Kept {
                    request: o.request,
                    capture: o.capture,
                    throttle: o.throttle.map(Box::new),
                })
            }),
            state: o.state,
            flags: WsFlags::default(),
            ping_outstanding: false,
            close_notified: None,
            deflate_allowed: o.deflate_allowed,
            last_recv: Stamp::at_now(now),
            close_reply_deadline: Stamp::new(now, now),
            congestion: Backlog::default(),
        }
    }

    fn path(&self) -> &str {
        self.target.split_once('?').map_or(&*self.target, |(p, _)| p)
    }

    /// Reassembly, inflated text and compressor state.
    pub(super) fn holding(&self) -> usize {
        self.ws.memory_held()
    }

    /// The connection is open: counted, logged, and `on_open` called.
    pub(super) fn open<H: Handler<State = S>>(&mut self, t: &mut Transport, cx: &mut Cx<'_, H>) {
        info!("open {} {} #{}", t.client(), self.path(), t.id(cx.lp));
        debug!("open #{} target {}", t.id(cx.lp), self.target);
        LoopStats::gauge(&cx.lp.stats().websockets, 1);
        cx.lp.core.metrics().websocket_path(self.path(), 1);
        self.call(t, cx, true, |h, ctx| h.on_open(ctx), "on_open");
    }

    /// Feeds frames; returns how many bytes were used. It stops early after a callback that
    /// published (the loop delivers, then feeds the rest), when reading is paused, or when
    /// this turn's message allowance is spent.
    pub(super) fn receive<H: Handler<State = S>>(
        &mut self,
        t: &mut Transport,
        input: &mut [u8],
        cx: &mut Cx<'_, H>,
    ) -> usize {
        let core = cx.lp.core.clone();
        self.last_recv = Stamp::at_now(cx.lp.now);
        self.ping_outstanding = false;
        // Kept (raw, still masked) for the observer and `Context::frames_in`: receive()
        // unmasks in place.
        let raw = self
            .kept
            .as_ref()
            .is_some_and(|k| k.capture.is_some())
            .then(|| input.to_vec());
        let mut pos = 0;
        while pos < input.len() {
            let WsConn {
                ws,
                target,
                kept,
                state,
                flags,
                deflate_allowed,
                ..
            } = self;
            let (request, mut capture, throttle) = match kept.as_deref_mut() {
                Some(Kept {
                    request,
                    capture,
                    throttle,
                }) => (request.as_ref(), capture.as_mut(), throttle.as_deref_mut()),
                None => (None, None, None),
            };
            // A message may only grow as far as the memory budget allows (RFC 6455 §10.4):
            // up to the level where shedding stops, so admitting it never forces a shed.
            let room = ws.buffered_message_len().saturating_add(core.info.message_room());
            // The loop's limits as they are, or (rarely) a copy with the message size cut to
            // the room: no copy per message while the budget has room.
            let tight;
            let limits = if room < core.config.websocket.max_message_size {
                tight = Config {
                    max_message_size: room,
                    ..core.config.websocket
                };
                &tight
            } else {
                &core.config.websocket
            };
            let ws_state = ws.state();
            // With permessage-deflate the handler may compress with this connection's
            // compressor, so the message is copied out of the `WebSocket` first (the inflated
            // bytes live in it); without, it is handed over where it lies, zero-copy.
            let deflate_on = ws.deflate_params().is_some();
            let start = pos;
            let mut auto = Vec::new();
            let received = match ws.receive(limits, input.get_mut(pos..).unwrap_or_default(), &mut auto) {
                Ok(r) => r,
                Err(err) => {
                    debug!("{} broke the protocol: {err}", t.peer());
                    if let Some(obs) = &core.observer {
                        obs.protocol_error(t.id(cx.lp), t.peer(), &err);
                        obs.frames(t.id(cx.lp), t.peer(), Direction::Sent, &auto);
                    }
                    core.metrics().close_code(CloseSide::Sent, err.close_code().0);
                    t.queue(&mut cx.lp.pool, &auto);
                    self.notify_close(t, cx, err.close_code(), err.close_reason());
                    t.start_closing(cx.lp.now, ms(core.config.close_timeout));
                    return input.len();
                }
            };
            pos += received.consumed;
            let Some(event) = received.event else {
                t.queue(&mut cx.lp.pool, &auto);
                break;
            };
            cx.lp.message_allowance = cx.lp.message_allowance.saturating_sub(1);
            // The message rate counts whole data messages, not frames; control frames are free.
            let data_len = match &event {
                Event::Text(s) => Some(s.len()),
                Event::Binary(b) => Some(b.len()),
                _ => None,
            };
            let over_rate = match (data_len, throttle) {
                (Some(len), Some(th)) => th.message(len, cx.lp.now).err(),
                _ => None,
            };
            if let Some(limit) = over_rate {
                // `--rate-limit-action close`: the message is not delivered (RFC 6455 §7.4.1,
                // 1008 policy violation), and nothing more is read.
                debug!("#{} {}: over its {}, closing", t.id(cx.lp), t.client(), limit.label());
                core.metrics().rate_closed(limit);
                t.queue(&mut cx.lp.pool, &auto);
                self.request_close(t, cx.lp, CloseCode::POLICY_VIOLATION, "message rate exceeded");
                t.start_closing(cx.lp.now, ms(core.config.close_timeout));
                return input.len();
            }
            if let (Some(c), Some(raw)) = (capture.as_mut(), raw.as_ref()) {
                c.frames_in.extend_from_slice(raw.get(start..pos).unwrap_or_default());
                if let Some(obs) = &core.observer {
                    obs.frames(t.id(cx.lp), t.peer(), Direction::Received, &c.frames_in);
                }
            }
            let mut closed_by_peer = None;
            let mut pong = None;
            // The loop's scratch buffers are borrowed only by a copied (deflate) message.
            let mut text_copy = String::new();
            let mut binary_copy = Vec::new();
            let mut copied = None;
            let message = match event {
                Event::Text(s) if deflate_on => {
                    text_copy = std::mem::take(&mut cx.lp.text_scratch);
                    text_copy.push_str(s);
                    copied = Some(true);
                    None
                }
                Event::Binary(b) if deflate_on => {
                    binary_copy = std::mem::take(&mut cx.lp.binary_scratch);
                    binary_copy.extend_from_slice(b);
                    copied = Some(false);
                    None
                }
                Event::Text(s) => Some(Message::Text(s)),
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
                Event::Pong(payload) if flags.awaiting_pong => {
                    // The answer to our Ping: the round trip (RFC 6455 §5.5.3).
                    pong = pong_rtt(payload, cx.lp.now);
                    if let Some(rtt) = pong {
                        flags.awaiting_pong = false;
                        flags.rtt_ms = rtt;
                    }
                    None
                }
                Event::Ping(_) | Event::Pong(_) => None,
            };
            // The protocol's own answer (Pong, Close reply) goes out first; a peer that sends
            // pings and never reads the pongs is paused like one that never reads echoes.
            if !auto.is_empty() {
                if let Some(obs) = &core.observer {
                    obs.frames(t.id(cx.lp), t.peer(), Direction::Sent, &auto);
                }
                t.queue(&mut cx.lp.pool, &auto);
                t.check_backpressure(core.config.backpressure_high_water, cx.lp.stats());
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
                        id: t.id(cx.lp),
                        peer: t.peer(),
                        client: t.client(),
                        target,
                        request,
                        state,
                        ws: ws_ref,
                        out: &mut t.out,
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
                match copied {
                    // Kept for the next message, but not at the size of the largest ever seen:
                    // a loop's scratch must not stay at 64 MiB, uncharged, after one such
                    // message.
                    Some(true) => {
                        text_copy.clear();
                        text_copy.shrink_to(SCRATCH_KEEP);
                        cx.lp.text_scratch = text_copy;
                    }
                    Some(false) => {
                        binary_copy.clear();
                        binary_copy.shrink_to(SCRATCH_KEEP);
                        cx.lp.binary_scratch = binary_copy;
                    }
                    None => {}
                }
                if let (Some(obs), Some(tap)) = (&core.observer, tap.filter(|t| !t.is_empty())) {
                    obs.frames(t.id(cx.lp), t.peer(), Direction::Sent, &tap);
                }
                if let Some(c) = capture.as_mut() {
                    c.frames_in.clear();
                }
                if let Err(panic) = result {
                    self.handler_panicked(t, cx, "on_message", &panic);
                    return input.len();
                }
                self.after_callback(t, cx);
            } else {
                if let Some(c) = capture.as_mut() {
                    c.frames_in.clear();
                }
            }
            if let Some(rtt) = pong {
                let rtt = std::time::Duration::from_millis(u64::from(rtt));
                self.call(t, cx, true, |h, ctx| h.on_pong(ctx, rtt), "on_pong");
                if !t.is_open() {
                    return input.len();
                }
            }
            if let Some((code, reason)) = closed_by_peer {
                self.notify_close(t, cx, code, &reason);
                // RFC 6455 §7.1.1: the server closes the TCP connection first, once our Close
                // reply (already queued) is out.
                t.start_closing(cx.lp.now, ms(core.config.close_timeout));
                return input.len();
            }
            if !t.is_open() {
                return input.len();
            }
            if data_len.is_some() {
                self.throttle_if_over(t, cx.lp);
            }
            if cx.lp.has_publications() || t.read_paused() || cx.lp.message_allowance == 0 {
                // Let the loop deliver what was published (and pause us if a subscriber is
                // backed up) before the next message; past this turn's allowance, the rest
                // waits for the next turn.
                break;
            }
        }
        self.ws.release_event();
        pos
    }

    /// `--message-rate`, throttling: once a message used up the allowance, reading pauses
    /// until it refills (the timer lifts it, `on_timeout`); what was read waits in the stash.
    fn throttle_if_over(&mut self, t: &mut Transport, lp: &LoopState) {
        let Some(th) = self.throttle_mut() else { return };
        if th.action() != RateLimitAction::Throttle {
            return;
        }
        if let Some((until, limit)) = th.pause(lp.now) {
            th.until = until;
            t.throttled = true;
            lp.core.metrics().throttled(limit, until.saturating_sub(lp.now));
        }
    }

    fn throttle_mut(&mut self) -> Option<&mut Throttle> {
        self.kept.as_deref_mut().and_then(|k| k.throttle.as_deref_mut())
    }

    /// When a throttled connection may be read again.
    fn throttled_until(&self) -> Option<Millis> {
        let th = self.kept.as_deref()?.throttle.as_deref()?;
        (th.until != 0).then_some(th.until)
    }

    /// Applies what a callback asked for: a close, a failed direct write, backpressure.
    fn after_callback<H>(&mut self, t: &mut Transport, cx: &mut Cx<'_, H>) {
        let direct = std::mem::take(&mut cx.lp.direct_written);
        if direct > 0 {
            t.bytes_out += direct;
            LoopStats::add(&cx.lp.stats().bytes_out, direct);
        }
        if self.flags.write_failed {
            t.closing = super::transport::Closing::Done;
            return;
        }
        // After what the callback sent, before its Close (which ends sending).
        if std::mem::take(&mut self.flags.ping_request) {
            self.send_ping(t, cx.lp);
        }
        if let Some(request) = cx.lp.close_request.take() {
            let (code, reason) = *request;
            self.request_close(t, cx.lp, code, &reason);
        }
        t.check_backpressure(cx.lp.core.config.backpressure_high_water, cx.lp.stats());
    }

    fn handler_panicked<H>(&mut self, t: &mut Transport, cx: &mut Cx<'_, H>, callback: &str, panic: &str) {
        error!(
            "handler panicked in {callback} for #{} {}: {panic}",
            t.id(cx.lp),
            t.peer()
        );
        LoopStats::add(&cx.lp.stats().handler_panics, 1);
        cx.lp.close_request = None;
        // RFC 6455 §7.4.1: 1011, "an unexpected condition that prevented it from fulfilling
        // the request". The connection is read no more; on_close still runs when it goes, so
        // the application can clean up.
        self.request_close(t, cx.lp, CloseCode::INTERNAL_ERROR, "internal error");
        t.start_closing(cx.lp.now, ms(cx.lp.core.config.close_timeout));
    }

    /// Runs a callback other than on_message with a [`Context`].
    pub(super) fn call<H: Handler<State = S>>(
        &mut self,
        t: &mut Transport,
        cx: &mut Cx<'_, H>,
        can_send: bool,
        f: impl FnOnce(&H, &mut Context<'_, S>),
        name: &str,
    ) {
        let core = cx.lp.core.clone();
        let WsConn {
            ws,
            target,
            kept,
            state,
            flags,
            deflate_allowed,
            ..
        } = self;
        let (request, capture) = kept
            .as_deref_mut()
            .map_or((None, None), |k| (k.request.as_ref(), k.capture.as_mut()));
        let mut tap = capture.is_some().then(Vec::new);
        let mut ctx = Context {
            conn: ConnParts {
                id: t.id(cx.lp),
                peer: t.peer(),
                client: t.client(),
                target,
                request,
                can_send: can_send && ws.can_send(),
                state,
                ws: WsRef::Live(ws),
                out: &mut t.out,
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
            obs.frames(t.id(cx.lp), t.peer(), Direction::Sent, &tap);
        }
        match result {
            Ok(()) => self.after_callback(t, cx),
            Err(panic) if can_send => self.handler_panicked(t, cx, name, &panic),
            Err(panic) => {
                cx.lp.close_request = None;
                error!("handler panicked in {name} for #{} {}: {panic}", t.id(cx.lp), t.peer());
                LoopStats::add(&cx.lp.stats().handler_panics, 1);
            }
        }
    }

    /// Calls `on_close` once.
    pub(super) fn notify_close<H: Handler<State = S>>(
        &mut self,
        t: &mut Transport,
        cx: &mut Cx<'_, H>,
        code: CloseCode,
        reason: &str,
    ) {
        if self.close_notified.is_some() {
            return;
        }
        self.close_notified = Some(code);
        self.call(t, cx, false, |h, ctx| h.on_close(ctx, code, reason), "on_close");
    }

    /// Queues a Ping stamped with the loop's clock (RFC 6455 §5.5.2): its Pong gives the
    /// round trip ([`pong_rtt`]).
    fn send_ping(&mut self, t: &mut Transport, lp: &mut LoopState) {
        if !self.ws.can_send() {
            return;
        }
        let mut buf = [0u8; 24];
        let payload = ping_payload(lp.now, &mut buf);
        let mut bytes = Vec::new();
        if self.ws.send_ping(payload, &mut bytes).is_ok() {
            self.flags.awaiting_pong = true;
            if let Some(obs) = &lp.core.observer {
                obs.frames(t.id(lp), t.peer(), Direction::Sent, &bytes);
            }
            t.queue(&mut lp.pool, &bytes);
        }
    }

    /// Starts the closing handshake on our side (RFC 6455 §7.1.2).
    pub(super) fn request_close(&mut self, t: &mut Transport, lp: &mut LoopState, code: CloseCode, reason: &str) {
        let mut bytes = Vec::new();
        match self.ws.close(code, reason, &mut bytes) {
            Ok(()) => {
                lp.core.metrics().close_code(CloseSide::Sent, code.0);
                if let Some(obs) = &lp.core.observer {
                    obs.frames(t.id(lp), t.peer(), Direction::Sent, &bytes);
                }
                t.queue(&mut lp.pool, &bytes);
                self.close_reply_deadline = Stamp::new(lp.now + ms(lp.core.config.close_timeout), lp.now);
            }
            Err(e) => debug!("close for #{} not sent: {e}", t.id(lp)),
        }
    }

    /// The server is shutting down: Close 1001, and the shutdown grace for the answer.
    pub(super) fn shutdown(&mut self, t: &mut Transport, lp: &mut LoopState) {
        self.request_close(t, lp, CloseCode::GOING_AWAY, "server shutting down");
        self.close_reply_deadline = Stamp::new(lp.now + ms(lp.core.config.shutdown_grace), lp.now);
    }

    /// Queues a message published by someone. Encode-once: `frame` (plain) is shared by every
    /// receiver, and so is `compressed`, the permessage-deflate frame this loop makes of it the
    /// first time a shared-mode subscriber needs it (`None` until then; `Some(None)` when the
    /// message is not worth compressing). A subscriber with context takeover compresses its
    /// own copy (RFC 7692 §7.2.1: its compressor's window must see every message it sends).
    pub(super) fn deliver(
        &mut self,
        t: &mut Transport,
        frame: &Arc<Frame>,
        compressed: &mut Option<Option<Arc<Frame>>>,
        lp: &mut LoopState,
    ) -> Delivery {
        if !self.ws.can_send() || !t.is_open() {
            return Delivery::Skipped;
        }
        let config = &lp.core.config;
        if t.out.len() > config.max_outbound {
            // A receiver this far behind is closed rather than buffered without bound.
            debug!("closing slow receiver {} (queue {} bytes)", t.peer(), t.out.len());
            LoopStats::add(&lp.stats().slow_consumer_closes, 1);
            self.request_close(
                t,
                lp,
                CloseCode::POLICY_VIOLATION,
                "too slow: outbound queue over its limit",
            );
            return Delivery::SlowConsumerClosed;
        }
        // Borrowed, not cloned: a small frame is copied into the receiver's buffer, and only
        // a large one takes a reference (an atomic increment per delivery otherwise).
        let shared: Option<&Arc<Frame>> = match self.ws.deflate_params() {
            None => Some(frame),
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
                    Some(variant.as_ref().unwrap_or(frame))
                } else {
                    None
                }
            }
        };
        match shared {
            Some(f) => {
                if f.len() <= SHARE_ABOVE {
                    t.queue(&mut lp.pool, f.bytes());
                } else {
                    t.out.push_shared(f.clone(), &mut lp.pool);
                }
                if let Some(obs) = &lp.core.observer {
                    obs.frames(t.id(lp), t.peer(), Direction::Sent, f.bytes());
                }
            }
            None => {
                // This subscriber's own compressor (context takeover, or a smaller window).
                let Some((opcode, payload)) = frame.payload() else {
                    return Delivery::Skipped;
                };
                let ws = &mut self.ws;
                let mut sent = Vec::new();
                let r = t.out.append(&mut lp.pool, |v| {
                    let start = v.len();
                    let r = ws.send_frame_compressed(&config.websocket, opcode, payload, v);
                    sent.extend_from_slice(v.get(start..).unwrap_or_default());
                    r
                });
                if r.is_err() {
                    return Delivery::Skipped;
                }
                if let Some(obs) = &lp.core.observer {
                    obs.frames(t.id(lp), t.peer(), Direction::Sent, &sent);
                }
            }
        }
        LoopStats::add(&lp.stats().messages_out, 1);
        self.congestion
            .after_queue(t.out.len(), config.backpressure_high_water, lp.now)
    }

    /// When the heartbeat, the close reply or a congestion's stall timeout is due.
    pub(super) fn next_deadline(&self, lp: &LoopState) -> Millis {
        let config = &lp.core.config;
        if self.ws.state() == State::CloseSent {
            return self.close_reply_deadline.get(lp.now);
        }
        let silence = if self.ping_outstanding {
            ms(config.idle_timeout)
        } else {
            ms(config.ping_interval).min(ms(config.idle_timeout))
        };
        let mut at = match self.throttled_until() {
            // Not read while throttled: the peer is not silent, we are not listening (its
            // Pong may be waiting unread); the heartbeat counts again once reading resumes.
            Some(until) => until,
            None => self.last_recv.get(lp.now) + silence,
        };
        if let Some(stall) = self.congestion.stall_deadline(ms(config.fanout_stall_timeout)) {
            at = at.min(stall);
        }
        at
    }

    /// Time has come (the connection is open): stop holding publishers after the stall
    /// timeout, ping, give up on a silent peer or a missing Close reply. Returns why the
    /// connection must be dropped now (if it must), and publishers to release.
    pub(super) fn on_timeout(&mut self, t: &mut Transport, lp: &mut LoopState) -> (Option<&'static str>, Vec<ConnId>) {
        let now = lp.now;
        let config = &lp.core.config;
        let mut released = Vec::new();
        if self.throttled_until().is_some_and(|until| now >= until) {
            // The allowance has refilled: readable again (the loop resumes reading it).
            if let Some(th) = self.throttle_mut() {
                th.until = 0;
            }
            t.throttled = false;
            self.last_recv = Stamp::new(self.last_recv.get(now).max(now), now);
        }
        if let Some(held) = self.congestion.stall_if_due(now, ms(config.fanout_stall_timeout)) {
            // Backed up for too long: stop holding publishers back; if it keeps not reading,
            // its queue passes max_outbound and it is closed.
            released = held;
            debug!(
                "#{} {}: subscriber stalled, releasing its publishers",
                t.id(lp),
                t.peer()
            );
        }
        if self.ws.state() == State::CloseSent {
            let why = Some("no answer to our Close").filter(|_| now >= self.close_reply_deadline.get(now));
            return (why, released);
        }
        if t.throttled {
            return (None, released);
        }
        let silent = now.saturating_sub(self.last_recv.get(now));
        if silent >= ms(config.idle_timeout) {
            return (Some("heartbeat: peer silent"), released);
        }
        if silent >= ms(config.ping_interval) && !self.ping_outstanding && self.ws.can_send() {
            self.ping_outstanding = true;
            self.send_ping(t, lp);
        }
        (None, released)
    }

    /// The connection is going: `on_close` if it has not been called (with `code`), and the
    /// line for the log.
    pub(super) fn finish<H: Handler<State = S>>(
        &mut self,
        t: &mut Transport,
        cx: &mut Cx<'_, H>,
        code: CloseCode,
        why: &str,
    ) {
        let code = self.ws.close_code().unwrap_or(code);
        self.notify_close(t, cx, code, why);
        // The log states the code `on_close` got, which may have been decided earlier (1006
        // when the peer's TCP connection ended without a Close, RFC 6455 §7.1.5).
        let code = self.close_notified.unwrap_or(code);
        LoopStats::gauge(&cx.lp.stats().websockets, -1);
        cx.lp.core.metrics().websocket_path(self.path(), -1);
        info!(
            "close {} {} #{} code={} in={} out={} ({why})",
            t.client(),
            self.path(),
            t.id(cx.lp),
            code.0,
            t.bytes_in,
            t.bytes_out
        );
    }
}
