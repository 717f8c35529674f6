//! One client WebSocket connection on a non-blocking mio socket.
//!
//! mio is edge-triggered: after an event we must read and write until the
//! kernel says `WouldBlock`, or we will never hear about that socket again.
//! [`WsConn::drive`] does exactly that, and is safe to call on any event
//! (spurious ones included).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use crate::bail;
use crate::deflate::DeflateConn;
use crate::error::{Error, Result};
use crate::tls::TlsStream;
use crate::ws::{self, Rng};

/// Free space we want before each `read`: big enough that a 64 KiB echo is
/// read in a few syscalls, small enough for 10,000 idle connections.
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent, waiting for the `101` response.
    Handshaking,
    /// WebSocket open (we may have sent a close frame already).
    Open,
}

pub struct WsConn {
    pub stream: TcpStream,
    /// With `wss://`: the TLS session between the socket and the WebSocket
    /// bytes (boxed: rustls' state is large, plain connections skip it).
    pub tls: Option<Box<TlsStream>>,
    pub phase: Phase,
    /// When `connect` was called (for connect timeouts and handshake timing).
    pub started: Instant,
    /// The upgrade request, queued once TCP is connected.
    request: Option<Vec<u8>>,
    expected_accept: String,
    /// We offered permessage-deflate.
    offer_deflate: bool,
    /// What the server agreed to, once upgraded.
    pub deflate: Option<DeflateConn>,
    /// Scratch: a message before compressing, the compressed payload, an
    /// inflated message.
    plain: Vec<u8>,
    packed: Vec<u8>,
    inflated: Vec<u8>,
    /// Received bytes live in `rbuf[rstart..rend]`.
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    /// Bytes to send live in `wbuf[wpos..]`.
    wbuf: Vec<u8>,
    wpos: usize,
    /// A fragmented message being assembled: its opcode, whether it is
    /// compressed, and its bytes so far.
    frag: Option<(u8, bool, Vec<u8>)>,
    rng: Rng,
    pub close_sent: bool,
    /// Code and reason of the server's close frame, once received.
    pub close_received: Option<(u16, String)>,
    /// The server closed (or reset) the TCP connection.
    pub eof: bool,
    pub pongs: u64,
}

