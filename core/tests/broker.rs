//! The broker's protocol behaviour, end to end through the client state machine.

mod support;

use bytes::Bytes;
use chute_core::client::{ClientEvent, Response};
use chute_core::{BrokerConfig, Output};
use chute_protocol::{
    Destination, ErrorCode, Frame, FrameKind, Heartbeat, PublishMessage, QueueOptions, PREFACE,
};
use support::{payload, Net};

fn declared(net: &mut Net, conn: chute_core::ConnId, name: &str) {
    match net.declare(conn, name, QueueOptions::default()) {
        Response::Declared(ok) => assert!(ok.created),
        other => panic!("declare failed: {other:?}"),
    }
}

/// The handshake announces the server's limits and heartbeat.
#[test]
fn handshake_reports_server_limits() {
    let mut net = Net::new();
    let conn = net.connect();
    let server = net.clients[&conn].server().unwrap().clone();
    assert_eq!(server.version, 2, "the highest version both speak");
    assert_eq!(server.heartbeat_ms, 5_000);
    assert_eq!(server.limits.frame_size_max, BrokerConfig::default().limits.frame_size_max);
    assert_eq!(server.connection_id, conn.0);
}

/// Every published message is confirmed, and the confirms cover exactly the sequence numbers.
#[test]
fn publishes_are_confirmed() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    let seqs = net.publish(conn, "jobs", &["a", "b", "c"]);
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(net.confirmed(conn), vec![1, 2, 3]);
    assert_eq!(net.clients[&conn].unconfirmed(), 0);
    assert_eq!(net.broker.queue_depth("jobs"), Some(3));
}

/// Deliveries ready together go out in frames of about `BATCH_FRAME_BYTES_TARGET`, so the
/// consumer can slice most of them out of one read.
#[test]
fn delivery_batches_close_near_the_frame_target() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    let payload = "p".repeat(1000);
    net.publish(conn, "jobs", &vec![payload.as_str(); 100]);
    net.subscribe(conn, "jobs", 1000);
    net.pump();
    let frames: Vec<usize> = net.events[&conn]
        .iter()
        .filter_map(|event| match event {
            ClientEvent::Deliveries { deliveries, .. } => {
                Some(deliveries.iter().map(|d| d.payload.len()).sum())
            }
            _ => None,
        })
        .collect();
    assert_eq!(frames.iter().sum::<usize>(), 100 * 1000);
    assert!(frames.len() >= 4, "{frames:?}");
    assert!(
        frames.iter().all(|&bytes| bytes <= chute_protocol::BATCH_FRAME_BYTES_TARGET),
        "{frames:?}"
    );
}

/// Consecutive publishes travel in one frame: batching is what makes the broker fast.
#[test]
fn consecutive_publishes_share_one_frame() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    let destination = Destination::Queue("jobs".into());
    for i in 0..100u8 {
        let message = PublishMessage::new(Bytes::from(vec![i]));
        net.client(conn).publish(&destination, false, message).unwrap();
    }
    let Some(chute_core::client::ClientOutput::Send(bytes)) = net.client(conn).poll_output() else {
        panic!("expected bytes to send");
    };
    assert_eq!(bytes[4], FrameKind::Publish as u8);
    let body_len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(bytes.len(), 6 + body_len, "exactly one frame");
}

/// A publish to a queue that does not exist fails with a specific code; nothing is stored.
#[test]
fn publish_to_missing_queue_fails() {
    let mut net = Net::new();
    let conn = net.connect();
    net.publish(conn, "nowhere", &["x"]);
    let failure = net.take_events(conn).into_iter().find_map(|e| match e {
        ClientEvent::PublishFailed(f) => Some(f),
        _ => None,
    });
    let failure = failure.expect("publish failure");
    assert_eq!((failure.seq, failure.code), (1, ErrorCode::NO_SUCH_QUEUE));
    assert_eq!(net.clients[&conn].unconfirmed(), 0);
}

