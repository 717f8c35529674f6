//! The base framing protocol (RFC 6455 §5.2): one frame header, parsed from and written into
//! byte slices, without touching the payload.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! [`parse_header`] checks only the rules that a header can break on its own (reserved opcodes,
//! the 64-bit length's top bit, minimal length encoding, control frames short and unfragmented).
//! Rules that depend on the connection — which side must mask, which RSV bits an extension
//! negotiated, whether a continuation continues anything — belong to [`crate::protocol`].

mod close;
mod mask;

pub use close::CloseCode;
pub use mask::{apply_mask, apply_mask_bytewise};

use crate::error::ProtocolError;

/// The largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The largest possible frame header: 2 fixed bytes, 8 bytes of 64-bit length, 4 bytes of
/// masking key (RFC 6455 §5.2).
pub const MAX_HEADER_LEN: usize = 14;

/// The frame opcode (RFC 6455 §5.2, §11.8). Values 0x3–0x7 and 0xB–0xF are reserved and are
/// rejected by [`Opcode::from_u8`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x0: continues the message begun by an earlier Text or Binary frame (RFC 6455 §5.4).
    Continuation,
    /// 0x1: the first frame of a message whose payload is UTF-8 text (RFC 6455 §5.6).
    Text,
    /// 0x2: the first frame of a message whose payload is arbitrary bytes (RFC 6455 §5.6).
    Binary,
    /// 0x8: a Close control frame (RFC 6455 §5.5.1).
    Close,
    /// 0x9: a Ping control frame (RFC 6455 §5.5.2).
    Ping,
    /// 0xA: a Pong control frame (RFC 6455 §5.5.3).
    Pong,
}

impl Opcode {
    /// Decodes the low four bits of a frame's first byte; `None` for a reserved opcode
    /// (RFC 6455 §5.2: "%x3-7 are reserved for further non-control frames", "%xB-F are reserved
    /// for further control frames").
    pub fn from_u8(value: u8) -> Option<Opcode> {
        match value {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// The opcode's 4-bit value on the wire (RFC 6455 §5.2).
    pub fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Control frames are those whose opcode has its high bit set (RFC 6455 §5.5).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }

    /// The name the RFC uses for this opcode (RFC 6455 §5.2).
    pub fn name(self) -> &'static str {
        match self {
            Opcode::Continuation => "continuation",
            Opcode::Text => "text",
            Opcode::Binary => "binary",
            Opcode::Close => "close",
            Opcode::Ping => "ping",
            Opcode::Pong => "pong",
        }
    }
}

/// Which of the three encodings of the payload length a header used (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthForm {
    /// Length 0–125 held in the 7-bit field itself.
    Short7,
    /// 7-bit field = 126, then a 16-bit big-endian length.
    Extended16,
    /// 7-bit field = 127, then a 64-bit big-endian length whose top bit is 0.
    Extended64,
}

impl LengthForm {
    /// The smallest form that can hold `len`: RFC 6455 §5.2 requires "the minimal number of
    /// bytes" to encode the length.
    pub fn for_len(len: u64) -> LengthForm {
        if len <= 125 {
            LengthForm::Short7
        } else if len <= u16::MAX as u64 {
            LengthForm::Extended16
        } else {
            LengthForm::Extended64
        }
    }

    /// How many bytes of extended length follow the second header byte (0, 2 or 8).
    pub fn extra_bytes(self) -> usize {
        match self {
            LengthForm::Short7 => 0,
            LengthForm::Extended16 => 2,
            LengthForm::Extended64 => 8,
        }
    }
}

/// The RSV1 bit (RFC 6455 §5.2), as it sits in [`FrameHeader::rsv`].
pub const RSV1: u8 = 0b100;
/// The RSV2 bit (RFC 6455 §5.2), as it sits in [`FrameHeader::rsv`].
pub const RSV2: u8 = 0b010;
/// The RSV3 bit (RFC 6455 §5.2), as it sits in [`FrameHeader::rsv`].
pub const RSV3: u8 = 0b001;

