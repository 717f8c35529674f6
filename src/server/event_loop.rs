//! One mio event loop: its listener, its connections, its timers. The server runs one per
//! thread; they share nothing but the handler, the server-wide counters and each other's
//! inboxes (for broadcast and `send_to` across loops).
//!
//! Per connection, the loop owns the socket, the outbound queue and the protocol state; the
//! protocol itself is the sans-IO core ([`crate::handshake`], [`crate::protocol`]): this file
//! only moves bytes between sockets and the core and calls the handler.

use super::handler::{Accept, ConnId, ConnView, Context, Handler, Message, Outgoing, Response, ServerInfo, Target};
use super::outbound::{BufferPool, Outbound};
use super::ServerConfig;
use crate::explain::{self, Direction};
use crate::frame::CloseCode;
use crate::handshake::{self, ParseStatus, Request, RequestParser};
use crate::protocol::{Event, State, WebSocket};
use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// One read buffer per loop, shared by all its connections. Large enough that a few 64 KiB
/// frames arrive whole and take the protocol's zero-copy path instead of being reassembled.
const READ_BUF_SIZE: usize = 256 * 1024;
/// Frames up to this size are copied into each receiver's queue; larger ones are shared.
const SHARE_ABOVE: usize = 512;
/// After our last byte and a half-close, how long to keep draining the peer's bytes so the
/// kernel does not answer them with a reset that could destroy our Close frame in flight.
const LINGER_MS: u32 = 2000;

/// What the loops share.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) info: ServerInfo,
    pub(crate) inboxes: Vec<Inbox>,
    pub(crate) shutdown: AtomicBool,
}

/// Messages for a loop from the others, and the waker that gets its attention.
pub(crate) struct Inbox {
    pub(crate) queue: Mutex<Vec<Outgoing>>,
    pub(crate) waker: Waker,
}

impl Shared {
    pub(crate) fn wake_all(&self) {
        for inbox in &self.inboxes {
            if let Err(e) = inbox.waker.wake() {
                warn!("waking an event loop failed: {e}");
            }
        }
    }
}

/// Where a connection is in its life, apart from its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Working normally.
    No,
    /// Close the TCP connection once the queue is empty.
    AfterFlush,
    /// Write side shut; reading and discarding until the peer closes or the deadline passes.
    Linger,
}

struct HttpState {
    parser: RequestParser,
    buf: Vec<u8>,
}

struct Capture {
    request: Request,
    response: Vec<u8>,
    pending: Vec<u8>,
}

struct WsState {
    ws: WebSocket,
    /// The request target: path and query string, as the client sent them.
    target: Box<str>,
    topics: Vec<Arc<str>>,
    ping_outstanding: bool,
    close_notified: bool,
    capture: Option<Box<Capture>>,
}

enum Phase {
    Http(Box<HttpState>),
    Ws(Box<WsState>),
}

struct Conn {
    stream: TcpStream,
    id: ConnId,
    peer: SocketAddr,
    phase: Phase,
    out: Outbound,
    bytes_in: u64,
    bytes_out: u64,
    /// Milliseconds (loop clock) of the last byte received.
    last_recv: u32,
    /// Meaning depends on the state: handshake or keep-alive deadline (HTTP), close deadline
    /// (WebSocket after our Close), drop deadline (closing).
    deadline: u32,
    closing: Closing,
    /// Reading stopped because the queue passed the high-water mark.
    paused: bool,
    /// Interest registered with the poller: bit 0 readable, bit 1 writable.
    registered: u8,
    dirty: bool,
}

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// The loop's connections, indexed by token; a slot's generation makes stale [`ConnId`]s
/// harmless.
#[derive(Default)]
struct Slab {
    slots: Vec<Slot>,
    free: Vec<usize>,
    len: usize,
}

impl Slab {
    fn insert(&mut self, make: impl FnOnce(usize, u32) -> Conn) -> usize {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                });
                self.slots.len() - 1
            }
        };
        if let Some(slot) = self.slots.get_mut(idx) {
            slot.generation = slot.generation.wrapping_add(1);
            slot.conn = Some(make(idx, slot.generation));
            self.len += 1;
        }
        idx
    }

    fn get_mut(&mut self, idx: usize) -> Option<&mut Conn> {
        self.slots.get_mut(idx).and_then(|s| s.conn.as_mut())
    }

    fn get_by_id(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.get_mut(id.slot()).filter(|c| c.id == id)
    }

    fn remove(&mut self, idx: usize) -> Option<Conn> {
        let conn = self.slots.get_mut(idx).and_then(|s| s.conn.take());
        if conn.is_some() {
            self.free.push(idx);
            self.len -= 1;
        }
        conn
    }

    fn indices(&self) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.conn.is_some())
            .map(|(i, _)| i)
            .collect()
    }
}

