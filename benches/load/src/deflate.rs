//! The client side of permessage-deflate (RFC 7692), just what a load
//! generator needs: the offer, a strict check of the server's answer, and
//! compressing and inflating whole messages with flate2.
//!
//! Like `ws.rs`, written here rather than taken from the wsloop crate, so the
//! load generator does not share the server's negotiation or framing bugs.
//!
//! What this client does with the agreement:
//! - It compresses every data message it sends (as browsers do), at level 1,
//!   each on its own: a sender may always leave out context takeover (the
//!   receiver's window just holds more than it needs, RFC 7692 §7.2.1). So
//!   one compressor, shared by every connection of the run, is enough.
//! - It inflates what the server sends. With `server_no_context_takeover` a
//!   message stands alone and one shared inflater serves every connection;
//!   without it, each connection keeps its own inflater (and window) for its
//!   life, as RFC 7692 §7.2.2 requires.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::bail;
use crate::error::{Error, Result};

/// What the client offers: what Chrome and Firefox offer.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The tail a sync flush ends with, cut by the sender, appended by the
/// receiver (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compression level of what the client sends.
const LEVEL: u32 = 1;

/// The parameters the server answered (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// The server's window (what it may refer back to): 8..=15.
    pub server_max_window_bits: u8,
    /// Our window limit: 8..=15 (8: we send uncompressed, zlib cannot do 8).
    pub client_max_window_bits: u8,
}

fn window_bits(param: &str, v: Option<&str>) -> Result<u8> {
    match v.map(|v| v.trim_matches('"')) {
        Some(v) if v.len() <= 2 && !v.starts_with('0') => match v.parse::<u8>() {
            Ok(b @ 8..=15) => Ok(b),
            _ => bail!("{param}={v} is not a window size 8..15"),
        },
        Some(v) => bail!("{param}={v} is not a window size 8..15"),
        None => bail!("{param} needs a value in a response (RFC 7692 §7.1.2)"),
    }
}

/// Checks the server's `Sec-WebSocket-Extensions` against [`OFFER`]: one
/// permessage-deflate element, known parameters only, each at most once,
/// valid values (RFC 7692 §7: otherwise the client must fail the
/// connection).
pub fn parse_answer(value: &str) -> Result<Agreed> {
    let elements: Vec<&str> = value.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    let [element] = elements.as_slice() else {
        bail!(
            "server answered {} extensions ({value:?}); we offered one",
            elements.len()
        );
    };
    let mut parts = element.split(';').map(str::trim);
    let name = parts.next().unwrap_or_default();
    if name != "permessage-deflate" {
        bail!("server enabled extension {name:?}, which we did not offer");
    }
    let mut agreed = Agreed {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let mut seen = Vec::new();
    for p in parts {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (p, None),
        };
        if seen.contains(&k) {
            bail!("parameter {k} appears twice in {value:?}");
        }
        seen.push(k);
        match k {
            "server_no_context_takeover" | "client_no_context_takeover" if v.is_some() => {
                bail!("{k} takes no value (got {p:?})")
            }
            "server_no_context_takeover" => agreed.server_no_context_takeover = true,
            "client_no_context_takeover" => agreed.client_no_context_takeover = true,
            "server_max_window_bits" => agreed.server_max_window_bits = window_bits(k, v)?,
            "client_max_window_bits" => agreed.client_max_window_bits = window_bits(k, v)?,
            _ => bail!("unknown permessage-deflate parameter {k:?} in {value:?}"),
        }
    }
    Ok(agreed)
}

/// The codecs shared by every connection of this (single-threaded) run: one
/// compressor per window size asked for, one inflater for messages that
/// stand alone.
struct Shared {
    compressors: Vec<(u8, Compress)>,
    inflater: Option<Decompress>,
}

thread_local! {
    static SHARED: RefCell<Shared> = const {
        RefCell::new(Shared { compressors: Vec::new(), inflater: None })
    };
}

