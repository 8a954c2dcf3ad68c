//! # chute-protocol
//!
//! The chute wire protocol, version 1: every frame, its encoding, a streaming decoder, the
//! error codes and the limits. `docs/PROTOCOL.md` in the repository is the normative spec; this
//! crate is its reference implementation and checks the spec's test vectors.
//!
//! The crate is pure: no I/O, no clocks, no randomness. Decoding is bounded: a frame's length is
//! checked against the limit before its body is buffered, every sequence has a named maximum
//! length, and payloads are slices of the received bytes rather than copies.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use chute_protocol::{Frame, FrameReader, Heartbeat, PREFACE};
//!
//! let mut wire = BytesMut::new();
//! wire.extend_from_slice(&PREFACE);
//! Frame::Heartbeat(Heartbeat).encode(&mut wire, 1 << 20).unwrap();
//!
//! let mut reader = FrameReader::expecting_preface(1 << 20);
//! reader.feed(wire.freeze());
//! assert_eq!(reader.next_frame().unwrap(), Some(Frame::Heartbeat(Heartbeat)));
//! assert_eq!(reader.next_frame().unwrap(), None); // need more bytes
//! ```

mod bounded;
pub mod codec;
pub mod error_code;
pub mod frame;
pub mod kind;
pub mod limits;
pub mod message;
pub mod queue_options;
mod reader;

pub use codec::{
    append_postcard, decode_header, encode_body, DecodeError, EncodeError, FrameHeader,
};
pub use error_code::ErrorCode;
pub use frame::*;
pub use kind::{Direction, Frame, FrameKind, Heartbeat};
pub use limits::*;
pub use message::{
    AttemptOutcome, AttemptRecord, DeadLetter, DeadLetterSummary, DeadReason, Delivery, Header,
    PublishMessage, Schedule,
};
pub use queue_options::*;
pub use reader::FrameReader;
