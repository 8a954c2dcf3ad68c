//! Checks `docs/PROTOCOL.md` against the reference implementation.
//!
//! The spec is normative, so it must never drift from the code: every hex test vector in it
//! must decode to the frame built here and re-encode to the same bytes, and the frame-kind,
//! error-code and limits tables must list exactly what the crate defines.
//!
//! A vector is a fenced block whose first line is `vector: <name>`, followed by lines of
//! whitespace-separated hex bytes. When a vector is missing or differs, the failure message
//! prints the block as the crate encodes it, ready to paste into the document.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use chute_protocol::*;

const SPEC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");

// ---- the expected values ---------------------------------------------------------------

enum Expected {
    /// The eight preface bytes, which are not a frame.
    Preface,
    Frame(Box<Frame>),
}

fn b(bytes: &'static [u8]) -> Bytes {
    Bytes::from_static(bytes)
}

fn s(text: &str) -> String {
    text.to_owned()
}

fn content_type_json() -> Header {
    Header { name: s("content-type"), value: b(b"application/json") }
}

/// Every vector the spec must contain, by name.
fn expected_vectors() -> Vec<(&'static str, Expected)> {
    fn frame(frame: Frame) -> Expected {
        Expected::Frame(Box::new(frame))
    }
    vec![
        ("preface", Expected::Preface),
        (
            "hello",
            frame(Frame::Hello(Hello {
                version_min: 1,
                version_max: 1,
                client_name: s("demo"),
                credentials: Credentials::Password { username: s("guest"), password: s("guest") },
                heartbeat_ms: 10_000,
            })),
        ),
        (
            "hello-ok",
            frame(Frame::HelloOk(HelloOk {
                version: 1,
                server_name: s("chuted"),
                connection_id: 7,
                heartbeat_ms: 10_000,
                limits: ServerLimits {
                    frame_size_max: FRAME_SIZE_MAX_DEFAULT,
                    payload_size_max: 1 << 20,
                    publish_batch_max: 1024,
                    unconfirmed_max: 8192,
                    credit_max: 1000,
                    subscriptions_max: 256,
                },
            })),
        ),
        ("heartbeat", frame(Frame::Heartbeat(Heartbeat))),
        (
            "going-away",
            frame(Frame::GoingAway(GoingAway { reconnect_after_ms: 5000, message: s("draining") })),
        ),
        ("close", frame(Frame::Close(Close { code: ErrorCode::NORMAL_CLOSE, message: s("bye") }))),
        (
            "error",
            frame(Frame::Error(ErrorFrame {
                request_id: 5,
                code: ErrorCode::RESOURCE_LIMIT,
                retriable: true,
                retry_after_ms: 2000,
                message: s("too many queues"),
            })),
        ),
        (
            "error-connection",
            frame(Frame::Error(ErrorFrame {
                request_id: 0,
                code: ErrorCode::UNSUPPORTED_VERSION,
                retriable: false,
                retry_after_ms: 0,
                message: s("server speaks 1..=1"),
            })),
        ),
        ("done", frame(Frame::Done(Done { request_id: 9, count: 300 }))),
        (
            "queue-declare",
            frame(Frame::QueueDeclare(QueueDeclare {
                request_id: 1,
                name: s("jobs"),
                options: QueueOptions::default(),
                passive: false,
            })),
        ),
        (
            "publish",
            frame(Frame::Publish(Publish {
                destination: Destination::Queue(s("jobs")),
                mandatory: false,
                messages: vec![
                    PublishMessage {
                        id: Some(s("order-17")),
                        headers: vec![content_type_json()],
                        payload: b(br#"{"n":17}"#),
                        schedule: Some(Schedule::DelayMs(5000)),
                        ttl_ms: Some(60_000),
                        priority: 5,
                        group: Some(s("customer-4")),
                    },
                    PublishMessage::new(b(b"hi")),
                ],
            })),
        ),
        (
            "publish-topic",
            frame(Frame::Publish(Publish {
                destination: Destination::Topic(s("orders.eu.created")),
                mandatory: true,
                messages: vec![PublishMessage {
                    schedule: Some(Schedule::AtUnixMs(1_767_225_600_000)),
                    ..PublishMessage::new(b(b"x"))
                }],
            })),
        ),
        (
            "confirm",
            frame(Frame::Confirm(Confirm {
                ranges: vec![Range { first: 1, count: 2 }, Range { first: 5, count: 3 }],
            })),
        ),
        (
            "publish-rejected",
            frame(Frame::PublishRejected(PublishRejected {
                failures: vec![
                    PublishFailure {
                        seq: 3,
                        code: ErrorCode::QUEUE_FULL,
                        retry_after_ms: 0,
                        message: s("queue full"),
                    },
                    PublishFailure {
                        seq: 4,
                        code: ErrorCode::RATE_LIMITED,
                        retry_after_ms: 250,
                        message: s("rate limited"),
                    },
                ],
            })),
        ),
        (
            "subscribe",
            frame(Frame::Subscribe(Subscribe {
                request_id: 2,
                subscription: 1,
                queue: s("jobs"),
                credit: 100,
                lease_ms: Some(60_000),
                rate: Some(RateLimit {
                    per_second: 200,
                    burst: 50,
                    policy: RateLimitPolicy::Reject,
                }),
            })),
        ),
        ("credit", frame(Frame::Credit(Credit { subscription: 1, credit: 50 }))),
        (
            "deliver",
            frame(Frame::Deliver(Deliver {
                subscription: 1,
                deliveries: vec![
                    Delivery {
                        tag: 1,
                        attempt: 1,
                        redelivered: false,
                        id: Some(s("order-17")),
                        headers: vec![content_type_json()],
                        payload: b(br#"{"n":17}"#),
                        published_unix_ms: 1_767_225_600_000,
                        priority: 5,
                        group: Some(s("customer-4")),
                        topic: None,
                    },
                    Delivery {
                        tag: 2,
                        attempt: 3,
                        redelivered: true,
                        id: None,
                        headers: vec![],
                        payload: b(b"hi"),
                        published_unix_ms: 1_767_225_600_123,
                        priority: 0,
                        group: None,
                        topic: Some(s("orders.eu.created")),
                    },
                ],
            })),
        ),
        (
            "ack",
            frame(Frame::Ack(Ack {
                request_id: 0,
                ranges: vec![Range { first: 1, count: 2 }, Range::one(7)],
            })),
        ),
        (
            "nack",
            frame(Frame::Nack(Nack {
                request_id: 4,
                ranges: vec![Range::one(3)],
                delay_ms: Some(30_000),
                reason: Some(s("database unavailable")),
            })),
        ),
        (
            "reject",
            frame(Frame::Reject(Reject {
                request_id: 0,
                ranges: vec![Range::one(4)],
                reason: s("invalid JSON at byte 0"),
            })),
        ),
        (
            "touch",
            frame(Frame::Touch(Touch {
                request_id: 6,
                ranges: vec![Range { first: 5, count: 2 }],
                lease_ms: Some(120_000),
            })),
        ),
        (
            "dlq-redrive",
            frame(Frame::DlqRedrive(DlqRedrive {
                request_id: 8,
                queue: s("jobs.dlq"),
                dead_ids: vec![12, 13, 300],
            })),
        ),
    ]
}

/// The bytes a vector must hold, as the crate produces them.
fn encode(expected: &Expected) -> Vec<u8> {
    match expected {
        Expected::Preface => PREFACE.to_vec(),
        Expected::Frame(frame) => {
            let mut out = BytesMut::new();
            frame
                .encode(&mut out, FRAME_SIZE_CEILING)
                .expect("every vector fits the frame ceiling");
            out.to_vec()
        }
    }
}

/// The fenced block for a vector, formatted as the spec writes it: the frame header on its
/// own line, then the body sixteen bytes a line.
fn block(name: &str, bytes: &[u8]) -> String {
    let hex =
        |chunk: &[u8]| chunk.iter().map(|byte| format!("{byte:02x}")).collect::<Vec<_>>().join(" ");
    let mut text = format!("```text\nvector: {name}\n");
    let (head, body) = if name == "preface" {
        (bytes, &[][..])
    } else {
        bytes.split_at(FRAME_HEADER_LEN.min(bytes.len()))
    };
    writeln!(text, "{}", hex(head)).unwrap();
    for line in body.chunks(16) {
        writeln!(text, "{}", hex(line)).unwrap();
    }
    text.push_str("```\n");
    text
}

// ---- reading the spec --------------------------------------------------------------------

fn spec() -> String {
    std::fs::read_to_string(SPEC_PATH).unwrap_or_else(|e| panic!("cannot read {SPEC_PATH}: {e}"))
}

struct Vector {
    name: String,
    bytes: Vec<u8>,
    /// 1-based line of the `vector:` line, for error messages.
    line: usize,
}

/// Every vector block in the document. Fails on a malformed block, a `vector:` line that does
/// not open a block, and a name used twice.
fn parse_vectors(doc: &str) -> Result<Vec<Vector>, String> {
    let mut vectors: Vec<Vector> = Vec::new();
    let mut current: Option<Vector> = None;
    let mut in_fence = false;
    let mut fence_opened_at = 0;
    for (index, raw) in doc.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.starts_with("```") {
            if in_fence {
                if let Some(vector) = current.take() {
                    if vector.bytes.is_empty() {
                        return Err(format!("line {}: vector has no bytes", vector.line));
                    }
                    vectors.push(vector);
                }
            } else {
                fence_opened_at = number;
            }
            in_fence = !in_fence;
            continue;
        }
        if let Some(name) = line.strip_prefix("vector:") {
            if !in_fence || number != fence_opened_at + 1 {
                return Err(format!(
                    "line {number}: `vector:` must be the first line of a fenced block"
                ));
            }
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("line {number}: vector without a name"));
            }
            if vectors.iter().any(|v| v.name == name) {
                return Err(format!("line {number}: vector {name:?} appears twice"));
            }
            current = Some(Vector { name: name.to_owned(), bytes: Vec::new(), line: number });
            continue;
        }
        if let Some(vector) = current.as_mut() {
            for token in line.split_whitespace() {
                let byte = (token.len() == 2)
                    .then(|| u8::from_str_radix(token, 16).ok())
                    .flatten()
                    .ok_or_else(|| format!("line {number}: {token:?} is not a hex byte"))?;
                vector.bytes.push(byte);
            }
        }
    }
    if in_fence {
        return Err(format!("line {fence_opened_at}: fenced block never closed"));
    }
    Ok(vectors)
}