/// Runs `step` until it has taken all of `input` and left room in `out`
/// (zlib's sign that a flush is complete), growing `out` as needed.
fn drain(
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
    mut step: impl FnMut(&[u8], &mut Vec<u8>) -> Result<(usize, Status)>,
) -> Result<()> {
    let mut taken = 0;
    loop {
        if out.capacity() - out.len() < 256 {
            out.reserve((out.len() / 2).max(4096));
        }
        let (n, status) = step(&input[taken..], out)?;
        taken += n;
        if out.len() > limit {
            bail!("message larger than {limit} bytes");
        }
        let room_left = out.len() < out.capacity();
        if (taken == input.len() && room_left) || status == Status::StreamEnd {
            return Ok(());
        }
        if n == 0 && room_left {
            bail!("DEFLATE stream makes no progress");
        }
    }
}

/// One connection's permessage-deflate state.
pub struct DeflateConn {
    pub agreed: Agreed,
    /// The connection's own inflater, when the server keeps context.
    inflater: Option<Decompress>,
    /// The inflater was released ([`DeflateConn::release`]).
    released: bool,
    /// Messages compressed and inflated (for the report).
    pub compressed_out: u64,
    pub compressed_in: u64,
}

impl DeflateConn {
    pub fn new(agreed: Agreed) -> DeflateConn {
        DeflateConn {
            agreed,
            inflater: None,
            released: false,
            compressed_out: 0,
            compressed_in: 0,
        }
    }

    /// Whether messages we send get compressed: not with an 8-bit window,
    /// which zlib cannot compress with (RFC 7692 §6 lets us send them plain).
    pub fn compresses(&self) -> bool {
        self.agreed.client_max_window_bits > 8
    }

