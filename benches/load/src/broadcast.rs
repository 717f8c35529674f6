//! `broadcast`: M receivers and one sender on the broadcast path. The sender
//! keeps at most K marked messages outstanding (a message is complete once
//! every receiver has it), so the server is never overrun and we measure
//! sustained fan-out, not queue growth.

use std::cell::Cell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::bail;
use crate::error::{Error, Result};
use crate::net::{Net, Target};
use crate::payload::{MARKED_HEAD, MarkedPayload};
use crate::report::{Report, fmt_opt, per};
use crate::stats::{Histogram, Timed, raise_nofile};
use crate::ws;

pub struct BroadcastOpts {
    pub target: Target,
    pub receivers: usize,
    pub size: usize,
    pub secs: Duration,
    pub warmup: Duration,
    /// Messages per second the sender may send at most (None: window only).
    pub rate: Option<f64>,
    /// Messages outstanding at most.
    pub window: usize,
    pub binary: bool,
    /// JSON-like payloads instead of random bytes.
    pub json: bool,
    /// Offer (and require) permessage-deflate on every connection.
    pub deflate: bool,
    pub server_pid: Option<u32>,
    pub connect_timeout: Duration,
    pub stall: Duration,
}

/// A sent message not yet delivered to every receiver.
struct Pending {
    sent: Instant,
    got: usize,
    /// Sent inside the measured window (its delay is recorded).
    measured: bool,
}

/// Join/leave notices must stop for this long before we start.
const QUIET: Duration = Duration::from_millis(500);
const QUIET_LIMIT: Duration = Duration::from_secs(20);
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