/// The rows of the markdown table that follows the line `<!-- check: {name} -->`, header and
/// separator rows dropped, cells trimmed and stripped of backticks.
fn table(doc: &str, name: &str) -> Vec<Vec<String>> {
    let marker = format!("<!-- check: {name} -->");
    let mut lines = doc.lines().skip_while(|line| line.trim() != marker);
    assert!(lines.next().is_some(), "the spec has no `{marker}` table");
    lines
        .skip_while(|line| !line.trim_start().starts_with('|'))
        .take_while(|line| line.trim_start().starts_with('|'))
        .skip(2)
        .map(|line| {
            let line = line.trim().trim_start_matches('|').trim_end_matches('|');
            line.split('|').map(|cell| cell.trim().replace('`', "")).collect()
        })
        .collect()
}

fn decode_all(bytes: &[u8], mut reader: FrameReader) -> Result<Vec<Frame>, DecodeError> {
    reader.feed(Bytes::copy_from_slice(bytes));
    let mut frames = Vec::new();
    while let Some(frame) = reader.next_frame()? {
        frames.push(frame);
    }
    assert_eq!(reader.buffered_len(), 0, "bytes left over after the last frame");
    Ok(frames)
}

// ---- the checks --------------------------------------------------------------------------

/// The spec holds exactly the vectors listed above: none missing (a test vector silently
/// deleted from the document would otherwise stop being checked), none unknown.
#[test]
fn spec_holds_every_named_vector_and_no_other() {
    let found = parse_vectors(&spec()).unwrap_or_else(|e| panic!("{SPEC_PATH}: {e}"));
    let expected = expected_vectors();
    let mut problems = String::new();
    for (name, value) in &expected {
        if !found.iter().any(|v| v.name == *name) {
            let paste = block(name, &encode(value));
            writeln!(problems, "missing vector {name:?}; as encoded:\n{paste}").unwrap();
        }
    }
    for vector in &found {
        if !expected.iter().any(|(name, _)| *name == vector.name) {
            let line = vector.line;
            writeln!(problems, "line {line}: unknown vector {:?}", vector.name).unwrap();
        }
    }
    assert!(problems.is_empty(), "{SPEC_PATH}:\n{problems}");
    assert!(found.len() >= 12, "the spec promises at least 12 vectors");
}

