//! The two text renderers of decoded frames (RFC 6455 §5.2–§5.7, RFC 7692 §6–§7): the full
//! field-by-field explanation of `wsloop explain frame`, and the few lines per frame of the
//! `--trace` printers. Every fact they state comes from the `decode` module, which runs the
//! core; here it is only put into words.

use std::fmt::Write as _;

use super::decode::{split_frames, Body, CloseFields, FrameView, Outcome, Parsed, Readers, Verdict};
use crate::deflate::EMPTY_STORED_BLOCK;
use crate::explain::text::{
    bits, bits_of, byte_table, hex, hex_lines, hex_short, pad, plural, quote, quote_short, readable_text, span,
    SHOW_BYTES,
};
use crate::explain::{Direction, Style};
use crate::frame::{FrameHeader, LengthForm, Opcode, RSV1};
use crate::protocol::{check_header, OwnedEvent, Role};

fn length_form_name(form: LengthForm) -> &'static str {
    match form {
        LengthForm::Short7 => "7-bit",
        LengthForm::Extended16 => "16-bit",
        LengthForm::Extended64 => "64-bit",
    }
}

/// The masking rule for a frame with this header, said neutrally: who may send it, and what
/// the other side does if the wrong side sends it (RFC 6455 §5.1). The rule's wording is the
/// core's, from [`check_header`].
fn masking_note(out: &mut String, h: &FrameHeader, style: Style) {
    let plain = FrameHeader { rsv: 0, ..*h };
    let (who, other, role) = match h.mask {
        Some(_) => (
            "MASK=1, so a client sent this: clients mask every frame, servers never do (§5.1).",
            "A client requires MASK=0 on every frame from a server; from a server this frame breaks a rule:",
            Role::Client,
        ),
        None => (
            "MASK=0, so a server sent this: servers never mask, clients always do (§5.1).",
            "A server requires MASK=1 on every frame from a client; from a client this frame breaks a rule:",
            Role::Server,
        ),
    };
    let rule = check_header(&plain, role, 0)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "  {} {who}", style.field("Masking:"));
    let _ = writeln!(out, "  {other}\n    {rule}");
}

/// One line about a frame, for replies and the trace: `pong "Hello"`, `close 1000 (normal
/// closure) "bye"`, `binary, 256 bytes`.
fn summary(view: &FrameView<'_>) -> String {
    let body = match &view.parsed {
        Parsed::Frame(b) => b,
        Parsed::Broken(e) => return format!("broken frame: {e}"),
        Parsed::ShortHeader { needed } => return format!("incomplete header, {needed} more bytes needed"),
    };
    let name = body.header.opcode.name();
    if let Some(close) = body.close_fields() {
        return match close {
            CloseFields::Empty => "close, no status code".into(),
            CloseFields::OneByte => "close, one-byte body".into(),
            CloseFields::Code { code, reason } => match std::str::from_utf8(reason) {
                Ok("") => format!("close {code}"),
                Ok(r) => format!("close {code} {}", quote_short(r, SHOW_BYTES)),
                Err(_) => format!("close {code}, reason not UTF-8: {}", hex_short(reason, SHOW_BYTES)),
            },
        };
    }
    let p = &body.payload;
    let mut s = if p.is_empty() {
        format!("{name}, empty")
    } else if let Some(t) = text_of(body) {
        format!("{name} {}", quote_short(t, SHOW_BYTES))
    } else {
        format!("{name}, {} {}", p.len(), plural(p.len() as u64, "byte", "bytes"))
    };
    if body.missing > 0 {
        let _ = write!(s, " (+{} bytes missing)", body.missing);
    }
    s
}

/// The payload as text, when it should be shown as text: a text frame's valid UTF-8, or any
/// other payload that is readable UTF-8.
fn text_of<'b>(body: &'b Body<'_>) -> Option<&'b str> {
    match body.header.opcode {
        Opcode::Text => std::str::from_utf8(&body.payload).ok(),
        Opcode::Binary => None,
        _ => readable_text(&body.payload),
    }
}

// ---------------------------------------------------------------------------------------------
// `wsloop explain frame`

