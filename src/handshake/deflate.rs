//! Negotiating permessage-deflate (RFC 7692 §5, §7.1), both roles.
//!
//! **Server:** [`negotiate_deflate`] takes the offers from the request's
//! `Sec-WebSocket-Extensions` ([`UpgradeRequest::extensions`](super::UpgradeRequest)) and a
//! [`DeflatePolicy`], walks the offers in the client's order of preference (RFC 7692 §5: "An
//! element preceding another element has higher preference"), declines each one RFC 7692 §7
//! says to decline, and accepts the first acceptable one. It returns the agreed parameters and
//! the element to send back in the 101, or `None` to decline them all (then the response
//! carries no permessage-deflate element, RFC 7692 §5).
//!
//! ```
//! use wsloop::handshake::deflate::{negotiate_deflate, DeflatePolicy};
//! use wsloop::handshake::extensions::parse_extensions;
//!
//! // What Chrome and Firefox send.
//! let offers = parse_extensions([&b"permessage-deflate; client_max_window_bits"[..]]).unwrap();
//! let (params, answer) = negotiate_deflate(&offers, &DeflatePolicy::default()).unwrap();
//! assert_eq!(answer, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
//! assert!(params.server_no_context_takeover && params.client_no_context_takeover);
//! ```
//!
//! **Client:** [`DeflateOffer`] builds the offer; [`check_deflate_answer`] checks the server's
//! element strictly (RFC 7692 §7: the client "MUST _Fail the WebSocket Connection_" on an
//! unknown, duplicate or invalid parameter, or a configuration it did not allow).
//! [`ClientHandshake::with_deflate`](super::client::ClientHandshake::with_deflate) does both.

use std::fmt;

use super::extensions::{Extension, ExtensionParam};
use crate::deflate::{DeflateParams, MAX_WINDOW_BITS, MIN_WINDOW_BITS, MIN_ZLIB_WINDOW_BITS};

/// The registered extension name (RFC 7692 §7, §9.1).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// `server_no_context_takeover` (RFC 7692 §7.1.1.1).
pub const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
/// `client_no_context_takeover` (RFC 7692 §7.1.1.2).
pub const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
/// `server_max_window_bits` (RFC 7692 §7.1.2.1).
pub const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
/// `client_max_window_bits` (RFC 7692 §7.1.2.2).
pub const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// A permessage-deflate offer: what a client asks for or hints (RFC 7692 §7.1). Built by a
/// client, or read from a request by [`DeflateOffer::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateOffer {
    /// Ask the server not to use context takeover (RFC 7692 §7.1.1.1): a request.
    pub server_no_context_takeover: bool,
    /// Tell the server the client will not use context takeover (RFC 7692 §7.1.1.2): a hint.
    pub client_no_context_takeover: bool,
    /// Limit the server's window to 2^bits bytes (RFC 7692 §7.1.2.1): a request.
    pub server_max_window_bits: Option<u8>,
    /// Offer `client_max_window_bits` (RFC 7692 §7.1.2.2): `Some(15)` is the bare parameter
    /// ("the server may limit my window"), a smaller value is also a hint that the client will
    /// not use more. `None` leaves it out, and then the server must not send it back.
    pub client_max_window_bits: Option<u8>,
}

impl Default for DeflateOffer {
    /// `permessage-deflate; client_max_window_bits`, as browsers offer: context takeover
    /// allowed both ways, and the server may limit the client's window.
    fn default() -> Self {
        DeflateOffer {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: Some(MAX_WINDOW_BITS),
        }
    }
}

/// Why a permessage-deflate element was refused: an offer a server declines (RFC 7692 §7), or
/// an answer a client fails the connection over (RFC 7692 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeflateParamError {
    /// "an extension parameter not defined for use in an offer" (or response).
    UnknownParameter(String),
    /// "multiple extension parameters with the same name".
    DuplicateParameter(String),
    /// "an extension parameter with an invalid value": a value on a flag, a missing or
    /// malformed window size, or one outside 8..=15 (RFC 7692 §7.1.2: "a decimal integer value
    /// without leading zeroes between 8 to 15").
    InvalidValue {
        /// The parameter.
        param: String,
        /// Its value as sent, if it had one.
        value: Option<String>,
    },
}