/// A decoded frame header (RFC 6455 §5.2). The payload is not part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message (RFC 6455 §5.2, §5.4).
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as the three low bits (RSV1 = 0b100); must be 0 unless an extension
    /// defines them (RFC 6455 §5.2).
    pub rsv: u8,
    /// The opcode (RFC 6455 §5.2).
    pub opcode: Opcode,
    /// The masking key, present exactly when the MASK bit is set (RFC 6455 §5.3).
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes (RFC 6455 §5.2).
    pub payload_len: u64,
    /// The encoding used for the length (RFC 6455 §5.2).
    pub length_form: LengthForm,
}

impl FrameHeader {
    /// The number of bytes this header occupies on the wire: 2, plus 0/2/8 for the length,
    /// plus 4 for a masking key (RFC 6455 §5.2).
    pub fn header_len(&self) -> usize {
        2 + self.length_form.extra_bytes() + if self.mask.is_some() { 4 } else { 0 }
    }
}

/// The result of [`parse_header`] on a slice that holds no error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStatus {
    /// The slice ends inside the header; at least `needed` more bytes must arrive.
    Incomplete {
        /// How many more bytes are needed, at the least, before the header can be decoded.
        needed: usize,
    },
    /// The header is whole; its length is [`FrameHeader::header_len`].
    Complete(FrameHeader),
}

/// Parses a frame header from the start of `buf` without copying (RFC 6455 §5.2).
///
/// Returns `Incomplete` when `buf` ends inside the header. Errors are reported as early as the
/// bytes allow: a reserved opcode or a fragmented control frame fails on the first byte alone.
pub fn parse_header(buf: &[u8]) -> Result<HeaderStatus, ProtocolError> {
    let Some(&b0) = buf.first() else {
        return Ok(HeaderStatus::Incomplete { needed: 2 });
    };
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0x07;
    let opcode = Opcode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0F))?;
    // RFC 6455 §5.5: "All control frames ... MUST NOT be fragmented."
    if opcode.is_control() && !fin {
        return Err(ProtocolError::FragmentedControlFrame);
    }
    let Some(&b1) = buf.get(1) else {
        return Ok(HeaderStatus::Incomplete { needed: 1 });
    };
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;
    let length_form = match len7 {
        126 => LengthForm::Extended16,
        127 => LengthForm::Extended64,
        _ => LengthForm::Short7,
    };
    // RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less."
    if opcode.is_control() && len7 > 125 {
        return Err(ProtocolError::ControlFrameTooLong);
    }
    let header_len = 2 + length_form.extra_bytes() + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        return Ok(HeaderStatus::Incomplete {
            needed: header_len - buf.len(),
        });
    }
    let rest = buf.get(2..header_len).unwrap_or_default();
    let (payload_len, key_bytes) = match length_form {
        LengthForm::Short7 => (u64::from(len7), rest),
        LengthForm::Extended16 => {
            let (len_bytes, key) = rest.split_at(2.min(rest.len()));
            let len = u64::from(u16::from_be_bytes(to_array(len_bytes)));
            if len <= 125 {
                return Err(ProtocolError::NonMinimalLength);
            }
            (len, key)
        }
        LengthForm::Extended64 => {
            let (len_bytes, key) = rest.split_at(8.min(rest.len()));
            let len = u64::from_be_bytes(to_array(len_bytes));
            // RFC 6455 §5.2: "the most significant bit MUST be 0".
            if len >> 63 != 0 {
                return Err(ProtocolError::LengthTopBitSet);
            }
            if len <= u64::from(u16::MAX) {
                return Err(ProtocolError::NonMinimalLength);
            }
            (len, key)
        }
    };
    let mask = if masked { Some(to_array(key_bytes)) } else { None };
    Ok(HeaderStatus::Complete(FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len,
        length_form,
    }))
}

/// Copies a slice whose length the caller has already checked into a fixed array; a shorter
/// slice is zero-padded rather than panicking.
fn to_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (dst, src) in out.iter_mut().zip(bytes) {
        *dst = *src;
    }
    out
}

