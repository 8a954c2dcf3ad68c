//! Durability: confirms wait for the log, group commit, recovery after process and machine
//! crashes, compaction, torn tails and corruption, fail-stop.

mod support;

use bytes::Bytes;
use chute_core::client::{ClientEvent, Response};
use chute_core::ids::Lsn;
use chute_core::storage::failure::{OsError, StorageFailure};
use chute_core::storage::format::{scan_segment, segment_header, SEGMENT_HEADER_LEN};
use chute_core::storage::io::{StorageDone, StorageRequest};
use chute_core::storage::records::Record;
use chute_core::storage::recovery::{LogImage, RecoveryError};
use chute_core::{BrokerConfig, Input};
use chute_protocol::{Durability, ErrorCode, QueueOptions};
use support::{payload, small_segments, Net};

fn declare(net: &mut Net, conn: chute_core::ConnId, name: &str, durability: Durability) {
    let options = QueueOptions { durability, ..QueueOptions::default() };
    assert!(matches!(net.declare(conn, name, options), Response::Declared(_)));
}

/// Publishes `payloads` to a durable queue `jobs`, then returns the files a process crash
/// leaves, with the newest segment's bytes passed through `edit`.
fn crashed_with_newest(payloads: &[&str], edit: impl FnOnce(&mut Vec<u8>)) -> LogImage {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", Durability::Always);
    net.publish(conn, "jobs", payloads);
    let mut files = net.disk.after_process_crash();
    let last = files.segments.last_mut().unwrap();
    let mut bytes = last.bytes.to_vec();
    edit(&mut bytes);
    last.bytes = Bytes::from(bytes);
    files
}

/// A publish to a durable queue is confirmed only once a sync covers it, and no consumer sees
/// it before then.
#[test]
fn confirm_and_delivery_wait_for_sync() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", Durability::Always);
    net.subscribe(conn, "jobs", 10);
    net.auto_storage = false;
    net.publish(conn, "jobs", &["a"]);
    assert!(net.confirmed(conn).is_empty(), "confirmed before the sync");
    assert!(net.deliveries(conn).is_empty(), "delivered before the sync");
    net.run_storage();
    assert_eq!(net.confirmed(conn), vec![1]);
    assert_eq!(net.deliveries(conn).len(), 1);
}

/// Group commit: publishes that arrive while a sync is in flight share the next one.
#[test]
fn one_sync_covers_many_publishes() {
    let mut net = Net::new();
    let producers: Vec<_> = (0..4).map(|_| net.connect()).collect();
    declare(&mut net, producers[0], "jobs", Durability::Always);
    net.auto_storage = false;
    let syncs_before = net.disk.syncs;
    for round in 0..25 {
        for &producer in &producers {
            net.publish(producer, "jobs", &["m"; 10]);
        }
        if round % 5 == 4 {
            net.run_storage();
        }
    }
    net.auto_storage = true;
    net.run_storage();
    let confirmed: usize = producers.iter().map(|&p| net.confirmed(p).len()).sum();
    assert_eq!(confirmed, 1000);
    let syncs = net.disk.syncs - syncs_before;
    assert!(syncs <= 12, "{syncs} syncs for 1000 messages");
}

/// After a process crash every confirmed message is back, in order, and one that a consumer
/// had seen comes back with that attempt counted; acked ones stay gone.
#[test]
fn process_crash_recovers_unacked_with_attempts() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", Durability::Always);
    net.publish(conn, "jobs", &["1", "2", "3", "4"]);
    net.subscribe(conn, "jobs", 2);
    let seen = net.deliveries(conn);
    net.client(conn).ack(seen[0].tag).unwrap();
    net.pump();

    let files = net.disk.after_process_crash();
    let (mut net, report) = Net::recovered(BrokerConfig::default(), &files);
    assert_eq!((report.queues, report.messages), (1, 3));
    let conn = net.connect();
    net.subscribe(conn, "jobs", 10);
    let again = net.deliveries(conn);
    let got: Vec<(&str, u32)> = again.iter().map(|d| (payload(d), d.attempt)).collect();
    assert_eq!(got, [("2", 2), ("3", 1), ("4", 1)]);
}

