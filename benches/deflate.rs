//! permessage-deflate through the framing (RFC 7692 §7.2) against flate2 called directly on
//! the same messages: what does the WebSocket layer add per MB? And where should the
//! compression threshold sit?
//!
//! ```text
//! cargo bench --bench deflate                       # everything
//! cargo bench --bench deflate -- deflate_send       # one group
//! ```
//!
//! - `deflate_send/{ws,flate2}/{mode}/{size}`: `WebSocket::send_text` (compress, frame into the
//!   output buffer) vs `Compress::compress_vec` with a sync flush and the tail cut, at the same
//!   level, on the same 64 JSON-like messages in turn. `shared` resets the window per message
//!   (both sides), `takeover` keeps it.
//! - `deflate_receive/{ws,flate2}/...`: `WebSocket::receive` of the frames a server sent (a
//!   client reading, so nothing to unmask) vs `Decompress::decompress_vec` of their payloads
//!   plus `00 00 ff ff`.
//! - `deflate_threshold/{compressed,plain}/{size}`: the cost of compressing a small message at
//!   all; the sizes it compresses to are printed before the group runs.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::time::Duration;
use wsloop::deflate::{DeflateParams, DEFAULT_COMPRESSION_LEVEL};
use wsloop::protocol::{Config, Role, WebSocket};

/// JSON-like event messages: the same keys, varying values.
fn json_like(len: usize, seed: u64) -> String {
    let mut s = seed;
    let mut v = String::with_capacity(len + 160);
    while v.len() < len {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let user = ["ada", "grace", "linus", "barbara", "ken"][(s >> 20) as usize % 5];
        v.push_str(&format!(
            "{{\"id\":{},\"type\":\"message\",\"room\":\"lobby\",\"user\":\"{user}\",\"text\":\"hello number {}\",\"ts\":{}}},",
            s >> 40,
            (s >> 40) % 977,
            s >> 30
        ));
    }
    v.truncate(len);
    v
}

fn messages(len: usize) -> Vec<String> {
    (0..64).map(|i| json_like(len, i)).collect()
}

fn params(shared: bool) -> DeflateParams {
    if shared {
        DeflateParams::no_context_takeover()
    } else {
        DeflateParams::default()
    }
}

fn level() -> Compression {
    Compression::new(u32::from(DEFAULT_COMPRESSION_LEVEL))
}

/// flate2 alone, as permessage-deflate uses it: sync flush, tail removed.
fn flate2_compress(c: &mut Compress, msg: &[u8], out: &mut Vec<u8>) {
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

fn configure<'a>(c: &'a mut Criterion, name: &str) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(20);
    g
}

fn send(c: &mut Criterion) {
    let mut g = configure(c, "deflate_send");
    for (size_name, len) in [("1K", 1024), ("64K", 64 * 1024)] {
        let msgs = messages(len);
        g.throughput(Throughput::Bytes(len as u64));
        for shared in [true, false] {
            let mode = if shared { "shared" } else { "takeover" };
            let id = format!("{mode}/{size_name}");
            let mut ws = WebSocket::server(Config::default()).with_deflate(params(shared));
            let mut out = Vec::with_capacity(2 * len);
            let mut i = 0;
            g.bench_function(BenchmarkId::new("ws", &id), |b| {
                b.iter(|| {
                    out.clear();
                    ws.send_text(black_box(&msgs[i % 64]), &mut out).unwrap();
                    i += 1;
                })
            });
            let mut z = Compress::new_with_window_bits(level(), false, 15);
            let mut i = 0;
            g.bench_function(BenchmarkId::new("flate2", &id), |b| {
                b.iter(|| {
                    if shared {
                        z.reset();
                    }
                    flate2_compress(&mut z, black_box(msgs[i % 64].as_bytes()), &mut out);
                    i += 1;
                })
            });
        }
    }
    g.finish();
}

fn receive(c: &mut Criterion) {
    let mut g = configure(c, "deflate_receive");
    for (size_name, len) in [("1K", 1024), ("64K", 64 * 1024)] {
        let msgs = messages(len);
        g.throughput(Throughput::Bytes(len as u64));
        for shared in [true, false] {
            let mode = if shared { "shared" } else { "takeover" };
            let id = format!("{mode}/{size_name}");
            // The 64 frames a server sends, and their payloads on their own.
            let mut server = WebSocket::server(Config::default()).with_deflate(params(shared));
            let mut frames: Vec<Vec<u8>> = Vec::new();
            let mut payloads: Vec<Vec<u8>> = Vec::new();
            for m in &msgs {
                let mut f = Vec::new();
                server.send_text(m, &mut f).unwrap();
                let header = if f[1] & 0x7f == 126 {
                    4
                } else if f[1] & 0x7f == 127 {
                    10
                } else {
                    2
                };
                assert_eq!(f[0], 0xc1, "compressed");
                payloads.push(f[header..].to_vec());
                frames.push(f);
            }
            let mut ws = WebSocket::with_mask_seed(Role::Client, Config::default(), 1).with_deflate(params(shared));
            let mut out = Vec::new();
            let mut i = 0;
            g.bench_function(BenchmarkId::new("ws", &id), |b| {
                b.iter(|| {
                    let r = ws.receive(black_box(&mut frames[i % 64]), &mut out).unwrap();
                    black_box(r.event);
                    i += 1;
                })
            });
            let mut z = Decompress::new(false);
            let mut text = Vec::with_capacity(2 * len);
            let mut i = 0;
            g.bench_function(BenchmarkId::new("flate2", &id), |b| {
                b.iter(|| {
                    if shared {
                        z.reset(false);
                    }
                    text.clear();
                    z.decompress_vec(black_box(&payloads[i % 64]), &mut text, FlushDecompress::Sync)
                        .unwrap();
                    z.decompress_vec(&[0, 0, 0xff, 0xff], &mut text, FlushDecompress::Sync)
                        .unwrap();
                    // The WebSocket checks text; so does this, for the same work.
                    black_box(std::str::from_utf8(&text).is_ok());
                    i += 1;
                })
            });
        }
    }
    g.finish();
}

