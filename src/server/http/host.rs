//! The `Host` rule against DNS rebinding: a server bound to a loopback address answers only
//! requests addressed to a loopback name. A pure function over a parsed [`Request`]; the
//! session applies it to every request head, before any route, Origin check or upgrade.
//!
//! **The attack.** A page on `http://attacker.example:3000` makes its own name resolve to
//! 127.0.0.1 (a short DNS TTL, then a second answer). The browser still thinks it talks to
//! `attacker.example`, so its requests carry `Host: attacker.example:3000` and, being
//! same-origin to the page, `Origin: http://attacker.example:3000` — the same-origin check
//! passes (Host and Origin agree), and the page can post to rooms and open `/chat` on a server
//! its visitor runs on loopback (RFC 6454 §8.3 warns that the origin model relies on DNS).
//! What the attacker cannot do is make the browser send a `Host` it does not own: so a
//! loopback server refuses every `Host` that is not a loopback name. Vite and
//! webpack-dev-server (`allowedHosts`) do the same.
//!
//! **The status.** `421 Misdirected Request` (RFC 9110 §15.5.20): the request was directed at
//! a server that is not willing to produce an authoritative response for that target URI —
//! exactly the case, and it says "not here" rather than `403`'s "not you": nothing about the
//! resource or the client's rights is implied, and a client that reached us by a wrong name
//! may retry by the right one.
//!
//! **Not applied** when bound to a non-loopback address (`0.0.0.0`, a LAN or public address):
//! such a server is reached by names this rule cannot know (use a reverse proxy or
//! authentication there); the rule is for the server a developer runs on their own machine.

use crate::handshake::Request;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a request's `Host` was refused: the status to answer with and a one-line reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRefused {
    /// `421` for a name this server does not answer to, `400` for more than one `Host` or one
    /// that is not UTF-8 (RFC 9112 §3.2).
    pub status: u16,
    /// For the response body and the log.
    pub reason: &'static str,
}

/// Applies the rule: when `bind` is a loopback address, the request's `Host` must be a
/// loopback name or address — `localhost`, `*.localhost` (RFC 6761 §6.3), `127.0.0.0/8`,
/// `[::1]`, with or without a port — or one of `allowed` (`--allowed-host`): a name matched
/// case-insensitively and without its port, `.example.com` for that name and every name
/// under it, `*` for any `Host` at all. An HTTP/1.0 request without `Host` passes (not a
/// browser's: browsers always send one, and the rule is about browsers).
///
/// Whatever the bind, RFC 9112 §3.2 comes first: an HTTP/1.1 request with no `Host`, or any
/// request with more than one, gets `400`.
pub fn check_host(request: &Request, bind: IpAddr, allowed: &[String]) -> Result<(), HostRefused> {
    let mut values = request.header_values("host");
    let first = values.next();
    if values.next().is_some() {
        return Err(HostRefused {
            status: 400,
            reason: "more than one Host header (RFC 9112 §3.2)",
        });
    }
    let Some(first) = first else {
        if request.version_minor() >= 1 {
            return Err(HostRefused {
                status: 400,
                reason: "an HTTP/1.1 request must carry Host (RFC 9112 §3.2)",
            });
        }
        return Ok(());
    };
    if !is_loopback(bind) || allowed.iter().any(|a| a == "*") {
        return Ok(());
    }
    let Ok(host) = std::str::from_utf8(first) else {
        return Err(HostRefused {
            status: 400,
            reason: "Host is not valid UTF-8 (RFC 9112 §3.2)",
        });
    };
    if host_allowed(host.trim(), allowed) {
        Ok(())
    } else {
        Err(HostRefused {
            status: 421,
            reason: "this server is bound to loopback and answers only loopback names in Host \
                     (DNS rebinding); add names with --allowed-host",
        })
    }
}

/// Whether a `Host` value (`name[:port]`) names this loopback server: a loopback name or
/// address, or one of `allowed` (see [`check_host`]).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let Some(name) = host_name(host) else {
        return false;
    };
    is_loopback_name(name)
        || allowed.iter().any(|a| {
            let a = a.trim();
            match a.strip_prefix('.') {
                Some(domain) => {
                    name.eq_ignore_ascii_case(domain)
                        || name
                            .len()
                            .checked_sub(domain.len() + 1)
                            .and_then(|cut| name.get(cut..))
                            .and_then(|tail| tail.strip_prefix('.'))
                            .is_some_and(|tail| tail.eq_ignore_ascii_case(domain) && !domain.is_empty())
                }
                None => host_name(a).is_some_and(|a| a.eq_ignore_ascii_case(name)),
            }
        })
}

/// The name of a `Host` value without its port and without one trailing dot (`localhost.` is
/// `localhost`); an IPv6 literal keeps its brackets. `None` when it is not `host[:port]`.
fn host_name(host: &str) -> Option<&str> {
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        let (name, rest) = host.split_at(end + 1);
        (name, rest.strip_prefix(':').or(rest.is_empty().then_some("")))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, Some("")),
        }
    };
    let port = port?;
    if !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
        return None;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty()).then_some(name)
}