/// Messages reach a consumer in publish order, each once, attempt 1.
#[test]
fn consumer_receives_in_fifo_order() {
    let mut net = Net::new();
    let producer = net.connect();
    let consumer = net.connect();
    declared(&mut net, producer, "jobs");
    net.publish(producer, "jobs", &["1", "2", "3", "4"]);
    net.subscribe(consumer, "jobs", 10);
    let deliveries = net.deliveries(consumer);
    let payloads: Vec<&str> = deliveries.iter().map(payload).collect();
    assert_eq!(payloads, ["1", "2", "3", "4"]);
    assert!(deliveries.iter().all(|d| d.attempt == 1 && !d.redelivered));
    let tags: Vec<u64> = deliveries.iter().map(|d| d.tag).collect();
    assert_eq!(tags, [1, 2, 3, 4]);
}

/// Credit bounds what a consumer holds; granting more resumes delivery.
#[test]
fn credit_limits_deliveries() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    net.publish(conn, "jobs", &["1", "2", "3", "4", "5"]);
    let subscription = net.subscribe(conn, "jobs", 2);
    assert_eq!(net.deliveries(conn).len(), 2);
    net.client(conn).grant_credit(subscription, 2).unwrap();
    let next: Vec<String> = net.deliveries(conn).iter().map(|d| payload(d).to_string()).collect();
    assert_eq!(next, ["3", "4"]);
}

/// With automatic credit, acking frees room for the next delivery.
#[test]
fn auto_credit_refills_on_ack() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    net.publish(conn, "jobs", &["1", "2", "3"]);
    let (request, _) = net.client(conn).subscribe("jobs", 1, None, true).unwrap();
    net.response(conn, request);
    for expected in ["1", "2", "3"] {
        let deliveries = net.deliveries(conn);
        assert_eq!(deliveries.len(), 1);
        assert_eq!(payload(&deliveries[0]), expected);
        net.client(conn).ack(deliveries[0].tag).unwrap();
    }
    net.pump();
    assert_eq!(net.broker.queue_depth("jobs"), Some(0));
}

/// An ack removes the message for good.
#[test]
fn ack_removes_message() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    net.publish(conn, "jobs", &["1", "2"]);
    net.subscribe(conn, "jobs", 10);
    for delivery in net.deliveries(conn) {
        net.client(conn).ack(delivery.tag).unwrap();
    }
    net.pump();
    assert_eq!(net.broker.queue_depth("jobs"), Some(0));
    let request = net.client(conn).queue_stats("jobs").unwrap();
    let Response::QueueStats(stats) = net.response(conn, request) else { panic!() };
    assert_eq!(
        (stats.counters.published, stats.counters.delivered, stats.counters.acked),
        (2, 2, 2)
    );
    assert_eq!((stats.ready, stats.in_flight, stats.bytes), (0, 0, 0));
}

/// A message nacked with no delay comes back first, marked redelivered, attempt counted.
#[test]
fn nack_requeues_at_front_with_attempt_counted() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    net.publish(conn, "jobs", &["1", "2"]);
    let subscription = net.subscribe(conn, "jobs", 1);
    let first = net.deliveries(conn).remove(0);
    net.client(conn).nack(first.tag, Some(0), Some("busy".into())).unwrap();
    net.client(conn).grant_credit(subscription, 1).unwrap();
    let again = net.deliveries(conn).remove(0);
    assert_eq!(payload(&again), "1");
    assert_eq!((again.attempt, again.redelivered), (2, true));
    assert_ne!(again.tag, first.tag);
}

