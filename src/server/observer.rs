//! Watching the wire from outside the loop: an [`Observer`] the embedding program installs
//! (`Server::observer`) is shown every handshake and every frame, raw. The loop only hands
//! bytes over; formatting happens wherever the observer wants it.
//!
//! [`TraceObserver`] is what `wsloop serve --trace` installs: it copies the bytes into a
//! bounded queue and a printer thread renders them with [`crate::explain`]. When the printer
//! falls behind (a slow terminal, a full pipe), events are dropped and counted, never waited
//! for: tracing cannot block the server.

use super::ConnId;
use crate::explain::{self, Direction, Style};
use crate::handshake::Request;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Sees what crosses the wire. Called on the event loop: return quickly.
pub trait Observer: Send + Sync + 'static {
    /// An upgrade request and the server's answer (the 101, or a refusal).
    fn handshake(&self, id: ConnId, peer: SocketAddr, request: &Request, response: &[u8]) {
        let _ = (id, peer, request, response);
    }

    /// Frame bytes as they crossed the wire (received ones still masked). One call may hold
    /// several frames, or part of one.
    fn frames(&self, id: ConnId, peer: SocketAddr, direction: Direction, wire: &[u8]) {
        let _ = (id, peer, direction, wire);
    }

    /// The peer broke a protocol rule; the connection is failing with `error`'s close code.
    fn protocol_error(&self, id: ConnId, peer: SocketAddr, error: &crate::ProtocolError) {
        let _ = (id, peer, error);
    }
}

enum TraceEvent {
    Handshake {
        id: ConnId,
        peer: SocketAddr,
        request: Box<Request>,
        response: Vec<u8>,
    },
    Frames {
        id: ConnId,
        peer: SocketAddr,
        direction: Direction,
        wire: Vec<u8>,
    },
    Error {
        id: ConnId,
        peer: SocketAddr,
        text: String,
    },
}

/// Bytes of one frames event copied into the queue at most; the rest is summarised.
const MAX_TRACE_BYTES: usize = 64 * 1024;

/// Prints an annotated trace of every handshake and frame to standard output, from its own
/// thread, through a queue of bounded length. See the module docs.
pub struct TraceObserver {
    tx: SyncSender<TraceEvent>,
    dropped: Arc<AtomicU64>,
}

impl TraceObserver {
    /// Starts the printer thread with room for `capacity` events in the queue.
    pub fn stdout(capacity: usize) -> std::io::Result<TraceObserver> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let seen = dropped.clone();
        std::thread::Builder::new()
            .name("wsloop-trace".into())
            .spawn(move || print_events(rx, &seen))?;
        Ok(TraceObserver { tx, dropped })
    }

    /// Events dropped because the printer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, event: TraceEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Observer for TraceObserver {
    fn handshake(&self, id: ConnId, peer: SocketAddr, request: &Request, response: &[u8]) {
        self.send(TraceEvent::Handshake {
            id,
            peer,
            request: Box::new(request.clone()),
            response: response.to_vec(),
        });
    }

    fn frames(&self, id: ConnId, peer: SocketAddr, direction: Direction, wire: &[u8]) {
        let wire = wire.get(..MAX_TRACE_BYTES).unwrap_or(wire).to_vec();
        self.send(TraceEvent::Frames {
            id,
            peer,
            direction,
            wire,
        });
    }

    fn protocol_error(&self, id: ConnId, peer: SocketAddr, error: &crate::ProtocolError) {
        self.send(TraceEvent::Error {
            id,
            peer,
            text: format!("!! {error}"),
        });
    }
}

fn print_events(rx: Receiver<TraceEvent>, dropped: &AtomicU64) {
    let style = Style::detect();
    let mut reported = 0;
    for event in rx {
        let (id, peer, text) = match event {
            TraceEvent::Handshake {
                id,
                peer,
                request,
                response,
            } => (id, peer, explain::trace_handshake(&request, &response, style)),
            TraceEvent::Frames {
                id,
                peer,
                direction,
                wire,
            } => (id, peer, explain::trace_frames(direction, &wire, style)),
            TraceEvent::Error { id, peer, text } => (id, peer, text),
        };
        let mut out = std::io::stdout().lock();
        let now = dropped.load(Ordering::Relaxed);
        if now > reported {
            let _ = writeln!(
                out,
                "[trace] {} events dropped: the printer fell behind",
                now - reported
            );
            reported = now;
        }
        for line in text.lines() {
            let _ = writeln!(out, "[#{id} {peer}] {line}");
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // No printer thread: the queue fills and stays full.
        let (tx, _rx) = mpsc::sync_channel(2);
        let obs = TraceObserver {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let id = ConnId::new(0, 0, 0, 1);
        for _ in 0..10 {
            obs.frames(id, peer, Direction::Sent, &[0x81, 0x00]);
        }
        assert_eq!(obs.dropped(), 8);
    }
}
