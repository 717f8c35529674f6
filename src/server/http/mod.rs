//! The HTTP rules the server applies around the handler, on the same port as the WebSockets:
//! request body framing (RFC 9112 §6.3), the Origin policy shared by upgrades and HTTP
//! routes (RFC 6455 §10.2, RFC 6454), and CORS for the HTTP routes (Fetch standard).
//! Pure functions over a parsed [`Request`]; the session applies them.

pub mod host;

use crate::handshake::Request;

/// Which pages may open WebSockets and read HTTP responses cross-origin.
///
/// Browsers send `Origin` with every WebSocket upgrade and with cross-origin requests; other
/// clients usually send none and are always allowed (an Origin check protects browser users
/// from other sites' scripts, it is not authentication — RFC 6455 §10.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OriginPolicy {
    /// Only pages served by this server: the Origin's host and port must equal the `Host`
    /// header's (a `Host` without a port means the Origin scheme's default port). The default.
    #[default]
    SameOrigin,
    /// Any origin (`--allow-origin '*'`).
    Any,
    /// Exactly these origins, e.g. `https://app.example.com` (compared case-insensitively,
    /// `null` allowed only if listed).
    List(Vec<String>),
}

impl OriginPolicy {
    /// The policy for a list of `--allow-origin` values: empty → [`OriginPolicy::SameOrigin`],
    /// any `*` → [`OriginPolicy::Any`], otherwise the list.
    pub fn from_list(origins: Vec<String>) -> OriginPolicy {
        if origins.is_empty() {
            OriginPolicy::SameOrigin
        } else if origins.iter().any(|o| o == "*") {
            OriginPolicy::Any
        } else {
            OriginPolicy::List(origins)
        }
    }
}

/// What the Origin header of a request says under a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginVerdict<'a> {
    /// No Origin header: not a browser's cross-site request.
    Absent,
    /// An allowed origin.
    Allowed(&'a str),
    /// Refused: the reason, for the 403 body and the log.
    Refused(&'static str),
}

/// Applies `policy` to the request's Origin header. More than one Origin header, or one that
/// is not UTF-8, is refused whatever the policy (a browser sends exactly one).
pub fn check_origin<'a>(request: &'a Request, policy: &OriginPolicy) -> OriginVerdict<'a> {
    let mut values = request.header_values("origin");
    let Some(first) = values.next() else {
        return OriginVerdict::Absent;
    };
    if values.next().is_some() {
        return OriginVerdict::Refused("more than one Origin header");
    }
    let Ok(origin) = std::str::from_utf8(first) else {
        return OriginVerdict::Refused("Origin is not valid UTF-8");
    };
    let origin = origin.trim();
    match policy {
        OriginPolicy::Any => OriginVerdict::Allowed(origin),
        OriginPolicy::List(list) => {
            if list.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
                OriginVerdict::Allowed(origin)
            } else {
                OriginVerdict::Refused("origin not in --allow-origin")
            }
        }
        OriginPolicy::SameOrigin => {
            let host = request
                .header_values("host")
                .next()
                .and_then(|h| std::str::from_utf8(h).ok());
            match (parse_origin(origin), host) {
                (Some((scheme, authority)), Some(host)) if same_authority(scheme, authority, host.trim()) => {
                    OriginVerdict::Allowed(origin)
                }
                _ => OriginVerdict::Refused(
                    "cross-origin request (the default policy is same-origin; see --allow-origin)",
                ),
            }
        }
    }
}

/// Splits `scheme://authority` (an origin has no path, RFC 6454 §6.2).
fn parse_origin(origin: &str) -> Option<(&str, &str)> {
    let (scheme, authority) = origin.split_once("://")?;
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    Some((scheme, authority))
}

fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Some("80"),
        "https" | "wss" => Some("443"),
        _ => None,
    }
}

/// `host[:port]` split at the port colon (IPv6 literals keep their brackets).
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((_, after)) => {
                let host_end = authority.len() - after.len();
                (authority.get(..host_end).unwrap_or(authority), after.strip_prefix(':'))
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    }
}

