//! Message contents that can be checked byte for byte.
//!
//! Every message embeds its sequence number, and the rest of it is filler
//! whose position in a fixed pseudo-random pattern also depends on that
//! number. A lost, duplicated, reordered or corrupted message therefore never
//! matches what the receiver expects next. All bytes are printable ASCII, so
//! the same payloads are valid text messages.

use crate::ws::Rng;

/// Filler offsets cycle modulo this prime, so consecutive messages differ.
const CYCLE: usize = 251;

/// Pattern for messages of one size.
pub struct Pattern {
    size: usize,
    /// Printable ASCII, `size + CYCLE` bytes long.
    fill: Vec<u8>,
}

impl Pattern {
    pub fn new(size: usize, seed: u64) -> Pattern {
        let mut rng = Rng::new(seed);
        let fill = (0..size + CYCLE).map(|_| b'!' + (rng.next_u64() % 94) as u8).collect();
        Pattern { size, fill }
    }

    fn filler(&self, key: u64, len: usize) -> &[u8] {
        let off = (key.wrapping_mul(37) % CYCLE as u64) as usize;
        &self.fill[off..off + len]
    }
}

/// Echo messages: `seq` as 16 hex digits, the connection index as 8, then
/// filler (truncated to the message size if it is smaller than 24 bytes).
pub struct EchoPayload(Pattern);

const ECHO_HEAD: usize = 24;

fn echo_head(conn: u32, seq: u64) -> [u8; ECHO_HEAD] {
    let mut h = [0u8; ECHO_HEAD];
    put_hex(&mut h[..16], seq);
    put_hex(&mut h[16..], u64::from(conn));
    h
}

impl EchoPayload {
    pub fn new(size: usize, seed: u64) -> EchoPayload {
        EchoPayload(Pattern::new(size, seed))
    }

    pub fn size(&self) -> usize {
        self.0.size
    }

    pub fn write(&self, out: &mut Vec<u8>, conn: u32, seq: u64) {
        let size = self.0.size;
        let head = echo_head(conn, seq);
        let h = size.min(ECHO_HEAD);
        out.extend_from_slice(&head[..h]);
        out.extend_from_slice(self.0.filler(seq ^ u64::from(conn), size - h));
    }

    /// Checks `got` against message `seq` of connection `conn`; on mismatch
    /// returns a description of the first difference.
    pub fn check(&self, got: &[u8], conn: u32, seq: u64) -> Result<(), String> {
        let size = self.0.size;
        if got.len() != size {
            return Err(format!(
                "expected message #{seq} of {size} bytes, got {} bytes",
                got.len()
            ));
        }
        let head = echo_head(conn, seq);
        let h = size.min(ECHO_HEAD);
        if got[..h] != head[..h] {
            return Err(format!(
                "expected message #{seq} (head {:?}), got head {:?} (reordered, lost or corrupted)",
                String::from_utf8_lossy(&head[..h]),
                String::from_utf8_lossy(&got[..h])
            ));
        }
        let want = self.0.filler(seq ^ u64::from(conn), size - h);
        if got[h..] != *want {
            let at = got[h..].iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!("message #{seq}: payload differs at byte {}", h + at));
        }
        Ok(())
    }
}

/// Broadcast messages: the marker, `seq` as 8 hex digits, the send time in
/// microseconds as 12, then filler. Receivers look for the marker anywhere in
/// a message, so a server that prefixes chat lines still works, and skip
/// messages without it (join/leave notices).
pub struct MarkedPayload(Pattern);

pub const MARKER: &[u8] = b"#WSLB";
pub const MARKED_HEAD: usize = 5 + 8 + 12;

impl MarkedPayload {
    pub fn new(size: usize, seed: u64) -> MarkedPayload {
        assert!(size >= MARKED_HEAD, "checked by the caller");
        MarkedPayload(Pattern::new(size, seed))
    }

    pub fn write(&self, out: &mut Vec<u8>, seq: u32, send_us: u64) {
        out.extend_from_slice(MARKER);
        let mut h = [0u8; 20];
        put_hex(&mut h[..8], u64::from(seq));
        put_hex(&mut h[8..], send_us);
        out.extend_from_slice(&h);
        out.extend_from_slice(self.0.filler(u64::from(seq), self.0.size - MARKED_HEAD));
    }

    /// `Ok(None)` for a message without the marker, `Ok(Some((seq,
    /// send_us)))` for a valid marked one, an error for a damaged one.
    pub fn parse(&self, msg: &[u8]) -> Result<Option<(u32, u64)>, String> {
        let pos = if msg.starts_with(MARKER) {
            0
        } else {
            match crate::ws::find(msg, MARKER) {
                Some(p) => p,
                None => return Ok(None),
            }
        };
        let body = &msg[pos + MARKER.len()..];
        let tail_len = self.0.size - MARKED_HEAD;
        if body.len() != 20 + tail_len {
            return Err(format!(
                "marked message has {} bytes after the marker, expected {}",
                body.len(),
                20 + tail_len
            ));
        }
        let (Some(seq), Some(us)) = (parse_hex(&body[..8]), parse_hex(&body[8..20])) else {
            return Err("marked message has a damaged header".into());
        };
        let seq = seq as u32;
        if body[20..] != *self.0.filler(u64::from(seq), tail_len) {
            return Err(format!("marked message #{seq}: filler corrupted"));
        }
        Ok(Some((seq, us)))
    }
}

fn put_hex(out: &mut [u8], mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 15) as usize];
        v >>= 4;
    }
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &c in s {
        let d = (c as char).to_digit(16)?;
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_roundtrip_and_detection() {
        for size in [1usize, 16, 24, 32, 65536] {
            let p = EchoPayload::new(size, 7);
            let mut m = Vec::new();
            p.write(&mut m, 3, 42);
            assert_eq!(m.len(), size);
            assert!(m.iter().all(|b| b.is_ascii_graphic()));
            p.check(&m, 3, 42).unwrap();
            if size >= 16 {
                assert!(p.check(&m, 3, 43).is_err());
            }
            if size >= 24 {
                assert!(p.check(&m, 4, 42).is_err());
            }
            let mut bad = m.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(p.check(&bad, 3, 42).is_err());
            assert!(p.check(&m[..size - 1], 3, 42).is_err());
        }
    }

    #[test]
    fn marked_roundtrip() {
        let p = MarkedPayload::new(32, 9);
        let mut m = Vec::new();
        p.write(&mut m, 5, 123_456);
        assert_eq!(m.len(), 32);
        assert_eq!(p.parse(&m).unwrap(), Some((5, 123_456)));
        // Prefixed by the server: still found.
        let mut pre = b"alice: ".to_vec();
        pre.extend_from_slice(&m);
        assert_eq!(p.parse(&pre).unwrap(), Some((5, 123_456)));
        assert_eq!(p.parse(b"{\"join\":\"bob\"}").unwrap(), None);
        let mut bad = m.clone();
        bad[31] ^= 1;
        assert!(p.parse(&bad).is_err());
        assert!(p.parse(&m[..31]).is_err());
    }
}