fn threshold(c: &mut Criterion) {
    let sizes = [16usize, 32, 48, 64, 96, 128, 256];
    eprintln!(
        "deflate_threshold: mean frame bytes over 64 JSON-like messages, plain vs compressed (shared / takeover)"
    );
    for len in sizes {
        let msgs = messages(len);
        let mut row = Vec::new();
        for p in [None, Some(params(true)), Some(params(false))] {
            let mut ws = WebSocket::server(Config::default().deflate_threshold(0));
            if let Some(p) = p {
                ws = ws.with_deflate(p);
            }
            let mut total = 0;
            for m in &msgs {
                let mut out = Vec::new();
                ws.send_text(m, &mut out).unwrap();
                total += out.len();
            }
            row.push(total as f64 / 64.0);
        }
        eprintln!(
            "  {len:>4} B: plain {:6.1}  shared {:6.1}  takeover {:6.1}",
            row[0], row[1], row[2]
        );
    }
    let mut g = configure(c, "deflate_threshold");
    for len in sizes {
        let msgs = messages(len);
        g.throughput(Throughput::Elements(1));
        for (name, t) in [("compressed", 0usize), ("plain", usize::MAX)] {
            let mut ws = WebSocket::server(Config::default().deflate_threshold(t)).with_deflate(params(true));
            let mut out = Vec::with_capacity(512);
            let mut i = 0;
            g.bench_function(BenchmarkId::new(name, len), |b| {
                b.iter(|| {
                    out.clear();
                    ws.send_text(black_box(&msgs[i % 64]), &mut out).unwrap();
                    i += 1;
                })
            });
        }
    }
    g.finish();
}

/// Framing overhead measured in pairs: batches of the 64 messages through the WebSocket and
/// through flate2 alternate, and the fastest batch of each is compared. On a shared machine
/// the minimum is what interference does not reach; criterion's separate runs drift apart by
/// more than the difference being measured.
fn paired_overhead(_: &mut Criterion) {
    use std::time::Instant;
    eprintln!("paired framing overhead (min of 150 alternating batches of 64 messages; MB/s of message bytes):");
    for (size_name, len) in [("1K", 1024), ("64K", 64 * 1024)] {
        let msgs = messages(len);
        for shared in [true, false] {
            let mode = if shared { "shared" } else { "takeover" };
            // Send.
            let mut ws = WebSocket::server(Config::default()).with_deflate(params(shared));
            let mut z = Compress::new_with_window_bits(level(), false, 15);
            let mut out = Vec::with_capacity(2 * len);
            let (mut best_ws, mut best_z) = (f64::MAX, f64::MAX);
            let mut frames: Vec<Vec<u8>> = Vec::new();
            for round in 0..150 {
                let t = Instant::now();
                for m in &msgs {
                    out.clear();
                    ws.send_text(m, &mut out).unwrap();
                    if round == 0 {
                        frames.push(out.clone());
                    }
                }
                best_ws = best_ws.min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                for m in &msgs {
                    if shared {
                        z.reset();
                    }
                    flate2_compress(&mut z, m.as_bytes(), &mut out);
                }
                best_z = best_z.min(t.elapsed().as_secs_f64());
            }
            let mb = (64 * len) as f64 / 1e6;
            eprintln!(
                "  send    {mode:<8} {size_name:>3}: ws {:7.1}  flate2 {:7.1}  overhead {:+5.1}%",
                mb / best_ws,
                mb / best_z,
                (best_ws / best_z - 1.0) * 100.0
            );
            // Receive the frames just sent (as a client: nothing to unmask).
            let payloads: Vec<Vec<u8>> = frames
                .iter()
                .map(|f| {
                    let h = if f[1] & 0x7f == 126 {
                        4
                    } else if f[1] & 0x7f == 127 {
                        10
                    } else {
                        2
                    };
                    f[h..].to_vec()
                })
                .collect();
            let mut ws = WebSocket::with_mask_seed(Role::Client, Config::default(), 1).with_deflate(params(shared));
            let mut d = Decompress::new(false);
            let mut text = Vec::with_capacity(2 * len);
            let (mut best_ws, mut best_z) = (f64::MAX, f64::MAX);
            for _ in 0..150 {
                let t = Instant::now();
                for f in frames.iter_mut() {
                    let r = ws.receive(f, &mut out).unwrap();
                    black_box(r.event);
                }
                best_ws = best_ws.min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                d.reset(false);
                for p in &payloads {
                    if shared {
                        d.reset(false);
                    }
                    text.clear();
                    d.decompress_vec(p, &mut text, FlushDecompress::Sync).unwrap();
                    d.decompress_vec(&[0, 0, 0xff, 0xff], &mut text, FlushDecompress::Sync)
                        .unwrap();
                    black_box(std::str::from_utf8(&text).is_ok());
                }
                best_z = best_z.min(t.elapsed().as_secs_f64());
            }
            eprintln!(
                "  receive {mode:<8} {size_name:>3}: ws {:7.1}  flate2 {:7.1}  overhead {:+5.1}%",
                mb / best_ws,
                mb / best_z,
                (best_ws / best_z - 1.0) * 100.0
            );
        }
    }
}

criterion_group!(benches, paired_overhead, send, receive, threshold);
criterion_main!(benches);