/// After a machine crash (unsynced bytes lost), everything confirmed is still there.
#[test]
fn machine_crash_keeps_every_confirmed_message() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", Durability::Always);
    net.publish(conn, "jobs", &["1", "2"]);
    assert_eq!(net.confirmed(conn), vec![1, 2]);
    net.auto_storage = false;
    net.publish(conn, "jobs", &["3"]); // written, never synced, never confirmed
    let append = net.storage_queue.remove(0);
    assert!(matches!(append, chute_core::storage::io::StorageRequest::Append { .. }));
    net.disk.apply(&append).unwrap();
    let files = net.disk.after_machine_crash();
    let (mut net, report) = Net::recovered(BrokerConfig::default(), &files);
    assert_eq!(report.messages, 2);
    let conn = net.connect();
    net.subscribe(conn, "jobs", 10);
    let got: Vec<String> = net.deliveries(conn).iter().map(|d| payload(d).to_string()).collect();
    assert_eq!(got, ["1", "2"]);
}

/// An in-memory queue's definition survives a restart; its messages do not, as promised.
#[test]
fn in_memory_queue_keeps_its_definition_only() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "scratch", Durability::None);
    net.publish(conn, "scratch", &["x"]);
    assert_eq!(net.confirmed(conn), vec![1]);
    let files = net.disk.after_process_crash();
    let (net, report) = Net::recovered(BrokerConfig::default(), &files);
    assert_eq!((report.queues, report.messages), (1, 0));
    assert_eq!(net.broker.queue_depth("scratch"), Some(0));
}

/// A message moving from an in-memory queue into a logged dead-letter queue is logged there:
/// the DLQ's durability holds for it after a machine crash.
#[test]
fn dead_letters_from_an_in_memory_queue_are_as_durable_as_their_dlq() {
    let mut net = Net::new();
    let conn = net.connect();
    let options = QueueOptions {
        durability: Durability::None,
        dead_letter: Some("dlq".into()),
        ..QueueOptions::default()
    };
    assert!(matches!(net.declare(conn, "scratch", options), Response::Declared(_)));
    net.publish(conn, "scratch", &["x"]);
    net.subscribe(conn, "scratch", 1);
    let delivery = net.deliveries(conn).remove(0);
    net.client(conn).reject(delivery.tag, "no".into()).unwrap();
    net.pump();
    assert_eq!(net.broker.queue_depth("dlq"), Some(1));
    let files = net.disk.after_machine_crash();
    let (net, _) = Net::recovered(BrokerConfig::default(), &files);
    assert_eq!(net.broker.queue_depth("dlq"), Some(1));
    assert_eq!(net.broker.queue_depth("scratch"), Some(0));
}

/// The other way: a logged message moved into an in-memory queue (dead-lettered, or redriven
/// back to an in-memory source) is gone after a restart, like everything in that queue.
#[test]
fn messages_moved_into_an_in_memory_queue_do_not_come_back() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "scratch.dlq", Durability::None);
    let options = QueueOptions { dead_letter: Some("scratch.dlq".into()), ..Default::default() };
    assert!(matches!(net.declare(conn, "jobs", options), Response::Declared(_)));
    net.publish(conn, "jobs", &["x"]);
    net.subscribe(conn, "jobs", 1);
    let delivery = net.deliveries(conn).remove(0);
    net.client(conn).reject(delivery.tag, "no".into()).unwrap();
    net.pump();
    assert_eq!(net.broker.queue_depth("scratch.dlq"), Some(1));
    net.advance(1_000);
    let files = net.disk.after_machine_crash();
    let (net, report) = Net::recovered(BrokerConfig::default(), &files);
    assert_eq!(report.messages, 0);
    assert_eq!(net.broker.queue_depth("scratch.dlq"), Some(0));
    assert_eq!(net.broker.queue_depth("jobs"), Some(0));
}

/// `Interval` confirms after the write, without waiting for a sync; the sync follows within
/// the interval.
#[test]
fn interval_confirms_after_write() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "logs", Durability::Interval { sync_interval_ms: 50 });
    net.auto_storage = false;
    net.publish(conn, "logs", &["a"]);
    let requests = std::mem::take(&mut net.storage_queue);
    assert_eq!(requests.len(), 1, "an append and no sync: {requests:?}");
    net.storage_queue = requests;
    net.run_storage(); // the append: written, not synced
    assert_eq!(net.confirmed(conn), vec![1]);
    let syncs = net.disk.syncs;
    net.auto_storage = true;
    net.advance(60);
    assert!(net.disk.syncs > syncs, "synced within the interval");
}

