//! JSON strings (RFC 8259 §7): the one escaper shared by the demo's chat messages and the
//! teaching renderer's JSON (`explain`).
//!
//! Text from the network goes through here, so the cost must not depend on what the text
//! holds: the escaped length is counted first ([`escaped_len_within`], a table lookup per
//! byte, stopping as soon as a cap is passed) so the caller can check it against a limit
//! *before* anything is built, and [`write_str`] writes into one buffer reserved at that exact
//! size — runs of plain bytes are copied with one `push_str` each, and an escape is a
//! `&'static str` from a table, never a `format!` per character. A message of control
//! characters (each becomes the 6-byte `\u00XX`) costs two linear passes and one allocation,
//! or, when it is too big, part of one pass and none.

/// What each byte needs: [`PLAIN`] (copied as it is), [`SEPARATOR`] (0xE2, the first byte of
/// U+2028/U+2029, which are escaped only when the next two bytes complete them) or the index of
/// its escape in [`ESCAPES`] plus one.
const CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b as u8 + 1;
        b += 1;
    }
    t[b'"' as usize] = QUOTE_ESCAPE;
    t[b'\\' as usize] = BACKSLASH_ESCAPE;
    t[0xE2] = SEPARATOR;
    t
};

const PLAIN: u8 = 0;
const SEPARATOR: u8 = 0xFF;
const QUOTE_ESCAPE: u8 = 33;
const BACKSLASH_ESCAPE: u8 = 34;

/// The escapes: control characters 0x00–0x1F (the two-letter forms where RFC 8259 §7 has one,
/// `\u00XX` otherwise), then `"` and `\`.
const ESCAPES: [&str; 34] = [
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007", "\\b", "\\t", "\\n",
    "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015",
    "\\u0016", "\\u0017", "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    "\\\"", "\\\\",
];

/// U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR are legal in JSON but not in
/// JavaScript source before ES2019; escaping them costs three bytes each and makes the output
/// safe to embed in a script.
fn separator_escape(rest: &[u8]) -> Option<&'static str> {
    match rest {
        [0xE2, 0x80, 0xA8, ..] => Some("\\u2028"),
        [0xE2, 0x80, 0xA9, ..] => Some("\\u2029"),
        _ => None,
    }
}

/// The escape for the byte at the start of `rest`, if it needs one.
#[inline]
fn escape_at(rest: &[u8]) -> Option<&'static str> {
    let first = *rest.first()?;
    match CLASS[first as usize] {
        PLAIN => None,
        SEPARATOR => separator_escape(rest),
        class => ESCAPES.get(class as usize - 1).copied(),
    }
}

/// Bytes each byte adds when escaped: 5 for `\u00XX`, 1 for the two-letter escapes, 0 for the
/// rest (the separators, 3 each, are counted apart: they are rare, and 0xE2 alone says nothing).
const EXTRA: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = 5;
        b += 1;
    }
    t[0x08] = 1;
    t[b'\t' as usize] = 1;
    t[b'\n' as usize] = 1;
    t[0x0C] = 1;
    t[b'\r' as usize] = 1;
    t[b'"' as usize] = 1;
    t[b'\\' as usize] = 1;
    t
};

/// Bytes `s` takes as a JSON string, quotes excluded: what [`push_str`] will append, minus 2.
pub fn escaped_len(s: &str) -> usize {
    escaped_len_within(s, usize::MAX).unwrap_or(usize::MAX)
}

/// Bytes examined between two checks against the cap of [`escaped_len_within`].
const BLOCK: usize = 64 * 1024;

/// [`escaped_len`], or `Err(n)` — at least `n` bytes, more than `cap` — as soon as the count
/// passes `cap`. This runs on whole messages from the network before anything is built, so
/// it is one table lookup per byte with no branch on the content, and it stops early: text
/// that cannot fit is not read to its end.
pub fn escaped_len_within(s: &str, cap: usize) -> Result<usize, usize> {
    let bytes = s.as_bytes();
    let mut len = 0usize;
    for block in bytes.chunks(BLOCK) {
        let mut extra = 0usize;
        let mut i = 0;
        while i < block.len() {
            extra += EXTRA[block[i] as usize] as usize;
            i += 1;
        }
        len += block.len() + extra;
        if len > cap {
            return Err(len);
        }
    }
    // U+2028 and U+2029 are three bytes that become six; 0xE2 starts other characters too,
    // so they are looked for only when an 0xE2 is there at all.
    if bytes.contains(&0xE2) {
        let separators = bytes
            .windows(3)
            .filter(|w| matches!(w, [0xE2, 0x80, 0xA8 | 0xA9]))
            .count();
        len += separators * 3;
    }
    if len > cap {
        return Err(len);
    }
    Ok(len)
}

/// Appends `s` as a JSON string, quotes included (RFC 8259 §7). Reserves the exact escaped
/// size first, so `out` grows at most once.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(escaped_len(s) + 2);
    write_str(out, s);
}

