//! Queue semantics through the real binaries and the `chute` CLI: dead letters that keep the
//! consumer's reasons, redrive, delayed delivery, message groups under concurrent consumers,
//! overflow and expiry, topics, and every `queue declare` flag. Each test runs against both
//! `chuted` (tokio) and `chuted-smol`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use chute_client::{Connection, Destination, PublishMessage, QueueOptions, SubscribeOptions};
use chute_tests::{chute, stderr, stdout, Server, ServerBinary};
use futures::executor::block_on;
use futures::StreamExt;
use serde_json::{json, Value};

/// Runs a scenario once per server binary, as two tests named after it.
macro_rules! against_both_servers {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn tokio() {
                super::$scenario(chute_tests::ServerBinary::Tokio);
            }

            #[test]
            fn smol() {
                super::$scenario(chute_tests::ServerBinary::Smol);
            }
        }
    )*};
}

against_both_servers!(
    poison_message_is_dead_lettered_with_every_reason,
    redrive_returns_dead_letters_with_attempts_reset,
    reject_dead_letters_at_once,
    delayed_message_is_not_delivered_early,
    groups_keep_per_key_order_with_four_consumers,
    overflow_and_expiry_dead_letter_with_their_reason,
    topics_copy_to_bound_queues,
    declare_sets_every_option,
    consume_quiet_settles_without_printing,
);

/// How long to wait for something another connection caused to become visible.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

const REASON: &str = "cannot parse order: unexpected byte 0xff";

// ---- dead letters -------------------------------------------------------------------------

/// A message nacked `--max-attempts` times lands in the dead-letter queue with reason
/// `max-attempts` and one history entry per attempt, each with the consumer's reason text. The
/// DLQ can be listed through the source queue or by its own name.
fn poison_message_is_dead_lettered_with_every_reason(binary: ServerBinary) {
    let server = Server::start(binary);
    declare_poison_queue(&server);
    ok(&server, &["publish", "orders", "poison", "--id", "order-17"]);

    let deliveries = nack_all(&server, 3);
    let attempts: Vec<&Value> = deliveries.iter().map(|d| &d["attempt"]).collect();
    assert_eq!(attempts, [1, 2, 3], "one delivery per attempt: {deliveries:?}");

    let listed = dead_letters(&server, "orders", 1);
    let entry = &listed[0];
    assert_eq!(entry["reason"], "max-attempts", "{entry}");
    assert_eq!(entry["message_id"], "order-17", "{entry}");
    assert_eq!(entry["source_queue"], "orders", "{entry}");
    assert_eq!(entry["payload_len"], 6, "{entry}");
    let history = entry["history"].as_array().expect("history");
    assert_eq!(history.len(), 3, "one record per attempt: {entry}");
    for attempt in history {
        assert_eq!((&attempt["outcome"], &attempt["reason"]), (&json!("nack"), &json!(REASON)));
        assert!(attempt["at_unix_ms"].as_u64().unwrap() <= entry["dead_unix_ms"].as_u64().unwrap());
    }

    let by_dlq_name = json_lines(&ok(&server, &["dlq", "list", "orders.dead", "--json"]));
    assert_eq!(by_dlq_name, listed, "the DLQ lists the same through its own name");

    let dead_id = entry["dead_id"].to_string();
    let shown = stdout(&ok(&server, &["dlq", "show", "orders", &dead_id]));
    assert!(shown.contains("max-attempts") && shown.contains(REASON), "{shown}");
    assert!(shown.trim_end().ends_with("poison"), "the payload is printed as text: {shown}");
    let shown = json_lines(&ok(&server, &["dlq", "show", "orders", &dead_id, "--json"]));
    assert_eq!((&shown[0]["payload"], &shown[0]["history"]), (&json!("poison"), &entry["history"]));

    let stats = queue_stats(&server, "orders");
    assert_eq!((&stats["ready"], &stats["in_flight"]), (&json!(0), &json!(0)), "{stats}");
    let counters = &stats["counters"];
    assert_eq!((&counters["nacked"], &counters["dead_lettered"]), (&json!(3), &json!(1)));
    assert!(server.stop().success());
}