impl fmt::Display for DeflateParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeflateParamError::UnknownParameter(p) => write!(f, "unknown parameter {p:?} (RFC 7692 §7)"),
            DeflateParamError::DuplicateParameter(p) => write!(f, "parameter {p:?} appears twice (RFC 7692 §7)"),
            DeflateParamError::InvalidValue { param, value: None } => {
                write!(f, "{param} needs a value 8..15 (RFC 7692 §7.1.2)")
            }
            DeflateParamError::InvalidValue { param, value: Some(v) } if param.ends_with("no_context_takeover") => {
                write!(f, "{param} takes no value, got {v:?} (RFC 7692 §7.1.1)")
            }
            DeflateParamError::InvalidValue { param, value: Some(v) } => write!(
                f,
                "{param}={v} is not a window size 8..15 without leading zeroes (RFC 7692 §7.1.2)"
            ),
        }
    }
}

impl std::error::Error for DeflateParamError {}

/// The four parameters as one element carries them, before any judgement on what they mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct RawParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// `8`..`15`, decimal, no leading zeroes (RFC 7692 §7.1.2.1: `1*DIGIT`, "without leading
/// zeroes between 8 to 15").
fn window_bits(v: &str) -> Option<u8> {
    match v {
        "8" => Some(8),
        "9" => Some(9),
        "10" => Some(10),
        "11" => Some(11),
        "12" => Some(12),
        "13" => Some(13),
        "14" => Some(14),
        "15" => Some(15),
        _ => None,
    }
}

/// Reads the parameters of one permessage-deflate element; `value_optional` says whether
/// `client_max_window_bits` may come without a value (in an offer it may, in a response it may
/// not: RFC 7692 §7.1.2.2).
fn read_params(params: &[ExtensionParam], in_offer: bool) -> Result<RawParams, DeflateParamError> {
    let mut raw = RawParams::default();
    let mut seen = [false; 4];
    for p in params {
        let idx = match p.name.as_str() {
            SERVER_NO_CONTEXT_TAKEOVER => 0,
            CLIENT_NO_CONTEXT_TAKEOVER => 1,
            SERVER_MAX_WINDOW_BITS => 2,
            CLIENT_MAX_WINDOW_BITS => 3,
            _ => return Err(DeflateParamError::UnknownParameter(p.name.clone())),
        };
        if let Some(slot) = seen.get_mut(idx) {
            if *slot {
                return Err(DeflateParamError::DuplicateParameter(p.name.clone()));
            }
            *slot = true;
        }
        let invalid = || DeflateParamError::InvalidValue {
            param: p.name.clone(),
            value: p.value.clone(),
        };
        let bits = || p.value.as_deref().and_then(window_bits).ok_or_else(invalid);
        match idx {
            0 | 1 if p.value.is_some() => return Err(invalid()),
            0 => raw.server_no_context_takeover = true,
            1 => raw.client_no_context_takeover = true,
            2 => raw.server_max_window_bits = Some(bits()?),
            _ if p.value.is_none() && in_offer => raw.client_max_window_bits = Some(None),
            _ => raw.client_max_window_bits = Some(Some(bits()?)),
        }
    }
    Ok(raw)
}

impl DeflateOffer {
    /// Reads one offered element's parameters (RFC 7692 §7.1). The caller has checked the
    /// name. Errors are the reasons RFC 7692 §7 gives a server to decline.
    pub fn parse(params: &[ExtensionParam]) -> Result<DeflateOffer, DeflateParamError> {
        let raw = read_params(params, true)?;
        Ok(DeflateOffer {
            server_no_context_takeover: raw.server_no_context_takeover,
            client_no_context_takeover: raw.client_no_context_takeover,
            server_max_window_bits: raw.server_max_window_bits,
            client_max_window_bits: raw.client_max_window_bits.map(|v| v.unwrap_or(MAX_WINDOW_BITS)),
        })
    }

