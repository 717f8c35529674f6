//! TLS for the server (`https://` and `wss://` on the same port; feature `tls`): the rustls
//! configuration new connections are accepted with, swappable while the server runs, and a
//! helper that builds one from PEM files.
//!
//! The record layer itself runs in the event loop (`runtime/event_loop/tls.rs`): rustls is
//! sans-IO (`read_tls` / `process_new_packets` / `reader` / `writer` / `write_tls`), so it
//! sits between the socket and the session like the socket did, with no runtime.
//!
//! **Reload.** [`TlsConfig`] holds the current `rustls::ServerConfig` behind a lock that each
//! accept reads once (a pointer copy). Replacing it ([`TlsConfig::replace`], or
//! [`TlsConfig::reload`] which reads the PEM files again, `wsloop serve` does that on `SIGHUP`)
//! changes what *new* connections get; an open connection keeps the configuration it was
//! accepted with (its `ServerConnection` holds its own `Arc`). A reload that fails keeps the
//! old configuration.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The ALPN protocol the server speaks (RFC 7301; RFC 9112 registers `http/1.1`). A WebSocket
/// opens over HTTP/1.1 (RFC 6455 §4.1), so a client that offers only `h2` is refused with
/// rustls' `no_application_protocol` alert, and one that offers no ALPN at all is served.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Why a TLS configuration could not be built: the message names the file at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(String);

impl TlsError {
    pub(crate) fn new(message: impl Into<String>) -> TlsError {
        TlsError(message.into())
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The TLS configuration of a server, shared by its loops and every clone of this value:
/// what [`ServerConfig::tls`](super::ServerConfig::tls) holds. See the module docs.
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<Inner>,
}

struct Inner {
    current: RwLock<Arc<rustls::ServerConfig>>,
    /// Where it was read from, for [`TlsConfig::reload`].
    files: Option<(PathBuf, PathBuf)>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("files", &self.inner.files)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Serves with the caller's own rustls configuration: an SNI resolver
    /// (`ResolvesServerCert`), client-certificate verification, another crypto provider. Its
    /// `alpn_protocols` is used as given (set it to `[b"http/1.1"]` to announce HTTP/1.1).
    pub fn new(config: Arc<rustls::ServerConfig>) -> TlsConfig {
        TlsConfig {
            inner: Arc::new(Inner {
                current: RwLock::new(config),
                files: None,
            }),
        }
    }

    /// Reads a certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8, PKCS#1 or
    /// SEC1) and builds a configuration with [`server_config_from_pem`]; it can be read again
    /// with [`TlsConfig::reload`].
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<TlsConfig, TlsError> {
        let (cert, key) = (cert.as_ref().to_path_buf(), key.as_ref().to_path_buf());
        let config = server_config_from_pem(&cert, &key)?;
        Ok(TlsConfig {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(config)),
                files: Some((cert, key)),
            }),
        })
    }

    /// The configuration new connections are accepted with.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.inner
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// New connections are accepted with `config` from now on; open ones keep theirs.
    pub fn replace(&self, config: Arc<rustls::ServerConfig>) {
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }

    /// The certificate and key files this configuration was read from, if it was.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        self.inner.files.as_ref().map(|(c, k)| (c.as_path(), k.as_path()))
    }

    /// Reads the PEM files again and serves new connections with what they hold now (a
    /// renewed certificate, without a restart). On error the current configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some((cert, key)) = self.files() else {
            return Err(TlsError(
                "this TLS configuration was not read from files: nothing to reload".into(),
            ));
        };
        let config = server_config_from_pem(cert, key)?;
        self.replace(Arc::new(config));
        Ok(())
    }
}

/// A rustls server configuration from PEM files, with rustls' safe defaults (TLS 1.3 and 1.2,
/// the `ring` provider), no client authentication and ALPN `http/1.1`. Errors name the file:
/// missing, unreadable, no certificate or no key in it, or a key that does not match the
/// certificate.
pub fn server_config_from_pem(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let chain = read_chain(cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            TlsError(format!("{}: no private key found in this PEM file", key.display()))
        }
        e => TlsError(format!("{}: cannot read the private key: {e}", key.display())),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            TlsError(format!(
                "certificate {} with key {}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(config)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |e: rustls_pki_types::pem::Error| TlsError(format!("{}: cannot read certificates: {e}", path.display()));
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(bad)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate found in this PEM file (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(chain)
}
