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
//!
//! Where each part lives:
//!
//! - this file: the types a caller meets ([`Role`], [`Config`], [`State`], [`Event`]) and the
//!   connection's state, [`WebSocket`], with its constructors and accessors;
//! - `receive`: the receive path, bytes to events (RFC 6455 §5.2–§5.6), with the rules a
//!   frame breaks given the connection ([`check_header`]);
//! - `send`: the send path, messages and control frames to bytes, masked by a client
//!   (RFC 6455 §5.3) and compressed with permessage-deflate (RFC 7692 §6.1);
//! - `close`: the close handshake and failing the connection (RFC 6455 §5.5.1, §7);
//! - `deflate`: the connection's permessage-deflate state (RFC 7692).

use crate::deflate::{DeflateParams, DEFAULT_COMPRESSION_LEVEL, DEFAULT_COMPRESSION_THRESHOLD};
use crate::error::{ProtocolError, SendError};
use crate::frame::{self, CloseCode, Opcode};

mod close;
mod deflate;
mod receive;
mod send;
use deflate::PerMessageDeflate;
use receive::{Receiving, Release};

pub use close::parse_close_payload;
pub use receive::check_header;
pub use send::data_frame_header;

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

/// One WebSocket connection's protocol state (RFC 6455 §5–§8): framing, reassembly, UTF-8,
/// limits and the close handshake. A [`WebSocketCore`] with its own [`Config`]: what a client,
/// a test or a single connection wants. A server holding many connections keeps one `Config`
/// for all of them and a [`WebSocketCore`] per connection instead.
#[derive(Debug, Clone)]
pub struct WebSocket {
    core: WebSocketCore,
    config: Config,
}

/// One WebSocket connection's protocol state without its limits: every method that needs a
/// limit takes the [`Config`] by reference. For a shell that serves many connections under
/// the same limits (a server loop), so each connection does not carry its own copy (32 bytes,
/// a tenth of an idle connection). Passing the same `Config` on every call is the caller's
/// contract; a call may pass a tighter one (a server shrinking
/// [`Config::max_message_size`] under memory pressure), which governs the bytes of that call.
#[derive(Debug, Clone)]
pub struct WebSocketCore {
    role: Role,
    state: State,
    /// What is cut across reads or spread over frames: a partial header, the frame in
    /// progress, a fragmented message, a control frame's payload, the UTF-8 state. Boxed and
    /// present only while something is in progress (or lent out by the last event), so an
    /// idle connection pays one pointer; a whole frame within one read never allocates it.
    rx: Option<Box<Receiving>>,
    /// The last event lent out `rx`'s `message` or `control`; clear that buffer on the next
    /// call.
    release: Release,
    /// The code of the Close frame we sent or received first, for logs.
    close_code: Option<CloseCode>,
    /// What only some connections need, boxed so a server without permessage-deflate pays
    /// one pointer: the client's masking-key generator (RFC 6455 §5.3) and permessage-deflate
    /// (RFC 7692). Always present on a client.
    ext: Option<Box<Ext>>,
}

/// The rarely needed part of a [`WebSocketCore`]; see its `ext`.
#[derive(Debug, Clone)]
pub(super) struct Ext {
    /// State of the client's masking-key generator (splitmix64); unused by servers.
    mask_state: u64,
    /// permessage-deflate, when negotiated (RFC 7692).
    deflate: Option<PerMessageDeflate>,
}

/// The permessage-deflate state inside `ext`, if negotiated. A free function over the one
/// field, so callers can keep other fields of the connection borrowed at the same time.
fn pmd(ext: &mut Option<Box<Ext>>) -> Option<&mut PerMessageDeflate> {
    ext.as_deref_mut().and_then(|e| e.deflate.as_mut())
}

/// See [`pmd`].
fn pmd_ref(ext: &Option<Box<Ext>>) -> Option<&PerMessageDeflate> {
    ext.as_deref().and_then(|e| e.deflate.as_ref())
}

