//! `echo`: N connections, D messages of S bytes in flight on each; every
//! echo is checked byte for byte and timed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::bail;
use crate::error::{Error, Result};
use crate::net::{Net, Target};
use crate::payload::EchoPayload;
use crate::report::{Report, fmt_opt, per};
use crate::stats::{Histogram, Timed};
use crate::ws;

pub struct EchoOpts {
    pub target: Target,
    pub conns: usize,
    pub depth: usize,
    pub size: usize,
    pub secs: Duration,
    pub warmup: Duration,
    pub binary: bool,
    /// JSON-like payloads instead of random bytes.
    pub json: bool,
    /// Offer (and require) permessage-deflate; every message goes compressed.
    pub deflate: bool,
    pub server_pid: Option<u32>,
    pub connect_timeout: Duration,
    /// Fail if no echo at all arrives for this long.
    pub stall: Duration,
}

/// Per-connection bookkeeping: echoes come back in order, so the send
/// times of the messages in flight form a FIFO.
struct Flight {
    next_send: u64,
    next_recv: u64,
    sent_at: VecDeque<Instant>,
}

pub fn run(o: &EchoOpts, report: &mut Report) -> Result<()> {
    if o.conns == 0 || o.depth == 0 {
        bail!("-c and -d must be at least 1");
    }
    if o.secs.is_zero() {
        bail!("-t must be positive");
    }
    let opcode = if o.binary { ws::OP_BINARY } else { ws::OP_TEXT };
    let payload = EchoPayload::new(o.size, 0x5EED, o.json);
    let mut net = Net::new(o.target.clone(), o.connect_timeout)?;
    net.deflate = o.deflate;

    println!(
        "echo: {} connections x {} in flight x {} B {}{}{} to {} for {:.1} s (warmup {:.1} s)",
        o.conns,
        o.depth,
        o.size,
        if o.json { "JSON-like " } else { "" },
        if o.binary { "binary" } else { "text" },
        if o.deflate { ", permessage-deflate" } else { "" },
        o.target.addr,
        o.secs.as_secs_f64(),
        o.warmup.as_secs_f64()
    );
    let open_time = net.open(o.conns, |i, _, _| {
        bail!("connection {i}: unexpected message before any was sent")
    })?;
    println!("  {} connections open in {:.3} s", o.conns, open_time.as_secs_f64());

    let mut flights: Vec<Flight> = (0..o.conns)
        .map(|_| Flight {
            next_send: 0,
            next_recv: 0,
            sent_at: VecDeque::with_capacity(o.depth),
        })
        .collect();

    let mut timed = Timed::begin(o.warmup, o.secs, o.server_pid)?;

    // Prime every connection with D messages.
    for (i, (c, f)) in net.conns.iter_mut().zip(flights.iter_mut()).enumerate() {
        for _ in 0..o.depth {
            send_one(c, f, &payload, opcode, i as u32).map_err(|e| Error(format!("connection {i}: {e}")))?;
        }
        c.flush().map_err(|e| Error(format!("connection {i}: {e}")))?;
    }

    let mut hist = Histogram::default();
    let mut msgs: u64 = 0;
    let mut bytes: u64 = 0;
    let mut in_flight = o.conns * o.depth;
    let mut last_progress = Instant::now();
    let drain_limit = Duration::from_secs(10);

    loop {
        let now = Instant::now();
        let measuring = timed.measuring();
        // Wake up in time for the next phase change.
        let next = timed.next_boundary(drain_limit);
        let timeout = next.saturating_duration_since(now).min(Duration::from_millis(100));

        net.poll.poll(&mut net.events, Some(timeout))?;
        for ev in net.events.iter() {
            let i = ev.token().0;
            let (Some(c), Some(f)) = (net.conns.get_mut(i), flights.get_mut(i)) else {
                continue;
            };
            let mut got = 0usize;
            c.drive(&mut |op, p| {
                if op != opcode {
                    bail!("echo came back with opcode {op}, sent {opcode}");
                }
                let Some(sent) = f.sent_at.pop_front() else {
                    bail!("received a message that was never sent ({} bytes)", p.len());
                };
                payload.check(p, i as u32, f.next_recv).map_err(Error)?;
                f.next_recv += 1;
                got += 1;
                if measuring {
                    hist.record(sent.elapsed());
                    msgs += 1;
                    bytes += p.len() as u64;
                }
                Ok(())
            })
            .map_err(|e| Error(format!("connection {i}: {e}")))?;
            if let Some(e) = c.unexpected_close() {
                bail!("connection {i}: {e}");
            }
            if got > 0 {
                last_progress = Instant::now();
                in_flight -= got;
                // Keep D in flight until the end of the measured window.
                if !timed.ended() {
                    for _ in 0..got {
                        send_one(c, f, &payload, opcode, i as u32)
                            .map_err(|e| Error(format!("connection {i}: {e}")))?;
                    }
                    in_flight += got;
                    c.flush().map_err(|e| Error(format!("connection {i}: {e}")))?;
                }
            }
        }

        let now = Instant::now();
        timed.tick(now)?;
        if timed.ended() && in_flight == 0 {
            break;
        }
        if now >= timed.end() + drain_limit {
            bail!("{in_flight} echoes still missing {drain_limit:?} after the end of the run");
        }
        if now.duration_since(last_progress) > o.stall {
            bail!("no echo received for {:?} ({in_flight} messages in flight)", o.stall);
        }
    }

    let elapsed = timed.elapsed()?;
    let cpu = &timed.cpu;
    let (compressed_sent, compressed_received) = net.compressed_counts();
    let close_timeouts = net.close_all(Duration::from_secs(5))?;

    let rate = msgs as f64 / elapsed;
    let mbps = bytes as f64 / elapsed / 1e6;
    let server_cpu = cpu.server();
    let per_cpu = per(msgs as f64, server_cpu);
    let p50 = hist.quantile_us(0.5);
    let p99 = hist.quantile_us(0.99);
    println!("  {msgs} echoes verified in {elapsed:.3} s: {rate:.0} msgs/s, {mbps:.2} MB/s (payload, one way)");
    println!(
        "  round trip: p50 {} us, p99 {} us, max {} us",
        fmt_opt(p50, 1),
        fmt_opt(p99, 1),
        fmt_opt(hist.max_us(), 1)
    );
    println!(
        "  server CPU {} s -> {} msgs per server CPU-second; load generator CPU {:.2} s",
        fmt_opt(server_cpu, 2),
        fmt_opt(per_cpu, 0),
        cpu.client()
    );
    if cpu.client() > 0.95 * elapsed {
        println!("  note: the load generator was busy >95% of the time; it may be the bottleneck");
    }
    if close_timeouts > 0 {
        println!("  warning: {close_timeouts} connections did not finish the close handshake in 5 s");
    }
    if o.deflate {
        println!(
            "  permessage-deflate: {compressed_sent} messages sent compressed, {compressed_received} echoes came back compressed"
        );
    }

    report.str("mode", "echo");
    report.bool("json", o.json);
    report.bool("deflate", o.deflate);
    report.int("compressed_sent", compressed_sent);
    report.int("compressed_received", compressed_received);
    report.int("connections", o.conns as u64);
    report.int("depth", o.depth as u64);
    report.int("size", o.size as u64);
    report.bool("binary", o.binary);
    report.num("seconds", elapsed);
    report.int("messages", msgs);
    report.num("msgs_per_sec", rate);
    report.num("mb_per_sec", mbps);
    report.opt_num("p50_us", p50);
    report.opt_num("p99_us", p99);
    report.opt_num("max_us", hist.max_us());
    report.opt_num("server_cpu_s", server_cpu);
    report.opt_num("msgs_per_cpu_s", per_cpu);
    report.num("client_cpu_s", cpu.client());
    report.int("close_timeouts", close_timeouts as u64);
    Ok(())
}

fn send_one(c: &mut crate::conn::WsConn, f: &mut Flight, payload: &EchoPayload, opcode: u8, conn: u32) -> Result<()> {
    let seq = f.next_send;
    c.queue_with(opcode, payload.size(), |out| payload.write(out, conn, seq))?;
    f.next_send += 1;
    f.sent_at.push_back(Instant::now());
    Ok(())
}
