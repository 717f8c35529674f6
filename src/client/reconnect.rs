//! A client that reconnects by itself, as browser chat clients do: after the connection is
//! lost, wait, try again, wait longer. The wait before retry `n` (counting from 0 after the
//! last successful open) is drawn uniformly from `[c/2, c]` where `c = min(base × 2^n, cap)` —
//! exponential backoff with "equal jitter", so a thousand clients dropped by one server
//! restart do not all come back in the same instant. Defaults: base 0.5 s, cap 30 s.
//!
//! Every state change is reported to a callback: [`ConnectionState::Connecting`],
//! [`ConnectionState::Open`], [`ConnectionState::Closed`] (with the close code, 1006 when the
//! connection dropped or an attempt failed, as browsers report it) and
//! [`ConnectionState::Waiting`] (with the delay drawn).

use super::config::ClientBuilder;
use super::conn::{ClientReader, ClientWriter};
use super::error::Error;
use super::event::ClientEvent;
use crate::frame::CloseCode;
use crate::message::OwnedMessage;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Exponential backoff with jitter: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait (default 0.5 s).
    pub base: Duration,
    /// The largest ceiling (default 30 s).
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The ceiling for retry `n` (0 is the first retry): `base × 2^n`, at most `cap`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).map_or(self.cap, |d| d.min(self.cap))
    }

    /// The wait before retry `n`, for `unit` drawn uniformly from `[0, 1)`: in
    /// `[ceiling/2, ceiling]`.
    pub fn delay(&self, n: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(n);
        let half = ceiling / 2;
        half + (ceiling - half).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// Where a [`ReconnectingClient`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening a connection; `attempt` counts from 1 since the last time it was open.
    Connecting {
        /// This attempt's number.
        attempt: u32,
    },
    /// The handshake succeeded; messages flow.
    Open,
    /// The connection ended, or an attempt failed (code 1006, the reason holds the error).
    Closed {
        /// The server's close code; 1005 for a Close without one, 1006 without a Close frame.
        code: CloseCode,
        /// The server's reason, or what went wrong.
        reason: String,
    },
    /// Waiting this long before the next attempt.
    Waiting {
        /// The delay drawn from the backoff.
        delay: Duration,
    },
}

