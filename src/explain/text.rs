//! Small text helpers shared by the renderers: ANSI styling, hex in and out, bit pictures,
//! quoting, and the column tables that show masking byte by byte.

use std::fmt::Write as _;

use super::Style;

/// How many payload bytes the renderers show before shortening ("… (N more bytes)").
pub(crate) const SHOW_BYTES: usize = 64;

/// Bytes per row in the byte tables.
const ROW_BYTES: usize = 16;

impl Style {
    fn paint(self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// A heading.
    pub(crate) fn head(self, s: &str) -> String {
        self.paint("1", s)
    }

    /// Something that passed.
    pub(crate) fn ok(self, s: &str) -> String {
        self.paint("32", s)
    }

    /// Something that broke a rule.
    pub(crate) fn bad(self, s: &str) -> String {
        self.paint("1;31", s)
    }

    /// Something pending or worth a second look.
    pub(crate) fn warn(self, s: &str) -> String {
        self.paint("33", s)
    }

    /// A field name.
    pub(crate) fn field(self, s: &str) -> String {
        self.paint("36", s)
    }

    /// Bytes as they are on the wire.
    pub(crate) fn wire(self, s: &str) -> String {
        self.paint("35", s)
    }

    /// Secondary text: section numbers, explanations.
    pub(crate) fn dim(self, s: &str) -> String {
        self.paint("2", s)
    }
}

/// `81 85 37`: bytes as lowercase hex pairs separated by spaces.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `37fa213d`: bytes as lowercase hex without separators.
pub(crate) fn hex_compact(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// At most [`SHOW_BYTES`] of `bytes` in hex, then `… (N more bytes)` when there are more.
pub(crate) fn hex_short(bytes: &[u8], limit: usize) -> String {
    let shown = bytes.get(..limit).unwrap_or(bytes);
    let mut s = hex(shown);
    if bytes.len() > shown.len() {
        let _ = write!(s, " {}", more(bytes.len() - shown.len()));
    }
    s
}

/// Bytes in hex, 16 to a line, each line starting with `indent`; at most `limit` bytes, then a
/// line `… (N more bytes)`.
pub(crate) fn hex_lines(out: &mut String, indent: &str, bytes: &[u8], limit: usize, style: Style) {
    let shown = bytes.get(..limit).unwrap_or(bytes);
    for row in shown.chunks(ROW_BYTES) {
        let _ = writeln!(out, "{indent}{}", style.wire(&hex(row)));
    }
    if bytes.len() > shown.len() {
        let _ = writeln!(out, "{indent}{}", more(bytes.len() - shown.len()));
    }
}

/// `… (1 more byte)` / `… (192 more bytes)`.
pub(crate) fn more(n: usize) -> String {
    format!("… ({n} more {})", plural(n as u64, "byte", "bytes"))
}

/// `singular` when `n` is 1.
pub(crate) fn plural<'a>(n: u64, singular: &'a str, plural: &'a str) -> &'a str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

/// `1000 0001`: the eight bits of a byte, most significant first, in two nibbles.
pub(crate) fn bits(b: u8) -> String {
    format!("{:04b} {:04b}", b >> 4, b & 0x0F)
}

/// The bits of `b` selected by `mask`, the others shown as dots: `bits_of(0x81, 0x0F)` is
/// `.... 0001`. This is how the RFC's frame diagram reads: one field at a time.
pub(crate) fn bits_of(b: u8, mask: u8) -> String {
    let mut s = String::with_capacity(9);
    for i in (0..8).rev() {
        if i == 3 {
            s.push(' ');
        }
        let bit = 1u8 << i;
        s.push(match (mask & bit != 0, b & bit != 0) {
            (false, _) => '.',
            (true, true) => '1',
            (true, false) => '0',
        });
    }
    s
}

/// `bytes 2-5` or `byte 2` for `len` bytes starting at `start`.
pub(crate) fn span(start: usize, len: usize) -> String {
    match len {
        0 | 1 => format!("byte {start}"),
        _ => format!("bytes {start}-{}", start + len - 1),
    }
}

/// Parses hex bytes the way people paste them: whitespace, commas and colons between bytes,
/// `0x` or `\x` prefixes, and multi-byte groups such as RFC 6455 §5.7's `0x0100`.
pub(crate) fn parse_hex(input: &str) -> Result<Vec<u8>, String> {
    let cleaned = input.replace("\\x", " ");
    let mut out = Vec::new();
    let separators = |c: char| c.is_whitespace() || ",;:-[](){}".contains(c);
    for token in cleaned.split(separators).filter(|t| !t.is_empty()) {
        let digits = token
            .strip_prefix("0x")
            .or_else(|| token.strip_prefix("0X"))
            .unwrap_or(token);
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "{token:?} is not hex: write bytes as pairs of hex digits, e.g. 81 85 37 fa or 0x81,0x85"
            ));
        }
        if digits.len() % 2 != 0 {
            return Err(format!(
                "{token:?} has an odd number of hex digits: write each byte as two digits (e.g. 05, not 5)"
            ));
        }
        for pair in digits.as_bytes().chunks(2) {
            let pair = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            out.push(u8::from_str_radix(pair, 16).map_err(|e| format!("{pair:?}: {e}"))?);
        }
    }
    Ok(out)
}

