//! Opening the TCP connection within the connect timeout (RFC 6455 §4.1: "If the connection
//! could not be opened ... the client MUST _Fail the WebSocket Connection_"), name resolution
//! included.

use super::error::{Error, Phase};
use super::url::{Host, WsUrl};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Resolves the URL's host and connects to its addresses in turn until one accepts, all within
/// `timeout`.
pub(crate) fn connect(url: &WsUrl, timeout: Duration) -> Result<TcpStream, Error> {
    let deadline = super::later(Instant::now(), timeout);
    let target = format!("{}:{}", url.host(), url.port());
    let addrs = match url.host() {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, url.port())],
        Host::Name(name) => resolve(name, url.port(), timeout)?,
    };
    let mut last = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(Phase::Connect));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
            Err(Error::Timeout(Phase::Connect))
        }
        Some(source) => Err(Error::Connect { target, source }),
        None => Err(Error::Resolve {
            host: url.host().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        }),
    }
}

/// The system resolver (`getaddrinfo`) cannot be given a timeout, so it runs on a helper
/// thread and we wait for its answer at most `timeout`. A resolver that hangs past that leaves
/// the thread to finish on its own; the caller gets [`Phase::Connect`]'s timeout.
fn resolve(name: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, Error> {
    let (tx, rx) = mpsc::channel();
    let query = (name.to_owned(), port);
    let spawned = std::thread::Builder::new()
        .name("wsloop-resolve".into())
        .spawn(move || {
            let _ = tx.send(query.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
        });
    if let Err(source) = spawned {
        return Err(Error::Resolve {
            host: name.to_owned(),
            source,
        });
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(source)) => Err(Error::Resolve {
            host: name.to_owned(),
            source,
        }),
        Err(_) => Err(Error::Timeout(Phase::Connect)),
    }
}