/// Each vector decodes to exactly the frame this test builds, and that frame encodes to
/// exactly the vector's bytes: neither the document nor the code may drift.
#[test]
fn spec_vectors_decode_to_their_frames_and_encode_back() {
    let found = parse_vectors(&spec()).unwrap_or_else(|e| panic!("{SPEC_PATH}: {e}"));
    let found: BTreeMap<_, _> = found.iter().map(|v| (v.name.as_str(), v)).collect();
    let mut problems = String::new();
    for (name, expected) in expected_vectors() {
        let Some(vector) = found.get(name) else {
            continue; // reported by spec_holds_every_named_vector_and_no_other
        };
        let line = vector.line;
        let encoded = encode(&expected);
        if vector.bytes != encoded {
            let paste = block(name, &encoded);
            writeln!(problems, "line {line}: {name:?} differs; as encoded:\n{paste}").unwrap();
        }
        match expected {
            Expected::Preface => {
                if vector.bytes != PREFACE {
                    writeln!(problems, "line {line}: preface is not PREFACE").unwrap();
                }
                // A server reader accepts it and then waits for the first frame.
                let reader = FrameReader::expecting_preface(FRAME_SIZE_CEILING);
                match decode_all(&vector.bytes, reader) {
                    Ok(frames) if frames.is_empty() => {}
                    other => writeln!(problems, "line {line}: preface read as {other:?}").unwrap(),
                }
            }
            Expected::Frame(frame) => {
                let reader = FrameReader::new(FRAME_SIZE_CEILING);
                match decode_all(&vector.bytes, reader) {
                    Ok(frames) if frames == [*frame.clone()] => {}
                    other => writeln!(
                        problems,
                        "line {line}: {name:?} decodes to {other:?}, expected {frame:?}"
                    )
                    .unwrap(),
                }
            }
        }
    }
    assert!(problems.is_empty(), "{SPEC_PATH}:\n{problems}");
}

