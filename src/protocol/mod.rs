//! The per-connection WebSocket state machine, both roles (RFC 6455 §5.4–§5.5, §7, §8).
//!
//! Sans-IO: [`WebSocket::receive`] takes bytes as they came off the wire, split anywhere, and
//! returns at most one [`Event`] per call plus how many bytes it consumed; any bytes the protocol
//! itself must send back (a Pong for a Ping, the Close reply, the Close frame that fails the
//! connection) are appended to the caller's `out` buffer. Sending goes the same way: the
//! `send_*` methods append encoded frames to `out`. Nothing here touches a socket, a thread or a
//! clock.
//!
//! Zero-copy where it matters: an unfragmented message whose frame lies whole in the input is
//! unmasked in place and handed out as a slice of the input. Only a message split across frames
//! or across reads is copied, once, into the connection's reassembly buffer, which is bounded by
//! [`Config::max_message_size`].
//!
//! The close handshake is a small explicit state machine ([`State`]):
//!
//! ```text
//!            we send Close                      peer's Close arrives
//!   Open ──────────────────────▶ CloseSent ─────────────────────────▶ Closed
//!    │  peer's Close arrives: we reply                                  ▲
//!    └──────────────────────────────────────────────────────────────────┘
//!    │  the peer breaks a rule: we send Close(code) and stop reading
//!    └──────────────────────────────────────────────────────────────────▶ Failed
//! ```

use crate::deflate::{
    encode_compressed_frame, DeflateParams, DEFAULT_COMPRESSION_LEVEL, DEFAULT_COMPRESSION_THRESHOLD,
};
use crate::error::{ProtocolError, SendError};
use crate::frame::{
    self, apply_mask, CloseCode, FrameHeader, HeaderStatus, Opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, RSV1,
};
use crate::utf8::Utf8Validator;

mod deflate;
use deflate::{inflate_error, PerMessageDeflate};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_deflate;

/// Which end of the connection this state machine plays; it decides who masks (RFC 6455 §5.1,
/// §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives masked frames, sends unmasked ones.
    Server,
    /// Receives unmasked frames, sends masked ones.
    Client,
}

/// Default cap on one frame's payload and on one message: 64 MiB (RFC 6455 §10.4 asks
/// implementations to limit both). Autobahn's 9.* cases send 16 MiB messages.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Limits and behaviour of a [`WebSocket`] (RFC 6455 §10.4). Build it with
/// `Config::default()` and the setters; every field has a documented default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The largest frame payload accepted; a larger declared length fails with 1009 as soon as
    /// the header is read, before any payload is buffered. Default 64 MiB.
    pub max_frame_size: u64,
    /// The largest message accepted, all fragments together; this also bounds the bytes held
    /// for a fragmented message (bytes, not a fragment count: 65,536 fragments of 64 bytes are
    /// fine). Default 64 MiB.
    pub max_message_size: usize,
    /// Answer each Ping with a Pong carrying the same payload (RFC 6455 §5.5.2). Default true.
    pub auto_pong: bool,
    /// With permessage-deflate: messages shorter than this go uncompressed (RFC 7692 §6 allows
    /// any message to). Default [`DEFAULT_COMPRESSION_THRESHOLD`] (128 bytes, measured for
    /// the shared mode; with context takeover 16 pays off).
    pub deflate_threshold: usize,
    /// With permessage-deflate: the zlib level 0..=9 messages are compressed at. Default
    /// [`DEFAULT_COMPRESSION_LEVEL`] (1, measured).
    pub deflate_level: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: DEFAULT_MAX_MESSAGE_SIZE as u64,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            auto_pong: true,
            deflate_threshold: DEFAULT_COMPRESSION_THRESHOLD,
            deflate_level: DEFAULT_COMPRESSION_LEVEL,
        }
    }
}

impl Config {
    /// Sets [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: u64) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`Config::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`Config::auto_pong`].
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }

    /// Sets [`Config::deflate_threshold`].
    pub fn deflate_threshold(mut self, bytes: usize) -> Self {
        self.deflate_threshold = bytes;
        self
    }

    /// Sets [`Config::deflate_level`] (at most 9).
    pub fn deflate_level(mut self, level: u8) -> Self {
        self.deflate_level = level.min(9);
        self
    }
}

