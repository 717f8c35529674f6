//! `wsloop explain frame --encode KIND PAYLOAD [--mask KEY]`: a frame built by the core's
//! encoder ([`encode_frame`]), each byte of it explained, then decoded back as a check
//! (RFC 6455 §5.2, §5.3).

use std::fmt::Write as _;

use super::frames;
use super::text::{bits, bits_of, byte_table, hex, hex_lines, parse_hex, plural, quote, quote_short, SHOW_BYTES};
use super::Style;
use crate::deflate::{
    encode_compressed_frame, DirectionParams, MessageCompressor, DEFAULT_COMPRESSION_LEVEL, EMPTY_STORED_BLOCK,
    MAX_WINDOW_BITS,
};
use crate::frame::{encode_frame, CloseCode, LengthForm, Opcode, MAX_CONTROL_PAYLOAD};

/// The kinds `--encode` accepts, for error messages.
const KINDS: &str = "text, binary, ping, pong, close";

pub(crate) fn explain(
    kind: &str,
    payload_arg: &str,
    mask: Option<&str>,
    deflate: bool,
    style: Style,
) -> Result<String, String> {
    let opcode = match kind.to_ascii_lowercase().as_str() {
        "text" => Opcode::Text,
        "binary" => Opcode::Binary,
        "ping" => Opcode::Ping,
        "pong" => Opcode::Pong,
        "close" => Opcode::Close,
        other => return Err(format!("unknown frame kind {other:?}: use one of {KINDS}")),
    };
    if deflate && opcode.is_control() {
        return Err(format!(
            "{} is a control frame, and control frames are never compressed (RFC 7692 §6): use text or binary",
            opcode.name()
        ));
    }
    let key = mask.map(parse_mask).transpose()?;
    let (message, described) = build_payload(opcode, payload_arg)?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        style.head(&format!(
            "Encoding a {}{} frame with the core's encoder (RFC 6455 §5.2{})",
            if deflate { "compressed " } else { "" },
            opcode.name(),
            if deflate { ", RFC 7692 §7.2.1" } else { "" }
        ))
    );
    let _ = writeln!(out, "\n{} {described}", style.field("Payload:"));

    let mut frame = Vec::new();
    let payload = if deflate {
        // The message compressed on its own (no context takeover), as the first message of a
        // connection or any message with *_no_context_takeover.
        let direction = DirectionParams {
            no_context_takeover: true,
            max_window_bits: MAX_WINDOW_BITS,
        };
        let mut compressor = MessageCompressor::new(direction, DEFAULT_COMPRESSION_LEVEL);
        encode_compressed_frame(&mut compressor, opcode, &message, key, &mut frame)
            .map_err(|e| format!("compression failed: {e}"))?;
        let mut compressed = Vec::new();
        compressor
            .compress(&message, &mut compressed)
            .map_err(|e| format!("compression failed: {e}"))?;
        explain_compression(&mut out, &message, &compressed, style);
        compressed
    } else {
        encode_frame(&mut frame, true, opcode, key, &message);
        message
    };
    if opcode.is_control() && payload.len() > MAX_CONTROL_PAYLOAD {
        let _ = writeln!(
            out,
            "{}",
            style.bad("✗ a control frame's payload may be at most 125 bytes (§5.5); the check below will reject it")
        );
    }

    let b0 = frame.first().copied().unwrap_or(0);
    let b1 = frame.get(1).copied().unwrap_or(0);
    let _ = writeln!(out, "\n{}", style.field("Byte 0 = FIN, RSV1-3, opcode"));
    step(
        &mut out,
        &bits_of(b0, 0x80),
        "FIN=1: this one frame carries the whole message (§5.4)",
    );
    if deflate {
        step(
            &mut out,
            &bits_of(b0, 0x70),
            "RSV1=1: \"Per-Message Compressed\", on the first frame only; RSV2-3=00 (RFC 7692 §6)",
        );
    } else {
        step(
            &mut out,
            &bits_of(b0, 0x70),
            "RSV1-3=000: no extension negotiated (§5.2)",
        );
    }
    step(
        &mut out,
        &bits_of(b0, 0x0F),
        &format!("opcode 0x{:x} = {} (§5.2)", opcode.as_u8(), opcode.name()),
    );
    let _ = writeln!(out, "    = {} = {}", bits(b0), style.wire(&format!("0x{b0:02x}")));

    let form = LengthForm::for_len(payload.len() as u64);
    let _ = writeln!(out, "\n{}", style.field("Byte 1 = MASK, 7-bit length"));
    let mask_note = match key {
        Some(_) => "MASK=1: a client masks every frame it sends (§5.1)",
        None => "MASK=0: a server never masks (§5.1); pass --mask KEY to encode as a client",
    };
    step(&mut out, &bits_of(b1, 0x80), mask_note);
    let n = payload.len();
    let len_note = match form {
        LengthForm::Short7 => format!("length {n}: 0-125 fits in these 7 bits (§5.2)"),
        LengthForm::Extended16 => {
            format!("126: {n} is over 125, so the next 2 bytes hold it (16-bit form, 126-65535, §5.2)")
        }
        LengthForm::Extended64 => {
            format!("127: {n} is over 65535, so the next 8 bytes hold it (64-bit form, §5.2)")
        }
    };
    step(&mut out, &bits_of(b1, 0x7F), &len_note);
    let _ = writeln!(out, "    = {} = {}", bits(b1), style.wire(&format!("0x{b1:02x}")));

    let ext = form.extra_bytes();
    let _ = writeln!(out, "\n{}", style.field("Extended length"));
    if ext == 0 {
        let _ = writeln!(out, "    none: the length fits in byte 1");
    } else {
        let bytes = frame.get(2..2 + ext).unwrap_or_default();
        let _ = writeln!(
            out,
            "    {} = {n} as a {}-bit big-endian number",
            style.wire(&hex(bytes)),
            ext * 8
        );
    }

    let header_len = 2 + ext + if key.is_some() { 4 } else { 0 };
    let _ = writeln!(out, "\n{}", style.field("Masking key"));
    match key {
        None => {
            let _ = writeln!(out, "    none (MASK=0): the payload goes out as is");
        }
        Some(k) => {
            let _ = writeln!(
                out,
                "    {}: 4 bytes after the length; a real client picks a fresh random key per frame (§5.3)",
                style.wire(&hex(&k))
            );
            let masked = frame.get(header_len..).unwrap_or_default();
            if !masked.is_empty() {
                let keys: Vec<u8> = (0..masked.len()).map(|i| k.get(i % 4).copied().unwrap_or(0)).collect();
                let _ = writeln!(
                    out,
                    "\n{} {}",
                    style.field("Masking"),
                    style.dim("(§5.3): masked[i] = payload[i] XOR key[i mod 4]")
                );
                byte_table(
                    &mut out,
                    "    ",
                    &[
                        ("payload", &payload, Style::ok),
                        ("key", &keys, Style::dim),
                        ("masked", masked, Style::wire),
                    ],
                    None,
                    style,
                );
            }
        }
    }

    let _ = writeln!(
        out,
        "\n{} ({} {}):",
        style.head("The frame"),
        frame.len(),
        plural(frame.len() as u64, "byte", "bytes")
    );
    let _ = writeln!(
        out,
        "    header   {}",
        style.wire(&hex(frame.get(..header_len).unwrap_or_default()))
    );
    let body = frame.get(header_len..).unwrap_or_default();
    if !body.is_empty() {
        let mut lines = String::new();
        hex_lines(&mut lines, "", body, SHOW_BYTES, style);
        for (i, line) in lines.lines().enumerate() {
            let label = if i == 0 { "payload" } else { "" };
            let _ = writeln!(out, "    {label:<7}  {line}");
        }
    }

    if frame.len() <= 32 {
        let flag = if deflate { "--deflate " } else { "" };
        let _ = writeln!(
            out,
            "\nTo decode it yourself: wsloop explain frame {flag}{}",
            hex(&frame)
        );
    }
    let _ = writeln!(out, "\n{}\n", style.head("Check: the same bytes decoded again"));
    out.push_str(&frames::explain(&frame, deflate, style));
    Ok(out)
}

