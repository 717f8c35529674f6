//! `parse_header` on arbitrary bytes (RFC 6455 §5.2).
//!
//! - Never panics.
//! - A complete header is at most 14 bytes and no longer than the input; its length form is
//!   the minimal one (non-minimal forms are rejected); `encode_header` of the decoded fields
//!   gives back exactly the input's header bytes (RSV bits aside, which `encode_header` always
//!   writes as 0).
//! - Parsing is prefix-consistent, which is what lets the state machine parse a header that
//!   arrives in pieces: every shorter prefix of a complete header is `Incomplete`, asking for no
//!   more than the header still lacks; an error stays the same error however many bytes follow;
//!   `Incomplete { needed }` stays incomplete (or fails) until `needed` more bytes arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsloop::frame::{encode_header, parse_header, HeaderStatus, LengthForm, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    match parse_header(data) {
        Ok(HeaderStatus::Complete(h)) => {
            let n = h.header_len();
            assert!(n <= MAX_HEADER_LEN, "header_len {n}");
            assert!(n <= data.len(), "header_len {n} > input {}", data.len());
            assert_eq!(h.length_form, LengthForm::for_len(h.payload_len));
            assert!(h.payload_len >> 63 == 0);
            assert!(h.rsv <= 0b111);
            if h.opcode.is_control() {
                assert!(h.fin && h.payload_len <= 125);
            }

            let enc = encode_header(h.fin, h.opcode, h.mask, h.payload_len);
            let mut expected = data[..n].to_vec();
            expected[0] &= !0x70; // encode_header writes RSV = 0
            assert_eq!(enc.as_slice(), &expected[..], "re-encoding {h:?}");
            // The header bytes alone decode to the same header.
            assert_eq!(parse_header(&data[..n]), Ok(HeaderStatus::Complete(h)));

            for k in 0..n {
                match parse_header(&data[..k]) {
                    Ok(HeaderStatus::Incomplete { needed }) => {
                        assert!(
                            needed >= 1 && k + needed <= n,
                            "prefix {k}: needed {needed}, header {n}"
                        );
                    }
                    other => panic!("prefix {k} of a {n}-byte header gave {other:?}"),
                }
            }
        }
        Ok(HeaderStatus::Incomplete { needed }) => {
            assert!(needed >= 1);
            assert!(
                data.len() + needed <= MAX_HEADER_LEN,
                "len {} needed {needed}",
                data.len()
            );
            // Fewer than `needed` more bytes can never complete the header.
            let mut longer = data.to_vec();
            longer.resize(data.len() + needed - 1, 0xFF);
            assert!(!matches!(parse_header(&longer), Ok(HeaderStatus::Complete(_))));
        }
        Err(e) => {
            // Errors are reported from the bytes already seen: more bytes change nothing.
            let mut longer = data.to_vec();
            longer.extend_from_slice(&[0u8; MAX_HEADER_LEN]);
            assert_eq!(parse_header(&longer), Err(e));
        }
    }
});
