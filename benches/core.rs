//! Micro-benchmarks of the sans-IO protocol core: masking, frame headers, UTF-8, the opening
//! handshake and the receive state machine.
//!
//! ```text
//! cargo bench --bench core                                           # everything
//! cargo bench --bench core -- --warm-up-time 1 --measurement-time 3  # quicker
//! cargo bench --bench core -- unmask                                 # one group
//! ```
//!
//! Groups report throughput: GiB/s for byte-oriented work (`unmask`, `utf8`), elements/s for
//! headers, handshakes and messages.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsloop::frame::{apply_mask, apply_mask_bytewise, encode_frame, encode_header, parse_header, Opcode};
use wsloop::handshake::{validate_upgrade, write_accept_response, ParseStatus, RequestParser};
use wsloop::protocol::{Config, WebSocket};
use wsloop::utf8::Utf8Validator;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

/// `apply_mask` against a plain copy of the same size (the ceiling for a pass over the bytes),
/// and the RFC's byte-at-a-time formula.
fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for (name, len) in [("1K", 1 << 10), ("64K", 64 << 10), ("1M", 1 << 20)] {
        g.throughput(Throughput::Bytes(len as u64));
        let mut buf = payload(len);
        g.bench_function(BenchmarkId::new("apply_mask", name), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), 0))
        });
        let src = payload(len);
        let mut dst = vec![0u8; len];
        g.bench_function(BenchmarkId::new("memcpy", name), |b| {
            b.iter(|| black_box(&mut dst).copy_from_slice(black_box(&src)))
        });
        if len == 64 << 10 {
            g.bench_function(BenchmarkId::new("apply_mask_bytewise", name), |b| {
                b.iter(|| apply_mask_bytewise(black_box(&mut buf), black_box(KEY), 0))
            });
            // A payload that starts one byte past an 8-byte boundary, at key offset 3: what a
            // frame behind a 6-byte header in a read buffer looks like.
            let mut unaligned = payload(len + 1);
            g.bench_function(BenchmarkId::new("apply_mask_unaligned", name), |b| {
                b.iter(|| apply_mask(black_box(&mut unaligned[1..]), black_box(KEY), 3))
            });
        }
    }
    g.finish();
}

/// Frame headers (RFC 6455 §5.2): parse the three length forms, masked; encode a header alone
/// and a whole small frame into a reused buffer.
fn frame_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    let forms: [(&str, Vec<u8>); 3] = [
        (
            "parse_masked_7bit",
            encode_header(true, Opcode::Text, Some(KEY), 100).to_vec(),
        ),
        (
            "parse_masked_16bit",
            encode_header(true, Opcode::Binary, Some(KEY), 4096).to_vec(),
        ),
        (
            "parse_masked_64bit",
            encode_header(true, Opcode::Binary, Some(KEY), 1 << 20).to_vec(),
        ),
    ];
    for (name, bytes) in &forms {
        g.bench_function(*name, |b| b.iter(|| parse_header(black_box(bytes))));
    }
    g.bench_function("encode_header", |b| {
        b.iter(|| encode_header(black_box(true), black_box(Opcode::Binary), None, black_box(4096)))
    });
    let body = payload(32);
    let mut out = Vec::with_capacity(64);
    g.bench_function("encode_frame_32B", |b| {
        b.iter(|| {
            out.clear();
            encode_frame(&mut out, true, Opcode::Binary, None, black_box(&body));
            black_box(&out);
        })
    });
    g.bench_function("encode_frame_32B_masked", |b| {
        b.iter(|| {
            out.clear();
            encode_frame(&mut out, true, Opcode::Binary, Some(KEY), black_box(&body));
            black_box(&out);
        })
    });
    g.finish();
}

/// About 64 KiB of text mixing ASCII with 2-, 3- and 4-byte characters.
fn mixed_text() -> Vec<u8> {
    let line = "Hello, world! Grüße aus München — κόσμε — こんにちは世界 — 🦀🚀 — plain ASCII filler text.\n";
    let mut s = String::with_capacity(66 << 10);
    while s.len() < 64 << 10 {
        s.push_str(line);
    }
    s.into_bytes()
}

/// UTF-8 checks for text messages (RFC 6455 §8.1): the incremental validator over fragments
/// (which cut characters in half), against `std::str::from_utf8` over the whole.
fn utf8(c: &mut Criterion) {
    let text = mixed_text();
    let mut g = c.benchmark_group("utf8");
    g.throughput(Throughput::Bytes(text.len() as u64));
    for frag in [64usize, 4096] {
        g.bench_function(BenchmarkId::new("validator", format!("{frag}B_fragments")), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for chunk in black_box(&text).chunks(frag) {
                    v.feed(chunk).unwrap();
                }
                v.finish().unwrap();
            })
        });
    }
    g.bench_function("std_from_utf8/whole", |b| {
        b.iter(|| std::str::from_utf8(black_box(&text)).is_ok())
    });
    g.finish();
}

/// A request as Chrome sends it.
const BROWSER_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: localhost:9001\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://localhost:9001\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

/// The server's side of the opening handshake (RFC 6455 §4.2): parse the head, check it,
/// write the 101 response.
fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(256);
    g.bench_function("parse_validate_accept", |b| {
        b.iter(|| {
            let Ok(ParseStatus::Complete { request, .. }) = RequestParser::default().parse(black_box(BROWSER_REQUEST))
            else {
                panic!("request did not parse");
            };
            let up = validate_upgrade(&request).unwrap();
            out.clear();
            write_accept_response(&mut out, up.key.as_bytes(), None, &[]);
            black_box(&out);
        })
    });
    g.bench_function("accept_key_only", |b| {
        b.iter(|| wsloop::handshake::accept_key(black_box(b"dGhlIHNhbXBsZSBub25jZQ==")))
    });
    g.finish();
}

/// The receive state machine: 100 masked 32-byte text frames in one read buffer, each handed
/// out as a slice of the (unmasked in place) input. Reported as messages/s.
fn state_machine(c: &mut Criterion) {
    const MESSAGES: usize = 100;
    let text = "0123456789abcdefghijklmnopqrstuv";
    let mut wire = Vec::new();
    for _ in 0..MESSAGES {
        encode_frame(&mut wire, true, Opcode::Text, Some(KEY), text.as_bytes());
    }
    let mut g = c.benchmark_group("receive");
    g.throughput(Throughput::Elements(MESSAGES as u64));
    let mut ws = WebSocket::server(Config::default());
    let mut buf = wire.clone();
    let mut out = Vec::new();
    g.bench_function("100x_text_32B_masked", |b| {
        b.iter(|| {
            // The input is unmasked in place, so each iteration starts from a fresh copy
            // (3.8 KB: a few tens of nanoseconds of the total).
            buf.copy_from_slice(&wire);
            let mut pos = 0;
            let mut n = 0;
            while pos < buf.len() {
                let r = ws.receive(&mut buf[pos..], &mut out).unwrap();
                pos += r.consumed;
                if let Some(e) = r.event {
                    black_box(e);
                    n += 1;
                }
            }
            assert_eq!(n, MESSAGES);
        })
    });
    g.finish();
}

criterion_group!(benches, unmask, frame_header, utf8, handshake, state_machine);
criterion_main!(benches);