/// The loop's state apart from its connections, so both can be borrowed at once.
struct Env {
    idx: usize,
    shared: Arc<Shared>,
    pool: BufferPool,
    /// Topic → slots subscribed on this loop.
    topics: HashMap<Arc<str>, HashSet<usize>>,
    outgoing: Vec<Outgoing>,
    subscriptions: Vec<(Arc<str>, bool)>,
    /// Messages for other loops, sent at the end of the iteration.
    remote: Vec<Vec<Outgoing>>,
    dirty: Vec<usize>,
    resume: Vec<usize>,
    start: Instant,
    now: u32,
    shutting_down: bool,
    shutdown_deadline: u32,
}

fn ms(d: Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX / 2)) as u32
}

/// Whether the loop clock `now` has reached `deadline` (wrapping-safe).
fn passed(now: u32, deadline: u32) -> bool {
    (now.wrapping_sub(deadline) as i32) >= 0
}

impl Env {
    fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    fn trace(&self) -> bool {
        self.shared.config.trace
    }

    fn mark_dirty(&mut self, slot: usize, conn: &mut Conn) {
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(slot);
        }
    }
}

pub(crate) struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab,
    read_buf: Vec<u8>,
    env: Env,
}

impl EventLoop {
    pub(crate) fn new(idx: usize, poll: Poll, mut listener: TcpListener, shared: Arc<Shared>) -> io::Result<Self> {
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let loops = shared.inboxes.len();
        Ok(EventLoop {
            poll,
            listener: Some(listener),
            conns: Slab::default(),
            read_buf: vec![0; READ_BUF_SIZE],
            env: Env {
                idx,
                shared,
                pool: BufferPool::default(),
                topics: HashMap::new(),
                outgoing: Vec::new(),
                subscriptions: Vec::new(),
                remote: (0..loops).map(|_| Vec::new()).collect(),
                dirty: Vec::new(),
                resume: Vec::new(),
                start: Instant::now(),
                now: 0,
                shutting_down: false,
                shutdown_deadline: 0,
            },
        })
    }

    pub(crate) fn waker_token() -> Token {
        WAKER
    }

