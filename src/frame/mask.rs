//! Client-to-server masking (RFC 6455 §5.3): `transformed[i] = original[i] ^ key[i % 4]`.
//!
//! The same operation masks and unmasks. [`apply_mask`] is the fast path: 64-byte blocks of
//! eight `u64` words XORed with the key repeated, a loop of known length that the compiler turns
//! into vector XORs (safe Rust, no intrinsics), then single words, then single bytes;
//! [`apply_mask_bytewise`] is the RFC's formula read literally, kept as the oracle the fast path
//! is tested against.
//!
//! An earlier version XORed two `u128` lanes per 32-byte step; it measured about 75% of a
//! `memcpy` of the same size on 64 KiB, where this form measures at or above it (see
//! `benches/core.rs`, group `unmask`).

/// XORs `buf` in place with the masking key, where `buf` starts `offset` bytes into the payload
/// (so a payload that arrives in pieces can be unmasked piece by piece) (RFC 6455 §5.3).
// Inlined: the receive path calls it once per frame, mostly on short payloads, where a call
// and the setup of a general loop cost as much as the XORs (measured: 59 instructions for
// 32 bytes out of line).
#[inline(always)]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // A payload usually sits at an odd place in a read buffer (after a 6-, 8- or 14-byte
    // header), and vector loads and stores that straddle cache lines cost about a quarter of
    // the throughput. So a longer buffer is split at its first 32-byte boundary: the few bytes
    // before it go through the word and byte steps, the rest starts its blocks aligned.
    // (Reading a pointer's address is safe; `align_offset` may in principle answer
    // `usize::MAX`, which `min` turns into "no split", still correct.)
    if buf.len() >= 128 {
        let head = buf.as_ptr().align_offset(32).min(buf.len());
        let (head, body) = buf.split_at_mut(head);
        mask_from(head, key, offset);
        mask_from(body, key, offset + head.len());
    } else {
        mask_from(buf, key, offset);
    }
}

/// [`apply_mask`] without the alignment step.
fn mask_from(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that index 0 of `buf` lines up with key[offset % 4], and repeat it to
    // fill a word: as integer operations (a rotation by whole bytes, in the direction that
    // moves byte `o` of the key to the lowest address), not byte by byte.
    let shift = 8 * (offset % 4) as u32;
    let k = u32::from_ne_bytes(key);
    let k = if cfg!(target_endian = "little") {
        k.rotate_right(shift)
    } else {
        k.rotate_left(shift)
    };
    // Both halves equal: the same in either byte order.
    let key64 = u64::from(k) | (u64::from(k) << 32);
    let key8 = key64.to_ne_bytes();

    // 64-byte blocks of eight words: the inner loop has a fixed trip count, so the compiler
    // unrolls it into vector loads, XORs with the broadcast key, and stores. (Building a
    // 64-byte key array instead was slower on small buffers: the byte stores that fill it stall
    // the vector loads that read it back.)
    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        for word in block.chunks_exact_mut(8) {
            xor_word(word, key64);
        }
    }
    // Blocks and words are multiples of 4 bytes long, so the key's phase never changes.
    let mut words = blocks.into_remainder().chunks_exact_mut(8);
    for word in &mut words {
        xor_word(word, key64);
    }
    // At most 7 bytes are left, and `key8` covers 8.
    for (byte, k) in words.into_remainder().iter_mut().zip(key8.iter()) {
        *byte ^= k;
    }
}

/// XORs an 8-byte slice with the key repeated twice.
#[inline(always)]
fn xor_word(word: &mut [u8], key64: u64) {
    let mut w = [0u8; 8];
    w.copy_from_slice(word);
    word.copy_from_slice(&(u64::from_ne_bytes(w) ^ key64).to_ne_bytes());
}

/// The RFC 6455 §5.3 formula, one byte at a time: the reference implementation for tests.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_equals_bytewise_at_every_alignment_length_and_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        // Sub-slices of one buffer, so that `start` moves the slice across every position
        // relative to a 32-byte boundary (the alignment split), and lengths up to four 64-byte
        // blocks plus words plus a tail, at every key phase.
        for start in 0..40 {
            for len in 0..(data.len() - start).min(300) {
                for offset in 0..4 {
                    let mut fast = data.clone();
                    let mut slow = data.clone();
                    apply_mask(&mut fast[start..start + len], key, offset);
                    apply_mask_bytewise(&mut slow[start..start + len], key, offset);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..=255).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data.clone();
        let (a, rest) = pieces.split_at_mut(37);
        let (b, c) = rest.split_at_mut(101);
        apply_mask(a, key, 0);
        apply_mask(b, key, 37);
        apply_mask(c, key, 138);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn rfc_5_7_masked_hello() {
        let mut p = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut p, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&p, b"Hello");
    }
}
