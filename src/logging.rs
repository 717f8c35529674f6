//! A logger for the `log` facade that costs an event loop one `write` per loop iteration
//! instead of one per line.
//!
//! Lines logged on an event-loop thread are kept in a per-thread buffer and written when the
//! loop finishes an iteration (it calls `log::logger().flush()`), or sooner if the buffer
//! fills; lines from any other thread are written at once. Either way a line reaches stderr
//! within one turn of the loop, so `tail -f` stays live. Under a handshake flood this saves
//! two of the nine syscalls each connection costs (its open and close lines).
//!
//! `RUST_LOG` sets the levels like env_logger's basic syntax: a global level
//! (`error`, `warn`, `info`, `debug`, `trace`, `off`) and/or `target=level` pairs, comma
//! separated, e.g. `RUST_LOG=warn,wsloop::server=info`.

use log::{LevelFilter, Log, Metadata, Record};
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Write the buffer out before it grows past this.
const FLUSH_AT: usize = 16 * 1024;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static BUFFERED: Cell<bool> = const { Cell::new(false) };
}

/// The logger; install it with [`init`].
#[derive(Debug)]
pub struct LoopLogger {
    default: LevelFilter,
    /// (target prefix, level), longest prefix first.
    directives: Vec<(String, LevelFilter)>,
}

impl LoopLogger {
    /// A logger configured from a `RUST_LOG`-style spec; `default` applies where the spec says
    /// nothing.
    pub fn from_spec(spec: &str, default: LevelFilter) -> Self {
        let mut logger = LoopLogger {
            default,
            directives: Vec::new(),
        };
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some((target, level)) => {
                    if let Ok(level) = level.trim().parse() {
                        logger.directives.push((target.trim().to_owned(), level));
                    }
                }
                None => {
                    if let Ok(level) = item.parse() {
                        logger.default = level;
                    }
                }
            }
        }
        logger.directives.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        logger
    }

    fn level_for(&self, target: &str) -> LevelFilter {
        self.directives
            .iter()
            .find(|(prefix, _)| target.starts_with(prefix.as_str()))
            .map_or(self.default, |(_, level)| *level)
    }

    fn max_level(&self) -> LevelFilter {
        self.directives.iter().map(|(_, l)| *l).fold(self.default, Ord::max)
    }
}

/// Installs [`LoopLogger`] from `RUST_LOG` (default level `info`). Fails if a logger is
/// already installed.
pub fn init() -> Result<(), log::SetLoggerError> {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let logger = LoopLogger::from_spec(&spec, LevelFilter::Info);
    log::set_max_level(logger.max_level());
    log::set_boxed_logger(Box::new(logger))
}

/// Marks the calling thread as an event loop: its lines wait for the next `flush`.
pub fn buffer_this_thread() {
    BUFFERED.with(|b| b.set(true));
}

fn write_out(buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        let _ = std::io::stderr().lock().write_all(buf);
        buf.clear();
    }
}

impl Log for LoopLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level_for(metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        BUFFER.with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else { return };
            let _ = writeln!(
                buf,
                "[{} {:<5} {}] {}",
                Utc(SystemTime::now()),
                record.level(),
                record.target(),
                record.args()
            );
            if !BUFFERED.with(Cell::get) || buf.len() >= FLUSH_AT {
                write_out(&mut buf);
            }
        });
    }

    fn flush(&self) {
        BUFFER.with(|cell| {
            if let Ok(mut buf) = cell.try_borrow_mut() {
                write_out(&mut buf);
            }
        });
    }
}

/// A time printed as RFC 3339 UTC with whole seconds, e.g. `2026-11-22T00:24:32Z`.
struct Utc(SystemTime);

impl std::fmt::Display for Utc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
        let [year, month, day, hour, minute, second] = civil_from_unix(secs);
        write!(f, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
    }
}

/// Seconds since 1970-01-01 00:00:00 UTC as `[year, month, day, hour, minute, second]` in the
/// proleptic Gregorian calendar (Howard Hinnant's days-to-civil algorithm; leap seconds do not
/// exist in Unix time). For log timestamps and certificate validity dates.
pub(crate) fn civil_from_unix(secs: i64) -> [i64; 6] {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    [year, month, day, rem / 3600, rem % 3600 / 60, rem % 60]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |s: u64| Utc(UNIX_EPOCH + Duration::from_secs(s)).to_string();
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_307_072), "2026-11-22T00:24:32Z");
        // Before 1970 too (a certificate's notBefore can be).
        assert_eq!(civil_from_unix(-1), [1969, 12, 31, 23, 59, 59]);
    }

    #[test]
    fn spec_sets_global_and_per_target_levels() {
        let l = LoopLogger::from_spec(
            "warn, wsloop::server=debug, wsloop::server::demo=off",
            LevelFilter::Info,
        );
        assert_eq!(l.level_for("other"), LevelFilter::Warn);
        assert_eq!(l.level_for("wsloop::server::event_loop"), LevelFilter::Debug);
        assert_eq!(l.level_for("wsloop::server::demo"), LevelFilter::Off);
        assert_eq!(l.max_level(), LevelFilter::Debug);
        assert_eq!(
            LoopLogger::from_spec("", LevelFilter::Info).level_for("x"),
            LevelFilter::Info
        );
    }
}
