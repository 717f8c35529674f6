//! Golden tests for the teaching output (`wsloop explain`, `serve --trace`): each case is
//! rendered plain and compared with `tests/golden/NAME.txt`. After a deliberate change to the
//! wording, regenerate with `UPDATE_GOLDEN=1 cargo test --test explain_golden`: that run writes
//! the files, lists what changed and fails on purpose; read the diff (these files are what a
//! learner reads), then run again without the variable. Update mode is refused when `CI` is
//! set, and a file in `tests/golden/` that no case uses fails `every_golden_file_is_used...`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use wsloop::deflate::DeflateParams;
use wsloop::explain::{
    explain_encode, explain_encode_deflate, explain_frames, explain_frames_deflate, explain_handshake, strip_ansi,
    trace_frames, trace_handshake, Direction, Style,
};
use wsloop::explain::{frames_json_deflate, handshake_json_deflate};
use wsloop::handshake::deflate::{negotiate_deflate, DeflatePolicy};
use wsloop::handshake::{validate_upgrade, write_accept_response_with_extensions, ParseStatus, Request, RequestParser};

/// RFC 6455 §1.3's request, less its subprotocol offer: the base the rule-breaking cases edit.
const REQUEST: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

fn edited(from: &str, to: &str) -> Vec<u8> {
    assert!(REQUEST.contains(from), "{from:?}");
    REQUEST.replacen(from, to, 1).into_bytes()
}

fn handshake(key: Option<&'static str>, request: Option<Vec<u8>>) -> impl Fn(Style) -> String {
    move |style| match explain_handshake(key, request.as_deref(), style) {
        Ok(s) => s,
        Err(e) => panic!("explain_handshake failed: {e}"),
    }
}

fn frames(hex: String) -> impl Fn(Style) -> String {
    move |style| match explain_frames(&hex, style) {
        Ok(s) => s,
        Err(e) => panic!("explain_frames({hex:?}) failed: {e}"),
    }
}

fn encode(kind: &'static str, payload: &'static str, mask: Option<&'static str>) -> impl Fn(Style) -> String {
    move |style| match explain_encode(kind, payload, mask, style) {
        Ok(s) => s,
        Err(e) => panic!("explain_encode failed: {e}"),
    }
}

fn deflate_frames(hex: &'static str) -> impl Fn(Style) -> String {
    move |style| match explain_frames_deflate(hex, style) {
        Ok(s) => s,
        Err(e) => panic!("explain_frames_deflate({hex:?}) failed: {e}"),
    }
}

fn deflate_encode(kind: &'static str, payload: &'static str, mask: Option<&'static str>) -> impl Fn(Style) -> String {
    move |style| match explain_encode_deflate(kind, payload, mask, style) {
        Ok(s) => s,
        Err(e) => panic!("explain_encode_deflate failed: {e}"),
    }
}

fn parse_request(bytes: &[u8]) -> Request {
    match RequestParser::default().parse(bytes) {
        Ok(ParseStatus::Complete { request, .. }) => request,
        other => panic!("{other:?}"),
    }
}

