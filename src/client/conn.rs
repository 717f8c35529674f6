//! An open connection as two halves over one TCP socket: [`ClientReader`] and [`ClientWriter`].
//!
//! **Why `try_clone` halves and two mutexes.** The reader owns one handle of the socket (a
//! `TcpStream::try_clone`) and the read buffer, and blocks in `read` holding no lock. Everything
//! the protocol core keeps for *both* directions — the masking-key generator (RFC 6455 §5.3),
//! the close state (§7), the permessage-deflate contexts — lives in one [`WebSocket`] behind
//! the `proto` mutex, which either side holds only while encoding or decoding bytes already in
//! memory. Writes go through the `writer` mutex (the other socket handle), taken *before*
//! `proto` and held until the encoded bytes are on the wire, so frames reach the wire in the
//! order they were encoded; that matters for fragments and for a compressor with context
//! takeover (RFC 7692 §7.2.1).
//!
//! **Replies the reader must send** (a Pong, the Close reply, the Close that fails the
//! connection) are appended to `pending` under `proto`. The reader then only *tries* the
//! writer mutex: a writer blocked on a full socket must not stop the reader from draining
//! incoming bytes, or a peer that echoes what we send could deadlock us both. If the mutex is
//! busy, its holder writes `pending` before and after releasing it (see
//! [`Shared::flush_pending`]), so no reply is left behind.
//!
//! **Over TLS** (`wss://`) both halves also share the rustls session, behind its own mutex that
//! is never held across a socket call (see `tls.rs`): the reader decrypts after its blocking
//! read, the writer encrypts and then writes the records under the writer mutex. Records the
//! session queues while reading (a KeyUpdate reply, RFC 8446 §4.6.3) are flushed exactly like
//! `pending`.

use super::error::{Error, Phase};
use super::event::{ClientEvent, CloseStatus};
use super::inbound::Inbound;
use super::later;
use super::observer::ClientObserver;
use super::tls::{self, RawBuf, TlsSession};
use crate::deflate::DeflateParams;
use crate::error::SendError;
use crate::frame::CloseCode;
use crate::message::OwnedMessage;
use crate::observe::Direction;
use crate::protocol::{State, WebSocket};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

/// Write buffers larger than this are freed after use, so a connection that once sent a big
/// message does not keep its size allocated.
const KEEP_WRITE_BUFFER: usize = 128 * 1024;

/// What both halves share.
pub(crate) struct Shared {
    proto: Mutex<Proto>,
    writer: Mutex<WriteHalf>,
    observer: Option<Arc<dyn ClientObserver>>,
    close_timeout: Duration,
    protocol: Option<String>,
    deflate: Option<DeflateParams>,
    peer: Option<SocketAddr>,
    /// The TLS session of a `wss://` connection.
    tls: Option<Arc<TlsSession>>,
    /// The URL's host, for error messages.
    host: String,
}

/// The protocol state, shared by reading and writing.
struct Proto {
    ws: WebSocket,
    /// Bytes the core produced while reading, not yet written.
    pending: Vec<u8>,
    /// When our Close frame went out (RFC 6455 §7.1.2): starts the close timeout.
    close_sent_at: Option<Instant>,
    /// The socket is gone or unusable (end of stream, an I/O error, a write cut short):
    /// nothing more is written.
    dead: bool,
}

struct WriteHalf {
    stream: TcpStream,
    buf: Vec<u8>,
    /// TLS records between the session and the socket.
    records: Vec<u8>,
}

/// A mutex's data even if a thread panicked while holding it: every critical section here
/// leaves the data consistent between statements, and a client must not turn one thread's
/// panic into a panic in another.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The fields of an open connection, from the handshake.
pub(crate) struct Parts {
    pub stream: TcpStream,
    pub tls: Option<Arc<TlsSession>>,
    /// Ciphertext read during the handshake and not yet decrypted.
    pub raw: RawBuf,
    pub ws: WebSocket,
    pub first_frames: Vec<u8>,
    pub read_timeout: Option<Duration>,
    pub close_timeout: Duration,
    pub observer: Option<Arc<dyn ClientObserver>>,
    pub protocol: Option<String>,
    pub deflate: Option<DeflateParams>,
    pub host: String,
}

