use super::close::truncate_utf8;
use super::receive::KEEP_BUFFER_CAPACITY;
use super::*;
use crate::error::{ProtocolError, SendError};
use crate::frame::Opcode;
use crate::frame::{self, apply_mask, encode_frame, HeaderStatus, MAX_CONTROL_PAYLOAD};
use proptest::prelude::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn server() -> WebSocket {
    WebSocket::server(Config::default())
}

/// A frame as a client would send it (masked).
fn cframe(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, fin, opcode, Some(KEY), payload);
    out
}

/// A frame with raw first and second bytes (for rule violations), masked with KEY.
fn raw_masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![b0, 0x80 | payload.len() as u8];
    v.extend_from_slice(&KEY);
    let start = v.len();
    v.extend_from_slice(payload);
    apply_mask(&mut v[start..], KEY, 0);
    v
}

fn feed(ws: &mut WebSocket, bytes: &[u8]) -> (Result<Vec<OwnedEvent>, ProtocolError>, Vec<u8>) {
    let mut input = bytes.to_vec();
    let mut out = Vec::new();
    let r = ws.receive_all(&mut input, &mut out);
    (r, out)
}

/// Parses the frames a server wrote (unmasked) into (opcode, payload).
fn frames_out(mut bytes: &[u8]) -> Vec<(Opcode, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let HeaderStatus::Complete(h) = frame::parse_header(bytes).unwrap() else {
            panic!("incomplete frame in output");
        };
        let start = h.header_len();
        let end = start + h.payload_len as usize;
        frames.push((h.opcode, bytes[start..end].to_vec()));
        bytes = &bytes[end..];
    }
    frames
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// Asserts that `bytes` fail a fresh server connection with `err`, that the server wrote one
/// Close frame carrying the error's code, and that the state is Failed.
fn assert_fails(bytes: &[u8], err: ProtocolError, code: u16) {
    let mut ws = server();
    let (r, out) = feed(&mut ws, bytes);
    assert_eq!(r, Err(err), "input {bytes:02x?}");
    assert_eq!(err.close_code().0, code);
    let frames = frames_out(&out);
    assert_eq!(frames.len(), 1, "exactly one Close frame: {frames:?}");
    assert_eq!(frames[0].0, Opcode::Close);
    assert_eq!(u16::from_be_bytes([frames[0].1[0], frames[0].1[1]]), code);
    assert_eq!(ws.state(), State::Failed);
    // Nothing more is read after failing (RFC 6455 §7.1.7).
    let (r, out) = feed(&mut ws, &cframe(true, Opcode::Text, b"late"));
    assert_eq!(r, Ok(vec![]));
    assert!(out.is_empty());
}

// --- RFC 6455 §5.7 examples through the state machine ---

#[test]
fn rfc_5_7_examples_as_a_client_receives_them() {
    let mut ws = WebSocket::client(Config::default());
    let mut out = Vec::new();
    let mut bytes = vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]; // unmasked "Hello"
    bytes.extend_from_slice(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]); // "Hel" + "lo"
    bytes.extend_from_slice(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]); // ping "Hello"
    let events = ws.receive_all(&mut bytes, &mut out).unwrap();
    assert_eq!(
        events,
        [
            OwnedEvent::Text("Hello".into()),
            OwnedEvent::Text("Hello".into()),
            OwnedEvent::Ping(b"Hello".to_vec())
        ]
    );
    // The client's automatic Pong is masked and carries the ping's payload.
    let HeaderStatus::Complete(h) = frame::parse_header(&out).unwrap() else {
        panic!()
    };
    assert_eq!(h.opcode, Opcode::Pong);
    let mut payload = out[h.header_len()..].to_vec();
    apply_mask(&mut payload, h.mask.unwrap(), 0);
    assert_eq!(payload, b"Hello");
}