/// The three steps of RFC 7692 §7.2.1, with the bytes of each.
fn explain_compression(out: &mut String, message: &[u8], compressed: &[u8], style: Style) {
    let mut flushed = compressed.to_vec();
    flushed.extend_from_slice(&EMPTY_STORED_BLOCK);
    let _ = writeln!(
        out,
        "\n{} {}",
        style.field("Compression"),
        style.dim("(RFC 7692 §7.2.1), with an empty LZ77 window (no context takeover)")
    );
    let _ = writeln!(
        out,
        "    1. DEFLATE the {} {}, ending with a sync flush:",
        message.len(),
        plural(message.len() as u64, "byte", "bytes")
    );
    let mut lines = String::new();
    hex_lines(&mut lines, "         ", &flushed, SHOW_BYTES, style);
    out.push_str(&lines);
    let _ = writeln!(
        out,
        "    2. The flush ends with an empty stored block (BTYPE 00): its last 4 bytes are always\n       {}, so the sender removes them and the receiver puts them back (§7.2.2).",
        style.wire(&hex(&EMPTY_STORED_BLOCK))
    );
    let _ = writeln!(
        out,
        "    3. The frame's payload: {} {} (the message was {}):",
        compressed.len(),
        plural(compressed.len() as u64, "byte", "bytes"),
        message.len()
    );
    let mut lines = String::new();
    hex_lines(&mut lines, "         ", compressed, SHOW_BYTES, style);
    out.push_str(&lines);
}

