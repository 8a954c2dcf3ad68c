//! Queue semantics: retries with backoff, dead letters, leases, breakers, time, limits,
//! ordering, groups, dedup, routing and rate limits.

mod support;

use bytes::Bytes;
use chute_core::client::{ClientEvent, Response};
use chute_core::{BrokerConfig, ConnId, Output};
use chute_protocol::{
    AttemptOutcome, BackoffPolicy, BreakerPolicy, BreakerState, DeadReason, Destination, ErrorCode,
    ExpiryPolicy, OverflowPolicy, PublishMessage, QueueOptions, RateLimit, RateLimitPolicy,
    Schedule,
};
use support::{payload, Net};

const NO_JITTER: BackoffPolicy =
    BackoffPolicy { base_ms: 1_000, factor_percent: 200, max_ms: 60_000, jitter: false };

fn declare(net: &mut Net, conn: ConnId, name: &str, options: QueueOptions) {
    match net.declare(conn, name, options) {
        Response::Declared(_) => {}
        other => panic!("declare {name} failed: {other:?}"),
    }
}

fn publish_with(
    net: &mut Net,
    conn: ConnId,
    destination: Destination,
    message: PublishMessage,
) -> u64 {
    let seq = net.client(conn).publish(&destination, false, message).unwrap();
    net.pump();
    seq
}

fn message(text: &str) -> PublishMessage {
    PublishMessage::new(Bytes::copy_from_slice(text.as_bytes()))
}

fn failures(net: &mut Net, conn: ConnId) -> Vec<chute_protocol::PublishFailure> {
    net.pump();
    net.take_events(conn)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::PublishFailed(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn dlq_list(net: &mut Net, conn: ConnId, queue: &str) -> Vec<chute_protocol::DeadLetterSummary> {
    let request = net.client(conn).dlq_list(queue, None, 100).unwrap();
    match net.response(conn, request) {
        Response::DlqList(list) => list.entries,
        other => panic!("dlq list failed: {other:?}"),
    }
}

fn stats(net: &mut Net, conn: ConnId, queue: &str) -> chute_protocol::QueueStats {
    let request = net.client(conn).queue_stats(queue).unwrap();
    match net.response(conn, request) {
        Response::QueueStats(stats) => *stats,
        other => panic!("stats failed: {other:?}"),
    }
}

// ---- retries and dead letters ----

/// A nack without a delay retries after the queue's backoff: not before, and then with the
/// attempt counted.
#[test]
fn nack_retries_after_backoff() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", QueueOptions { backoff: NO_JITTER, ..QueueOptions::default() });
    net.publish(conn, "jobs", &["a"]);
    net.subscribe(conn, "jobs", 10);
    let first = net.deliveries(conn).remove(0);
    net.client(conn).nack(first.tag, None, None).unwrap();
    net.pump();
    net.advance(999);
    assert!(net.deliveries(conn).is_empty(), "redelivered before the backoff");
    net.advance(1);
    let again = net.deliveries(conn);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(stats(&mut net, conn, "jobs").counters.nacked, 1);
}

/// A poison message reaches the dead-letter queue after `attempts_max`, with the consumer's
/// reason on every attempt.
#[test]
fn poison_message_is_dead_lettered_after_max_attempts() {
    let mut net = Net::new();
    let conn = net.connect();
    let options = QueueOptions {
        attempts_max: Some(3),
        dead_letter: Some("jobs.dlq".into()),
        backoff: BackoffPolicy { base_ms: 0, factor_percent: 100, max_ms: 0, jitter: false },
        ..QueueOptions::default()
    };
    declare(&mut net, conn, "jobs", options);
    net.publish(conn, "jobs", &["poison"]);
    let subscription = net.subscribe(conn, "jobs", 1);
    for attempt in 1..=3 {
        let delivery = net.deliveries(conn).remove(0);
        assert_eq!(delivery.attempt, attempt);
        net.client(conn).nack(delivery.tag, None, Some(format!("bad input #{attempt}"))).unwrap();
        net.client(conn).grant_credit(subscription, 1).unwrap();
    }
    assert!(net.deliveries(conn).is_empty(), "not delivered a fourth time");
    let entries = dlq_list(&mut net, conn, "jobs.dlq");
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!((entry.reason, entry.source_queue.as_str()), (DeadReason::MaxAttempts, "jobs"));
    let reasons: Vec<_> =
        entry.history.iter().map(|h| (h.outcome, h.reason.clone().unwrap())).collect();
    let expected: Vec<_> =
        (1..=3).map(|i| (AttemptOutcome::Nack, format!("bad input #{i}"))).collect();
    assert_eq!(reasons, expected);
}

/// Reject sends the message to the dead-letter queue at once, with the consumer's text.
#[test]
fn reject_dead_letters_with_reason() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(
        &mut net,
        conn,
        "jobs",
        QueueOptions { dead_letter: Some("dlq".into()), ..QueueOptions::default() },
    );
    net.publish(conn, "jobs", &["x"]);
    net.subscribe(conn, "jobs", 1);
    let delivery = net.deliveries(conn).remove(0);
    net.client(conn).reject(delivery.tag, "schema mismatch".into()).unwrap();
    net.pump();
    let entries = dlq_list(&mut net, conn, "dlq");
    assert_eq!(entries[0].reason, DeadReason::Rejected);
    assert_eq!(entries[0].history[0].reason.as_deref(), Some("schema mismatch"));
    assert_eq!(net.broker.queue_depth("jobs"), Some(0));
}

