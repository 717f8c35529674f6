//! `handshake`: W workers, each looping connect -> upgrade -> close
//! handshake (our close, the server's close) -> TCP close.

use std::time::{Duration, Instant};

use crate::bail;
use crate::conn::WsConn;
use crate::error::{Error, Result};
use crate::net::{Net, Target};
use crate::report::{Report, fmt_opt, per};
use crate::stats::{Histogram, Timed};

pub struct HandshakeOpts {
    pub target: Target,
    pub workers: usize,
    pub secs: Duration,
    pub warmup: Duration,
    pub server_pid: Option<u32>,
    /// Limit for one whole cycle (connect to the server's close frame).
    pub timeout: Duration,
}

/// Tokens carry the worker slot in the low bits and a generation above, so
/// a stale event for a worker's previous socket is never applied to the new
/// one.
const SLOT_BITS: u32 = 20;

struct Worker {
    conn: WsConn,
    generation: usize,
}

pub fn run(o: &HandshakeOpts, report: &mut Report) -> Result<()> {
    if o.workers == 0 || o.workers >= 1 << SLOT_BITS {
        bail!("-w must be between 1 and {}", (1 << SLOT_BITS) - 1);
    }
    if o.secs.is_zero() {
        bail!("-t must be positive");
    }
    println!(
        "handshake: {} workers against {} for {:.1} s (warmup {:.1} s)",
        o.workers,
        o.target.addr,
        o.secs.as_secs_f64(),
        o.warmup.as_secs_f64()
    );
    let mut net = Net::new(o.target.clone(), o.timeout)?;
    let token = |slot: usize, generation: usize| (generation << SLOT_BITS) | slot;

    let mut workers = Vec::with_capacity(o.workers);
    for slot in 0..o.workers {
        workers.push(Worker {
            conn: net.start_conn(token(slot, 0))?,
            generation: 0,
        });
    }

    let t0 = Instant::now();
    let mut timed = Timed::begin(o.warmup, o.secs, o.server_pid)?;
    let mut done: u64 = 0;
    let mut hist = Histogram::default();
    let mut last_check = t0;
    let mut restart: Vec<usize> = Vec::new();

    while !timed.ended() {
        let now = Instant::now();
        let next = timed.next_boundary(Duration::ZERO);
        let timeout = next.saturating_duration_since(now).min(Duration::from_millis(100));
        net.poll.poll(&mut net.events, Some(timeout))?;
        let measuring = timed.measuring();
        for ev in net.events.iter() {
            let t = ev.token().0;
            let slot = t & ((1 << SLOT_BITS) - 1);
            let Some(w) = workers.get_mut(slot) else {
                continue;
            };
            if t >> SLOT_BITS != w.generation {
                continue; // event for a socket we already dropped
            }
            let c = &mut w.conn;
            c.drive(&mut |_, _| Ok(()))
                .map_err(|e| Error(format!("worker {slot}: {e}")))?;
            if c.is_open() && !c.close_sent {
                // Upgrade done: start the close handshake right away.
                c.queue_close(1000);
                c.flush().map_err(|e| Error(format!("worker {slot}: {e}")))?;
            }
            if let Some(e) = c.unexpected_close() {
                bail!("worker {slot}: {e}");
            }
            if c.close_sent && c.close_received.is_some() {
                // The server answered our close: one full handshake. Drop
                // the socket (closing TCP) and start the next cycle.
                if measuring {
                    done += 1;
                    hist.record(c.started.elapsed());
                }
                if let Some((code, reason)) = &c.close_received
                    && *code != 1000
                {
                    bail!("worker {slot}: server answered close with code {code} ({reason:?})");
                }
                // New generation at once, so later events of this batch for
                // the old socket are skipped; the new socket is started below.
                w.generation += 1;
                restart.push(slot);
            } else if c.eof {
                bail!("worker {slot}: server closed TCP before answering our close frame");
            }
        }
        for slot in restart.drain(..) {
            let w = &mut workers[slot];
            // Replacing the old connection drops (closes) its socket, which
            // also removes it from the poll.
            w.conn = net.start_conn(token(slot, w.generation))?;
        }
        let now = Instant::now();
        timed.tick(now)?;
        if now.duration_since(last_check) > Duration::from_millis(200) {
            last_check = now;
            for (slot, w) in workers.iter().enumerate() {
                if now.duration_since(w.conn.started) > o.timeout {
                    bail!(
                        "worker {slot}: handshake cycle took longer than {:?} (stuck in {:?}, close sent: {})",
                        o.timeout,
                        w.conn.phase,
                        w.conn.close_sent
                    );
                }
            }
        }
    }
    // Leftover workers are mid-cycle; just drop them.
    drop(workers);

    let elapsed = timed.elapsed()?;
    let cpu = &timed.cpu;
    let rate = done as f64 / elapsed;
    let server_cpu = cpu.server();
    let per_cpu = per(done as f64, server_cpu);
    let p50 = hist.quantile_us(0.5);
    let p99 = hist.quantile_us(0.99);
    println!("  {done} handshakes (upgrade + close) in {elapsed:.3} s: {rate:.0} handshakes/s");
    println!("  cycle time: p50 {} us, p99 {} us", fmt_opt(p50, 1), fmt_opt(p99, 1));
    println!(
        "  server CPU {} s -> {} handshakes per server CPU-second; load generator CPU {:.2} s",
        fmt_opt(server_cpu, 2),
        fmt_opt(per_cpu, 0),
        cpu.client()
    );
    report.str("mode", "handshake");
    report.int("workers", o.workers as u64);
    report.num("seconds", elapsed);
    report.int("handshakes", done);
    report.num("handshakes_per_sec", rate);
    report.opt_num("p50_us", p50);
    report.opt_num("p99_us", p99);
    report.opt_num("server_cpu_s", server_cpu);
    report.opt_num("handshakes_per_cpu_s", per_cpu);
    report.num("client_cpu_s", cpu.client());
    Ok(())
}
