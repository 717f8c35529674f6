//! The opening handshake (RFC 6455 §4), both roles.
//!
//! - [`request`]: the incremental HTTP request-head parser (shared with the HTTP routes).
//! - This module: the server's checks on an upgrade request (§4.2.1), the accept value (§4.2.2
//!   item 5.4), subprotocol selection, and the responses — `101 Switching Protocols`, or a
//!   rejection a client can act on.
//! - [`client`]: the client's request (§4.1) and its checks on the server's response.
//! - [`extensions`]: the `Sec-WebSocket-Extensions` grammar (§9.1); [`deflate`]: negotiating
//!   permessage-deflate (RFC 7692 §5, §7.1).
//!
//! ```
//! // RFC 6455 §1.3: the sample nonce and its accept value.
//! assert_eq!(wsloop::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
//! ```

pub mod client;
pub mod deflate;
pub mod extensions;
pub mod request;

pub use request::{ParseStatus, Request, RequestLimits, RequestParser};

use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::fmt;

/// The GUID appended to the client's key before hashing (RFC 6455 §1.3, §4.2.2 item 5.4).
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this implementation speaks (RFC 6455 §4.1 item 9, §4.2.1 item 6).
pub const WEBSOCKET_VERSION: &str = "13";

/// SHA-1 of the key (as sent, *not* base64-decoded) followed by the GUID (RFC 6455 §4.2.2
/// item 5.4). Exposed so the teaching output can show the digest on its own.
pub fn accept_digest(key: &[u8]) -> [u8; 20] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID.as_bytes());
    sha.finalize().into()
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID))
/// (RFC 6455 §4.2.2 item 5.4). The key is used as the client sent it, as text; it is never
/// decoded for this purpose.
pub fn accept_key(key: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(accept_digest(key))
}

/// A request refused during the opening handshake, naming the rule it broke; each maps to the
/// HTTP status a client can act on (RFC 6455 §4.2.1, §4.2.2, RFC 9110 §15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The request head passed the byte limit: 431 (RFC 6585 §5).
    HeadersTooLarge,
    /// The request has more header fields than allowed: 431 (RFC 6585 §5).
    TooManyHeaders,
    /// httparse could not parse the head: 400.
    Malformed(&'static str),
    /// The method is not GET (RFC 6455 §4.2.1 item 1): 405 with `Allow: GET`.
    MethodNotGet,
    /// The request is older than HTTP/1.1 (RFC 6455 §4.2.1 item 1): 400.
    HttpVersionTooOld,
    /// No `Host` header (RFC 6455 §4.2.1 item 2): 400.
    MissingHost,
    /// `Upgrade` does not hold the token `websocket` (RFC 6455 §4.2.1 item 3): 400.
    UpgradeNotWebSocket,
    /// `Connection` does not hold the token `Upgrade` (RFC 6455 §4.2.1 item 4): 400.
    ConnectionNotUpgrade,
    /// No `Sec-WebSocket-Key`, or more than one (RFC 6455 §4.2.1 item 5): 400.
    MissingKey,
    /// `Sec-WebSocket-Key` is not base64 of exactly 16 bytes (RFC 6455 §4.2.1 item 5): 400.
    InvalidKey,
    /// `Sec-WebSocket-Version` is missing or not 13 (RFC 6455 §4.2.1 item 6, §4.2.2 item 4):
    /// 426 with `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
    /// `Sec-WebSocket-Extensions` does not follow the grammar of RFC 6455 §9.1 ("the recipient
    /// of such malformed data MUST immediately _Fail the WebSocket Connection_"): 400.
    MalformedExtensions,
}

