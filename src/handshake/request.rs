//! Incremental HTTP/1.1 request-head parsing, shared by the WebSocket opening handshake
//! (RFC 6455 §4.2.1) and the plain HTTP routes that live on the same port.
//!
//! The caller accumulates the bytes it has read and calls [`RequestParser::parse`] after each
//! read. The parser remembers how far it has already looked for the blank line that ends the
//! head, so a request that trickles in byte by byte costs linear time, not quadratic; httparse
//! runs once, when the head is complete. Bytes after the blank line are not part of the request
//! (they may be the client's first WebSocket frame) and are left to the caller, who learns where
//! they start from [`ParseStatus::Complete`].

use super::HandshakeError;
use std::ops::Range;

/// Default cap on the bytes of a request head (request line + headers + blank line): 8 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8 * 1024;
/// Default cap on the number of header fields in a request.
pub const DEFAULT_MAX_HEADERS: usize = 64;

/// Limits on a request head; over either, the request is refused with 431.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Most bytes in the request line, headers and blank line together (default 8 KiB).
    pub max_header_bytes: usize,
    /// Most header fields (default 64).
    pub max_headers: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

/// Resumable parser state for one request head (RFC 6455 §4.2.1, RFC 9112 §2).
#[derive(Debug, Clone, Default)]
pub struct RequestParser {
    limits: RequestLimits,
    /// How many bytes of the caller's buffer have been searched for the end of the head.
    scanned: usize,
}

/// The outcome of [`RequestParser::parse`].
#[derive(Debug)]
pub enum ParseStatus {
    /// The head is not complete yet; call again with more bytes.
    Partial,
    /// The head is complete. It occupied `head_len` bytes; anything after that in the caller's
    /// buffer belongs to whatever follows (a body, or WebSocket frames).
    Complete {
        /// The parsed request.
        request: Request,
        /// Length of the head, blank line included.
        head_len: usize,
    },
}

impl RequestParser {
    /// A parser with the given limits.
    pub fn new(limits: RequestLimits) -> Self {
        RequestParser { limits, scanned: 0 }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> RequestLimits {
        self.limits
    }

    /// Parses the request head at the start of `buf`, which holds every byte received so far
    /// (previous calls' bytes included). Searches only the bytes not searched before.
    pub fn parse(&mut self, buf: &[u8]) -> Result<ParseStatus, HandshakeError> {
        // Back up three bytes in case "\r\n\r\n" straddles the previous end.
        let from = self.scanned.saturating_sub(3);
        let window = buf.get(from..).unwrap_or_default();
        let Some(pos) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
            self.scanned = buf.len();
            if buf.len() > self.limits.max_header_bytes {
                return Err(HandshakeError::HeadersTooLarge);
            }
            return Ok(ParseStatus::Partial);
        };
        let head_len = from + pos + 4;
        self.scanned = head_len;
        if head_len > self.limits.max_header_bytes {
            return Err(HandshakeError::HeadersTooLarge);
        }
        let head = buf.get(..head_len).unwrap_or_default();
        let request = Request::parse(head, self.limits.max_headers)?;
        Ok(ParseStatus::Complete { request, head_len })
    }
}

/// An HTTP request head, owned: one copy of the head bytes plus the ranges of each part, so
/// parsing allocates twice whatever the number of headers (RFC 9112 §2–§5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    head: Vec<u8>,
    method: Range<usize>,
    path: Range<usize>,
    /// The minor version of HTTP/1.x: 1 for HTTP/1.1, 0 for HTTP/1.0.
    version_minor: u8,
    headers: Vec<(Range<usize>, Range<usize>)>,
    body: Vec<u8>,
}

