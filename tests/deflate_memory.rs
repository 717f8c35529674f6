//! The memory estimates the shell charges to its budget (`deflate::compressor_bytes`,
//! `inflater_bytes`, `WebSocket::memory_held`) against what the allocator really hands out.
//! One test in this binary, so the counting allocator sees nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use wsloop::deflate::{compressor_bytes, inflater_bytes, DirectionParams, MessageCompressor, MessageInflater};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n, Relaxed);
        LIVE.fetch_sub(l.size(), Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn within(actual: usize, estimate: usize) -> bool {
    actual.abs_diff(estimate) <= estimate / 20
}

#[test]
fn estimates_match_the_allocator() {
    let msg: Vec<u8> = (0..4000u32).flat_map(|i| (i % 97).to_le_bytes()).collect();
    let mut payload = Vec::with_capacity(64 * 1024);
    let mut text = Vec::with_capacity(64 * 1024);
    for bits in [9u8, 12, 15] {
        let before = LIVE.load(Relaxed);
        let mut c = MessageCompressor::new(
            DirectionParams {
                no_context_takeover: false,
                max_window_bits: bits,
            },
            1,
        );
        c.compress(&msg, &mut payload).unwrap();
        let held = LIVE.load(Relaxed) - before;
        assert!(
            within(held, compressor_bytes(bits)),
            "{bits} bits: {held} vs {}",
            compressor_bytes(bits)
        );
        assert_eq!(c.held_bytes(), compressor_bytes(bits));

        let before = LIVE.load(Relaxed);
        let mut d = MessageInflater::new(DirectionParams {
            no_context_takeover: false,
            max_window_bits: bits,
        });
        d.inflate(&payload, &mut text, 1 << 20).unwrap();
        d.finish_message(&mut text, 1 << 20).unwrap();
        let held = LIVE.load(Relaxed) - before;
        assert!(
            within(held, inflater_bytes()),
            "inflater: {held} vs {}",
            inflater_bytes()
        );
        assert_eq!(text, msg);
        payload.clear();
        text.clear();
        drop((c, d));
        wsloop::deflate::clear_pool();
    }
}
