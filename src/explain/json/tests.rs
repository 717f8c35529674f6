use super::*;
use crate::handshake::{write_accept_response, ParseStatus, RequestParser};
use proptest::prelude::*;

/// A strict JSON checker (RFC 8259), enough to prove the output parses. Returns the decoded
/// strings it met, in order, so escaping can be checked to round-trip.
struct Checker<'a> {
    s: &'a [u8],
    i: usize,
    strings: Vec<String>,
}

impl<'a> Checker<'a> {
    fn check(s: &'a str) -> Result<Vec<String>, String> {
        let mut c = Checker {
            s: s.as_bytes(),
            i: 0,
            strings: Vec::new(),
        };
        c.ws();
        c.value()?;
        c.ws();
        if c.i != c.s.len() {
            return Err(format!("trailing bytes at {}", c.i));
        }
        Ok(c.strings)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Result<(), String> {
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", b as char, self.i))
        }
    }

    fn lit(&mut self, w: &str) -> Result<(), String> {
        if self.s.get(self.i..self.i + w.len()) == Some(w.as_bytes()) {
            self.i += w.len();
            Ok(())
        } else {
            Err(format!("bad literal at {}", self.i))
        }
    }

    fn value(&mut self) -> Result<(), String> {
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.value()?;
                    self.ws();
                    if self.peek() == Some(b',') {
                        self.i += 1;
                    } else {
                        return self.eat(b'}');
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.value()?;
                    self.ws();
                    if self.peek() == Some(b',') {
                        self.i += 1;
                    } else {
                        return self.eat(b']');
                    }
                }
            }
            Some(b'"') => self.string(),
            Some(b't') => self.lit("true"),
            Some(b'f') => self.lit("false"),
            Some(b'n') => self.lit("null"),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                if self.peek() == Some(b'-') {
                    self.i += 1;
                }
                while matches!(self.peek(), Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')) {
                    self.i += 1;
                }
                let n = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                n.parse::<f64>().map(|_| ()).map_err(|e| format!("{n}: {e}"))
            }
            _ => Err(format!("unexpected byte at {}", self.i)),
        }
    }

    fn string(&mut self) -> Result<(), String> {
        self.eat(b'"')?;
        let mut out = String::new();
        let rest = std::str::from_utf8(&self.s[self.i..]).map_err(|e| e.to_string())?;
        let mut chars = rest.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    self.i += at + 1;
                    self.strings.push(out);
                    return Ok(());
                }
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('/') => out.push('/'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('u') => {
                        let hex: String = (0..4).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                        let v = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                        out.push(char::from_u32(v).ok_or("surrogate")?);
                    }
                    _ => return Err("bad escape".into()),
                },
                c if (c as u32) < 0x20 => return Err(format!("raw control character {:?}", c)),
                c => out.push(c),
            }
        }
        Err("unterminated string".into())
    }
}

fn rfc_request() -> Request {
    let text = "GET /learn HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nUser-Agent: \"quoted\\agent\"\r\n\r\n";
    match RequestParser::default().parse(text.as_bytes()) {
        Ok(ParseStatus::Complete { request, .. }) => request,
        other => panic!("{other:?}"),
    }
}

