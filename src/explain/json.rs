//! The `/learn` page's data: the handshake and each exchange's frames as JSON, written by hand
//! (RFC 8259) from the same decoding as `wsloop explain`.

use super::frames::{split_frames, CloseFields, FrameView, Parsed};
use super::text::{bits, hex, hex_compact};
use crate::frame::LengthForm;
use crate::handshake::{accept_digest, accept_key, check_upgrade, Request, WEBSOCKET_GUID};
use crate::protocol::Role;

/// At most this many bytes of any one byte string go into the JSON (as hex or text); the rest
/// is counted in a `..._more` field. A message of megabytes stays a small JSON message.
const JSON_BYTES: usize = 1024;

/// Appends `s` as a JSON string, quotes included (RFC 8259 §7).
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            // Legal in JSON, but not in JavaScript source before ES2019; escaping costs nothing.
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON object being written: `{"a":1,"b":"x"}`.
struct Obj {
    out: String,
    empty: bool,
}

impl Obj {
    fn new() -> Obj {
        Obj {
            out: String::from("{"),
            empty: true,
        }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        push_str(&mut self.out, k);
        self.out.push(':');
        &mut self.out
    }

    fn str(&mut self, k: &str, v: &str) -> &mut Self {
        push_str(self.key(k), v);
        self
    }

    fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.str(k, v),
            None => self.raw(k, "null"),
        }
    }

    fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.raw(k, if v { "true" } else { "false" })
    }

    fn num(&mut self, k: &str, v: u64) -> &mut Self {
        self.raw(k, &v.to_string())
    }

    fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k).push_str(json);
        self
    }

    fn finish(&mut self) -> String {
        self.out.push('}');
        std::mem::take(&mut self.out)
    }
}

/// `[a,b,c]` from JSON values.
fn array(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    format!("[{}]", items.join(","))
}

/// Text of at most [`JSON_BYTES`] bytes, cut at a character boundary, and the bytes left out.
fn cut(s: &str) -> (&str, usize) {
    let mut end = s.len().min(JSON_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s.get(..end).unwrap_or_default(), s.len() - end)
}

/// Hex of at most [`JSON_BYTES`] bytes.
fn hex_cut(b: &[u8]) -> String {
    hex(b.get(..JSON_BYTES).unwrap_or(b))
}

/// The handshake as the server saw it: the request head, its headers, each check, the accept
/// computation and the response (RFC 6455 §4.2). The first message on `/learn`.
pub fn handshake_json(request: &Request, response: &[u8]) -> String {
    let (result, checks) = check_upgrade(request);
    let key = match &result {
        Ok(up) => Some(up.key.clone()),
        Err(_) => request
            .header("sec-websocket-key")
            .map(|k| String::from_utf8_lossy(k).trim().to_owned()),
    };
    let mut o = Obj::new();
    o.str("wsloop", "handshake");
    o.str("request", &String::from_utf8_lossy(request.head_bytes()));
    o.str("method", request.method());
    o.str("target", request.target());
    let headers = request.headers().map(|(n, v)| {
        let mut pair = String::from("[");
        push_str(&mut pair, n);
        pair.push(',');
        push_str(&mut pair, &String::from_utf8_lossy(v));
        pair.push(']');
        pair
    });
    o.raw("headers", &array(headers));
    let checks = checks.iter().map(|c| {
        let mut co = Obj::new();
        co.str("rule", c.rule).bool("passed", c.passed);
        co.finish()
    });
    o.raw("checks", &array(checks));
    o.bool("ok", result.is_ok());
    o.opt_str("error", result.as_ref().err().map(|e| e.rule()));
    o.opt_str("key", key.as_deref());
    o.str("guid", WEBSOCKET_GUID);
    o.opt_str(
        "key_guid",
        key.as_ref().map(|k| format!("{k}{WEBSOCKET_GUID}")).as_deref(),
    );
    o.opt_str(
        "sha1",
        key.as_ref().map(|k| hex(&accept_digest(k.as_bytes()))).as_deref(),
    );
    o.opt_str("accept", key.as_ref().map(|k| accept_key(k.as_bytes())).as_deref());
    o.str("response", &String::from_utf8_lossy(response));
    o.finish()
}

