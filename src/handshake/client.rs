//! The client's side of the opening handshake (RFC 6455 §4.1): build the request with a fresh
//! random key, then check the server's response to the letter.

use super::deflate::{check_deflate_answer, DeflateAnswerError, DeflateOffer, PERMESSAGE_DEFLATE};
use super::extensions::parse_extensions;
use super::{accept_key, WEBSOCKET_VERSION};
use crate::deflate::DeflateParams;
use base64::Engine as _;
use std::fmt;

/// The most bytes accepted in a response head before giving up.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// The most header fields accepted in a response head.
const MAX_RESPONSE_HEADERS: usize = 64;

/// A response that does not complete the handshake (RFC 6455 §4.1, "the client MUST _Fail the
/// WebSocket Connection_").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHandshakeError {
    /// The response head is not valid HTTP, or is too large.
    Malformed(&'static str),
    /// The status is not 101 (RFC 6455 §4.1, server response item 1).
    NotSwitchingProtocols(u16),
    /// `Upgrade` lacks the value `websocket` (item 2).
    UpgradeNotWebSocket,
    /// `Connection` lacks the token `Upgrade` (item 3).
    ConnectionNotUpgrade,
    /// `Sec-WebSocket-Accept` is missing or not the value computed from our key (item 4).
    WrongAccept,
    /// The server picked an extension we did not offer (item 5).
    UnofferedExtension(String),
    /// The server picked a subprotocol we did not offer (item 6).
    UnofferedProtocol(String),
    /// The server's permessage-deflate answer breaks a rule of RFC 7692 §7 (or the header
    /// breaks RFC 6455 §9.1): the client "MUST _Fail the WebSocket Connection_".
    InvalidDeflateAnswer(DeflateAnswerError),
}

impl fmt::Display for ClientHandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientHandshakeError::Malformed(why) => write!(f, "malformed handshake response: {why}"),
            ClientHandshakeError::NotSwitchingProtocols(s) => {
                write!(f, "status {s}, expected 101 (RFC 6455 §4.1)")
            }
            ClientHandshakeError::UpgradeNotWebSocket => f.write_str("Upgrade is not \"websocket\" (RFC 6455 §4.1)"),
            ClientHandshakeError::ConnectionNotUpgrade => f.write_str("Connection lacks \"Upgrade\" (RFC 6455 §4.1)"),
            ClientHandshakeError::WrongAccept => {
                f.write_str("Sec-WebSocket-Accept missing or wrong for our key (RFC 6455 §4.1)")
            }
            ClientHandshakeError::UnofferedExtension(e) => {
                write!(f, "server chose extension {e:?} that was not offered")
            }
            ClientHandshakeError::UnofferedProtocol(p) => {
                write!(f, "server chose subprotocol {p:?} that was not offered")
            }
            ClientHandshakeError::InvalidDeflateAnswer(e) => write!(f, "invalid permessage-deflate answer: {e}"),
        }
    }
}

impl std::error::Error for ClientHandshakeError {}

/// The outcome of [`ClientHandshake::parse_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseStatus {
    /// The response head is not complete yet.
    Partial,
    /// The handshake succeeded. The head occupied `head_len` bytes; any bytes after it are
    /// WebSocket frames.
    Accepted {
        /// The subprotocol the server chose, if any.
        protocol: Option<String>,
        /// Length of the response head.
        head_len: usize,
        /// The permessage-deflate parameters agreed, if the server accepted our offer; give
        /// them to [`WebSocket::with_deflate`](crate::protocol::WebSocket::with_deflate).
        deflate: Option<DeflateParams>,
    },
}

/// A client handshake in progress (RFC 6455 §4.1).
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: String,
    protocols: Vec<String>,
    deflate: Option<DeflateOffer>,
}

impl ClientHandshake {
    /// A handshake with a fresh random 16-byte key (RFC 6455 §4.1 item 7: "randomly selected").
    pub fn new(protocols: &[&str]) -> Self {
        let mut nonce = [0u8; 16];
        if getrandom::getrandom(&mut nonce).is_err() {
            // No OS entropy is an environment failure, not a protocol one; fall back to a
            // per-process random hasher so a key is still unpredictable across runs.
            nonce = fallback_random();
        }
        Self::with_nonce(nonce, protocols)
    }