/// Dead letters can be inspected without consuming them and redriven to their source with
/// attempts reset.
#[test]
fn inspect_and_redrive() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(
        &mut net,
        conn,
        "jobs",
        QueueOptions { dead_letter: Some("dlq".into()), ..QueueOptions::default() },
    );
    net.publish(conn, "jobs", &["one", "two"]);
    let subscription = net.subscribe(conn, "jobs", 2);
    for delivery in net.deliveries(conn) {
        net.client(conn).reject(delivery.tag, "no".into()).unwrap();
    }
    net.pump();
    let entries = dlq_list(&mut net, conn, "dlq");
    assert_eq!(entries.len(), 2);
    let request = net.client(conn).dlq_inspect("dlq", entries[1].dead_id).unwrap();
    let Response::DlqInspect(entry) = net.response(conn, request) else { panic!() };
    assert_eq!(&entry.payload[..], b"two");
    assert_eq!(dlq_list(&mut net, conn, "dlq").len(), 2, "inspecting consumes nothing");

    let request = net.client(conn).dlq_redrive("dlq", vec![entries[0].dead_id]).unwrap();
    assert_eq!(net.response(conn, request), Response::Done { count: 1 });
    net.client(conn).grant_credit(subscription, 1).unwrap();
    let back = net.deliveries(conn);
    assert_eq!((payload(&back[0]), back[0].attempt), ("one", 1));
    let request = net.client(conn).dlq_redrive("dlq", Vec::new()).unwrap();
    assert_eq!(net.response(conn, request), Response::Done { count: 1 });
    assert_eq!(net.broker.queue_depth("dlq"), Some(0));
}

/// `redelivered` means "delivered before", across queues: a dead letter's first delivery out
/// of its DLQ is marked, and so is the first delivery after a redrive, whose attempt count
/// starts again while the history of every failed attempt is kept.
#[test]
fn redelivered_and_history_survive_dead_lettering_and_redrive() {
    let mut net = Net::new();
    let conn = net.connect();
    let options = QueueOptions {
        attempts_max: Some(1),
        dead_letter: Some("dlq".into()),
        ..QueueOptions::default()
    };
    declare(&mut net, conn, "jobs", options);
    net.publish(conn, "jobs", &["x"]);
    let jobs = net.subscribe(conn, "jobs", 1);
    let first = net.deliveries(conn).remove(0);
    assert_eq!((first.attempt, first.redelivered), (1, false));
    net.client(conn).nack(first.tag, None, Some("first".into())).unwrap();
    net.pump();

    let dead = dlq_list(&mut net, conn, "dlq").remove(0);
    let from_dlq = net.subscribe(conn, "dlq", 1);
    let in_dlq = net.deliveries(conn).remove(0);
    assert_eq!((in_dlq.attempt, in_dlq.redelivered), (1, true), "out of the DLQ");
    net.client(conn).nack(in_dlq.tag, Some(0), None).unwrap();
    net.client(conn).unsubscribe(from_dlq).unwrap();
    net.pump();

    let request = net.client(conn).dlq_redrive("dlq", vec![dead.dead_id]).unwrap();
    assert_eq!(net.response(conn, request), Response::Done { count: 1 });
    net.client(conn).grant_credit(jobs, 1).unwrap();
    let redriven = net.deliveries(conn).remove(0);
    assert_eq!((redriven.attempt, redriven.redelivered), (1, true), "after a redrive");
    net.client(conn).nack(redriven.tag, None, Some("second".into())).unwrap();
    net.pump();
    let again = dlq_list(&mut net, conn, "dlq").remove(0);
    let reasons: Vec<_> = again.history.iter().filter_map(|h| h.reason.clone()).collect();
    assert_eq!(reasons, ["first", "second"], "the history accumulates");
    assert_eq!(stats(&mut net, conn, "jobs").counters.redelivered, 1);
}