/// Where the connection is in the closing handshake (RFC 6455 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a Close frame and wait for the peer's (RFC 6455 §7.1.2). Data may still arrive;
    /// we send no more data frames (RFC 6455 §5.5.1).
    CloseSent,
    /// Both Close frames have been exchanged; the TCP connection can be closed (RFC 6455
    /// §7.1.1: the server closes it first).
    Closed,
    /// The peer broke a rule; we sent a Close frame with the error's code and read nothing more
    /// (RFC 6455 §7.1.7, "_Fail the WebSocket Connection_").
    Failed,
}

/// The status code and reason of a Close frame (RFC 6455 §5.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code (RFC 6455 §7.4).
    pub code: CloseCode,
    /// The reason, UTF-8 (RFC 6455 §5.5.1); may be empty.
    pub reason: &'a str,
}

/// Something that arrived, borrowed from the input or from the connection's buffer
/// (RFC 6455 §5.6, §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text message, already checked to be UTF-8 (RFC 6455 §5.6).
    Text(&'a str),
    /// A whole binary message (RFC 6455 §5.6).
    Binary(&'a [u8]),
    /// A Ping (RFC 6455 §5.5.2); with [`Config::auto_pong`] the Pong is already in `out`.
    Ping(&'a [u8]),
    /// A Pong (RFC 6455 §5.5.3).
    Pong(&'a [u8]),
    /// The peer's Close frame (RFC 6455 §5.5.1); `None` when it carried no status code. If we
    /// had not sent a Close, the reply is already in `out` and the state is [`State::Closed`].
    Close(Option<CloseFrame<'a>>),
}

/// An [`Event`] that owns its data, for callers that keep events past the next `receive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedEvent {
    /// See [`Event::Text`].
    Text(String),
    /// See [`Event::Binary`].
    Binary(Vec<u8>),
    /// See [`Event::Ping`].
    Ping(Vec<u8>),
    /// See [`Event::Pong`].
    Pong(Vec<u8>),
    /// See [`Event::Close`]: code and reason.
    Close(Option<(CloseCode, String)>),
}

impl Event<'_> {
    /// Copies the event's data out.
    pub fn to_owned_event(&self) -> OwnedEvent {
        match *self {
            Event::Text(t) => OwnedEvent::Text(t.to_owned()),
            Event::Binary(b) => OwnedEvent::Binary(b.to_vec()),
            Event::Ping(p) => OwnedEvent::Ping(p.to_vec()),
            Event::Pong(p) => OwnedEvent::Pong(p.to_vec()),
            Event::Close(c) => OwnedEvent::Close(c.map(|c| (c.code, c.reason.to_owned()))),
        }
    }
}

/// What one call to [`WebSocket::receive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    /// How many input bytes were consumed. When `event` is `None` this is all of them.
    pub consumed: usize,
    /// The event completed by those bytes, if any.
    pub event: Option<Event<'a>>,
}

/// The frame whose payload is arriving.
#[derive(Debug, Clone, Copy)]
struct InFrame {
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
    /// The reassembled message in `self.message`.
    Message { text: bool },
    /// A control frame whose payload is in `self.control`.
    Control(Opcode),
    /// An inflated text message, validated once as a whole into `self.text`.
    Text,
}

/// One WebSocket connection's protocol state (RFC 6455 §5–§8): framing, reassembly, UTF-8,
/// limits and the close handshake.
#[derive(Debug, Clone)]
pub struct WebSocket {
    role: Role,
    state: State,
    config: Config,
    /// A header cut short by the end of the input, waiting for the rest.
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    frame: Option<InFrame>,
    /// Text or Binary: the kind of the message the current data frames belong to.
    message_kind: Opcode,
    /// A message's first frame had FIN clear, so continuations are expected (RFC 6455 §5.4).
    fragmented: bool,
    /// Reassembly buffer for messages split across frames or reads.
    message: Vec<u8>,
    /// The payload of the control frame in progress (at most 125 bytes).
    control: ControlBuf,
    /// The last event lent out `message` or `control`; clear that buffer on the next call.
    release: Release,
    utf8: Utf8Validator,
    /// The code of the Close frame we sent or received first, for logs.
    close_code: Option<CloseCode>,
    /// State of the client's masking-key generator (splitmix64); unused by servers.
    mask_state: u64,
    /// permessage-deflate, when negotiated (RFC 7692).
    deflate: Option<Box<PerMessageDeflate>>,
}

/// The payload of a control frame in progress (at most 125 bytes), allocated only while one
/// arrives: 8 bytes on every idle connection instead of a `Vec`'s 24.
#[derive(Debug, Clone, Default)]
#[allow(clippy::box_collection)] // on purpose: 8 bytes while absent, where a Vec takes 24
struct ControlBuf(Option<Box<Vec<u8>>>);

impl ControlBuf {
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.0
            .get_or_insert_with(|| Box::new(Vec::with_capacity(MAX_CONTROL_PAYLOAD)))
            .extend_from_slice(bytes);
    }

    fn capacity(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.capacity())
    }
}

