//! Limits per client address (issue 22): open connections (`--max-connections-per-ip`) and the
//! rate of new connections and upgrades (`--upgrade-rate-per-ip`).
//!
//! Sans-IO: [`Table`] takes the time as an argument (milliseconds on any monotonic base) and
//! never reads a clock. [`PerIp`] is the shared, locked form the event loops use.
//!
//! The rate is a GCRA (generic cell rate algorithm, the virtual-scheduling form of a token
//! bucket): per address one integer, the "theoretical arrival time" `tat`. At `R` per second
//! each admission moves `tat` on by `T = 1/R` s; a request is admitted while `tat` is at most
//! `(B - 1)·T` ahead of now (burst `B = R`). Refused, it may come back when `tat` is that close
//! again, which gives `Retry-After` (RFC 9110 §10.2.3, whole seconds, rounded up).
//!
//! The state is bounded: an entry with no open connection whose `tat` is in the past is the
//! same as no entry and is dropped (at once when its last connection closes, or by a sweep
//! when the table is full); the table holds at most a fixed number of entries, so a client
//! cycling through source addresses (127.0.0.0/8 has 16 million) cannot grow it. When it is
//! full of entries still in use, an address not in it is refused `503` with `Retry-After: 1`:
//! admitting it untracked would let exactly such a client past both limits. Entries are
//! charged to the memory budget.

use super::budget::{Charge, MemoryBudget};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// It has `max_connections_per_ip` connections open.
    Connections,
    /// Its new connections and upgrades came faster than `upgrade_rate_per_ip`.
    Rate,
    /// The table is full of addresses in use and this one is not in it.
    TableFull,
}

impl Reason {
    pub(crate) const ALL: [Reason; 3] = [Reason::Connections, Reason::Rate, Reason::TableFull];

    /// The `reason` label in `/metrics`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::Connections => "connections_per_ip",
            Reason::Rate => "upgrade_rate_per_ip",
            Reason::TableFull => "limiter_full",
        }
    }

    /// The HTTP status of the refusal: 429 (RFC 6585 §4) for a client over its own limit,
    /// 503 (RFC 9110 §15.6.4) when the server cannot track one more address.
    pub(crate) fn status(self) -> u16 {
        match self {
            Reason::Connections | Reason::Rate => 429,
            Reason::TableFull => 503,
        }
    }

    pub(crate) fn text(self) -> &'static str {
        match self {
            Reason::Connections => "too many connections from this address",
            Reason::Rate => "too many new connections from this address, slow down",
            Reason::TableFull => "too many client addresses to track, try again later",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A refusal: why, and after how many whole seconds to retry (`Retry-After`, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reason: Reason,
    pub(crate) retry_after: u64,
}

/// The limits of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Open connections per address; 0 = no limit.
    pub(crate) connections: usize,
    /// New connections and upgrades per second per address, burst the same; 0 = off.
    pub(crate) rate: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// Theoretical arrival time, microseconds (0 = no rate state).
    tat: u64,
    /// Admitted connections of this address still open.
    conns: u32,
}

/// Bytes one entry costs, for the memory budget: key and entry, rounded up for the hash
/// table's control byte and spare capacity.
pub(crate) const ENTRY_BYTES: usize = 2 * std::mem::size_of::<(u128, Entry)>();

/// After a sweep of a full table that freed nothing, do not sweep again for this long: a
/// flood of new addresses must not cost a walk of the whole table each.
const SWEEP_BACKOFF_MS: u64 = 100;

/// One table of addresses (sans-IO). See the module docs.
#[derive(Debug)]
pub(crate) struct Table {
    limits: Limits,
    cap: usize,
    map: HashMap<u128, Entry>,
    /// The latest time seen, so a release (which has no clock) can tell an idle entry.
    now_us: u64,
    next_sweep_ms: u64,
}

