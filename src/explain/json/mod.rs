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
/// At most `MAX_FRAMES_EXPLAINED` frames per direction are decoded (a message may come in
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
mod tests;
