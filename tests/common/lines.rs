//! Reading a child process's output from a thread, so the test can wait on it with a timeout
//! and the child never blocks on a full pipe.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Each line `from` writes, as it comes; the channel closes at EOF. Reading goes on to EOF
/// after the receiver is dropped, so the writer is never left blocked.
pub fn lines_of(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Everything `from` writes, once it closes (what could be read if it was not UTF-8).
pub fn all_of(from: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(from).read_to_string(&mut s);
        s
    })
}