impl WsConn {
    /// Starts a non-blocking connect; the upgrade follows in [`Self::drive`].
    /// With `deflate`, permessage-deflate is offered, and must be accepted.
    pub fn connect(addr: SocketAddr, host: &str, path: &str, seed: u64, deflate: bool) -> Result<WsConn> {
        let stream = TcpStream::connect(addr).map_err(|e| Error(format!("connect to {addr}: {e}")))?;
        // Small messages must not wait for Nagle; the servers do the same.
        stream.set_nodelay(true)?;
        let mut rng = Rng::new(seed);
        let key = ws::new_key(&mut rng);
        Ok(WsConn {
            stream,
            tls: None,
            phase: Phase::Connecting,
            started: Instant::now(),
            request: Some(ws::handshake_request(host, path, &key, deflate)),
            expected_accept: ws::accept_for(&key),
            offer_deflate: deflate,
            deflate: None,
            plain: Vec::new(),
            packed: Vec::new(),
            inflated: Vec::new(),
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            wbuf: Vec::new(),
            wpos: 0,
            frag: None,
            rng,
            close_sent: false,
            close_received: None,
            eof: false,
            pongs: 0,
        })
    }

    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open && !self.eof && self.close_received.is_none()
    }

    /// Both close frames exchanged, or the TCP connection is gone.
    pub fn is_closed(&self) -> bool {
        self.eof || (self.close_sent && self.close_received.is_some())
    }

    /// An error describing why the server ended this connection, if it did.
    pub fn unexpected_close(&self) -> Option<Error> {
        if self.close_sent {
            return None;
        }
        if let Some((code, reason)) = &self.close_received {
            return Some(Error(format!(
                "server closed the connection unexpectedly (close code {code}, reason {reason:?})"
            )));
        }
        if self.eof {
            return Some(Error(
                "server closed the TCP connection unexpectedly (no close frame)".into(),
            ));
        }
        None
    }

    /// Does all the I/O the socket allows: finishes connecting, sends queued
    /// bytes, reads and parses everything available. Each complete text or
    /// binary message is passed to `on_msg(opcode, payload)`; pings are
    /// answered and a server close is replied to here.
    pub fn drive<F>(&mut self, on_msg: &mut F) -> Result<()>
    where
        F: FnMut(u8, &[u8]) -> Result<()>,
    {
        if self.phase == Phase::Connecting {
            if !self.check_connected()? {
                return Ok(());
            }
            self.phase = Phase::Handshaking;
            if let Some(req) = self.request.take() {
                self.wbuf.extend_from_slice(&req);
            }
        }
        self.flush()?;
        while !self.eof {
            self.reserve_read_space();
            let buf = &mut self.rbuf[self.rend..];
            let got = match self.tls.as_mut() {
                Some(t) => t.read(&mut self.stream, buf),
                None => self.stream.read(buf),
            };
            match got {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.rend += n;
                    self.process(on_msg)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset && self.close_received.is_some() => {
                    // A reset after the close handshake is just a fast close.
                    self.eof = true
                }
                Err(e) => bail!("read: {e}"),
            }
        }
        if self.eof && self.phase != Phase::Open {
            bail!("server closed the connection during the opening handshake");
        }
        // Pongs and close replies queued while parsing.
        self.flush()
    }

    /// mio's recipe for a non-blocking connect: `take_error`, then
    /// `peer_addr` tells whether the connection is established yet.
    fn check_connected(&mut self) -> Result<bool> {
        if let Some(e) = self.stream.take_error()? {
            bail!("connect: {e}");
        }
        match self.stream.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
            Err(e) => bail!("connect: {e}"),
        }
    }

    fn reserve_read_space(&mut self) {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        if self.rbuf.len() - self.rend < READ_CHUNK {
            if self.rstart > 0 {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
            }
            if self.rbuf.len() - self.rend < READ_CHUNK {
                let want = (self.rbuf.len() * 2).max(self.rend + READ_CHUNK);
                self.rbuf.resize(want, 0);
            }
        }
    }

    /// Parses what is buffered: the handshake response, then frames.
    fn process<F>(&mut self, on_msg: &mut F) -> Result<()>
    where
        F: FnMut(u8, &[u8]) -> Result<()>,
    {
        loop {
            let avail = &self.rbuf[self.rstart..self.rend];
            if avail.is_empty() {
                return Ok(());
            }
            if self.phase == Phase::Handshaking {
                match ws::parse_handshake_response(avail, &self.expected_accept, self.offer_deflate)? {
                    Some(up) => {
                        self.rstart += up.head_len;
                        self.deflate = up.deflate.map(DeflateConn::new);
                        self.phase = Phase::Open;
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            if self.close_received.is_some() {
                // Nothing may follow a close frame; drop whatever does.
                self.rstart = self.rend;
                return Ok(());
            }
            let Some(head) = ws::parse_frame_head(avail, self.deflate.is_some())? else {
                return Ok(());
            };
            let total = head.head_len + head.payload_len;
            if avail.len() < total {
                // reserve_read_space grows the buffer until the frame fits.
                return Ok(());
            }
            let payload = &avail[head.head_len..total];
            match head.opcode {
                ws::OP_TEXT | ws::OP_BINARY => {
                    if self.frag.is_some() {
                        bail!("server started a new message inside a fragmented one");
                    }
                    if head.fin && head.compressed {
                        inflate_and_deliver(head.opcode, payload, &mut self.deflate, &mut self.inflated, on_msg)?;
                    } else if head.fin {
                        deliver(head.opcode, payload, on_msg)?;
                    } else {
                        self.frag = Some((head.opcode, head.compressed, payload.to_vec()));
                    }
                }
                ws::OP_CONT => {
                    let Some((_, _, buf)) = self.frag.as_mut() else {
                        bail!("server sent a continuation frame outside a fragmented message");
                    };
                    if buf.len() + payload.len() > ws::MAX_MESSAGE {
                        bail!("server message exceeds {} bytes", ws::MAX_MESSAGE);
                    }
                    buf.extend_from_slice(payload);
                    if head.fin
                        && let Some((op, compressed, buf)) = self.frag.take()
                    {
                        if compressed {
                            inflate_and_deliver(op, &buf, &mut self.deflate, &mut self.inflated, on_msg)?;
                        } else {
                            deliver(op, &buf, on_msg)?;
                        }
                    }
                }
                ws::OP_PING => {
                    if !self.close_sent {
                        let mask = self.rng.next_u64().to_le_bytes();
                        ws::put_client_frame(
                            &mut self.wbuf,
                            ws::OP_PONG,
                            payload,
                            [mask[0], mask[1], mask[2], mask[3]],
                        );
                    }
                }
                ws::OP_PONG => self.pongs += 1,
                ws::OP_CLOSE => {
                    if payload.len() == 1 {
                        bail!("server sent a close frame with a 1-byte payload");
                    }
                    let (code, reason) = ws::parse_close(payload);
                    if !self.close_sent {
                        // Echo the code back, as RFC 6455 5.5.1 suggests.
                        let mask = self.rng.next_u64().to_le_bytes();
                        let body = if payload.len() >= 2 { &payload[..2] } else { &[] };
                        ws::put_client_frame(&mut self.wbuf, ws::OP_CLOSE, body, [mask[0], mask[1], mask[2], mask[3]]);
                    }
                    self.close_received = Some((code, reason));
                }
                _ => bail!("server sent opcode 0x{:x}", head.opcode),
            }
            self.rstart += total;
        }
    }

    /// Writes queued bytes until done or the socket is full.
    pub fn flush(&mut self) -> Result<()> {
        if self.phase == Phase::Connecting {
            return Ok(());
        }
        if let Some(t) = self.tls.as_mut() {
            // TLS records left over when the socket was full last time (or
            // the ClientHello): they go first, whether or not wbuf is empty.
            match t.flush(&mut self.stream) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => bail!("write: {e}"),
            }
        }
        while self.wpos < self.wbuf.len() {
            let data = &self.wbuf[self.wpos..];
            let sent = match self.tls.as_mut() {
                Some(t) => t.write(&mut self.stream, data),
                None => self.stream.write(data),
            };
            match sent {
                Ok(0) => bail!("write returned 0 bytes"),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => bail!("write: {e}"),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos > 1 << 20 {
            // Keep a slow socket's buffer from growing without bound.
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(())
    }

    fn mask(&mut self) -> [u8; 4] {
        let m = self.rng.next_u64().to_le_bytes();
        [m[0], m[1], m[2], m[3]]
    }

    /// Queues a message of `len` bytes whose payload `fill` appends; call
    /// [`Self::flush`] to send. With permessage-deflate agreed the message
    /// goes compressed (RSV1), as browsers send every message.
    pub fn queue_with(&mut self, opcode: u8, len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let mask = self.mask();
        if let Some(d) = self.deflate.as_mut().filter(|d| d.compresses()) {
            self.plain.clear();
            fill(&mut self.plain);
            debug_assert_eq!(self.plain.len(), len);
            self.packed.clear();
            d.compress(&self.plain, &mut self.packed)?;
            ws::put_client_header_rsv(&mut self.wbuf, opcode, ws::RSV1, self.packed.len(), mask);
            let start = self.wbuf.len();
            self.wbuf.extend_from_slice(&self.packed);
            ws::mask_in_place(&mut self.wbuf[start..], mask);
            return Ok(());
        }
        ws::put_client_header(&mut self.wbuf, opcode, len, mask);
        let start = self.wbuf.len();
        fill(&mut self.wbuf);
        debug_assert_eq!(self.wbuf.len() - start, len);
        ws::mask_in_place(&mut self.wbuf[start..], mask);
        Ok(())
    }

    /// Messages this connection sent compressed and received compressed.
    pub fn compressed_counts(&self) -> (u64, u64) {
        self.deflate
            .as_ref()
            .map_or((0, 0), |d| (d.compressed_out, d.compressed_in))
    }

    pub fn queue_ping(&mut self, payload: &[u8]) {
        let mask = self.mask();
        ws::put_client_frame(&mut self.wbuf, ws::OP_PING, payload, mask);
    }

    /// Queues our close frame (once).
    pub fn queue_close(&mut self, code: u16) {
        if self.close_sent || self.eof {
            return;
        }
        // A server close already answered in `process` counts as ours.
        self.close_sent = true;
        if self.close_received.is_some() {
            return;
        }
        let mask = self.mask();
        ws::put_client_frame(&mut self.wbuf, ws::OP_CLOSE, &code.to_be_bytes(), mask);
    }
}

/// Inflates a compressed message and delivers it (RFC 7692 §7.2.2).
fn inflate_and_deliver<F>(
    opcode: u8,
    payload: &[u8],
    deflate: &mut Option<DeflateConn>,
    scratch: &mut Vec<u8>,
    on_msg: &mut F,
) -> Result<()>
where
    F: FnMut(u8, &[u8]) -> Result<()>,
{
    let Some(d) = deflate.as_mut() else {
        bail!("internal: a compressed frame without permessage-deflate");
    };
    scratch.clear();
    d.inflate(payload, scratch, ws::MAX_MESSAGE)?;
    deliver(opcode, scratch, on_msg)
}

/// Text messages must be UTF-8 (RFC 6455 8.1); a server that breaks that is
/// reported rather than measured.
fn deliver<F>(opcode: u8, payload: &[u8], on_msg: &mut F) -> Result<()>
where
    F: FnMut(u8, &[u8]) -> Result<()>,
{
    if opcode == ws::OP_TEXT && std::str::from_utf8(payload).is_err() {
        bail!("server sent a text message that is not valid UTF-8");
    }
    on_msg(opcode, payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Interest, Poll, Token};
    use std::time::Duration;

    /// A scripted server on a std socket: answers the upgrade, then sends a
    /// fragmented text message, a ping, a binary message and a close frame;
    /// returns the frame opcodes the client sent back.
    fn scripted_server(listener: std::net::TcpListener) -> Vec<u8> {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 1];
        while !req.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            req.push(b[0]);
        }
        let req = String::from_utf8(req).unwrap();
        let key = req.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            ws::accept_for(key)
        )
        .into_bytes();
        out.extend_from_slice(&[0x01, 3, b'h', b'e', b'l']); // text, not final
        out.extend_from_slice(&[0x89, 1, b'p']); // ping between fragments
        out.extend_from_slice(&[0x80, 2, b'l', b'o']); // final continuation
        out.extend_from_slice(&[0x82, 3, b'x', b'y', b'z']);
        out.extend_from_slice(&[0x88, 2, 0x03, 0xE8]); // close 1000
        s.write_all(&out).unwrap();
        // Read the client's frames (masked, small) until its close.
        let mut opcodes = Vec::new();
        loop {
            let mut h = [0u8; 2];
            s.read_exact(&mut h).unwrap();
            let len = (h[1] & 0x7F) as usize;
            let mut rest = vec![0u8; 4 + len];
            s.read_exact(&mut rest).unwrap();
            opcodes.push(h[0] & 0x0F);
            if h[0] & 0x0F == ws::OP_CLOSE {
                return opcodes;
            }
        }
    }

    #[test]
    fn handshake_fragments_ping_and_close() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || scripted_server(listener));

        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(16);
        let mut c = WsConn::connect(addr, "test", "/echo", 1, false).unwrap();
        poll.registry()
            .register(&mut c.stream, Token(0), Interest::READABLE | Interest::WRITABLE)
            .unwrap();
        let mut got: Vec<(u8, Vec<u8>)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.close_received.is_none() && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
            c.drive(&mut |op, p| {
                got.push((op, p.to_vec()));
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(
            got,
            vec![(ws::OP_TEXT, b"hello".to_vec()), (ws::OP_BINARY, b"xyz".to_vec())]
        );
        assert_eq!(c.close_received, Some((1000, String::new())));
        assert!(c.unexpected_close().is_some(), "we never asked to close");
        assert_eq!(server.join().unwrap(), vec![ws::OP_PONG, ws::OP_CLOSE]);
    }

    /// permessage-deflate: the offer goes out, the answer is taken, RFC 7692's compressed
    /// "Hello" (whole, then in two fragments) is delivered inflated, and what the client sends
    /// is compressed (RSV1) and inflates back to the message.
    #[test]
    fn deflate_offer_compressed_frames_both_ways() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut b).unwrap();
                req.push(b[0]);
            }
            let req = String::from_utf8(req).unwrap();
            assert!(
                req.contains("\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"),
                "{req}"
            );
            let key = req.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n",
                ws::accept_for(key)
            )
            .into_bytes();
            out.extend_from_slice(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
            out.extend_from_slice(&[0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00]);
            s.write_all(&out).unwrap();
            // The client's message: FIN + RSV1 + text, masked.
            let mut h = [0u8; 2];
            s.read_exact(&mut h).unwrap();
            let mut rest = vec![0u8; 4 + (h[1] & 0x7F) as usize];
            s.read_exact(&mut rest).unwrap();
            let (mask, payload) = rest.split_at_mut(4);
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            let agreed = crate::deflate::parse_answer("permessage-deflate; server_no_context_takeover").unwrap();
            let mut inflated = Vec::new();
            crate::deflate::DeflateConn::new(agreed)
                .inflate(payload, &mut inflated, 1000)
                .unwrap();
            (h[0], inflated)
        });
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(16);
        let mut c = WsConn::connect(addr, "test", "/echo", 3, true).unwrap();
        poll.registry()
            .register(&mut c.stream, Token(0), Interest::READABLE | Interest::WRITABLE)
            .unwrap();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 2 && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
            c.drive(&mut |_, p| {
                got.push(p.to_vec());
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(got, vec![b"Hello".to_vec(), b"Hello".to_vec()]);
        c.queue_with(ws::OP_TEXT, 12, |out| out.extend_from_slice(b"Hello, hello"))
            .unwrap();
        c.flush().unwrap();
        assert_eq!(server.join().unwrap(), (0xc1, b"Hello, hello".to_vec()));
        assert_eq!(c.compressed_counts(), (1, 2));
    }

    #[test]
    fn declined_deflate_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A server that knows no extension: its 101 has no Sec-WebSocket-Extensions.
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut b).unwrap();
                req.push(b[0]);
            }
            let req = String::from_utf8(req).unwrap();
            let key = req.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
            let out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                ws::accept_for(key)
            );
            s.write_all(out.as_bytes()).unwrap();
        });
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(16);
        let mut c = WsConn::connect(addr, "test", "/echo", 4, true).unwrap();
        poll.registry()
            .register(&mut c.stream, Token(0), Interest::READABLE | Interest::WRITABLE)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = loop {
            assert!(Instant::now() < deadline, "no error within 5 s");
            poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
            if let Err(e) = c.drive(&mut |_, _| Ok(())) {
                break e;
            }
        };
        assert!(err.0.contains("declined permessage-deflate"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn refused_upgrade_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        });
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(16);
        let mut c = WsConn::connect(addr, "test", "/nope", 2, false).unwrap();
        poll.registry()
            .register(&mut c.stream, Token(0), Interest::READABLE | Interest::WRITABLE)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = loop {
            assert!(Instant::now() < deadline, "no error within 5 s");
            poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
            if let Err(e) = c.drive(&mut |_, _| Ok(())) {
                break e;
            }
        };
        assert!(err.0.contains("404"), "{err}");
        server.join().unwrap();
    }
}
