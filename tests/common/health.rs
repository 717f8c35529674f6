//! Asking a running server how it is: `/health` and `/metrics` over plain HTTP.
#![allow(dead_code)]

use super::process::{raw_exchange, status_of};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// GET /health on a fresh connection: (status, time, memory_used).
pub fn health_once(addr: SocketAddr) -> (Option<u16>, Duration, Option<u64>) {
    let t = Instant::now();
    let got = raw_exchange(
        addr,
        b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    (
        status_of(&got),
        t.elapsed(),
        json_number(&String::from_utf8_lossy(&got), "memory_used"),
    )
}

/// What `/health` did while it was polled.
#[derive(Debug, Default)]
pub struct HealthReport {
    pub polls: u64,
    /// Answers other than 200 (or none).
    pub failures: u64,
    pub worst: Duration,
    /// The largest `memory_used` it reported.
    pub max_memory_used: u64,
}

/// Polls `/health` on fresh connections, pausing `every` between polls, until `stop`.
pub fn watch_health(addr: SocketAddr, every: Duration, stop: Arc<AtomicBool>) -> JoinHandle<HealthReport> {
    std::thread::spawn(move || {
        let mut r = HealthReport::default();
        while !stop.load(Ordering::Relaxed) {
            let (status, took, used) = health_once(addr);
            r.polls += 1;
            if status != Some(200) {
                r.failures += 1;
            }
            r.worst = r.worst.max(took);
            r.max_memory_used = r.max_memory_used.max(used.unwrap_or(0));
            std::thread::sleep(every);
        }
        r
    })
}
