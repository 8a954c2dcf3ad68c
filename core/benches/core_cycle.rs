//! The core alone, no I/O: publish, deliver and ack of 256-byte messages in batches of 64,
//! through the real frame codec. The figure that matters is messages per second through the
//! whole cycle on one core.
//!
//! `cargo bench -p chute-core --bench core_cycle`

use bytes::{Bytes, BytesMut};
use chute_core::test_util::MemDisk;
use chute_core::{Broker, BrokerConfig, ConnId, Input, Instant, Output};
use chute_protocol::{
    Ack, Credentials, Credit, Destination, Durability, Frame, Hello, Publish, PublishMessage,
    QueueDeclare, QueueOptions, Range, Subscribe, PREFACE,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BATCH: u32 = 64;
const PAYLOAD: usize = 256;

struct Cycle {
    broker: Broker,
    disk: MemDisk,
    now: Instant,
    producer: ConnId,
    consumer: ConnId,
    publish: Bytes,
    next_tag: u64,
}

fn frames(frames: &[Frame]) -> Bytes {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out, 1 << 24).unwrap();
    }
    out.freeze()
}

fn hello() -> Bytes {
    let mut out = BytesMut::from(&PREFACE[..]);
    let hello = Hello {
        version_min: 1,
        version_max: 1,
        client_name: "bench".into(),
        credentials: Credentials::Anonymous,
        heartbeat_ms: 0,
    };
    Frame::Hello(hello).encode(&mut out, 1 << 20).unwrap();
    out.freeze()
}

impl Cycle {
    fn new(durability: Durability) -> Cycle {
        let mut config = BrokerConfig::default();
        config.limits.unconfirmed_max = 1 << 20;
        let mut cycle = Cycle {
            broker: Broker::new(config, Instant::ZERO),
            disk: MemDisk::default(),
            now: Instant::ZERO,
            producer: ConnId(1),
            consumer: ConnId(2),
            publish: Bytes::new(),
            next_tag: 1,
        };
        for conn in [cycle.producer, cycle.consumer] {
            cycle.input(Input::Accepted { conn, peer: Default::default() });
            cycle.input(Input::Received { conn, bytes: hello() });
        }
        let options = QueueOptions { durability, ..QueueOptions::default() };
        let declare = Frame::QueueDeclare(QueueDeclare {
            request_id: 1,
            name: "q".into(),
            options,
            passive: false,
        });
        cycle.input(Input::Received { conn: cycle.producer, bytes: frames(&[declare]) });
        let subscribe = Frame::Subscribe(Subscribe {
            request_id: 1,
            subscription: 1,
            queue: "q".into(),
            credit: BATCH,
            lease_ms: None,
            rate: None,
        });
        cycle.input(Input::Received { conn: cycle.consumer, bytes: frames(&[subscribe]) });
        let messages =
            (0..BATCH).map(|_| PublishMessage::new(Bytes::from(vec![7u8; PAYLOAD]))).collect();
        let publish =
            Publish { destination: Destination::Queue("q".into()), mandatory: false, messages };
        cycle.publish = frames(&[Frame::Publish(publish)]);
        cycle
    }

    /// Feeds an input and carries out every output at once: sends count as flushed, the disk
    /// (in memory) writes and syncs instantly.
    fn input(&mut self, input: Input) {
        self.now = self.now.plus_ms(0);
        self.broker.handle_input(self.now, input);
        while let Some(output) = self.broker.poll_output() {
            match output {
                Output::Send { conn, bytes } => {
                    let flushed = Input::Flushed { conn, bytes: bytes.len() as u64 };
                    self.broker.handle_input(self.now, flushed);
                }
                Output::Storage(request) => {
                    self.disk.carry_out(&request, &mut self.broker, self.now)
                }
                _ => {}
            }
        }
    }

    /// One batch through the whole cycle: publish, confirm, deliver, ack, credit.
    fn run_batch(&mut self) {
        let publish = self.publish.clone();
        self.input(Input::Received { conn: self.producer, bytes: publish });
        let ack = Frame::Ack(Ack {
            request_id: 0,
            ranges: vec![Range { first: self.next_tag, count: BATCH }],
        });
        let credit = Frame::Credit(Credit { subscription: 1, credit: BATCH });
        self.next_tag += u64::from(BATCH);
        self.input(Input::Received { conn: self.consumer, bytes: frames(&[ack, credit]) });
    }
}

fn core_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish-deliver-ack");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    for (name, durability) in [("in-memory", Durability::None), ("durable", Durability::Always)] {
        let mut cycle = Cycle::new(durability);
        group.bench_function(name, |b| b.iter(|| cycle.run_batch()));
        assert_eq!(cycle.broker.queue_depth("q"), Some(0), "every message was acked");
    }
    group.finish();
}

fn codec(c: &mut Criterion) {
    let messages =
        (0..BATCH).map(|_| PublishMessage::new(Bytes::from(vec![7u8; PAYLOAD]))).collect();
    let frame = Frame::Publish(Publish {
        destination: Destination::Queue("q".into()),
        mandatory: false,
        messages,
    });
    let encoded = frames(std::slice::from_ref(&frame));
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    group.bench_function("encode-publish-64", |b| {
        let mut out = BytesMut::with_capacity(encoded.len());
        b.iter(|| {
            out.clear();
            frame.encode(&mut out, 1 << 24).unwrap();
        })
    });
    group.bench_function("decode-publish-64", |b| {
        b.iter(|| {
            let mut reader = chute_protocol::FrameReader::new(1 << 24);
            reader.feed(encoded.clone());
            reader.next_frame().unwrap().unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, core_cycle, codec);
criterion_main!(benches);