/// A consumer that disconnects with unacked messages must not lose them: they go back to the
/// queue, attempt counted, and another consumer gets them in their original order.
#[test]
fn disconnect_requeues_unacked_with_attempt_counted() {
    let mut net = Net::new();
    let first = net.connect();
    let second = net.connect();
    let no_backoff =
        chute_protocol::BackoffPolicy { base_ms: 0, factor_percent: 100, max_ms: 0, jitter: false };
    net.declare(first, "jobs", QueueOptions { backoff: no_backoff, ..QueueOptions::default() });
    net.publish(first, "jobs", &["1", "2", "3"]);
    net.subscribe(first, "jobs", 10);
    assert_eq!(net.deliveries(first).len(), 3);
    net.client(first).close();
    net.pump();
    net.subscribe(second, "jobs", 10);
    let deliveries = net.deliveries(second);
    let payloads: Vec<&str> = deliveries.iter().map(payload).collect();
    assert_eq!(payloads, ["1", "2", "3"]);
    assert!(deliveries.iter().all(|d| d.attempt == 2 && d.redelivered));
}

/// Two consumers share a queue round robin.
#[test]
fn consumers_share_round_robin() {
    let mut net = Net::new();
    let producer = net.connect();
    let a = net.connect();
    let b = net.connect();
    declared(&mut net, producer, "jobs");
    net.subscribe(a, "jobs", 100);
    net.subscribe(b, "jobs", 100);
    net.publish(producer, "jobs", &["1", "2", "3", "4"]);
    let to_a: Vec<String> = net.deliveries(a).iter().map(|d| payload(d).to_string()).collect();
    let to_b: Vec<String> = net.deliveries(b).iter().map(|d| payload(d).to_string()).collect();
    assert_eq!(to_a.len(), 2);
    assert_eq!(to_b.len(), 2);
    let mut all = [to_a, to_b].concat();
    all.sort();
    assert_eq!(all, ["1", "2", "3", "4"]);
}

/// An idle connection is kept alive by heartbeats in both directions.
#[test]
fn heartbeats_keep_idle_connection_open() {
    let mut net = Net::new();
    let conn = net.connect();
    net.advance(60_000);
    assert!(net.clients[&conn].is_open());
    assert!(!net.closed_by_broker.contains(&conn));
}

/// A peer that falls silent is declared dead after three heartbeat intervals, and what it
/// held is requeued.
#[test]
fn silent_peer_times_out_and_its_deliveries_return() {
    let mut net = Net::new();
    let producer = net.connect();
    let silent = net.connect();
    declared(&mut net, producer, "jobs");
    net.publish(producer, "jobs", &["1"]);
    net.subscribe(silent, "jobs", 10);
    assert_eq!(net.deliveries(silent).len(), 1);
    // The silent client stops taking part: remove its machine so it neither reads nor sends.
    net.clients.remove(&silent);
    net.advance(14_000);
    assert!(!net.closed_by_broker.contains(&silent));
    net.advance(2_000);
    assert!(net.closed_by_broker.contains(&silent));
    let closed = net.broker_log.iter().find_map(|o| match o {
        Output::Event(chute_core::Event::ConnectionClosed { conn, code, .. })
            if *conn == silent =>
        {
            Some(*code)
        }
        _ => None,
    });
    assert_eq!(closed, Some(ErrorCode::HEARTBEAT_TIMEOUT));
    assert_eq!(net.broker.queue_depth("jobs"), Some(1));
}

/// A connection that never says Hello is closed after the handshake timeout.
#[test]
fn handshake_timeout_closes() {
    let mut net = Net::new();
    let conn = net.connect_without_handshake();
    net.advance(9_999);
    assert!(!net.closed_by_broker.contains(&conn));
    net.advance(1);
    assert!(net.closed_by_broker.contains(&conn));
    assert_eq!(net.broker.connection_count(), 0);
}

