//! Core bugs found by the model-based property test (`model.rs`) and the `broker_ops` fuzz
//! target, each kept as its shortest reproduction, stated as the behaviour the documents
//! promise, so that none comes back.

mod support;

use bytes::Bytes;
use chute_core::client::{ClientEvent, Response};
use chute_core::ConnId;
use chute_protocol::{
    Destination, Durability, ErrorCode, OverflowPolicy, PublishMessage, QueueOptions, Schedule,
};
use support::Net;

fn declare_or_panic(net: &mut Net, conn: ConnId, name: &str, options: QueueOptions) {
    let response = net.declare(conn, name, options);
    assert!(matches!(response, Response::Declared(_)), "declare {name}: {response:?}");
}

/// Drop-head makes room by removing the oldest *ready* message ("the oldest message not in
/// flight and not delayed", `Queue::take_oldest`). A delayed message that is still waiting for
/// its log sync is not ready, yet `take_oldest` takes the front of `pending` whatever its due
/// time: the delayed message is dead-lettered as `overflow` and the new one accepted. With
/// `durability: none` (no pending stage) the same publishes give the documented result: the
/// second is refused with `queue-full`, as nothing is ready to drop. On a real server the
/// pending stage lasts until the fsync completes, so separate `Publish` frames hit this too.
///
/// Found by `model.rs` (`broker_matches_model`).
#[test]
fn drop_head_never_drops_a_delayed_message() {
    for durability in [Durability::None, Durability::Always] {
        let mut net = Net::new();
        let conn = net.connect();
        let options = QueueOptions {
            durability,
            messages_max: Some(1),
            overflow: OverflowPolicy::DropHead,
            dead_letter: Some("dlq".into()),
            ..QueueOptions::default()
        };
        declare_or_panic(&mut net, conn, "q", options);
        let destination = Destination::Queue("q".into());
        let mut later = PublishMessage::new(Bytes::from_static(b"later"));
        later.schedule = Some(Schedule::DelayMs(60_000));
        // One frame: the first is still waiting for the log when the second arrives.
        net.client(conn).publish(&destination, false, later).unwrap();
        let now = PublishMessage::new(Bytes::from_static(b"now"));
        net.client(conn).publish(&destination, false, now).unwrap();
        net.pump();
        let refused: Vec<(u64, ErrorCode)> = net
            .take_events(conn)
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::PublishFailed(f) => Some((f.seq, f.code)),
                _ => None,
            })
            .collect();
        let request = net.client(conn).dlq_list("dlq", None, 10).unwrap();
        let Response::DlqList(dead) = net.response(conn, request) else { panic!() };
        assert!(dead.entries.is_empty(), "{durability:?}: dead-lettered {:?}", dead.entries);
        assert_eq!(refused, [(2, ErrorCode::QUEUE_FULL)], "{durability:?}");
    }
}

/// Messages of a group are delivered one at a time; "a group is released when its in-flight
/// message is settled". When the holder is settled by anything but an ack (reject here; also
/// nack, lease timeout or disconnect at `attempts_max`, a failure after its TTL ran out, or a
/// redrive of a retrying holder out of a dead-letter queue), `Broker::dispose` moves the
/// group's next message to the front of the ready line, but nothing marks the queue for
/// dispatch (`fail_attempt`'s final branch returns before `dirty_queues.insert`, and `dispose`
/// only marks the dead-letter queue). The consumer below has credit and the message is ready,
/// yet it is not delivered, not even a second later; only an unrelated event that dispatches
/// the queue (a publish, a credit, an ack, the queue's timer) would deliver it.
///
/// Found by `model.rs` (`broker_matches_model`).
#[test]
fn group_is_released_when_its_holder_is_dead_lettered() {
    let mut net = Net::new();
    let conn = net.connect();
    declare_or_panic(&mut net, conn, "q", QueueOptions::default());
    let destination = Destination::Queue("q".into());
    for text in ["a1", "a2"] {
        let mut message = PublishMessage::new(Bytes::from(text));
        message.group = Some("a".into());
        net.client(conn).publish(&destination, false, message).unwrap();
    }
    net.pump();
    net.subscribe(conn, "q", 2);
    let first = net.deliveries(conn);
    assert_eq!(first.iter().map(support::payload).collect::<Vec<_>>(), ["a1"]);
    net.client(conn).reject(first[0].tag, "bad".into()).unwrap();
    net.pump();
    net.advance(1_000);
    let next = net.deliveries(conn);
    assert_eq!(next.iter().map(support::payload).collect::<Vec<_>>(), ["a2"]);
}

