//! The permessage-deflate negotiation in words, offer by offer and parameter by parameter
//! (RFC 7692 §5, §7.1), for the `/learn` page. The decisions are the core's
//! ([`negotiate_deflate_explained`]); this module only says what each one means.

use crate::deflate::{DeflateParams, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::handshake::deflate::{
    negotiate_deflate_explained, DeflateOffer, DeflatePolicy, OfferDecision, CLIENT_MAX_WINDOW_BITS,
    CLIENT_NO_CONTEXT_TAKEOVER, PERMESSAGE_DEFLATE, SERVER_MAX_WINDOW_BITS, SERVER_NO_CONTEXT_TAKEOVER,
};
use crate::handshake::extensions::Extension;

/// One parameter, of an offer or of the server's answer, and what became of it.
pub(crate) struct ParamNote {
    pub name: String,
    pub value: Option<String>,
    pub note: String,
}

/// What the server made of one offered element.
pub(crate) struct OfferNote {
    /// The element as the client wrote it (parsed and written back).
    pub offer: String,
    /// `accepted`, `declined`, `not_deflate`, `not_needed` or `off`.
    pub decision: &'static str,
    /// Why, in a sentence.
    pub why: String,
    /// The element answered in the 101, when this offer was the one accepted.
    pub answer: Option<String>,
    /// The offer's parameters, each with what it asks and how it was treated.
    pub params: Vec<ParamNote>,
    /// Parameters of the answer that the offer did not carry: the server's own choices.
    pub added: Vec<ParamNote>,
}

/// The negotiation as a learner reads it.
pub(crate) struct Negotiation {
    /// `shared`, `dedicated`, `custom`, or `off`.
    pub mode: &'static str,
    /// The policy in one sentence.
    pub policy_note: String,
    pub offers: Vec<OfferNote>,
    /// The agreed parameters and the answer, if an offer was accepted.
    pub chosen: Option<(DeflateParams, String)>,
}

/// The name of a policy: the server's two modes, or `custom`.
fn mode_of(policy: &DeflatePolicy) -> &'static str {
    if *policy == DeflatePolicy::default() {
        return "shared";
    }
    if *policy == DeflatePolicy::context_takeover(policy.server_max_window_bits) {
        return "dedicated";
    }
    "custom"
}

/// Judges `offers` under `policy` (`None`: permessage-deflate is off for this connection) and
/// explains each decision.
pub(crate) fn explain(offers: &[Extension], policy: Option<&DeflatePolicy>) -> Negotiation {
    let Some(policy) = policy else {
        let offers = offers
            .iter()
            .map(|o| OfferNote {
                offer: o.to_string(),
                decision: if o.name == PERMESSAGE_DEFLATE { "off" } else { "not_deflate" },
                why: if o.name == PERMESSAGE_DEFLATE {
                    "declined: permessage-deflate is off for this connection, so the server leaves it out of its answer (RFC 6455 §9.1)".to_owned()
                } else {
                    format!("declined: this server knows no extension {:?}, so it leaves it out of its answer (RFC 6455 §9.1)", o.name)
                },
                answer: None,
                params: o
                    .params
                    .iter()
                    .map(|p| ParamNote {
                        name: p.name.clone(),
                        value: p.value.clone(),
                        note: String::new(),
                    })
                    .collect(),
                added: Vec::new(),
            })
            .collect();
        return Negotiation {
            mode: "off",
            policy_note: "permessage-deflate is off: every offer is declined and every message goes uncompressed"
                .to_owned(),
            offers,
            chosen: None,
        };
    };
    let (chosen, decisions) = negotiate_deflate_explained(offers, policy);
    let notes = offers
        .iter()
        .zip(decisions)
        .map(|(offer, decision)| offer_note(offer, decision))
        .collect();
    let mode = mode_of(policy);
    let policy_note = match mode {
        "shared" => "shared mode: the server accepts the first acceptable offer without context takeover either way, \
so every message is compressed on its own, no (de)compressor is held between messages, and a broadcast is \
compressed once for all its receivers"
            .to_owned(),
        "dedicated" => format!(
            "dedicated mode: the server accepts the first acceptable offer with context takeover both ways and \
windows of up to 2^{} bytes, so messages may refer back to earlier ones (better ratios) at the cost of a \
compressor and an inflater kept for each connection",
            policy.server_max_window_bits
        ),
        _ => format!(
            "custom policy: server_no_context_takeover {}, client_no_context_takeover {}, windows up to 2^{} (server) \
and 2^{} (client) bytes",
            policy.server_no_context_takeover,
            policy.client_no_context_takeover,
            policy.server_max_window_bits,
            policy.client_max_window_bits
        ),
    };
    Negotiation {
        mode,
        policy_note,
        offers: notes,
        chosen,
    }
}

