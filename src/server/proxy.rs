//! The client's address behind a reverse proxy (issue 22, item 4): `--trust-proxy CIDR`.
//!
//! Sans-IO: [`Cidr`] parses and matches address ranges; [`forwarded_client`] reads a request's
//! `Forwarded` (RFC 7239) or `X-Forwarded-For` header. Nothing here touches a socket.
//!
//! Only a peer inside a trusted range may name the client: anyone else could write any address
//! into these headers (and escape the per-address limits by doing so), so from other peers they
//! are ignored. Each proxy appends the address it got the request from, so the list is read
//! from the right: the proxies we trust wrote the entries up to the first address that is not
//! theirs, and that address is the client's. What lies left of it was written by the client
//! and is not believed. When every entry is a trusted address, the leftmost is taken (the
//! farthest hop that was named).
//!
//! An entry that names no address (`unknown`, an obfuscated `_id`, RFC 7239 §6.2–§6.3) ends
//! the walk: the trusted proxy did not know who was behind it, so the client is not known and
//! the connection counts as the proxy's own address. A header that does not parse is ignored
//! as a whole (the caller logs it at debug): `Forwarded` is tried first, then
//! `X-Forwarded-For`.

use crate::handshake::Request;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An address range, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a range of one).
/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) match IPv4 ranges, as a dual-stack socket
/// reports IPv4 peers that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network, host bits cleared: an IPv4 network in the low 32 bits when `v4`.
    net: u128,
    prefix: u8,
    v4: bool,
}

/// Why a `--trust-proxy` value is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// Whether `ip` lies in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (bits, v4) = match normalize(ip) {
            IpAddr::V4(a) => (u128::from(u32::from(a)), true),
            IpAddr::V6(a) => (u128::from(a), false),
        };
        v4 == self.v4 && bits & mask(self.prefix, self.v4) == self.net
    }
}

