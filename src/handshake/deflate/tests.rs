use super::*;
use crate::handshake::extensions::parse_extensions;

fn offers(s: &str) -> Vec<Extension> {
    parse_extensions([s.as_bytes()]).unwrap()
}

fn answer(s: &str, policy: &DeflatePolicy) -> Option<String> {
    negotiate_deflate(&offers(s), policy).map(|(_, a)| a)
}

const SHARED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// Each offer and the exact answer (or `None`: declined) under the default ("shared") policy.
#[test]
fn negotiation_table_shared_policy() {
    let p = DeflatePolicy::default();
    let table: &[(&str, Option<String>)] = &[
        ("permessage-deflate", Some(SHARED.into())),
        ("permessage-deflate; client_max_window_bits", Some(SHARED.into())),
        ("permessage-deflate; client_max_window_bits=15", Some(SHARED.into())),
        (
            "permessage-deflate; server_max_window_bits=10",
            Some(format!("{SHARED}; server_max_window_bits=10")),
        ),
        (
            "permessage-deflate; server_max_window_bits=\"10\"",
            Some(format!("{SHARED}; server_max_window_bits=10")),
        ),
        (
            "permessage-deflate; server_max_window_bits=15",
            Some(format!("{SHARED}; server_max_window_bits=15")),
        ),
        (
            "permessage-deflate; client_max_window_bits=9",
            Some(format!("{SHARED}; client_max_window_bits=9")),
        ),
        // The client asked for 8 itself; answering 8 is what it allowed.
        (
            "permessage-deflate; client_max_window_bits=8",
            Some(format!("{SHARED}; client_max_window_bits=8")),
        ),
        // Accepted; this server then sends everything uncompressed (MIN_ZLIB_WINDOW_BITS).
        (
            "permessage-deflate; server_max_window_bits=8",
            Some(format!("{SHARED}; server_max_window_bits=8")),
        ),
        ("permessage-deflate; server_no_context_takeover", Some(SHARED.into())),
        // Declined (RFC 7692 §7): unknown parameter, duplicates, invalid values.
        ("permessage-deflate; foo", None),
        ("permessage-deflate; Server_No_Context_Takeover", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("permessage-deflate; client_max_window_bits; client_max_window_bits=10", None),
        ("permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; server_max_window_bits=7", None),
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits=08", None),
        ("permessage-deflate; server_max_window_bits=1a", None),
        ("permessage-deflate; client_max_window_bits=0", None),
        ("permessage-deflate; client_max_window_bits=\"16\"", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        ("permessage-deflate; client_no_context_takeover=\"x\"", None),
        // Other extensions are not ours; nothing offered is acceptable.
        ("x-webkit-deflate-frame", None),
        ("PerMessage-Deflate", None),
        // The first acceptable offer wins, in the client's order.
        (
            "x-webkit-deflate-frame, permessage-deflate; foo, permessage-deflate; server_max_window_bits=12, permessage-deflate",
            Some(format!("{SHARED}; server_max_window_bits=12")),
        ),
        // RFC 7692 §7.1.3's offer with a fallback.
        (
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate; client_max_window_bits",
            Some(format!("{SHARED}; server_max_window_bits=10")),
        ),
    ];
    for (offer, want) in table {
        assert_eq!(&answer(offer, &p), want, "{offer}");
    }
}

#[test]
fn negotiation_table_dedicated_policies() {
    let full = DeflatePolicy::context_takeover(15);
    let small = DeflatePolicy::context_takeover(10);
    let table: &[(&DeflatePolicy, &str, &str)] = &[
        (&full, "permessage-deflate", "permessage-deflate"),
        (
            &full,
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate",
        ),
        (
            &full,
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            &full,
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
        ),
        // RFC 7692 §7.1.2.2: no client_max_window_bits in the answer unless offered.
        (
            &small,
            "permessage-deflate",
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            &small,
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10",
        ),
        (
            &small,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
        ),
        (
            &small,
            "permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=9",
        ),
    ];
    for (policy, offer, want) in table {
        assert_eq!(answer(offer, policy).as_deref(), Some(*want), "{offer}");
    }
}

#[test]
fn agreed_parameters_match_the_answer() {
    let (p, a) = negotiate_deflate(
        &offers("permessage-deflate; client_max_window_bits=11; server_max_window_bits=12"),
        &DeflatePolicy::context_takeover(15),
    )
    .unwrap();
    assert_eq!(
        a,
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=11"
    );
    assert_eq!(
        p,
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 12,
            client_max_window_bits: 11,
        }
    );
    // The client reads the same parameters back from the answer.
    let offer = DeflateOffer {
        server_max_window_bits: Some(12),
        client_max_window_bits: Some(11),
        ..DeflateOffer::default()
    };
    assert_eq!(check_deflate_answer(&offer, &offers(&a)[0]), Ok(p));
}

#[test]
fn every_answer_passes_the_clients_check() {
    // Any valid offer, any policy: what the server answers, the offering client accepts, and
    // both ends agree on the parameters.
    for snct in [false, true] {
        for cnct in [false, true] {
            for sbits in [None, Some(8), Some(9), Some(12), Some(15)] {
                for cbits in [None, Some(8), Some(10), Some(15)] {
                    for pol in [DeflatePolicy::default(), DeflatePolicy::context_takeover(9)] {
                        let offer = DeflateOffer {
                            server_no_context_takeover: snct,
                            client_no_context_takeover: cnct,
                            server_max_window_bits: sbits,
                            client_max_window_bits: cbits,
                        };
                        let (server_view, a) = negotiate_deflate(&[offer.to_extension()], &pol).unwrap();
                        let client_view = check_deflate_answer(&offer, &offers(&a)[0]).unwrap();
                        assert_eq!(
                            client_view.server_no_context_takeover,
                            server_view.server_no_context_takeover
                        );
                        assert_eq!(client_view.server_max_window_bits, server_view.server_max_window_bits);
                        assert!(client_view.client_max_window_bits <= server_view.client_max_window_bits);
                        assert!(!server_view.client_no_context_takeover || client_view.client_no_context_takeover);
                    }
                }
            }
        }
    }
}

#[test]
fn client_checks_each_answer_rule() {
    let default = DeflateOffer::default();
    let limited = DeflateOffer {
        server_max_window_bits: Some(10),
        client_max_window_bits: None,
        ..DeflateOffer::default()
    };
    let check = |offer: &DeflateOffer, a: &str| check_deflate_answer(offer, &offers(a)[0]);
    assert_eq!(check(&default, "permessage-deflate"), Ok(DeflateParams::default()));
    assert_eq!(
        check(&default, "permessage-deflate; client_max_window_bits=10").map(|p| p.client_max_window_bits),
        Ok(10)
    );
    assert_eq!(
        check(
            &default,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ),
        Ok(DeflateParams::no_context_takeover())
    );
    assert_eq!(
        check(&default, "permessage-deflate; foo"),
        Err(DeflateAnswerError::Param(DeflateParamError::UnknownParameter(
            "foo".into()
        )))
    );
    assert_eq!(
        check(
            &default,
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover"
        ),
        Err(DeflateAnswerError::Param(DeflateParamError::DuplicateParameter(
            "client_no_context_takeover".into()
        )))
    );
    // A response's client_max_window_bits must carry a value (RFC 7692 §7.1.2.2).
    assert!(matches!(
        check(&default, "permessage-deflate; client_max_window_bits"),
        Err(DeflateAnswerError::Param(DeflateParamError::InvalidValue { .. }))
    ));
    assert!(matches!(
        check(&default, "permessage-deflate; server_max_window_bits=16"),
        Err(DeflateAnswerError::Param(DeflateParamError::InvalidValue { .. }))
    ));
    assert_eq!(
        check(&limited, "permessage-deflate; server_max_window_bits=11"),
        Err(DeflateAnswerError::ServerMaxWindowBitsAboveOffer {
            offered: 10,
            answered: Some(11)
        })
    );
    assert_eq!(
        check(&limited, "permessage-deflate"),
        Err(DeflateAnswerError::ServerMaxWindowBitsAboveOffer {
            offered: 10,
            answered: None
        })
    );
    assert_eq!(
        check(&limited, "permessage-deflate; server_max_window_bits=9").map(|p| p.server_max_window_bits),
        Ok(9)
    );
    assert_eq!(
        check(
            &limited,
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10"
        ),
        Err(DeflateAnswerError::ClientMaxWindowBitsNotOffered)
    );
    // A larger client window than the hint: the hint still binds the client.
    let hinted = DeflateOffer {
        client_max_window_bits: Some(10),
        ..DeflateOffer::default()
    };
    assert_eq!(
        check(&hinted, "permessage-deflate; client_max_window_bits=12").map(|p| p.client_max_window_bits),
        Ok(10)
    );
}

#[test]
fn offers_serialize_as_browsers_write_them() {
    assert_eq!(
        DeflateOffer::default().to_string(),
        "permessage-deflate; client_max_window_bits"
    );
    let o = DeflateOffer {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: Some(10),
        client_max_window_bits: Some(12),
    };
    let s = o.to_string();
    assert_eq!(
        s,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12"
    );
    assert_eq!(DeflateOffer::parse(&offers(&s)[0].params), Ok(o));
}

#[test]
fn explained_negotiation_says_why_for_each_offer() {
    let (chosen, d) = negotiate_deflate_explained(
        &offers("foo, permessage-deflate; x, permessage-deflate, permessage-deflate"),
        &DeflatePolicy::default(),
    );
    assert_eq!(chosen.map(|c| c.1).as_deref(), Some(SHARED));
    assert!(matches!(&d[0], OfferDecision::NotDeflate(n) if n == "foo"));
    assert!(matches!(&d[1], OfferDecision::Declined(DeflateParamError::UnknownParameter(p)) if p == "x"));
    assert!(matches!(&d[2], OfferDecision::Accepted(..)));
    assert_eq!(d[3], OfferDecision::NotNeeded);
}
