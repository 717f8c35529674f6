//! Certificates made per run with rcgen for the TLS tests: a throwaway CA and leaves it signs
//! (good, for another name, or expired), and a rustls client configuration trusting the CA.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// A CA and its key, to sign leaves with.
pub struct TestCa {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

/// A leaf certificate and its key.
pub struct Leaf {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl TestCa {
    /// A self-signed CA named `common_name`.
    pub fn new(common_name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, common_name);
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    /// A leaf for `names` (DNS names or IP addresses), subject `CN=common_name, O=wsloop
    /// tests`; `expired` puts its validity in 2020.
    pub fn leaf(&self, names: &[&str], common_name: &str, expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.distinguished_name.push(DnType::OrganizationName, "wsloop tests");
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf { cert, key }
    }

    /// A rustls client (ring provider, ALPN `http/1.1`) trusting only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Leaf {
    /// The chain as a server sends it (leaf, then the CA), in PEM.
    pub fn chain_pem(&self, ca: &TestCa) -> String {
        format!("{}{}", self.cert.pem(), ca.cert.pem())
    }

    /// The chain in DER, for a rustls `ServerConfig`.
    pub fn chain_der(&self, ca: &TestCa) -> Vec<CertificateDer<'static>> {
        vec![self.cert.der().clone(), ca.cert.der().clone()]
    }

    /// The private key in DER (PKCS #8).
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}