#[test]
fn rfc_5_7_masked_examples_as_a_server_receives_them() {
    let mut ws = server();
    let mut bytes = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    bytes.extend_from_slice(&[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    let (r, out) = feed(&mut ws, &bytes);
    assert_eq!(
        r.unwrap(),
        [OwnedEvent::Text("Hello".into()), OwnedEvent::Pong(b"Hello".to_vec())]
    );
    assert!(out.is_empty());
}

#[test]
fn zero_copy_fast_path_borrows_the_input() {
    let mut ws = server();
    let mut input = cframe(true, Opcode::Binary, b"abc");
    let base = input.as_ptr() as usize;
    let mut out = Vec::new();
    let r = ws.receive(&mut input, &mut out).unwrap();
    assert_eq!(r.consumed, 9);
    let Some(Event::Binary(b)) = r.event else { panic!() };
    assert_eq!(b, b"abc");
    assert_eq!(b.as_ptr() as usize, base + 6);
}

#[test]
fn ping_gets_pong_and_close_gets_echoed_close() {
    let mut ws = server();
    let (r, out) = feed(&mut ws, &cframe(true, Opcode::Ping, b"are you there"));
    assert_eq!(r.unwrap(), [OwnedEvent::Ping(b"are you there".to_vec())]);
    assert_eq!(frames_out(&out), [(Opcode::Pong, b"are you there".to_vec())]);

    let (r, out) = feed(&mut ws, &cframe(true, Opcode::Close, &close_payload(1000, "bye")));
    assert_eq!(r.unwrap(), [OwnedEvent::Close(Some((CloseCode::NORMAL, "bye".into())))]);
    assert_eq!(frames_out(&out), [(Opcode::Close, 1000u16.to_be_bytes().to_vec())]);
    assert_eq!(ws.state(), State::Closed);
    assert!(ws.is_terminated());
    let mut out = Vec::new();
    assert_eq!(ws.send_text("too late", &mut out), Err(SendError::Closing));
    assert!(out.is_empty());
}

#[test]
fn empty_close_gets_empty_close() {
    let mut ws = server();
    let (r, out) = feed(&mut ws, &cframe(true, Opcode::Close, b""));
    assert_eq!(r.unwrap(), [OwnedEvent::Close(None)]);
    assert_eq!(frames_out(&out), [(Opcode::Close, vec![])]);
    assert_eq!(ws.close_code(), Some(CloseCode::NO_STATUS));
}

#[test]
fn we_close_first_then_the_peer_answers() {
    let mut ws = server();
    let mut out = Vec::new();
    ws.close(CloseCode::GOING_AWAY, "shutting down", &mut out).unwrap();
    assert_eq!(
        frames_out(&out),
        [(Opcode::Close, close_payload(1001, "shutting down"))]
    );
    assert_eq!(ws.state(), State::CloseSent);
    // No data frame after our Close (RFC 6455 §5.5.1), and no second Close.
    let mut more = Vec::new();
    assert_eq!(ws.send_binary(b"x", &mut more), Err(SendError::Closing));
    assert_eq!(ws.close(CloseCode::NORMAL, "", &mut more), Err(SendError::Closing));
    assert!(more.is_empty());
    // Data still in flight from the peer is delivered; its Close completes the handshake
    // without a second Close from us.
    let mut bytes = cframe(true, Opcode::Text, b"in flight");
    bytes.extend(cframe(true, Opcode::Close, &close_payload(1001, "")));
    let (r, out) = feed(&mut ws, &bytes);
    assert_eq!(
        r.unwrap(),
        [
            OwnedEvent::Text("in flight".into()),
            OwnedEvent::Close(Some((CloseCode::GOING_AWAY, String::new())))
        ]
    );
    assert!(out.is_empty());
    assert_eq!(ws.state(), State::Closed);
}

#[test]
fn close_reason_is_cut_at_a_char_boundary_to_fit() {
    let mut ws = server();
    let mut out = Vec::new();
    let reason = "é".repeat(100); // 200 bytes
    ws.close(CloseCode::NORMAL, &reason, &mut out).unwrap();
    let frames = frames_out(&out);
    assert!(frames[0].1.len() <= 125);
    assert!(std::str::from_utf8(&frames[0].1[2..]).is_ok());
    assert_eq!(
        ws.close(CloseCode(1005), "", &mut out),
        Err(SendError::InvalidCloseCode(1005))
    );
}

#[test]
fn control_frames_between_fragments() {
    let mut ws = server();
    let mut bytes = cframe(false, Opcode::Text, b"frag");
    bytes.extend(cframe(true, Opcode::Ping, b"p"));
    bytes.extend(cframe(false, Opcode::Continuation, b"men"));
    bytes.extend(cframe(true, Opcode::Pong, b""));
    bytes.extend(cframe(true, Opcode::Continuation, b"ted"));
    let (r, out) = feed(&mut ws, &bytes);
    assert_eq!(
        r.unwrap(),
        [
            OwnedEvent::Ping(b"p".to_vec()),
            OwnedEvent::Pong(vec![]),
            OwnedEvent::Text("fragmented".into())
        ]
    );
    assert_eq!(frames_out(&out), [(Opcode::Pong, b"p".to_vec())]);
}

#[test]
fn sixty_five_thousand_tiny_fragments_pass_the_default_limits() {
    // Autobahn 9.4.x: 4 MiB in 64-byte fragments. Limits are in bytes, not fragments.
    let mut ws = server();
    let chunk = [b'x'; 64];
    let mut bytes = cframe(false, Opcode::Binary, &chunk);
    for _ in 1..65535 {
        bytes.extend(cframe(false, Opcode::Continuation, &chunk));
    }
    bytes.extend(cframe(true, Opcode::Continuation, &chunk));
    let (r, _) = feed(&mut ws, &bytes);
    let events = r.unwrap();
    assert_eq!(events.len(), 1);
    let OwnedEvent::Binary(b) = &events[0] else { panic!() };
    assert_eq!(b.len(), 4 << 20);
}

#[test]
fn large_buffers_are_released_after_use() {
    let mut ws = server();
    let big = vec![7u8; 300_000];
    let bytes = cframe(true, Opcode::Binary, &big);
    // Deliver it in two pieces so it goes through the reassembly buffer.
    let (r1, _) = feed(&mut ws, &bytes[..1000]);
    assert_eq!(r1.unwrap(), vec![]);
    let (r2, _) = feed(&mut ws, &bytes[1000..]);
    assert_eq!(r2.unwrap().len(), 1);
    let _ = feed(&mut ws, &cframe(true, Opcode::Ping, b""));
    assert_eq!(ws.buffered_message_len(), 0);
    assert!(ws.core.rx.as_ref().map_or(0, |r| r.message.capacity()) <= KEEP_BUFFER_CAPACITY);
}

// --- one test per rule, each with its close code ---

#[test]
fn rule_server_rejects_unmasked_frames() {
    let mut bytes = Vec::new();
    encode_frame(&mut bytes, true, Opcode::Text, None, b"hi");
    assert_fails(&bytes, ProtocolError::UnmaskedClientFrame, 1002);
}

#[test]
fn rule_client_rejects_masked_frames() {
    let mut ws = WebSocket::client(Config::default());
    let (r, out) = feed(&mut ws, &cframe(true, Opcode::Text, b"hi"));
    assert_eq!(r, Err(ProtocolError::MaskedServerFrame));
    // The client's Close is masked; decode it.
    let HeaderStatus::Complete(h) = frame::parse_header(&out).unwrap() else {
        panic!()
    };
    let mut p = out[h.header_len()..].to_vec();
    apply_mask(&mut p, h.mask.unwrap(), 0);
    assert_eq!(u16::from_be_bytes([p[0], p[1]]), 1002);
}

#[test]
fn rule_rsv_bits_must_be_zero() {
    for rsv in [0x20, 0x10, 0x70] {
        assert_fails(
            &raw_masked(0x81 | rsv, b"x"),
            ProtocolError::ReservedBitsSet(rsv >> 4),
            1002,
        );
    }
    // RSV1 alone has its own rule: no extension defines it here (RFC 6455 §5.2, RFC 7692 §6).
    assert_fails(&raw_masked(0xc1, b"x"), ProtocolError::Rsv1WithoutExtension, 1002);
}

#[test]
fn rule_reserved_opcodes_fail() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_fails(&raw_masked(0x80 | op, b""), ProtocolError::ReservedOpcode(op), 1002);
    }
}

#[test]
fn rule_control_frames_at_most_125_bytes() {
    let mut bytes = vec![0x89, 0x80 | 126, 0, 126];
    bytes.extend_from_slice(&KEY);
    bytes.extend_from_slice(&[0; 126]);
    assert_fails(&bytes, ProtocolError::ControlFrameTooLong, 1002);
}

#[test]
fn rule_control_frames_not_fragmented() {
    assert_fails(&raw_masked(0x09, b""), ProtocolError::FragmentedControlFrame, 1002);
}

#[test]
fn rule_continuation_must_continue_something() {
    assert_fails(
        &cframe(true, Opcode::Continuation, b"x"),
        ProtocolError::UnexpectedContinuation,
        1002,
    );
}

#[test]
fn rule_new_message_inside_fragmented_one() {
    let mut bytes = cframe(false, Opcode::Text, b"a");
    bytes.extend(cframe(true, Opcode::Text, b"b"));
    assert_fails(&bytes, ProtocolError::ExpectedContinuation, 1002);
}

#[test]
fn rule_text_must_be_utf8() {
    assert_fails(
        &cframe(true, Opcode::Text, &[0xce, 0xba, 0xff]),
        ProtocolError::InvalidUtf8,
        1007,
    );
    // Truncated at the end of a fragmented message.
    let mut bytes = cframe(false, Opcode::Text, b"ok");
    bytes.extend(cframe(true, Opcode::Continuation, &[0xce]));
    assert_fails(&bytes, ProtocolError::InvalidUtf8, 1007);
}

#[test]
fn rule_invalid_utf8_fails_inside_a_frame_still_arriving() {
    // Autobahn 6.4.3 style: the frame says 21 bytes, the first 12 arrive and already hold
    // F4 90 (above U+10FFFF): fail now, without waiting for the rest of the frame.
    let payload: Vec<u8> = ["κόσμε".as_bytes(), &[0xf4, 0x90, 0x80, 0x80], b"edited"].concat();
    let bytes = cframe(true, Opcode::Text, &payload);
    let mut ws = server();
    let (r, out) = feed(&mut ws, &bytes[..6 + 13]);
    assert_eq!(r, Err(ProtocolError::InvalidUtf8));
    assert_eq!(frames_out(&out)[0].1[..2], 1007u16.to_be_bytes());
    // And across frames: the first fragment alone already fails.
    let mut ws = server();
    let first = cframe(false, Opcode::Text, &[b'a', 0xf4, 0x90]);
    let (r, _) = feed(&mut ws, &first);
    assert_eq!(r, Err(ProtocolError::InvalidUtf8));
}