fn step(out: &mut String, bits: &str, note: &str) {
    let _ = writeln!(out, "    {bits}  {note}");
}

/// `--mask KEY`: exactly 4 bytes of hex, e.g. `37fa213d` or `37 fa 21 3d`.
fn parse_mask(s: &str) -> Result<[u8; 4], String> {
    let bytes = parse_hex(s)?;
    <[u8; 4]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "--mask takes 4 bytes as 8 hex digits (e.g. 37fa213d); {s:?} is {} bytes",
            bytes.len()
        )
    })
}

/// The payload bytes for `kind`, and how to describe them.
fn build_payload(opcode: Opcode, arg: &str) -> Result<(Vec<u8>, String), String> {
    match opcode {
        Opcode::Close => {
            let arg = arg.trim_start();
            if arg.is_empty() {
                return Ok((Vec::new(), "empty: a Close without status code (§5.5.1)".to_owned()));
            }
            let (code_s, reason) = arg.split_once(' ').unwrap_or((arg, ""));
            let code: u16 = code_s.parse().map_err(|_| {
                format!("close payload is CODE [REASON], e.g. \"1000 bye\"; {code_s:?} is not a number")
            })?;
            let code = CloseCode(code);
            let mut payload = code.0.to_be_bytes().to_vec();
            payload.extend_from_slice(reason.as_bytes());
            let mut described = format!(
                "close code {} as 2 bytes big-endian ({}), then the reason {} as UTF-8 (§5.5.1)",
                code,
                hex(&code.0.to_be_bytes()),
                quote_short(reason, SHOW_BYTES)
            );
            if !code.is_valid_on_wire() {
                described.push_str(&format!(
                    "\n  (code {} may not be sent on the wire (§7.4): the check below shows what a receiver does)",
                    code.0
                ));
            }
            Ok((payload, described))
        }
        Opcode::Binary if arg.starts_with("0x") || arg.starts_with("0X") => {
            let bytes = parse_hex(arg)?;
            let d = format!(
                "{} {} from hex",
                bytes.len(),
                plural(bytes.len() as u64, "byte", "bytes")
            );
            Ok((bytes, d))
        }
        _ => {
            let bytes = arg.as_bytes().to_vec();
            let n = bytes.len();
            let d = if n <= 16 {
                format!(
                    "{} = {} ({n} {} of UTF-8)",
                    quote(arg),
                    hex(&bytes),
                    plural(n as u64, "byte", "bytes")
                )
            } else {
                format!("{} ({n} bytes of UTF-8)", quote_short(arg, SHOW_BYTES))
            };
            Ok((bytes, d))
        }
    }
}