/// What the receiving side and the senders share: the current connection's writer, and the
/// stop flag that ends reconnecting.
struct Slot {
    writer: Mutex<Option<ClientWriter>>,
    stopped: Mutex<bool>,
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

type StateCallback = Box<dyn FnMut(&ConnectionState) + Send>;

/// A client that reconnects by itself (see the module docs). [`recv`](Self::recv) drives it:
/// it connects when there is no connection, and after a close or a failure it reports the
/// state, waits and connects again. Messages are sent through a [`ReconnectSender`], from any
/// thread, on whatever connection is current.
///
/// ```no_run
/// use std::time::Duration;
/// use wsloop::client::{Backoff, Client, ClientEvent, ReconnectingClient};
///
/// let mut client = ReconnectingClient::new(Client::builder("ws://127.0.0.1:3000/chat"))
///     .backoff(Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(30) })
///     .on_state(|state| eprintln!("{state:?}"));
/// let sender = client.sender();
/// loop {
///     if let ClientEvent::Text(t) = client.recv()? {
///         println!("{t}");
///         sender.send_text("got it").ok(); // fails only while disconnected
///     }
/// }
/// # Ok::<(), wsloop::client::Error>(())
/// ```
pub struct ReconnectingClient {
    builder: ClientBuilder,
    backoff: Backoff,
    max_retries: Option<u32>,
    on_state: Option<StateCallback>,
    reader: Option<ClientReader>,
    slot: Arc<Slot>,
    /// Closes and failed attempts since the connection was last open.
    failures: u32,
    last_error: Option<Error>,
    state: Option<ConnectionState>,
    finished: bool,
}

impl std::fmt::Debug for ReconnectingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingClient")
            .field("url", &self.builder.url())
            .field("state", &self.state)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl ReconnectingClient {
    /// A reconnecting client for what `builder` connects to; nothing happens until
    /// [`connect`](Self::connect) or [`recv`](Self::recv).
    pub fn new(builder: ClientBuilder) -> Self {
        ReconnectingClient {
            builder,
            backoff: Backoff::default(),
            max_retries: None,
            on_state: None,
            reader: None,
            slot: Arc::new(Slot {
                writer: Mutex::new(None),
                stopped: Mutex::new(false),
                wake: Condvar::new(),
            }),
            failures: 0,
            last_error: None,
            state: None,
            finished: false,
        }
    }

    /// The backoff between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Gives up after this many retries in a row without an open connection (default: never);
    /// `recv` then returns the last error.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }

    /// Called on every state change, on the thread that calls `recv` or `connect`.
    pub fn on_state(mut self, callback: impl FnMut(&ConnectionState) + Send + 'static) -> Self {
        self.on_state = Some(Box::new(callback));
        self
    }

    /// A handle to send on the current connection, from any thread.
    pub fn sender(&self) -> ReconnectSender {
        ReconnectSender {
            slot: self.slot.clone(),
        }
    }

    /// The last state reported.
    pub fn state(&self) -> Option<&ConnectionState> {
        self.state.as_ref()
    }

    /// Connects now if not connected (with the backoff after failures).
    pub fn connect(&mut self) -> Result<(), Error> {
        if self.reader.is_some() {
            return Ok(());
        }
        self.connect_with_backoff()
    }

    /// The next message, Ping or Pong, reconnecting as often as needed. Closes are not
    /// returned: they are reported as [`ConnectionState::Closed`] and followed by a reconnect —
    /// except after [`ReconnectSender::close`], when the server's Close is returned and later
    /// calls return [`Error::Closed`]. A read timeout is returned as it is (the connection stays
    /// open).
    pub fn recv(&mut self) -> Result<ClientEvent, Error> {
        loop {
            if self.finished {
                return Err(Error::Closed);
            }
            self.connect()?;
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            let result = reader.recv();
            match result {
                Ok(ClientEvent::Close(status)) => {
                    let (code, reason) = status
                        .as_ref()
                        .map_or((CloseCode::NO_STATUS, String::new()), |s| (s.code, s.reason.clone()));
                    self.disconnected(code, reason);
                    if self.stopped() {
                        self.finished = true;
                        return Ok(ClientEvent::Close(status));
                    }
                }
                Ok(event) => return Ok(event),
                Err(e) if e.is_recoverable() => return Err(e),
                Err(e) => {
                    self.disconnected(e.close_code().unwrap_or(CloseCode::ABNORMAL), e.to_string());
                    if self.stopped() {
                        self.finished = true;
                        return Err(e);
                    }
                }
            }
        }
    }

    fn connect_with_backoff(&mut self) -> Result<(), Error> {
        loop {
            if self.stopped() {
                self.finished = true;
                return Err(Error::Closed);
            }
            if self.failures > 0 {
                if self.max_retries.is_some_and(|max| self.failures > max) {
                    self.finished = true;
                    return Err(self.last_error.take().unwrap_or(Error::Closed));
                }
                let delay = self.backoff.delay(self.failures - 1, random_unit());
                self.report(ConnectionState::Waiting { delay });
                if self.sleep_unless_stopped(delay) {
                    continue;
                }
            }
            self.report(ConnectionState::Connecting {
                attempt: self.failures + 1,
            });
            match self.builder.connect() {
                Ok(client) => {
                    let (reader, writer) = client.split();
                    *lock(&self.slot.writer) = Some(writer);
                    self.reader = Some(reader);
                    self.failures = 0;
                    self.last_error = None;
                    self.report(ConnectionState::Open);
                    return Ok(());
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    self.report(ConnectionState::Closed {
                        code: CloseCode::ABNORMAL,
                        reason: e.to_string(),
                    });
                    self.last_error = Some(e);
                }
            }
        }
    }

    fn disconnected(&mut self, code: CloseCode, reason: String) {
        self.reader = None;
        *lock(&self.slot.writer) = None;
        self.failures = 1;
        self.report(ConnectionState::Closed { code, reason });
    }

    fn report(&mut self, state: ConnectionState) {
        if let Some(cb) = self.on_state.as_mut() {
            cb(&state);
        }
        self.state = Some(state);
    }

    fn stopped(&self) -> bool {
        *lock(&self.slot.stopped)
    }

    /// Sleeps `delay` unless [`ReconnectSender::close`] stops reconnecting first; true if it
    /// did.
    fn sleep_unless_stopped(&self, delay: Duration) -> bool {
        let guard = lock(&self.slot.stopped);
        let (guard, _) = self
            .slot
            .wake
            .wait_timeout_while(guard, delay, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// Sends on a [`ReconnectingClient`]'s current connection; cloneable, usable from any thread.
/// While disconnected, sending fails with [`Error::Closed`] (nothing is queued: what to resend
/// after a reconnect is the application's choice).
#[derive(Clone)]
pub struct ReconnectSender {
    slot: Arc<Slot>,
}

impl std::fmt::Debug for ReconnectSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectSender").finish_non_exhaustive()
    }
}

impl ReconnectSender {
    fn writer(&self) -> Result<ClientWriter, Error> {
        lock(&self.slot.writer).clone().ok_or(Error::Closed)
    }

    /// Sends a data message on the current connection.
    pub fn send(&self, message: OwnedMessage) -> Result<(), Error> {
        self.writer()?.send(message)
    }

    /// Sends a text message on the current connection.
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.writer()?.send_text(text)
    }

    /// Sends a binary message on the current connection.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.writer()?.send_binary(data)
    }

    /// Sends a Ping on the current connection.
    pub fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        self.writer()?.ping(payload)
    }

    /// Whether a connection is open now.
    pub fn is_open(&self) -> bool {
        self.writer().is_ok_and(|w| w.is_open())
    }

    /// Stops reconnecting and starts the close handshake on the current connection, if any
    /// (RFC 6455 §7.1.2). The receiving side returns the server's Close, then [`Error::Closed`].
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        *lock(&self.slot.stopped) = true;
        self.slot.wake.notify_all();
        match self.writer() {
            Ok(w) => w.close(code, reason),
            Err(_) => Ok(()),
        }
    }
}

/// A number in `[0, 1)` from OS entropy, for the jitter; the clock's nanoseconds if that fails
/// (jitter only spreads reconnects, it protects nothing).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes = u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_ne_bytes();
    }
    (u64::from_ne_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_in_the_upper_half() {
        let b = Backoff::default();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(b.ceiling(0)), 500);
        assert_eq!(ms(b.ceiling(1)), 1000);
        assert_eq!(ms(b.ceiling(5)), 16_000);
        assert_eq!(ms(b.ceiling(6)), 30_000);
        assert_eq!(ms(b.ceiling(1000)), 30_000);
        assert_eq!(ms(b.delay(0, 0.0)), 250);
        assert_eq!(ms(b.delay(0, 0.999_999)), 499);
        assert_eq!(ms(b.delay(3, 0.5)), 3000);
        for _ in 0..1000 {
            let d = b.delay(2, random_unit());
            assert!(
                d >= Duration::from_millis(1000) && d <= Duration::from_millis(2000),
                "{d:?}"
            );
        }
    }

    #[test]
    fn random_units_are_in_range_and_vary() {
        let draws: Vec<f64> = (0..100).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.windows(2).any(|w| w[0] != w[1]));
    }
}
