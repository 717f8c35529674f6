//! Target URL, the poll loop's shared state, and opening/closing many
//! connections with bounded concurrency and timeouts.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::bail;
use crate::conn::WsConn;
use crate::error::{Error, Result};
use crate::tls::TlsClient;

/// A parsed `ws://host:port/path` or `wss://host:port/path` URL.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Value of the `Host` header.
    pub host: String,
    pub path: String,
    /// The URL said `wss://`.
    pub wss: bool,
    /// Set (by `main`, from `--ca` / `--insecure`) for TLS connections.
    pub tls: Option<TlsClient>,
}

impl Target {
    /// Parses and resolves the URL. Only loopback addresses are accepted: this
    /// tool generates heavy traffic and must never aim it at another machine.
    pub fn parse(url: &str) -> Result<Target> {
        let (rest, wss) = if let Some(rest) = url.strip_prefix("ws://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (rest, true)
        } else {
            bail!("URL must start with ws:// or wss:// (got {url:?})");
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            bail!("URL {url:?} has no host");
        }
        // Default port 80 (443) when none is given ("[::1]" has colons of its own).
        let with_port = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:{}", if wss { 443 } else { 80 })
        } else {
            authority.to_owned()
        };
        let addrs: Vec<SocketAddr> = with_port
            .to_socket_addrs()
            .map_err(|e| Error(format!("cannot resolve {authority:?}: {e}")))?
            .collect();
        let Some(addr) = addrs.iter().find(|a| a.ip().is_loopback()).copied() else {
            bail!("refusing non-loopback target {authority:?} ({addrs:?}): loopback only");
        };
        Ok(Target {
            addr,
            host: authority.to_owned(),
            path: path.to_owned(),
            wss,
            tls: None,
        })
    }
}

/// The poll, its event buffer and the connections, token = index.
pub struct Net {
    pub poll: Poll,
    pub events: Events,
    pub target: Target,
    pub conns: Vec<WsConn>,
    pub connect_timeout: Duration,
    /// Offer permessage-deflate on every connection (and require it).
    pub deflate: bool,
    seed: u64,
}

/// How many connections may be connecting/upgrading at once. Keeps the
/// server's accept backlog from overflowing (an overflow shows up as a 1 s
/// SYN retransmit, i.e. as fake latency). Servers that listen through mio's
/// or std's `bind` get a backlog of only 128.
pub const OPEN_CONCURRENCY: usize = 64;

