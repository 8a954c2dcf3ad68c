//! The payload cache (docs/STORAGE.md §17): payloads of queued messages beyond
//! `storage.payload_cache_bytes` leave memory once durable and are read back, in order, when a
//! consumer with credit reaches them; a failed or corrupt read halts the broker.

mod support;

use bytes::Bytes;
use chute_core::client::Response;
use chute_core::storage::failure::OsError;
use chute_core::storage::format::scan_segment;
use chute_core::storage::io::{ReadId, StorageDone, StorageRequest};
use chute_core::storage::records::Record;
use chute_core::{BrokerConfig, ConnId, Input};
use chute_protocol::QueueOptions;
use support::{payload, small_segments, Net};

/// 100-byte payloads that say which message they are.
fn payloads(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{i:>6}{}", "x".repeat(94))).collect()
}

fn tiny_cache(cache_bytes: u64) -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.storage.payload_cache_bytes = cache_bytes;
    config
}

/// A net with queue `jobs` holding `count` published (and confirmed) messages.
fn with_backlog(config: BrokerConfig, count: usize) -> (Net, ConnId, Vec<String>) {
    let mut net = Net::with_config(config);
    let conn = net.connect();
    let declared = net.declare(conn, "jobs", QueueOptions::default());
    assert!(matches!(declared, Response::Declared(_)));
    let sent = payloads(count);
    let refs: Vec<&str> = sent.iter().map(String::as_str).collect();
    net.publish(conn, "jobs", &refs);
    assert_eq!(net.confirmed(conn).len(), count);
    (net, conn, sent)
}

fn reads_asked(net: &Net) -> usize {
    net.reads
}

/// Consumes everything on `conn` with `credit` at a time, acking as it goes.
fn consume_all(net: &mut Net, conn: ConnId, credit: u32) -> Vec<String> {
    let subscription = net.subscribe(conn, "jobs", credit);
    let mut got = Vec::new();
    loop {
        let deliveries = net.deliveries(conn);
        if deliveries.is_empty() {
            return got;
        }
        let count = deliveries.len() as u32;
        for delivery in deliveries {
            got.push(payload(&delivery).to_string());
            net.client(conn).ack(delivery.tag).unwrap();
        }
        net.client(conn).grant_credit(subscription, count).unwrap();
        net.pump();
    }
}

/// Beyond the cache, payloads leave memory once synced (the head of the line stays); a
/// consumer then gets every message, complete and in order, through reads.
#[test]
fn a_backlog_beyond_the_cache_is_read_back_in_order() {
    let (mut net, conn, sent) = with_backlog(tiny_cache(1_000), 200);
    let held = net.broker.held_payload_bytes();
    assert!(held <= 1_000, "{held} payload bytes held over a 1000-byte cache");
    assert_eq!(reads_asked(&net), 0, "no consumer, no reads");
    let evicted = net.broker.payload_cache_stats().evicted_bytes_total;
    assert!(evicted >= 200 * 100 - 1_000, "{evicted} bytes evicted");
    let got = consume_all(&mut net, conn, 7);
    assert_eq!(got, sent);
    assert!(reads_asked(&net) > 0, "the backlog came back through reads");
    assert!(reads_asked(&net) < 200 / 2, "reads batch consecutive records");
    assert_eq!(net.broker.held_payload_bytes(), 0);
    let stats = net.broker.stats().payload_cache;
    assert_eq!(stats.reads_total, reads_asked(&net) as u64, "operators see every read");
    assert!(stats.read_bytes_total >= evicted, "the reads spanned every evicted payload");
    assert_eq!((stats.cache_bytes, stats.held_bytes, stats.reads_in_flight), (1_000, 0, 0));
}

/// Messages consumed while still cached never cause a read: the hot path is unchanged.
#[test]
fn messages_consumed_while_cached_cause_no_read() {
    let (mut net, conn, sent) = with_backlog(BrokerConfig::default(), 200);
    assert_eq!(net.broker.held_payload_bytes(), 200 * 100);
    assert_eq!(consume_all(&mut net, conn, 7), sent);
    assert_eq!(reads_asked(&net), 0);
}