/// A missing dead letter is a specific error.
#[test]
fn inspect_missing_dead_letter_fails() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "dlq", QueueOptions::default());
    let request = net.client(conn).dlq_inspect("dlq", 42).unwrap();
    let Response::Failed(error) = net.response(conn, request) else { panic!() };
    assert_eq!(error.code, ErrorCode::NO_SUCH_DEAD_LETTER);
}

// ---- leases ----

/// An unsettled delivery's lease runs out: a failed attempt (`timeout`), retried.
#[test]
fn lease_expiry_counts_as_failed_attempt() {
    let mut net = Net::new();
    let conn = net.connect();
    let options = QueueOptions { lease_ms: 1_000, backoff: NO_JITTER, ..QueueOptions::default() };
    declare(&mut net, conn, "jobs", options);
    net.publish(conn, "jobs", &["slow"]);
    let subscription = net.subscribe(conn, "jobs", 2);
    let first = net.deliveries(conn).remove(0);
    net.advance(1_000); // lease runs out
    net.advance(1_000); // backoff of the first failure
    let again = net.deliveries(conn).remove(0);
    assert_eq!((again.attempt, again.redelivered), (2, true));
    assert_ne!(again.tag, first.tag);
    assert_eq!(stats(&mut net, conn, "jobs").counters.timed_out, 1);
    // The late ack of the timed-out delivery is harmless.
    net.client(conn).grant_credit(subscription, 0).unwrap();
}

/// Touch extends a lease, so a slow consumer keeps its delivery.
#[test]
fn touch_extends_lease() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", QueueOptions { lease_ms: 1_000, ..QueueOptions::default() });
    net.publish(conn, "jobs", &["slow"]);
    net.subscribe(conn, "jobs", 2);
    let delivery = net.deliveries(conn).remove(0);
    for _ in 0..5 {
        net.advance(900);
        net.client(conn).touch(delivery.tag, None).unwrap();
        net.pump();
    }
    assert_eq!(stats(&mut net, conn, "jobs").counters.timed_out, 0);
    net.client(conn).ack(delivery.tag).unwrap();
    net.pump();
    assert_eq!(net.broker.queue_depth("jobs"), Some(0));
}

/// A connection's leases share one timer: a delivery settled early leaves it armed too early,
/// and it must re-arm for the delivery still held, which then runs out on time, not before.
#[test]
fn a_lease_runs_out_on_time_after_an_earlier_one_was_settled() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", QueueOptions { lease_ms: 1_000, ..QueueOptions::default() });
    net.subscribe(conn, "jobs", 10);
    net.publish(conn, "jobs", &["early"]);
    let early = net.deliveries(conn).remove(0);
    net.advance(500);
    net.publish(conn, "jobs", &["held"]);
    assert_eq!(net.deliveries(conn).len(), 1);
    net.client(conn).ack(early.tag).unwrap();
    net.pump();
    net.advance(600); // the early lease's moment has passed; the held one has 400 ms left
    assert_eq!(stats(&mut net, conn, "jobs").counters.timed_out, 0);
    net.advance(400);
    assert_eq!(stats(&mut net, conn, "jobs").counters.timed_out, 1);
}

