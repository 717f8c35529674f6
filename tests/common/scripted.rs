//! A one-connection server that follows a script, for testing what the client does with
//! servers that break the rules: a `std::net::TcpListener` on a free loopback port whose
//! thread accepts one connection, reads the request head and hands both to the script.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;
use wsloop::handshake::{write_accept_response, ParseStatus, Request, RequestParser};
use wsloop::protocol::{Config, OwnedEvent, WebSocket};

/// A running scripted server: its address and the script's thread (its result is the test's
/// view of what the client did).
pub struct Scripted<T> {
    pub addr: SocketAddr,
    thread: JoinHandle<T>,
}

impl<T> Scripted<T> {
    /// `ws://ADDR/path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Waits for the script and returns what it returned.
    pub fn join(self) -> T {
        self.thread.join().expect("the script panicked")
    }
}

/// The connection as the script sees it, after the request head was read.
pub struct Conn {
    pub stream: TcpStream,
    pub request: Request,
    /// Bytes the client sent after the head (none, unless it broke RFC 6455 §4.1's "wait for
    /// a response ... before sending any further data").
    pub rest: Vec<u8>,
}

impl Conn {
    /// The client's Sec-WebSocket-Key.
    pub fn key(&self) -> String {
        self.request.header_str("sec-websocket-key").unwrap_or("").to_owned()
    }

    /// A 101 with the right accept value, plus `extra` header lines (each ending in CRLF).
    pub fn accept_head(&self, extra: &str) -> Vec<u8> {
        let mut out = Vec::new();
        write_accept_response(&mut out, self.key().as_bytes(), None, &[]);
        let end = out.len() - 2; // before the blank line
        out.splice(end..end, extra.bytes());
        out
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Answers the handshake correctly.
    pub fn accept(&mut self) {
        let head = self.accept_head("");
        self.write(&head);
    }

    /// Reads the client's frames as a server does until one event completes (or EOF: None).
    pub fn next_event(&mut self, ws: &mut WebSocket) -> Option<Result<OwnedEvent, wsloop::ProtocolError>> {
        let mut pending = std::mem::take(&mut self.rest);
        let mut chunk = [0u8; 65536];
        loop {
            if !pending.is_empty() {
                let mut out = Vec::new();
                let r = ws.receive(&mut pending, &mut out);
                let _ = self.stream.write_all(&out);
                match r {
                    Ok(r) => {
                        let consumed = r.consumed;
                        if let Some(e) = r.event.map(|e| e.to_owned_event()) {
                            self.rest = pending[consumed..].to_vec();
                            return Some(Ok(e));
                        }
                        pending.clear();
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until the client closes TCP; true if it did within the stream's read timeout.
    pub fn wait_eof(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// A server-role protocol state for reading the client's frames.
pub fn server_ws() -> WebSocket {
    WebSocket::server(Config::default())
}

/// Starts a server that runs `script` on its first connection. The stream has a 10 s read
/// timeout so a script can never hang a test.
pub fn serve<T: Send + 'static>(script: impl FnOnce(Conn) -> T + Send + 'static) -> Scripted<T> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (request, used) = loop {
            let n = stream.read(&mut chunk).expect("read request");
            assert!(n > 0, "the client closed before its request was complete");
            buf.extend_from_slice(&chunk[..n]);
            match RequestParser::default().parse(&buf) {
                Ok(ParseStatus::Complete { request, head_len }) => break (request, head_len),
                Ok(ParseStatus::Partial) => continue,
                Err(e) => panic!("the client's request does not parse: {e:?}"),
            }
        };
        let rest = buf[used..].to_vec();
        script(Conn { stream, request, rest })
    });
    Scripted { addr, thread }
}

/// Starts a server that accepts one connection and does nothing with it: it never reads the
/// request nor answers (for timeouts). It holds the connection until `hold` passes.
pub fn silent(hold: Duration) -> Scripted<()> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let thread = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(hold);
        drop(conn);
    });
    Scripted { addr, thread }
}