/// Redrive by id moves just that dead letter back; redrive without ids moves the rest. A
/// redriven message is delivered again as attempt 1.
fn redrive_returns_dead_letters_with_attempts_reset(binary: ServerBinary) {
    let server = Server::start(binary);
    declare_poison_queue(&server);
    ok_with(&server, &["publish", "orders"], Some("first\nsecond\n"));
    assert_eq!(nack_all(&server, 6).len(), 6);
    let listed = dead_letters(&server, "orders", 2);
    let first_id = listed[0]["dead_id"].to_string();

    let redriven = ok(&server, &["dlq", "redrive", "orders", "--id", &first_id]);
    assert!(stdout(&redriven).starts_with("redriven 1 "), "{}", stdout(&redriven));
    let left = json_lines(&ok(&server, &["dlq", "list", "orders", "--json"]));
    assert_eq!(left, listed[1..], "only the named dead letter left");

    let again = consume_json(&server, &["orders", "--count", "1"]);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["payload"], "first");
    assert_eq!(again[0]["attempt"], 1, "attempts start over: {}", again[0]);

    let rest = ok(&server, &["dlq", "redrive", "orders.dead"]);
    assert!(stdout(&rest).starts_with("redriven 1 "), "{}", stdout(&rest));
    assert_eq!(json_lines(&ok(&server, &["dlq", "list", "orders", "--json"])), Vec::<Value>::new());
    let second = consume_json(&server, &["orders", "--count", "1"]);
    assert_eq!((&second[0]["payload"], &second[0]["attempt"]), (&json!("second"), &json!(1)));
    assert!(server.stop().success());
}

/// `consume --reject --reason` dead-letters on the first delivery, reason `rejected`.
fn reject_dead_letters_at_once(binary: ServerBinary) {
    let server = Server::start(binary);
    declare_poison_queue(&server);
    ok(&server, &["publish", "orders", "bad"]);
    let rejected =
        consume_json(&server, &["orders", "--count", "1", "--reject", "--reason", REASON]);
    assert_eq!(rejected.len(), 1);

    let listed = dead_letters(&server, "orders", 1);
    assert_eq!(listed[0]["reason"], "rejected", "{}", listed[0]);
    let history = &listed[0]["history"];
    assert_eq!(
        history,
        &json!([{ "at_unix_ms": history[0]["at_unix_ms"], "outcome": "reject", "reason": REASON }])
    );
    assert!(server.stop().success());
}

fn declare_poison_queue(server: &Server) {
    ok(
        server,
        &[
            "queue",
            "declare",
            "orders",
            "--max-attempts",
            "3",
            "--backoff-base-ms",
            "0",
            "--backoff-max-ms",
            "0",
            "--dead-letter",
            "orders.dead",
        ],
    );
}

/// Nacks `count` deliveries of `orders` with [`REASON`]; returns them as JSON lines.
fn nack_all(server: &Server, count: u64) -> Vec<Value> {
    let count = count.to_string();
    consume_json(server, &["orders", "--count", &count, "--nack", "--reason", REASON])
}

