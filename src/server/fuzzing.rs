//! A harness that drives one server [`Session`] the way the event loop does — bytes in, a socket
//! that takes some or none of what is queued, timers firing, the peer closing — without a
//! socket, for the `event_loop` fuzz target and tests. Not part of the public API (hidden from
//! the docs); it lives here because the session is crate-private.
//!
//! [`run`] reads its input as a list of operations and checks, after each one:
//!
//! - no panic (a panicking handler is part of the application here, and must be contained);
//! - memory bounded: what the session holds stays within a bound derived from the limits;
//! - every byte accounted for: what the socket took equals the session's `bytes_out`, and
//!   what the client side received parses as HTTP responses then valid unmasked server frames
//!   (RFC 6455 §5.1) — the server never sends a malformed frame;
//! - backpressure engaged and released: over the high-water mark the session stops reading,
//!   and once the queue is drained to half it reads again (unless closing or held);
//! - the memory budget returns to zero once the session is gone.

use super::context::LoopState;
use super::drive::{self, Step};
use super::session::{Cx, Io, Session};
use super::shared::Core;
use super::timers::Millis;
use super::{Accept, ConnId, Context, Handler, Message, RequestContext, Response, SendStatus, ServerConfig};
use crate::frame::CloseCode;
use crate::handshake::Request;
use crate::protocol::{Config, WebSocket};
use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;

/// What the fuzzed application does; each message's first byte picks an action.
pub(crate) struct FuzzApp;

impl Handler for FuzzApp {
    type State = u32;

    fn on_request(&self, request: &Request, _: &mut RequestContext<'_>) -> Response {
        if request.path() == "/panic" {
            panic!("fuzzed panic in on_request");
        }
        Response::text(200, format!("{} bytes\n", request.body().len()))
    }

    fn on_upgrade(&self, request: &Request, _: &mut RequestContext<'_>) -> Result<Accept<u32>, Response> {
        match request.path() {
            "/refuse" => Err(Response::status(403)),
            "/panic" => panic!("fuzzed panic in on_upgrade"),
            _ => Ok(Accept::new(0)),
        }
    }

    fn on_open(&self, ctx: &mut Context<'_, u32>) {
        ctx.subscribe("t");
    }

    fn on_message(&self, ctx: &mut Context<'_, u32>, message: Message<'_>) {
        *ctx.state_mut() += 1;
        match message.bytes().first().copied().unwrap_or(b'e') {
            b'p' => ctx.publish("t", message),
            b'b' => ctx.broadcast(message),
            b'o' => ctx.publish_to_others("t", message),
            b's' => ctx.subscribe("u"),
            b'u' => ctx.unsubscribe("t"),
            // A repeat once closing is `Err(Closing)`: nothing for the fuzzer to act on.
            b'c' => {
                let _ = ctx.close(CloseCode(4000), "asked to");
            }
            b'x' => panic!("fuzzed panic in on_message"),
            b'f' => {
                for _ in 0..64 {
                    if ctx.send(message) != SendStatus::Queued {
                        break;
                    }
                }
            }
            b'd' => {
                let id = ctx.id();
                let _ = ctx.send_to(id, message);
            }
            _ => {
                ctx.send(message);
            }
        }
    }

    fn on_drain(&self, ctx: &mut Context<'_, u32>) {
        ctx.send_text("drained");
    }
}

/// A socket that takes at most `room` bytes per call, then says WouldBlock.
struct Socket<'a> {
    room: usize,
    got: &'a mut Vec<u8>,
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(self.room - n);
            self.got.extend_from_slice(b.get(..take).unwrap_or_default());
            n += take;
            if n == self.room {
                break;
            }
        }
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The limits the harness runs with: small, so the fuzzer reaches them.
fn config() -> ServerConfig {
    let mut c = ServerConfig {
        threads: 1,
        max_body_size: 256,
        websocket: Config::default().max_frame_size(1024).max_message_size(2048),
        backpressure_high_water: 4096,
        max_outbound: 16 * 1024,
        max_memory: 64 * 1024,
        // Any Host: the harness drives sessions by every route whatever its input's Host
        // (the DNS rebinding rule has its own tests in host.rs).
        allowed_hosts: vec!["*".into()],
        ..ServerConfig::default()
    };
    c.request_limits.max_header_bytes = 512;
    c.request_limits.max_headers = 16;
    c
}

impl Default for SessionHarness {
    fn default() -> Self {
        SessionHarness::new()
    }
}