/// An encoded frame header held inline (at most [`MAX_HEADER_LEN`] bytes), so that header and
/// payload can go out in one vectored write without copying the payload (RFC 6455 §5.2).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderBuf {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl HeaderBuf {
    /// The header bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl std::ops::Deref for HeaderBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for HeaderBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeaderBuf({:02x?})", self.as_slice())
    }
}

/// Encodes a frame header with RSV bits 0, using the minimal length form (RFC 6455 §5.2).
/// A server passes `mask: None`; a client must pass a fresh masking key (RFC 6455 §5.3).
pub fn encode_header(fin: bool, opcode: Opcode, mask: Option<[u8; 4]>, payload_len: u64) -> HeaderBuf {
    encode_header_rsv(fin, 0, opcode, mask, payload_len)
}

/// Like [`encode_header`] with RSV bits (RSV1 = [`RSV1`]), for a negotiated extension: RSV1
/// marks the first frame of a compressed message (RFC 7692 §6).
pub fn encode_header_rsv(fin: bool, rsv: u8, opcode: Opcode, mask: Option<[u8; 4]>, payload_len: u64) -> HeaderBuf {
    let mut bytes = [0u8; MAX_HEADER_LEN];
    bytes[0] = (if fin { 0x80 } else { 0 }) | ((rsv & 0x07) << 4) | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut len = match LengthForm::for_len(payload_len) {
        LengthForm::Short7 => {
            bytes[1] = mask_bit | payload_len as u8;
            2
        }
        LengthForm::Extended16 => {
            bytes[1] = mask_bit | 126;
            bytes[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        }
        LengthForm::Extended64 => {
            bytes[1] = mask_bit | 127;
            bytes[2..10].copy_from_slice(&payload_len.to_be_bytes());
            10
        }
    };
    if let Some(key) = mask {
        bytes[len..len + 4].copy_from_slice(&key);
        len += 4;
    }
    HeaderBuf { bytes, len: len as u8 }
}

/// Appends a whole frame — header, then the payload, masked when `mask` is given — to `out`
/// (RFC 6455 §5.2, §5.3).
pub fn encode_frame(out: &mut Vec<u8>, fin: bool, opcode: Opcode, mask: Option<[u8; 4]>, payload: &[u8]) {
    let header = encode_header(fin, opcode, mask, payload.len() as u64);
    out.reserve(header.len() + payload.len());
    out.extend_from_slice(&header);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        if let Some(tail) = out.get_mut(start..) {
            apply_mask(tail, key, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> FrameHeader {
        match parse_header(buf) {
            Ok(HeaderStatus::Complete(h)) => h,
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    // RFC 6455 §5.7: "A single-frame unmasked text message".
    #[test]
    fn rfc_5_7_unmasked_hello() {
        let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let h = complete(&bytes);
        assert!(h.fin);
        assert_eq!(h.opcode, Opcode::Text);
        assert_eq!(h.mask, None);
        assert_eq!(h.payload_len, 5);
        assert_eq!(h.header_len(), 2);
        assert_eq!(&bytes[2..], b"Hello");
        let mut out = Vec::new();
        encode_frame(&mut out, true, Opcode::Text, None, b"Hello");
        assert_eq!(out, bytes);
    }

    // RFC 6455 §5.7: "A single-frame masked text message".
    #[test]
    fn rfc_5_7_masked_hello() {
        let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let h = complete(&bytes);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.header_len(), 6);
        let mut payload = bytes[6..].to_vec();
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(payload, b"Hello");
        let mut out = Vec::new();
        encode_frame(&mut out, true, Opcode::Text, Some([0x37, 0xfa, 0x21, 0x3d]), b"Hello");
        assert_eq!(out, bytes);
    }

    // RFC 6455 §5.7: "A fragmented unmasked text message".
    #[test]
    fn rfc_5_7_fragmented_hel_lo() {
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let second = [0x80, 0x02, 0x6c, 0x6f];
        let h1 = complete(&first);
        assert!(!h1.fin);
        assert_eq!(h1.opcode, Opcode::Text);
        let h2 = complete(&second);
        assert!(h2.fin);
        assert_eq!(h2.opcode, Opcode::Continuation);
        let mut out = Vec::new();
        encode_frame(&mut out, false, Opcode::Text, None, b"Hel");
        encode_frame(&mut out, true, Opcode::Continuation, None, b"lo");
        assert_eq!(out, [&first[..], &second[..]].concat());
    }

    // RFC 6455 §5.7: unmasked Ping and masked Pong, both with body "Hello".
    #[test]
    fn rfc_5_7_ping_and_masked_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(complete(&ping).opcode, Opcode::Ping);
        let pong = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let h = complete(&pong);
        assert_eq!(h.opcode, Opcode::Pong);
        let mut out = Vec::new();
        encode_frame(&mut out, true, Opcode::Ping, None, b"Hello");
        assert_eq!(out, ping);
        out.clear();
        encode_frame(&mut out, true, Opcode::Pong, Some([0x37, 0xfa, 0x21, 0x3d]), b"Hello");
        assert_eq!(out, pong);
    }

    // RFC 6455 §5.7: 256 bytes binary message in a single unmasked frame: 0x82 0x7E 0x0100.
    #[test]
    fn rfc_5_7_256_byte_binary_header() {
        let h = complete(&[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(h.opcode, Opcode::Binary);
        assert_eq!(h.payload_len, 256);
        assert_eq!(h.length_form, LengthForm::Extended16);
        assert_eq!(
            encode_header(true, Opcode::Binary, None, 256).as_slice(),
            [0x82, 0x7E, 0x01, 0x00]
        );
    }

    // RFC 6455 §5.7: 64KiB binary message in a single unmasked frame:
    // 0x82 0x7F 0x0000000000010000.
    #[test]
    fn rfc_5_7_64k_binary_header() {
        let bytes = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        let h = complete(&bytes);
        assert_eq!(h.payload_len, 65536);
        assert_eq!(h.length_form, LengthForm::Extended64);
        assert_eq!(h.header_len(), 10);
        assert_eq!(encode_header(true, Opcode::Binary, None, 65536).as_slice(), bytes);
    }

    #[test]
    fn incomplete_headers_say_how_much_is_missing() {
        assert_eq!(parse_header(&[]), Ok(HeaderStatus::Incomplete { needed: 2 }));
        assert_eq!(parse_header(&[0x82]), Ok(HeaderStatus::Incomplete { needed: 1 }));
        assert_eq!(parse_header(&[0x82, 0x7E]), Ok(HeaderStatus::Incomplete { needed: 2 }));
        assert_eq!(
            parse_header(&[0x82, 0xFF, 0, 0]),
            Ok(HeaderStatus::Incomplete { needed: 10 })
        );
        assert_eq!(
            parse_header(&[0x81, 0x85, 1, 2]),
            Ok(HeaderStatus::Incomplete { needed: 2 })
        );
    }

    #[test]
    fn header_rules_that_need_no_context() {
        for op in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(parse_header(&[0x80 | op]), Err(ProtocolError::ReservedOpcode(op)));
        }
        assert_eq!(parse_header(&[0x09]), Err(ProtocolError::FragmentedControlFrame));
        assert_eq!(parse_header(&[0x89, 0x7E]), Err(ProtocolError::ControlFrameTooLong));
        assert_eq!(
            parse_header(&[0x82, 0x7E, 0x00, 0x7D]),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            parse_header(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            parse_header(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthTopBitSet)
        );
    }

    #[test]
    fn rsv_bits_are_reported_not_judged() {
        let h = complete(&[0xF2, 0x00]);
        assert_eq!(h.rsv, RSV1 | RSV2 | RSV3);
    }

    #[test]
    fn encode_parse_roundtrip_at_the_length_boundaries() {
        for len in [0u64, 1, 125, 126, 65535, 65536, 1 << 40, (1 << 63) - 1] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let buf = encode_header(true, Opcode::Binary, mask, len);
                let h = complete(&buf);
                assert_eq!(h.payload_len, len);
                assert_eq!(h.mask, mask);
                assert_eq!(h.header_len(), buf.len());
                assert_eq!(h.length_form, LengthForm::for_len(len));
            }
        }
    }
}
