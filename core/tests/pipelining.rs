//! What a client may send without waiting, and how the broker answers it: requests pipelined
//! behind `Hello`, a `Close` right behind them, reserved request ids, list page sizes.

mod support;

use bytes::{Bytes, BytesMut};
use chute_core::{ConnId, Output};
use chute_protocol::{
    Close, DlqList, ErrorCode, Frame, QueueDeclare, QueueList, QueueOptions, QueueStatsRequest,
    LIST_PAGE_MAX, PREFACE,
};
use support::{raw_hello, Net};

fn declare(request_id: u32, name: &str) -> Frame {
    Frame::QueueDeclare(QueueDeclare {
        request_id,
        name: name.into(),
        options: QueueOptions::default(),
        passive: false,
    })
}

fn close() -> Frame {
    Frame::Close(Close { code: ErrorCode::NORMAL_CLOSE, message: "bye".into() })
}

/// The preface and `frames`, encoded back to back as one write.
fn wire(frames: &[Frame]) -> Bytes {
    let mut bytes = BytesMut::from(&PREFACE[..]);
    for frame in frames {
        frame.encode(&mut bytes, 1 << 20).unwrap();
    }
    bytes.freeze()
}

fn closed(net: &Net, conn: ConnId) -> bool {
    net.broker_log.contains(&Output::Close { conn })
}

/// `Hello`, a request and `Close` written together: the request is carried out and its
/// answer (which waits for the log) is sent before the socket closes, after `HelloOk`.
#[test]
fn answers_before_a_client_close_are_sent() {
    let mut net = Net::new();
    net.auto_storage = false;
    let conn = net.connect_without_handshake();
    net.send_raw(conn, &wire(&[raw_hello(), declare(7, "jobs"), close()]));
    assert!(!closed(&net, conn), "closed before the declaration was durable");
    while !net.storage_queue.is_empty() {
        net.run_storage();
    }
    let frames = net.raw_frames(conn);
    assert!(
        matches!(frames[..], [Frame::HelloOk(_), Frame::QueueDeclareOk(ref ok)] if ok.request_id == 7 && ok.created),
        "{frames:?}"
    );
    assert!(closed(&net, conn));
    assert_eq!(net.broker.queue_depth("jobs"), Some(0));
}

/// A `Close` with nothing owed closes at once, and nothing after it is read.
#[test]
fn nothing_after_a_client_close_is_read() {
    let mut net = Net::new();
    let conn = net.open_raw();
    net.send_frames(conn, &[close(), declare(1, "after")]);
    assert!(closed(&net, conn));
    assert!(net.raw_frames(conn).is_empty());
    assert_eq!(net.broker.queue_depth("after"), None);
}

/// A client that closes while holding deliveries loses them to the queue, attempt counted,
/// even while the answers it is owed still wait for the log.
#[test]
fn a_client_close_returns_its_deliveries() {
    let mut net = Net::new();
    let producer = net.connect();
    net.declare(producer, "jobs", QueueOptions::default());
    net.publish(producer, "jobs", &["a"]);
    let consumer = net.connect();
    net.subscribe(consumer, "jobs", 10);
    assert_eq!(net.deliveries(consumer).len(), 1);
    net.client(consumer).close();
    net.pump();
    let other = net.connect();
    net.subscribe(other, "jobs", 10);
    net.advance(2_000);
    let again = net.deliveries(other);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
}

/// A request that is answered must not use request id 0, which marks connection errors: it is
/// a protocol violation, and the connection closes with `malformed-frame`.
#[test]
fn request_id_zero_on_an_answered_request_closes() {
    let mut net = Net::new();
    for frame in [
        declare(0, "jobs"),
        Frame::QueueStats(QueueStatsRequest { request_id: 0, name: "jobs".into() }),
        Frame::QueueList(QueueList { request_id: 0, after: None, limit: 10 }),
    ] {
        let conn = net.open_raw();
        net.send_frames(conn, &[frame]);
        let frames = net.raw_frames(conn);
        assert!(
            matches!(&frames[..], [Frame::Error(e), Frame::Close(c)]
                if e.request_id == 0 && e.code == ErrorCode::MALFORMED_FRAME
                    && c.code == ErrorCode::MALFORMED_FRAME && e.message.contains("request_id 0")),
            "{frames:?}"
        );
        assert!(closed(&net, conn));
    }
    assert_eq!(net.broker.queue_depth("jobs"), None);
}

/// `limit` 0 asks for the server's default page, `LIST_PAGE_MAX` entries.
#[test]
fn list_limit_zero_is_a_full_page() {
    let mut net = Net::new();
    let conn = net.open_raw();
    let names: Vec<String> = (0..LIST_PAGE_MAX + 1).map(|i| format!("q{i:04}")).collect();
    let declares: Vec<Frame> =
        names.iter().enumerate().map(|(i, name)| declare(i as u32 + 1, name)).collect();
    net.send_frames(conn, &declares);
    net.raw_frames(conn);
    net.send_frames(conn, &[Frame::QueueList(QueueList { request_id: 9, after: None, limit: 0 })]);
    match &net.raw_frames(conn)[..] {
        [Frame::QueueListOk(ok)] => {
            assert_eq!(ok.queues.len(), LIST_PAGE_MAX);
            assert!(ok.more);
        }
        other => panic!("{other:?}"),
    }
}