/// A touch may shorten a lease: it then runs out at the shorter time.
#[test]
fn touch_with_a_shorter_lease_brings_the_timeout_forward() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", QueueOptions { lease_ms: 60_000, ..QueueOptions::default() });
    net.publish(conn, "jobs", &["x"]);
    net.subscribe(conn, "jobs", 1);
    let delivery = net.deliveries(conn).remove(0);
    net.client(conn).touch(delivery.tag, Some(100)).unwrap();
    net.pump();
    net.advance(100);
    assert_eq!(stats(&mut net, conn, "jobs").counters.timed_out, 1);
}

/// A subscription's lease overrides the queue's.
#[test]
fn subscription_lease_override() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", QueueOptions { lease_ms: 60_000, ..QueueOptions::default() });
    net.publish(conn, "jobs", &["x"]);
    let (request, _) = net.client(conn).subscribe("jobs", 1, Some(100), false).unwrap();
    net.response(conn, request);
    net.deliveries(conn);
    net.advance(100);
    assert_eq!(stats(&mut net, conn, "jobs").counters.timed_out, 1);
}

// ---- circuit breaker ----

/// After N consecutive failures a consumer stops getting deliveries until the open period is
/// over; then one trial; a success closes the breaker.
#[test]
fn breaker_opens_then_half_opens() {
    let mut net = Net::new();
    let bad = net.connect();
    let options = QueueOptions {
        breaker: Some(BreakerPolicy { failures_max: 2, open_ms: 5_000 }),
        backoff: BackoffPolicy { base_ms: 0, factor_percent: 100, max_ms: 0, jitter: false },
        ..QueueOptions::default()
    };
    declare(&mut net, bad, "jobs", options);
    net.publish(bad, "jobs", &["1", "2", "3", "4"]);
    let (request, _) = net.client(bad).subscribe("jobs", 10, None, true).unwrap();
    net.response(bad, request);
    let first = net.deliveries(bad);
    assert_eq!(first.len(), 4);
    net.client(bad).nack(first[0].tag, Some(0), None).unwrap();
    net.client(bad).nack(first[1].tag, Some(0), None).unwrap();
    net.pump();
    let consumers = stats(&mut net, bad, "jobs").consumers;
    assert!(
        matches!(consumers[0].breaker, BreakerState::Open { .. }),
        "{:?}",
        consumers[0].breaker
    );
    assert!(net.deliveries(bad).is_empty(), "no deliveries while open");
    assert_eq!(health(&net, "jobs").breakers_open, 1);
    net.advance(5_000);
    assert_eq!(health(&net, "jobs").breakers_open, 0, "half-open is not open");
    let trial = net.deliveries(bad);
    assert_eq!(trial.len(), 1, "half-open admits one");
    net.client(bad).ack(trial[0].tag).unwrap();
    net.pump();
    assert_eq!(net.deliveries(bad).len(), 1, "closed again: the rest flows");
}

// ---- time ----

/// A delayed message is not delivered before its time, and is then.
#[test]
fn delayed_message_is_not_delivered_early() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", QueueOptions::default());
    let mut later = message("later");
    later.schedule = Some(Schedule::DelayMs(5_000));
    publish_with(&mut net, conn, Destination::Queue("jobs".into()), later);
    net.publish(conn, "jobs", &["now"]);
    net.subscribe(conn, "jobs", 10);
    assert_eq!(payload(&net.deliveries(conn)[0]), "now");
    assert_eq!(stats(&mut net, conn, "jobs").delayed, 1);
    net.advance(4_999);
    assert!(net.deliveries(conn).is_empty());
    net.advance(1);
    assert_eq!(payload(&net.deliveries(conn)[0]), "later");
}