/// Garbage gets an error frame and a close; the other clients carry on.
#[test]
fn garbage_closes_only_the_offender() {
    let mut net = Net::new();
    let good = net.connect();
    let bad = net.connect();
    declared(&mut net, good, "jobs");
    net.send_raw(bad, &[0, 0, 0, 1, 0xEE, 0, 7]);
    assert!(net.closed_by_broker.contains(&bad));
    assert_eq!(net.closed_event(bad).map(|(code, _)| code), Some(ErrorCode::UNEXPECTED_FRAME));
    net.publish(good, "jobs", &["still here"]);
    assert_eq!(net.confirmed(good), vec![1]);
}

/// A malformed body is refused with `malformed-frame`, naming the frame.
#[test]
fn malformed_body_is_refused() {
    let mut net = Net::new();
    let conn = net.connect();
    // A QueueDeclare body of one byte cannot hold its fields.
    net.send_raw(conn, &[0, 0, 0, 1, FrameKind::QueueDeclare as u8, 0, 5]);
    let (code, message) = net.closed_event(conn).expect("closed");
    assert_eq!(code, ErrorCode::MALFORMED_FRAME);
    assert!(message.contains("QueueDeclare"), "{message}");
}

/// A frame longer than the limit is refused from its header alone.
#[test]
fn oversized_frame_is_refused_from_header() {
    let mut net = Net::new();
    let conn = net.connect();
    let mut header = u32::MAX.to_be_bytes().to_vec();
    header.extend([FrameKind::Publish as u8, 0]);
    net.send_raw(conn, &header);
    assert_eq!(net.closed_event(conn).map(|(c, _)| c), Some(ErrorCode::FRAME_TOO_LARGE));
}

/// Not speaking the preface is refused at once.
#[test]
fn bad_preface_is_refused() {
    let mut net = Net::new();
    let conn = net.connect_without_handshake();
    net.send_raw(conn, b"GET / HTTP/1.1\r\n");
    assert!(net.closed_by_broker.contains(&conn));
}

/// A client that speaks only a future version is told so.
#[test]
fn unsupported_version_is_refused() {
    let mut net = Net::new();
    let conn = net.connect_without_handshake();
    let mut bytes = bytes::BytesMut::from(&PREFACE[..]);
    let hello = chute_protocol::Hello {
        version_min: 3,
        version_max: 4,
        client_name: "future".into(),
        credentials: chute_protocol::Credentials::Anonymous,
        heartbeat_ms: 0,
    };
    Frame::Hello(hello).encode(&mut bytes, 1 << 20).unwrap();
    net.send_raw(conn, &bytes);
    assert!(net.closed_by_broker.contains(&conn));
}

/// Frames that only a server sends are refused from a client.
#[test]
fn server_frames_from_client_are_refused() {
    let mut net = Net::new();
    let conn = net.connect();
    let mut bytes = bytes::BytesMut::new();
    Frame::Done(chute_protocol::Done { request_id: 1, count: 0 })
        .encode(&mut bytes, 1 << 20)
        .unwrap();
    net.send_raw(conn, &bytes);
    assert_eq!(net.closed_event(conn).map(|(c, _)| c), Some(ErrorCode::UNEXPECTED_FRAME));
}

/// Redeclaring with the same options is fine; with other options it names the difference.
#[test]
fn redeclare_checks_options() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    let Response::Declared(ok) = net.declare(conn, "jobs", QueueOptions::default()) else {
        panic!()
    };
    assert!(!ok.created);
    let other = QueueOptions { lease_ms: 1_000, ..QueueOptions::default() };
    let Response::Failed(error) = net.declare(conn, "jobs", other) else { panic!() };
    assert_eq!(error.code, ErrorCode::QUEUE_OPTIONS_MISMATCH);
    assert!(error.message.contains("lease_ms"), "{}", error.message);
}

/// A passive declare only checks existence.
#[test]
fn passive_declare_of_missing_queue_fails() {
    let mut net = Net::new();
    let conn = net.connect();
    let request = net.client(conn).declare_queue("ghost", QueueOptions::default(), true).unwrap();
    let Response::Failed(error) = net.response(conn, request) else { panic!() };
    assert_eq!(error.code, ErrorCode::NO_SUCH_QUEUE);
}

