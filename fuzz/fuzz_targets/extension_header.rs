//! The `Sec-WebSocket-Extensions` parser and permessage-deflate negotiation on arbitrary bytes
//! (RFC 6455 §9.1, RFC 7692 §5, §7).
//!
//! Input: header field values separated by `\n` (so the fuzzer can split the list over
//! several fields, as RFC 6455 §9.1 allows).
//!
//! - No panic, whatever the bytes.
//! - Parse → write → parse is a fixed point: what parses, written back with
//!   `format_extensions`, parses to the same list; each element written alone parses to itself.
//! - Negotiation under three policies: whatever the server answers parses as one
//!   permessage-deflate element, carries `client_max_window_bits` only if the accepted offer
//!   did, and the offering client accepts it (`check_deflate_answer`) with the same server
//!   parameters and a client window no larger than the server allows.
//! - The client's check of the bytes read as a server's answer never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsloop::handshake::deflate::{
    check_deflate_answer, negotiate_deflate_explained, DeflateOffer, DeflatePolicy, OfferDecision,
};
use wsloop::handshake::extensions::{format_extensions, parse_extensions};

fuzz_target!(|data: &[u8]| {
    let fields: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let Ok(list) = parse_extensions(fields.iter().copied()) else {
        return;
    };
    let written = format_extensions(&list);
    assert_eq!(parse_extensions([written.as_bytes()]).as_ref(), Ok(&list), "{written}");
    for e in &list {
        let one = e.to_string();
        assert_eq!(parse_extensions([one.as_bytes()]), Ok(vec![e.clone()]), "{one}");
    }

    for policy in [
        DeflatePolicy::default(),
        DeflatePolicy::context_takeover(15),
        DeflatePolicy::context_takeover(9).server_max_window_bits(8),
    ] {
        let (chosen, decisions) = negotiate_deflate_explained(&list, &policy);
        assert_eq!(decisions.len(), list.len());
        let accepted = decisions.iter().position(|d| matches!(d, OfferDecision::Accepted(..)));
        match (chosen, accepted) {
            (None, None) => {}
            (Some((server_params, answer)), Some(i)) => {
                let parsed = parse_extensions([answer.as_bytes()]).expect("our answer parses");
                assert_eq!(parsed.len(), 1);
                let offer = DeflateOffer::parse(&list[i].params).expect("accepted offers parse");
                if offer.client_max_window_bits.is_none() {
                    assert!(!answer.contains("client_max_window_bits"), "{answer}");
                }
                let client_params = check_deflate_answer(&offer, &parsed[0]).expect("the client accepts our answer");
                assert_eq!(client_params.server_no_context_takeover, server_params.server_no_context_takeover);
                assert_eq!(client_params.server_max_window_bits, server_params.server_max_window_bits);
                assert!(client_params.client_max_window_bits <= server_params.client_max_window_bits);
            }
            other => panic!("negotiation and its explanation disagree: {other:?}"),
        }
    }

    // The same list read as a server's answer to the default offer: judged, never a panic.
    if let Some(first) = list.first() {
        let _ = check_deflate_answer(&DeflateOffer::default(), first);
    }
});
