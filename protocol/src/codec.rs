//! Encoding and streaming decoding of frames.
//!
//! A frame is a 6-byte header (`body_len: u32` big-endian, `kind: u8`, `flags: u8`) followed by
//! a postcard body. The header is parsed with nom's streaming parsers, so a short input means
//! "need more bytes", never an error. The body length is checked against the limit before a
//! single byte of the body is buffered.

use bytes::{BufMut, Bytes, BytesMut};
use nom::number::streaming::{be_u32, u8 as byte};
use nom::Parser;
use postcard::de_flavors::{Flavor, Slice};
use serde::{Deserialize, Serialize};

use crate::bounded::{self, OverLimit};
use crate::error_code::ErrorCode;
use crate::kind::{decode_body, Frame, FrameKind};
use crate::limits::{FRAME_HEADER_LEN, FRAME_SIZE_CEILING, PREFACE};

/// Why bytes from a peer could not be decoded. Every variant means the stream can no longer be
/// trusted: the receiver answers with an error frame and closes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("the connection did not start with the chute preface")]
    BadPreface,
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u32, max: u32 },
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("frame flags 0x{flags:02x} on {kind:?} are not defined in this version")]
    UnknownFlags { kind: FrameKind, flags: u8 },
    #[error("malformed {kind:?} body: {detail}")]
    MalformedBody { kind: FrameKind, detail: postcard::Error },
    /// A sequence declared more elements than its limit (§10.1 of the spec); refused on the
    /// count, before any element was read.
    #[error("malformed {kind:?} body: {field}: {count} elements, the limit is {max} ({limit})")]
    SequenceTooLong {
        kind: FrameKind,
        /// The field, as the spec's frame tables name it (`messages`, `headers`, ...).
        field: &'static str,
        /// The declared count.
        count: u64,
        max: usize,
        /// The name of the limit (`PUBLISH_BATCH_MAX`, ...).
        limit: &'static str,
    },
    #[error("{kind:?} body has {count} trailing bytes")]
    TrailingBytes { kind: FrameKind, count: usize },
}

impl DecodeError {
    /// The code of the error frame the receiver sends before closing.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DecodeError::BadPreface => ErrorCode::BAD_PREFACE,
            DecodeError::FrameTooLarge { .. } => ErrorCode::FRAME_TOO_LARGE,
            DecodeError::UnknownKind(_) => ErrorCode::UNEXPECTED_FRAME,
            DecodeError::UnknownFlags { .. }
            | DecodeError::MalformedBody { .. }
            | DecodeError::SequenceTooLong { .. }
            | DecodeError::TrailingBytes { .. } => ErrorCode::MALFORMED_FRAME,
        }
    }
}

/// A frame that could not be encoded. Only the sender's own bug or oversized content causes
/// this; nothing was appended to the output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("{kind:?} body of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge { kind: FrameKind, len: usize, max: u32 },
    #[error("cannot encode {kind:?}: {detail}")]
    Serialize { kind: FrameKind, detail: postcard::Error },
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub body_len: u32,
}

impl FrameHeader {
    /// Header plus body, in bytes.
    pub fn frame_len(self) -> usize {
        FRAME_HEADER_LEN + self.body_len as usize
    }
}

/// Parses a frame header from the front of `input`. `Ok(None)` means fewer than six bytes are
/// available. The kind, flags and length are validated here, before the body is waited for.
pub fn decode_header(
    input: &[u8],
    frame_size_max: u32,
) -> Result<Option<FrameHeader>, DecodeError> {
    let parsed: nom::IResult<&[u8], (u32, u8, u8)> = (be_u32, byte, byte).parse(input);
    let (body_len, kind_byte, flags) = match parsed {
        Ok((_, fields)) => fields,
        Err(nom::Err::Incomplete(_)) => return Ok(None),
        // The three parsers accept any byte values, so only Incomplete can fail them.
        Err(_) => unreachable!("fixed-width header fields cannot be malformed"),
    };
    let kind = FrameKind::from_u8(kind_byte).ok_or(DecodeError::UnknownKind(kind_byte))?;
    if flags != 0 {
        return Err(DecodeError::UnknownFlags { kind, flags });
    }
    let max = frame_size_max.min(FRAME_SIZE_CEILING);
    if body_len > max {
        return Err(DecodeError::FrameTooLarge { len: body_len, max });
    }
    Ok(Some(FrameHeader { kind, body_len }))
}