impl HandshakeError {
    /// The HTTP status code sent for this error.
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::HeadersTooLarge | HandshakeError::TooManyHeaders => 431,
            HandshakeError::MethodNotGet => 405,
            HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// The rule that was broken, with its section, as the body of the rejection.
    pub fn rule(self) -> &'static str {
        match self {
            HandshakeError::HeadersTooLarge => "request header section is larger than the server accepts (RFC 6585 §5)",
            HandshakeError::TooManyHeaders => "request has more header fields than the server accepts (RFC 6585 §5)",
            HandshakeError::Malformed(why) => why,
            HandshakeError::MethodNotGet => "the method of the request MUST be GET (RFC 6455 §4.2.1 item 1)",
            HandshakeError::HttpVersionTooOld => "the HTTP version MUST be at least 1.1 (RFC 6455 §4.2.1 item 1)",
            HandshakeError::MissingHost => "the request MUST contain a Host header field (RFC 6455 §4.2.1 item 2)",
            HandshakeError::UpgradeNotWebSocket => {
                "the Upgrade header field MUST include the token \"websocket\" (RFC 6455 §4.2.1 item 3)"
            }
            HandshakeError::ConnectionNotUpgrade => {
                "the Connection header field MUST include the token \"Upgrade\" (RFC 6455 §4.2.1 item 4)"
            }
            HandshakeError::MissingKey => {
                "the request MUST contain exactly one Sec-WebSocket-Key header field (RFC 6455 §4.2.1 item 5)"
            }
            HandshakeError::InvalidKey => {
                "Sec-WebSocket-Key MUST be the base64 encoding of a 16-byte value (RFC 6455 §4.2.1 item 5)"
            }
            HandshakeError::UnsupportedVersion => {
                "Sec-WebSocket-Version MUST be 13 (RFC 6455 §4.2.1 item 6); this server speaks version 13"
            }
            HandshakeError::MalformedExtensions => {
                "Sec-WebSocket-Extensions MUST follow the extension-list grammar (RFC 6455 §9.1)"
            }
        }
    }

    /// The full HTTP response for this rejection: status, a plain-text body naming the rule,
    /// `Connection: close`, and the headers the status calls for (`Allow: GET` on 405,
    /// `Sec-WebSocket-Version: 13` on 426, RFC 6455 §4.2.2 item 4).
    pub fn response(self) -> Vec<u8> {
        let mut extra: Vec<(&str, &str)> = Vec::new();
        match self {
            HandshakeError::MethodNotGet => extra.push(("Allow", "GET")),
            HandshakeError::UnsupportedVersion => extra.push(("Sec-WebSocket-Version", WEBSOCKET_VERSION)),
            _ => {}
        }
        let body = format!("{}\n", self.rule());
        http_response(
            self.status(),
            &extra,
            "text/plain; charset=utf-8",
            body.as_bytes(),
            false,
        )
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status(), reason_phrase(self.status()), self.rule())
    }
}

impl std::error::Error for HandshakeError {}

/// The reason phrase of a status code: every code registered by RFC 9110 §15, and RFC 6585's
/// 428, 429, 431 and 511; "Unknown" for the rest (a client must not rely on the phrase,
/// RFC 9112 §4, but a person reading a log or a browser's network tab does).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}

/// Whether a response with this status has a body at all: not a 1xx (RFC 9110 §15.2), a 204
/// (§15.3.5) or a 304 (§15.4.5), whose end is the end of the head (RFC 9112 §6.3 item 1).
/// A body sent anyway would be read as the start of the next response.
pub fn status_has_body(status: u16) -> bool {
    !matches!(status, 100..=199 | 204 | 304)
}

/// Builds a complete HTTP/1.1 response with a `Content-Length` body (RFC 9112 §6). With
/// `keep_alive` false it says `Connection: close`. A status without a body (1xx, 204, 304:
/// [`status_has_body`]) goes out as its head alone, whatever `body` holds.
pub fn http_response(
    status: u16,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = http_response_head(status, headers, content_type, body.len(), keep_alive);
    if status_has_body(status) {
        out.extend_from_slice(body);
    }
    out
}

/// The head of an HTTP/1.1 response whose body is `content_length` bytes (RFC 9112 §6): what
/// a `HEAD` request is answered with (RFC 9110 §9.3.2), and the start of every response.
/// A 1xx or 204 has neither `Content-Length` nor `Content-Type` (RFC 9110 §8.6: it has no
/// content to describe). A 304 has no `Content-Length` either: it could only repeat the length
/// of a 200 this function does not know, and §8.6 allows leaving it out.
pub fn http_response_head(
    status: u16,
    headers: &[(&str, &str)],
    content_type: &str,
    content_length: usize,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + content_length);
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", status, reason_phrase(status)).as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !content_type.is_empty() && !matches!(status, 100..=199 | 204) {
        out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
    }
    if status_has_body(status) {
        out.extend_from_slice(format!("Content-Length: {content_length}\r\n").as_bytes());
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    out
}