/// Deleted queues and purged messages stay gone after a restart; new ids never reuse old ones.
#[test]
fn deletes_and_purges_survive_restart() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "gone", Durability::Always);
    declare(&mut net, conn, "emptied", Durability::Always);
    net.publish(conn, "gone", &["1"]);
    net.publish(conn, "emptied", &["2", "3"]);
    let request = net.client(conn).delete_queue("gone", false, false).unwrap();
    assert_eq!(net.response(conn, request), Response::Done { count: 1 });
    let request = net.client(conn).purge_queue("emptied").unwrap();
    assert_eq!(net.response(conn, request), Response::Done { count: 2 });
    let files = net.disk.after_process_crash();
    let (mut net, _) = Net::recovered(BrokerConfig::default(), &files);
    assert_eq!(net.broker.queue_names().collect::<Vec<_>>(), ["emptied"]);
    assert_eq!(net.broker.queue_depth("emptied"), Some(0));
    let conn = net.connect();
    net.publish(conn, "emptied", &["4"]);
    net.subscribe(conn, "emptied", 1);
    assert_eq!(payload(&net.deliveries(conn)[0]), "4");
}

/// With everything acked, old segments are deleted: disk use stays within two segments.
#[test]
fn settled_segments_are_deleted() {
    let mut net = Net::with_config(small_segments(BrokerConfig::default()));
    let conn = net.connect();
    declare(&mut net, conn, "jobs", Durability::Always);
    let (request, _) = net.client(conn).subscribe("jobs", 100, None, true).unwrap();
    net.response(conn, request);
    let body = "x".repeat(1000);
    for _ in 0..40 {
        net.publish(conn, "jobs", &[body.as_str(); 20]);
        for delivery in net.deliveries(conn) {
            net.client(conn).ack(delivery.tag).unwrap();
        }
        net.pump();
        net.advance(30); // lazy ack syncs
    }
    let total: usize = net.disk.files().values().map(|f| f.data().len()).sum();
    assert!(net.disk.files().len() <= 2, "{} segments, {total} bytes", net.disk.files().len());
}

/// A long-lived message in a mostly dead segment is copied forward, so its old segment can
/// go, and it survives recovery with its attempts.
#[test]
fn compaction_moves_long_lived_messages_forward() {
    let mut net = Net::with_config(small_segments(BrokerConfig::default()));
    let conn = net.connect();
    declare(&mut net, conn, "jobs", Durability::Always);
    declare(&mut net, conn, "keep", Durability::Always);
    net.publish(conn, "keep", &["long-lived"]);
    let (request, _) = net.client(conn).subscribe("jobs", 100, None, true).unwrap();
    net.response(conn, request);
    let body = "x".repeat(1000);
    for _ in 0..40 {
        net.publish(conn, "jobs", &[body.as_str(); 20]);
        for delivery in net.deliveries(conn) {
            net.client(conn).ack(delivery.tag).unwrap();
        }
        net.pump();
        net.advance(30);
    }
    assert!(net.disk.files().len() <= 3, "{} segments", net.disk.files().len());
    assert!(!net.disk.files().contains_key(&Lsn(0)), "the first segment was compacted away");
    let files = net.disk.after_process_crash();
    let (mut net, report) = Net::recovered(small_segments(BrokerConfig::default()), &files);
    assert_eq!(report.messages, 1);
    let conn = net.connect();
    net.subscribe(conn, "keep", 1);
    assert_eq!(payload(&net.deliveries(conn)[0]), "long-lived");
}

/// A torn last write is cut off; the records before it are kept.
#[test]
fn torn_tail_is_truncated() {
    let files = crashed_with_newest(&["1", "2"], |bytes| {
        bytes.extend_from_slice(&[0x40, 0, 0, 0, 0xde, 0xad]); // half a record header
    });
    let (net, report) = Net::recovered(BrokerConfig::default(), &files);
    let truncation = report.truncation.expect("a torn tail");
    assert_eq!(truncation.dropped_bytes, 6);
    assert!(!truncation.only_zeros);
    assert_eq!(net.broker.queue_depth("jobs"), Some(2));
}

