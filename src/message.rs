//! An owned data message, text or binary (RFC 6455 §5.6): the one the client sends and
//! receives (as [`ClientEvent`](crate::client::ClientEvent)'s data), and the owned counterpart
//! of the server's borrowed [`Message`](crate::server::Message), which points into the read
//! buffer and lives only for one callback.
//!
//! It sits in the core rather than in `client` so that one owned type can serve every part that
//! keeps a message past the buffer it came from; today the client uses it. It is re-exported as
//! [`wsloop::OwnedMessage`](crate::OwnedMessage) and
//! [`wsloop::client::OwnedMessage`](crate::client::OwnedMessage).

/// A whole data message with its payload, owned (RFC 6455 §5.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedMessage {
    /// A text message; a `String` is UTF-8 already, as §5.6 requires.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl OwnedMessage {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            OwnedMessage::Text(t) => t.len(),
            OwnedMessage::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<String> for OwnedMessage {
    fn from(t: String) -> OwnedMessage {
        OwnedMessage::Text(t)
    }
}

impl From<&str> for OwnedMessage {
    fn from(t: &str) -> OwnedMessage {
        OwnedMessage::Text(t.to_owned())
    }
}

impl From<Vec<u8>> for OwnedMessage {
    fn from(b: Vec<u8>) -> OwnedMessage {
        OwnedMessage::Binary(b)
    }
}

impl From<&[u8]> for OwnedMessage {
    fn from(b: &[u8]) -> OwnedMessage {
        OwnedMessage::Binary(b.to_vec())
    }
}
