//! Incremental, fail-fast UTF-8 validation for text messages (RFC 6455 §5.6, §8.1).
//!
//! A text message may be split across frames, and a frame across reads, at any byte — even in
//! the middle of a multi-byte character. [`Utf8Validator`] carries the state of a partly read
//! character from one chunk to the next and fails **as soon as the bytes seen so far cannot be
//! the start of valid UTF-8**, not when the message ends: RFC 6455 §8.1 says an endpoint "MUST
//! _Fail the WebSocket Connection_" on invalid UTF-8, and failing early is what Autobahn's 6.4.x
//! cases check strictly.
//!
//! The byte rules are those of the Unicode Standard, Table 3-7 (also RFC 3629 §4): after a lead
//! byte, the *first* continuation byte has a narrower range for E0, ED, F0 and F4 (these rule out
//! overlong forms, UTF-16 surrogates and code points above U+10FFFF); every other continuation
//! byte is 80..=BF.
//!
//! Speed: only the bytes that straddle a chunk boundary go through the byte-wise state machine.
//! The bulk of each chunk is checked by `std::str::from_utf8`, which has an ASCII fast path, and
//! an incomplete character at the end of the chunk is recognised from its `error_len() == None`
//! ("the end of the input was reached unexpectedly") and loaded into the state machine.

/// Text that is not valid UTF-8, detected as early as possible (RFC 6455 §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl std::fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid UTF-8 (RFC 6455 §8.1)")
    }
}

impl std::error::Error for Utf8Error {}

/// The state of a UTF-8 check that spans chunks (RFC 6455 §8.1). Four bytes; `Default` is the
/// state at the start of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Validator {
    /// Continuation bytes still owed by the character in progress (0–3).
    need: u8,
    /// The inclusive range the next continuation byte must fall in.
    lo: u8,
    hi: u8,
}

impl Default for Utf8Validator {
    fn default() -> Self {
        Utf8Validator::new()
    }
}

impl Utf8Validator {
    /// A validator at the start of a text message.
    pub const fn new() -> Self {
        Utf8Validator {
            need: 0,
            lo: 0x80,
            hi: 0xBF,
        }
    }

    /// Forgets any character in progress, for the start of a new message.
    pub fn reset(&mut self) {
        *self = Utf8Validator::new();
    }

    /// Whether the bytes so far end on a character boundary.
    pub fn is_complete(&self) -> bool {
        self.need == 0
    }

