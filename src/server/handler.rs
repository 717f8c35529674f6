//! The application's side of the server: the [`Handler`] trait and the [`Context`] it is given.

use super::outbound::{BufferPool, Outbound};
use super::ServerConfig;
use crate::frame::{self, CloseCode, Opcode};
use crate::handshake::{self, Request};
use std::io::{IoSlice, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A message received or to be sent (RFC 6455 §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl Message<'_> {
    fn opcode(&self) -> Opcode {
        match self {
            Message::Text(_) => Opcode::Text,
            Message::Binary(_) => Opcode::Binary,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }
}

/// An HTTP response for a plain (non-upgrade) request, or for a refused upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Type, Content-Length and Connection are added by the server).
    pub headers: Vec<(String, String)>,
    /// Content-Type of the body; empty for none.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a plain-text body.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8".into(),
            body: body.into().into_bytes(),
        }
    }

    /// A response with a JSON body (the caller provides valid JSON).
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Response {
            content_type: "application/json".into(),
            ..Response::text(status, body)
        }
    }

    /// A response with an HTML body.
    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Response {
            content_type: "text/html; charset=utf-8".into(),
            ..Response::text(status, body)
        }
    }

    /// A response whose body is the status line's reason phrase.
    pub fn status(status: u16) -> Self {
        Response::text(status, format!("{} {}\n", status, handshake::reason_phrase(status)))
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn to_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        handshake::http_response(self.status, &headers, &self.content_type, &self.body, keep_alive)
    }
}

/// What [`Handler::on_upgrade`] decides for an acceptable upgrade request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    /// The subprotocol to answer with; see [`crate::handshake::select_subprotocol`].
    pub protocol: Option<String>,
    /// Keep the raw bytes of the handshake and of each received message's frames, for
    /// [`Context::handshake`] and [`Context::frames_in`] (the `/learn` page uses this).
    pub capture_frames: bool,
}

/// Identifies a connection across event loops; stable for its lifetime and not reused soon
/// after it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    pub(crate) fn new(loop_idx: usize, slot: usize, generation: u32) -> ConnId {
        ConnId(((loop_idx as u64) << 48) | ((u64::from(generation) & 0xFFFF) << 32) | (slot as u64 & 0xFFFF_FFFF))
    }

    pub(crate) fn loop_idx(self) -> usize {
        (self.0 >> 48) as usize
    }

    pub(crate) fn slot(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }

    /// A number for logs and demo pages.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.loop_idx(), self.slot())
    }
}

/// The outcome of a send (uWebSockets-style backpressure as a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued; the queue is under the high-water mark.
    Queued,
    /// Queued, but the queue is over the high-water mark: slow down until
    /// [`Handler::on_drain`].
    Backpressure,
    /// Not queued: the connection is closing.
    Dropped,
}

/// Server-wide figures, readable from any handler call.
#[derive(Debug)]
pub struct ServerInfo {
    pub(crate) started: Instant,
    pub(crate) connections: AtomicUsize,
    pub(crate) websockets: AtomicUsize,
}

impl ServerInfo {
    pub(crate) fn new() -> Self {
        ServerInfo {
            started: Instant::now(),
            connections: AtomicUsize::new(0),
            websockets: AtomicUsize::new(0),
        }
    }

    /// Open TCP connections (HTTP and WebSocket).
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Open WebSocket sessions.
    pub fn open_websockets(&self) -> usize {
        self.websockets.load(Ordering::Relaxed)
    }

    /// Time since the server started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The application: called by the event loops for HTTP requests and WebSocket events. One
/// handler serves every connection on every loop, so it is `Sync`; keep shared state behind a
/// `Mutex` or atomics. Every method has a default.
pub trait Handler: Send + Sync + 'static {
    /// A plain HTTP request (no `Upgrade` header). Default: 404.
    fn on_request(&self, request: &Request, info: &ServerInfo) -> Response {
        let _ = (request, info);
        Response::status(404)
    }

    /// An upgrade request that passed the RFC 6455 §4.2.1 checks, before the 101 is sent: the
    /// place for authentication, Origin checks (RFC 6455 §10.2) and subprotocol choice. Return
    /// a [`Response`] to refuse with that status. Default: accept, no subprotocol.
    fn on_upgrade(&self, request: &Request, info: &ServerInfo) -> Result<Accept, Response> {
        let _ = (request, info);
        Ok(Accept::default())
    }

