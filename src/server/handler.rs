//! The application's side of the server: the [`Handler`] trait and the values that cross it.
//!
//! **Handlers run on the event loop.** Every callback is called on the loop thread that owns
//! the connection, between reads and writes of hundreds of other connections: it must return
//! quickly and never block (no blocking database query, no `sleep`, no blocking HTTP call). For
//! slow work, hand it to another thread and answer through a [`ServerHandle`](super::ServerHandle),
//! which any thread may use:
//!
//! ```no_run
//! use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response};
//! use wsloop::handshake::Request;
//!
//! struct Slow;
//! impl Handler for Slow {
//!     type State = ();
//!     fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
//!         Ok(Accept::default())
//!     }
//!     fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
//!         let (handle, id) = (ctx.handle(), ctx.id());
//!         let question = format!("{message:?}");
//!         std::thread::spawn(move || {
//!             let answer = format!("thought long about {question}"); // the slow part
//!             let _ = handle.send_to(id, Message::Text(&answer)); // back through the loop
//!         });
//!     }
//! }
//! ```

use super::context::{Context, RequestContext};
use crate::frame::{CloseCode, Opcode};
use crate::handshake::{self, Request};

/// A message received or to be sent (RFC 6455 §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8: the type guarantees it, so it is never checked again).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl Message<'_> {
    pub(crate) fn opcode(&self) -> Opcode {
        match self {
            Message::Text(_) => Opcode::Text,
            Message::Binary(_) => Opcode::Binary,
        }
    }

    /// The payload bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }
}

/// An HTTP response for a plain request, or for a refused upgrade.
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

    /// The bytes on the wire; `head_only` answers a HEAD request (headers, the body's
    /// Content-Length, no body: RFC 9110 §9.3.2).
    pub(crate) fn to_bytes(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            // A handler's header may not smuggle a line break into the response.
            .filter(|(n, v)| !n.contains(['\r', '\n', ':']) && !v.contains(['\r', '\n']))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut out =
            handshake::http_response_head(self.status, &headers, &self.content_type, self.body.len(), keep_alive);
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// What [`Handler::on_upgrade`] returns for an upgrade it accepts: the connection's state and
/// the options of the 101 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept<S = ()> {
    pub(crate) state: S,
    pub(crate) protocol: Option<String>,
    pub(crate) capture_frames: bool,
    pub(crate) keep_request: bool,
    pub(crate) deflate: bool,
    pub(crate) headers: Vec<(String, String)>,
}

impl Default for Accept<()> {
    fn default() -> Self {
        Accept::new(())
    }
}

impl<S> Accept<S> {
    /// Accepts the upgrade; `state` travels with the connection and every later callback
    /// reaches it through [`Context::state`] and [`Context::state_mut`].
    pub fn new(state: S) -> Self {
        Accept {
            state,
            protocol: None,
            capture_frames: false,
            keep_request: true,
            deflate: true,
            headers: Vec::new(),
        }
    }

    /// The subprotocol to answer with (one the client offered; see
    /// [`crate::handshake::select_subprotocol`]).
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocol = Some(protocol.to_owned());
        self
    }

    /// Keeps the raw bytes of the handshake and of each received message's frames, for
    /// [`Context::handshake`] and [`Context::frames_in`] (the `/learn` page uses this).
    pub fn capture_frames(mut self) -> Self {
        self.capture_frames = true;
        self
    }

    /// Whether the upgrade request stays readable through [`Context::request`] after the
    /// upgrade. Default true; turn it off to save its bytes (a few hundred per connection)
    /// when the state already holds what the application needs.
    pub fn keep_request(mut self, keep: bool) -> Self {
        self.keep_request = keep;
        self
    }

    /// Whether this connection may use permessage-deflate when the server's mode and the
    /// client's offer allow it (default true). Turn it off for connections whose messages are
    /// already compressed (images, archives), where deflate costs CPU for nothing.
    pub fn deflate(mut self, on: bool) -> Self {
        self.deflate = on;
        self
    }

    /// Adds a header to the 101 response (a cookie, say).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// The outcome of a send (uWebSockets-style backpressure as a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued; the queue is under the high-water mark.
    Queued,
    /// Queued, but the queue is over the high-water mark: stop sending until
    /// [`Handler::on_drain`], which this result arms.
    Backpressure,
    /// Not queued: the connection is closing.
    Dropped,
}

