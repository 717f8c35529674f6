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
///
/// The server writes the framing itself: `Content-Length` (none on a 204 or 1xx, RFC 9110
/// §8.6), `Connection`, and no body where the status or the method allows none (1xx, 204 and
/// 304; every response to `HEAD`, which keeps the `Content-Length` the `GET` would have had,
/// RFC 9110 §9.3.2). A handler cannot set those headers: [`Response::try_with_header`] and
/// [`Response::with_header`] refuse them, and one pushed straight into
/// [`Response::headers`] is left out of the response (with a warning in the log), so no
/// response ever carries two differing framings — the ambiguity the server refuses on input
/// (RFC 9112 §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code: a final one, 200–599 (a 1xx is interim, RFC 9110 §15.2; the server
    /// answers 500 instead of sending one as the answer).
    pub status: u16,
    /// Extra headers. The ones the server writes itself (see [`HeaderError::Reserved`]) are
    /// left out when the response is sent.
    pub headers: Vec<(String, String)>,
    /// Content-Type of the body; empty for none.
    pub content_type: String,
    /// The body (not sent for 1xx, 204, 304 or `HEAD`).
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

    /// A response whose body is the status line's reason phrase (`404 Not Found`); a status
    /// that has no body (1xx, 204, 304: RFC 9110 §15) gets none.
    pub fn status(status: u16) -> Self {
        if !handshake::status_has_body(status) {
            return Response {
                status,
                headers: Vec::new(),
                content_type: String::new(),
                body: Vec::new(),
            };
        }
        Response::text(status, format!("{} {}\n", status, handshake::reason_phrase(status)))
    }

    /// Adds a header, or says why it cannot go into a response: a name that is not a token
    /// or a value with a control character (RFC 9110 §5.1, §5.5), or a header the server
    /// writes itself ([`HeaderError::Reserved`]). `Content-Type` sets
    /// [`Response::content_type`], so it is never sent twice either.
    ///
    /// ```
    /// use wsloop::server::{HeaderError, Response};
    /// let ok = Response::status(405).try_with_header("Allow", "GET, HEAD");
    /// assert!(ok.is_ok());
    /// let refused = Response::text(200, "hi").try_with_header("Content-Length", "999");
    /// assert_eq!(refused, Err(HeaderError::Reserved("Content-Length".into())));
    /// ```
    pub fn try_with_header(mut self, name: &str, value: &str) -> Result<Self, HeaderError> {
        check_header(name, value)?;
        if name.eq_ignore_ascii_case("content-type") {
            value.clone_into(&mut self.content_type);
        } else {
            self.headers.push((name.to_owned(), value.to_owned()));
        }
        Ok(self)
    }

    /// [`Response::try_with_header`] for a header fixed in the source (`Allow`,
    /// `Cache-Control`, `WWW-Authenticate`), where a refusal is a bug in the handler rather
    /// than something to handle.
    ///
    /// # Panics
    ///
    /// When [`Response::try_with_header`] refuses the header. Why a panic rather than
    /// dropping it quietly: a handler that sets `Content-Length` or `Connection` has a bug
    /// that silence would hide, and one that sends two framings breaks the client. The panic
    /// comes where the response is built, inside the callback: the server catches it,
    /// answers 500 and logs the message naming the header, so the first request to that
    /// route shows it. Use `try_with_header` for names or values that come from input.
    #[track_caller]
    pub fn with_header(self, name: &str, value: &str) -> Self {
        match self.try_with_header(name, value) {
            Ok(r) => r,
            Err(e) => panic!("Response::with_header: {e}"),
        }
    }

    /// The bytes on the wire; `head_only` answers a HEAD request (headers, the body's
    /// Content-Length, no body: RFC 9110 §9.3.2). A status with no body (1xx, 204, 304) goes
    /// out as its head alone; a status that cannot be a final answer (under 200 or over 599,
    /// RFC 9110 §15) as a 500.
    pub(crate) fn to_bytes(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        if !(200..=599).contains(&self.status) {
            log::error!(
                "a handler answered with status {}, which is not a final response (RFC 9110 §15): sending 500",
                self.status
            );
            return Response::status(500).to_bytes(keep_alive, head_only);
        }
        let headers = wire_headers(&self.headers, !self.content_type.is_empty());
        let mut out =
            handshake::http_response_head(self.status, &headers, &self.content_type, self.body.len(), keep_alive);
        if !head_only && handshake::status_has_body(self.status) {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// Why a header cannot be added to a [`Response`] or an [`Accept`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// A header the server writes itself and a handler may not: the framing
    /// (`Content-Length`, `Transfer-Encoding`, RFC 9112 §6), the connection's own fields
    /// (`Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`, RFC 9110
    /// §7.6.1, §7.8) and the WebSocket handshake's (`Sec-WebSocket-*`, RFC 6455 §4.2.2; the
    /// subprotocol is chosen with [`Accept::protocol`]). A second copy of any of them makes
    /// the response ambiguous or fails the client's handshake.
    Reserved(String),
    /// A name that is not an HTTP token, or a value with a control character other than a
    /// tab (RFC 9110 §5.1, §5.5): it could end the header line early and smuggle in another.
    Invalid(String),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Reserved(name) => write!(f, "the server writes the {name} header itself"),
            HeaderError::Invalid(name) => write!(
                f,
                "header {name:?} is not a valid field (a token name, a value without control characters: RFC 9110 §5)"
            ),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Whether the server writes this header itself (see [`HeaderError::Reserved`]).
fn reserved_header(name: &str) -> bool {
    const RESERVED: [&str; 8] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ];
    RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r))
        || name
            .get(..14)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("sec-websocket-"))
}

