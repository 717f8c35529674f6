//! What a client receives ([`ClientEvent`]), owned, so it outlives the read buffer it came from
//! (RFC 6455 §5.5, §5.6). What it sends is an [`OwnedMessage`].

use crate::frame::CloseCode;
use crate::message::OwnedMessage;
use crate::protocol;

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
pub enum ClientEvent {
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

impl ClientEvent {
    /// The data message this event carries, if it is one: for echoing, or forwarding.
    pub fn into_message(self) -> Option<OwnedMessage> {
        match self {
            ClientEvent::Text(t) => Some(OwnedMessage::Text(t)),
            ClientEvent::Binary(b) => Some(OwnedMessage::Binary(b)),
            _ => None,
        }
    }

    /// Copies a core event out of the buffer it borrows from.
    pub(crate) fn from_core(event: protocol::Event<'_>) -> ClientEvent {
        match event {
            protocol::Event::Text(t) => ClientEvent::Text(t.to_owned()),
            protocol::Event::Binary(b) => ClientEvent::Binary(b.to_vec()),
            protocol::Event::Ping(p) => ClientEvent::Ping(p.to_vec()),
            protocol::Event::Pong(p) => ClientEvent::Pong(p.to_vec()),
            protocol::Event::Close(c) => ClientEvent::Close(c.map(|c| CloseStatus {
                code: c.code,
                reason: c.reason.to_owned(),
            })),
        }
    }
}
