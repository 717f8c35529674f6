//! The receive path (RFC 6455 §5.2–§5.6, §8.1, §10.4): bytes off the wire, split anywhere, to
//! at most one [`Event`] per call. Headers cut by a read are joined, payloads unmasked in
//! place (§5.3), fragments reassembled (§5.4) within
//! [`Config::max_message_size`](super::Config::max_message_size), text checked as UTF-8 as it
//! comes (§8.1), compressed messages inflated (RFC 7692 §6.2), and the answers the protocol
//! owes queued in `out`: a Pong for a Ping (§5.5.2), the Close reply (§5.5.1). A broken rule
//! fails the connection through the `close` module.

use super::deflate::inflate_error;
use super::Config;
use super::{parse_close_payload, pmd, pmd_ref, CloseFrame, Event, OwnedEvent, Received, Role, State, WebSocketCore};
use crate::error::ProtocolError;
use crate::frame::{
    self, apply_mask, CloseCode, FrameHeader, HeaderStatus, Opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, RSV1,
};
use crate::utf8::Utf8Validator;

/// The frame whose payload is arriving.
#[derive(Debug, Clone, Copy)]
pub(super) struct InFrame {
    opcode: Opcode,
    fin: bool,
    /// All zero when the frame is not masked, which makes unmasking a no-op.
    mask: [u8; 4],
    len: u64,
    /// Payload bytes received so far.
    received: u64,
}

/// Where the event about to be returned lives; decided inside the receive loop, turned into
/// borrowed data after it (so the borrow checker sees one borrow, not one per iteration).
enum Deliver {
    /// A whole unfragmented message in `input[start..end]`.
    Input { start: usize, end: usize, text: bool },
    /// The reassembled message in the receive state's `message`.
    Message { text: bool },
    /// A control frame whose payload is in the receive state's `control`.
    Control(Opcode),
    /// An inflated text message, validated once as a whole into `self.text`.
    Text,
}

/// The receive state that lives only while something is in progress: a header cut by the end
/// of a read, a frame whose payload is still arriving, a fragmented message (RFC 6455 §5.4)
/// with its UTF-8 state (§8.1), a control frame's payload (§5.5), or the buffer the last
/// event lent out. Boxed in [`WebSocket`] and dropped once idle, so an idle connection
/// carries one pointer instead of all of it.
#[derive(Debug, Clone)]
pub(super) struct Receiving {
    /// A header cut short by the end of the input, waiting for the rest.
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    frame: Option<InFrame>,
    /// Text or Binary: the kind of the message the current data frames belong to.
    message_kind: Opcode,
    /// A message's first frame had FIN clear, so continuations are expected (RFC 6455 §5.4).
    fragmented: bool,
    /// Reassembly buffer for messages split across frames or reads.
    pub(super) message: Vec<u8>,
    /// The payload of the control frame in progress (at most 125 bytes).
    pub(super) control: Vec<u8>,
    utf8: Utf8Validator,
}

impl Default for Receiving {
    fn default() -> Self {
        Receiving {
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            message_kind: Opcode::Binary,
            fragmented: false,
            message: Vec::new(),
            control: Vec::new(),
            utf8: Utf8Validator::new(),
        }
    }
}

impl Receiving {
    /// Nothing in progress and nothing lent out: the box can go.
    fn is_idle(&self) -> bool {
        self.frame.is_none()
            && self.header_len == 0
            && !self.fragmented
            && self.message.is_empty()
            && self.control.is_empty()
    }

    /// Heap bytes: the box itself and its two buffers.
    pub(super) fn held_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.message.capacity() + self.control.capacity()
    }

    /// Reads a header from the saved partial header plus `input`. Returns the input bytes
    /// used and the header, or `None` (with all input saved) when it is still incomplete.
    fn read_header(&mut self, input: &[u8]) -> Result<(usize, Option<FrameHeader>), ProtocolError> {
        let have = usize::from(self.header_len);
        if have == 0 {
            return match frame::parse_header(input)? {
                HeaderStatus::Complete(h) => Ok((h.header_len(), Some(h))),
                HeaderStatus::Incomplete { .. } => {
                    self.save_header_bytes(0, input);
                    Ok((input.len(), None))
                }
            };
        }
        let take = (MAX_HEADER_LEN - have).min(input.len());
        let mut joined = self.header;
        if let (Some(dst), Some(src)) = (joined.get_mut(have..have + take), input.get(..take)) {
            dst.copy_from_slice(src);
        }
        match frame::parse_header(joined.get(..have + take).unwrap_or_default())? {
            HeaderStatus::Complete(h) => {
                self.header_len = 0;
                Ok((h.header_len() - have, Some(h)))
            }
            HeaderStatus::Incomplete { .. } => {
                self.save_header_bytes(have, input.get(..take).unwrap_or_default());
                Ok((take, None))
            }
        }
    }

    fn save_header_bytes(&mut self, at: usize, bytes: &[u8]) {
        if let Some(dst) = self.header.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.header_len = (at + bytes.len()) as u8;
        }
    }
}