/// Messages whose TTL runs out are dead-lettered with reason `expired`, ready or delayed.
#[test]
fn expired_messages_are_dead_lettered() {
    let mut net = Net::new();
    let conn = net.connect();
    let options = QueueOptions {
        ttl_ms: Some(1_000),
        dead_letter: Some("dlq".into()),
        ..QueueOptions::default()
    };
    declare(&mut net, conn, "jobs", options);
    net.publish(conn, "jobs", &["old"]);
    let mut delayed = message("delayed-too-long");
    delayed.schedule = Some(Schedule::DelayMs(5_000));
    publish_with(&mut net, conn, Destination::Queue("jobs".into()), delayed);
    net.advance(1_000);
    let entries = dlq_list(&mut net, conn, "dlq");
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.reason == DeadReason::Expired));
    assert_eq!(stats(&mut net, conn, "jobs").counters.expired, 2);
}

/// A per-message TTL overrides the queue's; the drop policy drops rather than dead-letters.
#[test]
fn message_ttl_and_drop_policy() {
    let mut net = Net::new();
    let conn = net.connect();
    let options = QueueOptions {
        expiry: ExpiryPolicy::Drop,
        dead_letter: Some("dlq".into()),
        ..QueueOptions::default()
    };
    declare(&mut net, conn, "jobs", options);
    let mut short = message("short");
    short.ttl_ms = Some(100);
    publish_with(&mut net, conn, Destination::Queue("jobs".into()), short);
    net.publish(conn, "jobs", &["forever"]);
    net.advance(100);
    assert_eq!(net.broker.queue_depth("jobs"), Some(1));
    assert!(dlq_list(&mut net, conn, "dlq").is_empty());
    assert_eq!(stats(&mut net, conn, "jobs").counters.dropped, 1);
}

// ---- limits ----

/// With `drop-head`, a full queue makes room by dead-lettering its oldest message.
#[test]
fn drop_head_dead_letters_the_oldest() {
    let mut net = Net::new();
    let conn = net.connect();
    let options = QueueOptions {
        messages_max: Some(2),
        overflow: OverflowPolicy::DropHead,
        dead_letter: Some("dlq".into()),
        ..QueueOptions::default()
    };
    declare(&mut net, conn, "jobs", options);
    net.publish(conn, "jobs", &["1", "2", "3"]);
    assert_eq!(net.confirmed(conn), vec![1, 2, 3]);
    let entries = dlq_list(&mut net, conn, "dlq");
    assert_eq!((entries.len(), entries[0].reason), (1, DeadReason::Overflow));
    net.subscribe(conn, "jobs", 10);
    let left: Vec<String> = net.deliveries(conn).iter().map(|d| payload(d).to_string()).collect();
    assert_eq!(left, ["2", "3"]);
}

/// A byte limit refuses a publish that would pass it.
#[test]
fn bytes_max_refuses() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(
        &mut net,
        conn,
        "jobs",
        QueueOptions { bytes_max: Some(10), ..QueueOptions::default() },
    );
    net.publish(conn, "jobs", &["12345", "123456"]);
    let failures = failures(&mut net, conn);
    assert_eq!((failures.len(), failures[0].seq, failures[0].code), (1, 2, ErrorCode::QUEUE_FULL));
    let refusals = health(&net, "jobs").refusals;
    assert_eq!((refusals.queue_full, refusals.rate_limited), (1, 0));
}

/// The queue's health (for alert rules), as the broker's snapshot reports it.
fn health(net: &Net, queue: &str) -> chute_core::broker::QueueHealth {
    let stats = net.broker.stats();
    let index = stats.queues.iter().position(|q| q.name == queue).expect("the queue exists");
    stats.queue_health[index]
}