#[test]
fn handshake_json_is_valid_and_holds_the_accept_computation() {
    let req = rfc_request();
    let mut resp = Vec::new();
    write_accept_response(&mut resp, b"dGhlIHNhbXBsZSBub25jZQ==", None, &[]);
    let json = handshake_json(&req, &resp);
    let strings = Checker::check(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    assert!(json.starts_with(r#"{"wsloop":"handshake","#), "{json}");
    assert!(json.contains(r#""key":"dGhlIHNhbXBsZSBub25jZQ==""#));
    assert!(json.contains(r#""key_guid":"dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11""#));
    assert!(json.contains(r#""sha1":"b3 7a 4f 2c c0 62 4f 16 90 f6 46 06 cf 38 59 45 b2 be c4 ea""#));
    assert!(json.contains(r#""accept":"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=""#));
    assert!(json.contains(r#""ok":true"#));
    assert!(json.contains(r#"["Host","localhost:8080"]"#));
    // The quotes and backslash in a header value survive the escaping.
    assert!(strings.iter().any(|s| s == "\"quoted\\agent\""), "{strings:?}");
    assert!(strings
        .iter()
        .any(|s| s.starts_with("HTTP/1.1 101 Switching Protocols\r\n")));
    assert_eq!(json.matches(r#""passed":true"#).count(), 8);
}

#[test]
fn frames_json_explains_a_bounded_number_of_frames() {
    let mut wire = Vec::new();
    for _ in 0..1000 {
        wire.extend_from_slice(&[0x00, 0x80, 1, 2, 3, 4]); // empty masked continuation
    }
    let json = frames_json(&wire, &[]);
    Checker::check(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json.matches("\"offset\":").count(), MAX_FRAMES_EXPLAINED);
    assert!(json.contains(&format!("\"received_more\":{}", 1000 - MAX_FRAMES_EXPLAINED)));
    assert!(json.len() < 100 * 1024, "{} bytes", json.len());
}

#[test]
fn frames_json_for_the_rfc_hello_exchange() {
    let received = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    let sent = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
    let json = frames_json(&received, &sent);
    Checker::check(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    let expected_received = concat!(
        r#"{"offset":0,"length":11,"bytes":"81 85 37 fa 21 3d 7f 9f 4d 51 58","bytes_more":0,"#,
        r#""byte0":"81","byte0_bits":"1000 0001","byte1":"85","byte1_bits":"1000 0101","#,
        r#""fin":true,"rsv1":false,"rsv2":false,"rsv3":false,"opcode":1,"opcode_name":"text","#,
        r#""control":false,"mask":true,"len7":5,"length_form":"7-bit","extended_length":"","#,
        r#""payload_len":5,"masking_key":"37 fa 21 3d","masking_key_compact":"37fa213d","#,
        r#""header":"81 85 37 fa 21 3d","masked_payload":"7f 9f 4d 51 58","#,
        r#""payload":"48 65 6c 6c 6f","payload_more":0,"text":"Hello","text_more":0,"#,
        r#""close_code":null,"missing":0,"error":null}"#
    );
    assert_eq!(
        json,
        format!(
            r#"{{"wsloop":"frames","received":[{expected_received}],"received_more":0,"sent":[{}],"sent_more":0}}"#,
            concat!(
                r#"{"offset":0,"length":7,"bytes":"81 05 48 65 6c 6c 6f","bytes_more":0,"#,
                r#""byte0":"81","byte0_bits":"1000 0001","byte1":"05","byte1_bits":"0000 0101","#,
                r#""fin":true,"rsv1":false,"rsv2":false,"rsv3":false,"opcode":1,"opcode_name":"text","#,
                r#""control":false,"mask":false,"len7":5,"length_form":"7-bit","extended_length":"","#,
                r#""payload_len":5,"masking_key":null,"masking_key_compact":null,"#,
                r#""header":"81 05","masked_payload":null,"payload":"48 65 6c 6c 6f","payload_more":0,"#,
                r#""text":"Hello","text_more":0,"close_code":null,"missing":0,"error":null}"#
            )
        )
    );
}

#[test]
fn frames_json_reports_rules_close_codes_and_cut_frames() {
    // Unmasked text from a "client", a close with a reason, and a cut-off frame.
    let received = [0x81, 0x02, b'h', b'i'];
    let sent = [0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e', 0x82, 0x7e, 0x01];
    let json = frames_json(&received, &sent);
    Checker::check(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    assert!(json.contains(r#""error":"client frames must be masked (RFC 6455 §5.1; close code 1002)""#));
    assert!(json.contains(r#""close_code":1000,"close_name":"normal closure","close_reason":"bye""#));
    assert!(json.contains(r#""missing":1,"error":null"#), "{json}");
    assert_eq!(
        frames_json(&[], &[]),
        r#"{"wsloop":"frames","received":[],"received_more":0,"sent":[],"sent_more":0}"#
    );
}

#[test]
fn long_payloads_are_cut() {
    let mut wire = Vec::new();
    crate::frame::encode_frame(&mut wire, true, crate::frame::Opcode::Text, None, &[b'a'; 5000]);
    let json = frames_json(&[], &wire);
    Checker::check(&json).unwrap();
    assert!(json.contains(r#""payload_more":3976"#));
    assert!(json.contains(r#""text_more":3976"#));
    assert!(json.len() < 8000, "{}", json.len());
}

/// A frame with RSV1 set when `compressed`, masked with `mask` if given.
fn frame(fin: bool, opcode: crate::frame::Opcode, compressed: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    crate::frame::encode_frame(&mut v, fin, opcode, mask, payload);
    if compressed {
        v[0] |= 0x40;
    }
    v
}

/// RFC 7692 §7.2.3.1: "Hello" compressed, without the tail.
const HELLO_DEFLATED: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

fn shared() -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    }
}

#[test]
fn frames_json_deflate_without_params_is_frames_json() {
    let received = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    let sent = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
    assert_eq!(
        frames_json_deflate(&received, &sent, None),
        frames_json(&received, &sent)
    );
    assert!(!frames_json(&received, &sent).contains("deflate"));
}

#[test]
fn a_compressed_frame_shows_its_deflate_bytes_the_tail_and_the_message() {
    use crate::frame::Opcode;
    let received = frame(true, Opcode::Text, true, KEY, &HELLO_DEFLATED);
    let sent = frame(true, Opcode::Text, false, None, b"Hello");
    let json = frames_json_deflate(&received, &sent, Some(&shared()));
    Checker::check(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    let deflate = concat!(
        r#""compressed":true,"deflate":{"first":true,"last":true,"compressed":"f2 48 cd c9 c9 07 00","#,
        r#""compressed_len":7,"compressed_more":0,"message_compressed_len":7,"tail":"00 00 ff ff","#,
        r#""standalone":true,"inflated":"48 65 6c 6c 6f","inflated_len":5,"inflated_more":0,"#,
        r#""inflated_text":"Hello","inflated_text_more":0,"error":null},"error":null}"#
    );
    assert!(json.contains(deflate), "{json}");
    // The compressed payload is not text; RSV1 is allowed and is no broken rule.
    assert!(
        json.contains(r#""rsv1":true"#) && json.contains(r#""text":null"#),
        "{json}"
    );
    assert!(json.contains(r#""payload":"f2 48 cd c9 c9 07 00""#), "{json}");
    // The echo went out plain: RSV1 0, text shown as is.
    assert!(
        json.contains(r#""text":"Hello","text_more":0,"close_code":null,"missing":0,"compressed":false,"deflate":null,"error":null"#),
        "{json}"
    );
    assert!(
        json.ends_with(concat!(
            r#""deflate":{"server_no_context_takeover":true,"client_no_context_takeover":true,"#,
            r#""server_max_window_bits":15,"client_max_window_bits":15,"received_standalone":true,"#,
            r#""sent_standalone":true,"tail":"00 00 ff ff"}}"#
        )),
        "{json}"
    );
}

#[test]
fn compressed_bytes_that_happen_to_be_utf8_are_not_shown_as_text() {
    use crate::frame::Opcode;
    // "a" deflated is 4a 04 00: "J\u{4}\u{0}" as UTF-8, but DEFLATE data all the same.
    let received = frame(true, Opcode::Text, true, KEY, &[0x4a, 0x04, 0x00]);
    let json = frames_json_deflate(&received, &[], Some(&shared()));
    assert!(json.contains(r#""text":null,"#), "{json}");
    assert!(json.contains(r#""inflated_text":"a","#), "{json}");
}

#[test]
fn a_fragmented_compressed_message_inflates_at_its_last_fragment() {
    use crate::frame::Opcode;
    // RFC 7692 §7.2.3.2's fragments, masked, with a Ping between them.
    let mut received = frame(false, Opcode::Text, true, KEY, &[0xf2, 0x48, 0xcd]);
    received.extend(frame(true, Opcode::Ping, false, KEY, b"p"));
    received.extend(frame(true, Opcode::Continuation, false, KEY, &[0xc9, 0xc9, 0x07, 0x00]));
    let json = frames_json_deflate(&received, &[], Some(&shared()));
    Checker::check(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    assert!(
        json.contains(r#""first":true,"last":false,"compressed":"f2 48 cd""#),
        "{json}"
    );
    assert!(
        json.contains(r#""tail":null,"standalone":true,"inflated":null,"inflated_len":null"#),
        "{json}"
    );
    assert!(
        json.contains(r#""opcode_name":"ping""#) && json.contains(r#""text":"p""#),
        "{json}"
    );
    assert!(
        json.contains(r#""first":false,"last":true,"compressed":"c9 c9 07 00","compressed_len":4"#),
        "{json}"
    );
    assert!(
        json.contains(r#""message_compressed_len":7,"tail":"00 00 ff ff""#),
        "{json}"
    );
    assert!(json.contains(r#""inflated_text":"Hello""#), "{json}");
    assert_eq!(json.matches(r#""compressed":true"#).count(), 2, "{json}");
    assert!(!json.contains(r#""error":""#), "{json}");
}

/// The `"error"` of each frame in one direction of a frames JSON, in order.
fn frame_errors(json: &str) -> Vec<Option<String>> {
    let mut errors = Vec::new();
    for part in json.split(r#""error":"#).skip(1) {
        if part.starts_with("null") {
            errors.push(None);
        } else {
            let end = part[1..].find('"').unwrap_or(0);
            errors.push(Some(part[1..1 + end].to_owned()));
        }
    }
    errors
}

#[test]
fn rules_still_hold_with_deflate() {
    use crate::frame::Opcode;
    // RSV1 on a continuation (RFC 7692 §6): the first frame is fine, the second broken.
    let mut received = frame(false, Opcode::Text, true, KEY, &[0xf2, 0x48, 0xcd]);
    received.extend(frame(true, Opcode::Continuation, true, KEY, &[0xc9, 0xc9, 0x07, 0x00]));
    let json = frames_json_deflate(&received, &[], Some(&shared()));
    Checker::check(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    let errors = frame_errors(&json);
    assert_eq!(errors.len(), 3, "{json}"); // two frames' deflate objects have one, the first frame's
    assert!(
        errors[2]
            .as_deref()
            .is_some_and(|e| e.starts_with("RSV1 (compressed) on a continuation frame")),
        "{errors:?}"
    );
    // A compressed Ping, and RSV2 (no extension defines it).
    for (wire, want) in [
        (
            frame(true, Opcode::Ping, true, KEY, b"p"),
            "RSV1 (compressed) on a control frame",
        ),
        (
            frame(true, Opcode::Text, false, KEY, b"x")
                .iter()
                .enumerate()
                .map(|(i, b)| if i == 0 { b | 0x20 } else { *b })
                .collect(),
            "RSV bits 010 set without an extension",
        ),
    ] {
        let json = frames_json_deflate(&wire, &[], Some(&shared()));
        let errors = frame_errors(&json);
        assert!(
            errors.last().cloned().flatten().is_some_and(|e| e.starts_with(want)),
            "{want}: {json}"
        );
    }
}

#[test]
fn inflating_fails_as_a_rule_only_when_the_message_had_to_stand_alone() {
    use crate::frame::Opcode;
    // RFC 7692 §7.2.3.2: the second "Hello" refers back to the first (context takeover).
    let second = frame(true, Opcode::Text, true, None, &[0xf2, 0x00, 0x11, 0x00, 0x00]);
    let mut sent = frame(true, Opcode::Text, true, None, &HELLO_DEFLATED);
    sent.extend(&second);
    let takeover = DeflateParams::default();
    let json = frames_json_deflate(&[], &sent, Some(&takeover));
    Checker::check(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    // Both inflate here: the reader has seen the first message.
    assert_eq!(json.matches(r#""inflated_text":"Hello""#).count(), 2, "{json}");
    assert!(json.contains(r#""sent_standalone":false"#), "{json}");
    // The second alone cannot be inflated without the first, and that is no broken rule.
    let json = frames_json_deflate(&[], &second, Some(&takeover));
    assert!(json.contains(r#""standalone":false,"inflated":null"#), "{json}");
    let errors = frame_errors(&json);
    assert!(
        errors[0]
            .as_deref()
            .is_some_and(|e| e.contains("only the connection's own inflater has seen")),
        "{json}"
    );
    assert_eq!(errors[1], None, "{json}");
    // The same bytes where each message must stand alone: a broken message.
    let json = frames_json_deflate(&[], &second, Some(&shared()));
    assert!(json.contains(r#""standalone":true,"inflated":null"#), "{json}");
    let errors = frame_errors(&json);
    assert!(
        errors[1]
            .as_deref()
            .is_some_and(|e| e.starts_with("invalid compressed data")),
        "{json}"
    );
    assert_eq!(errors[0], errors[1], "{json}");
    // Each direction by its own parameter: the client's messages stand alone here, the
    // server's may refer back (RFC 7692 §7.1.1).
    let mixed = DeflateParams {
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let received = frame(true, Opcode::Text, true, KEY, &[0xf2, 0x00, 0x11, 0x00, 0x00]);
    let json = frames_json_deflate(&received, &second, Some(&mixed));
    assert!(
        json.contains(r#""received_standalone":true,"sent_standalone":false"#),
        "{json}"
    );
    let errors = frame_errors(&json);
    assert!(
        errors[1]
            .as_deref()
            .is_some_and(|e| e.starts_with("invalid compressed data")),
        "{json}"
    );
    assert!(
        errors[2]
            .as_deref()
            .is_some_and(|e| e.contains("only the connection's own inflater")),
        "{json}"
    );
    assert_eq!(errors[3], None, "{json}");
}

#[test]
fn handshake_json_deflate_replays_the_negotiation() {
    let text = "GET /learn HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    let Ok(ParseStatus::Complete { request, .. }) = RequestParser::default().parse(text.as_bytes()) else {
        panic!()
    };
    let answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    let mut resp = Vec::new();
    crate::handshake::write_accept_response_with_extensions(
        &mut resp,
        b"dGhlIHNhbXBsZSBub25jZQ==",
        None,
        Some(answer),
        &[],
    );
    let policy = DeflatePolicy::default();
    let json = handshake_json_deflate(&request, &resp, Some(&policy));
    Checker::check(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    assert!(json.starts_with(&handshake_json(&request, &resp)[..handshake_json(&request, &resp).len() - 1]));
    assert!(
        json.contains(r#""offered":["permessage-deflate; client_max_window_bits"],"mode":"shared""#),
        "{json}"
    );
    assert!(json.contains(r#""decision":"accepted","#), "{json}");
    assert!(
        json.contains(&format!(
            r#""answer":"{answer}","response_header":"{answer}","matches":true"#
        )),
        "{json}"
    );
    assert!(
        json.contains(r#""added":[{"name":"server_no_context_takeover","value":null"#),
        "{json}"
    );
    assert!(json.contains(r#""server_to_client":"no context takeover"#), "{json}");
    // Judged under another policy than the one that answered: the page says they differ.
    let dedicated = DeflatePolicy::context_takeover(15);
    let json = handshake_json_deflate(&request, &resp, Some(&dedicated));
    assert!(
        json.contains(r#""mode":"dedicated""#) && json.contains(r#""matches":false"#),
        "{json}"
    );
    // Off for this connection: every offer declined, and a 101 without the header matches.
    let mut plain = Vec::new();
    write_accept_response(&mut plain, b"dGhlIHNhbXBsZSBub25jZQ==", None, &[]);
    let json = handshake_json_deflate(&request, &plain, None);
    assert!(
        json.contains(r#""mode":"off""#) && json.contains(r#""decision":"off""#),
        "{json}"
    );
    assert!(
        json.contains(r#""answer":null,"response_header":null,"matches":true,"agreed":null"#),
        "{json}"
    );
}

proptest! {
    #[test]
    fn any_bytes_give_valid_deflate_frames_json(a in proptest::collection::vec(any::<u8>(), 0..300),
                                                b in proptest::collection::vec(any::<u8>(), 0..300),
                                                takeover in any::<bool>()) {
        let params = if takeover { DeflateParams::default() } else { shared() };
        let json = frames_json_deflate(&a, &b, Some(&params));
        Checker::check(&json).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn any_string_round_trips_through_the_escaping(s in any::<String>()) {
        let mut out = String::new();
        push_str(&mut out, &s);
        let strings = Checker::check(&out).map_err(TestCaseError::fail)?;
        prop_assert_eq!(strings, vec![s]);
    }

    #[test]
    fn any_bytes_give_valid_frames_json(a in proptest::collection::vec(any::<u8>(), 0..300),
                                        b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let json = frames_json(&a, &b);
        Checker::check(&json).map_err(TestCaseError::fail)?;
    }
}