/// A connection as `serve --trace` prints it: handshake, the client's masked Hello, the echo,
/// the client's Close and the server's reply.
fn trace(style: Style) -> String {
    let request = parse_request(REQUEST.as_bytes());
    let mut response = Vec::new();
    wsloop::handshake::write_accept_response(&mut response, b"dGhlIHNhbXBsZSBub25jZQ==", None, &[]);
    let mut s = trace_handshake(&request, &response, style);
    s += &trace_frames(
        Direction::Received,
        &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
        style,
    );
    s += &trace_frames(Direction::Sent, &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o'], style);
    let mut big = Vec::new();
    wsloop::frame::encode_frame(&mut big, true, wsloop::Opcode::Binary, Some([1, 2, 3, 4]), &[0xAB; 300]);
    s += &trace_frames(Direction::Received, &big, style);
    s += &trace_frames(Direction::Received, &[0x81, 0x02, b'h', b'i'], style);
    s += &trace_frames(
        Direction::Received,
        &[0x88, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x34, 0x12, 0x43, 0x44, 0x52],
        style,
    );
    s += &trace_frames(Direction::Sent, &[0x88, 0x02, 0x03, 0xe8], style);
    let bad = edited("GET /chat", "POST /chat");
    let bad_request = parse_request(&bad);
    s += &trace_handshake(&bad_request, &wsloop::HandshakeError::MethodNotGet.response(), style);
    s
}

/// JSON indented two spaces per level, one member per line: a readable golden diff.
fn pretty(json: &str) -> String {
    let mut out = String::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut chars = json.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' if matches!(chars.peek(), Some('}' | ']')) => {
                out.push(c);
                out.extend(chars.next());
            }
            '{' | '[' => {
                out.push(c);
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// The Chromium upgrade request of a `/learn` page, with `extensions` offered.
fn learn_request(extensions: &str) -> Request {
    let text = format!(
        "GET /learn HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Origin: http://127.0.0.1:3000\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: {extensions}\r\n\r\n"
    );
    parse_request(text.as_bytes())
}

/// `/learn`'s first message: the handshake with the negotiation replayed under `policy`, and
/// the 101 that policy really answers (as the server writes it).
fn learn_handshake(extensions: &'static str, policy: Option<DeflatePolicy>) -> impl Fn(Style) -> String {
    move |_| {
        let request = learn_request(extensions);
        let offers = validate_upgrade(&request).expect("a valid upgrade").extensions;
        let answer = policy
            .as_ref()
            .and_then(|p| negotiate_deflate(&offers, p))
            .map(|(_, a)| a);
        let mut response = Vec::new();
        write_accept_response_with_extensions(&mut response, b"dGhlIHNhbXBsZSBub25jZQ==", None, answer.as_deref(), &[]);
        pretty(&handshake_json_deflate(&request, &response, policy.as_ref()))
    }
}

/// Masks `payload` with the RFC's key and sets RSV1 when `compressed`.
fn learn_frame(fin: bool, opcode: wsloop::Opcode, compressed: bool, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mask = masked.then_some([0x37, 0xfa, 0x21, 0x3d]);
    wsloop::frame::encode_frame(&mut v, fin, opcode, mask, payload);
    if compressed {
        v[0] |= 0x40;
    }
    v
}

type Case = (&'static str, Box<dyn Fn(Style) -> String>);

fn cases() -> Vec<Case> {
    let bytes_256: String = (0..=255u8).map(|b| format!("{b:02x}")).collect();
    vec![
        // The opening handshake (RFC 6455 §1.3, §4.2).
        ("handshake_rfc", Box::new(handshake(None, None))),
        ("handshake_custom_key", Box::new(handshake(Some("x3JJHMbDL1EzLkh9GBhXDw=="), None))),
        ("handshake_bad_key", Box::new(handshake(Some("c2hvcnQ="), None))),
        (
            "handshake_no_upgrade",
            Box::new(handshake(None, Some(edited("Upgrade: websocket\r\n", "")))),
        ),
        (
            "handshake_version_8",
            Box::new(handshake(
                None,
                Some(edited("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8")),
            )),
        ),
        ("handshake_post", Box::new(handshake(None, Some(edited("GET /chat", "POST /chat"))))),
        (
            "handshake_missing_host",
            Box::new(handshake(None, Some(edited("Host: server.example.com\r\n", "")))),
        ),
        (
            "handshake_subprotocols_and_first_frame",
            Box::new(handshake(None, {
                let mut r = edited(
                    "Origin: http://example.com\r\n",
                    "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
                );
                r.extend_from_slice(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
                Some(r)
            })),
        ),
        (
            "handshake_lf_line_endings",
            Box::new(handshake(None, Some(REQUEST.replace("\r\n", "\n").trim_end().as_bytes().to_vec()))),
        ),
        (
            "handshake_incomplete",
            Box::new(handshake(None, Some(REQUEST.trim_end().as_bytes().to_vec()))),
        ),
        (
            "handshake_oversized",
            Box::new(handshake(
                None,
                Some(edited("Origin: http://example.com", &format!("Cookie: {}", "a".repeat(9000)))),
            )),
        ),
        (
            "handshake_malformed",
            Box::new(handshake(None, Some(b"\x01\x02 nonsense\r\n\r\n".to_vec()))),
        ),
        // The examples of RFC 6455 §5.7, exactly as the RFC writes them.
        ("frame_rfc_unmasked_hello", Box::new(frames("0x81 0x05 0x48 0x65 0x6c 0x6c 0x6f".into()))),
        (
            "frame_rfc_masked_hello",
            Box::new(frames("0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58".into())),
        ),
        (
            "frame_rfc_fragmented_hello",
            Box::new(frames("0x01 0x03 0x48 0x65 0x6c\n0x80 0x02 0x6c 0x6f".into())),
        ),
        (
            "frame_rfc_ping_and_masked_pong",
            Box::new(frames(
                "0x89 0x05 0x48 0x65 0x6c 0x6c 0x6f\n0x8a 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58".into(),
            )),
        ),
        (
            "frame_rfc_256_bytes_binary",
            Box::new(frames(format!("0x82 0x7E 0x0100 {bytes_256}"))),
        ),
        (
            "frame_rfc_64k_binary_header",
            Box::new(frames("0x82 0x7F 0x0000000000010000".into())),
        ),
        // Close frames.
        (
            "frame_close_1000_bye_masked",
            Box::new(frames("88 85 37 fa 21 3d 34 12 43 44 52".into())),
        ),
        // Frames that break a rule.
        (
            "frame_bad_reserved_opcode",
            Box::new(frames("83 85 37 fa 21 3d 7f 9f 4d 51 58".into())),
        ),
        ("frame_bad_rsv1", Box::new(frames("c1 85 37 fa 21 3d 7f 9f 4d 51 58".into()))),
        ("frame_bad_control_too_long", Box::new(frames("89 fe 00 7e 37 fa 21 3d".into()))),
        ("frame_bad_close_1005", Box::new(frames("88 82 37 fa 21 3d 34 17".into()))),
        ("frame_bad_utf8", Box::new(frames("81 82 37 fa 21 3d f4 d2".into()))),
        ("frame_truncated_payload", Box::new(frames("81 85 37 fa 21 3d 7f 9f".into()))),
        ("frame_truncated_header", Box::new(frames("82 7e 01".into()))),
        (
            "frame_bad_continuation_then_more",
            Box::new(frames("80 82 37 fa 21 3d 5b 93 81 85 37 fa 21 3d 7f 9f 4d 51 58".into())),
        ),
        // Encoding.
        ("encode_text_hello_masked", Box::new(encode("text", "Hello", Some("37fa213d")))),
        ("encode_close_1000_bye_masked", Box::new(encode("close", "1000 bye", Some("37fa213d")))),
        (
            "encode_text_16_bit_length_unmasked",
            Box::new(encode(
                "text",
                "A payload over 125 bytes does not fit in the 7-bit length field: byte 1 then holds 126, and the next two bytes hold the real length, big-endian.",
                None,
            )),
        ),
        // permessage-deflate (RFC 7692 §7.2.3's frames).
        ("frame_deflate_rfc_hello", Box::new(deflate_frames("c1 07 f2 48 cd c9 c9 07 00"))),
        (
            "frame_deflate_fragmented_with_ping",
            Box::new(deflate_frames("41 03 f2 48 cd 89 00 80 04 c9 c9 07 00")),
        ),
        (
            "frame_deflate_shared_window",
            Box::new(deflate_frames("c1 07 f2 48 cd c9 c9 07 00 c1 05 f2 00 11 00 00")),
        ),
        (
            "frame_deflate_bad_rsv1_continuation",
            Box::new(deflate_frames("41 03 f2 48 cd c0 04 c9 c9 07 00")),
        ),
        ("encode_deflate_text_hello", Box::new(deflate_encode("text", "Hello", None))),
        (
            "encode_deflate_text_hello_masked",
            Box::new(deflate_encode("text", "Hello", Some("37fa213d"))),
        ),
        (
            "handshake_deflate_offers",
            Box::new(handshake(
                None,
                Some(edited(
                    "Origin: http://example.com\r\n",
                    "Sec-WebSocket-Extensions: x-webkit-deflate-frame, permessage-deflate; foo\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate\r\n",
                )),
            )),
        ),
        (
            "handshake_deflate_malformed",
            Box::new(handshake(
                None,
                Some(edited(
                    "Origin: http://example.com\r\n",
                    "Sec-WebSocket-Extensions: permessage-deflate; =\r\n",
                )),
            )),
        ),
        // The /learn page's JSON with permessage-deflate (RFC 7692).
        (
            "learn_json_handshake_shared",
            Box::new(learn_handshake(
                "permessage-deflate; client_max_window_bits",
                Some(DeflatePolicy::default()),
            )),
        ),
        (
            "learn_json_handshake_dedicated",
            Box::new(learn_handshake(
                "permessage-deflate; client_max_window_bits",
                Some(DeflatePolicy::context_takeover(12)),
            )),
        ),
        (
            "learn_json_handshake_mixed_offers",
            Box::new(learn_handshake(
                "x-webkit-deflate-frame, permessage-deflate; foo, permessage-deflate; server_no_context_takeover; \
server_max_window_bits=10; client_max_window_bits=12, permessage-deflate",
                Some(DeflatePolicy::default()),
            )),
        ),
        (
            "learn_json_handshake_off",
            Box::new(learn_handshake("permessage-deflate; client_max_window_bits", None)),
        ),
        (
            "learn_json_frames_shared",
            Box::new(|_| {
                use wsloop::Opcode;
                // The browser's compressed "Hello" (RFC 7692 §7.2.3.1), masked; the echo plain
                // (under the threshold), then a long message the server compressed.
                let received = learn_frame(true, Opcode::Text, true, true, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
                let mut sent = learn_frame(true, Opcode::Text, false, false, b"Hello");
                let mut compressor = wsloop::deflate::BroadcastCompressor::new(15);
                compressor.encode(Opcode::Text, "Hello, wsloop! ".repeat(12).as_bytes(), &mut sent);
                let params = DeflateParams {
                    server_no_context_takeover: true,
                    client_no_context_takeover: true,
                    ..DeflateParams::default()
                };
                pretty(&frames_json_deflate(&received, &sent, Some(&params)))
            }),
        ),
        (
            "learn_json_frames_takeover_fragmented",
            Box::new(|_| {
                use wsloop::Opcode;
                // Context takeover: RFC 7692 §7.2.3.2's fragments with a Ping between them, then
                // a second "Hello" that refers back to the first (§7.2.3.3) — here in the same
                // exchange, so it inflates — and a message whose earlier context is not here.
                let mut received = learn_frame(false, Opcode::Text, true, true, &[0xf2, 0x48, 0xcd]);
                received.extend(learn_frame(true, Opcode::Ping, false, true, b"p"));
                received.extend(learn_frame(true, Opcode::Continuation, false, true, &[0xc9, 0xc9, 0x07, 0x00]));
                received.extend(learn_frame(true, Opcode::Text, true, true, &[0xf2, 0x00, 0x11, 0x00, 0x00]));
                let sent = learn_frame(true, Opcode::Text, true, false, &[0xf2, 0x00, 0x11, 0x00, 0x00]);
                pretty(&frames_json_deflate(&received, &sent, Some(&DeflateParams::default())))
            }),
        ),
        // serve --trace.
        ("trace_connection", Box::new(trace)),
    ]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// What `golden_files_match` does with the rendered cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Compare each case with its golden file.
    Compare,
    /// Write each case's golden file, then fail listing what changed.
    Update,
}

/// The mode from `UPDATE_GOLDEN` and `CI`: update mode only with `UPDATE_GOLDEN=1`, and never
/// on CI (any non-empty `CI`), where nobody reads the diff.
fn mode_from(update_golden: Option<&OsStr>, ci: Option<&OsStr>) -> Result<Mode, String> {
    if update_golden != Some(OsStr::new("1")) {
        return Ok(Mode::Compare);
    }
    match ci.filter(|v| !v.is_empty()) {
        Some(ci) => Err(format!(
            "UPDATE_GOLDEN=1 refused: CI={ci:?} is set. Golden files are rewritten only on a \
             developer's machine, where someone reads the diff; unset UPDATE_GOLDEN on CI."
        )),
        None => Ok(Mode::Update),
    }
}

/// Compares (or, in update mode, writes) `dir/NAME.txt` for each rendered case. Returns one
/// line per problem: in compare mode each mismatch or missing file; in update mode each file
/// written, with a short diff summary. Update mode always returns at least one line, so that a
/// run with `UPDATE_GOLDEN=1` never passes.
fn check_golden_files(dir: &Path, rendered: &[(&str, String)], mode: Mode) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, actual) in rendered {
        let path = dir.join(format!("{name}.txt"));
        let expected = match std::fs::read_to_string(&path) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                problems.push(format!("{name}: cannot read {}: {e}", path.display()));
                continue;
            }
        };
        if expected.as_deref() == Some(actual.as_str()) {
            continue;
        }
        match (mode, expected) {
            (Mode::Compare, None) => problems.push(format!(
                "{name}: {} does not exist (run with UPDATE_GOLDEN=1 to create it)",
                path.display()
            )),
            (Mode::Compare, Some(expected)) => problems.push(format!(
                "{name}: differs from {}\n{}",
                path.display(),
                diff_summary(&expected, actual)
            )),
            (Mode::Update, expected) => {
                if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, actual)) {
                    problems.push(format!("{name}: cannot write {}: {e}", path.display()));
                    continue;
                }
                problems.push(match expected {
                    None => format!("{name}: created {} ({} lines)", path.display(), actual.lines().count()),
                    Some(expected) => format!(
                        "{name}: rewrote {}\n{}",
                        path.display(),
                        diff_summary(&expected, actual)
                    ),
                });
            }
        }
    }
    if mode == Mode::Update {
        let changed = problems.len();
        problems.push(format!(
            "UPDATE_GOLDEN=1 wrote {changed} of {} golden files (listed above). This run fails on \
             purpose: read the changes (git diff tests/golden), then run again without UPDATE_GOLDEN.",
            rendered.len()
        ));
    }
    problems
}