/// Decodes a whole frame body. Payloads in the result are slices of `body`.
pub fn decode_frame_body(kind: FrameKind, body: Bytes) -> Result<Frame, DecodeError> {
    decode_body(kind, body)
}

pub(crate) fn decode_postcard<'a, T: Deserialize<'a>>(
    kind: FrameKind,
    body: &'a [u8],
) -> Result<T, DecodeError> {
    let mut deserializer = postcard::Deserializer::from_flavor(DeclaredCounts(Slice::new(body)));
    let value = bounded::scope(body.len(), || T::deserialize(&mut deserializer)).map_err(
        |(detail, refused)| match refused {
            Some(OverLimit { field, count, max, limit }) => {
                DecodeError::SequenceTooLong { kind, field, count, max, limit }
            }
            None => DecodeError::MalformedBody { kind, detail },
        },
    )?;
    let rest =
        deserializer.finalize().map_err(|detail| DecodeError::MalformedBody { kind, detail })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { kind, count: rest.len() });
    }
    Ok(value)
}

/// The slice flavor, except that it does not tell postcard how many bytes are left. postcard
/// withholds a sequence's declared count from the visitor when the count exceeds the bytes
/// left (to spare it a large allocation); without the hint it always passes the count on, so
/// the bounded visitor can refuse an over-limit count as such, and caps what it reserves itself.
struct DeclaredCounts<'de>(Slice<'de>);

impl<'de> Flavor<'de> for DeclaredCounts<'de> {
    type Remainder = &'de [u8];
    type Source = &'de [u8];

    fn pop(&mut self) -> postcard::Result<u8> {
        self.0.pop()
    }

    fn try_take_n(&mut self, count: usize) -> postcard::Result<&'de [u8]> {
        self.0.try_take_n(count)
    }

    fn finalize(self) -> postcard::Result<&'de [u8]> {
        self.0.finalize()
    }
}

/// Appends a frame with the given body to `out`.
pub fn encode_body<T: Serialize + ?Sized>(
    kind: FrameKind,
    body: &T,
    out: &mut BytesMut,
    frame_size_max: u32,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.put_bytes(0, FRAME_HEADER_LEN);
    if let Err(detail) = append_postcard(body, out) {
        out.truncate(start);
        return Err(EncodeError::Serialize { kind, detail });
    }
    let len = out.len() - start - FRAME_HEADER_LEN;
    let max = frame_size_max.min(FRAME_SIZE_CEILING);
    if len > max as usize {
        out.truncate(start);
        return Err(EncodeError::TooLarge { kind, len, max });
    }
    let header = &mut out[start..start + FRAME_HEADER_LEN];
    header[..4].copy_from_slice(&(len as u32).to_be_bytes());
    header[4] = kind as u8;
    header[5] = 0;
    Ok(())
}

/// Appends the postcard encoding of `value` to `out` (no framing). For other crates that store
/// postcard bodies, such as the log.
pub fn append_postcard<T: Serialize + ?Sized>(
    value: &T,
    out: &mut BytesMut,
) -> postcard::Result<()> {
    postcard::serialize_with_flavor(value, BytesMutFlavor { out })
}

struct BytesMutFlavor<'a> {
    out: &'a mut BytesMut,
}

impl postcard::ser_flavors::Flavor for BytesMutFlavor<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.out.put_u8(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.out.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Checks the first bytes of a connection against [`PREFACE`]. `Ok(false)` means fewer than
/// eight bytes arrived and they match so far; a mismatch fails at once.
pub fn check_preface(input: &[u8]) -> Result<bool, DecodeError> {
    let seen = input.len().min(PREFACE.len());
    if input[..seen] != PREFACE[..seen] {
        return Err(DecodeError::BadPreface);
    }
    Ok(seen == PREFACE.len())
}