/// The dead letters `chute dlq list QUEUE --json` shows, once there are `expected` of them
/// (a settlement sent on one connection may be seen a moment later on another).
fn dead_letters(server: &Server, queue: &str, expected: usize) -> Vec<Value> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let listed = json_lines(&ok(server, &["dlq", "list", queue, "--json"]));
        if listed.len() >= expected || Instant::now() > deadline {
            assert_eq!(listed.len(), expected, "{listed:?}");
            return listed;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- time ---------------------------------------------------------------------------------

/// A message published with `--delay-ms 1500` is not delivered to a consumer that gives up
/// after 500 ms, and is delivered to one that waits, no earlier than 1.5 s after the publish.
fn delayed_message_is_not_delivered_early(binary: ServerBinary) {
    let server = Server::start(binary);
    ok(&server, &["queue", "declare", "later"]);
    let before_publish = Instant::now();
    ok(&server, &["publish", "later", "wake up", "--delay-ms", "1500"]);

    let stats = queue_stats(&server, "later");
    assert_eq!((&stats["delayed"], &stats["ready"]), (&json!(1), &json!(0)), "{stats}");
    let early = ok(&server, &["consume", "later", "--count", "1", "--wait-ms", "500"]);
    assert_eq!(stdout(&early), "", "delivered before its delay");

    let on_time = ok(&server, &["consume", "later", "--count", "1", "--wait-ms", "10000"]);
    assert_eq!(stdout(&on_time), "wake up\n");
    let waited = before_publish.elapsed();
    assert!(waited >= Duration::from_millis(1500), "delivered after {waited:?}");
    assert!(server.stop().success());
}

// ---- groups -------------------------------------------------------------------------------

const GROUPS: u64 = 5;
const PER_GROUP: u64 = 40;
const CONSUMERS: u64 = 4;

/// What the consumers saw, under one lock.
#[derive(Default)]
struct GroupLog {
    /// Per group, the sequence numbers in delivery order.
    delivered: BTreeMap<u64, Vec<u64>>,
    /// Groups with a delivery being processed right now.
    in_flight: BTreeSet<u64>,
    /// Deliveries of a group that arrived while another of it was unsettled.
    overlaps: Vec<(u64, u64)>,
    /// Deliveries that were not first attempts.
    retries: u64,
    settled: u64,
    consumers_used: BTreeSet<u64>,
}

/// 5 groups of 40 messages, interleaved, consumed by 4 consumers that each hold up to 2
/// deliveries and take a random moment over each: every group's messages are delivered
/// strictly in publish order, never two of one group at once, and the work is shared.
fn groups_keep_per_key_order_with_four_consumers(binary: ServerBinary) {
    let server = Server::start(binary);
    let url = server.url();
    let log = Arc::new(Mutex::new(GroupLog::default()));
    let subscribed = Arc::new(Barrier::new(CONSUMERS as usize + 1));
    let mut connections = Vec::new();
    let mut consumers = Vec::new();
    block_on(async {
        let admin = Connection::connect(&url).await.unwrap();
        admin.declare_queue("groups", QueueOptions::default()).await.unwrap();
    });
    for consumer in 0..CONSUMERS {
        let connection = block_on(Connection::connect(&url)).unwrap();
        connections.push(connection.clone());
        let (log, subscribed) = (log.clone(), subscribed.clone());
        consumers.push(std::thread::spawn(move || {
            block_on(consume_groups(connection, consumer, log, subscribed))
        }));
    }
    subscribed.wait();
    block_on(publish_groups(&url));

    let deadline = Instant::now() + Duration::from_secs(60);
    while log.lock().unwrap().settled < GROUPS * PER_GROUP && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Closing the connections ends the consumers' streams (after sending their last acks).
    for connection in connections {
        block_on(connection.close());
    }
    for consumer in consumers {
        consumer.join().expect("consumer thread");
    }

    let log = log.lock().unwrap();
    assert_eq!(log.settled, GROUPS * PER_GROUP, "not everything was delivered in time");
    assert_eq!(log.overlaps, [], "(group, seq) delivered while its group had one in flight");
    for group in 0..GROUPS {
        let expected: Vec<u64> = (0..PER_GROUP).collect();
        assert_eq!(log.delivered[&group], expected, "group {group} out of order");
    }
    assert_eq!(log.retries, 0);
    assert!(log.consumers_used.len() >= 2, "one consumer took everything");
    assert!(server.stop().success());
}

async fn publish_groups(url: &str) {
    let connection = Connection::connect(url).await.unwrap();
    let destination = Destination::Queue("groups".into());
    let mut confirmations = Vec::new();
    for seq in 0..PER_GROUP {
        for group in 0..GROUPS {
            let mut message = PublishMessage::new(format!("{group}:{seq}").into());
            message.group = Some(format!("g{group}"));
            confirmations.push(connection.publish_message(&destination, message).await.unwrap());
        }
    }
    for confirmation in confirmations {
        confirmation.await.expect("confirmed");
    }
    connection.close().await;
}

async fn consume_groups(
    connection: Connection,
    consumer: u64,
    log: Arc<Mutex<GroupLog>>,
    subscribed: Arc<Barrier>,
) {
    let options = SubscribeOptions { prefetch: 2, ..SubscribeOptions::default() };
    let mut deliveries = connection.subscribe_with("groups", options).await.unwrap();
    subscribed.wait();
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15 ^ (consumer + 1));
    while let Some(delivery) = deliveries.next().await {
        let text = std::str::from_utf8(delivery.payload()).unwrap();
        let (group, seq) = text.split_once(':').unwrap();
        let (group, seq): (u64, u64) = (group.parse().unwrap(), seq.parse().unwrap());
        assert_eq!(delivery.group(), Some(format!("g{group}").as_str()));
        {
            let mut log = log.lock().unwrap();
            if !log.in_flight.insert(group) {
                log.overlaps.push((group, seq));
            }
            log.delivered.entry(group).or_default().push(seq);
            log.retries += u64::from(delivery.attempt() != 1);
            log.consumers_used.insert(consumer);
        }
        std::thread::sleep(Duration::from_micros(random.next() % 3_000));
        // The group leaves the in-flight set before the ack that releases it is sent, so a
        // second delivery of the group can only overlap if the broker broke the rule.
        log.lock().unwrap().in_flight.remove(&group);
        if delivery.ack().is_err() {
            return;
        }
        log.lock().unwrap().settled += 1;
    }
}

