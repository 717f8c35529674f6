//! The opening handshake explained (RFC 6455 §1.3, §4.2): the request bytes, each check the
//! server makes ([`check_upgrade`]), the accept value in steps ([`accept_digest`],
//! [`accept_key`]) and the exact response bytes ([`write_accept_response_with_extensions`] or
//! [`HandshakeError::response`]).

use std::fmt::Write as _;

use base64::Engine as _;

use super::text::{hex, plural};
use super::Style;
use crate::deflate::DeflateParams;
use crate::handshake::deflate::{negotiate_deflate_explained, DeflatePolicy, OfferDecision};
use crate::handshake::{
    accept_digest, accept_key, check_upgrade, reason_phrase, write_accept_response_with_extensions, HandshakeError,
    ParseStatus, Request, RequestParser, WEBSOCKET_GUID,
};

/// The sample key of RFC 6455 §1.3 and §4.2.2 (the base64 of the 16 bytes "the sample nonce").
pub const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The request of RFC 6455 §1.3 with `key`, less its subprotocol offer.
fn example_request(key: &str) -> Vec<u8> {
    format!(
        "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: {key}\r\nOrigin: http://example.com\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

pub(crate) fn explain(key: Option<&str>, request: Option<&[u8]>, style: Style) -> Result<String, String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        style.head("The WebSocket opening handshake, step by step (RFC 6455 §1.3, §4)")
    );
    let bytes = match (key, request) {
        (Some(_), Some(_)) => {
            return Err("give either --key or --request: the key is part of the request".into());
        }
        (key, None) => {
            let key = key.unwrap_or(RFC_KEY);
            if key.chars().any(|c| c.is_control()) {
                return Err(format!(
                    "the key {key:?} holds control characters, which cannot go in a header"
                ));
            }
            let _ = writeln!(
                out,
                "\n{} an example built from the key, like RFC 6455 §1.3's",
                style.head("1. The client's request:")
            );
            example_request(key)
        }
        (None, Some(raw)) => {
            let _ = writeln!(out, "\n{} as given", style.head("1. The client's request:"));
            with_crlf(raw, &mut out)
        }
    };
    let _ = writeln!(
        out,
        "   ({} {}; HTTP ends each line with CR LF, shown here as \\r\\n)",
        bytes.len(),
        plural(bytes.len() as u64, "byte", "bytes")
    );

    let (request, head_len) = match RequestParser::default().parse(&bytes) {
        Ok(ParseStatus::Complete { request, head_len }) => (request, head_len),
        Ok(ParseStatus::Partial) => {
            show_http(&mut out, &bytes, style);
            let _ = writeln!(out, "\n{}", style.head("2. Reading the request head"));
            let _ = writeln!(
                out,
                "   {} The head is not complete: the blank line that ends it (\\r\\n\\r\\n) has not \
arrived.\n   A server keeps reading until it does, or until the head passes {} bytes (then 431).\n   \
Nothing is answered yet.",
                style.warn("…"),
                RequestParser::default().limits().max_header_bytes
            );
            return Ok(out);
        }
        Err(e) => {
            show_http(&mut out, &bytes, style);
            let _ = writeln!(out, "\n{}", style.head("2. Reading the request head"));
            let _ = writeln!(out, "   {} {}", style.bad("✗"), style.bad(e.rule()));
            rejection(&mut out, e, "3.", style);
            return Ok(out);
        }
    };
    show_http(&mut out, bytes.get(..head_len).unwrap_or_default(), style);
    let after = bytes.get(head_len..).unwrap_or_default();
    if !after.is_empty() {
        let _ = writeln!(
            out,
            "   + {} {} after the blank line: not part of the request. They belong to the\n     \
WebSocket connection (a client may send its first frame at once): {}",
            after.len(),
            plural(after.len() as u64, "byte", "bytes"),
            style.wire(&super::text::hex_short(after, 16))
        );
    }

    let _ = writeln!(
        out,
        "\n{} {}",
        style.head("2. The server's checks"),
        style.dim("(RFC 6455 §4.2.1), in order; the first failure ends the handshake")
    );
    let (result, checks) = check_upgrade(&request);
    if !request.wants_upgrade() {
        let _ = writeln!(
            out,
            "   This request has no Upgrade header. A server that also serves HTTP on this port (as\n   \
`wsloop serve` does) answers it as a plain HTTP request. Read as a handshake:"
        );
    }
    for c in &checks {
        let mark = if c.passed { style.ok("✓") } else { style.bad("✗") };
        let _ = writeln!(out, "   {mark} {}", c.rule);
    }
    let upgrade = match result {
        Ok(u) => u,
        Err(e) => {
            let _ = writeln!(out, "\n   The request breaks a rule:\n     {}", style.bad(e.rule()));
            if e == HandshakeError::InvalidKey {
                invalid_key_detail(&mut out, &request);
            }
            let _ = writeln!(out, "   The checks stop here; no accept value is computed.");
            rejection(&mut out, e, "3.", style);
            return Ok(out);
        }
    };
    let _ = writeln!(
        out,
        "   All {} checks pass: the server accepts the upgrade.",
        checks.len()
    );

    let key = upgrade.key.as_str();
    let joined = format!("{key}{WEBSOCKET_GUID}");
    let digest = accept_digest(key.as_bytes());
    let accept = accept_key(key.as_bytes());
    let _ = writeln!(
        out,
        "\n{} {}",
        style.head("3. The accept value:"),
        style.dim("base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2 item 5.4)")
    );
    let rows = [
        (format!("key, the {} characters as sent", key.len()), style.wire(key)),
        (
            "+ the GUID, the same for every server".to_owned(),
            WEBSOCKET_GUID.to_owned(),
        ),
        (format!("= key + GUID, {} characters", joined.len()), joined.clone()),
        (
            format!("SHA-1 of those {} bytes (20 bytes)", joined.len()),
            hex(&digest),
        ),
        ("base64 of the 20 bytes (28 characters)".to_owned(), style.ok(&accept)),
    ];
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (label, value) in &rows {
        let _ = writeln!(out, "   {}  {value}", style.field(&format!("{label:<width$}")));
    }
    let _ = writeln!(out, "\n   Two common misunderstandings:");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap_or_default();
    let wrong = accept_key(&decoded);
    let _ = writeln!(
        out,
        "   - The key is not base64-decoded before hashing. It is base64 only so that 16 random\n     \
bytes can travel in a header; the server hashes the {} characters exactly as sent.\n     \
Hashing the decoded bytes instead would give {wrong},\n     \
which the client would reject.",
        key.len()
    );
    let _ = writeln!(
        out,
        "   - The accept value is not meant to be decoded: it carries no data. It is a proof that\n     \
the server read this handshake: only a server that saw this key and knows the WebSocket\n     \
GUID can produce it, so a plain HTTP server, or a cache replaying an old response, cannot\n     \
pass for a WebSocket server (§1.3). The client computes the same value and compares."
    );
    if !upgrade.protocols.is_empty() {
        let _ = writeln!(
            out,
            "\n   The client offers subprotocols {}. The server answers with the one it picks in\n   \
Sec-WebSocket-Protocol, or leaves the header out to pick none, as here (§4.2.2 item 5.4).",
            upgrade.protocols.join(", ")
        );
    }
    let answer = if upgrade.extensions.is_empty() {
        None
    } else {
        explain_extensions(&mut out, &upgrade.extensions, style)
    };

    let mut response = Vec::new();
    write_accept_response_with_extensions(&mut response, key.as_bytes(), None, answer.as_deref(), &[]);
    let _ = writeln!(
        out,
        "\n{} {}",
        style.head("4. The server's response: 101 Switching Protocols"),
        style.dim(&format!("(RFC 6455 §4.2.2 item 5; {} bytes)", response.len()))
    );
    show_http(&mut out, &response, style);
    let _ = writeln!(
        out,
        "\n   After this blank line both sides speak WebSocket frames (RFC 6455 §5). Next:\n     \
wsloop explain frame 81 85 37 fa 21 3d 7f 9f 4d 51 58"
    );
    Ok(out)
}