    /// The offer as an [`Extension`] element.
    pub fn to_extension(&self) -> Extension {
        let mut e = Extension::new(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            e = e.param(SERVER_NO_CONTEXT_TAKEOVER, None);
        }
        if self.client_no_context_takeover {
            e = e.param(CLIENT_NO_CONTEXT_TAKEOVER, None);
        }
        if let Some(b) = self.server_max_window_bits {
            e = e.param(SERVER_MAX_WINDOW_BITS, Some(&b.to_string()));
        }
        match self.client_max_window_bits {
            None => {}
            Some(MAX_WINDOW_BITS) => e = e.param(CLIENT_MAX_WINDOW_BITS, None),
            Some(b) => e = e.param(CLIENT_MAX_WINDOW_BITS, Some(&b.to_string())),
        }
        e
    }
}

impl fmt::Display for DeflateOffer {
    /// The offer as a `Sec-WebSocket-Extensions` value, e.g.
    /// `permessage-deflate; client_max_window_bits`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_extension().fmt(f)
    }
}

/// What a server asks for when it accepts permessage-deflate (RFC 7692 §7.1). Every field has
/// a documented default; the default is the "shared" mode: no context takeover either way, so
/// an idle connection holds no compressor and a broadcast can be compressed once for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflatePolicy {
    /// Send `server_no_context_takeover` even if the client did not ask (RFC 7692 §7.1.1.1:
    /// the server "MAY include" it). Default true. An offer that asks for it is always granted.
    pub server_no_context_takeover: bool,
    /// Send `client_no_context_takeover` (RFC 7692 §7.1.1.2), so the server's inflater can be
    /// released after each message. Default true. It is also sent whenever the client offers
    /// it as a hint, since that costs the client nothing.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, 8..=15 (default 15). Answered as
    /// `server_max_window_bits` when lower than 15 or when the offer named a limit (RFC 7692
    /// §7.1.2.1: "the same or smaller value as the offer"). At 8 the server sends every
    /// message uncompressed (see [`MIN_ZLIB_WINDOW_BITS`]).
    pub server_max_window_bits: u8,
    /// The largest window the client may compress with, 9..=15 (default 15; 8 is raised to 9,
    /// since zlib-based clients, browsers among them, cannot compress with 8). Answered as
    /// `client_max_window_bits` only if the offer carried that parameter (RFC 7692 §7.1.2.2:
    /// otherwise the response "MUST NOT include" it) and the result is below 15.
    pub client_max_window_bits: u8,
}

