//! `FrameReader`: turns a stream of received chunks into frames with as few copies as possible.
//!
//! Frames that lie wholly inside one received chunk are sliced out of it (no copy). Only a
//! frame split across chunks is assembled in a side buffer, and each of its bytes is copied
//! once. The side buffer never grows beyond one frame, whose length was checked first.

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::{check_preface, decode_frame_body, decode_header, DecodeError, FrameHeader};
use crate::kind::Frame;
use crate::limits::{FRAME_HEADER_LEN, PREFACE};

#[derive(Debug)]
pub struct FrameReader {
    /// Unconsumed bytes of the last chunk fed.
    chunk: Bytes,
    /// A frame (or preface) split across chunks, being assembled.
    partial: BytesMut,
    frame_size_max: u32,
    expect_preface: bool,
}

impl FrameReader {
    /// A reader for the server side, which first expects the client's preface.
    pub fn expecting_preface(frame_size_max: u32) -> FrameReader {
        FrameReader { expect_preface: true, ..FrameReader::new(frame_size_max) }
    }

    /// A reader that expects frames straight away (the client side).
    pub fn new(frame_size_max: u32) -> FrameReader {
        FrameReader {
            chunk: Bytes::new(),
            partial: BytesMut::new(),
            frame_size_max,
            expect_preface: false,
        }
    }

    pub fn set_frame_size_max(&mut self, frame_size_max: u32) {
        self.frame_size_max = frame_size_max;
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered_len(&self) -> usize {
        self.chunk.len() + self.partial.len()
    }

    /// Bytes of a frame whose start arrived and whose end has not: nonzero between frames only
    /// when the peer is in the middle of sending one.
    pub fn partial_frame_len(&self) -> usize {
        self.partial.len()
    }

    /// Memory this reader holds for bytes not yet returned as frames: the unread part of the
    /// last chunk and the side buffer's allocation.
    pub fn held_bytes(&self) -> usize {
        self.chunk.len() + self.partial.capacity()
    }

    /// Adds received bytes. Frames already buffered stay ahead of them.
    pub fn feed(&mut self, bytes: Bytes) {
        if self.chunk.is_empty() {
            self.chunk = bytes;
        } else {
            // Only when the caller stopped draining (paused); keep one contiguous chunk.
            let mut joined = BytesMut::with_capacity(self.chunk.len() + bytes.len());
            joined.extend_from_slice(&self.chunk);
            joined.extend_from_slice(&bytes);
            self.chunk = joined.freeze();
        }
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        if self.expect_preface && !self.take_preface()? {
            return Ok(None);
        }
        let Some(frame) = self.next_frame_bytes()? else {
            return Ok(None);
        };
        let header = decode_header(&frame, u32::MAX)?.expect("a whole frame holds its header");
        decode_frame_body(header.kind, frame.slice(FRAME_HEADER_LEN..)).map(Some)
    }

    fn take_preface(&mut self) -> Result<bool, DecodeError> {
        let need = PREFACE.len() - self.partial.len();
        let take = need.min(self.chunk.len());
        self.partial.extend_from_slice(&self.chunk[..take]);
        self.chunk.advance(take);
        if !check_preface(&self.partial)? {
            return Ok(false);
        }
        self.partial.clear();
        self.expect_preface = false;
        Ok(true)
    }

    /// The bytes of the next whole frame, header included.
    fn next_frame_bytes(&mut self) -> Result<Option<Bytes>, DecodeError> {
        if self.partial.is_empty() {
            if let Some(header) = decode_header(&self.chunk, self.frame_size_max)? {
                if self.chunk.len() >= header.frame_len() {
                    return Ok(Some(self.chunk.split_to(header.frame_len())));
                }
            }
        }
        self.assemble()
    }

    /// Moves bytes from the chunk into `partial` until it holds a whole frame or the chunk is
    /// empty.
    fn assemble(&mut self) -> Result<Option<Bytes>, DecodeError> {
        if self.partial.len() < FRAME_HEADER_LEN {
            let take = (FRAME_HEADER_LEN - self.partial.len()).min(self.chunk.len());
            self.partial.extend_from_slice(&self.chunk[..take]);
            self.chunk.advance(take);
        }
        let Some(header) = decode_header(&self.partial, self.frame_size_max)? else {
            return Ok(None);
        };
        if self.chunk.is_empty() && self.partial.len() < header.frame_len() {
            // Nothing new arrived: asked again (after a pause, say), the buffer must not grow.
            return Ok(None);
        }
        self.reserve_for(header);
        let take = (header.frame_len() - self.partial.len()).min(self.chunk.len());
        self.partial.extend_from_slice(&self.chunk[..take]);
        self.chunk.advance(take);
        if self.partial.len() < header.frame_len() {
            return Ok(None);
        }
        // A fresh buffer for the next frame: reusing this allocation would let a small frame's
        // payload pin the large frame's memory for as long as the broker holds the payload.
        Ok(Some(std::mem::take(&mut self.partial).freeze()))
    }

    /// Grows the side buffer for the bytes at hand: geometrically, so a frame assembled from
    /// many chunks is copied a bounded number of times, but never past the frame's length, and
    /// never ahead of what the peer actually sent (a hostile peer that announces a large frame
    /// and then stalls costs what it sent).
    fn reserve_for(&mut self, header: FrameHeader) {
        let missing = header.frame_len().saturating_sub(self.partial.len());
        let wanted = self.partial.len() + missing.min(self.chunk.len().max(FRAME_HEADER_LEN));
        if self.partial.capacity() < wanted {
            let target =
                wanted.max(self.partial.capacity().saturating_mul(2)).min(header.frame_len());
            let mut grown = BytesMut::with_capacity(target);
            grown.extend_from_slice(&self.partial);
            self.partial = grown;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asking for a frame again when nothing new arrived (a paused connection resumed) leaves
    /// the memory held for the unfinished frame as it was.
    #[test]
    fn polling_without_new_bytes_does_not_grow_the_buffer() {
        let mut reader = FrameReader::new(1 << 20);
        let mut bytes = 900_000u32.to_be_bytes().to_vec();
        bytes.extend([crate::FrameKind::Publish as u8, 0]);
        bytes.resize(500_006, 0);
        reader.feed(Bytes::from(bytes));
        assert_eq!(reader.next_frame(), Ok(None));
        let held = reader.held_bytes();
        assert_eq!(reader.partial_frame_len(), 500_006);
        assert_eq!(reader.next_frame(), Ok(None));
        assert_eq!(reader.held_bytes(), held);
    }
}