/// The extension offers, one by one, as the server's permessage-deflate negotiation judged them
/// (RFC 6455 §9.1, RFC 7692 §5, §7), and the answer chosen. Returns the answer.
fn explain_extensions(
    out: &mut String,
    offers: &[crate::handshake::extensions::Extension],
    style: Style,
) -> Option<String> {
    let policy = DeflatePolicy::default();
    let (chosen, decisions) = negotiate_deflate_explained(offers, &policy);
    let _ = writeln!(
        out,
        "\n   {} {}",
        style.head("Extensions:"),
        style.dim("the client's offers in its order of preference (RFC 6455 §9.1), judged with the")
    );
    let _ = writeln!(
        out,
        "   {}",
        style.dim("library's default policy: permessage-deflate without context takeover either way (RFC 7692 §7.1)")
    );
    for (i, (offer, d)) in offers.iter().zip(&decisions).enumerate() {
        let _ = writeln!(out, "   {}. {}", i + 1, style.wire(&offer.to_string()));
        let line = match d {
            OfferDecision::NotDeflate(name) => {
                format!("- not permessage-deflate: this server knows no extension {name:?}, so it leaves it out (§9.1)")
            }
            OfferDecision::Declined(why) => style.bad(&format!("✗ declined: {why}")),
            OfferDecision::Accepted(_, answer) => style.ok(&format!("✓ accepted, answered as: {answer}")),
            OfferDecision::NotNeeded => {
                "- acceptable, but one permessage-deflate is agreed already: two would both use RSV1 (RFC 7692 §5)"
                    .to_owned()
            }
        };
        let _ = writeln!(out, "      {line}");
    }
    match &chosen {
        Some((params, answer)) => {
            let _ = writeln!(
                out,
                "   The response carries Sec-WebSocket-Extensions: {answer}\n   From here on RSV1 marks a compressed message (RFC 7692 §6). Agreed:"
            );
            agreed(out, params);
            let _ = writeln!(out, "   Try: wsloop explain frame --deflate c1 07 f2 48 cd c9 c9 07 00");
        }
        None => {
            let _ = writeln!(
                out,
                "   No offer is accepted, so the response leaves Sec-WebSocket-Extensions out, which\n   declines them all (§9.1, RFC 7692 §5): RSV1-3 must then stay 0 in every frame."
            );
        }
    }
    chosen.map(|(_, a)| a)
}