/// Bad names are refused with `invalid-argument`.
#[test]
fn invalid_queue_name_is_refused() {
    let mut net = Net::new();
    let conn = net.connect();
    let Response::Failed(error) = net.declare(conn, "has space", QueueOptions::default()) else {
        panic!()
    };
    assert_eq!(error.code, ErrorCode::INVALID_ARGUMENT);
}

/// Deleting a queue ends its subscriptions with a notice and reports what it held.
#[test]
fn delete_cancels_subscriptions() {
    let mut net = Net::new();
    let owner = net.connect();
    let consumer = net.connect();
    declared(&mut net, owner, "jobs");
    net.publish(owner, "jobs", &["1", "2"]);
    net.subscribe(consumer, "jobs", 1);
    let request = net.client(owner).delete_queue("jobs", false, false).unwrap();
    assert_eq!(net.response(owner, request), Response::Done { count: 2 });
    let cancelled = net
        .take_events(consumer)
        .into_iter()
        .any(|e| matches!(e, ClientEvent::SubscriptionCancelled(_)));
    assert!(cancelled);
    assert_eq!(net.broker.queue_depth("jobs"), None);
}

/// `if_empty` protects a queue holding messages.
#[test]
fn delete_if_empty_refuses_non_empty_queue() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    net.publish(conn, "jobs", &["1"]);
    let request = net.client(conn).delete_queue("jobs", true, false).unwrap();
    let Response::Failed(error) = net.response(conn, request) else { panic!() };
    assert_eq!(error.code, ErrorCode::QUEUE_IN_USE);
}

/// Purge drops ready messages and says how many.
#[test]
fn purge_drops_ready_messages() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    net.publish(conn, "jobs", &["1", "2", "3"]);
    let request = net.client(conn).purge_queue("jobs").unwrap();
    assert_eq!(net.response(conn, request), Response::Done { count: 3 });
    assert_eq!(net.broker.queue_depth("jobs"), Some(0));
}

/// Listing pages through queue names in order.
#[test]
fn list_pages_in_name_order() {
    let mut net = Net::new();
    let conn = net.connect();
    for name in ["c", "a", "b"] {
        declared(&mut net, conn, name);
    }
    let request = net.client(conn).list_queues(None, 2).unwrap();
    let Response::QueueList(page) = net.response(conn, request) else { panic!() };
    let names: Vec<&str> = page.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!((names, page.more), (vec!["a", "b"], true));
    let request = net.client(conn).list_queues(Some("b".into()), 2).unwrap();
    let Response::QueueList(page) = net.response(conn, request) else { panic!() };
    assert_eq!((page.queues.len(), page.more), (1, false));
}

/// A queue at its message limit refuses publishes with a retriable `queue-full`.
#[test]
fn full_queue_refuses_publish() {
    let mut net = Net::new();
    let conn = net.connect();
    let options = QueueOptions { messages_max: Some(2), ..QueueOptions::default() };
    net.declare(conn, "small", options);
    net.publish(conn, "small", &["1", "2", "3"]);
    assert_eq!(net.confirmed(conn), vec![1, 2]);
    let failure = net.take_events(conn).into_iter().find_map(|e| match e {
        ClientEvent::PublishFailed(f) => Some(f),
        _ => None,
    });
    let failure = failure.unwrap();
    assert_eq!((failure.seq, failure.code), (3, ErrorCode::QUEUE_FULL));
    assert!(failure.code.is_retriable());
}

