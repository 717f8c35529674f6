//! The client against scripted servers (a `std::net::TcpListener` in the test) that answer the
//! handshake wrongly, break framing rules, hang up, or never answer: each gets its own error,
//! naming the rule (RFC 6455 §4.1 for the handshake), within the configured timeouts. Also what
//! the client puts on the wire: the request (RFC 6455 §4.1 items 1–10), masked frames, the close
//! handshake in the order RFC 6455 §7.1 asks for.

mod common;

use common::scripted::{serve, server_ws, silent, Conn};
use std::io::Read;
use std::time::{Duration, Instant};
use wsloop::client::{Client, ClientEvent, CloseStatus, Error, Phase};
use wsloop::handshake::accept_key;
use wsloop::handshake::client::ClientHandshakeError as H;
use wsloop::protocol::OwnedEvent;
use wsloop::{CloseCode, ProtocolError};

fn client(url: &str) -> Result<Client, Error> {
    Client::builder(url).handshake_timeout(Duration::from_secs(5)).connect()
}

/// The error a client gets from a server that answers the request with `respond`.
fn handshake_error(respond: impl FnOnce(&mut Conn) + Send + 'static) -> Error {
    let server = serve(move |mut c| {
        respond(&mut c);
        c.wait_eof();
    });
    let err = client(&server.url("/")).expect_err("the handshake must fail");
    server.join();
    err
}

fn response_without(c: &Conn, line: &str) -> Vec<u8> {
    let head = String::from_utf8(c.accept_head("")).unwrap();
    assert!(head.contains(line));
    head.replace(line, "").into_bytes()
}

#[test]
fn a_status_other_than_101_is_reported_with_the_status_headers_and_body() {
    let e = handshake_error(|c| c.write(b"HTTP/1.1 403 Forbidden\r\nX-Why: origin\r\nContent-Length: 2\r\n\r\nno"));
    let Error::Refused(r) = &e else {
        panic!("expected a refusal, got {e:?}")
    };
    assert_eq!((r.status, r.reason.as_str()), (403, "Forbidden"));
    assert_eq!(r.header("x-why"), Some("origin"));
    assert_eq!(r.body, b"no");
    assert!(r.complete);
    let text = e.to_string();
    assert!(
        text.contains("403 Forbidden") && text.contains("RFC 6455 §4.1") && text.contains("\"no\""),
        "{text}"
    );
}

