//! What a test expects of the next WebSocket event.
#![allow(dead_code)]

use wsloop::protocol::OwnedEvent;
use wsloop::server::ConnId;

/// The text of a text message; anything else fails the test.
pub fn text(e: Option<OwnedEvent>) -> String {
    match e {
        Some(OwnedEvent::Text(t)) => t,
        Some(OwnedEvent::Binary(b)) => panic!("expected a text message, got {} binary bytes", b.len()),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The connection id in /chat's welcome notice; anything else fails the test.
pub fn welcome_id(e: Option<OwnedEvent>) -> ConnId {
    match e {
        Some(OwnedEvent::Text(t)) if t.starts_with("{\"type\":\"welcome\"") => {
            super::json_field(&t, "id").unwrap().parse().unwrap()
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
}
