//! The client's settings and the builder that carries them (RFC 6455 §4.1 for what goes in the
//! request, §10.4 for the limits). Every default is a named constant below.

use super::error::Error;
use super::observer::ClientObserver;
use super::Client;
use crate::handshake::deflate::DeflateOffer;
use crate::handshake::extensions::is_token;
use crate::protocol::Config;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default for [`ClientBuilder::connect_timeout`]: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ClientBuilder::handshake_timeout`]: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ClientBuilder::read_timeout`]: 60 s.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`ClientBuilder::write_timeout`]: 30 s.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`ClientBuilder::close_timeout`]: 5 s.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers the handshake writes itself (RFC 6455 §4.1 items 4–10 and §9.1); the builder has a
/// setter for each one a caller may choose.
const RESERVED_HEADERS: [(&str, &str); 8] = [
    ("host", "the client sets Host from the URL"),
    ("upgrade", "the handshake sets Upgrade: websocket"),
    ("connection", "the handshake sets Connection: Upgrade"),
    ("sec-websocket-key", "the handshake picks a fresh random key"),
    ("sec-websocket-version", "the handshake sends version 13"),
    ("sec-websocket-protocol", "use protocol() for each subprotocol"),
    ("sec-websocket-extensions", "use deflate() to offer permessage-deflate"),
    ("origin", "use origin()"),
];

/// Everything a connection attempt needs besides the URL. Cloned by
/// [`ReconnectingClient`](super::ReconnectingClient) for each attempt.
#[derive(Clone)]
pub(crate) struct ClientConfig {
    pub headers: Vec<(String, String)>,
    pub origin: Option<String>,
    pub protocols: Vec<String>,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    pub read_timeout: Option<Duration>,
    pub write_timeout: Duration,
    pub close_timeout: Duration,
    pub websocket: Config,
    pub deflate: Option<DeflateOffer>,
    pub observer: Option<Arc<dyn ClientObserver>>,
    pub tls: TlsSettings,
}

/// What a `wss://` connection trusts (RFC 6455 §4.1 item 5).
#[derive(Clone, Default)]
pub(crate) struct TlsSettings {
    /// Trust the CA certificates in this PEM file instead of Mozilla's roots.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub ca_file: Option<PathBuf>,
    /// The embedder's own rustls configuration, used as given.
    #[cfg(feature = "tls")]
    pub config: Option<Arc<rustls::ClientConfig>>,
    /// The configuration built from the settings above, once per builder and shared by its
    /// clones, so a reconnecting client reuses it (and rustls' session cache: resumed
    /// handshakes, RFC 8446 §2.2). Replaced whenever a setting changes.
    #[cfg(feature = "tls")]
    pub built: Arc<std::sync::Mutex<Option<Arc<rustls::ClientConfig>>>>,
}

#[cfg(feature = "tls")]
impl TlsSettings {
    /// The rustls configuration to connect with.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        if let Some(config) = &self.config {
            return Ok(config.clone());
        }
        let mut built = self.built.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(config) = built.as_ref() {
            return Ok(config.clone());
        }
        let config = Arc::new(super::tls::client_config(self.ca_file.as_deref())?);
        *built = Some(config.clone());
        Ok(config)
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            headers: Vec::new(),
            origin: None,
            protocols: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            read_timeout: Some(DEFAULT_READ_TIMEOUT),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            websocket: Config::default(),
            deflate: None,
            observer: None,
            tls: TlsSettings::default(),
        }
    }
}

impl ClientConfig {
    /// The extra request headers, checked: token names (RFC 7230 §3.2), values without CR, LF
    /// or NUL (so nothing can be smuggled into the request), none the handshake sets itself.
    pub fn request_headers(&self) -> Result<Vec<(&str, &str)>, Error> {
        let mut out = Vec::with_capacity(self.headers.len() + 1);
        if let Some(origin) = &self.origin {
            check_value("Origin", origin)?;
            out.push(("Origin", origin.as_str()));
        }
        for (name, value) in &self.headers {
            if !is_token(name) {
                return Err(Error::InvalidHeader {
                    name: name.clone(),
                    why: "a header name must be an HTTP token (letters, digits, !#$%&'*+-.^_`|~)",
                });
            }
            if let Some((_, why)) = RESERVED_HEADERS.iter().find(|(n, _)| name.eq_ignore_ascii_case(n)) {
                return Err(Error::InvalidHeader {
                    name: name.clone(),
                    why,
                });
            }
            check_value(name, value)?;
            out.push((name.as_str(), value.trim()));
        }
        for p in &self.protocols {
            if !is_token(p) {
                return Err(Error::InvalidProtocol(p.clone()));
            }
        }
        Ok(out)
    }
}