/// A seed for a client's masking keys from OS entropy (RFC 6455 §5.3: unpredictable keys).
fn fresh_mask_seed() -> u64 {
    let mut seed = [0u8; 8];
    if getrandom::getrandom(&mut seed).is_err() {
        let fallback = crate::handshake::client::fallback_random();
        seed.copy_from_slice(fallback.get(..8).unwrap_or(&[1; 8]));
    }
    u64::from_ne_bytes(seed)
}

impl WebSocket {
    /// A connection in `role` with the given limits, in the Open state (the handshake is done).
    pub fn new(role: Role, config: Config) -> Self {
        WebSocket {
            core: WebSocketCore::new(role),
            config,
        }
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
            core: WebSocketCore::with_mask_seed(role, seed),
            config,
        }
    }

    /// Turns on permessage-deflate; see [`WebSocketCore::with_deflate`].
    pub fn with_deflate(mut self, params: DeflateParams) -> Self {
        self.core = self.core.with_deflate(params, &self.config);
        self
    }

    /// The state without the limits, and the limits.
    pub fn into_parts(self) -> (WebSocketCore, Config) {
        (self.core, self.config)
    }

    /// The state without the limits.
    pub fn core(&self) -> &WebSocketCore {
        &self.core
    }

    /// The permessage-deflate parameters in force, if it was negotiated.
    pub fn deflate_params(&self) -> Option<&DeflateParams> {
        self.core.deflate_params()
    }

    /// See [`WebSocketCore::memory_held`].
    pub fn memory_held(&self) -> usize {
        self.core.memory_held()
    }

    /// Changes [`Config::max_message_size`] for the bytes still to come. A message already
    /// past the new limit fails when it next grows.
    pub fn set_max_message_size(&mut self, bytes: usize) {
        self.config.max_message_size = bytes;
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.core.role
    }

    /// Where the connection is in the closing handshake.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True once the transport can be closed: the close handshake finished, or the connection
    /// failed (RFC 6455 §7.1.1, §7.1.7).
    pub fn is_terminated(&self) -> bool {
        self.core.is_terminated()
    }

    /// Whether data frames may still be sent (no Close frame sent yet, RFC 6455 §5.5.1).
    pub fn can_send(&self) -> bool {
        self.core.can_send()
    }

    /// The status code of the first Close frame sent or received, if any (RFC 6455 §7.1.5).
    pub fn close_code(&self) -> Option<CloseCode> {
        self.core.close_code
    }

    /// Bytes currently held for a message in progress (the reassembly buffer).
    pub fn buffered_message_len(&self) -> usize {
        self.core.buffered_message_len()
    }

    /// See [`WebSocketCore::incoming_reserved`].
    pub fn incoming_reserved(&self) -> u64 {
        self.core.incoming_reserved()
    }

    /// See [`WebSocketCore::release_event`].
    pub fn release_event(&mut self) {
        self.core.release_event()
    }

    /// Consumes bytes from the peer until one event is complete or the input is used up
    /// (RFC 6455 §5.2–§5.6), under this connection's limits; see [`WebSocketCore::receive`].
    pub fn receive<'a>(&'a mut self, input: &'a mut [u8], out: &mut Vec<u8>) -> Result<Received<'a>, ProtocolError> {
        self.core.receive(&self.config, input, out)
    }

    /// Feeds all of `input` and returns every event it completes, owned; see
    /// [`WebSocketCore::receive_all`].
    pub fn receive_all(&mut self, input: &mut [u8], out: &mut Vec<u8>) -> Result<Vec<OwnedEvent>, ProtocolError> {
        self.core.receive_all(&self.config, input, out)
    }

    /// Appends one frame to `out`; see [`WebSocketCore::send_frame`].
    pub fn send_frame(
        &mut self,
        opcode: Opcode,
        fin: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.core.send_frame(opcode, fin, payload, out)
    }

    /// The header of a data frame whose payload the caller will write itself; see
    /// [`data_frame_header`].
    pub fn data_frame_header(
        &self,
        opcode: Opcode,
        fin: bool,
        payload_len: usize,
    ) -> Result<frame::HeaderBuf, SendError> {
        self.core.data_frame_header(opcode, fin, payload_len)
    }

    /// Appends a text message; see [`WebSocketCore::send_text`].
    pub fn send_text(&mut self, text: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        self.core.send_text(&self.config, text, out)
    }

    /// Appends a binary message; see [`WebSocketCore::send_binary`].
    pub fn send_binary(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.core.send_binary(&self.config, data, out)
    }

    /// Appends one whole data message by opcode; see [`WebSocketCore::send_frame_compressed`].
    pub fn send_frame_compressed(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.core.send_frame_compressed(&self.config, opcode, payload, out)
    }

    /// Appends a Ping (RFC 6455 §5.5.2).
    pub fn send_ping(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.core.send_ping(payload, out)
    }

    /// Appends an unsolicited Pong (RFC 6455 §5.5.3).
    pub fn send_pong(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.core.send_pong(payload, out)
    }

    /// Starts the closing handshake; see [`WebSocketCore::close`].
    pub fn close(&mut self, code: CloseCode, reason: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        self.core.close(code, reason, out)
    }
}