/// The mask of a prefix, in the low 32 bits for IPv4.
fn mask(prefix: u8, v4: bool) -> u128 {
    let width: u32 = if v4 { 32 } else { 128 };
    let prefix = u32::from(prefix).min(width);
    let all = if v4 { u128::from(u32::MAX) } else { u128::MAX };
    match prefix {
        0 => 0,
        p if p >= width => all,
        p => all & !(all >> p),
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDRESS/PREFIX` or a bare address; host bits under the prefix are cleared
    /// (`10.1.2.3/8` is `10.0.0.0/8`).
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = |why: &str| {
            CidrError(format!(
                "{s:?} is not a CIDR range ({why}); expected e.g. 10.0.0.0/8 or 2001:db8::/32"
            ))
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| err("not an IP address"))?;
        let ip = normalize(ip);
        let (bits, v4, width) = match ip {
            IpAddr::V4(a) => (u128::from(u32::from(a)), true, 32u8),
            IpAddr::V6(a) => (u128::from(a), false, 128u8),
        };
        let prefix = match prefix {
            None => width,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                p.parse::<u8>().map_err(|_| err("bad prefix length"))?
            }
            Some(_) => return Err(err("bad prefix length")),
        };
        // An IPv4-mapped range written in IPv6 (`::ffff:10.0.0.0/104`) keeps its IPv4 part.
        let prefix = if v4 && addr.contains(':') {
            prefix
                .checked_sub(96)
                .ok_or_else(|| err("prefix too short for an IPv4-mapped range"))?
        } else {
            prefix
        };
        if prefix > width {
            return Err(err(if v4 { "prefix over 32" } else { "prefix over 128" }));
        }
        Ok(Cidr {
            net: bits & mask(prefix, v4),
            prefix,
            v4,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v4 {
            write!(f, "{}/{}", Ipv4Addr::from(self.net as u32), self.prefix)
        } else {
            write!(f, "{}/{}", Ipv6Addr::from(self.net), self.prefix)
        }
    }
}

/// Whether `ip` is in one of the ranges.
pub(crate) fn trusted(ranges: &[Cidr], ip: IpAddr) -> bool {
    ranges.iter().any(|c| c.contains(ip))
}

/// One hop a forwarding header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// An address, with the port when one was given (port 0 when not).
    Addr(SocketAddr),
    /// `unknown`, an obfuscated identifier, or an element without `for=`.
    Hidden,
}

/// A forwarding header that does not parse: which one, for the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// The client address a request from a trusted proxy names, if any. `Ok(None)`: no
/// forwarding header, or the hop behind the trusted ones is hidden. `Err`: a header that is
/// present does not parse and was ignored (a later one may still have answered: the result
/// is then `Ok`, and the malformed one is returned beside it for the log).
pub(crate) fn forwarded_client(request: &Request, trusted_ranges: &[Cidr]) -> (Option<SocketAddr>, Option<Malformed>) {
    let mut malformed = None;
    if request.header("forwarded").is_some() {
        match parse_forwarded(request.header_values("forwarded")) {
            Some(nodes) => return (pick(&nodes, trusted_ranges), None),
            None => malformed = Some(Malformed("Forwarded")),
        }
    }
    if request.header("x-forwarded-for").is_some() {
        match parse_xff(request.header_values("x-forwarded-for")) {
            Some(nodes) => return (pick(&nodes, trusted_ranges), malformed),
            None => malformed = malformed.or(Some(Malformed("X-Forwarded-For"))),
        }
    }
    (None, malformed)
}

/// The rightmost address not in a trusted range, walking from the right and stopping at a
/// hidden hop; the leftmost when all are trusted.
fn pick(nodes: &[Node], trusted_ranges: &[Cidr]) -> Option<SocketAddr> {
    let mut last = None;
    for node in nodes.iter().rev() {
        match *node {
            Node::Hidden => return None,
            Node::Addr(a) if trusted(trusted_ranges, a.ip()) => last = Some(a),
            Node::Addr(a) => return Some(a),
        }
    }
    last
}

/// Every header line's list, in order (RFC 9110 §5.3: lines of one field are one
/// comma-separated list). `None` if a line is not text.
fn lines<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<Vec<&'a str>> {
    values.map(|v| std::str::from_utf8(v).ok()).collect()
}

/// `X-Forwarded-For: client, proxy1, proxy2` (a de-facto format: addresses, some proxies add
/// a port or brackets; `unknown` for a hop they could not name).
fn parse_xff<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<Vec<Node>> {
    let mut nodes = Vec::new();
    for line in lines(values)? {
        for entry in line.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue; // RFC 9110 §5.6.1: empty list elements are ignored
            }
            if entry.eq_ignore_ascii_case("unknown") {
                nodes.push(Node::Hidden);
                continue;
            }
            nodes.push(Node::Addr(parse_addr(entry)?));
        }
    }
    (!nodes.is_empty()).then_some(nodes)
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:80`.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<Ipv6Addr>()
        .ok()
        .map(|ip| SocketAddr::new(IpAddr::V6(ip), 0))
}

/// `Forwarded` (RFC 7239 §4): elements separated by commas, each `pair *( ";" pair )` with
/// `pair = token "=" value`, `value = token / quoted-string`. Each element's `for=` names a
/// hop (§5.2, §6): an IPv4 address, a bracketed IPv6 address (which must be quoted), either
/// with an optional port, `unknown` or an obfuscated `_identifier`. `None` if it does not parse.
fn parse_forwarded<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<Vec<Node>> {
    let mut nodes = Vec::new();
    for line in lines(values)? {
        let mut rest = line;
        loop {
            let (element, more) = split_element(rest)?;
            if !element.trim().is_empty() {
                nodes.push(parse_element(element)?);
            }
            match more {
                Some(r) => rest = r,
                None => break,
            }
        }
    }
    (!nodes.is_empty()).then_some(nodes)
}

/// The text up to the next comma outside a quoted string, and what follows it.
fn split_element(s: &str) -> Option<(&str, Option<&str>)> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => return Some((s.get(..i)?, Some(s.get(i + 1..)?))),
            _ => {}
        }
    }
    if quoted {
        return None; // an unterminated quoted string
    }
    Some((s, None))
}

/// One element's hop: its `for=` (the first; a second is malformed), or hidden without one.
fn parse_element(element: &str) -> Option<Node> {
    let mut node = None;
    for pair in split_pairs(element)? {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return None;
        }
        let value = unquote(value)?;
        if name.eq_ignore_ascii_case("for") {
            if node.is_some() {
                return None; // RFC 7239 §4: a parameter must not occur twice in an element
            }
            node = Some(parse_node(&value)?);
        }
    }
    Some(node.unwrap_or(Node::Hidden))
}

/// Splits an element at semicolons outside quoted strings.
fn split_pairs(element: &str) -> Option<Vec<&str>> {
    let mut pairs = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in element.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                pairs.push(element.get(start..i)?);
                start = i + 1;
            }
            _ => {}
        }
    }
    pairs.push(element.get(start..)?);
    Some(pairs)
}