/// Splits an open socket into its two halves.
pub(crate) fn halves(parts: Parts) -> io::Result<(ClientReader, ClientWriter)> {
    let read_stream = parts.stream.try_clone()?;
    let peer = parts.stream.peer_addr().ok();
    let shared = Arc::new(Shared {
        proto: Mutex::new(Proto {
            ws: parts.ws,
            pending: Vec::new(),
            close_sent_at: None,
            dead: false,
        }),
        writer: Mutex::new(WriteHalf {
            stream: parts.stream,
            buf: Vec::new(),
            records: Vec::new(),
        }),
        observer: parts.observer,
        close_timeout: parts.close_timeout,
        protocol: parts.protocol,
        deflate: parts.deflate,
        peer,
        tls: parts.tls,
        host: parts.host,
    });
    let mut inbound = Inbound::new(shared.observer.is_some());
    inbound.push(&parts.first_frames);
    let reader = ClientReader {
        shared: shared.clone(),
        stream: read_stream,
        raw: parts.raw,
        inbound,
        read_timeout: parts.read_timeout,
        socket_timeout: None,
        done: false,
        peer_close: None,
    };
    Ok((reader, ClientWriter { shared }))
}

impl Shared {
    /// Encodes with `encode` and writes, after any replies still pending, in wire order.
    fn send_with(
        &self,
        encode: impl FnOnce(&mut WebSocket, &mut Vec<u8>) -> Result<(), SendError>,
    ) -> Result<(), Error> {
        let mut guard = lock(&self.writer);
        let WriteHalf { stream, buf, records } = &mut *guard;
        buf.clear();
        let encoded = {
            let mut p = lock(&self.proto);
            if p.dead {
                return Err(Error::Closed);
            }
            buf.append(&mut p.pending);
            let before = p.ws.state();
            let encoded = encode(&mut p.ws, buf);
            if before == State::Open && p.ws.state() == State::CloseSent {
                p.close_sent_at = Some(Instant::now());
            }
            encoded
        };
        let written = self
            .write_locked(stream, buf, records)
            .and_then(|()| self.drain_locked(stream, buf, records));
        drop(guard);
        written?;
        self.flush_pending()?;
        encoded.map_err(Error::from)
    }

    /// Whether the TLS session has records to write (always false over plain TCP).
    fn tls_wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes `buf` (under the writer mutex), over TLS with whatever records the session has
    /// queued; on failure the connection is dead.
    fn write_locked(&self, stream: &mut TcpStream, buf: &mut Vec<u8>, records: &mut Vec<u8>) -> Result<(), Error> {
        if buf.is_empty() && !self.tls_wants_write() {
            return Ok(());
        }
        if let Some(obs) = self.observer.as_ref().filter(|_| !buf.is_empty()) {
            obs.frames(Direction::Sent, buf);
        }
        let result = match &self.tls {
            Some(tls) => tls.write_all(stream, buf, records),
            None => stream.write_all(buf),
        };
        buf.clear();
        if buf.capacity() > KEEP_WRITE_BUFFER {
            *buf = Vec::new();
        }
        if records.capacity() > KEEP_WRITE_BUFFER {
            *records = Vec::new();
        }
        result.map_err(|e| {
            self.kill(stream);
            tls::from_io(e, Phase::Write, &self.host)
        })
    }

    /// Writes whatever the reader left in `pending`, until none is left (under the writer
    /// mutex).
    fn drain_locked(&self, stream: &mut TcpStream, buf: &mut Vec<u8>, records: &mut Vec<u8>) -> Result<(), Error> {
        loop {
            {
                let mut p = lock(&self.proto);
                if p.dead {
                    p.pending.clear();
                }
                buf.append(&mut p.pending);
            }
            if buf.is_empty() && !self.tls_wants_write() {
                return Ok(());
            }
            self.write_locked(stream, buf, records)?;
        }
    }

    /// The reader's way to write `pending`: only if the writer mutex is free. If it is not,
    /// its holder drains `pending` before releasing it and calls this again after, which sees
    /// anything appended in between: the reader appended before its `try_lock` failed, so
    /// before the holder released the mutex.
    /// The same holds for records the TLS session queued while reading.
    fn flush_pending(&self) -> Result<(), Error> {
        loop {
            if lock(&self.proto).pending.is_empty() && !self.tls_wants_write() {
                return Ok(());
            }
            let Some(mut guard) = try_lock(&self.writer) else {
                return Ok(());
            };
            let WriteHalf { stream, buf, records } = &mut *guard;
            buf.clear();
            self.drain_locked(stream, buf, records)?;
        }
    }

    /// Over TLS, sends close_notify (RFC 8446 §6.1) once the WebSocket connection is over on
    /// our side, so a server that waits for it before closing TCP (as TLS servers may) need
    /// not time out. Only if the writer is free: a reader must never wait on a blocked writer.
    fn close_notify(&self) {
        if let Some(tls) = &self.tls {
            if lock(&self.proto).dead {
                return;
            }
            tls.send_close_notify();
            let _ = self.flush_pending();
        }
    }