/// `localhost` and names under it (which RFC 6761 §6.3 reserves for loopback and browsers
/// resolve without DNS), IPv4 `127.0.0.0/8` and IPv6 `::1` (or `::ffff:127.x.y.z`) literals.
fn is_loopback_name(name: &str) -> bool {
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if name.len() > ".localhost".len() {
        let cut = name.len() - ".localhost".len();
        if name.get(cut..).is_some_and(|t| t.eq_ignore_ascii_case(".localhost")) {
            return true;
        }
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|a| is_loopback(IpAddr::V6(a)));
    }
    name.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// Loopback, counting an IPv4-mapped IPv6 loopback (`::ffff:127.0.0.1`) too.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(head: &str) -> Request {
        Request::parse(format!("{head}\r\n\r\n").as_bytes(), 64).unwrap()
    }

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn allowed(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn loopback_names_and_addresses_pass() {
        for host in [
            "localhost",
            "localhost:3000",
            "LocalHost:3000",
            "localhost.:3000",
            "app.localhost",
            "a.b.localhost:8080",
            "127.0.0.1",
            "127.0.0.1:3000",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:3000",
            "[0:0:0:0:0:0:0:1]:3000",
            "[::ffff:127.0.0.1]:3000",
        ] {
            assert!(host_allowed(host, &[]), "{host}");
        }
    }

    #[test]
    fn other_names_are_refused() {
        for host in [
            "attacker.example",
            "attacker.example:3000",
            "localhost.attacker.example",
            "notlocalhost",
            "xlocalhost:3000",
            ".localhost",
            "127.0.0.1.attacker.example",
            "128.0.0.1",
            "0.0.0.0:3000",
            "127.1",
            "192.168.1.10:3000",
            "[::2]:3000",
            "[::1",
            "[::1]x",
            "localhost:port",
            "localhost:123456",
            "",
            ":3000",
            "x",
        ] {
            assert!(!host_allowed(host, &[]), "{host:?}");
        }
    }

    #[test]
    fn allowed_hosts_add_names() {
        let list = allowed(&["dev.example.com", ".tunnel.example", "Box:9999"]);
        assert!(host_allowed("dev.example.com", &list));
        assert!(host_allowed("DEV.example.com:3000", &list));
        assert!(host_allowed("box", &list), "the port of an entry is ignored");
        assert!(host_allowed("tunnel.example", &list));
        assert!(host_allowed("a.tunnel.example:443", &list));
        assert!(host_allowed("a.b.TUNNEL.example", &list));
        assert!(!host_allowed("eviltunnel.example", &list));
        assert!(!host_allowed("dev.example.com.evil", &list));
        assert!(!host_allowed("other.example.com", &list));
        assert!(!host_allowed("anything", &allowed(&["."])));
        assert!(host_allowed("localhost", &list), "loopback names still pass");
    }

    #[test]
    fn the_rule_applies_only_to_loopback_binds() {
        let evil = req(
            "POST /rooms/a/messages HTTP/1.1\r\nHost: attacker.example:3000\r\nOrigin: http://attacker.example:3000",
        );
        let refused = check_host(&evil, LOOPBACK, &[]).unwrap_err();
        assert_eq!(refused.status, 421);
        assert_eq!(check_host(&evil, "::1".parse().unwrap(), &[]).unwrap_err().status, 421);
        assert_eq!(
            check_host(&evil, "127.0.0.2".parse().unwrap(), &[]).unwrap_err().status,
            421
        );
        assert_eq!(check_host(&evil, "0.0.0.0".parse().unwrap(), &[]), Ok(()));
        assert_eq!(check_host(&evil, "::".parse().unwrap(), &[]), Ok(()));
        assert_eq!(check_host(&evil, "192.168.1.10".parse().unwrap(), &[]), Ok(()));
        assert_eq!(check_host(&evil, LOOPBACK, &allowed(&["attacker.example"])), Ok(()));
        assert_eq!(check_host(&evil, LOOPBACK, &allowed(&["*"])), Ok(()));
        assert_eq!(
            check_host(&req("GET / HTTP/1.1\r\nHost: localhost:3000"), LOOPBACK, &[]),
            Ok(())
        );
    }

    #[test]
    fn absent_duplicate_and_invalid_hosts() {
        assert_eq!(check_host(&req("GET / HTTP/1.0"), LOOPBACK, &[]), Ok(()));
        // RFC 9112 §3.2, on any bind: HTTP/1.1 without Host is a 400.
        let public = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        for bind in [LOOPBACK, public] {
            assert_eq!(check_host(&req("GET / HTTP/1.1"), bind, &[]).unwrap_err().status, 400);
            assert_eq!(
                check_host(&req("GET / HTTP/1.1"), bind, &allowed(&["*"]))
                    .unwrap_err()
                    .status,
                400
            );
        }
        let two = req("GET / HTTP/1.1\r\nHost: localhost\r\nHost: attacker.example");
        assert_eq!(check_host(&two, LOOPBACK, &[]).unwrap_err().status, 400);
        let bad = Request::parse(b"GET / HTTP/1.1\r\nHost: local\xffhost\r\n\r\n", 64).unwrap();
        assert_eq!(check_host(&bad, LOOPBACK, &[]).unwrap_err().status, 400);
    }
}
