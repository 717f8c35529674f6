//! WebSocket URIs (RFC 6455 §3): `ws://host[:port]/path?query`, parsed by hand.
//!
//! Why not the `url` crate: it implements the WHATWG URL Standard, which rewrites what it is
//! given (`/a/../b` becomes `/b`, `\` becomes `/` for `ws:`, host names go through IDNA) and
//! brings Unicode tables with it. RFC 6455 §3 needs a small, exact subset of RFC 3986: a scheme,
//! a host (a name, an IPv4 address or a bracketed IPv6 literal), an optional port, and a path
//! and query that go on the request line *as written*. A hundred lines here keep the resource
//! name byte for byte, percent-encoding included, and add no dependency.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The port a `ws:` URI means when it names none (RFC 6455 §3).
pub const DEFAULT_WS_PORT: u16 = 80;
/// The port a `wss:` URI means when it names none (RFC 6455 §3).
pub const DEFAULT_WSS_PORT: u16 = 443;

/// A URI that is not a usable WebSocket URI (RFC 6455 §3; RFC 6455 §4.1 item 1: the client
/// "MUST _Fail the WebSocket Connection_" when a component is invalid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// The scheme is not `ws` or `wss` (case-insensitive), or there is no `scheme://`.
    Scheme(String),
    /// Nothing between `//` and the path.
    EmptyHost,
    /// The host is neither a DNS name, an IPv4 address nor a bracketed IPv6 literal.
    Host(String),
    /// The port is not a decimal number in 1..=65535.
    Port(String),
    /// `user:password@` before the host: RFC 6455 §3's URI has no userinfo.
    UserInfo,
    /// A `#fragment`: "Fragment identifiers ... MUST NOT be used on these URIs" (RFC 6455 §3).
    Fragment,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme(s) => write!(f, "{s:?} is not a ws:// or wss:// URL (RFC 6455 §3)"),
            UrlError::EmptyHost => f.write_str("the URL has no host (RFC 6455 §3)"),
            UrlError::Host(h) => write!(
                f,
                "host {h:?} is not a DNS name, an IPv4 address or a bracketed IPv6 address such as [::1] (RFC 3986 §3.2.2)"
            ),
            UrlError::Port(p) => write!(f, "port {p:?} is not a number from 1 to 65535 (RFC 3986 §3.2.3)"),
            UrlError::UserInfo => f.write_str(
                "user:password@ is not part of a WebSocket URL (RFC 6455 §3); send credentials in a header, e.g. Authorization",
            ),
            UrlError::Fragment => f.write_str("a WebSocket URL must not have a #fragment; write # as %23 (RFC 6455 §3)"),
        }
    }
}

impl std::error::Error for UrlError {}

/// The host part of a WebSocket URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, lower-cased (RFC 3986 §3.2.2: case-insensitive).
    Name(String),
    /// An IP address, v4 or v6.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    /// As it appears in a URI or a Host header: an IPv6 address in brackets (RFC 3986 §3.2.2).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
        }
    }
}

/// A parsed WebSocket URI: /host/, /port/, /resource name/ and the /secure/ flag of RFC 6455
/// §3, the four things the opening handshake needs (RFC 6455 §4.1).
///
/// ```
/// use wsloop::client::WsUrl;
///
/// let url: WsUrl = "ws://[::1]:9001/chat?room=a%20b".parse().unwrap();
/// assert_eq!(url.port(), 9001);
/// assert_eq!(url.host_header(), "[::1]:9001");
/// assert_eq!(url.resource_name(), "/chat?room=a%20b");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    secure: bool,
    host: Host,
    port: u16,
    resource: String,
}

impl WsUrl {
    /// Parses `ws://...` or `wss://...` (RFC 6455 §3). The path and query are kept as written
    /// (percent-escapes are not decoded); characters that may not appear in them unescaped —
    /// spaces, control characters, non-ASCII — are percent-encoded as UTF-8, so nothing the
    /// caller passes can break the request line.
    pub fn parse(input: &str) -> Result<WsUrl, UrlError> {
        let (scheme, rest) = input
            .split_once("://")
            .ok_or_else(|| UrlError::Scheme(input.to_owned()))?;
        let secure = if scheme.eq_ignore_ascii_case("ws") {
            false
        } else if scheme.eq_ignore_ascii_case("wss") {
            true
        } else {
            return Err(UrlError::Scheme(scheme.to_owned()));
        };
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = parse_authority(authority)?;
        let port = port.unwrap_or(if secure { DEFAULT_WSS_PORT } else { DEFAULT_WS_PORT });
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        let mut resource = String::with_capacity(tail.len() + 1);
        if path.is_empty() {
            resource.push('/');
        }
        push_encoded(&mut resource, path);
        if !query.is_empty() {
            resource.push('?');
            push_encoded(&mut resource, query);
        }
        Ok(WsUrl {
            secure,
            host,
            port,
            resource,
        })
    }

    /// The /secure/ flag: the scheme is `wss` (RFC 6455 §3).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port, the scheme's default when the URI names none (RFC 6455 §3).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port this URI's scheme implies: 80 for `ws`, 443 for `wss`.
    pub fn default_port(&self) -> u16 {
        if self.secure {
            DEFAULT_WSS_PORT
        } else {
            DEFAULT_WS_PORT
        }
    }

    /// The /resource name/ for the request line: the path (`/` if empty), then `?query` if the
    /// query is non-empty (RFC 6455 §3).
    pub fn resource_name(&self) -> &str {
        &self.resource
    }