impl std::ops::Deref for ControlBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], |v| v.as_slice())
    }
}

/// Which buffer the last event borrowed, to be cleared when the next call begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    Nothing,
    Message,
    Control,
    /// `self.text` holds the message buffer, turned into a `String`; give it back.
    Text,
}

/// Buffers bigger than this are freed after use rather than kept for the next message, so an
/// idle connection holds no large allocation.
const KEEP_BUFFER_CAPACITY: usize = 128 * 1024;

impl WebSocket {
    /// A connection in `role` with the given limits, in the Open state (the handshake is done).
    pub fn new(role: Role, config: Config) -> Self {
        let mut seed = [0u8; 8];
        if role == Role::Client && getrandom::getrandom(&mut seed).is_err() {
            let fallback = crate::handshake::client::fallback_random();
            seed.copy_from_slice(fallback.get(..8).unwrap_or(&[1; 8]));
        }
        Self::with_mask_seed(role, config, u64::from_ne_bytes(seed))
    }

    /// A server-side connection with the given limits.
    pub fn server(config: Config) -> Self {
        Self::new(Role::Server, config)
    }

    /// A client-side connection with the given limits; masking keys come from OS entropy.
    pub fn client(config: Config) -> Self {
        Self::new(Role::Client, config)
    }

    /// Like [`WebSocket::new`] with a fixed seed for client masking keys, so tests and fuzzers
    /// are reproducible. (RFC 6455 §5.3 wants unpredictable keys in real clients.)
    pub fn with_mask_seed(role: Role, config: Config, seed: u64) -> Self {
        WebSocket {
            role,
            state: State::Open,
            config,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            message_kind: Opcode::Binary,
            fragmented: false,
            message: Vec::new(),
            control: ControlBuf::default(),
            release: Release::Nothing,
            utf8: Utf8Validator::new(),
            close_code: None,
            mask_state: seed,
            deflate: None,
        }
    }

    /// Turns on permessage-deflate with the parameters agreed in the handshake (RFC 7692 §7):
    /// from [`negotiate_deflate`](crate::handshake::deflate::negotiate_deflate) on a server,
    /// from [`ResponseStatus::Accepted`](crate::handshake::client::ResponseStatus) on a client.
    /// Call it before the first frame. [`WebSocket::receive`] then inflates compressed messages
    /// and the `send_text` / `send_binary` methods compress messages of at least
    /// [`Config::deflate_threshold`] bytes. No compressor is allocated until one is needed.
    pub fn with_deflate(mut self, params: DeflateParams) -> Self {
        self.deflate = Some(Box::new(PerMessageDeflate::new(
            params,
            self.role,
            self.config.deflate_level,
        )));
        self
    }

    /// The permessage-deflate parameters in force, if it was negotiated.
    pub fn deflate_params(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref().map(|d| &d.params)
    }

    /// Heap bytes this connection holds now: the reassembly and control buffers (inflated
    /// output included) and the (de)compressor states, for a shell that charges connections to
    /// a memory budget. An idle connection holds nothing here without deflate and in the
    /// shared mode; with context takeover, its compressor and inflater once used.
    pub fn memory_held(&self) -> usize {
        self.message.capacity() + self.control.capacity() + self.deflate.as_ref().map_or(0, |d| d.held_bytes())
    }

