//! Time, memory and endings: connection timers, closing connections to get back under the
//! memory budget, graceful shutdown, and dropping a connection.

use super::{EventLoop, MAX_SHEDS_PER_TURN};
use crate::frame::CloseCode;
use crate::server::drive::{self, Host};
use crate::server::metrics::LoopStats;
use crate::server::session::{Cx, Io};
use crate::server::timers::{self, Millis};
use crate::server::Handler;
use log::warn;

impl<H: Handler> EventLoop<H> {
    // ----- time ----------------------------------------------------------------------------

    pub(super) fn arm_timer(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot) {
            let deadline = conn.session.next_deadline(&self.lp);
            let generation = conn.session.generation();
            let now = self.lp.now;
            self.timers
                .arm(slot, generation, deadline, now, &mut conn.session.timer_at);
        }
    }

    pub(super) fn expire_timers(&mut self) {
        let now = self.lp.now;
        while let Some((slot, generation, at)) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_gen_mut(slot, generation) else {
                continue;
            };
            if conn.session.timer_at != timers::Stamp::new(at, now) {
                continue; // superseded by an earlier entry
            }
            conn.session.timer_at = timers::NOT_SCHEDULED;
            if conn.session.next_deadline(&self.lp) > now {
                self.arm_timer(slot); // activity moved it later
                continue;
            }
            let paused = conn.session.read_paused();
            let mut cx = Cx {
                lp: &mut self.lp,
                handler: &*self.handler,
                direct: None,
            };
            let (drop_now, released) = conn.session.on_timeout(&mut cx);
            // A pause the timer lifted (the message rate): read again, its stash first.
            let resume = paused && !conn.session.read_paused();
            self.release_publishers(released);
            match drop_now {
                Some(why) => self.drop_conn(slot, CloseCode::ABNORMAL, why),
                None => {
                    if resume {
                        self.resume.push((slot, generation));
                    }
                    self.mark_dirty(slot);
                    self.arm_timer(slot);
                }
            }
        }
    }

    // ----- memory budget -------------------------------------------------------------------

    /// Past the budget, closes the connections of this loop holding the most until the
    /// server is back under it (or this loop has nothing big left to give).
    pub(super) fn shed_if_over_budget(&mut self) {
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
                .map(|(slot, c)| (slot, c.session.shed_weight().saturating_add(c.tls_weight())))
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
                    conn.session.id(&self.lp),
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

    pub(super) fn begin_shutdown(&mut self) {
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
    pub(super) fn drop_conn(&mut self, slot: usize, code: CloseCode, why: &str) {
        // Closing the socket (when `conn` drops) also removes it from the poller.
        let Some(mut conn) = self.conns.remove(slot) else {
            return;
        };
        // Every connection leaves through here (or the failed registration in `add_conn`): its
        // count per address is given back exactly once.
        conn.session.release_ip(self.lp.core.per_ip.as_deref());
        #[cfg(feature = "tls")]
        if let Some(tls) = conn.tls.as_deref_mut() {
            tls.release(self.lp.core.budget());
            if tls.never_established() {
                let failed = &self.lp.core.metrics().tls_handshakes[1];
                failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
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
