//! A small blocking WebSocket client built on the crate's own sans-IO core, for tests over
//! real loopback TCP.
#![allow(dead_code)]

// The demo app `wsloop serve` runs is the binary's module, not the library's; the tests that
// run it in-process compile the same file (it uses only the public API).
pub mod chat;
#[path = "../../src/demo/mod.rs"]
pub mod demo;
pub mod events;
pub mod health;
pub mod lines;
#[cfg(feature = "tls")]
pub mod pki;
pub mod process;
pub mod redis;
pub mod scripted;
pub mod wait;

use demo::DemoApp;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use wsloop::handshake::client::{ClientHandshake, ResponseStatus};
use wsloop::protocol::{Config, OwnedEvent, WebSocket};
use wsloop::server::{Handler, RunningServer, Server};
use wsloop::CloseCode;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// `handler` served on a free loopback port, one thread unless `configure` says otherwise.
pub fn start<H: Handler>(handler: H, configure: impl FnOnce(Server<H>) -> Server<H>) -> RunningServer {
    let server = Server::new(handler).configure(|c| {
        c.bind = "127.0.0.1:0".parse().unwrap();
        c.threads = 1;
    });
    configure(server).start().expect("server starts")
}

/// The demo server on a free port, one thread unless the test says otherwise.
pub fn demo_server(configure: impl FnOnce(Server<DemoApp>) -> Server<DemoApp>) -> RunningServer {
    start(DemoApp::new(), configure)
}

pub struct Client {
    pub stream: TcpStream,
    pub ws: WebSocket,
    pub events: VecDeque<OwnedEvent>,
    pub eof: bool,
}

impl Client {
    pub fn connect(addr: SocketAddr, path: &str) -> Client {
        Self::connect_with(addr, path, &[], &[])
    }

    /// Upgrades; `first_frames` go out in the same write as the request.
    pub fn connect_with(addr: SocketAddr, path: &str, extra: &[(&str, &str)], first_frames: &[u8]) -> Client {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let hs = ClientHandshake::new(&[]);
        let mut req = hs.request(&addr.to_string(), path, extra);
        req.extend_from_slice(first_frames);
        stream.write_all(&req).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).expect("read handshake response");
            assert!(
                n > 0,
                "server closed during handshake: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
            match hs.parse_response(&buf).expect("valid 101") {
                ResponseStatus::Partial => continue,
                ResponseStatus::Accepted { head_len, .. } => {
                    let mut client = Client {
                        stream,
                        ws: WebSocket::client(Config::default()),
                        events: VecDeque::new(),
                        eof: false,
                    };
                    let mut rest = buf[head_len..].to_vec();
                    client.absorb(&mut rest);
                    return client;
                }
            }
        }
    }

    fn absorb(&mut self, bytes: &mut [u8]) {
        let mut out = Vec::new();
        let events = self
            .ws
            .receive_all(bytes, &mut out)
            .expect("server follows the protocol");
        self.events.extend(events);
        if !out.is_empty() {
            let _ = self.stream.write_all(&out);
        }
    }

    pub fn send_text(&mut self, text: &str) {
        let mut out = Vec::new();
        self.ws.send_text(text, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    pub fn send_binary(&mut self, data: &[u8]) {
        let mut out = Vec::new();
        self.ws.send_binary(data, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    pub fn send_ping(&mut self, data: &[u8]) {
        let mut out = Vec::new();
        self.ws.send_ping(data, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    pub fn close(&mut self, code: CloseCode, reason: &str) {
        let mut out = Vec::new();
        self.ws.close(code, reason, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// The next event, reading as needed; `None` on EOF.
    pub fn next(&mut self) -> Option<OwnedEvent> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if self.eof {
                return None;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    let mut bytes = chunk[..n].to_vec();
                    self.absorb(&mut bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => self.eof = true,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// The next data message, skipping pings, pongs and /chat's JSON notices (welcome,
    /// join, leave, presence); a /chat message envelope is returned as its text.
    pub fn next_message(&mut self) -> Option<OwnedEvent> {
        loop {
            match self.next()? {
                OwnedEvent::Ping(_) | OwnedEvent::Pong(_) => continue,
                OwnedEvent::Text(t) if chat_notice(&t) => continue,
                OwnedEvent::Text(t) if t.starts_with("{\"type\":\"message\"") => {
                    return Some(OwnedEvent::Text(json_field(&t, "text").expect("message text")))
                }
                other => return Some(other),
            }
        }
    }

    /// Reads until EOF; true if the server closed the TCP connection.
    pub fn wait_eof(&mut self) -> bool {
        while self.next().is_some() {}
        self.eof
    }
}

/// One HTTP/1.1 request on a fresh connection; returns (status, headers, body).
pub fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream)
}

/// Reads one response with a Content-Length body from a stream.
pub fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert!(n > 0, "EOF inside response head: {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

/// Whether a text is one of /chat's JSON notices.
pub fn chat_notice(t: &str) -> bool {
    ["welcome", "join", "leave", "presence"]
        .iter()
        .any(|k| t.starts_with(&format!("{{\"type\":\"{k}\"")))
}

/// A string field of a flat JSON object (enough for the demo's messages; escapes `\"` and
/// `\\` only).
pub fn json_field(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = json.get(start..)?.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}
