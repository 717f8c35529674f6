//! The close handshake (RFC 6455 §5.5.1, §7): starting it with [`WebSocketCore::close`], failing
//! the connection on a broken rule (§7.1.7), and the checks on a Close frame's body: a status
//! code allowed on the wire (§7.4) and a UTF-8 reason. The state machine it drives is drawn in
//! the parent module's docs.

use super::{pmd, State, WebSocketCore};
use crate::error::{ProtocolError, SendError};
use crate::frame::{self, CloseCode, Opcode, MAX_CONTROL_PAYLOAD};

impl WebSocketCore {
    /// Starts the closing handshake (RFC 6455 §7.1.2): appends a Close frame with `code` and
    /// `reason` (cut at a character boundary to fit 123 bytes) and moves to
    /// [`State::CloseSent`]. If the peer's Close already arrived, the handshake is over and
    /// this returns [`SendError::Closing`].
    pub fn close(&mut self, code: CloseCode, reason: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        if !code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        if self.state != State::Open {
            return Err(SendError::Closing);
        }
        self.write_close(code, reason, out);
        self.close_code = Some(code);
        self.state = State::CloseSent;
        Ok(())
    }

    /// Fails the connection (RFC 6455 §7.1.7): one Close frame with the error's code, unless a
    /// Close was already sent, then stop reading.
    pub(super) fn fail(&mut self, err: ProtocolError, out: &mut Vec<u8>) -> ProtocolError {
        if self.state == State::Open {
            self.write_close(err.close_code(), err.close_reason(), out);
            self.close_code = Some(err.close_code());
        }
        self.state = State::Failed;
        self.rx = None;
        if let Some(d) = pmd(&mut self.ext) {
            d.text = String::new();
            d.inflater.release();
            d.compressor.release();
        }
        err
    }

    fn write_close(&mut self, code: CloseCode, reason: &str, out: &mut Vec<u8>) {
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        payload[..2].copy_from_slice(&code.0.to_be_bytes());
        let reason = truncate_utf8(reason, MAX_CONTROL_PAYLOAD - 2);
        payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
        let mask = self.next_mask();
        frame::encode_frame(out, true, Opcode::Close, mask, &payload[..2 + reason.len()]);
    }
}

/// Checks a Close frame's payload (RFC 6455 §5.5.1, §7.4): empty, or a status code allowed on
/// the wire followed by a UTF-8 reason. Returns the code, if any.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseCode>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseFrameTooShort),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            Ok(Some(code))
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(super) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}
