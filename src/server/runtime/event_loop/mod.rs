//! One mio event loop: its listener, its connections, its timers and its inbox. The server
//! runs one per thread; they share the handler, the counters and each other's inboxes.
//!
//! The loop only moves bytes between sockets and [`Session`]s, routes what handlers publish
//! ([`crate::server::fanout`]) and keeps time ([`Timers`]); everything a connection decides happens in
//! its session. What does not need a socket is shared with the fuzz harness (`drive.rs`).
//!
//! Here: the turn, reading and writing. In `accept.rs`: accepting and spreading connections
//! over the loops. In `deliver.rs`: fan-out across loops, inboxes, holds and replay pacing.
//! In `lifecycle.rs`: timers, the memory budget, shutdown and dropping a connection.
//!
//! **Work per turn is bounded.** A connection is read at most [`MAX_READS_PER_TURN`] times
//! per turn, then put on a resume list for the next one, so a fast sender cannot starve the
//! others (or `/health`). What a message's handler publishes is delivered before the next
//! message is read, and a publisher that lands on a backed-up subscriber stops being read
//! until that subscriber drains (see `Session::deliver` and [`Command::Hold`]).

use crate::frame::CloseCode;
use crate::server::budget::Charge;
use crate::server::context::LoopState;
use crate::server::drive::{self, Host, Step};
use crate::server::history;
use crate::server::metrics::LoopStats;
use crate::server::runtime::inbox::Command;
use crate::server::session::{Cx, Io, Session};
use crate::server::shared::Core;
use crate::server::slab::Slab;
use crate::server::timers::{Millis, Timers};
use crate::server::{ConnId, Handler};
use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

mod accept;
mod deliver;
mod lifecycle;
#[cfg(feature = "tls")]
mod tls;

use accept::Accepting;

const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);
/// One read buffer per loop, shared by all its connections. Large enough that a few 64 KiB
/// frames arrive whole and take the protocol's zero-copy path instead of being reassembled.
const READ_BUF_SIZE: usize = 256 * 1024;
/// Reads of one connection per loop turn before it waits for the next turn.
pub(crate) const MAX_READS_PER_TURN: usize = 4;
/// Messages (or HTTP requests) of one connection handled per loop turn at most (see
/// `LoopState::message_allowance`).
pub(crate) const MAX_MESSAGES_PER_TURN: u32 = 64;
/// Inbox commands handled per turn.
const MAX_COMMANDS_PER_TURN: usize = 1024;
/// A loop whose inbox holds more commands than this is backed up: publishers on the other
/// loops are held (not read) until it is down to [`INBOX_LOW`]. A loop's inbox is a receiver
/// like a socket's queue; without this a publisher could outrun another loop's turns and grow
/// its inbox without bound.
const INBOX_HIGH: usize = 4 * MAX_COMMANDS_PER_TURN;
const INBOX_LOW: usize = MAX_COMMANDS_PER_TURN;
/// Connections closed per turn at most to get back under the memory budget.
const MAX_SHEDS_PER_TURN: usize = 16;

struct Conn<S> {
    stream: TcpStream,
    session: Session<S>,
    /// TLS between the socket and the session, on a TLS server (boxed: one pointer on a plain
    /// connection).
    #[cfg(feature = "tls")]
    tls: Option<Box<tls::TlsConn>>,
    /// Interest registered with the poller: bit 0 readable, bit 1 writable.
    registered: u8,
    dirty: bool,
    write_shut: bool,
    /// The poller said the peer ended its side (FIN) or the socket failed: remembered, since
    /// the edge comes once and a request read in the same turn may go on to wait for a
    /// decision without reading up to that end (see `flush`).
    read_closed: bool,
}