pub fn run(o: &BroadcastOpts, report: &mut Report) -> Result<()> {
    if o.receivers == 0 || o.window == 0 {
        bail!("-m and --window must be at least 1");
    }
    if o.size < MARKED_HEAD {
        bail!("-s must be at least {MARKED_HEAD} bytes (marker, sequence number, timestamp)");
    }
    if o.secs.is_zero() {
        bail!("-t must be positive");
    }
    if let Some(r) = o.rate
        && !(r.is_finite() && r > 0.0)
    {
        bail!("--rate must be positive");
    }
    let nofile = raise_nofile()?;
    if (nofile as usize) < o.receivers + 64 {
        bail!(
            "RLIMIT_NOFILE hard limit is {nofile}, too low for {} receivers",
            o.receivers
        );
    }
    let m = o.receivers;
    let opcode = if o.binary { ws::OP_BINARY } else { ws::OP_TEXT };
    let payload = MarkedPayload::new(o.size, 0xB0AD, o.json);
    let mut net = Net::new(o.target.clone(), o.connect_timeout)?;
    net.deflate = o.deflate;
    println!(
        "broadcast: {m} receivers + 1 sender, {} B {}{} messages{}, window {}{} to {} for {:.1} s (warmup {:.1} s)",
        o.size,
        if o.json { "JSON-like " } else { "" },
        if o.binary { "binary" } else { "text" },
        if o.deflate { ", permessage-deflate" } else { "" },
        o.window,
        o.rate.map(|r| format!(", at most {r} msgs/s")).unwrap_or_default(),
        o.target.addr,
        o.secs.as_secs_f64(),
        o.warmup.as_secs_f64()
    );

    // Receivers first, then the sender (index m). Anything they get before
    // the run (join notices) is ignored.
    // Cells: the quiet check below reads them while the closure is alive.
    let ignored = Cell::new(0u64);
    let last_msg = Cell::new(Instant::now());
    let mut ignore = |_: usize, _: u8, _: &[u8]| {
        ignored.set(ignored.get() + 1);
        last_msg.set(Instant::now());
        Ok(())
    };
    let t_open = net.open(m, &mut ignore)?;
    net.open(1, &mut ignore)?;
    println!("  {} connections open in {:.3} s", m + 1, t_open.as_secs_f64());
    let quiet_start = Instant::now();
    loop {
        net.step(Duration::from_millis(50), &mut ignore)?;
        let now = Instant::now();
        if now.duration_since(last_msg.get()) >= QUIET {
            break;
        }
        if now.duration_since(quiet_start) > QUIET_LIMIT {
            println!("  note: the server kept sending for {QUIET_LIMIT:?}; starting anyway");
            break;
        }
    }
    let setup_msgs = ignored.get();

    let t0 = Instant::now();
    let mut timed = Timed::begin(o.warmup, o.secs, o.server_pid)?;

    let interval = o.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut next_send_at = t0;
    let mut outstanding: VecDeque<Pending> = VecDeque::with_capacity(o.window);
    let mut base: u32 = 0; // seq of outstanding[0]
    let mut next_seq: u32 = 0;
    let mut expected = vec![0u32; m]; // next seq each receiver must get
    let mut deliveries: u64 = 0;
    let mut completed: u64 = 0;
    let mut other: u64 = 0;
    let mut last_hist = Histogram::default();
    let mut delivery_hist = Histogram::default();
    let mut last_progress = Instant::now();

    loop {
        let now = Instant::now();
        // Send while the window and the rate allow.
        if !timed.ended() {
            let sender = &mut net.conns[m];
            while outstanding.len() < o.window && interval.is_none_or(|_| now >= next_send_at) {
                let seq = next_seq;
                let us = now.duration_since(t0).as_micros() as u64;
                sender
                    .queue_with(opcode, o.size, |out| payload.write(out, seq, us))
                    .map_err(|e| Error(format!("sender: {e}")))?;
                outstanding.push_back(Pending {
                    sent: now,
                    got: 0,
                    measured: timed.started(),
                });
                next_seq = next_seq.wrapping_add(1);
                if let Some(iv) = interval {
                    next_send_at += iv;
                    // Don't burst to catch up after the window held us back.
                    if next_send_at + Duration::from_millis(100) < now {
                        next_send_at = now;
                    }
                }
            }
            sender.flush().map_err(|e| Error(format!("sender: {e}")))?;
        }

        let mut wake = timed.next_boundary(DRAIN_LIMIT);
        if interval.is_some() && !timed.ended() && outstanding.len() < o.window {
            wake = wake.min(next_send_at);
        }
        let timeout = wake.saturating_duration_since(now).min(Duration::from_millis(100));
        net.poll.poll(&mut net.events, Some(timeout))?;
        let measuring = timed.measuring();

        for ev in net.events.iter() {
            let i = ev.token().0;
            let Some(c) = net.conns.get_mut(i) else {
                continue;
            };
            if i == m {
                // The sender may get its own messages back; not counted.
                c.drive(&mut |_, _| Ok(())).map_err(|e| Error(format!("sender: {e}")))?;
            } else {
                let exp = &mut expected[i];
                c.drive(&mut |op, p| {
                    let Some((seq, sent_us)) = payload.parse(p).map_err(Error)? else {
                        other += 1;
                        return Ok(());
                    };
                    if op != opcode {
                        bail!("marked message #{seq} arrived with opcode {op}, sent {opcode}");
                    }
                    if seq != *exp {
                        bail!(
                            "expected marked message #{}, got #{seq} (lost, duplicated or reordered)",
                            *exp
                        );
                    }
                    *exp = exp.wrapping_add(1);
                    let idx = seq.wrapping_sub(base) as usize;
                    let Some(pending) = outstanding.get_mut(idx) else {
                        bail!("marked message #{seq} delivered but not outstanding");
                    };
                    pending.got += 1;
                    if measuring {
                        deliveries += 1;
                        let now_us = t0.elapsed().as_micros() as u64;
                        delivery_hist.record(Duration::from_micros(now_us.saturating_sub(sent_us)));
                    }
                    if pending.got == m {
                        if pending.measured && measuring {
                            last_hist.record(pending.sent.elapsed());
                        }
                        if measuring {
                            completed += 1;
                        }
                    }
                    Ok(())
                })
                .map_err(|e| Error(format!("receiver {i}: {e}")))?;
            }
            if let Some(e) = c.unexpected_close() {
                bail!("connection {i}: {e}");
            }
        }
        // Completion is in order (each receiver gets messages in order).
        while outstanding.front().is_some_and(|p| p.got == m) {
            outstanding.pop_front();
            base = base.wrapping_add(1);
            last_progress = Instant::now();
        }

        let now = Instant::now();
        timed.tick(now)?;
        if timed.ended() && outstanding.is_empty() {
            break;
        }
        if now >= timed.end() + DRAIN_LIMIT {
            let front = outstanding.front().map_or(0, |p| p.got);
            bail!(
                "{} messages not delivered to every receiver {DRAIN_LIMIT:?} after the run \
                 (oldest, #{base}, reached {front} of {m})",
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
    let (compressed_sent, compressed_received) = net.compressed_counts();
    let close_timeouts = net.close_all(Duration::from_secs(10))?;

    let rate = deliveries as f64 / elapsed;
    let msg_rate = completed as f64 / elapsed;
    let server_cpu = cpu.server();
    let per_cpu = per(deliveries as f64, server_cpu);
    let (p50, p99) = (last_hist.quantile_us(0.5), last_hist.quantile_us(0.99));
    let (d50, d99) = (delivery_hist.quantile_us(0.5), delivery_hist.quantile_us(0.99));
    println!(
        "  {deliveries} deliveries verified in {elapsed:.3} s: {rate:.0} deliveries/s ({msg_rate:.0} messages/s to all {m})"
    );
    println!(
        "  send -> last receiver: p50 {} us, p99 {} us; send -> each delivery: p50 {} us, p99 {} us",
        fmt_opt(p50, 1),
        fmt_opt(p99, 1),
        fmt_opt(d50, 1),
        fmt_opt(d99, 1)
    );
    println!(
        "  server CPU {} s -> {} deliveries per server CPU-second; load generator CPU {:.2} s",
        fmt_opt(server_cpu, 2),
        fmt_opt(per_cpu, 0),
        cpu.client()
    );
    if setup_msgs + other > 0 {
        println!("  ignored {setup_msgs} messages during setup and {other} unmarked ones during the run");
    }
    if cpu.client() > 0.95 * elapsed {
        println!("  note: the load generator was busy >95% of the time; it may be the bottleneck");
    }
    if close_timeouts > 0 {
        println!("  warning: {close_timeouts} connections did not finish the close handshake in 10 s");
    }
    if o.deflate {
        println!(
            "  permessage-deflate: {compressed_sent} messages sent compressed, {compressed_received} received compressed"
        );
    }
    report.str("mode", "broadcast");
    report.bool("json", o.json);
    report.bool("deflate", o.deflate);
    report.int("compressed_sent", compressed_sent);
    report.int("compressed_received", compressed_received);
    report.int("receivers", m as u64);
    report.int("size", o.size as u64);
    report.int("window", o.window as u64);
    report.opt_num("rate_limit", o.rate);
    report.num("seconds", elapsed);
    report.int("deliveries", deliveries);
    report.num("deliveries_per_sec", rate);
    report.num("messages_per_sec", msg_rate);
    report.opt_num("p50_us", p50);
    report.opt_num("p99_us", p99);
    report.opt_num("delivery_p50_us", d50);
    report.opt_num("delivery_p99_us", d99);
    report.opt_num("server_cpu_s", server_cpu);
    report.opt_num("deliveries_per_cpu_s", per_cpu);
    report.num("client_cpu_s", cpu.client());
    report.int("ignored_messages", setup_msgs + other);
    report.int("close_timeouts", close_timeouts as u64);
    Ok(())
}