/// `"Hello"`: text in double quotes, with quotes, backslashes and control characters escaped so
/// that what is shown is exactly what was sent.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// [`quote`] on at most `limit` bytes of `s` (cut at a character boundary), then
/// `… (N more bytes)` when shortened.
pub(crate) fn quote_short(s: &str, limit: usize) -> String {
    let mut end = s.len().min(limit);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let shown = s.get(..end).unwrap_or_default();
    let mut out = quote(shown);
    if end < s.len() {
        let _ = write!(out, " {}", more(s.len() - end));
    }
    out
}

/// Payload bytes as text when they are UTF-8 a person can read (no control characters other
/// than tab and line breaks); `None` when hex says more.
pub(crate) fn readable_text(bytes: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(bytes).ok()?;
    let readable = s.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    readable.then_some(s)
}

/// One labelled row of a [`byte_table`], with the style its bytes are painted in.
pub(crate) type ByteRow<'a> = (&'a str, &'a [u8], fn(Style, &str) -> String);

/// A column table of byte rows of equal length, [`ROW_BYTES`] columns per block, at most
/// [`SHOW_BYTES`] bytes. With `chars`, a last unlabelled row shows each printable ASCII byte
/// under its column (`.` for others), so a reader can match bytes to letters.
///
/// ```text
///     masked   7f 9f 4d 51 58
///     key      37 fa 21 3d 37
///     payload  48 65 6c 6c 6f
///               H  e  l  l  o
/// ```
pub(crate) fn byte_table(out: &mut String, indent: &str, rows: &[ByteRow<'_>], chars: Option<&[u8]>, style: Style) {
    let total = rows.first().map_or(0, |(_, bytes, _)| bytes.len());
    let width = rows
        .iter()
        .map(|(label, _, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    let shown = total.min(SHOW_BYTES);
    // The letters row only when it shows at least one letter.
    let chars = chars.filter(|c| c.get(..shown).unwrap_or(c).iter().any(|b| b.is_ascii_graphic()));
    let spaced = rows.len() > 1 || chars.is_some();
    let mut start = 0;
    while start < shown {
        let end = (start + ROW_BYTES).min(shown);
        if start > 0 && spaced {
            out.push('\n');
        }
        for (label, bytes, paint) in rows {
            let cells = hex(bytes.get(start..end).unwrap_or_default());
            // A lone row is labelled once; rows that repeat per block are labelled each time.
            let label = if spaced || start == 0 { label } else { "" };
            let _ = writeln!(
                out,
                "{indent}{}  {}",
                style.dim(&pad(label, width)),
                paint(style, &cells)
            );
        }
        if let Some(chars) = chars {
            let row: Vec<String> = chars
                .get(start..end)
                .unwrap_or_default()
                .iter()
                .map(|&b| {
                    let c = if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '.'
                    };
                    format!("{c:>2}")
                })
                .collect();
            let _ = writeln!(out, "{indent}{}  {}", pad("", width), row.join(" "));
        }
        start = end;
    }
    if total > shown {
        let _ = writeln!(out, "{indent}{}", more(total - shown));
    }
}

/// Left-aligns `s` in `width` characters (padding counted on the unstyled text, so that colour
/// does not change the layout).
pub(crate) fn pad(s: &str, width: usize) -> String {
    format!("{s:<width$}")
}

/// Removes ANSI escape sequences: colour output with them removed equals the plain output.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte (a letter).
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_input_forms() {
        let want = vec![0x82, 0x7e, 0x01, 0x00];
        assert_eq!(parse_hex("0x82 0x7E 0x0100"), Ok(want.clone()));
        assert_eq!(parse_hex("82,7e,01,00"), Ok(want.clone()));
        assert_eq!(parse_hex("827e0100"), Ok(want.clone()));
        assert_eq!(parse_hex("\\x82\\x7e\\x01\\x00"), Ok(want.clone()));
        assert_eq!(parse_hex("[0x82, 0x7e]\n01:00"), Ok(want));
        assert_eq!(parse_hex("  "), Ok(vec![]));
        assert!(parse_hex("0x5").unwrap_err().contains("odd"));
        assert!(parse_hex("zz").unwrap_err().contains("not hex"));
        assert!(parse_hex("0x").unwrap_err().contains("not hex"));
    }

    #[test]
    fn bit_pictures() {
        assert_eq!(bits(0x81), "1000 0001");
        assert_eq!(bits_of(0x81, 0x80), "1... ....");
        assert_eq!(bits_of(0x81, 0x0F), ".... 0001");
        assert_eq!(bits_of(0x85, 0x7F), ".000 0101");
    }

    #[test]
    fn quoting_and_shortening() {
        assert_eq!(quote("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u{1}\"");
        assert_eq!(quote_short("héllo", 2), "\"h\" … (5 more bytes)");
        assert_eq!(hex_short(&[1, 2, 3], 2), "01 02 … (1 more byte)");
        assert_eq!(readable_text(b"Hello"), Some("Hello"));
        assert_eq!(readable_text(&[0, 0]), None);
        assert_eq!(readable_text(&[0xc3, 0x28]), None);
    }

    #[test]
    fn ansi_is_stripped() {
        let s = Style { color: true };
        assert_eq!(strip_ansi(&format!("a{}c", s.bad("b"))), "abc");
    }
}
