use super::*;
use proptest::prelude::*;

const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

fn dir(no_context_takeover: bool, max_window_bits: u8) -> DirectionParams {
    DirectionParams {
        no_context_takeover,
        max_window_bits,
    }
}

fn inflate_whole(d: &mut MessageInflater, payload: &[u8]) -> Result<Vec<u8>, DeflateError> {
    let mut out = Vec::new();
    d.inflate(payload, &mut out, 1 << 20)?;
    d.finish_message(&mut out, 1 << 20)?;
    Ok(out)
}

// RFC 7692 §7.2.3.1: "Hello" in one fixed-Huffman block, flushed, the tail removed.
#[test]
fn rfc_7_2_3_1_hello_compresses_to_the_rfc_bytes() {
    for level in 1..=9 {
        let mut c = MessageCompressor::new(dir(true, 15), level);
        let mut out = Vec::new();
        c.compress(b"Hello", &mut out).unwrap();
        assert_eq!(out, HELLO, "level {level}");
    }
    let mut d = MessageInflater::new(dir(true, 15));
    assert_eq!(inflate_whole(&mut d, &HELLO).unwrap(), b"Hello");
}

// RFC 7692 §7.2.3.2: with context takeover the second "Hello" refers to the first.
#[test]
fn rfc_7_2_3_2_shared_window() {
    let mut c = MessageCompressor::new(dir(false, 15), 6);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    c.compress(b"Hello", &mut first).unwrap();
    c.compress(b"Hello", &mut second).unwrap();
    assert_eq!(first, HELLO);
    assert_eq!(second, [0xf2, 0x00, 0x11, 0x00, 0x00]);
    // Without takeover the second is the same bytes as the first.
    let mut c = MessageCompressor::new(dir(true, 15), 6);
    let mut again = Vec::new();
    c.compress(b"Hello", &mut Vec::new()).unwrap();
    c.compress(b"Hello", &mut again).unwrap();
    assert_eq!(again, HELLO);

    let mut d = MessageInflater::new(dir(false, 15));
    assert_eq!(inflate_whole(&mut d, &HELLO).unwrap(), b"Hello");
    assert_eq!(
        inflate_whole(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
        b"Hello"
    );
    // An inflater that forgot the window cannot read the second message.
    let mut fresh = MessageInflater::new(dir(true, 15));
    assert_eq!(
        inflate_whole(&mut fresh, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
        Err(DeflateError::Corrupt)
    );
}

// RFC 7692 §7.2.3.3: a DEFLATE block with no compression.
#[test]
fn rfc_7_2_3_3_stored_block() {
    let mut d = MessageInflater::new(dir(true, 15));
    let payload = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
    assert_eq!(inflate_whole(&mut d, &payload).unwrap(), b"Hello");
    let mut c = MessageCompressor::new(dir(true, 15), 0);
    let mut out = Vec::new();
    c.compress(b"Hello", &mut out).unwrap();
    assert_eq!(out, payload, "level 0 writes the RFC's stored block exactly");
}

// RFC 7692 §7.2.3.4: a block with BFINAL set, then the header bits of an empty stored block.
#[test]
fn rfc_7_2_3_4_bfinal_block() {
    let payload = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    for takeover in [false, true] {
        let mut d = MessageInflater::new(dir(!takeover, 15));
        assert_eq!(inflate_whole(&mut d, &payload).unwrap(), b"Hello");
        // The connection goes on: the next message inflates too, referring back with takeover.
        let next: &[u8] = if takeover {
            &[0xf2, 0x00, 0x11, 0x00, 0x00]
        } else {
            &HELLO
        };
        assert_eq!(inflate_whole(&mut d, next).unwrap(), b"Hello");
    }
}

// RFC 7692 §7.2.3.5: two DEFLATE blocks in one message.
#[test]
fn rfc_7_2_3_5_two_blocks() {
    let payload = [
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    let mut d = MessageInflater::new(dir(true, 15));
    assert_eq!(inflate_whole(&mut d, &payload).unwrap(), b"Hello");
}

// RFC 7692 §7.2.3.6: the single octet 0x00 is an empty message (or fragment).
#[test]
fn rfc_7_2_3_6_empty_fragment() {
    let mut d = MessageInflater::new(dir(true, 15));
    assert_eq!(inflate_whole(&mut d, &[0x00]).unwrap(), b"");
    let mut out = Vec::new();
    d.inflate(&HELLO, &mut out, 100).unwrap();
    d.inflate(&[], &mut out, 100).unwrap();
}

#[test]
fn an_empty_message_compresses_to_one_byte() {
    let mut c = MessageCompressor::new(dir(true, 15), 6);
    let mut out = Vec::new();
    c.compress(b"", &mut out).unwrap();
    assert_eq!(out, [0x00]);
}

// Found by `round_trip_at_any_split` (bits 9, takeover, level 0, two empty messages): with
// context takeover, a sync flush right after another one has nothing to emit, and the second
// empty message failed with `Compress`. Every empty message must still be the one octet 0x00
// (RFC 7692 §7.2.3.6), whatever came before it, at every level.
#[test]
fn an_empty_message_after_any_other_still_compresses_to_one_byte() {
    for level in 0..=9 {
        for takeover in [true, false] {
            let d = dir(!takeover, 9);
            let mut c = MessageCompressor::new(d, level);
            let mut i = MessageInflater::new(d);
            for msg in [&b""[..], b"", b"hello", b"", b"hello hello hello", b"", b""] {
                let mut payload = Vec::new();
                c.compress(msg, &mut payload)
                    .unwrap_or_else(|e| panic!("level {level}, takeover {takeover}, {msg:?}: {e:?}"));
                if msg.is_empty() {
                    assert_eq!(payload, [0x00], "level {level}, takeover {takeover}");
                }
                assert_eq!(
                    inflate_whole(&mut i, &payload).unwrap(),
                    msg,
                    "level {level}, takeover {takeover}"
                );
            }
        }
    }
}

#[test]
fn a_zip_bomb_stops_at_the_limit_without_allocating_past_it() {
    let zeros = vec![0u8; 10_000_000];
    let mut c = MessageCompressor::new(dir(true, 15), 9);
    let mut bomb = Vec::new();
    c.compress(&zeros, &mut bomb).unwrap();
    assert!(bomb.len() < 11_000, "10 MB of zeros compress to {} bytes", bomb.len());
    let limit = 1 << 20;
    let mut d = MessageInflater::new(dir(true, 15));
    let mut out = Vec::new();
    assert_eq!(d.inflate(&bomb, &mut out, limit), Err(DeflateError::TooLarge));
    assert!(out.capacity() <= limit + 1, "capacity {}", out.capacity());
    // Fed a byte at a time, the same.
    let mut d = MessageInflater::new(dir(true, 15));
    let mut out = Vec::new();
    let r = bomb
        .iter()
        .try_for_each(|b| d.inflate(std::slice::from_ref(b), &mut out, limit));
    assert_eq!(r, Err(DeflateError::TooLarge));
    assert!(out.capacity() <= limit + 1);
    // Exactly at the limit is fine.
    let mut d = MessageInflater::new(dir(true, 15));
    let mut out = Vec::new();
    let mut exact = Vec::new();
    MessageCompressor::new(dir(true, 15), 1)
        .compress(&zeros[..limit], &mut exact)
        .unwrap();
    d.inflate(&exact, &mut out, limit).unwrap();
    d.finish_message(&mut out, limit).unwrap();
    assert_eq!(out.len(), limit);
}

#[test]
fn garbage_is_corrupt_not_a_panic() {
    let mut d = MessageInflater::new(dir(false, 15));
    assert_eq!(inflate_whole(&mut d, &[0xff, 0xff, 0xff]), Err(DeflateError::Corrupt));
    assert!(!d.is_allocated(), "a state that saw bad data is dropped");
}

#[test]
fn states_are_lazy_and_released_without_takeover() {
    clear_pool();
    let mut c = MessageCompressor::new(dir(true, 15), 1);
    let mut d = MessageInflater::new(dir(true, 15));
    assert!(!c.is_allocated() && !d.is_allocated());
    assert_eq!(c.held_bytes() + d.held_bytes(), 0);
    let mut out = Vec::new();
    c.compress(b"Hello, Hello", &mut out).unwrap();
    assert!(!c.is_allocated());
    assert_eq!(pooled_bytes(), compressor_bytes(15));
    let mut text = Vec::new();
    d.inflate(&out, &mut text, 100).unwrap();
    assert!(d.is_allocated(), "held while the message is in flight");
    d.finish_message(&mut text, 100).unwrap();
    assert!(!d.is_allocated());
    assert_eq!(text, b"Hello, Hello");
    // With takeover both are kept.
    let mut c = MessageCompressor::new(dir(false, 12), 1);
    c.compress(b"x", &mut Vec::new()).unwrap();
    assert!(c.is_allocated());
    assert_eq!(c.held_bytes(), compressor_bytes(12));
    clear_pool();
}

#[test]
fn window_bits_8_never_compresses_and_inflates_with_9() {
    let mut c = MessageCompressor::new(dir(false, 8), 6);
    assert!(!c.can_compress());
    assert_eq!(c.compress(b"Hello", &mut Vec::new()), Err(DeflateError::WindowTooSmall));
    let mut d = MessageInflater::new(dir(false, 8));
    assert_eq!(inflate_whole(&mut d, &HELLO).unwrap(), b"Hello");
}

#[test]
fn compressed_frames_carry_rsv1_and_mask() {
    let mut c = MessageCompressor::new(dir(true, 15), 6);
    let mut out = vec![0xAA];
    encode_compressed_frame(&mut c, crate::frame::Opcode::Text, b"Hello", None, &mut out).unwrap();
    // RFC 7692 §7.2.3.1's frame, after the byte that was already there.
    assert_eq!(out, [0xAA, 0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    let mut masked = Vec::new();
    encode_compressed_frame(
        &mut c,
        crate::frame::Opcode::Text,
        b"Hello",
        Some([1, 2, 3, 4]),
        &mut masked,
    )
    .unwrap();
    assert_eq!(&masked[..6], [0xc1, 0x87, 1, 2, 3, 4]);
    let mut p = masked[6..].to_vec();
    crate::frame::apply_mask(&mut p, [1, 2, 3, 4], 0);
    assert_eq!(p, HELLO);
    // A long message takes the 16-bit length form; the payload is moved up to meet it.
    let long: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
    let mut f = Vec::new();
    encode_compressed_frame(&mut c, crate::frame::Opcode::Binary, &long, None, &mut f).unwrap();
    let n = usize::from(u16::from_be_bytes([f[2], f[3]]));
    assert_eq!((f[0], f[1], f.len()), (0xc2, 126, 4 + n));
    let mut d = MessageInflater::new(dir(true, 15));
    assert_eq!(inflate_whole(&mut d, &f[4..]).unwrap(), long);
}

#[test]
fn broadcast_suits_only_matching_subscribers() {
    let b = BroadcastCompressor::new(12);
    let mut p = DeflateParams::no_context_takeover();
    assert!(b.suits(Some(&p)));
    p.server_max_window_bits = 11;
    assert!(!b.suits(Some(&p)));
    assert!(!b.suits(Some(&DeflateParams::default())));
    assert!(!b.suits(None));
    let mut b = BroadcastCompressor::new(15);
    let mut out = Vec::new();
    assert_eq!(b.encode(crate::frame::Opcode::Text, b"hi", &mut out), Encoded::Plain);
    assert_eq!(out, [0x81, 0x02, b'h', b'i']);
}

fn text_like(seed: u64, len: usize) -> Vec<u8> {
    let words = [
        &b"{\"id\":"[..],
        b"\"name\":",
        b"\"hello\"",
        b", ",
        b"}",
        b"42",
        b"\"world\"",
        b"[1,2,3]",
    ];
    let mut s = seed;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        v.extend_from_slice(words[(s >> 60) as usize % words.len()]);
    }
    v.truncate(len);
    v
}

proptest! {
    // Compress then inflate gives the messages back, at any window size, with and without
    // takeover, with the compressed payload cut at any points.
    #[test]
    fn round_trip_at_any_split(
        bits in 9u8..=15,
        takeover in any::<bool>(),
        level in 0u8..=9,
        messages in proptest::collection::vec((any::<u64>(), 0usize..3000, any::<bool>()), 1..5),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let d = dir(!takeover, bits);
        let mut c = MessageCompressor::new(d, level);
        let mut i = MessageInflater::new(d);
        for (seed, len, random) in messages {
            let msg: Vec<u8> = if random {
                let mut s = seed;
                (0..len).map(|_| { s = s.wrapping_mul(6364136223846793005).wrapping_add(1); (s >> 56) as u8 }).collect()
            } else {
                text_like(seed, len)
            };
            let mut payload = Vec::new();
            c.compress(&msg, &mut payload).unwrap();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(payload.len() + 1)).collect();
            points.push(0);
            points.push(payload.len());
            points.sort_unstable();
            let mut out = Vec::new();
            for w in points.windows(2) {
                i.inflate(&payload[w[0]..w[1]], &mut out, msg.len()).unwrap();
            }
            i.finish_message(&mut out, msg.len()).unwrap();
            prop_assert_eq!(out, msg);
        }
    }

    // Arbitrary bytes never panic and never grow the output past the limit.
    #[test]
    fn arbitrary_input_is_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..400), limit in 0usize..5000) {
        let mut i = MessageInflater::new(dir(false, 15));
        let mut out = Vec::new();
        let _ = i.inflate(&bytes, &mut out, limit).and_then(|()| i.finish_message(&mut out, limit));
        prop_assert!(out.capacity() <= limit + 1);
    }
}