/// [`push_str`] for a caller that has already reserved room (having counted
/// [`escaped_len`] to check it against a limit): one pass, no second count.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut plain_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or(0);
        if CLASS[b as usize] == PLAIN {
            i += 1;
            continue;
        }
        let Some(e) = escape_at(bytes.get(i..).unwrap_or_default()) else {
            i += 1; // 0xE2 starting some other character
            continue;
        };
        // `i` is at an ASCII byte or at 0xE2, a lead byte: always a character boundary.
        if plain_from < i {
            out.push_str(s.get(plain_from..i).unwrap_or_default());
        }
        out.push_str(e);
        i += if CLASS[b as usize] == SEPARATOR { 3 } else { 1 };
        plain_from = i;
    }
    out.push_str(s.get(plain_from..).unwrap_or_default());
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: RFC 8259 §7 read literally, one character at a time.
    fn reference(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn quoted(s: &str) -> String {
        let mut out = String::new();
        push_str(&mut out, s);
        out
    }

    #[test]
    fn escapes_what_rfc_8259_requires() {
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("hi"), "\"hi\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quoted("\n\r\t\u{8}\u{c}"), "\"\\n\\r\\t\\b\\f\"");
        assert_eq!(quoted("\u{0}\u{1}\u{1f}\u{7f}"), "\"\\u0000\\u0001\\u001f\u{7f}\"");
        assert_eq!(quoted("x\u{2028}y\u{2029}"), "\"x\\u2028y\\u2029\"");
        // Other characters starting with 0xE2 stay as they are.
        assert_eq!(quoted("€ ⁇ \u{2027}\u{202a}"), "\"€ ⁇ \u{2027}\u{202a}\"");
        assert_eq!(quoted("café 日本 🎉"), "\"café 日本 🎉\"");
    }

    #[test]
    fn counts_the_escaped_size_before_building() {
        assert_eq!(escaped_len(""), 0);
        assert_eq!(escaped_len("abc"), 3);
        assert_eq!(escaped_len("\u{1}"), 6);
        assert_eq!(escaped_len("\n"), 2);
        assert_eq!(escaped_len("\u{2028}"), 6);
        assert_eq!(escaped_len("€"), 3);
        // The attack of issue 18: each control character is six bytes once escaped.
        assert_eq!(escaped_len(&"\u{1}".repeat(1000)), 6000);
    }

    #[test]
    fn the_two_tables_agree() {
        for b in 0u8..0x80 {
            let s = (b as char).to_string();
            let escaped = escape_at(&[b]).map_or(1, str::len);
            assert_eq!(EXTRA[b as usize] as usize + 1, escaped, "byte {b:#04x}");
            assert_eq!(escaped_len(&s), escaped, "byte {b:#04x}");
        }
    }

    #[test]
    fn stops_counting_past_the_cap() {
        let bomb = "\u{1}".repeat(1 << 20);
        assert_eq!(escaped_len_within(&bomb, 6 << 20), Ok(6 << 20));
        // Past the cap after the first block: the rest is not read.
        assert_eq!(escaped_len_within(&bomb, 1000), Err(6 * BLOCK));
        assert_eq!(escaped_len_within(&bomb, (6 << 20) - 1), Err(6 << 20));
        // The separators count too, and can be what passes the cap.
        assert_eq!(escaped_len_within("\u{2028}", 6), Ok(6));
        assert_eq!(escaped_len_within("\u{2028}", 5), Err(6));
        assert_eq!(escaped_len_within("abc", 3), Ok(3));
        assert_eq!(escaped_len_within("abc", 2), Err(3));
    }

    #[test]
    fn grows_the_buffer_once() {
        let text = "\u{1}".repeat(100_000);
        let mut out = String::from("{\"text\":");
        let before = out.len();
        push_str(&mut out, &text);
        assert_eq!(out.len() - before, 600_002);
        // Reserved exactly: no doubling past what was needed.
        assert!(out.capacity() < before + 600_002 + 64, "capacity {}", out.capacity());
    }

    proptest! {
        #[test]
        fn matches_the_reference(s in any::<String>()) {
            let q = quoted(&s);
            prop_assert_eq!(&q, &reference(&s));
            prop_assert_eq!(escaped_len(&s) + 2, q.len());
            let n = q.len() - 2;
            prop_assert_eq!(escaped_len_within(&s, n), Ok(n));
            if n > 0 {
                prop_assert!(escaped_len_within(&s, n - 1).is_err());
            }
        }

        #[test]
        fn matches_the_reference_on_escape_heavy_text(
            parts in proptest::collection::vec(
                prop_oneof![
                    (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap_or('a').to_string()),
                    Just("\"".to_owned()), Just("\\".to_owned()), Just("\u{2028}".to_owned()),
                    Just("\u{2029}".to_owned()), Just("\u{2027}".to_owned()), Just("€".to_owned()),
                    "[a-z]{0,3}",
                ],
                0..40,
            )
        ) {
            let s: String = parts.concat();
            let q = quoted(&s);
            prop_assert_eq!(&q, &reference(&s));
            prop_assert_eq!(escaped_len(&s) + 2, q.len());
        }
    }
}