impl Net {
    pub fn new(target: Target, connect_timeout: Duration) -> Result<Net> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id());
        Ok(Net {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            target,
            conns: Vec::new(),
            connect_timeout,
            deflate: false,
            seed,
        })
    }

    /// A new connection registered under `token` (not stored anywhere).
    pub fn start_conn(&mut self, token: usize) -> Result<WsConn> {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut c = WsConn::connect(
            self.target.addr,
            &self.target.host,
            &self.target.path,
            self.seed,
            self.deflate,
        )?;
        if let Some(t) = &self.target.tls {
            c.tls = Some(Box::new(t.start()?));
        }
        self.poll
            .registry()
            .register(&mut c.stream, Token(token), Interest::READABLE | Interest::WRITABLE)?;
        Ok(c)
    }

    /// Opens `n` more connections (appended to `conns`) and waits until every
    /// one has completed its upgrade. Messages arriving meanwhile, on any
    /// connection, go to `on_msg(index, opcode, payload)`. Returns how long it
    /// took.
    pub fn open<F>(&mut self, n: usize, mut on_msg: F) -> Result<Duration>
    where
        F: FnMut(usize, u8, &[u8]) -> Result<()>,
    {
        let t0 = Instant::now();
        let first = self.conns.len();
        let last = first + n;
        let mut pending = 0usize;
        let mut opened = 0usize;
        let mut next_timeout_check = t0;
        while opened < n {
            while pending < OPEN_CONCURRENCY && self.conns.len() < last {
                let c = self.start_conn(self.conns.len())?;
                self.conns.push(c);
                pending += 1;
            }
            self.poll.poll(&mut self.events, Some(Duration::from_millis(50)))?;
            for ev in self.events.iter() {
                let i = ev.token().0;
                let Some(c) = self.conns.get_mut(i) else {
                    continue;
                };
                let was_open = c.is_open();
                c.drive(&mut |op, p| on_msg(i, op, p))
                    .map_err(|e| Error(format!("connection {i}: {e}")))?;
                if let Some(e) = c.unexpected_close() {
                    bail!("connection {i}: {e}");
                }
                if !was_open && c.is_open() {
                    pending -= 1;
                    opened += 1;
                }
            }
            let now = Instant::now();
            if now >= next_timeout_check {
                next_timeout_check = now + Duration::from_millis(200);
                for (i, c) in self.conns[first..].iter().enumerate() {
                    if !c.is_open() && now.duration_since(c.started) > self.connect_timeout {
                        bail!(
                            "connection {}: connect + upgrade timed out after {:?} (stuck in {:?}); \
                             {opened} of {n} connections were open",
                            first + i,
                            self.connect_timeout,
                            c.phase
                        );
                    }
                }
            }
        }
        if let Some(t) = self.conns.get(first).and_then(|c| c.tls.as_ref()) {
            println!("  TLS: {}", t.describe());
        }
        Ok(t0.elapsed())
    }

    /// Polls once and drives every connection that got an event, handing
    /// messages to `on_msg` and failing if the server closed one.
    pub fn step<F>(&mut self, timeout: Duration, mut on_msg: F) -> Result<()>
    where
        F: FnMut(usize, u8, &[u8]) -> Result<()>,
    {
        self.poll.poll(&mut self.events, Some(timeout))?;
        for ev in self.events.iter() {
            let i = ev.token().0;
            let Some(c) = self.conns.get_mut(i) else {
                continue;
            };
            c.drive(&mut |op, p| on_msg(i, op, p))
                .map_err(|e| Error(format!("connection {i}: {e}")))?;
            if let Some(e) = c.unexpected_close() {
                bail!("connection {i}: {e}");
            }
        }
        Ok(())
    }

    /// Messages sent and received compressed, over every open connection.
    pub fn compressed_counts(&self) -> (u64, u64) {
        self.conns.iter().fold((0, 0), |(o, i), c| {
            let (co, ci) = c.compressed_counts();
            (o + co, i + ci)
        })
    }

    /// Sends a close frame on every connection and waits (at most `timeout`)
    /// for the server's close frames. Later messages are ignored. Returns
    /// how many connections did not finish the close handshake in time.
    pub fn close_all(&mut self, timeout: Duration) -> Result<usize> {
        for (i, c) in self.conns.iter_mut().enumerate() {
            c.queue_close(1000);
            c.flush()
                .map_err(|e| Error(format!("connection {i}: sending close: {e}")))?;
        }
        let deadline = Instant::now() + timeout;
        let mut open = self.conns.iter().filter(|c| !c.is_closed()).count();
        while open > 0 && Instant::now() < deadline {
            self.poll.poll(&mut self.events, Some(Duration::from_millis(50)))?;
            for ev in self.events.iter() {
                let i = ev.token().0;
                let Some(c) = self.conns.get_mut(i) else {
                    continue;
                };
                if c.is_closed() {
                    continue;
                }
                // Errors here (e.g. a reset right after the close frame) no
                // longer matter for the measurement: count them as closed.
                let r = c.drive(&mut |_, _| Ok(()));
                if r.is_err() || c.is_closed() {
                    open -= 1;
                }
            }
        }
        self.conns.clear();
        Ok(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback_urls() {
        let t = Target::parse("ws://127.0.0.1:9001/echo").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!((t.host.as_str(), t.path.as_str()), ("127.0.0.1:9001", "/echo"));
        let t = Target::parse("ws://127.0.0.1:9001").unwrap();
        assert_eq!(t.path, "/");
        let t = Target::parse("ws://[::1]:9001/chat?x=1").unwrap();
        assert_eq!(t.path, "/chat?x=1");
        assert!(Target::parse("ws://127.0.0.1/x").unwrap().addr.port() == 80);
        let t = Target::parse("wss://127.0.0.1/x").unwrap();
        assert!(t.wss && t.tls.is_none());
        assert_eq!(t.addr.port(), 443);
        assert!(!Target::parse("ws://127.0.0.1:1/").unwrap().wss);
    }

    #[test]
    fn refuses_bad_or_remote_urls() {
        assert!(Target::parse("http://127.0.0.1:1/").is_err());
        assert!(Target::parse("wss://10.1.2.3:1/").is_err());
        assert!(Target::parse("ws:///x").is_err());
        assert!(Target::parse("ws://10.1.2.3:80/").is_err());
        assert!(Target::parse("ws://192.168.0.1:80/").is_err());
    }
}
