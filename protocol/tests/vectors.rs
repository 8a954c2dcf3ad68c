//! Checks `docs/PROTOCOL.md` against the reference implementation.
//!
//! The spec is normative, so it must never drift from the code, and it is the only place the
//! test vectors are written: each `vector:` block must decode to exactly the value its
//! `value:` block writes out and re-encode to the same bytes, each `annotated:` block must
//! hold its vector's bytes, every frame kind must have a vector, and the frame-kind,
//! error-code and limits tables must list exactly what the crate defines.
//!
//! When a vector and its value disagree, the failure message prints the value the bytes decode
//! to and the bytes the value encodes to, ready to paste into the document (a new vector is
//! written by encoding its frame with the crate and pasting both blocks).

mod spec;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use chute_protocol::*;
use spec::notation::{layout, normalize, render};
use spec::{annotated_bytes, blocks, spec, table, vector_bytes, Block, Label, SPEC_PATH};

/// The width the spec's value blocks are laid out to.
const VALUE_WIDTH: usize = 96;

/// One test vector of the spec and what the spec says about it.
struct Vector<'a> {
    block: &'a Block,
    bytes: Vec<u8>,
    /// The `value:` block of the same name.
    value: Option<&'a Block>,
}

/// The spec's labelled blocks, by label and name.
struct Spec {
    blocks: Vec<Block>,
}

impl Spec {
    fn read() -> Spec {
        Spec { blocks: blocks(&spec()).unwrap_or_else(|e| panic!("{SPEC_PATH}: {e}")) }
    }

    fn labelled(&self, label: Label) -> impl Iterator<Item = &Block> {
        self.blocks.iter().filter(move |block| block.label == label)
    }

    fn find(&self, label: Label, name: &str) -> Option<&Block> {
        self.labelled(label).find(|block| block.name == name)
    }

    /// Every vector, in document order.
    fn vectors(&self) -> Vec<Vector<'_>> {
        self.labelled(Label::Vector)
            .map(|block| Vector {
                block,
                bytes: vector_bytes(block).unwrap_or_else(|e| panic!("{SPEC_PATH}: {e}")),
                value: self.find(Label::Value, &block.name),
            })
            .collect()
    }
}

/// The preface is the one vector that is not a frame, and has no value.
const PREFACE_VECTOR: &str = "preface";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect::<Vec<_>>().join(" ")
}

/// The `vector:` block for a frame, formatted as the spec writes it: the frame header on its
/// own line, then the body sixteen bytes a line.
fn vector_block(name: &str, frame: &Frame) -> String {
    let mut bytes = BytesMut::new();
    frame.encode(&mut bytes, FRAME_SIZE_CEILING).expect("a decoded vector encodes");
    let (head, body) = bytes.split_at(FRAME_HEADER_LEN);
    let mut text = format!("```text\nvector: {name}\n{}\n", hex(head));
    for line in body.chunks(16) {
        writeln!(text, "{}", hex(line)).unwrap();
    }
    text + "```\n"
}

