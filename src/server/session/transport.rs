//! What every connection has whatever protocol it speaks: the outbound queue, the input stash,
//! the reasons it is not read, the closing steps and their deadline, and its charge to the
//! memory budget. The HTTP phase and the WebSocket phase both work through it; the phase that
//! follows the upgrade takes it over unchanged (the 101 is still in its queue).

use super::super::budget::{Charge, MemoryBudget};
use super::super::limiter::PerIp;
use super::super::metrics::LoopStats;
use super::super::outbound::{BufferPool, Outbound};
use super::super::timers::{Millis, Stamp};
use super::super::ConnId;
use crate::server::context::LoopState;
use std::net::SocketAddr;

/// After our last byte and a half-close, how long to keep draining the peer's bytes so the
/// kernel does not answer them with a reset that could destroy our Close frame in flight.
pub(super) const LINGER_MS: Millis = 2000;

/// The closing steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closing {
    No,
    /// Close once the queue is empty.
    AfterFlush,
    /// Everything is sent and the write side shut: drain the peer's bytes until it closes.
    Linger,
    Done,
}

/// One connection's transport state. See the module docs.
pub(crate) struct Transport {
    /// This connection's [`ConnId`] less what the loop knows (node and loop index):
    /// [`Transport::id`] puts them back. 8 bytes instead of 16 on every connection.
    slot: u32,
    generation: u32,
    peer: CompactAddr,
    pub(crate) out: Outbound,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(super) closing: Closing,
    /// While closing: when to give up flushing (close timeout) or lingering.
    pub(super) closing_deadline: Stamp,
    /// The peer has closed its side.
    pub(super) eof: bool,
    /// Input taken from the socket but not processed yet (the connection paused in the middle).
    stash: Stash,
    /// Not read: our own queue is over the high-water mark.
    pub(super) backpressured: bool,
    /// Not read: this many backed-up subscribers hold this publisher.
    pub(super) holds: u16,
    /// Not read: the WebSocket sent faster than its message rate (`throttle.rs`); its
    /// timer lifts this.
    pub(super) throttled: bool,
    /// Not read: a handler deferred a decision on the current request (`deferred.rs`); what
    /// follows the request waits in the stash until it is decided.
    pub(super) waiting: bool,
    /// When the loop's timers will call this connection back.
    pub(crate) timer_at: Stamp,
    charge: Charge,
    queued_reported: u32,
    /// Counted in the per-address table (`limiter::PerIp`) until [`Transport::release_ip`].
    ip_counted: bool,
}

impl Transport {
    pub(super) fn new(id: ConnId, peer: SocketAddr) -> Transport {
        Transport {
            slot: id.slot() as u32,
            generation: id.generation(),
            peer: CompactAddr::new(peer),
            out: Outbound::default(),
            bytes_in: 0,
            bytes_out: 0,
            closing: Closing::No,
            closing_deadline: Stamp::new(0, 0),
            eof: false,
            stash: Stash::default(),
            backpressured: false,
            holds: 0,
            throttled: false,
            waiting: false,
            timer_at: super::super::timers::NOT_SCHEDULED,
            charge: Charge::default(),
            queued_reported: 0,
            ip_counted: false,
        }
    }

    /// This connection's id, on the loop `lp` that holds it.
    pub(crate) fn id(&self, lp: &LoopState) -> ConnId {
        ConnId::new(lp.core.node, lp.idx, self.slot as usize, self.generation)
    }

    /// The generation of this connection's slot (its [`ConnId`] without the loop's parts).
    pub(crate) fn generation(&self) -> u32 {
        self.generation
    }

    /// The connection was admitted by the per-address table and counts there until it goes.
    pub(crate) fn set_ip_counted(&mut self) {
        self.ip_counted = true;
    }

    pub(super) fn ip_counted(&self) -> bool {
        self.ip_counted
    }

    /// The connection is going: its count in the per-address table is given back (under the
    /// address it was counted for, the client's behind a trusted proxy), once however often
    /// this is called.
    pub(crate) fn release_ip(&mut self, per_ip: Option<&PerIp>) {
        if std::mem::take(&mut self.ip_counted) {
            if let Some(p) = per_ip {
                p.release(self.client().ip());
            }
        }
    }