/// The storage worker keeps the newest segment zero-filled ahead of its records; after a crash
/// the zeros are a torn tail like any other: cut, with every record before them kept.
#[test]
fn preallocated_zeros_at_the_end_are_cut() {
    let mut records_len = 0;
    let files = crashed_with_newest(&["1", "2"], |bytes| {
        records_len = bytes.len() as u64;
        bytes.resize(bytes.len() + 1024 * 1024, 0);
    });
    let (mut net, report) = Net::recovered(BrokerConfig::default(), &files);
    let truncation = report.truncation.expect("the zeros are cut");
    assert_eq!((truncation.valid_len, truncation.dropped_bytes), (records_len, 1024 * 1024));
    assert!(truncation.only_zeros, "preallocated space, not a torn write");
    assert_eq!(net.broker.queue_depth("jobs"), Some(2));
    let conn = net.connect();
    net.publish(conn, "jobs", &["3"]);
    assert_eq!(net.broker.queue_depth("jobs"), Some(3));
}

/// A worker may take appends queued behind a sync into it and say so: everything it covered
/// is confirmed, without a second sync.
#[test]
fn a_sync_that_reaches_further_confirms_everything_it_covered() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", Durability::Always);
    net.auto_storage = false;
    net.publish(conn, "jobs", &["a"]);
    net.publish(conn, "jobs", &["b"]);
    let requests = std::mem::take(&mut net.storage_queue);
    let syncs: Vec<Lsn> = requests
        .iter()
        .filter_map(|r| match r {
            chute_core::storage::io::StorageRequest::Sync { through } => Some(*through),
            _ => None,
        })
        .collect();
    assert_eq!(syncs.len(), 1, "one sync in flight: {requests:?}");
    let mut written_end = Lsn(0);
    for request in requests {
        if let Ok(Some(StorageDone::Written { through })) = net.disk.apply(&request) {
            written_end = through;
        }
    }
    assert!(written_end > syncs[0], "b was appended after the sync was asked for");
    let now = net.now;
    net.broker.handle_input(now, Input::Storage(StorageDone::Written { through: written_end }));
    net.broker.handle_input(now, Input::Storage(StorageDone::Synced { through: written_end }));
    net.pump();
    assert_eq!(net.confirmed(conn), vec![1, 2]);
    assert!(net.storage_queue.is_empty(), "no second sync: {:?}", net.storage_queue);
}

/// A damaged record followed by good ones is corruption: recovery refuses and names the file.
#[test]
fn corruption_in_the_middle_is_refused() {
    let files = crashed_with_newest(&["first", "second", "third"], |bytes| {
        let at = bytes.windows(5).position(|w| w == b"first").unwrap();
        bytes[at] ^= 0x01;
    });
    let error =
        chute_core::Broker::recover(BrokerConfig::default(), chute_core::Instant::ZERO, &files)
            .unwrap_err();
    assert!(matches!(error, RecoveryError::Segment { .. }), "{error}");
    assert!(error.to_string().contains("00000000000000000000.log"), "{error}");
}

/// A missing segment in the middle of the log is detected, not silently skipped.
#[test]
fn missing_segment_is_refused() {
    let mut net = Net::with_config(small_segments(BrokerConfig::default()));
    let conn = net.connect();
    declare(&mut net, conn, "jobs", Durability::Always);
    let body = "x".repeat(1000);
    for _ in 0..20 {
        net.publish(conn, "jobs", &[body.as_str(); 20]);
    }
    let mut files = net.disk.after_process_crash();
    assert!(files.segments.len() >= 3);
    files.segments.remove(1);
    let error = chute_core::Broker::recover(
        small_segments(BrokerConfig::default()),
        chute_core::Instant::ZERO,
        &files,
    )
    .unwrap_err();
    assert!(matches!(error, RecoveryError::Gap { .. }), "{error}");
}