/// One session, its loop state, and what the client side has received.
pub struct SessionHarness {
    lp: LoopState,
    session: Option<Session<u32>>,
    /// Everything the "socket" took, in order.
    received: Vec<u8>,
    /// Bytes the peer sent that the session has not read yet.
    kernel: std::collections::VecDeque<u8>,
    /// The client side: the server's frames, once the 101 has been seen.
    client: Option<WebSocket>,
    head_seen: usize,
}

impl SessionHarness {
    /// A fresh session on a loop of its own.
    pub fn new() -> SessionHarness {
        let mut lp = LoopState::new(0, Core::detached(config()));
        // No turns here: a connection is never cut off for its share of one.
        lp.message_allowance = u32::MAX;
        let id = ConnId::new(1, 0, SLOT, GENERATION);
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        let session = Session::new(id, peer, &lp);
        if let Some(inbox) = lp.core.inboxes.first() {
            inbox.set_live(SLOT, GENERATION);
        }
        SessionHarness {
            lp,
            session: Some(session),
            received: Vec::new(),
            kernel: Default::default(),
            client: None,
            head_seen: 0,
        }
    }

    /// The bound on what the session may hold, from the limits.
    fn holding_bound(&self) -> usize {
        let c = &self.lp.core.config;
        let message = c.websocket.max_message_size + 14;
        // The outbound queue: past max_outbound nothing more is published to it, past the
        // high-water mark its own handler is stopped after one more message (and the
        // protocol's answers); a message being reassembled with what its frame declared; a
        // request head or body in progress; input stashed while paused.
        c.max_outbound
            + c.backpressure_high_water
            + 4 * message
            + 1024
            + 2 * c.websocket.max_message_size
            + c.request_limits.max_header_bytes
            + 2 * c.max_body_size
            + 2 * MAX_FEED
    }

    /// The peer sends bytes: they wait in the "kernel" until the session reads them, in reads
    /// of at most [`MAX_FEED`] bytes, as long as it wants to read.
    pub fn send(&mut self, bytes: &[u8]) {
        self.kernel.extend(bytes);
        self.pump();
    }

    /// Reads (as the loop would) while the session wants to.
    fn pump(&mut self) {
        loop {
            self.feed_stash();
            let Some(s) = self.session.as_ref() else { return };
            if !s.wants_read() || self.kernel.is_empty() {
                return;
            }
            let n = self.kernel.len().min(MAX_FEED);
            let mut read: Vec<u8> = self.kernel.drain(..n).collect();
            self.feed(&mut read);
        }
    }

    /// Feeds bytes as one read, as the loop does (the same code: [`drive::feed`]).
    fn feed(&mut self, bytes: &mut [u8]) {
        // A stash left ready is fed by `pump`, as the loop's next turn would.
        drive::feed(self, SLOT, bytes);
        self.check_after_input();
    }

    /// Feeds the session's stash, if it may read now.
    fn feed_stash(&mut self) {
        for _ in 0..16 {
            let Some(s) = self.session.as_mut() else { return };
            if !s.stash_ready() {
                return;
            }
            let mut stash = s.take_stash();
            self.feed(&mut stash);
        }
    }

    /// Delivers what was published (to this loop's one session) as the loop does.
    fn deliver(&mut self) {
        while !self.lp.outgoing.is_empty() {
            for og in std::mem::take(&mut self.lp.outgoing) {
                drive::deliver_local(self, &og);
            }
        }
        if let Some(s) = self.session.as_mut() {
            s.settle(&self.lp);
        }
    }

    fn check_after_input(&mut self) {
        let bound = self.holding_bound();
        let high_water = self.lp.core.config.backpressure_high_water;
        let Some(s) = self.session.as_ref() else { return };
        assert!(
            s.holding() <= bound,
            "session holds {} bytes, bound {bound}",
            s.holding()
        );
        if s.io() == Io::Open && s.out.len() > high_water {
            assert!(
                !s.wants_read(),
                "over the high-water mark ({} bytes queued) yet still reading",
                s.out.len()
            );
        }
    }

