//! What a handler can do from inside a callback: [`Context`] for a WebSocket event,
//! [`RequestContext`] for an HTTP request or an upgrade decision. Both work on the loop's own
//! state ([`LoopState`]); nothing here touches a socket except the optional direct write of
//! a large message.

use super::budget::Frame;
use super::fanout::{Outgoing, Target, Topics};
use super::handle::{PushError, ServerHandle, ServerInfo};
use super::history::Stamped;
use super::metrics::LoopStats;
use super::outbound::{BufferPool, Outbound};
use super::replay::Recoveries;
use super::shared::Core;
use super::timers::Millis;
use super::{ConnId, Message, SendStatus};
use crate::deflate::{BroadcastCompressor, DeflateParams};
use crate::error::SendError;
use crate::frame::CloseCode;
use crate::handshake::deflate::DeflatePolicy;
use crate::handshake::Request;
use crate::protocol::{self, Role, State, WebSocketCore};
use std::io::{IoSlice, Write};
use std::net::SocketAddr;
use std::sync::Arc;

/// Messages at least this large are written straight from the caller's buffer when nothing is
/// queued before them; only what the socket does not take is copied into the queue.
const DIRECT_WRITE_MIN: usize = 16 * 1024;

/// Request targets a loop shares between its connections at most.
const MAX_INTERNED_TARGETS: usize = 256;

/// One loop's state apart from its connections: what every callback on the loop may touch.
pub(crate) struct LoopState {
    pub(crate) idx: usize,
    pub(crate) core: Arc<Core>,
    pub(crate) handle: ServerHandle,
    pub(crate) pool: BufferPool,
    pub(crate) topics: Topics,
    /// Connections catching up on a topic's history (see `history.rs`).
    pub(crate) recoveries: Recoveries,
    /// Messages published by the current callback, delivered by the loop when it returns.
    pub(crate) outgoing: Vec<Outgoing>,
    /// The first of `outgoing` a WebSocket's callback may still have to send to its own
    /// connection before what it sends next, to keep its call order (see
    /// [`Context::send_own_publications`]); `None` when nothing was published since. Never
    /// past a publication made since it was set (each publication lowers it to its index), so
    /// a value left from an earlier callback only makes the scan start earlier.
    pub(crate) own_unsent: Option<usize>,
    /// The current callback recorded a message into the in-memory history, which queued it
    /// in every loop's inbox (this one's too, to keep history order): the loop drains its
    /// inbox before the publisher's next read, so a recorded message is delivered, and its
    /// publisher held, like any other publication.
    pub(crate) recorded_here: bool,
    /// Its publisher, if a connection.
    pub(crate) recorded_from: Option<ConnId>,
    /// Messages (or requests) the connection being read may still handle this turn: a
    /// connection sending many small messages gets the rest of its input handled next turn,
    /// so one read of 256 KiB of tiny messages cannot keep the loop from everyone else.
    pub(crate) message_allowance: u32,
    pub(crate) now: Millis,
    pub(crate) shutting_down: bool,
    /// Where a message received on a deflate connection is copied for its handler.
    pub(crate) text_scratch: String,
    pub(crate) binary_scratch: Vec<u8>,
    /// Compresses each published message once for this loop's shared-mode deflate
    /// subscribers (created on first use).
    pub(crate) broadcast: Option<BroadcastCompressor>,
    /// Bytes a callback wrote straight to its socket (direct writes), for its session's count.
    pub(crate) direct_written: u64,
    /// The Close the current callback asked for ([`Context::close`]): code and reason, taken
    /// when the callback returns. Here, not in the connection: it lives only that long, and
    /// every idle connection would carry its pointer.
    pub(crate) close_request: Option<Box<(CloseCode, String)>>,
    /// Request targets seen on this loop, shared by the connections that use them.
    pub(crate) targets: std::collections::HashSet<Arc<str>>,
    /// The target interned last, checked before `targets`.
    pub(crate) last_target: Option<Arc<str>>,
    /// An event stream the current request's handler is setting up (`event_stream.rs`).
    pub(crate) stream_opening: Option<Box<super::event_stream::StreamOpening>>,
}

impl LoopState {
    /// Loop `idx`'s state, empty: what the event loop starts with, and what a harness or a
    /// unit test drives sessions on (with [`Core::detached`] and index 0). `idx` must index
    /// `core.inboxes`.
    pub(crate) fn new(idx: usize, core: Arc<Core>) -> LoopState {
        LoopState {
            idx,
            handle: ServerHandle { core: core.clone() },
            topics: Topics::new(core.info.subscribers.clone(), idx),
            core,
            pool: BufferPool::default(),
            recoveries: Recoveries::default(),
            outgoing: Vec::new(),
            own_unsent: None,
            recorded_here: false,
            recorded_from: None,
            message_allowance: super::event_loop::MAX_MESSAGES_PER_TURN,
            now: 0,
            shutting_down: false,
            text_scratch: String::new(),
            binary_scratch: Vec::new(),
            broadcast: None,
            targets: Default::default(),
            last_target: None,
            direct_written: 0,
            close_request: None,
            stream_opening: None,
        }
    }