/// The snapshot knows when the oldest ready message was published, whatever its priority,
/// and forgets it once nothing is ready.
#[test]
fn oldest_ready_is_reported_across_priorities() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", QueueOptions::default());
    assert_eq!(health(&net, "jobs").oldest_ready_published_unix_ms, None);
    let epoch_unix_ms = BrokerConfig::default().epoch_unix_ms;
    net.advance(1_000);
    publish_with(&mut net, conn, Destination::Queue("jobs".into()), message("low"));
    net.advance(1_000);
    let high = PublishMessage { priority: 5, ..message("high") };
    publish_with(&mut net, conn, Destination::Queue("jobs".into()), high);
    let oldest = health(&net, "jobs").oldest_ready_published_unix_ms;
    assert_eq!(oldest, Some(epoch_unix_ms + 1_000), "the low-priority message is the older");
    // The alert rules' snapshot measures ages to the driver's `now`, which moves on while the
    // broker, with no input, stays at 2 s.
    let snapshot =
        net.broker.alert_snapshot(chute_core::Instant::from_millis(60_000), Default::default());
    assert_eq!(snapshot.unix_ms, epoch_unix_ms + 60_000);
    assert_eq!(
        (snapshot.queues[0].ready, snapshot.queues[0].oldest_ready_age_ms),
        (2, Some(59_000))
    );
    net.subscribe(conn, "jobs", 1);
    let first = net.deliveries(conn);
    assert_eq!(payload(&first[0]), "high");
    assert_eq!(health(&net, "jobs").oldest_ready_published_unix_ms, Some(epoch_unix_ms + 1_000));
    net.subscribe(conn, "jobs", 1);
    assert_eq!(payload(&net.deliveries(conn)[0]), "low");
    assert_eq!(health(&net, "jobs").oldest_ready_published_unix_ms, None, "nothing ready");
    assert_eq!(health(&net, "jobs").consumers, 2);
}

// ---- ordering ----

/// Higher priorities first, FIFO within a priority.
#[test]
fn priorities_then_fifo() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", QueueOptions::default());
    for (text, priority) in [("low-1", 0), ("high-1", 9), ("mid", 5), ("high-2", 9), ("low-2", 0)] {
        let mut m = message(text);
        m.priority = priority;
        publish_with(&mut net, conn, Destination::Queue("jobs".into()), m);
    }
    net.subscribe(conn, "jobs", 10);
    let order: Vec<String> = net.deliveries(conn).iter().map(|d| payload(d).to_string()).collect();
    assert_eq!(order, ["high-1", "high-2", "mid", "low-1", "low-2"]);
}

/// One message per group at a time, in order; other groups flow meanwhile.
#[test]
fn groups_deliver_one_at_a_time_in_order() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", QueueOptions::default());
    for (text, group) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("a3", "a"), ("b2", "b")] {
        let mut m = message(text);
        m.group = Some(group.into());
        publish_with(&mut net, conn, Destination::Queue("jobs".into()), m);
    }
    net.subscribe(conn, "jobs", 10);
    let first: Vec<_> = net.deliveries(conn);
    let texts: Vec<&str> = first.iter().map(payload).collect();
    assert_eq!(texts, ["a1", "b1"]);
    assert_eq!(stats(&mut net, conn, "jobs").group_blocked, 3);
    net.client(conn).ack(first[0].tag).unwrap();
    let next: Vec<String> = net.deliveries(conn).iter().map(|d| payload(d).to_string()).collect();
    assert_eq!(next, ["a2"]);
}

// ---- dedup ----

/// A publish whose id was seen within the window is confirmed and not stored again.
#[test]
fn duplicate_ids_are_confirmed_not_stored() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(
        &mut net,
        conn,
        "jobs",
        QueueOptions { dedup_window_ms: Some(10_000), ..QueueOptions::default() },
    );
    for _ in 0..3 {
        let mut m = message("once");
        m.id = Some("order-7".into());
        publish_with(&mut net, conn, Destination::Queue("jobs".into()), m);
    }
    assert_eq!(net.confirmed(conn), vec![1, 2, 3]);
    assert_eq!(net.broker.queue_depth("jobs"), Some(1));
    assert_eq!(stats(&mut net, conn, "jobs").counters.deduplicated, 2);
    net.advance(10_000);
    let mut m = message("again");
    m.id = Some("order-7".into());
    publish_with(&mut net, conn, Destination::Queue("jobs".into()), m);
    assert_eq!(net.broker.queue_depth("jobs"), Some(2), "the window closed");
}

// ---- routing ----

