//! # wsloop
//!
//! A WebSocket implementation written by hand from RFC 6455, in two layers:
//!
//! - **A sans-IO protocol core** — [`handshake`], [`frame`], [`utf8`], [`protocol`],
//!   [`deflate`] for permessage-deflate (RFC 7692), and [`observe`] for what an observer of the
//!   wire is shown — that takes bytes and returns events plus the bytes to send. It never touches sockets, threads or clocks,
//!   so the server, the fuzz targets, the teaching commands, the benchmarks and the tests all
//!   drive the same code.
//! - **A mio server** (`server`) that serves HTTP and WebSocket on one port.
//! - **A blocking client** ([`client`]) over `std::net`: handshake checks, split halves,
//!   timeouts on every wait, reconnecting with backoff.
//!
//! The core in twenty lines: a server reads a client's masked "Hello" (RFC 6455 §5.7) and
//! answers it.
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
pub mod logging;
pub mod observe;
pub mod protocol;
pub mod server;
pub mod utf8;

pub use error::{ProtocolError, SendError};
pub use frame::{CloseCode, Opcode};
pub use handshake::HandshakeError;
pub use protocol::{Config, Event, Role, State, WebSocket};