impl WebSocketCore {
    /// A connection in `role`, in the Open state (the handshake is done).
    pub fn new(role: Role) -> Self {
        let seed = if role == Role::Client { fresh_mask_seed() } else { 0 };
        Self::with_mask_seed(role, seed)
    }

    /// A server-side connection.
    pub fn server() -> Self {
        Self::new(Role::Server)
    }

    /// A client-side connection; masking keys come from OS entropy.
    pub fn client() -> Self {
        Self::new(Role::Client)
    }

    /// Like [`WebSocketCore::new`] with a fixed seed for client masking keys, so tests and
    /// fuzzers are reproducible. (RFC 6455 §5.3 wants unpredictable keys in real clients.)
    pub fn with_mask_seed(role: Role, seed: u64) -> Self {
        WebSocketCore {
            role,
            state: State::Open,
            rx: None,
            release: Release::Nothing,
            close_code: None,
            // A server masks nothing (RFC 6455 §5.1), so it carries no generator.
            ext: match role {
                Role::Client => Some(Box::new(Ext {
                    mask_state: seed,
                    deflate: None,
                })),
                Role::Server => None,
            },
        }
    }

    /// Turns on permessage-deflate with the parameters agreed in the handshake (RFC 7692 §7):
    /// from [`negotiate_deflate`](crate::handshake::deflate::negotiate_deflate) on a server,
    /// from [`ResponseStatus::Accepted`](crate::handshake::client::ResponseStatus) on a client.
    /// Call it before the first frame. [`WebSocketCore::receive`] then inflates compressed
    /// messages and the `send_text` / `send_binary` methods compress messages of at least
    /// [`Config::deflate_threshold`] bytes, at `config`'s [`Config::deflate_level`]. No
    /// compressor is allocated until one is needed.
    pub fn with_deflate(mut self, params: DeflateParams, config: &Config) -> Self {
        let deflate = PerMessageDeflate::new(params, self.role, config.deflate_level);
        match self.ext.as_deref_mut() {
            Some(ext) => ext.deflate = Some(deflate),
            None => {
                self.ext = Some(Box::new(Ext {
                    mask_state: 0,
                    deflate: Some(deflate),
                }))
            }
        }
        self
    }

    /// The permessage-deflate parameters in force, if it was negotiated.
    pub fn deflate_params(&self) -> Option<&DeflateParams> {
        pmd_ref(&self.ext).map(|d| &d.params)
    }

    /// Heap bytes this connection holds now: the receive state while a frame or message is in
    /// progress, with its reassembly and control buffers (inflated output included), and the
    /// (de)compressor states, for a shell that charges connections to
    /// a memory budget. An idle connection holds nothing here without deflate and in the
    /// shared mode; with context takeover, its compressor and inflater once used.
    pub fn memory_held(&self) -> usize {
        self.rx.as_ref().map_or(0, |r| r.held_bytes())
            + self.ext.as_ref().map_or(0, |e| {
                std::mem::size_of::<Ext>() + e.deflate.as_ref().map_or(0, |d| d.heap_bytes())
            })
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the connection is in the closing handshake.
    pub fn state(&self) -> State {
        self.state
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
        self.rx.as_ref().map_or(0, |r| r.message.len())
    }
}
