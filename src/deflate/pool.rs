//! A small per-thread pool of reset DEFLATE states, so that "no context takeover" directions
//! (RFC 7692 §7.1.1) can give their state back after every message without paying for a fresh
//! allocation on the next one.
//!
//! An event loop handles one message at a time, so a handful of states per thread serves any
//! number of connections in the shared mode; the pool keeps at most [`POOL_CAPACITY`] of each
//! kind and frees the rest. Its memory is per thread, not per connection: [`pooled_bytes`]
//! tells the shell what to charge once per loop. This is a cache, not I/O: nothing here
//! blocks, spawns or reads a clock.

use std::cell::RefCell;

use flate2::{Compress, Decompress};

/// Most idle compressors and, separately, idle inflaters kept per thread.
pub const POOL_CAPACITY: usize = 4;

#[derive(Default)]
struct Pool {
    /// (window bits, level, state), each reset.
    compressors: Vec<(u8, u8, Compress)>,
    /// 15-bit inflaters, each reset.
    inflaters: Vec<Decompress>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

pub(crate) fn take_compressor(bits: u8, level: u8) -> Option<Compress> {
    POOL.try_with(|p| {
        let mut p = p.try_borrow_mut().ok()?;
        let i = p.compressors.iter().position(|(b, l, _)| *b == bits && *l == level)?;
        Some(p.compressors.swap_remove(i).2)
    })
    .ok()
    .flatten()
}

pub(crate) fn give_compressor(bits: u8, level: u8, state: Compress) {
    let _ = POOL.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            if p.compressors.len() < POOL_CAPACITY {
                p.compressors.push((bits, level, state));
            }
        }
    });
}

pub(crate) fn take_inflater() -> Option<Decompress> {
    POOL.try_with(|p| p.try_borrow_mut().ok()?.inflaters.pop())
        .ok()
        .flatten()
}

pub(crate) fn give_inflater(state: Decompress) {
    let _ = POOL.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            if p.inflaters.len() < POOL_CAPACITY {
                p.inflaters.push(state);
            }
        }
    });
}

/// Bytes held by this thread's pool (an estimate, see [`super::compressor_bytes`]).
pub fn pooled_bytes() -> usize {
    POOL.try_with(|p| {
        p.try_borrow().map_or(0, |p| {
            let c: usize = p.compressors.iter().map(|(b, _, _)| super::compressor_bytes(*b)).sum();
            c + p.inflaters.len() * super::inflater_bytes()
        })
    })
    .unwrap_or(0)
}

/// Frees every state in this thread's pool.
pub fn clear_pool() {
    let _ = POOL.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            *p = Pool::default();
        }
    });
}
