//! A loop's inbox: the one way work reaches an event loop from outside it (a handle on any
//! thread, another loop, the bus bridge). Commands queue under a lock and the loop is woken
//! through its `mio::Waker`, at most once per batch (a flag says a wake is already pending);
//! the loop drains its inbox in order, so messages from one sender arrive in the order they
//! were pushed.
//!
//! A loop without a poller (the fuzz harness, unit tests driving sessions on byte vectors)
//! has an inbox without a waker: whoever drives it drains it.

use crate::frame::CloseCode;
use crate::server::fanout::Outgoing;
use crate::server::history::Replay;
use crate::server::ConnId;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Work for a loop from outside it.
pub(crate) enum Command {
    /// Deliver a framed message to this loop's receivers.
    Deliver(Outgoing),
    /// Subscribe a connection to a topic (`join`) or unsubscribe it, asked through the
    /// server handle.
    Subscribe { id: ConnId, topic: Arc<str>, join: bool },
    /// Start the closing handshake of one connection.
    Close {
        id: ConnId,
        code: CloseCode,
        reason: String,
    },
    /// A subscriber on another loop is backed up: stop reading from this publisher.
    Hold(ConnId),
    /// That subscriber has drained (or given up holding): the publisher may go on.
    Release(ConnId),
    /// A connection accepted by another loop, handed over to balance the loops.
    Adopt(mio::net::TcpStream, SocketAddr),
    /// The history a connection asked for (`subscribe_since`) was read from the message bus.
    Replay {
        conn: ConnId,
        topic: Arc<str>,
        result: Replay,
    },
    /// A pending upgrade or response decided on another thread (see `deferred.rs`).
    Decide {
        id: ConnId,
        decision: crate::server::deferred::Decision,
    },
}

/// One loop's mailbox.
pub(crate) struct Inbox {
    queue: Mutex<VecDeque<Command>>,
    /// `None` for a loop driven by a harness rather than a poller: nothing sleeps, so there
    /// is nothing to wake.
    waker: Option<mio::Waker>,
    /// A wake is on its way; further pushes need not wake again.
    notified: AtomicBool,
    /// Commands queued, readable without the lock (publishers are held while it is high).
    queued: AtomicUsize,
    /// The generation of each occupied slot of the loop (0: free), so a push to a connection
    /// that has gone can be answered "gone" on the caller's thread.
    live: Mutex<Vec<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inbox {
    pub(crate) fn new(waker: Option<mio::Waker>) -> Inbox {
        Inbox {
            queue: Mutex::new(VecDeque::new()),
            waker,
            notified: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            live: Mutex::new(Vec::new()),
        }
    }

    /// Queues commands and wakes the loop unless a wake is already pending.
    pub(crate) fn push(&self, commands: impl IntoIterator<Item = Command>) {
        {
            let mut q = lock(&self.queue);
            let before = q.len();
            q.extend(commands);
            self.queued.fetch_add(q.len() - before, Ordering::Relaxed);
        }
        self.wake();
    }

    /// Commands waiting for the loop.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn wake(&self) {
        let Some(waker) = &self.waker else { return };
        if !self.notified.swap(true, Ordering::AcqRel) {
            if let Err(e) = waker.wake() {
                log::warn!("waking an event loop failed: {e}");
            }
        }
    }

    /// Takes up to `max` commands (the loop's side). Clears the wake flag first, so a push that
    /// lands after the take wakes the loop again.
    pub(crate) fn take(&self, max: usize, into: &mut Vec<Command>) -> bool {
        self.notified.store(false, Ordering::Release);
        let mut q = lock(&self.queue);
        let n = q.len().min(max);
        into.extend(q.drain(..n));
        self.queued.fetch_sub(n.min(self.queued()), Ordering::Relaxed);
        !q.is_empty()
    }

    pub(crate) fn set_live(&self, slot: usize, generation: u32) {
        let mut live = lock(&self.live);
        if live.len() <= slot {
            live.resize(slot + 1, 0);
        }
        if let Some(g) = live.get_mut(slot) {
            *g = generation;
        }
    }

    pub(crate) fn is_live(&self, id: ConnId) -> bool {
        lock(&self.live)
            .get(id.slot())
            .is_some_and(|&g| g != 0 && g == id.generation())
    }
}
