//! The client side of RFC 6455, just what a load generator needs: the
//! opening handshake (request, `Sec-WebSocket-Accept` check), masked client
//! frames, and parsing of the (unmasked) frames a server sends.
//!
//! Written here rather than taken from the wsloop crate on purpose: the load
//! generator must not share bugs with the server it measures.

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::bail;
use crate::error::Result;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The GUID of RFC 6455 section 1.3.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest response head we accept; a server sending more is broken.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Largest message we are willing to assemble (the biggest we send is 64 KiB;
/// anything far beyond is a broken length field, not a real message).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A small, fast PRNG (xorshift64*). Masking keys and handshake keys only
/// need to differ between frames and connections here; the load generator is
/// not a security boundary.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Never zero: xorshift would stay at zero forever.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A fresh `Sec-WebSocket-Key`: base64 of 16 random bytes.
pub fn new_key(rng: &mut Rng) -> String {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    raw[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// The `Sec-WebSocket-Accept` value a server must answer for `key`.
pub fn accept_for(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The opening handshake request. Without `deflate` no extension is
/// offered, so the server must not enable any (compression stays off); with
/// it, permessage-deflate is offered as browsers offer it.
pub fn handshake_request(host: &str, path: &str, key: &str, deflate: bool) -> Vec<u8> {
    let extensions = if deflate {
        format!("Sec-WebSocket-Extensions: {}\r\n", crate::deflate::OFFER)
    } else {
        String::new()
    };
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         {extensions}\
         \r\n"
    )
    .into_bytes()
}

/// A valid `101`: the length of its head, and the permessage-deflate
/// parameters if we offered it (then the server must have accepted: a run
/// that asks for compression measures nothing without it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgraded {
    pub head_len: usize,
    pub deflate: Option<crate::deflate::Agreed>,
}

/// Checks the server's handshake response at the start of `buf`.
///
/// Returns `Ok(None)` if the head is not complete yet, `Ok(Some(_))` when it
/// is a valid `101` upgrade for `expected_accept` (and, if `offered_deflate`,
/// a valid permessage-deflate answer), and an error otherwise.
pub fn parse_handshake_response(buf: &[u8], expected_accept: &str, offered_deflate: bool) -> Result<Option<Upgraded>> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE_HEAD {
            bail!("handshake response head longer than {MAX_RESPONSE_HEAD} bytes");
        }
        return Ok(None);
    };
    let head_len = end + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") || code != "101" {
        bail!("handshake refused: status line {status:?}");
    }
    let (mut upgrade, mut connection, mut accept, mut extensions) = (false, false, None, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            bail!("malformed header line in handshake response: {line:?}");
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "connection" => connection = value.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")),
            "sec-websocket-accept" => accept = Some(value.to_owned()),
            "sec-websocket-extensions" if !offered_deflate => {
                bail!("server enabled an extension we did not offer: {value:?}")
            }
            "sec-websocket-extensions" if extensions.is_some() => {
                bail!("server sent Sec-WebSocket-Extensions twice")
            }
            "sec-websocket-extensions" => extensions = Some(crate::deflate::parse_answer(value)?),
            _ => {}
        }
    }
    if !upgrade {
        bail!("handshake response lacks `Upgrade: websocket`");
    }
    if !connection {
        bail!("handshake response lacks `Connection: Upgrade`");
    }
    if offered_deflate && extensions.is_none() {
        bail!("server declined permessage-deflate (no Sec-WebSocket-Extensions in its 101)");
    }
    match accept {
        Some(a) if a == expected_accept => Ok(Some(Upgraded {
            head_len,
            deflate: extensions,
        })),
        Some(a) => bail!("wrong Sec-WebSocket-Accept: got {a:?}, expected {expected_accept:?}"),
        None => bail!("handshake response lacks Sec-WebSocket-Accept"),
    }
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// RSV1: the frame starts a compressed message (RFC 7692 §6).
pub const RSV1: u8 = 0x40;