fn offer_note(offer: &Extension, decision: OfferDecision) -> OfferNote {
    let parsed = DeflateOffer::parse(&offer.params).ok();
    let (name, why, answer) = match &decision {
        OfferDecision::NotDeflate(name) => (
            "not_deflate",
            format!(
                "declined: this server knows no extension {name:?}, so it leaves it out of its answer (RFC 6455 §9.1)"
            ),
            None,
        ),
        OfferDecision::Declined(e) => ("declined", format!("declined: {e}"), None),
        OfferDecision::NotNeeded => (
            "not_needed",
            "acceptable, but an earlier offer was accepted: two permessage-deflate would both use RSV1 (RFC 7692 §5)"
                .to_owned(),
            None,
        ),
        OfferDecision::Accepted(_, answer) => (
            "accepted",
            "accepted: the first acceptable permessage-deflate offer in the client's order of preference (RFC 7692 §5)"
                .to_owned(),
            Some(answer.clone()),
        ),
    };
    let accepted = match &decision {
        OfferDecision::Accepted(params, answer) => Some((params, answer)),
        _ => None,
    };
    let params = offer
        .params
        .iter()
        .map(|p| ParamNote {
            name: p.name.clone(),
            value: p.value.clone(),
            note: match (&parsed, accepted) {
                (Some(o), Some((agreed, answer))) if offer.name == PERMESSAGE_DEFLATE => {
                    offered_param_note(&p.name, o, agreed, answer)
                }
                _ if offer.name == PERMESSAGE_DEFLATE => param_meaning(&p.name).to_owned(),
                _ => String::new(),
            },
        })
        .collect();
    let added = match (&parsed, accepted) {
        (Some(o), Some((agreed, answer))) => added_params(o, agreed, answer),
        _ => Vec::new(),
    };
    OfferNote {
        offer: offer.to_string(),
        decision: name,
        why,
        answer: answer.map(|a| a.to_string()),
        params,
        added,
    }
}

/// What a parameter means in an offer, before any decision (RFC 7692 §7.1).
fn param_meaning(name: &str) -> &'static str {
    match name {
        SERVER_NO_CONTEXT_TAKEOVER => {
            "asks the server to compress each message on its own, with an empty window (RFC 7692 §7.1.1.1)"
        }
        CLIENT_NO_CONTEXT_TAKEOVER => "a hint: the client will compress each message on its own (RFC 7692 §7.1.1.2)",
        SERVER_MAX_WINDOW_BITS => "asks the server to use a window of at most 2^value bytes (RFC 7692 §7.1.2.1)",
        CLIENT_MAX_WINDOW_BITS => {
            "the client can limit its own window if the server asks; a value is also a hint of its own limit (RFC 7692 §7.1.2.2)"
        }
        _ => "not a permessage-deflate parameter: an offer carrying it is declined (RFC 7692 §7)",
    }
}

fn has(answer: &Extension, name: &str) -> bool {
    answer.params.iter().any(|p| p.name == name)
}

