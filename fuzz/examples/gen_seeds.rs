//! Writes the seed corpus: `cargo run --example gen_seeds` from `fuzz/`.
//!
//! `broker_ops` seeds are written in the layout `arbitrary` reads (see `broker_ops::Writer`),
//! so they follow the order of the fields and variants in `fuzz_targets/broker_ops.rs`.
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

    for (name, seed) in broker_ops::seeds() {
        write(&dir.join("broker_ops"), name, &seed);
    }
    for (name, seed) in log_recovery::seeds() {
        write(&dir.join("log_recovery"), name, &seed);
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

pub(crate) fn hello() -> Frame {
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

/// Sessions for `broker_ops`, byte for byte as `arbitrary` (1.x) reads its `Run`: integers
/// little-endian, a `bool` or `Option` tag as one byte (odd: true / some), an enum as a `u32`
/// whose `(value * variants) >> 32` is the variant's index, each element of a collection
/// preceded by a continue byte (odd) and the collection ended by an even one (or, for the last
/// field, by the end of the input).
mod broker_ops {
    /// `Op`'s variants, in declaration order.
    const CONNECT: u32 = 0;
    const DECLARE: u32 = 1;
    const DELETE: u32 = 2;
    const PURGE: u32 = 3;
    const BIND: u32 = 4;
    const PUBLISH: u32 = 6;
    const SUBSCRIBE: u32 = 7;
    const CREDIT: u32 = 8;
    const ACK: u32 = 10;
    const NACK: u32 = 11;
    const REJECT: u32 = 12;
    const TOUCH: u32 = 13;
    const CLOSE: u32 = 14;
    const DROP_TRANSPORT: u32 = 15;
    const ADVANCE: u32 = 16;
    const ADVANCE_LONG: u32 = 17;
    const REDRIVE: u32 = 18;
    const GARBAGE: u32 = 19;
    const CRASH: u32 = 20;
    const VARIANTS: u64 = 21;

    const Q0: u8 = 1;
    const DLQ: u8 = 0;

    /// A queue spec (see `QueueSpec`): durability, attempts, backoff, lease, ttl, limits,
    /// extras.
    type Spec = [u8; 7];
    const PLAIN: Spec = [0, 0, 0, 50, 0, 0, 0];
    /// Three specs and the setup byte.
    const HEAD_LEN: usize = 3 * 7 + 1;

    struct Writer(Vec<u8>);

    impl Writer {
        fn new(queues: [Spec; 3], setup: u8) -> Writer {
            Writer([queues.concat(), vec![setup]].concat())
        }

        fn op(&mut self, variant: u32, fields: &[u8]) -> &mut Writer {
            let value = ((u64::from(variant) << 32).div_ceil(VARIANTS)) as u32;
            assert_eq!((u64::from(value) * VARIANTS) >> 32, u64::from(variant));
            self.0.push(1);
            self.0.extend_from_slice(&value.to_le_bytes());
            self.0.extend_from_slice(fields);
            self
        }

        fn publish(
            &mut self,
            client: u8,
            topic: Option<u8>,
            queue: u8,
            messages: &[Vec<u8>],
        ) -> &mut Writer {
            let mut fields = vec![client];
            fields.extend(some_u8(topic));
            fields.extend([queue, 0]);
            for message in messages {
                fields.push(1);
                fields.extend_from_slice(message);
            }
            fields.push(0);
            self.op(PUBLISH, &fields)
        }

        fn advance(&mut self, ms: u16) -> &mut Writer {
            self.op(ADVANCE, &ms.to_le_bytes())
        }

        /// The input, its operations played `times` times over: libFuzzer starts its length
        /// limit at the longest seed, and long sessions are where state builds up.
        fn done(&mut self, times: usize) -> Vec<u8> {
            let input = std::mem::take(&mut self.0);
            let (head, ops) = input.split_at(HEAD_LEN);
            [head.to_vec(), ops.repeat(times)].concat()
        }
    }

    fn some_u8(value: Option<u8>) -> Vec<u8> {
        value.map_or(vec![0], |v| vec![1, v])
    }

    fn some_u16(value: Option<u16>) -> Vec<u8> {
        value.map_or(vec![0], |v| [&[1][..], &v.to_le_bytes()].concat())
    }

    /// A `MessageSpec`: priority, group, delay, ttl, id, size (in units of 8 bytes).
    fn message(
        priority: u8,
        group: Option<u8>,
        delay_ms: Option<u16>,
        ttl_ms: Option<u16>,
        id: Option<u8>,
    ) -> Vec<u8> {
        [vec![priority], some_u8(group), some_u16(delay_ms), some_u16(ttl_ms), some_u8(id), vec![4]]
            .concat()
    }

    fn plain() -> Vec<u8> {
        message(0, None, None, None, None)
    }

    pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let mut seeds = Vec::new();

        // Publish, consume, settle every way; client 0 starts subscribed to q0.
        let mut w = Writer::new([PLAIN, PLAIN, PLAIN], 0b01);
        w.publish(1, None, Q0, &[plain(), plain(), plain(), plain()])
            .op(ACK, &[0, 0])
            .op(NACK, &[0, 0, 1, 100, 0, 1])
            .op(REJECT, &[0, 1])
            .op(TOUCH, &[0, 0, 0])
            .advance(500)
            .op(ACK, &[0, 0])
            .op(CREDIT, &[0, 4])
            .advance(3_000)
            .op(ACK, &[0, 0])
            .op(ACK, &[0, 0]);
        seeds.push(("seed-consume", w.done(4)));

        // Retries with backoff to a dead-letter queue, leases running out, redrive, restarts.
        let retrying: Spec = [0, 2, 0x40 | 25, 10, 0, 0, 1];
        let mut w = Writer::new([PLAIN, retrying, PLAIN], 0b11);
        w.publish(1, None, Q0, &[plain(), message(0, None, None, None, Some(1))])
            .op(NACK, &[0, 0, 0, 1])
            .advance(150)
            .advance(400)
            .op(ADVANCE_LONG, &[2])
            .op(REDRIVE, &[DLQ, 0])
            .op(CRASH, &[0])
            .op(CONNECT, &[])
            .op(SUBSCRIBE, &[0, Q0, 5, 1, 0, 1, 1])
            .op(ACK, &[0, 0])
            .op(CRASH, &[1])
            .op(CONNECT, &[])
            .op(SUBSCRIBE, &[0, DLQ, 5, 0, 0])
            .advance(1_000);
        seeds.push(("seed-retries", w.done(4)));

        // Groups, priorities, delays and TTLs on a small drop-head queue with a dedup window.
        let grouped: Spec = [2, 0, 0, 25, 20, 0x08 | 3, 1 | 0x08];
        let mut w = Writer::new([PLAIN, grouped, PLAIN], 0b01);
        w.publish(
            1,
            None,
            Q0,
            &[
                message(0, Some(0), None, None, Some(1)),
                message(5, Some(0), None, None, None),
                message(9, Some(1), Some(300), None, None),
                message(0, None, None, Some(200), Some(1)),
                message(1, Some(1), None, None, None),
            ],
        )
        .op(ACK, &[0, 0])
        .advance(250)
        .op(REJECT, &[0, 0])
        .advance(700)
        .op(ACK, &[0, 0])
        .op(DROP_TRANSPORT, &[0])
        .op(CONNECT, &[])
        .op(SUBSCRIBE, &[2, Q0, 3, 0, 1])
        .advance(2_000);
        seeds.push(("seed-groups-ttl", w.done(4)));

        // Topics, admin operations and a protocol error on a connection holding deliveries.
        let mut w = Writer::new([PLAIN, PLAIN, [1, 0, 0, 50, 0, 0, 0]], 0b01);
        let mut ack_frame = vec![0, 0, 0, 3, 0x40, 0, 0, 1, 1];
        ack_frame.extend([0, 0, 0, 1, 0x03, 0]); // an empty heartbeat with a stray body byte
        let garbage: Vec<u8> = ack_frame.iter().flat_map(|b| [1, *b]).chain([0]).collect();
        w.op(BIND, &[Q0, 1])
            .op(BIND, &[2, 2])
            .publish(1, Some(1), 0, &[plain(), plain()])
            .op(PURGE, &[2])
            .op(GARBAGE, &[[0].as_slice(), &garbage].concat())
            .op(DELETE, &[DLQ, 0])
            .op(DECLARE, &[Q0])
            .op(DECLARE, &[DLQ])
            .op(CLOSE, &[1])
            .op(ADVANCE_LONG, &[30]);
        seeds.push(("seed-admin-garbage", w.done(4)));
        seeds
    }
}

/// Valid logs for `log_recovery`, written by a broker: a session of declarations, bindings,
/// publishes, deliveries and every kind of settlement, a purge and a deletion; then split into
/// segment files and cut the ways a crash cuts them; and the same log sealed (encryption at
/// rest), and with a sealed record changed. Input layout:
/// `[control, seal, len1 (u16 LE), len2 (u16 LE), data...]` (see the target).
mod log_recovery {
    use bytes::{Bytes, BytesMut};
    use chute_core::ids::Lsn;
    use chute_core::storage::format::{scan_segment, segment_header, SEGMENT_HEADER_LEN};
    use chute_core::test_util::MemDisk;
    use chute_core::{Broker, BrokerConfig, ConnId, Input, Instant, Output};
    use chute_protocol::*;

    const CONN: ConnId = ConnId(1);

    struct Session {
        broker: Broker,
        now: Instant,
        disk: MemDisk,
        request_id: u32,
    }

    impl Session {
        fn new() -> Session {
            let mut session = Session {
                broker: Broker::new(BrokerConfig::default(), Instant::ZERO),
                now: Instant::ZERO,
                disk: MemDisk::default(),
                request_id: 0,
            };
            session.input(Input::Accepted { conn: CONN, peer: Default::default() });
            let mut hello = BytesMut::from(&PREFACE[..]);
            super::hello().encode(&mut hello, FRAME_SIZE_MAX_DEFAULT).unwrap();
            session.input(Input::Received { conn: CONN, bytes: hello.freeze() });
            session
        }

        fn input(&mut self, input: Input) {
            self.broker.handle_input(self.now, input);
            while let Some(output) = self.broker.poll_output() {
                if let Output::Storage(request) = output {
                    self.disk.carry_out(&request, &mut self.broker, self.now);
                }
            }
        }

        fn send(&mut self, frame: Frame) {
            let mut wire = BytesMut::new();
            frame.encode(&mut wire, FRAME_SIZE_MAX_DEFAULT).unwrap();
            self.input(Input::Received { conn: CONN, bytes: wire.freeze() });
        }

        fn next_request(&mut self) -> u32 {
            self.request_id += 1;
            self.request_id
        }

        fn advance(&mut self, ms: u64) {
            let end = self.now.plus_ms(ms);
            while let Some(at) = self.broker.poll_timeout().filter(|at| *at <= end) {
                self.now = self.now.max(at);
                self.input(Input::Timeout);
                // Keep the connection alive, as a client's heartbeats would.
                self.send(Frame::Heartbeat(Heartbeat));
            }
            self.now = end;
            self.input(Input::Timeout);
        }

        fn declare(&mut self, name: &str, options: QueueOptions) {
            let request_id = self.next_request();
            self.send(Frame::QueueDeclare(QueueDeclare {
                request_id,
                name: name.into(),
                options,
                passive: false,
            }));
        }

        /// The log as one segment file's bytes (the session never fills a segment).
        fn log(mut self) -> Vec<u8> {
            self.advance(100); // lazily synced records reach the disk
            let files = self.disk.files();
            assert_eq!(files.len(), 1, "one segment");
            files.values().next().unwrap().data().to_vec()
        }
    }

    fn message(payload: &'static [u8]) -> PublishMessage {
        PublishMessage::new(Bytes::from_static(payload))
    }

    fn session_log() -> Vec<u8> {
        let mut s = Session::new();
        let backoff =
            BackoffPolicy { base_ms: 100, factor_percent: 200, max_ms: 1_000, jitter: false };
        let options = QueueOptions {
            attempts_max: Some(2),
            dead_letter: Some("dlq".into()),
            dedup_window_ms: Some(60_000),
            ttl_ms: Some(600_000),
            backoff,
            lease_ms: 1_000,
            ..QueueOptions::default()
        };
        s.declare("jobs", options);
        s.declare(
            "events",
            QueueOptions {
                durability: Durability::Interval { sync_interval_ms: 10 },
                ..QueueOptions::default()
            },
        );
        let request_id = s.next_request();
        s.send(Frame::Bind(Binding {
            request_id,
            queue: "events".into(),
            pattern: "orders.#".into(),
        }));
        let messages = vec![
            PublishMessage {
                id: Some("order-1".into()),
                group: Some("customer-7".into()),
                priority: 5,
                ..message(b"one")
            },
            PublishMessage {
                headers: vec![Header {
                    name: "content-type".into(),
                    value: Bytes::from_static(b"text/plain"),
                }],
                ..message(b"two")
            },
            PublishMessage { schedule: Some(Schedule::DelayMs(3_600_000)), ..message(b"later") },
            PublishMessage { ttl_ms: Some(60_000), ..message(b"short-lived") },
            message(b"three"),
        ];
        s.send(Frame::Publish(Publish {
            destination: Destination::Queue("jobs".into()),
            mandatory: false,
            messages,
        }));
        let routed = vec![message(b"routed")];
        s.send(Frame::Publish(Publish {
            destination: Destination::Topic("orders.eu".into()),
            mandatory: true,
            messages: routed,
        }));
        let request_id = s.next_request();
        s.send(Frame::Subscribe(Subscribe {
            request_id,
            subscription: 1,
            queue: "jobs".into(),
            credit: 4,
            lease_ms: None,
            rate: None,
        }));
        // Tags 1..=4: "one", "two", "short-lived", "three" (priority first, then FIFO).
        s.send(Frame::Ack(Ack { request_id: 0, ranges: vec![Range::one(1)] }));
        s.send(Frame::Nack(Nack {
            request_id: 0,
            ranges: vec![Range::one(2)],
            delay_ms: None,
            reason: Some("busy".into()),
        }));
        s.send(Frame::Reject(Reject {
            request_id: 0,
            ranges: vec![Range::one(3)],
            reason: "malformed".into(),
        }));
        s.advance(1_500); // tag 4's lease runs out; "two" comes back as tag 5
        s.send(Frame::Nack(Nack {
            request_id: 0,
            ranges: vec![Range::one(5)],
            delay_ms: Some(10),
            reason: None,
        }));
        s.send(Frame::Credit(Credit { subscription: 1, credit: 2 }));
        s.advance(200);
        let request_id = s.next_request();
        s.send(Frame::DlqRedrive(DlqRedrive { request_id, queue: "dlq".into(), dead_ids: vec![] }));
        s.declare("scratch", QueueOptions::default());
        let scratch = vec![message(b"purged"), message(b"deleted")];
        s.send(Frame::Publish(Publish {
            destination: Destination::Queue("scratch".into()),
            mandatory: false,
            messages: scratch,
        }));
        let request_id = s.next_request();
        s.send(Frame::QueuePurge(QueuePurge { request_id, name: "events".into() }));
        let request_id = s.next_request();
        s.send(Frame::QueueDelete(QueueDelete {
            request_id,
            name: "scratch".into(),
            if_empty: false,
            if_unused: false,
        }));
        s.log()
    }

    /// File offsets at which the segment's records start, after its header.
    fn record_starts(segment: &[u8]) -> Vec<usize> {
        let scan = scan_segment(&Bytes::copy_from_slice(segment), true)
            .expect("the broker's own log scans");
        assert_eq!(scan.torn_tail, None);
        scan.records
            .iter()
            .map(|r| SEGMENT_HEADER_LEN + r.lsn.bytes_since(scan.base_lsn) as usize)
            .collect()
    }

    /// The input that makes the target see exactly these files (given with their headers).
    fn input(files: &[Vec<u8>]) -> Vec<u8> {
        assert!((1..=3).contains(&files.len()));
        let len = |i: usize| files.get(i).map_or(0, |f: &Vec<u8>| u16::try_from(f.len()).unwrap());
        let control = (files.len() - 1) as u8;
        let seal = 0;
        [&[control, seal][..], &len(0).to_le_bytes(), &len(1).to_le_bytes(), &files.concat()]
            .concat()
    }

    pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let log = session_log();
        let starts = record_starts(&log);
        let mut seeds = vec![("seed-session", input(std::slice::from_ref(&log)))];

        // The same records in three segments, each with a header continuing the log.
        let cuts = [starts[starts.len() / 3], starts[2 * starts.len() / 3]];
        let records = &log[SEGMENT_HEADER_LEN..];
        let (first, rest) = records.split_at(cuts[0] - SEGMENT_HEADER_LEN);
        let (second, third) = rest.split_at(cuts[1] - cuts[0]);
        let mut base = 0u64;
        let mut segments = Vec::new();
        for part in [first, second, third] {
            segments.push([&segment_header(Lsn(base))[..], part].concat());
            base += part.len() as u64;
        }
        seeds.push(("seed-three-segments", input(&segments)));

        // A crash in the middle of the last record: a torn tail to cut.
        let last = *starts.last().unwrap();
        let torn = log[..last + (log.len() - last) / 2].to_vec();
        seeds.push(("seed-torn-tail", input(&[torn])));

        // A crash while the next segment's header was being written.
        let next = segment_header(Lsn(log.len() as u64 - SEGMENT_HEADER_LEN as u64));
        seeds.push(("seed-torn-header", input(&[log.clone(), next[..13].to_vec()])));

        // The records as `[kind, len, body]` chunks in two files, which the target frames and
        // gives headers (control bits 2, 3 and 6): the mode that reaches record decoding with
        // bodies of the fuzzer's making.
        let scan = scan_segment(&Bytes::from(log.clone()), true).unwrap();
        let chunk = |r: &chute_core::storage::format::RawRecord| {
            let len = u8::try_from(r.body.len()).expect("session records are short");
            [&[r.kind, len][..], &r.body].concat()
        };
        let half = scan.records.len() / 2;
        let first: Vec<u8> = scan.records[..half].iter().flat_map(chunk).collect();
        let second: Vec<u8> = scan.records[half..].iter().flat_map(chunk).collect();
        let mut framed = input(&[first, second]);
        framed[0] |= 0b0100_1100;
        seeds.push(("seed-framed-records", framed.clone()));

        // The same chunks sealed under the target's test key (seal bit 0), then with one
        // sealed body changed and its checksum fixed (bit 1): recovery must refuse it.
        let mut sealed = framed.clone();
        sealed[1] = 0b0000_0001;
        seeds.push(("seed-sealed-records", sealed.clone()));
        sealed[1] = 0b0001_0111;
        seeds.push(("seed-sealed-tampered", sealed));
        seeds
    }
}