/// What a valid upgrade request asks for, once the server's checks have passed
/// (RFC 6455 §4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The `Sec-WebSocket-Key` as sent (RFC 6455 §4.2.1 item 5).
    pub key: String,
    /// The subprotocols offered in `Sec-WebSocket-Protocol`, in the client's order
    /// (RFC 6455 §4.2.1 item 8).
    pub protocols: Vec<String>,
    /// The extensions offered in `Sec-WebSocket-Extensions`, parsed (RFC 6455 §4.2.1 item 9,
    /// §9.1), in the client's order of preference; empty when the header is absent. Pass them
    /// to [`deflate::negotiate_deflate`] to accept permessage-deflate; answering without the
    /// header declines them all.
    pub extensions: Vec<extensions::Extension>,
}

/// One check the server makes on an upgrade request, for the teaching output
/// (RFC 6455 §4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The rule, with its section.
    pub rule: &'static str,
    /// Whether the request passed it.
    pub passed: bool,
}

/// Checks an upgrade request against RFC 6455 §4.2.1 and returns what it asks for, or the
/// first rule it breaks.
pub fn validate_upgrade(req: &Request) -> Result<UpgradeRequest, HandshakeError> {
    run_checks(req, None)
}

/// The same checks as [`validate_upgrade`], also returning each check made, in order, with its
/// outcome (the checks stop at the first failure).
pub fn check_upgrade(req: &Request) -> (Result<UpgradeRequest, HandshakeError>, Vec<CheckOutcome>) {
    let mut log = Vec::new();
    let result = run_checks(req, Some(&mut log));
    (result, log)
}

/// The checks of RFC 6455 §4.2.1, recording each in `log` when one is given (the server's own
/// path passes `None` and allocates nothing for it).
fn run_checks(req: &Request, mut log: Option<&mut Vec<CheckOutcome>>) -> Result<UpgradeRequest, HandshakeError> {
    let mut check = |cond: bool, err: HandshakeError, rule: &'static str| {
        if let Some(log) = log.as_deref_mut() {
            log.push(CheckOutcome { rule, passed: cond });
        }
        if cond {
            Ok(())
        } else {
            Err(err)
        }
    };
    (|| {
        check(
            req.method() == "GET",
            HandshakeError::MethodNotGet,
            "method is GET (§4.2.1 item 1)",
        )?;
        check(
            req.version_minor() >= 1,
            HandshakeError::HttpVersionTooOld,
            "HTTP version is 1.1 or later (§4.2.1 item 1)",
        )?;
        check(
            req.header("host").is_some_and(|h| !h.is_empty()),
            HandshakeError::MissingHost,
            "a Host header is present (§4.2.1 item 2)",
        )?;
        check(
            req.has_token("upgrade", "websocket"),
            HandshakeError::UpgradeNotWebSocket,
            "Upgrade holds the token \"websocket\", any case (§4.2.1 item 3)",
        )?;
        check(
            req.has_token("connection", "upgrade"),
            HandshakeError::ConnectionNotUpgrade,
            "Connection holds the token \"Upgrade\", any case (§4.2.1 item 4)",
        )?;
        let mut keys = req.header_values("sec-websocket-key");
        let first = keys.next();
        check(
            first.is_some() && keys.next().is_none(),
            HandshakeError::MissingKey,
            "exactly one Sec-WebSocket-Key header (§4.2.1 item 5)",
        )?;
        let key = first.unwrap_or_default();
        let key = trim_ascii(key);
        check(
            key_is_valid(key),
            HandshakeError::InvalidKey,
            "Sec-WebSocket-Key decodes from base64 to exactly 16 bytes (§4.2.1 item 5)",
        )?;
        let version_ok = req.header_values("sec-websocket-version").count() == 1
            && req.header("sec-websocket-version").map(trim_ascii) == Some(WEBSOCKET_VERSION.as_bytes());
        check(
            version_ok,
            HandshakeError::UnsupportedVersion,
            "Sec-WebSocket-Version is 13 (§4.2.1 item 6)",
        )?;
        // Checked only when present: the header is optional (§4.2.1 item 9).
        let mut offered = Vec::new();
        if req.header("sec-websocket-extensions").is_some() {
            let parsed = extensions::parse_extensions(req.header_values("sec-websocket-extensions"));
            check(
                parsed.is_ok(),
                HandshakeError::MalformedExtensions,
                "Sec-WebSocket-Extensions follows the extension-list grammar (§9.1)",
            )?;
            offered = parsed.unwrap_or_default();
        }
        Ok(UpgradeRequest {
            key: String::from_utf8_lossy(key).into_owned(),
            protocols: req.header_tokens("sec-websocket-protocol").map(str::to_owned).collect(),
            extensions: offered,
        })
    })()
}