/// The full explanation of every frame in `input`; with `deflate`, as read by endpoints that
/// agreed permessage-deflate (RFC 7692).
pub(crate) fn explain(input: &[u8], deflate: bool, style: Style) -> String {
    let frames = split_frames(input);
    let mut readers = Readers::new(deflate);
    let mut out = String::new();
    let n = frames.len();
    let _ = writeln!(
        out,
        "{} {}, {} {} {}",
        input.len(),
        plural(input.len() as u64, "byte", "bytes"),
        n,
        plural(n as u64, "frame", "frames"),
        style.dim(if deflate {
            "(RFC 6455 §5.2 base framing; permessage-deflate agreed, RFC 7692)"
        } else {
            "(RFC 6455 §5.2 base framing)"
        })
    );
    for (i, view) in frames.iter().enumerate() {
        out.push('\n');
        let verdict = readers.feed(view);
        let compressed = verdict.compressed.is_some();
        explain_one(&mut out, i + 1, n, view, deflate, compressed, style);
        explain_compressed(&mut out, view, &verdict, style);
        explain_verdict(&mut out, view, &verdict, style);
        let end = view.offset + view.wire.len();
        if matches!(verdict.outcome, Outcome::Failed(_)) && end < input.len() {
            let _ = writeln!(
                out,
                "  It reads nothing more from this connection; what follows is decoded only to show it."
            );
        }
    }
    out
}

fn explain_one(
    out: &mut String,
    index: usize,
    total: usize,
    view: &FrameView<'_>,
    deflate: bool,
    compressed: bool,
    style: Style,
) {
    let n = view.wire.len();
    let mut title = format!("Frame {index} of {total}");
    match &view.parsed {
        Parsed::Frame(b) if b.missing > 0 => {
            let whole = b.header_len() as u64 + b.header.payload_len;
            let _ = write!(title, " (cut short: {n} of its {whole} bytes are here");
        }
        _ => {
            let _ = write!(title, " ({n} {}", plural(n as u64, "byte", "bytes"));
        }
    }
    if total > 1 {
        let _ = write!(title, ", from offset {} of the input", view.offset);
    }
    title.push(')');
    let _ = writeln!(out, "{}", style.head(&title));
    hex_lines(out, "  ", view.wire, SHOW_BYTES, style);
    out.push('\n');

    let header = match &view.parsed {
        Parsed::Frame(b) => Some(&b.header),
        _ => None,
    };
    if let Some(&b0) = view.wire.first() {
        explain_byte0(out, b0, header, deflate, style);
    }
    if let Some(&b1) = view.wire.get(1) {
        explain_byte1(out, b1, header, style);
    }
    match &view.parsed {
        Parsed::Broken(_) => {
            let _ = writeln!(
                out,
                "\n  The header breaks a rule here, so the parser stops: the rest is not decoded."
            );
        }
        Parsed::ShortHeader { needed } => {
            let _ = writeln!(
                out,
                "\n  {} the header needs at least {needed} more {} (RFC 6455 §5.2)",
                style.warn("Truncated:"),
                plural(*needed as u64, "byte", "bytes")
            );
        }
        Parsed::Frame(body) => explain_body(out, view, body, compressed, style),
    }
}

