//! # wsloop
//!
//! A WebSocket server and library written by hand from RFC 6455: HTTP and WebSocket on one port,
//! a mio event loop per core, no async runtime.
//!
//! ## Quickstart: a server
//!
//! An echo WebSocket at `/echo` and a `GET /health` answered over plain HTTP, on one port:
//!
//! ```no_run
//! use wsloop::handshake::Request;
//! use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response, Server};
//!
//! struct App;
//!
//! impl Handler for App {
//!     type State = ();
//!
//!     // Plain HTTP requests (RFC 9110): anything that does not ask for an upgrade.
//!     fn on_request(&self, request: &Request, _ctx: &mut RequestContext<'_>) -> Response {
//!         match request.path() {
//!             "/health" => Response::json(200, r#"{"status":"ok"}"#),
//!             _ => Response::status(404),
//!         }
//!     }
//!
//!     // Upgrade requests (RFC 6455 §4.2): accept, or answer with an HTTP response instead.
//!     fn on_upgrade(&self, request: &Request, _ctx: &mut RequestContext<'_>) -> Result<Accept, Response> {
//!         match request.path() {
//!             "/echo" => Ok(Accept::default()),
//!             _ => Err(Response::status(404)),
//!         }
//!     }
//!
//!     fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
//!         ctx.send(message);
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     let addr = "127.0.0.1:9001".parse().expect("a literal address");
//!     // Serves until SIGINT or SIGTERM, then closes every WebSocket with 1001 and returns.
//!     Server::new(App).configure(|c| c.bind = addr).run()
//! }
//! ```
//!
//! Every limit and timeout is a field of [`server::ServerConfig`]; [`server::Server::start`]
//! returns at once with a handle instead of blocking (the [`server::Handler`] docs test a
//! server that way, with this crate's client); topics, broadcasts and pushes from other
//! threads are on [`server::Context`] and [`server::ServerHandle`].
//!
//! ## The parts
//!
//! - **[`server`]**: the mio server: HTTP and WebSocket on one port, one event loop per core,
//!   pub/sub with history, a memory budget, and a [`server::bus`] to share topics between
//!   processes (Redis with the `redis` feature).
//! - **[`client`]**: a blocking client over `std::net`: handshake checks, split halves,
//!   timeouts on every wait, reconnecting with backoff.
//! - **The sans-IO protocol core**: [`handshake`], [`frame`], [`utf8`], [`protocol`], and
//!   [`deflate`] for permessage-deflate (RFC 7692), [`json`] for JSON strings,
//!   [`OwnedMessage`] for a text or binary message that outlives its buffer, and [`observe`]
//!   for what an observer of the wire is shown. It takes bytes and returns events plus the
//!   bytes to send, and never touches sockets, threads or clocks, so the server, the client,
//!   the fuzz targets, the teaching renderer ([`explain`]) and the tests all drive the same code.
//!
//! **Cargo features** (README, "Cargo features"): `cli` (the `wsloop` binary), `redis` (the
//! Redis message bus), both on by default; with `default-features = false` the library builds
//! with 21 crates, itself included (the bound is 25). `fuzzing` (off) exposes hooks for the
//! fuzz targets.
//!
//! ## The core in twenty lines
//!
//! A server reads a client's masked "Hello" (RFC 6455 §5.7) and answers it.
//!
//! ```
//! use wsloop::protocol::{Config, Event, WebSocket};
//!
//! let mut ws = WebSocket::server(Config::default());
//! // A masked text frame, exactly as RFC 6455 §5.7 shows it.
//! let mut input = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
//! let mut out = Vec::new();
//!
//! let received = ws.receive(&mut input, &mut out).unwrap();
//! assert_eq!(received.consumed, 11);
//! assert_eq!(received.event, Some(Event::Text("Hello")));
//!
//! // Echo it: servers send unmasked frames.
//! ws.send_text("Hello", &mut out).unwrap();
//! assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod deflate;
pub mod error;
pub mod explain;
pub mod frame;
pub mod handshake;
pub mod json;
pub mod logging;
mod message;
pub mod observe;
pub mod protocol;
pub mod server;
pub mod utf8;

pub use error::{ProtocolError, SendError};
pub use frame::{CloseCode, Opcode};
pub use handshake::HandshakeError;
pub use message::OwnedMessage;
pub use protocol::{Config, Event, Role, State, WebSocket};
