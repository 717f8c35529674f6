//! Latency histogram and readings of the server (and our own) process from
//! /proc.

use std::fs;
use std::time::{Duration, Instant};

use crate::bail;
use crate::error::{Error, Result};

/// Log-linear histogram of nanosecond values: exact below 1024 ns, then 512
/// buckets per power of two (relative error below 0.2%). Fixed memory
/// whatever the run length, unlike keeping every sample.
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB: u64 = 1024;
const HALF: usize = 512;
// Largest index: e = 54, v >> e = 1023 -> 54 * 512 + 1023.
const BUCKETS: usize = 56 * HALF;

fn bucket(v: u64) -> usize {
    if v < SUB {
        v as usize
    } else {
        // e >= 1 is how far v must be shifted to land in [512, 1024).
        let e = 63 - v.leading_zeros() as usize - 9;
        e * HALF + (v >> e) as usize
    }
}

/// Midpoint of a bucket's value range.
fn bucket_value(i: usize) -> u64 {
    if i < SUB as usize {
        i as u64
    } else {
        let e = i / HALF - 1;
        let m = (i - e * HALF) as u64;
        (m << e) + ((1u64 << e) >> 1)
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    /// The `q` quantile (0..=1) in microseconds, `None` without samples.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_value(i).min(self.max) as f64 / 1000.0);
            }
        }
        Some(self.max as f64 / 1000.0)
    }

    pub fn max_us(&self) -> Option<f64> {
        (self.total > 0).then(|| self.max as f64 / 1000.0)
    }
}

/// Clock ticks per second, the unit of utime/stime in /proc/PID/stat.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU seconds (user + system, all threads) used so far by process `pid`.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).map_err(|e| Error(format!("reading {path} (is the server running?): {e}")))?;
    // The command name (field 2) is in parentheses and may contain spaces,
    // so count fields from the last ')'.
    let Some(close) = text.rfind(')') else {
        bail!("unexpected format of {path}");
    };
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let parse = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| Error(format!("unexpected format of {path}")))
    };
    Ok((parse(11)? + parse(12)?) as f64 / clock_ticks())
}

/// A `VmXXX:` line of /proc/PID/status, in bytes.
pub fn status_bytes(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).map_err(|e| Error(format!("reading {path} (is the server running?): {e}")))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let kb: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .map_err(|_| Error(format!("unexpected {key} line in {path}: {line:?}")))?;
            return Ok(kb * 1024);
        }
    }
    bail!("no {key} in {path}")
}

/// Our own CPU seconds (user + system), to tell when the load generator
/// rather than the server was the bottleneck.
pub fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises our RLIMIT_NOFILE soft limit to the hard limit; returns the new
/// soft limit.
pub fn raise_nofile() -> Result<u64> {
    // SAFETY: plain get/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
        }
        Ok(lim.rlim_cur as u64)
    }
}

/// Server CPU over a measured window, read at its start and end.
#[derive(Default)]
pub struct CpuWindow {
    pid: Option<u32>,
    start: Option<f64>,
    end: Option<f64>,
    self_start: f64,
    self_end: f64,
}

impl CpuWindow {
    pub fn new(pid: Option<u32>) -> CpuWindow {
        CpuWindow {
            pid,
            ..Default::default()
        }
    }

    pub fn start(&mut self) -> Result<()> {
        self.self_start = self_cpu_seconds();
        if let Some(pid) = self.pid {
            self.start = Some(cpu_seconds(pid)?);
        }
        Ok(())
    }

    pub fn stop(&mut self) -> Result<()> {
        self.self_end = self_cpu_seconds();
        if let Some(pid) = self.pid {
            self.end = Some(cpu_seconds(pid)?);
        }
        Ok(())
    }

    /// Server CPU seconds in the window (None without `--server-pid`).
    pub fn server(&self) -> Option<f64> {
        Some(self.end? - self.start?)
    }

    pub fn client(&self) -> f64 {
        self.self_end - self.self_start
    }
}

/// The measured window of a timed run: `warmup` unmeasured, then `secs` measured, the server's
/// CPU and our own read at both ends. Every timed mode drives it the same way: `tick` after
/// each turn of its loop opens and closes the window on time.
pub struct Timed {
    warm_end: Instant,
    end: Instant,
    pub cpu: CpuWindow,
    start: Option<Instant>,
    stop: Option<Instant>,
}

