//! Running `wsloop serve` as a child process, the way a user (or an attacker) meets it: real
//! flags, real limits (`ulimit`), its own memory figures in /proc.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test: `$WSLOOP_BIN` (e.g. an older build, to show a test fails there),
/// else the one Cargo built for this test run.
pub fn wsloop_bin() -> String {
    std::env::var("WSLOOP_BIN").unwrap_or_else(|_| built_bin().to_string())
}

#[cfg(feature = "cli")]
fn built_bin() -> &'static str {
    env!("CARGO_BIN_EXE_wsloop")
}

/// Without the `cli` feature there is no binary; the tests that run it have
/// `required-features = ["cli"]` (Cargo.toml), the others share this module and must compile.
#[cfg(not(feature = "cli"))]
fn built_bin() -> &'static str {
    panic!("the wsloop binary needs the `cli` feature")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `wsloop serve`; killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything it wrote to stderr so far (its log).
    pub log: Arc<Mutex<String>>,
}

/// What to start.
#[derive(Default)]
pub struct Spawn<'a> {
    pub args: Vec<&'a str>,
    /// `ulimit -n` for the child.
    pub nofile: Option<u64>,
    pub env: Vec<(&'a str, &'a str)>,
    /// Leave stdout unread (a full pipe), instead of draining it.
    pub stdout_never_read: bool,
}

impl ServerProcess {
    /// Starts `wsloop serve --bind 127.0.0.1:<free port> ARGS...` and waits until it accepts.
    pub fn start(spec: Spawn<'_>) -> ServerProcess {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut script = String::new();
        if let Some(n) = spec.nofile {
            script.push_str(&format!("ulimit -n {n} && "));
        }
        script.push_str("exec \"$0\" serve --bind \"$1\" \"${@:2}\"");
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .arg(wsloop_bin())
            .arg(addr.to_string())
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start wsloop");
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        if let Some(mut stdout) = child.stdout.take() {
            if spec.stdout_never_read {
                // Keep the pipe open and never read it: writes to it block once it is full.
                std::mem::forget(stdout);
            } else {
                std::thread::spawn(move || {
                    let mut sink = [0u8; 4096];
                    while matches!(stdout.read(&mut sink), Ok(n) if n > 0) {}
                });
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("wsloop exited at start ({status}): {}", log.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "wsloop did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        ServerProcess { child, addr, log }
    }

    /// Peak resident memory (VmHWM) in bytes.
    pub fn peak_rss(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:") * 1024
    }

    /// Resident memory now (VmRSS) in bytes.
    pub fn rss(&self) -> u64 {
        rss_of(self.child.id())
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory now (VmRSS) of any process, in bytes (0 if it cannot be read).
pub fn rss_of(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:") * 1024
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Sends one raw request and reads until the server closes or `timeout` passes; returns what
/// came back.
pub fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

/// The status code of an HTTP response's first line.
pub fn status_of(response: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(response.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// GET /health on a fresh connection; returns (status, how long it took).
pub fn health(addr: SocketAddr, timeout: Duration) -> (Option<u16>, Duration) {
    let t = Instant::now();
    let got = raw_exchange(
        addr,
        b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        timeout,
    );
    (status_of(&got), t.elapsed())
}