    /// Runs until shutdown completes.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let c = self.env.config();
        // Timers are checked on every tick; a tick is short enough for the smallest timeout.
        let smallest = [
            c.handshake_timeout,
            c.keepalive_timeout,
            c.ping_interval,
            c.close_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1));
        let tick = (smallest / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
        let mut next_sweep = 0u32;
        crate::logging::buffer_this_thread();
        loop {
            // Lines logged during the last iteration go out in one write (see crate::logging).
            log::logger().flush();
            if let Err(e) = self.poll.poll(&mut events, Some(tick)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!("poll failed: {e}");
                }
                continue;
            }
            self.env.now = ms(self.env.start.elapsed());
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => self.drain_inbox(),
                    Token(slot) => {
                        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                        // A peer that closed its side may have sent data and FIN together: read
                        // until the 0 that says so.
                        let drain = event.is_read_closed() || event.is_error();
                        self.ready(slot, readable, drain, event.is_writable());
                    }
                }
            }
            while let Some(slot) = self.env.resume.pop() {
                self.ready(slot, true, true, false);
            }
            self.deliver_outgoing();
            self.flush_dirty();
            self.send_remote();
            if self.env.shared.shutdown.load(Ordering::Acquire) && !self.env.shutting_down {
                self.begin_shutdown();
            }
            if passed(self.env.now, next_sweep) {
                next_sweep = self.env.now.wrapping_add(ms(tick));
                self.sweep();
                self.deliver_outgoing();
                self.flush_dirty();
                self.send_remote();
            }
            if self.env.shutting_down && (self.conns.len == 0 || passed(self.env.now, self.env.shutdown_deadline)) {
                for slot in self.conns.indices() {
                    self.drop_conn(slot, CloseCode::ABNORMAL, "shutdown grace period over");
                }
                self.deliver_outgoing();
                self.send_remote();
                log::logger().flush();
                return;
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else { return };
            let (mut stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and wait for the next readiness event.
                    warn!("accept failed: {e}");
                    return;
                }
            };
            let info = &self.env.shared.info;
            if info.connections.fetch_add(1, Ordering::AcqRel) >= self.env.config().max_connections {
                info.connections.fetch_sub(1, Ordering::AcqRel);
                let resp = Response::text(503, "503 Service Unavailable: too many connections\n").to_bytes(false);
                let _ = stream.write(&resp);
                let _ = stream.shutdown(Shutdown::Both);
                debug!("refused {peer}: max connections reached");
                continue;
            }
            // Linux copies TCP_NODELAY from the listener (set in `bind_listener`); elsewhere
            // set it per connection.
            #[cfg(not(target_os = "linux"))]
            let _ = stream.set_nodelay(true);
            let now = self.env.now;
            let deadline = now.wrapping_add(ms(self.env.config().handshake_timeout));
            let limits = self.env.config().request_limits;
            let idx = self.env.idx;
            let slot = self.conns.insert(|slot, generation| Conn {
                stream,
                id: ConnId::new(idx, slot, generation),
                peer,
                phase: Phase::Http(Box::new(HttpState {
                    parser: RequestParser::new(limits),
                    buf: Vec::new(),
                })),
                out: Outbound::default(),
                bytes_in: 0,
                bytes_out: 0,
                last_recv: now,
                deadline,
                closing: Closing::No,
                paused: false,
                registered: 1,
                dirty: false,
            });
            let registered = match self.conns.get_mut(slot) {
                Some(conn) => self
                    .poll
                    .registry()
                    .register(&mut conn.stream, Token(slot), Interest::READABLE),
                None => Ok(()),
            };
            if let Err(e) = registered {
                warn!("register failed: {e}");
                self.drop_conn(slot, CloseCode::ABNORMAL, "register failed");
            }
        }
    }

    fn drain_inbox(&mut self) {
        let items = match self.env.shared.inboxes.get(self.env.idx) {
            Some(inbox) => match inbox.queue.lock() {
                Ok(mut q) => std::mem::take(&mut *q),
                Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
            },
            None => Vec::new(),
        };
        for og in items {
            self.deliver_local(&og);
        }
    }

    /// Reads and writes for one connection that the poller says is ready.
    fn ready(&mut self, slot: usize, readable: bool, drain: bool, writable: bool) {
        if writable {
            self.flush(slot);
        }
        if readable {
            self.read(slot, drain);
        }
        self.deliver_outgoing();
        self.flush(slot);
    }

    /// Reads until the socket is empty. A read that returns less than the buffer means the
    /// kernel queue was empty at that moment, and with edge-triggered readiness any byte that
    /// arrives later raises a new event; so unless `drain` is set, a short read ends the loop
    /// without the extra read that would only say `WouldBlock` (one syscall per wakeup saved).
    fn read(&mut self, slot: usize, drain: bool) {
        loop {
            let Some(conn) = self.conns.get_mut(slot) else { return };
            if conn.paused {
                return;
            }
            let n = match conn.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    let code = if conn.closing == Closing::No {
                        CloseCode::ABNORMAL
                    } else {
                        CloseCode::NORMAL
                    };
                    self.drop_conn(slot, code, "peer closed the connection");
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("read from {} failed: {e}", conn.peer);
                    self.drop_conn(slot, CloseCode::ABNORMAL, "read error");
                    return;
                }
            };
            conn.bytes_in += n as u64;
            conn.last_recv = self.env.now;
            let drained = n < self.read_buf.len() && !drain;
            if conn.closing == Closing::Linger {
                if drained {
                    return;
                }
                continue; // discard until the peer closes
            }
            let input = self.read_buf.get_mut(..n).unwrap_or_default();
            let upgrade = match &conn.phase {
                Phase::Http(_) => http_input(&mut self.env, conn, input),
                Phase::Ws(_) => {
                    ws_input(&mut self.env, slot, conn, input);
                    None
                }
            };
            if let Some((request, leftover)) = upgrade {
                self.upgrade(slot, request, leftover);
            }
            self.apply_subscriptions(slot);
            let hw = self.env.config().backpressure_high_water;
            if let Some(conn) = self.conns.get_mut(slot) {
                if conn.out.len() > hw {
                    // Stop reading until the peer takes what we queued (RFC 6455 leaves flow
                    // control to TCP; this keeps our memory bounded).
                    conn.paused = true;
                }
            }
            if drained {
                return;
            }
        }
    }

    fn upgrade(&mut self, slot: usize, request: Request, leftover: Vec<u8>) {
        let shared = self.env.shared.clone();
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let refusal = match handshake::validate_upgrade(&request) {
            Err(e) => Some((e.response(), format!("{e}"))),
            Ok(up) => match shared.handler.on_upgrade(&request, &shared.info) {
                Err(resp) => {
                    let why = format!("refused by handler with {}", resp.status);
                    Some((resp.to_bytes(false), why))
                }
                Ok(accept) => {
                    let Accept {
                        mut protocol,
                        capture_frames,
                    } = accept;
                    if protocol.as_ref().is_some_and(|p| !up.protocols.contains(p)) {
                        warn!("handler chose subprotocol {protocol:?} that the client did not offer; answering without one");
                        protocol = None;
                    }
                    let mut response = Vec::with_capacity(160);
                    handshake::write_accept_response(&mut response, up.key.as_bytes(), protocol.as_deref(), &[]);
                    conn.out.append(&mut self.env.pool, |v| v.extend_from_slice(&response));
                    if shared.config.trace {
                        print_trace(
                            conn.id,
                            conn.peer,
                            &explain::trace_handshake(&request, &response, explain::Style::detect()),
                        );
                    }
                    let target: Box<str> = request.target().into();
                    let capture = (capture_frames || shared.config.trace).then(|| {
                        Box::new(Capture {
                            request,
                            response,
                            pending: Vec::new(),
                        })
                    });
                    info!("open {} {} #{}", conn.peer, target, conn.id);
                    conn.phase = Phase::Ws(Box::new(WsState {
                        ws: WebSocket::server(shared.config.websocket),
                        target,
                        topics: Vec::new(),
                        ping_outstanding: false,
                        close_notified: false,
                        capture,
                    }));
                    conn.last_recv = self.env.now;
                    shared.info.websockets.fetch_add(1, Ordering::AcqRel);
                    None
                }
            },
        };
        if let Some((bytes, why)) = refusal {
            debug!("handshake from {} refused: {why}", conn.peer);
            conn.out.append(&mut self.env.pool, |v| v.extend_from_slice(&bytes));
            start_closing(&mut self.env, conn);
            return;
        }
        with_context(&mut self.env, conn, true, |h, ctx| h.on_open(ctx));
        if !leftover.is_empty() {
            let mut leftover = leftover;
            ws_input(&mut self.env, slot, conn, &mut leftover);
        }
        self.apply_subscriptions(slot);
    }

    fn apply_subscriptions(&mut self, slot: usize) {
        for (topic, on) in self.env.subscriptions.drain(..) {
            if on {
                self.env.topics.entry(topic).or_default().insert(slot);
            } else if let Some(set) = self.env.topics.get_mut(&topic) {
                set.remove(&slot);
                if set.is_empty() {
                    self.env.topics.remove(&topic);
                }
            }
        }
    }

    /// Routes what handlers published: to this loop's connections now, to other loops' inboxes
    /// at the end of the iteration.
    fn deliver_outgoing(&mut self) {
        while !self.env.outgoing.is_empty() {
            let batch = std::mem::take(&mut self.env.outgoing);
            for og in &batch {
                let local = match og.target {
                    Target::One(id) => id.loop_idx() == self.env.idx,
                    _ => true,
                };
                if local {
                    self.deliver_local(og);
                }
                for (i, remote) in self.env.remote.iter_mut().enumerate() {
                    let wanted = match og.target {
                        Target::One(id) => id.loop_idx() == i,
                        _ => true,
                    };
                    if i != self.env.idx && wanted {
                        remote.push(og.clone());
                    }
                }
            }
        }
    }

    fn deliver_local(&mut self, og: &Outgoing) {
        match &og.target {
            Target::Topic(topic) => {
                // Taken out and put back so the set and the loop's state can both be used.
                let Some((key, slots)) = self.env.topics.remove_entry(topic) else {
                    return;
                };
                for &slot in &slots {
                    if let Some(conn) = self.conns.get_mut(slot) {
                        if Some(conn.id) != og.exclude {
                            deliver_one(&mut self.env, slot, conn, &og.frame);
                        }
                    }
                }
                self.env.topics.insert(key, slots);
            }
            Target::All => {
                for (slot, s) in self.conns.slots.iter_mut().enumerate() {
                    if let Some(conn) = s.conn.as_mut() {
                        if Some(conn.id) != og.exclude {
                            deliver_one(&mut self.env, slot, conn, &og.frame);
                        }
                    }
                }
            }
            Target::One(id) => {
                if let Some(conn) = self.conns.get_by_id(*id) {
                    deliver_one(&mut self.env, id.slot(), conn, &og.frame);
                }
            }
        }
    }

    fn send_remote(&mut self) {
        for (i, items) in self.env.remote.iter_mut().enumerate() {
            if items.is_empty() {
                continue;
            }
            if let Some(inbox) = self.env.shared.inboxes.get(i) {
                match inbox.queue.lock() {
                    Ok(mut q) => q.append(items),
                    Err(poisoned) => poisoned.into_inner().append(items),
                }
                if let Err(e) = inbox.waker.wake() {
                    warn!("waking loop {i} failed: {e}");
                }
            }
            items.clear();
        }
    }

    fn flush_dirty(&mut self) {
        while let Some(slot) = self.env.dirty.pop() {
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.dirty = false;
            }
            self.flush(slot);
        }
    }

    /// Writes what the socket takes, then updates interest and closing state.
    fn flush(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        if !conn.out.is_empty() {
            match conn.out.write_to(&mut conn.stream, &mut self.env.pool) {
                Ok(n) => conn.bytes_out += n as u64,
                Err(e) => {
                    debug!("write to {} failed: {e}", conn.peer);
                    self.drop_conn(slot, CloseCode::ABNORMAL, "write error");
                    return;
                }
            }
        }
        if conn.out.is_empty() {
            let handshake_done = matches!(&conn.phase, Phase::Ws(w) if w.ws.state() == State::Closed);
            if conn.closing == Closing::AfterFlush && handshake_done {
                // Both Close frames exchanged and everything the peer sent has been read: a
                // plain close() sends FIN after our data, no reset, so no need to linger.
                self.drop_conn(slot, CloseCode::NORMAL, "close handshake complete");
                return;
            }
            if conn.closing == Closing::AfterFlush {
                // Half-close, then drain the peer's bytes (see LINGER_MS).
                let _ = conn.stream.shutdown(Shutdown::Write);
                conn.closing = Closing::Linger;
                conn.deadline = self.env.now.wrapping_add(LINGER_MS);
            }
            if conn.paused {
                conn.paused = false;
                self.env.resume.push(slot);
                with_context(&mut self.env, conn, true, |h, ctx| h.on_drain(ctx));
            }
        }
        let want = u8::from(!conn.paused) | (u8::from(!conn.out.is_empty()) << 1);
        if want != conn.registered && want != 0 {
            let interest = match want {
                1 => Interest::READABLE,
                2 => Interest::WRITABLE,
                _ => Interest::READABLE | Interest::WRITABLE,
            };
            match self.poll.registry().reregister(&mut conn.stream, Token(slot), interest) {
                Ok(()) => conn.registered = want,
                Err(e) => {
                    warn!("reregister failed: {e}");
                    self.drop_conn(slot, CloseCode::ABNORMAL, "reregister failed");
                }
            }
        }
    }

    /// Timers: handshake and keep-alive timeouts, heartbeat, close and linger deadlines.
    fn sweep(&mut self) {
        let now = self.env.now;
        let c = self.env.config();
        let (ping_after, idle_after) = (ms(c.ping_interval), ms(c.idle_timeout));
        for slot in self.conns.indices() {
            let Some(conn) = self.conns.get_mut(slot) else { continue };
            conn.out.release_if_empty(&mut self.env.pool);
            if conn.closing != Closing::No {
                if passed(now, conn.deadline) {
                    self.drop_conn(slot, CloseCode::ABNORMAL, "close timeout");
                }
                continue;
            }
            let silent = now.wrapping_sub(conn.last_recv);
            match &mut conn.phase {
                Phase::Http(_) => {
                    if passed(now, conn.deadline) {
                        self.drop_conn(slot, CloseCode::ABNORMAL, "handshake or keep-alive timeout");
                    }
                }
                Phase::Ws(w) => {
                    if w.ws.state() == State::CloseSent {
                        if passed(now, conn.deadline) {
                            self.drop_conn(slot, CloseCode::ABNORMAL, "no answer to our Close");
                        }
                    } else if silent >= idle_after {
                        self.drop_conn(slot, CloseCode::ABNORMAL, "heartbeat: peer silent");
                    } else if silent >= ping_after && !w.ping_outstanding && w.ws.can_send() {
                        w.ping_outstanding = true;
                        let ws = &mut w.ws;
                        conn.out.append(&mut self.env.pool, |v| {
                            let _ = ws.send_ping(b"wsloop heartbeat", v);
                        });
                        self.env.mark_dirty(slot, conn);
                    }
                }
            }
        }
    }

    fn begin_shutdown(&mut self) {
        self.env.shutting_down = true;
        let grace = ms(self.env.config().shutdown_grace);
        self.env.shutdown_deadline = self.env.now.wrapping_add(grace);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        for slot in self.conns.indices() {
            let Some(conn) = self.conns.get_mut(slot) else { continue };
            match &mut conn.phase {
                Phase::Http(h) if h.buf.is_empty() && conn.out.is_empty() => {
                    self.drop_conn(slot, CloseCode::GOING_AWAY, "server shutting down");
                }
                Phase::Http(_) => start_closing(&mut self.env, conn),
                Phase::Ws(w) => {
                    let ws = &mut w.ws;
                    conn.out.append(&mut self.env.pool, |v| {
                        let _ = ws.close(CloseCode::GOING_AWAY, "server shutting down", v);
                    });
                    conn.deadline = self.env.now.wrapping_add(grace);
                    self.env.mark_dirty(slot, conn);
                }
            }
        }
        self.flush_dirty();
    }

    /// Removes a connection: tells the handler (once), leaves its topics, closes the socket.
    fn drop_conn(&mut self, slot: usize, code: CloseCode, why: &str) {
        // Closing the socket (when `conn` drops) also removes it from the poller.
        let Some(mut conn) = self.conns.remove(slot) else {
            return;
        };
        let info = &self.env.shared.info;
        info.connections.fetch_sub(1, Ordering::AcqRel);
        if let Phase::Ws(w) = &mut conn.phase {
            info.websockets.fetch_sub(1, Ordering::AcqRel);
            let code = w.ws.close_code().unwrap_or(code);
            if !w.close_notified {
                notify_close(&mut self.env, &mut conn, code, why);
            }
            if let Phase::Ws(w) = &mut conn.phase {
                for topic in w.topics.drain(..) {
                    if let Some(set) = self.env.topics.get_mut(&topic) {
                        set.remove(&slot);
                        if set.is_empty() {
                            self.env.topics.remove(&topic);
                        }
                    }
                }
                info!(
                    "close {} {} #{} code={} in={} out={} ({why})",
                    conn.peer, w.target, conn.id, code.0, conn.bytes_in, conn.bytes_out
                );
            }
        } else {
            debug!("http connection {} closed ({why})", conn.peer);
        }
        conn.out.clear(&mut self.env.pool);
    }
}