/// The agreed parameters in words, one direction per line (RFC 7692 §7.1, §7.2).
fn agreed(out: &mut String, p: &DeflateParams) {
    for (who, nct, bits) in [
        (
            "server → client",
            p.server_no_context_takeover,
            p.server_max_window_bits,
        ),
        (
            "client → server",
            p.client_no_context_takeover,
            p.client_max_window_bits,
        ),
    ] {
        let ctx = if nct {
            "each message starts with an empty window (no context takeover)"
        } else {
            "messages may refer back to earlier ones (context takeover)"
        };
        let _ = writeln!(out, "     {who}: {ctx}; window up to 2^{bits} = {} bytes", 1u32 << bits);
    }
}

/// A request file written in an editor usually has bare LF line endings; HTTP needs CR LF
/// (RFC 9112 §2.2). Converts such a file, and says so.
fn with_crlf(raw: &[u8], out: &mut String) -> Vec<u8> {
    if raw.contains(&b'\r') || !raw.contains(&b'\n') {
        return raw.to_vec();
    }
    let mut v = Vec::with_capacity(raw.len() + 32);
    for &b in raw {
        if b == b'\n' {
            v.push(b'\r');
        }
        v.push(b);
    }
    let mut added = "";
    if !v.ends_with(b"\r\n\r\n") {
        if !v.ends_with(b"\r\n") {
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b"\r\n");
        added = ", and the blank line that ends the head was added";
    }
    let _ = writeln!(
        out,
        "   (The input has bare LF line endings; HTTP requires CR LF (RFC 9112 §2.2). They were\n   \
converted for this explanation{added}.)"
    );
    v
}

fn invalid_key_detail(out: &mut String, request: &Request) {
    let Some(key) = request.header("sec-websocket-key") else {
        return;
    };
    let key = String::from_utf8_lossy(key);
    let key = key.trim();
    let detail = match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(d) => format!(
            "{key:?} is {} characters and decodes to {} {}, not 16",
            key.len(),
            d.len(),
            plural(d.len() as u64, "byte", "bytes")
        ),
        Err(_) => format!("{key:?} is not valid base64"),
    };
    let _ = writeln!(out, "   ({detail}.)");
}

/// The response sent instead of 101, with a word on what its status tells the client.
fn rejection(out: &mut String, e: HandshakeError, step: &str, style: Style) {
    let response = e.response();
    let status = format!("{} {}", e.status(), reason_phrase(e.status()));
    let _ = writeln!(
        out,
        "\n{} {}",
        style.head(&format!("{step} The server's response instead: {status}")),
        style.dim(&format!("({} bytes)", response.len()))
    );
    show_http(out, &response, style);
    let why = match e {
        HandshakeError::UnsupportedVersion => {
            "Sec-WebSocket-Version: 13 tells the client which version to retry with (§4.2.2 item 4)."
        }
        HandshakeError::MethodNotGet => "Allow: GET names the method that would work (RFC 9110 §15.5.6).",
        HandshakeError::HeadersTooLarge | HandshakeError::TooManyHeaders => {
            "The limit bounds the memory one connection can hold before it has proved anything (§10.4)."
        }
        _ => "The body names the rule, so whoever reads the response can fix the request.",
    };
    let _ = writeln!(
        out,
        "\n   {why}\n   Connection: close: the server closes the TCP connection after sending this."
    );
}

