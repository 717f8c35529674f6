//! Driving a loop's sessions without touching a socket: feeding a session the bytes of one
//! read, and routing a publication to the sessions of this loop under the hold rule. The
//! event loop and the fuzz harness (`fuzzing.rs`) both run this code, so the harness
//! exercises the loop's own paths rather than a copy of them; what stays in each is what
//! really differs (a socket, a poller and turns on one side; a byte queue and checks on the
//! other).

use crate::frame::CloseCode;
use crate::server::context::LoopState;
use crate::server::fanout::{Outgoing, Target};
use crate::server::replay;
use crate::server::session::{Cx, Delivery, Session};
use crate::server::{ConnId, Handler};

/// The encodings of one publication, each made at most once per loop however many receivers
/// take it (see `Session::deliver`).
pub(crate) type Compressed = crate::server::session::Encodings;

/// A session and a context for its callbacks, lent for one step.
pub(crate) type Step<'a, H> = (&'a mut Session<<H as Handler>::State>, Cx<'a, H>);

/// What owns a loop's sessions: the event loop, or a harness.
pub(crate) trait Host {
    type App: Handler;

    fn lp(&mut self) -> &mut LoopState;

    /// The session in `slot` (of that generation, when one is given) and a context for its
    /// callbacks; `None` once it has gone.
    fn session(&mut self, slot: usize, generation: Option<u32>) -> Option<Step<'_, Self::App>>;

    /// The occupied slots: a broadcast goes to each.
    fn slots(&self) -> Vec<usize>;

    /// After a session took input: charge its memory, deliver what its handler published,
    /// and whatever else the owner does between two steps.
    fn after_step(&mut self, slot: usize);

    /// A receiver is backed up and holds `publisher`: stop reading it until released.
    fn hold_publisher(&mut self, publisher: ConnId);

    /// Something was queued on the session in `slot`: it has bytes to write.
    fn mark_dirty(&mut self, slot: usize);
}

/// Feeds the bytes of one read to the session in `slot`. What its handler publishes is
/// delivered after each step, before the next message is read, so a publisher that lands on a
/// backed-up receiver is held before it can publish again. What the session does not take —
/// it paused, stopped reading or used up its share of the turn — is stashed; returns whether
/// that stash may be fed at once (the loop comes back for it next turn).
pub(crate) fn feed<D: Host>(host: &mut D, slot: usize, bytes: &mut [u8]) -> bool {
    let mut pos = 0;
    while pos < bytes.len() {
        let Some((session, mut cx)) = host.session(slot, None) else {
            return false;
        };
        let used = session.receive(bytes.get_mut(pos..).unwrap_or_default(), &mut cx);
        pos += used;
        host.after_step(slot);
        let Some((session, cx)) = host.session(slot, None) else {
            return false;
        };
        if pos < bytes.len() && (used == 0 || !session.wants_read() || cx.lp.message_allowance == 0) {
            session.stash_rest(bytes.get(pos..).unwrap_or_default());
            session.settle(cx.lp);
            return session.stash_ready();
        }
    }
    false
}

/// Delivers a publication to its receivers among this loop's sessions: a topic's members
/// (a recorded message only to those not still catching up on the topic's history, see
/// `replay.rs`), everyone, or one connection.
pub(crate) fn deliver_local<D: Host>(host: &mut D, og: &Outgoing) {
    let mut compressed = Compressed::default();
    match &og.target {
        Target::Topic(topic) => {
            let Some((key, members)) = host.lp().topics.take_members(topic) else {
                return;
            };
            for &id in members.ids() {
                if Some(id) != og.exclude {
                    deliver_to(host, id.slot(), Some(id.generation()), og, &mut compressed);
                }
            }
            host.lp().topics.put_back(key, members);
        }
        Target::Recorded(topic, msg) => {
            let Some((key, members)) = host.lp().topics.take_members(topic) else {
                return;
            };
            for &id in members.ids() {
                if Some(id) != og.exclude
                    && host.lp().recoveries.gate(id, topic, *msg, &og.frame) == replay::Gate::Deliver
                {
                    deliver_to(host, id.slot(), Some(id.generation()), og, &mut compressed);
                }
            }
            host.lp().topics.put_back(key, members);
        }
        Target::All => {
            for slot in host.slots() {
                deliver_to(host, slot, None, og, &mut compressed);
            }
        }
        Target::One(id) => deliver_to(host, id.slot(), Some(id.generation()), og, &mut compressed),
    }
}

/// Queues a publication on one session. The hold rule: when that leaves the receiver backed
/// up, it holds the publisher (once), which is not read again until the receiver drains.
fn deliver_to<D: Host>(host: &mut D, slot: usize, generation: Option<u32>, og: &Outgoing, compressed: &mut Compressed) {
    let Some((session, cx)) = host.session(slot, generation) else {
        return;
    };
    if og.exclude == Some(session.id(cx.lp)) {
        return;
    }
    let held = match session.deliver(&og.frame, compressed, cx.lp) {
        Delivery::Skipped => return,
        Delivery::Queued | Delivery::SlowConsumerClosed => None,
        Delivery::Congested => og.from.filter(|&publisher| session.hold(publisher)),
    };
    if let Some(publisher) = held {
        host.hold_publisher(publisher);
    }
    host.mark_dirty(slot);
}

/// Ends a session as the loop drops it: `on_close` (once, with `code`), then its topics, its
/// replay, its queue and its memory charges go. Returns the publishers it was holding, for
/// the owner to release.
pub(crate) fn retire<H: Handler>(
    session: &mut Session<H::State>,
    cx: &mut Cx<'_, H>,
    code: CloseCode,
    why: &str,
) -> Vec<ConnId> {
    session.finish(cx, code, why);
    let id = session.id(cx.lp);
    cx.lp.topics.remove_conn(id);
    cx.lp.recoveries.remove_conn(id);
    let held = session.take_held();
    session.out.clear(&mut cx.lp.pool);
    session.release_charges(cx.lp);
    held
}