fn same_authority(scheme: &str, origin_authority: &str, host_header: &str) -> bool {
    let Some(default) = default_port(scheme) else {
        return false;
    };
    let (oh, op) = split_host_port(origin_authority);
    let (hh, hp) = split_host_port(host_header);
    oh.eq_ignore_ascii_case(hh) && op.unwrap_or(default) == hp.unwrap_or(default)
}

/// Why a request's body framing is refused (RFC 9112 §6.3): the status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// Content-Length values that differ, or one that is not a decimal number: 400.
    InvalidContentLength,
    /// Both Transfer-Encoding and Content-Length: 400 (a smuggling attempt behind a proxy).
    TransferEncodingWithLength,
    /// A Transfer-Encoding (chunked) body: 411, this server needs Content-Length.
    LengthRequired,
}

impl FramingError {
    /// The HTTP status to answer with.
    pub fn status(self) -> u16 {
        match self {
            FramingError::LengthRequired => 411,
            _ => 400,
        }
    }

    /// A one-line explanation for the response body.
    pub fn reason(self) -> &'static str {
        match self {
            FramingError::InvalidContentLength => "invalid or conflicting Content-Length (RFC 9112 §6.3)",
            FramingError::TransferEncodingWithLength => "Transfer-Encoding and Content-Length together (RFC 9112 §6.3)",
            FramingError::LengthRequired => "chunked request bodies are not accepted: send Content-Length",
        }
    }
}

/// The length of the request's body (RFC 9112 §6.3): 0 without framing headers. Every
/// Content-Length value (several headers, or a comma-separated list) must be the same decimal
/// number.
pub fn body_length(request: &Request) -> Result<u64, FramingError> {
    let has_te = request.header_values("transfer-encoding").next().is_some();
    let mut length: Option<u64> = None;
    for value in request.header_values("content-length") {
        let text = std::str::from_utf8(value).map_err(|_| FramingError::InvalidContentLength)?;
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() || item.len() > 19 || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FramingError::InvalidContentLength);
            }
            let n: u64 = item.parse().map_err(|_| FramingError::InvalidContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(FramingError::InvalidContentLength);
            }
            length = Some(n);
        }
    }
    match (has_te, length) {
        (true, Some(_)) => Err(FramingError::TransferEncodingWithLength),
        (true, None) => Err(FramingError::LengthRequired),
        (false, n) => Ok(n.unwrap_or(0)),
    }
}

/// Whether the client wants the connection kept open after this request (RFC 9112 §9.3).
pub fn wants_keep_alive(request: &Request) -> bool {
    if request.has_token("connection", "close") {
        return false;
    }
    request.version_minor() >= 1 || request.has_token("connection", "keep-alive")
}

/// A CORS preflight (RFC: Fetch §3.2.2): `OPTIONS` with `Access-Control-Request-Method`.
pub fn is_preflight(request: &Request) -> bool {
    request.method() == "OPTIONS" && request.header("access-control-request-method").is_some()
}

/// Whether the method may change state (everything but GET, HEAD, OPTIONS): such requests
/// from a refused origin are answered 403 without reaching the handler, so a cross-site form
/// cannot trigger them.
pub fn is_unsafe_method(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// Headers answering a preflight from an allowed origin.
pub fn preflight_headers(request: &Request, origin: &str) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Access-Control-Allow-Origin".to_owned(), origin.to_owned()),
        (
            "Access-Control-Allow-Methods".to_owned(),
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS".to_owned(),
        ),
        ("Access-Control-Max-Age".to_owned(), "600".to_owned()),
        ("Vary".to_owned(), "Origin".to_owned()),
    ];
    if let Some(asked) = request
        .header_str("access-control-request-headers")
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(&b)))
    {
        headers.push(("Access-Control-Allow-Headers".to_owned(), asked.to_owned()));
    }
    headers
}

