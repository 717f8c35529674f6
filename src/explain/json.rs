//! The `/learn` page's data: the handshake and each exchange's frames as JSON, written by hand
//! (RFC 8259) from the same decoding as `wsloop explain`.

use super::frames::{split_frames, CloseFields, CompressedPart, FrameView, Outcome, Parsed, Reader, Verdict};
use super::negotiation;
use super::text::{bits, hex, hex_compact};
use crate::deflate::{DeflateParams, EMPTY_STORED_BLOCK};
use crate::frame::{LengthForm, RSV1};
use crate::handshake::deflate::DeflatePolicy;
use crate::handshake::{accept_digest, accept_key, check_upgrade, Request, WEBSOCKET_GUID};
use crate::json::push_str;
use crate::protocol::{OwnedEvent, Role};

/// At most this many bytes of any one byte string go into the JSON (as hex or text); the rest
/// is counted in a `..._more` field. A message of megabytes stays a small JSON message.
const JSON_BYTES: usize = 1024;

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

/// [`handshake_json`] plus `"extensions"`: the permessage-deflate negotiation replayed from
/// the request's `Sec-WebSocket-Extensions` under `policy`, the policy the server judged this
/// connection's offers by ([`Context::deflate_policy`](crate::server::Context::deflate_policy);
/// `None`: deflate off for it). For `/learn` (RFC 6455 §9.1, RFC 7692 §5, §7.1):
///
/// - `offered`: each `Sec-WebSocket-Extensions` header value as the client sent it;
/// - `mode`, `policy`: `shared`, `dedicated`, `custom` or `off`, and the policy in words;
/// - `offers`: each element in the client's order of preference with its `decision`
///   (`accepted`, `declined`, `not_deflate`, `not_needed`, `off`), `why`, the `answer` if
///   accepted, its `params` (name, value, note: what it asks and what became of it) and the
///   answer's `added` parameters (the server's own choices);
/// - `answer`: what the negotiation chose; `response_header`: the `Sec-WebSocket-Extensions`
///   of the 101 actually sent; `matches`: whether the two agree (a learner's check that the
///   replay is the server's real decision);
/// - `agreed`: the parameters and, per direction, what they mean, or `null`.
pub fn handshake_json_deflate(request: &Request, response: &[u8], policy: Option<&DeflatePolicy>) -> String {
    let mut json = handshake_json(request, response);
    if json.pop() != Some('}') {
        return json;
    }
    let offers = match check_upgrade(request).0 {
        Ok(up) => up.extensions,
        Err(_) => Vec::new(),
    };
    let n = negotiation::explain(&offers, policy);
    let mut o = Obj::new();
    let offered = request
        .headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, v)| {
            let mut s = String::new();
            push_str(&mut s, &String::from_utf8_lossy(v));
            s
        });
    o.raw("offered", &array(offered));
    o.str("mode", n.mode).str("policy", &n.policy_note);
    let param = |p: &negotiation::ParamNote| {
        let mut po = Obj::new();
        po.str("name", &p.name)
            .opt_str("value", p.value.as_deref())
            .str("note", &p.note);
        po.finish()
    };
    let offers = n.offers.iter().map(|on| {
        let mut oo = Obj::new();
        oo.str("offer", &on.offer)
            .str("decision", on.decision)
            .str("why", &on.why)
            .opt_str("answer", on.answer.as_deref());
        oo.raw("params", &array(on.params.iter().map(param)));
        oo.raw("added", &array(on.added.iter().map(param)));
        oo.finish()
    });
    o.raw("offers", &array(offers));
    let answer = n.chosen.as_ref().map(|(_, a)| a.as_str());
    let in_response = response_header(response, "sec-websocket-extensions");
    o.opt_str("answer", answer);
    o.opt_str("response_header", in_response.as_deref());
    o.bool("matches", answer == in_response.as_deref());
    match &n.chosen {
        Some((p, _)) => {
            let mut a = Obj::new();
            a.bool("server_no_context_takeover", p.server_no_context_takeover);
            a.bool("client_no_context_takeover", p.client_no_context_takeover);
            a.num("server_max_window_bits", u64::from(p.server_max_window_bits));
            a.num("client_max_window_bits", u64::from(p.client_max_window_bits));
            a.str(
                "server_to_client",
                &negotiation::direction_note(p.server_no_context_takeover, p.server_max_window_bits),
            );
            a.str(
                "client_to_server",
                &negotiation::direction_note(p.client_no_context_takeover, p.client_max_window_bits),
            );
            o.raw("agreed", &a.finish());
        }
        None => {
            o.raw("agreed", "null");
        }
    }
    json.push_str(",\"extensions\":");
    json.push_str(&o.finish());
    json.push('}');
    json
}