fn check_value(name: &str, value: &str) -> Result<(), Error> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(Error::InvalidHeader {
            name: name.to_owned(),
            why: "a header value may not contain CR, LF or NUL",
        });
    }
    Ok(())
}

/// Builds a [`Client`]: the URL plus request headers, subprotocols, permessage-deflate, the
/// protocol core's limits and a timeout for every wait.
///
/// | setting | default |
/// |---|---|
/// | [`connect_timeout`](Self::connect_timeout): name resolution + TCP connect | 10 s ([`DEFAULT_CONNECT_TIMEOUT`]) |
/// | [`handshake_timeout`](Self::handshake_timeout): TLS handshake (`wss://`) + request sent + whole response head read | 10 s ([`DEFAULT_HANDSHAKE_TIMEOUT`]) |
/// | [`read_timeout`](Self::read_timeout): longest silence in `recv` | 60 s ([`DEFAULT_READ_TIMEOUT`]) |
/// | [`write_timeout`](Self::write_timeout): longest blocked write | 30 s ([`DEFAULT_WRITE_TIMEOUT`]) |
/// | [`close_timeout`](Self::close_timeout): after our Close, for the server's Close and TCP close | 5 s ([`DEFAULT_CLOSE_TIMEOUT`]) |
/// | [`limits`](Self::limits): frame and message size, auto-pong | [`Config::default()`]: 64 MiB, 64 MiB, on |
/// | [`deflate`](Self::deflate) | off |
/// | `wss://` trust: [`tls_ca_file`](Self::tls_ca_file), `tls_config` | Mozilla's roots (webpki-roots) |
///
/// ```no_run
/// use std::time::Duration;
/// use wsloop::client::{Client, OwnedMessage};
///
/// let mut client = Client::builder("ws://127.0.0.1:3000/chat?room=lobby")
///     .header("Authorization", "Bearer t0ken")
///     .origin("http://127.0.0.1:3000")
///     .protocol("chat.v1")
///     .read_timeout(Some(Duration::from_secs(5)))
///     .connect()?;
/// client.send(OwnedMessage::Text("hello".into()))?;
/// # Ok::<(), wsloop::client::Error>(())
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    pub(crate) url: String,
    pub(crate) config: ClientConfig,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are left out: they often carry credentials.
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field(
                "headers",
                &self.config.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("origin", &self.config.origin)
            .field("protocols", &self.config.protocols)
            .field("deflate", &self.config.deflate)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder for `url` (`ws://host[:port]/path?query`); the URL is checked by
    /// [`connect`](Self::connect).
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            url: url.into(),
            config: ClientConfig::default(),
        }
    }

    /// The URL this builder connects to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds a request header, e.g. `Authorization` or `Cookie` (repeatable). The headers the
    /// handshake writes itself (Host, Upgrade, Connection, Sec-WebSocket-*) and Origin (see
    /// [`origin`](Self::origin)) are refused by `connect`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.headers.push((name.into(), value.into()));
        self
    }

    /// Sends `Origin: origin` (RFC 6455 §4.1 item 8: browsers must, other clients may; servers
    /// use it to refuse pages from other sites, §10.2).
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.config.origin = Some(origin.into());
        self
    }

    /// Offers a subprotocol (repeatable, in order of preference; RFC 6455 §4.1 item 10). The
    /// server may pick one ([`Client::protocol`]); one we did not offer fails the handshake
    /// (§4.1, check 6).
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.config.protocols.push(name.into());
        self
    }

    /// Timeout for resolving the host and opening the TCP connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Timeout for the opening handshake, from sending the request to the end of the
    /// response head (default 10 s). For `wss://` the TLS handshake before it counts too.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// The longest `recv` waits for bytes from the server before returning
    /// [`Error::Timeout`]`(Phase::Read)`, after which the connection is still usable; `None`
    /// waits for ever (default 60 s).
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.read_timeout = timeout;
        self
    }

    /// The longest a write may block, e.g. on a server that stops reading (default 30 s).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.config.write_timeout = timeout;
        self
    }

    /// After our Close frame, how long to wait for the server's Close and for it to close TCP
    /// (RFC 6455 §7.1.1: the server closes first); then we close it ourselves (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// The protocol core's limits and behaviour: largest frame and message accepted (larger
    /// ones fail the connection with 1009, RFC 6455 §10.4), automatic Pongs.
    pub fn limits(mut self, config: Config) -> Self {
        self.config.websocket = config;
        self
    }

    /// Offers permessage-deflate (RFC 7692) the way browsers do,
    /// `permessage-deflate; client_max_window_bits`, when `on`. The server's answer is checked
    /// strictly (RFC 7692 §7); if it accepts, messages of at least
    /// [`Config::deflate_threshold`] bytes are sent compressed and compressed messages are
    /// inflated within the message limit. Off by default.
    pub fn deflate(mut self, on: bool) -> Self {
        self.config.deflate = on.then(DeflateOffer::default);
        self
    }

    /// Offers permessage-deflate with these parameters (RFC 7692 §7.1), e.g. asking for
    /// `server_no_context_takeover`.
    pub fn deflate_offer(mut self, offer: DeflateOffer) -> Self {
        self.config.deflate = Some(offer);
        self
    }

    /// Installs something that sees the handshake and every frame as they cross the wire
    /// (what `wsloop client --trace` prints, annotated).
    pub fn observer(mut self, observer: Arc<dyn ClientObserver>) -> Self {
        self.config.observer = Some(observer);
        self
    }

    /// For `wss://`: trust the CA certificates in this PEM file instead of Mozilla's roots
    /// (webpki-roots), e.g. a private or test CA. The file is read at the first connect; a
    /// file that cannot be used fails it with [`TlsError::CaFile`](super::TlsError::CaFile).
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        // A fresh value: clones of this builder keep their own settings and built config.
        self.config.tls = TlsSettings {
            ca_file: Some(path.into()),
            #[cfg(feature = "tls")]
            config: None,
            #[cfg(feature = "tls")]
            built: Arc::default(),
        };
        self
    }

    /// For `wss://`: connect with this rustls configuration, used as given — its roots or
    /// verifier, client certificate, crypto provider, ALPN (set `alpn_protocols` to
    /// `http/1.1` to offer what the WebSocket handshake speaks, RFC 7301). Replaces
    /// [`tls_ca_file`](Self::tls_ca_file).
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.config.tls = TlsSettings {
            config: Some(config),
            ..TlsSettings::default()
        };
        self
    }

    /// Connects: resolves the host, opens TCP, runs the opening handshake (RFC 6455 §4.1) and
    /// returns the open connection. The builder can be used again.
    pub fn connect(&self) -> Result<Client, Error> {
        Client::connect_with(&self.url, &self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        let bad = |name: &str, value: &str| {
            let mut c = ClientConfig::default();
            c.headers.push((name.into(), value.into()));
            c.request_headers().map(|_| ()).unwrap_err()
        };
        assert!(matches!(bad("X Y", "1"), Error::InvalidHeader { .. }));
        assert!(matches!(bad("X-Y", "a\r\nEvil: 1"), Error::InvalidHeader { .. }));
        assert!(matches!(bad("sec-websocket-key", "x"), Error::InvalidHeader { .. }));
        assert!(matches!(bad("Host", "x"), Error::InvalidHeader { .. }));
        let mut c = ClientConfig::default();
        c.protocols.push("a b".into());
        assert!(matches!(c.request_headers(), Err(Error::InvalidProtocol(_))));
        let mut c = ClientConfig {
            origin: Some("http://o".into()),
            ..ClientConfig::default()
        };
        c.headers.push(("Authorization".into(), " Bearer x ".into()));
        assert_eq!(
            c.request_headers().unwrap(),
            [("Origin", "http://o"), ("Authorization", "Bearer x")]
        );
    }
}