    /// Marks the connection dead and shuts the socket both ways, which also wakes a reader
    /// blocked in `read`.
    fn kill(&self, stream: &TcpStream) {
        lock(&self.proto).dead = true;
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// The receiving half of a connection: [`recv`](Self::recv) on one thread while
/// [`ClientWriter`] sends from others. From [`Client::split`](super::Client::split).
pub struct ClientReader {
    shared: Arc<Shared>,
    stream: TcpStream,
    /// Over TLS: ciphertext read and not yet decrypted.
    raw: RawBuf,
    inbound: Inbound,
    read_timeout: Option<Duration>,
    /// The read timeout currently set on the socket, to skip needless system calls.
    socket_timeout: Option<Option<Duration>>,
    /// Nothing more will be received: the close handshake finished or the connection failed.
    done: bool,
    /// The server's Close, once received.
    peer_close: Option<Option<CloseStatus>>,
}

impl std::fmt::Debug for ClientReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientReader")
            .field("peer", &self.shared.peer)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ClientReader {
    /// The next message or control frame from the server (RFC 6455 §5.4–§5.6), reading as
    /// needed. Pings are answered before they are returned. After [`ClientEvent::Close`] the close
    /// handshake is over (RFC 6455 §7.1.1: the reader waited, at most the close timeout, for
    /// the server to close TCP) and further calls return [`Error::Closed`].
    ///
    /// Errors: [`Error::Timeout`]`(Phase::Read)` after the read timeout without data (the
    /// connection stays usable), `Timeout(Phase::Close)` when the server does not finish a
    /// close handshake we started, [`Error::Protocol`] when the server broke a rule (the
    /// connection was failed with its close code, RFC 6455 §7.1.7), [`Error::ClosedAbnormally`]
    /// when TCP ended without a Close frame.
    pub fn recv(&mut self) -> Result<ClientEvent, Error> {
        self.recv_until(None)
    }

    /// [`recv`](Self::recv), waiting at most `timeout` in all (however many reads a message
    /// takes), whatever the read timeout: `Err(`[`Error::Timeout`]`(Phase::Read))` when
    /// nothing complete arrived in time. The connection stays usable, and bytes of a message
    /// cut by the timeout are kept for the next call. A zero timeout returns only an event
    /// already received, without reading.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ClientEvent, Error> {
        self.recv_until(Some(later(Instant::now(), timeout)))
    }

    fn recv_until(&mut self, until: Option<Instant>) -> Result<ClientEvent, Error> {
        if self.done {
            return Err(Error::Closed);
        }
        loop {
            let (result, close_deadline) = {
                let mut p = lock(&self.shared.proto);
                let Proto { ws, pending, .. } = &mut *p;
                let result = self.inbound.next_event(ws, pending);
                (result, p.close_sent_at.map(|t| later(t, self.shared.close_timeout)))
            };
            match result {
                Ok(None) => {}
                Ok(Some(event)) => {
                    self.observe_received();
                    // A failed write kills the connection; the next call reports it.
                    let _ = self.shared.flush_pending();
                    if let ClientEvent::Close(status) = &event {
                        self.peer_close = Some(status.clone());
                        self.wait_for_tcp_close(close_deadline);
                    }
                    return Ok(event);
                }
                Err(e) => {
                    self.observe_received();
                    if let Some(obs) = &self.shared.observer {
                        obs.protocol_error(&e);
                    }
                    let _ = self.shared.flush_pending();
                    self.wait_for_tcp_close(close_deadline);
                    return Err(Error::Protocol(e));
                }
            }
            self.read_more(close_deadline, until)?;
        }
    }

    /// One read from the socket, bounded by the read timeout and, once our Close went out, by
    /// the close deadline.
    /// `until`: the caller's own deadline ([`recv_timeout`](Self::recv_timeout)).
    fn read_more(&mut self, close_deadline: Option<Instant>, until: Option<Instant>) -> Result<(), Error> {
        let mut timeout = match close_deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.abort();
                    return Err(Error::Timeout(Phase::Close));
                }
                Some(self.read_timeout.map_or(left, |t| t.min(left)))
            }
            None => self.read_timeout,
        };
        if let Some(until) = until {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(Phase::Read));
            }
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        self.set_socket_timeout(timeout);
        let read = match &self.shared.tls {
            Some(tls) => {
                let read = self.inbound.read_from(&mut TlsRead {
                    tls,
                    stream: &self.stream,
                    raw: &mut self.raw,
                });
                // Records the session must answer with (a KeyUpdate) go out now; a failed
                // write kills the connection and the next call reports it.
                let _ = self.shared.flush_pending();
                read
            }
            None => self.inbound.read_from(&mut self.stream),
        };
        match read {
            Ok(0) => {
                self.abort();
                Err(Error::ClosedAbnormally)
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if close_deadline.is_some_and(|d| Instant::now() >= d) {
                    self.abort();
                    Err(Error::Timeout(Phase::Close))
                } else {
                    Err(Error::Timeout(Phase::Read))
                }
            }
            Err(e) => {
                self.abort();
                Err(tls::from_io(e, Phase::Read, &self.shared.host))
            }
        }
    }

    fn set_socket_timeout(&mut self, timeout: Option<Duration>) {
        // Zero means "no timeout" to setsockopt; std refuses it. One millisecond is the floor.
        let timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
        if self.socket_timeout != Some(timeout) && self.stream.set_read_timeout(timeout).is_ok() {
            self.socket_timeout = Some(timeout);
        }
    }

    /// After both Close frames (or after failing the connection): the server closes TCP first
    /// (RFC 6455 §7.1.1, "the client SHOULD wait for the server to close the connection"); wait
    /// for that, discarding anything else, at most the close timeout. Then close our side.
    fn wait_for_tcp_close(&mut self, close_deadline: Option<Instant>) {
        let deadline = close_deadline.unwrap_or_else(|| later(Instant::now(), self.shared.close_timeout));
        self.shared.close_notify();
        let mut scratch = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.set_socket_timeout(Some(left));
            match self.stream.read(&mut scratch) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.abort();
    }

    /// Ends the connection on our side: nothing more is read or written.
    fn abort(&mut self) {
        self.done = true;
        self.shared.kill(&self.stream);
    }

    fn observe_received(&mut self) {
        if let Some(obs) = &self.shared.observer {
            let wire = self.inbound.take_captured();
            if !wire.is_empty() {
                obs.frames(Direction::Received, &wire);
            }
        }
    }

    /// The server's Close frame, once [`recv`](Self::recv) returned it: `Some(None)` when it
    /// carried no status code.
    pub fn peer_close(&self) -> Option<&Option<CloseStatus>> {
        self.peer_close.as_ref()
    }

    /// Whether `writer` sends on this reader's connection.
    pub fn same_connection(&self, writer: &ClientWriter) -> bool {
        Arc::ptr_eq(&self.shared, &writer.shared)
    }

    /// Whether nothing more will be received.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The subprotocol the server chose in the handshake, if any (RFC 6455 §4.1).
    pub fn protocol(&self) -> Option<&str> {
        self.shared.protocol.as_deref()
    }
}