/// A consumer without credit causes no read, however cold the backlog.
#[test]
fn no_credit_no_reads() {
    let (mut net, conn, _) = with_backlog(tiny_cache(0), 50);
    let other = net.connect();
    net.subscribe(other, "jobs", 1);
    net.client(other).withhold_credit();
    let first = net.deliveries(other);
    assert_eq!(first.len(), 1, "the head kept its payload");
    assert_eq!(reads_asked(&net), 0, "one credit, spent on the head: nothing to read for");
    let _ = conn;
}

/// Payloads past 4 segments of a small-segment log come back too: segments holding evicted
/// messages are not deleted under them, and compaction waits for them.
#[test]
fn evicted_messages_keep_their_segments() {
    let (mut net, conn, sent) = with_backlog(small_segments(tiny_cache(2_000)), 3_000);
    assert!(net.disk.files().len() > 2, "the backlog spans several segments");
    assert_eq!(consume_all(&mut net, conn, 50), sent);
    assert!(net.broker.halted().is_none());
}

/// After a crash, recovery copies payloads while the cache has room; the rest start on disk
/// and are read back when delivered.
#[test]
fn recovery_leaves_payloads_beyond_the_cache_on_disk() {
    let (net, _, sent) = with_backlog(tiny_cache(1_000), 200);
    let image = net.disk.after_process_crash();
    let (mut net, report) = Net::recovered(tiny_cache(1_000), &image);
    assert_eq!(report.messages, 200);
    let held = net.broker.held_payload_bytes();
    assert!(held <= 1_000, "{held} payload bytes held after recovery");
    let cold = net.broker.payload_cache_stats().cold_messages;
    assert!(cold >= 180, "{cold} of 200 recovered messages cold");
    let conn = net.connect();
    assert_eq!(consume_all(&mut net, conn, 10), sent);
    assert!(reads_asked(&net) > 0);
}

/// Holds the reads the broker asks for, and hands them back as `done` makes them.
fn held_reads(net: &mut Net) -> Vec<StorageRequest> {
    let reads: Vec<StorageRequest> = net
        .storage_queue
        .iter()
        .filter(|r| matches!(r, StorageRequest::Read { .. }))
        .cloned()
        .collect();
    net.storage_queue.retain(|r| !matches!(r, StorageRequest::Read { .. }));
    reads
}

fn complete(net: &mut Net, read: &StorageRequest, result: Result<Bytes, OsError>) {
    let StorageRequest::Read { id, .. } = read else { panic!("not a read") };
    let done = StorageDone::Read { id: ReadId(id.0), result };
    net.broker.handle_input(net.now, Input::Storage(done));
    net.pump();
}

fn eio() -> OsError {
    OsError::from(&std::io::Error::from_raw_os_error(5))
}

/// A backlog on disk, a consumer with credit, and the reads it caused held back.
fn reading(cache_bytes: u64) -> (Net, ConnId, Vec<StorageRequest>) {
    let (mut net, conn, _) = with_backlog(tiny_cache(cache_bytes), 100);
    net.auto_storage = false;
    net.subscribe(conn, "jobs", 100);
    let reads = held_reads(&mut net);
    assert!(!reads.is_empty(), "the consumer's credit asked for reads");
    (net, conn, reads)
}

/// A read that fails halts the broker (the record was confirmed: this is lost data), with a
/// message naming the segment and the offset.
#[test]
fn a_failed_read_halts_naming_segment_and_offset() {
    let (mut net, conn, reads) = reading(0);
    complete(&mut net, &reads[0], Err(eio()));
    let failure = net.broker.halted().expect("halted").to_string();
    assert!(failure.contains("read of 00000000000000000000.log at offset"), "{failure}");
    assert!(net.closed_event(conn).is_some());
}

/// A record that comes back damaged (a flipped bit: the checksum does not match) or short
/// halts the broker as well.
#[test]
fn a_corrupt_or_short_read_halts() {
    for damage in [true, false] {
        let (mut net, _, reads) = reading(0);
        let StorageRequest::Read { base_lsn, offset, len, .. } = reads[0] else { unreachable!() };
        let mut bytes = net.disk.read(base_lsn, offset, len).unwrap().to_vec();
        if damage {
            bytes[20] ^= 1;
        } else {
            bytes.truncate(bytes.len() - 1);
        }
        complete(&mut net, &reads[0], Ok(Bytes::from(bytes)));
        let failure = net.broker.halted().expect("halted").to_string();
        let expected = if damage { "checksum mismatch" } else { "the read returned" };
        assert!(failure.contains(expected), "{failure}");
    }
}

