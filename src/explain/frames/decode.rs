//! Frames from raw bytes to what the core makes of them (RFC 6455 §5.2–§5.7, RFC 7692 §6):
//! cutting a byte stream into frames with the core's [`parse_header`] and unmasking with its
//! [`apply_mask`] (§5.3), the rules one frame breaks on its own (§5.1, §5.2, §5.5.1, §7.4,
//! §8.1), and the verdict on each frame from running it through the core's [`WebSocket`]
//! state machine: accepted, waiting, or which rule it breaks and the Close frame sent back.
//! Nothing here writes text; the renderers (the `render` module, and the JSON of `/learn`)
//! read what this produces.

use crate::deflate::DeflateParams;
use crate::error::ProtocolError;
use crate::frame::{apply_mask, parse_header, CloseCode, FrameHeader, HeaderStatus, Opcode, RSV1};
use crate::protocol::{check_header, parse_close_payload, Config, OwnedEvent, Role, WebSocket};
use crate::utf8::Utf8Validator;

/// One frame cut from a byte stream by the core's parser.
pub(crate) struct FrameView<'a> {
    /// Where the frame starts in the input.
    pub offset: usize,
    /// The bytes of this frame that are present (all of them unless the input was cut short).
    pub wire: &'a [u8],
    /// What the parser made of them.
    pub parsed: Parsed<'a>,
}

/// The outcome of parsing one frame.
pub(crate) enum Parsed<'a> {
    /// The header breaks a rule on its own (RFC 6455 §5.2, §5.5); the frame's end is unknown.
    Broken(ProtocolError),
    /// The input ends inside the header; at least `needed` more bytes must come.
    ShortHeader {
        /// Bytes still missing, at the least.
        needed: usize,
    },
    /// A whole header, and as much payload as the input holds.
    Frame(Body<'a>),
}

/// A frame whose header decoded.
pub(crate) struct Body<'a> {
    /// The decoded header.
    pub header: FrameHeader,
    /// Payload bytes as on the wire (masked when MASK=1).
    pub masked: &'a [u8],
    /// Payload bytes unmasked (the same as `masked` when MASK=0).
    pub payload: Vec<u8>,
    /// Payload bytes declared by the header but absent from the input.
    pub missing: u64,
}

impl Body<'_> {
    pub fn header_len(&self) -> usize {
        self.header.header_len()
    }

    /// The status code and reason of a whole Close frame, as the bytes say (valid or not).
    pub fn close_fields(&self) -> Option<CloseFields<'_>> {
        if self.header.opcode != Opcode::Close || self.missing > 0 {
            return None;
        }
        Some(match self.payload.as_slice() {
            [] => CloseFields::Empty,
            [_] => CloseFields::OneByte,
            [hi, lo, reason @ ..] => CloseFields::Code {
                code: CloseCode(u16::from_be_bytes([*hi, *lo])),
                reason,
            },
        })
    }

    /// The rule this frame breaks on its own, for a receiver in `role` (the trace and the JSON,
    /// which see one frame at a time): RSV bits and masking (§5.1, §5.2), the Close body
    /// (§5.5.1, §7.4), and UTF-8 of a one-frame text message (§8.1). Message-level rules are
    /// the state machine's, which the server ran already.
    pub fn rule_broken(&self, role: Role) -> Option<ProtocolError> {
        self.rule_broken_with(role, 0)
    }

    /// [`Body::rule_broken`] between endpoints that agreed the extensions owning
    /// `allowed_rsv` (RSV1: permessage-deflate, RFC 7692 §6). A compressed payload is DEFLATE
    /// data, so its UTF-8 is checked after inflating, not here.
    pub fn rule_broken_with(&self, role: Role, allowed_rsv: u8) -> Option<ProtocolError> {
        if let Err(e) = check_header(&self.header, role, allowed_rsv) {
            return Some(e);
        }
        if self.missing > 0 {
            return None;
        }
        if self.header.opcode == Opcode::Close {
            return parse_close_payload(&self.payload).err();
        }
        if self.header.opcode == Opcode::Text && self.header.fin && self.header.rsv & RSV1 == 0 {
            let mut v = Utf8Validator::new();
            if v.feed(&self.payload).and_then(|()| v.finish()).is_err() {
                return Some(ProtocolError::InvalidUtf8);
            }
        }
        None
    }
}

/// What a Close frame's body holds (RFC 6455 §5.5.1).
pub(crate) enum CloseFields<'a> {
    /// No body: no status code.
    Empty,
    /// One byte: too short for a code.
    OneByte,
    /// A two-byte code and the reason bytes.
    Code { code: CloseCode, reason: &'a [u8] },
}