/// Queues bytes for a connection and flushes later in this iteration.
fn deliver_one(env: &mut Env, slot: usize, conn: &mut Conn, frame: &Arc<[u8]>) {
    let Phase::Ws(w) = &mut conn.phase else { return };
    if !w.ws.can_send() {
        return;
    }
    if conn.out.len() > env.config().max_outbound {
        // A receiver this far behind is closed rather than buffered without bound.
        let ws = &mut w.ws;
        conn.out.append(&mut env.pool, |v| {
            let _ = ws.close(
                CloseCode::POLICY_VIOLATION,
                "too slow: outbound queue over its limit",
                v,
            );
        });
        conn.deadline = env.now.wrapping_add(ms(env.config().close_timeout));
        debug!("closing slow receiver {} (queue {} bytes)", conn.peer, conn.out.len());
    } else if frame.len() <= SHARE_ABOVE {
        conn.out.append(&mut env.pool, |v| v.extend_from_slice(frame));
    } else {
        conn.out.push_shared(frame.clone(), &mut env.pool);
    }
    if env.trace() {
        print_trace(
            conn.id,
            conn.peer,
            &explain::trace_frames(Direction::Sent, frame, explain::Style::detect()),
        );
    }
    if conn.out.len() > env.config().backpressure_high_water {
        // A receiver falling behind is read from no more until it drains; then the handler
        // hears `on_drain`.
        conn.paused = true;
    }
    env.mark_dirty(slot, conn);
}

