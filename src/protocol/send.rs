//! The send path (RFC 6455 §5.2, §5.3, §5.5.2–§5.5.3, §5.6): messages and control frames
//! appended to the caller's `out` as encoded frames, masked with a fresh key when we are a
//! client (§5.3), compressed with permessage-deflate when it was agreed and the message is
//! long enough (RFC 7692 §6.1, §7.2.1). No data frame goes out once a Close was sent (§5.5.1).

use super::{pmd, Config, Role, State, WebSocketCore};
use crate::deflate::encode_compressed_frame;
use crate::error::SendError;
use crate::frame::{self, Opcode, MAX_CONTROL_PAYLOAD};

impl WebSocketCore {
    /// The masking key for the next frame we send: a fresh one for a client (RFC 6455 §5.3),
    /// none for a server.
    pub(super) fn next_mask(&mut self) -> Option<[u8; 4]> {
        if self.role == Role::Server {
            return None;
        }
        // A client always has `ext` (see `with_mask_seed`); should one lack it, it gets a
        // fresh generator rather than ever sending an unmasked frame.
        let ext = self.ext.get_or_insert_with(|| {
            Box::new(super::Ext {
                mask_state: super::fresh_mask_seed(),
                deflate: None,
            })
        });
        // splitmix64
        ext.mask_state = ext.mask_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = ext.mask_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Some((z as u32).to_ne_bytes())
    }

    /// Appends one frame to `out` (RFC 6455 §5.2), masked if we are a client. This is the
    /// low-level form for sending a message in fragments: the first frame carries Text or
    /// Binary, the rest Continuation, the last one `fin`.
    pub fn send_frame(
        &mut self,
        opcode: Opcode,
        fin: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if opcode.is_control() && (payload.len() > MAX_CONTROL_PAYLOAD || !fin) {
            return Err(SendError::ControlFrameTooLong);
        }
        if self.state != State::Open {
            return Err(SendError::Closing);
        }
        let mask = self.next_mask();
        frame::encode_frame(out, fin, opcode, mask, payload);
        Ok(())
    }

    /// The header of a data frame whose payload the caller will write itself; see
    /// [`data_frame_header`].
    pub fn data_frame_header(
        &self,
        opcode: Opcode,
        fin: bool,
        payload_len: usize,
    ) -> Result<frame::HeaderBuf, SendError> {
        data_frame_header(self.role, self.state, opcode, fin, payload_len)
    }

    /// Appends a text message, in one frame, to `out` (RFC 6455 §5.6); compressed with
    /// permessage-deflate when it was negotiated and the message is at least
    /// [`Config::deflate_threshold`](super::Config::deflate_threshold) bytes (RFC 7692 §6.1).
    pub fn send_text(&mut self, config: &Config, text: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(config, Opcode::Text, text.as_bytes(), out)
    }

    /// Appends a binary message, in one frame, to `out` (RFC 6455 §5.6); compressed like
    /// [`WebSocketCore::send_text`].
    pub fn send_binary(&mut self, config: &Config, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(config, Opcode::Binary, data, out)
    }

    /// Appends one whole data message (Text or Binary) by opcode, compressed as
    /// [`WebSocketCore::send_text`] would: for a caller that holds a message by its opcode, such as
    /// a server re-encoding a published frame for one subscriber.
    pub fn send_frame_compressed(
        &mut self,
        config: &Config,
        opcode: Opcode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if opcode.is_control() || opcode == Opcode::Continuation {
            return Err(SendError::ControlFrameTooLong);
        }
        self.send_message(config, opcode, payload, out)
    }

    /// One whole message, compressed (RSV1 set, RFC 7692 §6.1) or not.
    ///
    /// Without context takeover a compressed message that came out no smaller is replaced by
    /// the plain one. With context takeover it is sent anyway: the compressor's window now
    /// holds it, and the peer's window must too (RFC 7692 §7.2.3.2: uncompressed messages do
    /// not enter the window).
    fn send_message(
        &mut self,
        config: &Config,
        opcode: Opcode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::Closing);
        }
        let mask = self.next_mask();
        let threshold = config.deflate_threshold;
        if let Some(d) = pmd(&mut self.ext) {
            if payload.len() >= threshold && d.compressor.can_compress() {
                let start = out.len();
                if encode_compressed_frame(&mut d.compressor, opcode, payload, mask, out).is_ok() {
                    let plain_len =
                        frame::encode_header(true, opcode, mask, payload.len() as u64).len() + payload.len();
                    if out.len() - start < plain_len || !d.compressor.direction().no_context_takeover {
                        return Ok(());
                    }
                    out.truncate(start);
                }
                // On a compressor error nothing was appended and its state is gone: the next
                // compressed message starts from an empty window, which the peer can always read.
            }
        }
        frame::encode_frame(out, true, opcode, mask, payload);
        Ok(())
    }

    /// Appends a Ping (RFC 6455 §5.5.2).
    pub fn send_ping(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_frame(Opcode::Ping, true, payload, out)
    }

    /// Appends an unsolicited Pong, e.g. a unidirectional heartbeat (RFC 6455 §5.5.3).
    pub fn send_pong(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_frame(Opcode::Pong, true, payload, out)
    }
}

/// The header of a data frame whose payload the caller writes itself, straight from its own
/// buffer (one vectored write, no copy into a queue), for a connection in `role` and `state`.
/// Unmasked, so only for the server role: a client's payload must be masked (RFC 6455 §5.3)
/// and goes through [`WebSocketCore::send_frame`]. No data frame once a Close was sent
/// (RFC 6455 §5.5.1). A free function so a caller holding a message borrowed from the
/// connection can still frame its answer from a snapshot of the state.
pub fn data_frame_header(
    role: Role,
    state: State,
    opcode: Opcode,
    fin: bool,
    payload_len: usize,
) -> Result<frame::HeaderBuf, SendError> {
    if role == Role::Client {
        return Err(SendError::ClientMustMask);
    }
    if opcode.is_control() && (payload_len > MAX_CONTROL_PAYLOAD || !fin) {
        return Err(SendError::ControlFrameTooLong);
    }
    if state != State::Open {
        return Err(SendError::Closing);
    }
    Ok(frame::encode_header(fin, opcode, None, payload_len as u64))
}