/// The sending half of a connection; cloneable, and usable from any thread while a
/// [`ClientReader`] receives. Every frame is masked with a fresh key (RFC 6455 §5.3).
#[derive(Clone)]
pub struct ClientWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ClientWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientWriter")
            .field("peer", &self.shared.peer)
            .finish_non_exhaustive()
    }
}

impl ClientWriter {
    /// Sends a data message in one frame (RFC 6455 §5.6), compressed if permessage-deflate was
    /// agreed and the message is large enough (RFC 7692 §6).
    pub fn send(&self, message: OwnedMessage) -> Result<(), Error> {
        match &message {
            OwnedMessage::Text(t) => self.send_text(t),
            OwnedMessage::Binary(b) => self.send_binary(b),
        }
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.shared.send_with(|ws, out| ws.send_text(text, out))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.shared.send_with(|ws, out| ws.send_binary(data, out))
    }

    /// Sends a Ping with up to 125 bytes of payload (RFC 6455 §5.5.2); its Pong arrives as
    /// [`ClientEvent::Pong`].
    pub fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        self.shared.send_with(|ws, out| ws.send_ping(payload, out))
    }

    /// Sends an unsolicited Pong, a one-way heartbeat (RFC 6455 §5.5.3).
    pub fn pong(&self, payload: &[u8]) -> Result<(), Error> {
        self.shared.send_with(|ws, out| ws.send_pong(payload, out))
    }

    /// Starts the closing handshake: sends a Close frame with `code` and `reason` (RFC 6455
    /// §7.1.2; the reason is cut to 123 bytes at a character boundary). The reader then sees the
    /// server's Close as [`ClientEvent::Close`] once the server has closed TCP, or
    /// [`Error::Timeout`]`(Phase::Close)` after the close timeout. Data frames can no longer be
    /// sent (§5.5.1).
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.shared.send_with(|ws, out| ws.close(code, reason, out))
    }

    /// Whether data can still be sent: open, and no Close sent or received.
    pub fn is_open(&self) -> bool {
        let p = lock(&self.shared.proto);
        !p.dead && p.ws.state() == State::Open
    }

    /// The subprotocol the server chose in the handshake, if any (RFC 6455 §4.1).
    pub fn protocol(&self) -> Option<&str> {
        self.shared.protocol.as_deref()
    }

    /// The permessage-deflate parameters agreed in the handshake, if any (RFC 7692 §7).
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.shared.deflate.as_ref()
    }

    /// The server's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared.peer
    }
}

/// The reader's socket through the TLS session, for [`Inbound::read_from`].
struct TlsRead<'a> {
    tls: &'a TlsSession,
    stream: &'a TcpStream,
    raw: &'a mut RawBuf,
}

impl Read for TlsRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tls.read(self.stream, self.raw, buf)
    }
}
