//! Bytes from the server on their way through the protocol core (RFC 6455 §5–§8): a read
//! buffer, the core's `receive` loop, and owned events out. Sans-IO except for
//! [`Inbound::read_from`], so the blocking reader and the `client_session` fuzz target share it.
//!
//! The buffer is a fixed [`READ_CHUNK`] (plus whatever the handshake read past its head): the
//! core consumes every byte it is given unless it completes an event, keeping partial headers
//! and reassembled messages itself, within its limits (RFC 6455 §10.4). So bytes wait here only
//! between two events of the same read.

use super::event::ClientEvent;
use crate::error::ProtocolError;
use crate::protocol::WebSocket;
use std::io::{self, Read};

/// Bytes asked for per read from the socket.
pub const READ_CHUNK: usize = 64 * 1024;

/// The read side's buffer and, when tracing, the raw frames of the event in progress.
#[derive(Debug)]
pub struct Inbound {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// When observed: the wire bytes consumed since the last event, as they arrived (the core
    /// unmasks in place, so they are copied before it runs).
    capture: Option<Vec<u8>>,
}

impl Inbound {
    /// An empty buffer; `capture` keeps the raw frames of each event for an observer.
    pub fn new(capture: bool) -> Inbound {
        Inbound {
            buf: Vec::new(),
            start: 0,
            end: 0,
            capture: capture.then(Vec::new),
        }
    }

    /// Bytes waiting for the core.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Heap bytes held (the buffer and the capture).
    pub fn memory_held(&self) -> usize {
        self.buf.capacity() + self.capture.as_ref().map_or(0, Vec::capacity)
    }

    /// Appends bytes that did not come from [`Inbound::read_from`]: frames that arrived with
    /// the handshake response (RFC 6455 §4.1: they belong to the WebSocket connection).
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.truncate(self.end);
        self.buf.extend_from_slice(bytes);
        self.end = self.buf.len();
    }

    /// One read from `r` into the buffer; the read's result (0 at end of stream).
    pub fn read_from(&mut self, r: &mut impl Read) -> io::Result<usize> {
        self.compact();
        if self.buf.len() < self.end + READ_CHUNK {
            self.buf.resize(self.end + READ_CHUNK, 0);
        }
        let n = r.read(self.buf.get_mut(self.end..).unwrap_or_default())?;
        self.end += n;
        Ok(n)
    }

    /// Runs the core on the buffered bytes until it completes an event or needs more. Bytes
    /// the protocol answers with (Pong, Close reply, the Close that fails the connection) are
    /// appended to `out`. On error the connection has failed (RFC 6455 §7.1.7).
    pub fn next_event(&mut self, ws: &mut WebSocket, out: &mut Vec<u8>) -> Result<Option<ClientEvent>, ProtocolError> {
        if self.start == self.end {
            return Ok(None);
        }
        let input = self.buf.get_mut(self.start..self.end).unwrap_or_default();
        let raw_from = self.capture.as_ref().map(|c| c.len());
        if let Some(c) = self.capture.as_mut() {
            c.extend_from_slice(input);
        }
        let result = ws.receive(input, out);
        let (consumed, event) = match result {
            Ok(r) => (r.consumed, r.event.map(ClientEvent::from_core)),
            Err(e) => {
                self.start = self.end;
                return Err(e);
            }
        };
        // Keep in the capture only what the core consumed; the rest is still to come.
        if let (Some(c), Some(from)) = (self.capture.as_mut(), raw_from) {
            c.truncate(from + consumed);
        }
        self.start = (self.start + consumed).min(self.end);
        Ok(event)
    }

    /// The raw frames captured since the last call (empty when not capturing).
    pub fn take_captured(&mut self) -> Vec<u8> {
        self.capture.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn compact(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // A buffer grown past one chunk (a handshake read that carried many frames) goes back
        // to one chunk once drained.
        if self.end == 0 && self.buf.capacity() > 2 * READ_CHUNK {
            self.buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Config;

    #[test]
    fn events_come_one_at_a_time_and_capture_keeps_their_frames() {
        let mut ws = WebSocket::client(Config::default());
        let mut inbound = Inbound::new(true);
        let mut out = Vec::new();
        // Text "hi", a Ping "p", then half of a Binary frame.
        let wire = [0x81, 0x02, b'h', b'i', 0x89, 0x01, b'p', 0x82, 0x03, 1];
        inbound.push(&wire);
        assert_eq!(
            inbound.next_event(&mut ws, &mut out),
            Ok(Some(ClientEvent::Text("hi".into())))
        );
        assert_eq!(inbound.take_captured(), &wire[..4]);
        assert_eq!(
            inbound.next_event(&mut ws, &mut out),
            Ok(Some(ClientEvent::Ping(b"p".to_vec())))
        );
        assert_eq!(inbound.take_captured(), &wire[4..7]);
        assert_eq!(out.len(), 2 + 4 + 1, "the masked Pong");
        assert_eq!(inbound.next_event(&mut ws, &mut out), Ok(None));
        assert_eq!(inbound.buffered(), 0);
        let mut rest: &[u8] = &[2, 3];
        assert_eq!(inbound.read_from(&mut rest).unwrap(), 2);
        assert_eq!(
            inbound.next_event(&mut ws, &mut out),
            Ok(Some(ClientEvent::Binary(vec![1, 2, 3])))
        );
        assert_eq!(inbound.take_captured(), [0x82, 0x03, 1, 2, 3]);
    }

    #[test]
    fn a_masked_server_frame_fails_with_1002() {
        let mut ws = WebSocket::client(Config::default());
        let mut inbound = Inbound::new(false);
        let mut out = Vec::new();
        inbound.push(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        assert_eq!(
            inbound.next_event(&mut ws, &mut out),
            Err(ProtocolError::MaskedServerFrame)
        );
        let reason = ProtocolError::MaskedServerFrame.close_reason();
        let len = u8::try_from(2 + reason.len()).unwrap();
        assert_eq!(
            out.get(..2),
            Some(&[0x88, 0x80 | len][..]),
            "a masked Close with its reason"
        );
        assert_eq!(u16::from_be_bytes([out[6] ^ out[2], out[7] ^ out[3]]), 1002);
    }
}
