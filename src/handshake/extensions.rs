//! The `Sec-WebSocket-Extensions` header (RFC 6455 §9.1), parsed and written by hand.
//!
//! ```text
//! Sec-WebSocket-Extensions = extension-list
//! extension-list = 1#extension
//! extension = extension-token *( ";" extension-param )
//! extension-token = registered-token
//! registered-token = token
//! extension-param = token [ "=" (token | quoted-string) ]
//!     ;When using the quoted-string syntax variant, the value
//!     ;after quoted-string unescaping MUST conform to the
//!     ;'token' ABNF.
//! ```
//!
//! The header "MAY be split or combined across multiple lines" (RFC 6455 §9.1): several header
//! fields are one list, in order, so [`parse_extensions`] takes every value. Whitespace (SP,
//! HTAB) is allowed around `,`, `;` and `=` (the "implied *LWS rule" of RFC 2616 §2.1), and
//! empty list elements (`a, , b`) are skipped, as RFC 9110 §5.6.1 asks of recipients; a list
//! with no element at all breaks `1#extension`.
//!
//! A quoted value is unescaped and must then be a token, so `x="10"` and `x=10` parse to the
//! same [`ExtensionParam`], and writing one back ([`Extension`]'s `Display`) always uses the
//! token form. That makes parse → write → parse a fixed point, which the fuzz target checks.
//!
//! Names are kept as sent and compared exactly by the extensions that read them: RFC 7692 §7
//! registers `permessage-deflate` and its parameters in lower case.
//!
//! ```
//! use wsloop::handshake::extensions::parse_extensions;
//!
//! let offers = parse_extensions([
//!     &b"permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\""[..],
//!     &b"permessage-deflate"[..],
//! ]).unwrap();
//! assert_eq!(offers.len(), 2);
//! assert_eq!(offers[0].params[1].value.as_deref(), Some("10"));
//! assert_eq!(
//!     offers[0].to_string(),
//!     "permessage-deflate; client_max_window_bits; server_max_window_bits=10"
//! );
//! ```

use std::fmt;

/// One extension in a `Sec-WebSocket-Extensions` list: an offer in a request, or an accepted
/// extension in a response (RFC 6455 §9.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extension {
    /// The `extension-token`, e.g. `permessage-deflate`.
    pub name: String,
    /// The `extension-param`s, in order, duplicates kept (RFC 7692 §7 makes them a reason to
    /// decline, which only the extension can say).
    pub params: Vec<ExtensionParam>,
}

/// One `extension-param`: a name and an optional value, unescaped if it was quoted
/// (RFC 6455 §9.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtensionParam {
    /// The parameter name (a token).
    pub name: String,
    /// The value (a token once unescaped), or `None` for a parameter without `=`.
    pub value: Option<String>,
}

impl Extension {
    /// An extension with no parameters.
    pub fn new(name: &str) -> Self {
        Extension {
            name: name.to_owned(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter, with or without a value.
    pub fn param(mut self, name: &str, value: Option<&str>) -> Self {
        self.params.push(ExtensionParam {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        });
        self
    }
}

impl fmt::Display for Extension {
    /// The element as it goes in the header: `name; p1; p2=v` (values as tokens).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for p in &self.params {
            write!(f, "; {}", p.name)?;
            if let Some(v) = &p.value {
                write!(f, "={v}")?;
            }
        }
        Ok(())
    }
}

/// Writes a list of extensions as one header value: elements joined by `, `.
pub fn format_extensions(list: &[Extension]) -> String {
    let mut s = String::new();
    for (i, e) in list.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&e.to_string());
    }
    s
}

/// A `Sec-WebSocket-Extensions` value that does not follow the grammar of RFC 6455 §9.1.
/// "the recipient of such malformed data MUST immediately _Fail the WebSocket Connection_".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionSyntaxError {
    /// Which header field (0 for the first `Sec-WebSocket-Extensions` line).
    pub field: usize,
    /// The byte offset in that field's value where the grammar broke.
    pub offset: usize,
    /// What the grammar wanted there.
    pub expected: &'static str,
}

impl fmt::Display for ExtensionSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sec-WebSocket-Extensions is malformed at byte {} of field {}: expected {} (RFC 6455 §9.1)",
            self.offset,
            self.field + 1,
            self.expected
        )
    }
}

impl std::error::Error for ExtensionSyntaxError {}

/// Parses every `Sec-WebSocket-Extensions` field value, in order, into one list
/// (RFC 6455 §9.1). Fails on the first byte that breaks the grammar, or when the fields hold
/// no extension at all.
pub fn parse_extensions<'a>(
    fields: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Extension>, ExtensionSyntaxError> {
    let mut list = Vec::new();
    let mut last_field = 0;
    for (i, value) in fields.into_iter().enumerate() {
        last_field = i;
        Cursor { bytes: value, pos: 0 }
            .list(&mut list)
            .map_err(|(offset, expected)| ExtensionSyntaxError {
                field: i,
                offset,
                expected,
            })?;
    }
    if list.is_empty() {
        return Err(ExtensionSyntaxError {
            field: last_field,
            offset: 0,
            expected: "at least one extension (1#extension)",
        });
    }
    Ok(list)
}

/// `tchar` (RFC 9110 §5.6.2, the same set as RFC 2616 §2.2's token).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` is a non-empty token (RFC 9110 §5.6.2).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