/// A failed fsync halts the broker: clients are told `storage-failed`, nothing unsynced is
/// confirmed, and new connections are refused.
#[test]
fn failed_sync_halts() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", Durability::Always);
    net.auto_storage = false;
    net.publish(conn, "jobs", &["1"]);
    let eio = OsError::from(&std::io::Error::from_raw_os_error(5));
    let failure = StorageFailure::Sync { through: Lsn(1), error: eio };
    net.broker.handle_input(net.now, Input::Storage(StorageDone::Failed(failure.clone())));
    net.pump();
    assert_eq!(net.broker.halted(), Some(&failure));
    assert_eq!(net.broker.stats().halted, Some(failure));
    let (code, message) = net.closed_event(conn).expect("the client was closed");
    assert_eq!(code, ErrorCode::STORAGE_FAILED);
    assert_eq!(
        message,
        "storage failed, broker halted: fdatasync failed: Input/output error (os error 5)"
    );
    let confirmed = net.events[&conn].iter().any(|e| matches!(e, ClientEvent::Confirmed(_)));
    assert!(!confirmed, "nothing is confirmed after a failed sync");
    let late = net.connect_without_handshake();
    assert!(net.closed_by_broker.contains(&late));
}

/// Graceful shutdown first syncs, so confirms already earned reach their clients.
#[test]
fn shutdown_syncs_before_closing() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", Durability::Always);
    net.auto_storage = false;
    net.publish(conn, "jobs", &["1"]);
    net.broker.shutdown(net.now);
    net.pump();
    assert!(!net.closed_by_broker.contains(&conn), "closed before the sync");
    net.auto_storage = true;
    net.run_storage();
    net.run_storage();
    assert!(net.events[&conn].iter().any(|e| matches!(e, ClientEvent::Confirmed(_))));
    assert_eq!(net.closed_event(conn).map(|(c, _)| c), Some(ErrorCode::SHUTTING_DOWN));
    assert!(net.broker.is_drained());
}

/// Message numbers are never reused across restarts, even when every record naming the old
/// ones is gone.
#[test]
fn ids_are_not_reused_after_restart() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "a", Durability::Always);
    net.publish(conn, "a", &["1", "2"]);
    let files = net.disk.after_process_crash();
    let (mut net, _) = Net::recovered(BrokerConfig::default(), &files);
    let conn = net.connect();
    declare(&mut net, conn, "b", Durability::Always);
    net.publish(conn, "b", &["3"]);
    let files = net.disk.after_process_crash();
    let recovered =
        chute_core::storage::recovery::recover_log(&files, &Default::default()).unwrap();
    let seqs: Vec<u64> =
        recovered.queues.values().flat_map(|q| q.messages.keys().copied()).collect();
    assert_eq!(seqs, [1, 2, 3]);
}

/// A segment that stays mostly live (a message nobody consumes) does not pin the dead
/// segments behind it: once they hold more dead data than it holds live, it is compacted.
#[test]
fn a_mostly_live_head_does_not_pin_dead_segments() {
    let mut net = Net::with_config(small_segments(BrokerConfig::default()));
    let conn = net.connect();
    declare(&mut net, conn, "jobs", Durability::Always);
    declare(&mut net, conn, "keep", Durability::Always);
    let big = "k".repeat(12 * 1024);
    net.publish(conn, "keep", &[big.as_str(); 4]); // ~48 KiB live in the first segment
    let (request, _) = net.client(conn).subscribe("jobs", 100, None, true).unwrap();
    net.response(conn, request);
    let body = "x".repeat(1000);
    for _ in 0..60 {
        net.publish(conn, "jobs", &[body.as_str(); 20]);
        for delivery in net.deliveries(conn) {
            net.client(conn).ack(delivery.tag).unwrap();
        }
        net.pump();
        net.advance(30);
    }
    assert!(net.disk.files().len() <= 3, "{} segments", net.disk.files().len());
    assert_eq!(net.broker.queue_depth("keep"), Some(4));
}