    /// The WebSocket is open (the 101 has been queued).
    fn on_open(&self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// A whole message arrived.
    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        let _ = (ctx, message);
    }

    /// The WebSocket closed: `code` is the peer's close code, ours if we failed the connection,
    /// 1005 for a Close without a code, 1006 if the TCP connection ended without a Close
    /// (RFC 6455 §7.1.5). Called once per connection. Sending is no longer possible, but
    /// publishing to others is.
    fn on_close(&self, ctx: &mut Context<'_>, code: CloseCode, reason: &str) {
        let _ = (ctx, code, reason);
    }

    /// The connection's outbound queue, which had passed the high-water mark, has drained.
    fn on_drain(&self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }
}

/// Who a published frame goes to.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Topic(Arc<str>),
    All,
    One(ConnId),
}

/// A message for other connections, framed once; delivered after the handler returns.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) target: Target,
    pub(crate) frame: Arc<[u8]>,
    pub(crate) exclude: Option<ConnId>,
}

/// Per-connection data the handler's context works on.
pub(crate) struct ConnView<'a> {
    pub(crate) id: ConnId,
    pub(crate) peer: SocketAddr,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) out: &'a mut Outbound,
    pub(crate) can_send: bool,
    pub(crate) close_request: &'a mut Option<(CloseCode, String)>,
    pub(crate) topics: &'a mut Vec<Arc<str>>,
    pub(crate) handshake: Option<(&'a Request, &'a [u8])>,
    pub(crate) frames_in: &'a [u8],
    pub(crate) trace_out: Option<&'a mut Vec<u8>>,
    /// The socket and its byte counter, for writing large messages without queueing a copy.
    pub(crate) direct: Option<(&'a mut mio::net::TcpStream, &'a mut u64)>,
}

/// Messages at least this large are written straight from the caller's buffer when nothing is
/// queued before them; only what the socket does not take is copied into the queue.
const DIRECT_WRITE_MIN: usize = 16 * 1024;

/// What a handler can do during a WebSocket event: send to this connection, to one other, to a
/// topic's subscribers or to everyone; subscribe; close; read the connection's details.
pub struct Context<'a> {
    pub(crate) conn: ConnView<'a>,
    pub(crate) pool: &'a mut BufferPool,
    pub(crate) outgoing: &'a mut Vec<Outgoing>,
    pub(crate) subscriptions: &'a mut Vec<(Arc<str>, bool)>,
    pub(crate) config: &'a ServerConfig,
    pub(crate) info: &'a ServerInfo,
}

