//! `idle`: the server's memory cost of an open, idle WebSocket connection.

use std::time::{Duration, Instant};

use crate::bail;
use crate::error::{Error, Result};
use crate::net::{Net, Target};
use crate::payload::EchoPayload;
use crate::report::Report;
use crate::stats::{raise_nofile, status_bytes};
use crate::ws;

pub struct IdleOpts {
    pub target: Target,
    pub conns: usize,
    pub server_pid: u32,
    /// Minimum time to hold the connections open before reading RSS.
    pub hold: Duration,
    pub connect_timeout: Duration,
    /// Offer (and require) permessage-deflate.
    pub deflate: bool,
    /// Messages each connection echoes (verified) before it idles: what a
    /// chat connection has done before it goes quiet. With deflate, these
    /// are what makes a connection allocate its compression state.
    pub messages: u64,
    pub size: usize,
    pub json: bool,
}

const WARM_TIMEOUT: Duration = Duration::from_secs(30);

const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// RSS counts as settled when it moved less than this over the last second.
const SETTLE_WINDOW: Duration = Duration::from_secs(1);
/// Longest we wait past `hold` for RSS to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(o: &IdleOpts, report: &mut Report) -> Result<()> {
    if o.conns == 0 {
        bail!("-c must be at least 1");
    }
    // One descriptor per connection plus a few for the poll and stdio.
    let nofile = raise_nofile()?;
    if (nofile as usize) < o.conns + 64 {
        bail!(
            "RLIMIT_NOFILE hard limit is {nofile}, too low for {} connections",
            o.conns
        );
    }
    let pid = o.server_pid;
    let rss = |key: &str| status_bytes(pid, key);
    println!(
        "idle: {} connections to {} (server pid {pid}){}, {} message(s) each first, hold {:.1} s",
        o.conns,
        o.target.addr,
        if o.deflate { " with permessage-deflate" } else { "" },
        o.messages,
        o.hold.as_secs_f64()
    );
    let rss_before = rss("VmRSS")?;
    let mut net = Net::new(o.target.clone(), o.connect_timeout)?;
    net.deflate = o.deflate;
    let mut messages = 0u64;
    let open_time = net.open(o.conns, |_, _, _| {
        messages += 1;
        Ok(())
    })?;
    println!(
        "  {} connections upgraded in {:.3} s; server RSS before: {} KiB",
        o.conns,
        open_time.as_secs_f64(),
        rss_before / 1024
    );
    if o.messages > 0 {
        warm_up(&mut net, o)?;
    }
    let (compressed_sent, compressed_received) = net.compressed_counts();
    // Nothing compressed comes any more: the load generator's own inflaters
    // (context takeover) need not stay.
    for c in &mut net.conns {
        if let Some(d) = c.deflate.as_mut() {
            d.release();
        }
    }

    // Hold the connections, sampling RSS, until it settles.
    let hold_end = Instant::now() + o.hold;
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    let mut next_sample = Instant::now();
    let settled = loop {
        net.step(Duration::from_millis(50), |_, _, _| {
            messages += 1;
            Ok(())
        })?;
        let now = Instant::now();
        if now >= next_sample {
            samples.push((now, rss("VmRSS")?));
            next_sample = now + SAMPLE_EVERY;
            if now >= hold_end && is_settled(&samples, now) {
                break true;
            }
        }
        if now >= hold_end + SETTLE_LIMIT {
            break false;
        }
    };
    let rss_after = samples.last().map(|s| s.1).unwrap_or(rss_before);
    let rss_max_seen = samples.iter().map(|s| s.1).max().unwrap_or(rss_after);
    let rss_peak = rss("VmHWM")?;

    // Every connection must still be alive: each must answer a ping.
    for (i, c) in net.conns.iter_mut().enumerate() {
        c.queue_ping(b"wsloop-idle");
        c.flush()
            .map_err(|e| Error(format!("connection {i}: sending ping: {e}")))?;
    }
    let ping_deadline = Instant::now() + PING_TIMEOUT;
    loop {
        let missing = net.conns.iter().filter(|c| c.pongs == 0).count();
        if missing == 0 {
            break;
        }
        if Instant::now() >= ping_deadline {
            bail!(
                "{missing} of {} idle connections did not answer a ping within {PING_TIMEOUT:?}",
                o.conns
            );
        }
        net.step(Duration::from_millis(50), |_, _, _| Ok(()))?;
    }
    let close_timeouts = net.close_all(Duration::from_secs(10))?;

    let per_conn = (rss_after as f64 - rss_before as f64) / o.conns as f64;
    println!(
        "  server RSS after: {} KiB ({}), peak (VmHWM) {} KiB",
        rss_after / 1024,
        if settled { "settled" } else { "NOT settled" },
        rss_peak / 1024
    );
    println!(
        "  {per_conn:.0} bytes per idle connection; all {} answered a ping",
        o.conns
    );
    if messages > 0 {
        println!("  ({messages} messages from the server while idle were ignored)");
    }
    if close_timeouts > 0 {
        println!("  warning: {close_timeouts} connections did not finish the close handshake in 10 s");
    }
    if o.deflate {
        println!(
            "  permessage-deflate: {compressed_sent} messages sent compressed, {compressed_received} echoes came back compressed"
        );
    }
    report.str("mode", "idle");
    report.bool("deflate", o.deflate);
    report.int("messages_each", o.messages);
    report.int("size", o.size as u64);
    report.bool("json", o.json);
    report.int("compressed_sent", compressed_sent);
    report.int("compressed_received", compressed_received);
    report.int("connections", o.conns as u64);
    report.num("connect_seconds", open_time.as_secs_f64());
    report.int("rss_before", rss_before);
    report.int("rss_after", rss_after);
    report.int("rss_max_sampled", rss_max_seen);
    report.int("rss_peak", rss_peak);
    report.num("bytes_per_conn", per_conn);
    report.bool("settled", settled);
    report.int("close_timeouts", close_timeouts as u64);
    Ok(())
}