    pub(crate) fn stats(&self) -> &LoopStats {
        // The loop's own counters; `idx` always indexes them (one per loop, built together).
        match self.core.metrics().loops.get(self.idx) {
            Some(s) => s,
            None => &self.core.metrics().loops[0],
        }
    }

    /// The request target as a shared string: ten thousand connections to `/chat` hold one
    /// copy. At most [`MAX_INTERNED_TARGETS`] are kept (targets with query strings are often
    /// unique); past that, each connection gets its own.
    pub(crate) fn intern_target(&mut self, target: &str) -> Arc<str> {
        // Connections come in runs to the same target: the last one answers without hashing.
        if let Some(t) = self.last_target.as_ref().filter(|t| ***t == *target) {
            return t.clone();
        }
        let t = match self.targets.get(target) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = target.into();
                if self.targets.len() < MAX_INTERNED_TARGETS {
                    self.targets.insert(t.clone());
                }
                t
            }
        };
        self.last_target = Some(t.clone());
        t
    }

    fn publish(&mut self, target: Target, frame: Arc<Frame>, exclude: Option<ConnId>, from: Option<ConnId>) {
        let at = self.outgoing.len();
        self.own_unsent = Some(self.own_unsent.map_or(at, |i| i.min(at)));
        self.outgoing.push(Outgoing {
            target,
            frame,
            exclude,
            from,
        });
    }

    /// Records and publishes; `Err` when refused (see `Core::record`): nothing was sent.
    fn publish_recorded(
        &mut self,
        topic: &str,
        stamp: &Stamped<'_>,
        exclude: Option<ConnId>,
        from: Option<ConnId>,
    ) -> Result<(), PushError> {
        match self.core.record(topic, stamp, exclude, from)? {
            Some(og) => self.outgoing.push(og),
            None => {
                self.recorded_here = true;
                self.recorded_from = from;
            }
        }
        Ok(())
    }

    /// Counts one HTTP request against this turn's allowance; true when it is used up.
    pub(crate) fn spend_allowance(&mut self) -> bool {
        self.message_allowance = self.message_allowance.saturating_sub(1);
        self.message_allowance == 0
    }

    /// Whether the current callback published something the loop must deliver before the
    /// publisher's next message is read.
    pub(crate) fn has_publications(&self) -> bool {
        !self.outgoing.is_empty() || self.recorded_here
    }

    fn send_to(&mut self, id: ConnId, message: Message<'_>, from: Option<ConnId>) -> Result<(), PushError> {
        if !self.core.may_reach(id) {
            return Err(PushError::Gone);
        }
        let frame = self.core.frame(message);
        self.publish(Target::One(id), frame, None, from);
        Ok(())
    }
}

/// Per-callback requests and flags of one WebSocket, kept by its session.
#[derive(Debug)]
pub(crate) struct WsFlags {
    /// A send returned Backpressure: call `on_drain` once the queue empties.
    pub(crate) drain_armed: bool,
    /// A direct write failed: the connection is broken.
    pub(crate) write_failed: bool,
    /// The handler asked for a Ping ([`Context::ping`]), sent when the callback returns.
    pub(crate) ping_request: bool,
    /// A Ping of ours went out and its Pong has not come back: a Pong is a round trip only
    /// then (an unsolicited one is a heartbeat, RFC 6455 §5.5.3).
    pub(crate) awaiting_pong: bool,
    /// The last round trip, Ping out to Pong in, in the loop's milliseconds; [`NO_RTT`]
    /// before the first. Four bytes in what was this struct's padding: an idle connection
    /// does not grow.
    pub(crate) rtt_ms: u32,
}

/// [`WsFlags::rtt_ms`] before any round trip.
pub(crate) const NO_RTT: u32 = u32::MAX;

impl Default for WsFlags {
    fn default() -> WsFlags {
        WsFlags {
            drain_armed: false,
            write_failed: false,
            ping_request: false,
            awaiting_pong: false,
            rtt_ms: NO_RTT,
        }
    }
}

/// The raw handshake and frames of a connection accepted with `Accept::capture_frames`.
pub(crate) struct Capture {
    pub(crate) request: Request,
    pub(crate) response: Vec<u8>,
    /// The raw (masked) frames of the message being delivered.
    pub(crate) frames_in: Vec<u8>,
}

/// How a callback reaches its connection's protocol state.
pub(crate) enum WsRef<'a> {
    /// The message being delivered lies in the `WebSocket` (zero-copy): frames are built from
    /// this snapshot of its state. Only for connections without permessage-deflate.
    Snapshot(State),
    /// The `WebSocket` itself: sends go through it (and its compressor).
    Live(&'a mut WebSocketCore),
}

