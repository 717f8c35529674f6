//! TLS between the socket and the session (feature `tls`): rustls' sans-IO connection, one
//! per TLS connection, boxed so that a plain connection pays one pointer for it.
//!
//! **Reading.** The loop reads the socket into its shared buffer as for plain TCP; the records
//! go through `read_tls` and `process_new_packets` (a few KiB at a time: rustls' own buffers
//! stay small), and the plaintext from `reader()` is fed to the session exactly as the bytes
//! of a plain read would be. When the session takes no more (paused, closing, its share of
//! the turn used), the plaintext is stashed the same way, so the stash stays the one place
//! input waits.
//!
//! **Writing.** The session's outbound queue stays the queue that backpressure and the memory
//! budget see: at most [`TLS_SEND_LIMIT`] bytes of it are moved into rustls while its records
//! are still unsent (`set_buffer_limit`), then written with `write_tls`. A connection has
//! "output waiting" while either holds bytes.
//!
//! **Closing** sends `close_notify` (RFC 8446 §6.1) before the write side is shut (linger) or
//! the socket closed; a connection that fails (a bad record, plain HTTP, a handshake that does
//! not finish within `handshake_timeout`) gets rustls' alert if it has one, then is closed.
//!
//! **Handshakes per turn are bounded** ([`MAX_TLS_HANDSHAKES_PER_TURN`]; uSockets does 5 per
//! pass): a connection still in its handshake is read only while the turn has handshakes
//! left, else it waits in the loop's [`HandshakeQueue`], so a flood of ClientHellos (each
//! costing a key exchange and a signature) cannot starve established connections. The queue
//! is first in, first out, and goes first in the next turn: a handshake that was put off is
//! not overtaken by the flood's newer ones turn after turn (it was, and a new client's
//! handshake was cut at the handshake timeout while the flood lasted). A queued connection
//! still has its handshake deadline. And a loop accepts at most [`MAX_TLS_ACCEPTS_PER_TURN`]
//! connections per turn, none while [`MAX_QUEUED_HANDSHAKES`] wait: past that, clients wait in
//! the kernel's backlog (first in, first out as well), so what the loop holds for a flood stays
//! bounded and a new client waits behind at most that many handshakes in the loop.

use super::{Conn, EventLoop};
use crate::frame::CloseCode;
use crate::server::budget::{Charge, MemoryBudget};
use crate::server::drive::Host;
use crate::server::outbound::{BufferPool, Outbound};
use crate::server::{Handler, TlsInfo};
use log::debug;
use mio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// TLS handshakes a loop moves forward per turn at most.
pub(super) const MAX_TLS_HANDSHAKES_PER_TURN: usize = 8;
/// Connections a TLS loop accepts per turn at most, and handshakes it lets wait in its queue
/// before it accepts more: past that, new clients wait in the kernel's backlog, so the
/// handshakes the loop holds (and the time a new one waits behind them) stay bounded however
/// fast ClientHellos come.
const MAX_TLS_ACCEPTS_PER_TURN: usize = 64;
const MAX_QUEUED_HANDSHAKES: usize = 128;
/// Bytes rustls may hold unsent (records, or plaintext before the handshake ends): the rest
/// waits in the session's queue.
const TLS_SEND_LIMIT: usize = 32 * 1024;
/// The loop's plaintext buffer. `reader()` never holds more than a few records (rustls keeps
/// its received plaintext under 16 KiB plus one record), so this takes all of it at once.
pub(super) const PLAIN_BUF_SIZE: usize = 64 * 1024;
/// What rustls holds for an idle connection, charged to the memory budget: measured as the
/// RSS growth per idle `wss://` connection (README, "TLS"), since rustls does not say.
const TLS_IDLE_BYTES: usize = 8 * 1024;

/// What a plain-HTTP request sent to the TLS port is answered (before closing), in clear: a
/// TLS record never starts with an ASCII letter, a request line always does.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 52\r\nConnection: close\r\n\r\nThis port speaks TLS: use https:// or wss:// here.\r\n";

/// Connections whose handshake was put off, oldest first (see the module docs).
#[derive(Default)]
pub(super) struct HandshakeQueue {
    waiting: VecDeque<(usize, u32)>,
    /// The queue is being run: its connections are not queued again behind themselves.
    running: bool,
}

impl HandshakeQueue {
    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// One connection's TLS state.
pub(super) struct TlsConn {
    conn: rustls::ServerConnection,
    /// In the loop's [`HandshakeQueue`] (once: more readiness events do not add it again).
    queued: bool,
    /// The handshake completed (counted and traced once).
    established: bool,
    close_notify_sent: bool,
    /// Its share of the memory budget: [`TLS_IDLE_BYTES`], plus [`TLS_SEND_LIMIT`] while
    /// records wait for the socket (rustls does not say how much exactly; that is the bound).
    charge: Charge,
}

impl TlsConn {
    pub(super) fn new(config: Arc<rustls::ServerConfig>) -> Result<Box<TlsConn>, rustls::Error> {
        let mut conn = rustls::ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(TLS_SEND_LIMIT));
        Ok(Box::new(TlsConn {
            conn,
            queued: false,
            established: false,
            close_notify_sent: false,
            charge: Charge::default(),
        }))
    }