/// A checkpoint larger than a segment (a dedup window remembering many ids) must not make
/// every record start a new segment with a new copy of the checkpoint.
#[test]
fn a_checkpoint_larger_than_a_segment_does_not_explode_the_log() {
    let mut config = small_segments(BrokerConfig::default());
    config.storage.segment_bytes_max = 64 * 1024;
    let mut net = Net::with_config(config);
    let conn = net.connect();
    let options = QueueOptions { dedup_window_ms: Some(3_600_000), ..QueueOptions::default() };
    assert!(matches!(net.declare(conn, "jobs", options), Response::Declared(_)));
    let destination = chute_protocol::Destination::Queue("jobs".into());
    for i in 0..3_000u32 {
        let mut message = chute_protocol::PublishMessage::new(Bytes::from_static(b"x"));
        message.id = Some(format!("{i:0>100}"));
        net.client(conn).publish(&destination, false, message).unwrap();
        if i % 100 == 99 {
            net.pump();
        }
    }
    net.pump();
    let appended: usize = net.disk.files().values().map(|f| f.data().len()).sum();
    // 3,000 ids of ~110 bytes make a ~330 KB checkpoint; without the guard every record
    // rotated and copied it, writing hundreds of megabytes.
    assert!(appended < 20 * 1024 * 1024, "{appended} bytes on disk");
}

/// The storage requests a broker has for the driver before any input, manifest writes
/// apart (they are counted: a new or recovered broker writes exactly one).
fn startup_requests(broker: &mut chute_core::Broker) -> Vec<StorageRequest> {
    let mut requests = Vec::new();
    let mut manifests = 0;
    while let Some(output) = broker.poll_output() {
        match output {
            chute_core::Output::Storage(StorageRequest::WriteManifest { .. }) => manifests += 1,
            chute_core::Output::Storage(request) => requests.push(request),
            _ => {}
        }
    }
    assert_eq!(manifests, 1, "one manifest naming where the log ends");
    requests
}

/// The records an `Append` carries, by the segment format's own scan.
fn appended_records(request: &StorageRequest) -> Vec<Record> {
    let StorageRequest::Append { end_lsn, bytes, .. } = request else {
        panic!("not an append: {request:?}")
    };
    let mut segment = segment_header(Lsn(end_lsn.0 - bytes.len() as u64)).to_vec();
    segment.extend_from_slice(bytes);
    let scan = scan_segment(&Bytes::from(segment), false).expect("whole records");
    scan.records.iter().map(|raw| Record::decode(raw.kind, &raw.body).unwrap()).collect()
}

/// A new broker writes its first checkpoint and asks for its sync as it is made, before any
/// input (docs/STORAGE.md §10.1): the driver syncs it before serving anyone, so a log that
/// cannot be written stops the server at start, not at its first client.
#[test]
fn a_new_broker_asks_for_its_checkpoint_sync_before_any_input() {
    let mut broker = chute_core::Broker::new(BrokerConfig::default(), chute_core::Instant::ZERO);
    let requests = startup_requests(&mut broker);
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(matches!(requests[0], StorageRequest::CreateSegment { base_lsn: Lsn(0), .. }));
    let records = appended_records(&requests[1]);
    assert!(matches!(records[..], [Record::Counters(_)]), "{records:?}");
    let StorageRequest::Append { end_lsn, .. } = requests[1] else { unreachable!() };
    assert_eq!(requests[2], StorageRequest::Sync { through: end_lsn });
}

/// A recovered broker appends its checkpoint to the newest segment and asks for its sync
/// before any input.
#[test]
fn a_recovered_broker_asks_for_its_checkpoint_sync_before_any_input() {
    let mut net = Net::new();
    let conn = net.connect();
    declare(&mut net, conn, "jobs", Durability::Always);
    net.publish(conn, "jobs", &["1"]);
    let files = net.disk.after_process_crash();
    let log_end: usize = files.segments.iter().map(|f| f.bytes.len() - SEGMENT_HEADER_LEN).sum();

    let (mut broker, _) =
        chute_core::Broker::recover(BrokerConfig::default(), chute_core::Instant::ZERO, &files)
            .unwrap();
    let requests = startup_requests(&mut broker);
    assert_eq!(requests.len(), 2, "{requests:?}");
    let StorageRequest::Append { base_lsn: Lsn(0), end_lsn, ref bytes } = requests[0] else {
        panic!("the checkpoint goes to the newest segment: {requests:?}")
    };
    assert_eq!(end_lsn.0 - bytes.len() as u64, log_end as u64, "appended at the end of the log");
    let records = appended_records(&requests[0]);
    assert!(matches!(records[..], [Record::Counters(_), Record::QueueDeclared(_)]), "{records:?}");
    assert_eq!(requests[1], StorageRequest::Sync { through: end_lsn });
}