impl Context<'_> {
    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.conn.id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer
    }

    /// The path of the upgrade request, without the query string.
    pub fn path(&self) -> &str {
        self.conn.path
    }

    /// The query string of the upgrade request, if any.
    pub fn query(&self) -> Option<&str> {
        self.conn.query
    }

    /// Server-wide figures.
    pub fn info(&self) -> &ServerInfo {
        self.info
    }

    /// Bytes queued for this connection and not yet taken by the socket.
    pub fn buffered_amount(&self) -> usize {
        self.conn.out.len()
    }

    /// Sends a message to this connection (one frame, RFC 6455 §5.6).
    pub fn send(&mut self, message: Message<'_>) -> SendStatus {
        if !self.conn.can_send {
            return SendStatus::Dropped;
        }
        let header = frame::encode_header(true, message.opcode(), None, message.bytes().len() as u64);
        let mut header: &[u8] = &header;
        let mut payload = message.bytes();
        if payload.len() >= DIRECT_WRITE_MIN && self.conn.out.is_empty() && self.conn.trace_out.is_none() {
            if let Some((stream, bytes_out)) = self.conn.direct.as_mut() {
                // One writev of header + payload, straight from the read buffer or the
                // reassembly buffer; errors surface on the next flush.
                let written = stream
                    .write_vectored(&[IoSlice::new(header), IoSlice::new(payload)])
                    .unwrap_or(0);
                **bytes_out += written as u64;
                let from_header = written.min(header.len());
                header = header.get(from_header..).unwrap_or_default();
                payload = payload.get(written - from_header..).unwrap_or_default();
            }
        }
        if header.is_empty() && payload.is_empty() {
            return SendStatus::Queued;
        }
        let trace = self.conn.trace_out.as_deref_mut();
        self.conn.out.append(self.pool, |v| {
            let start = v.len();
            v.extend_from_slice(header);
            v.extend_from_slice(payload);
            if let Some(t) = trace {
                t.extend_from_slice(v.get(start..).unwrap_or_default());
            }
        });
        if self.conn.out.len() > self.config.backpressure_high_water {
            SendStatus::Backpressure
        } else {
            SendStatus::Queued
        }
    }

    /// Sends a text message to this connection.
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.send(Message::Text(text))
    }

    /// Sends a binary message to this connection.
    pub fn send_binary(&mut self, data: &[u8]) -> SendStatus {
        self.send(Message::Binary(data))
    }

    /// Sends a message to another connection, on whichever loop holds it. Silently dropped if
    /// that connection is gone.
    pub fn send_to(&mut self, id: ConnId, message: Message<'_>) {
        self.outgoing.push(Outgoing {
            target: Target::One(id),
            frame: encode_shared(message),
            exclude: None,
        });
    }

    /// Subscribes this connection to a topic (a room); it receives what is published there
    /// until it unsubscribes or closes.
    pub fn subscribe(&mut self, topic: &str) {
        if !self.conn.topics.iter().any(|t| &**t == topic) {
            let t: Arc<str> = topic.into();
            self.conn.topics.push(t.clone());
            self.subscriptions.push((t, true));
        }
    }

    /// Unsubscribes this connection from a topic.
    pub fn unsubscribe(&mut self, topic: &str) {
        if let Some(i) = self.conn.topics.iter().position(|t| &**t == topic) {
            let t = self.conn.topics.swap_remove(i);
            self.subscriptions.push((t, false));
        }
    }

    /// The topics this connection is subscribed to.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.conn.topics.iter().map(|t| &**t)
    }

    /// Sends a message to every subscriber of `topic` on every loop, this connection included
    /// if subscribed. The frame is encoded once and the same bytes are queued for each
    /// receiver.
    pub fn publish(&mut self, topic: &str, message: Message<'_>) {
        self.outgoing.push(Outgoing {
            target: Target::Topic(topic.into()),
            frame: encode_shared(message),
            exclude: None,
        });
    }

    /// Like [`Context::publish`], leaving this connection out.
    pub fn publish_to_others(&mut self, topic: &str, message: Message<'_>) {
        self.outgoing.push(Outgoing {
            target: Target::Topic(topic.into()),
            frame: encode_shared(message),
            exclude: Some(self.conn.id),
        });
    }

    /// Sends a message to every open WebSocket on the server.
    pub fn broadcast(&mut self, message: Message<'_>) {
        self.outgoing.push(Outgoing {
            target: Target::All,
            frame: encode_shared(message),
            exclude: None,
        });
    }

    /// Starts the closing handshake with this code and reason (RFC 6455 §7.1.2), after the
    /// handler returns.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        if self.conn.can_send {
            *self.conn.close_request = Some((code, reason.to_owned()));
            self.conn.can_send = false;
        }
    }

    /// The upgrade request and the 101 response bytes, when the upgrade was accepted with
    /// [`Accept::capture_frames`].
    pub fn handshake(&self) -> Option<(&Request, &[u8])> {
        self.conn.handshake
    }

    /// The raw bytes (still masked, as they crossed the wire) of the frames that carried the
    /// current message, when the upgrade was accepted with [`Accept::capture_frames`]; empty
    /// otherwise.
    pub fn frames_in(&self) -> &[u8] {
        self.conn.frames_in
    }
}

/// Frames a message once, unmasked (a server's frame, RFC 6455 §5.1), for many receivers.
pub(crate) fn encode_shared(message: Message<'_>) -> Arc<[u8]> {
    let mut v = Vec::with_capacity(message.bytes().len() + 10);
    frame::encode_frame(&mut v, true, message.opcode(), None, message.bytes());
    v.into()
}