fn start_closing(env: &mut Env, conn: &mut Conn) {
    if conn.closing == Closing::No {
        conn.closing = Closing::AfterFlush;
        conn.deadline = env.now.wrapping_add(ms(env.config().close_timeout));
    }
}

fn print_trace(id: ConnId, peer: SocketAddr, text: &str) {
    let mut out = std::io::stdout().lock();
    for line in text.lines() {
        let _ = writeln!(out, "[#{id} {peer}] {line}");
    }
}

/// Splits a request target into path and query string.
fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

fn wants_keep_alive(req: &Request) -> bool {
    if req.has_token("connection", "close") {
        return false;
    }
    req.version_minor() >= 1 || req.has_token("connection", "keep-alive")
}

/// Handles bytes on a connection still speaking HTTP. Returns an upgrade request (and the
/// bytes after it) for the caller to turn into a WebSocket.
fn http_input(env: &mut Env, conn: &mut Conn, input: &[u8]) -> Option<(Request, Vec<u8>)> {
    if conn.closing != Closing::No {
        return None;
    }
    let Phase::Http(h) = &mut conn.phase else { return None };
    if h.buf.is_empty() {
        conn.deadline = env.now.wrapping_add(ms(env.config().handshake_timeout));
    } else {
        h.buf.extend_from_slice(input);
    }
    // While nothing is saved, parse straight from the read buffer; bytes are copied into
    // `h.buf` only when a head arrives in pieces or requests are pipelined behind it.
    let mut fresh = if h.buf.is_empty() { input } else { &[][..] };
    loop {
        let from_buf = !h.buf.is_empty();
        let status = if from_buf {
            h.parser.parse(&h.buf)
        } else {
            h.parser.parse(fresh)
        };
        match status {
            Ok(ParseStatus::Partial) => {
                if !from_buf {
                    h.buf.extend_from_slice(fresh);
                }
                return None;
            }
            Err(e) => {
                debug!("bad request from {}: {e}", conn.peer);
                let bytes = e.response();
                conn.out.append(&mut env.pool, |v| v.extend_from_slice(&bytes));
                start_closing(env, conn);
                return None;
            }
            Ok(ParseStatus::Complete { request, head_len }) => {
                if from_buf {
                    let rest = h.buf.split_off(head_len.min(h.buf.len()));
                    h.buf = rest;
                } else {
                    fresh = fresh.get(head_len..).unwrap_or_default();
                }
                h.parser = RequestParser::new(env.config().request_limits);
                if request.wants_upgrade() {
                    // Bytes after the head are the client's first frames: they go to the
                    // WebSocket, never dropped.
                    let leftover = if from_buf {
                        std::mem::take(&mut h.buf)
                    } else {
                        fresh.to_vec()
                    };
                    return Some((request, leftover));
                }
                let shared = env.shared.clone();
                let response = shared.handler.on_request(&request, &shared.info);
                let has_body = request.header("transfer-encoding").is_some()
                    || request
                        .header_str("content-length")
                        .is_some_and(|v| v.trim().parse::<u64>().map_or(true, |n| n > 0));
                let keep_alive = !env.shutting_down && !has_body && wants_keep_alive(&request);
                debug!(
                    "{} {} {} -> {}",
                    conn.peer,
                    request.method(),
                    request.target(),
                    response.status
                );
                let bytes = response.to_bytes(keep_alive);
                conn.out.append(&mut env.pool, |v| v.extend_from_slice(&bytes));
                if !keep_alive {
                    start_closing(env, conn);
                    return None;
                }
                conn.deadline = env.now.wrapping_add(ms(env.config().keepalive_timeout));
                if h.buf.is_empty() && fresh.is_empty() {
                    h.buf = Vec::new(); // an idle keep-alive connection holds no buffer
                    return None;
                }
            }
        }
    }
}

