//! Writes the seed corpus: `cargo run --example gen_seeds` from `fuzz/`.
//!
//! The seeds are committed (`corpus/<target>/seed-*`); rerun this after a wire-format change
//! and commit the result. Everything else the fuzzer writes to `corpus/` stays untracked.

use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use chute_protocol::*;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");

    // frame_decode: `[split, data...]`, data as a client sends it (preface first) or, without
    // a preface, as a server sends it.
    let frame_decode = [
        ("seed-hello", 0, cat(&[&PREFACE, &frames(&[hello()])])),
        ("seed-publish", 0, cat(&[&PREFACE, &frames(&[hello(), publish_batch()])])),
        ("seed-deliver", 7, frames(&[hello_ok(), deliver()])),
        ("seed-ack-ranges", 3, cat(&[&PREFACE, &frames(&[ack(), nack(), reject(), touch()])])),
        ("seed-truncated", 1, cat(&[&PREFACE, &truncated(frames(&[publish_batch()]))])),
        ("seed-oversized", 0, cat(&[&PREFACE, &oversized_header()])),
        ("seed-session", 5, cat(&[&PREFACE, &frames(&session())])),
        ("seed-server-frames", 2, frames(&server_frames())),
    ];
    for (name, split, data) in frame_decode {
        write(&dir.join("frame_decode"), name, &cat(&[&[split], &data]));
    }

    // broker_bytes: `[flags, split, time, data...]`; data follows a completed handshake on
    // connection 1 and, with flags & 1, arrives raw on connection 2.
    let broker_bytes = [
        // Two connections; the second gets a whole valid handshake, the first a second Hello.
        ("seed-hello", 0b0011, 0, 4, cat(&[&PREFACE, &frames(&[hello(), declare("q")])])),
        ("seed-publish", 0b0010, 0, 8, frames(&[declare("q"), publish_batch()])),
        ("seed-session", 0b0010, 9, 12, frames(&session())),
        ("seed-session-paused", 0b1100, 3, 16, frames(&session())),
        ("seed-deliver", 0b0010, 0, 10, frames(&[declare("q"), deliver()])),
        (
            "seed-ack-ranges",
            0b0010,
            0,
            14,
            frames(&[declare("q"), publish_batch(), subscribe(), ack(), nack()]),
        ),
        ("seed-truncated", 0b0010, 4, 6, truncated(frames(&[declare("q"), publish_batch()]))),
        ("seed-oversized", 0b0011, 0, 2, cat(&[&frames(&[declare("q")]), &oversized_header()])),
    ];
    for (name, flags, split, time, data) in broker_bytes {
        write(&dir.join("broker_bytes"), name, &cat(&[&[flags, split, time], &data]));
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
    println!("{}/{name}: {} bytes", dir.display(), bytes.len());
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn frames(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out, FRAME_SIZE_MAX_DEFAULT).unwrap();
    }
    out.to_vec()
}

/// All but the last few bytes: a frame cut off in its body.
fn truncated(mut wire: Vec<u8>) -> Vec<u8> {
    wire.truncate(wire.len() - 5);
    wire
}

/// A Publish header announcing a body over the default limit.
fn oversized_header() -> Vec<u8> {
    let mut header = (FRAME_SIZE_MAX_DEFAULT + 1).to_be_bytes().to_vec();
    header.extend_from_slice(&[FrameKind::Publish as u8, 0]);
    header
}

fn hello() -> Frame {
    Frame::Hello(Hello {
        version_min: PROTOCOL_VERSION_MIN,
        version_max: PROTOCOL_VERSION_MAX,
        client_name: "seed".into(),
        credentials: Credentials::Anonymous,
        heartbeat_ms: 1_000,
    })
}

fn hello_ok() -> Frame {
    Frame::HelloOk(HelloOk {
        version: 1,
        server_name: "chute".into(),
        connection_id: 1,
        heartbeat_ms: 5_000,
        limits: ServerLimits {
            frame_size_max: FRAME_SIZE_MAX_DEFAULT,
            payload_size_max: 1 << 20,
            publish_batch_max: 1024,
            unconfirmed_max: 16 * 1024,
            credit_max: 65_536,
            subscriptions_max: 1024,
        },
    })
}

fn declare(name: &str) -> Frame {
    Frame::QueueDeclare(QueueDeclare {
        request_id: 1,
        name: name.into(),
        options: QueueOptions {
            durability: Durability::None,
            messages_max: Some(100),
            ttl_ms: Some(60_000),
            dead_letter: (name != "dlq").then(|| "dlq".into()),
            attempts_max: Some(2),
            lease_ms: 1_000,
            dedup_window_ms: Some(10_000),
            breaker: Some(BreakerPolicy { failures_max: 2, open_ms: 500 }),
            ..QueueOptions::default()
        },
        passive: false,
    })
}

fn message(payload: &'static [u8]) -> PublishMessage {
    PublishMessage::new(Bytes::from_static(payload))
}

fn publish_batch() -> Frame {
    Frame::Publish(Publish {
        destination: Destination::Queue("q".into()),
        mandatory: false,
        messages: vec![
            message(b"one"),
            PublishMessage {
                id: Some("id-2".into()),
                headers: vec![Header {
                    name: "content-type".into(),
                    value: Bytes::from_static(b"text/plain"),
                }],
                priority: 9,
                ..message(b"two")
            },
            PublishMessage {
                group: Some("g".into()),
                schedule: Some(Schedule::DelayMs(250)),
                ttl_ms: Some(2_000),
                ..message(b"three")
            },
            PublishMessage {
                id: Some("id-2".into()),
                schedule: Some(Schedule::AtUnixMs(1_000)),
                ..message(b"")
            },
        ],
    })
}