/// A server sees the preface and then frames in one stream, in chunks of any size: feeding
/// every vector after the preface one byte at a time yields the same frames.
#[test]
fn spec_vectors_decode_as_one_stream_fed_byte_by_byte() {
    let found = parse_vectors(&spec()).unwrap_or_else(|e| panic!("{SPEC_PATH}: {e}"));
    let mut stream = PREFACE.to_vec();
    let mut want = Vec::new();
    for (name, expected) in expected_vectors() {
        if let (Expected::Frame(frame), Some(vector)) =
            (expected, found.iter().find(|v| v.name == name))
        {
            stream.extend_from_slice(&vector.bytes);
            want.push((name, *frame));
        }
    }
    let mut reader = FrameReader::expecting_preface(FRAME_SIZE_CEILING);
    let mut got = Vec::new();
    for byte in stream {
        reader.feed(Bytes::copy_from_slice(&[byte]));
        while let Some(frame) = reader.next_frame().expect("spec vectors decode") {
            got.push(frame);
        }
    }
    for (index, (name, frame)) in want.iter().enumerate() {
        assert_eq!(got.get(index), Some(frame), "vector {name:?} in the stream");
    }
    assert_eq!(got.len(), want.len(), "more frames than vectors");
    assert_eq!(reader.buffered_len(), 0);
}

