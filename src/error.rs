//! One error per RFC rule a peer can break, each mapped to the close code the RFC gives it
//! (RFC 6455 §7.4.1), so a log reader or a learner sees which rule broke and the peer gets the
//! right status.

use crate::frame::CloseCode;
use std::fmt;

/// A rule of RFC 6455 (or RFC 7692, with permessage-deflate) broken by the bytes a peer sent. Receiving one fails the WebSocket
/// connection (RFC 6455 §7.1.7) with [`ProtocolError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// An opcode in 0x3–0x7 or 0xB–0xF (RFC 6455 §5.2).
    ReservedOpcode(u8),
    /// An RSV bit set that no negotiated extension defines (RFC 6455 §5.2).
    ReservedBitsSet(u8),
    /// A client frame without the MASK bit (RFC 6455 §5.1: "a client MUST mask all frames").
    UnmaskedClientFrame,
    /// A server frame with the MASK bit (RFC 6455 §5.1: "A server MUST NOT mask any frames").
    MaskedServerFrame,
    /// The 64-bit payload length had its most significant bit set (RFC 6455 §5.2).
    LengthTopBitSet,
    /// The payload length was not in its minimal form (RFC 6455 §5.2: "the minimal number of
    /// bytes MUST be used to encode the length").
    NonMinimalLength,
    /// A control frame with a payload over 125 bytes (RFC 6455 §5.5).
    ControlFrameTooLong,
    /// A control frame with FIN clear (RFC 6455 §5.5: control frames "MUST NOT be fragmented").
    FragmentedControlFrame,
    /// A continuation frame with no message in progress (RFC 6455 §5.4).
    UnexpectedContinuation,
    /// A new Text or Binary frame while a fragmented message was still open (RFC 6455 §5.4).
    ExpectedContinuation,
    /// A Close frame whose payload is exactly one byte (RFC 6455 §5.5.1: a body starts with a
    /// two-byte status code).
    CloseFrameTooShort,
    /// A Close frame with a status code not allowed on the wire (RFC 6455 §7.4.1–§7.4.2).
    InvalidCloseCode(u16),
    /// A text message or a close reason that is not valid UTF-8 (RFC 6455 §5.6, §8.1).
    InvalidUtf8,
    /// A frame whose declared length is over the configured frame limit (RFC 6455 §10.4).
    FrameTooLarge,
    /// A message whose total length would pass the configured message limit (RFC 6455 §10.4).
    MessageTooLarge,
    /// RSV1 set, but no extension that defines it (permessage-deflate) was negotiated
    /// (RFC 6455 §5.2: "MUST be 0 unless an extension is negotiated that defines meanings").
    Rsv1WithoutExtension,
    /// RSV1 ("Per-Message Compressed") on a control frame (RFC 7692 §6: "An endpoint MUST NOT
    /// set the "Per-Message Compressed" bit of control frames").
    CompressedControlFrame,
    /// RSV1 on a continuation frame (RFC 7692 §6: nor on "non-first fragments of a data
    /// message"); only a message's first frame says whether it is compressed.
    CompressedContinuation,
    /// A compressed message whose payload is not valid DEFLATE (RFC 7692 §7.2.2, RFC 1951).
    /// Close code 1007: the payload is not consistent with the message (RFC 6455 §7.4.1).
    InvalidCompressedData,
    /// A compressed message that inflates past the configured message limit, stopped while
    /// inflating, before the memory is allocated (RFC 6455 §10.4; RFC 7692 §8).
    DecompressedMessageTooLarge,
}

