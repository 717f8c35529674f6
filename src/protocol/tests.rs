use super::*;
use crate::frame::encode_frame;
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
    assert!(ws.message.capacity() <= KEEP_BUFFER_CAPACITY);
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
    assert_eq!(ws.message.capacity(), 0);
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
        let limit = 512;
        let mut ws = WebSocket::server(Config::default().max_message_size(limit).max_frame_size(limit as u64));
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
        }
    }
}
