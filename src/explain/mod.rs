//! The teaching renderer: the opening handshake and frames explained step by step, from the
//! same core code the server runs (RFC 6455 §1.3, §4.2, §5.2). Used by `wsloop explain`,
//! `wsloop serve --trace` and `wsloop client --trace` (through [`ServerTrace`] and
//! [`ClientTrace`], observers of the runtime's wire) and the `/learn` page.
//!
//! Nothing here parses on its own: requests go through [`RequestParser`](crate::handshake::RequestParser)
//! and [`check_upgrade`](crate::handshake::check_upgrade), frames through
//! [`parse_header`](crate::frame::parse_header), [`apply_mask`](crate::frame::apply_mask) and the
//! [`WebSocket`](crate::protocol::WebSocket) state machine, so what a learner reads is what the
//! server does.
//!
//! ```
//! use wsloop::explain::{explain_frames, Style};
//!
//! let text = explain_frames("81 85 37 fa 21 3d 7f 9f 4d 51 58", Style::plain()).unwrap();
//! assert!(text.contains("text \"Hello\""));
//! ```

mod encode;
mod frames;
mod handshake;
mod json;
mod negotiation;
mod text;
mod trace;

pub use crate::observe::Direction;
pub use handshake::RFC_KEY;
pub use json::{frames_json, frames_json_deflate, handshake_json, handshake_json_deflate};
pub use text::strip_ansi;
pub use trace::{ClientTrace, ServerTrace};

use crate::handshake::Request;
use crate::protocol::Role;

/// The `/learn` page: plain HTML and JavaScript, no external resources. It opens a WebSocket to
/// `/learn` and renders the server's [`handshake_json_deflate`] and [`frames_json_deflate`]
/// messages (the plain [`handshake_json`] and [`frames_json`] render too, without the
/// permessage-deflate parts).
///
/// The server's side: right after the 101, send one text message,
/// `handshake_json_deflate(request, response, ctx.deflate_policy())`. Then for each text message
/// the page sends, send back (a) the same text, then (b) `frames_json_deflate(ctx.frames_in(),
/// ctx.frames_out(), ctx.deflate_params())`: the frames as received (still masked, compressed
/// if the browser compressed) and the echo exactly as sent. The page tells (b) from (a) by its
/// `"wsloop"` field and by arriving after the echo. For browser tests it fills `#key`, `#accept`
/// and `#browser-accept` (its own SHA-1, where `crypto.subtle` exists) and `#ext-offered`, sets
/// on `<body>` `data-ready="1"` once the handshake is shown, `data-extension` (the
/// `Sec-WebSocket-Extensions` of the 101, as the server reports it), `data-browser-extensions`
/// (the page's `WebSocket.extensions`) and `data-frames="N"` after each exchange (frame tables
/// shown so far). Each frame table is a `[data-compressed="1"|"0"]` box in a
/// `[data-side="received"|"sent"]` column; a compressed message's inflated text is in a
/// `.inflated-text` cell, as a JSON string.
pub const LEARN_HTML: &str = include_str!("learn.html");

/// Whether to colour the output (ANSI) or print plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Emit ANSI colour codes.
    pub color: bool,
}

impl Style {
    /// Colour on a terminal; plain when piped or when `NO_COLOR` is set.
    pub fn detect() -> Style {
        use std::io::IsTerminal;
        Style {
            color: std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal(),
        }
    }

    /// Plain text.
    pub fn plain() -> Style {
        Style { color: false }
    }
}

/// `wsloop explain handshake [--key KEY] [--request FILE|-]`: `request` is the raw request
/// bytes when given; otherwise an example request is built from `key` (default: RFC 6455 §1.3's).
///
/// Shows the request, each check of RFC 6455 §4.2.1 passed or failed, the accept value in steps,
/// and the exact response: the 101, or the rejection sent instead. `Err` only for unusable
/// arguments (both a key and a request; a key with control characters); a request that breaks a
/// rule is explained, not an error.
pub fn explain_handshake(key: Option<&str>, request: Option<&[u8]>, style: Style) -> Result<String, String> {
    handshake::explain(key, request, style)
}

/// `wsloop explain frame HEX...`: decodes the frames in `hex` field by field (RFC 6455 §5.2).
/// Whitespace, commas, colons and `0x` / `\x` prefixes are ignored; `Err` when the text is not
/// hex or holds no bytes.
pub fn explain_frames(hex: &str, style: Style) -> Result<String, String> {
    let bytes = text::parse_hex(hex)?;
    if bytes.is_empty() {
        return Err("no bytes to decode: give a frame as hex, e.g. 81 05 48 65 6c 6c 6f".into());
    }
    Ok(frames::explain(&bytes, false, style))
}

/// `wsloop explain frame --deflate HEX...`: like [`explain_frames`], read by endpoints that
/// agreed permessage-deflate (with context takeover, which reads any stream): RSV1 marks a
/// compressed message, and each compressed message is shown as its DEFLATE bytes, the
/// `00 00 ff ff` the receiver appends, and the inflated payload (RFC 7692 §6, §7.2.2).
pub fn explain_frames_deflate(hex: &str, style: Style) -> Result<String, String> {
    let bytes = text::parse_hex(hex)?;
    if bytes.is_empty() {
        return Err("no bytes to decode: give a frame as hex, e.g. c1 07 f2 48 cd c9 c9 07 00".into());
    }
    Ok(frames::explain(&bytes, true, style))
}

/// `wsloop explain frame --encode KIND PAYLOAD [--mask KEY]`: builds one frame with the core's
/// encoder and explains each byte, then decodes it back. KIND is text, binary, ping, pong or
/// close; for close, PAYLOAD is `CODE [REASON]`; for binary, a PAYLOAD starting with `0x` is hex.
/// KEY is 4 bytes as 8 hex digits; without it the frame is unmasked, as a server sends it.
pub fn explain_encode(kind: &str, payload: &str, mask: Option<&str>, style: Style) -> Result<String, String> {
    encode::explain(kind, payload, mask, false, style)
}

/// `wsloop explain frame --encode KIND PAYLOAD --deflate [--mask KEY]`: a compressed message
/// (text or binary) built by the core: DEFLATE with a sync flush, the trailing `00 00 ff ff`
/// removed, RSV1 set (RFC 7692 §6, §7.2.1); then decoded back with [`explain_frames_deflate`].
pub fn explain_encode_deflate(kind: &str, payload: &str, mask: Option<&str>, style: Style) -> Result<String, String> {
    encode::explain(kind, payload, mask, true, style)
}

/// `serve --trace`: the handshake of one connection, request and response.
pub fn trace_handshake(request: &Request, response: &[u8], style: Style) -> String {
    handshake::trace(request, response, style)
}

/// `serve --trace`: whole frames as they crossed the wire (masked as sent), long payloads
/// shortened. `Received` frames are checked as a server reads them, `Sent` as a client would.
pub fn trace_frames(direction: Direction, wire: &[u8], style: Style) -> String {
    frames::trace(direction, wire, style)
}

/// `wsloop client --trace`: [`trace_frames`] at the `local` end of a connection, so a client's
/// trace checks the frames it receives as a client must (unmasked, RFC 6455 §5.1) and shows
/// the masking key and unmasked payload of each frame it sends (§5.3). With `deflate`
/// (permessage-deflate agreed), RSV1 marks a compressed message (RFC 7692 §6).
pub fn trace_frames_for(local: Role, direction: Direction, wire: &[u8], deflate: bool, style: Style) -> String {
    frames::trace_for(local, direction, wire, deflate, style)
}