/// A publish whose id is within the queue's dedup window is "confirmed without being stored
/// again". `Broker::accept_message` gates that confirm on `Gate::synced(log.end_lsn())`
/// (so it cannot overtake the first copy) but never asks for a sync, so it waits for
/// whatever sync comes next; and since a connection's frames keep their order, every reply,
/// delivery and heartbeat behind it waits too. Here the only unsynced record belongs to an
/// `interval` queue that syncs every 60 s: the duplicate is not confirmed, a stats request
/// gets no reply, and after 15 s (three heartbeat intervals) the client gives the silent
/// server up. With only lazily synced records (acks, `Delivered`, `Failed`) the stall lasts
/// up to 20 ms. `reply_durable` had the same pattern and now asks for a sync when the log
/// has unsynced records; the duplicate path needs the same.
///
/// Found by `model.rs` (`broker_matches_model`).
#[test]
fn duplicate_is_confirmed_without_waiting_for_an_unrelated_sync() {
    let mut net = Net::new();
    let conn = net.connect();
    let deduplicating = QueueOptions { dedup_window_ms: Some(600_000), ..QueueOptions::default() };
    declare_or_panic(&mut net, conn, "q", deduplicating);
    let interval = Durability::Interval { sync_interval_ms: 60_000 };
    let slow = QueueOptions { durability: interval, ..QueueOptions::default() };
    declare_or_panic(&mut net, conn, "slow", slow);
    let destination = Destination::Queue("q".into());
    let mut message = PublishMessage::new(Bytes::from_static(b"x"));
    message.id = Some("order-1".into());
    net.client(conn).publish(&destination, false, message.clone()).unwrap();
    net.pump();
    assert_eq!(net.confirmed(conn), [1]);
    net.publish(conn, "slow", &["written, not yet synced"]);
    assert_eq!(net.confirmed(conn), [2]);
    net.client(conn).publish(&destination, false, message).unwrap();
    net.pump();
    assert_eq!(net.confirmed(conn), [3], "the duplicate is confirmed like the original was");
    net.advance(20_000);
    assert_eq!(net.closed_event(conn), None, "the connection survives");
}

/// PROTOCOL.md §8.2: delivery tags are "strictly increasing across all subscriptions of the
/// connection". A dispatch pass assigns tags in round-robin order, but `encode_deliveries`
/// sorts the chosen deliveries by (connection, subscription) before framing them, so when one
/// pass serves two subscriptions of a connection out of subscription order, the later tag is
/// sent first. Here the first delivery leaves the turn with subscription 2; the next pass
/// gives tag 2 to subscription 2 and tag 3 to subscription 1, and the client receives 1, 3, 2.
///
/// Found by the `broker_ops` fuzz target.
#[test]
fn tags_increase_across_subscriptions_of_a_connection() {
    let mut net = Net::new();
    let conn = net.connect();
    declare_or_panic(&mut net, conn, "q", QueueOptions::default());
    net.subscribe(conn, "q", 2);
    net.subscribe(conn, "q", 2);
    net.publish(conn, "q", &["a"]);
    net.publish(conn, "q", &["b", "c"]);
    let tags: Vec<u64> = net.deliveries(conn).iter().map(|d| d.tag).collect();
    assert_eq!(tags, [1, 2, 3], "tags in the order the client receives them");
}

/// Redriving a dead letter that holds its group in the dead-letter queue (here: waiting out a
/// retry delay there) releases the group's next dead letter, which must then be delivered to
/// the DLQ's consumer without waiting for an unrelated event.
///
/// Found by `model.rs` (`broker_matches_model`).
#[test]
fn redrive_releases_the_dead_letter_queues_group() {
    let mut net = Net::new();
    let conn = net.connect();
    let options = QueueOptions { dead_letter: Some("dlq".into()), ..QueueOptions::default() };
    declare_or_panic(&mut net, conn, "q", options);
    let destination = Destination::Queue("q".into());
    for text in ["first", "second"] {
        let mut message = PublishMessage::new(Bytes::copy_from_slice(text.as_bytes()));
        message.group = Some("g".into());
        net.client(conn).publish(&destination, false, message).unwrap();
    }
    net.pump();
    let source = net.subscribe(conn, "q", 10);
    for _ in 0..2 {
        let delivery = net.deliveries(conn).remove(0);
        net.client(conn).reject(delivery.tag, "no".into()).unwrap();
        net.pump();
    }
    net.client(conn).unsubscribe(source).unwrap();
    net.pump();
    net.subscribe(conn, "dlq", 10);
    let first = net.deliveries(conn);
    assert_eq!(first.len(), 1, "the group lets one through");
    net.client(conn).nack(first[0].tag, Some(60_000), None).unwrap();
    net.pump();
    let request = net.client(conn).dlq_list("dlq", None, 10).unwrap();
    let Response::DlqList(list) = net.response(conn, request) else { panic!() };
    let first_id = list.entries.iter().map(|e| e.dead_id).min().unwrap();
    let request = net.client(conn).dlq_redrive("dlq", vec![first_id]).unwrap();
    assert_eq!(net.response(conn, request), Response::Done { count: 1 });
    let second = net.deliveries(conn);
    assert_eq!(second.len(), 1, "the group's next dead letter is delivered");
    assert_eq!(&second[0].payload[..], b"second");
}