/// The same rule for dead-letter lists.
#[test]
fn dlq_list_limit_zero_is_a_full_page() {
    let mut net = Net::new();
    let conn = net.connect();
    let options = QueueOptions { dead_letter: Some("dead".into()), ..QueueOptions::default() };
    net.declare(conn, "jobs", options);
    let payloads = vec!["x"; LIST_PAGE_MAX + 1];
    net.publish(conn, "jobs", &payloads);
    net.subscribe(conn, "jobs", LIST_PAGE_MAX as u32 + 1);
    let tags: Vec<u64> = net.deliveries(conn).iter().map(|d| d.tag).collect();
    assert_eq!(tags.len(), LIST_PAGE_MAX + 1);
    for tag in tags {
        net.client(conn).reject(tag, "no".into()).unwrap();
    }
    net.pump();
    let raw = net.open_raw();
    let list = DlqList { request_id: 10, queue: "dead".into(), after: None, limit: 0 };
    net.send_frames(raw, &[Frame::DlqList(list)]);
    match &net.raw_frames(raw)[..] {
        [Frame::DlqListOk(ok)] => assert!(ok.entries.len() == LIST_PAGE_MAX && ok.more),
        other => panic!("{other:?}"),
    }
}

/// A settlement that asked for no answer (`request_id` 0) but is invalid cannot be answered
/// with an `Error` naming it: the connection ends with the error as its reason.
#[test]
fn an_invalid_settlement_without_request_id_closes_the_connection() {
    let mut net = Net::new();
    let conn = net.open_raw();
    let nack = chute_protocol::Nack {
        request_id: 0,
        ranges: vec![chute_protocol::Range::one(1)],
        delay_ms: None,
        reason: Some("x".repeat(chute_protocol::REASON_LEN_MAX + 1)),
    };
    net.send_frames(conn, &[Frame::Nack(nack)]);
    let frames = net.raw_frames(conn);
    assert!(
        matches!(&frames[..], [Frame::Error(e), Frame::Close(c)]
            if e.request_id == 0 && e.code == ErrorCode::INVALID_ARGUMENT
                && c.code == ErrorCode::INVALID_ARGUMENT),
        "{frames:?}"
    );
    assert!(closed(&net, conn));
}

fn small_frames() -> chute_core::BrokerConfig {
    let mut config = chute_core::BrokerConfig::default();
    config.limits.frame_size_max = 4096;
    config.limits.payload_size_max = 1024;
    config.limits.connection_outbound_bytes_max = 1 << 20;
    config
}

fn publish_one(priority: u8) -> Frame {
    let mut message = chute_protocol::PublishMessage::new(Bytes::from_static(b"m"));
    message.priority = priority;
    Frame::Publish(chute_protocol::Publish {
        destination: chute_protocol::Destination::Queue("jobs".into()),
        mandatory: false,
        messages: vec![message],
    })
}

/// Many publishes read at once, every other one refused, split the confirms into more ranges
/// than one small frame holds: they arrive in several `Confirm` frames covering every accepted
/// publish, not as an encoding failure.
#[test]
fn confirms_of_many_publishes_split_over_frames() {
    let mut net = Net::with_config(small_frames());
    let conn = net.open_raw();
    net.send_frames(conn, &[declare(1, "jobs")]);
    net.raw_frames(conn);
    let publishes: Vec<Frame> =
        (0..2000).map(|i| publish_one(if i % 2 == 0 { 0 } else { 10 })).collect();
    net.send_frames(conn, &publishes);
    let (mut confirmed, mut refused, mut confirms) = (Vec::new(), Vec::new(), 0);
    for frame in net.raw_frames(conn) {
        match frame {
            Frame::Confirm(c) => {
                confirms += 1;
                confirmed.extend(c.ranges.iter().flat_map(|r| r.iter()));
            }
            Frame::PublishRejected(r) => refused.extend(r.failures.iter().map(|f| f.seq)),
            other => panic!("{other:?}"),
        }
    }
    assert!(confirms > 1, "one Confirm cannot hold 1000 ranges in 4 KiB");
    confirmed.sort_unstable();
    let odd: Vec<u64> = (1..=2000).step_by(2).collect();
    let even: Vec<u64> = (2..=2000).step_by(2).collect();
    assert_eq!(confirmed, odd);
    assert_eq!(refused, even);
    assert!(!closed(&net, conn));
}

/// A large batch refused whole (its queue does not exist) is answered in as many
/// `PublishRejected` frames as the refusals need.
#[test]
fn refusals_of_a_large_batch_split_over_frames() {
    let mut net = Net::with_config(small_frames());
    let conn = net.open_raw();
    let messages =
        (0..500).map(|_| chute_protocol::PublishMessage::new(Bytes::from_static(b"m"))).collect();
    let publish = chute_protocol::Publish {
        destination: chute_protocol::Destination::Queue("missing".into()),
        mandatory: false,
        messages,
    };
    net.send_frames(conn, &[Frame::Publish(publish)]);
    let frames = net.raw_frames(conn);
    assert!(frames.len() > 1, "{} frames", frames.len());
    let seqs: Vec<u64> = frames
        .iter()
        .flat_map(|f| match f {
            Frame::PublishRejected(r) => r.failures.iter().map(|f| f.seq).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, (1..=500).collect::<Vec<u64>>());
}