/// Shows HTTP bytes line by line, each line's ending made visible (`\r\n`, `\n`), bytes that are
/// not printable as `\xNN`.
fn show_http(out: &mut String, bytes: &[u8], style: Style) {
    let mut rest = bytes;
    let mut in_head = true;
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n');
        let (line, ending, next) = match nl {
            Some(i) if i > 0 && rest.get(i - 1) == Some(&b'\r') => (
                rest.get(..i - 1).unwrap_or_default(),
                "\\r\\n",
                rest.get(i + 1..).unwrap_or_default(),
            ),
            Some(i) => (
                rest.get(..i).unwrap_or_default(),
                "\\n",
                rest.get(i + 1..).unwrap_or_default(),
            ),
            None => (rest, "", &[][..]),
        };
        let note = if in_head && line.is_empty() && !ending.is_empty() {
            in_head = false;
            if next.is_empty() {
                "   <- blank line: end of the head"
            } else {
                "   <- blank line: end of the head; the body follows"
            }
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "   {} {}{}{}",
            style.dim("|"),
            printable(line, LINE_CHARS),
            style.dim(ending),
            style.dim(note)
        );
        rest = next;
    }
}

/// Longest line shown by [`show_http`] before it is shortened.
const LINE_CHARS: usize = 100;

/// A line as text, bytes that are not printable as `\xNN`, shortened after `limit` characters.
fn printable(line: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(line);
    let mut s = String::with_capacity(text.len().min(limit + 32));
    for (i, c) in text.chars().enumerate() {
        if i == limit {
            let rest = text.len() - text.char_indices().nth(i).map_or(text.len(), |(at, _)| at);
            let _ = write!(s, " {}", super::text::more(rest));
            break;
        }
        if c.is_control() {
            let _ = write!(s, "\\x{:02x}", c as u32);
        } else {
            s.push(c);
        }
    }
    s
}

/// `serve --trace`: the request's first line and key, the checks, and the response's status.
pub(crate) fn trace(request: &Request, response: &[u8], style: Style) -> String {
    let mut out = String::new();
    let headers = request.headers().count();
    let _ = writeln!(
        out,
        "<- {} {} HTTP/1.{}  {}",
        style.head(request.method()),
        request.target(),
        request.version_minor(),
        style.dim(&format!(
            "({} {}, {} bytes)",
            headers,
            plural(headers as u64, "header", "headers"),
            request.head_bytes().len()
        ))
    );
    let (result, checks) = check_upgrade(request);
    match &result {
        Ok(up) => {
            let _ = writeln!(
                out,
                "   {} all {} checks of RFC 6455 §4.2.1 pass",
                style.ok("✓"),
                checks.len()
            );
            let _ = writeln!(
                out,
                "   accept = base64(SHA-1({} + GUID)) = {}",
                style.wire(&up.key),
                style.ok(&accept_key(up.key.as_bytes()))
            );
        }
        Err(e) => {
            let failed = checks.iter().find(|c| !c.passed).map_or("", |c| c.rule);
            let _ = writeln!(out, "   {} {failed}: {}", style.bad("✗"), e.rule());
        }
    }
    let status_line = response
        .split(|&b| b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim_end().to_owned())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "-> {}  {}",
        style.head(&status_line),
        style.dim(&format!("({} bytes)", response.len()))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_request_bytes_are_explained(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let plain = explain(None, Some(&bytes), Style::plain());
            prop_assert!(plain.is_ok());
        }

        #[test]
        fn any_head_like_request_is_explained(lines in proptest::collection::vec("[ -~]{0,40}", 0..8)) {
            let text = format!("GET / HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
            prop_assert!(explain(None, Some(text.as_bytes()), Style::plain()).is_ok());
        }
    }

    #[test]
    fn lf_only_files_are_read_as_crlf() {
        let s = explain(None, Some(b"GET / HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n"), Style::plain()).unwrap_or_default();
        assert!(s.contains("bare LF"));
        assert!(s.contains("All 8 checks pass"), "{s}");
        assert!(s.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }

    #[test]
    fn long_lines_are_shortened() {
        let mut out = String::new();
        show_http(
            &mut out,
            format!("X: {}\r\n", "a".repeat(300)).as_bytes(),
            Style::plain(),
        );
        assert!(out.contains("… (203 more bytes)"), "{out}");
    }
}
