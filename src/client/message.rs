//! What a client sends ([`Message`]) and what it receives ([`Event`]), owned, so they outlive
//! the read buffer they came from (RFC 6455 §5.5, §5.6).

use crate::frame::CloseCode;
use crate::protocol;

/// A data message to send (RFC 6455 §5.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message; a `String` is UTF-8 already, as §5.6 requires.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<String> for Message {
    fn from(t: String) -> Message {
        Message::Text(t)
    }
}

impl From<&str> for Message {
    fn from(t: &str) -> Message {
        Message::Text(t.to_owned())
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Message {
        Message::Binary(b)
    }
}

impl From<&[u8]> for Message {
    fn from(b: &[u8]) -> Message {
        Message::Binary(b.to_vec())
    }
}

/// The status code and reason of a Close frame (RFC 6455 §5.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseStatus {
    /// The status code (RFC 6455 §7.4).
    pub code: CloseCode,
    /// The reason, possibly empty.
    pub reason: String,
}

/// Something the server sent (RFC 6455 §5.5, §5.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole text message, checked to be UTF-8.
    Text(String),
    /// A whole binary message.
    Binary(Vec<u8>),
    /// A Ping. With [`Config::auto_pong`](crate::protocol::Config::auto_pong) (the default)
    /// the Pong carrying the same payload has been sent already (RFC 6455 §5.5.2).
    Ping(Vec<u8>),
    /// A Pong (RFC 6455 §5.5.3).
    Pong(Vec<u8>),
    /// The server's Close frame; `None` when it carried no status code (RFC 6455 §5.5.1).
    /// When this is returned the close handshake is complete: both Close frames have been
    /// exchanged and the server has closed TCP (or the close timeout ran out). Nothing more
    /// will be received.
    Close(Option<CloseStatus>),
}

impl Event {
    /// The data message this event carries, if it is one: for echoing, or forwarding.
    pub fn into_message(self) -> Option<Message> {
        match self {
            Event::Text(t) => Some(Message::Text(t)),
            Event::Binary(b) => Some(Message::Binary(b)),
            _ => None,
        }
    }

    /// Copies a core event out of the buffer it borrows from.
    pub(crate) fn from_core(event: protocol::Event<'_>) -> Event {
        match event {
            protocol::Event::Text(t) => Event::Text(t.to_owned()),
            protocol::Event::Binary(b) => Event::Binary(b.to_vec()),
            protocol::Event::Ping(p) => Event::Ping(p.to_vec()),
            protocol::Event::Pong(p) => Event::Pong(p.to_vec()),
            protocol::Event::Close(c) => Event::Close(c.map(|c| CloseStatus {
                code: c.code,
                reason: c.reason.to_owned(),
            })),
        }
    }
}