/// Feeds bytes to a WebSocket's protocol state and calls the handler for each event.
fn ws_input(env: &mut Env, slot: usize, conn: &mut Conn, input: &mut [u8]) {
    let shared = env.shared.clone();
    let handler = &*shared.handler;
    let trace = env.trace();
    let (id, peer) = (conn.id, conn.peer);
    let Phase::Ws(w) = &mut conn.phase else { return };
    w.ping_outstanding = false;
    // Captured connections (/learn, --trace) keep the raw bytes: receive() unmasks in place.
    let raw = w.capture.is_some().then(|| input.to_vec());
    let mut pos = 0;
    while pos < input.len() {
        let Phase::Ws(w) = &mut conn.phase else { return };
        let WsState {
            ws,
            target,
            topics,
            capture,
            ..
        } = &mut **w;
        let (path, query) = split_target(target);
        let can_send = ws.can_send();
        let start = pos;
        let mut auto = Vec::new();
        let mut close_request = None;
        let mut closed_by_peer = None;
        let mut trace_out = Vec::new();
        let received = match ws.receive(input.get_mut(pos..).unwrap_or_default(), &mut auto) {
            Ok(received) => received,
            Err(err) => {
                debug!("{peer} broke the protocol: {err}");
                if trace {
                    print_trace(id, peer, &format!("!! {err}"));
                    print_trace(
                        id,
                        peer,
                        &explain::trace_frames(Direction::Sent, &auto, explain::Style::detect()),
                    );
                }
                conn.out.append(&mut env.pool, |v| v.extend_from_slice(&auto));
                notify_close(env, conn, err.close_code(), err.close_reason());
                start_closing(env, conn);
                return;
            }
        };
        pos += received.consumed;
        let Some(event) = received.event else { break };
        if let (Some(c), Some(raw)) = (capture.as_mut(), raw.as_ref()) {
            c.pending.extend_from_slice(raw.get(start..pos).unwrap_or_default());
            if trace {
                print_trace(
                    id,
                    peer,
                    &explain::trace_frames(Direction::Received, &c.pending, explain::Style::detect()),
                );
            }
        }
        let message = match event {
            Event::Text(t) => Some(Message::Text(t)),
            Event::Binary(b) => Some(Message::Binary(b)),
            Event::Close(frame) => {
                closed_by_peer =
                    Some(frame.map_or((CloseCode::NO_STATUS, String::new()), |f| (f.code, f.reason.to_owned())));
                None
            }
            Event::Ping(_) | Event::Pong(_) => None,
        };
        if let Some(message) = message {
            let mut ctx = Context {
                conn: ConnView {
                    id,
                    peer,
                    path,
                    query,
                    out: &mut conn.out,
                    can_send,
                    close_request: &mut close_request,
                    topics,
                    handshake: capture.as_ref().map(|c| (&c.request, &c.response[..])),
                    frames_in: capture.as_ref().map_or(&[][..], |c| &c.pending[..]),
                    trace_out: trace.then_some(&mut trace_out),
                    direct: Some((&mut conn.stream, &mut conn.bytes_out)),
                },
                pool: &mut env.pool,
                outgoing: &mut env.outgoing,
                subscriptions: &mut env.subscriptions,
                config: &shared.config,
                info: &shared.info,
            };
            handler.on_message(&mut ctx, message);
        }
        // The event's borrows have ended: apply what it asked for.
        if let Some(c) = capture.as_mut() {
            c.pending.clear();
        }
        if !auto.is_empty() {
            // Pong or Close reply from the protocol.
            if trace {
                print_trace(
                    id,
                    peer,
                    &explain::trace_frames(Direction::Sent, &auto, explain::Style::detect()),
                );
            }
            conn.out.append(&mut env.pool, |v| v.extend_from_slice(&auto));
        }
        if trace && !trace_out.is_empty() {
            print_trace(
                id,
                peer,
                &explain::trace_frames(Direction::Sent, &trace_out, explain::Style::detect()),
            );
        }
        if let Some((code, reason)) = close_request {
            request_close(env, conn, code, &reason);
        }
        if let Some((code, reason)) = closed_by_peer {
            notify_close(env, conn, code, &reason);
            // RFC 6455 §7.1.1: the server closes the TCP connection first, once our Close
            // reply (already queued) is out.
            start_closing(env, conn);
            break;
        }
    }
    env.mark_dirty(slot, conn);
}