/// Which buffer the last event borrowed, to be cleared when the next call begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    Nothing,
    Message,
    Control,
    /// `self.text` holds the message buffer, turned into a `String`; give it back.
    Text,
}

/// Buffers bigger than this are freed after use rather than kept for the next message, so an
/// idle connection holds no large allocation.
pub(super) const KEEP_BUFFER_CAPACITY: usize = 128 * 1024;

impl WebSocketCore {
    /// Payload bytes the data frame now arriving has declared and not yet delivered: what the
    /// reassembly buffer may still grow by before the frame ends. A server charging memory to
    /// a budget counts these too, so frames admitted one after another cannot together
    /// promise more than the budget holds.
    pub fn incoming_reserved(&self) -> u64 {
        match self.rx.as_ref().and_then(|r| r.frame) {
            Some(f) if !f.opcode.is_control() => f.len - f.received,
            _ => 0,
        }
    }

    /// Gives back the buffer the last event borrowed (it is given back anyway at the start of
    /// the next `receive`). A server calls this once it is done with an event and has no
    /// more input, so a connection that goes quiet after a Ping does not keep the Ping's
    /// buffer.
    pub fn release_event(&mut self) {
        match std::mem::replace(&mut self.release, Release::Nothing) {
            Release::Nothing => {}
            // Freed, not kept: a connection spends most of its life between control frames.
            Release::Control => {
                if let Some(rx) = self.rx.as_deref_mut() {
                    rx.control = Vec::new();
                }
            }
            Release::Message => {
                if let Some(rx) = self.rx.as_deref_mut() {
                    if rx.message.capacity() > KEEP_BUFFER_CAPACITY {
                        rx.message = Vec::new();
                    } else {
                        rx.message.clear();
                    }
                }
            }
            // The inflated text was the message buffer; it goes, as the idle receive state
            // it came from does.
            Release::Text => {
                if let Some(d) = pmd(&mut self.ext) {
                    d.text = String::new();
                }
            }
        }
        // Nothing in progress any more: drop the receive state, so an idle connection holds
        // one pointer for it.
        if self.rx.as_deref().is_some_and(Receiving::is_idle) {
            self.rx = None;
        }
    }