/// Cuts `input` into frames with the core's parser. Stops after a frame that breaks a header
/// rule or that the input cuts short.
pub(crate) fn split_frames(input: &[u8]) -> Vec<FrameView<'_>> {
    let mut frames = Vec::new();
    let mut offset = 0;
    while offset < input.len() {
        let rest = input.get(offset..).unwrap_or_default();
        let (view, whole) = match parse_header(rest) {
            Err(e) => (
                FrameView {
                    offset,
                    wire: rest,
                    parsed: Parsed::Broken(e),
                },
                false,
            ),
            Ok(HeaderStatus::Incomplete { needed }) => (
                FrameView {
                    offset,
                    wire: rest,
                    parsed: Parsed::ShortHeader { needed },
                },
                false,
            ),
            Ok(HeaderStatus::Complete(header)) => {
                let hl = header.header_len();
                let after = rest.get(hl..).unwrap_or_default();
                let len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
                let masked = after.get(..len).unwrap_or(after);
                let missing = header.payload_len - masked.len() as u64;
                let mut payload = masked.to_vec();
                if let Some(key) = header.mask {
                    apply_mask(&mut payload, key, 0);
                }
                let wire = rest.get(..hl + masked.len()).unwrap_or(rest);
                let body = Body {
                    header,
                    masked,
                    payload,
                    missing,
                };
                let view = FrameView {
                    offset,
                    wire,
                    parsed: Parsed::Frame(body),
                };
                (view, missing == 0)
            }
        };
        offset += view.wire.len();
        frames.push(view);
        if !whole {
            break;
        }
    }
    frames
}

/// The two readers the frames are run through: a server (for masked frames, which come from
/// clients) and a client (for unmasked frames, which come from servers). Each keeps its own
/// message state, as each direction of a connection does.
pub(super) struct Readers {
    server: Reader,
    client: Reader,
}

/// One receiving endpoint: the core's state machine, and what it has seen of the message in
/// progress.
pub(crate) struct Reader {
    ws: WebSocket,
    /// Data frames taken since the last whole message.
    frames_in_message: usize,
    /// Compressed bytes of the compressed message in progress (RFC 7692 §6), if one is.
    compressed_so_far: Option<usize>,
}

/// One frame's share of a compressed message (RFC 7692 §6, §7.2.2).
pub(crate) struct CompressedPart {
    /// The message's compressed bytes up to and including this frame's.
    pub so_far: usize,
    /// This frame has FIN set: the receiver appends the tail and inflates the rest.
    pub last: bool,
}

/// What the receiving state machine did with one frame.
pub(crate) enum Outcome {
    Event(OwnedEvent),
    /// Consumed, no event: a fragment of a longer message, or a frame cut short.
    Waiting,
    Failed(ProtocolError),
    /// The connection had already failed or closed; the bytes are ignored.
    Ignored {
        failed: bool,
    },
}

pub(crate) struct Verdict {
    pub role: Role,
    /// Set when the frame carries (part of) a compressed message.
    pub compressed: Option<CompressedPart>,
    pub outcome: Outcome,
    pub frames_in_message: usize,
    /// Bytes the receiver sends back: a Pong, a Close reply, or the Close that fails the
    /// connection.
    pub reply: Vec<u8>,
}

impl Readers {
    /// With `deflate`, both readers agreed permessage-deflate with context takeover (the
    /// parameters that read any sender's stream, RFC 7692 §7.2.2).
    pub(super) fn new(deflate: bool) -> Self {
        let params = deflate.then(DeflateParams::default);
        Readers {
            server: Reader::new(Role::Server, params),
            client: Reader::new(Role::Client, params),
        }
    }

    pub(super) fn feed(&mut self, view: &FrameView<'_>) -> Verdict {
        let masked = view.wire.get(1).map_or(true, |b| b & 0x80 != 0);
        let reader = if masked { &mut self.server } else { &mut self.client };
        reader.feed(view)
    }
}

impl Reader {
    /// An endpoint in `role`, with permessage-deflate agreed on `deflate` if given.
    pub(crate) fn new(role: Role, deflate: Option<DeflateParams>) -> Reader {
        // A fixed seed keeps a client's masking keys (on its replies) the same from run to run.
        let mut ws = WebSocket::with_mask_seed(role, Config::default(), 0x5753_4C4F_4F50);
        if let Some(params) = deflate {
            ws = ws.with_deflate(params);
        }
        Reader {
            ws,
            frames_in_message: 0,
            compressed_so_far: None,
        }
    }