/// The application: called by the event loops for HTTP requests and WebSocket events. One
/// handler serves every connection on every loop, so it is `Sync`; state shared between
/// connections goes behind a `Mutex` or atomics, state of one connection in
/// [`Handler::State`]. Handlers must not block (see the module docs).
///
/// A panic in a callback is caught: the connection is closed (1011, or HTTP 500) and logged,
/// and the loop and every other connection go on.
///
/// An echo server with an HTTP route beside it on the same port, run and checked with the
/// crate's client:
///
/// ```
/// use std::io::{Read, Write};
/// use wsloop::handshake::Request;
/// use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response, Server};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     type State = (); // nothing kept per connection (see `Handler::State`)
///
///     // Plain HTTP: `GET /health` answers; anything else is a 404.
///     fn on_request(&self, request: &Request, _: &mut RequestContext<'_>) -> Response {
///         match request.path() {
///             "/health" => Response::text(200, "ok"),
///             _ => Response::status(404),
///         }
///     }
///
///     // Upgrades: accepted on /echo only; a refusal is sent as this HTTP status.
///     fn on_upgrade(&self, request: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
///         match request.path() {
///             "/echo" => Ok(Accept::default()),
///             _ => Err(Response::status(404)),
///         }
///     }
///
///     fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
///         ctx.send(message); // text stays text, binary stays binary
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::new(Echo).bind("127.0.0.1:0".parse()?).start()?; // any free port
/// let addr = server.local_addr();
///
/// let mut client = wsloop::client::Client::connect(&format!("ws://{addr}/echo"))?;
/// client.send_text("hello")?;
/// assert_eq!(client.recv()?, wsloop::client::Event::Text("hello".into()));
/// client.close(wsloop::CloseCode::NORMAL, "bye")?;
///
/// let mut http = std::net::TcpStream::connect(addr)?;
/// http.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
/// let mut answer = String::new();
/// http.read_to_string(&mut answer)?;
/// assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"));
///
/// server.shutdown();
/// server.join()?;
/// # Ok(())
/// # }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// What the server keeps for each WebSocket, created by [`Handler::on_upgrade`] (who the
    /// client is, its room, its nickname) and reachable from every later callback without a
    /// global map. `()` for none.
    ///
    /// Why an associated type rather than a `Box<dyn Any>`: the compiler checks every use, a
    /// callback never downcasts or fails at run time, and the state is stored inline with the
    /// connection — no allocation or indirection.
    ///
    /// A nickname taken from the query string at the upgrade, and a count of the messages the
    /// connection sent, both kept in the state and read by the later callbacks:
    ///
    /// ```
    /// use wsloop::handshake::Request;
    /// use wsloop::server::http::query_value;
    /// use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response, Server};
    ///
    /// struct Member {
    ///     nick: String,
    ///     said: u32,
    /// }
    ///
    /// struct Greeter;
    ///
    /// impl Handler for Greeter {
    ///     type State = Member;
    ///
    ///     fn on_upgrade(&self, request: &Request, _: &mut RequestContext<'_>) -> Result<Accept<Member>, Response> {
    ///         // `?nick=` is required: without one the upgrade is refused before the 101.
    ///         let nick = query_value(request.query(), "nick").ok_or(Response::text(400, "nick?"))?;
    ///         Ok(Accept::new(Member { nick, said: 0 }))
    ///     }
    ///
    ///     fn on_message(&self, ctx: &mut Context<'_, Member>, message: Message<'_>) {
    ///         let Message::Text(text) = message else { return };
    ///         let member = ctx.state_mut();
    ///         member.said += 1;
    ///         let line = format!("{} #{}: {text}", member.nick, member.said);
    ///         ctx.send_text(&line);
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = Server::new(Greeter).bind("127.0.0.1:0".parse()?).start()?;
    /// let url = format!("ws://{}/", server.local_addr());
    ///
    /// let mut ada = wsloop::client::Client::connect(&format!("{url}?nick=ada"))?;
    /// for expected in ["ada #1: hi", "ada #2: again"] {
    ///     ada.send_text(expected.rsplit(": ").next().unwrap_or_default())?;
    ///     assert_eq!(ada.recv()?, wsloop::client::Event::Text(expected.into()));
    /// }
    /// // No nickname: refused with the handler's 400, never upgraded.
    /// let refused = wsloop::client::Client::connect(&url).unwrap_err();
    /// assert!(refused.to_string().contains("400"), "{refused}");
    ///
    /// server.shutdown();
    /// server.join()?;
    /// # Ok(())
    /// # }
    /// ```
    type State: Send + 'static;

    /// A plain HTTP request (no `Upgrade` header), any method; `request.body()` holds its
    /// body. `HEAD` requests come here too and are answered without the body. Default: 404.
    fn on_request(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Response {
        let _ = (request, ctx);
        Response::status(404)
    }

    /// An upgrade request that passed the RFC 6455 §4.2.1 checks and the Origin policy,
    /// before the 101 is sent: the place for authentication and subprotocol choice. Return
    /// [`Accept`] with the connection's state, or a [`Response`] to refuse with that status.
    fn on_upgrade(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Result<Accept<Self::State>, Response>;

    /// The WebSocket is open (the 101 has been queued).
    fn on_open(&self, ctx: &mut Context<'_, Self::State>) {
        let _ = ctx;
    }

    /// A whole message arrived.
    fn on_message(&self, ctx: &mut Context<'_, Self::State>, message: Message<'_>) {
        let _ = (ctx, message);
    }

    /// The WebSocket closed: `code` is the peer's close code, ours if we failed the connection,
    /// 1005 for a Close without a code, 1006 if the TCP connection ended without a Close
    /// (RFC 6455 §7.1.5). Called once per connection, the place for cleanup. Sending to this
    /// connection is no longer possible, but publishing to others is.
    fn on_close(&self, ctx: &mut Context<'_, Self::State>, code: CloseCode, reason: &str) {
        let _ = (ctx, code, reason);
    }

    /// The outbound queue has drained after a send returned [`SendStatus::Backpressure`]
    /// (every such result arms it again).
    fn on_drain(&self, ctx: &mut Context<'_, Self::State>) {
        let _ = ctx;
    }
}
