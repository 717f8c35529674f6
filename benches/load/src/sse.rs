//! Server-Sent Events (issue 23): the server's cost of a room's subscribers
//! when they listen over `GET /rooms/{room}/events` instead of a WebSocket.
//!
//! - `sse-idle`: server RSS per open, idle event stream (as `idle` does for
//!   WebSockets).
//! - `room`: one WebSocket sender in a demo `/chat` room and M receivers, as
//!   event streams (`--events PATH`) or as `/chat` WebSockets of the same room
//!   (without it). Each chat message is `m<seq> <filler>`; a receiver finds
//!   `"text":"m<seq>` in the JSON the demo sends (the `data:` of an event, or
//!   a WebSocket text message), and every receiver must get every message in
//!   order. At most K messages are outstanding, as in `broadcast`, so this is
//!   sustained fan-out, not queue growth.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};

use crate::bail;
use crate::error::{Error, Result};
use crate::net::{Net, Target};
use crate::report::{Report, fmt_opt, per};
use crate::stats::{Histogram, Timed, raise_nofile, status_bytes};
use crate::ws;

/// Event streams' tokens start here (the WebSockets' are their indexes).
const SSE_BASE: usize = 1 << 24;
const OPEN_LIMIT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_millis(500);
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// The digits of the sequence number in `m<seq>`.
const SEQ_DIGITS: usize = 8;

/// One event stream: the response head, then events separated by a blank line.
struct SseConn {
    stream: TcpStream,
    buf: Vec<u8>,
    head_done: bool,
    eof: bool,
}