/// The connection side of a [`Context`].
pub(crate) struct ConnParts<'a, S> {
    pub(crate) id: ConnId,
    pub(crate) peer: SocketAddr,
    /// The client behind a trusted proxy (`ServerConfig::trusted_proxies`), else `peer`.
    pub(crate) client: SocketAddr,
    pub(crate) target: &'a str,
    pub(crate) request: Option<&'a Request>,
    pub(crate) state: &'a mut S,
    /// The connection's protocol state, or a snapshot of it while a message delivered
    /// zero-copy borrows the `WebSocket`.
    pub(crate) ws: WsRef<'a>,
    pub(crate) out: &'a mut Outbound,
    /// False in `on_close`.
    pub(crate) can_send: bool,
    pub(crate) flags: &'a mut WsFlags,
    /// permessage-deflate was allowed at the upgrade (see [`Context::deflate_policy`]).
    pub(crate) deflate_allowed: bool,
    pub(crate) capture: Option<&'a Capture>,
    /// Copies of the bytes this callback sent, for an installed observer and
    /// [`Context::frames_out`]; `None` (nothing copied) on connections without capture.
    pub(crate) tap: Option<&'a mut Vec<u8>>,
    /// The socket, for writing a large message without queueing a copy.
    pub(crate) direct: Option<&'a mut dyn Write>,
}

/// What a handler can do during a WebSocket event: send to this connection, to another, to a
/// topic's subscribers or to everyone; subscribe; close; read the connection's details and
/// its state.
///
/// A room: every connection joins the topic named by its path, says hello, and what one
/// member sends reaches the others (not itself). Subscriptions end by themselves when the
/// connection closes.
///
/// ```
/// use wsloop::client::{Client, ClientEvent};
/// use wsloop::handshake::Request;
/// use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response, Server};
///
/// struct Rooms;
///
/// impl Handler for Rooms {
///     type State = ();
///
///     fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
///         Ok(Accept::default())
///     }
///
///     fn on_open(&self, ctx: &mut Context<'_>) {
///         let room = ctx.path().to_owned(); // "/lobby"
///         ctx.subscribe(&room);
///         ctx.send_text(&format!("welcome to {room}, {} here", ctx.info().open_websockets()));
///     }
///
///     fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
///         let room = ctx.path().to_owned();
///         ctx.publish_to_others(&room, message);
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let addr = "127.0.0.1:0".parse()?; // any free port
/// let server = Server::new(Rooms).configure(|c| c.bind = addr).start()?;
/// let lobby = format!("ws://{}/lobby", server.local_addr());
///
/// let mut ada = Client::connect(&lobby)?;
/// assert_eq!(ada.recv()?, ClientEvent::Text("welcome to /lobby, 1 here".into()));
/// let mut bob = Client::connect(&lobby)?;
/// assert_eq!(bob.recv()?, ClientEvent::Text("welcome to /lobby, 2 here".into()));
///
/// bob.send_text("hi ada")?;
/// assert_eq!(ada.recv()?, ClientEvent::Text("hi ada".into()));
///
/// // Closing the clients first lets shutdown finish at once instead of waiting out its grace.
/// ada.close(wsloop::CloseCode::NORMAL, "")?;
/// bob.close(wsloop::CloseCode::NORMAL, "")?;
/// server.shutdown();
/// server.join()?;
/// # Ok(())
/// # }
/// ```
pub struct Context<'a, S = ()> {
    pub(crate) conn: ConnParts<'a, S>,
    pub(crate) lp: &'a mut LoopState,
}