/// A tiny PRNG, so each consumer's pauses differ without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

// ---- limits and expiry --------------------------------------------------------------------

/// With `--max-messages 2 --overflow drop-head`, a third publish dead-letters the oldest
/// message (reason `overflow`); a message past its `--ttl-ms` is dead-lettered as `expired`.
fn overflow_and_expiry_dead_letter_with_their_reason(binary: ServerBinary) {
    let server = Server::start(binary);
    ok(
        &server,
        &[
            "queue",
            "declare",
            "small",
            "--max-messages",
            "2",
            "--overflow",
            "drop-head",
            "--dead-letter",
            "small.dead",
        ],
    );
    ok_with(&server, &["publish", "small"], Some("one\ntwo\nthree\n"));
    let dropped = dead_letters(&server, "small", 1);
    assert_eq!(dropped[0]["reason"], "overflow", "{}", dropped[0]);
    let dead_id = dropped[0]["dead_id"].to_string();
    let shown = json_lines(&ok(&server, &["dlq", "show", "small.dead", &dead_id, "--json"]));
    assert_eq!(shown[0]["payload"], "one", "the oldest made room");
    assert_eq!(queue_stats(&server, "small")["ready"], 2);

    ok(&server, &["consume", "small", "--count", "2"]);
    ok(&server, &["publish", "small", "short-lived", "--ttl-ms", "100"]);
    let listed = dead_letters(&server, "small", 2);
    assert_eq!(listed[1]["reason"], "expired", "{}", listed[1]);
    assert!(server.stop().success());
}

/// `chute consume --count N --quiet` takes N messages and acks them, printing nothing (the
/// way `bench/backlog.sh` times a drain); what it did not take stays queued.
fn consume_quiet_settles_without_printing(binary: ServerBinary) {
    let server = Server::start(binary);
    ok(&server, &["queue", "declare", "drain"]);
    ok(&server, &["publish", "drain", "--count", "5", "--size", "64"]);
    let consumed = ok(&server, &["consume", "drain", "--count", "3", "--quiet"]);
    assert_eq!(stdout(&consumed), "", "--quiet prints nothing");
    let stats = queue_stats(&server, "drain");
    assert_eq!(stats["ready"], 2, "{stats}");
    assert_eq!(stats["in_flight"], 0, "each one taken is acked: {stats}");
    assert!(server.stop().success());
}

// ---- routing ------------------------------------------------------------------------------

/// A topic publish is copied to every queue whose binding matches; `--mandatory` refuses a
/// publish that matches nothing, and without it that publish is confirmed and dropped.
fn topics_copy_to_bound_queues(binary: ServerBinary) {
    let server = Server::start(binary);
    for queue in ["eu", "all"] {
        ok(&server, &["queue", "declare", queue]);
    }
    ok(&server, &["queue", "bind", "eu", "orders.eu.*"]);
    ok(&server, &["queue", "bind", "all", "orders.#"]);
    ok(&server, &["publish", "--topic", "orders.eu.created", "order 1", "--group", "c-9"]);
    ok(&server, &["publish", "--topic", "orders.us.created", "order 2"]);

    let eu = consume_json(&server, &["eu", "--count", "2", "--wait-ms", "1000"]);
    assert_eq!(eu.len(), 1, "{eu:?}");
    assert_eq!((&eu[0]["topic"], &eu[0]["group"]), (&json!("orders.eu.created"), &json!("c-9")));
    let all = consume_json(&server, &["all", "--count", "2"]);
    let payloads: Vec<&Value> = all.iter().map(|d| &d["payload"]).collect();
    assert_eq!(payloads, ["order 1", "order 2"]);
    assert_eq!(queue_stats(&server, "all")["bindings"], json!(["orders.#"]));
    ok(&server, &["queue", "unbind", "eu", "orders.eu.*"]);
    let unroutable =
        chute(&server, &["publish", "--topic", "orders.eu.x", "y", "--mandatory"], None);
    assert!(unroutable.status.success(), "orders.# still matches: {}", stderr(&unroutable));
    let nowhere = chute(&server, &["publish", "--topic", "audit.x", "y", "--mandatory"], None);
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(stderr(&nowhere).contains("unroutable"), "{}", stderr(&nowhere));
    ok(&server, &["publish", "--topic", "audit.x", "dropped"]);
    assert_eq!(queue_stats(&server, "all")["counters"]["published"], 3);
    assert!(server.stop().success());
}