/// Appends the header of a masked, final client frame to `out`; the caller
/// then appends `len` payload bytes and masks them with [`mask_in_place`].
pub fn put_client_header(out: &mut Vec<u8>, opcode: u8, len: usize, mask: [u8; 4]) {
    put_client_header_rsv(out, opcode, 0, len, mask);
}

/// [`put_client_header`] with reserved bits (`RSV1` for a compressed message).
pub fn put_client_header_rsv(out: &mut Vec<u8>, opcode: u8, rsv: u8, len: usize, mask: [u8; 4]) {
    out.push(0x80 | rsv | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
}

/// XORs `buf` with the 4-byte masking key, 8 bytes at a time.
pub fn mask_in_place(buf: &mut [u8], mask: [u8; 4]) {
    let k = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let (chunks, rest) = buf.as_chunks_mut::<8>();
    for c in chunks {
        *c = (u64::from_ne_bytes(*c) ^ k).to_ne_bytes();
    }
    // `rest` starts at a multiple of 8, so the key phase is 0 again.
    for (i, b) in rest.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Appends a complete masked client frame.
pub fn put_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    put_client_header(out, opcode, payload.len(), mask);
    let start = out.len();
    out.extend_from_slice(payload);
    mask_in_place(&mut out[start..], mask);
}

/// A parsed server frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub fin: bool,
    pub opcode: u8,
    /// Bytes of header before the payload.
    pub head_len: usize,
    pub payload_len: usize,
    /// RSV1: the first frame of a compressed message.
    pub compressed: bool,
}

/// Parses a server frame header at the start of `buf`: `Ok(None)` if more
/// bytes are needed, an error for anything RFC 6455 forbids a server to send
/// to us (masking, reserved bits without a negotiated extension, unknown
/// opcodes, bad control frames). With `deflate` agreed, RSV1 may mark the
/// first frame of a data message (RFC 7692 §6), nothing else.
pub fn parse_frame_head(buf: &[u8], deflate: bool) -> Result<Option<FrameHead>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let compressed = b0 & RSV1 != 0;
    if b0 & 0x30 != 0 || (compressed && !deflate) {
        bail!("server frame has reserved bits set (0x{b0:02x}) without an extension");
    }
    if compressed && !matches!(opcode, OP_TEXT | OP_BINARY) {
        bail!("server set RSV1 on a frame with opcode {opcode} (RFC 7692 §6: first data frames only)");
    }
    if b1 & 0x80 != 0 {
        bail!("server frame is masked (RFC 6455 5.1 forbids it)");
    }
    let (head_len, payload_len) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (4, u16::from_be_bytes([buf[2], buf[3]]) as u64)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (10, u64::from_be_bytes(b))
        }
        n => (2, n as u64),
    };
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                bail!("server sent a fragmented control frame (opcode {opcode})");
            }
            if payload_len > 125 {
                bail!("server sent a control frame of {payload_len} bytes (max 125)");
            }
        }
        _ => bail!("server sent a frame with reserved opcode 0x{opcode:x}"),
    }
    if payload_len > MAX_MESSAGE as u64 {
        bail!("server frame of {payload_len} bytes exceeds the {MAX_MESSAGE}-byte limit");
    }
    Ok(Some(FrameHead {
        fin,
        opcode,
        head_len,
        payload_len: payload_len as usize,
        compressed,
    }))
}