impl<S> Context<'_, S> {
    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.conn.id
    }

    /// The peer's address: the other end of the TCP connection (a proxy, when there is
    /// one). See [`Context::client_addr`].
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer
    }

    /// The client's address: when the peer is a trusted proxy
    /// ([`ServerConfig::trusted_proxies`](super::ServerConfig::trusted_proxies)), the one its
    /// `Forwarded` or `X-Forwarded-For` header named at the upgrade (port 0 when the header
    /// gave none); otherwise [`Context::peer_addr`]. The per-address limits count this one.
    pub fn client_addr(&self) -> SocketAddr {
        self.conn.client
    }

    /// The path of the upgrade request, without the query string.
    pub fn path(&self) -> &str {
        // A byte scan: targets are short, and this runs for every message of handlers that
        // route on the path (a `char` pattern search costs more to set up than to run here).
        match self.conn.target.bytes().position(|b| b == b'?') {
            Some(i) => self.conn.target.get(..i).unwrap_or(self.conn.target),
            None => self.conn.target,
        }
    }

    /// The query string of the upgrade request, if any.
    pub fn query(&self) -> Option<&str> {
        let i = self.conn.target.bytes().position(|b| b == b'?')?;
        self.conn.target.get(i + 1..)
    }

    /// The upgrade request, headers and all (unless the upgrade turned
    /// [`Accept::keep_request`](super::Accept::keep_request) off).
    pub fn request(&self) -> Option<&Request> {
        self.conn.request
    }

    /// This connection's state, as [`Handler::on_upgrade`](super::Handler::on_upgrade) made it.
    pub fn state(&self) -> &S {
        self.conn.state
    }

    /// This connection's state, to change.
    pub fn state_mut(&mut self) -> &mut S {
        self.conn.state
    }

    /// Server-wide figures.
    pub fn info(&self) -> &ServerInfo {
        &self.lp.core.info
    }

    /// The largest message the server accepts (`--max-message-size`, see
    /// [`crate::protocol::Config::max_message_size`]). A handler that builds a larger message
    /// from a received one — quoting it in JSON, say — checks what it would build against this.
    pub fn max_message_size(&self) -> usize {
        self.lp.core.config.websocket.max_message_size
    }

    /// A handle to the server for other threads (see [`ServerHandle`]).
    pub fn handle(&self) -> ServerHandle {
        self.lp.handle.clone()
    }

    /// Bytes queued for this connection and not yet taken by the socket.
    pub fn buffered_amount(&self) -> usize {
        self.conn.out.len()
    }

    /// Sends a message to this connection (one frame, RFC 6455 §5.6).
    ///
    /// What this callback published earlier and this connection receives (a topic it is
    /// subscribed to, a broadcast, a `send_to` itself) goes out before it: the connection gets
    /// its messages in call order. Publications to *other* connections are delivered when the
    /// callback returns, as is [`Context::publish_recorded`] (it takes its place in the
    /// topic's history first, so it reaches this connection after what the callback sends).
    pub fn send(&mut self, message: Message<'_>) -> SendStatus {
        if !self.conn.can_send {
            return SendStatus::Dropped;
        }
        if self.lp.own_unsent.is_some() {
            self.send_own_publications();
        }
        let ws_state = match &mut self.conn.ws {
            WsRef::Live(ws) if ws.deflate_params().is_some() => return self.send_through(message),
            WsRef::Live(ws) => ws.state(),
            WsRef::Snapshot(state) => *state,
        };
        let mut payload = message.bytes();
        let Ok(header) = protocol::data_frame_header(Role::Server, ws_state, message.opcode(), true, payload.len())
        else {
            return SendStatus::Dropped;
        };
        let mut header: &[u8] = &header;
        LoopStats::add(&self.lp.stats().messages_out, 1);
        if let Some(tap) = self.conn.tap.as_deref_mut() {
            tap.extend_from_slice(header);
            tap.extend_from_slice(payload);
        }
        if payload.len() >= DIRECT_WRITE_MIN && self.conn.out.is_empty() && !self.conn.flags.write_failed {
            if let Some(stream) = self.conn.direct.as_mut() {
                // One writev of header + payload, straight from the read or reassembly buffer.
                match stream.write_vectored(&[IoSlice::new(header), IoSlice::new(payload)]) {
                    Ok(written) => {
                        self.lp.direct_written += written as u64;
                        let from_header = written.min(header.len());
                        header = header.get(from_header..).unwrap_or_default();
                        payload = payload.get(written - from_header..).unwrap_or_default();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::debug!("write to {} failed: {e}", self.conn.peer);
                        self.conn.flags.write_failed = true;
                        return SendStatus::Dropped;
                    }
                }
            }
        }
        if !header.is_empty() || !payload.is_empty() {
            self.conn.out.append(&mut self.lp.pool, |v| {
                v.extend_from_slice(header);
                v.extend_from_slice(payload);
            });
        }
        if self.conn.out.len() > self.lp.core.config.backpressure_high_water {
            self.conn.flags.drain_armed = true;
            SendStatus::Backpressure
        } else {
            SendStatus::Queued
        }
    }

    /// A send through the connection's `WebSocket`, which compresses it when permessage-deflate
    /// was negotiated and the message is long enough (RFC 7692 §6).
    fn send_through(&mut self, message: Message<'_>) -> SendStatus {
        let WsRef::Live(ws) = &mut self.conn.ws else {
            return SendStatus::Dropped;
        };
        let tap = self.conn.tap.as_deref_mut();
        let limits = &self.lp.core.config.websocket;
        let sent = self.conn.out.append(&mut self.lp.pool, |v| {
            let start = v.len();
            let r = match message {
                Message::Text(t) => ws.send_text(limits, t, v),
                Message::Binary(b) => ws.send_binary(limits, b, v),
            };
            if let Some(tap) = tap {
                tap.extend_from_slice(v.get(start..).unwrap_or_default());
            }
            r
        });
        if sent.is_err() {
            return SendStatus::Dropped;
        }
        LoopStats::add(&self.lp.stats().messages_out, 1);
        if self.conn.out.len() > self.lp.core.config.backpressure_high_water {
            self.conn.flags.drain_armed = true;
            SendStatus::Backpressure
        } else {
            SendStatus::Queued
        }
    }

    /// Sends this connection, now, what the current callback published that it receives and
    /// has not been sent yet, then leaves it out of those publications' delivery (their
    /// `exclude`): so a publication followed by a send reaches it in call order. The cost is
    /// here, in a callback that both publishes and sends (a branch on `own_unsent` otherwise);
    /// delivery to everyone else is unchanged.
    fn send_own_publications(&mut self) {
        let Some(from) = self.lp.own_unsent.take() else { return };
        let me = self.conn.id;
        for i in from..self.lp.outgoing.len() {
            let Some(og) = self.lp.outgoing.get(i) else { break };
            // Left out already (`publish_to_others`, or sent here before).
            if og.exclude.is_some() {
                continue;
            }
            let mine = match &og.target {
                Target::Topic(topic) => self.lp.topics.is_member(me, topic),
                Target::All => true,
                Target::One(id) => *id == me,
                // Held back or skipped by a catching-up subscriber: left to the loop.
                Target::Recorded(..) => false,
            };
            if !mine {
                continue;
            }
            let frame = og.frame.clone();
            self.send_frame(&frame);
            if let Some(og) = self.lp.outgoing.get_mut(i) {
                og.exclude = Some(me);
            }
        }
    }

    /// Queues a frame framed once for many receivers (a publication) as this connection's
    /// own send: the plain bytes, or compressed by this connection's compressor when it
    /// negotiated permessage-deflate (RFC 7692 §6).
    fn send_frame(&mut self, frame: &Arc<Frame>) {
        let tap = self.conn.tap.as_deref_mut();
        match &mut self.conn.ws {
            WsRef::Live(ws) if ws.deflate_params().is_some() => {
                let Some((opcode, payload)) = frame.payload() else {
                    return;
                };
                let limits = &self.lp.core.config.websocket;
                let sent = self.conn.out.append(&mut self.lp.pool, |v| {
                    let start = v.len();
                    let r = ws.send_frame_compressed(limits, opcode, payload, v);
                    if let Some(tap) = tap {
                        tap.extend_from_slice(v.get(start..).unwrap_or_default());
                    }
                    r
                });
                if sent.is_err() {
                    return;
                }
            }
            _ => {
                if let Some(tap) = tap {
                    tap.extend_from_slice(frame.bytes());
                }
                self.conn
                    .out
                    .append(&mut self.lp.pool, |v| v.extend_from_slice(frame.bytes()));
            }
        }
        LoopStats::add(&self.lp.stats().messages_out, 1);
        if self.conn.out.len() > self.lp.core.config.backpressure_high_water {
            self.conn.flags.drain_armed = true;
        }
    }

    /// Runs `f` with this connection's state and, beside it, a context for everything else:
    /// the way to use the state's fields as arguments of the connection's actions, which
    /// `ctx.subscribe(&ctx.state().room)` cannot do (the state is borrowed from the context,
    /// E0502) without cloning the field first.
    ///
    /// Inside, the context's own [`Context::state`] is `()`: the state is `f`'s first argument.
    /// Whatever `f` does through the context (send, publish, subscribe, close) is this
    /// connection's, exactly as through `self`.
    ///
    /// ```
    /// use wsloop::handshake::Request;
    /// use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response};
    ///
    /// struct Chat;
    /// struct Member {
    ///     room: String,
    ///     said: u64,
    /// }
    ///
    /// impl Handler for Chat {
    ///     type State = Member;
    ///     fn on_upgrade(&self, req: &Request, _: &mut RequestContext<'_>) -> Result<Accept<Member>, Response> {
    ///         let room = req.path().trim_start_matches('/').to_owned();
    ///         Ok(Accept::new(Member { room, said: 0 }))
    ///     }
    ///     fn on_open(&self, ctx: &mut Context<'_, Member>) {
    ///         ctx.with_state(|member, ctx| ctx.subscribe(&member.room));
    ///     }
    ///     fn on_message(&self, ctx: &mut Context<'_, Member>, message: Message<'_>) {
    ///         ctx.with_state(|member, ctx| {
    ///             member.said += 1; // the state is mutable here too
    ///             ctx.publish(&member.room, message);
    ///         });
    ///     }
    /// }
    /// ```
    pub fn with_state<R>(&mut self, f: impl FnOnce(&mut S, &mut Context<'_>) -> R) -> R {
        let mut no_state = ();
        let ConnParts {
            id,
            peer,
            client,
            target,
            request,
            state,
            ws,
            out,
            can_send,
            flags,
            deflate_allowed,
            capture,
            tap,
            direct,
        } = &mut self.conn;
        let mut rest = Context {
            conn: ConnParts {
                id: *id,
                peer: *peer,
                client: *client,
                target,
                request: *request,
                state: &mut no_state,
                ws: match ws {
                    WsRef::Snapshot(s) => WsRef::Snapshot(*s),
                    WsRef::Live(ws) => WsRef::Live(ws),
                },
                out,
                can_send: *can_send,
                flags,
                deflate_allowed: *deflate_allowed,
                capture: *capture,
                tap: tap.as_deref_mut(),
                direct: direct.as_mut().map(|d| &mut **d as &mut dyn Write),
            },
            lp: &mut *self.lp,
        };
        let result = f(state, &mut rest);
        // A close inside `f` ends sending for the rest of the callback.
        let still = rest.conn.can_send;
        self.conn.can_send = still;
        result
    }

    /// How many connections of this process are subscribed to `topic` now, on every loop
    /// (see [`ServerInfo::subscriber_count`]; with a message bus, this process only). This
    /// connection counts once it has subscribed.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.lp.core.info.subscriber_count(topic)
    }

    /// Sends a Ping to this connection (RFC 6455 §5.5.2) when the callback returns, after
    /// what it sent. The client's Pong gives the round trip: [`Context::rtt`] and
    /// [`Handler::on_pong`](super::Handler::on_pong). The heartbeat pings a silent
    /// connection by itself (`--ping-interval`), and its Pong measures the same way.
    ///
    /// `Dropped` once the connection is closing (or in `on_close`); one Ping per callback.
    pub fn ping(&mut self) -> SendStatus {
        if !self.conn.can_send {
            return SendStatus::Dropped;
        }
        self.conn.flags.ping_request = true;
        SendStatus::Queued
    }

    /// The last round trip measured on this connection: from one of the server's Pings (the
    /// heartbeat's or [`Context::ping`]'s) to the client's Pong, in whole milliseconds on
    /// the event loop's clock (so a loopback peer reads as 0 ms). `None` until a Pong has
    /// answered one.
    ///
    /// A Ping carries the time it was sent, which its Pong echoes (RFC 6455 §5.5.3): the
    /// figure is what the client's answer says, and a client can only make it larger by
    /// answering late — or, forging the echo, smaller; it measures the path, not the client.
    pub fn rtt(&self) -> Option<std::time::Duration> {
        let ms = self.conn.flags.rtt_ms;
        (ms != NO_RTT).then(|| std::time::Duration::from_millis(u64::from(ms)))
    }

    /// Sends a text message to this connection.
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.send(Message::Text(text))
    }

    /// Sends a binary message to this connection.
    pub fn send_binary(&mut self, data: &[u8]) -> SendStatus {
        self.send(Message::Binary(data))
    }

    /// Sends a message to another connection, on whichever loop holds it — or, with a message
    /// bus, whichever process (its id's node says which). [`PushError::Gone`] if it is local
    /// and has closed.
    pub fn send_to(&mut self, id: ConnId, message: Message<'_>) -> Result<(), PushError> {
        let from = Some(self.conn.id);
        self.lp.send_to(id, message, from)
    }

    /// Subscribes this connection to a topic (a room); it receives what is published there
    /// until it unsubscribes or closes. Takes effect at once.
    pub fn subscribe(&mut self, topic: &str) {
        self.lp.topics.subscribe(self.conn.id, topic);
    }

    /// Unsubscribes this connection from a topic.
    pub fn unsubscribe(&mut self, topic: &str) {
        self.lp.topics.unsubscribe(self.conn.id, topic);
        self.lp.recoveries.remove_topic(self.conn.id, topic);
    }

    /// Subscribes this connection to a topic and first sends what was recorded there after
    /// `since` (the last history id the client saw; see [`Stamped`] and
    /// [`Context::publish_recorded`]), in order, then live messages — none missed, none twice
    /// (how: `history.rs`). If the replay cannot be complete (`since` was trimmed away, is
    /// malformed or from another history, or the message bus is unreachable), `notice` is sent
    /// instead at that point, so the client can resync.
    ///
    /// The replay is sent as this connection drains, never queued whole (so a long one cannot
    /// get it closed for a full queue); live messages of the topic wait behind it. With a
    /// message bus it follows a round trip to Redis.
    pub fn subscribe_since(&mut self, topic: &str, since: &str, notice: Message<'_>) {
        let notice_parts = (matches!(notice, Message::Binary(_)), notice.bytes().to_vec());
        if !self.lp.subscribe_since(self.conn.id, topic, since, notice_parts) {
            self.send(notice);
        }
    }

    /// Publishes a message into `topic`'s history and to its subscribers, this connection
    /// included if subscribed: the server fills its id into the hole of `message` (see
    /// [`Stamped`]) so clients can name the last one they saw when they reconnect
    /// ([`Context::subscribe_since`]).
    ///
    /// Without a message bus it is delivered at once, with an id from this process's history.
    /// With one, Redis assigns the id and publishes it in one step, and every process — this
    /// one too — delivers it when it comes back: history order is delivery order everywhere.
    /// If the bus is unreachable it is delivered here at once, with an empty id, and not
    /// recorded; so it is when it cannot be recorded now (the bus's queue is full, or it
    /// would start a room past [`ServerConfig::history_rooms`](super::ServerConfig)).
    pub fn publish_recorded(&mut self, topic: &str, message: Stamped<'_>) {
        let from = Some(self.conn.id);
        if self.lp.publish_recorded(topic, &message, None, from).is_err() {
            let og = self.lp.core.unrecorded(topic, &message, None, from);
            self.lp.outgoing.push(og);
        }
    }

    /// The topics this connection is subscribed to.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.lp.topics.topics_of(self.conn.id).iter().map(|t| &**t)
    }

    /// Sends a message to every subscriber of `topic` on every loop, this connection included
    /// if subscribed. The frame is encoded once and the same bytes are queued for each
    /// receiver. If a subscriber is backed up, this connection stops being read until it
    /// drains (backpressure reaches the publisher).
    ///
    /// Delivery happens when the callback returns; but this connection, if subscribed, gets
    /// its copy before anything the callback sends it afterwards ([`Context::send`],
    /// [`Context::close`]): `publish` then `send` arrive in that order.
    pub fn publish(&mut self, topic: &str, message: Message<'_>) {
        let frame = self.lp.core.frame(message);
        let from = Some(self.conn.id);
        self.lp.publish(Target::Topic(topic.into()), frame, None, from);
    }

    /// Like [`Context::publish`], leaving this connection out.
    pub fn publish_to_others(&mut self, topic: &str, message: Message<'_>) {
        let frame = self.lp.core.frame(message);
        let id = Some(self.conn.id);
        self.lp.publish(Target::Topic(topic.into()), frame, id, id);
    }

    /// Sends a message to every open WebSocket on the server (this one too, in call order
    /// with its sends, as for [`Context::publish`]).
    pub fn broadcast(&mut self, message: Message<'_>) {
        let frame = self.lp.core.frame(message);
        let from = Some(self.conn.id);
        self.lp.publish(Target::All, frame, None, from);
    }

    /// Starts the closing handshake with this code and reason (RFC 6455 §7.1.2) once the
    /// callback returns; nothing more is sent to this connection. The reason is cut at a
    /// character boundary to fit the Close frame (123 bytes, RFC 6455 §5.5).
    ///
    /// # Errors
    ///
    /// Nothing happens, and the connection stays as it was, when:
    /// - [`SendError::InvalidCloseCode`]: the code may not go on the wire (RFC 6455 §7.4:
    ///   1004, 1005, 1006, 1015, anything under 1000, 1016–2999 or over 4999; see
    ///   [`CloseCode::is_valid_on_wire`]). Applications pick from 3000–4999, or a defined
    ///   code such as 1000 or 1008.
    /// - [`SendError::Closing`]: the connection is already closing (the first close wins).
    ///
    /// Why a `Result` rather than a panic: the code may well be computed at run time (passed
    /// on from a peer, a table, a configuration), and a close that silently did nothing would
    /// leave the connection open while the caller believes it closed.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if !code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        if !self.conn.can_send {
            return Err(SendError::Closing);
        }
        // What this callback published to this connection goes before the Close (call order,
        // as for `send`); nothing is sent after it.
        self.send_own_publications();
        self.lp.close_request = Some(Box::new((code, reason.to_owned())));
        self.conn.can_send = false;
        Ok(())
    }

    /// The upgrade request and the 101 response bytes, when the upgrade was accepted with
    /// [`Accept::capture_frames`](super::Accept::capture_frames).
    pub fn handshake(&self) -> Option<(&Request, &[u8])> {
        self.conn.capture.map(|c| (&c.request, &c.response[..]))
    }

    /// The raw bytes (still masked, as they crossed the wire) of the frames that carried the
    /// current message, when the upgrade was accepted with
    /// [`Accept::capture_frames`](super::Accept::capture_frames); empty otherwise.
    pub fn frames_in(&self) -> &[u8] {
        self.conn.capture.map_or(&[], |c| &c.frames_in[..])
    }

    /// The raw bytes of the frames this callback has sent to this connection so far (with
    /// [`send`](Context::send) and its kin), exactly as they go on the wire: compressed when
    /// permessage-deflate compressed them. Only when the upgrade was accepted with
    /// [`Accept::capture_frames`](super::Accept::capture_frames); empty otherwise, and then
    /// nothing is copied. Protocol replies (Pong, Close) are not included, nor are
    /// publications — except those this callback made that reach this connection and were
    /// sent ahead of a later send to keep call order (see [`Context::publish`]).
    pub fn frames_out(&self) -> &[u8] {
        if self.conn.capture.is_none() {
            return &[];
        }
        self.conn.tap.as_deref().map_or(&[], |t| &t[..])
    }

    /// The permessage-deflate parameters this connection agreed at the upgrade (RFC 7692
    /// §7.1), or `None` when it sends and receives uncompressed.
    pub fn deflate_params(&self) -> Option<DeflateParams> {
        match &self.conn.ws {
            WsRef::Live(ws) => ws.deflate_params().copied(),
            // A snapshot is only taken for connections without permessage-deflate.
            WsRef::Snapshot(_) => None,
        }
    }

    /// The policy this connection's permessage-deflate offers were judged under at the
    /// upgrade: the server's [`DeflateMode`](super::DeflateMode)'s, or `None` when deflate was
    /// off for the server or turned off for this connection by
    /// [`Accept::deflate`](super::Accept::deflate). With the request's offers it replays the
    /// negotiation (what `/learn` explains).
    pub fn deflate_policy(&self) -> Option<DeflatePolicy> {
        if self.conn.deflate_allowed {
            self.lp.core.config.deflate.policy()
        } else {
            None
        }
    }
}

