//! Waiting in tests: polling for a condition with a bound, and running one test at a time.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it holds; fails the test if `within` passes first.
pub fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < until, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One lock per test binary (each compiles its own copy of this module): tests that measure
/// a server's memory or use up descriptors hold it so they do not run at the same time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the test binary's lock; a test that failed holding it does not poison the others.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