/// The `value:` block for a frame, laid out as the spec writes it.
fn value_block(name: &str, frame: &Frame) -> String {
    format!("```text\nvalue: {name}\n{}\n```\n", layout(&render(frame), VALUE_WIDTH))
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

/// The one frame a vector holds.
fn decode_vector(vector: &Vector) -> Result<Frame, String> {
    let line = vector.block.line;
    match decode_all(&vector.bytes, FrameReader::new(FRAME_SIZE_CEILING)) {
        Ok(mut frames) if frames.len() == 1 => Ok(frames.remove(0)),
        other => Err(format!("line {line}: {:?} is not one frame: {other:?}", vector.block.name)),
    }
}

// ---- the checks --------------------------------------------------------------------------

/// Vectors and values pair up: every vector but the preface has a value of the same name,
/// every value and every annotated block has a vector, and the preface is there.
#[test]
fn spec_vectors_values_and_annotations_pair_up() {
    let spec = Spec::read();
    let mut problems = String::new();
    for block in &spec.blocks {
        let (line, name) = (block.line, &block.name);
        let paired = match block.label {
            Label::Vector => name == PREFACE_VECTOR || spec.find(Label::Value, name).is_some(),
            Label::Value | Label::Annotated => spec.find(Label::Vector, name).is_some(),
        };
        if !paired {
            writeln!(problems, "line {line}: {:?} {name:?} has no partner", block.label).unwrap();
        }
    }
    if spec.find(Label::Value, PREFACE_VECTOR).is_some() {
        writeln!(problems, "the preface is not a frame and has no value").unwrap();
    }
    match spec.find(Label::Vector, PREFACE_VECTOR).map(vector_bytes) {
        Some(Ok(bytes)) if bytes == PREFACE => {}
        other => writeln!(problems, "the preface vector is {other:?}, not PREFACE").unwrap(),
    }
    assert!(problems.is_empty(), "{SPEC_PATH}:\n{problems}");
}

/// Each vector decodes to exactly the value written before it, and that value encodes to
/// exactly the vector's bytes: neither the document nor the code may drift.
#[test]
fn spec_vectors_decode_to_their_values_and_encode_back() {
    let spec = Spec::read();
    let mut problems = String::new();
    for vector in spec.vectors() {
        let (Some(value), false) = (vector.value, vector.block.name == PREFACE_VECTOR) else {
            continue; // checked by spec_vectors_values_and_annotations_pair_up
        };
        let name = &vector.block.name;
        let frame = match decode_vector(&vector) {
            Ok(frame) => frame,
            Err(problem) => {
                writeln!(problems, "{problem}").unwrap();
                continue;
            }
        };
        if normalize(&value.lines.join("\n")) != normalize(&render(&frame)) {
            let paste = value_block(name, &frame);
            let line = value.line;
            writeln!(problems, "line {line}: the bytes of {name:?} decode to\n{paste}").unwrap();
        }
        let mut encoded = BytesMut::new();
        frame.encode(&mut encoded, FRAME_SIZE_CEILING).expect("a decoded vector encodes");
        if encoded[..] != vector.bytes[..] {
            let paste = vector_block(name, &frame);
            let line = vector.block.line;
            writeln!(problems, "line {line}: {name:?} encodes back to\n{paste}").unwrap();
        }
    }
    assert!(problems.is_empty(), "{SPEC_PATH}:\n{problems}");
}

/// An annotated block holds exactly its vector's bytes, so the explanation describes the
/// bytes that are checked.
#[test]
fn spec_annotated_bytes_are_their_vectors() {
    let spec = Spec::read();
    for annotated in spec.labelled(Label::Annotated) {
        let name = &annotated.name;
        let vector = spec.find(Label::Vector, name).expect("checked by the pairing test");
        let want = vector_bytes(vector).unwrap_or_else(|e| panic!("{SPEC_PATH}: {e}"));
        let got = annotated_bytes(annotated);
        assert!(
            got == want,
            "{SPEC_PATH}: line {}: annotated {name:?} holds\n{}\nbut the vector is\n{}",
            annotated.line,
            hex(&got),
            hex(&want)
        );
    }
}

/// Every frame kind has at least one vector, so a client can check its decoder and encoder
/// of every body against the spec.
#[test]
fn every_frame_kind_has_a_vector() {
    let spec = Spec::read();
    let mut covered = BTreeMap::new();
    for vector in spec.vectors().iter().filter(|v| v.block.name != PREFACE_VECTOR) {
        if let Ok(frame) = decode_vector(vector) {
            covered.entry(frame.kind()).or_insert(vector.block.name.clone());
        }
    }
    let missing: Vec<_> =
        FrameKind::ALL.iter().filter(|kind| !covered.contains_key(kind)).collect();
    assert!(missing.is_empty(), "{SPEC_PATH}: no vector for {missing:?}");
}

/// The vectors exercise every variant of every enum a body holds, each where a client first
/// meets it, so that every branch of a client's decoder is checked against the spec.
#[test]
fn spec_vectors_exercise_every_enum_variant() {
    let spec = Spec::read();
    let values: String =
        spec.labelled(Label::Value).map(|block| normalize(&block.lines.join("\n"))).collect();
    let variants: &[(&str, &[&str])] = &[
        ("credentials", &["Anonymous", "Password{", "Token{"]),
        ("destination", &["Queue(", "Topic("]),
        ("schedule", &["Some(DelayMs(", "Some(AtUnixMs("]),
        ("durability", &["Always", "Interval{", "None"]),
        ("overflow", &["RejectPublish", "DropHead"]),
        ("expiry", &["DeadLetter", "Drop"]),
        ("policy", &["Pause", "Reject"]),
        ("publish_rate", &["None", "Some(RateLimit{"]),
        ("breaker", &["None", "Some(BreakerPolicy{", "Closed", "Open{", "HalfOpen"]),
        ("reason", &["MaxAttempts", "Rejected", "Expired", "Overflow"]),
        ("outcome", &["Nack", "Timeout", "Disconnect", "Reject"]),
    ];
    let mut missing = Vec::new();
    for (field, names) in variants {
        for name in *names {
            let written = format!("{field}:{name}");
            // A bare variant name must not be the prefix of a longer one ("Drop" of "DropHead").
            let found = values.match_indices(&written).any(|(at, _)| {
                let next = values[at + written.len()..].chars().next();
                !(name.ends_with(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric))
            });
            if !found {
                missing.push(written);
            }
        }
    }
    assert!(missing.is_empty(), "{SPEC_PATH}: no value holds {missing:?}");
}

/// The comparison of values ignores layout and nothing else: laying a value out anew keeps it
/// the same value, while a changed space inside a string, or a changed digit, does not.
#[test]
fn value_notation_ignores_only_layout() {
    let spec = Spec::read();
    for vector in spec.vectors().iter().filter(|v| v.block.name != PREFACE_VECTOR) {
        let one_line = render(&decode_vector(vector).unwrap());
        for width in [0, 40, VALUE_WIDTH, usize::MAX] {
            assert_eq!(normalize(&layout(&one_line, width)), normalize(&one_line));
        }
    }
    let value = r#"Close { code: normal-close(0), message: "a \"b\" c" }"#;
    assert_eq!(normalize(value), r#"Close{code:normal-close(0),message:"a \"b\" c"}"#);
    assert_eq!(normalize("[\n    1,\n    2,\n]"), normalize("[1, 2]"));
    assert_ne!(normalize(r#"Close { message: "a  b" }"#), normalize(r#"Close { message: "a b" }"#));
    assert_ne!(normalize("Done { count: 300 }"), normalize("Done { count: 301 }"));
}

/// A server sees the preface and then frames in one stream, in chunks of any size: feeding
/// every vector after the preface one byte at a time yields the same frames.
#[test]
fn spec_vectors_decode_as_one_stream_fed_byte_by_byte() {
    let spec = Spec::read();
    let mut stream = PREFACE.to_vec();
    let mut want = Vec::new();
    for vector in spec.vectors().iter().filter(|v| v.block.name != PREFACE_VECTOR) {
        let frame = decode_vector(vector).unwrap_or_else(|e| panic!("{SPEC_PATH}: {e}"));
        stream.extend_from_slice(&vector.bytes);
        want.push((vector.block.name.clone(), frame));
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
        ("AUTH_MECHANISMS_MAX", AUTH_MECHANISMS_MAX as u64),
        ("AUTH_DATA_LEN_MAX", AUTH_DATA_LEN_MAX as u64),
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
