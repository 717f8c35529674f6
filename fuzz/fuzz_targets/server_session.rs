//! A server-side `WebSocket` fed arbitrary bytes, as reads cut at points the input chooses
//! (RFC 6455 §5–§8).
//!
//! Input: see `wsloop_fuzz::Split` — a control byte and chunk lengths, then the bytes from the
//! "client". Flag bit 0 (control bit 3) selects tiny limits (128-byte frames, 256-byte
//! messages) so the 1009 paths are reachable with short inputs, otherwise 64 KiB frames and
//! messages; flag bit 1 (control bit 4) turns automatic Pongs off.
//!
//! - No panic, and `consumed` never exceeds the input handed in.
//! - After every `receive`, the reassembly buffer holds no more than `max_message_size`.
//! - The split run and the whole run agree: the same events, in order, with the same data; the
//!   same final error (if any); the same bytes to send; the same final state. Where the bytes
//!   are cut must not change what the connection does.
//! - The bytes to send stay bounded by what came in: each Pong is smaller than the Ping that
//!   caused it and a Close reply smaller than the Close, plus at most one Close frame of ≤ 127
//!   bytes when the connection fails.
//! - A failure leaves the state `Failed` with a Close frame carrying the error's code at the end
//!   of `out` (unless the peer's Close already arrived); a Close event leaves it `Closed`.
#![no_main]

use libfuzzer_sys::fuzz_target;
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

fn run(config: Config, reads: &[&[u8]]) -> Run {
    let mut ws = WebSocket::server(config);
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
                    assert!(r.consumed <= len, "consumed {} of {len}", r.consumed);
                    pos += r.consumed;
                    let event = r.event.map(|e| e.to_owned_event());
                    assert!(ws.buffered_message_len() <= config.max_message_size);
                    match event {
                        Some(e) => {
                            if matches!(e, OwnedEvent::Close(_)) {
                                assert_eq!(ws.state(), State::Closed);
                            }
                            events.push(e);
                        }
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
                    assert!(ws.buffered_message_len() == 0);
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
    let mut config = if split.flag(0) {
        Config::default().max_frame_size(128).max_message_size(256)
    } else {
        Config::default().max_frame_size(64 << 10).max_message_size(64 << 10)
    };
    if split.flag(1) {
        config = config.auto_pong(false);
    }
    let input = split.payload;

    let whole = run(config, &[input]);
    let pieces = run(config, &split.reads());
    assert_eq!(pieces, whole, "split at {:?}", split.lengths);

    assert!(
        whole.out.len() <= input.len() + 127,
        "{} bytes out for {} in",
        whole.out.len(),
        input.len()
    );

    // What the server wrote is a sequence of well-formed, unmasked frames.
    let mut frames = Vec::new();
    let mut rest = &whole.out[..];
    while !rest.is_empty() {
        let Ok(HeaderStatus::Complete(h)) = parse_header(rest) else {
            panic!("server wrote a malformed frame: {rest:02x?}");
        };
        assert!(h.mask.is_none() && h.rsv == 0);
        let end = h.header_len() + h.payload_len as usize;
        assert!(end <= rest.len(), "server wrote a truncated frame");
        frames.push((h.opcode, rest[h.header_len()..end].to_vec()));
        rest = &rest[end..];
    }
    // At most one Close, and nothing after it.
    if let Some(i) = frames.iter().position(|(op, _)| *op == Opcode::Close) {
        assert_eq!(i, frames.len() - 1, "frames after our Close");
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