impl SseConn {
    /// Connects (blocking, loopback), sends the request, and registers the
    /// socket for reading.
    fn open(net: &Net, path: &str, token: usize) -> Result<SseConn> {
        let t = &net.target;
        let mut std_stream = std::net::TcpStream::connect_timeout(&t.addr, net.connect_timeout)
            .map_err(|e| Error(format!("connect {}: {e}", t.addr)))?;
        let _ = std_stream.set_nodelay(true);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            t.host
        );
        std_stream
            .write_all(request.as_bytes())
            .map_err(|e| Error(format!("send request: {e}")))?;
        std_stream
            .set_nonblocking(true)
            .map_err(|e| Error(format!("nonblocking: {e}")))?;
        let mut stream = TcpStream::from_std(std_stream);
        net.poll
            .registry()
            .register(&mut stream, Token(token), Interest::READABLE)
            .map_err(|e| Error(format!("register: {e}")))?;
        Ok(SseConn {
            stream,
            buf: Vec::new(),
            head_done: false,
            eof: false,
        })
    }

    /// Reads what is there; calls `on_data` with each whole event's data
    /// (its `data:` lines joined by LF).
    fn drive(&mut self, on_data: &mut impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => bail!("read: {e}"),
            }
        }
        let mut at = 0;
        if !self.head_done {
            let Some(end) = find(&self.buf, b"\r\n\r\n") else {
                if self.eof {
                    bail!(
                        "closed before the response head: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    );
                }
                return Ok(());
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            if !head.starts_with("HTTP/1.1 200") || !head.to_ascii_lowercase().contains("text/event-stream") {
                bail!("not an event stream: {head:?}");
            }
            self.head_done = true;
            at = end + 4;
        }
        while let Some(len) = find(&self.buf[at..], b"\n\n") {
            let event = &self.buf[at..at + len];
            let mut data = Vec::new();
            for line in event.split(|&b| b == b'\n') {
                if let Some(d) = line.strip_prefix(b"data: ").or_else(|| line.strip_prefix(b"data:")) {
                    if !data.is_empty() {
                        data.push(b'\n');
                    }
                    data.extend_from_slice(d);
                }
            }
            if !data.is_empty() {
                on_data(&data)?;
            }
            at += len + 2;
        }
        self.buf.drain(..at);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The sequence number of a chat message `m<seq> ...` inside the demo's JSON.
fn seq_of(json: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"\"text\":\"m";
    let at = find(json, KEY)? + KEY.len();
    let digits = json.get(at..at + SEQ_DIGITS)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Opens `n` event streams on `path`, waits for every response head.
fn open_streams(net: &mut Net, path: &str, n: usize) -> Result<(Vec<SseConn>, Duration)> {
    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        conns.push(SseConn::open(net, path, SSE_BASE + i)?);
    }
    let deadline = Instant::now() + OPEN_LIMIT;
    while conns.iter().any(|c| !c.head_done) {
        if Instant::now() >= deadline {
            let missing = conns.iter().filter(|c| !c.head_done).count();
            bail!("{missing} of {n} event streams got no response head within {OPEN_LIMIT:?}");
        }
        net.poll.poll(&mut net.events, Some(Duration::from_millis(50)))?;
        let ready: Vec<usize> = net.events.iter().map(|e| e.token().0).collect();
        for t in ready {
            if let Some(c) = t.checked_sub(SSE_BASE).and_then(|i| conns.get_mut(i)) {
                c.drive(&mut |_| Ok(()))?;
            }
        }
    }
    Ok((conns, t0.elapsed()))
}

pub struct SseIdleOpts {
    pub target: Target,
    pub events_path: String,
    pub conns: usize,
    pub server_pid: u32,
    pub hold: Duration,
    pub connect_timeout: Duration,
}

/// Server RSS per open, idle event stream.
pub fn run_idle(o: &SseIdleOpts, report: &mut Report) -> Result<()> {
    if o.conns == 0 {
        bail!("-c must be at least 1");
    }
    let nofile = raise_nofile()?;
    if (nofile as usize) < o.conns + 64 {
        bail!("RLIMIT_NOFILE hard limit is {nofile}, too low for {} streams", o.conns);
    }
    let pid = o.server_pid;
    println!(
        "sse-idle: {} event streams on {}{} (server pid {pid}), hold {:.1} s",
        o.conns,
        o.target.addr,
        o.events_path,
        o.hold.as_secs_f64()
    );
    let mut net = Net::new(o.target.clone(), o.connect_timeout)?;
    // A few first, so one-time allocations (the room, its history) are not counted.
    let (warm, _) = open_streams(&mut net, &o.events_path, 50)?;
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = status_bytes(pid, "VmRSS")?;
    let (mut conns, open_time) =
        open_streams(&mut net, &o.events_path, o.conns).map_err(|e| Error(format!("opening: {e}")))?;
    let _ = warm;
    println!("  {} streams open in {:.3} s", o.conns, open_time.as_secs_f64());
    let hold_end = Instant::now() + o.hold;
    let mut samples: Vec<u64> = Vec::new();
    while Instant::now() < hold_end {
        net.poll.poll(&mut net.events, Some(Duration::from_millis(200)))?;
        let ready: Vec<usize> = net.events.iter().map(|e| e.token().0).collect();
        for t in ready {
            if let Some(c) = t.checked_sub(SSE_BASE).and_then(|i| conns.get_mut(i)) {
                c.drive(&mut |_| Ok(()))?;
            }
        }
        samples.push(status_bytes(pid, "VmRSS")?);
    }
    let rss_after = samples.last().copied().unwrap_or(rss_before);
    let closed = conns.iter().filter(|c| c.eof).count();
    if closed > 0 {
        bail!("{closed} of {} streams were closed by the server while idle", o.conns);
    }
    let per_conn = (rss_after as f64 - rss_before as f64) / o.conns as f64;
    println!(
        "  server RSS {} KiB -> {} KiB: {per_conn:.0} bytes per idle event stream; all {} still open",
        rss_before / 1024,
        rss_after / 1024,
        o.conns
    );
    report.str("mode", "sse-idle");
    report.int("connections", o.conns as u64);
    report.num("connect_seconds", open_time.as_secs_f64());
    report.int("rss_before", rss_before);
    report.int("rss_after", rss_after);
    report.num("bytes_per_conn", per_conn);
    Ok(())
}

pub struct RoomOpts {
    pub target: Target,
    /// Receivers as event streams on this path; None: as WebSockets on the URL.
    pub events_path: Option<String>,
    pub receivers: usize,
    pub size: usize,
    pub secs: Duration,
    pub warmup: Duration,
    pub window: usize,
    pub server_pid: Option<u32>,
    pub connect_timeout: Duration,
    pub stall: Duration,
}

struct Pending {
    sent: Instant,
    got: usize,
}

/// A room's fan-out to M receivers over event streams or WebSockets.
pub fn run_room(o: &RoomOpts, report: &mut Report) -> Result<()> {
    let m = o.receivers;
    if m == 0 || o.window == 0 {
        bail!("-m and --window must be at least 1");
    }
    if o.size < SEQ_DIGITS + 2 {
        bail!("-s must be at least {} bytes", SEQ_DIGITS + 2);
    }
    let nofile = raise_nofile()?;
    if (nofile as usize) < m + 64 {
        bail!("RLIMIT_NOFILE hard limit is {nofile}, too low for {m} receivers");
    }
    let via = if o.events_path.is_some() {
        "event streams"
    } else {
        "WebSockets"
    };
    println!(
        "room: 1 WebSocket sender on {}{} and {m} receivers over {via}, {} B chat messages, window {}, {:.1} s (warmup {:.1} s)",
        o.target.addr,
        o.target.path,
        o.size,
        o.window,
        o.secs.as_secs_f64(),
        o.warmup.as_secs_f64()
    );
    let mut net = Net::new(o.target.clone(), o.connect_timeout)?;
    // The sender is WebSocket 0; WebSocket receivers are 1..=m.
    let t_open = Instant::now();
    net.open(1, |_, _, _| Ok(()))?;
    let mut streams = Vec::new();
    match &o.events_path {
        Some(path) => streams = open_streams(&mut net, path, m)?.0,
        None => {
            net.open(m, |_, _, _| Ok(()))?;
        }
    }
    println!(
        "  {} connections open in {:.3} s",
        m + 1,
        t_open.elapsed().as_secs_f64()
    );
    // Join notices and the presence lists settle first.
    let mut last_msg = Instant::now();
    let quiet_start = Instant::now();
    while last_msg.elapsed() < QUIET && quiet_start.elapsed() < Duration::from_secs(20) {
        net.poll.poll(&mut net.events, Some(Duration::from_millis(50)))?;
        let ready: Vec<usize> = net.events.iter().map(|e| e.token().0).collect();
        for t in ready {
            if let Some(c) = t.checked_sub(SSE_BASE).and_then(|i| streams.get_mut(i)) {
                c.drive(&mut |_| {
                    last_msg = Instant::now();
                    Ok(())
                })?;
            } else if let Some(c) = net.conns.get_mut(t) {
                c.drive(&mut |_, _| {
                    last_msg = Instant::now();
                    Ok(())
                })?;
            }
        }
    }

    let filler = "x".repeat(o.size - SEQ_DIGITS - 2);
    let mut timed = Timed::begin(o.warmup, o.secs, o.server_pid)?;
    let mut outstanding: VecDeque<Pending> = VecDeque::with_capacity(o.window);
    let mut base: u32 = 0;
    let mut next_seq: u32 = 0;
    let mut expected = vec![0u32; m];
    let mut deliveries: u64 = 0;
    let mut completed_hist = Histogram::default();
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        if !timed.ended() {
            let sender = &mut net.conns[0];
            while outstanding.len() < o.window {
                let text = format!("m{:0width$} {filler}", next_seq, width = SEQ_DIGITS);
                sender
                    .queue_with(ws::OP_TEXT, text.len(), |out| out.extend_from_slice(text.as_bytes()))
                    .map_err(|e| Error(format!("sender: {e}")))?;
                outstanding.push_back(Pending { sent: now, got: 0 });
                next_seq = next_seq.wrapping_add(1);
            }
            sender.flush().map_err(|e| Error(format!("sender: {e}")))?;
        }
        net.poll.poll(&mut net.events, Some(Duration::from_millis(50)))?;
        let measuring = timed.measuring();
        let ready: Vec<usize> = net.events.iter().map(|e| e.token().0).collect();
        for t in ready {
            let (receiver, result) = if let Some(i) = t.checked_sub(SSE_BASE) {
                let Some(c) = streams.get_mut(i) else { continue };
                let r = c.drive(&mut |data| {
                    deliver(
                        data,
                        &mut expected[i],
                        base,
                        &mut outstanding,
                        measuring,
                        &mut deliveries,
                    )
                });
                if c.eof {
                    bail!("event stream {i} closed by the server");
                }
                (i, r)
            } else {
                let Some(c) = net.conns.get_mut(t) else { continue };
                let r = if t == 0 {
                    c.drive(&mut |_, _| Ok(()))
                } else {
                    let i = t - 1;
                    c.drive(&mut |op, p| {
                        if op != ws::OP_TEXT {
                            return Ok(());
                        }
                        deliver(p, &mut expected[i], base, &mut outstanding, measuring, &mut deliveries)
                    })
                };
                if let Some(e) = c.unexpected_close() {
                    bail!("connection {t}: {e}");
                }
                (t, r)
            };
            result.map_err(|e| Error(format!("receiver {receiver}: {e}")))?;
        }
        while outstanding.front().is_some_and(|p| p.got == m) {
            if let Some(p) = outstanding.pop_front()
                && measuring
            {
                completed_hist.record(p.sent.elapsed());
            }
            base = base.wrapping_add(1);
            last_progress = Instant::now();
        }
        let now = Instant::now();
        timed.tick(now)?;
        if timed.ended() && outstanding.is_empty() {
            break;
        }
        if now >= timed.end() + DRAIN_LIMIT {
            bail!(
                "{} messages not delivered to every receiver {DRAIN_LIMIT:?} after the run",
                outstanding.len()
            );
        }
        if !outstanding.is_empty() && now.duration_since(last_progress) > o.stall {
            let front = outstanding.front().map_or(0, |p| p.got);
            bail!(
                "no message completed for {:?}: #{base} reached {front} of {m} receivers",
                o.stall
            );
        }
    }
    let elapsed = timed.elapsed()?;
    let cpu = &timed.cpu;
    let rate = deliveries as f64 / elapsed;
    let server_cpu = cpu.server();
    let per_cpu = per(deliveries as f64, server_cpu);
    let (p50, p99) = (completed_hist.quantile_us(0.5), completed_hist.quantile_us(0.99));
    println!("  {deliveries} deliveries verified in {elapsed:.3} s: {rate:.0} deliveries/s");
    println!(
        "  send -> last receiver: p50 {} us, p99 {} us",
        fmt_opt(p50, 1),
        fmt_opt(p99, 1)
    );
    println!(
        "  server CPU {} s -> {} deliveries per server CPU-second; load generator CPU {:.2} s",
        fmt_opt(server_cpu, 2),
        fmt_opt(per_cpu, 0),
        cpu.client()
    );
    if cpu.client() > 0.95 * elapsed {
        println!("  note: the load generator was busy >95% of the time; it may be the bottleneck");
    }
    report.str("mode", "room");
    report.str(
        "receivers_via",
        if o.events_path.is_some() { "sse" } else { "websocket" },
    );
    report.int("receivers", m as u64);
    report.int("size", o.size as u64);
    report.int("window", o.window as u64);
    report.num("seconds", elapsed);
    report.int("deliveries", deliveries);
    report.num("deliveries_per_sec", rate);
    report.opt_num("p50_us", p50);
    report.opt_num("p99_us", p99);
    report.opt_num("server_cpu_s", server_cpu);
    report.opt_num("deliveries_per_cpu_s", per_cpu);
    report.num("client_cpu_s", cpu.client());
    Ok(())
}

/// One chat JSON at a receiver: if it carries `m<seq>`, it must be the next one.
fn deliver(
    json: &[u8],
    expected: &mut u32,
    base: u32,
    outstanding: &mut VecDeque<Pending>,
    measuring: bool,
    deliveries: &mut u64,
) -> Result<()> {
    let Some(seq) = seq_of(json) else {
        return Ok(());
    };
    if seq != *expected {
        bail!(
            "expected message m{}, got m{seq} (lost, duplicated or reordered)",
            *expected
        );
    }
    *expected = expected.wrapping_add(1);
    let Some(p) = outstanding.get_mut(seq.wrapping_sub(base) as usize) else {
        bail!("message m{seq} delivered but not outstanding");
    };
    p.got += 1;
    if measuring {
        *deliveries += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_found_in_the_chat_json() {
        let json = br#"{"type":"message","room":"b","id":"1","from":"x","text":"m00000042 xxxx","ts":1,"mid":""}"#;
        assert_eq!(seq_of(json), Some(42));
        assert_eq!(seq_of(br#"{"type":"join","name":"m"}"#), None);
        assert_eq!(seq_of(br#"{"text":"m12"}"#), None);
    }
}