#[test]
fn rule_close_payload_of_one_byte() {
    assert_fails(
        &cframe(true, Opcode::Close, &[0x03]),
        ProtocolError::CloseFrameTooShort,
        1002,
    );
}

#[test]
fn rule_close_codes_allowed_on_the_wire() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        assert_fails(
            &cframe(true, Opcode::Close, &close_payload(code, "")),
            ProtocolError::InvalidCloseCode(code),
            1002,
        );
    }
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
    ] {
        let mut ws = server();
        let (r, out) = feed(&mut ws, &cframe(true, Opcode::Close, &close_payload(code, "")));
        assert_eq!(r.unwrap(), [OwnedEvent::Close(Some((CloseCode(code), String::new())))]);
        assert_eq!(frames_out(&out), [(Opcode::Close, code.to_be_bytes().to_vec())]);
    }
}

#[test]
fn rule_close_reason_must_be_utf8() {
    let mut p = close_payload(1000, "");
    p.extend_from_slice(&[0xce, 0xba, 0xe1, 0xbd]);
    assert_fails(&cframe(true, Opcode::Close, &p), ProtocolError::InvalidUtf8, 1007);
}

#[test]
fn rule_64_bit_length_top_bit() {
    let mut bytes = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&KEY);
    assert_fails(&bytes, ProtocolError::LengthTopBitSet, 1002);
}

#[test]
fn rule_non_minimal_length() {
    let mut bytes = vec![0x82, 0x80 | 126, 0, 5];
    bytes.extend_from_slice(&KEY);
    bytes.extend_from_slice(&[0; 5]);
    assert_fails(&bytes, ProtocolError::NonMinimalLength, 1002);
}

#[test]
fn rule_frame_over_the_limit_fails_at_the_header() {
    let mut ws = WebSocket::server(Config::default().max_frame_size(1000));
    // Only the header: a declared length of 1001 fails before any payload is buffered.
    let header = frame::encode_header(true, Opcode::Binary, Some(KEY), 1001);
    let (r, out) = feed(&mut ws, &header);
    assert_eq!(r, Err(ProtocolError::FrameTooLarge));
    assert_eq!(frames_out(&out)[0].1[..2], 1009u16.to_be_bytes());
    assert_eq!(ws.core.rx.as_ref().map_or(0, |r| r.message.capacity()), 0);
    // The default frame limit, with a 64-bit length.
    let header = frame::encode_header(true, Opcode::Binary, Some(KEY), (64 << 20) + 1);
    assert_fails(&header, ProtocolError::FrameTooLarge, 1009);
}

#[test]
fn rule_message_over_the_limit_fails_at_the_header_of_the_fragment_that_passes_it() {
    let mut ws = WebSocket::server(Config::default().max_message_size(100));
    let mut bytes = cframe(false, Opcode::Binary, &[1; 60]);
    bytes.extend_from_slice(&frame::encode_header(true, Opcode::Continuation, Some(KEY), 41));
    let (r, out) = feed(&mut ws, &bytes);
    assert_eq!(r, Err(ProtocolError::MessageTooLarge));
    assert_eq!(frames_out(&out)[0].1[..2], 1009u16.to_be_bytes());
}

// --- any split gives the same events ---

#[derive(Debug, Clone)]
enum Spec {
    Text(String, usize),
    Binary(Vec<u8>, usize),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        ("\\PC{0,40}", 1usize..4).prop_map(|(s, n)| Spec::Text(s, n)),
        (prop::collection::vec(any::<u8>(), 0..300), 1usize..4).prop_map(|(b, n)| Spec::Binary(b, n)),
        prop::collection::vec(any::<u8>(), 0..125).prop_map(Spec::Ping),
        prop::collection::vec(any::<u8>(), 0..125).prop_map(Spec::Pong),
    ]
}

/// Encodes a message in `parts` fragments cut at arbitrary byte positions (even inside a
/// UTF-8 character), masked with a per-frame key like a real client.
fn encode_spec(s: &Spec, rng: &mut u32, out: &mut Vec<u8>) {
    let mut key = || {
        *rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        rng.to_be_bytes()
    };
    let (opcode, data, parts) = match s {
        Spec::Text(t, n) => (Opcode::Text, t.as_bytes().to_vec(), *n),
        Spec::Binary(b, n) => (Opcode::Binary, b.clone(), *n),
        Spec::Ping(p) => return encode_frame(out, true, Opcode::Ping, Some(key()), p),
        Spec::Pong(p) => return encode_frame(out, true, Opcode::Pong, Some(key()), p),
    };
    let step = data.len().div_ceil(parts).max(1);
    let mut chunks: Vec<&[u8]> = data.chunks(step).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let last = chunks.len() - 1;
    for (i, c) in chunks.iter().enumerate() {
        let op = if i == 0 { opcode } else { Opcode::Continuation };
        encode_frame(out, i == last, op, Some(key()), c);
        if i != last && c.len() % 2 == 1 {
            // A control frame between fragments (RFC 6455 §5.4); its event comes first.
            encode_frame(out, true, Opcode::Pong, Some(key()), &c[..c.len().min(125)]);
        }
    }
}

fn expected(s: &Spec) -> OwnedEvent {
    match s {
        Spec::Text(t, _) => OwnedEvent::Text(t.clone()),
        Spec::Binary(b, _) => OwnedEvent::Binary(b.clone()),
        Spec::Ping(p) => OwnedEvent::Ping(p.clone()),
        Spec::Pong(p) => OwnedEvent::Pong(p.clone()),
    }
}

/// The events a spec yields when encoded by [`encode_spec`]: interleaved Pongs first.
fn expected_with_interleaved(s: &Spec) -> Vec<OwnedEvent> {
    let (data, parts) = match s {
        Spec::Text(t, n) => (t.as_bytes().to_vec(), *n),
        Spec::Binary(b, n) => (b.clone(), *n),
        _ => return vec![expected(s)],
    };
    let step = data.len().div_ceil(parts).max(1);
    let chunks: Vec<&[u8]> = data.chunks(step).collect();
    let mut events: Vec<OwnedEvent> = chunks
        .iter()
        .take(chunks.len().saturating_sub(1))
        .filter(|c| c.len() % 2 == 1)
        .map(|c| OwnedEvent::Pong(c[..c.len().min(125)].to_vec()))
        .collect();
    events.push(expected(s));
    events
}