type Step<T> = Result<T, (usize, &'static str)>;

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn fail<T>(&self, expected: &'static str) -> Step<T> {
        Err((self.pos, expected))
    }

    /// `#extension` with empty elements allowed (RFC 9110 §5.6.1).
    fn list(&mut self, out: &mut Vec<Extension>) -> Step<()> {
        loop {
            self.ows();
            match self.peek() {
                None => return Ok(()),
                Some(b',') => {
                    self.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            out.push(self.extension()?);
            self.ows();
            match self.peek() {
                None => return Ok(()),
                Some(b',') => self.pos += 1,
                Some(_) => return self.fail("\",\" or \";\" after an extension"),
            }
        }
    }

    fn extension(&mut self) -> Step<Extension> {
        let name = self.token("an extension name (a token)")?;
        let mut params = Vec::new();
        loop {
            self.ows();
            if self.peek() != Some(b';') {
                return Ok(Extension { name, params });
            }
            self.pos += 1;
            self.ows();
            let pname = self.token("a parameter name (a token) after \";\"")?;
            self.ows();
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.ows();
                Some(self.value()?)
            } else {
                None
            };
            params.push(ExtensionParam { name: pname, value });
        }
    }

    fn token(&mut self, expected: &'static str) -> Step<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        match self.bytes.get(start..self.pos) {
            Some(t) if !t.is_empty() => Ok(String::from_utf8_lossy(t).into_owned()),
            _ => self.fail(expected),
        }
    }

    /// `token | quoted-string`; a quoted value must unescape to a token (RFC 6455 §9.1).
    fn value(&mut self) -> Step<String> {
        if self.peek() != Some(b'"') {
            return self.token("a parameter value (a token or a quoted string) after \"=\"");
        }
        let open = self.pos;
        self.pos += 1;
        let mut v = Vec::new();
        loop {
            match self.peek() {
                None => return self.fail("the closing '\"' of a quoted string"),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ), RFC 9110 §5.6.4
                        Some(c) if c == b'\t' || c >= 0x20 && c != 0x7f => {
                            v.push(c);
                            self.pos += 1;
                        }
                        _ => return self.fail("a character after '\\' in a quoted string"),
                    }
                }
                // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                Some(c) if c == b'\t' || c >= 0x20 && c != 0x7f => {
                    v.push(c);
                    self.pos += 1;
                }
                Some(_) => return self.fail("text or '\"' inside a quoted string"),
            }
        }
        if v.is_empty() || !v.iter().all(|&b| is_tchar(b)) {
            return Err((open, "a quoted value that unescapes to a token (RFC 6455 §9.1)"));
        }
        Ok(String::from_utf8_lossy(&v).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(s: &str) -> Result<Vec<Extension>, ExtensionSyntaxError> {
        parse_extensions([s.as_bytes()])
    }

    #[test]
    fn rfc_6455_9_1_examples() {
        let l = one("mux; max-channels=4; flow-control, deflate-stream").unwrap();
        assert_eq!(
            l,
            [
                Extension::new("mux")
                    .param("max-channels", Some("4"))
                    .param("flow-control", None),
                Extension::new("deflate-stream"),
            ]
        );
        // Split across header fields is "exactly equivalent" to one combined field.
        let split = parse_extensions([&b"foo"[..], &b"bar; baz=2"[..]]).unwrap();
        assert_eq!(split, one("foo, bar; baz=2").unwrap());
    }

    #[test]
    fn rfc_7692_5_2_and_7_1_3_examples() {
        assert_eq!(one("permessage-foo; x=10"), one("permessage-foo; x=\"10\""));
        let l = one("permessage-foo; use_y, permessage-foo").unwrap();
        assert_eq!(l.len(), 2);
        let l = one(
            "permessage-deflate;\tclient_max_window_bits; server_max_window_bits=10 ,\r\n permessage-deflate; client_max_window_bits",
        );
        // httparse unfolds obs-fold; a raw CR LF inside a value is not OWS.
        assert!(l.is_err());
        let l = one(
            "permessage-deflate;\tclient_max_window_bits; server_max_window_bits=10 , permessage-deflate ;client_max_window_bits",
        )
        .unwrap();
        assert_eq!(
            format_extensions(&l),
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate; client_max_window_bits"
        );
    }

    #[test]
    fn whitespace_and_empty_elements() {
        assert_eq!(one(" a ; b = \"c\" ,, ,d ").unwrap(), one("a;b=c,d").unwrap());
        assert_eq!(one("a\\").unwrap_err().offset, 1);
    }

    #[test]
    fn malformed_values_name_the_place() {
        for (s, at) in [
            ("", 0),
            (" , ", 0),
            (";a", 0),
            ("a;", 2),
            ("a;=1", 2),
            ("a; b=", 5),
            ("a; b=\"\"", 5),
            ("a; b=\"1 0\"", 5),
            ("a; b=\"10", 8),
            ("a b", 2),
            ("a; b=1=2", 6),
            ("a; b=1 c", 7),
            ("a\u{7f}", 1),
            ("é", 0),
            ("a; b=\"\\\u{1}\"", 7),
        ] {
            let e = one(s).unwrap_err();
            assert_eq!(e.offset, at, "{s:?}: {e}");
        }
    }

    #[test]
    fn quoted_pairs_unescape() {
        assert_eq!(
            one("a; b=\"\\1\\0\"").unwrap()[0].params[0].value.as_deref(),
            Some("10")
        );
        assert!(one("a; b=\"\\\"\"").is_err(), "a lone quote is not a token");
    }

    proptest! {
        // Whatever the bytes: no panic, and whatever parses writes back to a value that parses
        // to the same list.
        #[test]
        fn parse_write_parse_is_a_fixed_point(fields in proptest::collection::vec(
            proptest::collection::vec(prop::sample::select(b"ab=;, \t\"\\1_-\x7f\x01".to_vec()), 0..24), 1..3)) {
            if let Ok(list) = parse_extensions(fields.iter().map(|f| &f[..])) {
                let again = one(&format_extensions(&list));
                prop_assert_eq!(again, Ok(list));
            }
        }
    }
}