/// Topics are copied to every queue bound with a matching pattern.
#[test]
fn topic_fans_out_to_matching_bindings() {
    let mut net = Net::new();
    let conn = net.connect();
    for name in ["all", "eu", "orders-created"] {
        declare(&mut net, conn, name, QueueOptions::default());
    }
    for (queue, pattern) in
        [("all", "#"), ("eu", "orders.eu.*"), ("orders-created", "orders.*.created")]
    {
        let request = net.client(conn).bind(queue, pattern).unwrap();
        assert_eq!(net.response(conn, request), Response::Done { count: 0 });
    }
    publish_with(&mut net, conn, Destination::Topic("orders.eu.created".into()), message("x"));
    publish_with(&mut net, conn, Destination::Topic("orders.us.created".into()), message("y"));
    publish_with(&mut net, conn, Destination::Topic("audit".into()), message("z"));
    assert_eq!(net.confirmed(conn), vec![1, 2, 3]);
    assert_eq!(net.broker.queue_depth("all"), Some(3));
    assert_eq!(net.broker.queue_depth("eu"), Some(1));
    assert_eq!(net.broker.queue_depth("orders-created"), Some(2));
    assert_eq!(stats(&mut net, conn, "eu").bindings, ["orders.eu.*"]);
}

/// A mandatory publish that matches nothing fails with `unroutable`; otherwise it is
/// confirmed and dropped.
#[test]
fn unroutable_publishes() {
    let mut net = Net::new();
    let conn = net.connect();
    let destination = Destination::Topic("nobody.listens".into());
    net.client(conn).publish(&destination, true, message("a")).unwrap();
    net.client(conn).publish(&destination, false, message("b")).unwrap();
    net.pump();
    let events = net.take_events(conn);
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::PublishFailed(f) => Some((f.seq, f.code)),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [(1, ErrorCode::UNROUTABLE)]);
    assert!(events.iter().any(|e| matches!(e, ClientEvent::Confirmed(r) if r.first == 2)));
}

/// Bad patterns are refused.
#[test]
fn bad_binding_pattern_is_refused() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "q", QueueOptions::default());
    let request = net.client(conn).bind("q", "a.b#").unwrap();
    let Response::Failed(error) = net.response(conn, request) else { panic!() };
    assert_eq!(error.code, ErrorCode::INVALID_ARGUMENT);
}

// ---- rate limits ----

/// With the reject policy, publishes beyond the bucket fail with a retriable error that says
/// when to retry.
#[test]
fn rate_limit_reject_says_when_to_retry() {
    let mut net = Net::new();
    let conn = net.connect();
    let rate = RateLimit { per_second: 10, burst: 2, policy: RateLimitPolicy::Reject };
    declare(
        &mut net,
        conn,
        "jobs",
        QueueOptions { publish_rate: Some(rate), ..QueueOptions::default() },
    );
    net.publish(conn, "jobs", &["1", "2", "3"]);
    let failures = failures(&mut net, conn);
    assert_eq!(failures.len(), 1);
    assert_eq!((failures[0].seq, failures[0].code), (3, ErrorCode::RATE_LIMITED));
    assert!(failures[0].code.is_retriable());
    assert_eq!(failures[0].retry_after_ms, 100);
    let refusals = health(&net, "jobs").refusals;
    assert_eq!((refusals.queue_full, refusals.rate_limited), (0, 1));
    net.advance(100);
    net.publish(conn, "jobs", &["4"]);
    assert!(self::failures(&mut net, conn).is_empty());
}

/// With the pause policy, the broker stops reading the publisher until the bucket refills.
#[test]
fn rate_limit_pause_stops_reading() {
    let mut config = BrokerConfig::default();
    config.limits.connection_publish_rate =
        Some(RateLimit { per_second: 100, burst: 10, policy: RateLimitPolicy::Pause });
    let mut net = Net::with_config(config);
    let conn = net.connect();
    declare(&mut net, conn, "jobs", QueueOptions::default());
    net.publish(conn, "jobs", &["m"; 20]);
    assert!(net.broker_log.contains(&Output::PauseRead { conn }));
    net.advance(100);
    assert!(net.broker_log.contains(&Output::ResumeRead { conn }));
    assert_eq!(net.confirmed(conn).len(), 20, "paused, not refused");
}

fn paced_queue(per_second: u32, burst: u32) -> QueueOptions {
    let rate = RateLimit { per_second, burst, policy: RateLimitPolicy::Pause };
    QueueOptions { publish_rate: Some(rate), ..QueueOptions::default() }
}