/// A read whose messages all left meanwhile (purged) is stale: even its failure is ignored.
#[test]
fn a_stale_read_is_ignored() {
    let (mut net, conn, reads) = reading(0);
    net.client(conn).purge_queue("jobs").unwrap();
    net.pump();
    net.run_storage();
    for read in &reads {
        complete(&mut net, read, Err(eio()));
    }
    assert!(net.broker.halted().is_none());
}

/// Payloads come back complete from a sealed log too (encryption at rest), after a restart.
#[test]
fn sealed_records_are_read_back() {
    let keyring = chute_core::storage::seal::Keyring::new([(1, [7u8; 32])], [3; 16]).unwrap();
    let config = BrokerConfig { keyring, ..tiny_cache(500) };
    let (mut net, conn, sent) = with_backlog(config.clone(), 100);
    assert_eq!(consume_all(&mut net, conn, 9)[..], sent[..]);
    let (net, _, sent) = with_backlog(config.clone(), 100);
    let image = net.disk.after_process_crash();
    let (mut net, _) = Net::recovered(config, &image);
    let conn = net.connect();
    assert_eq!(consume_all(&mut net, conn, 9), sent);
}

/// Messages that expire while their payloads are on disk reach the dead-letter queue without
/// them: an inspection of one reads its record back for the answer, and consuming the dead
/// letters reads them back, complete and in order.
#[test]
fn dead_letters_with_payloads_on_disk_are_read_back() {
    let mut net = Net::with_config(tiny_cache(0));
    let conn = net.connect();
    assert!(matches!(net.declare(conn, "dlq", QueueOptions::default()), Response::Declared(_)));
    let options =
        QueueOptions { ttl_ms: Some(1_000), dead_letter: Some("dlq".into()), ..Default::default() };
    assert!(matches!(net.declare(conn, "jobs", options), Response::Declared(_)));
    let sent = payloads(20);
    let refs: Vec<&str> = sent.iter().map(String::as_str).collect();
    net.publish(conn, "jobs", &refs);
    assert!(net.broker.held_payload_bytes() <= 100, "all but the head left memory");
    net.advance(2_000);
    assert_eq!(net.broker.queue_depth("dlq"), Some(20));
    let request = net.client(conn).dlq_list("dlq", None, 100).unwrap();
    let Response::DlqList(list) = net.response(conn, request) else { panic!("dlq list") };
    let reads_before = net.reads;
    let request = net.client(conn).dlq_inspect("dlq", list.entries[5].dead_id).unwrap();
    let Response::DlqInspect(entry) = net.response(conn, request) else { panic!("inspected") };
    assert_eq!(entry.payload, Bytes::from(sent[5].clone()), "the payload, read back");
    assert_eq!(net.reads, reads_before + 1, "one read of its record");
    let subscription = net.subscribe(conn, "dlq", 5);
    let mut got = Vec::new();
    while got.len() < 20 {
        let deliveries = net.deliveries(conn);
        assert!(!deliveries.is_empty(), "the dead letters stopped at {}", got.len());
        for delivery in &deliveries {
            got.push(payload(delivery).to_string());
            net.client(conn).ack(delivery.tag).unwrap();
        }
        net.client(conn).grant_credit(subscription, deliveries.len() as u32).unwrap();
    }
    assert_eq!(got, sent);
    assert!(net.reads > 0);
}

/// Priorities hold with payloads on disk: the higher level is delivered first, each level in
/// publish order, every payload whole.
#[test]
fn priority_order_holds_with_payloads_on_disk() {
    let mut net = Net::with_config(tiny_cache(0));
    let conn = net.connect();
    assert!(matches!(net.declare(conn, "jobs", QueueOptions::default()), Response::Declared(_)));
    let sent = payloads(40);
    let destination = chute_protocol::Destination::Queue("jobs".into());
    for (i, text) in sent.iter().enumerate() {
        let mut message = chute_protocol::PublishMessage::new(Bytes::from(text.clone()));
        message.priority = if i % 2 == 0 { 5 } else { 0 };
        net.client(conn).publish(&destination, false, message).unwrap();
    }
    net.pump();
    assert_eq!(net.confirmed(conn).len(), 40);
    assert!(net.broker.held_payload_bytes() <= 200, "only the heads of the two levels stay");
    let high = sent.iter().step_by(2);
    let expected: Vec<String> = high.chain(sent.iter().skip(1).step_by(2)).cloned().collect();
    assert_eq!(consume_all(&mut net, conn, 3), expected);
    assert!(net.reads > 0);
}

