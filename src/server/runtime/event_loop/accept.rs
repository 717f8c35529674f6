//! Accepting connections: admitting or refusing them, spreading them over the loops, and
//! retrying when the process is out of file descriptors.

use super::{Conn, EventLoop};
use crate::server::metrics::LoopStats;
use crate::server::runtime::inbox::Command;
use crate::server::session::Session;
use crate::server::timers::Millis;
use crate::server::{ConnId, Handler, Response};
use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;

/// After `accept` fails for lack of file descriptors, try again this often (and whenever a
/// connection of this loop closes).
const ACCEPT_RETRY_MS: Millis = 100;
/// At most one "accept failed" warning per this many milliseconds.
const ACCEPT_WARN_EVERY_MS: Millis = 10_000;

/// Accepting, and what to do when it fails.
#[derive(Default)]
pub(super) struct Accepting {
    /// The last accept failed for lack of descriptors: retry at `retry_at`.
    pub(super) blocked: bool,
    pub(super) retry_at: Millis,
    last_warning: Option<Millis>,
    suppressed: u64,
}

/// Whether an accept error means "out of file descriptors (or memory) for now".
fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

impl<H: Handler> EventLoop<H> {
    pub(super) fn accept(&mut self) {
        #[cfg(feature = "tls")]
        let mut accepted = 0;
        loop {
            #[cfg(feature = "tls")]
            if self.lp.core.config.tls.is_some() && !self.may_accept_tls(accepted) {
                // Handshakes wait already: the rest stay in the kernel's backlog (first in,
                // first out too) until they have gone; looked at again every turn.
                self.accepting.blocked = true;
                self.accepting.retry_at = self.lp.now;
                return;
            }
            #[cfg(feature = "tls")]
            {
                accepted += 1;
            }
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.accepting.blocked = false;
                    self.admit(stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accepting.blocked = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_resource_exhaustion(&e) => {
                    // Edge-triggered: nothing would wake us for the clients still waiting in
                    // the backlog, so retry on a timer and whenever a connection closes.
                    self.accepting.blocked = true;
                    self.accepting.retry_at = self.lp.now + ACCEPT_RETRY_MS;
                    self.core().metrics().accept_errors.fetch_add(1, Ordering::Relaxed);
                    self.warn_accept(&e);
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends: that one client is gone; go on.
                    debug!("accept failed: {e}");
                }
            }
        }
    }

    fn warn_accept(&mut self, e: &io::Error) {
        let now = self.lp.now;
        match self.accepting.last_warning {
            Some(at) if now < at + ACCEPT_WARN_EVERY_MS => self.accepting.suppressed += 1,
            _ => {
                let more = std::mem::take(&mut self.accepting.suppressed);
                if more > 0 {
                    warn!("accept failed: {e} (and {more} more times since the last warning); retrying every {ACCEPT_RETRY_MS} ms");
                } else {
                    warn!("accept failed: {e}; retrying every {ACCEPT_RETRY_MS} ms and as connections close");
                }
                self.accepting.last_warning = Some(now);
            }
        }
    }

    /// A new connection: refused over `max_connections`, handed to the next loop in turn
    /// (shared listener), or kept.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let core = self.lp.core.clone();
        if core.metrics().connections() >= core.config.max_connections || self.lp.shutting_down {
            let resp = Response::text(503, "503 Service Unavailable: too many connections\n").to_bytes(false, false);
            // A TLS client could not read a plain answer: it only sees the close.
            #[cfg(feature = "tls")]
            let plain = core.config.tls.is_none();
            #[cfg(not(feature = "tls"))]
            let plain = true;
            if plain {
                let _ = stream.write(&resp);
            }
            let _ = stream.shutdown(Shutdown::Both);
            debug!("refused {peer}: max connections reached");
            return;
        }
        let loops = core.inboxes.len();
        if !core.config.reuse_port && loops > 1 {
            let target = core.next_loop.fetch_add(1, Ordering::Relaxed) % loops;
            if target != self.lp.idx {
                if let Some(inbox) = core.inboxes.get(target) {
                    inbox.push([Command::Adopt(stream, peer)]);
                    return;
                }
            }
        }
        self.add_conn(stream, peer);
    }

    pub(super) fn add_conn(&mut self, stream: TcpStream, peer: SocketAddr) {
        // Linux copies TCP_NODELAY from the listener (set in `bind_listener`); elsewhere set
        // it per connection.
        #[cfg(not(target_os = "linux"))]
        let _ = stream.set_nodelay(true);
        // A TLS server: the configuration current now (a reload changes it for connections
        // accepted later; this one keeps it).
        #[cfg(feature = "tls")]
        let tls = match self
            .lp
            .core
            .config
            .tls
            .as_ref()
            .map(|t| super::tls::TlsConn::new(t.current()))
        {
            None => None,
            Some(Ok(tls)) => Some(tls),
            Some(Err(e)) => {
                warn!("TLS for {peer}: {e}");
                return;
            }
        };
        // Per-address limits (limiter.rs), on the loop that keeps the connection: an admitted
        // one counts until `drop_conn`; a refused one is answered at its first request.
        // A trusted proxy's connections are not counted here: the client it names is, at
        // its upgrade (session/http.rs).
        let core = &self.lp.core;
        let admission = core
            .per_ip
            .as_ref()
            .filter(|_| !crate::server::proxy::trusted(&core.config.trusted_proxies, peer.ip()))
            .map(|p| p.admit(peer.ip(), self.lp.now));
        let (node, idx) = (self.lp.core.node, self.lp.idx);
        let lp = &self.lp;
        let slot = self.conns.insert(|slot, generation| Conn {
            stream,
            session: Session::new(ConnId::new(node, idx, slot, generation), peer, lp),
            #[cfg(feature = "tls")]
            tls,
            registered: 1,
            dirty: false,
            write_shut: false,
            read_closed: false,
        });
        let Some(conn) = self.conns.get_mut(slot) else {
            if let (Some(Ok(())), Some(p)) = (admission, self.lp.core.per_ip.as_ref()) {
                p.release(peer.ip());
            }
            return;
        };
        match admission {
            Some(Ok(())) => conn.session.set_ip_counted(),
            Some(Err(refusal)) => {
                debug!("{peer}: {} (answered at its first request)", refusal.reason.text());
                conn.session.refuse_first_request(refusal, &self.lp);
            }
            None => {}
        }
        let generation = conn.session.generation();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut conn.stream, Token(slot), Interest::READABLE)
        {
            warn!("register failed: {e}");
            if let Some(mut conn) = self.conns.remove(slot) {
                conn.session.release_ip(self.lp.core.per_ip.as_deref());
            }
            return;
        }
        LoopStats::gauge(&self.lp.stats().connections, 1);
        if let Some(inbox) = self.lp.core.inboxes.get(self.lp.idx) {
            inbox.set_live(slot, generation);
        }
        self.arm_timer(slot);
    }
}