pub(crate) struct EventLoop<H: Handler> {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn<H::State>>,
    read_buf: Vec<u8>,
    timers: Timers,
    handler: Arc<H>,
    lp: LoopState,
    /// Connections to read again next turn: their read budget ran out, or they were paused
    /// and may go on.
    resume: Vec<(usize, u32)>,
    dirty: Vec<usize>,
    /// The emptied list of the last flush, kept with its capacity: a broadcast dirties every
    /// receiver each turn, and a fresh list regrew (reallocated and copied) about log2(N)
    /// times per turn for N receivers.
    dirty_spare: Vec<usize>,
    /// Connections whose queue refilled during `on_drain` while their socket had room: flushed
    /// again next turn.
    resume_flush: Vec<(usize, u32)>,
    /// Commands for the other loops, sent at the end of the turn.
    remote: Vec<Vec<Command>>,
    commands: Vec<Command>,
    inbox_backlog: bool,
    /// Publishers of this loop held because another loop's inbox is backed up.
    inbox_held: Vec<ConnId>,
    pool_charge: Charge,
    accepting: Accepting,
    start: Instant,
    shutdown_deadline: Millis,
    /// TLS handshakes moved forward this turn, and those put off, oldest first (see `tls.rs`).
    #[cfg(feature = "tls")]
    tls_handshakes: usize,
    #[cfg(feature = "tls")]
    tls_queue: tls::HandshakeQueue,
    /// The loop's plaintext buffer for TLS connections, allocated on first use.
    #[cfg(feature = "tls")]
    tls_plain: Vec<u8>,
}

#[cfg(not(feature = "tls"))]
impl<S> Conn<S> {
    /// Nothing besides the session's buffers (see `tls.rs`).
    fn tls_weight(&self) -> usize {
        0
    }
}

impl<S: Send + 'static> Conn<S> {
    /// Writes what the socket takes: the queue, or through TLS. Returns the bytes written to
    /// the socket.
    fn write_out(&mut self, pool: &mut crate::server::outbound::BufferPool) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            let may_write = self.session.may_write();
            return tls.flush(&mut self.session.out, &mut self.stream, pool, may_write);
        }
        if !self.session.out.is_empty() && self.session.may_write() {
            return self.session.out.write_to(&mut self.stream, pool);
        }
        Ok(0)
    }

    /// Output waits for the socket: queued, or TLS records not sent yet.
    fn output_waiting(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.as_ref().is_some_and(|t| t.pending()) {
            return true;
        }
        !self.session.out.is_empty()
    }

    /// The session is done writing: a TLS connection sends `close_notify` first. Returns
    /// whether records still wait for the socket (then the close or half-close waits too).
    fn finish_output(&mut self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls.close(&mut self.stream);
        }
        false
    }
}

impl<H: Handler> EventLoop<H> {
    pub(crate) fn new(
        idx: usize,
        poll: Poll,
        mut listener: TcpListener,
        core: Arc<Core>,
        handler: Arc<H>,
    ) -> io::Result<Self> {
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let loops = core.inboxes.len();
        // Every loop counts time from the server's start, so the per-address limiter, shared
        // by the loops, sees one clock.
        let start = core.metrics().started;
        Ok(EventLoop {
            poll,
            listener: Some(listener),
            conns: Slab::default(),
            read_buf: vec![0; READ_BUF_SIZE],
            timers: Timers::default(),
            handler,
            lp: LoopState::new(idx, core),
            resume: Vec::new(),
            dirty: Vec::new(),
            dirty_spare: Vec::new(),
            resume_flush: Vec::new(),
            remote: (0..loops).map(|_| Vec::new()).collect(),
            commands: Vec::new(),
            inbox_backlog: false,
            inbox_held: Vec::new(),
            pool_charge: Charge::default(),
            accepting: Accepting::default(),
            start,
            shutdown_deadline: 0,
            #[cfg(feature = "tls")]
            tls_handshakes: 0,
            #[cfg(feature = "tls")]
            tls_queue: tls::HandshakeQueue::default(),
            #[cfg(feature = "tls")]
            tls_plain: Vec::new(),
        })
    }

    fn core(&self) -> &Core {
        &self.lp.core
    }