    /// Appends `message` compressed, without the tail (RFC 7692 §7.2.1).
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let bits = self.agreed.client_max_window_bits;
        let start = out.len();
        SHARED.with_borrow_mut(|s| {
            let i = match s.compressors.iter().position(|(b, _)| *b == bits) {
                Some(i) => i,
                None => {
                    s.compressors.push((
                        bits,
                        Compress::new_with_window_bits(Compression::new(LEVEL), false, bits),
                    ));
                    s.compressors.len() - 1
                }
            };
            let c = &mut s.compressors[i].1;
            c.reset();
            drain(message, out, usize::MAX, |input, out| {
                let before = c.total_in();
                let status = c
                    .compress_vec(input, out, FlushCompress::Sync)
                    .map_err(|e| Error(format!("deflate: {e}")))?;
                Ok(((c.total_in() - before) as usize, status))
            })
        })?;
        if !out.ends_with(&TAIL) || out.len() - start < TAIL.len() {
            bail!("internal: a sync flush did not end with 00 00 ff ff");
        }
        out.truncate(out.len() - TAIL.len());
        self.compressed_out += 1;
        Ok(())
    }

    /// Inflates one whole compressed message (the tail is appended here)
    /// into `out`, at most `limit` bytes.
    pub fn inflate(&mut self, payload: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<()> {
        let mut run = |d: &mut Decompress| -> Result<()> {
            for part in [payload, &TAIL[..]] {
                drain(part, out, limit, |input, out| {
                    let before = d.total_in();
                    let status = d
                        .decompress_vec(input, out, FlushDecompress::Sync)
                        .map_err(|e| Error(format!("server sent invalid DEFLATE data: {e}")))?;
                    Ok(((d.total_in() - before) as usize, status))
                })?;
            }
            Ok(())
        };
        if self.agreed.server_no_context_takeover {
            SHARED.with_borrow_mut(|s| {
                let d = s.inflater.get_or_insert_with(|| Decompress::new(false));
                d.reset(false);
                run(d)
            })?;
        } else {
            if self.released {
                bail!("a compressed message after this connection's inflater was released (idle)");
            }
            // The window carries over: this connection's own inflater.
            let d = self.inflater.get_or_insert_with(|| Decompress::new(false));
            run(d)?;
        }
        self.compressed_in += 1;
        Ok(())
    }

    /// Drops this connection's inflater: for connections that will receive
    /// nothing compressed any more (idle). A compressed message after this
    /// one is an error, not a wrong inflate.
    pub fn release(&mut self) {
        self.inflater = None;
        if !self.agreed.server_no_context_takeover {
            self.released = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked_strictly() {
        let shared =
            parse_answer("permessage-deflate; server_no_context_takeover; client_no_context_takeover").unwrap();
        assert!(shared.server_no_context_takeover && shared.client_no_context_takeover);
        assert_eq!((shared.server_max_window_bits, shared.client_max_window_bits), (15, 15));
        let plain = parse_answer("permessage-deflate").unwrap();
        assert!(!plain.server_no_context_takeover && !plain.client_no_context_takeover);
        let bits =
            parse_answer("permessage-deflate; server_max_window_bits=10; client_max_window_bits=\"12\"").unwrap();
        assert_eq!((bits.server_max_window_bits, bits.client_max_window_bits), (10, 12));
        for bad in [
            "x-webkit-deflate-frame",
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=16",
        ] {
            assert!(parse_answer(bad).is_err(), "{bad}");
        }
    }

    /// RFC 7692 §7.2.3.1: "Hello" compressed is f2 48 cd c9 c9 07 00.
    #[test]
    fn rfc_hello_both_ways() {
        let agreed = parse_answer("permessage-deflate; server_no_context_takeover").unwrap();
        let mut c = DeflateConn::new(agreed);
        let mut out = Vec::new();
        c.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        let mut z = Vec::new();
        c.compress(b"Hello", &mut z).unwrap();
        assert!(!z.ends_with(&TAIL), "the tail is cut off: {z:02x?}");
        let mut back = Vec::new();
        c.inflate(&z, &mut back, 100).unwrap();
        assert_eq!(back, b"Hello");
        assert_eq!((c.compressed_in, c.compressed_out), (2, 1));
        assert!(c.inflate(&[0xff, 0xff, 0xff], &mut Vec::new(), 100).is_err());
        // Over the limit.
        let big = vec![b'a'; 10_000];
        let mut z = Vec::new();
        c.compress(&big, &mut z).unwrap();
        assert!(z.len() < 1000, "{}", z.len());
        assert!(c.inflate(&z, &mut Vec::new(), 5000).is_err());
        let mut back = Vec::new();
        c.inflate(&z, &mut back, 20_000).unwrap();
        assert_eq!(back, big);
    }

    /// RFC 7692 §7.2.3.2: with context takeover the second "Hello" is
    /// f2 00 11 00 00, a reference to the first.
    #[test]
    fn context_takeover_keeps_the_window_per_connection() {
        let takeover = parse_answer("permessage-deflate").unwrap();
        let mut a = DeflateConn::new(takeover);
        let mut b = DeflateConn::new(takeover);
        let mut out = Vec::new();
        a.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        // Another connection in between does not disturb a's window.
        b.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut Vec::new(), 100)
            .unwrap();
        out.clear();
        a.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // Without the first message, the second cannot be read.
        let mut fresh = DeflateConn::new(takeover);
        assert!(
            fresh
                .inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut Vec::new(), 100)
                .is_err()
        );
        // Standalone messages use the shared inflater, reset each time.
        let shared = parse_answer("permessage-deflate; server_no_context_takeover").unwrap();
        let mut s = DeflateConn::new(shared);
        s.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut Vec::new(), 100)
            .unwrap();
        assert!(
            s.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut Vec::new(), 100)
                .is_err()
        );
    }

    #[test]
    fn a_small_client_window_is_honoured() {
        let agreed = parse_answer("permessage-deflate; client_max_window_bits=9").unwrap();
        let mut c = DeflateConn::new(agreed);
        assert!(c.compresses());
        let msg: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 7) as u8).collect();
        let mut z = Vec::new();
        c.compress(&msg, &mut z).unwrap();
        // Readable with a 512-byte window.
        let mut d = Decompress::new_with_window_bits(false, 9);
        let mut back = Vec::with_capacity(6000);
        d.decompress_vec(&z, &mut back, FlushDecompress::Sync).unwrap();
        d.decompress_vec(&TAIL, &mut back, FlushDecompress::Sync).unwrap();
        assert_eq!(back, msg);
        let eight = parse_answer("permessage-deflate; client_max_window_bits=8").unwrap();
        assert!(!DeflateConn::new(eight).compresses());
    }
}