fn deliver() -> Frame {
    Frame::Deliver(Deliver {
        subscription: 1,
        deliveries: vec![
            Delivery {
                tag: 1,
                attempt: 1,
                redelivered: false,
                id: Some("id-1".into()),
                headers: vec![Header { name: "h".into(), value: Bytes::from_static(b"v") }],
                payload: Bytes::from_static(b"payload"),
                published_unix_ms: 1_700_000_000_000,
                priority: 3,
                group: Some("g".into()),
                topic: Some("a.b".into()),
            },
            Delivery {
                tag: 2,
                attempt: 3,
                redelivered: true,
                id: None,
                headers: vec![],
                payload: Bytes::new(),
                published_unix_ms: 0,
                priority: 0,
                group: None,
                topic: None,
            },
        ],
    })
}

fn subscribe() -> Frame {
    Frame::Subscribe(Subscribe {
        request_id: 2,
        subscription: 1,
        queue: "q".into(),
        credit: 10,
        lease_ms: Some(500),
        rate: None,
    })
}

fn ranges() -> Vec<Range> {
    vec![Range { first: 1, count: 2 }, Range::one(4), Range { first: u64::MAX, count: 3 }]
}

fn ack() -> Frame {
    Frame::Ack(Ack { request_id: 3, ranges: ranges() })
}

fn nack() -> Frame {
    Frame::Nack(Nack {
        request_id: 0,
        ranges: vec![Range::one(3)],
        delay_ms: Some(100),
        reason: Some("busy".into()),
    })
}

fn reject() -> Frame {
    Frame::Reject(Reject { request_id: 4, ranges: vec![Range::one(2)], reason: "bad".into() })
}

fn touch() -> Frame {
    Frame::Touch(Touch {
        request_id: 5,
        ranges: vec![Range { first: 1, count: 5 }],
        lease_ms: Some(2_000),
    })
}

/// A client's whole life: queues, bindings, publishes to a queue and a topic, a subscription,
/// settlement of every kind, dead letters, listings, and a clean close.
fn session() -> Vec<Frame> {
    vec![
        declare("dlq"),
        declare("q"),
        Frame::Bind(Binding { request_id: 6, queue: "q".into(), pattern: "a.*.#".into() }),
        publish_batch(),
        Frame::Publish(Publish {
            destination: Destination::Topic("a.b.c".into()),
            mandatory: true,
            messages: vec![message(b"routed")],
        }),
        subscribe(),
        Frame::Credit(Credit { subscription: 1, credit: 5 }),
        ack(),
        nack(),
        reject(),
        touch(),
        Frame::Heartbeat(Heartbeat),
        Frame::QueueList(QueueList { request_id: 7, after: None, limit: 10 }),
        Frame::QueueStats(QueueStatsRequest { request_id: 8, name: "q".into() }),
        Frame::DlqList(DlqList { request_id: 9, queue: "dlq".into(), after: None, limit: 10 }),
        Frame::DlqInspect(DlqInspect { request_id: 10, queue: "dlq".into(), dead_id: 1 }),
        Frame::DlqRedrive(DlqRedrive { request_id: 11, queue: "dlq".into(), dead_ids: vec![] }),
        Frame::Unsubscribe(Unsubscribe { request_id: 12, subscription: 1 }),
        Frame::Unbind(Binding { request_id: 13, queue: "q".into(), pattern: "a.*.#".into() }),
        Frame::QueuePurge(QueuePurge { request_id: 14, name: "q".into() }),
        Frame::QueueDelete(QueueDelete {
            request_id: 15,
            name: "q".into(),
            if_empty: false,
            if_unused: false,
        }),
        Frame::Close(Close { code: ErrorCode::NORMAL_CLOSE, message: "bye".into() }),
    ]
}

/// Frames only a server sends, for the client-side reader.
fn server_frames() -> Vec<Frame> {
    vec![
        hello_ok(),
        Frame::Confirm(Confirm { ranges: ranges() }),
        Frame::PublishRejected(PublishRejected {
            failures: vec![PublishFailure {
                seq: 2,
                code: ErrorCode::NORMAL_CLOSE,
                retry_after_ms: 10,
                message: "no".into(),
            }],
        }),
        Frame::Done(Done { request_id: 1, count: 3 }),
        Frame::Error(ErrorFrame {
            request_id: 0,
            code: ErrorCode::NORMAL_CLOSE,
            retriable: true,
            retry_after_ms: 5,
            message: "err".into(),
        }),
        Frame::GoingAway(GoingAway { reconnect_after_ms: 100, message: "draining".into() }),
        deliver(),
        Frame::DlqInspectOk(DlqInspectOk {
            request_id: 2,
            entry: DeadLetter {
                summary: DeadLetterSummary {
                    dead_id: 1,
                    message_id: Some("id-1".into()),
                    source_queue: "q".into(),
                    reason: DeadReason::MaxAttempts,
                    dead_unix_ms: 2,
                    published_unix_ms: 1,
                    payload_len: 3,
                    history: vec![AttemptRecord {
                        at_unix_ms: 1,
                        outcome: AttemptOutcome::Nack,
                        reason: Some("busy".into()),
                    }],
                },
                headers: vec![],
                payload: Bytes::from_static(b"abc"),
            },
        }),
        Frame::SubscriptionCancelled(SubscriptionCancelled {
            subscription: 1,
            code: ErrorCode::NORMAL_CLOSE,
            message: "deleted".into(),
        }),
    ]
}