/// A token, or a quoted string with its escapes resolved (RFC 9110 §5.6.2, §5.6.4).
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return (!value.is_empty() && value.bytes().all(is_tchar)).then(|| value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// RFC 7239 §6: `nodename [ ":" node-port ]`.
fn parse_node(value: &str) -> Option<Node> {
    if value.eq_ignore_ascii_case("unknown") || value.starts_with('_') {
        return Some(Node::Hidden);
    }
    if let Some(v6) = value.strip_prefix('[') {
        let (ip, port) = v6.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        return Some(Node::Addr(SocketAddr::new(IpAddr::V6(ip), node_port(port)?)));
    }
    let (ip, port) = match value.find(':') {
        Some(i) => (value.get(..i)?, node_port(value.get(i..)?)?),
        None => (value, 0),
    };
    let ip: Ipv4Addr = ip.parse().ok()?;
    Some(Node::Addr(SocketAddr::new(IpAddr::V4(ip), port)))
}

/// `":" port` (a number) or `":" obfport` (`_...`, kept as 0), or nothing.
fn node_port(s: &str) -> Option<u16> {
    if s.is_empty() {
        return Some(0);
    }
    let port = s.strip_prefix(':')?;
    if port.starts_with('_') && port.len() > 1 {
        return Some(0);
    }
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        Request::parse(head.as_bytes(), 64).unwrap()
    }

    #[test]
    fn cidrs_parse_and_match_ipv4_and_ipv6() {
        let c = cidr("10.0.0.0/8");
        assert!(c.contains(ip("10.255.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped matches IPv4 ranges");
        assert_eq!(cidr("10.1.2.3/8"), c, "host bits are cleared");
        assert_eq!(c.to_string(), "10.0.0.0/8");
        let one = cidr("127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert_eq!(cidr("127.0.0.1"), one, "a bare address is a range of one");
        let v6 = cidr("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")), "families do not mix");
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(cidr("::1/128").contains(ip("::1")));
        assert_eq!(cidr("::ffff:10.0.0.0/104"), c, "an IPv4-mapped range is the IPv4 range");
    }

    #[test]
    fn bad_cidrs_are_refused_with_a_reason() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/8/8",
            "x/8",
            "10.0.0.0/-1",
            "10.0.0.0/ 8",
            "10.0.0.0/0008",
            "::ffff:10.0.0.0/90",
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(e.to_string().contains("not a CIDR range"), "{bad}: {e}");
        }
    }

    #[test]
    fn x_forwarded_for_gives_the_rightmost_untrusted_address() {
        let t = [cidr("127.0.0.1/32"), cidr("10.0.0.0/8")];
        let client = |v: &str| forwarded_client(&request(&[("X-Forwarded-For", v)]), &t);
        assert_eq!(client("203.0.113.7").0, Some("203.0.113.7:0".parse().unwrap()));
        // The client forged the first entry; the proxies appended the rest.
        assert_eq!(
            client("1.2.3.4, 198.51.100.1, 10.0.0.5").0,
            Some("198.51.100.1:0".parse().unwrap())
        );
        assert_eq!(
            client("10.0.0.9, 10.0.0.5").0,
            Some("10.0.0.9:0".parse().unwrap()),
            "all trusted: leftmost"
        );
        assert_eq!(client("[2001:db8::1]:80").0, Some("[2001:db8::1]:80".parse().unwrap()));
        assert_eq!(client("2001:db8::2").0, Some("[2001:db8::2]:0".parse().unwrap()));
        assert_eq!(client("1.2.3.4, unknown").0, None, "a hidden hop ends the walk");
        let (none, bad) = client("1.2.3.4, not-an-address");
        assert_eq!((none, bad), (None, Some(Malformed("X-Forwarded-For"))));
        // Two header lines are one list.
        let r = request(&[("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2, 10.0.0.1")]);
        assert_eq!(forwarded_client(&r, &t).0, Some("2.2.2.2:0".parse().unwrap()));
        assert_eq!(forwarded_client(&request(&[]), &t), (None, None));
    }

    #[test]
    fn forwarded_follows_rfc_7239() {
        let t = [cidr("127.0.0.0/8")];
        let client = |v: &str| forwarded_client(&request(&[("Forwarded", v)]), &t);
        // RFC 7239 §4 examples.
        assert_eq!(client("for=\"_gazonk\"").0, None);
        assert_eq!(
            client("For=\"[2001:db8:cafe::17]:4711\"").0,
            Some("[2001:db8:cafe::17]:4711".parse().unwrap())
        );
        assert_eq!(
            client("for=192.0.2.60;proto=http;by=203.0.113.43").0,
            Some("192.0.2.60:0".parse().unwrap())
        );
        assert_eq!(
            client("for=192.0.2.43, for=198.51.100.17").0,
            Some("198.51.100.17:0".parse().unwrap())
        );
        assert_eq!(
            client("for=192.0.2.43, for=\"127.0.0.1:9000\"").0,
            Some("192.0.2.43:0".parse().unwrap()),
            "a trusted hop is skipped"
        );
        assert_eq!(
            client("for=\"192.0.2.43:_port\"").0,
            Some("192.0.2.43:0".parse().unwrap())
        );
        assert_eq!(client("for=unknown").0, None);
        assert_eq!(client("by=1.2.3.4").0, None, "no for=: hidden");
        assert_eq!(
            client("proto=\"a,b\";for=192.0.2.1").0,
            Some("192.0.2.1:0".parse().unwrap())
        );
        for bad in [
            "for=[2001:db8::1]",         // IPv6 must be quoted (not a token)
            "for=192.0.2.43:80",         // so must a port
            "for=\"[2001:db8::1\"",      // no closing bracket
            "for=\"192.0.2.1",           // unterminated quote
            "for=192.0.2.1;for=1.1.1.1", // twice in one element
            "for=300.1.1.1",
            "for=192.0.2.1:99999",
            "for",
            "=1.2.3.4",
            "for=\"\"",
            "garbage garbage",
            ",,,",
        ] {
            let (got, malformed) = client(bad);
            assert_eq!((got, malformed), (None, Some(Malformed("Forwarded"))), "{bad}");
        }
    }

    #[test]
    fn a_malformed_forwarded_falls_back_to_x_forwarded_for() {
        let t = [cidr("127.0.0.1/32")];
        let r = request(&[("Forwarded", "for=\"nonsense"), ("X-Forwarded-For", "198.51.100.2")]);
        let (got, malformed) = forwarded_client(&r, &t);
        assert_eq!(got, Some("198.51.100.2:0".parse().unwrap()));
        assert_eq!(malformed, Some(Malformed("Forwarded")));
        // A valid Forwarded wins over X-Forwarded-For.
        let r = request(&[("Forwarded", "for=192.0.2.9"), ("X-Forwarded-For", "198.51.100.2")]);
        assert_eq!(forwarded_client(&r, &t).0, Some("192.0.2.9:0".parse().unwrap()));
    }

    #[test]
    fn a_hundred_thousand_forwarded_clients_stay_within_the_limiters_bound() {
        use crate::server::budget::MemoryBudget;
        use crate::server::limiter::{Limits, PerIp, ENTRY_BYTES};
        let t = [cidr("127.0.0.1/32")];
        let budget = MemoryBudget::new(1 << 30);
        let cap = 1024;
        let limits = Limits {
            connections: 20,
            rate: 10,
        };
        let Some(per_ip) = PerIp::new(limits, cap, budget.clone()) else {
            panic!("limits are on");
        };
        let mut admitted = 0;
        // Distinct clients through one trusted proxy, one upgrade each, all within 1 s: the
        // table fills with addresses inside their rate window, then refuses new ones (503)
        // rather than grow.
        for i in 0..100_000u32 {
            let [a, b, c, d] = (0x0a00_0000 + i).to_be_bytes();
            let r = request(&[("X-Forwarded-For", &format!("{a}.{b}.{c}.{d}"))]);
            let Some(client) = forwarded_client(&r, &t).0 else {
                panic!("no client in {i}");
            };
            if per_ip.admit(client.ip(), u64::from(i) / 100).is_ok() {
                admitted += 1;
                per_ip.release(client.ip());
            }
            assert!(per_ip.len() <= cap + 16, "{} entries after {i}", per_ip.len());
            assert!(budget.used() <= (cap + 16) * ENTRY_BYTES);
        }
        assert!(admitted >= cap, "the table was used: {admitted}");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let t = [cidr("0.0.0.0/0")];
        let samples = [
            "\"",
            "\\",
            "for=\"\\",
            "for=\"[\"",
            "for=\"[]:\"",
            "for=\"[::1]:\"",
            "[",
            "]",
            ";;;",
            "for=;",
            "for=1.2.3.4:",
            "for=\"[::1]x\"",
            "ünïcödé",
            "for=\"_\"",
            "for=_",
            "[::1",
            "1.2.3.4:",
        ];
        for s in samples {
            let head = format!("GET / HTTP/1.1\r\nForwarded: {s}\r\nX-Forwarded-For: {s}\r\n\r\n");
            if let Ok(r) = Request::parse(head.as_bytes(), 64) {
                let _ = forwarded_client(&r, &t);
            }
        }
    }
}
