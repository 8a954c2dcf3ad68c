//! Property tests of the encoder and the streaming decoder on valid input: every frame survives
//! the wire unchanged however the bytes are chunked, payloads are not copied, and the framing
//! rules refuse what they must as early as they can.

mod strategies;

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use chute_protocol::*;
use proptest::prelude::*;
use proptest::sample::Index;
use strategies::*;

/// A reader on the client side (no preface) with the default limit.
fn reader() -> FrameReader {
    FrameReader::new(FRAME_SIZE_MAX_DEFAULT)
}

/// Feeds `chunk` and returns every frame it completes, stopping at the first error.
fn feed_and_drain(reader: &mut FrameReader, chunk: Bytes) -> Result<Vec<Frame>, DecodeError> {
    reader.feed(chunk);
    let mut frames = Vec::new();
    while let Some(frame) = reader.next_frame()? {
        frames.push(frame);
    }
    Ok(frames)
}

/// A frame header with arbitrary fields.
fn header(body_len: u32, kind: u8, flags: u8) -> Vec<u8> {
    let mut out = body_len.to_be_bytes().to_vec();
    out.extend([kind, flags]);
    out
}

/// `body` behind a valid header of `kind`.
fn frame_with_body(kind: FrameKind, body: &[u8]) -> Bytes {
    let mut out = header(body.len() as u32, kind as u8, 0);
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// The outcome of decoding `wire` fed as one chunk into a fresh reader.
fn decode_one(wire: Bytes) -> Result<Option<Frame>, DecodeError> {
    let mut reader = reader();
    reader.feed(wire);
    reader.next_frame()
}

// ---- the strategies themselves --------------------------------------------------------------

/// `frame_of_kind(k)` produces frames of kind `k` and nothing else, for every kind; with its
/// exhaustive match this proves `any_frame` can produce every kind of the protocol.
#[test]
fn every_kind_has_a_strategy_producing_that_kind() {
    for &kind in FrameKind::ALL {
        for frame in sample(frame_of_kind(kind), 8) {
            assert_eq!(frame.kind(), kind);
        }
    }
}

/// `any_frame` actually reaches every kind, not just in principle.
#[test]
fn any_frame_reaches_every_kind() {
    let seen: BTreeSet<FrameKind> = sample(any_frame(), 2_000).iter().map(Frame::kind).collect();
    let all: BTreeSet<FrameKind> = FrameKind::ALL.iter().copied().collect();
    assert_eq!(seen, all);
}

fn labels<T>(values: Vec<T>, label: fn(&T) -> &'static str) -> BTreeSet<&'static str> {
    values.iter().map(label).collect()
}

fn set(expected: &[&'static str]) -> BTreeSet<&'static str> {
    expected.iter().copied().collect()
}

/// Every variant of every enum carried in a body is generated, so the round-trip properties
/// cover each variant's encoding.
#[test]
fn enum_strategies_reach_every_variant() {
    let n = 200;
    assert_eq!(
        labels(sample(credentials(), n), credentials_label),
        set(&["anonymous", "password", "token"])
    );
    assert_eq!(labels(sample(destination(), n), destination_label), set(&["queue", "topic"]));
    assert_eq!(labels(sample(schedule(), n), schedule_label), set(&["delay", "at"]));
    assert_eq!(
        labels(sample(durability(), n), durability_label),
        set(&["always", "interval", "none"])
    );
    assert_eq!(
        labels(sample(overflow_policy(), n), overflow_policy_label),
        set(&["reject-publish", "drop-head"])
    );
    assert_eq!(
        labels(sample(expiry_policy(), n), expiry_policy_label),
        set(&["dead-letter", "drop"])
    );
    assert_eq!(
        labels(sample(rate_limit_policy(), n), rate_limit_policy_label),
        set(&["pause", "reject"])
    );
    assert_eq!(
        labels(sample(breaker_state(), n), breaker_state_label),
        set(&["closed", "open", "half-open"])
    );
    assert_eq!(
        labels(sample(attempt_outcome(), n), attempt_outcome_label),
        set(&["nack", "timeout", "disconnect", "reject"])
    );
    assert_eq!(
        labels(sample(dead_reason(), n), dead_reason_label),
        set(&["max-attempts", "rejected", "expired", "overflow"])
    );
}

/// Optional fields are generated both absent and present (checked on one representative
/// option of each nesting depth: a top-level field, one inside queue options, one inside a
/// message).
#[test]
fn optional_fields_are_both_absent_and_present() {
    let lists = sample(frame_of_kind(FrameKind::QueueList), 200);
    let afters: BTreeSet<bool> =
        lists.iter().map(|f| matches!(f, Frame::QueueList(l) if l.after.is_some())).collect();
    assert_eq!(afters.len(), 2);

    let options = sample(queue_options(), 200);
    let breakers: BTreeSet<bool> = options.iter().map(|o| o.breaker.is_some()).collect();
    assert_eq!(breakers.len(), 2);

    let messages = sample(publish_message(), 200);
    let schedules: BTreeSet<bool> = messages.iter().map(|m| m.schedule.is_some()).collect();
    assert_eq!(schedules.len(), 2);
}

// ---- round trips ----------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1024))]

    /// Decoding an encoded frame gives the frame back, with nothing left over, and encoding the
    /// decoded frame gives the same bytes: the encoding is a bijection on valid frames.
    #[test]
    fn every_frame_decodes_to_itself_and_reencodes_identically(frame in any_frame()) {
        let wire = encode(&frame);
        let mut reader = reader();
        reader.feed(Bytes::from(wire.clone()));
        let decoded = reader.next_frame().unwrap();
        prop_assert_eq!(decoded.as_ref(), Some(&frame));
        prop_assert_eq!(reader.next_frame().unwrap(), None);
        prop_assert_eq!(reader.buffered_len(), 0);
        prop_assert_eq!(encode(&decoded.unwrap()), wire);
    }

    /// The header written by the encoder states the body's true length, the frame's kind and
    /// no flags.
    #[test]
    fn encoded_header_describes_the_body(frame in any_frame()) {
        let wire = encode(&frame);
        let header = decode_header(&wire, FRAME_SIZE_MAX_DEFAULT).unwrap().unwrap();
        prop_assert_eq!(header.kind, frame.kind());
        prop_assert_eq!(header.frame_len(), wire.len());
        prop_assert_eq!(wire[5], 0);
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// However a stream of frames (with or without the preface) is cut into chunks, draining the
    /// reader after each chunk yields exactly the frames sent, in order, and leaves nothing
    /// buffered.
    #[test]
    fn any_chunking_yields_the_same_frames_in_order(
        frames in prop::collection::vec(any_frame(), 0..6),
        preface in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..10),
    ) {
        let mut wire = Vec::new();
        if preface {
            wire.extend_from_slice(&PREFACE);
        }
        for frame in &frames {
            wire.extend(encode(frame));
        }
        let wire = Bytes::from(wire);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.push(0);
        cuts.push(wire.len());
        cuts.sort_unstable();

        let mut reader = if preface {
            FrameReader::expecting_preface(FRAME_SIZE_MAX_DEFAULT)
        } else {
            reader()
        };
        let mut decoded = Vec::new();
        for pair in cuts.windows(2) {
            decoded.extend(feed_and_drain(&mut reader, wire.slice(pair[0]..pair[1])).unwrap());
        }
        prop_assert_eq!(decoded, frames);
        prop_assert_eq!(reader.buffered_len(), 0);
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// The extreme chunking, one byte per feed, also yields every frame in order: each frame
    /// (and the preface) is assembled across many chunks.
    #[test]
    fn byte_at_a_time_yields_the_same_frames_in_order(
        frames in prop::collection::vec(any_frame(), 0..4),
    ) {
        let mut wire = PREFACE.to_vec();
        for frame in &frames {
            wire.extend(encode(frame));
        }
        let mut reader = FrameReader::expecting_preface(FRAME_SIZE_MAX_DEFAULT);
        let mut decoded = Vec::new();
        for &byte in &wire {
            decoded.extend(feed_and_drain(&mut reader, Bytes::copy_from_slice(&[byte])).unwrap());
        }
        prop_assert_eq!(decoded, frames);
        prop_assert_eq!(reader.buffered_len(), 0);
    }

    /// Feeding more bytes without draining in between (a paused reader) loses nothing: the
    /// frames come out in order once the caller drains.
    #[test]
    fn feeding_without_draining_keeps_every_frame(
        frames in prop::collection::vec(any_frame(), 0..6),
        cuts in prop::collection::vec(any::<Index>(), 0..6),
    ) {
        let wire: Vec<u8> = frames.iter().flat_map(encode).collect();
        let wire = Bytes::from(wire);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.push(0);
        cuts.push(wire.len());
        cuts.sort_unstable();

        let mut reader = reader();
        for pair in cuts.windows(2) {
            reader.feed(wire.slice(pair[0]..pair[1]));
        }
        let decoded = feed_and_drain(&mut reader, Bytes::new()).unwrap();
        prop_assert_eq!(decoded, frames);
        prop_assert_eq!(reader.buffered_len(), 0);
    }
}

// ---- zero copy --------------------------------------------------------------------------------

fn shares(buffer: &Bytes, slice: &Bytes) -> bool {
    let start = buffer.as_ptr() as usize;
    let end = start + buffer.len();
    let at = slice.as_ptr() as usize;
    start <= at && at + slice.len() <= end
}

/// A frame carrying message bytes: `Publish`, `Deliver` or `DlqInspectOk`.
fn payload_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        publish().prop_map(Frame::Publish),
        deliver().prop_map(Frame::Deliver),
        dlq_inspect_ok().prop_map(Frame::DlqInspectOk),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Payloads and header values of frames that arrive whole inside one chunk are slices of
    /// that chunk, not copies. (Empty values carry no pointer worth checking.)
    #[test]
    fn whole_frame_payloads_share_the_fed_buffer(
        frames in prop::collection::vec(payload_frame(), 1..4),
    ) {
        let chunk = Bytes::from(frames.iter().flat_map(encode).collect::<Vec<u8>>());
        let decoded = feed_and_drain(&mut reader(), chunk.clone()).unwrap();
        prop_assert_eq!(&decoded, &frames);
        for frame in &decoded {
            for slice in payload_slices(frame).iter().filter(|s| !s.is_empty()) {
                prop_assert!(shares(&chunk, slice), "payload of {:?} was copied", frame.kind());
            }
        }
    }
}

/// The zero-copy check above is not vacuous: a publish with a 100-byte payload decodes to a
/// payload pointing into the received chunk, at the payload's offset in the frame.
#[test]
fn publish_payload_points_into_the_received_chunk() {
    let frame = Frame::Publish(Publish {
        destination: Destination::Queue("q".into()),
        mandatory: false,
        messages: vec![PublishMessage::new(Bytes::from(vec![7u8; 100]))],
    });
    let chunk = Bytes::from(encode(&frame));
    let decoded = decode_one(chunk.clone()).unwrap().unwrap();
    let Frame::Publish(publish) = decoded else {
        panic!("decoded {decoded:?}");
    };
    let payload = &publish.messages[0].payload;
    assert_eq!(payload.len(), 100);
    assert!(shares(&chunk, payload));
}

// ---- framing rules ------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    /// A body length above the limit is refused as soon as the six header bytes are in, without
    /// waiting for (or buffering) any of the body.
    #[test]
    fn oversized_body_refused_from_the_header_alone(
        kind in prop::sample::select(FrameKind::ALL),
        len in FRAME_SIZE_MAX_DEFAULT + 1..=u32::MAX,
    ) {
        let mut reader = reader();
        reader.feed(Bytes::from(header(len, kind as u8, 0)));
        prop_assert_eq!(
            reader.next_frame(),
            Err(DecodeError::FrameTooLarge { len, max: FRAME_SIZE_MAX_DEFAULT })
        );
    }

    /// Bytes after a complete body, inside the frame's declared length, are refused: a body
    /// has exactly one valid length.
    #[test]
    fn trailing_bytes_after_a_valid_body_are_refused(
        frame in any_frame(),
        extra in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let wire = encode(&frame);
        let mut body = wire[FRAME_HEADER_LEN..].to_vec();
        body.extend_from_slice(&extra);
        prop_assert_eq!(
            decode_one(frame_with_body(frame.kind(), &body)),
            Err(DecodeError::TrailingBytes { kind: frame.kind(), count: extra.len() })
        );
    }

    /// A complete frame whose body is a strict prefix of a valid body is malformed: the body
    /// decoder runs out of bytes, it never waits for more.
    #[test]
    fn truncated_body_in_a_complete_frame_is_malformed(
        frame in any_frame(),
        cut in any::<Index>(),
    ) {
        let wire = encode(&frame);
        let body = &wire[FRAME_HEADER_LEN..];
        prop_assume!(!body.is_empty()); // Heartbeat's body is empty.
        let short = &body[..cut.index(body.len())];
        let result = decode_one(frame_with_body(frame.kind(), short));
        prop_assert!(
            matches!(result, Err(DecodeError::MalformedBody { kind, .. }) if kind == frame.kind()),
            "got {:?}", result
        );
    }

    /// A connection whose first bytes differ from the preface is refused on the first wrong
    /// byte, even when the right bytes before it arrived one at a time.
    #[test]
    fn bad_preface_refused_at_the_first_wrong_byte(
        position in 0..PREFACE.len(),
        wrong in any::<u8>(),
    ) {
        prop_assume!(wrong != PREFACE[position]);
        let mut reader = FrameReader::expecting_preface(FRAME_SIZE_MAX_DEFAULT);
        for &byte in &PREFACE[..position] {
            let fed = feed_and_drain(&mut reader, Bytes::copy_from_slice(&[byte]));
            prop_assert_eq!(fed, Ok(vec![]));
        }
        prop_assert_eq!(
            feed_and_drain(&mut reader, Bytes::copy_from_slice(&[wrong])),
            Err(DecodeError::BadPreface)
        );
    }
}

/// The length check also happens when the header itself arrives split across chunks.
#[test]
fn oversized_body_refused_when_the_header_arrives_in_pieces() {
    let mut reader = reader();
    let header = header(u32::MAX, FrameKind::Publish as u8, 0);
    assert_eq!(feed_and_drain(&mut reader, Bytes::copy_from_slice(&header[..3])), Ok(vec![]));
    assert_eq!(
        feed_and_drain(&mut reader, Bytes::copy_from_slice(&header[3..])),
        Err(DecodeError::FrameTooLarge { len: u32::MAX, max: FRAME_SIZE_MAX_DEFAULT })
    );
}

/// A body exactly at the limit is legal: the reader waits for it instead of refusing it.
#[test]
fn body_at_the_limit_is_awaited() {
    let mut reader = reader();
    let header = header(FRAME_SIZE_MAX_DEFAULT, FrameKind::Publish as u8, 0);
    assert_eq!(feed_and_drain(&mut reader, Bytes::from(header)), Ok(vec![]));
}

/// A reader configured above the protocol's ceiling still refuses bodies above the ceiling.
#[test]
fn frame_limit_is_capped_at_the_ceiling() {
    let mut reader = FrameReader::new(u32::MAX);
    reader.feed(Bytes::from(header(FRAME_SIZE_CEILING + 1, FrameKind::Publish as u8, 0)));
    assert_eq!(
        reader.next_frame(),
        Err(DecodeError::FrameTooLarge { len: FRAME_SIZE_CEILING + 1, max: FRAME_SIZE_CEILING })
    );
}

/// Every kind byte that v1 does not define is refused from the header, before the body.
#[test]
fn unknown_kinds_refused_from_the_header() {
    let known: BTreeSet<u8> = FrameKind::ALL.iter().map(|&k| k as u8).collect();
    for kind in (0..=u8::MAX).filter(|k| !known.contains(k)) {
        let mut reader = reader();
        reader.feed(Bytes::from(header(100, kind, 0)));
        assert_eq!(reader.next_frame(), Err(DecodeError::UnknownKind(kind)));
    }
}

/// No flag is defined in v1: any non-zero flags byte on any kind is refused from the header.
#[test]
fn nonzero_flags_refused_from_the_header() {
    for &kind in FrameKind::ALL {
        for flags in 1..=u8::MAX {
            let mut reader = reader();
            reader.feed(Bytes::from(header(100, kind as u8, flags)));
            assert_eq!(reader.next_frame(), Err(DecodeError::UnknownFlags { kind, flags }));
        }
    }
}

/// Trailing bytes are counted from the exact end of the body, including for `Heartbeat`,
/// whose body is empty.
#[test]
fn heartbeat_with_a_body_is_refused() {
    assert_eq!(
        decode_one(frame_with_body(FrameKind::Heartbeat, &[0])),
        Err(DecodeError::TrailingBytes { kind: FrameKind::Heartbeat, count: 1 })
    );
}

/// Encoding appends: a frame encoded after others leaves them intact, so many frames can share
/// one output buffer.
#[test]
fn encode_appends_to_existing_output() {
    let mut out = BytesMut::from(&b"existing"[..]);
    Frame::Heartbeat(Heartbeat).encode(&mut out, FRAME_SIZE_MAX_DEFAULT).unwrap();
    assert_eq!(&out[..8], b"existing");
    assert_eq!(&out[8..], &header(0, FrameKind::Heartbeat as u8, 0)[..]);
}