/// A cold backlog costs next to no memory per message: beyond the cache, ready messages fold
/// into cold runs (where their records are and which sequence numbers, not the messages), and
/// come back whole, ids and headers included, complete and in order.
#[test]
fn a_cold_backlog_is_held_as_runs_and_read_back_whole() {
    let mut net = Net::with_config(tiny_cache(1_000));
    let conn = net.connect();
    assert!(matches!(net.declare(conn, "jobs", QueueOptions::default()), Response::Declared(_)));
    let sent = payloads(2_000);
    let destination = chute_protocol::Destination::Queue("jobs".into());
    for (i, text) in sent.iter().enumerate() {
        let mut message = chute_protocol::PublishMessage::new(Bytes::from(text.clone()));
        if i % 3 == 0 {
            message.id = Some(format!("id-{i}"));
            message.headers = vec![chute_protocol::Header {
                name: "n".into(),
                value: Bytes::from(format!("v{i}")),
            }];
        }
        net.client(conn).publish(&destination, false, message).unwrap();
    }
    net.pump();
    assert_eq!(net.confirmed(conn).len(), 2_000);
    let stats = net.broker.payload_cache_stats();
    assert!(stats.cold_messages >= 1_980, "{} of 2000 messages cold", stats.cold_messages);
    assert!(stats.cold_runs <= 2, "{} runs for one queue's backlog", stats.cold_runs);
    let subscription = net.subscribe(conn, "jobs", 13);
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let deliveries = net.deliveries(conn);
        assert!(!deliveries.is_empty(), "delivery stopped at {}", got.len());
        for delivery in &deliveries {
            let i = got.len();
            assert_eq!(delivery.id, (i % 3 == 0).then(|| format!("id-{i}")), "message {i}");
            let headers: Vec<_> = delivery.headers.iter().map(|h| h.value.clone()).collect();
            let expected = if i % 3 == 0 { vec![Bytes::from(format!("v{i}"))] } else { vec![] };
            assert_eq!(headers, expected, "message {i}'s headers");
            assert_eq!(delivery.attempt, 1, "message {i} is delivered for the first time");
            got.push(payload(delivery).to_string());
            net.client(conn).ack(delivery.tag).unwrap();
        }
        net.client(conn).grant_credit(subscription, deliveries.len() as u32).unwrap();
    }
    assert_eq!(got, sent);
    net.pump();
    let stats = net.broker.payload_cache_stats();
    assert_eq!((stats.cold_messages, stats.cold_runs, stats.held_bytes), (0, 0, 0));
}

/// A queue whose overflow drops its head keeps no cold runs: dead-lettering its head needs
/// the message at hand. Its payloads still leave memory.
#[test]
fn a_drop_head_queue_keeps_no_cold_runs() {
    let mut net = Net::with_config(tiny_cache(1_000));
    let conn = net.connect();
    let options = QueueOptions {
        overflow: chute_protocol::OverflowPolicy::DropHead,
        messages_max: Some(10_000),
        ..Default::default()
    };
    assert!(matches!(net.declare(conn, "jobs", options), Response::Declared(_)));
    let sent = payloads(300);
    let refs: Vec<&str> = sent.iter().map(String::as_str).collect();
    net.publish(conn, "jobs", &refs);
    let stats = net.broker.payload_cache_stats();
    assert_eq!(stats.cold_messages, 0);
    assert!(stats.held_bytes <= 1_000, "{} payload bytes held", stats.held_bytes);
    assert_eq!(consume_all(&mut net, conn, 11), sent);
}

/// Purging a cold backlog removes it without reading it, for good: the purge is logged for
/// every cold message, so a restart finds the queue empty.
#[test]
fn a_purged_cold_backlog_stays_purged_after_a_restart() {
    let (mut net, conn, _) = with_backlog(tiny_cache(1_000), 500);
    assert!(net.broker.payload_cache_stats().cold_messages > 450);
    let request = net.client(conn).purge_queue("jobs").unwrap();
    let Response::Done { count } = net.response(conn, request) else { panic!("purged") };
    assert_eq!(count, 500);
    assert_eq!(net.reads, 0, "a purge reads nothing");
    assert_eq!(net.broker.queue_depth("jobs"), Some(0));
    let image = net.disk.after_process_crash();
    let (net, report) = Net::recovered(tiny_cache(1_000), &image);
    assert_eq!(report.messages, 0);
    assert_eq!(net.broker.queue_depth("jobs"), Some(0));
}

