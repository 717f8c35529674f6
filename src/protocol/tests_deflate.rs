//! permessage-deflate through the state machine (RFC 7692 §6, §7.2): the RFC's examples as a
//! receiver sees them, the RSV1 rules, bounded inflating, and round trips at any split.

use super::*;
use crate::deflate::{compressor_bytes, inflater_bytes, DirectionParams, MessageCompressor};
use crate::error::ProtocolError;
use crate::frame::Opcode;
use crate::frame::{self, apply_mask, encode_header_rsv, HeaderStatus, RSV1, RSV2};
use proptest::prelude::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

fn takeover() -> DeflateParams {
    DeflateParams::default()
}

fn shared() -> DeflateParams {
    DeflateParams::no_context_takeover()
}

fn client(p: DeflateParams) -> WebSocket {
    WebSocket::with_mask_seed(Role::Client, Config::default(), 7).with_deflate(p)
}

fn server(p: DeflateParams) -> WebSocket {
    WebSocket::server(Config::default()).with_deflate(p)
}

/// A frame with explicit RSV bits, masked with KEY when `masked`.
fn frame(fin: bool, rsv: u8, opcode: Opcode, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mask = masked.then_some(KEY);
    let mut v = encode_header_rsv(fin, rsv, opcode, mask, payload.len() as u64).to_vec();
    let start = v.len();
    v.extend_from_slice(payload);
    if masked {
        apply_mask(&mut v[start..], KEY, 0);
    }
    v
}

fn feed(ws: &mut WebSocket, bytes: &[u8]) -> (Result<Vec<OwnedEvent>, ProtocolError>, Vec<u8>) {
    let mut input = bytes.to_vec();
    let mut out = Vec::new();
    let r = ws.receive_all(&mut input, &mut out);
    (r, out)
}

fn text(s: &str) -> OwnedEvent {
    OwnedEvent::Text(s.into())
}

/// The close code in the one Close frame a server wrote.
fn close_code_sent(out: &[u8]) -> u16 {
    let HeaderStatus::Complete(h) = frame::parse_header(out).unwrap() else {
        panic!("no frame");
    };
    assert_eq!(h.opcode, Opcode::Close);
    let p = &out[h.header_len()..];
    u16::from_be_bytes([p[0], p[1]])
}

fn assert_server_fails(ws: &mut WebSocket, bytes: &[u8], err: ProtocolError, code: u16) {
    let (r, out) = feed(ws, bytes);
    assert_eq!(r, Err(err));
    assert_eq!(err.close_code().0, code);
    assert_eq!(close_code_sent(&out), code);
    assert_eq!(ws.state(), State::Failed);
}

// --- RFC 7692 §7.2.3, as a client receives the server's frames ---