fn explain_byte0(out: &mut String, b0: u8, h: Option<&FrameHeader>, deflate: bool, style: Style) {
    // The fields come from the core's header when it decoded; from the bits themselves when the
    // header broke a rule before it was whole.
    let fin = h.map_or(b0 & 0x80 != 0, |h| h.fin);
    let rsv = h.map_or((b0 >> 4) & 0x7, |h| h.rsv);
    let op = h.map_or(b0 & 0x0F, |h| h.opcode.as_u8());
    let _ = writeln!(
        out,
        "  {}  {}  {}",
        style.field("byte 0"),
        style.wire(&format!("{b0:02x}")),
        bits(b0)
    );
    let fin_note = if fin {
        "final: this frame ends its message (§5.4)"
    } else {
        "not final: more fragments of this message follow (§5.4)"
    };
    field_line(out, &bits_of(b0, 0x80), "FIN", &u8::from(fin).to_string(), fin_note);
    let opcode = Opcode::from_u8(op);
    for (i, name) in ["RSV1", "RSV2", "RSV3"].iter().enumerate() {
        let set = rsv & (0b100 >> i) != 0;
        let note = match (set, i, rsv) {
            (_, 0, _) if deflate => rsv1_with_deflate(set, opcode, style),
            (true, _, _) if deflate => style.bad("✗ set, but permessage-deflate defines only RSV1 (§5.2)"),
            (true, _, _) => style.bad("✗ set, but no extension was negotiated (§5.2)"),
            (false, 0, 0) => "reserved: 0 unless a negotiated extension defines them (§5.2)".to_owned(),
            _ => String::new(),
        };
        field_line(out, &bits_of(b0, 0x40 >> i), name, &u8::from(set).to_string(), &note);
    }
    let kind = match Opcode::from_u8(op) {
        Some(o) if o.is_control() => format!("{}: a control frame (§5.5)", o.name()),
        Some(Opcode::Continuation) => "continuation: continues a fragmented message (§5.4)".to_owned(),
        Some(o) => format!("{}: a data frame (§5.6)", o.name()),
        None if op < 0x8 => style.bad("✗ reserved (§5.2: 0x3-0x7 are reserved for future data frames)"),
        None => style.bad("✗ reserved (§5.2: 0xB-0xF are reserved for future control frames)"),
    };
    field_line(out, &bits_of(b0, 0x0F), "opcode", &format!("0x{op:x}"), &kind);
}

/// What RSV1 means once permessage-deflate is agreed: the "Per-Message Compressed" bit, on a
/// data message's first frame only (RFC 7692 §6).
fn rsv1_with_deflate(set: bool, opcode: Option<Opcode>, style: Style) -> String {
    match (set, opcode) {
        (true, Some(Opcode::Text | Opcode::Binary)) => {
            style.ok("compressed: this message's payload is DEFLATE data (RFC 7692 §6)")
        }
        (true, Some(Opcode::Continuation)) => {
            style.bad("✗ compressed bit on a continuation: only a first frame carries it (RFC 7692 §6)")
        }
        (true, _) => style.bad("✗ compressed bit on a control frame: never compressed (RFC 7692 §6)"),
        (false, Some(Opcode::Text | Opcode::Binary)) => {
            "not compressed: permessage-deflate allows plain messages too (RFC 7692 §6)".to_owned()
        }
        (false, Some(Opcode::Continuation)) => {
            "0 on every continuation; the first frame said whether the message is compressed".to_owned()
        }
        (false, _) => "0: control frames are never compressed (RFC 7692 §6)".to_owned(),
    }
}

/// The DEFLATE view of a frame that carries part of a compressed message (RFC 7692 §7.2.2):
/// the compressed bytes, the tail the receiver appends, and what they inflate to.
fn explain_compressed(out: &mut String, view: &FrameView<'_>, v: &Verdict, style: Style) {
    let (Some(part), Parsed::Frame(body)) = (&v.compressed, &view.parsed) else {
        return;
    };
    let head = style.field("Per-message deflate");
    let p = &body.payload;
    let first = part.so_far == p.len();
    let whose = if first && part.last {
        "the whole compressed message".to_owned()
    } else {
        format!("{} of the message's {} compressed bytes so far", p.len(), part.so_far)
    };
    let _ = writeln!(
        out,
        "\n  {head} {}: the payload is DEFLATE data, {whose}",
        style.dim("(RFC 7692 §7.2.2)")
    );
    let _ = writeln!(out, "    compressed  {}", style.wire(&hex_short(p, SHOW_BYTES)));
    if !part.last {
        let _ = writeln!(
            out,
            "    {}",
            style.dim("inflated as it arrives; the tail 00 00 ff ff goes after the last fragment")
        );
        return;
    }
    let _ = writeln!(
        out,
        "    + tail      {}  {}",
        style.wire(&hex(&EMPTY_STORED_BLOCK)),
        style.dim("appended by the receiver: the sender cut it off (§7.2.1)")
    );
    let inflated = match &v.outcome {
        Outcome::Event(OwnedEvent::Text(t)) => Some((t.as_bytes(), Some(t.as_str()))),
        Outcome::Event(OwnedEvent::Binary(b)) => Some((b.as_slice(), readable_text(b))),
        _ => None,
    };
    if let Some((bytes, as_text)) = inflated {
        let shown = match as_text {
            Some(t) => format!("  {}", quote_short(t, SHOW_BYTES)),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "    inflated    {}{shown}",
            style.ok(&hex_short(bytes, SHOW_BYTES))
        );
        let _ = writeln!(
            out,
            "    {}",
            style.dim(&format!(
                "{} compressed {} became {} {}",
                part.so_far,
                plural(part.so_far as u64, "byte", "bytes"),
                bytes.len(),
                plural(bytes.len() as u64, "byte", "bytes")
            ))
        );
    }
}