/// Acking a tag that is not outstanding fails that ack when it asked for an answer (the
/// outstanding tags in it are still settled), and is silently harmless when it did not.
#[test]
fn unknown_tag_ack_fails_only_the_ack() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    net.publish(conn, "jobs", &["1"]);
    net.subscribe(conn, "jobs", 10);
    let tag = net.deliveries(conn)[0].tag;
    let ranges = vec![chute_protocol::Range { first: tag, count: u32::MAX }];
    let ack = chute_protocol::Ack { request_id: 7, ranges: ranges.clone() };
    send_frame(&mut net, conn, Frame::Ack(ack));
    let Response::Failed(error) = net.response(conn, 7) else { panic!("expected an error") };
    assert_eq!(error.code, ErrorCode::UNKNOWN_DELIVERY_TAG);
    assert_eq!(net.broker.queue_depth("jobs"), Some(0), "the outstanding tag was settled");

    send_frame(&mut net, conn, Frame::Ack(chute_protocol::Ack { request_id: 0, ranges }));
    let answered =
        net.take_events(conn).into_iter().any(|e| matches!(e, ClientEvent::Response { .. }));
    assert!(!answered, "no answer without a request id");
    assert!(net.clients[&conn].is_open());
}

/// Settling with a request id is answered once the settlement is done.
#[test]
fn ack_with_request_id_is_answered() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    net.publish(conn, "jobs", &["1"]);
    net.subscribe(conn, "jobs", 10);
    let tag = net.deliveries(conn)[0].tag;
    let ranges = vec![chute_protocol::Range::one(tag)];
    send_frame(&mut net, conn, Frame::Ack(chute_protocol::Ack { request_id: 9, ranges }));
    assert_eq!(net.response(conn, 9), Response::Done { count: 0 });
}

/// Credit for a subscription that ended is ignored (it may cross an unsubscribe); credit
/// beyond the limit is a client bug that closes the connection.
#[test]
fn credit_rules() {
    let mut net = Net::new();
    let conn = net.connect();
    let stale = chute_protocol::Credit { subscription: 42, credit: 5 };
    send_frame(&mut net, conn, Frame::Credit(stale));
    assert!(net.clients[&conn].is_open());
    declared(&mut net, conn, "jobs");
    let subscription = net.subscribe(conn, "jobs", 10);
    let credit_max = BrokerConfig::default().limits.credit_max;
    let too_much = chute_protocol::Credit { subscription, credit: credit_max };
    send_frame(&mut net, conn, Frame::Credit(too_much));
    assert_eq!(net.closed_event(conn).map(|(c, _)| c), Some(ErrorCode::CREDIT_OVERFLOW));
}

/// Deliveries of a deleted queue are no longer outstanding.
#[test]
fn deleting_a_queue_ends_its_deliveries() {
    let mut net = Net::new();
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    net.publish(conn, "jobs", &["1"]);
    net.subscribe(conn, "jobs", 10);
    let tag = net.deliveries(conn)[0].tag;
    let request = net.client(conn).delete_queue("jobs", false, false).unwrap();
    assert_eq!(net.response(conn, request), Response::Done { count: 1 });
    let ranges = vec![chute_protocol::Range::one(tag)];
    send_frame(&mut net, conn, Frame::Ack(chute_protocol::Ack { request_id: 3, ranges }));
    let Response::Failed(error) = net.response(conn, 3) else { panic!() };
    assert_eq!(error.code, ErrorCode::UNKNOWN_DELIVERY_TAG);
}

/// A reader paused by backpressure is not timed out for the silence the pause causes.
#[test]
fn paused_connection_is_not_timed_out() {
    let (mut net, conn) = paused_by_unread_replies();
    net.clients.remove(&conn);
    net.advance(60_000);
    assert!(!net.closed_by_broker.contains(&conn), "a paused connection was timed out");
}

/// A connection that sent 5,000 requests and read none of the answers, which made the broker
/// pause reading it.
fn paused_by_unread_replies() -> (Net, chute_core::ConnId) {
    let mut net = Net::with_config(small_frames());
    let conn = net.connect();
    declared(&mut net, conn, "jobs");
    net.stalled.insert(conn);
    for _ in 0..5_000 {
        net.client(conn).queue_stats("jobs").unwrap();
    }
    net.pump();
    assert!(net.broker_log.contains(&Output::PauseRead { conn }));
    (net, conn)
}