/// A cold drain does not wait for each read: once a read of a run comes back, the next one is
/// asked for while the consumer takes what came, and no further: two reads' worth at most.
#[test]
fn a_cold_run_is_read_ahead_by_one_read() {
    let (mut net, conn, sent) = with_backlog(tiny_cache(1_000), 10_000);
    let refs: Vec<&str> = sent.iter().map(String::as_str).collect();
    net.publish(conn, "jobs", &refs);
    assert_eq!(net.confirmed(conn).len(), 10_000, "a run of 20,000: three reads and more");
    // The cache held at most 10 payloads at the front: 20 credits reach into the run.
    let subscription = net.subscribe(conn, "jobs", 20);
    assert_eq!(net.deliveries(conn).len(), 20);
    assert_eq!(net.reads, 2, "the read the consumer needed, and one ahead");
    net.client(conn).grant_credit(subscription, 100).unwrap();
    net.pump();
    assert_eq!(net.deliveries(conn).len(), 100);
    assert_eq!(net.reads, 2, "two reads' worth wait: nothing more is read");
    assert!(net.broker.halted().is_none());
}

/// A purge of more messages than one record may name logs several `Purged` records: 72,000
/// messages interleaved with another queue's are 72,000 ranges of one, past the 65,536 a
/// record holds (millions of them in one record would pass the record size limit). A restart
/// finds the queue empty and the other queue whole.
#[test]
fn a_huge_purge_is_logged_in_bounded_records() {
    let mut net = Net::with_config(tiny_cache(1_000));
    let conn = net.connect();
    for name in ["jobs", "other"] {
        assert!(matches!(net.declare(conn, name, QueueOptions::default()), Response::Declared(_)));
    }
    publish_interleaved(&mut net, conn, ["jobs", "other"], 72_000);
    let request = net.client(conn).purge_queue("jobs").unwrap();
    let Response::Done { count } = net.response(conn, request) else { panic!("purged") };
    assert_eq!(count, 72_000);
    let purged = ranges_per_record(&net, |record| match record {
        Record::Purged(seqs) => Some(seqs.seqs.len()),
        _ => None,
    });
    assert_eq!(purged.iter().sum::<usize>(), 72_000, "every message named once: {purged:?}");
    assert!(purged.iter().all(|&ranges| ranges <= 65_536), "records of {purged:?} ranges");
    let image = net.disk.after_process_crash();
    let (net, _) = Net::recovered(tiny_cache(1_000), &image);
    assert_eq!(net.broker.queue_depth("jobs"), Some(0));
    assert_eq!(net.broker.queue_depth("other"), Some(72_000));
}

/// A redrive of more dead letters than one record may name logs several `Redriven` records,
/// as a purge does.
#[test]
fn a_huge_redrive_is_logged_in_bounded_records() {
    let mut net = Net::with_config(tiny_cache(1_000));
    let conn = net.connect();
    for name in ["dlq", "other"] {
        assert!(matches!(net.declare(conn, name, QueueOptions::default()), Response::Declared(_)));
    }
    let options =
        QueueOptions { ttl_ms: Some(1_000), dead_letter: Some("dlq".into()), ..Default::default() };
    assert!(matches!(net.declare(conn, "jobs", options), Response::Declared(_)));
    publish_interleaved(&mut net, conn, ["jobs", "other"], 72_000);
    net.advance(2_000);
    assert_eq!(net.broker.queue_depth("dlq"), Some(72_000));
    let request = net.client(conn).dlq_redrive("dlq", Vec::new()).unwrap();
    let Response::Done { count } = net.response(conn, request) else { panic!("redriven") };
    assert_eq!(count, 72_000);
    let redriven = ranges_per_record(&net, |record| match record {
        Record::Redriven(redriven) => Some(redriven.seqs.len()),
        _ => None,
    });
    assert_eq!(redriven.iter().sum::<usize>(), 72_000, "every message named once: {redriven:?}");
    assert!(redriven.iter().all(|&ranges| ranges <= 65_536), "records of {redriven:?} ranges");
}