// ---- declare ------------------------------------------------------------------------------

/// Every flag of `queue declare` reaches the broker: `queue stats --json` shows the options.
/// Declaring again with the same flags is fine; with different ones it fails with the reason.
fn declare_sets_every_option(binary: ServerBinary) {
    let server = Server::start(binary);
    let flags = [
        "--durability",
        "interval",
        "--sync-interval-ms",
        "25",
        "--max-messages",
        "1000",
        "--max-bytes",
        "65536",
        "--overflow",
        "drop-head",
        "--ttl-ms",
        "60000",
        "--expiry",
        "drop",
        "--dead-letter",
        "tuned.dead",
        "--max-attempts",
        "5",
        "--backoff-base-ms",
        "10",
        "--backoff-max-ms",
        "2000",
        "--backoff-factor-percent",
        "300",
        "--no-jitter",
        "--lease-ms",
        "4000",
        "--dedup-window-ms",
        "9000",
        "--publish-rate",
        "500",
        "--publish-burst",
        "50",
        "--publish-rate-policy",
        "reject",
        "--breaker-failures",
        "3",
        "--breaker-open-ms",
        "750",
    ];
    let declare: Vec<&str> = ["queue", "declare", "tuned"].iter().chain(&flags).copied().collect();
    assert_eq!(stdout(&ok(&server, &declare)), "created tuned\n");

    let options = &queue_stats(&server, "tuned")["options"];
    let expected = json!({
        "durability": "interval",
        "sync_interval_ms": 25,
        "messages_max": 1000,
        "bytes_max": 65536,
        "overflow": "drop-head",
        "ttl_ms": 60000,
        "expiry": "drop",
        "dead_letter": "tuned.dead",
        "attempts_max": 5,
        "backoff": { "base_ms": 10, "factor_percent": 300, "jitter": false, "max_ms": 2000 },
        "lease_ms": 4000,
        "dedup_window_ms": 9000,
        "publish_rate": { "burst": 50, "per_second": 500, "policy": "reject" },
        "breaker": { "failures_max": 3, "open_ms": 750 },
    });
    assert_eq!(options, &expected);
    let dead = queue_stats(&server, "tuned.dead");
    assert_eq!(dead["options"]["dead_letter"], Value::Null, "the DLQ is created with defaults");

    assert_eq!(stdout(&ok(&server, &declare)), "exists tuned\n");
    let mismatch = chute(&server, &["queue", "declare", "tuned", "--max-attempts", "6"], None);
    assert_eq!(mismatch.status.code(), Some(1));
    assert!(stderr(&mismatch).contains("different options"), "{}", stderr(&mismatch));
    let bad = chute(&server, &["queue", "declare", "bad", "--durability", "interval"], None);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(stderr(&bad).lines().count(), 1, "{}", stderr(&bad));
    assert!(server.stop().success());
}

// ---- helpers ------------------------------------------------------------------------------

/// Runs the CLI and insists it succeeds.
fn ok(server: &Server, args: &[&str]) -> Output {
    ok_with(server, args, None)
}

fn ok_with(server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    let output = chute(server, args, stdin);
    assert!(output.status.success(), "chute {args:?} failed: {}", stderr(&output));
    output
}

/// `chute consume ... --json`, with a generous `--wait-ms` unless one is given, so a test
/// that would hang fails instead; returns one JSON value per delivery.
fn consume_json(server: &Server, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["consume", "--json"];
    full.extend_from_slice(args);
    if !args.contains(&"--wait-ms") {
        full.extend_from_slice(&["--wait-ms", "20000"]);
    }
    json_lines(&ok(server, &full))
}

fn queue_stats(server: &Server, queue: &str) -> Value {
    let mut stats = json_lines(&ok(server, &["queue", "stats", queue, "--json"]));
    assert_eq!(stats.len(), 1, "one object");
    stats.remove(0)
}

/// One JSON value per line of the command's output.
fn json_lines(output: &Output) -> Vec<Value> {
    let text = stdout(output);
    let parse = |line: &str| {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e} in output line {line:?}"))
    };
    text.lines().map(parse).collect()
}