fn send_frame(net: &mut Net, conn: chute_core::ConnId, frame: Frame) {
    let mut bytes = bytes::BytesMut::new();
    frame.encode(&mut bytes, 1 << 20).unwrap();
    net.send_raw(conn, &bytes);
}

/// A consumer that stops reading gets no more deliveries than fit the outbound limit (the
/// broker does not buffer without end), yet the broker keeps reading it, so its acks still
/// count; once it catches up, delivery resumes.
#[test]
fn slow_reader_gets_bounded_deliveries_and_resumes() {
    let mut net = Net::with_config(small_frames());
    let producer = net.connect();
    let consumer = net.connect();
    declared(&mut net, producer, "jobs");
    let big = "x".repeat(16 * 1024);
    let payloads: Vec<&str> = (0..20).map(|_| big.as_str()).collect();
    net.publish(producer, "jobs", &payloads);
    net.stalled.insert(consumer);
    net.subscribe_without_wait(consumer, "jobs", 100);
    let backlog = net.unflushed[&consumer];
    assert!(backlog < 64 * 1024 + 20 * 1024, "backlog bounded: {backlog}");
    let paused = net.broker_log.iter().any(|o| *o == Output::PauseRead { conn: consumer });
    assert!(!paused, "a consumer's own deliveries never stop the broker reading its acks");
    net.unstall(consumer);
    let mut received = net.deliveries(consumer).len();
    while received < 20 {
        net.flush(consumer);
        let more = net.deliveries(consumer).len();
        assert!(more > 0, "delivery resumed after flush");
        received += more;
    }
}

/// A client that sends requests but never reads the answers makes the broker stop reading
/// it once a frame's worth past the outbound limit is queued, and read again once it
/// catches up.
#[test]
fn unread_replies_pause_reading() {
    let (mut net, conn) = paused_by_unread_replies();
    let backlog = net.unflushed[&conn];
    assert!(backlog < 3 * 64 * 1024, "backlog bounded: {backlog}");
    net.unstall(conn);
    net.pump();
    assert!(net.broker_log.contains(&Output::ResumeRead { conn }));
}

fn small_frames() -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.limits.frame_size_max = 64 * 1024;
    config.limits.payload_size_max = 32 * 1024;
    config.limits.connection_outbound_bytes_max = 64 * 1024;
    config
}

/// Shutdown closes every connection with `shutting-down` and leaves the broker drained.
#[test]
fn shutdown_closes_everyone() {
    let mut net = Net::new();
    let a = net.connect();
    let b = net.connect();
    net.broker.shutdown(net.now);
    net.pump();
    for conn in [a, b] {
        assert_eq!(net.closed_event(conn).map(|(c, _)| c), Some(ErrorCode::SHUTTING_DOWN));
    }
    assert!(net.broker.is_drained());
}

/// The same inputs give the same outputs, byte for byte.
#[test]
fn broker_is_deterministic() {
    fn run() -> Vec<Output> {
        let mut net = Net::new();
        let conn = net.connect();
        declared(&mut net, conn, "jobs");
        net.publish(conn, "jobs", &["1", "2", "3"]);
        net.subscribe(conn, "jobs", 2);
        net.advance(20_000);
        net.broker_log.clone()
    }
    assert_eq!(run(), run());
}

#[test]
fn heartbeat_frames_are_accepted() {
    let mut net = Net::new();
    let conn = net.connect();
    let mut bytes = bytes::BytesMut::new();
    Frame::Heartbeat(Heartbeat).encode(&mut bytes, 1 << 20).unwrap();
    net.send_raw(conn, &bytes);
    assert!(!net.closed_by_broker.contains(&conn));
}