    /// The socket takes up to `room` bytes; then the session is told, as after a write.
    pub fn drain(&mut self, room: usize) {
        let Some(s) = self.session.as_mut() else { return };
        let before = self.received.len();
        let mut socket = Socket {
            room,
            got: &mut self.received,
        };
        match s.out.write_to(&mut socket, &mut self.lp.pool) {
            Ok(n) => s.bytes_out += n as u64,
            Err(e) => panic!("a socket that only says WouldBlock failed: {e}"),
        }
        assert_eq!(
            s.bytes_out as usize,
            self.received.len(),
            "bytes_out and what the socket took disagree"
        );
        let mut cx = Cx {
            lp: &mut self.lp,
            handler: &FuzzApp,
            direct: None,
        };
        let (resume, released) = s.after_flush(&mut cx);
        for p in released {
            if p == s.id(&self.lp) {
                s.release_hold(&self.lp);
            }
        }
        let high_water = self.lp.core.config.backpressure_high_water;
        if s.out.len() <= high_water / 2 {
            assert!(
                !s.is_backpressured(),
                "drained to {} bytes, yet backpressure was not lifted (resume: {resume})",
                s.out.len()
            );
        }
        self.deliver();
        if self.received.len() > before {
            self.check_output();
        }
        if self.session.as_ref().is_some_and(|s| s.io() == Io::Done) {
            self.close();
        } else {
            self.pump();
        }
    }

    /// What the client side received must be HTTP heads, then (after a 101) valid server
    /// frames.
    fn check_output(&mut self) {
        if self.client.is_none() {
            let text = self.received.get(self.head_seen..).unwrap_or_default();
            let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let head = text.get(..end).unwrap_or_default();
            assert!(
                head.starts_with(b"HTTP/1.1 "),
                "not an HTTP response: {:?}",
                String::from_utf8_lossy(head)
            );
            if head.starts_with(b"HTTP/1.1 101 ") {
                self.client = Some(WebSocket::client(
                    Config::default().max_frame_size(1 << 20).max_message_size(1 << 20),
                ));
                self.head_seen += end + 4;
            } else {
                // A plain response: skip the head and its Content-Length body (pipelined
                // responses follow).
                let len = String::from_utf8_lossy(head)
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Content-Length: ")
                            .and_then(|v| v.trim().parse::<usize>().ok())
                    })
                    .unwrap_or(0);
                let after = text.get(end + 4..).unwrap_or_default();
                // A response to HEAD has the length of a body it does not carry.
                let len = if after.starts_with(b"HTTP/1.1 ") { 0 } else { len };
                if after.len() >= len {
                    self.head_seen += end + 4 + len;
                    self.check_output();
                }
                return;
            }
        }
        let Some(ws) = self.client.as_mut() else { return };
        let mut frames = self.received.get(self.head_seen..).unwrap_or_default().to_vec();
        self.head_seen = self.received.len();
        let mut out = Vec::new();
        if let Err(e) = ws.receive_all(&mut frames, &mut out) {
            panic!("the server sent an invalid frame: {e}");
        }
    }

    /// Time passes; a due deadline fires as the loop's timer would fire it.
    pub fn advance(&mut self, ms: Millis) {
        self.lp.now += ms;
        let Some(s) = self.session.as_mut() else { return };
        if s.next_deadline(&self.lp) > self.lp.now {
            return;
        }
        let mut cx = Cx {
            lp: &mut self.lp,
            handler: &FuzzApp,
            direct: None,
        };
        let (drop_now, released) = s.on_timeout(&mut cx);
        for p in released {
            if p == s.id(&self.lp) {
                s.release_hold(&self.lp);
            }
        }
        if drop_now.is_some() {
            self.close();
        }
    }

    /// The peer closed its side.
    pub fn eof(&mut self) {
        let Some(s) = self.session.as_mut() else { return };
        let mut cx = Cx {
            lp: &mut self.lp,
            handler: &FuzzApp,
            direct: None,
        };
        s.on_eof(&mut cx);
        self.deliver();
        if self.session.as_ref().is_some_and(|s| s.io() == Io::Done) {
            self.close();
        }
    }

    /// Drops the session as the loop does, then checks nothing is left charged.
    pub fn close(&mut self) {
        let Some(mut s) = self.session.take() else { return };
        let mut cx = Cx {
            lp: &mut self.lp,
            handler: &FuzzApp,
            direct: None,
        };
        // No one else to release here.
        let _held = drive::retire(&mut s, &mut cx, CloseCode::ABNORMAL, "harness");
        drop(s);
        self.lp.outgoing.clear();
        assert_eq!(
            self.lp.core.budget().used(),
            0,
            "memory still charged after the session went"
        );
    }

    /// Whether the session is still there.
    pub fn alive(&self) -> bool {
        self.session.is_some()
    }
}