impl Default for DeflatePolicy {
    fn default() -> Self {
        DeflatePolicy {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

impl DeflatePolicy {
    /// The "dedicated" mode: context takeover both ways (better ratios on similar messages),
    /// at the cost of a compressor and an inflater held per connection for its lifetime, each
    /// sized by `window_bits` (9..=15).
    pub fn context_takeover(window_bits: u8) -> Self {
        DeflatePolicy {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: window_bits,
            client_max_window_bits: window_bits,
        }
    }

    /// Sets [`DeflatePolicy::server_no_context_takeover`].
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Sets [`DeflatePolicy::client_no_context_takeover`].
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Sets [`DeflatePolicy::server_max_window_bits`] (clamped to 8..=15).
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        self
    }

    /// Sets [`DeflatePolicy::client_max_window_bits`] (clamped to 9..=15).
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(MIN_ZLIB_WINDOW_BITS, MAX_WINDOW_BITS);
        self
    }

    /// The answer to one acceptable offer: the agreed parameters and the response element.
    pub fn answer(&self, offer: &DeflateOffer) -> (DeflateParams, Extension) {
        let server_no_context_takeover = offer.server_no_context_takeover || self.server_no_context_takeover;
        let client_no_context_takeover = offer.client_no_context_takeover || self.client_no_context_takeover;
        let policy_server = self.server_max_window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        let server_bits = offer
            .server_max_window_bits
            .map_or(policy_server, |b| b.min(policy_server));
        let policy_client = self.client_max_window_bits.clamp(MIN_ZLIB_WINDOW_BITS, MAX_WINDOW_BITS);
        // Only if offered (RFC 7692 §7.1.2.2); the client's own value is the other bound.
        let client_bits = offer.client_max_window_bits.map(|b| b.min(policy_client));

        let mut e = Extension::new(PERMESSAGE_DEFLATE);
        if server_no_context_takeover {
            e = e.param(SERVER_NO_CONTEXT_TAKEOVER, None);
        }
        if client_no_context_takeover {
            e = e.param(CLIENT_NO_CONTEXT_TAKEOVER, None);
        }
        if offer.server_max_window_bits.is_some() || server_bits < MAX_WINDOW_BITS {
            e = e.param(SERVER_MAX_WINDOW_BITS, Some(&server_bits.to_string()));
        }
        let client_answered = client_bits.filter(|&b| b < MAX_WINDOW_BITS);
        if let Some(b) = client_answered {
            e = e.param(CLIENT_MAX_WINDOW_BITS, Some(&b.to_string()));
        }
        let params = DeflateParams {
            server_no_context_takeover,
            client_no_context_takeover,
            server_max_window_bits: server_bits,
            // Unanswered, the server must accept any window up to 32 KiB (RFC 7692 §7.2.2).
            client_max_window_bits: client_answered.unwrap_or(MAX_WINDOW_BITS),
        };
        (params, e)
    }
}

/// What the server made of one offered element, for the teaching output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferDecision {
    /// Not permessage-deflate: this server knows no other extension, so it is left out of the
    /// answer (RFC 6455 §9.1).
    NotDeflate(String),
    /// Declined for this reason (RFC 7692 §7).
    Declined(DeflateParamError),
    /// Accepted with this answer.
    Accepted(DeflateParams, Extension),
    /// Acceptable, but an earlier offer was accepted already (one permessage-deflate per
    /// connection: two would both claim RSV1, RFC 7692 §5).
    NotNeeded,
}

/// [`negotiate_deflate`], also returning what was decided about each offer, in order.
pub fn negotiate_deflate_explained(
    offers: &[Extension],
    policy: &DeflatePolicy,
) -> (Option<(DeflateParams, String)>, Vec<OfferDecision>) {
    let mut chosen = None;
    let mut decisions = Vec::with_capacity(offers.len());
    for offer in offers {
        let d = decide(offer, policy, chosen.is_some());
        if let OfferDecision::Accepted(params, e) = &d {
            chosen = Some((*params, e.to_string()));
        }
        decisions.push(d);
    }
    (chosen, decisions)
}

fn decide(offer: &Extension, policy: &DeflatePolicy, done: bool) -> OfferDecision {
    if offer.name != PERMESSAGE_DEFLATE {
        return OfferDecision::NotDeflate(offer.name.clone());
    }
    match DeflateOffer::parse(&offer.params) {
        Err(e) => OfferDecision::Declined(e),
        Ok(_) if done => OfferDecision::NotNeeded,
        Ok(o) => {
            let (p, e) = policy.answer(&o);
            OfferDecision::Accepted(p, e)
        }
    }
}

/// The server's negotiation (RFC 7692 §5, §7): the first acceptable permessage-deflate offer in
/// the client's order, answered under `policy`, as the agreed parameters and the
/// `Sec-WebSocket-Extensions` value for the 101; `None` declines them all.
///
/// Declined: an unknown or duplicate parameter, a value on `*_no_context_takeover`, a window
/// size that is missing (`server_max_window_bits`), not decimal 8..15 or has leading zeroes.
/// Never answered: `client_max_window_bits` unless offered.
pub fn negotiate_deflate(offers: &[Extension], policy: &DeflatePolicy) -> Option<(DeflateParams, String)> {
    offers.iter().find_map(|offer| match decide(offer, policy, false) {
        OfferDecision::Accepted(p, e) => Some((p, e.to_string())),
        _ => None,
    })
}