    /// A handshake with a chosen nonce, for tests and examples that need fixed bytes.
    pub fn with_nonce(nonce: [u8; 16], protocols: &[&str]) -> Self {
        ClientHandshake {
            key: base64::engine::general_purpose::STANDARD.encode(nonce),
            protocols: protocols.iter().map(|p| p.to_string()).collect(),
            deflate: None,
        }
    }

    /// Offers permessage-deflate (RFC 7692 §5): the request carries `offer` in
    /// `Sec-WebSocket-Extensions`, and [`ClientHandshake::parse_response`] checks the server's
    /// answer against it and returns the agreed parameters.
    ///
    /// ```
    /// use wsloop::handshake::client::ClientHandshake;
    /// use wsloop::handshake::deflate::DeflateOffer;
    ///
    /// let hs = ClientHandshake::new(&[]).with_deflate(DeflateOffer::default());
    /// let request = String::from_utf8(hs.request("example.com", "/", &[])).unwrap();
    /// assert!(request.contains("\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"));
    /// ```
    pub fn with_deflate(mut self, offer: DeflateOffer) -> Self {
        self.deflate = Some(offer);
        self
    }

    /// The permessage-deflate offer, if any.
    pub fn deflate_offer(&self) -> Option<&DeflateOffer> {
        self.deflate.as_ref()
    }

    /// The `Sec-WebSocket-Key` value this handshake sends.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The request bytes (RFC 6455 §4.1 items 1–10): `GET path HTTP/1.1` with Host, Upgrade,
    /// Connection, the key, version 13, and the offered subprotocols. `extra_headers` adds any
    /// others (Origin, Authorization, ...).
    pub fn request(&self, host: &str, path: &str, extra_headers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: {WEBSOCKET_VERSION}\r\n",
            self.key
        );
        if !self.protocols.is_empty() {
            out.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", self.protocols.join(", ")));
        }
        if let Some(offer) = &self.deflate {
            out.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
        }
        for (name, value) in extra_headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// Parses and checks the server's response from the start of `buf` (every byte received so
    /// far) (RFC 6455 §4.1, "the client MUST validate the server's response as follows").
    pub fn parse_response(&self, buf: &[u8]) -> Result<ResponseStatus, ClientHandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
                return Err(ClientHandshakeError::Malformed("response head too large"))
            }
            Ok(httparse::Status::Partial) => return Ok(ResponseStatus::Partial),
            Err(_) => return Err(ClientHandshakeError::Malformed("not an HTTP/1.1 response")),
        };
        let status = resp.code.unwrap_or(0);
        if status != 101 {
            return Err(ClientHandshakeError::NotSwitchingProtocols(status));
        }
        let tokens = |name: &str| -> Vec<String> {
            resp.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .filter_map(|h| std::str::from_utf8(h.value).ok())
                .flat_map(|v| v.split(','))
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect()
        };
        if !tokens("upgrade").iter().any(|t| t.eq_ignore_ascii_case("websocket")) {
            return Err(ClientHandshakeError::UpgradeNotWebSocket);
        }
        if !tokens("connection").iter().any(|t| t.eq_ignore_ascii_case("upgrade")) {
            return Err(ClientHandshakeError::ConnectionNotUpgrade);
        }
        let expected = accept_key(self.key.as_bytes());
        let accepts: Vec<&[u8]> = resp
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
            .map(|h| h.value)
            .collect();
        if accepts.len() != 1 || accepts.first().map(|v| v.trim_ascii()) != Some(expected.as_bytes()) {
            return Err(ClientHandshakeError::WrongAccept);
        }
        let deflate = self.check_extensions(resp.headers)?;
        let chosen = tokens("sec-websocket-protocol");
        let protocol = match chosen.as_slice() {
            [] => None,
            [p] if self.protocols.contains(p) => Some(p.clone()),
            [p, ..] => return Err(ClientHandshakeError::UnofferedProtocol(p.clone())),
        };
        Ok(ResponseStatus::Accepted {
            protocol,
            head_len,
            deflate,
        })
    }

    /// The server's `Sec-WebSocket-Extensions` (RFC 6455 §4.1 item 5, §9.1; RFC 7692 §5, §7):
    /// only permessage-deflate, only if offered, at most once, and within the offer.
    fn check_extensions(
        &self,
        headers: &[httparse::Header<'_>],
    ) -> Result<Option<DeflateParams>, ClientHandshakeError> {
        let mut fields = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|h| h.value)
            .peekable();
        if fields.peek().is_none() {
            return Ok(None);
        }
        let list = parse_extensions(fields)
            .map_err(|e| ClientHandshakeError::InvalidDeflateAnswer(DeflateAnswerError::Malformed(e)))?;
        let mut agreed = None;
        for ext in &list {
            let offer = match &self.deflate {
                Some(offer) if ext.name == PERMESSAGE_DEFLATE => offer,
                _ => return Err(ClientHandshakeError::UnofferedExtension(ext.name.clone())),
            };
            if agreed.is_some() {
                return Err(ClientHandshakeError::InvalidDeflateAnswer(
                    DeflateAnswerError::Duplicate,
                ));
            }
            agreed = Some(check_deflate_answer(offer, ext).map_err(ClientHandshakeError::InvalidDeflateAnswer)?);
        }
        Ok(agreed)
    }
}

