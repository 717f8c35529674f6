//! What the Rust peer servers share: their command line and, for `wss://`, a rustls server
//! configuration built the way wsloop builds its own (`src/server/tls.rs`): rustls 0.23 with the
//! `ring` provider, rustls' safe default protocol versions (TLS 1.3 and 1.2) and cipher suites,
//! no client authentication, ALPN `http/1.1`, the rest rustls' defaults (an in-memory session
//! cache, TLS 1.3 tickets as rustls sends them). The same library with the same settings on
//! both sides keeps the TLS comparison about the servers, not about the TLS stacks' defaults.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// `PEER PORT [--tls-cert FILE --tls-key FILE]`.
pub struct Args {
    pub port: u16,
    /// Certificate chain and private key (PEM) when the peer serves `wss://`.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Args {
    /// Reads the process's arguments; `default_port` when no port is given.
    pub fn parse(default_port: u16) -> anyhow::Result<Self> {
        Self::from_iter(std::env::args().skip(1), default_port)
    }

    fn from_iter(args: impl Iterator<Item = String>, default_port: u16) -> anyhow::Result<Self> {
        let mut port = None;
        let (mut cert, mut key) = (None, None);
        let mut args = args;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--tls-cert" => cert = Some(PathBuf::from(args.next().context("--tls-cert needs a FILE")?)),
                "--tls-key" => key = Some(PathBuf::from(args.next().context("--tls-key needs a FILE")?)),
                p if port.is_none() => port = Some(p.parse().with_context(|| format!("bad port {p:?}"))?),
                other => bail!("unexpected argument {other:?} (usage: PORT [--tls-cert FILE --tls-key FILE])"),
            }
        }
        let tls = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        Ok(Args {
            port: port.unwrap_or(default_port),
            tls,
        })
    }
}

/// The acceptor for `wss://`: the chain and key read from PEM files (rustls-pki-types, as
/// wsloop reads them).
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("{}: cannot read certificates", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: cannot read certificates", cert.display()))?;
    if chain.is_empty() {
        bail!("{}: no certificate in this PEM file", cert.display());
    }
    let private =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("{}: cannot read the private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Args> {
        Args::from_iter(args.iter().map(|s| s.to_string()), 7)
    }

    #[test]
    fn plain_and_tls_command_lines() {
        let a = parse(&[]).unwrap();
        assert_eq!((a.port, a.tls.is_none()), (7, true));
        let a = parse(&["9000", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        assert_eq!(a.port, 9000);
        let (c, k) = a.tls.unwrap();
        assert_eq!((c.to_str(), k.to_str()), (Some("c.pem"), Some("k.pem")));
        assert!(parse(&["9000", "--tls-cert", "c.pem"]).is_err());
        assert!(parse(&["9000", "--tls-key"]).is_err());
        assert!(parse(&["x"]).is_err());
        assert!(parse(&["1", "2"]).is_err());
    }
}