fn explain_byte1(out: &mut String, b1: u8, h: Option<&FrameHeader>, style: Style) {
    let masked = h.map_or(b1 & 0x80 != 0, |h| h.mask.is_some());
    let len7 = b1 & 0x7F;
    let _ = writeln!(
        out,
        "  {}  {}  {}",
        style.field("byte 1"),
        style.wire(&format!("{b1:02x}")),
        bits(b1)
    );
    let mask_note = if masked {
        "masked: a 4-byte masking key follows the length (§5.3)"
    } else {
        "not masked: no masking key, the payload is sent as is"
    };
    field_line(
        out,
        &bits_of(b1, 0x80),
        "MASK",
        &u8::from(masked).to_string(),
        mask_note,
    );
    let len_note = match len7 {
        126 => "16-bit form: the length is in the next 2 bytes (§5.2)",
        127 => "64-bit form: the length is in the next 8 bytes (§5.2)",
        _ => "7-bit form: 0-125 is the payload length itself (§5.2)",
    };
    field_line(out, &bits_of(b1, 0x7F), "length", &len7.to_string(), len_note);
}

fn field_line(out: &mut String, bits: &str, name: &str, value: &str, note: &str) {
    let line = format!("          {bits}  {name:<7}{value:<5}{note}");
    let _ = writeln!(out, "{}", line.trim_end());
}

fn explain_body(out: &mut String, view: &FrameView<'_>, body: &Body<'_>, compressed: bool, style: Style) {
    let h = &body.header;
    let ext = h.length_form.extra_bytes();
    let mut at = 2;
    let mut rows: Vec<(String, String, String)> = Vec::new();
    if ext > 0 {
        let bytes = view.wire.get(at..at + ext).unwrap_or_default();
        rows.push((
            span(at, ext),
            format!(
                "{} extended length = {}",
                length_form_name(h.length_form),
                h.payload_len
            ),
            hex(bytes),
        ));
        at += ext;
    }
    if let Some(key) = h.mask {
        rows.push((span(at, 4), "masking key (§5.3)".to_owned(), hex(&key)));
        at += 4;
    }
    let present = body.masked.len();
    let n = h.payload_len;
    let what = match (h.mask.is_some(), n) {
        (_, 0) => "payload: none".to_owned(),
        (true, n) => format!("payload, {n} {}, masked", plural(n, "byte", "bytes")),
        (false, n) => format!("payload, {n} {}", plural(n, "byte", "bytes")),
    };
    let place = match (n, present) {
        (0, _) => String::new(),
        (_, 0) => format!("from byte {at}"),
        _ => span(at, present),
    };
    rows.push((place, what, String::new()));
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    for (place, what, bytes) in &rows {
        let place = style.field(&pad(place, w0));
        if bytes.is_empty() {
            let _ = writeln!(out, "  {place}  {what}");
        } else {
            let _ = writeln!(out, "  {place}  {}  {}", pad(what, w1), style.wire(bytes));
        }
    }
    if body.missing > 0 {
        let _ = writeln!(
            out,
            "\n  {} the payload is {n} bytes but only {present} are here: {} {} missing",
            style.warn("Truncated:"),
            body.missing,
            plural(body.missing, "byte is", "bytes are")
        );
    }

    if !body.masked.is_empty() {
        out.push('\n');
        let letters = matches!(h.opcode, Opcode::Text | Opcode::Close) || readable_text(&body.payload).is_some();
        let letters = (letters && !compressed).then_some(body.payload.as_slice());
        if let Some(key) = h.mask {
            let keys: Vec<u8> = (0..present).map(|i| key.get(i % 4).copied().unwrap_or(0)).collect();
            let _ = writeln!(
                out,
                "  {} {}",
                style.field("Unmasking"),
                style.dim("(§5.3): payload[i] = masked[i] XOR key[i mod 4]")
            );
            byte_table(
                out,
                "    ",
                &[
                    ("masked", body.masked, Style::wire),
                    ("key", &keys, Style::dim),
                    ("payload", &body.payload, Style::ok),
                ],
                letters,
                style,
            );
        } else {
            let _ = writeln!(out, "  {}", style.field("Payload bytes"));
            byte_table(out, "    ", &[("payload", &body.payload, Style::ok)], letters, style);
        }
    }
    if compressed {
        let _ = writeln!(
            out,
            "  {} {} of DEFLATE data: the message is what they inflate to (below)",
            style.field("Payload:"),
            plural(
                body.payload.len() as u64,
                "1 byte",
                &format!("{} bytes", body.payload.len())
            )
        );
    } else {
        explain_payload_meaning(out, body, style);
    }
    out.push('\n');
    masking_note(out, h, style);
}