proptest! {
    #[test]
    fn any_split_yields_the_same_events_as_whole(
        specs in prop::collection::vec(spec(), 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        seed in any::<u32>(),
    ) {
        let mut rng = seed;
        let mut wire = Vec::new();
        for s in &specs {
            encode_spec(s, &mut rng, &mut wire);
        }
        let want: Vec<OwnedEvent> = specs.iter().flat_map(expected_with_interleaved).collect();

        let mut whole_ws = server();
        let (whole, whole_out) = feed(&mut whole_ws, &wire);
        prop_assert_eq!(whole.as_ref().unwrap(), &want);

        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        let mut ws = server();
        let mut got = Vec::new();
        let mut out = Vec::new();
        for w in points.windows(2) {
            let mut piece = wire[w[0]..w[1]].to_vec();
            got.extend(ws.receive_all(&mut piece, &mut out).unwrap());
        }
        prop_assert_eq!(got, want);
        prop_assert_eq!(out, whole_out);
    }

    #[test]
    fn server_to_client_roundtrip(specs in prop::collection::vec(spec(), 1..6)) {
        // What a server sends, a client receives unchanged.
        let mut srv = server();
        let mut wire = Vec::new();
        for s in &specs {
            match s {
                Spec::Text(t, _) => srv.send_text(t, &mut wire).unwrap(),
                Spec::Binary(b, _) => srv.send_binary(b, &mut wire).unwrap(),
                Spec::Ping(p) => srv.send_ping(p, &mut wire).unwrap(),
                Spec::Pong(p) => srv.send_pong(p, &mut wire).unwrap(),
            }
        }
        let mut cli = WebSocket::client(Config::default());
        let mut out = Vec::new();
        let got = cli.receive_all(&mut wire, &mut out).unwrap();
        prop_assert_eq!(got, specs.iter().map(expected).collect::<Vec<_>>());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        // `drive` checks after every `receive`: the buffer within the limit, consumed ≤ input,
        // well-formed output, and that a failed connection reads nothing more.
        let limit = 512;
        drive(Config::default().max_message_size(limit).max_frame_size(limit as u64), &bytes, &cuts)?;
    }
}

// --- valid client frame sequences, intact and corrupted ---
//
// `arbitrary_bytes_never_panic_and_stay_bounded` above almost always fails at the first
// header, so it never gets deep into reassembly, interleaved control frames or the 16- and
// 64-bit length forms. These generate what a real client sends (fragmented messages with
// control frames between the fragments, every length form, a fresh random mask per frame,
// maybe a Close at the end), check that the intact sequence yields exactly the generated
// events in any split, and then corrupt it (flipped bits, in headers and anywhere, truncation,
// inserted bytes) and check that nothing panics or grows past the limits.

/// A control frame to generate: Ping or Pong, `len` bytes (0..=125) made from `seed`.
#[derive(Debug, Clone)]
struct GenControl {
    ping: bool,
    len: usize,
    seed: u32,
}

#[derive(Debug, Clone)]
enum GenItem {
    /// A Text or Binary message of `len` bytes made from `seed`, cut into fragments at `cuts`
    /// (empty fragments allowed); `between[i]`, if any, is sent after fragment `i`.
    Message {
        text: bool,
        len: usize,
        seed: u32,
        cuts: Vec<prop::sample::Index>,
        between: Vec<Option<GenControl>>,
    },
    Control(GenControl),
}

#[derive(Debug, Clone)]
enum Corruption {
    /// Flips one bit anywhere.
    FlipBit(prop::sample::Index, u8),
    /// Flips one bit in the first 14 bytes of a frame: FIN, RSV, opcode, MASK, the length and
    /// its extension, the masking key.
    FlipHeaderBit(prop::sample::Index, usize, u8),
    /// Cuts the input short.
    Truncate(prop::sample::Index),
    /// Inserts bytes.
    Insert(prop::sample::Index, Vec<u8>),
}

/// One frame of a generated sequence, before masking.
#[derive(Debug, Clone)]
struct GenFrame {
    fin: bool,
    opcode: Opcode,
    payload: Vec<u8>,
}

/// Payload lengths around each length form's edges: 7-bit (0..=125), 16-bit (126..=65535),
/// 64-bit (65536 and up).
fn gen_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..=125,
        4 => 126usize..=1100,
        2 => prop::sample::select(vec![125usize, 126, 65_535, 65_536]),
        2 => 65_536usize..=66_000,
    ]
}

fn gen_control() -> impl Strategy<Value = GenControl> {
    (any::<bool>(), 0usize..=MAX_CONTROL_PAYLOAD, any::<u32>()).prop_map(|(ping, len, seed)| GenControl {
        ping,
        len,
        seed,
    })
}

fn gen_item() -> impl Strategy<Value = GenItem> {
    prop_oneof![
        4 => (
            any::<bool>(),
            gen_len(),
            any::<u32>(),
            prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            prop::collection::vec(prop::option::of(gen_control()), 0..4),
        )
            .prop_map(|(text, len, seed, cuts, between)| GenItem::Message {
                text,
                len,
                seed,
                cuts,
                between,
            }),
        1 => gen_control().prop_map(GenItem::Control),
    ]
}

/// A Close frame's code (one a client may send) and reason.
fn gen_close() -> impl Strategy<Value = Option<(u16, String)>> {
    prop::option::of((
        prop_oneof![Just(1000u16), Just(1001), Just(1003), Just(1011), 3000u16..5000],
        "\\PC{0,20}",
    ))
}

fn gen_corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Corruption::FlipBit(i, b)),
        3 => (any::<prop::sample::Index>(), 0usize..14, 0u8..8).prop_map(|(f, o, b)| Corruption::FlipHeaderBit(f, o, b)),
        1 => any::<prop::sample::Index>().prop_map(Corruption::Truncate),
        2 => (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(i, b)| Corruption::Insert(i, b)),
    ]
}

/// `len` bytes from `seed`: random bytes, or for text valid UTF-8 mixing 1- to 4-byte
/// characters (so fragment cuts fall inside characters).
fn gen_payload(text: bool, len: usize, seed: u32) -> Vec<u8> {
    let mut rng = seed;
    let mut next = move || {
        rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        rng
    };
    if !text {
        return (0..len).map(|_| (next() >> 24) as u8).collect();
    }
    const CHARS: [char; 7] = ['a', '~', 'é', 'ß', '€', '한', '😀'];
    let mut s = String::with_capacity(len);
    while s.len() < len {
        let c = CHARS[(next() >> 16) as usize % CHARS.len()];
        s.push(if s.len() + c.len_utf8() <= len { c } else { 'a' });
    }
    s.into_bytes()
}

fn control_frame(c: &GenControl) -> GenFrame {
    GenFrame {
        fin: true,
        opcode: if c.ping { Opcode::Ping } else { Opcode::Pong },
        payload: gen_payload(false, c.len, c.seed),
    }
}

/// The frames of a generated sequence, in order.
fn gen_frames(items: &[GenItem], close: &Option<(u16, String)>) -> Vec<GenFrame> {
    let mut frames = Vec::new();
    for item in items {
        match item {
            GenItem::Control(c) => frames.push(control_frame(c)),
            GenItem::Message {
                text,
                len,
                seed,
                cuts,
                between,
            } => {
                let data = gen_payload(*text, *len, *seed);
                let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
                points.sort_unstable();
                points.insert(0, 0);
                points.push(data.len());
                let last = points.len() - 2;
                for (i, w) in points.windows(2).enumerate() {
                    frames.push(GenFrame {
                        fin: i == last,
                        opcode: match (i, text) {
                            (0, true) => Opcode::Text,
                            (0, false) => Opcode::Binary,
                            _ => Opcode::Continuation,
                        },
                        payload: data[w[0]..w[1]].to_vec(),
                    });
                    if i != last {
                        if let Some(Some(c)) = between.get(i) {
                            frames.push(control_frame(c));
                        }
                    }
                }
            }
        }
    }
    if let Some((code, reason)) = close {
        frames.push(GenFrame {
            fin: true,
            opcode: Opcode::Close,
            payload: close_payload(*code, reason),
        });
    }
    frames
}