    /// Changes [`Config::max_message_size`] for the bytes still to come (a shell may shrink a
    /// connection's share of a memory budget under pressure). A message already past the new
    /// limit fails when it next grows.
    pub fn set_max_message_size(&mut self, bytes: usize) {
        self.config.max_message_size = bytes;
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the connection is in the closing handshake.
    pub fn state(&self) -> State {
        self.state
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True once the transport can be closed: the close handshake finished, or the connection
    /// failed (RFC 6455 §7.1.1, §7.1.7).
    pub fn is_terminated(&self) -> bool {
        matches!(self.state, State::Closed | State::Failed)
    }

    /// Whether data frames may still be sent (no Close frame sent yet, RFC 6455 §5.5.1).
    pub fn can_send(&self) -> bool {
        self.state == State::Open
    }

    /// The status code of the first Close frame sent or received, if any (RFC 6455 §7.1.5).
    pub fn close_code(&self) -> Option<CloseCode> {
        self.close_code
    }

    /// Bytes currently held for a message in progress (the reassembly buffer).
    pub fn buffered_message_len(&self) -> usize {
        self.message.len()
    }

    /// Payload bytes the data frame now arriving has declared and not yet delivered: what the
    /// reassembly buffer may still grow by before the frame ends. A server charging memory to
    /// a budget counts these too, so frames admitted one after another cannot together
    /// promise more than the budget holds.
    pub fn incoming_reserved(&self) -> u64 {
        match self.frame {
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
            Release::Control => self.control = ControlBuf::default(),
            Release::Message if self.message.capacity() > KEEP_BUFFER_CAPACITY => self.message = Vec::new(),
            Release::Message => self.message.clear(),
            Release::Text => {
                let text = self
                    .deflate
                    .as_mut()
                    .map(|d| std::mem::take(&mut d.text))
                    .unwrap_or_default();
                let mut buf = text.into_bytes();
                buf.clear();
                if buf.capacity() <= KEEP_BUFFER_CAPACITY {
                    self.message = buf;
                }
            }
        }
    }

    /// Consumes bytes from the peer until one event is complete or the input is used up
    /// (RFC 6455 §5.2–§5.6). The input is unmasked in place.
    ///
    /// Bytes the protocol must send in answer (Pong, Close reply, or the Close frame that fails
    /// the connection) are appended to `out`. On a broken rule the error is returned, the
    /// Close frame carrying its code is in `out`, and the state is [`State::Failed`]; from then
    /// on all input is ignored.
    pub fn receive<'a>(&'a mut self, input: &'a mut [u8], out: &mut Vec<u8>) -> Result<Received<'a>, ProtocolError> {
        self.release_event();
        if self.is_terminated() {
            return Ok(Received {
                consumed: input.len(),
                event: None,
            });
        }
        match self.receive_inner(input, out) {
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
                        data_event(&self.message, text)?
                    }
                    Deliver::Control(opcode) => {
                        self.release = Release::Control;
                        control_event(opcode, &self.control)
                    }
                    Deliver::Text => {
                        self.release = Release::Text;
                        Event::Text(self.deflate.as_ref().map_or("", |d| d.text.as_str()))
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
    /// tests, fuzzers and simple clients; servers use [`WebSocket::receive`].
    pub fn receive_all(&mut self, input: &mut [u8], out: &mut Vec<u8>) -> Result<Vec<OwnedEvent>, ProtocolError> {
        let mut events = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let rest = input.get_mut(pos..).unwrap_or_default();
            let r = self.receive(rest, out)?;
            pos += r.consumed;
            match r.event {
                Some(e) => events.push(e.to_owned_event()),
                None => break,
            }
        }
        Ok(events)
    }

    fn receive_inner(
        &mut self,
        input: &mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Deliver>), ProtocolError> {
        let mut pos = 0;
        loop {
            let Some(mut frame) = self.frame else {
                // Between frames: read (the rest of) a header.
                match self.read_header(input.get(pos..).unwrap_or_default())? {
                    (used, Some(header)) => {
                        pos += used;
                        self.begin_frame(&header)?;
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
            self.frame = if complete { None } else { Some(frame) };

            if frame.opcode.is_control() {
                // At most 125 bytes: always gathered in `control`, which keeps this path simple.
                self.control.extend_from_slice(chunk);
                if !complete {
                    return Ok((pos, None)); // the input ran out inside the frame
                }
                self.handle_control(frame.opcode, out)?;
                return Ok((pos, Some(Deliver::Control(frame.opcode))));
            }

            let text = self.message_kind == Opcode::Text;
            if let Some(d) = self.deflate.as_mut().filter(|d| d.receiving_compressed) {
                // A compressed message (RFC 7692 §6.2): inflate as the bytes come, bounded by
                // the message limit, and check UTF-8 on the inflated bytes so invalid text
                // still fails fast, across frames (RFC 6455 §8.1).
                let limit = self.config.max_message_size;
                let before = self.message.len();
                let last = complete && frame.fin;
                let inflated = d.inflater.inflate(chunk, &mut self.message, limit).and_then(|()| {
                    if last {
                        d.inflater.finish_message(&mut self.message, limit)
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = inflated {
                    // The rule broken first in the inflated stream wins, wherever the reads were
                    // cut: bad UTF-8 before the limit, then the limit, then bad DEFLATE data.
                    // (Whole, one call may inflate past a bad character before failing; byte by
                    // byte, the character would have failed first. Found by fuzzing.)
                    let end = self.message.len().min(limit);
                    if text
                        && self
                            .utf8
                            .feed(self.message.get(before..end).unwrap_or_default())
                            .is_err()
                    {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    return Err(if self.message.len() > limit {
                        ProtocolError::DecompressedMessageTooLarge
                    } else {
                        inflate_error(e)
                    });
                }
                if last {
                    d.receiving_compressed = false;
                    self.fragmented = false;
                    if !text {
                        return Ok((pos, Some(Deliver::Message { text })));
                    }
                    // The last piece is checked with the whole, in the conversion itself.
                    return match String::from_utf8(std::mem::take(&mut self.message)) {
                        Ok(s) => {
                            if let Some(d) = self.deflate.as_mut() {
                                d.text = s;
                            }
                            Ok((pos, Some(Deliver::Text)))
                        }
                        Err(_) => Err(ProtocolError::InvalidUtf8),
                    };
                }
                if text && self.utf8.feed(self.message.get(before..).unwrap_or_default()).is_err() {
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
            if text && self.utf8.feed(chunk).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            self.message.extend_from_slice(chunk);
            if complete && frame.fin {
                if text && self.utf8.finish().is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                self.fragmented = false;
                return Ok((pos, Some(Deliver::Message { text })));
            }
            if pos == input.len() && !complete {
                return Ok((pos, None));
            }
        }
    }

    /// Reads a header from the saved partial header plus `input`. Returns the input bytes used
    /// and the header, or `None` (with all input saved) when it is still incomplete.
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

    /// Applies the rules that depend on the connection to a new frame's header
    /// (RFC 6455 §5.1, §5.2, §5.4, §10.4).
    fn begin_frame(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        let allowed_rsv = if self.deflate.is_some() { RSV1 } else { 0 };
        check_header(h, self.role, allowed_rsv)?;
        if h.payload_len > self.config.max_frame_size {
            return Err(ProtocolError::FrameTooLarge);
        }
        match h.opcode {
            Opcode::Continuation if !self.fragmented => return Err(ProtocolError::UnexpectedContinuation),
            Opcode::Text | Opcode::Binary if self.fragmented => return Err(ProtocolError::ExpectedContinuation),
            Opcode::Text | Opcode::Binary => {
                self.message_kind = h.opcode;
                self.fragmented = !h.fin;
                self.utf8.reset();
                if let Some(d) = self.deflate.as_mut() {
                    // RFC 7692 §6: RSV1 on the first frame marks a compressed message.
                    d.receiving_compressed = h.rsv & RSV1 != 0;
                    d.compressed_in = 0;
                }
            }
            _ => {}
        }
        let max = self.config.max_message_size as u64;
        match self.deflate.as_mut().filter(|d| d.receiving_compressed) {
            // The inflated size is checked while inflating; the compressed bytes are bounded
            // too, so a message of empty blocks cannot go on for ever.
            Some(d) if !h.opcode.is_control() => {
                d.compressed_in = d.compressed_in.saturating_add(h.payload_len);
                if d.compressed_in > max {
                    return Err(ProtocolError::MessageTooLarge);
                }
            }
            _ => {
                if !h.opcode.is_control() && (self.message.len() as u64).saturating_add(h.payload_len) > max {
                    return Err(ProtocolError::MessageTooLarge);
                }
            }
        }
        self.frame = Some(InFrame {
            opcode: h.opcode,
            fin: h.fin,
            mask: h.mask.unwrap_or([0; 4]),
            len: h.payload_len,
            received: 0,
        });
        Ok(())
    }

    /// Validates a complete control frame in `self.control` and queues the protocol's answer
    /// (RFC 6455 §5.5.1–§5.5.3).
    fn handle_control(&mut self, opcode: Opcode, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        match opcode {
            Opcode::Ping if self.config.auto_pong && self.state == State::Open => {
                let mask = self.next_mask();
                frame::encode_frame(out, true, Opcode::Pong, mask, &self.control);
            }
            Opcode::Close => {
                let code = parse_close_payload(&self.control)?;
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

    /// Fails the connection (RFC 6455 §7.1.7): one Close frame with the error's code, unless a
    /// Close was already sent, then stop reading.
    fn fail(&mut self, err: ProtocolError, out: &mut Vec<u8>) -> ProtocolError {
        if self.state == State::Open {
            self.write_close(err.close_code(), err.close_reason(), out);
            self.close_code = Some(err.close_code());
        }
        self.state = State::Failed;
        self.frame = None;
        self.message = Vec::new();
        self.control = ControlBuf::default();
        if let Some(d) = self.deflate.as_mut() {
            d.text = String::new();
            d.inflater.release();
            d.compressor.release();
        }
        err
    }

    fn write_close(&mut self, code: CloseCode, reason: &str, out: &mut Vec<u8>) {
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        payload[..2].copy_from_slice(&code.0.to_be_bytes());
        let reason = truncate_utf8(reason, MAX_CONTROL_PAYLOAD - 2);
        payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
        let mask = self.next_mask();
        frame::encode_frame(out, true, Opcode::Close, mask, &payload[..2 + reason.len()]);
    }

    /// The masking key for the next frame we send: a fresh one for a client (RFC 6455 §5.3),
    /// none for a server.
    fn next_mask(&mut self) -> Option<[u8; 4]> {
        if self.role == Role::Server {
            return None;
        }
        // splitmix64
        self.mask_state = self.mask_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.mask_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Some((z as u32).to_ne_bytes())
    }

    /// Appends one frame to `out` (RFC 6455 §5.2), masked if we are a client. This is the
    /// low-level form for sending a message in fragments: the first frame carries Text or
    /// Binary, the rest Continuation, the last one `fin`.
    pub fn send_frame(
        &mut self,
        opcode: Opcode,
        fin: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if opcode.is_control() && (payload.len() > MAX_CONTROL_PAYLOAD || !fin) {
            return Err(SendError::ControlFrameTooLong);
        }
        if self.state != State::Open {
            return Err(SendError::Closing);
        }
        let mask = self.next_mask();
        frame::encode_frame(out, fin, opcode, mask, payload);
        Ok(())
    }

    /// The header of a data frame whose payload the caller will write itself; see
    /// [`data_frame_header`].
    pub fn data_frame_header(
        &self,
        opcode: Opcode,
        fin: bool,
        payload_len: usize,
    ) -> Result<frame::HeaderBuf, SendError> {
        data_frame_header(self.role, self.state, opcode, fin, payload_len)
    }

    /// Appends a text message, in one frame, to `out` (RFC 6455 §5.6); compressed with
    /// permessage-deflate when it was negotiated and the message is at least
    /// [`Config::deflate_threshold`] bytes (RFC 7692 §6.1).
    pub fn send_text(&mut self, text: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(Opcode::Text, text.as_bytes(), out)
    }

    /// Appends a binary message, in one frame, to `out` (RFC 6455 §5.6); compressed like
    /// [`WebSocket::send_text`].
    pub fn send_binary(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(Opcode::Binary, data, out)
    }

    /// Appends one whole data message (Text or Binary) by opcode, compressed as
    /// [`WebSocket::send_text`] would: for a caller that holds a message by its opcode, such as
    /// a server re-encoding a published frame for one subscriber.
    pub fn send_frame_compressed(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if opcode.is_control() || opcode == Opcode::Continuation {
            return Err(SendError::ControlFrameTooLong);
        }
        self.send_message(opcode, payload, out)
    }

    /// One whole message, compressed (RSV1 set, RFC 7692 §6.1) or not.
    ///
    /// Without context takeover a compressed message that came out no smaller is replaced by
    /// the plain one. With context takeover it is sent anyway: the compressor's window now
    /// holds it, and the peer's window must too (RFC 7692 §7.2.3.2: uncompressed messages do
    /// not enter the window).
    fn send_message(&mut self, opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::Closing);
        }
        let mask = self.next_mask();
        let threshold = self.config.deflate_threshold;
        if let Some(d) = self.deflate.as_mut() {
            if payload.len() >= threshold && d.compressor.can_compress() {
                let start = out.len();
                if encode_compressed_frame(&mut d.compressor, opcode, payload, mask, out).is_ok() {
                    let plain_len =
                        frame::encode_header(true, opcode, mask, payload.len() as u64).len() + payload.len();
                    if out.len() - start < plain_len || !d.compressor.direction().no_context_takeover {
                        return Ok(());
                    }
                    out.truncate(start);
                }
                // On a compressor error nothing was appended and its state is gone: the next
                // compressed message starts from an empty window, which the peer can always read.
            }
        }
        frame::encode_frame(out, true, opcode, mask, payload);
        Ok(())
    }

    /// Appends a Ping (RFC 6455 §5.5.2).
    pub fn send_ping(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_frame(Opcode::Ping, true, payload, out)
    }

    /// Appends an unsolicited Pong, e.g. a unidirectional heartbeat (RFC 6455 §5.5.3).
    pub fn send_pong(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_frame(Opcode::Pong, true, payload, out)
    }

    /// Starts the closing handshake (RFC 6455 §7.1.2): appends a Close frame with `code` and
    /// `reason` (cut at a character boundary to fit 123 bytes) and moves to
    /// [`State::CloseSent`]. If the peer's Close already arrived, the handshake is over and
    /// this returns [`SendError::Closing`].
    pub fn close(&mut self, code: CloseCode, reason: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        if !code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        if self.state != State::Open {
            return Err(SendError::Closing);
        }
        self.write_close(code, reason, out);
        self.close_code = Some(code);
        self.state = State::CloseSent;
        Ok(())
    }
}

/// The header of a data frame whose payload the caller writes itself, straight from its own
/// buffer (one vectored write, no copy into a queue), for a connection in `role` and `state`.
/// Unmasked, so only for the server role: a client's payload must be masked (RFC 6455 §5.3)
/// and goes through [`WebSocket::send_frame`]. No data frame once a Close was sent
/// (RFC 6455 §5.5.1). A free function so a caller holding a message borrowed from the
/// connection can still frame its answer from a snapshot of the state.
pub fn data_frame_header(
    role: Role,
    state: State,
    opcode: Opcode,
    fin: bool,
    payload_len: usize,
) -> Result<frame::HeaderBuf, SendError> {
    if role == Role::Client {
        return Err(SendError::ClientMustMask);
    }
    if opcode.is_control() && (payload_len > MAX_CONTROL_PAYLOAD || !fin) {
        return Err(SendError::ControlFrameTooLong);
    }
    if state != State::Open {
        return Err(SendError::Closing);
    }
    Ok(frame::encode_header(fin, opcode, None, payload_len as u64))
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

/// Checks a Close frame's payload (RFC 6455 §5.5.1, §7.4): empty, or a status code allowed on
/// the wire followed by a UTF-8 reason. Returns the code, if any.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseCode>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseFrameTooShort),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            Ok(Some(code))
        }
    }
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

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}