#[test]
fn a_chunked_refusal_is_read_to_its_last_chunk() {
    let e = handshake_error(|c| {
        c.write(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n");
        std::thread::sleep(Duration::from_millis(50));
        c.write(b"4\r\nslow\r\n5\r\n down\r\n0\r\n\r\n");
    });
    let Error::Refused(r) = &e else {
        panic!("expected a refusal, got {e:?}")
    };
    assert_eq!(r.status, 429);
    assert_eq!(r.header("Retry-After"), Some("7"));
    assert_eq!(r.body_text(), "slow down");
    assert!(r.complete);
}

#[test]
fn a_refusal_without_a_length_ends_at_the_close() {
    let server = serve(|mut c| {
        c.write(b"HTTP/1.0 503 Service Unavailable\r\n\r\ntry later");
        // Dropping the connection ends the body (RFC 9112 §6.3 rule 8).
    });
    let e = client(&server.url("/")).expect_err("refused");
    server.join();
    let Error::Refused(r) = &e else {
        panic!("expected a refusal, got {e:?}")
    };
    assert_eq!((r.status, r.body_text().as_ref(), r.complete), (503, "try later", true));
}

#[test]
fn a_refusal_whose_body_never_ends_is_returned_at_the_handshake_timeout() {
    let server = serve(|mut c| {
        c.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 1000\r\n\r\npartial");
        c.wait_eof();
    });
    let started = Instant::now();
    let e = Client::builder(server.url("/"))
        .handshake_timeout(Duration::from_millis(500))
        .connect()
        .expect_err("refused");
    let waited = started.elapsed();
    server.join();
    let Error::Refused(r) = &e else {
        panic!("expected a refusal, got {e:?}")
    };
    assert_eq!((r.status, r.body.as_slice(), r.complete), (401, &b"partial"[..], false));
    assert!(
        waited < Duration::from_secs(5),
        "bounded by the handshake timeout: {waited:?}"
    );
}

#[test]
fn a_response_without_upgrade_websocket_fails() {
    let e = handshake_error(|c| {
        let r = response_without(c, "Upgrade: websocket\r\n");
        c.write(&r)
    });
    assert!(matches!(e, Error::Handshake(H::UpgradeNotWebSocket)), "{e:?}");
    assert!(e.to_string().contains("check 2"), "{e}");
}

#[test]
fn a_response_without_connection_upgrade_fails() {
    let e = handshake_error(|c| {
        let r = response_without(c, "Connection: Upgrade\r\n");
        c.write(&r)
    });
    assert!(matches!(e, Error::Handshake(H::ConnectionNotUpgrade)), "{e:?}");
}

#[test]
fn a_wrong_accept_value_fails() {
    let e = handshake_error(|c| {
        let right = accept_key(c.key().as_bytes());
        let head = String::from_utf8(c.accept_head("")).unwrap();
        // The accept for a different key: well-formed, but not for ours.
        let wrong = accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
        c.write(head.replace(&right, &wrong).as_bytes())
    });
    assert!(matches!(e, Error::Handshake(H::WrongAccept)), "{e:?}");
    assert!(e.to_string().contains("check 4"), "{e}");
}

#[test]
fn an_extension_the_client_did_not_offer_fails() {
    let e = handshake_error(|c| {
        let head = c.accept_head("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        c.write(&head)
    });
    assert!(
        matches!(&e, Error::Handshake(H::UnofferedExtension(x)) if x == "permessage-deflate"),
        "{e:?}"
    );
    assert!(e.to_string().contains("check 5"), "{e}");
}

#[test]
fn a_subprotocol_the_client_did_not_offer_fails() {
    let server = serve(|mut c| {
        let head = c.accept_head("Sec-WebSocket-Protocol: mqtt\r\n");
        c.write(&head);
        c.wait_eof();
    });
    let e = Client::builder(server.url("/")).protocol("chat").connect().unwrap_err();
    server.join();
    assert!(
        matches!(&e, Error::Handshake(H::UnofferedProtocol(p)) if p == "mqtt"),
        "{e:?}"
    );
    assert!(e.to_string().contains("check 6"), "{e}");
}

#[test]
fn an_invalid_deflate_answer_fails() {
    let server = serve(|mut c| {
        let head = c.accept_head("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n");
        c.write(&head);
        c.wait_eof();
    });
    let e = Client::builder(server.url("/")).deflate(true).connect().unwrap_err();
    server.join();
    assert!(matches!(e, Error::Handshake(H::InvalidDeflateAnswer(_))), "{e:?}");
    assert!(e.to_string().contains("RFC 7692"), "{e}");
}

#[test]
fn a_server_that_closes_mid_handshake_is_named() {
    const PARTIAL: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: web";
    let e = handshake_error(|c| {
        c.write(PARTIAL);
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
    });
    assert!(
        matches!(e, Error::HandshakeClosed { received } if received == PARTIAL.len()),
        "{e:?}"
    );
    let e = handshake_error(|c| {
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
    });
    assert!(matches!(e, Error::HandshakeClosed { received: 0 }), "{e:?}");
    assert!(e.to_string().contains("without answering"), "{e}");
}

#[test]
fn a_response_head_over_16_kib_fails() {
    let e = handshake_error(|c| {
        c.write(b"HTTP/1.1 101 Switching Protocols\r\n");
        for _ in 0..20 {
            c.write(format!("X-Filler: {}\r\n", "a".repeat(1000)).as_bytes());
        }
    });
    assert!(
        matches!(e, Error::Handshake(H::Malformed(why)) if why.contains("16 KiB")),
        "{e:?}"
    );
}

#[test]
fn a_server_that_is_not_http_fails_at_once() {
    let started = Instant::now();
    let e = handshake_error(|c| c.write(b"SSH-2.0-OpenSSH_9.2\r\n"));
    assert!(matches!(e, Error::Handshake(H::Malformed(_))), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited for a head that never ends"
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    let server = silent(Duration::from_secs(3));
    let started = Instant::now();
    let e = Client::builder(server.url("/"))
        .handshake_timeout(Duration::from_millis(300))
        .connect()
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, Error::Timeout(Phase::Handshake)), "{e:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn connecting_is_bounded_by_the_connect_timeout() {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never routed. Depending on the machine the attempt
    // times out or fails at once; either way it must not outlast the timeout.
    let started = Instant::now();
    let e = Client::builder("ws://192.0.2.1:9/")
        .connect_timeout(Duration::from_millis(300))
        .connect()
        .unwrap_err();
    assert!(
        matches!(e, Error::Timeout(Phase::Connect) | Error::Connect { .. }),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn refused_urls_and_tls_fail_before_any_connection() {
    // Without the `tls` feature wss:// is refused before connecting; with it, the TCP connect
    // to a closed port fails first.
    #[cfg(not(feature = "tls"))]
    {
        assert!(matches!(
            Client::connect("wss://127.0.0.1:1/"),
            Err(Error::TlsNotSupported)
        ));
        assert!(Client::connect("wss://127.0.0.1:1/")
            .unwrap_err()
            .to_string()
            .contains("TLS is not supported by this build"));
    }
    #[cfg(feature = "tls")]
    assert!(matches!(
        Client::connect("wss://127.0.0.1:1/"),
        Err(Error::Connect { .. })
    ));
    assert!(matches!(Client::connect("http://127.0.0.1:1/"), Err(Error::Url(_))));
    assert!(matches!(Client::connect("ws://127.0.0.1:1/#x"), Err(Error::Url(_))));
    let e = Client::builder("ws://127.0.0.1:1/")
        .header("Host", "evil")
        .connect()
        .unwrap_err();
    assert!(matches!(e, Error::InvalidHeader { .. }), "{e:?}");
    let e = Client::builder("ws://127.0.0.1:1/")
        .header("X-A", "1\r\nX-B: 2")
        .connect()
        .unwrap_err();
    assert!(matches!(e, Error::InvalidHeader { .. }), "{e:?}");
    assert!(matches!(
        Client::connect("ws://127.0.0.1:1/"),
        Err(Error::Connect { .. })
    ));
}

#[test]
fn a_masked_server_frame_fails_the_connection_with_1002() {
    let server = serve(|mut c| {
        c.accept();
        // "Hi", masked as only a client may (RFC 6455 §5.1).
        c.write(&[0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2]);
        let mut ws = server_ws();
        // Our server role refuses nothing here: it only reads the client's Close.
        let close = c.next_event(&mut ws);
        std::thread::sleep(Duration::from_millis(100));
        close
    });
    let mut client = client(&server.url("/")).unwrap();
    let e = client.recv().unwrap_err();
    assert!(matches!(e, Error::Protocol(ProtocolError::MaskedServerFrame)), "{e:?}");
    assert_eq!(e.close_code(), Some(CloseCode::PROTOCOL_ERROR));
    assert!(e.to_string().contains("RFC 6455 §5.1"), "{e}");
    match server.join() {
        Some(Ok(OwnedEvent::Close(Some((code, _))))) => assert_eq!(code, CloseCode::PROTOCOL_ERROR),
        other => panic!("the server expected the client's Close 1002, got {other:?}"),
    }
    assert!(matches!(client.recv(), Err(Error::Closed)));
}

#[test]
fn invalid_utf8_fails_with_1007() {
    let server = serve(|mut c| {
        c.accept();
        c.write(&[0x81, 0x02, 0xc3, 0x28]);
        c.next_event(&mut server_ws())
    });
    let mut client = client(&server.url("/")).unwrap();
    let e = client.recv().unwrap_err();
    assert!(matches!(e, Error::Protocol(ProtocolError::InvalidUtf8)), "{e:?}");
    match server.join() {
        Some(Ok(OwnedEvent::Close(Some((code, _))))) => assert_eq!(code, CloseCode::INVALID_PAYLOAD),
        other => panic!("{other:?}"),
    }
}

#[test]
fn frames_in_the_same_packet_as_the_101_are_not_lost() {
    let server = serve(|mut c| {
        let mut bytes = c.accept_head("");
        bytes.extend_from_slice(&[0x81, 0x05, b'f', b'i', b'r', b's', b't']);
        c.write(&bytes);
        c.wait_eof();
    });
    let mut client = client(&server.url("/")).unwrap();
    assert_eq!(client.recv().unwrap(), ClientEvent::Text("first".into()));
    drop(client);
    server.join();
}

#[test]
fn pings_are_answered_with_the_same_payload_and_reported() {
    let server = serve(|mut c| {
        c.accept();
        c.write(&[0x89, 0x02, b'h', b'i']);
        let mut ws = server_ws();
        let pong = c.next_event(&mut ws);
        c.write(&[0x88, 0x02, 0x03, 0xe8]);
        let close = c.next_event(&mut ws);
        (pong, close)
    });
    let mut client = client(&server.url("/")).unwrap();
    assert_eq!(client.recv().unwrap(), ClientEvent::Ping(b"hi".to_vec()));
    assert_eq!(
        client.recv().unwrap(),
        ClientEvent::Close(Some(CloseStatus {
            code: CloseCode::NORMAL,
            reason: String::new()
        }))
    );
    let (pong, close) = server.join();
    assert_eq!(pong, Some(Ok(OwnedEvent::Pong(b"hi".to_vec()))));
    assert_eq!(
        close,
        Some(Ok(OwnedEvent::Close(Some((CloseCode::NORMAL, String::new())))))
    );
}

#[test]
fn every_frame_the_client_sends_is_masked_with_a_fresh_key() {
    let server = serve(|mut c| {
        c.accept();
        let mut raw = Vec::new();
        let mut chunk = [0u8; 1024];
        while raw.len() < 3 * 11 {
            let n = c.stream.read(&mut chunk).unwrap();
            assert!(n > 0);
            raw.extend_from_slice(&chunk[..n]);
        }
        raw
    });
    let mut client = client(&server.url("/")).unwrap();
    for _ in 0..3 {
        client.send_text("Hello").unwrap();
    }
    let raw = server.join();
    let keys: Vec<&[u8]> = raw.chunks(11).map(|f| &f[2..6]).collect();
    for frame in raw.chunks(11) {
        assert_eq!(frame[0], 0x81);
        assert_eq!(frame[1], 0x80 | 5, "MASK bit set (RFC 6455 §5.3)");
    }
    assert!(keys[0] != keys[1] && keys[1] != keys[2], "{keys:02x?}");
}

#[test]
fn a_read_timeout_leaves_the_connection_usable() {
    let server = serve(|mut c| {
        c.accept();
        std::thread::sleep(Duration::from_millis(700));
        c.write(&[0x81, 0x04, b'l', b'a', b't', b'e']);
        c.wait_eof();
    });
    let mut client = Client::builder(server.url("/"))
        .read_timeout(Some(Duration::from_millis(200)))
        .connect()
        .unwrap();
    let started = Instant::now();
    let e = client.recv().unwrap_err();
    assert!(matches!(e, Error::Timeout(Phase::Read)) && e.is_recoverable(), "{e:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    let event = loop {
        match client.recv() {
            Err(Error::Timeout(Phase::Read)) => continue,
            other => break other,
        }
    };
    assert_eq!(event.unwrap(), ClientEvent::Text("late".into()));
    drop(client);
    server.join();
}

#[test]
fn recv_timeout_bounds_the_whole_wait_and_keeps_a_cut_message() {
    let server = serve(|mut c| {
        c.accept();
        // Half a frame, then the rest after the caller's timeout: the wait is bounded by the
        // call's timeout, not the (long) read timeout, and the half is kept.
        c.write(&[0x81, 0x04, b'l', b'a']);
        std::thread::sleep(Duration::from_millis(600));
        c.write(b"te");
        c.wait_eof();
    });
    let mut client = Client::builder(server.url("/"))
        .read_timeout(Some(Duration::from_secs(30)))
        .connect()
        .unwrap();
    let started = Instant::now();
    let e = client.recv_timeout(Duration::from_millis(150)).unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(e, Error::Timeout(Phase::Read)) && e.is_recoverable(), "{e:?}");
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(
        waited < Duration::from_secs(5),
        "bounded by the call, not the read timeout: {waited:?}"
    );
    let e = client.recv_timeout(Duration::ZERO).unwrap_err();
    assert!(matches!(e, Error::Timeout(Phase::Read)), "{e:?}");
    let event = client.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(event, ClientEvent::Text("late".into()));
    drop(client);
    server.join();
}

#[test]
fn a_connection_dropped_without_close_is_1006() {
    let server = serve(|mut c| {
        c.accept();
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
    });
    let mut client = client(&server.url("/")).unwrap();
    server.join();
    let e = client.recv().unwrap_err();
    assert!(matches!(e, Error::ClosedAbnormally), "{e:?}");
    assert_eq!(e.close_code(), Some(CloseCode::ABNORMAL));
    assert!(matches!(client.send_text("x"), Err(Error::Closed)));
}

#[test]
fn close_waits_for_the_servers_close_and_for_it_to_close_tcp_first() {
    let server = serve(|mut c| {
        c.accept();
        let mut ws = server_ws();
        let close = c.next_event(&mut ws); // the core queues the Close reply itself
                                           // RFC 6455 §7.1.1: the server closes TCP first; the client must still be there.
        c.stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut byte = [0u8; 1];
        let client_hung_up = matches!(c.stream.read(&mut byte), Ok(0));
        (close, client_hung_up)
    });
    let mut client = client(&server.url("/")).unwrap();
    let started = Instant::now();
    let status = client.close(CloseCode(4000), "bye").unwrap();
    assert_eq!(
        status,
        Some(CloseStatus {
            code: CloseCode(4000),
            reason: String::new()
        })
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let (close, client_hung_up) = server.join();
    assert_eq!(
        close,
        Some(Ok(OwnedEvent::Close(Some((CloseCode(4000), "bye".into())))))
    );
    assert!(!client_hung_up, "the client closed TCP before the server did");
    assert!(matches!(client.recv(), Err(Error::Closed)));
}

#[test]
fn close_gives_up_after_the_close_timeout() {
    let server = serve(|mut c| {
        c.accept();
        // Reads the client's Close and never answers.
        let mut chunk = [0u8; 64];
        let _ = c.stream.read(&mut chunk);
        std::thread::sleep(Duration::from_secs(2));
    });
    let mut client = Client::builder(server.url("/"))
        .close_timeout(Duration::from_millis(300))
        .connect()
        .unwrap();
    let started = Instant::now();
    let e = client.close(CloseCode::NORMAL, "").unwrap_err();
    assert!(matches!(e, Error::Timeout(Phase::Close)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    server.join();
}

#[test]
fn a_server_initiated_close_is_echoed_and_reported() {
    let server = serve(|mut c| {
        c.accept();
        c.write(&[0x88, 0x05, 0x0f, 0xa2, b'b', b'y', b'e']); // 4002 "bye"
        let reply = c.next_event(&mut server_ws());
        std::thread::sleep(Duration::from_millis(100));
        reply
    });
    let mut client = client(&server.url("/")).unwrap();
    assert_eq!(
        client.recv().unwrap(),
        ClientEvent::Close(Some(CloseStatus {
            code: CloseCode(4002),
            reason: "bye".into()
        }))
    );
    assert_eq!(
        server.join(),
        Some(Ok(OwnedEvent::Close(Some((CloseCode(4002), String::new())))))
    );
    // Closing again is not an error: the handshake is over, here is what the server said.
    assert_eq!(
        client.close(CloseCode::NORMAL, "").unwrap().map(|s| s.code),
        Some(CloseCode(4002))
    );
}

#[test]
fn the_request_carries_host_path_origin_headers_and_offers() {
    let server = serve(|mut c| {
        c.accept();
        let r = &c.request;
        let got = (
            r.target().to_owned(),
            r.header_str("host").map(str::to_owned),
            r.header_str("origin").map(str::to_owned),
            r.header_str("authorization").map(str::to_owned),
            r.header_str("sec-websocket-protocol").map(str::to_owned),
            r.header_str("sec-websocket-extensions").map(str::to_owned),
            r.header_str("sec-websocket-version").map(str::to_owned),
            c.rest.clone(),
        );
        c.wait_eof();
        got
    });
    let port = server.addr.port();
    let client = Client::builder(server.url("/chat?room=a%20b&x=%2F"))
        .origin("http://example.com")
        .header("Authorization", "Bearer t0ken")
        .protocol("chat.v2")
        .protocol("chat.v1")
        .deflate(true)
        .connect()
        .unwrap();
    drop(client);
    let (target, host, origin, auth, protocols, extensions, version, early) = server.join();
    assert_eq!(target, "/chat?room=a%20b&x=%2F");
    assert_eq!(host, Some(format!("127.0.0.1:{port}")));
    assert_eq!(origin.as_deref(), Some("http://example.com"));
    assert_eq!(auth.as_deref(), Some("Bearer t0ken"));
    assert_eq!(protocols.as_deref(), Some("chat.v2, chat.v1"));
    assert_eq!(
        extensions.as_deref(),
        Some("permessage-deflate; client_max_window_bits")
    );
    assert_eq!(version.as_deref(), Some("13"));
    assert!(early.is_empty(), "the client sent data before the 101 (RFC 6455 §4.1)");
}

#[test]
fn ipv6_literal_urls_connect_with_a_bracketed_host_header() {
    let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("ipv6_literal_urls_connect_with_a_bracketed_host_header: skipped: no IPv6 loopback");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(buf).unwrap()
    });
    let _ = Client::builder(format!("ws://[::1]:{port}/v6"))
        .handshake_timeout(Duration::from_millis(300))
        .connect();
    let request = thread.join().unwrap();
    assert!(request.starts_with("GET /v6 HTTP/1.1\r\n"), "{request}");
    assert!(request.contains(&format!("\r\nHost: [::1]:{port}\r\n")), "{request}");
}
