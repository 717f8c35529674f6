//! The cost of pushing through a `ServerHandle` from another thread, against publishing the
//! same messages from inside `on_message` (issue 10): N small messages to 100 subscribers on
//! one event loop, deliveries per second of the loop thread's CPU time.
//!
//! `cargo bench --bench handle` (env: MESSAGES, default 1,000,000; SUBSCRIBERS, default 100;
//! WINDOW, default 2,000 messages in flight). Both runs use the same server and readers; the
//! publisher keeps at most WINDOW messages ahead of the slowest reader, so queues never pass
//! the server's limits and what is measured is sustained delivery.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wsloop::handshake::client::{ClientHandshake, ResponseStatus};
use wsloop::handshake::Request;
use wsloop::protocol::{Config, WebSocket};
use wsloop::server::{Accept, Context, DeflateMode, Handler, Message, RequestContext, Response, Server};

/// Subscribes `/sub` connections to "feed"; republishes every message a `/pub` connection
/// sends.
struct Feed;

impl Handler for Feed {
    type State = ();
    fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
        Ok(Accept::default())
    }
    fn on_open(&self, ctx: &mut Context<'_>) {
        if ctx.path() == "/sub" {
            ctx.subscribe("feed");
        }
    }
    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        ctx.publish("feed", message);
    }
}

const PAYLOAD: &[u8; 16] = b"0123456789abcdef";
/// An unmasked server frame of a 16-byte binary message.
const FRAME_LEN: u64 = 18;

fn upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    let hs = ClientHandshake::new(&[]);
    s.write_all(&hs.request(&addr.to_string(), path, &[])).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let ResponseStatus::Accepted { head_len, .. } = hs.parse_response(&buf).unwrap() {
            assert_eq!(head_len, buf.len(), "no frames expected yet");
            return s;
        }
    }
}

/// The CPU time (user + system) of this process's threads named `wsloop-*`.
fn loop_cpu() -> Duration {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("wsloop-") || comm.starts_with("wsloop-s") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let (u, s): (f64, f64) = (f[11].parse().unwrap(), f[12].parse().unwrap());
        total += (u + s) / tick;
    }
    Duration::from_secs_f64(total)
}

struct Readers {
    counts: Vec<Arc<AtomicU64>>,
}

impl Readers {
    fn start(addr: SocketAddr, n: usize) -> Readers {
        let mut counts = Vec::new();
        for _ in 0..n {
            let mut s = upgrade(addr, "/sub");
            let count = Arc::new(AtomicU64::new(0));
            let c = count.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut bytes = 0u64;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    bytes += n as u64;
                    c.store(bytes / FRAME_LEN, Ordering::Relaxed);
                }
            });
            counts.push(count);
        }
        Readers { counts }
    }

    fn slowest(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).min().unwrap_or(0)
    }
}

/// Runs `send(i)` for each message, keeping at most `window` ahead of the slowest reader;
/// returns (wall time, loop CPU time) until every reader has all `total` after `base`.
fn drive(readers: &Readers, base: u64, total: u64, window: u64, mut send: impl FnMut(u64)) -> (Duration, Duration) {
    let (t0, cpu0) = (Instant::now(), loop_cpu());
    for i in 0..total {
        while i >= window && readers.slowest() < base + i - window {
            std::hint::spin_loop();
        }
        send(i);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while readers.slowest() < base + total {
        assert!(Instant::now() < deadline, "readers stalled at {}", readers.slowest());
        std::thread::sleep(Duration::from_micros(200));
    }
    (t0.elapsed(), loop_cpu() - cpu0)
}

fn main() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let messages = env("MESSAGES", 1_000_000);
    let subscribers = env("SUBSCRIBERS", 100) as usize;
    let window = env("WINDOW", 2_000);
    let server = Server::new(Feed)
        .configure(|c| {
            c.bind = "127.0.0.1:0".parse().unwrap();
            c.threads = 1;
            c.deflate = DeflateMode::Off;
        })
        .start()
        .unwrap();
    let addr = server.local_addr();
    let readers = Readers::start(addr, subscribers);
    std::thread::sleep(Duration::from_millis(200));
    let deliveries = messages * subscribers as u64;

    // 1. From another thread, through the handle.
    let handle = server.handle();
    let (wall, cpu) = drive(&readers, 0, messages, window, |_| {
        handle.publish("feed", Message::Binary(PAYLOAD)).unwrap();
    });
    let handle_rate = deliveries as f64 / cpu.as_secs_f64();
    println!(
        "handle:     {messages} messages x {subscribers} subscribers in {:.2} s wall, {:.2} s loop CPU: {:.1} M deliveries per loop CPU-second",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        handle_rate / 1e6
    );

    // 2. From inside on_message: a /pub client sends the same messages.
    let mut publisher = upgrade(addr, "/pub");
    let mut ws = WebSocket::with_mask_seed(wsloop::Role::Client, Config::default(), 7);
    let mut frame = Vec::new();
    ws.send_binary(PAYLOAD, &mut frame).unwrap();
    let mut batch = Vec::new();
    let (wall, cpu) = drive(&readers, messages, messages, window, |i| {
        batch.extend_from_slice(&frame);
        if batch.len() >= 64 * frame.len() || i + 1 == messages || i % 256 == 255 {
            publisher.write_all(&batch).unwrap();
            batch.clear();
        }
    });
    let ctx_rate = deliveries as f64 / cpu.as_secs_f64();
    println!(
        "on_message: {messages} messages x {subscribers} subscribers in {:.2} s wall, {:.2} s loop CPU: {:.1} M deliveries per loop CPU-second",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        ctx_rate / 1e6
    );
    println!("handle / on_message: {:.2}", handle_rate / ctx_rate);
}
