//! flate2 backend comparison: MB/s (of uncompressed bytes) to compress and inflate messages
//! the way permessage-deflate does, and heap bytes held per compressor / inflater.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

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

/// JSON-like chat/event messages: repetitive keys, varying values.
fn json_like(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut v = Vec::with_capacity(len + 128);
    while v.len() < len {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let id = s >> 40;
        let user = ["ada", "grace", "linus", "barbara", "ken"][(s >> 20) as usize % 5];
        v.extend_from_slice(
            format!("{{\"id\":{id},\"type\":\"message\",\"room\":\"lobby\",\"user\":\"{user}\",\"text\":\"hello number {}\",\"ts\":{}}},", id % 977, s >> 30)
                .as_bytes(),
        );
    }
    v.truncate(len);
    v
}

fn new_compress(level: u32) -> Compress {
    #[cfg(feature = "zlib-rs")]
    return Compress::new_with_window_bits(Compression::new(level), false, 15);
    #[cfg(not(feature = "zlib-rs"))]
    return Compress::new(Compression::new(level), false);
}

fn compress_msg(c: &mut Compress, msg: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(msg.len() + 64);
    let start = c.total_in();
    loop {
        let done = (c.total_in() - start) as usize;
        c.compress_vec(&msg[done..], out, FlushCompress::Sync).unwrap();
        if (c.total_in() - start) as usize == msg.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.len());
    }
    out.truncate(out.len() - 4);
}

fn inflate_msg(d: &mut Decompress, payload: &[u8], out: &mut Vec<u8>, cap: usize) {
    out.clear();
    out.reserve(cap);
    let start = d.total_in();
    d.decompress_vec(payload, out, FlushDecompress::Sync).unwrap();
    d.decompress_vec(&[0, 0, 0xff, 0xff], out, FlushDecompress::Sync).unwrap();
    assert!(d.total_in() - start == payload.len() as u64 + 4);
}

fn rate(bytes: usize, f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    let mut n = 0usize;
    while t.elapsed() < Duration::from_millis(800) {
        f();
        n += 1;
    }
    (n * bytes) as f64 / t.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let backend = if cfg!(feature = "zlib-rs") { "zlib-rs" } else { "miniz_oxide" };
    println!("backend {backend}");
    for size in [1024usize, 64 * 1024] {
        let msgs: Vec<Vec<u8>> = (0..64).map(|i| json_like(size, i)).collect();
        for level in [1u32, 2, 3, 6] {
            for takeover in [false, true] {
                let mut c = new_compress(level);
                let mut out = Vec::new();
                let mut i = 0;
                let mut total_c = 0usize;
                let mc = rate(size, &mut || {
                    if !takeover {
                        c.reset();
                    }
                    compress_msg(&mut c, &msgs[i % 64], &mut out);
                    total_c += out.len();
                    i += 1;
                });
                let ratio = total_c as f64 / (i * size) as f64;
                // Inflate what that compressor produced, in order.
                let mut c = new_compress(level);
                let payloads: Vec<Vec<u8>> = msgs
                    .iter()
                    .map(|m| {
                        if !takeover {
                            c.reset();
                        }
                        let mut o = Vec::new();
                        compress_msg(&mut c, m, &mut o);
                        o
                    })
                    .collect();
                let mut d = Decompress::new(false);
                let mut j = 0;
                let mut o = Vec::new();
                let mi = rate(size, &mut || {
                    if j % 64 == 0 {
                        d.reset(false);
                    } else if !takeover {
                        d.reset(false);
                    }
                    inflate_msg(&mut d, &payloads[j % 64], &mut o, size);
                    j += 1;
                });
                println!(
                    "{size:>6} B level {level} {:<11} compress {mc:7.1} MB/s  inflate {mi:7.1} MB/s  ratio {ratio:.3}",
                    if takeover { "takeover" } else { "no-takeover" }
                );
            }
        }
    }
    let msg = json_like(4096, 7);
    let before = LIVE.load(Relaxed);
    let mut c = new_compress(1);
    let fresh = LIVE.load(Relaxed) - before;
    let mut out = Vec::new();
    compress_msg(&mut c, &msg, &mut out);
    let used = LIVE.load(Relaxed) - before - out.capacity();
    println!("compressor (15-bit window): {fresh} bytes when created, {used} after one message");
    drop(c);
    let before = LIVE.load(Relaxed);
    let mut d = Decompress::new(false);
    let fresh = LIVE.load(Relaxed) - before;
    let mut o = Vec::new();
    inflate_msg(&mut d, &out, &mut o, 4096);
    let used = LIVE.load(Relaxed) - before - o.capacity();
    println!("inflater   (15-bit window): {fresh} bytes when created, {used} after one message");
    #[cfg(feature = "zlib-rs")]
    for bits in [9u8, 12] {
        let before = LIVE.load(Relaxed);
        let mut c = Compress::new_with_window_bits(Compression::new(1), false, bits);
        compress_msg(&mut c, &msg, &mut out);
        let cb = LIVE.load(Relaxed) - before;
        let before = LIVE.load(Relaxed);
        let mut d = Decompress::new_with_window_bits(false, bits);
        inflate_msg(&mut d, &out, &mut o, 4096);
        let db = LIVE.load(Relaxed) - before;
        println!("{bits}-bit window: compressor {cb} bytes, inflater {db} bytes");
    }
    // Can the backend honour a window limit? (server_max_window_bits, RFC 7692 §7.1.2.1)
    println!("window limit on compression: {}", if cfg!(feature = "zlib-rs") { "yes (Compress::new_with_window_bits)" } else { "no (always 32 KiB)" });
}
