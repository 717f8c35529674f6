//! Running the third-party clients in `tests/interop/` from Rust tests: prerequisite checks that
//! skip (or fail, when an env var makes them mandatory) and child processes with a deadline.
//! Included by `tests/interop.rs` and `tests/browser.rs` with `#[path]`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// `tests/interop/` of this package.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

/// `tests/interop/<name>` as a string argument.
pub fn script(name: &str) -> String {
    interop_dir().join(name).to_string_lossy().into_owned()
}

/// True when `var` is set to `1`: a missing prerequisite is then a failure, not a skip.
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// Writes straight to the process's stderr, past libtest's output capture, so a skip is seen
/// even when the test passes.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `Ok(())` when every prerequisite is there. Otherwise: panics if `var` is `1`, else prints
/// `skipped: ...` and returns `Err(())` for the test to return early.
pub fn prerequisites(test: &str, var: &str, missing: &[String], install: &str) -> Result<(), ()> {
    if missing.is_empty() {
        return Ok(());
    }
    let what = missing.join("; ");
    if required(var) {
        panic!("{test}: {what} ({var}=1 makes this mandatory); install with: {install}");
    }
    note(&format!(
        "{test}: skipped: {what}; install with: {install} (set {var}=1 to require)"
    ));
    Err(())
}

/// The Python interpreter: `$PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// The Chromium binary: `$CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// `None` if `program args...` runs and exits 0 within 20 s, else why not.
pub fn probe(program: &str, args: &[&str]) -> Option<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    match run(&mut cmd, Duration::from_secs(20)) {
        Err(e) => Some(format!("`{program}` cannot run ({e})")),
        Ok(out) if out.success() => None,
        Ok(out) => {
            let last = out.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            let status = out
                .status
                .map_or("killed at the deadline".to_string(), |s| s.to_string());
            Some(format!(
                "`{program} {}` failed ({status}): {}",
                args.join(" "),
                last.trim()
            ))
        }
    }
}

/// Missing-prerequisite messages for Node with these packages installed in tests/interop.
pub fn node_missing(packages: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    if let Some(why) = probe("node", &["--version"]) {
        missing.push(why);
    }
    for p in packages {
        let manifest = interop_dir().join("node_modules").join(p).join("package.json");
        if !manifest.is_file() {
            missing.push(format!(
                "node package `{p}` is not installed ({} missing)",
                manifest.display()
            ));
        }
    }
    missing
}

/// What a finished (or killed) child left.
#[derive(Debug)]
pub struct Output {
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// Exit status, timing and both streams, for assertion messages.
    pub fn describe(&self) -> String {
        let status = match (self.timed_out, self.status) {
            (true, _) => "killed at the deadline".to_string(),
            (false, Some(s)) => s.to_string(),
            (false, None) => "no exit status".to_string(),
        };
        format!(
            "{status} after {:.1}s\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.elapsed.as_secs_f64(),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn kill(child: &mut Child) {
    // Our own child, by its handle.
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` (stdin closed, stdout and stderr collected) and waits at most `deadline`; a child
/// still running then is killed. `Err` only if it could not be started.
pub fn run(cmd: &mut Command, deadline: Duration) -> std::io::Result<Output> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= deadline => {
                timed_out = true;
                kill(&mut child);
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(_) => {
                kill(&mut child);
                break None;
            }
        }
    };
    // A grandchild (Chromium) holding the pipes open past the kill must not hang the test: give
    // the readers a bounded time, then go on without them.
    let collect = |h: JoinHandle<String>| {
        let until = Instant::now() + Duration::from_secs(5);
        while !h.is_finished() && Instant::now() < until {
            thread::sleep(Duration::from_millis(20));
        }
        if h.is_finished() {
            h.join().unwrap_or_default()
        } else {
            "(output still open after the child ended)".to_string()
        }
    };
    Ok(Output {
        status,
        timed_out,
        elapsed: start.elapsed(),
        stdout: collect(out),
        stderr: collect(err),
    })
}

/// Runs a script and panics with everything it printed unless it exited 0 and printed `OK`.
pub fn expect_ok(what: &str, cmd: &mut Command, deadline: Duration) -> Output {
    let out = run(cmd, deadline).unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.success() && out.stdout.lines().any(|l| l.trim() == "OK"),
        "{what} failed: {}",
        out.describe()
    );
    out
}

/// Runs a script that must notice a broken server: it has to exit 1 by itself (a check failed)
/// before the deadline, not crash on setup (exit 3) or be killed.
pub fn expect_check_failure(what: &str, cmd: &mut Command, deadline: Duration, needle: &str) -> Output {
    let out = run(cmd, deadline).unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        !out.timed_out && out.status.and_then(|s| s.code()) == Some(1),
        "{what}: expected the script to report a failed check (exit 1), got {}",
        out.describe()
    );
    assert!(
        out.stderr.contains(needle),
        "{what}: expected {needle:?} in its report, got {}",
        out.describe()
    );
    assert!(
        !out.stdout.lines().any(|l| l.trim() == "OK"),
        "{what}: printed OK anyway"
    );
    out
}

/// A third-party server started for a test: its port, parsed from the `LISTENING <port>` line
/// it prints when ready; killed (it is our child) when dropped.
pub struct ServerChild {
    pub port: u16,
    child: Child,
    stderr: Option<JoinHandle<String>>,
}

impl ServerChild {
    /// Starts `cmd` and waits at most `deadline` for its `LISTENING <port>` line.
    pub fn start(cmd: &mut Command, deadline: Duration) -> Result<ServerChild, String> {
        use std::io::BufRead;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line
                    .strip_prefix("LISTENING ")
                    .and_then(|p| p.trim().parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        match rx.recv_timeout(deadline) {
            Ok(port) => Ok(ServerChild {
                port,
                child,
                stderr: Some(stderr),
            }),
            Err(_) => {
                kill(&mut child);
                let err = stderr.join().unwrap_or_default();
                Err(format!("no LISTENING line within {deadline:?}; stderr: {}", err.trim()))
            }
        }
    }

    /// `ws://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        kill(&mut self.child);
        if let Some(h) = self.stderr.take() {
            let out = h.join().unwrap_or_default();
            if !out.trim().is_empty() && thread::panicking() {
                note(&format!("server stderr:\n{}", out.trim()));
            }
        }
    }
}