    /// Consumes bytes from the peer until one event is complete or the input is used up
    /// (RFC 6455 §5.2–§5.6). The input is unmasked in place.
    ///
    /// Bytes the protocol must send in answer (Pong, Close reply, or the Close frame that fails
    /// the connection) are appended to `out`. On a broken rule the error is returned, the
    /// Close frame carrying its code is in `out`, and the state is [`State::Failed`]; from then
    /// on all input is ignored.
    ///
    /// `config` holds the limits (the same on every call; see [`WebSocketCore`]).
    pub fn receive<'a>(
        &'a mut self,
        config: &Config,
        input: &'a mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<Received<'a>, ProtocolError> {
        // The hottest case first, in one pass: a server connection without extensions, open,
        // with nothing in progress and nothing lent out, and a whole small data frame at the
        // start of the input. Anything else, including every frame that breaks a rule, takes
        // the general path below, which reports it.
        if self.rx.is_none()
            && self.release == Release::Nothing
            && self.ext.is_none()
            && self.role == Role::Server
            && self.state == State::Open
        {
            let limit = config.max_frame_size.min(config.max_message_size as u64);
            if let Some(SmallFrame {
                end,
                start,
                text,
                control,
            }) = small_frame(input, limit)
            {
                let input: &'a [u8] = input;
                let bytes = input.get(start..end).unwrap_or_default();
                let event = match control {
                    // A control frame is answered (Pong, Close reply) and handed out from
                    // the input too: no receive state, no buffer (RFC 6455 §5.5).
                    Some(opcode) => self
                        .handle_control(config, opcode, bytes, out)
                        .map(|()| control_event(opcode, bytes)),
                    None => data_event(bytes, text),
                };
                return match event {
                    Ok(event) => Ok(Received {
                        consumed: end,
                        event: Some(event),
                    }),
                    // Invalid text (RFC 6455 §8.1) or Close payload (§5.5.1, §7.4) fails the
                    // connection with its code.
                    Err(err) => Err(self.fail(err, out)),
                };
            }
        }
        self.release_event();
        if self.is_terminated() {
            return Ok(Received {
                consumed: input.len(),
                event: None,
            });
        }
        let received = match self.rx {
            // Nothing in progress: a whole frame within this read needs no receive state.
            None => match self.receive_whole(config, input) {
                Ok(Some(done)) => Ok(done),
                Ok(None) => self.receive_inner(config, input, out),
                Err(err) => Err(err),
            },
            Some(_) => self.receive_inner(config, input, out),
        };
        match received {
            Ok((consumed, None)) => Ok(Received { consumed, event: None }),
            Ok((consumed, Some(deliver))) => {
                let input: &'a [u8] = input;
                let event = match deliver {
                    Deliver::Input { start, end, text } => {
                        // The one UTF-8 check of a whole text message that arrived in one
                        // piece: invalid text fails the connection with 1007 (RFC 6455 §8.1).
                        let bytes = input.get(start..end).unwrap_or_default();
                        match data_event(bytes, text) {
                            Ok(event) => event,
                            Err(err) => return Err(self.fail(err, out)),
                        }
                    }
                    Deliver::Message { text } => {
                        self.release = Release::Message;
                        data_event(self.rx.as_deref().map_or(&[][..], |r| &r.message), text)?
                    }
                    Deliver::Control(opcode) => {
                        self.release = Release::Control;
                        control_event(opcode, self.rx.as_deref().map_or(&[][..], |r| &r.control))
                    }
                    Deliver::Text => {
                        self.release = Release::Text;
                        Event::Text(pmd_ref(&self.ext).map_or("", |d| d.text.as_str()))
                    }
                };
                Ok(Received {
                    consumed,
                    event: Some(event),
                })
            }
            Err(err) => Err(self.fail(err, out)),
        }
    }

    /// Feeds all of `input` and returns every event it completes, owned. A convenience for
    /// tests, fuzzers and simple clients; servers use [`WebSocketCore::receive`].
    pub fn receive_all(
        &mut self,
        config: &Config,
        input: &mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<Vec<OwnedEvent>, ProtocolError> {
        let mut events = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let rest = input.get_mut(pos..).unwrap_or_default();
            let r = self.receive(config, rest, out)?;
            pos += r.consumed;
            match r.event {
                Some(e) => events.push(e.to_owned_event()),
                None => break,
            }
        }
        Ok(events)
    }