impl Request {
    /// Parses a complete request head (ending in the blank line).
    pub fn parse(head: &[u8], max_headers: usize) -> Result<Request, HandshakeError> {
        // Header slots on the stack for the usual limit; a larger limit goes to the heap.
        let mut on_stack = [httparse::EMPTY_HEADER; DEFAULT_MAX_HEADERS];
        let mut on_heap = Vec::new();
        let storage: &mut [httparse::Header<'_>] = match on_stack.get_mut(..max_headers) {
            Some(slots) => slots,
            None => {
                on_heap.resize(max_headers, httparse::EMPTY_HEADER);
                &mut on_heap
            }
        };
        let mut req = httparse::Request::new(storage);
        match req.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(HandshakeError::Malformed("incomplete request head")),
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
            Err(e) => return Err(HandshakeError::Malformed(httparse_reason(e))),
        }
        let base = head.as_ptr() as usize;
        let range_of = |s: &[u8]| {
            let start = (s.as_ptr() as usize).wrapping_sub(base);
            start..start + s.len()
        };
        let method = range_of(req.method.unwrap_or_default().as_bytes());
        let path = range_of(req.path.unwrap_or_default().as_bytes());
        let version_minor = req.version.unwrap_or(0);
        let headers = req
            .headers
            .iter()
            .map(|h| (range_of(h.name.as_bytes()), range_of(h.value)))
            .collect();
        Ok(Request {
            head: head.to_vec(),
            method,
            path,
            version_minor,
            headers,
            body: Vec::new(),
        })
    }

    fn slice(&self, r: &Range<usize>) -> &[u8] {
        self.head.get(r.clone()).unwrap_or_default()
    }

    fn str(&self, r: &Range<usize>) -> &str {
        // httparse only yields method, path and header names made of token/URI characters,
        // which are ASCII.
        std::str::from_utf8(self.slice(r)).unwrap_or_default()
    }

    /// The request method, e.g. `GET`.
    pub fn method(&self) -> &str {
        self.str(&self.method)
    }

    /// The request target as sent, e.g. `/chat?room=1`.
    pub fn target(&self) -> &str {
        self.str(&self.path)
    }

    /// The path part of the target, without the query string.
    pub fn path(&self) -> &str {
        let t = self.target();
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The query string, without the `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub fn version_minor(&self) -> u8 {
        self.version_minor
    }

    /// The raw head bytes, blank line included.
    pub fn head_bytes(&self) -> &[u8] {
        &self.head
    }

    /// Every header as (name, value), in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.headers.iter().map(|(n, v)| (self.str(n), self.slice(v)))
    }

    /// The value of the first header with this name (names compare case-insensitively,
    /// RFC 9110 §5.1).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        // As bytes: see `header_values`.
        self.headers
            .iter()
            .find(|(n, _)| self.slice(n).eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| self.slice(v))
    }

    /// The value of the first header with this name, as text; `None` if absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// All values of headers with this name.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        // Names compared as bytes: the same answer as comparing them as text (httparse admits
        // only ASCII token characters in a name), without a UTF-8 check of every name on
        // every lookup (a dozen lookups per upgrade).
        self.headers
            .iter()
            .filter(move |(n, _)| self.slice(n).eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| self.slice(v))
    }

    /// The comma-separated tokens of every header with this name, trimmed (RFC 9110 §5.6.1).
    pub fn header_tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.header_values(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// Whether some header with this name holds `token` in its comma-separated list, compared
    /// case-insensitively (RFC 6455 §4.2.1 items 3–4).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_values(name).any(|v| {
            if v.is_ascii() {
                // The usual value, pure ASCII: split and trimmed as bytes, with the same
                // answer as `header_tokens` (ASCII is UTF-8; `char::is_whitespace` is what
                // `str::trim` trims), without its UTF-8 check and `char` iteration per call.
                v.split(|&b| b == b',')
                    .map(trim_whitespace)
                    .any(|t| !t.is_empty() && t.eq_ignore_ascii_case(token.as_bytes()))
            } else {
                std::str::from_utf8(v).is_ok_and(|v| {
                    v.split(',')
                        .map(str::trim)
                        .any(|t| !t.is_empty() && t.eq_ignore_ascii_case(token))
                })
            }
        })
    }

    /// The request body. The server reads a body framed by `Content-Length` in full (up to its
    /// `max_body_size`, RFC 9112 §6.3) before the handler sees the request; empty without one.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body, for the server to fill.
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    /// Whether the client asks to switch protocols (it sent an `Upgrade` header), which is
    /// what sends a request to the WebSocket handshake instead of the HTTP routes.
    pub fn wants_upgrade(&self) -> bool {
        self.header("upgrade").is_some()
    }
}

/// `str::trim` for ASCII bytes: what `char::is_whitespace` calls white space (which, unlike
/// `u8::is_ascii_whitespace`, includes U+000B).
fn trim_whitespace(mut t: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = t {
        if !char::from(*first).is_whitespace() {
            break;
        }
        t = rest;
    }
    while let [rest @ .., last] = t {
        if !char::from(*last).is_whitespace() {
            break;
        }
        t = rest;
    }
    t
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in the request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn has_token_answers_as_the_token_list_does() {
        // `has_token` reads ASCII values as bytes; `header_tokens` (text, `str::trim`) is the
        // oracle, for values with and without non-ASCII bytes (RFC 9110 §5.6.1).
        let values: [&[u8]; 12] = [
            b"websocket",
            b"WebSocket",
            b"  websocket\t",
            b"h2c, websocket",
            b"h2c,,websocket,",
            b"web socket",
            b"websockets",
            b"x-websocket",
            b",",
            "\u{a0}websocket\u{a0}".as_bytes(),
            "h2c, websocket, caf\u{e9}".as_bytes(),
            b"websocket, \xff",
        ];
        for value in values {
            let mut head = b"GET / HTTP/1.1\r\nUpgrade: ".to_vec();
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n\r\n");
            let request = Request::parse(&head, 8).unwrap();
            for token in ["websocket", "h2c", "", "caf\u{e9}"] {
                let oracle = request.header_tokens("upgrade").any(|t| t.eq_ignore_ascii_case(token));
                assert_eq!(
                    request.has_token("UPGRADE", token),
                    oracle,
                    "{:?} for {token:?}",
                    String::from_utf8_lossy(value)
                );
            }
            assert!(request.header("uPgRaDe").is_some(), "name compared in any case");
            assert_eq!(request.header("upgrades"), None);
        }
    }

    #[test]
    fn byte_at_a_time_then_complete_with_trailing_frame_bytes() {
        let mut input = REQ.to_vec();
        input.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let mut p = RequestParser::default();
        for end in 1..REQ.len() {
            assert!(matches!(p.parse(&input[..end]), Ok(ParseStatus::Partial)), "at {end}");
        }
        match p.parse(&input) {
            Ok(ParseStatus::Complete { request, head_len }) => {
                assert_eq!(head_len, REQ.len());
                assert_eq!(&input[head_len..], &[0x81, 0x80, 1, 2, 3, 4]);
                assert_eq!(request.method(), "GET");
                assert_eq!(request.path(), "/chat");
                assert_eq!(request.query(), Some("x=1"));
                assert_eq!(request.version_minor(), 1);
                assert_eq!(request.header_str("HOST"), Some("server.example.com"));
                assert!(request.has_token("connection", "upgrade"));
                assert!(request.wants_upgrade());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversized_head_is_431_even_without_a_blank_line() {
        let mut p = RequestParser::new(RequestLimits {
            max_header_bytes: 64,
            max_headers: 8,
        });
        let big = [b'a'; 65];
        assert_eq!(p.parse(&big).unwrap_err(), HandshakeError::HeadersTooLarge);
        let mut p = RequestParser::new(RequestLimits {
            max_header_bytes: 64,
            max_headers: 8,
        });
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(60));
        assert_eq!(p.parse(long.as_bytes()).unwrap_err(), HandshakeError::HeadersTooLarge);
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut p = RequestParser::new(RequestLimits {
            max_header_bytes: 8192,
            max_headers: 2,
        });
        let r = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(p.parse(r).unwrap_err(), HandshakeError::TooManyHeaders);
    }

    #[test]
    fn garbage_is_400_malformed() {
        let mut p = RequestParser::default();
        let err = p.parse(b"\x01\x02 nonsense\r\n\r\n").unwrap_err();
        assert!(matches!(err, HandshakeError::Malformed(_)));
        assert_eq!(err.status(), 400);
    }
}