/// Encodes the frames masked, each with its own key from `seed`; returns the bytes and where
/// each frame starts.
fn encode_gen(frames: &[GenFrame], seed: u32) -> (Vec<u8>, Vec<usize>) {
    let mut rng = seed;
    let mut wire = Vec::new();
    let mut starts = Vec::new();
    for f in frames {
        rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        starts.push(wire.len());
        encode_frame(&mut wire, f.fin, f.opcode, Some(rng.to_be_bytes()), &f.payload);
    }
    (wire, starts)
}

/// What a server must make of a valid frame sequence under these limits: its events, the
/// bytes it writes back (Pongs, the Close reply, or the Close that fails the connection) and
/// the error, if a limit is passed.
#[derive(Clone, PartialEq)]
struct Outcome {
    events: Vec<OwnedEvent>,
    out: Vec<u8>,
    error: Option<ProtocolError>,
}

/// Short enough to read in a failure report with 64 KiB messages: each payload as its length,
/// first bytes and an FNV-1a hash; the output bytes as their frames.
impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn short(bytes: &[u8]) -> String {
            let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
            });
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            let more = if bytes.len() > 8 { "…" } else { "" };
            format!("{} bytes [{}{more}] fnv {hash:016x}", bytes.len(), head.join(" "))
        }
        let events: Vec<String> = self
            .events
            .iter()
            .map(|e| match e {
                OwnedEvent::Text(t) => format!("Text({})", short(t.as_bytes())),
                OwnedEvent::Binary(b) => format!("Binary({})", short(b)),
                OwnedEvent::Ping(p) => format!("Ping({})", short(p)),
                OwnedEvent::Pong(p) => format!("Pong({})", short(p)),
                OwnedEvent::Close(c) => format!("Close({c:?})"),
            })
            .collect();
        let out: Vec<String> = match frame::parse_header(&self.out) {
            Ok(_) if !self.out.is_empty() => {
                let mut frames = Vec::new();
                let mut rest = &self.out[..];
                while let Ok(HeaderStatus::Complete(h)) = frame::parse_header(rest) {
                    let end = (h.header_len() + h.payload_len as usize).min(rest.len());
                    frames.push(format!("{:?}({})", h.opcode, short(&rest[h.header_len()..end])));
                    rest = &rest[end..];
                }
                if !rest.is_empty() {
                    frames.push(format!("unparsed {}", short(rest)));
                }
                frames
            }
            _ => vec![short(&self.out)],
        };
        f.debug_struct("Outcome")
            .field("events", &events)
            .field("out", &out)
            .field("error", &self.error)
            .finish()
    }
}

fn model(frames: &[GenFrame], max_message: usize, max_frame: u64) -> Outcome {
    let mut o = Outcome {
        events: Vec::new(),
        out: Vec::new(),
        error: None,
    };
    let mut message: Vec<u8> = Vec::new();
    let mut text = false;
    for f in frames {
        let error = if f.payload.len() as u64 > max_frame {
            Some(ProtocolError::FrameTooLarge)
        } else if !f.opcode.is_control() && message.len() + f.payload.len() > max_message {
            Some(ProtocolError::MessageTooLarge)
        } else {
            None
        };
        if let Some(e) = error {
            let mut p = e.close_code().0.to_be_bytes().to_vec();
            p.extend_from_slice(truncate_utf8(e.close_reason(), MAX_CONTROL_PAYLOAD - 2).as_bytes());
            encode_frame(&mut o.out, true, Opcode::Close, None, &p);
            o.error = Some(e);
            return o;
        }
        match f.opcode {
            Opcode::Ping => {
                encode_frame(&mut o.out, true, Opcode::Pong, None, &f.payload);
                o.events.push(OwnedEvent::Ping(f.payload.clone()));
            }
            Opcode::Pong => o.events.push(OwnedEvent::Pong(f.payload.clone())),
            Opcode::Close => {
                let code = CloseCode(u16::from_be_bytes([f.payload[0], f.payload[1]]));
                let reason = String::from_utf8(f.payload[2..].to_vec()).unwrap();
                encode_frame(&mut o.out, true, Opcode::Close, None, &code.0.to_be_bytes());
                o.events.push(OwnedEvent::Close(Some((code, reason))));
                return o; // Closed: nothing after it is read.
            }
            op => {
                if op != Opcode::Continuation {
                    text = op == Opcode::Text;
                }
                message.extend_from_slice(&f.payload);
                if f.fin {
                    let data = std::mem::take(&mut message);
                    o.events.push(if text {
                        OwnedEvent::Text(String::from_utf8(data).unwrap())
                    } else {
                        OwnedEvent::Binary(data)
                    });
                }
            }
        }
    }
    o
}

/// Feeds `wire` to a fresh server with `config`, cut at `cuts`, one `receive` at a time,
/// checking after every call: consumed ≤ the input given (all of it when no event came), an
/// event consumed something, and the reassembly buffer within `max_message_size`. After an
/// error: the state is Failed, the buffer freed, and more input is ignored.
fn drive(config: Config, wire: &[u8], cuts: &[prop::sample::Index]) -> Result<Outcome, TestCaseError> {
    let limit = config.max_message_size;
    let mut ws = WebSocket::server(config);
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
    points.push(0);
    points.push(wire.len());
    points.sort_unstable();
    let mut o = Outcome {
        events: Vec::new(),
        out: Vec::new(),
        error: None,
    };
    'pieces: for w in points.windows(2) {
        let mut piece = wire[w[0]..w[1]].to_vec();
        let mut pos = 0;
        while pos < piece.len() {
            let given = piece.len() - pos;
            let (consumed, event) = match ws.receive(&mut piece[pos..], &mut o.out) {
                Ok(r) => (r.consumed, r.event.map(|e| e.to_owned_event())),
                Err(e) => {
                    o.error = Some(e);
                    break 'pieces;
                }
            };
            prop_assert!(consumed <= given, "consumed {} of {} bytes", consumed, given);
            prop_assert!(
                ws.buffered_message_len() <= limit,
                "{} bytes buffered, limit {}",
                ws.buffered_message_len(),
                limit
            );
            match event {
                Some(e) => {
                    prop_assert!(consumed > 0, "an event from no input: {:?}", e);
                    o.events.push(e);
                }
                None => prop_assert_eq!(consumed, given, "no event, yet not all input consumed"),
            }
            pos += consumed;
        }
    }
    check_server_output(&o)?;
    if o.error.is_some() {
        prop_assert_eq!(ws.state(), State::Failed);
        prop_assert_eq!(ws.buffered_message_len(), 0, "reassembly buffer kept after failing");
        let mut more = wire.to_vec();
        let mut out = Vec::new();
        let r = ws.receive(&mut more, &mut out).map(|r| (r.consumed, r.event.is_some()));
        prop_assert_eq!(r, Ok((wire.len(), false)), "input after failing must be ignored");
        prop_assert!(out.is_empty());
    }
    Ok(o)
}

