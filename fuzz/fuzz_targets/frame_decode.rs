//! The streaming frame decoder on arbitrary bytes.
//!
//! Input layout: `[split, data...]`. `data` goes to a server-side reader (expecting the preface)
//! and, with a leading preface stripped, to a client-side reader. `split` decides how `data` is
//! cut into the chunks fed to the readers, and whether the reader is drained after each chunk or
//! left to join several (0: one chunk).
//!
//! Properties: decoding never panics, a reader stops at the first error, and every decoded
//! frame survives `encode` → decode unchanged, with a canonical encoding.

#![no_main]

use bytes::{Bytes, BytesMut};
use chute_protocol::{Frame, FrameReader, FRAME_SIZE_MAX_DEFAULT, PREFACE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else {
        return;
    };
    let data = Bytes::copy_from_slice(data);

    let server = FrameReader::expecting_preface(FRAME_SIZE_MAX_DEFAULT);
    decode_all(server, data.clone(), split, FRAME_SIZE_MAX_DEFAULT);

    let client_data = match data.strip_prefix(&PREFACE[..]) {
        Some(rest) => data.slice_ref(rest),
        None => data,
    };
    let client = FrameReader::new(FRAME_SIZE_MAX_DEFAULT);
    decode_all(client, client_data, split, FRAME_SIZE_MAX_DEFAULT);
});

/// Feeds `data` in chunks, drains frames, and checks each one's round trip.
fn decode_all(mut reader: FrameReader, mut data: Bytes, split: u8, frame_size_max: u32) {
    let mut chunks = Chunker::new(split);
    while !data.is_empty() {
        let (len, drain) = chunks.next(data.len());
        reader.feed(data.split_to(len));
        if !drain && !data.is_empty() {
            continue; // leave the chunk buffered: the next feed joins it
        }
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => check_round_trip(&frame, frame_size_max),
                Ok(None) => break,
                // A decode error ends the stream; the connection would be closed.
                Err(_) => return,
            }
        }
    }
}

fn check_round_trip(frame: &Frame, frame_size_max: u32) {
    // A decoded body re-encodes no longer than it arrived (postcard's canonical form is the
    // shortest), so it fits the same limit.
    let mut wire = BytesMut::new();
    frame
        .encode(&mut wire, frame_size_max)
        .unwrap_or_else(|err| panic!("re-encoding {frame:?} failed: {err}"));
    let wire = wire.freeze();

    let mut reader = FrameReader::new(frame_size_max);
    reader.feed(wire.clone());
    let again = match reader.next_frame() {
        Ok(Some(again)) => again,
        other => panic!("decoding the re-encoded {frame:?} gave {other:?}\nwire: {wire:02x?}"),
    };
    assert_eq!(&again, frame, "round trip changed the frame");
    assert_eq!(reader.next_frame(), Ok(None), "round trip left a trailing frame");
    assert_eq!(reader.buffered_len(), 0, "round trip left bytes behind");

    let mut canonical = BytesMut::new();
    again.encode(&mut canonical, frame_size_max).expect("the same frame encoded a moment ago");
    assert_eq!(canonical, wire, "encoding is not deterministic");
}

/// Chunk lengths drawn from a tiny PRNG seeded by `split`. 0 feeds everything at once; `n`
/// feeds chunks of 1..=n bytes, so 1 feeds byte by byte.
struct Chunker {
    max: usize,
    state: u32,
}

impl Chunker {
    fn new(split: u8) -> Chunker {
        Chunker { max: usize::from(split), state: u32::from(split).wrapping_mul(0x9E37_79B9) | 1 }
    }

    /// The next chunk length (at most `left`) and whether to drain the reader after it.
    fn next(&mut self, left: usize) -> (usize, bool) {
        if self.max == 0 {
            return (left, true);
        }
        // xorshift32
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let len = 1 + (self.state as usize >> 8) % self.max;
        let drain = self.state & 0b11 != 0; // three times in four
        (len.min(left), drain)
    }
}