/// Close code and reason of a close frame payload (1005 = none given).
pub fn parse_close(payload: &[u8]) -> (u16, String) {
    if payload.len() < 2 {
        return (1005, String::new());
    }
    (
        u16::from_be_bytes([payload[0], payload[1]]),
        String::from_utf8_lossy(&payload[2..]).into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_example() {
        // RFC 6455 section 1.3.
        assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn handshake_response_checks() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nXX";
        let acc = accept_for(key);
        assert_eq!(
            parse_handshake_response(ok.as_bytes(), &acc, false).unwrap(),
            Some(Upgraded {
                head_len: ok.len() - 2,
                deflate: None
            })
        );
        assert_eq!(
            parse_handshake_response(&ok.as_bytes()[..20], &acc, false).unwrap(),
            None
        );
        let bad = ok.replace("xOo=", "xOX=");
        assert!(parse_handshake_response(bad.as_bytes(), &acc, false).is_err());
        let refused = "HTTP/1.1 404 Not Found\r\n\r\n";
        assert!(parse_handshake_response(refused.as_bytes(), &acc, false).is_err());
        // permessage-deflate: required once offered, refused when not offered.
        assert!(parse_handshake_response(ok.as_bytes(), &acc, true).is_err());
        let deflate = ok.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n",
        );
        let up = parse_handshake_response(deflate.as_bytes(), &acc, true)
            .unwrap()
            .unwrap();
        assert!(up.deflate.is_some_and(|d| d.server_no_context_takeover));
        assert!(parse_handshake_response(deflate.as_bytes(), &acc, false).is_err());
        let twice = deflate.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
        assert!(parse_handshake_response(twice.as_bytes(), &acc, true).is_err());
    }

    #[test]
    fn masking_roundtrip_all_lengths() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut m = data.clone();
            mask_in_place(&mut m, mask);
            for (i, b) in m.iter().enumerate() {
                assert_eq!(*b, data[i] ^ mask[i % 4]);
            }
        }
    }

    #[test]
    fn client_frame_lengths() {
        for (len, head) in [(5usize, 2 + 4), (126, 4 + 4), (70_000, 10 + 4)] {
            let mut out = Vec::new();
            put_client_frame(&mut out, OP_BINARY, &vec![7u8; len], [1, 2, 3, 4]);
            assert_eq!(out.len(), head + len);
            assert_eq!(out[0], 0x82);
            assert_eq!(out[1] & 0x80, 0x80);
        }
    }

    #[test]
    fn server_frame_heads() {
        assert_eq!(parse_frame_head(&[0x81], false).unwrap(), None);
        assert_eq!(
            parse_frame_head(&[0x81, 3, b'a', b'b', b'c'], false).unwrap(),
            Some(FrameHead {
                fin: true,
                opcode: 1,
                head_len: 2,
                payload_len: 3,
                compressed: false,
            })
        );
        assert_eq!(parse_frame_head(&[0x82, 126, 1], false).unwrap(), None);
        assert_eq!(
            parse_frame_head(&[0x82, 126, 1, 0], false)
                .unwrap()
                .unwrap()
                .payload_len,
            256
        );
        let mut long = vec![0x02, 127];
        long.extend_from_slice(&70_000u64.to_be_bytes());
        let h = parse_frame_head(&long, false).unwrap().unwrap();
        assert_eq!((h.fin, h.head_len, h.payload_len), (false, 10, 70_000));
        // Masked server frame, reserved bits, bad opcode, big/fragmented control.
        assert!(parse_frame_head(&[0x81, 0x83], false).is_err());
        assert!(parse_frame_head(&[0xC1, 0], false).is_err());
        assert!(parse_frame_head(&[0x83, 0], false).is_err());
        assert!(parse_frame_head(&[0x89, 126, 0, 200], false).is_err());
        assert!(parse_frame_head(&[0x09, 0], false).is_err());
        // With permessage-deflate: RSV1 on a first data frame only; RSV2/3 never.
        assert!(parse_frame_head(&[0xC1, 0], true).unwrap().unwrap().compressed);
        assert!(parse_frame_head(&[0x42, 0], true).unwrap().unwrap().compressed);
        assert!(parse_frame_head(&[0xC0, 0], true).is_err());
        assert!(parse_frame_head(&[0xC9, 0], true).is_err());
        assert!(parse_frame_head(&[0xA1, 0], true).is_err());
        assert!(parse_frame_head(&[0x91, 0], true).is_err());
    }

    #[test]
    fn close_payload() {
        assert_eq!(parse_close(&[]), (1005, String::new()));
        assert_eq!(parse_close(&[0x03, 0xE8, b'o', b'k']), (1000, "ok".into()));
    }
}
