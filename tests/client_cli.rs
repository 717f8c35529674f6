//! `wsloop client` as a user runs it: the binary, its stdin and stdout, and its exit status
//! (0 after a close with 1000/1001, 1 when it could not connect, 2 for bad flags, 3 for any
//! other close code), against the demo server and scripted servers.

mod common;

use common::demo_server;
use common::process::wsloop_bin;
use common::scripted::{serve, server_ws};
use std::io::Write;
use std::process::{Command, Stdio};
use wsloop::protocol::OwnedEvent;
use wsloop::CloseCode;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `wsloop client ARGS...` with `stdin` as its input. The timeouts passed keep any run
/// short, so a broken client fails the test instead of hanging it.
fn client(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(wsloop_bin())
        .arg("client")
        .args(["--connect-timeout", "5", "--read-timeout", "5", "--close-timeout", "2"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wsloop client");
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn stdin_lines_go_out_as_text_and_the_echo_is_printed() {
    let server = demo_server(|s| s);
    let url = format!("ws://{}/echo", server.local_addr());
    let run = client(&[&url], "one\ntwo ✓\r\n\nthree".as_bytes());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "one\ntwo ✓\n\nthree\n");
    assert!(run.stderr.contains("[closed: 1000"), "{}", run.stderr);
}

#[test]
fn send_count_sends_n_times_and_waits_for_n_replies() {
    let server = demo_server(|s| s);
    let url = format!("ws://{}/echo", server.local_addr());
    let run = client(&["--send", "hi", "--count", "50", &url], b"");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "hi\n".repeat(50));
    let run = client(&["--send", "abc", "--binary", &url], b"");
    assert_eq!(run.stdout, "[binary, 3 bytes] 61 62 63\n");
}

#[test]
fn binary_stdin_goes_out_as_binary_messages() {
    let server = demo_server(|s| s);
    let url = format!("ws://{}/echo", server.local_addr());
    let run = client(&["--binary", &url], &[0, 1, 0xfe, 0xff]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "[binary, 4 bytes] 00 01 fe ff\n");
}

#[test]
fn echo_mode_sends_each_message_back_as_it_came_until_the_server_closes() {
    let server = serve(|mut c| {
        c.accept();
        c.write(&[0x81, 0x02, b'h', b'i']);
        c.write(&[0x82, 0x03, 1, 2, 3]);
        c.write(&[0x01, 0x01, b'a', 0x80, 0x01, b'b']); // "ab" in two fragments
        let mut ws = server_ws();
        let got: Vec<_> = (0..3).map(|_| c.next_event(&mut ws)).collect();
        c.write(&[0x88, 0x04, 0x0f, 0xa1, b'o', b'k']); // close 4001 "ok"
        let reply = c.next_event(&mut ws);
        (got, reply)
    });
    let run = client(&["--echo", &server.url("/runCase?case=1&agent=wsloop")], b"");
    let (got, reply) = server.join();
    let got: Vec<OwnedEvent> = got.into_iter().map(|e| e.unwrap().unwrap()).collect();
    assert_eq!(
        got,
        [
            OwnedEvent::Text("hi".into()),
            OwnedEvent::Binary(vec![1, 2, 3]),
            OwnedEvent::Text("ab".into())
        ]
    );
    assert_eq!(
        reply.unwrap().unwrap(),
        OwnedEvent::Close(Some((CloseCode(4001), String::new())))
    );
    assert_eq!(run.code, Some(3), "close 4001 is not a normal close: {}", run.stderr);
    assert!(run.stderr.contains("4001"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "--echo prints nothing: {}", run.stdout);
}

#[test]
fn headers_origin_and_protocol_flags_reach_the_server_and_listen_prints() {
    let server = serve(|mut c| {
        let r = &c.request;
        let seen = format!(
            "{}|{}|{}|{}|{}",
            r.header_str("authorization").unwrap_or("-"),
            r.header_str("x-trace").unwrap_or("-"),
            r.header_str("origin").unwrap_or("-"),
            r.header_str("sec-websocket-protocol").unwrap_or("-"),
            r.header_str("sec-websocket-extensions").unwrap_or("-"),
        );
        let head = c.accept_head("Sec-WebSocket-Protocol: b\r\n");
        c.write(&head);
        let mut frame = vec![0x81, seen.len() as u8];
        frame.extend_from_slice(seen.as_bytes());
        c.write(&frame);
        c.write(&[0x88, 0x02, 0x03, 0xe9]); // 1001
        c.next_event(&mut server_ws())
    });
    let run = client(
        &[
            "--listen",
            "-H",
            "Authorization: Bearer t0ken",
            "-H",
            "X-Trace:1",
            "--origin",
            "http://o.example",
            "--protocol",
            "a",
            "--protocol",
            "b",
            "--deflate",
            &server.url("/"),
        ],
        b"",
    );
    server.join();
    assert_eq!(run.code, Some(0), "1001 counts as a normal close: {}", run.stderr);
    assert_eq!(
        run.stdout,
        "Bearer t0ken|1|http://o.example|a, b|permessage-deflate; client_max_window_bits\n"
    );
    assert!(run.stderr.contains("subprotocol \"b\""), "{}", run.stderr);
}

#[test]
fn exit_statuses_for_failures() {
    let server = demo_server(|s| s);
    // The demo has no /nowhere: 404 instead of 101.
    let run = client(&[&format!("ws://{}/nowhere", server.local_addr())], b"");
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("404 Not Found"), "{}", run.stderr);
    // A refusal is printed as the server sent it: status, headers, body.
    let refusing = serve(|mut c| {
        c.write(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"chat\"\r\nContent-Length: 14\r\n\r\ntoken required");
        c.wait_eof();
    });
    let run = client(&[&refusing.url("/")], b"");
    refusing.join();
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    for line in [
        "401 Unauthorized",
        "< WWW-Authenticate: Bearer realm=\"chat\"",
        "< token required",
    ] {
        assert!(run.stderr.contains(line), "{line:?} missing from:\n{}", run.stderr);
    }
    let run = client(&["wss://127.0.0.1:1/"], b"");
    assert_eq!(run.code, Some(1));
    #[cfg(not(feature = "tls"))]
    assert!(
        run.stderr.contains("TLS is not supported by this build"),
        "{}",
        run.stderr
    );
    #[cfg(feature = "tls")]
    assert!(run.stderr.contains("cannot connect to 127.0.0.1:1"), "{}", run.stderr);
    let run = client(&["-H", "no-colon", "ws://127.0.0.1:1/"], b"");
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let masked = serve(|mut c| {
        c.accept();
        c.write(&[0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1]);
        c.next_event(&mut server_ws())
    });
    let run = client(&["--listen", &masked.url("/")], b"");
    let close = masked.join();
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("server frames must not be masked"),
        "{}",
        run.stderr
    );
    assert!(matches!(
        close,
        Some(Ok(OwnedEvent::Close(Some((CloseCode::PROTOCOL_ERROR, _)))))
    ));
}

#[test]
fn trace_shows_the_handshake_and_each_frame_masked_one_way_and_not_the_other() {
    let server = demo_server(|s| s);
    let url = format!("ws://{}/echo", server.local_addr());
    let run = client(&["--trace", "--send", "Hello", &url], b"");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &run.stdout;
    assert!(out.contains("-> GET /echo HTTP/1.1"), "{out}");
    assert!(out.contains("<- HTTP/1.1 101 Switching Protocols"), "{out}");
    assert!(out.contains("✓ matches (RFC 6455 §4.1)"), "{out}");
    assert!(out.contains("-> text FIN=1 RSV=000 opcode=0x1 MASK=1 len=5"), "{out}");
    assert!(out.contains("unmask  48 65 6c 6c 6f"), "{out}");
    assert!(out.contains("<- text FIN=1 RSV=000 opcode=0x1 MASK=0 len=5"), "{out}");
    assert!(out.contains("-> close") && out.contains("<- close"), "{out}");
    assert!(!out.contains('✗'), "a clean exchange shows no broken rule: {out}");
}