fn explain_payload_meaning(out: &mut String, body: &Body<'_>, style: Style) {
    let label = style.field("Payload:");
    if let Some(close) = body.close_fields() {
        match close {
            CloseFields::Empty => {
                let _ = writeln!(
                    out,
                    "  {label} empty: a Close without status code. The receiving application sees\n  \
1005, a code that is never sent on the wire (§5.5.1, §7.4.1)."
                );
            }
            CloseFields::OneByte => {
                let _ = writeln!(out, "  {label} one byte, too short for the 2-byte status code (§5.5.1)");
            }
            CloseFields::Code { code, reason } => {
                let hi_lo = hex(body.payload.get(..2).unwrap_or_default());
                let _ = writeln!(
                    out,
                    "  {} {hi_lo} = {} ({})  {}",
                    style.field("Close code:"),
                    code.0,
                    code.name(),
                    style.dim("(the first 2 payload bytes, big-endian, §5.5.1)")
                );
                if !code.is_valid_on_wire() {
                    let _ = writeln!(
                        out,
                        "  {}",
                        style.bad(&format!("✗ {} may not be sent on the wire (§7.4.1, §7.4.2)", code.0))
                    );
                }
                let reason_text = match std::str::from_utf8(reason) {
                    Ok("") => "none".to_owned(),
                    Ok(r) => format!(
                        "{} ({} {} of UTF-8)",
                        quote_short(r, SHOW_BYTES),
                        r.len(),
                        plural(r.len() as u64, "byte", "bytes")
                    ),
                    Err(_) => format!(
                        "{} {}",
                        hex_short(reason, SHOW_BYTES),
                        style.bad("✗ not valid UTF-8 (§5.5.1)")
                    ),
                };
                let _ = writeln!(out, "  {} {reason_text}", style.field("Reason:"));
            }
        }
        return;
    }
    let p = &body.payload;
    let n = p.len();
    if n == 0 && body.missing > 0 {
        return;
    }
    let so_far = if body.missing > 0 { " so far" } else { "" };
    let bytes = plural(n as u64, "byte", "bytes");
    let meaning = if n == 0 {
        "empty".to_owned()
    } else if body.header.opcode == Opcode::Text {
        match std::str::from_utf8(p) {
            Ok(t) => format!("text {} (valid UTF-8){so_far}", quote_short(t, SHOW_BYTES)),
            Err(e) if e.error_len().is_none() => format!(
                "{n} {bytes}{so_far} that end inside a UTF-8 character: valid only if the next fragment completes it"
            ),
            Err(e) => {
                let at = e.valid_up_to();
                let bad = p.get(at..(at + 4).min(n)).unwrap_or_default();
                style.bad(&format!(
                    "{n} {bytes}{so_far}, ✗ not valid UTF-8 from byte {at} ({}) (§5.6, §8.1)",
                    hex(bad)
                ))
            }
        }
    } else if let Some(t) = text_of(body) {
        format!(
            "{n} {bytes}{so_far}, readable as UTF-8 text: {}",
            quote_short(t, SHOW_BYTES)
        )
    } else {
        format!("{n} {bytes}{so_far} of binary data")
    };
    let _ = writeln!(out, "  {label} {meaning}");
}