/// One exchange on `/learn`: the frames the server received (still masked, as on the wire) and
/// the frames it sent back, each decoded field by field (RFC 6455 §5.2).
///
/// At most [`MAX_FRAMES_EXPLAINED`] frames per direction are decoded (a message may come in
/// thousands of tiny fragments); `received_more` / `sent_more` count the frames left out, so
/// the output stays bounded whatever the peer sends.
pub fn frames_json(received_wire: &[u8], sent_wire: &[u8]) -> String {
    let mut o = Obj::new();
    o.str("wsloop", "frames");
    for (name, more, wire, reader) in [
        ("received", "received_more", received_wire, Role::Server),
        ("sent", "sent_more", sent_wire, Role::Client),
    ] {
        let frames = split_frames(wire);
        o.raw(
            name,
            &array(frames.iter().take(MAX_FRAMES_EXPLAINED).map(|v| frame_json(v, reader))),
        );
        o.num(more, frames.len().saturating_sub(MAX_FRAMES_EXPLAINED) as u64);
    }
    o.finish()
}

/// Frames decoded per direction by [`frames_json`].
pub const MAX_FRAMES_EXPLAINED: usize = 64;

/// One frame's fields; `reader` is the role of the side that receives it, for the rule check.
fn frame_json(view: &FrameView<'_>, reader: Role) -> String {
    let mut o = Obj::new();
    o.num("offset", view.offset as u64);
    o.num("length", view.wire.len() as u64);
    o.str("bytes", &hex_cut(view.wire));
    o.num("bytes_more", view.wire.len().saturating_sub(JSON_BYTES) as u64);
    if let Some(&b0) = view.wire.first() {
        o.str("byte0", &format!("{b0:02x}")).str("byte0_bits", &bits(b0));
    }
    if let Some(&b1) = view.wire.get(1) {
        o.str("byte1", &format!("{b1:02x}")).str("byte1_bits", &bits(b1));
    }
    let body = match &view.parsed {
        Parsed::Broken(e) => {
            o.num("missing", 0).str("error", &e.to_string());
            return o.finish();
        }
        Parsed::ShortHeader { needed } => {
            o.num("missing", *needed as u64).raw("error", "null");
            return o.finish();
        }
        Parsed::Frame(b) => b,
    };
    let h = &body.header;
    let hl = body.header_len();
    o.bool("fin", h.fin);
    o.bool("rsv1", h.rsv & 0b100 != 0);
    o.bool("rsv2", h.rsv & 0b010 != 0);
    o.bool("rsv3", h.rsv & 0b001 != 0);
    o.num("opcode", u64::from(h.opcode.as_u8()));
    o.str("opcode_name", h.opcode.name());
    o.bool("control", h.opcode.is_control());
    o.bool("mask", h.mask.is_some());
    o.num("len7", u64::from(view.wire.get(1).map_or(0, |b| b & 0x7F)));
    o.str(
        "length_form",
        match h.length_form {
            LengthForm::Short7 => "7-bit",
            LengthForm::Extended16 => "16-bit",
            LengthForm::Extended64 => "64-bit",
        },
    );
    let ext = h.length_form.extra_bytes();
    o.str("extended_length", &hex(view.wire.get(2..2 + ext).unwrap_or_default()));
    o.num("payload_len", h.payload_len);
    o.opt_str("masking_key", h.mask.map(|k| hex(&k)).as_deref());
    o.opt_str("masking_key_compact", h.mask.map(|k| hex_compact(&k)).as_deref());
    o.str("header", &hex(view.wire.get(..hl).unwrap_or_default()));
    o.opt_str("masked_payload", h.mask.map(|_| hex_cut(body.masked)).as_deref());
    o.str("payload", &hex_cut(&body.payload));
    o.num("payload_more", body.payload.len().saturating_sub(JSON_BYTES) as u64);
    match std::str::from_utf8(&body.payload) {
        Ok(t) if h.opcode != crate::frame::Opcode::Binary => {
            let (shown, left) = cut(t);
            o.str("text", shown).num("text_more", left as u64);
        }
        _ => {
            o.raw("text", "null");
        }
    }
    match body.close_fields() {
        Some(CloseFields::Code { code, reason }) => {
            o.num("close_code", u64::from(code.0)).str("close_name", code.name());
            o.opt_str("close_reason", std::str::from_utf8(reason).ok());
        }
        _ => {
            o.raw("close_code", "null");
        }
    }
    o.num("missing", body.missing);
    o.opt_str("error", body.rule_broken(reader).map(|e| e.to_string()).as_deref());
    o.finish()
}

#[cfg(test)]
mod tests {
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

    proptest! {
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
}