fn trim_ascii(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or_default()
}

/// RFC 6455 §4.2.1 item 5: "a base64-encoded value that, when decoded, is 16 bytes in length".
/// 16 bytes always encode to 24 characters ending in `==`.
fn key_is_valid(key: &[u8]) -> bool {
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|decoded| decoded.len() == 16)
}

/// Picks the subprotocol to answer with (RFC 6455 §4.2.2 item 5.4 `/subprotocol/`).
///
/// **The server's preference wins**: the first protocol in `supported` (the server's list, in
/// its order of preference) that the client offered. The client's order is ignored, because the
/// server is the one that must speak whatever is picked. Comparison is exact (subprotocol names
/// are case-sensitive tokens, RFC 6455 §11.5). `None` means: answer without the header, which
/// tells the client no subprotocol was agreed.
pub fn select_subprotocol<'a>(offered: &[String], supported: &[&'a str]) -> Option<&'a str> {
    supported.iter().copied().find(|s| offered.iter().any(|o| o == s))
}

/// Appends the `101 Switching Protocols` response that completes the handshake
/// (RFC 6455 §4.2.2 item 5). No `Sec-WebSocket-Extensions` header is sent, which declines every
/// offered extension. `extra_headers` lets an application add its own (cookies, say).
pub fn write_accept_response(out: &mut Vec<u8>, key: &[u8], protocol: Option<&str>, extra_headers: &[(&str, &str)]) {
    write_accept_response_with_extensions(out, key, protocol, None, extra_headers);
}