/// Files in `dir` that are not the golden file of a case in `names`.
fn unused_golden_files(dir: &Path, names: &[&str]) -> std::io::Result<Vec<String>> {
    let mut unused = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let file = entry?.file_name().to_string_lossy().into_owned();
        let used = file.strip_suffix(".txt").is_some_and(|stem| names.contains(&stem));
        if !used {
            unused.push(file);
        }
    }
    unused.sort();
    Ok(unused)
}

/// `-R +A lines` by a longest-common-subsequence line diff, then the first few changed lines.
fn diff_summary(old: &str, new: &str) -> String {
    const SHOWN: usize = 6;
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // lcs[i][j]: the LCS length of a[i..] and b[j..]. Golden files are a few dozen lines.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut lines = Vec::new();
    let (mut removed, mut added) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            removed += 1;
            lines.push(format!("    -{:>4}: {}", i + 1, a[i]));
            i += 1;
        } else {
            added += 1;
            lines.push(format!("    +{:>4}: {}", j + 1, b[j]));
            j += 1;
        }
    }
    if removed == 0 && added == 0 {
        // Same lines, different bytes: line endings or the final newline.
        return format!(
            "  same lines, different bytes ({} vs {} bytes: line endings or final newline)",
            old.len(),
            new.len()
        );
    }
    let more = lines.len().saturating_sub(SHOWN);
    lines.truncate(SHOWN);
    if more > 0 {
        lines.push(format!("    … {more} more changed lines"));
    }
    format!("  -{removed} +{added} lines:\n{}", lines.join("\n"))
}