/// Checks one header a handler adds (RFC 9110 §5.1, §5.5, §5.6.2).
fn check_header(name: &str, value: &str) -> Result<(), HeaderError> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let clean_value = value.bytes().all(|b| b == b'\t' || !b.is_ascii_control());
    if !token || !clean_value {
        return Err(HeaderError::Invalid(name.to_owned()));
    }
    if reserved_header(name) {
        return Err(HeaderError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// Whether a header a handler added may go on the wire as it is; the ones that may not are
/// logged. The builders already refuse them: this catches the ones pushed straight into a
/// public `headers` field.
pub(crate) fn header_allowed(name: &str, value: &str) -> bool {
    match check_header(name, value) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("header left out of a response: {e}");
            false
        }
    }
}

/// A handler's headers as they go on the wire: the allowed ones, and no `Content-Type` when
/// the response has its own.
fn wire_headers(headers: &[(String, String)], has_content_type: bool) -> Vec<(&str, &str)> {
    headers
        .iter()
        .filter(|(n, v)| header_allowed(n, v))
        .filter(|(n, _)| !(has_content_type && n.eq_ignore_ascii_case("content-type")))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
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
    pub(crate) message_rate: Option<super::MessageRate>,
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
            message_rate: None,
        }
    }

    /// This connection's own message rate instead of the server's
    /// ([`ServerConfig::message_rate`](super::ServerConfig::message_rate)): more for a premium
    /// user, [`MessageRate::OFF`](super::MessageRate::OFF) for none at all.
    pub fn message_rate(mut self, rate: super::MessageRate) -> Self {
        self.message_rate = Some(rate);
        self
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

    /// Adds a header to the 101 response (a cookie, say), or says why it cannot go there:
    /// the handshake's own headers (`Connection`, `Upgrade`, `Sec-WebSocket-*`, RFC 6455
    /// §4.2.2) are the server's, so a doubled `Sec-WebSocket-Accept` cannot fail the
    /// client's handshake; see [`HeaderError`].
    ///
    /// ```
    /// use wsloop::server::{Accept, HeaderError};
    /// assert!(Accept::default().try_with_header("Set-Cookie", "seen=1").is_ok());
    /// assert_eq!(
    ///     Accept::default().try_with_header("Sec-WebSocket-Accept", "x").unwrap_err(),
    ///     HeaderError::Reserved("Sec-WebSocket-Accept".into())
    /// );
    /// ```
    pub fn try_with_header(mut self, name: &str, value: &str) -> Result<Self, HeaderError> {
        check_header(name, value)?;
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// [`Accept::try_with_header`] for a header fixed in the source.
    ///
    /// # Panics
    ///
    /// When [`Accept::try_with_header`] refuses the header, for the reasons given at
    /// [`Response::with_header`]: the panic is caught, the upgrade answered 500 and the
    /// message logged.
    #[track_caller]
    pub fn with_header(self, name: &str, value: &str) -> Self {
        match self.try_with_header(name, value) {
            Ok(a) => a,
            Err(e) => panic!("Accept::with_header: {e}"),
        }
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
/// let addr = "127.0.0.1:0".parse()?; // any free port
/// let server = Server::new(Echo).configure(|c| c.bind = addr).start()?;
/// let addr = server.local_addr();
///
/// let mut client = wsloop::client::Client::connect(&format!("ws://{addr}/echo"))?;
/// client.send_text("hello")?;
/// assert_eq!(client.recv()?, wsloop::client::ClientEvent::Text("hello".into()));
/// client.close(wsloop::CloseCode::NORMAL, "bye")?;
///
/// let mut http = std::net::TcpStream::connect(addr)?;
/// http.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
/// let mut answer = String::new();
/// http.read_to_string(&mut answer)?;
/// assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"));
/// // The server closed first and waits (up to 2 s) for our side to close too, so that its
/// // response is not cut by a reset; closing it now lets the shutdown below end at once.
/// drop(http);
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
    /// let addr = "127.0.0.1:0".parse()?;
    /// let server = Server::new(Greeter).configure(|c| c.bind = addr).start()?;
    /// let url = format!("ws://{}/", server.local_addr());
    ///
    /// let mut ada = wsloop::client::Client::connect(&format!("{url}?nick=ada"))?;
    /// for expected in ["ada #1: hi", "ada #2: again"] {
    ///     ada.send_text(expected.rsplit(": ").next().unwrap_or_default())?;
    ///     assert_eq!(ada.recv()?, wsloop::client::ClientEvent::Text(expected.into()));
    /// }
    /// ada.close(wsloop::CloseCode::NORMAL, "")?;
    /// // No nickname: refused with the handler's 400, never upgraded.
    /// let refused = wsloop::client::Client::connect(&url).unwrap_err();
    /// assert!(matches!(&refused, wsloop::client::Error::Refused(r) if r.status == 400), "{refused}");
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

    /// The client answered one of the server's Pings (the heartbeat's, or
    /// [`Context::ping`]'s) with its Pong (RFC 6455 §5.5.3): `rtt` is the round trip, also
    /// readable later as [`Context::rtt`]. An unsolicited Pong (a client's own heartbeat)
    /// does not call it.
    fn on_pong(&self, ctx: &mut Context<'_, Self::State>, rtt: std::time::Duration) {
        let _ = (ctx, rtt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Response, keep_alive: bool, head_only: bool) -> String {
        String::from_utf8(r.to_bytes(keep_alive, head_only)).unwrap()
    }

    /// RFC 9110 §15.3.5 and §15.4.5: a 204 has no Content-Length and no body, a 304 no body,
    /// whatever the handler put in the `Response`.
    #[test]
    fn no_content_and_not_modified_go_out_as_a_head() {
        for r in [
            Response::status(204),
            Response::text(204, "dropped"),
            Response::status(304),
            Response::text(304, "dropped"),
        ] {
            let out = wire(&r, true, false);
            assert!(out.ends_with("Connection: keep-alive\r\n\r\n"), "{out:?}");
            assert!(!out.contains("Content-Length"), "{out:?}");
        }
        assert!(wire(&Response::status(304), true, false).starts_with("HTTP/1.1 304 Not Modified\r\n"));
    }

    /// RFC 9110 §9.3.2: HEAD gets the Content-Length the GET would have had, and no body.
    #[test]
    fn head_keeps_the_length_of_the_get() {
        let r = Response::text(200, "twelve bytes");
        let out = wire(&r, false, true);
        assert!(
            out.ends_with("Content-Length: 12\r\nConnection: close\r\n\r\n"),
            "{out:?}"
        );
        let out = wire(&Response::status(204), false, true);
        assert!(!out.contains("Content-Length"), "{out:?}");
    }

    /// The framing and handshake headers are the server's: refused by the builders, left
    /// out when pushed into the public field, so each goes on the wire exactly once.
    #[test]
    fn framing_and_upgrade_headers_cannot_be_set_by_a_handler() {
        for name in [
            "Content-Length",
            "content-length",
            "Transfer-Encoding",
            "Connection",
            "Keep-Alive",
            "TE",
            "Trailer",
            "Upgrade",
            "Sec-WebSocket-Accept",
            "sec-websocket-protocol",
            "Sec-WebSocket-Extensions",
        ] {
            let r = Response::text(200, "x").try_with_header(name, "1");
            assert_eq!(r, Err(HeaderError::Reserved(name.into())), "{name}");
            let a = Accept::default().try_with_header(name, "1");
            assert_eq!(a.unwrap_err(), HeaderError::Reserved(name.into()), "{name}");
            let refused = std::panic::catch_unwind(|| Response::text(200, "x").with_header(name, "1"));
            assert!(refused.is_err(), "{name}");
        }
        for (name, value) in [
            ("Bad Name", "v"),
            ("", "v"),
            ("X-Ok", "a\r\nSet-Cookie: evil=1"),
            ("X-Ok", "nul\0"),
            ("X:Y", "v"),
        ] {
            assert_eq!(
                Response::text(200, "x").try_with_header(name, value),
                Err(HeaderError::Invalid(name.into())),
                "{name:?}: {value:?}"
            );
        }
        let ok = Response::status(405)
            .with_header("Allow", "GET, HEAD")
            .with_header("X-Tab", "a\tb");
        assert_eq!(ok.headers.len(), 2);
        // Content-Type goes to its field: one Content-Type on the wire.
        let typed = Response::text(200, "{}").with_header("Content-Type", "application/json");
        let out = wire(&typed, true, false);
        assert_eq!(out.matches("Content-Type").count(), 1, "{out:?}");
        assert!(out.contains("Content-Type: application/json\r\n"), "{out:?}");

        let mut pushed = Response::text(200, "four");
        for (n, v) in [
            ("Content-Length", "999"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("Content-Type", "text/html"),
            ("X-Evil", "a\r\nX-Smuggled: 1"),
            ("X-Kept", "yes"),
        ] {
            pushed.headers.push((n.into(), v.into()));
        }
        let out = wire(&pushed, true, false);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nX-Kept: yes\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 4\r\nConnection: keep-alive\r\n\r\nfour"
        );
    }

    /// A 1xx is interim (RFC 9110 §15.2) and a status outside 100–599 is no status: a handler
    /// returning one would leave the client waiting, so the answer is a 500.
    #[test]
    fn a_status_that_is_not_a_final_answer_goes_out_as_500() {
        for status in [0, 99, 100, 101, 199, 600, 999] {
            let out = wire(&Response::status(status), true, false);
            assert!(
                out.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
                "{status}: {out:?}"
            );
        }
        assert!(wire(&Response::status(599), true, false).starts_with("HTTP/1.1 599 Unknown\r\n"));
    }
}