/// What became of an offered parameter in an accepted offer.
fn offered_param_note(name: &str, offer: &DeflateOffer, agreed: &DeflateParams, answer: &Extension) -> String {
    let meaning = param_meaning(name);
    let outcome = match name {
        SERVER_NO_CONTEXT_TAKEOVER => {
            "granted: the answer repeats it, and the server resets its compressor after every message".to_owned()
        }
        CLIENT_NO_CONTEXT_TAKEOVER => {
            "the answer repeats it: the server may then drop its inflater after every message".to_owned()
        }
        SERVER_MAX_WINDOW_BITS => format!(
            "answered with server_max_window_bits={} (RFC 7692 §7.1.2.1: the same or a smaller value){}",
            agreed.server_max_window_bits,
            window_8_note(agreed.server_max_window_bits)
        ),
        CLIENT_MAX_WINDOW_BITS
            if has(answer, CLIENT_MAX_WINDOW_BITS)
                && offer.client_max_window_bits == Some(agreed.client_max_window_bits) =>
        {
            format!(
                "the client said it will use at most 2^{b} = {} bytes, within the server's limit: the answer confirms \
client_max_window_bits={b}",
                1u32 << agreed.client_max_window_bits,
                b = agreed.client_max_window_bits
            )
        }
        CLIENT_MAX_WINDOW_BITS if has(answer, CLIENT_MAX_WINDOW_BITS) => format!(
            "the server asks the client to use at most 2^{} = {} bytes: answered as client_max_window_bits={}",
            agreed.client_max_window_bits,
            1u32 << agreed.client_max_window_bits,
            agreed.client_max_window_bits
        ),
        CLIENT_MAX_WINDOW_BITS => format!(
            "the server accepts any client window up to 2^{} = 32768 bytes, so it does not answer it{}",
            MAX_WINDOW_BITS,
            match offer.client_max_window_bits {
                Some(b) if b < MAX_WINDOW_BITS => format!(" (the client said it will use at most 2^{b})"),
                _ => String::new(),
            }
        ),
        _ => String::new(),
    };
    format!("{meaning}; {outcome}")
}

/// The answer's parameters that the offer did not carry: the server's own choices.
fn added_params(offer: &DeflateOffer, agreed: &DeflateParams, answer: &Extension) -> Vec<ParamNote> {
    let mut added = Vec::new();
    for p in &answer.params {
        let note = match p.name.as_str() {
            SERVER_NO_CONTEXT_TAKEOVER if !offer.server_no_context_takeover => {
                "not asked for: the server's own choice (RFC 7692 §7.1.1.1 lets it). It compresses every message on \
its own, so it keeps no compressor between messages and can compress a broadcast once for every receiver"
                    .to_owned()
            }
            CLIENT_NO_CONTEXT_TAKEOVER if !offer.client_no_context_takeover => {
                "the server asks the client to compress every message on its own (RFC 7692 §7.1.1.2), so the server \
keeps no inflater between messages: each message it receives inflates standalone"
                    .to_owned()
            }
            SERVER_MAX_WINDOW_BITS if offer.server_max_window_bits.is_none() => format!(
                "not asked for: the server will compress with a window of at most 2^{} bytes{}",
                agreed.server_max_window_bits,
                window_8_note(agreed.server_max_window_bits)
            ),
            _ => continue,
        };
        added.push(ParamNote {
            name: p.name.clone(),
            value: p.value.clone(),
            note,
        });
    }
    added
}

fn window_8_note(bits: u8) -> &'static str {
    if bits == MIN_WINDOW_BITS {
        "; zlib cannot compress with a 256-byte window, so the server sends every message uncompressed (RFC 7692 §6 allows it)"
    } else {
        ""
    }
}

/// One direction of the agreement in words (RFC 7692 §7.1, §7.2).
pub(crate) fn direction_note(no_context_takeover: bool, bits: u8) -> String {
    if no_context_takeover {
        format!(
            "no context takeover: each message is compressed on its own and inflates standalone, from its own frames \
only; window up to 2^{bits} = {} bytes",
            1u32 << bits
        )
    } else {
        format!(
            "context takeover: a message may refer back to the last 2^{bits} = {} bytes of earlier messages, so the \
receiver keeps its inflater (and its window) for the whole connection",
            1u32 << bits
        )
    }
}
