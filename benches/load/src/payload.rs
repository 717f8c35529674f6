//! Message contents that can be checked byte for byte.
//!
//! Every message embeds its sequence number, and the rest of it is filler
//! whose position in a fixed pseudo-random pattern also depends on that
//! number. A lost, duplicated, reordered or corrupted message therefore never
//! matches what the receiver expects next. All bytes are printable ASCII, so
//! the same payloads are valid text messages.
//!
//! The filler is either random printable bytes (what compresses worst) or,
//! with `--json`, JSON-like chat text: objects with the same keys and words
//! from a small vocabulary, the kind of message permessage-deflate is for.

use crate::ws::Rng;

/// Filler offsets cycle modulo this prime, so consecutive messages differ.
const CYCLE: usize = 251;

/// Pattern for messages of one size.
pub struct Pattern {
    size: usize,
    /// Printable ASCII, `size + CYCLE` bytes long.
    fill: Vec<u8>,
}

/// Words of the JSON-like filler's texts.
const WORDS: [&str; 32] = [
    "hello", "world", "the", "weather", "is", "nice", "today", "see", "you", "at", "lunch", "meeting", "room", "moved",
    "to", "three", "o'clock", "thanks", "for", "the", "update", "deploy", "done", "tests", "green", "coffee", "anyone",
    "review", "please", "merged", "ship", "it",
];

impl Pattern {
    /// Random printable ASCII; with `json`, JSON-like chat messages.
    pub fn new(size: usize, seed: u64, json: bool) -> Pattern {
        let mut rng = Rng::new(seed);
        if json {
            return Pattern {
                size,
                fill: json_like(size + CYCLE, &mut rng),
            };
        }
        let fill = (0..size + CYCLE).map(|_| b'!' + (rng.next_u64() % 94) as u8).collect();
        Pattern { size, fill }
    }

    fn filler(&self, key: u64, len: usize) -> &[u8] {
        let off = (key.wrapping_mul(37) % CYCLE as u64) as usize;
        &self.fill[off..off + len]
    }
}

/// Exactly `len` bytes of chat messages as a JSON array's items:
/// `{"type":"message","room":"lobby","id":"1.3.42","from":"user-7","text":"...","ts":...},`.
fn json_like(len: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 256);
    let mut i = 0u64;
    while out.len() < len {
        let words = 4 + rng.next_u64() % 9;
        let text: Vec<&str> = (0..words)
            .map(|_| WORDS[(rng.next_u64() % WORDS.len() as u64) as usize])
            .collect();
        let item = format!(
            "{{\"type\":\"message\",\"room\":\"lobby\",\"id\":\"1.{}.{i}\",\"from\":\"user-{}\",\"text\":\"{}\",\"ts\":{}}},",
            i % 7,
            rng.next_u64() % 50,
            text.join(" "),
            1_700_000_000_000 + i * 37
        );
        out.extend_from_slice(item.as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
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
    pub fn new(size: usize, seed: u64, json: bool) -> EchoPayload {
        EchoPayload(Pattern::new(size, seed, json))
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
    pub fn new(size: usize, seed: u64, json: bool) -> MarkedPayload {
        assert!(size >= MARKED_HEAD, "checked by the caller");
        MarkedPayload(Pattern::new(size, seed, json))
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
        for (size, json) in [1usize, 16, 24, 32, 1024, 65536]
            .into_iter()
            .flat_map(|s| [(s, false), (s, true)])
        {
            let p = EchoPayload::new(size, 7, json);
            let mut m = Vec::new();
            p.write(&mut m, 3, 42);
            assert_eq!(m.len(), size);
            assert!(m.iter().all(|b| b.is_ascii_graphic() || *b == b' '));
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
    fn json_filler_is_json_like_and_compressible() {
        let p = EchoPayload::new(1024, 7, true);
        let mut m = Vec::new();
        p.write(&mut m, 3, 42);
        assert_eq!(m.len(), 1024);
        assert!(
            m.iter().all(|b| b.is_ascii_graphic() || *b == b' '),
            "{}",
            String::from_utf8_lossy(&m)
        );
        let text = String::from_utf8(m.clone()).unwrap();
        assert!(text.contains("\"type\":\"message\",\"room\":\"lobby\""), "{text}");
        // Each message compressed on its own (no context takeover) shrinks well; random filler
        // does not.
        let ratio = |m: &[u8]| {
            let mut c = flate2::Compress::new(flate2::Compression::new(1), false);
            let mut out = Vec::with_capacity(2 * m.len());
            c.compress_vec(m, &mut out, flate2::FlushCompress::Sync).unwrap();
            out.len() as f64 / m.len() as f64
        };
        assert!(ratio(&m) < 0.5, "{}", ratio(&m));
        let mut r = Vec::new();
        EchoPayload::new(1024, 7, false).write(&mut r, 3, 42);
        assert!(ratio(&r) > 0.7, "{}", ratio(&r));
        let mp = MarkedPayload::new(1024, 9, true);
        let mut m = Vec::new();
        mp.write(&mut m, 5, 123);
        assert_eq!(mp.parse(&m).unwrap(), Some((5, 123)));
    }

    #[test]
    fn marked_roundtrip() {
        let p = MarkedPayload::new(32, 9, false);
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