#[test]
fn rfc_7_2_3_1_one_frame_and_fragmented() {
    let mut c = client(shared());
    let (r, _) = feed(&mut c, &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    assert_eq!(r, Ok(vec![text("Hello")]));
    // Fragmented 3 + 4, RSV1 only on the first frame, a Ping between the fragments.
    let mut wire = vec![0x41, 0x03, 0xf2, 0x48, 0xcd];
    wire.extend_from_slice(&[0x89, 0x01, b'p']);
    wire.extend_from_slice(&[0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00]);
    let (r, _) = feed(&mut c, &wire);
    assert_eq!(r, Ok(vec![OwnedEvent::Ping(b"p".to_vec()), text("Hello")]));
}

#[test]
fn rfc_7_2_3_2_the_second_hello_needs_the_window() {
    let second = [0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00];
    let mut wire = vec![0xc1, 0x07];
    wire.extend_from_slice(&HELLO);
    // Uncompressed messages in between do not touch the window.
    wire.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
    wire.extend_from_slice(&second);
    let mut c = client(takeover());
    assert_eq!(
        feed(&mut c, &wire).0,
        Ok(vec![text("Hello"), text("hi"), text("Hello")])
    );
    // Had the server agreed server_no_context_takeover, the client drops the window, and the
    // second frame is not valid DEFLATE on its own.
    let mut c = client(shared());
    let (r, _) = feed(&mut c, &wire);
    assert_eq!(r, Err(ProtocolError::InvalidCompressedData));
    assert_eq!(ProtocolError::InvalidCompressedData.close_code().0, 1007);
}

#[test]
fn rfc_7_2_3_3_to_6_other_block_shapes() {
    let cases: [&[u8]; 4] = [
        // §7.2.3.3: a block with no compression (payload length 0x0b).
        &[
            0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ],
        // §7.2.3.4: BFINAL set, then an empty stored block's header bits.
        &[0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        // §7.2.3.5: two blocks.
        &[
            0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ],
        // §7.2.3.6: a non-final fragment keeps its 00 00 ff ff; the last fragment is 0x00.
        &[
            0x41, 0x0b, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff, 0x80, 0x01, 0x00,
        ],
    ];
    for wire in cases {
        for p in [shared(), takeover()] {
            let mut c = client(p);
            assert_eq!(feed(&mut c, wire).0, Ok(vec![text("Hello")]), "{wire:02x?}");
            // The connection goes on after each shape.
            assert_eq!(
                feed(&mut c, &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).0,
                Ok(vec![text("Hello")])
            );
        }
    }
}

#[test]
fn a_server_reads_the_rfc_frame_masked() {
    let mut s = server(shared());
    assert_eq!(
        feed(&mut s, &frame(true, RSV1, Opcode::Text, true, &HELLO)).0,
        Ok(vec![text("Hello")])
    );
}

#[test]
fn uncompressed_messages_stay_legal() {
    let mut s = server(takeover());
    let (r, _) = feed(&mut s, &frame(true, 0, Opcode::Binary, true, b"raw"));
    assert_eq!(r, Ok(vec![OwnedEvent::Binary(b"raw".to_vec())]));
}

// --- RFC 7692 §6: where RSV1 may be ---

#[test]
fn rule_rsv1_without_the_extension() {
    let mut s = WebSocket::server(Config::default());
    assert_server_fails(
        &mut s,
        &frame(true, RSV1, Opcode::Text, true, &HELLO),
        ProtocolError::Rsv1WithoutExtension,
        1002,
    );
}

#[test]
fn rule_rsv1_on_a_control_frame() {
    for op in [Opcode::Ping, Opcode::Pong, Opcode::Close] {
        let mut s = server(takeover());
        assert_server_fails(
            &mut s,
            &frame(true, RSV1, op, true, b""),
            ProtocolError::CompressedControlFrame,
            1002,
        );
    }
}

#[test]
fn rule_rsv1_on_a_continuation() {
    let mut s = server(takeover());
    let mut wire = frame(false, RSV1, Opcode::Text, true, &[0xf2, 0x48]);
    wire.extend(frame(
        true,
        RSV1,
        Opcode::Continuation,
        true,
        &[0xcd, 0xc9, 0xc9, 0x07, 0x00],
    ));
    assert_server_fails(&mut s, &wire, ProtocolError::CompressedContinuation, 1002);
}

#[test]
fn rule_rsv2_stays_reserved_with_deflate() {
    let mut s = server(takeover());
    assert_server_fails(
        &mut s,
        &frame(true, RSV1 | RSV2, Opcode::Text, true, &HELLO),
        ProtocolError::ReservedBitsSet(RSV1 | RSV2),
        1002,
    );
}

#[test]
fn rule_invalid_deflate_data_is_1007() {
    let mut s = server(takeover());
    assert_server_fails(
        &mut s,
        &frame(true, RSV1, Opcode::Binary, true, &[0xff, 0xff, 0xff, 0xff]),
        ProtocolError::InvalidCompressedData,
        1007,
    );
}

// --- Bounded inflating (RFC 6455 §10.4) ---

#[test]
fn zip_bomb_fails_with_1009_and_a_bounded_buffer() {
    let limit = 1 << 20;
    let mut c = MessageCompressor::new(
        DirectionParams {
            no_context_takeover: true,
            max_window_bits: 15,
        },
        9,
    );
    let mut bomb = Vec::new();
    c.compress(&vec![0u8; 10_000_000], &mut bomb).unwrap();
    assert!(bomb.len() < 11_000);
    let mut wire = frame(true, RSV1, Opcode::Binary, true, &bomb);
    let mut s = WebSocket::server(Config::default().max_message_size(limit)).with_deflate(shared());
    let mut out = Vec::new();
    let mut peak = 0;
    let mut result = Ok(());
    for piece in wire.chunks_mut(512) {
        match s.receive(piece, &mut out) {
            Ok(_) => peak = peak.max(s.memory_held()),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    assert_eq!(result, Err(ProtocolError::DecompressedMessageTooLarge));
    assert_eq!(close_code_sent(&out), 1009);
    assert!(peak <= limit + 1 + inflater_bytes() + 1024, "peak {peak}");
    assert!(peak > limit / 2, "it did inflate up to the limit: {peak}");
    assert!(s.memory_held() < 1024, "everything is freed after failing");
}

#[test]
fn compressed_bytes_count_against_the_limit_too() {
    // Empty stored blocks inflate to nothing; without this bound they could go on for ever.
    let mut s = WebSocket::server(Config::default().max_message_size(100)).with_deflate(shared());
    let mut wire = frame(false, RSV1, Opcode::Binary, true, &[0x00, 0x00, 0x00, 0xff, 0xff]);
    for _ in 0..30 {
        wire.extend(frame(
            false,
            0,
            Opcode::Continuation,
            true,
            &[0x00, 0x00, 0x00, 0xff, 0xff],
        ));
    }
    assert_server_fails(&mut s, &wire, ProtocolError::MessageTooLarge, 1009);
}

// Autobahn 6.4.*: invalid UTF-8 fails on the fragment that makes it impossible, compressed too.
#[test]
fn invalid_utf8_fails_fast_inside_a_compressed_fragmented_message() {
    let mut c = flate2::Compress::new(flate2::Compression::new(6), false);
    let mut first = Vec::with_capacity(256);
    let mut bad = "κόσμε".as_bytes().to_vec();
    bad.extend_from_slice(&[0xf4, 0x90]);
    c.compress_vec(&bad, &mut first, flate2::FlushCompress::Sync).unwrap();
    let mut s = server(shared());
    // Only the first fragment arrives; the rest never does.
    assert_server_fails(
        &mut s,
        &frame(false, RSV1, Opcode::Text, true, &first),
        ProtocolError::InvalidUtf8,
        1007,
    );
}

// Found by the deflate_session fuzz target: corrupt DEFLATE whose decodable prefix is already
// bad UTF-8. Byte by byte the character fails first; whole, one inflate call used to hit the
// corruption first. The first rule broken in the stream must win however the reads are cut.
#[test]
fn the_same_error_whatever_the_split_when_text_and_deflate_both_break() {
    let wire: [u8; 60] = [
        0xc1, 0xad, 0x37, 0xfa, 0x21, 0x3d, 0x9d, 0xac, 0xeb, 0x71, 0x66, 0x48, 0x13, 0xe9, 0x43, 0x66, 0xd0, 0xeb,
        0xf2, 0xf8, 0xaf, 0x93, 0x6f, 0xfd, 0x33, 0x6e, 0x77, 0x9d, 0xae, 0xf3, 0x6c, 0x1d, 0xb3, 0x8c, 0x15, 0x36,
        0x88, 0x12, 0x6f, 0x44, 0x88, 0xd3, 0x28, 0xa7, 0xb2, 0x84, 0xe7, 0xdd, 0xbb, 0x88, 0x3e, 0x37, 0x88, 0x82,
        0x37, 0xfa, 0x21, 0x3d, 0x34, 0x12,
    ];
    let cfg = Config::default().max_frame_size(128).max_message_size(256);
    let mut whole = WebSocket::server(cfg).with_deflate(takeover());
    let (r, _) = feed(&mut whole, &wire);
    let mut split = WebSocket::server(cfg).with_deflate(takeover());
    let mut out = Vec::new();
    let mut first_error = None;
    for b in wire {
        if let Err(e) = split.receive_all(&mut [b], &mut out) {
            first_error = Some(e);
            break;
        }
    }
    assert_eq!(r, Err(ProtocolError::InvalidUtf8));
    assert_eq!(first_error, Some(ProtocolError::InvalidUtf8));
}

// --- Sending ---

#[test]
fn sent_messages_are_compressed_above_the_threshold() {
    let mut s = server(shared());
    let mut out = Vec::new();
    s.send_text("Hello", &mut out).unwrap();
    assert_eq!(
        out,
        [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'],
        "below the threshold: plain"
    );
    out.clear();
    let long = "Hello, hello, hello, hello, hello, hello, hello, hello, hello, hello!".repeat(3);
    let long = long.as_str();
    s.send_text(long, &mut out).unwrap();
    assert_eq!(out[0], 0xc1, "FIN, RSV1, text");
    assert!(out.len() < long.len());
    let mut c = client(shared());
    assert_eq!(feed(&mut c, &out).0, Ok(vec![text(long)]));
    // The threshold is configurable; the RFC's own frame comes out with threshold 0 (with
    // context takeover: without it, 9 bytes compressed lose to 7 plain, and plain is sent).
    let mut s = WebSocket::server(Config::default().deflate_threshold(0)).with_deflate(takeover());
    out.clear();
    s.send_text("Hello", &mut out).unwrap();
    assert_eq!(out, [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
}

#[test]
fn a_client_masks_compressed_frames() {
    let mut c = client(shared());
    let mut out = Vec::new();
    let msg = vec![b'a'; 1000];
    c.send_binary(&msg, &mut out).unwrap();
    let HeaderStatus::Complete(h) = frame::parse_header(&out).unwrap() else {
        panic!()
    };
    assert_eq!((h.rsv, h.mask.is_some()), (RSV1, true));
    let mut s = server(shared());
    assert_eq!(feed(&mut s, &out).0, Ok(vec![OwnedEvent::Binary(msg)]));
}

#[test]
fn incompressible_messages_go_plain_without_takeover_and_compressed_with_it() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..2000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let mut out = Vec::new();
    server(shared()).send_binary(&noise, &mut out).unwrap();
    assert_eq!(out[0], 0x82, "plain when compressing did not help");
    out.clear();
    server(takeover()).send_binary(&noise, &mut out).unwrap();
    assert_eq!(out[0], 0xc2, "with takeover the peer's window must see it too");
}

#[test]
fn window_bits_8_sends_plain() {
    let p = DeflateParams {
        server_max_window_bits: 8,
        ..takeover()
    };
    let mut out = Vec::new();
    server(p).send_text(&"x".repeat(500), &mut out).unwrap();
    assert_eq!(out[0], 0x81);
}

// --- Memory per mode ---

#[test]
fn idle_memory_per_mode() {
    crate::deflate::clear_pool();
    let msg = "Hello, hello, hello, hello, hello, hello, hello, hello, hello, hello!".repeat(3);
    let msg = msg.as_str();
    let exchange = |p: Option<DeflateParams>| {
        let (mut s, mut c) = (
            WebSocket::server(Config::default()),
            WebSocket::with_mask_seed(Role::Client, Config::default(), 1),
        );
        if let Some(p) = p {
            s = s.with_deflate(p);
            c = c.with_deflate(p);
        }
        let mut wire = Vec::new();
        c.send_text(msg, &mut wire).unwrap();
        assert_eq!(feed(&mut s, &wire).0, Ok(vec![text(msg)]));
        let mut back = Vec::new();
        s.send_text(msg, &mut back).unwrap();
        let mut dummy = Vec::new();
        s.receive(&mut [], &mut dummy).unwrap(); // releases the last event's buffer
        let text = pmd_ref(&s.core.ext).map_or(0, |d| d.text.capacity());
        s.memory_held() - s.core.rx.as_ref().map_or(0, |r| r.held_bytes()) - text
    };
    assert_eq!(exchange(None), 0);
    let boxed = std::mem::size_of::<Ext>();
    assert_eq!(exchange(Some(shared())), boxed, "shared: nothing but the parameters");
    assert_eq!(
        exchange(Some(takeover())),
        boxed + compressor_bytes(15) + inflater_bytes(),
        "dedicated: a compressor and an inflater for life"
    );
    crate::deflate::clear_pool();
}

// --- Round trips at any split ---

proptest! {
    #[test]
    fn client_to_server_round_trip_at_any_split(
        client_bits in 9u8..=15,
        no_takeover in any::<bool>(),
        threshold in 0usize..200,
        messages in prop::collection::vec(("[a-z {}:,\"0-9]{0,400}", any::<bool>(), any::<bool>()), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let p = DeflateParams {
            client_no_context_takeover: no_takeover,
            client_max_window_bits: client_bits,
            ..DeflateParams::default()
        };
        let cfg = Config::default().deflate_threshold(threshold);
        let mut c = WebSocket::with_mask_seed(Role::Client, cfg, 3).with_deflate(p);
        let mut s = WebSocket::server(cfg).with_deflate(p);
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (m, binary, ping) in &messages {
            if *ping {
                c.send_ping(b"x", &mut wire).unwrap();
                want.push(OwnedEvent::Ping(b"x".to_vec()));
            }
            if *binary {
                c.send_binary(m.as_bytes(), &mut wire).unwrap();
                want.push(OwnedEvent::Binary(m.as_bytes().to_vec()));
            } else {
                c.send_text(m, &mut wire).unwrap();
                want.push(text(m));
            }
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        let mut got = Vec::new();
        let mut out = Vec::new();
        for w in points.windows(2) {
            let mut piece = wire[w[0]..w[1]].to_vec();
            got.extend(s.receive_all(&mut piece, &mut out).unwrap());
        }
        prop_assert_eq!(got, want);
    }

    // Arbitrary bytes into a deflate server, cut anywhere: no panic, memory bounded.
    #[test]
    fn arbitrary_bytes_with_deflate_stay_bounded(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        takeover_on in any::<bool>(),
    ) {
        let limit = 512;
        let p = if takeover_on { takeover() } else { shared() };
        let mut ws = WebSocket::server(Config::default().max_message_size(limit).max_frame_size(limit as u64)).with_deflate(p);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let mut out = Vec::new();
        for w in points.windows(2) {
            let mut piece = bytes[w[0]..w[1]].to_vec();
            if ws.receive_all(&mut piece, &mut out).is_err() {
                break;
            }
            prop_assert!(ws.buffered_message_len() <= limit);
            prop_assert!(ws.memory_held() <= 2 * limit + 2 + 128 + inflater_bytes() + 256);
        }
    }
}
