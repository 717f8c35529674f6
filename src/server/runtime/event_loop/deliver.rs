//! Fan-out across loops: what handlers publish goes to this loop's sessions now and to the
//! other loops' inboxes at the end of the turn; holds and releases of publishers cross loops
//! the same way; and a connection's history replay is paced by its drain.

use super::{EventLoop, INBOX_HIGH, INBOX_LOW, MAX_COMMANDS_PER_TURN};
use crate::server::budget::Tag;
use crate::server::drive::{self, Host};
use crate::server::fanout::Target;
use crate::server::history;
use crate::server::runtime::inbox::Command;
use crate::server::{ConnId, Handler};

impl<H: Handler> EventLoop<H> {
    /// Routes what handlers published: to this loop's connections now, to other loops'
    /// inboxes at the end of the turn.
    pub(super) fn deliver_outgoing(&mut self) {
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
    pub(super) fn release_inbox_held(&mut self) {
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

    pub(super) fn release_publishers(&mut self, publishers: Vec<ConnId>) {
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

    pub(super) fn send_remote(&mut self) {
        for (i, commands) in self.remote.iter_mut().enumerate() {
            if !commands.is_empty() {
                if let Some(inbox) = self.lp.core.inboxes.get(i) {
                    inbox.push(commands.drain(..));
                }
            }
        }
    }

    pub(super) fn drain_inbox(&mut self) {
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
                Command::Decide { id, decision } => self.decide(id, decision),
                Command::Subscribe { id, topic, join } => self.subscribe_from_handle(id, &topic, join),
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

    /// A subscription changed through the server handle: applied if the connection is still
    /// the one (the generation) and takes publications (a WebSocket or an event stream, still
    /// open); an HTTP connection is left alone.
    fn subscribe_from_handle(&mut self, id: ConnId, topic: &str, join: bool) {
        let Some(conn) = self.conns.get_gen_mut(id.slot(), id.generation()) else {
            return;
        };
        if join {
            if conn.session.takes_publications() {
                self.lp.topics.subscribe(id, topic);
            }
        } else {
            self.lp.topics.unsubscribe(id, topic);
            self.lp.recoveries.remove_topic(id, topic);
        }
    }

    /// A deferred upgrade or response was decided on another thread: applied to its
    /// connection, if that is still the one (the generation) and still waiting.
    fn decide(&mut self, id: ConnId, decision: crate::server::deferred::Decision) {
        let Some(conn) = self.conns.get_gen_mut(id.slot(), id.generation()) else {
            return;
        };
        let mut cx = crate::server::session::Cx {
            lp: &mut self.lp,
            handler: &*self.handler,
            direct: None,
        };
        if conn.session.decide(decision, &mut cx) {
            self.resume.push((id.slot(), id.generation()));
        }
        self.after_step(id.slot());
    }

    /// A connection's replay came back from the bus: framed, it waits in the connection's
    /// recovery to be pumped out as the connection drains (see `replay.rs`).
    fn finish_replay(&mut self, conn: ConnId, topic: &str, result: history::Replay) {
        let core = self.lp.core.clone();
        if self.lp.recoveries.finish(conn, topic, result, |e| {
            core.frame_tagged(Tag::Recorded(e.id), e.binary, &e.bytes)
        }) {
            self.mark_dirty(conn.slot());
        }
    }

    /// Queues the next part of a connection's replay, up to its high-water mark, once its
    /// queue is under the low-water mark: a replay is paced by the receiver's drain, never
    /// queued whole (a client is not closed for the size of its own replay).
    pub(super) fn pump_replay(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let id = conn.session.id(&self.lp);
        let high = self.lp.core.config.backpressure_high_water;
        if !self.lp.recoveries.pacing(id) || conn.session.out.len() > high / 2 {
            return;
        }
        let room = high.saturating_sub(conn.session.out.len()).max(1);
        let core = self.lp.core.clone();
        let frames = self.lp.recoveries.pump(id, room, &core.history, |tag, binary, bytes| {
            core.frame_tagged(tag, binary, bytes)
        });
        for frame in frames {
            let mut compressed = Default::default();
            conn.session.deliver(&frame, &mut compressed, &mut self.lp);
        }
        conn.session.settle(&self.lp);
        // Written next turn: one page per connection per turn, so a long replay cannot keep
        // the loop from everyone else.
        self.resume_flush.push((slot, id.generation()));
    }
}