/// 16 bytes from the standard library's per-process random hash keys: only used if the OS
/// refuses to give entropy.
pub(crate) fn fallback_random() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_ne_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{validate_upgrade, write_accept_response, ParseStatus, RequestParser};

    #[test]
    fn rfc_nonce_gives_the_rfc_key_and_a_valid_request() {
        // RFC 6455 §4.1: the nonce "the sample nonce" is the 16 bytes of that text.
        let hs = ClientHandshake::with_nonce(*b"the sample nonce", &["chat", "superchat"]);
        assert_eq!(hs.key(), "dGhlIHNhbXBsZSBub25jZQ==");
        let req = hs.request("server.example.com", "/chat", &[("Origin", "http://example.com")]);
        let Ok(ParseStatus::Complete { request, .. }) = RequestParser::default().parse(&req) else {
            panic!("request did not parse");
        };
        let up = validate_upgrade(&request).unwrap();
        assert_eq!(up.protocols, ["chat", "superchat"]);
        assert_eq!(request.header_str("origin"), Some("http://example.com"));
    }

    #[test]
    fn random_keys_differ_and_are_valid() {
        let a = ClientHandshake::new(&[]);
        let b = ClientHandshake::new(&[]);
        assert_ne!(a.key(), b.key());
        assert_eq!(
            base64::engine::general_purpose::STANDARD.decode(a.key()).unwrap().len(),
            16
        );
    }

    #[test]
    fn accepts_the_servers_101_and_keeps_trailing_bytes() {
        let hs = ClientHandshake::with_nonce(*b"the sample nonce", &["chat"]);
        let mut resp = Vec::new();
        write_accept_response(&mut resp, hs.key().as_bytes(), Some("chat"), &[]);
        let head = resp.len();
        resp.extend_from_slice(&[0x81, 0x00]);
        for end in 0..head {
            assert_eq!(hs.parse_response(&resp[..end]), Ok(ResponseStatus::Partial));
        }
        assert_eq!(
            hs.parse_response(&resp),
            Ok(ResponseStatus::Accepted {
                protocol: Some("chat".into()),
                head_len: head,
                deflate: None,
            })
        );
    }

    #[test]
    fn rejects_each_broken_response_rule() {
        let hs = ClientHandshake::with_nonce(*b"the sample nonce", &["chat"]);
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(hs.parse_response(ok.as_bytes()).is_ok());
        let broken = [
            (
                ok.replace("101 Switching Protocols", "200 OK"),
                ClientHandshakeError::NotSwitchingProtocols(200),
            ),
            (
                ok.replace("Upgrade: websocket", "Upgrade: h2c"),
                ClientHandshakeError::UpgradeNotWebSocket,
            ),
            (
                ok.replace("Connection: Upgrade", "Connection: close"),
                ClientHandshakeError::ConnectionNotUpgrade,
            ),
            (
                ok.replace("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                ClientHandshakeError::WrongAccept,
            ),
            (
                ok.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
                ClientHandshakeError::UnofferedExtension("permessage-deflate".into()),
            ),
            (
                ok.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"),
                ClientHandshakeError::UnofferedProtocol("mqtt".into()),
            ),
        ];
        for (resp, err) in broken {
            assert_eq!(hs.parse_response(resp.as_bytes()), Err(err), "{resp}");
        }
    }

    #[test]
    fn deflate_offer_and_answer_round_trip_through_the_server_functions() {
        use crate::handshake::deflate::{negotiate_deflate, DeflatePolicy};
        use crate::handshake::write_accept_response_with_extensions;
        let hs = ClientHandshake::with_nonce(*b"the sample nonce", &[]).with_deflate(DeflateOffer::default());
        let req = hs.request("h", "/", &[]);
        let Ok(ParseStatus::Complete { request, .. }) = RequestParser::default().parse(&req) else {
            panic!("request did not parse");
        };
        let up = validate_upgrade(&request).unwrap();
        let (server_params, answer) = negotiate_deflate(&up.extensions, &DeflatePolicy::default()).unwrap();
        let mut resp = Vec::new();
        write_accept_response_with_extensions(&mut resp, hs.key().as_bytes(), None, Some(&answer), &[]);
        match hs.parse_response(&resp) {
            Ok(ResponseStatus::Accepted { deflate: Some(p), .. }) => assert_eq!(p, server_params),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_each_broken_extension_answer() {
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        let with = |ext: &str| format!("{ok}Sec-WebSocket-Extensions: {ext}\r\n\r\n");
        let offering = ClientHandshake::with_nonce(*b"the sample nonce", &[]).with_deflate(DeflateOffer {
            server_max_window_bits: Some(12),
            client_max_window_bits: None,
            ..DeflateOffer::default()
        });
        let plain = ClientHandshake::with_nonce(*b"the sample nonce", &[]);
        use DeflateAnswerError as A;
        let cases = [
            (
                &plain,
                with("permessage-deflate"),
                ClientHandshakeError::UnofferedExtension("permessage-deflate".into()),
            ),
            (
                &offering,
                with("x-webkit-deflate-frame"),
                ClientHandshakeError::UnofferedExtension("x-webkit-deflate-frame".into()),
            ),
            (
                &offering,
                with("permessage-deflate; server_max_window_bits=12, permessage-deflate; server_max_window_bits=12"),
                ClientHandshakeError::InvalidDeflateAnswer(A::Duplicate),
            ),
            (
                &offering,
                with("permessage-deflate; server_max_window_bits=12; mux"),
                ClientHandshakeError::InvalidDeflateAnswer(A::Param(
                    crate::handshake::deflate::DeflateParamError::UnknownParameter("mux".into()),
                )),
            ),
            (
                &offering,
                with("permessage-deflate; server_max_window_bits=13"),
                ClientHandshakeError::InvalidDeflateAnswer(A::ServerMaxWindowBitsAboveOffer {
                    offered: 12,
                    answered: Some(13),
                }),
            ),
            (
                &offering,
                with("permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"),
                ClientHandshakeError::InvalidDeflateAnswer(A::ClientMaxWindowBitsNotOffered),
            ),
        ];
        for (hs, resp, err) in cases {
            assert_eq!(hs.parse_response(resp.as_bytes()), Err(err), "{resp}");
        }
        assert!(matches!(
            offering.parse_response(with("permessage-deflate;").as_bytes()),
            Err(ClientHandshakeError::InvalidDeflateAnswer(A::Malformed(_)))
        ));
        // Split over two fields, the answer is still one list.
        let two = format!("{ok}Sec-WebSocket-Extensions: permessage-deflate;\r\nSec-WebSocket-Extensions: x\r\n\r\n");
        assert!(offering.parse_response(two.as_bytes()).is_err());
        match offering.parse_response(with("permessage-deflate; server_max_window_bits=10").as_bytes()) {
            Ok(ResponseStatus::Accepted { deflate: Some(p), .. }) => assert_eq!(p.server_max_window_bits, 10),
            other => panic!("{other:?}"),
        }
    }
}