    fn clock(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    /// Runs until shutdown completes.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        crate::logging::buffer_this_thread();
        loop {
            // Lines logged during the last turn go out in one write (see crate::logging).
            log::logger().flush();
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!("poll failed: {e}");
                }
                continue;
            }
            self.lp.now = self.clock();
            #[cfg(feature = "tls")]
            {
                self.tls_handshakes = 0;
                // The handshakes put off in earlier turns go before the ones that arrive now.
                self.run_handshake_queue();
            }
            let mut accept_ready = false;
            let mut inbox_ready = self.inbox_backlog;
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept_ready = true,
                    WAKER => inbox_ready = true,
                    Token(slot) => {
                        if event.is_writable() {
                            self.mark_dirty(slot);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            // A peer that closed its side may have sent data and FIN together:
                            // read until the 0 that says so.
                            let drain = event.is_read_closed() || event.is_error();
                            if let Some(conn) = self.conns.get_mut(slot).filter(|_| drain) {
                                conn.read_closed = true;
                            }
                            if drain && self.conns.get(slot).is_some_and(|c| c.session.awaiting_decision()) {
                                // Not read while a decision is pending, but its leaving is
                                // seen: the connection goes and the token says Gone.
                                self.drop_conn(slot, CloseCode::ABNORMAL, "client left while a decision was pending");
                                continue;
                            }
                            self.read(slot, drain);
                        }
                    }
                }
            }
            if accept_ready || (self.accepting.blocked && self.lp.now >= self.accepting.retry_at) {
                self.accept();
            }
            if inbox_ready {
                self.drain_inbox();
            }
            self.release_inbox_held();
            let resume = std::mem::take(&mut self.resume);
            for (slot, generation) in resume {
                if self.conns.generation(slot) == Some(generation) {
                    self.read(slot, true);
                }
            }
            for (slot, generation) in std::mem::take(&mut self.resume_flush) {
                if self.conns.generation(slot) == Some(generation) {
                    self.mark_dirty(slot);
                }
            }
            self.expire_timers();
            // The in-memory history's timer: rooms idle past the TTL go (cheap when not due).
            self.lp.core.history.tick(history::now_ms());
            // This thread's pool of deflate (de)compressors counts against the budget too.
            self.pool_charge
                .settle(self.lp.core.budget(), crate::deflate::pooled_bytes());
            self.shed_if_over_budget();
            self.flush_dirty();
            self.send_remote();
            if self.core().shutdown.load(Ordering::Acquire) && !self.lp.shutting_down {
                self.begin_shutdown();
            }
            if self.lp.shutting_down && (self.conns.len() == 0 || self.lp.now >= self.shutdown_deadline) {
                for slot in self.conns.slots() {
                    self.drop_conn(slot, CloseCode::ABNORMAL, "shutdown grace period over");
                }
                self.send_remote();
                self.core().running.fetch_sub(1, Ordering::AcqRel);
                log::logger().flush();
                return;
            }
        }
    }

    /// How long `poll` may sleep: not at all with work pending, else until the next deadline.
    fn poll_timeout(&self) -> Option<std::time::Duration> {
        if !self.resume.is_empty() || !self.resume_flush.is_empty() || self.inbox_backlog {
            return Some(std::time::Duration::ZERO);
        }
        #[cfg(feature = "tls")]
        if !self.tls_queue.is_empty() {
            return Some(std::time::Duration::ZERO);
        }
        if !self.inbox_held.is_empty() {
            // Look again soon whether the other loops' inboxes have drained.
            return Some(std::time::Duration::from_millis(1));
        }
        let now = self.clock();
        let mut next = self.timers.next();
        if self.accepting.blocked {
            next = Some(next.map_or(self.accepting.retry_at, |n| n.min(self.accepting.retry_at)));
        }
        if self.lp.shutting_down {
            next = Some(next.map_or(self.shutdown_deadline, |n| n.min(self.shutdown_deadline)));
        }
        // Wake at least once a second even when idle (cheap, and a safety net).
        let wait = next.map_or(1000, |at| at.saturating_sub(now).min(1000));
        Some(std::time::Duration::from_millis(wait))
    }

    // ----- reading -------------------------------------------------------------------------

    /// Reads from one connection (up to the per-turn budget) and feeds its session.
    fn read(&mut self, slot: usize, drain: bool) {
        let mut reads = 0;
        self.lp.message_allowance = MAX_MESSAGES_PER_TURN;
        loop {
            let Some(conn) = self.conns.get_mut(slot) else { return };
            if self.lp.message_allowance == 0 {
                // Its share of this turn is used: the rest (stashed or still in the socket)
                // next turn.
                self.resume.push((slot, conn.session.generation()));
                return;
            }
            if conn.session.stash_ready() {
                let mut stash = conn.session.take_stash();
                self.feed(slot, &mut stash);
                continue;
            }
            if !conn.session.wants_read() {
                return;
            }
            if reads == MAX_READS_PER_TURN || self.lp.core.budget().exceeded() {
                // Enough for this turn (or the memory budget must be restored first).
                self.resume.push((slot, conn.session.generation()));
                return;
            }
            #[cfg(feature = "tls")]
            let conn = if reads == 0 && conn.tls_handshaking() {
                if !self.admit_handshake(slot) {
                    // Put off (this turn's handshakes are used, or older ones wait): the
                    // established connections go first, the handshakes in arrival order.
                    return;
                }
                let Some(conn) = self.conns.get_mut(slot) else { return };
                conn
            } else {
                conn
            };
            #[cfg(feature = "tls")]
            let is_tls = conn.tls.is_some();
            let n = match conn.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    self.eof(slot);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("read from {} failed: {e}", conn.session.peer());
                    self.drop_conn(slot, CloseCode::ABNORMAL, "read error");
                    return;
                }
            };
            reads += 1;
            conn.session.bytes_in += n as u64;
            LoopStats::add(&self.lp.stats().bytes_in, n as u64);
            let mut buf = std::mem::take(&mut self.read_buf);
            if let Some(input) = buf.get_mut(..n) {
                #[cfg(feature = "tls")]
                if is_tls {
                    self.feed_tls(slot, input);
                } else {
                    self.feed(slot, input);
                }
                #[cfg(not(feature = "tls"))]
                self.feed(slot, input);
            }
            self.read_buf = buf;
            // A short read means the socket was empty at that moment; with edge-triggered
            // readiness, later bytes raise a new event.
            if n < self.read_buf.len() && !drain {
                return;
            }
        }
    }

    /// The peer ended its stream (TCP FIN, or a TLS close_notify).
    fn eof(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let mut cx = Cx {
            lp: &mut self.lp,
            handler: &*self.handler,
            direct: None,
        };
        conn.session.on_eof(&mut cx);
        self.after_step(slot);
    }

    /// Feeds bytes to a session (see [`drive::feed`]); a stash it may go on with is read
    /// next turn.
    fn feed(&mut self, slot: usize, bytes: &mut [u8]) {
        if drive::feed(self, slot, bytes) {
            if let Some(conn) = self.conns.get_mut(slot) {
                self.resume.push((slot, conn.session.generation()));
            }
        }
    }

    // ----- writing -------------------------------------------------------------------------

    fn flush_dirty(&mut self) {
        // Flushing may run on_drain, which may publish and dirty more connections.
        while !self.dirty.is_empty() {
            let mut dirty = std::mem::replace(&mut self.dirty, std::mem::take(&mut self.dirty_spare));
            for &slot in &dirty {
                self.flush(slot);
            }
            dirty.clear();
            self.dirty_spare = dirty;
            self.send_remote();
        }
    }

    /// Writes what the socket takes, then lets the session move on (closing, draining) and
    /// updates the poller's interest.
    fn flush(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        conn.dirty = false;
        let mut rounds = 0;
        let (resume, released) = loop {
            match conn.write_out(&mut self.lp.pool) {
                Ok(n) => {
                    conn.session.bytes_out += n as u64;
                    LoopStats::add(&self.lp.stats().bytes_out, n as u64);
                }
                Err(e) => {
                    debug!("write to {} failed: {e}", conn.session.peer());
                    self.drop_conn(slot, CloseCode::ABNORMAL, "write error");
                    return;
                }
            }
            // Output left over: the socket is full and will say when it has room.
            let blocked = conn.output_waiting();
            let mut cx = Cx {
                lp: &mut self.lp,
                handler: &*self.handler,
                direct: None,
            };
            let outcome = conn.session.after_flush(&mut cx);
            rounds += 1;
            // on_drain may have queued more while the socket still has room: no readiness
            // edge will come for that, so write it now (a few rounds, then next turn).
            if blocked || conn.session.out.is_empty() || conn.session.io() == Io::Done {
                break outcome;
            }
            if rounds == 8 {
                self.resume_flush.push((slot, conn.session.generation()));
                break outcome;
            }
        };
        conn.session.settle(&self.lp);
        #[cfg(feature = "tls")]
        if let Some(tls) = conn.tls.as_deref_mut() {
            tls.settle(self.lp.core.budget());
        }
        let generation = conn.session.generation();
        match conn.session.io() {
            // TLS: the close_notify goes first; the close waits while it cannot be sent.
            Io::Done if !conn.finish_output() => {
                self.drop_conn(slot, CloseCode::NORMAL, "closed");
                self.release_publishers(released);
                return;
            }
            Io::Linger if !conn.write_shut && !conn.finish_output() => {
                // Half-close, then drain the peer's bytes (see session's LINGER_MS).
                let _ = conn.stream.shutdown(Shutdown::Write);
                conn.write_shut = true;
            }
            _ => {}
        }
        if conn.read_closed && conn.session.awaiting_decision() && conn.session.io() == Io::Open {
            // The client ended its side with (or right behind) the request that went on to
            // wait: the FIN's edge came before the wait began, and no other will come. A
            // client that half-closed is gone for a pending decision (see `deferred.rs`).
            self.drop_conn(slot, CloseCode::ABNORMAL, "client left while a decision was pending");
            self.release_publishers(released);
            return;
        }
        // A connection waiting for a decision stays registered for reading, to see the
        // client leave (it is not read).
        let readable = conn.session.wants_read()
            || conn.session.io() == Io::Linger
            || (conn.session.awaiting_decision() && conn.session.io() == Io::Open);
        let want = u8::from(readable) | (u8::from(conn.output_waiting()) << 1);
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
                    return;
                }
            }
        }
        if resume {
            self.resume.push((slot, generation));
        }
        self.release_publishers(released);
        self.arm_timer(slot);
        self.pump_replay(slot);
        self.deliver_outgoing();
    }
}