/// [`write_accept_response`] that also accepts extensions: `extensions` is the
/// `Sec-WebSocket-Extensions` value (RFC 6455 §4.2.2 item 5.5), e.g. the answer
/// [`deflate::negotiate_deflate`] returns; `None` declines every offer.
///
/// ```
/// use wsloop::handshake::{deflate::{negotiate_deflate, DeflatePolicy}, extensions::parse_extensions};
/// use wsloop::handshake::write_accept_response_with_extensions;
///
/// let offers = parse_extensions([&b"permessage-deflate"[..]]).unwrap();
/// let deflate = negotiate_deflate(&offers, &DeflatePolicy::default());
/// let mut out = Vec::new();
/// write_accept_response_with_extensions(
///     &mut out, b"dGhlIHNhbXBsZSBub25jZQ==", None, deflate.as_ref().map(|(_, a)| a.as_str()), &[]);
/// assert!(String::from_utf8(out).unwrap().contains(
///     "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"));
/// ```
pub fn write_accept_response_with_extensions(
    out: &mut Vec<u8>,
    key: &[u8],
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &[(&str, &str)],
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    // Base64 of the 20-byte digest is 28 bytes: encoded on the stack, not into a `String`.
    let mut accept = [0u8; 28];
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(accept_digest(key), &mut accept)
        .unwrap_or(0);
    out.extend_from_slice(accept.get(..n).unwrap_or_default());
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(e) = extensions {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        out.extend_from_slice(e.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in extra_headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §1.3 / §4.2.2's example request.
    const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn parse(text: &str) -> Request {
        match RequestParser::default().parse(text.as_bytes()) {
            Ok(ParseStatus::Complete { request, .. }) => request,
            other => panic!("{other:?}"),
        }
    }

    fn with(header_line_old: &str, header_line_new: &str) -> Request {
        assert!(RFC_REQUEST.contains(header_line_old), "{header_line_old}");
        parse(&RFC_REQUEST.replace(header_line_old, header_line_new))
    }

    #[test]
    fn rfc_1_3_accept_value() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        // §1.3 also gives the digest: 0xb3 0x7a 0x4f 0x2c ... 0xea.
        let d = accept_digest(b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(d[..4], [0xb3, 0x7a, 0x4f, 0x2c]);
        assert_eq!(d[19], 0xea);
    }

    #[test]
    fn rfc_4_2_2_example_request_is_accepted_with_its_response() {
        let req = parse(RFC_REQUEST);
        let up = validate_upgrade(&req).unwrap();
        assert_eq!(up.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(up.protocols, ["chat", "superchat"]);
        let chosen = select_subprotocol(&up.protocols, &["chat"]);
        let mut out = Vec::new();
        write_accept_response(&mut out, up.key.as_bytes(), chosen, &[]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }

    #[test]
    fn token_lists_and_case_are_accepted() {
        let req = with("Connection: Upgrade", "connection: keep-alive,  UPGRADE ");
        assert!(validate_upgrade(&req).is_ok());
        let req = with("Upgrade: websocket", "Upgrade: h2c, WebSocket");
        assert!(validate_upgrade(&req).is_ok());
    }

    #[test]
    fn each_rule_gives_its_status() {
        let cases: Vec<(Request, HandshakeError, u16)> = vec![
            (
                parse(&RFC_REQUEST.replace("GET /chat", "POST /chat")),
                HandshakeError::MethodNotGet,
                405,
            ),
            (
                parse(&RFC_REQUEST.replace("HTTP/1.1", "HTTP/1.0")),
                HandshakeError::HttpVersionTooOld,
                400,
            ),
            (
                with("Host: server.example.com\r\n", ""),
                HandshakeError::MissingHost,
                400,
            ),
            (
                with("Upgrade: websocket", "Upgrade: h2c"),
                HandshakeError::UpgradeNotWebSocket,
                400,
            ),
            (
                with("Connection: Upgrade", "Connection: keep-alive"),
                HandshakeError::ConnectionNotUpgrade,
                400,
            ),
            (
                with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                HandshakeError::MissingKey,
                400,
            ),
            (
                with(
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                ),
                HandshakeError::MissingKey,
                400,
            ),
            (
                with(
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Key: c2hvcnQ=",
                ),
                HandshakeError::InvalidKey,
                400,
            ),
            (
                // 17 bytes of base64 that is 24 chars long would not end in "=="; a 24-char
                // string that is not base64 at all:
                with(
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==",
                ),
                HandshakeError::InvalidKey,
                400,
            ),
            (
                with("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
                HandshakeError::UnsupportedVersion,
                426,
            ),
            (
                with("Sec-WebSocket-Version: 13\r\n", ""),
                HandshakeError::UnsupportedVersion,
                426,
            ),
        ];
        for (req, err, status) in cases {
            assert_eq!(validate_upgrade(&req), Err(err));
            assert_eq!(err.status(), status);
        }
    }

    #[test]
    fn rejections_carry_the_headers_a_client_needs() {
        let r = String::from_utf8(HandshakeError::UnsupportedVersion.response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        let r = String::from_utf8(HandshakeError::MethodNotGet.response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(r.contains("\r\nAllow: GET\r\n"));
        let r = String::from_utf8(HandshakeError::HeadersTooLarge.response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        let r = String::from_utf8(HandshakeError::MissingHost.response()).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("Host"));
    }

    #[test]
    fn server_preference_wins_in_subprotocol_selection() {
        let offered = vec!["superchat".to_string(), "chat".to_string()];
        assert_eq!(select_subprotocol(&offered, &["chat", "superchat"]), Some("chat"));
        assert_eq!(select_subprotocol(&offered, &["superchat", "chat"]), Some("superchat"));
        assert_eq!(select_subprotocol(&offered, &["mqtt"]), None);
        assert_eq!(select_subprotocol(&offered, &["Chat"]), None);
    }

    #[test]
    fn checks_are_listed_in_order_and_stop_at_the_first_failure() {
        let (res, log) = check_upgrade(&with("Connection: Upgrade", "Connection: close"));
        assert_eq!(res, Err(HandshakeError::ConnectionNotUpgrade));
        assert_eq!(log.iter().filter(|c| c.passed).count(), 4);
        assert!(!log.last().unwrap().passed);
        let (res, log) = check_upgrade(&parse(RFC_REQUEST));
        assert!(res.is_ok());
        assert_eq!(log.len(), 8);
        assert!(log.iter().all(|c| c.passed));
    }

    #[test]
    fn extension_offers_are_parsed_and_a_malformed_header_is_400() {
        let req = with(
            "Sec-WebSocket-Version: 13\r\n",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nSec-WebSocket-Extensions: x-foo; a=\"1\"\r\n",
        );
        let up = validate_upgrade(&req).unwrap();
        assert_eq!(
            extensions::format_extensions(&up.extensions),
            "permessage-deflate; client_max_window_bits, x-foo; a=1"
        );
        let (_, log) = check_upgrade(&req);
        assert_eq!(log.len(), 9);
        let bad = with(
            "Sec-WebSocket-Version: 13\r\n",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; =\r\n",
        );
        assert_eq!(validate_upgrade(&bad), Err(HandshakeError::MalformedExtensions));
        assert_eq!(HandshakeError::MalformedExtensions.status(), 400);
    }

    /// Every status registered by RFC 9110 §15 (and RFC 6585's 428, 429, 431, 511) has its
    /// phrase: a client shows it, and "Unknown" on a 201 or 304 reads as a server bug.
    #[test]
    fn every_registered_status_has_its_reason_phrase() {
        let registered = [
            (100, "Continue"),
            (101, "Switching Protocols"),
            (200, "OK"),
            (201, "Created"),
            (202, "Accepted"),
            (203, "Non-Authoritative Information"),
            (204, "No Content"),
            (205, "Reset Content"),
            (206, "Partial Content"),
            (300, "Multiple Choices"),
            (301, "Moved Permanently"),
            (302, "Found"),
            (303, "See Other"),
            (304, "Not Modified"),
            (305, "Use Proxy"),
            (307, "Temporary Redirect"),
            (308, "Permanent Redirect"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (402, "Payment Required"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (406, "Not Acceptable"),
            (407, "Proxy Authentication Required"),
            (408, "Request Timeout"),
            (409, "Conflict"),
            (410, "Gone"),
            (411, "Length Required"),
            (412, "Precondition Failed"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (415, "Unsupported Media Type"),
            (416, "Range Not Satisfiable"),
            (417, "Expectation Failed"),
            (421, "Misdirected Request"),
            (422, "Unprocessable Content"),
            (426, "Upgrade Required"),
            (428, "Precondition Required"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
            (505, "HTTP Version Not Supported"),
            (511, "Network Authentication Required"),
        ];
        for (status, phrase) in registered {
            assert_eq!(reason_phrase(status), phrase, "{status}");
        }
        assert_eq!(reason_phrase(299), "Unknown");
    }

    /// RFC 9110 §8.6, §15.2, §15.3.5, §15.4.5: no Content-Length and no body on 1xx and 204,
    /// no body on 304; other statuses keep both.
    #[test]
    fn bodiless_statuses_have_no_length_and_no_body() {
        for status in [100, 103, 204] {
            let out = String::from_utf8(http_response(status, &[], "", b"ignored", true)).unwrap();
            assert!(!out.contains("Content-Length"), "{out:?}");
            assert!(out.ends_with("\r\n\r\n"), "{out:?}");
        }
        let out = String::from_utf8(http_response(304, &[], "text/plain", b"ignored", true)).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 304 Not Modified\r\n") && out.ends_with("\r\n\r\n"),
            "{out:?}"
        );
        assert!(!out.contains("Content-Length"), "{out:?}");
        let out = String::from_utf8(http_response(200, &[], "", b"", true)).unwrap();
        assert!(
            out.contains("Content-Length: 0\r\n"),
            "an empty 200 still says so: {out:?}"
        );
        let out = String::from_utf8(http_response(201, &[], "text/plain", b"made", false)).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 201 Created\r\n")
                && out.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\nmade"),
            "{out:?}"
        );
    }
}