impl Timed {
    /// Starts the clock now; with no warmup the window opens at once.
    pub fn begin(warmup: Duration, secs: Duration, server_pid: Option<u32>) -> Result<Timed> {
        let t0 = Instant::now();
        let mut t = Timed {
            warm_end: t0 + warmup,
            end: t0 + warmup + secs,
            cpu: CpuWindow::new(server_pid),
            start: None,
            stop: None,
        };
        if warmup.is_zero() {
            t.cpu.start()?;
            t.start = Some(t0);
        }
        Ok(t)
    }

    /// Opens the window once the warmup is over, closes it once `secs` have passed.
    pub fn tick(&mut self, now: Instant) -> Result<()> {
        if self.start.is_none() && now >= self.warm_end {
            self.cpu.start()?;
            self.start = Some(now);
        }
        if self.start.is_some() && self.stop.is_none() && now >= self.end {
            self.cpu.stop()?;
            self.stop = Some(now);
        }
        Ok(())
    }

    /// The window is open: what happens now is counted.
    pub fn measuring(&self) -> bool {
        self.start.is_some() && self.stop.is_none()
    }

    /// The warmup is over.
    pub fn started(&self) -> bool {
        self.start.is_some()
    }

    /// The window has closed: no more new work.
    pub fn ended(&self) -> bool {
        self.stop.is_some()
    }

    /// When the window is due to close.
    pub fn end(&self) -> Instant {
        self.end
    }

    /// The next phase change to wake up for: the end of the warmup, the end of the window,
    /// then `drain` after it.
    pub fn next_boundary(&self, drain: Duration) -> Instant {
        match (self.start, self.stop) {
            (None, _) => self.warm_end,
            (Some(_), None) => self.end,
            _ => self.end + drain,
        }
    }

    /// The window's length in seconds, once it has closed.
    pub fn elapsed(&self) -> Result<f64> {
        match (self.start, self.stop) {
            (Some(a), Some(b)) => Ok(b.duration_since(a).as_secs_f64()),
            _ => Err(Error("internal: measurement window not closed".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_monotonic() {
        let mut last = 0;
        for v in [0u64, 1, 1023, 1024, 1025, 2047, 2048, 1 << 20, 1 << 40, u64::MAX] {
            let b = bucket(v);
            assert!(b >= last && b < BUCKETS, "v={v} b={b}");
            last = b;
            // The midpoint is within 0.2% of any value of the bucket.
            let mid = bucket_value(b) as f64;
            assert!((mid - v as f64).abs() <= v as f64 * 0.002 + 1.0, "v={v} mid={mid}");
        }
        assert_eq!(bucket(1023) + 1, bucket(1024));
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_us(0.5), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile_us(0.5).unwrap();
        let p99 = h.quantile_us(0.99).unwrap();
        assert!((p50 - 50.0).abs() < 0.2, "{p50}");
        assert!((p99 - 99.0).abs() < 0.3, "{p99}");
        assert_eq!(h.max_us(), Some(100.0));
    }

    #[test]
    fn the_window_opens_after_the_warmup_and_closes_after_the_run() {
        let mut t = Timed::begin(Duration::from_millis(20), Duration::from_millis(20), None).unwrap();
        assert!(!t.started() && t.elapsed().is_err());
        let t0 = Instant::now();
        t.tick(t0).unwrap();
        assert!(!t.measuring());
        std::thread::sleep(Duration::from_millis(25));
        t.tick(Instant::now()).unwrap();
        assert!(t.measuring());
        std::thread::sleep(Duration::from_millis(25));
        t.tick(Instant::now()).unwrap();
        assert!(t.ended() && !t.measuring());
        assert!(t.elapsed().unwrap() >= 0.015);
        let now = Timed::begin(Duration::ZERO, Duration::from_secs(1), None).unwrap();
        assert!(now.measuring());
    }

    #[test]
    fn reads_own_proc_entries() {
        let me = std::process::id();
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        assert!(status_bytes(me, "VmRSS").unwrap() > 0);
        assert!(status_bytes(me, "VmNope").is_err());
        assert!(cpu_seconds(u32::MAX).is_err());
    }
}