fn explain_verdict(out: &mut String, view: &FrameView<'_>, v: &Verdict, style: Style) {
    let who = match v.role {
        Role::Server => "a server",
        Role::Client => "a client",
    };
    let head = style.field(&format!("Received by {who}:"));
    let line = match &v.outcome {
        Outcome::Ignored { failed: true } => "ignored: the connection has already failed".to_owned(),
        Outcome::Ignored { failed: false } => {
            "ignored: the closing handshake is over, nothing follows a Close (§5.5.1)".to_owned()
        }
        Outcome::Failed(e) => format!(
            "{}\n  It fails the connection (§7.1.7) with close code {}.",
            style.bad(&format!("✗ {e}")),
            e.close_code()
        ),
        Outcome::Waiting => match &view.parsed {
            Parsed::Frame(b) if b.missing > 0 => format!(
                "{} it holds these bytes and waits for the {} missing {}",
                style.warn("…"),
                b.missing,
                plural(b.missing, "byte", "bytes")
            ),
            Parsed::ShortHeader { .. } => format!("{} it waits for the rest of the header", style.warn("…")),
            _ => format!(
                "{} fragment {} of a message; it waits for the frame with FIN=1 (§5.4)",
                style.warn("…"),
                v.frames_in_message
            ),
        },
        Outcome::Event(e) => {
            let what = match e {
                OwnedEvent::Text(t) => format!("the text message {}", quote_short(t, SHOW_BYTES)),
                OwnedEvent::Binary(b) => format!(
                    "a binary message of {} {}",
                    b.len(),
                    plural(b.len() as u64, "byte", "bytes")
                ),
                OwnedEvent::Ping(_) => "a ping".to_owned(),
                OwnedEvent::Pong(_) => "a pong; nothing to answer (§5.5.3)".to_owned(),
                OwnedEvent::Close(Some((code, reason))) if reason.is_empty() => format!("a close with code {code}"),
                OwnedEvent::Close(Some((code, reason))) => {
                    format!("a close with code {code} and reason {}", quote(reason))
                }
                OwnedEvent::Close(None) => "a close without status code".to_owned(),
            };
            let joined = match e {
                OwnedEvent::Text(_) | OwnedEvent::Binary(_) if v.frames_in_message > 1 => {
                    format!(", reassembled from {} frames (§5.4)", v.frames_in_message)
                }
                _ => String::new(),
            };
            format!("{} {what}{joined}", style.ok("✓ delivers"))
        }
    };
    let _ = writeln!(out, "\n  {head} {line}");
    let why = match &v.outcome {
        Outcome::Event(OwnedEvent::Ping(_)) => "It answers with a pong carrying the same payload (§5.5.2)",
        Outcome::Event(OwnedEvent::Close(Some(_))) => "It answers with a Close echoing the code (§5.5.1)",
        Outcome::Event(OwnedEvent::Close(None)) => "It answers with an empty Close (§5.5.1)",
        _ => "It sends",
    };
    for reply in split_frames(&v.reply) {
        let masked = if v.role == Role::Client {
            ", masked with a key of its own as clients do"
        } else {
            ""
        };
        let _ = writeln!(out, "  {why}: {}{masked}", summary(&reply));
        hex_lines(out, "    ", reply.wire, SHOW_BYTES, style);
    }
}

// ---------------------------------------------------------------------------------------------
// `serve --trace` and `client --trace`

/// A few lines per frame: an arrow for the direction, the header fields in one line, the wire
/// bytes (shortened), and the payload's meaning.
pub(crate) fn trace(direction: Direction, wire: &[u8], style: Style) -> String {
    trace_for(Role::Server, direction, wire, false, style)
}