/// A queue's `pause` rate holds within one large batch: beyond the burst, messages wait for
/// their tokens and are confirmed at the rate, not all at once.
#[test]
fn a_pause_rate_holds_within_a_large_batch() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", paced_queue(10, 10));
    let messages: Vec<PublishMessage> = (0..500).map(|_| message("m")).collect();
    let destination = Destination::Queue("jobs".into());
    for message in messages {
        net.client(conn).publish(&destination, false, message).unwrap();
    }
    net.pump();
    assert_eq!(net.confirmed(conn).len(), 10, "the burst, and no more");
    net.advance(1_000);
    assert_eq!(net.confirmed(conn).len(), 10, "ten a second");
    net.advance(49_000);
    assert_eq!(net.confirmed(conn).len(), 480);
    assert_eq!(net.broker.queue_depth("jobs"), Some(500));
}

/// The rate holds across connections: every publisher to the queue draws on one bucket, and
/// those without a token wait.
#[test]
fn a_pause_rate_holds_across_connections() {
    let mut net = Net::new();
    let conns: Vec<ConnId> = (0..20).map(|_| net.connect()).collect();
    declare(&mut net, conns[0], "jobs", paced_queue(100, 10));
    for conn in &conns {
        net.publish(*conn, "jobs", &["m"; 5]);
    }
    assert_eq!(net.broker.queue_depth("jobs"), Some(10));
    net.advance(500);
    assert_eq!(net.broker.queue_depth("jobs"), Some(60));
    net.advance(500);
    assert_eq!(net.broker.queue_depth("jobs"), Some(100));
    let confirmed: usize = conns.iter().map(|c| net.confirmed(*c).len()).sum();
    assert_eq!(confirmed, 100, "waited, not refused");
}

/// A subscription's delivery rate caps how fast it receives.
#[test]
fn consumer_delivery_rate() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", QueueOptions::default());
    net.publish(conn, "jobs", &["m"; 10]);
    let rate = RateLimit { per_second: 10, burst: 2, policy: RateLimitPolicy::Pause };
    let options = chute_core::client::SubscriptionOptions {
        credit: 100,
        lease_ms: None,
        rate: Some(rate),
        auto_credit: false,
    };
    let (request, _) = net.client(conn).subscribe_with("jobs", options).unwrap();
    net.response(conn, request);
    assert_eq!(net.deliveries(conn).len(), 2);
    net.advance(500);
    assert_eq!(net.deliveries(conn).len(), 5);
}

// ---- durability of it all ----

/// Dead letters, histories, delayed messages, bindings and dedup windows survive a restart.
#[test]
fn semantics_survive_restart() {
    let mut net = Net::new();
    let conn = net.connect();
    let options = QueueOptions {
        dead_letter: Some("dlq".into()),
        dedup_window_ms: Some(60_000),
        ..QueueOptions::default()
    };
    declare(&mut net, conn, "jobs", options);
    let request = net.client(conn).bind("jobs", "work.#").unwrap();
    net.response(conn, request);
    let mut delayed = message("delayed");
    delayed.schedule = Some(Schedule::DelayMs(3_600_000));
    publish_with(&mut net, conn, Destination::Queue("jobs".into()), delayed);
    let mut once = message("once");
    once.id = Some("id-1".into());
    publish_with(&mut net, conn, Destination::Topic("work.a".into()), once);
    net.subscribe(conn, "jobs", 1);
    let delivery = net.deliveries(conn).remove(0);
    net.client(conn).reject(delivery.tag, "broken".into()).unwrap();
    net.pump();
    net.advance(100);

    let files = net.disk.after_process_crash();
    let (mut net, _) = Net::recovered(BrokerConfig::default(), &files);
    let conn = net.connect();
    let entries = dlq_list(&mut net, conn, "dlq");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].history[0].reason.as_deref(), Some("broken"));
    assert_eq!(stats(&mut net, conn, "jobs").delayed, 1);
    let mut again = message("once again");
    again.id = Some("id-1".into());
    publish_with(&mut net, conn, Destination::Topic("work.b".into()), again);
    assert_eq!(
        net.broker.queue_depth("jobs"),
        Some(1),
        "routed by the recovered binding, deduplicated"
    );
}
