//! Publish/subscribe: who listens to what ([`fanout`]), what a topic remembers ([`history`])
//! and how a reconnecting client catches up on it ([`replay`]), and the [`bus`] that joins
//! several servers' topics.
//!
//! A publication from any path (a WebSocket message, a POST, the server handle, the bus) is an
//! `Outgoing` that the event loop fans out to the subscribers of its own connections, under
//! the same backpressure and memory budget.

pub mod bus;
pub(crate) mod fanout;
pub(crate) mod history;
pub(crate) mod replay;