    /// The hot path, taken when nothing is in progress (no receive state): an unfragmented,
    /// uncompressed data message whose frame lies whole in `input` is checked, unmasked in
    /// place and handed out from the input without allocating (RFC 6455 §5.2, §5.3, §5.6).
    /// `None` when the input holds anything else; [`Self::receive_inner`] then takes it,
    /// re-reading the header with the full set of rules.
    fn receive_whole(
        &mut self,
        config: &Config,
        input: &mut [u8],
    ) -> Result<Option<(usize, Option<Deliver>)>, ProtocolError> {
        let HeaderStatus::Complete(h) = frame::parse_header(input)? else {
            return Ok(None);
        };
        if !h.fin || h.rsv != 0 || !matches!(h.opcode, Opcode::Text | Opcode::Binary) {
            return Ok(None);
        }
        let start = h.header_len();
        let Some(end) = usize::try_from(h.payload_len)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&end| end <= input.len())
        else {
            return Ok(None);
        };
        // The same checks, in the same order, as `begin_frame` makes for such a frame.
        let allowed_rsv = if pmd_ref(&self.ext).is_some() { RSV1 } else { 0 };
        check_header(&h, self.role, allowed_rsv)?;
        if h.payload_len > config.max_frame_size {
            return Err(ProtocolError::FrameTooLarge);
        }
        if h.payload_len > config.max_message_size as u64 {
            return Err(ProtocolError::MessageTooLarge);
        }
        if let Some(d) = pmd(&mut self.ext) {
            // RFC 7692 §6: without RSV1 the message is not compressed.
            d.receiving_compressed = false;
            d.compressed_in = 0;
        }
        if let (Some(mask), Some(payload)) = (h.mask, input.get_mut(start..end)) {
            apply_mask(payload, mask, 0);
        }
        let text = h.opcode == Opcode::Text;
        Ok(Some((end, Some(Deliver::Input { start, end, text }))))
    }

    /// The general path: the receive state is taken out of its box (allocated if absent)
    /// for the duration, and put back after.
    fn receive_inner(
        &mut self,
        config: &Config,
        input: &mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Deliver>), ProtocolError> {
        let mut rx = self.rx.take().unwrap_or_default();
        let received = self.receive_frames(config, &mut rx, input, out);
        // Kept only if something is still in progress or lent out; an event that lends an
        // empty buffer reads the same empty slice without it.
        if !rx.is_idle() {
            self.rx = Some(rx);
        }
        received
    }

    fn receive_frames(
        &mut self,
        config: &Config,
        rx: &mut Receiving,
        input: &mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Deliver>), ProtocolError> {
        let mut pos = 0;
        loop {
            let Some(mut frame) = rx.frame else {
                // Between frames: read (the rest of) a header.
                match rx.read_header(input.get(pos..).unwrap_or_default())? {
                    (used, Some(header)) => {
                        pos += used;
                        self.begin_frame(config, rx, &header)?;
                        continue;
                    }
                    (used, None) => return Ok((pos + used, None)),
                }
            };
            let avail = input.len() - pos;
            let remaining = frame.len - frame.received;
            let n = usize::try_from(remaining).map_or(avail, |r| r.min(avail));
            let chunk = input.get_mut(pos..pos + n).unwrap_or_default();
            // A server's frames are not masked (key all zero): skip the pass over the bytes.
            if frame.mask != [0; 4] {
                apply_mask(chunk, frame.mask, (frame.received % 4) as usize);
            }
            let whole_frame_here = frame.received == 0 && n as u64 == frame.len;
            frame.received += n as u64;
            let start = pos;
            pos += n;
            let complete = frame.received == frame.len;
            rx.frame = if complete { None } else { Some(frame) };

            if frame.opcode.is_control() {
                // At most 125 bytes: always gathered in `control`, which keeps this path simple.
                if rx.control.capacity() == 0 {
                    rx.control.reserve_exact(MAX_CONTROL_PAYLOAD);
                }
                rx.control.extend_from_slice(chunk);
                if !complete {
                    return Ok((pos, None)); // the input ran out inside the frame
                }
                self.handle_control(config, frame.opcode, &rx.control, out)?;
                return Ok((pos, Some(Deliver::Control(frame.opcode))));
            }

            let text = rx.message_kind == Opcode::Text;
            if let Some(d) = pmd(&mut self.ext).filter(|d| d.receiving_compressed) {
                // A compressed message (RFC 7692 §6.2): inflate as the bytes come, bounded by
                // the message limit, and check UTF-8 on the inflated bytes so invalid text
                // still fails fast, across frames (RFC 6455 §8.1).
                let limit = config.max_message_size;
                let before = rx.message.len();
                let last = complete && frame.fin;
                let inflated = d.inflater.inflate(chunk, &mut rx.message, limit).and_then(|()| {
                    if last {
                        d.inflater.finish_message(&mut rx.message, limit)
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = inflated {
                    // The rule broken first in the inflated stream wins, wherever the reads were
                    // cut: bad UTF-8 before the limit, then the limit, then bad DEFLATE data.
                    // (Whole, one call may inflate past a bad character before failing; byte by
                    // byte, the character would have failed first. Found by fuzzing.)
                    let end = rx.message.len().min(limit);
                    if text && rx.utf8.feed(rx.message.get(before..end).unwrap_or_default()).is_err() {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    return Err(if rx.message.len() > limit {
                        ProtocolError::DecompressedMessageTooLarge
                    } else {
                        inflate_error(e)
                    });
                }
                if last {
                    d.receiving_compressed = false;
                    rx.fragmented = false;
                    if !text {
                        return Ok((pos, Some(Deliver::Message { text })));
                    }
                    // The last piece is checked with the whole, in the conversion itself.
                    return match String::from_utf8(std::mem::take(&mut rx.message)) {
                        Ok(s) => {
                            if let Some(d) = pmd(&mut self.ext) {
                                d.text = s;
                            }
                            Ok((pos, Some(Deliver::Text)))
                        }
                        Err(_) => Err(ProtocolError::InvalidUtf8),
                    };
                }
                if text && rx.utf8.feed(rx.message.get(before..).unwrap_or_default()).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                if pos == input.len() && !complete {
                    return Ok((pos, None));
                }
                continue;
            }
            if whole_frame_here && frame.fin && frame.opcode != Opcode::Continuation {
                // Fast path: the whole unfragmented message is here; hand out the input slice.
                // Its UTF-8 (text) is checked once, by `receive` turning it into a `&str`.
                return Ok((pos, Some(Deliver::Input { start, end: pos, text })));
            }
            // Slow path: reassemble, checking UTF-8 as the bytes come so that invalid text fails
            // before the message (or even the frame) is complete (RFC 6455 §8.1).
            if text && rx.utf8.feed(chunk).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            rx.message.extend_from_slice(chunk);
            if complete && frame.fin {
                if text && rx.utf8.finish().is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                rx.fragmented = false;
                return Ok((pos, Some(Deliver::Message { text })));
            }
            if pos == input.len() && !complete {
                return Ok((pos, None));
            }
        }
    }

    /// Applies the rules that depend on the connection to a new frame's header
    /// (RFC 6455 §5.1, §5.2, §5.4, §10.4).
    fn begin_frame(&mut self, config: &Config, rx: &mut Receiving, h: &FrameHeader) -> Result<(), ProtocolError> {
        let allowed_rsv = if pmd_ref(&self.ext).is_some() { RSV1 } else { 0 };
        check_header(h, self.role, allowed_rsv)?;
        if h.payload_len > config.max_frame_size {
            return Err(ProtocolError::FrameTooLarge);
        }
        match h.opcode {
            Opcode::Continuation if !rx.fragmented => return Err(ProtocolError::UnexpectedContinuation),
            Opcode::Text | Opcode::Binary if rx.fragmented => return Err(ProtocolError::ExpectedContinuation),
            Opcode::Text | Opcode::Binary => {
                rx.message_kind = h.opcode;
                rx.fragmented = !h.fin;
                rx.utf8.reset();
                if let Some(d) = pmd(&mut self.ext) {
                    // RFC 7692 §6: RSV1 on the first frame marks a compressed message.
                    d.receiving_compressed = h.rsv & RSV1 != 0;
                    d.compressed_in = 0;
                }
            }
            _ => {}
        }
        let max = config.max_message_size as u64;
        match pmd(&mut self.ext).filter(|d| d.receiving_compressed) {
            // The inflated size is checked while inflating; the compressed bytes are bounded
            // too, so a message of empty blocks cannot go on for ever.
            Some(d) if !h.opcode.is_control() => {
                d.compressed_in = d.compressed_in.saturating_add(h.payload_len);
                if d.compressed_in > max {
                    return Err(ProtocolError::MessageTooLarge);
                }
            }
            _ => {
                if !h.opcode.is_control() && (rx.message.len() as u64).saturating_add(h.payload_len) > max {
                    return Err(ProtocolError::MessageTooLarge);
                }
            }
        }
        rx.frame = Some(InFrame {
            opcode: h.opcode,
            fin: h.fin,
            mask: h.mask.unwrap_or([0; 4]),
            len: h.payload_len,
            received: 0,
        });
        Ok(())
    }

    /// Validates a complete control frame's `payload` and queues the protocol's answer
    /// (RFC 6455 §5.5.1–§5.5.3).
    fn handle_control(
        &mut self,
        config: &Config,
        opcode: Opcode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        match opcode {
            Opcode::Ping if config.auto_pong && self.state == State::Open => {
                let mask = self.next_mask();
                frame::encode_frame(out, true, Opcode::Pong, mask, payload);
            }
            Opcode::Close => {
                let code = parse_close_payload(payload)?;
                if self.close_code.is_none() {
                    self.close_code = Some(code.unwrap_or(CloseCode::NO_STATUS));
                }
                if self.state == State::Open {
                    // RFC 6455 §5.5.1: reply with a Close frame, "typically echoing the status
                    // code it received".
                    let payload = code.map(|c| c.0.to_be_bytes());
                    let mask = self.next_mask();
                    frame::encode_frame(
                        out,
                        true,
                        Opcode::Close,
                        mask,
                        payload.as_ref().map_or(&[][..], |p| &p[..]),
                    );
                }
                self.state = State::Closed;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The rules a header breaks given the connection, beyond those [`frame::parse_header`]
/// checks: RSV bits not negotiated (RFC 6455 §5.2), RSV1 only on a data message's first frame
/// (RFC 7692 §6), and masking by role (RFC 6455 §5.1). `allowed_rsv` holds the RSV bits
/// negotiated extensions define: [`RSV1`] with permessage-deflate, 0 without extensions.
pub fn check_header(h: &FrameHeader, role: Role, allowed_rsv: u8) -> Result<(), ProtocolError> {
    match h.rsv & !allowed_rsv {
        0 => {}
        RSV1 => return Err(ProtocolError::Rsv1WithoutExtension),
        _ => return Err(ProtocolError::ReservedBitsSet(h.rsv)),
    }
    if h.rsv & RSV1 != 0 {
        if h.opcode.is_control() {
            return Err(ProtocolError::CompressedControlFrame);
        }
        if h.opcode == Opcode::Continuation {
            return Err(ProtocolError::CompressedContinuation);
        }
    }
    match (role, h.mask.is_some()) {
        (Role::Server, false) => Err(ProtocolError::UnmaskedClientFrame),
        (Role::Client, true) => Err(ProtocolError::MaskedServerFrame),
        _ => Ok(()),
    }
}

/// The one-pass reading of the commonest frames a server gets (RFC 6455 §5.2, §5.3): FIN set,
/// RSV bits clear, masked, a 7-bit or minimal 16-bit length of at most `limit`, the whole
/// payload within `input`, and Text or Binary, or a Close, Ping or Pong with the 7-bit length
/// (at most 125, §5.5). Such a frame breaks none of the rules [`frame::parse_header`] and
/// [`check_header`] check for a server without extensions, and cannot be a continuation or
/// interleave a fragmented message when nothing is in progress. Unmasks the payload in place
/// and returns where it lies; `None` (input untouched) for anything else, which the general
/// path then reads with every rule.
fn small_frame(input: &mut [u8], limit: u64) -> Option<SmallFrame> {
    let (text, control, b1) = match *input {
        [0x81, b1, ..] => (true, None, b1),
        [0x82, b1, ..] => (false, None, b1),
        [b0 @ 0x88..=0x8A, b1 @ 0x80..=0xFD, ..] => (false, Opcode::from_u8(b0 & 0x0F), b1),
        _ => return None,
    };
    let (start, len) = match b1 {
        // MASK set, length 0..=125 in the 7-bit field.
        0x80..=0xFD => (6, usize::from(b1 & 0x7F)),
        // MASK set, 16-bit length; one that fits the 7-bit field is not minimal (an error the
        // general path reports).
        0xFE => match *input {
            [_, _, hi, lo, ..] if u16::from_be_bytes([hi, lo]) > 125 => (8, usize::from(u16::from_be_bytes([hi, lo]))),
            _ => return None,
        },
        // Unmasked (an error for a server) or a 64-bit length: the general path.
        _ => return None,
    };
    if len as u64 > limit {
        return None;
    }
    let end = start + len;
    let (header, payload) = input.get_mut(..end)?.split_at_mut(start);
    let key = match *header {
        [.., k0, k1, k2, k3] => [k0, k1, k2, k3],
        _ => return None,
    };
    apply_mask(payload, key, 0);
    Some(SmallFrame {
        start,
        end,
        text,
        control,
    })
}

/// A frame [`small_frame`] read: its payload is `input[start..end]`.
struct SmallFrame {
    start: usize,
    end: usize,
    /// A Text frame (else Binary, or a control frame).
    text: bool,
    /// The opcode of a control frame; `None` for a data frame.
    control: Option<Opcode>,
}

fn data_event(bytes: &[u8], text: bool) -> Result<Event<'_>, ProtocolError> {
    if text {
        // A reassembled message was validated on the way in (and this converts it without
        // `unsafe`); a message handed out from the input is validated here, once.
        std::str::from_utf8(bytes)
            .map(Event::Text)
            .map_err(|_| ProtocolError::InvalidUtf8)
    } else {
        Ok(Event::Binary(bytes))
    }
}

fn control_event(opcode: Opcode, payload: &[u8]) -> Event<'_> {
    match opcode {
        Opcode::Ping => Event::Ping(payload),
        Opcode::Pong => Event::Pong(payload),
        _ => Event::Close(match payload {
            [hi, lo, reason @ ..] => Some(CloseFrame {
                code: CloseCode(u16::from_be_bytes([*hi, *lo])),
                reason: std::str::from_utf8(reason).unwrap_or_default(),
            }),
            _ => None,
        }),
    }
}