/// The harness's session: slot 0 of loop 0, generation 1.
const SLOT: usize = 0;
const GENERATION: u32 = 1;

/// One loop with one session and no socket.
impl drive::Host for SessionHarness {
    type App = FuzzApp;

    fn lp(&mut self) -> &mut LoopState {
        &mut self.lp
    }

    fn session(&mut self, slot: usize, generation: Option<u32>) -> Option<Step<'_, FuzzApp>> {
        if slot != SLOT || generation.is_some_and(|g| g != GENERATION) {
            return None;
        }
        let cx = Cx {
            lp: &mut self.lp,
            handler: &FuzzApp,
            direct: None,
        };
        Some((self.session.as_mut()?, cx))
    }

    fn slots(&self) -> Vec<usize> {
        self.session.iter().map(|_| SLOT).collect()
    }

    fn after_step(&mut self, _: usize) {
        self.deliver();
    }

    /// Only the session itself publishes here: holding anyone else holds nobody.
    fn hold_publisher(&mut self, publisher: ConnId) {
        if let Some(s) = self.session.as_mut().filter(|s| s.id(&self.lp) == publisher) {
            s.add_hold(&self.lp);
        }
    }

    /// Writing is the input's to decide (`drain`).
    fn mark_dirty(&mut self, _: usize) {}
}

/// The most bytes one feed operation takes from the input.
const MAX_FEED: usize = 4096;

/// The request that most runs start with, so the fuzzer reaches the WebSocket side at once.
const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Runs one fuzz input: `[flags] (op [arg])*`, where flag bit 0 prepends a valid upgrade to
/// the first feed, and each op is
///
/// - `0..=127`: the peer sends the next `op + 1` bytes (× 32 if bit 6 is set) of the input;
/// - `128..=191`: the socket takes `(op - 128) × 97` bytes (0: it is full — a stalled reader);
/// - `192..=239`: `(op - 192) × 50` ms pass;
/// - `240..=255`: the peer closes its side.
pub fn run(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut h = SessionHarness::new();
    if flags & 1 == 1 {
        h.send(UPGRADE);
    }
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op {
            0..=127 => {
                let mut n = usize::from(op & 0x3f) + 1;
                if op & 0x40 != 0 {
                    n *= 32;
                }
                let n = n.min(rest.len()).min(MAX_FEED);
                let (chunk, tail) = rest.split_at(n);
                rest = tail;
                h.send(chunk);
            }
            128..=191 => h.drain(usize::from(op - 128) * 97),
            192..=239 => h.advance(Millis::from(op - 192) * 50),
            _ => h.eof(),
        }
        if !h.alive() {
            return;
        }
    }
    // Let the socket take everything, then the peer leaves: all must be accounted for.
    for _ in 0..256 {
        h.drain(1 << 20);
        if !h.alive() {
            return;
        }
    }
    h.eof();
    h.drain(1 << 20);
    h.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        crate::frame::encode_frame(&mut v, true, crate::Opcode::Text, Some([1, 2, 3, 4]), payload);
        v
    }

    #[test]
    fn echo_publish_flood_and_backpressure_through_the_harness() {
        let mut h = SessionHarness::new();
        h.send(UPGRADE);
        h.send(&frame(b"echo"));
        h.send(&frame(b"publish"));
        h.drain(1 << 20);
        assert!(h.client.is_some(), "the 101 was seen");
        // A flood with a socket that takes nothing: backpressure must engage.
        let mut flood = Vec::new();
        for _ in 0..200 {
            flood.extend_from_slice(&frame(&[b'f'; 900]));
        }
        h.send(&flood);
        let s = h.session.as_ref().unwrap();
        assert!(!s.wants_read(), "a flood into a full socket must pause reading");
        for _ in 0..400 {
            h.drain(50_000);
            if !h.alive() {
                break;
            }
        }
        h.close();
    }

    #[test]
    fn plain_http_panics_and_timeouts_through_the_harness() {
        for input in [
            &b"\x00\x3fGET /panic HTTP/1.1\r\nHost: h\r\n\r\n0123456789012345678901234\xbf"[..],
            b"\x01\x05\x81\x85\x01\x02\x03\x04x\xc8\xc8\xc8\xef\xef\xef\xef\xbf",
            b"\x01\x0a\x81\x86\x00\x00\x00\x00xyz\xff\xbf",
        ] {
            run(input);
        }
    }
}