/// The value of header `name` in an HTTP response head (first one, trimmed), if present.
fn response_header(response: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(response);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// One exchange on `/learn`: the frames the server received (still masked, as on the wire) and
/// the frames it sent back, each decoded field by field (RFC 6455 §5.2).
///
/// At most [`MAX_FRAMES_EXPLAINED`] frames per direction are decoded (a message may come in
/// thousands of tiny fragments); `received_more` / `sent_more` count the frames left out, so
/// the output stays bounded whatever the peer sends.
pub fn frames_json(received_wire: &[u8], sent_wire: &[u8]) -> String {
    frames_json_deflate(received_wire, sent_wire, None)
}

/// [`frames_json`] for a connection that agreed permessage-deflate with `deflate` (RFC 7692);
/// with `None`, exactly [`frames_json`].
///
/// Each direction is read by the core's state machine with those parameters, so RSV1 is
/// allowed, and every frame gets `"compressed"` and `"deflate"`: for a frame carrying (part
/// of) a compressed message, its DEFLATE bytes, the tail `00 00 ff ff` the receiver appends
/// after the last fragment, and what the message inflates to (RFC 7692 §7.2.2). The `"text"`
/// of a compressed frame is `null`: its payload is DEFLATE data, the text is in
/// `"deflate"."inflated_text"`. A top-level `"deflate"` holds the agreed parameters and, per
/// direction, whether each message inflates on its own (`*_standalone`: no context takeover,
/// RFC 7692 §7.1.1). A message sent with context takeover may refer back to earlier ones that
/// these frames do not hold; it is then shown as compressed bytes only, with the reason in
/// `"deflate"."error"`, and not counted as a broken rule.
pub fn frames_json_deflate(received_wire: &[u8], sent_wire: &[u8], deflate: Option<&DeflateParams>) -> String {
    let mut o = Obj::new();
    o.str("wsloop", "frames");
    for (name, more, wire, reader) in [
        ("received", "received_more", received_wire, Role::Server),
        ("sent", "sent_more", sent_wire, Role::Client),
    ] {
        let frames = split_frames(wire);
        let shown = frames.iter().take(MAX_FRAMES_EXPLAINED);
        let items: Vec<String> = match deflate {
            None => shown.map(|v| frame_json(v, reader, None)).collect(),
            Some(params) => {
                // Received frames came from the client, sent ones from the server.
                let standalone = match reader {
                    Role::Server => params.client_no_context_takeover,
                    Role::Client => params.server_no_context_takeover,
                };
                let mut state = Reader::new(reader, Some(*params));
                shown
                    .map(|v| {
                        let verdict = state.feed(v);
                        frame_json(v, reader, Some((&verdict, standalone)))
                    })
                    .collect()
            }
        };
        o.raw(name, &array(items));
        o.num(more, frames.len().saturating_sub(MAX_FRAMES_EXPLAINED) as u64);
    }
    if let Some(p) = deflate {
        let mut d = Obj::new();
        d.bool("server_no_context_takeover", p.server_no_context_takeover);
        d.bool("client_no_context_takeover", p.client_no_context_takeover);
        d.num("server_max_window_bits", u64::from(p.server_max_window_bits));
        d.num("client_max_window_bits", u64::from(p.client_max_window_bits));
        d.bool("received_standalone", p.client_no_context_takeover);
        d.bool("sent_standalone", p.server_no_context_takeover);
        d.str("tail", &hex(&EMPTY_STORED_BLOCK));
        o.raw("deflate", &d.finish());
    }
    o.finish()
}

/// The `"deflate"` object of a frame that carries (part of) a compressed message.
fn compressed_json(payload: &[u8], part: &CompressedPart, verdict: &Verdict, standalone: bool) -> String {
    let mut d = Obj::new();
    d.bool("first", part.so_far == payload.len());
    d.bool("last", part.last);
    d.str("compressed", &hex_cut(payload));
    d.num("compressed_len", payload.len() as u64);
    d.num("compressed_more", payload.len().saturating_sub(JSON_BYTES) as u64);
    d.num("message_compressed_len", part.so_far as u64);
    d.opt_str("tail", part.last.then(|| hex(&EMPTY_STORED_BLOCK)).as_deref());
    d.bool("standalone", standalone);
    let inflated = match &verdict.outcome {
        Outcome::Event(OwnedEvent::Text(t)) if part.last => Some((t.as_bytes(), true)),
        Outcome::Event(OwnedEvent::Binary(b)) if part.last => Some((b.as_slice(), false)),
        _ => None,
    };
    match inflated {
        Some((bytes, is_text)) => {
            d.str("inflated", &hex_cut(bytes));
            d.num("inflated_len", bytes.len() as u64);
            d.num("inflated_more", bytes.len().saturating_sub(JSON_BYTES) as u64);
            match std::str::from_utf8(bytes) {
                Ok(t) if is_text => {
                    let (shown, left) = cut(t);
                    d.str("inflated_text", shown).num("inflated_text_more", left as u64);
                }
                _ => {
                    d.raw("inflated_text", "null");
                }
            }
        }
        None => {
            d.raw("inflated", "null").raw("inflated_len", "null");
        }
    }
    let why = match &verdict.outcome {
        Outcome::Failed(_) if !standalone => Some(
            "not inflated here: with context takeover a message may refer back to earlier ones, \
which only the connection's own inflater has seen (RFC 7692 §7.2.2)"
                .to_owned(),
        ),
        Outcome::Failed(e) => Some(e.to_string()),
        _ => None,
    };
    d.opt_str("error", why.as_deref());
    d.finish()
}

/// Frames decoded per direction by [`frames_json`].
pub const MAX_FRAMES_EXPLAINED: usize = 64;

/// One frame's fields; `reader` is the role of the side that receives it, for the rule check.
/// With `deflate` (the verdict of the reader with permessage-deflate, and whether this
/// direction's messages inflate on their own), also `"compressed"` and `"deflate"`.
fn frame_json(view: &FrameView<'_>, reader: Role, deflate: Option<(&Verdict, bool)>) -> String {
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
    let part = deflate.and_then(|(v, _)| v.compressed.as_ref());
    match std::str::from_utf8(&body.payload) {
        // A compressed payload is DEFLATE data; its text is what it inflates to.
        Ok(t) if h.opcode != crate::frame::Opcode::Binary && part.is_none() => {
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
    let Some((verdict, standalone)) = deflate else {
        o.opt_str("error", body.rule_broken(reader).map(|e| e.to_string()).as_deref());
        return o.finish();
    };
    let mut error = body.rule_broken_with(reader, RSV1).map(|e| e.to_string());
    match part {
        Some(part) => {
            o.bool("compressed", true);
            o.raw("deflate", &compressed_json(&body.payload, part, verdict, standalone));
            // Inflating failed: a broken rule when the message had to inflate on its own.
            if let (None, Outcome::Failed(e), true) = (&error, &verdict.outcome, standalone) {
                error = Some(e.to_string());
            }
        }
        None => {
            o.bool("compressed", false).raw("deflate", "null");
        }
    }
    o.opt_str("error", error.as_deref());
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

    /// A frame with RSV1 set when `compressed`, masked with `mask` if given.
    fn frame(
        fin: bool,
        opcode: crate::frame::Opcode,
        compressed: bool,
        mask: Option<[u8; 4]>,
        payload: &[u8],
    ) -> Vec<u8> {
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
}