impl<H: Handler> drive::Host for EventLoop<H> {
    type App = H;

    fn lp(&mut self) -> &mut LoopState {
        &mut self.lp
    }

    fn session(&mut self, slot: usize, generation: Option<u32>) -> Option<Step<'_, H>> {
        let conn = match generation {
            Some(g) => self.conns.get_gen_mut(slot, g),
            None => self.conns.get_mut(slot),
        };
        #[cfg(feature = "tls")]
        let Conn {
            stream, session, tls, ..
        } = conn?;
        #[cfg(not(feature = "tls"))]
        let Conn { stream, session, .. } = conn?;
        // A large message is written straight from the read buffer when nothing waits (not
        // through TLS: those bytes must go through rustls).
        #[cfg(feature = "tls")]
        let direct = tls.is_none().then_some(stream as &mut dyn std::io::Write);
        #[cfg(not(feature = "tls"))]
        let direct = Some(stream as &mut dyn std::io::Write);
        let cx = Cx {
            lp: &mut self.lp,
            handler: &*self.handler,
            direct,
        };
        Some((session, cx))
    }

    fn slots(&self) -> Vec<usize> {
        self.conns.slots()
    }

    /// After a session did something: charge its memory, deliver what was published, flush
    /// it at the end of the turn, and re-arm its timer.
    fn after_step(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot) {
            conn.session.settle(&self.lp);
        }
        self.mark_dirty(slot);
        self.deliver_outgoing();
        self.arm_timer(slot);
    }

    fn hold_publisher(&mut self, publisher: ConnId) {
        if publisher.node() != self.lp.core.node {
            return;
        }
        if publisher.loop_index() == self.lp.idx {
            if let Some(conn) = self.conns.get_gen_mut(publisher.slot(), publisher.generation()) {
                conn.session.add_hold(&self.lp);
            }
        } else if let Some(remote) = self.remote.get_mut(publisher.loop_index()) {
            remote.push(Command::Hold(publisher));
        }
    }

    fn mark_dirty(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(slot);
            }
        }
    }
}