#[test]
fn golden_files_match() {
    let mode = mode_from(
        std::env::var_os("UPDATE_GOLDEN").as_deref(),
        std::env::var_os("CI").as_deref(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cases = cases();
    let rendered: Vec<(&str, String)> = cases
        .iter()
        .map(|(name, render)| (*name, render(Style::plain())))
        .collect();
    let problems = check_golden_files(&golden_dir(), &rendered, mode);
    let hint = match mode {
        Mode::Compare => {
            "\n(if the change is intended: UPDATE_GOLDEN=1 cargo test --test explain_golden, read the diff, run again)"
        }
        Mode::Update => "",
    };
    assert!(problems.is_empty(), "{}{hint}", problems.join("\n"));
}

#[test]
fn every_golden_file_is_used_and_names_are_unique() {
    let cases = cases();
    let names: Vec<&str> = cases.iter().map(|(name, _)| *name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        names.len(),
        "two cases share a name, so one golden file: {names:?}"
    );
    let unused = unused_golden_files(&golden_dir(), &names).expect("read tests/golden");
    assert!(
        unused.is_empty(),
        "files in tests/golden that no case in tests/explain_golden.rs uses (delete them, or add the case): {}",
        unused.join(", ")
    );
}

/// A fresh, empty directory under the target dir for one test.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("explain_golden-{test}"));
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{}: {e}", dir.display()),
        _ => {}
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn update_mode_is_refused_on_ci_and_needs_exactly_1() {
    let os = |s: &'static str| Some(OsStr::new(s));
    assert_eq!(mode_from(None, None), Ok(Mode::Compare));
    assert_eq!(mode_from(os("0"), None), Ok(Mode::Compare));
    assert_eq!(mode_from(os("1"), None), Ok(Mode::Update));
    assert_eq!(mode_from(os("1"), os("")), Ok(Mode::Update));
    assert_eq!(mode_from(None, os("true")), Ok(Mode::Compare));
    for ci in ["true", "1", "yes"] {
        let err = mode_from(os("1"), os(ci)).expect_err(ci);
        assert!(err.contains("UPDATE_GOLDEN=1 refused") && err.contains(ci), "{err}");
    }
}

#[test]
fn update_mode_writes_lists_changes_and_fails() {
    let dir = scratch_dir("update");
    std::fs::write(dir.join("same.txt"), "a\nb\n").unwrap();
    std::fs::write(dir.join("changed.txt"), "one\ntwo\nthree\n").unwrap();
    let rendered = [
        ("same", "a\nb\n".to_string()),
        ("changed", "one\n2\nthree\nfour\n".to_string()),
        ("new", "x\n".to_string()),
    ];

    let compare = check_golden_files(&dir, &rendered, Mode::Compare);
    assert_eq!(compare.len(), 2, "{compare:#?}");
    assert!(compare[0].starts_with("changed: differs from"), "{compare:#?}");
    assert!(
        compare[0].contains("-1 +2 lines") && compare[0].contains("-   2: two"),
        "{compare:#?}"
    );
    assert!(
        compare[1].starts_with("new: ") && compare[1].contains("does not exist"),
        "{compare:#?}"
    );

    let update = check_golden_files(&dir, &rendered, Mode::Update);
    assert_eq!(update.len(), 3, "{update:#?}");
    assert!(
        update[0].starts_with("changed: rewrote") && update[0].contains("+   2: 2"),
        "{update:#?}"
    );
    assert!(
        update[1].starts_with("new: created") && update[1].contains("(1 lines)"),
        "{update:#?}"
    );
    assert!(update[2].contains("wrote 2 of 3 golden files"), "{update:#?}");
    for (name, text) in &rendered {
        assert_eq!(&std::fs::read_to_string(dir.join(format!("{name}.txt"))).unwrap(), text);
    }

    // Written: compare mode now passes, update mode still fails, having changed nothing.
    assert_eq!(check_golden_files(&dir, &rendered, Mode::Compare), Vec::<String>::new());
    let again = check_golden_files(&dir, &rendered, Mode::Update);
    assert_eq!(again.len(), 1, "{again:#?}");
    assert!(again[0].contains("wrote 0 of 3"), "{again:#?}");
}

#[test]
fn unused_golden_files_are_listed() {
    let dir = scratch_dir("unused");
    for file in ["kept.txt", "gone.txt", "notes.md"] {
        std::fs::write(dir.join(file), "x\n").unwrap();
    }
    assert_eq!(
        unused_golden_files(&dir, &["kept"]).unwrap(),
        vec!["gone.txt".to_string(), "notes.md".to_string()]
    );
    assert_eq!(
        unused_golden_files(&dir, &["kept", "gone", "notes"]).unwrap(),
        vec!["notes.md".to_string()]
    );
}

#[test]
fn diff_summary_counts_and_shows_lines() {
    assert_eq!(
        diff_summary("a\nb\nc\n", "a\nB\nc\n"),
        "  -1 +1 lines:\n    -   2: b\n    +   2: B"
    );
    assert_eq!(
        diff_summary("a\n", "a\nb\nc\n"),
        "  -0 +2 lines:\n    +   2: b\n    +   3: c"
    );
    assert!(diff_summary("a\r\n", "a\n").contains("same lines, different bytes"));
    let many: String = (0..20).map(|i| format!("{i}\n")).collect();
    let s = diff_summary("", &many);
    assert!(
        s.starts_with("  -0 +20 lines:") && s.ends_with("… 14 more changed lines"),
        "{s}"
    );
}

#[test]
fn colour_output_is_the_plain_output_plus_escapes() {
    for (name, render) in cases() {
        let plain = render(Style::plain());
        let colour = render(Style { color: true });
        if name.starts_with("learn_json_") {
            // JSON for the page, which does its own styling: the same either way.
            assert_eq!(colour, plain, "{name}");
            continue;
        }
        assert!(colour.contains("\x1b["), "{name}: no colour at all");
        assert!(!plain.contains('\x1b'), "{name}: escape codes in plain output");
        assert_eq!(strip_ansi(&colour), plain, "{name}");
    }
}

fn run(name: &str) -> String {
    let (_, render) = cases().into_iter().find(|(n, _)| *n == name).expect(name);
    render(Style::plain())
}

#[test]
fn rfc_handshake_shows_each_step_of_the_accept_value() {
    let s = run("handshake_rfc");
    assert!(s.contains("dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11"));
    // RFC 6455 §1.3 gives the digest byte by byte, and its base64.
    assert!(s.contains("b3 7a 4f 2c c0 62 4f 16 90 f6 46 06 cf 38 59 45 b2 be c4 ea"));
    assert!(s.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert!(s.contains("| HTTP/1.1 101 Switching Protocols\\r\\n"));
    assert!(s.contains("| Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\\r\\n"));
    assert!(s.contains("not base64-decoded"));
    assert!(s.contains("not meant to be decoded"));
    assert_eq!(s.matches('✓').count(), 8, "{s}");
    assert!(!s.contains('✗'));
}

#[test]
fn custom_key_gives_its_own_accept_value() {
    let s = run("handshake_custom_key");
    assert!(s.contains("HSmrc0sMlYUkAGmm5OPpG2HaGWk="));
    assert!(!s.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
}

#[test]
fn each_broken_rule_names_itself_and_the_status_sent() {
    for (name, status, rule) in [
        (
            "handshake_version_8",
            "HTTP/1.1 426 Upgrade Required",
            "Sec-WebSocket-Version MUST be 13",
        ),
        ("handshake_post", "HTTP/1.1 405 Method Not Allowed", "MUST be GET"),
        (
            "handshake_no_upgrade",
            "HTTP/1.1 400 Bad Request",
            "token \"websocket\"",
        ),
        ("handshake_bad_key", "HTTP/1.1 400 Bad Request", "16-byte value"),
        ("handshake_missing_host", "HTTP/1.1 400 Bad Request", "Host header"),
        (
            "handshake_oversized",
            "HTTP/1.1 431 Request Header Fields Too Large",
            "larger than",
        ),
        ("handshake_malformed", "HTTP/1.1 400 Bad Request", "invalid token"),
    ] {
        let s = run(name);
        assert!(s.contains(&format!("| {status}\\r\\n")), "{name}: {status}\n{s}");
        assert!(s.contains(rule), "{name}: {rule}\n{s}");
        assert!(s.contains('✗'), "{name}");
        assert!(!s.contains("101 Switching"), "{name}");
        assert!(
            !s.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{name}: no accept value for a refused request"
        );
    }
    let s = run("handshake_version_8");
    assert!(s.contains("| Sec-WebSocket-Version: 13\\r\\n"));
    assert!(run("handshake_post").contains("| Allow: GET\\r\\n"));
    assert!(run("handshake_incomplete").contains("not complete"));
}

#[test]
fn rfc_5_7_frames_decode_to_their_meaning() {
    let s = run("frame_rfc_unmasked_hello");
    assert!(s.contains("1000 0001") && s.contains("0000 0101"));
    assert!(s.contains("text \"Hello\""));
    assert!(
        s.contains("A server requires MASK=1 on every frame from a client"),
        "{s}"
    );
    let s = run("frame_rfc_masked_hello");
    assert!(s.contains("1000 0101"));
    assert!(s.contains("37 fa 21 3d"));
    assert!(s.contains("payload  48 65 6c 6c 6f"));
    assert!(s.contains("✓ delivers the text message \"Hello\""));
    let s = run("frame_rfc_fragmented_hello");
    assert!(s.contains("\"Hel\"") && s.contains("\"lo\""));
    assert!(s.contains("the text message \"Hello\", reassembled from 2 frames"));
    let s = run("frame_rfc_ping_and_masked_pong");
    assert!(s.contains("ping") && s.contains("pong"));
    let s = run("frame_rfc_256_bytes_binary");
    assert!(s.contains("16-bit extended length = 256  01 00"));
    assert!(s.contains("… (192 more bytes)"));
    assert!(s.contains("a binary message of 256 bytes"));
    let s = run("frame_rfc_64k_binary_header");
    assert!(s.contains("64-bit extended length = 65536  00 00 00 00 00 01 00 00"));
    assert!(s.contains("65536 bytes are missing"));
}

#[test]
fn broken_frames_name_the_rule_and_the_close_code() {
    for (name, rule, code) in [
        (
            "frame_bad_reserved_opcode",
            "reserved opcode 0x3 (RFC 6455 §5.2; close code 1002)",
            "1002",
        ),
        (
            "frame_bad_rsv1",
            "RSV1 set without a negotiated extension (RFC 6455 §5.2",
            "1002",
        ),
        (
            "frame_bad_control_too_long",
            "control frame over 125 bytes (RFC 6455 §5.5",
            "1002",
        ),
        (
            "frame_bad_close_1005",
            "close code 1005 may not be sent on the wire (RFC 6455 §7.4",
            "1002",
        ),
        (
            "frame_bad_utf8",
            "invalid UTF-8 (RFC 6455 §8.1; close code 1007)",
            "1007",
        ),
        (
            "frame_bad_continuation_then_more",
            "continuation frame with nothing to continue",
            "1002",
        ),
    ] {
        let s = run(name);
        assert!(s.contains(rule), "{name}: {rule}\n{s}");
        assert!(s.contains(&format!("with close code {code}")), "{name}\n{s}");
        assert!(
            s.contains(&format!("It sends: close {code} (")) && s.contains("\n    88 "),
            "{name}: the Close frame sent back\n{s}"
        );
    }
    assert!(run("frame_bad_continuation_then_more").contains("ignored: the connection has already failed"));
    assert!(run("frame_truncated_payload").contains("3 bytes are missing"));
    assert!(run("frame_truncated_header").contains("needs at least 1 more byte"));
    let s = run("frame_close_1000_bye_masked");
    assert!(s.contains("03 e8 = 1000 (normal closure)"));
    assert!(s.contains("\"bye\""));
}

#[test]
fn encoding_hello_gives_the_rfc_bytes() {
    let s = run("encode_text_hello_masked");
    assert!(
        s.contains("header   81 85 37 fa 21 3d\n    payload  7f 9f 4d 51 58\n"),
        "{s}"
    );
    assert!(s.contains("✓ delivers the text message \"Hello\""));
    assert!(run("encode_text_16_bit_length_unmasked").contains("header   81 7e 00 90"));
}

#[test]
fn deflate_frames_show_compressed_tail_and_inflated() {
    let s = run("frame_deflate_rfc_hello");
    assert!(s.contains("compressed  f2 48 cd c9 c9 07 00"), "{s}");
    assert!(s.contains("+ tail      00 00 ff ff"), "{s}");
    assert!(s.contains("inflated    48 65 6c 6c 6f  \"Hello\""), "{s}");
    assert!(s.contains("✓ delivers the text message \"Hello\""), "{s}");
    let s = run("frame_deflate_fragmented_with_ping");
    assert!(s.contains("reassembled from 2 frames"), "{s}");
    let s = run("frame_deflate_shared_window");
    assert_eq!(s.matches("✓ delivers the text message \"Hello\"").count(), 2, "{s}");
    let s = run("frame_deflate_bad_rsv1_continuation");
    assert!(
        s.contains("RSV1 (compressed) on a continuation frame (RFC 7692 §6; close code 1002)"),
        "{s}"
    );
    let s = run("encode_deflate_text_hello");
    assert!(s.contains("header   c1 07\n    payload  f2 48 cd c9 c9 07 00\n"), "{s}");
    assert!(
        s.contains("f2 48 cd c9 c9 07 00 00 00 ff ff"),
        "the flush before the cut: {s}"
    );
    let s = run("encode_deflate_text_hello_masked");
    assert!(s.contains("header   c1 87 37 fa 21 3d"), "{s}");
    assert!(s.contains("✓ delivers the text message \"Hello\""), "{s}");
}

#[test]
fn deflate_offers_are_judged_one_by_one() {
    let s = run("handshake_deflate_offers");
    assert!(s.contains("not permessage-deflate"), "{s}");
    assert!(s.contains("✗ declined: unknown parameter \"foo\""), "{s}");
    assert!(s.contains("✓ accepted, answered as: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"), "{s}");
    assert!(
        s.contains("acceptable, but one permessage-deflate is agreed already"),
        "{s}"
    );
    // The 101 carries the answer (its line is long, so the display shortens it).
    assert!(
        s.contains("| Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_"),
        "{s}"
    );
    let s = run("handshake_deflate_malformed");
    assert!(s.contains("| HTTP/1.1 400 Bad Request\\r\\n"), "{s}");
    assert!(s.contains("extension-list grammar"), "{s}");
}

#[test]
fn bad_arguments_are_errors() {
    assert!(explain_frames("", Style::plain()).is_err());
    assert!(explain_frames("zz", Style::plain()).is_err());
    assert!(explain_encode("texty", "x", None, Style::plain()).is_err());
    assert!(explain_encode("text", "x", Some("37fa"), Style::plain()).is_err());
    assert!(explain_encode("close", "bye", None, Style::plain()).is_err());
    assert!(explain_handshake(Some("k"), Some(b"GET / HTTP/1.1\r\n\r\n"), Style::plain()).is_err());
    assert!(explain_encode_deflate("ping", "x", None, Style::plain()).is_err());
    assert!(explain_frames_deflate("", Style::plain()).is_err());
}
