//! Property tests of the decoder on hostile input: whatever a peer sends, the reader never
//! panics, and the memory it allocates is bounded by what the peer actually sent plus a
//! constant that follows from the sequence limits.

mod strategies;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use chute_protocol::*;
use proptest::prelude::*;
use proptest::sample::Index;
use strategies::*;

// ---- allocation accounting ----------------------------------------------------------------

/// Counts the bytes allocated by each thread. Tests in this file run on parallel threads, so the
/// tallies are thread-local: a measurement sees only the decoding done on its own thread.
struct CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

thread_local! {
    // `const` initialisers and `Copy` contents: no lazy initialisation and no destructor, so
    // the allocator can use them without allocating or recursing.
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with` fails only while a thread is being torn down; its frees are not measured.
    let _ = CURRENT.try_with(|current| {
        let now = current.get() + delta;
        current.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Counted as a move: old and new blocks both live for a moment. This overstates an
            // in-place growth, which errs on the safe side for a bound.
            count(new_size as isize);
            count(-(layout.size() as isize));
        }
        new
    }
}

/// The most bytes live at once on this thread while `f` runs, beyond those live before it
/// (what `f` returns is still live at the end, so it is included).
fn peak_allocated_by<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = CURRENT.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, (peak - base).max(0) as usize)
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// The structure a batch frame of `BATCH` elements, each with `HEADERS_MAX` headers, costs at
/// its peak: the decoder first reads every element with borrowed payloads (`Borrowed`, headers
/// as `Header<&[u8]>`), then converts them one by one into `Shared` (headers as
/// `Header<Bytes>`), so at the end of the conversion both element vectors and every converted
/// header vector are live, plus the borrowed headers of the element being converted.
const fn batch_overhead<Borrowed, Shared>(batch: usize) -> usize {
    batch * (size_of::<Borrowed>() + size_of::<Shared>() + HEADERS_MAX * size_of::<Header<Bytes>>())
        + HEADERS_MAX * size_of::<Header<&[u8]>>()
}

/// What decoding one frame may allocate besides the bytes it copies from the input, derived
/// from the sequence limits. A `Publish` of `PUBLISH_BATCH_MAX` messages or a `Deliver` of
/// `DELIVER_BATCH_MAX` deliveries with `HEADERS_MAX` empty headers each is the most structure
/// a body can describe: about 131 000 headers from a 300 KB body, 8.13 MiB on a 64-bit target
/// (`largest_bodies_stay_within_the_bound` measures them). Every other sequence is bounded by
/// a smaller product (`LIST_PAGE_MAX * ATTEMPT_HISTORY_MAX` attempt records is 2.6 MB). The
/// 64 KiB margin covers the reader's own small allocations.
const DECODE_OVERHEAD_MAX: usize = max(
    batch_overhead::<PublishMessage<&[u8]>, PublishMessage<Bytes>>(PUBLISH_BATCH_MAX),
    batch_overhead::<Delivery<&[u8]>, Delivery<Bytes>>(DELIVER_BATCH_MAX),
) + 64 * 1024;

/// The most that decoding `len` input bytes may allocate, beyond the input itself.
fn allocation_bound(len: usize, one_chunk: bool) -> usize {
    // Decoded strings copy input bytes, so together they cost at most `len`. (When the input
    // arrives as one chunk, only an incomplete last frame is copied to the side buffer, and it
    // is never decoded, so it shares this allowance.)
    let copies = len;
    // Frames split across chunks are assembled in the side buffer. `BytesMut` growth can take
    // its capacity to twice the frame it holds (see
    // `assembled_frames_hold_no_more_than_their_own_bytes`); the bound allows for that as the
    // reader behaves today.
    let side_buffer = if one_chunk { 0 } else { 2 * len };
    copies + side_buffer + DECODE_OVERHEAD_MAX
}

/// Feeds `input` in chunks of `chunk_len` bytes and drains the reader after each, dropping
/// every frame once decoded (as a connection would after handling it). Returns how many frames
/// decoded and the error that stopped decoding, if any.
fn decode_stream(input: &Bytes, chunk_len: usize, preface: bool) -> (usize, Option<DecodeError>) {
    let mut reader = if preface {
        FrameReader::expecting_preface(FRAME_SIZE_MAX_DEFAULT)
    } else {
        FrameReader::new(FRAME_SIZE_MAX_DEFAULT)
    };
    let mut frames = 0;
    let mut at = 0;
    while at < input.len() {
        let end = (at + chunk_len.max(1)).min(input.len());
        reader.feed(input.slice(at..end));
        at = end;
        loop {
            match reader.next_frame() {
                Ok(Some(_)) => frames += 1,
                Ok(None) => break,
                Err(error) => return (frames, Some(error)),
            }
        }
    }
    (frames, None)
}

/// Asserts that decoding `input` (fed in chunks of `chunk_len`) stays within
/// `allocation_bound`, and returns the peak for further checks.
fn assert_bounded(input: &Bytes, chunk_len: usize, preface: bool) -> usize {
    let (_, peak) = peak_allocated_by(|| decode_stream(input, chunk_len, preface));
    let bound = allocation_bound(input.len(), chunk_len >= input.len());
    assert!(
        peak <= bound,
        "decoding {} bytes in chunks of {chunk_len} allocated {peak} bytes (bound {bound})",
        input.len()
    );
    peak
}

/// A frame header with a valid kind, no flags and the given length.
fn header(kind: FrameKind, body_len: u32) -> Vec<u8> {
    let mut out = body_len.to_be_bytes().to_vec();
    out.extend([kind as u8, 0]);
    out
}

fn frame_with_body(kind: FrameKind, body: &[u8]) -> Bytes {
    let mut out = header(kind, body.len() as u32);
    out.extend_from_slice(body);
    Bytes::from(out)
}

// ---- input strategies ------------------------------------------------------------------------

/// Random bytes, optionally behind a valid preface so that the frame decoder is reached on a
/// server-side reader too.
fn random_stream() -> impl Strategy<Value = (Bytes, bool)> {
    (prop::collection::vec(any::<u8>(), 0..4096), any::<bool>()).prop_map(|(bytes, preface)| {
        let mut input = if preface { PREFACE.to_vec() } else { Vec::new() };
        input.extend(bytes);
        (Bytes::from(input), preface)
    })
}

/// A valid header of any kind whose body is random bytes of the declared length: random bytes
/// alone would almost never pass the header checks, so this is what exercises the body
/// decoders. Short bodies are favoured: they are the ones a small frame may accept.
fn random_body() -> impl Strategy<Value = (FrameKind, Bytes)> {
    (
        prop::sample::select(FrameKind::ALL),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..16),
            prop::collection::vec(any::<u8>(), 0..512),
        ],
    )
        .prop_map(|(kind, body)| (kind, frame_with_body(kind, &body)))
}

/// A valid frame with some of its body bytes overwritten: mostly-valid bodies reach deeper into
/// the decoders than random ones (nested options, enums and sequences).
fn mutated_frame() -> impl Strategy<Value = (FrameKind, Bytes)> {
    (any_frame(), prop::collection::vec((any::<Index>(), any::<u8>()), 1..4)).prop_map(
        |(frame, edits)| {
            let mut wire = encode(&frame);
            let body_len = wire.len() - FRAME_HEADER_LEN;
            if body_len > 0 {
                for (at, byte) in edits {
                    wire[FRAME_HEADER_LEN + at.index(body_len)] = byte;
                }
            }
            (frame.kind(), Bytes::from(wire))
        },
    )
}

// ---- never panics --------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(2048))]

    /// Random bytes, with or without the preface, whole or in random chunks, never make the
    /// reader panic: every outcome is frames, a wait for more bytes, or a `DecodeError`.
    #[test]
    fn random_bytes_never_panic(
        (input, preface) in random_stream(),
        chunk_len in 1..600usize,
    ) {
        decode_stream(&input, input.len(), preface);
        decode_stream(&input, chunk_len, preface);
    }

    /// A valid header followed by a random body decodes or fails with a body error; it never
    /// panics, and the header is never blamed.
    #[test]
    fn random_body_behind_a_valid_header_fails_only_as_a_body(
        (kind, input) in random_body(),
    ) {
        match decode_stream(&input, input.len(), false) {
            (1, None) => {}
            (0, Some(DecodeError::MalformedBody { kind: k, .. }))
            | (0, Some(DecodeError::SequenceTooLong { kind: k, .. }))
            | (0, Some(DecodeError::TrailingBytes { kind: k, .. })) => prop_assert_eq!(k, kind),
            other => prop_assert!(false, "unexpected outcome {:?}", other),
        }
    }

    /// Whatever body the decoder accepts, random or mutated, describes a frame the encoder can
    /// write and the decoder reads back unchanged: acceptance never yields a value that cannot
    /// be sent on.
    #[test]
    fn accepted_bodies_reencode_to_the_same_frame(
        (kind, input) in prop_oneof![random_body(), mutated_frame()],
    ) {
        let mut reader = FrameReader::new(FRAME_SIZE_MAX_DEFAULT);
        reader.feed(input);
        if let Ok(Some(frame)) = reader.next_frame() {
            prop_assert_eq!(frame.kind(), kind);
            let mut again = FrameReader::new(FRAME_SIZE_MAX_DEFAULT);
            again.feed(Bytes::from(encode(&frame)));
            prop_assert_eq!(again.next_frame(), Ok(Some(frame)));
        }
    }

    /// Mutated valid frames behind a preface, fed whole or in small chunks, never panic.
    #[test]
    fn mutated_frames_never_panic((_, input) in mutated_frame(), chunk_len in 1..64usize) {
        let mut stream = PREFACE.to_vec();
        stream.extend_from_slice(&input);
        let stream = Bytes::from(stream);
        decode_stream(&stream, stream.len(), true);
        decode_stream(&stream, chunk_len, true);
    }
}

// ---- bounded allocation ---------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// Decoding any input of N bytes, random, behind valid headers or mutated from valid
    /// frames, allocates at most N bytes plus the constant overhead when it arrives as one
    /// chunk, and 3 N plus the constant when it arrives in pieces (`allocation_bound`). The
    /// cases run one after another on this test's thread, so its tally sees only them.
    #[test]
    fn arbitrary_input_allocates_at_most_its_length_plus_a_constant(
        (input, preface) in prop_oneof![
            random_stream(),
            random_body().prop_map(|(_, input)| (input, false)),
            mutated_frame().prop_map(|(_, input)| (input, false)),
        ],
        chunk_len in 1..600usize,
    ) {
        assert_bounded(&input, input.len(), preface);
        assert_bounded(&input, chunk_len, preface);
    }
}

/// A header claiming a 4 MiB `Publish` body followed by a few bytes costs about what was sent,
/// not what was claimed: the reader does not reserve the announced length up front.
#[test]
fn large_announced_body_costs_only_what_was_sent() {
    let mut input = header(FrameKind::Publish, FRAME_SIZE_MAX_DEFAULT);
    input.extend_from_slice(&[0, 1, b'q', 0, 3]);
    let input = Bytes::from(input);
    let peak = assert_bounded(&input, input.len(), false);
    assert!(peak < 1024, "a stalled 4 MiB claim allocated {peak} bytes");

    // The same claim trickled in: the buffer grows with what arrives.
    let mut input = header(FrameKind::Publish, FRAME_SIZE_MAX_DEFAULT);
    input.resize(64 * 1024, 0);
    let input = Bytes::from(input);
    let peak = assert_bounded(&input, 100, false);
    // The side buffer grows by doubling; while it moves, the old block and the new are both
    // live, and neither is larger than what arrived (the input itself is counted too).
    assert!(peak <= 3 * input.len(), "64 KiB of a 4 MiB claim allocated {peak} bytes");
}

/// A sequence length prefix above its limit is refused before anything is allocated for it,
/// here `u32::MAX` messages in a `Publish`.
#[test]
fn huge_sequence_length_prefix_is_refused_without_allocating() {
    // destination Queue("q"), mandatory false, then the message count as a varint.
    let mut body = vec![0x00, 0x01, b'q', 0x00];
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    body.extend_from_slice(&[0; 8]);
    let input = frame_with_body(FrameKind::Publish, &body);
    let ((frames, error), peak) = peak_allocated_by(|| decode_stream(&input, input.len(), false));
    assert_eq!(frames, 0);
    assert!(
        matches!(
            error,
            Some(DecodeError::SequenceTooLong { kind: FrameKind::Publish, field: "messages", .. })
        ),
        "got {error:?}"
    );
    assert!(peak < 1024, "refusing the count allocated {peak} bytes");
}

/// The LEB128 varint postcard writes for `value`.
fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

/// One bounded sequence of v1, located in a minimal body of its frame kind.
struct Sequence {
    /// `Type.field`, for failure messages.
    path: &'static str,
    kind: FrameKind,
    /// The body bytes before the sequence's count.
    before: Vec<u8>,
    limit: usize,
    /// The name of the limit's constant, which the decode error must give.
    limit_name: &'static str,
    /// The body bytes after the sequence when it is empty.
    after: Vec<u8>,
}

impl Sequence {
    /// The field name the decode error must give: the last part of the path.
    fn field(&self) -> &'static str {
        self.path.rsplit('.').next().unwrap()
    }
}

/// A limit and the name of its constant.
macro_rules! named {
    ($limit:ident) => {
        ($limit, stringify!($limit))
    };
}

fn sequence(
    path: &'static str,
    kind: FrameKind,
    before: &[u8],
    (limit, limit_name): (usize, &'static str),
    after: &[u8],
) -> Sequence {
    Sequence { path, kind, before: before.to_vec(), limit, limit_name, after: after.to_vec() }
}

/// Every bounded sequence field of v1.
#[rustfmt::skip] // a table reads better with one row per line
fn bounded_sequences() -> Vec<Sequence> {
    use FrameKind as K;
    // A `QueueStatsOk` with no consumers and no bindings ends with their two counts.
    let stats = encode(&queue_stats_ok(0));
    let stats = &stats[FRAME_HEADER_LEN..stats.len() - 2];
    let with_bindings = [stats, &[0]].concat();
    // Queue("q"), not mandatory.
    let publish = [0, 1, b'q', 0];
    // ... one message without an id.
    let message = [0, 1, b'q', 0, 1, 0];
    // Subscription 1, one delivery: tag 0, attempt 0, not redelivered, no id.
    let delivery = [1, 1, 0, 0, 0, 0];
    // A dead letter summary up to its history: dead_id 0, no message id, source queue "",
    // reason 0, dead and published times 0, payload_len 0.
    let summary = [0, 0, 0, 0, 0, 0, 0];
    let listed = [&[1, 1][..], &summary].concat();
    let inspected = [&[1][..], &summary].concat();
    let inspected_headers = [&inspected[..], &[0]].concat();
    // Columns: field, frame kind, body before the count, limit, body after an empty sequence.
    vec![
        sequence("QueueListOk.queues", K::QueueListOk, &[1], named!(LIST_PAGE_MAX), &[0]), // more
        sequence("QueueStats.consumers", K::QueueStatsOk, stats, named!(LIST_PAGE_MAX), &[0]), // bindings
        sequence("QueueStats.bindings", K::QueueStatsOk, &with_bindings, named!(LIST_PAGE_MAX), &[]),
        sequence("Publish.messages", K::Publish, &publish, named!(PUBLISH_BATCH_MAX), &[]),
        // after: empty payload, no schedule, no ttl, priority 0, no group
        sequence("PublishMessage.headers", K::Publish, &message, named!(HEADERS_MAX), &[0; 5]),
        sequence("Confirm.ranges", K::Confirm, &[], named!(RANGES_MAX), &[]),
        sequence("PublishRejected.failures", K::PublishRejected, &[], named!(PUBLISH_FAILURES_MAX), &[]),
        sequence("Deliver.deliveries", K::Deliver, &[1], named!(DELIVER_BATCH_MAX), &[]),
        // after: empty payload, published 0, priority 0, no group, no topic
        sequence("Delivery.headers", K::Deliver, &delivery, named!(HEADERS_MAX), &[0; 5]),
        sequence("Ack.ranges", K::Ack, &[1], named!(RANGES_MAX), &[]),
        sequence("Nack.ranges", K::Nack, &[1], named!(RANGES_MAX), &[0, 0]), // no delay, no reason
        sequence("Reject.ranges", K::Reject, &[1], named!(RANGES_MAX), &[0]), // reason ""
        sequence("Touch.ranges", K::Touch, &[1], named!(RANGES_MAX), &[0]), // no lease
        sequence("DlqListOk.entries", K::DlqListOk, &[1], named!(LIST_PAGE_MAX), &[0]), // more
        sequence("DeadLetterSummary.history", K::DlqListOk, &listed, named!(ATTEMPT_HISTORY_MAX), &[0]),
        // after: no headers, empty payload
        sequence("DeadLetter.summary.history", K::DlqInspectOk, &inspected, named!(ATTEMPT_HISTORY_MAX), &[0, 0]),
        // after: empty payload
        sequence("DeadLetter.headers", K::DlqInspectOk, &inspected_headers, named!(HEADERS_MAX), &[0]),
        sequence("DlqRedrive.dead_ids", K::DlqRedrive, &[1, 1, b'q'], named!(REDRIVE_IDS_MAX), &[]),
    ]
}

/// The table of bounded sequences is right: each located count, set to 0, gives a body that
/// decodes. (The refusal test below would pass vacuously on a misplaced count.)
#[test]
fn bounded_sequence_table_locates_each_count() {
    for s in bounded_sequences() {
        let input = frame_with_body(s.kind, &[&s.before[..], &[0], &s.after].concat());
        assert_eq!(
            decode_stream(&input, input.len(), false),
            (1, None),
            "{}: the count is not where the table says",
            s.path
        );
    }
}

/// The error that refuses `count` elements in the sequence `s`.
fn too_long(s: &Sequence, count: u64) -> DecodeError {
    DecodeError::SequenceTooLong {
        kind: s.kind,
        field: s.field(),
        count,
        max: s.limit,
        limit: s.limit_name,
    }
}

/// Every bounded sequence refuses a count above its limit on the count alone, before reading
/// an element or allocating for them, and says so: the error names the field, the declared
/// count and the limit. That holds whether or not the body is long enough to hold that many
/// elements (postcard itself hints the count to a decoder only when it is).
#[test]
fn every_sequence_count_above_its_limit_is_refused_before_allocating() {
    for s in bounded_sequences() {
        for count in [s.limit as u64 + 1, 2 * s.limit as u64, u64::from(u32::MAX)] {
            for tail_len in [0, 64 * 1024] {
                let body = [s.before.clone(), varint(count), vec![0xff; tail_len]].concat();
                let input = frame_with_body(s.kind, &body);
                let ((_, error), peak) =
                    peak_allocated_by(|| decode_stream(&input, input.len(), false));
                let path = s.path;
                assert_eq!(error, Some(too_long(&s, count)), "{path} of {count}, tail {tail_len}");
                assert!(peak < 1024, "{path} of {count}: refusing it allocated {peak} bytes");
            }
        }
    }
}

/// The refusal's text names the frame, the field, the declared count and the limit with the
/// name of its constant, so that a peer's log says which rule its frame broke.
#[test]
fn over_limit_errors_name_the_field_and_the_limit() {
    for s in bounded_sequences() {
        let count = s.limit as u64 + 1;
        let text = too_long(&s, count).to_string();
        for part in [
            format!("malformed {:?} body", s.kind),
            format!("{}: {count} elements", s.field()),
            format!("the limit is {} ({})", s.limit, s.limit_name),
        ] {
            assert!(text.contains(&part), "{}: {text:?} does not say {part:?}", s.path);
        }
    }
    let sequences = bounded_sequences();
    let publish = sequences.iter().find(|s| s.path == "Publish.messages").unwrap();
    assert_eq!(
        too_long(publish, 4097).to_string(),
        "malformed Publish body: messages: 4097 elements, the limit is 4096 (PUBLISH_BATCH_MAX)"
    );
    assert_eq!(too_long(publish, 4097).error_code(), ErrorCode::MALFORMED_FRAME);
}

/// A count at its limit is not refused as too long: a body that then ends early is malformed
/// for running out of bytes, not for its count.
#[test]
fn a_count_at_its_limit_in_a_short_body_is_a_truncated_body() {
    for s in bounded_sequences() {
        let body = [s.before.clone(), varint(s.limit as u64)].concat();
        let input = frame_with_body(s.kind, &body);
        let (_, error) = decode_stream(&input, input.len(), false);
        assert!(
            matches!(error, Some(DecodeError::MalformedBody { kind, .. }) if kind == s.kind),
            "{}: got {error:?}",
            s.path
        );
    }
}

/// A count within its limit that the body is too short to hold costs what the body could hold,
/// not what the count claims: here a 6-byte `Publish` body claiming `PUBLISH_BATCH_MAX`
/// messages.
#[test]
fn a_count_the_body_cannot_hold_reserves_only_what_it_could() {
    let body = [&[0, 1, b'q', 0][..], &varint(PUBLISH_BATCH_MAX as u64)].concat();
    let input = frame_with_body(FrameKind::Publish, &body);
    let ((_, error), peak) = peak_allocated_by(|| decode_stream(&input, input.len(), false));
    assert!(matches!(error, Some(DecodeError::MalformedBody { .. })), "got {error:?}");
    let claimed = PUBLISH_BATCH_MAX * size_of::<PublishMessage<&[u8]>>();
    assert!(peak < 4096, "a {}-byte body claiming {claimed} bytes allocated {peak}", body.len());
}

/// A string or byte string claiming `u32::MAX` bytes is refused when the bytes are missing,
/// before anything is allocated for it.
#[test]
fn huge_string_lengths_are_refused_without_allocating() {
    const HUGE: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let cases: Vec<(&str, FrameKind, Vec<u8>)> = vec![
        // request_id 1, then the name
        ("QueuePurge.name", FrameKind::QueuePurge, vec![1]),
        // Queue("q"), mandatory false, one message, no id, no headers, then the payload
        ("PublishMessage.payload", FrameKind::Publish, vec![0, 1, b'q', 0, 1, 0, 0]),
        // ... one header, then its name
        ("Header.name", FrameKind::Publish, vec![0, 1, b'q', 0, 1, 0, 1]),
        // ... a header named "h", then its value
        ("Header.value", FrameKind::Publish, vec![0, 1, b'q', 0, 1, 0, 1, 1, b'h']),
    ];
    for (field, kind, prefix) in cases {
        let body = [prefix, HUGE.to_vec(), vec![0; 64 * 1024]].concat();
        let input = frame_with_body(kind, &body);
        let ((_, error), peak) = peak_allocated_by(|| decode_stream(&input, input.len(), false));
        assert!(
            matches!(error, Some(DecodeError::MalformedBody { kind: k, .. }) if k == kind),
            "{field}: got {error:?}"
        );
        assert!(peak < 1024, "{field}: refusing the length allocated {peak} bytes");
    }
}

// ---- the largest bodies the limits allow ----------------------------------------------------

fn empty_header() -> Header {
    Header { name: String::new(), value: Bytes::new() }
}

/// `PUBLISH_BATCH_MAX` messages of `HEADERS_MAX` empty headers: the most decoded structure per
/// body byte a `Publish` can describe.
fn largest_publish() -> Frame {
    let message = PublishMessage {
        headers: vec![empty_header(); HEADERS_MAX],
        ..PublishMessage::new(Bytes::new())
    };
    Frame::Publish(Publish {
        destination: Destination::Queue(String::new()),
        mandatory: false,
        messages: vec![message; PUBLISH_BATCH_MAX],
    })
}

/// The same for `Deliver`.
fn largest_deliver() -> Frame {
    let delivery = Delivery {
        tag: 0,
        attempt: 0,
        redelivered: false,
        id: None,
        headers: vec![empty_header(); HEADERS_MAX],
        payload: Bytes::new(),
        published_unix_ms: 0,
        priority: 0,
        group: None,
        topic: None,
    };
    Frame::Deliver(Deliver { subscription: 0, deliveries: vec![delivery; DELIVER_BATCH_MAX] })
}

/// `LIST_PAGE_MAX` dead letters with `ATTEMPT_HISTORY_MAX` records each.
fn largest_dlq_list_ok() -> Frame {
    let record = AttemptRecord { at_unix_ms: 0, outcome: AttemptOutcome::Nack, reason: None };
    let entry = DeadLetterSummary {
        dead_id: 0,
        message_id: None,
        source_queue: String::new(),
        reason: DeadReason::Expired,
        dead_unix_ms: 0,
        published_unix_ms: 0,
        payload_len: 0,
        history: vec![record; ATTEMPT_HISTORY_MAX],
    };
    Frame::DlqListOk(DlqListOk { request_id: 0, entries: vec![entry; LIST_PAGE_MAX], more: false })
}

/// `LIST_PAGE_MAX` consumers and bindings in one queue's stats.
fn largest_queue_stats_ok() -> Frame {
    queue_stats_ok(LIST_PAGE_MAX)
}

/// A queue's stats with `count` consumers and as many bindings.
fn queue_stats_ok(count: usize) -> Frame {
    let consumer = ConsumerInfo {
        connection_id: 0,
        subscription: 0,
        credit: 0,
        in_flight: 0,
        breaker: BreakerState::Closed,
    };
    Frame::QueueStatsOk(QueueStatsOk {
        request_id: 0,
        stats: QueueStats {
            name: String::new(),
            options: QueueOptions::default(),
            ready: 0,
            delayed: 0,
            in_flight: 0,
            group_blocked: 0,
            bytes: 0,
            dead_letters: 0,
            counters: QueueCounters::default(),
            consumers: vec![consumer; count],
            bindings: vec![String::new(); count],
        },
    })
}

/// `RANGES_MAX` ranges and `PUBLISH_FAILURES_MAX` failures.
fn largest_flat_sequences() -> Vec<Frame> {
    let failure = PublishFailure {
        seq: 0,
        code: ErrorCode::INTERNAL,
        retry_after_ms: 0,
        message: String::new(),
    };
    vec![
        Frame::Confirm(Confirm { ranges: vec![Range::one(0); RANGES_MAX] }),
        Frame::PublishRejected(PublishRejected { failures: vec![failure; PUBLISH_FAILURES_MAX] }),
        Frame::DlqRedrive(DlqRedrive {
            request_id: 0,
            queue: String::new(),
            dead_ids: vec![0; REDRIVE_IDS_MAX],
        }),
    ]
}

/// The frames that decode to the most memory per body byte stay within the constant bound,
/// whether they arrive whole or trickle in (and are assembled in the reader's side buffer).
/// This is what justifies `DECODE_OVERHEAD_MAX`.
#[test]
fn largest_bodies_stay_within_the_bound() {
    let mut frames =
        vec![largest_publish(), largest_deliver(), largest_dlq_list_ok(), largest_queue_stats_ok()];
    frames.extend(largest_flat_sequences());
    for frame in frames {
        let input = Bytes::from(encode(&frame));
        for chunk_len in [input.len(), 4096] {
            let (outcome, peak) = peak_allocated_by(|| decode_stream(&input, chunk_len, false));
            assert_eq!(outcome, (1, None), "{:?} must decode", frame.kind());
            println!(
                "{:?}: {} body bytes, chunks of {chunk_len}: peak {peak} bytes",
                frame.kind(),
                input.len()
            );
            assert!(
                peak <= allocation_bound(input.len(), chunk_len == input.len()),
                "{:?} of {} bytes in chunks of {chunk_len} allocated {peak} bytes",
                frame.kind(),
                input.len()
            );
        }
    }
}

/// One past each limit is refused, so the worst cases above really are the worst a peer can
/// send.
#[test]
fn one_past_each_sequence_limit_is_refused() {
    let mut too_many_headers = largest_publish();
    if let Frame::Publish(publish) = &mut too_many_headers {
        publish.messages.truncate(1);
        publish.messages[0].headers.push(empty_header());
    }
    let mut too_many_messages = largest_publish();
    if let Frame::Publish(publish) = &mut too_many_messages {
        for message in &mut publish.messages {
            message.headers.clear();
        }
        publish.messages.push(PublishMessage::new(Bytes::new()));
    }
    let mut too_long_history = largest_dlq_list_ok();
    if let Frame::DlqListOk(list) = &mut too_long_history {
        list.entries.truncate(1);
        let record = list.entries[0].history[0].clone();
        list.entries[0].history.push(record);
    }
    let cases = [
        (too_many_headers, "headers", HEADERS_MAX),
        (too_many_messages, "messages", PUBLISH_BATCH_MAX),
        (too_long_history, "history", ATTEMPT_HISTORY_MAX),
    ];
    for (frame, field, max) in cases {
        let input = Bytes::from(encode(&frame));
        let (_, error) = decode_stream(&input, input.len(), false);
        assert!(
            matches!(
                error,
                Some(DecodeError::SequenceTooLong { kind, field: f, count, max: m, .. })
                    if kind == frame.kind() && f == field && count == max as u64 + 1 && m == max
            ),
            "{:?}: got {error:?}",
            frame.kind()
        );
    }
}

// ---- assembly memory ------------------------------------------------------------------------

/// A frame assembled from many chunks lives in an allocation no larger than itself, and the
/// next frame starts in a fresh one: otherwise a small payload the broker queues could pin the
/// spare tail of a large frame's buffer (as `BytesMut::reserve`'s doubling once did).
#[test]
fn assembled_frames_hold_no_more_than_their_own_bytes() {
    fn publish(payload_len: usize) -> Bytes {
        let frame = Frame::Publish(Publish {
            destination: Destination::Queue("q".into()),
            mandatory: false,
            messages: vec![PublishMessage::new(Bytes::from(vec![7; payload_len]))],
        });
        Bytes::from(encode(&frame))
    }
    fn assemble(reader: &mut FrameReader, wire: &Bytes, chunk_len: usize) -> Frame {
        let mut frames = Vec::new();
        for start in (0..wire.len()).step_by(chunk_len) {
            reader.feed(wire.slice(start..(start + chunk_len).min(wire.len())));
            while let Some(frame) = reader.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 1);
        frames.pop().unwrap()
    }
    let (large, small) = (publish(300_000), publish(10));
    let live = || CURRENT.with(Cell::get);
    let base = live();

    let mut reader = FrameReader::new(FRAME_SIZE_MAX_DEFAULT);
    let large_frame = assemble(&mut reader, &large, 4096);
    let held = (live() - base) as usize;
    assert!(held <= large.len() + 1024, "a {}-byte frame holds {held} bytes", large.len());

    let small_frame = assemble(&mut reader, &small, 3);
    drop(large_frame);
    drop(reader);
    let held = (live() - base) as usize;
    assert!(
        held <= small.len() + 1024,
        "a {}-byte frame holds {held} bytes once the large frame and the reader are gone",
        small.len()
    );
    drop(small_frame);
}