    /// Checks the next chunk of the message. Fails as soon as the bytes so far cannot begin
    /// valid UTF-8 (RFC 6455 §8.1).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        let mut i = 0;
        // Finish the character that the previous chunk left open.
        while self.need > 0 {
            let Some(&b) = chunk.get(i) else {
                return Ok(());
            };
            self.continuation(b)?;
            i += 1;
        }
        let rest = chunk.get(i..).unwrap_or_default();
        match std::str::from_utf8(rest) {
            Ok(_) => Ok(()),
            // An invalid sequence somewhere in the chunk.
            Err(e) if e.error_len().is_some() => Err(Utf8Error),
            // Valid up to a character that the chunk cut short: carry it into the next chunk.
            Err(e) => {
                let tail = rest.get(e.valid_up_to()..).unwrap_or_default();
                for &b in tail {
                    self.byte(b)?;
                }
                Ok(())
            }
        }
    }

    /// Checks that the message did not end inside a character (RFC 6455 §8.1).
    pub fn finish(&self) -> Result<(), Utf8Error> {
        if self.need == 0 {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }

    /// Advances the state machine by one byte (Unicode Table 3-7). Public so the byte-wise path
    /// can be tested and taught on its own.
    pub fn byte(&mut self, b: u8) -> Result<(), Utf8Error> {
        if self.need > 0 {
            return self.continuation(b);
        }
        let (need, lo, hi) = match b {
            0x00..=0x7F => return Ok(()),
            0xC2..=0xDF => (1, 0x80, 0xBF),
            0xE0 => (2, 0xA0, 0xBF), // no overlong 3-byte forms
            0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
            0xED => (2, 0x80, 0x9F), // no UTF-16 surrogates U+D800..U+DFFF
            0xF0 => (3, 0x90, 0xBF), // no overlong 4-byte forms
            0xF1..=0xF3 => (3, 0x80, 0xBF),
            0xF4 => (3, 0x80, 0x8F), // nothing above U+10FFFF
            // 80..=BF (a stray continuation), C0, C1 (overlong), F5..=FF (never used).
            _ => return Err(Utf8Error),
        };
        *self = Utf8Validator { need, lo, hi };
        Ok(())
    }

    fn continuation(&mut self, b: u8) -> Result<(), Utf8Error> {
        if b < self.lo || b > self.hi {
            return Err(Utf8Error);
        }
        self.need -= 1;
        self.lo = 0x80;
        self.hi = 0xBF;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn whole(bytes: &[u8]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        v.feed(bytes)?;
        v.finish()
    }

    /// What `std` says of a prefix: can it still become valid UTF-8?
    fn std_prefix_ok(bytes: &[u8]) -> bool {
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        }
    }

    #[test]
    fn known_good_and_bad() {
        assert!(whole("κόσμε".as_bytes()).is_ok());
        assert!(whole("Hello-µ@ßöäüàá-UTF-8!!".as_bytes()).is_ok());
        assert!(whole(&[0xF4, 0x8F, 0xBF, 0xBF]).is_ok()); // U+10FFFF
        assert!(whole(&[0xF4, 0x90, 0x80, 0x80]).is_err()); // U+110000
        assert!(whole(&[0xED, 0xA0, 0x80]).is_err()); // surrogate U+D800
        assert!(whole(&[0xC0, 0xAF]).is_err()); // overlong '/'
        assert!(whole(&[0xE0, 0x80, 0xAF]).is_err()); // overlong
        assert!(whole(&[0xCE]).is_err()); // truncated at end of message
        assert!(whole(&[0xFF]).is_err());
    }

    // Autobahn 6.4.1: the first fragment ends in F4 90, which can never become valid; the
    // validator must fail on that fragment, before the rest arrives.
    #[test]
    fn fails_fast_inside_a_character() {
        let mut v = Utf8Validator::new();
        assert!(v.feed("κόσμε".as_bytes()).is_ok());
        assert_eq!(v.feed(&[0xF4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(Utf8Error));
    }

    #[test]
    fn a_character_split_at_every_point() {
        let text = "a€𝄞ö".as_bytes();
        for cut in 0..=text.len() {
            let mut v = Utf8Validator::new();
            v.feed(&text[..cut]).unwrap();
            v.feed(&text[cut..]).unwrap();
            assert!(v.finish().is_ok());
        }
    }

    proptest! {
        // The validator, fed arbitrary bytes split at arbitrary points, agrees with
        // std::str::from_utf8 on the whole, and fails exactly when the prefix seen so far can no
        // longer become valid.
        #[test]
        fn agrees_with_std_at_any_split(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.push(0);
            points.push(bytes.len());
            points.sort_unstable();
            let mut v = Utf8Validator::new();
            let mut failed_at = None;
            for w in points.windows(2) {
                if v.feed(&bytes[w[0]..w[1]]).is_err() {
                    failed_at = Some(w[1]);
                    break;
                }
            }
            match failed_at {
                Some(end) => {
                    prop_assert!(!std_prefix_ok(&bytes[..end]));
                }
                None => {
                    prop_assert_eq!(v.finish().is_ok(), std::str::from_utf8(&bytes).is_ok());
                }
            }
        }

        // Mostly-valid text (real characters, then a corruption) exercises the long paths.
        #[test]
        fn agrees_with_std_on_text_with_a_flaw(
            s in "\\PC{0,40}",
            flaw in any::<u8>(),
            at in any::<prop::sample::Index>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = s.into_bytes();
            let i = at.index(bytes.len() + 1);
            bytes.insert(i, flaw);
            let c = cut.index(bytes.len() + 1);
            let mut v = Utf8Validator::new();
            let r = v.feed(&bytes[..c]).and_then(|_| v.feed(&bytes[c..])).and_then(|_| v.finish());
            prop_assert_eq!(r.is_ok(), std::str::from_utf8(&bytes).is_ok());
        }

        // Byte at a time, the fail point is exactly the first byte after which no valid
        // continuation exists.
        #[test]
        fn bytewise_fails_at_the_first_impossible_byte(bytes in prop::collection::vec(any::<u8>(), 0..24)) {
            let mut v = Utf8Validator::new();
            for i in 0..bytes.len() {
                let ok = v.byte(bytes[i]).is_ok();
                prop_assert_eq!(ok, std_prefix_ok(&bytes[..=i]));
                if !ok { break; }
            }
        }
    }
}
