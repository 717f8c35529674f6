//! A server-side `WebSocket` with permessage-deflate fed arbitrary bytes, as reads cut at
//! points the input chooses (RFC 6455 §5–§8, RFC 7692 §6–§7.2).
//!
//! Input: see `wsloop_fuzz::Split`. Flag bit 0 (control bit 3) selects tiny limits (128-byte
//! frames, 256-byte messages), otherwise 64 KiB; flag bit 1 (control bit 4) selects context
//! takeover both ways instead of the shared mode (no takeover).
//!
//! - No panic; `consumed` never exceeds the input handed in.
//! - After every `receive`: the reassembly buffer holds at most `max_message_size` bytes, and
//!   `memory_held()` stays under twice the limit plus one inflater and the fixed record: a
//!   compressed message can never make the connection hold more than its limit allows.
//! - Split and whole runs agree: events, error, bytes to send, final state.
//! - What the server writes is well-formed unmasked frames with RSV bits clear (it only
//!   answers with control frames here), the failing Close last with the error's code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsloop::deflate::{inflater_bytes, DeflateParams};
use wsloop::frame::{parse_header, HeaderStatus, Opcode};
use wsloop::protocol::{Config, OwnedEvent, State, WebSocket};
use wsloop::ProtocolError;
use wsloop_fuzz::Split;

#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<OwnedEvent>,
    error: Option<ProtocolError>,
    out: Vec<u8>,
    state: State,
}

fn run(config: Config, params: DeflateParams, reads: &[&[u8]]) -> Run {
    let mut ws = WebSocket::server(config).with_deflate(params);
    let bound = 2 * config.max_message_size + 2 + 128 + inflater_bytes() + 1024;
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut error = None;
    'reads: for read in reads {
        let mut buf = read.to_vec();
        let mut pos = 0;
        loop {
            let rest = &mut buf[pos..];
            let len = rest.len();
            match ws.receive(rest, &mut out) {
                Ok(r) => {
                    assert!(r.consumed <= len);
                    pos += r.consumed;
                    let event = r.event.map(|e| e.to_owned_event());
                    assert!(ws.buffered_message_len() <= config.max_message_size);
                    assert!(ws.memory_held() <= bound, "{} held", ws.memory_held());
                    match event {
                        Some(e) => events.push(e),
                        None => {
                            assert_eq!(pos, buf.len(), "no event, yet input left over");
                            break;
                        }
                    }
                    if pos == buf.len() {
                        break;
                    }
                }
                Err(e) => {
                    assert_eq!(ws.state(), State::Failed);
                    error = Some(e);
                    break 'reads;
                }
            }
        }
    }
    Run {
        events,
        error,
        out,
        state: ws.state(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(split) = Split::new(data) else {
        return;
    };
    let config = if split.flag(0) {
        Config::default().max_frame_size(128).max_message_size(256)
    } else {
        Config::default().max_frame_size(64 << 10).max_message_size(64 << 10)
    };
    let params = if split.flag(1) {
        DeflateParams::default()
    } else {
        DeflateParams::no_context_takeover()
    };
    let whole = run(config, params, &[split.payload]);
    let pieces = run(config, params, &split.reads());
    assert_eq!(pieces, whole, "split at {:?}", split.lengths);

    let mut frames = Vec::new();
    let mut rest = &whole.out[..];
    while !rest.is_empty() {
        let Ok(HeaderStatus::Complete(h)) = parse_header(rest) else {
            panic!("server wrote a malformed frame: {rest:02x?}");
        };
        assert!(h.mask.is_none() && h.rsv == 0);
        let end = h.header_len() + h.payload_len as usize;
        assert!(end <= rest.len());
        frames.push((h.opcode, rest[h.header_len()..end].to_vec()));
        rest = &rest[end..];
    }
    if let Some(e) = whole.error {
        match frames.last() {
            Some((Opcode::Close, payload)) if whole.events.iter().all(|e| !matches!(e, OwnedEvent::Close(_))) => {
                assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), e.close_code().0);
            }
            _ => panic!("failed with {e:?} but sent no Close frame"),
        }
    }
});