/// Each connection echoes `o.messages` messages, all connections at once;
/// every echo is verified.
fn warm_up(net: &mut Net, o: &IdleOpts) -> Result<()> {
    let payload = EchoPayload::new(o.size, 0x1D1E, o.json);
    for (i, c) in net.conns.iter_mut().enumerate() {
        for seq in 0..o.messages {
            c.queue_with(ws::OP_TEXT, o.size, |out| payload.write(out, i as u32, seq))?;
        }
        c.flush().map_err(|e| Error(format!("connection {i}: {e}")))?;
    }
    let mut next = vec![0u64; net.conns.len()];
    let mut done = 0usize;
    let deadline = Instant::now() + WARM_TIMEOUT;
    let t0 = Instant::now();
    while done < next.len() {
        net.step(Duration::from_millis(50), |i, op, p| {
            let Some(n) = next.get_mut(i) else {
                bail!("message on unknown connection {i}");
            };
            if op != ws::OP_TEXT {
                bail!("echo came back with opcode {op}");
            }
            payload.check(p, i as u32, *n).map_err(Error)?;
            *n += 1;
            if *n == o.messages {
                done += 1;
            }
            Ok(())
        })?;
        if Instant::now() >= deadline {
            bail!(
                "{} of {} connections did not get their echoes within {WARM_TIMEOUT:?}",
                next.len() - done,
                next.len()
            );
        }
    }
    println!(
        "  {} messages of {} B echoed and verified in {:.3} s",
        o.messages * next.len() as u64,
        o.size,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// True when the samples of the last second span at most 64 KiB or 0.5%.
fn is_settled(samples: &[(Instant, u64)], now: Instant) -> bool {
    let recent: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| now.duration_since(*t) <= SETTLE_WINDOW)
        .map(|s| s.1)
        .collect();
    if recent.len() < 4 {
        return false;
    }
    let (lo, hi) = (*recent.iter().min().unwrap_or(&0), *recent.iter().max().unwrap_or(&0));
    hi - lo <= (64 * 1024).max(hi / 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settling() {
        let now = Instant::now();
        let at = |ms: u64| now - Duration::from_millis(ms);
        let flat: Vec<_> = (0..6).map(|k| (at(1000 - k * 200), 10 << 20)).collect();
        assert!(is_settled(&flat, now));
        let growing: Vec<_> = (0..6u64)
            .map(|k| (at(1000 - k * 200), (10 << 20) + k * (1 << 20)))
            .collect();
        assert!(!is_settled(&growing, now));
        assert!(!is_settled(&flat[..2], now));
    }
}
