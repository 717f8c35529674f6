//! Fan-out: who a published message goes to, and the topic memberships that decide it.
//!
//! A message for others ([`Outgoing`]) is framed once into a shared [`Frame`] and the same
//! bytes are queued for every receiver, on this loop at once and on the other loops through
//! their inboxes. Topic membership has one owner per loop, [`Topics`], keyed by [`ConnId`]:
//! a handler's `subscribe` changes it immediately, and a connection's memberships are removed
//! in one place when it goes (`Topics::remove_conn`).
//!
//! Other threads cannot read a loop's [`Topics`]; each loop publishes its topics' member
//! counts into [`SubscriberCounts`] (one small map per loop, touched only when a membership
//! changes, never when a message is delivered), which any thread sums.

use super::history::HistoryId;
use crate::server::budget::Frame;
use crate::server::ConnId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Who a published frame goes to.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// Every subscriber of the topic.
    Topic(Arc<str>),
    /// Every open WebSocket.
    All,
    /// One connection.
    One(ConnId),
    /// Every subscriber of the topic: a recorded message with its history id, which a
    /// connection catching up on the topic may hold back or skip (see `history.rs`).
    Recorded(Arc<str>, HistoryId),
}

/// A message for other connections, framed once.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) target: Target,
    pub(crate) frame: Arc<Frame>,
    /// A connection left out (`publish_to_others`).
    pub(crate) exclude: Option<ConnId>,
    /// The connection whose handler published it, if any: it is paused when the message lands
    /// on a subscriber that is backed up (backpressure flows to the source).
    pub(crate) from: Option<ConnId>,
}

impl Outgoing {
    /// Whether the message has receivers on loop `idx`.
    pub(crate) fn goes_to_loop(&self, idx: usize) -> bool {
        match &self.target {
            Target::One(id) => id.loop_index() == idx,
            Target::Topic(_) | Target::All | Target::Recorded(..) => true,
        }
    }
}

/// The subscribers of one topic on this loop: a dense list (delivery walks it) and each
/// member's position in it (removal is O(1)).
#[derive(Debug, Default)]
struct Members {
    list: Vec<ConnId>,
    pos: HashMap<ConnId, usize>,
}

impl Members {
    fn insert(&mut self, id: ConnId) -> bool {
        if self.pos.contains_key(&id) {
            return false;
        }
        self.pos.insert(id, self.list.len());
        self.list.push(id);
        true
    }

    fn remove(&mut self, id: ConnId) -> bool {
        let Some(i) = self.pos.remove(&id) else { return false };
        self.list.swap_remove(i);
        if let Some(moved) = self.list.get(i) {
            self.pos.insert(*moved, i);
        }
        true
    }
}

/// A topic's subscribers on this loop, taken out for delivery.
pub(crate) struct TopicMembers(Members);

impl TopicMembers {
    pub(crate) fn ids(&self) -> &[ConnId] {
        &self.0.list
    }
}