    /// Runs one frame through the state machine.
    pub(crate) fn feed(&mut self, view: &FrameView<'_>) -> Verdict {
        let reader = self;
        let role = reader.ws.role();
        let mut reply = Vec::new();
        if reader.ws.is_terminated() {
            let failed = reader.ws.state() == crate::protocol::State::Failed;
            return Verdict {
                role,
                compressed: None,
                outcome: Outcome::Ignored { failed },
                frames_in_message: 0,
                reply,
            };
        }
        let mut compressed = None;
        if let Parsed::Frame(b) = &view.parsed {
            if !b.header.opcode.is_control() && b.missing == 0 {
                reader.frames_in_message += 1;
            }
            let h = &b.header;
            // Control frames may come between the fragments; they leave the message alone.
            if reader.ws.deflate_params().is_some() && b.missing == 0 && !h.opcode.is_control() {
                let part_of = match h.opcode {
                    Opcode::Text | Opcode::Binary if h.rsv == RSV1 => Some(0),
                    Opcode::Continuation if h.rsv == 0 => reader.compressed_so_far,
                    _ => None,
                };
                reader.compressed_so_far = part_of.map(|n| n + b.payload.len());
                if !h.opcode.is_control() {
                    compressed = reader
                        .compressed_so_far
                        .map(|so_far| CompressedPart { so_far, last: h.fin });
                }
            }
        }
        let mut input = view.wire.to_vec();
        let mut pos = 0;
        let mut outcome = Outcome::Waiting;
        while pos < input.len() {
            let rest = input.get_mut(pos..).unwrap_or_default();
            match reader.ws.receive(rest, &mut reply) {
                Ok(r) => {
                    pos += r.consumed;
                    if let Some(e) = r.event {
                        outcome = Outcome::Event(e.to_owned_event());
                    }
                    if r.consumed == 0 {
                        break;
                    }
                }
                Err(e) => {
                    outcome = Outcome::Failed(e);
                    break;
                }
            }
        }
        let frames_in_message = reader.frames_in_message;
        if matches!(outcome, Outcome::Event(OwnedEvent::Text(_) | OwnedEvent::Binary(_))) {
            reader.frames_in_message = 0;
            reader.compressed_so_far = None;
        }
        Verdict {
            role,
            compressed,
            outcome,
            frames_in_message,
            reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_frames_stops_at_a_broken_or_cut_frame() {
        let two = [0x81, 0x02, b'h', b'i', 0x89, 0x00];
        let frames = split_frames(&two);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].offset, 4);
        let cut = [0x81, 0x05, b'h', 0x81, 0x00];
        let frames = split_frames(&cut);
        assert_eq!(frames.len(), 1);
        assert!(matches!(&frames[0].parsed, Parsed::Frame(b) if b.missing == 2 && b.payload == [b'h', 0x81, 0x00]));
        let broken = [0x83, 0x00, 0x81, 0x00];
        assert!(matches!(
            split_frames(&broken)[..],
            [FrameView {
                parsed: Parsed::Broken(ProtocolError::ReservedOpcode(3)),
                ..
            }]
        ));
    }

    #[test]
    fn rule_broken_checks_what_one_frame_can_break() {
        let body = |wire: &[u8]| match split_frames(wire).into_iter().next().map(|v| v.parsed) {
            Some(Parsed::Frame(b)) => b.rule_broken(Role::Client),
            _ => panic!("no frame"),
        };
        assert_eq!(body(&[0x81, 0x02, b'h', b'i']), None);
        assert_eq!(body(&[0x81, 0x01, 0xff]), Some(ProtocolError::InvalidUtf8));
        assert_eq!(
            body(&[0x88, 0x02, 0x03, 0xed]),
            Some(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(body(&[0x88, 0x01, 0x03]), Some(ProtocolError::CloseFrameTooShort));
        assert_eq!(body(&[0xc1, 0x00]), Some(ProtocolError::Rsv1WithoutExtension));
        assert_eq!(body(&[0xe1, 0x00]), Some(ProtocolError::ReservedBitsSet(0b110)));
        assert_eq!(body(&[0x81, 0x80, 1, 2, 3, 4]), Some(ProtocolError::MaskedServerFrame));
    }

    proptest! {
        // Frames as the encoder writes them, of any kind, size and mask, decode back whole.
        #[test]
        fn encoded_frames_decode_whole(payload in proptest::collection::vec(any::<u8>(), 0..300),
                                       mask in proptest::option::of(any::<[u8; 4]>()),
                                       op in prop::sample::select(vec![Opcode::Text, Opcode::Binary, Opcode::Ping])) {
            // Control frames carry at most 125 bytes (RFC 6455 §5.5).
            let payload = if op.is_control() { payload.get(..125).unwrap_or(&payload).to_vec() } else { payload };
            let mut wire = Vec::new();
            crate::frame::encode_frame(&mut wire, true, op, mask, &payload);
            let frames = split_frames(&wire);
            prop_assert_eq!(frames.len(), 1);
            match &frames[0].parsed {
                Parsed::Frame(b) => {
                    prop_assert_eq!(&b.payload, &payload);
                    prop_assert_eq!(b.missing, 0);
                }
                _ => prop_assert!(false, "not decoded"),
            }
        }
    }
}