/// The first value of `key` in a query string (`a=1&b=two%20words`), decoded as an HTML form
/// encodes it (`+` is a space, then percent-decoding: [`form_decode`]); `None` if absent or
/// not UTF-8 once decoded.
///
/// ```
/// use wsloop::server::http::query_value;
/// assert_eq!(query_value(Some("room=caf%C3%A9&name=a+b"), "room").as_deref(), Some("café"));
/// assert_eq!(query_value(Some("room=caf%C3%A9&name=a+b"), "name").as_deref(), Some("a b"));
/// assert_eq!(query_value(Some("room=x"), "name"), None);
/// ```
pub fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    let pair = query?.split('&').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (form_decode(k).as_deref() == Some(key)).then_some(v)
    })?;
    form_decode(pair)
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); `None` for a bad escape or non-UTF-8. A `+` stays a
/// `+`: it means a space only in form-encoded query strings ([`form_decode`]), so a path such
/// as `/files/a+b` names `a+b` (RFC 3986 §3.3).
///
/// ```
/// use wsloop::server::http::percent_decode;
/// assert_eq!(percent_decode("/files/a+b%20c").as_deref(), Some("/files/a+b c"));
/// ```
pub fn percent_decode(s: &str) -> Option<String> {
    decode(s, false)
}

/// Decodes one name or value of an `application/x-www-form-urlencoded` query string (WHATWG
/// URL §5.1): `+` is a space, then `%XX` escapes as [`percent_decode`].
pub fn form_decode(s: &str) -> Option<String> {
    decode(s, true)
}

fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                // Two hex digits exactly: `from_str_radix` alone would take `%+1` as 0x01.
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(head: &str) -> Request {
        let text = format!("{head}\r\n\r\n");
        Request::parse(text.as_bytes(), 64).unwrap()
    }

    fn raw(head: &[u8]) -> Request {
        let mut v = head.to_vec();
        v.extend_from_slice(b"\r\n\r\n");
        Request::parse(&v, 64).unwrap()
    }

    #[test]
    fn content_length_rules_of_rfc_9112() {
        let ok = |h: &str| body_length(&req(&format!("POST / HTTP/1.1\r\nHost: x{h}")));
        assert_eq!(ok(""), Ok(0));
        assert_eq!(ok("\r\nContent-Length: 5"), Ok(5));
        assert_eq!(ok("\r\nContent-Length: 5\r\nContent-Length: 5"), Ok(5));
        assert_eq!(ok("\r\nContent-Length: 5, 5"), Ok(5));
        for bad in [
            "\r\nContent-Length: 5\r\nContent-Length: 6",
            "\r\nContent-Length: 5, 6",
            "\r\nContent-Length: -1",
            "\r\nContent-Length: +5",
            "\r\nContent-Length: 0x10",
            "\r\nContent-Length: ",
            "\r\nContent-Length: 99999999999999999999999",
        ] {
            assert_eq!(ok(bad), Err(FramingError::InvalidContentLength), "{bad:?}");
        }
        assert_eq!(
            body_length(&raw(b"POST / HTTP/1.1\r\nContent-Length: 5\xff")),
            Err(FramingError::InvalidContentLength)
        );
        assert_eq!(
            ok("\r\nTransfer-Encoding: chunked\r\nContent-Length: 5"),
            Err(FramingError::TransferEncodingWithLength)
        );
        assert_eq!(ok("\r\nTransfer-Encoding: chunked"), Err(FramingError::LengthRequired));
        assert_eq!(FramingError::LengthRequired.status(), 411);
        assert_eq!(FramingError::TransferEncodingWithLength.status(), 400);
    }

    #[test]
    fn same_origin_compares_host_and_port() {
        let check = |origin: &str, host: &str| {
            let r = req(&format!("GET / HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}"));
            matches!(check_origin(&r, &OriginPolicy::SameOrigin), OriginVerdict::Allowed(_))
        };
        assert!(check("http://127.0.0.1:3000", "127.0.0.1:3000"));
        assert!(check("http://LOCALHOST:3000", "localhost:3000"));
        assert!(check("http://example.com", "example.com"));
        assert!(check("https://example.com", "example.com"));
        assert!(check("http://example.com:80", "example.com"));
        assert!(check("http://[::1]:3000", "[::1]:3000"));
        assert!(!check("http://evil.example:3000", "127.0.0.1:3000"));
        assert!(!check("http://127.0.0.1:3001", "127.0.0.1:3000"));
        assert!(!check("http://localhost:3000", "127.0.0.1:3000"));
        assert!(!check("null", "127.0.0.1:3000"));
        assert!(!check("http://127.0.0.1:3000/path", "127.0.0.1:3000"));
        assert!(!check("http://user@127.0.0.1:3000", "127.0.0.1:3000"));
        assert!(!check("file://", "127.0.0.1:3000"));
    }

    #[test]
    fn duplicate_or_invalid_origin_is_refused_under_every_policy() {
        let two = req("GET / HTTP/1.1\r\nHost: a\r\nOrigin: http://good\r\nOrigin: http://evil");
        let bad = raw(b"GET / HTTP/1.1\r\nHost: a\r\nOrigin: http://good\xff");
        for policy in [
            OriginPolicy::SameOrigin,
            OriginPolicy::Any,
            OriginPolicy::List(vec!["http://good".into()]),
        ] {
            assert!(
                matches!(check_origin(&two, &policy), OriginVerdict::Refused(_)),
                "{policy:?}"
            );
            assert!(
                matches!(check_origin(&bad, &policy), OriginVerdict::Refused(_)),
                "{policy:?}"
            );
        }
        let none = req("GET / HTTP/1.1\r\nHost: a");
        assert_eq!(check_origin(&none, &OriginPolicy::SameOrigin), OriginVerdict::Absent);
        let listed = req("GET / HTTP/1.1\r\nHost: a\r\nOrigin: HTTP://Good");
        let policy = OriginPolicy::from_list(vec!["http://good".into()]);
        assert_eq!(check_origin(&listed, &policy), OriginVerdict::Allowed("HTTP://Good"));
        assert_eq!(OriginPolicy::from_list(vec!["*".into()]), OriginPolicy::Any);
        assert_eq!(OriginPolicy::from_list(vec![]), OriginPolicy::SameOrigin);
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(query_value(Some("a=1&b=x%2By+z"), "b").as_deref(), Some("x+y z"));
        assert_eq!(query_value(Some("a&b=2"), "a").as_deref(), Some(""));
        assert_eq!(query_value(Some("b=%zz"), "b"), None);
        assert_eq!(query_value(Some("b=%f"), "b"), None);
        assert_eq!(query_value(Some("b=%ff"), "b"), None, "not UTF-8");
        assert_eq!(query_value(Some("b=%e2%82%ac"), "b").as_deref(), Some("€"));
        assert_eq!(query_value(None, "b"), None);
    }

    #[test]
    fn preflight_and_method_classes() {
        let pre = req("OPTIONS /rooms/a/messages HTTP/1.1\r\nHost: a\r\nOrigin: http://x\r\n\
Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type");
        assert!(is_preflight(&pre));
        let h = preflight_headers(&pre, "http://x");
        assert!(h.contains(&("Access-Control-Allow-Headers".into(), "content-type".into())));
        let evil = req(
            "OPTIONS / HTTP/1.1\r\nHost: a\r\nAccess-Control-Request-Method: POST\r\n\
Access-Control-Request-Headers: x;injected=1",
        );
        assert!(!preflight_headers(&evil, "o")
            .iter()
            .any(|(n, _)| n == "Access-Control-Allow-Headers"));
        assert!(!is_preflight(&req("OPTIONS / HTTP/1.1\r\nHost: a")));
        assert!(is_unsafe_method("POST") && is_unsafe_method("DELETE"));
        assert!(!is_unsafe_method("GET") && !is_unsafe_method("HEAD"));
        assert!(wants_keep_alive(&req("GET / HTTP/1.1\r\nHost: a")));
        assert!(!wants_keep_alive(&req(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close"
        )));
        assert!(!wants_keep_alive(&req("GET / HTTP/1.0")));
    }

    /// `+` is a space only in form-encoded query strings (WHATWG URL §5.1); in a path it is
    /// itself (RFC 3986 §2.1, §3.3), so `/files/a+b` names `a+b`.
    #[test]
    fn percent_decoding_leaves_plus_alone_and_query_values_read_it_as_space() {
        assert_eq!(percent_decode("/files/a+b%20c").as_deref(), Some("/files/a+b c"));
        assert_eq!(percent_decode("%2B+").as_deref(), Some("++"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(form_decode("a+b%2B").as_deref(), Some("a b+"));
        assert_eq!(percent_decode("%+1"), None, "a sign is not a hex digit");
        assert_eq!(query_value(Some("q=a+b%2Bc"), "q").as_deref(), Some("a b+c"));
        assert_eq!(query_value(Some("a+b=1"), "a b").as_deref(), Some("1"));
    }
}