/// Each loop's subscriber count per topic, readable from any thread
/// ([`ServerInfo::subscriber_count`](crate::server::ServerInfo::subscriber_count)). A loop
/// writes only its own map, under its own lock, and only when a membership changes: loops do
/// not contend, and delivery never touches it. A topic without subscribers on a loop has no
/// entry there (the key is the loop's own `Arc<str>`, shared with its [`Topics`]).
#[derive(Debug)]
pub(crate) struct SubscriberCounts {
    loops: Vec<Mutex<HashMap<Arc<str>, u32>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SubscriberCounts {
    pub(crate) fn new(loops: usize) -> SubscriberCounts {
        SubscriberCounts {
            loops: (0..loops.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    /// Subscribers of `topic` on every loop of this process.
    pub(crate) fn get(&self, topic: &str) -> usize {
        self.loops
            .iter()
            .map(|m| lock(m).get(topic).map_or(0, |&n| n as usize))
            .sum()
    }

    /// Loop `idx` has `n` subscribers of `topic` now, one more than before.
    fn set(&self, idx: usize, topic: &Arc<str>, n: usize) {
        if let Some(map) = self.loops.get(idx) {
            lock(map).insert(topic.clone(), u32::try_from(n).unwrap_or(u32::MAX));
        }
    }

    /// Loop `idx` has `n` subscribers of `topic` now, one fewer than before (0 removes it).
    fn update(&self, idx: usize, topic: &str, n: usize) {
        let Some(map) = self.loops.get(idx) else { return };
        let mut map = lock(map);
        if n == 0 {
            map.remove(topic);
        } else if let Some(count) = map.get_mut(topic) {
            *count = u32::try_from(n).unwrap_or(u32::MAX);
        }
    }
}

/// Topic memberships of this loop's connections, both ways.
#[derive(Debug)]
pub(crate) struct Topics {
    by_topic: HashMap<Arc<str>, Members>,
    by_conn: HashMap<ConnId, Vec<Arc<str>>>,
    /// Where this loop (`idx`) publishes its counts.
    counts: Arc<SubscriberCounts>,
    idx: usize,
}

impl Default for Topics {
    /// Memberships counted for nobody else (a loop of its own).
    fn default() -> Topics {
        Topics::new(Arc::new(SubscriberCounts::new(1)), 0)
    }
}

impl Topics {
    /// Loop `idx`'s memberships, counted into `counts`.
    pub(crate) fn new(counts: Arc<SubscriberCounts>, idx: usize) -> Topics {
        Topics {
            by_topic: HashMap::new(),
            by_conn: HashMap::new(),
            counts,
            idx,
        }
    }

    /// Adds `id` to `topic`; false if it was already there.
    pub(crate) fn subscribe(&mut self, id: ConnId, topic: &str) -> bool {
        let key: Arc<str> = match self.by_topic.get_key_value(topic) {
            Some((k, _)) => k.clone(),
            None => topic.into(),
        };
        let members = self.by_topic.entry(key.clone()).or_default();
        if !members.insert(id) {
            return false;
        }
        self.counts.set(self.idx, &key, members.list.len());
        self.by_conn.entry(id).or_default().push(key);
        true
    }

    /// Whether `id` is subscribed to `topic` (a scan of its own few topics).
    pub(crate) fn is_member(&self, id: ConnId, topic: &str) -> bool {
        self.topics_of(id).iter().any(|t| **t == *topic)
    }

    /// Removes `id` from `topic`; false if it was not there.
    pub(crate) fn unsubscribe(&mut self, id: ConnId, topic: &str) -> bool {
        let Some(members) = self.by_topic.get_mut(topic) else {
            return false;
        };
        if !members.remove(id) {
            return false;
        }
        self.counts.update(self.idx, topic, members.list.len());
        if members.list.is_empty() {
            self.by_topic.remove(topic);
        }
        if let Some(list) = self.by_conn.get_mut(&id) {
            list.retain(|t| &**t != topic);
            if list.is_empty() {
                self.by_conn.remove(&id);
            }
        }
        true
    }

    /// The topics `id` is subscribed to, in the order it joined them (as far as removals
    /// allow).
    pub(crate) fn topics_of(&self, id: ConnId) -> &[Arc<str>] {
        self.by_conn.get(&id).map_or(&[], |v| v.as_slice())
    }

    /// The subscribers of `topic` on this loop.
    #[cfg(test)]
    pub(crate) fn members(&self, topic: &str) -> &[ConnId] {
        self.by_topic.get(topic).map_or(&[], |m| m.list.as_slice())
    }

    /// Takes a topic's subscriber list out, so the loop can deliver to them while it uses the
    /// rest of its state; give it back with [`Topics::put_back`].
    pub(crate) fn take_members(&mut self, topic: &str) -> Option<(Arc<str>, TopicMembers)> {
        self.by_topic.remove_entry(topic).map(|(k, m)| (k, TopicMembers(m)))
    }

    /// Returns a list taken with [`Topics::take_members`] (nothing changes memberships in
    /// between: delivery runs no handler code).
    pub(crate) fn put_back(&mut self, topic: Arc<str>, members: TopicMembers) {
        self.by_topic.insert(topic, members.0);
    }

    /// Removes every membership of a connection that is going away.
    pub(crate) fn remove_conn(&mut self, id: ConnId) {
        // Most connections subscribe to nothing: skip hashing the id (SipHash) into an empty
        // map on every close.
        if self.by_conn.is_empty() {
            return;
        }
        for topic in self.by_conn.remove(&id).unwrap_or_default() {
            if let Some(members) = self.by_topic.get_mut(&topic) {
                members.remove(id);
                self.counts.update(self.idx, &topic, members.list.len());
                if members.list.is_empty() {
                    self.by_topic.remove(&topic);
                }
            }
        }
    }

    /// Topics with at least one subscriber on this loop.
    #[cfg(test)]
    pub(crate) fn topic_count(&self) -> usize {
        self.by_topic.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(slot: usize, generation: u32) -> ConnId {
        ConnId::new(7, 0, slot, generation)
    }

    #[test]
    fn memberships_are_kept_both_ways_and_removed_in_one_place() {
        let mut t = Topics::default();
        let (a, d, e) = (id(0, 1), id(1, 1), id(2, 1));
        assert!(t.subscribe(a, "room"));
        assert!(!t.subscribe(a, "room"), "twice is once");
        assert!(t.subscribe(d, "room"));
        assert!(t.subscribe(a, "other"));
        assert_eq!(t.members("room"), &[a, d]);
        assert_eq!(
            t.topics_of(a).iter().map(|s| &**s).collect::<Vec<_>>(),
            ["room", "other"]
        );

        // A goes: only A's memberships go with it; D keeps receiving.
        t.remove_conn(a);
        assert_eq!(t.members("room"), &[d]);
        assert!(t.members("other").is_empty());
        assert!(t.topics_of(a).is_empty());
        assert_eq!(t.topic_count(), 1);

        // A later connection reusing A's slot (new generation) is not a member of anything.
        let a2 = id(0, 2);
        assert!(!t.members("room").contains(&a2));
        assert!(!t.unsubscribe(a2, "room"));
        assert!(t.subscribe(e, "room"));
        assert!(t.unsubscribe(d, "room"));
        assert_eq!(t.members("room"), &[e], "swap-remove keeps positions right");
        assert!(t.unsubscribe(e, "room"));
        assert_eq!(t.topic_count(), 0);
    }

    #[test]
    fn subscriber_counts_add_up_over_loops_and_follow_every_way_out() {
        let counts = Arc::new(SubscriberCounts::new(2));
        let (mut l0, mut l1) = (Topics::new(counts.clone(), 0), Topics::new(counts.clone(), 1));
        let on = |l: usize, slot: usize| ConnId::new(7, l, slot, 1);
        assert_eq!(counts.get("room"), 0);
        assert!(l0.subscribe(on(0, 0), "room"));
        assert!(!l0.subscribe(on(0, 0), "room"), "twice counts once");
        assert!(l0.subscribe(on(0, 1), "room"));
        assert!(l1.subscribe(on(1, 0), "room"));
        assert!(l1.subscribe(on(1, 0), "other"));
        assert_eq!((counts.get("room"), counts.get("other")), (3, 1));
        assert!(l0.is_member(on(0, 1), "room") && !l0.is_member(on(0, 1), "other"));

        // Delivery takes a list out and puts it back: the count does not move.
        let (key, members) = l0.take_members("room").unwrap();
        assert_eq!(counts.get("room"), 3);
        l0.put_back(key, members);

        assert!(l0.unsubscribe(on(0, 0), "room"));
        assert!(!l0.unsubscribe(on(0, 0), "room"));
        assert_eq!(counts.get("room"), 2);
        l1.remove_conn(on(1, 0));
        assert_eq!((counts.get("room"), counts.get("other")), (1, 0));
        l0.remove_conn(on(0, 1));
        assert_eq!(counts.get("room"), 0);
        assert!(counts.loops.iter().all(|m| lock(m).is_empty()), "no entry left behind");
    }

    #[test]
    fn one_message_routes_to_the_right_loops() {
        let budget = crate::server::budget::MemoryBudget::new(1 << 20);
        let frame = Frame::new(vec![0x81, 0], &budget);
        let one = Outgoing {
            target: Target::One(ConnId::new(7, 1, 3, 1)),
            frame: frame.clone(),
            exclude: None,
            from: None,
        };
        assert!(!one.goes_to_loop(0));
        assert!(one.goes_to_loop(1));
        let all = Outgoing {
            target: Target::All,
            ..one
        };
        assert!(all.goes_to_loop(0) && all.goes_to_loop(1));
    }
}
