//! Helpers shared by the fuzz targets: how an input chooses the points where it is cut into
//! reads, and the flags that pick a target's configuration.
//!
//! Every target that compares a split run with a whole run reads its input as
//!
//! ```text
//! [control byte] [k chunk-length bytes] [payload ...]
//! ```
//!
//! where `k = control & 0x07`. The payload is cut into reads whose lengths cycle through the
//! chunk-length bytes (a 0 counts as 1); with `k == 0` every read is one byte, the most
//! adversarial split. The remaining control bits (`control >> 3`) are flags for the target.
//! This is the uWebSockets fuzzers' idea — a leading byte picks the chunk lengths — with enough
//! bytes that the fuzzer can steer each cut.

/// An input decoded into flags, read lengths and payload.
#[derive(Debug, Clone)]
pub struct Split<'a> {
    /// The control byte's top five bits, for the target to interpret.
    pub flags: u8,
    /// The lengths of successive reads, cycled; never empty, every entry ≥ 1.
    pub lengths: Vec<usize>,
    /// The bytes that are fed to the code under test.
    pub payload: &'a [u8],
}

impl<'a> Split<'a> {
    /// Decodes an input; `None` when it is empty.
    pub fn new(data: &'a [u8]) -> Option<Split<'a>> {
        let (&control, rest) = data.split_first()?;
        let k = usize::from(control & 0x07).min(rest.len());
        let (lens, payload) = rest.split_at(k);
        let mut lengths: Vec<usize> = lens.iter().map(|&l| usize::from(l).max(1)).collect();
        if lengths.is_empty() {
            lengths.push(1);
        }
        Some(Split {
            flags: control >> 3,
            lengths,
            payload,
        })
    }

    /// The payload as consecutive reads, in order, covering all of it.
    pub fn reads(&self) -> Vec<&'a [u8]> {
        let mut reads = Vec::new();
        let mut rest = self.payload;
        for &len in self.lengths.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (read, tail) = rest.split_at(len.min(rest.len()));
            reads.push(read);
            rest = tail;
        }
        reads
    }

    /// Whether flag bit `bit` (0–4) is set.
    pub fn flag(&self, bit: u8) -> bool {
        self.flags & (1 << bit) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cover_the_payload_in_order() {
        let data = [0b0000_1010u8, 3, 0, b'a', b'b', b'c', b'd', b'e', b'f'];
        let s = Split::new(&data).unwrap();
        assert_eq!(s.flags, 1);
        assert_eq!(s.lengths, vec![3, 1]);
        assert_eq!(s.reads(), vec![&b"abc"[..], b"d", b"ef"]);
        let s = Split::new(&[0, b'x', b'y']).unwrap();
        assert_eq!(s.reads(), vec![&b"x"[..], b"y"]);
        assert!(Split::new(&[]).is_none());
        assert!(Split::new(&[7]).unwrap().reads().is_empty());
    }
}