/// What a handler can do while deciding an HTTP request or an upgrade: see the peer, push
/// messages to WebSockets, read the server's figures.
///
/// What an HTTP request publishes is under the same backpressure as a WebSocket's messages:
/// when a receiver is backed up, the requesting connection is not read again, and its
/// response waits, until the receiver drains (or stops holding publishers after
/// [`ServerConfig::fanout_stall_timeout`](super::ServerConfig::fanout_stall_timeout)).
pub struct RequestContext<'a> {
    /// The HTTP connection: the publisher of what the request publishes.
    pub(crate) id: ConnId,
    pub(crate) peer: SocketAddr,
    /// The client behind a trusted proxy, else `peer`.
    pub(crate) client: SocketAddr,
    pub(crate) lp: &'a mut LoopState,
    /// What this callback may defer, and what it did (see `deferred.rs`).
    pub(crate) deferrable: super::deferred::Deferrable,
    pub(crate) deferral: super::deferred::Deferral,
}

impl RequestContext<'_> {
    /// The peer's address: the other end of the TCP connection (a proxy, when there is
    /// one). See [`RequestContext::client_addr`].
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The client's address: when the peer is a trusted proxy
    /// ([`ServerConfig::trusted_proxies`](super::ServerConfig::trusted_proxies)), the one this
    /// request's `Forwarded` or `X-Forwarded-For` header named (port 0 when it gave none);
    /// otherwise [`RequestContext::peer_addr`].
    pub fn client_addr(&self) -> SocketAddr {
        self.client
    }

    /// Server-wide figures.
    pub fn info(&self) -> &ServerInfo {
        &self.lp.core.info
    }

    /// The largest message the server accepts (`--max-message-size`, see
    /// [`crate::protocol::Config::max_message_size`]). A handler that builds a larger message
    /// from a received one — quoting it in JSON, say — checks what it would build against this.
    pub fn max_message_size(&self) -> usize {
        self.lp.core.config.websocket.max_message_size
    }

    /// A handle to the server for other threads.
    pub fn handle(&self) -> ServerHandle {
        self.lp.handle.clone()
    }

    /// Sends a message to every subscriber of `topic` (an HTTP route that triggers a
    /// broadcast).
    pub fn publish(&mut self, topic: &str, message: Message<'_>) {
        let frame = self.lp.core.frame(message);
        self.lp.publish(Target::Topic(topic.into()), frame, None, Some(self.id));
    }

    /// Sends a message to every open WebSocket.
    pub fn broadcast(&mut self, message: Message<'_>) {
        let frame = self.lp.core.frame(message);
        self.lp.publish(Target::All, frame, None, Some(self.id));
    }

    /// Sends a message to one WebSocket. [`PushError::Gone`] if it has closed.
    pub fn send_to(&mut self, id: ConnId, message: Message<'_>) -> Result<(), PushError> {
        self.lp.send_to(id, message, Some(self.id))
    }

    /// Publishes a message into `topic`'s history and to its subscribers (see
    /// [`Context::publish_recorded`]). [`PushError::OverBudget`] when it cannot be recorded
    /// now — the message bus's queue is full (Redis is slow or stopped), or it would start a
    /// room past [`ServerConfig::history_rooms`](super::ServerConfig) — and then nothing was
    /// sent: an HTTP route answers 503 and the client tries again later.
    pub fn publish_recorded(&mut self, topic: &str, message: Stamped<'_>) -> Result<(), PushError> {
        self.lp.publish_recorded(topic, &message, None, Some(self.id))
    }
}