/// The frame-kind table lists every kind with its number and direction, and nothing else.
#[test]
fn spec_frame_kind_table_matches_the_crate() {
    let rows = table(&spec(), "frame-kinds");
    let direction = |kind: FrameKind| match kind.direction() {
        Direction::ClientToServer => "client → server",
        Direction::ServerToClient => "server → client",
        Direction::Both => "both",
    };
    let want: Vec<Vec<String>> = FrameKind::ALL
        .iter()
        .map(|&kind| {
            let number = format!("0x{:02x}", kind as u8);
            vec![number, format!("{kind:?}"), direction(kind).to_owned()]
        })
        .collect();
    let got: Vec<Vec<String>> = rows.iter().map(|row| row[..3].to_vec()).collect();
    assert_eq!(got, want);
}

/// The error-code table lists every code with its number, label and retriable flag, in
/// numeric order, and nothing else.
#[test]
fn spec_error_code_table_matches_the_crate() {
    let rows = table(&spec(), "error-codes");
    let mut codes = ErrorCode::ALL.to_vec();
    codes.sort();
    let want: Vec<Vec<String>> = codes
        .iter()
        .map(|code| {
            let retriable = if code.is_retriable() { "yes" } else { "no" };
            let label = code.label().expect("a defined code has a label");
            vec![code.0.to_string(), label.to_owned(), retriable.to_owned()]
        })
        .collect();
    let got: Vec<Vec<String>> = rows.iter().map(|row| row[..3].to_vec()).collect();
    assert_eq!(got, want);
}

/// The limits table gives every constant its value in the crate.
#[test]
fn spec_limits_table_matches_the_crate() {
    let rows = table(&spec(), "limits");
    let want: Vec<(&str, u64)> = vec![
        ("PROTOCOL_VERSION_MIN", PROTOCOL_VERSION_MIN.into()),
        ("PROTOCOL_VERSION_MAX", PROTOCOL_VERSION_MAX.into()),
        ("FRAME_HEADER_LEN", FRAME_HEADER_LEN as u64),
        ("FRAME_SIZE_CEILING", FRAME_SIZE_CEILING.into()),
        ("FRAME_SIZE_MAX_DEFAULT", FRAME_SIZE_MAX_DEFAULT.into()),
        ("PUBLISH_BATCH_MAX", PUBLISH_BATCH_MAX as u64),
        ("DELIVER_BATCH_MAX", DELIVER_BATCH_MAX as u64),
        ("RANGES_MAX", RANGES_MAX as u64),
        ("PUBLISH_FAILURES_MAX", PUBLISH_FAILURES_MAX as u64),
        ("HEADERS_MAX", HEADERS_MAX as u64),
        ("ATTEMPT_HISTORY_MAX", ATTEMPT_HISTORY_MAX as u64),
        ("LIST_PAGE_MAX", LIST_PAGE_MAX as u64),
        ("REDRIVE_IDS_MAX", REDRIVE_IDS_MAX as u64),
        ("NAME_LEN_MAX", NAME_LEN_MAX as u64),
        ("MESSAGE_ID_LEN_MAX", MESSAGE_ID_LEN_MAX as u64),
        ("GROUP_KEY_LEN_MAX", GROUP_KEY_LEN_MAX as u64),
        ("REASON_LEN_MAX", REASON_LEN_MAX as u64),
        ("PRIORITY_MAX", PRIORITY_MAX.into()),
    ];
    let got: Vec<(String, u64)> = rows
        .iter()
        .map(|row| {
            // The value cell may carry a note after the number ("16777216 (16 MiB)").
            let number = row[1].split_whitespace().next().unwrap_or_default();
            let value = number
                .parse()
                .unwrap_or_else(|_| panic!("{}: {:?} is not a number", row[0], row[1]));
            (row[0].clone(), value)
        })
        .collect();
    let want: Vec<(String, u64)> = want.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
    assert_eq!(got, want);
}
