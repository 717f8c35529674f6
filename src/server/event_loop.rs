//! One mio event loop: its listener, its connections, its timers and its inbox. The server
//! runs one per thread; they share the handler, the counters and each other's inboxes.
//!
//! This file only moves bytes between sockets and [`Session`]s, routes what handlers publish
//! ([`super::fanout`]) and keeps time ([`Timers`]); everything a connection decides happens in
//! its session.
//!
//! **Work per turn is bounded.** A connection is read at most [`MAX_READS_PER_TURN`] times
//! per turn, then put on a resume list for the next one, so a fast sender cannot starve the
//! others (or `/health`). What a message's handler publishes is delivered before the next
//! message is read, and a publisher that lands on a backed-up subscriber stops being read
//! until that subscriber drains (see `Session::deliver` and [`Command::Hold`]).

use super::budget::Charge;
use super::context::LoopState;
use super::drive::{self, Host, Step};
use super::fanout::Target;
use super::handle::{Command, Core};
use super::history;
use super::metrics::LoopStats;
use super::session::{Cx, Io, Session};
use super::slab::Slab;
use super::timers::{Millis, Timers};
use super::{ConnId, Handler, Response};
use crate::frame::CloseCode;
use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

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
/// After `accept` fails for lack of file descriptors, try again this often (and whenever a
/// connection of this loop closes).
const ACCEPT_RETRY_MS: Millis = 100;
/// At most one "accept failed" warning per this many milliseconds.
const ACCEPT_WARN_EVERY_MS: Millis = 10_000;

struct Conn<S> {
    stream: TcpStream,
    session: Session<S>,
    /// Interest registered with the poller: bit 0 readable, bit 1 writable.
    registered: u8,
    dirty: bool,
    write_shut: bool,
}

/// Accepting, and what to do when it fails.
#[derive(Default)]
struct Accepting {
    /// The last accept failed for lack of descriptors: retry at `retry_at`.
    blocked: bool,
    retry_at: Millis,
    last_warning: Option<Millis>,
    suppressed: u64,
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
}