impl Table {
    pub(crate) fn new(limits: Limits, cap: usize) -> Table {
        Table {
            limits,
            cap: cap.max(1),
            map: HashMap::new(),
            now_us: 0,
            next_sweep_ms: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// GCRA emission interval in microseconds (`T = 1/R` s).
    fn interval_us(&self) -> u64 {
        (1_000_000 / u64::from(self.limits.rate.max(1))).max(1)
    }

    /// A new connection from `key`: admitted (and counted until [`Table::release`]) or refused.
    pub(crate) fn admit(&mut self, key: u128, now_ms: u64) -> Result<(), Refusal> {
        let now = self.tick(now_ms);
        if !self.map.contains_key(&key) && self.map.len() >= self.cap {
            if now_ms >= self.next_sweep_ms {
                self.map.retain(|_, e| e.conns > 0 || e.tat > now);
            }
            if self.map.len() >= self.cap {
                self.next_sweep_ms = now_ms + SWEEP_BACKOFF_MS;
                return Err(Refusal {
                    reason: Reason::TableFull,
                    retry_after: 1,
                });
            }
        }
        let limits = self.limits;
        let t = self.interval_us();
        let entry = self.map.entry(key).or_default();
        if limits.connections > 0 && entry.conns as usize >= limits.connections {
            // How long until one of them closes cannot be known; a second is a polite guess.
            return Err(Refusal {
                reason: Reason::Connections,
                retry_after: 1,
            });
        }
        if limits.rate > 0 {
            take(entry, now, t, limits.rate)?;
        }
        entry.conns = entry.conns.saturating_add(1);
        Ok(())
    }

    /// An upgrade on a connection of `key` that was admitted and has already made a request
    /// (the connection's own admission paid for its first): one more from the rate.
    pub(crate) fn upgrade(&mut self, key: u128, now_ms: u64) -> Result<(), Refusal> {
        let now = self.tick(now_ms);
        if self.limits.rate == 0 {
            return Ok(());
        }
        let (t, rate) = (self.interval_us(), self.limits.rate);
        // The connection holds its entry (conns > 0), so it is there.
        match self.map.get_mut(&key) {
            Some(entry) => take(entry, now, t, rate),
            None => Ok(()),
        }
    }

    /// A connection admitted by [`Table::admit`] is gone; an entry left with nothing to
    /// remember is dropped.
    pub(crate) fn release(&mut self, key: u128) {
        if let Some(entry) = self.map.get_mut(&key) {
            entry.conns = entry.conns.saturating_sub(1);
            if entry.conns == 0 && entry.tat <= self.now_us {
                self.map.remove(&key);
            }
        }
    }

    fn tick(&mut self, now_ms: u64) -> u64 {
        self.now_us = self.now_us.max(now_ms.saturating_mul(1000));
        self.now_us
    }
}

/// GCRA: admits when `tat` is at most `(rate - 1)·t` ahead of `now`, and moves it on by `t`.
fn take(entry: &mut Entry, now: u64, t: u64, rate: u32) -> Result<(), Refusal> {
    let window = t.saturating_mul(u64::from(rate.max(1)));
    match gcra(entry.tat, now, t, window) {
        Ok(tat) => {
            entry.tat = tat;
            Ok(())
        }
        Err(wait_us) => Err(Refusal {
            reason: Reason::Rate,
            retry_after: wait_us.div_ceil(1_000_000).max(1),
        }),
    }
}

/// One GCRA step (the virtual-scheduling form), shared by the per-address rate here and the
/// per-connection message rate (`throttle.rs`). A cell costing `cost` (its emission time, in
/// the unit of `tat` and `now`) conforms when, after it, `tat` would be at most `window` ahead
/// of `now` (`window = burst × interval`); `Ok` gives the new `tat`, `Err` how long until it
/// would conform. A cell costing more than the whole window (a message larger than a byte
/// burst) conforms once `tat` has caught up with `now` — the bucket is full — and leaves a
/// debt, so it is delayed, never refused for ever.
pub(crate) fn gcra(tat: u64, now: u64, cost: u64, window: u64) -> Result<u64, u64> {
    let start = tat.max(now);
    let end = start.saturating_add(cost);
    if end - now > window && start > now {
        return Err((end - now - window).min(start - now));
    }
    Ok(end)
}

/// The key of an address: an IPv4 address (also written IPv4-mapped) as itself, an IPv6
/// address by its /64, the block one subscriber is usually given, so that one client cannot
/// escape its limit by changing the low bits.
pub(crate) fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6) & !((1u128 << 64) - 1),
        },
    }
}

/// Shards of the shared table: connections of one address land on different loops, so the
/// table is shared, and sharded by a keyed hash so loops rarely wait on each other.
const SHARDS: usize = 16;

struct Shard {
    table: Table,
    charge: Charge,
}