impl ProtocolError {
    /// The close code the peer is sent for this error (RFC 6455 §7.4.1): 1007 for bad UTF-8,
    /// 1009 for size limits, 1002 for everything else.
    pub fn close_code(self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            ProtocolError::FrameTooLarge
            | ProtocolError::MessageTooLarge
            | ProtocolError::DecompressedMessageTooLarge => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// The RFC section that states the broken rule.
    pub fn rfc_section(self) -> &'static str {
        match self {
            ProtocolError::ReservedOpcode(_)
            | ProtocolError::ReservedBitsSet(_)
            | ProtocolError::LengthTopBitSet
            | ProtocolError::NonMinimalLength => "RFC 6455 §5.2",
            ProtocolError::UnmaskedClientFrame | ProtocolError::MaskedServerFrame => "RFC 6455 §5.1",
            ProtocolError::ControlFrameTooLong | ProtocolError::FragmentedControlFrame => "RFC 6455 §5.5",
            ProtocolError::UnexpectedContinuation | ProtocolError::ExpectedContinuation => "RFC 6455 §5.4",
            ProtocolError::CloseFrameTooShort => "RFC 6455 §5.5.1",
            ProtocolError::InvalidCloseCode(_) => "RFC 6455 §7.4",
            ProtocolError::InvalidUtf8 => "RFC 6455 §8.1",
            ProtocolError::FrameTooLarge | ProtocolError::MessageTooLarge => "RFC 6455 §10.4",
            ProtocolError::Rsv1WithoutExtension => "RFC 6455 §5.2",
            ProtocolError::CompressedControlFrame | ProtocolError::CompressedContinuation => "RFC 7692 §6",
            ProtocolError::InvalidCompressedData => "RFC 7692 §7.2.2",
            ProtocolError::DecompressedMessageTooLarge => "RFC 6455 §10.4, RFC 7692 §8",
        }
    }

    /// A short reason, at most 123 bytes, suitable for the Close frame sent to the peer
    /// (RFC 6455 §5.5: 125 bytes minus the two-byte code).
    pub fn close_reason(self) -> &'static str {
        match self {
            ProtocolError::ReservedOpcode(_) => "reserved opcode",
            ProtocolError::ReservedBitsSet(_) => "RSV bits set without an extension",
            ProtocolError::UnmaskedClientFrame => "client frames must be masked",
            ProtocolError::MaskedServerFrame => "server frames must not be masked",
            ProtocolError::LengthTopBitSet => "64-bit length with top bit set",
            ProtocolError::NonMinimalLength => "payload length not minimally encoded",
            ProtocolError::ControlFrameTooLong => "control frame over 125 bytes",
            ProtocolError::FragmentedControlFrame => "fragmented control frame",
            ProtocolError::UnexpectedContinuation => "continuation frame with nothing to continue",
            ProtocolError::ExpectedContinuation => "new message inside a fragmented message",
            ProtocolError::CloseFrameTooShort => "close payload of one byte",
            ProtocolError::InvalidCloseCode(_) => "invalid close code",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::FrameTooLarge => "frame too large",
            ProtocolError::MessageTooLarge => "message too large",
            ProtocolError::Rsv1WithoutExtension => "RSV1 set without a negotiated extension",
            ProtocolError::CompressedControlFrame => "RSV1 (compressed) on a control frame",
            ProtocolError::CompressedContinuation => "RSV1 (compressed) on a continuation frame",
            ProtocolError::InvalidCompressedData => "invalid compressed data",
            ProtocolError::DecompressedMessageTooLarge => "message too large once inflated",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}")?,
            ProtocolError::ReservedBitsSet(rsv) => {
                write!(f, "RSV bits {rsv:03b} set without an extension that defines them")?
            }
            ProtocolError::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent on the wire")?,
            other => f.write_str(other.close_reason())?,
        }
        write!(f, " ({}; close code {})", self.rfc_section(), self.close_code().0)
    }
}

impl std::error::Error for ProtocolError {}

/// Why a message could not be queued for sending (RFC 6455 §5.5.1, §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// A Close frame was already sent: "the endpoint MUST NOT send any further data frames"
    /// (RFC 6455 §5.5.1), and a second Close frame is never sent.
    Closing,
    /// A control frame payload over 125 bytes (RFC 6455 §5.5).
    ControlFrameTooLong,
    /// A close code that may not be sent on the wire (RFC 6455 §7.4).
    InvalidCloseCode(u16),
    /// An unmasked frame header asked for by a client, whose frames must be masked
    /// (RFC 6455 §5.3).
    ClientMustMask,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closing => f.write_str("a Close frame was already sent (RFC 6455 §5.5.1)"),
            SendError::ControlFrameTooLong => f.write_str("control frame payload over 125 bytes (RFC 6455 §5.5)"),
            SendError::InvalidCloseCode(c) => write!(f, "close code {c} may not be sent (RFC 6455 §7.4)"),
            SendError::ClientMustMask => f.write_str("a client's frames must be masked (RFC 6455 §5.3)"),
        }
    }
}

impl std::error::Error for SendError {}
