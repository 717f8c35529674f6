//! Client-to-server masking (RFC 6455 §5.3): `transformed[i] = original[i] ^ key[i % 4]`.
//!
//! The same operation masks and unmasks. [`apply_mask`] is the fast path, 32 bytes per step on
//! plain integers that the compiler turns into vector XORs; [`apply_mask_bytewise`] is the RFC's
//! formula read literally, kept as the oracle the fast path is tested against.

/// XORs `buf` in place with the masking key, where `buf` starts `offset` bytes into the payload
/// (so a payload that arrives in pieces can be unmasked piece by piece) (RFC 6455 §5.3).
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that index 0 of `buf` lines up with key[offset % 4].
    let o = offset % 4;
    let key32 = [key[o], key[(o + 1) % 4], key[(o + 2) % 4], key[(o + 3) % 4]];
    let key64 = u64::from_ne_bytes([
        key32[0], key32[1], key32[2], key32[3], key32[0], key32[1], key32[2], key32[3],
    ]);
    let key128 = (u128::from(key64) << 64) | u128::from(key64);

    let mut chunks = buf.chunks_exact_mut(32);
    for chunk in &mut chunks {
        let (a, b) = chunk.split_at_mut(16);
        xor16(a, key128);
        xor16(b, key128);
    }
    let rest = chunks.into_remainder();
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(w) ^ key64).to_ne_bytes());
    }
    for (byte, k) in words.into_remainder().iter_mut().zip(key32.iter().cycle()) {
        *byte ^= k;
    }
}

#[inline(always)]
fn xor16(chunk: &mut [u8], key: u128) {
    let mut w = [0u8; 16];
    w.copy_from_slice(chunk);
    chunk.copy_from_slice(&(u128::from_ne_bytes(w) ^ key).to_ne_bytes());
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
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..16 {
            for len in 0..(data.len() - start).min(140) {
                for offset in 0..4 {
                    let mut fast = data[start..start + len].to_vec();
                    let mut slow = fast.clone();
                    apply_mask(&mut fast, key, offset);
                    apply_mask_bytewise(&mut slow, key, offset);
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