/// What a server writes back on its own is whole, unmasked, final Pong or Close frames of at
/// most 125 bytes; one Close at most, last; after an error, that Close carries its code.
fn check_server_output(o: &Outcome) -> Result<(), TestCaseError> {
    let mut rest = &o.out[..];
    let mut last = None;
    while !rest.is_empty() {
        prop_assert!(last != Some(Opcode::Close), "bytes after our Close: {:?}", o);
        let h = match frame::parse_header(rest) {
            Ok(HeaderStatus::Complete(h)) => h,
            other => return Err(TestCaseError::fail(format!("bad frame in output ({other:?}): {o:?}"))),
        };
        prop_assert!(h.fin && h.mask.is_none() && h.rsv == 0, "{:?} in {:?}", h, o);
        prop_assert!(matches!(h.opcode, Opcode::Pong | Opcode::Close), "{:?} in {:?}", h, o);
        prop_assert!(h.payload_len <= MAX_CONTROL_PAYLOAD as u64, "{:?} in {:?}", h, o);
        let end = h.header_len() + h.payload_len as usize;
        prop_assert!(end <= rest.len(), "output ends inside a frame: {:?}", o);
        if h.opcode == Opcode::Close {
            if let Some(e) = o.error {
                let code = rest.get(h.header_len()..h.header_len() + 2);
                prop_assert_eq!(code, Some(&e.close_code().0.to_be_bytes()[..]), "{:?}", o);
            }
        }
        last = Some(h.opcode);
        rest = &rest[end..];
    }
    if o.error.is_some() {
        prop_assert_eq!(last, Some(Opcode::Close), "failed without a Close: {:?}", o);
    }
    Ok(())
}