/// Whether an accept error means "out of file descriptors (or memory) for now".
fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
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
            resume_flush: Vec::new(),
            remote: (0..loops).map(|_| Vec::new()).collect(),
            commands: Vec::new(),
            inbox_backlog: false,
            inbox_held: Vec::new(),
            pool_charge: Charge::default(),
            accepting: Accepting::default(),
            start: Instant::now(),
            shutdown_deadline: 0,
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

    // ----- accepting -----------------------------------------------------------------------

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.accepting.blocked = false;
                    self.admit(stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accepting.blocked = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_resource_exhaustion(&e) => {
                    // Edge-triggered: nothing would wake us for the clients still waiting in
                    // the backlog, so retry on a timer and whenever a connection closes.
                    self.accepting.blocked = true;
                    self.accepting.retry_at = self.lp.now + ACCEPT_RETRY_MS;
                    self.core().metrics().accept_errors.fetch_add(1, Ordering::Relaxed);
                    self.warn_accept(&e);
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends: that one client is gone; go on.
                    debug!("accept failed: {e}");
                }
            }
        }
    }

    fn warn_accept(&mut self, e: &io::Error) {
        let now = self.lp.now;
        match self.accepting.last_warning {
            Some(at) if now < at + ACCEPT_WARN_EVERY_MS => self.accepting.suppressed += 1,
            _ => {
                let more = std::mem::take(&mut self.accepting.suppressed);
                if more > 0 {
                    warn!("accept failed: {e} (and {more} more times since the last warning); retrying every {ACCEPT_RETRY_MS} ms");
                } else {
                    warn!("accept failed: {e}; retrying every {ACCEPT_RETRY_MS} ms and as connections close");
                }
                self.accepting.last_warning = Some(now);
            }
        }
    }

    /// A new connection: refused over `max_connections`, handed to the next loop in turn
    /// (shared listener), or kept.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let core = self.lp.core.clone();
        if core.metrics().connections() >= core.config.max_connections || self.lp.shutting_down {
            let resp = Response::text(503, "503 Service Unavailable: too many connections\n").to_bytes(false, false);
            let _ = stream.write(&resp);
            let _ = stream.shutdown(Shutdown::Both);
            debug!("refused {peer}: max connections reached");
            return;
        }
        let loops = core.inboxes.len();
        if !core.config.reuse_port && loops > 1 {
            let target = core.next_loop.fetch_add(1, Ordering::Relaxed) % loops;
            if target != self.lp.idx {
                if let Some(inbox) = core.inboxes.get(target) {
                    inbox.push([Command::Adopt(stream, peer)]);
                    return;
                }
            }
        }
        self.add_conn(stream, peer);
    }

    fn add_conn(&mut self, stream: TcpStream, peer: SocketAddr) {
        // Linux copies TCP_NODELAY from the listener (set in `bind_listener`); elsewhere set
        // it per connection.
        #[cfg(not(target_os = "linux"))]
        let _ = stream.set_nodelay(true);
        let (node, idx) = (self.lp.core.node, self.lp.idx);
        let lp = &self.lp;
        let slot = self.conns.insert(|slot, generation| Conn {
            stream,
            session: Session::new(ConnId::new(node, idx, slot, generation), peer, lp),
            registered: 1,
            dirty: false,
            write_shut: false,
        });
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let generation = conn.session.id.generation();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut conn.stream, Token(slot), Interest::READABLE)
        {
            warn!("register failed: {e}");
            self.conns.remove(slot);
            return;
        }
        LoopStats::gauge(&self.lp.stats().connections, 1);
        if let Some(inbox) = self.lp.core.inboxes.get(self.lp.idx) {
            inbox.set_live(slot, generation);
        }
        self.arm_timer(slot);
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
                self.resume.push((slot, conn.session.id.generation()));
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
                self.resume.push((slot, conn.session.id.generation()));
                return;
            }
            let n = match conn.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    let mut cx = Cx {
                        lp: &mut self.lp,
                        handler: &*self.handler,
                        direct: None,
                    };
                    conn.session.on_eof(&mut cx);
                    self.after_step(slot);
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

    /// Feeds bytes to a session (see [`drive::feed`]); a stash it may go on with is read
    /// next turn.
    fn feed(&mut self, slot: usize, bytes: &mut [u8]) {
        if drive::feed(self, slot, bytes) {
            if let Some(conn) = self.conns.get_mut(slot) {
                self.resume.push((slot, conn.session.id.generation()));
            }
        }
    }

    // ----- fan-out -------------------------------------------------------------------------

    /// Routes what handlers published: to this loop's connections now, to other loops'
    /// inboxes at the end of the turn.
    fn deliver_outgoing(&mut self) {
        if std::mem::take(&mut self.lp.recorded_here) {
            // A message recorded here went to every loop's inbox, this one's too (history
            // order): deliver it now, before its publisher is read again.
            if let Some(publisher) = self.lp.recorded_from.take() {
                self.hold_if_inboxes_backed_up(publisher);
            }
            self.drain_inbox();
        }
        let (idx, loops) = (self.lp.idx, self.remote.len());
        let publisher = self
            .lp
            .outgoing
            .iter()
            .find_map(|og| og.from.filter(|_| (0..loops).any(|i| i != idx && og.goes_to_loop(i))));
        if let Some(publisher) = publisher {
            self.hold_if_inboxes_backed_up(publisher);
        }
        while !self.lp.outgoing.is_empty() {
            let batch = std::mem::take(&mut self.lp.outgoing);
            for og in batch {
                // To the other processes first (queued, never waiting), then here.
                self.lp.core.forward(&og);
                if let Target::One(id) = og.target {
                    if id.node() != self.lp.core.node {
                        continue;
                    }
                }
                for (i, remote) in self.remote.iter_mut().enumerate() {
                    if i != self.lp.idx && og.goes_to_loop(i) {
                        remote.push(Command::Deliver(og.clone()));
                    }
                }
                if og.goes_to_loop(self.lp.idx) {
                    drive::deliver_local(self, &og);
                }
            }
        }
    }

    /// Holds a publisher of this loop while another loop's inbox is backed up (its commands
    /// would otherwise pile up faster than that loop's turns take them).
    fn hold_if_inboxes_backed_up(&mut self, publisher: ConnId) {
        let core = &self.lp.core;
        if core.inboxes.len() < 2
            || publisher.node() != core.node
            || publisher.loop_index() != self.lp.idx
            || self.inbox_held.contains(&publisher)
        {
            return;
        }
        let idx = self.lp.idx;
        let backed_up = core
            .inboxes
            .iter()
            .enumerate()
            .any(|(i, inbox)| i != idx && inbox.queued() > INBOX_HIGH);
        if !backed_up {
            return;
        }
        if let Some(conn) = self.conns.get_gen_mut(publisher.slot(), publisher.generation()) {
            conn.session.add_hold(&self.lp);
            self.inbox_held.push(publisher);
        }
    }

    /// Lets the publishers held for the other loops' inboxes go once those have drained.
    fn release_inbox_held(&mut self) {
        if self.inbox_held.is_empty() {
            return;
        }
        let idx = self.lp.idx;
        let drained = self
            .lp
            .core
            .inboxes
            .iter()
            .enumerate()
            .all(|(i, inbox)| i == idx || inbox.queued() <= INBOX_LOW);
        if drained {
            for publisher in std::mem::take(&mut self.inbox_held) {
                self.release_local(publisher);
            }
        }
    }

    fn release_publishers(&mut self, publishers: Vec<ConnId>) {
        for publisher in publishers {
            if publisher.node() != self.lp.core.node {
                continue;
            }
            if publisher.loop_index() == self.lp.idx {
                self.release_local(publisher);
            } else if let Some(remote) = self.remote.get_mut(publisher.loop_index()) {
                remote.push(Command::Release(publisher));
            }
        }
    }

    fn release_local(&mut self, publisher: ConnId) {
        if let Some(conn) = self.conns.get_gen_mut(publisher.slot(), publisher.generation()) {
            if conn.session.release_hold(&self.lp) {
                self.resume.push((publisher.slot(), publisher.generation()));
            }
            // An HTTP publisher's answer may have waited for this.
            self.mark_dirty(publisher.slot());
        }
    }

    fn send_remote(&mut self) {
        for (i, commands) in self.remote.iter_mut().enumerate() {
            if !commands.is_empty() {
                if let Some(inbox) = self.lp.core.inboxes.get(i) {
                    inbox.push(commands.drain(..));
                }
            }
        }
    }

    fn drain_inbox(&mut self) {
        let core = self.lp.core.clone();
        let Some(inbox) = core.inboxes.get(self.lp.idx) else {
            return;
        };
        self.inbox_backlog = inbox.take(MAX_COMMANDS_PER_TURN, &mut self.commands);
        let commands = std::mem::take(&mut self.commands);
        let mut commands = commands;
        for command in commands.drain(..) {
            match command {
                Command::Deliver(og) => drive::deliver_local(self, &og),
                Command::Close { id, code, reason } => {
                    if let Some(conn) = self.conns.get_gen_mut(id.slot(), id.generation()) {
                        conn.session.close_from_handle(&mut self.lp, code, &reason);
                        self.after_step(id.slot());
                    }
                }
                Command::Hold(publisher) => {
                    if let Some(conn) = self.conns.get_gen_mut(publisher.slot(), publisher.generation()) {
                        conn.session.add_hold(&self.lp);
                    }
                }
                Command::Release(publisher) => self.release_local(publisher),
                Command::Replay { conn, topic, result } => self.finish_replay(conn, &topic, result),
                Command::Adopt(stream, peer) => {
                    if self.lp.shutting_down {
                        drop(stream);
                    } else {
                        self.add_conn(stream, peer);
                    }
                }
            }
        }
        self.commands = commands;
    }

    /// A connection's replay came back from the bus: framed, it waits in the connection's
    /// recovery to be pumped out as the connection drains (see `replay.rs`).
    fn finish_replay(&mut self, conn: ConnId, topic: &str, result: history::Replay) {
        let core = self.lp.core.clone();
        if self
            .lp
            .recoveries
            .finish(conn, topic, result, |e| core.frame_parts(e.binary, &e.bytes))
        {
            self.mark_dirty(conn.slot());
        }
    }

    /// Queues the next part of a connection's replay, up to its high-water mark, once its
    /// queue is under the low-water mark: a replay is paced by the receiver's drain, never
    /// queued whole (a client is not closed for the size of its own replay).
    fn pump_replay(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let id = conn.session.id;
        let high = self.lp.core.config.backpressure_high_water;
        if !self.lp.recoveries.pacing(id) || conn.session.out.len() > high / 2 {
            return;
        }
        let room = high.saturating_sub(conn.session.out.len()).max(1);
        let core = self.lp.core.clone();
        let frames = self
            .lp
            .recoveries
            .pump(id, room, &core.history, |binary, bytes| core.frame_parts(binary, bytes));
        for frame in frames {
            let mut compressed = None;
            conn.session.deliver(&frame, &mut compressed, &mut self.lp);
        }
        conn.session.settle(&self.lp);
        // Written next turn: one page per connection per turn, so a long replay cannot keep
        // the loop from everyone else.
        self.resume_flush.push((slot, id.generation()));
    }

    // ----- writing -------------------------------------------------------------------------

    fn flush_dirty(&mut self) {
        // Flushing may run on_drain, which may publish and dirty more connections.
        while !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            for slot in dirty {
                self.flush(slot);
            }
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
            if !conn.session.out.is_empty() && conn.session.may_write() {
                match conn.session.out.write_to(&mut conn.stream, &mut self.lp.pool) {
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
            }
            // Queue left over: the socket is full and will say when it has room.
            let blocked = !conn.session.out.is_empty();
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
                self.resume_flush.push((slot, conn.session.id.generation()));
                break outcome;
            }
        };
        conn.session.settle(&self.lp);
        let generation = conn.session.id.generation();
        match conn.session.io() {
            Io::Done => {
                self.drop_conn(slot, CloseCode::NORMAL, "closed");
                self.release_publishers(released);
                return;
            }
            Io::Linger if !conn.write_shut => {
                // Half-close, then drain the peer's bytes (see session's LINGER_MS).
                let _ = conn.stream.shutdown(Shutdown::Write);
                conn.write_shut = true;
            }
            _ => {}
        }
        let readable = conn.session.wants_read() || conn.session.io() == Io::Linger;
        let want = u8::from(readable) | (u8::from(!conn.session.out.is_empty()) << 1);
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

    // ----- time ----------------------------------------------------------------------------

    fn arm_timer(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot) {
            let deadline = conn.session.next_deadline(&self.lp);
            let generation = conn.session.id.generation();
            self.timers.arm(slot, generation, deadline, &mut conn.session.timer_at);
        }
    }

    fn expire_timers(&mut self) {
        let now = self.lp.now;
        while let Some((slot, generation, at)) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_gen_mut(slot, generation) else {
                continue;
            };
            if conn.session.timer_at != at {
                continue; // superseded by an earlier entry
            }
            conn.session.timer_at = super::timers::NOT_SCHEDULED;
            if conn.session.next_deadline(&self.lp) > now {
                self.arm_timer(slot); // activity moved it later
                continue;
            }
            let mut cx = Cx {
                lp: &mut self.lp,
                handler: &*self.handler,
                direct: None,
            };
            let (drop_now, released) = conn.session.on_timeout(&mut cx);
            self.release_publishers(released);
            match drop_now {
                Some(why) => self.drop_conn(slot, CloseCode::ABNORMAL, why),
                None => {
                    self.mark_dirty(slot);
                    self.arm_timer(slot);
                }
            }
        }
    }

    // ----- memory budget -------------------------------------------------------------------

    /// Past the budget, closes the connections of this loop holding the most until the
    /// server is back under it (or this loop has nothing big left to give).
    fn shed_if_over_budget(&mut self) {
        let core = self.lp.core.clone();
        let budget = core.budget();
        let target = budget.limit() / 10 * 9;
        let mut shed = 0;
        while budget.exceeded() || (shed > 0 && budget.used() > target) {
            if shed == MAX_SHEDS_PER_TURN {
                return;
            }
            let Some((slot, holding)) = self
                .conns
                .iter_mut()
                .filter(|(_, c)| c.session.io() != Io::Done)
                .map(|(slot, c)| (slot, c.session.shed_weight()))
                .max_by_key(|&(_, h)| h)
            else {
                return;
            };
            if holding == 0 {
                return;
            }
            if let Some(conn) = self.conns.get_mut(slot) {
                warn!(
                    "memory budget exceeded ({} of {} bytes): closing #{} {} which holds {holding} bytes",
                    budget.used(),
                    budget.limit(),
                    conn.session.id,
                    conn.session.peer()
                );
                LoopStats::add(&self.lp.stats().memory_sheds, 1);
                conn.session.shed(&mut self.lp);
                conn.session.settle(&self.lp);
            }
            self.flush(slot);
            shed += 1;
        }
    }

    // ----- closing -------------------------------------------------------------------------

    fn begin_shutdown(&mut self) {
        self.lp.shutting_down = true;
        self.shutdown_deadline = self.lp.now + self.lp.core.config.shutdown_grace.as_millis() as Millis;
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        for slot in self.conns.slots() {
            let Some(conn) = self.conns.get_mut(slot) else { continue };
            if conn.session.begin_shutdown(&mut self.lp) {
                self.drop_conn(slot, CloseCode::GOING_AWAY, "server shutting down");
            } else {
                self.mark_dirty(slot);
            }
        }
        self.flush_dirty();
    }

    /// Removes a connection: `on_close` (once), its topics and holds, its charges; closes the
    /// socket.
    fn drop_conn(&mut self, slot: usize, code: CloseCode, why: &str) {
        // Closing the socket (when `conn` drops) also removes it from the poller.
        let Some(mut conn) = self.conns.remove(slot) else {
            return;
        };
        let mut cx = Cx {
            lp: &mut self.lp,
            handler: &*self.handler,
            direct: None,
        };
        let held = drive::retire(&mut conn.session, &mut cx, code, why);
        LoopStats::gauge(&self.lp.stats().connections, -1);
        if let Some(inbox) = self.lp.core.inboxes.get(self.lp.idx) {
            inbox.set_live(slot, 0);
        }
        if self.accepting.blocked {
            // A descriptor is free: a client waiting in the backlog can be accepted now.
            self.accepting.retry_at = self.lp.now;
        }
        drop(conn);
        self.release_publishers(held);
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
        let Conn { stream, session, .. } = conn?;
        let cx = Cx {
            lp: &mut self.lp,
            handler: &*self.handler,
            // A large message is written straight from the read buffer when nothing waits.
            direct: Some(stream),
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
