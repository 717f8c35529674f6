//! The server's side of the opening handshake on arbitrary bytes (RFC 6455 §4.2).
//!
//! Input: see `wsloop_fuzz::Split` — a control byte and chunk lengths, then the request bytes.
//! Flag bit 0 (control bit 3) selects small limits (256-byte head, 8 headers) so the 431 paths
//! are reachable with short inputs.
//!
//! - `RequestParser::parse`, called after each read with every byte received so far (as the
//!   server does), gives the same outcome as one call with all the bytes: the same error, or
//!   the same request and head length.
//! - Every error's `response()` is an HTTP/1.1 4xx.
//! - A complete request goes through `check_upgrade`; the check log ends with a failure
//!   exactly when the check fails. A request that passes gets a `101` response whose
//!   `Sec-WebSocket-Accept` our own client accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsloop::handshake::client::{ClientHandshake, ResponseStatus};
use wsloop::handshake::{
    accept_key, check_upgrade, select_subprotocol, write_accept_response, HandshakeError, ParseStatus, Request,
    RequestLimits, RequestParser,
};
use wsloop_fuzz::Split;

#[derive(Debug, PartialEq)]
enum Outcome {
    Partial,
    Complete { request: Request, head_len: usize },
    Error(HandshakeError),
}

fn outcome(r: Result<ParseStatus, HandshakeError>) -> Outcome {
    match r {
        Ok(ParseStatus::Partial) => Outcome::Partial,
        Ok(ParseStatus::Complete { request, head_len }) => Outcome::Complete { request, head_len },
        Err(e) => Outcome::Error(e),
    }
}

fn assert_4xx(e: HandshakeError) {
    let response = e.response();
    assert!(response.starts_with(b"HTTP/1.1 4"), "{e:?}");
    assert!((400..500).contains(&e.status()));
    assert!(response.windows(4).any(|w| w == b"\r\n\r\n"));
}

fuzz_target!(|data: &[u8]| {
    let Some(split) = Split::new(data) else {
        return;
    };
    let limits = if split.flag(0) {
        RequestLimits {
            max_header_bytes: 256,
            max_headers: 8,
        }
    } else {
        RequestLimits::default()
    };
    let input = split.payload;

    let whole = outcome(RequestParser::new(limits).parse(input));

    let mut parser = RequestParser::new(limits);
    let mut received = 0;
    let mut pieces = outcome(parser.parse(&[]));
    for read in split.reads() {
        received += read.len();
        pieces = outcome(parser.parse(&input[..received]));
        if pieces != Outcome::Partial {
            break;
        }
    }
    assert_eq!(pieces, whole, "split at {:?}", split.lengths);

    match whole {
        Outcome::Partial => assert!(input.len() <= limits.max_header_bytes),
        Outcome::Error(e) => assert_4xx(e),
        Outcome::Complete { request, head_len } => {
            assert!(head_len <= input.len() && head_len <= limits.max_header_bytes);
            assert!(input[..head_len].ends_with(b"\r\n\r\n"));
            assert_eq!(request.head_bytes(), &input[..head_len]);
            let (result, log) = check_upgrade(&request);
            assert!(!log.is_empty());
            assert_eq!(result.is_ok(), log.iter().all(|c| c.passed));
            assert!(
                log.iter().rev().skip(1).all(|c| c.passed),
                "checks stop at the first failure"
            );
            match result {
                Err(e) => assert_4xx(e),
                Ok(upgrade) => {
                    let protocol = select_subprotocol(&upgrade.protocols, &["chat", "superchat"]);
                    let mut response = Vec::new();
                    write_accept_response(&mut response, upgrade.key.as_bytes(), protocol, &[]);
                    assert!(response.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
                    assert!(response.ends_with(b"\r\n\r\n"));
                    let accept = accept_key(upgrade.key.as_bytes());
                    assert!(response.windows(accept.len()).any(|w| w == accept.as_bytes()));

                    // Our client, holding the same key, must accept this response.
                    let nonce = decode_key(&upgrade.key);
                    let offered: Vec<&str> = upgrade.protocols.iter().map(String::as_str).collect();
                    let client = ClientHandshake::with_nonce(nonce, &offered);
                    if client.key() == upgrade.key {
                        match client.parse_response(&response) {
                            Ok(ResponseStatus::Accepted { protocol: p, head_len, .. }) => {
                                assert_eq!(head_len, response.len());
                                assert_eq!(p.as_deref(), protocol);
                            }
                            other => panic!("our client rejects our 101: {other:?}"),
                        }
                    }
                }
            }
        }
    }
});

/// The 16 bytes behind a key that passed validation (so it is 24 characters of base64).
fn decode_key(key: &str) -> [u8; 16] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = [0u8; 16];
    let mut i = 0;
    for &c in key.as_bytes().iter().take_while(|&&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("validated key is base64") as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            if i < 16 {
                out[i] = (bits >> nbits) as u8;
                i += 1;
            }
        }
    }
    out
}
