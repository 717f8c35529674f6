//! Frames from raw bytes to meaning (RFC 6455 §5.2–§5.7): the decoding shared by
//! `wsloop explain frame`, the `--trace` printers and the `/learn` page, and the two text
//! renderers.
//!
//! - `decode`: fields from the core's [`parse_header`](crate::frame::parse_header),
//!   unmasking with the core's [`apply_mask`](crate::frame::apply_mask), and the verdict on
//!   each frame — accepted, waiting, or which rule it breaks and the Close frame sent back —
//!   from running the bytes through the core's [`WebSocket`](crate::protocol::WebSocket)
//!   state machine, the same code `wsloop serve` runs.
//! - `render`: that decoding put into words, at length (`wsloop explain frame`) or in a few
//!   lines per frame (`--trace`).

mod decode;
mod render;

pub(crate) use decode::{split_frames, CloseFields, CompressedPart, FrameView, Outcome, Parsed, Reader, Verdict};
pub(crate) use render::{explain, trace, trace_for};