    /// The `Host` header value: the host, plus `:port` when the port is not the scheme's default
    /// (RFC 6455 §4.1 item 4); IPv6 addresses in brackets.
    pub fn host_header(&self) -> String {
        if self.port == self.default_port() {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for WsUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<WsUrl, UrlError> {
        WsUrl::parse(s)
    }
}

impl fmt::Display for WsUrl {
    /// The URI in normal form: lower-case scheme and host, the port only when not the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.resource)
    }
}

/// `host [":" port]` (RFC 3986 §3.2.2, §3.2.3). An empty port means the default.
fn parse_authority(authority: &str) -> Result<(Host, Option<u16>), UrlError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (literal, after) = v6.split_once(']').ok_or_else(|| UrlError::Host(authority.to_owned()))?;
        // A zone ID (`%25eth0`, RFC 6874) parses as no Ipv6Addr, and is refused with the rest.
        let addr: Ipv6Addr = literal.parse().map_err(|_| UrlError::Host(authority.to_owned()))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| UrlError::Host(authority.to_owned()))?,
            ),
        };
        (Host::Ip(IpAddr::V6(addr)), port)
    } else {
        let (name, port) = match authority.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (authority, None),
        };
        if name.is_empty() {
            return Err(UrlError::EmptyHost);
        }
        let valid = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return Err(UrlError::Host(name.to_owned()));
        }
        let host = match name.parse::<Ipv4Addr>() {
            Ok(a) => Host::Ip(IpAddr::V4(a)),
            Err(_) => Host::Name(name.to_ascii_lowercase()),
        };
        (host, port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, UrlError> {
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::Port(p.to_owned()));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::Port(p.to_owned())),
        Ok(n) => Ok(n),
    }
}

/// Appends `s`, percent-encoding every byte that RFC 3986 does not allow unescaped in a path or
/// query (`pchar`, `/`, `?`); `%` is kept, so escapes already present stay as they are.
fn push_encoded(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'?'
                    | b'%'
            );
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> WsUrl {
        WsUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn default_ports_and_resource_names() {
        let u = url("ws://example.com");
        assert_eq!(
            (u.port(), u.resource_name(), u.host_header()),
            (80, "/", "example.com".into())
        );
        assert!(!u.is_secure());
        let u = url("wss://Example.COM/chat");
        assert_eq!(
            (u.port(), u.resource_name(), u.host_header()),
            (443, "/chat", "example.com".into())
        );
        assert!(u.is_secure());
        // The default port named explicitly is left out of Host (RFC 6455 §4.1 item 4).
        assert_eq!(url("ws://example.com:80/").host_header(), "example.com");
        assert_eq!(url("ws://example.com:/x").port(), 80);
        assert_eq!(url("wss://h:80/").host_header(), "h:80");
        assert_eq!(url("WS://h:9001").to_string(), "ws://h:9001/");
    }

    #[test]
    fn ipv6_and_ipv4_literals() {
        let u = url("ws://[::1]:9001/");
        assert_eq!(u.host(), &Host::Ip("::1".parse().unwrap()));
        assert_eq!((u.port(), u.host_header()), (9001, "[::1]:9001".into()));
        assert_eq!(url("ws://[::1]/").host_header(), "[::1]");
        assert_eq!(url("ws://[2001:DB8::1]").host_header(), "[2001:db8::1]");
        assert_eq!(
            url("ws://127.0.0.1:3000/echo").host(),
            &Host::Ip("127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn percent_encoding_is_preserved_and_unsafe_bytes_are_encoded() {
        assert_eq!(url("ws://h/a%20b?x=%2F&y").resource_name(), "/a%20b?x=%2F&y");
        assert_eq!(url("ws://h?q=1").resource_name(), "/?q=1");
        // An empty query adds no "?" (RFC 6455 §3).
        assert_eq!(url("ws://h/p?").resource_name(), "/p");
        assert_eq!(url("ws://h/a b").resource_name(), "/a%20b");
        assert_eq!(url("ws://h/é?n=José").resource_name(), "/%C3%A9?n=Jos%C3%A9");
        // No header injection through the URL.
        assert_eq!(url("ws://h/x\r\nEvil: 1").resource_name(), "/x%0D%0AEvil:%201");
    }

    #[test]
    fn invalid_urls_name_the_problem() {
        let cases = [
            ("http://h/", UrlError::Scheme("http".into())),
            ("h:80/", UrlError::Scheme("h:80/".into())),
            ("ws:///x", UrlError::EmptyHost),
            ("ws://:80/", UrlError::EmptyHost),
            ("ws://h/#top", UrlError::Fragment),
            ("ws://u:p@h/", UrlError::UserInfo),
            ("ws://h:0/", UrlError::Port("0".into())),
            ("ws://h:65536/", UrlError::Port("65536".into())),
            ("ws://h:+1/", UrlError::Port("+1".into())),
            ("ws://[::1/", UrlError::Host("[::1".into())),
            ("ws://[::1]x/", UrlError::Host("[::1]x".into())),
            ("ws://[fe80::1%25eth0]/", UrlError::Host("[fe80::1%25eth0]".into())),
            ("ws://exa mple/", UrlError::Host("exa mple".into())),
            ("ws://bücher.de/", UrlError::Host("bücher.de".into())),
        ];
        for (input, err) in cases {
            assert_eq!(WsUrl::parse(input), Err(err), "{input}");
        }
    }
}
