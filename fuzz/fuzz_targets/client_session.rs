//! The client's side of a connection fed arbitrary server bytes — the response head, then
//! frames — as reads cut at points the input chooses (RFC 6455 §4.1, §5–§8; RFC 7692 §7).
//! It drives the sans-IO parts the blocking client runs: `client::Opening` for the handshake,
//! then `client::Inbound` over a client-role `WebSocket`.
//!
//! Input: see `wsloop_fuzz::Split`. Flag bit 0 (control bit 3): the payload continues a canned
//! `101` head that already carries the right `Sec-WebSocket-Accept` for the fixed key (the
//! fuzzer cannot invert SHA-1), so more header lines, the blank line and frames are the
//! fuzzer's; otherwise the payload is the whole response. Flag bit 1: the client offers
//! permessage-deflate. Flag bit 2: tiny limits (128-byte frames, 256-byte messages), otherwise
//! 64 KiB.
//!
//! - No panic.
//! - Memory stays bounded: the response buffer holds at most 16 KiB plus one read; after every
//!   step the bytes waiting in `Inbound` are at most one read, the reassembly buffer at most
//!   `max_message_size`, and `memory_held()` at most twice the limit plus one inflater.
//! - A refusal (status other than 101) keeps at most `MAX_REFUSAL_BODY` body bytes.
//! - Split and whole runs agree: the handshake's verdict (a refusal's status, headers and
//!   body included), the events, the error, every byte
//!   the client writes (masking keys come from a fixed seed), the final state.
//! - What the client writes is well-formed masked control frames (a Pong, a Close), RSV bits
//!   clear, the failing Close last with the error's code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsloop::client::{
    ClientEvent, Inbound, Opened, Opening, OpeningStatus, Refusal, WsUrl, MAX_REFUSAL_BODY, MAX_RESPONSE_HEAD,
};
use wsloop::deflate::inflater_bytes;
use wsloop::frame::{apply_mask, parse_header, HeaderStatus, Opcode};
use wsloop::handshake::accept_key;
use wsloop::handshake::client::{ClientHandshake, ClientHandshakeError};
use wsloop::handshake::deflate::DeflateOffer;
use wsloop::protocol::{Config, Role, State, WebSocket};
use wsloop::ProtocolError;
use wsloop_fuzz::Split;

const NONCE: [u8; 16] = *b"the sample nonce";

#[derive(Debug, PartialEq)]
struct Run {
    /// `Ok(None)`: the head never completed.
    handshake: Result<Option<Opened>, ClientHandshakeError>,
    /// A status other than 101: what the server said, as far as the reads went.
    refused: Option<Refusal>,
    events: Vec<ClientEvent>,
    error: Option<ProtocolError>,
    out: Vec<u8>,
    state: Option<State>,
}

fn run(config: Config, deflate: bool, reads: &[&[u8]]) -> Run {
    let url = WsUrl::parse("ws://example.com/chat").unwrap();
    let mut handshake = ClientHandshake::with_nonce(NONCE, &[]);
    if deflate {
        handshake = handshake.with_deflate(DeflateOffer::default());
    }
    let mut opening = Opening::new(handshake, &url, &[]);
    let longest = reads.iter().map(|r| r.len()).max().unwrap_or(0);
    let bound = 2 * config.max_message_size + 2 + 128 + inflater_bytes() + 1024;
    let mut run = Run {
        handshake: Ok(None),
        refused: None,
        events: Vec::new(),
        error: None,
        out: Vec::new(),
        state: None,
    };
    let mut reads = reads.iter();
    // The handshake, read by read; the rest of the read that completes it holds frames.
    let (opened, first_frames) = loop {
        let Some(read) = reads.next() else {
            // The server closed: a refusal's body ends here (RFC 9112 §6.3).
            run.refused = opening.end();
            return run;
        };
        let status = opening.feed(read);
        assert!(opening.response().len() <= MAX_RESPONSE_HEAD + longest);
        match status {
            Ok(OpeningStatus::Partial) => continue,
            Ok(OpeningStatus::Refused(refusal)) => {
                assert!(refusal.body.len() <= MAX_REFUSAL_BODY);
                run.refused = Some(refusal);
                return run;
            }
            Ok(OpeningStatus::Open(opened)) => {
                let frames = opening.response()[opened.head_len..].to_vec();
                break (opened, frames);
            }
            Err(e) => {
                run.handshake = Err(e);
                return run;
            }
        }
    };
    let mut ws = WebSocket::with_mask_seed(Role::Client, config, 7);
    if let Some(params) = opened.deflate {
        assert!(deflate, "deflate agreed without an offer");
        ws = ws.with_deflate(params);
    }
    run.handshake = Ok(Some(opened));
    let mut inbound = Inbound::new(true);
    'reads: for read in std::iter::once(&first_frames[..]).chain(reads.copied()) {
        inbound.push(read);
        loop {
            match inbound.next_event(&mut ws, &mut run.out) {
                Ok(Some(e)) => run.events.push(e),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(ws.state(), State::Failed);
                    run.error = Some(e);
                    break 'reads;
                }
            }
            assert!(inbound.buffered() <= read.len().max(first_frames.len()));
            assert!(ws.buffered_message_len() <= config.max_message_size);
            assert!(ws.memory_held() <= bound, "{} held", ws.memory_held());
        }
        assert_eq!(inbound.buffered(), 0, "no event, yet bytes left over");
        let _ = inbound.take_captured();
    }
    run.state = Some(ws.state());
    run
}

fuzz_target!(|data: &[u8]| {
    let Some(split) = Split::new(data) else {
        return;
    };
    let config = if split.flag(2) {
        Config::default().max_frame_size(128).max_message_size(256)
    } else {
        Config::default().max_frame_size(64 << 10).max_message_size(64 << 10)
    };
    let deflate = split.flag(1);
    let mut input = Vec::new();
    if split.flag(0) {
        let key = ClientHandshake::with_nonce(NONCE, &[]).key().to_owned();
        input.extend_from_slice(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: {}\r\n",
                accept_key(key.as_bytes())
            )
            .as_bytes(),
        );
    }
    // The canned head is its own first read: the fuzzer's cuts apply to its bytes.
    let head_len = input.len();
    input.extend_from_slice(split.payload);
    let whole = run(config, deflate, &[&input]);
    let mut reads: Vec<&[u8]> = Vec::new();
    if head_len > 0 {
        reads.push(&input[..head_len]);
    }
    reads.extend(split.reads());
    let pieces = run(config, deflate, &reads);
    assert_eq!(pieces, whole, "split at {:?}", split.lengths);

    // What the client wrote: masked control frames, RSV clear, the failing Close last.
    let mut frames = Vec::new();
    let mut rest = &whole.out[..];
    while !rest.is_empty() {
        let Ok(HeaderStatus::Complete(h)) = parse_header(rest) else {
            panic!("client wrote a malformed frame: {rest:02x?}");
        };
        let key = h.mask.expect("client frames are masked (RFC 6455 §5.3)");
        assert!(h.rsv == 0 && h.opcode.is_control());
        let end = h.header_len() + h.payload_len as usize;
        assert!(end <= rest.len());
        let mut payload = rest[h.header_len()..end].to_vec();
        apply_mask(&mut payload, key, 0);
        frames.push((h.opcode, payload));
        rest = &rest[end..];
    }
    if let Some(e) = whole.error {
        match frames.last() {
            Some((Opcode::Close, payload)) if whole.events.iter().all(|e| !matches!(e, ClientEvent::Close(_))) => {
                assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), e.close_code().0);
            }
            _ => panic!("failed with {e:?} but sent no Close frame"),
        }
    }
});
