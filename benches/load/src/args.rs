//! A tiny command-line parser: `MODE [--flag value | --switch]...`.
//! Each mode takes the options it knows; anything left over is an error, so
//! a typo never silently falls back to a default.

use std::str::FromStr;
use std::time::Duration;

use crate::bail;
use crate::error::{Error, Result};

/// Options that take no value.
const SWITCHES: &[&str] = &["--binary", "--json", "--deflate", "--tls", "--insecure", "-h", "--help"];

pub struct Args {
    pub mode: String,
    opts: Vec<(String, Option<String>)>,
}

impl Args {
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args> {
        let mode = argv.next().unwrap_or_else(|| "help".to_owned());
        let mut opts = Vec::new();
        while let Some(a) = argv.next() {
            if !a.starts_with('-') {
                bail!("unexpected argument {a:?}");
            }
            // Accept both `--flag value` and `--flag=value`.
            if let Some((k, v)) = a.split_once('=') {
                opts.push((k.to_owned(), Some(v.to_owned())));
            } else if SWITCHES.contains(&a.as_str()) {
                opts.push((a, None));
            } else {
                let Some(v) = argv.next() else {
                    bail!("option {a} needs a value");
                };
                opts.push((a, Some(v)));
            }
        }
        Ok(Args { mode, opts })
    }

    /// Removes and returns the value of the option named by any of `names`.
    fn take(&mut self, names: &[&str]) -> Option<(String, Option<String>)> {
        let i = self.opts.iter().position(|(k, _)| names.contains(&k.as_str()))?;
        Some(self.opts.remove(i))
    }

    pub fn switch(&mut self, names: &[&str]) -> bool {
        self.take(names).is_some()
    }

    pub fn opt<T: FromStr>(&mut self, names: &[&str]) -> Result<Option<T>> {
        match self.take(names) {
            None => Ok(None),
            Some((k, None)) => bail!("option {k} needs a value"),
            Some((k, Some(v))) => v
                .parse()
                .map(Some)
                .map_err(|_| Error(format!("invalid value {v:?} for {k}"))),
        }
    }

    pub fn get<T: FromStr>(&mut self, names: &[&str], default: T) -> Result<T> {
        Ok(self.opt(names)?.unwrap_or(default))
    }

    pub fn required<T: FromStr>(&mut self, names: &[&str]) -> Result<T> {
        match self.opt(names)? {
            Some(v) => Ok(v),
            None => bail!("missing required option {}", names.join("/")),
        }
    }

    /// Seconds (fractions allowed) as a Duration.
    pub fn secs(&mut self, names: &[&str], default: f64) -> Result<Duration> {
        let s: f64 = self.get(names, default)?;
        if !(0.0..1e6).contains(&s) {
            bail!("{} must be a number of seconds", names[0]);
        }
        Ok(Duration::from_secs_f64(s))
    }

    /// Fails if options were given that the mode did not use.
    pub fn finish(self) -> Result<()> {
        if let Some((k, _)) = self.opts.first() {
            bail!("unknown option {k} for mode {:?} (see `wsloop-load help`)", self.mode);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Args {
        Args::parse(s.split_whitespace().map(String::from)).unwrap()
    }

    #[test]
    fn parses_options() {
        let mut a = args("echo --url ws://x -c 10 --binary -t=2.5");
        assert_eq!(a.mode, "echo");
        assert_eq!(a.required::<String>(&["--url"]).unwrap(), "ws://x");
        assert_eq!(a.get(&["-c", "--connections"], 1usize).unwrap(), 10);
        assert!(a.switch(&["--binary"]));
        assert_eq!(a.secs(&["-t"], 5.0).unwrap(), Duration::from_millis(2500));
        assert_eq!(a.get(&["-d"], 3u32).unwrap(), 3);
        a.finish().unwrap();
    }

    #[test]
    fn rejects_leftovers_and_bad_values() {
        let mut a = args("echo -c ten --bogus 1");
        assert!(a.get(&["-c"], 1usize).is_err());
        assert!(a.finish().is_err());
        assert!(Args::parse(["echo".into(), "-c".into()].into_iter()).is_err());
    }
}