fn corrupt(wire: &[u8], starts: &[usize], corruptions: &[Corruption]) -> Vec<u8> {
    let mut bytes = wire.to_vec();
    for c in corruptions {
        match c {
            Corruption::FlipBit(i, bit) if !bytes.is_empty() => {
                let at = i.index(bytes.len());
                bytes[at] ^= 1 << bit;
            }
            Corruption::FlipHeaderBit(frame, offset, bit) if !bytes.is_empty() && !starts.is_empty() => {
                let at = (starts[frame.index(starts.len())] + offset).min(bytes.len() - 1);
                bytes[at] ^= 1 << bit;
            }
            Corruption::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
            Corruption::Insert(i, extra) => {
                let at = i.index(bytes.len() + 1);
                bytes.splice(at..at, extra.iter().copied());
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #[test]
    fn valid_client_frames_then_corrupted_stay_bounded(
        items in prop::collection::vec(gen_item(), 1..6),
        close in gen_close(),
        mask_seed in any::<u32>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        limits in (
            (any::<prop::sample::Index>(), any::<bool>()),
            prop::option::of((any::<prop::sample::Index>(), any::<bool>())),
        ),
        corruptions in prop::collection::vec(gen_corruption(), 1..4),
    ) {
        let frames = gen_frames(&items, &close);
        let (wire, starts) = encode_gen(&frames, mask_seed);
        // The tightest limits the intact sequence fits in.
        let max_message = frames
            .split_inclusive(|f| f.fin && !f.opcode.is_control())
            .map(|fs| fs.iter().filter(|f| !f.opcode.is_control()).map(|f| f.payload.len()).sum::<usize>())
            .max()
            .unwrap_or(0);
        let max_frame = frames.iter().map(|f| f.payload.len() as u64).max().unwrap_or(0);
        let tight = Config::default().max_message_size(max_message).max_frame_size(max_frame);

        // Intact: exactly the generated events, Pongs and Close reply, whole and split.
        let want = model(&frames, max_message, max_frame);
        prop_assert_eq!(want.error, None);
        prop_assert_eq!(
            want.events.iter().filter(|e| matches!(e, OwnedEvent::Text(_) | OwnedEvent::Binary(_))).count(),
            items.iter().filter(|i| matches!(i, GenItem::Message { .. })).count()
        );
        prop_assert_eq!(&drive(tight, &wire, &[])?, &want, "intact sequence, whole, limits it just fits");
        prop_assert_eq!(&drive(tight, &wire, &cuts)?, &want, "intact sequence, split, limits it just fits");

        // Intact under lower limits: the events up to the frame that passes one, then that
        // limit's error and its Close. Each limit is set to exactly a size the sequence
        // reaches (a message's length so far at the end of one of its frames; a frame's
        // payload length), or one less, so an off-by-one in either direction shows.
        let mut sofar = 0;
        let message_sizes: Vec<usize> = frames
            .iter()
            .filter(|f| !f.opcode.is_control())
            .map(|f| {
                sofar += f.payload.len();
                let size = sofar;
                if f.fin {
                    sofar = 0;
                }
                size
            })
            .collect();
        let at_or_below = |sizes: &[usize], (i, below): (prop::sample::Index, bool)| {
            sizes.get(i.index(sizes.len().max(1))).map_or(0, |&n| if below { n.saturating_sub(1) } else { n })
        };
        let message_limit = at_or_below(&message_sizes, limits.0);
        let frame_sizes: Vec<usize> = frames.iter().map(|f| f.payload.len()).collect();
        let frame_limit = limits.1.map_or(max_frame as usize, |l| at_or_below(&frame_sizes, l));
        let low = Config::default().max_message_size(message_limit).max_frame_size(frame_limit as u64);
        let want_low = model(&frames, message_limit, frame_limit as u64);
        prop_assert_eq!(
            &drive(low, &wire, &cuts)?,
            &want_low,
            "intact sequence, split, max_message_size {} max_frame_size {}",
            message_limit,
            frame_limit
        );

        // Corrupted: no panic, bounded, and the same outcome however the bytes are split.
        let bad = corrupt(&wire, &starts, &corruptions);
        let whole = drive(tight, &bad, &[])?;
        let split = drive(tight, &bad, &cuts)?;
        prop_assert_eq!(split, whole, "corrupted sequence: split and whole differ");
    }
}

// --- the receive state exists only while something is in progress (issue 24) ---

#[test]
fn a_whole_frame_in_one_read_needs_no_receive_state() {
    let mut ws = server();
    let mut input = cframe(true, Opcode::Text, b"0123456789abcdefghijklmnopqrstuv");
    let mut out = Vec::new();
    let r = ws.receive(&mut input, &mut out).unwrap();
    assert_eq!(r.event, Some(Event::Text("0123456789abcdefghijklmnopqrstuv")));
    // The hot path: handed out from the input, nothing boxed, not even while lent out.
    assert!(ws.core.rx.is_none());
    assert_eq!(ws.memory_held(), 0);
    // Nor does an empty read, or a frame that completes empty after a cut header.
    let r = ws.receive(&mut [], &mut out).unwrap();
    assert_eq!(r.event, None);
    assert!(ws.core.rx.is_none());
    let empty = cframe(true, Opcode::Binary, b"");
    assert_eq!(feed(&mut ws, &empty[..3]).0, Ok(vec![]));
    assert!(ws.core.rx.is_some());
    assert_eq!(feed(&mut ws, &empty[3..]).0, Ok(vec![OwnedEvent::Binary(vec![])]));
    assert!(ws.core.rx.is_none());
}

#[test]
fn the_receive_state_lives_only_while_a_frame_is_cut_or_a_message_fragmented() {
    let mut ws = server();
    let whole = cframe(true, Opcode::Binary, &[5; 300]);
    // Cut inside the header, then inside the payload.
    for cut in [1, 20] {
        let (r, _) = feed(&mut ws, &whole[..cut]);
        assert_eq!(r.unwrap(), vec![]);
        assert!(ws.core.rx.is_some(), "cut at {cut}: the partial frame is kept");
        let (r, _) = feed(&mut ws, &whole[cut..]);
        assert_eq!(r.unwrap(), vec![OwnedEvent::Binary(vec![5; 300])]);
        ws.release_event();
        assert!(ws.core.rx.is_none(), "cut at {cut}: gone once delivered");
        assert_eq!(ws.memory_held(), 0);
    }
    // A fragmented message, with a Ping between its fragments.
    let (r, _) = feed(&mut ws, &cframe(false, Opcode::Text, b"hel"));
    assert_eq!(r.unwrap(), vec![]);
    assert!(ws.core.rx.is_some());
    let (r, out) = feed(&mut ws, &cframe(true, Opcode::Ping, b"p"));
    assert_eq!(r.unwrap(), vec![OwnedEvent::Ping(b"p".to_vec())]);
    assert_eq!(frames_out(&out), [(Opcode::Pong, b"p".to_vec())]);
    ws.release_event();
    assert!(ws.core.rx.is_some(), "still fragmented");
    let (r, _) = feed(&mut ws, &cframe(true, Opcode::Continuation, b"lo"));
    assert_eq!(r.unwrap(), vec![OwnedEvent::Text("hello".into())]);
    ws.release_event();
    assert!(ws.core.rx.is_none());
    // A continuation with nothing to continue still fails, from the hot path's state too.
    let (r, _) = feed(&mut ws, &cframe(true, Opcode::Continuation, b"x"));
    assert_eq!(r, Err(ProtocolError::UnexpectedContinuation));
}

#[test]
fn the_hot_path_keeps_every_rule_of_the_general_one() {
    // Unmasked from a client (RFC 6455 §5.1), over the frame and message limits (§10.4):
    // the same errors whether the frame is whole in the read or not.
    let mut unmasked = Vec::new();
    encode_frame(&mut unmasked, true, Opcode::Text, None, b"hi");
    let big = cframe(true, Opcode::Binary, &[0; 100]);
    let cases: [(Config, &[u8], ProtocolError); 3] = [
        (Config::default(), &unmasked, ProtocolError::UnmaskedClientFrame),
        (Config::default().max_frame_size(99), &big, ProtocolError::FrameTooLarge),
        (
            Config::default().max_message_size(99),
            &big,
            ProtocolError::MessageTooLarge,
        ),
    ];
    for (config, bytes, err) in cases {
        let (r, _) = feed(&mut WebSocket::server(config), bytes);
        assert_eq!(r, Err(err), "whole");
        let mut ws = WebSocket::server(config);
        let (r, _) = feed(&mut ws, &bytes[..1]);
        assert_eq!(r, Ok(vec![]));
        let (r, _) = feed(&mut ws, &bytes[1..]);
        assert_eq!(r, Err(err), "cut");
    }
}

/// A server keeps one `Config` per loop and lends it to each connection's `WebSocketCore` per
/// call, tightening `max_message_size` under memory pressure: the limits that govern a call
/// are the ones passed to it (RFC 6455 §10.4), and the core carries none of its own.
#[test]
fn a_core_is_held_to_the_limits_passed_with_each_call() {
    let wide = Config::default();
    let tight = Config::default().max_message_size(4);
    let mut ws = WebSocketCore::server();
    let mut out = Vec::new();
    let mut first = cframe(true, Opcode::Text, b"hello");
    let r = ws
        .receive(&wide, &mut first, &mut out)
        .map(|r| r.event.map(|e| e.to_owned_event()));
    assert_eq!(r, Ok(Some(OwnedEvent::Text("hello".into()))));
    assert!(out.is_empty());
    // The same bytes under the tighter limits fail with 1009 (RFC 6455 §7.4.1).
    let mut second = cframe(true, Opcode::Text, b"hello");
    let r = ws.receive(&tight, &mut second, &mut out).map(|r| r.consumed);
    assert_eq!(r, Err(ProtocolError::MessageTooLarge));
    assert_eq!(ws.state(), State::Failed);
    assert_eq!(
        frames_out(&out),
        vec![(Opcode::Close, close_payload(1009, "message too large"))]
    );
}

// --- the one-pass reading of a whole small frame (issue 24) ---

/// Feeds `bytes` to a fresh server whole, and again cut at every position, and asserts both
/// give `expect` (events, or the error with its Close frame).
fn same_whole_and_cut(bytes: &[u8], expect: &Result<Vec<OwnedEvent>, ProtocolError>) {
    let mut ws = server();
    let (r, out) = feed(&mut ws, bytes);
    assert_eq!(&r, expect, "whole: {bytes:02x?}");
    if let Err(err) = expect {
        assert_eq!(
            frames_out(&out),
            [(Opcode::Close, close_payload(err.close_code().0, err.close_reason()))]
        );
        assert_eq!(ws.state(), State::Failed);
    }
    for cut in 1..bytes.len() {
        let mut ws = server();
        let (first, _) = feed(&mut ws, &bytes[..cut]);
        let (second, _) = match &first {
            Ok(_) => feed(&mut ws, &bytes[cut..]),
            Err(_) => (first.clone(), Vec::new()),
        };
        let events = match (first, second) {
            (Ok(mut a), Ok(b)) => {
                a.extend(b);
                Ok(a)
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        assert_eq!(&events, expect, "cut at {cut}: {bytes:02x?}");
    }
}

#[test]
fn small_text_with_non_ascii_at_every_position() {
    // A two-byte character (é) at every position of a 32-byte text, then a bad byte (0xFF,
    // never UTF-8) and a character cut at the end of the message: the first must arrive
    // intact, the others fail with 1007 (RFC 6455 §8.1), whole or cut anywhere.
    for at in 0..31 {
        let mut text = vec![b'a'; 32];
        text[at..at + 2].copy_from_slice("é".as_bytes());
        let text = String::from_utf8(text).unwrap();
        same_whole_and_cut(
            &cframe(true, Opcode::Text, text.as_bytes()),
            &Ok(vec![OwnedEvent::Text(text)]),
        );
    }
    for at in 0..32 {
        let mut bad = vec![b'a'; 32];
        bad[at] = 0xFF;
        same_whole_and_cut(&cframe(true, Opcode::Text, &bad), &Err(ProtocolError::InvalidUtf8));
        // The same bytes as Binary are fine: no UTF-8 rule.
        same_whole_and_cut(&cframe(true, Opcode::Binary, &bad), &Ok(vec![OwnedEvent::Binary(bad)]));
    }
    let mut cut_char = vec![b'a'; 30];
    cut_char.extend_from_slice(&"€".as_bytes()[..2]);
    same_whole_and_cut(&cframe(true, Opcode::Text, &cut_char), &Err(ProtocolError::InvalidUtf8));
}

#[test]
fn small_frames_of_every_length_and_form_unmask_right() {
    // 7-bit lengths 0..=125 and 16-bit ones just past them, several frames in one read, each
    // unmasked with its own key at its own offset (RFC 6455 §5.3).
    for len in (0..=130).chain([1000, 65535]) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let mut wire = cframe(true, Opcode::Binary, &payload);
        let binary_len = wire.len();
        wire.extend(cframe(true, Opcode::Text, text.as_bytes()));
        let mut input = wire.clone();
        let mut ws = server();
        let mut out = Vec::new();
        let r = ws.receive(&mut input, &mut out).unwrap();
        assert_eq!(r.event, Some(Event::Binary(&payload)), "len {len}");
        let used = r.consumed;
        assert_eq!(used, binary_len);
        let r = ws.receive(&mut input[used..], &mut out).unwrap();
        assert_eq!(r.event, Some(Event::Text(&text)), "len {len}");
        assert_eq!(used + r.consumed, wire.len());
        assert!(out.is_empty());
        if len > 130 {
            continue; // cut everywhere: quadratic
        }
        same_whole_and_cut(
            &wire,
            &Ok(vec![
                OwnedEvent::Binary(payload.clone()),
                OwnedEvent::Text(text.clone()),
            ]),
        );
    }
}

#[test]
fn small_frames_that_break_a_rule_still_fail_with_its_code() {
    let text = cframe(true, Opcode::Text, b"hi");
    // A 16-bit length that fits in 7 bits (RFC 6455 §5.2: minimal encoding).
    let mut non_minimal = vec![0x81, 0x80 | 126, 0, 2];
    non_minimal.extend_from_slice(&KEY);
    non_minimal.extend_from_slice(&text[6..]);
    same_whole_and_cut(&non_minimal, &Err(ProtocolError::NonMinimalLength));
    // RSV bits without an extension (§5.2), FIN clear then a new message (§5.4), unmasked
    // (§5.1).
    same_whole_and_cut(&raw_masked(0xC1, b"hi"), &Err(ProtocolError::Rsv1WithoutExtension));
    same_whole_and_cut(&raw_masked(0x91, b"hi"), &Err(ProtocolError::ReservedBitsSet(1)));
    let mut fragmented = cframe(false, Opcode::Text, b"a");
    fragmented.extend(cframe(true, Opcode::Text, b"b"));
    same_whole_and_cut(&fragmented, &Err(ProtocolError::ExpectedContinuation));
    let mut unmasked = Vec::new();
    encode_frame(&mut unmasked, true, Opcode::Binary, None, &[1; 200]);
    same_whole_and_cut(&unmasked, &Err(ProtocolError::UnmaskedClientFrame));
    // A frame of exactly the limit passes, one byte more fails at the header (§10.4), in
    // both length forms.
    for len in [100usize, 300] {
        let frame = cframe(true, Opcode::Binary, &vec![3; len]);
        for (config, expect) in [
            (
                Config::default().max_message_size(len),
                Ok(vec![OwnedEvent::Binary(vec![3; len])]),
            ),
            (
                Config::default().max_message_size(len - 1),
                Err(ProtocolError::MessageTooLarge),
            ),
            (
                Config::default().max_frame_size(len as u64 - 1),
                Err(ProtocolError::FrameTooLarge),
            ),
        ] {
            let (r, _) = feed(&mut WebSocket::server(config), &frame);
            assert_eq!(r, expect, "len {len} {config:?}");
        }
    }
    // A text frame after a failure is not read (the one-pass path checks the state too).
    let mut ws = server();
    let (r, _) = feed(&mut ws, &raw_masked(0x83, b"x"));
    assert_eq!(r, Err(ProtocolError::ReservedOpcode(3)));
    let (r, out) = feed(&mut ws, &text);
    assert_eq!((r, out), (Ok(vec![]), vec![]));
    // After we sent a Close, data is still read (RFC 6455 §7.1.2): the general path.
    let mut ws = server();
    ws.close(CloseCode::NORMAL, "", &mut Vec::new()).unwrap();
    let (r, _) = feed(&mut ws, &text);
    assert_eq!(r, Ok(vec![OwnedEvent::Text("hi".into())]));
}

#[test]
fn whole_control_frames_are_answered_without_receive_state() {
    // Ping, Pong and Close whole in one read: answered and handed out from the input, with
    // the same events and answers as when cut anywhere (RFC 6455 §5.5.1–§5.5.3).
    type Answer = Vec<(Opcode, Vec<u8>)>;
    let cases: [(Vec<u8>, OwnedEvent, Answer); 4] = [
        (
            cframe(true, Opcode::Ping, b"are you there"),
            OwnedEvent::Ping(b"are you there".to_vec()),
            vec![(Opcode::Pong, b"are you there".to_vec())],
        ),
        (
            cframe(true, Opcode::Pong, b"p"),
            OwnedEvent::Pong(b"p".to_vec()),
            vec![],
        ),
        (
            cframe(true, Opcode::Close, &close_payload(1000, "bye")),
            OwnedEvent::Close(Some((CloseCode(1000), "bye".into()))),
            vec![(Opcode::Close, 1000u16.to_be_bytes().to_vec())],
        ),
        (
            cframe(true, Opcode::Close, b""),
            OwnedEvent::Close(None),
            vec![(Opcode::Close, vec![])],
        ),
    ];
    for (wire, event, answer) in cases {
        let mut ws = server();
        let mut input = wire.clone();
        let mut out = Vec::new();
        let r = ws.receive(&mut input, &mut out).unwrap();
        assert_eq!(r.consumed, wire.len());
        assert_eq!(r.event.map(|e| e.to_owned_event()), Some(event.clone()));
        assert_eq!(frames_out(&out), answer);
        assert!(ws.core.rx.is_none(), "{event:?}: no receive state");
        assert_eq!(ws.memory_held(), 0);
        let closed = matches!(event, OwnedEvent::Close(_));
        assert_eq!(ws.state(), if closed { State::Closed } else { State::Open });
        for cut in 1..wire.len() {
            let mut ws = server();
            let (a, out_a) = feed(&mut ws, &wire[..cut]);
            let (b, out_b) = feed(&mut ws, &wire[cut..]);
            assert_eq!(a.unwrap(), vec![]);
            assert_eq!(b.unwrap(), vec![event.clone()], "cut at {cut}");
            assert_eq!(frames_out(&[out_a, out_b].concat()), answer);
        }
    }
    // A Ping between two text messages in one read, with no auto-Pong when it is off.
    let mut wire = cframe(true, Opcode::Text, b"a");
    wire.extend(cframe(true, Opcode::Ping, b"x"));
    wire.extend(cframe(true, Opcode::Text, b"b"));
    let mut ws = WebSocket::server(Config::default().auto_pong(false));
    let (r, out) = feed(&mut ws, &wire);
    let expect = [
        OwnedEvent::Text("a".into()),
        OwnedEvent::Ping(b"x".to_vec()),
        OwnedEvent::Text("b".into()),
    ];
    assert_eq!(r.unwrap(), expect);
    assert!(out.is_empty(), "auto_pong off: no Pong");
    // Broken Close payloads and a control frame over the frame limit fail with their codes,
    // whole or cut (RFC 6455 §5.5.1, §7.4, §8.1, §10.4).
    same_whole_and_cut(
        &cframe(true, Opcode::Close, &[0x03]),
        &Err(ProtocolError::CloseFrameTooShort),
    );
    same_whole_and_cut(
        &cframe(true, Opcode::Close, &close_payload(1005, "")),
        &Err(ProtocolError::InvalidCloseCode(1005)),
    );
    let mut bad_reason = close_payload(1000, "");
    bad_reason.extend_from_slice(&[0xce, 0xba, 0xe1, 0xbd]);
    same_whole_and_cut(
        &cframe(true, Opcode::Close, &bad_reason),
        &Err(ProtocolError::InvalidUtf8),
    );
    let (r, _) = feed(
        &mut WebSocket::server(Config::default().max_frame_size(4)),
        &cframe(true, Opcode::Ping, b"12345"),
    );
    assert_eq!(r, Err(ProtocolError::FrameTooLarge));
    // Fragmented control frames stay an error (RFC 6455 §5.5).
    same_whole_and_cut(&raw_masked(0x09, b"p"), &Err(ProtocolError::FragmentedControlFrame));
}