    /// The TCP peer: the socket's other end (a proxy, when there is one).
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer.get()
    }

    /// The client: the address a trusted proxy named for the current request (port 0 when
    /// it gave none), else the TCP peer. What the per-address limits count, the logs show and
    /// `Context::client_addr` returns.
    pub(crate) fn client(&self) -> SocketAddr {
        match &self.peer {
            CompactAddr::Forwarded(both) => both[1],
            _ => self.peer.get(),
        }
    }

    /// The client a trusted proxy named for this request (`proxy.rs`), or none: the client
    /// is the peer itself.
    pub(super) fn set_client(&mut self, client: Option<SocketAddr>) {
        let peer = self.peer.get();
        self.peer = match client {
            Some(client) => CompactAddr::Forwarded(Box::new([peer, client])),
            None => CompactAddr::new(peer),
        };
    }

    pub(super) fn is_open(&self) -> bool {
        self.closing == Closing::No
    }

    /// Not read now: its own queue is backed up, a receiver holds it, its message rate
    /// throttles it, or a decision on its request is pending.
    pub(super) fn read_paused(&self) -> bool {
        self.backpressured || self.holds > 0 || self.throttled || self.waiting
    }

    pub(super) fn wants_read(&self) -> bool {
        match self.closing {
            Closing::No => !self.eof && !self.read_paused() && self.stash.is_empty(),
            Closing::Linger => !self.eof,
            Closing::AfterFlush | Closing::Done => false,
        }
    }

    pub(super) fn stash_ready(&self) -> bool {
        !self.stash.is_empty() && self.closing == Closing::No && !self.read_paused()
    }

    pub(super) fn take_stash(&mut self) -> Vec<u8> {
        self.stash.take()
    }

    /// Keeps input that was not taken; a closing connection drops it.
    pub(super) fn stash_rest(&mut self, rest: &[u8]) {
        if self.closing == Closing::No && !rest.is_empty() {
            self.stash.extend_from_slice(rest);
        }
    }

    pub(super) fn clear_stash(&mut self) {
        self.stash.clear();
    }

    /// Bytes held by the transport itself: queued output it owns and stashed input.
    pub(super) fn holding(&self) -> usize {
        self.out.owned_len() + self.stash.len()
    }

    /// Queues bytes to send.
    #[inline]
    pub(super) fn queue(&mut self, pool: &mut BufferPool, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.out.push_bytes(pool, bytes);
        }
    }

    /// Stops reading while the queue is over `high_water` (RFC 6455 leaves flow control to
    /// TCP; this keeps our memory bounded).
    pub(super) fn check_backpressure(&mut self, high_water: usize, stats: &LoopStats) {
        if !self.backpressured && self.out.len() > high_water {
            self.backpressured = true;
            LoopStats::add(&stats.backpressure_pauses, 1);
        }
    }

    /// Closes once the queue is flushed, within `timeout`.
    pub(super) fn start_closing(&mut self, now: Millis, timeout: Millis) {
        if self.closing == Closing::No {
            self.closing = Closing::AfterFlush;
            self.closing_deadline = Stamp::new(now + timeout, now);
            self.stash.clear();
        }
    }

    /// The queue is empty: a connection closing after its flush lingers, or is done at once
    /// when `nothing_more` (both Close frames exchanged, or the peer gone: a plain close()
    /// sends FIN after our data, no reset, so no need to linger).
    pub(super) fn flushed(&mut self, now: Millis, nothing_more: bool) {
        if self.closing == Closing::AfterFlush {
            if nothing_more || self.eof {
                self.closing = Closing::Done;
            } else {
                self.closing = Closing::Linger;
                self.closing_deadline = Stamp::new(now + LINGER_MS, now);
            }
        }
    }

    /// Charges what the connection holds to the budget and its queue to the loop's gauge.
    pub(super) fn settle(&mut self, budget: &MemoryBudget, stats: &LoopStats, holding: usize) {
        self.charge.settle(budget, holding);
        let queued = u32::try_from(self.out.len()).unwrap_or(u32::MAX);
        if queued != self.queued_reported {
            LoopStats::gauge(&stats.queued_bytes, i64::from(queued) - i64::from(self.queued_reported));
            self.queued_reported = queued;
        }
    }

    /// Gives back everything charged (the connection is going).
    pub(super) fn release_charges(&mut self, budget: &MemoryBudget, stats: &LoopStats) {
        self.charge.settle(budget, 0);
        LoopStats::gauge(&stats.queued_bytes, -i64::from(self.queued_reported));
        self.queued_reported = 0;
    }
}

/// The peer's address in 8 bytes for IPv4 (a `SocketAddr` takes 32 on every connection);
/// IPv6 addresses are boxed, and so are the two addresses of a connection through a trusted
/// proxy (the peer, then the client it named).
enum CompactAddr {
    V4([u8; 4], u16),
    V6(Box<SocketAddr>),
    Forwarded(Box<[SocketAddr; 2]>),
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
            CompactAddr::Forwarded(both) => both[0],
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