/// Publishes `each` one-byte messages to each of two queues, alternately, every one confirmed:
/// each queue's sequence numbers are then each a range of their own.
fn publish_interleaved(net: &mut Net, conn: ConnId, queues: [&str; 2], each: usize) {
    const ROUND: usize = 16_000;
    for _ in 0..each * 2 / ROUND {
        for i in 0..ROUND {
            let message = chute_protocol::PublishMessage::new(Bytes::from_static(b"p"));
            let destination = chute_protocol::Destination::Queue(queues[i % 2].into());
            net.client(conn).publish(&destination, false, message).unwrap();
        }
        assert_eq!(net.confirmed(conn).len(), ROUND);
    }
}

/// The number of ranges each record `ranges` picks names, over the whole log, in log order.
fn ranges_per_record(net: &Net, ranges: impl Fn(&Record) -> Option<usize>) -> Vec<usize> {
    let files = net.disk.segment_files();
    let mut found = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let scan = scan_segment(&file.bytes, index + 1 == files.len()).unwrap();
        for raw in scan.records {
            found.extend(Record::decode(raw.kind, &raw.body).ok().as_ref().and_then(&ranges));
        }
    }
    found
}

/// A net whose `dlq` holds `count` dead letters (expired from `jobs`) with their payloads on
/// disk but the first's; returns their dead ids, in order.
fn dead_letters_on_disk(count: usize) -> (Net, ConnId, Vec<u64>) {
    let mut net = Net::with_config(tiny_cache(0));
    let conn = net.connect();
    assert!(matches!(net.declare(conn, "dlq", QueueOptions::default()), Response::Declared(_)));
    let options =
        QueueOptions { ttl_ms: Some(1_000), dead_letter: Some("dlq".into()), ..Default::default() };
    assert!(matches!(net.declare(conn, "jobs", options), Response::Declared(_)));
    let sent = payloads(count);
    let refs: Vec<&str> = sent.iter().map(String::as_str).collect();
    net.publish(conn, "jobs", &refs);
    net.advance(2_000);
    let request = net.client(conn).dlq_list("dlq", None, 1_000).unwrap();
    let Response::DlqList(list) = net.response(conn, request) else { panic!("dlq list") };
    let ids: Vec<u64> = list.entries.iter().map(|e| e.dead_id).collect();
    assert_eq!(ids.len(), count);
    (net, conn, ids)
}

/// Inspections waiting for their reads count against the broker's reads in flight: one past
/// the most (64) is refused `resource-limit`, to be tried again, and the others are answered
/// once their reads complete.
#[test]
fn an_inspection_past_the_reads_in_flight_is_refused() {
    let (mut net, conn, ids) = dead_letters_on_disk(70);
    net.auto_storage = false;
    let requests: Vec<u32> =
        ids[1..66].iter().map(|id| net.client(conn).dlq_inspect("dlq", *id).unwrap()).collect();
    net.pump();
    assert_eq!(held_reads(&mut net).len(), 64, "one read per inspection, as many as allowed");
    let Response::Failed(error) = net.response(conn, requests[64]) else { panic!("refused") };
    assert_eq!(error.code, chute_protocol::ErrorCode::RESOURCE_LIMIT, "{}", error.message);
    assert!(error.retriable);
}

/// A dead letter redriven while its inspection's read is in flight is no longer there to
/// inspect: the answer says so, and the read's result is not looked at.
#[test]
fn an_inspection_of_a_dead_letter_that_left_says_so() {
    let (mut net, conn, ids) = dead_letters_on_disk(10);
    net.auto_storage = false;
    let inspect = net.client(conn).dlq_inspect("dlq", ids[5]).unwrap();
    net.pump();
    let reads = held_reads(&mut net);
    assert_eq!(reads.len(), 1);
    net.client(conn).dlq_redrive("dlq", vec![ids[5]]).unwrap();
    net.pump();
    complete(&mut net, &reads[0], Err(eio()));
    // The answer follows the redrive's, which waits for the log.
    net.auto_storage = true;
    net.run_storage();
    let Response::Failed(error) = net.response(conn, inspect) else { panic!("answered") };
    assert_eq!(error.code, chute_protocol::ErrorCode::NO_SUCH_DEAD_LETTER, "{}", error.message);
    assert!(net.broker.halted().is_none(), "a stale read's failure halts nothing");
}