/// Starts the closing handshake on behalf of the handler.
fn request_close(env: &mut Env, conn: &mut Conn, code: CloseCode, reason: &str) {
    if let Phase::Ws(w) = &mut conn.phase {
        let ws = &mut w.ws;
        let sent = conn.out.append(&mut env.pool, |v| ws.close(code, reason, v));
        if let Err(e) = sent {
            debug!("close from handler not sent: {e}");
        }
        conn.deadline = env.now.wrapping_add(ms(env.config().close_timeout));
    }
}

/// Calls `on_close` once for a WebSocket connection.
fn notify_close(env: &mut Env, conn: &mut Conn, code: CloseCode, reason: &str) {
    let Phase::Ws(w) = &mut conn.phase else { return };
    if w.close_notified {
        return;
    }
    w.close_notified = true;
    with_context(env, conn, false, |h, ctx| h.on_close(ctx, code, reason));
}

/// Builds a [`Context`] for a WebSocket connection outside a message event (open, drain,
/// close) and runs `f` with the handler. `allow_send` is false for `on_close`.
fn with_context(env: &mut Env, conn: &mut Conn, allow_send: bool, f: impl FnOnce(&dyn Handler, &mut Context<'_>)) {
    let shared = env.shared.clone();
    let (id, peer) = (conn.id, conn.peer);
    let Phase::Ws(w) = &mut conn.phase else { return };
    let WsState {
        ws,
        target,
        topics,
        capture,
        ..
    } = &mut **w;
    let (path, query) = split_target(target);
    let mut close_request = None;
    let trace = shared.config.trace;
    let mut trace_out = Vec::new();
    let mut ctx = Context {
        conn: ConnView {
            id,
            peer,
            path,
            query,
            out: &mut conn.out,
            can_send: allow_send && ws.can_send(),
            close_request: &mut close_request,
            topics,
            handshake: capture.as_ref().map(|c| (&c.request, &c.response[..])),
            frames_in: &[],
            trace_out: trace.then_some(&mut trace_out),
            direct: Some((&mut conn.stream, &mut conn.bytes_out)),
        },
        pool: &mut env.pool,
        outgoing: &mut env.outgoing,
        subscriptions: &mut env.subscriptions,
        config: &shared.config,
        info: &shared.info,
    };
    f(&*shared.handler, &mut ctx);
    if trace && !trace_out.is_empty() {
        print_trace(
            id,
            peer,
            &explain::trace_frames(Direction::Sent, &trace_out, explain::Style::detect()),
        );
    }
    if let Some((code, reason)) = close_request {
        request_close(env, conn, code, &reason);
    }
}
