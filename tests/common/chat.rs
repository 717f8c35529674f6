//! The demo chat from a test's side, shared by the tests that post to rooms and read `/chat`
//! members (tests/cluster.rs, tests/sse.rs).
#![allow(dead_code)]

use super::{http, Client};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use wsloop::protocol::OwnedEvent;

/// `POST /rooms/{room}/messages` with `text`; panics unless the demo answers 202.
pub fn post_message(addr: SocketAddr, room: &str, text: &str) {
    let req = format!(
        "POST /rooms/{room}/messages HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    );
    let (status, _, body) = http(addr, &req);
    assert_eq!(status, 202, "{body}");
}

/// The next text message of a WebSocket client, skipping pings and pongs; panics on anything
/// else.
pub fn next_text(c: &mut Client) -> String {
    loop {
        match c.next() {
            Some(OwnedEvent::Text(t)) => return t,
            Some(OwnedEvent::Ping(_) | OwnedEvent::Pong(_)) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// One thread per address in `pubs`, each posting numbered messages (`p{index}-{n}`) to room
/// `r` without pause until `stop`, then `p{index}-end`: the live traffic of the replay checks.
pub fn spawn_publishers(pubs: &[SocketAddr], stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    pubs.iter()
        .enumerate()
        .map(|(p, &addr)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    post_message(addr, "r", &format!("p{p}-{i}"));
                    i += 1;
                }
                post_message(addr, "r", &format!("p{p}-end"));
            })
        })
        .collect()
}