    /// Charges what rustls holds now to the budget (see `charge`).
    pub(super) fn settle(&mut self, budget: &MemoryBudget) {
        let pending = if self.pending() { TLS_SEND_LIMIT } else { 0 };
        self.charge.settle(budget, TLS_IDLE_BYTES + pending);
    }

    /// Gives the charge back (the connection is going).
    pub(super) fn release(&mut self, budget: &MemoryBudget) {
        self.charge.settle(budget, 0);
    }

    pub(super) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The handshake never completed (the connection is going): a failed handshake.
    pub(super) fn never_established(&self) -> bool {
        !self.established
    }

    /// TLS records wait for the socket.
    pub(super) fn pending(&self) -> bool {
        self.conn.wants_write()
    }

    /// Moves plaintext from `out` into rustls (bounded, see the module docs) and writes the
    /// records to the socket until it is full or nothing is left. Returns the bytes written to
    /// the socket.
    pub(super) fn flush(
        &mut self,
        out: &mut Outbound,
        stream: &mut TcpStream,
        pool: &mut BufferPool,
        may_write: bool,
    ) -> io::Result<usize> {
        let mut written = 0;
        loop {
            if may_write && !out.is_empty() {
                out.write_to(&mut PlainSink(&mut self.conn), pool)?;
            }
            let (n, socket_full) = self.write_records(stream)?;
            written += n;
            if socket_full || out.is_empty() || !may_write || (n == 0 && !self.conn.wants_write()) {
                return Ok(written);
            }
        }
    }

    /// Writes pending records; returns (bytes written, the socket is full).
    fn write_records(&mut self, stream: &mut TcpStream) -> io::Result<(usize, bool)> {
        let mut written = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((written, true)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((written, false))
    }

    /// The session is done with the connection: queues `close_notify` (once) and writes what
    /// the socket takes. Returns whether records still wait for the socket (then the caller
    /// waits for it to be writable); false after a write error too (nothing more to wait for).
    pub(super) fn close(&mut self, stream: &mut TcpStream) -> bool {
        if !self.close_notify_sent {
            self.close_notify_sent = true;
            self.conn.send_close_notify();
        }
        matches!(self.write_records(stream), Ok((_, true)))
    }

    fn info(&self) -> TlsInfo {
        TlsInfo {
            version: self
                .conn
                .protocol_version()
                .map_or_else(|| "unknown".to_owned(), |v| format!("{v:?}")),
            cipher_suite: self
                .conn
                .negotiated_cipher_suite()
                .map_or_else(|| "unknown".to_owned(), |s| format!("{:?}", s.suite())),
            alpn: self
                .conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            sni: self.conn.server_name().map(str::to_owned),
        }
    }
}

/// The session's queue writes its plaintext into rustls through this; a full rustls buffer
/// reads as a full socket (`WouldBlock`), so the rest stays queued.
struct PlainSink<'a>(&'a mut rustls::ServerConnection);

impl Write for PlainSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.writer().write(buf)? {
            0 if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self.0.writer().write_vectored(bufs)? {
            0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S> Conn<S> {
    /// What rustls holds for it as charged to the budget, for choosing whom to shed: without
    /// it, idle `wss://` connections (nothing in their sessions) could take the server past
    /// its budget with no one to close, and then it read no one.
    pub(super) fn tls_weight(&self) -> usize {
        self.tls.as_ref().map_or(0, |t| t.charge.charged())
    }

    /// Whether this connection is in its TLS handshake.
    pub(super) fn tls_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }
}

impl<H: Handler> EventLoop<H> {
    /// Whether `slot`'s handshake may be moved forward now (counted), or waits in the queue:
    /// when this turn's handshakes are used, or older ones wait (they go first).
    pub(super) fn admit_handshake(&mut self, slot: usize) -> bool {
        let queue = &mut self.tls_queue;
        if self.tls_handshakes < MAX_TLS_HANDSHAKES_PER_TURN && (queue.running || queue.waiting.is_empty()) {
            self.tls_handshakes += 1;
            return true;
        }
        if let Some(conn) = self.conns.get_mut(slot) {
            if let Some(tls) = conn.tls.as_deref_mut().filter(|t| !t.queued) {
                tls.queued = true;
                queue.waiting.push_back((slot, conn.session.generation()));
            }
        }
        false
    }

    /// Whether a TLS loop accepts another connection this turn (`accepted` so far).
    pub(super) fn may_accept_tls(&self, accepted: usize) -> bool {
        accepted < MAX_TLS_ACCEPTS_PER_TURN && self.tls_queue.waiting.len() < MAX_QUEUED_HANDSHAKES
    }

