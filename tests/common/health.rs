//! Asking a running server how it is: `/health` and `/metrics` over plain HTTP.
#![allow(dead_code)]

use std::net::SocketAddr;

/// The body of `GET path` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> String {
    super::http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .2
}

/// A number field of a flat JSON object.
pub fn json_number(json: &str, key: &str) -> Option<u64> {
    let start = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = json.get(start..)?.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `memory_used` from `/health` (0 if it is not there).
pub fn memory_used(addr: SocketAddr) -> u64 {
    json_number(&get(addr, "/health"), "memory_used").unwrap_or(0)
}

/// A gauge or counter of `/metrics` (`None` if the server has no such line).
pub fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    get(addr, "/metrics").lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}