/// A server's permessage-deflate answer that a client must fail the connection over
/// (RFC 7692 §5, §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeflateAnswerError {
    /// The `Sec-WebSocket-Extensions` header does not follow RFC 6455 §9.1.
    Malformed(super::extensions::ExtensionSyntaxError),
    /// More than one permessage-deflate element: both would claim RSV1 (RFC 7692 §5).
    Duplicate,
    /// An unknown, duplicate or invalid parameter (RFC 7692 §7).
    Param(DeflateParamError),
    /// `server_max_window_bits` above what the offer allowed, or left out although the offer
    /// limited it (RFC 7692 §7.1.2.1: "the same or smaller value as the offer").
    ServerMaxWindowBitsAboveOffer {
        /// What the offer allowed.
        offered: u8,
        /// What the server answered (`None`: left out, meaning 15).
        answered: Option<u8>,
    },
    /// `client_max_window_bits` in the answer, though the offer did not carry it (RFC 7692
    /// §7.1.2.2: the response "MUST NOT include" it then).
    ClientMaxWindowBitsNotOffered,
}

impl fmt::Display for DeflateAnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeflateAnswerError::Malformed(e) => e.fmt(f),
            DeflateAnswerError::Duplicate => {
                f.write_str("permessage-deflate accepted twice; both would use RSV1 (RFC 7692 §5)")
            }
            DeflateAnswerError::Param(e) => e.fmt(f),
            DeflateAnswerError::ServerMaxWindowBitsAboveOffer { offered, answered } => write!(
                f,
                "server_max_window_bits {} above the {offered} offered (RFC 7692 §7.1.2.1)",
                answered.map_or("absent (15)".to_owned(), |a| a.to_string())
            ),
            DeflateAnswerError::ClientMaxWindowBitsNotOffered => {
                f.write_str("client_max_window_bits in the answer but not in the offer (RFC 7692 §7.1.2.2)")
            }
        }
    }
}

impl std::error::Error for DeflateAnswerError {}

/// The client's check of the server's permessage-deflate element against its `offer`
/// (RFC 7692 §7), and the parameters the connection then uses. The caller has checked that the
/// element is permessage-deflate and that it was offered.
///
/// The client's own window is the smaller of the server's `client_max_window_bits` and the
/// offer's hint (RFC 7692 §7.1.2.2: with a hint, the client "is not going to use" more, even if
/// the server answers a larger value).
pub fn check_deflate_answer(offer: &DeflateOffer, answer: &Extension) -> Result<DeflateParams, DeflateAnswerError> {
    let raw = read_params(&answer.params, false).map_err(DeflateAnswerError::Param)?;
    if let Some(offered) = offer.server_max_window_bits {
        if raw.server_max_window_bits.map_or(true, |a| a > offered) {
            return Err(DeflateAnswerError::ServerMaxWindowBitsAboveOffer {
                offered,
                answered: raw.server_max_window_bits,
            });
        }
    }
    let answered_client = raw.client_max_window_bits.flatten();
    if answered_client.is_some() && offer.client_max_window_bits.is_none() {
        return Err(DeflateAnswerError::ClientMaxWindowBitsNotOffered);
    }
    let hint = offer.client_max_window_bits.unwrap_or(MAX_WINDOW_BITS);
    Ok(DeflateParams {
        server_no_context_takeover: raw.server_no_context_takeover,
        client_no_context_takeover: raw.client_no_context_takeover || offer.client_no_context_takeover,
        server_max_window_bits: raw.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        client_max_window_bits: answered_client.unwrap_or(MAX_WINDOW_BITS).min(hint),
    })
}

#[cfg(test)]
mod tests;