    /// Moves the queued handshakes forward, oldest first, while the turn has handshakes left
    /// (at the start of a turn, before the new readiness events).
    pub(super) fn run_handshake_queue(&mut self) {
        self.tls_queue.running = true;
        while self.tls_handshakes < MAX_TLS_HANDSHAKES_PER_TURN {
            let Some((slot, generation)) = self.tls_queue.waiting.pop_front() else {
                break;
            };
            let Some(conn) = self.conns.get_gen_mut(slot, generation) else {
                // Gone meanwhile (its handshake timed out, or the peer left).
                continue;
            };
            if let Some(tls) = conn.tls.as_deref_mut() {
                tls.queued = false;
            }
            self.read(slot, true);
        }
        self.tls_queue.running = false;
    }

    /// The bytes of one socket read of a TLS connection: records, decrypted and fed to its
    /// session (see the module docs).
    pub(super) fn feed_tls(&mut self, slot: usize, mut records: &[u8]) {
        let mut plain = std::mem::take(&mut self.tls_plain);
        // Allocated on the first TLS read of this loop; a plain server never pays for it.
        plain.resize(PLAIN_BUF_SIZE, 0);
        'records: while !records.is_empty() {
            let Some(conn) = self.conns.get_mut(slot) else { break };
            let Some(tls) = conn.tls.as_deref_mut() else { break };
            if conn.session.bytes_in == records.len() as u64 && records.first().is_some_and(u8::is_ascii_uppercase) {
                // The connection's first bytes, and no TLS record: plain HTTP to a TLS port.
                debug!("{}: plain HTTP on the TLS port", conn.session.peer());
                let _ = conn.stream.write(PLAIN_HTTP_ANSWER);
                self.drop_conn(slot, CloseCode::ABNORMAL, "plain HTTP on the TLS port");
                break;
            }
            match tls.conn.read_tls(&mut records) {
                // A close_notify came: rustls reads nothing more (what follows is dropped).
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    // Its buffer is full: a handshake message over 64 KiB or a record over
                    // the size limit that the last step did not reject.
                    debug!("TLS from {}: {e}", conn.session.peer());
                    self.drop_conn(slot, CloseCode::ABNORMAL, "TLS read error");
                    break;
                }
            }
            if let Err(e) = tls.conn.process_new_packets() {
                // rustls queued the alert that says why (RFC 8446 §6.2): sent, best effort.
                let _ = tls.conn.write_tls(&mut conn.stream);
                debug!("TLS error from {}: {e}", conn.session.peer());
                self.drop_conn(slot, CloseCode::ABNORMAL, "TLS error");
                break;
            }
            let established = !tls.established && !tls.conn.is_handshaking();
            if established {
                tls.established = true;
                self.tls_established(slot);
            }
            if self
                .conns
                .get_mut(slot)
                .is_some_and(|c| c.tls.as_ref().is_some_and(|t| t.pending()))
            {
                // Handshake messages, session tickets, a key update or an alert to send.
                self.mark_dirty(slot);
            }
            loop {
                let Some(conn) = self.conns.get_mut(slot) else {
                    break 'records;
                };
                let Some(tls) = conn.tls.as_deref_mut() else {
                    break 'records;
                };
                match tls.conn.reader().read(&mut plain) {
                    // The peer's close_notify: its end of the stream.
                    Ok(0) => {
                        self.eof(slot);
                        break 'records;
                    }
                    Ok(n) => {
                        let Some(chunk) = plain.get_mut(..n) else {
                            break 'records;
                        };
                        if conn.session.wants_read() {
                            self.feed(slot, chunk);
                        } else {
                            // Paused, or its share of the turn used: kept in order after the
                            // stash, fed when it may go on.
                            conn.session.stash_rest(chunk);
                            conn.session.settle(&self.lp);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.eof(slot);
                        break 'records;
                    }
                }
            }
        }
        self.tls_plain = plain;
    }

    /// A TLS handshake completed: counted, logged at debug level and shown to the observer
    /// (`serve --trace`).
    fn tls_established(&mut self, slot: usize) {
        let core = self.lp.core.clone();
        core.metrics().tls_handshakes[0].fetch_add(1, Ordering::Relaxed);
        let observer = core.observer.as_ref();
        if observer.is_none() && !log::log_enabled!(log::Level::Debug) {
            return;
        }
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let Some(tls) = conn.tls.as_deref() else { return };
        let info = tls.info();
        let (id, peer) = (conn.session.id(&self.lp), conn.session.peer());
        debug!(
            "#{id} {peer}: TLS {} {} alpn={} sni={}",
            info.version,
            info.cipher_suite,
            info.alpn.as_deref().unwrap_or("-"),
            info.sni.as_deref().unwrap_or("-")
        );
        if let Some(obs) = observer {
            obs.tls_handshake(id, peer, &info);
        }
    }
}