/// [`trace`] at the `local` end of a connection: received frames are checked as `local` reads
/// them, sent ones as its peer does; with `deflate`, RSV1 marks a compressed message.
pub(crate) fn trace_for(local: Role, direction: Direction, wire: &[u8], deflate: bool, style: Style) -> String {
    let peer = match local {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let (arrow, role) = match direction {
        Direction::Received => ("<-", local),
        Direction::Sent => ("->", peer),
    };
    let allowed_rsv = if deflate { RSV1 } else { 0 };
    const TRACE_BYTES: usize = 24;
    let mut out = String::new();
    for view in split_frames(wire) {
        let head = match &view.parsed {
            Parsed::Frame(b) => {
                let h = &b.header;
                let mut s = format!(
                    "{} FIN={} RSV={:03b} opcode=0x{:x} MASK={} len={} ({})",
                    style.head(h.opcode.name()),
                    u8::from(h.fin),
                    h.rsv,
                    h.opcode.as_u8(),
                    u8::from(h.mask.is_some()),
                    h.payload_len,
                    length_form_name(h.length_form)
                );
                if let Some(key) = h.mask {
                    let _ = write!(s, " key={}", hex(&key));
                }
                s
            }
            Parsed::Broken(_) => style.bad("broken frame"),
            Parsed::ShortHeader { .. } => style.warn("incomplete frame"),
        };
        let b01 = view
            .wire
            .iter()
            .take(2)
            .map(|&b| bits(b))
            .collect::<Vec<_>>()
            .join(" | ");
        let _ = writeln!(out, "{arrow} {head}  {}", style.dim(&format!("[{b01}]")));
        let _ = writeln!(out, "   wire    {}", style.wire(&hex_short(view.wire, TRACE_BYTES)));
        match &view.parsed {
            Parsed::Frame(b) => {
                if b.header.mask.is_some() && !b.payload.is_empty() {
                    let _ = writeln!(out, "   unmask  {}", style.ok(&hex_short(&b.payload, TRACE_BYTES)));
                }
                let _ = writeln!(out, "   means   {}", summary(&view));
                if deflate && b.header.rsv & RSV1 != 0 && !b.header.opcode.is_control() {
                    let _ = writeln!(
                        out,
                        "   {}",
                        style.dim("RSV1: a compressed message, its payload DEFLATE data (RFC 7692 §6)")
                    );
                }
                if let Some(e) = b.rule_broken_with(role, allowed_rsv) {
                    let _ = writeln!(out, "   {}", style.bad(&format!("✗ {e}")));
                }
            }
            Parsed::Broken(e) => {
                let _ = writeln!(out, "   {}", style.bad(&format!("✗ {e}")));
            }
            Parsed::ShortHeader { needed } => {
                let _ = writeln!(
                    out,
                    "   {}",
                    style.warn(&format!("header cut short, {needed} more bytes needed"))
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_clients_trace_checks_each_direction_as_its_reader_does() {
        let hello_masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let hello = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
        let plain = Style::plain();
        let sent = trace_for(Role::Client, Direction::Sent, &hello_masked, false, plain);
        assert!(
            sent.starts_with("-> text") && sent.contains("key=37 fa 21 3d"),
            "{sent}"
        );
        assert!(sent.contains("unmask  48 65 6c 6c 6f") && !sent.contains('✗'), "{sent}");
        let received = trace_for(Role::Client, Direction::Received, &hello, false, plain);
        assert!(received.starts_with("<- text") && !received.contains('✗'), "{received}");
        let bad = trace_for(Role::Client, Direction::Received, &hello_masked, false, plain);
        assert!(bad.contains("✗ server frames must not be masked"), "{bad}");
        // The server's view is unchanged: what it receives must be masked.
        assert!(trace(Direction::Received, &hello, plain).contains("✗ client frames must be masked"));
        // RFC 7692 §7.2.3.1's compressed "Hello": RSV1 is fine once deflate is agreed.
        let compressed = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let with = trace_for(Role::Client, Direction::Received, &compressed, true, plain);
        assert!(!with.contains('✗') && with.contains("RFC 7692 §6"), "{with}");
        let without = trace_for(Role::Client, Direction::Received, &compressed, false, plain);
        assert!(without.contains("✗ RSV1 set without"), "{without}");
    }

    proptest! {
        // Whatever the bytes, the renderers explain them without panicking, and colour changes
        // nothing but escape codes.
        #[test]
        fn any_bytes_are_explained(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let plain = explain(&bytes, false, Style::plain());
            let colour = explain(&bytes, false, Style { color: true });
            let _ = explain(&bytes, true, Style::plain());
            prop_assert_eq!(crate::explain::strip_ansi(&colour), plain);
            let _ = trace(Direction::Received, &bytes, Style::plain());
            let _ = trace(Direction::Sent, &bytes, Style::plain());
        }
    }
}