/// The per-address table every loop shares (in `Core`), charged to the memory budget.
pub(crate) struct PerIp {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    budget: Arc<MemoryBudget>,
}

impl PerIp {
    /// `None` when both limits are off: no table, no cost per connection. `max_entries` bounds
    /// the addresses tracked at once.
    pub(crate) fn new(limits: Limits, max_entries: usize, budget: Arc<MemoryBudget>) -> Option<Arc<PerIp>> {
        if limits.connections == 0 && limits.rate == 0 {
            return None;
        }
        let per_shard = max_entries.div_ceil(SHARDS);
        Some(Arc::new(PerIp {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        table: Table::new(limits, per_shard),
                        charge: Charge::default(),
                    })
                })
                .collect(),
            hasher: RandomState::new(),
            budget,
        }))
    }

    fn with<R>(&self, ip: IpAddr, f: impl FnOnce(&mut Table, u128) -> R) -> R {
        let key = key(ip);
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        let Some(shard) = self.shards.get(i) else {
            // Unreachable (i < SHARDS); a fresh table answers the same for a single call.
            return f(
                &mut Table::new(
                    Limits {
                        connections: 0,
                        rate: 0,
                    },
                    1,
                ),
                key,
            );
        };
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut s.table, key);
        let held = s.table.len() * ENTRY_BYTES;
        s.charge.settle(&self.budget, held);
        r
    }

    pub(crate) fn admit(&self, ip: IpAddr, now_ms: u64) -> Result<(), Refusal> {
        self.with(ip, |t, k| t.admit(k, now_ms))
    }

    pub(crate) fn upgrade(&self, ip: IpAddr, now_ms: u64) -> Result<(), Refusal> {
        self.with(ip, |t, k| t.upgrade(k, now_ms))
    }

    pub(crate) fn release(&self, ip: IpAddr) {
        self.with(ip, |t, k| t.release(k));
    }

    /// Addresses tracked now (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).table.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(connections: usize, rate: u32, cap: usize) -> Table {
        Table::new(Limits { connections, rate }, cap)
    }

    #[test]
    fn connections_are_capped_per_address_and_freed_on_release() {
        let mut t = table(2, 0, 100);
        assert_eq!(t.admit(1, 0), Ok(()));
        assert_eq!(t.admit(1, 0), Ok(()));
        let refused = t.admit(1, 0).unwrap_err();
        assert_eq!((refused.reason, refused.retry_after), (Reason::Connections, 1));
        assert_eq!(t.admit(2, 0), Ok(()), "another address has its own count");
        t.release(1);
        assert_eq!(t.admit(1, 0), Ok(()), "a slot came free");
        t.release(1);
        t.release(1);
        t.release(2);
        assert_eq!(t.len(), 0, "entries with nothing to remember are dropped");
    }

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        // 10 per second, burst 10: T = 100 ms.
        let mut t = table(0, 10, 100);
        for i in 0..10 {
            assert_eq!(t.admit(7, 0), Ok(()), "burst #{i}");
        }
        let r = t.admit(7, 0).unwrap_err();
        assert_eq!((r.reason, r.retry_after), (Reason::Rate, 1));
        assert!(t.admit(7, 99).is_err(), "not yet: the next one is due at 100 ms");
        assert_eq!(t.admit(7, 100), Ok(()));
        assert!(t.admit(7, 100).is_err());
        // After a quiet second the whole burst is back, no more.
        let mut ok = 0;
        for _ in 0..20 {
            ok += usize::from(t.admit(7, 1200).is_ok());
        }
        assert_eq!(ok, 10);
    }

    #[test]
    fn retry_after_is_whole_seconds_from_the_limiter() {
        // 1 per second, burst 1: the second at once waits a second.
        let mut t = table(0, 1, 10);
        assert_eq!(t.admit(1, 0), Ok(()));
        let r = t.admit(1, 0).unwrap_err();
        assert_eq!(r.retry_after, 1);
        let r = t.admit(1, 999).unwrap_err();
        assert_eq!(r.retry_after, 1, "1 ms left rounds up to a second");
        assert_eq!(t.admit(1, 1000), Ok(()));
        // Refused tries do not move `tat`: the wait never grows past one interval.
        for _ in 0..100 {
            assert_eq!(t.admit(1, 1000).unwrap_err().retry_after, 1);
        }
    }

    #[test]
    fn upgrades_on_an_open_connection_spend_the_same_rate() {
        let mut t = table(0, 3, 10);
        assert_eq!(t.admit(5, 0), Ok(()));
        assert_eq!(t.upgrade(5, 0), Ok(()));
        assert_eq!(t.upgrade(5, 0), Ok(()));
        assert_eq!(t.upgrade(5, 0).unwrap_err().reason, Reason::Rate);
        assert_eq!(t.admit(5, 0).unwrap_err().reason, Reason::Rate);
        let mut off = table(4, 0, 10);
        assert_eq!(off.admit(5, 0), Ok(()));
        for _ in 0..100 {
            assert_eq!(off.upgrade(5, 0), Ok(()), "no rate, no limit on upgrades");
        }
    }

    #[test]
    fn the_gcra_step_delays_a_cell_larger_than_the_window_until_the_bucket_is_full() {
        // Window 100, cost 10: ten at once, then one per 10.
        let mut tat = 0;
        for _ in 0..10 {
            tat = gcra(tat, 0, 10, 100).unwrap();
        }
        assert_eq!(gcra(tat, 0, 10, 100), Err(10));
        assert_eq!(gcra(tat, 10, 10, 100), Ok(110));
        // A cell of 250 waits for a full bucket, then passes and leaves a debt.
        assert_eq!(gcra(110, 50, 250, 100), Err(60));
        assert_eq!(gcra(110, 110, 250, 100), Ok(360));
        assert_eq!(gcra(360, 110, 1, 100), Err(151));
    }

    #[test]
    fn the_table_stays_bounded_under_many_addresses() {
        let cap = 64;
        let mut t = table(0, 10, cap);
        let mut refused = 0;
        // 100,000 distinct addresses, one connection each, closed at once, all within 1 s.
        for a in 0..100_000u128 {
            match t.admit(a, a as u64 / 100) {
                Ok(()) => t.release(a),
                Err(r) => {
                    assert_eq!((r.reason, r.retry_after), (Reason::TableFull, 1));
                    refused += 1;
                }
            }
            assert!(t.len() <= cap, "{} entries at {a}", t.len());
        }
        assert!(refused > 0, "the table filled with addresses inside their burst window");
        // A second later every entry is idle: the next address gets in (a sweep frees them).
        assert_eq!(t.admit(1 << 40, 3000), Ok(()));
        assert_eq!(t.len(), 1, "idle entries were swept");
    }

    #[test]
    fn a_full_table_of_open_connections_refuses_new_addresses_but_not_known_ones() {
        let mut t = table(3, 0, 4);
        for a in 0..4 {
            assert_eq!(t.admit(a, 0), Ok(()));
        }
        assert_eq!(t.admit(9, 10_000).unwrap_err().reason, Reason::TableFull);
        assert_eq!(
            t.admit(2, 10_000),
            Ok(()),
            "an address already tracked is judged as usual"
        );
        t.release(0);
        assert_eq!(t.admit(9, 10_000), Ok(()), "a freed entry makes room");
    }

    #[test]
    fn without_a_rate_released_entries_go_at_once() {
        let mut t = table(1, 0, 8);
        for a in 0..1000 {
            assert_eq!(t.admit(a, 0), Ok(()));
            t.release(a);
            assert_eq!(t.len(), 0);
        }
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(key(v4), key(mapped));
    }

    #[test]
    fn the_shared_table_charges_the_budget_and_gives_it_back() {
        let budget = MemoryBudget::new(1 << 20);
        let per_ip = PerIp::new(
            Limits {
                connections: 2,
                rate: 0,
            },
            1000,
            budget.clone(),
        )
        .unwrap();
        let ips: Vec<IpAddr> = (0..50u8).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        for ip in &ips {
            assert_eq!(per_ip.admit(*ip, 0), Ok(()));
        }
        assert_eq!(per_ip.len(), 50);
        assert_eq!(budget.used(), 50 * ENTRY_BYTES);
        for ip in &ips {
            per_ip.release(*ip);
        }
        assert_eq!((per_ip.len(), budget.used()), (0, 0));
        assert!(PerIp::new(
            Limits {
                connections: 0,
                rate: 0
            },
            1000,
            budget
        )
        .is_none());
    }
}
