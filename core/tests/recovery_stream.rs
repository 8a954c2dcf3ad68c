//! Recovery streams the log: a driver hands the core one segment file at a time
//! (`Recovery::handle_segment`), and nothing the core keeps refers to a segment's buffer, so
//! each is freed before the next is read (docs/STORAGE.md §10.1 and §14).

mod support;

use bytes::Bytes;
use chute_core::client::Response;
use chute_core::storage::format::ScanError;
use chute_core::storage::recovery::{LogImage, RecoveryError};
use chute_core::{Broker, BrokerConfig, Instant, Recovery, RecoveryReport};
use chute_protocol::{Destination, Durability, Header, PublishMessage, QueueOptions};
use support::{payload, small_segments, Net};

/// A durable queue `jobs` holding `count` messages of 6 KiB, each with a header, over several
/// 128 KiB segments; then the files a process crash leaves.
fn backlog(count: usize) -> LogImage {
    let mut net = Net::with_config(small_segments(BrokerConfig::default()));
    let conn = net.connect();
    let options = QueueOptions { durability: Durability::Always, ..QueueOptions::default() };
    assert!(matches!(net.declare(conn, "jobs", options), Response::Declared(_)));
    let destination = Destination::Queue("jobs".into());
    for index in 0..count {
        let text = format!("{index:06}{}", "x".repeat(6 * 1024));
        let message = PublishMessage {
            headers: vec![Header { name: "n".into(), value: Bytes::from(format!("h{index}")) }],
            ..PublishMessage::new(Bytes::from(text))
        };
        net.client(conn).publish(&destination, false, message).unwrap();
        net.pump();
    }
    net.disk.after_process_crash()
}

/// Hands the image's segments over one at a time, each a reference to the image's buffer.
fn recover_streaming(image: &LogImage) -> (Broker, RecoveryReport) {
    let mut recovery = Recovery::new(small_segments(BrokerConfig::default()), Instant::ZERO);
    let count = image.segments.len();
    for (index, file) in image.segments.iter().enumerate() {
        recovery.handle_segment(file.clone(), index + 1 == count).expect("segment");
    }
    recovery.finish(image.manifest.as_deref(), false).expect("recovery")
}

/// A recovered message's payload and header values are copies, not slices of the segment it
/// was read from (a slice would keep the whole segment's buffer alive for as long as the
/// message is queued): once recovery is done, every segment buffer is the driver's alone.
#[test]
fn a_recovered_broker_holds_no_segment_buffer() {
    let image = backlog(60);
    assert!(image.segments.len() >= 3, "the backlog spans segments: {}", image.segments.len());
    let (broker, report) = recover_streaming(&image);
    assert_eq!(report.messages, 60);
    for file in &image.segments {
        assert!(file.bytes.is_unique(), "the recovered broker still holds {}", file.name);
    }
    drop(broker);

    // And what it recovered is the backlog, payloads and headers, in order.
    let (mut net, _) = Net::recovered(small_segments(BrokerConfig::default()), &image);
    let conn = net.connect();
    net.subscribe(conn, "jobs", 100);
    let deliveries = net.deliveries(conn);
    assert_eq!(deliveries.len(), 60);
    for (index, delivery) in deliveries.iter().enumerate() {
        assert!(payload(delivery).starts_with(&format!("{index:06}x")));
        assert_eq!(delivery.headers[0].value, format!("h{index}").as_bytes());
    }
}

/// The report and the broker are those of a whole-log recovery, segment by segment.
#[test]
fn streaming_reports_what_the_log_holds() {
    let image = backlog(40);
    let (_, report) = recover_streaming(&image);
    // `Broker::recover` is a loop over the same calls, so comparing with it would prove
    // nothing: the figures are checked against the log itself.
    assert_eq!((report.queues, report.messages), (1, 40), "{report:?}");
    assert_eq!(report.segments, image.segments.len() as u64);
    let records: u64 = image
        .segments
        .iter()
        .enumerate()
        .map(|(index, file)| {
            let scan = chute_core::storage::format::scan_segment(
                &file.bytes,
                index + 1 == image.segments.len(),
            )
            .unwrap();
            scan.records.len() as u64
        })
        .sum();
    assert_eq!(report.records, records);
}

/// Only the segment the driver says is the newest may end in a torn tail; the same bytes in
/// any other segment are corruption, with the same refusal as a whole-log recovery.
#[test]
fn only_the_newest_segment_handed_over_may_be_torn() {
    let image = backlog(40);
    let mut torn = image.segments[0].clone();
    let mut bytes = torn.bytes.to_vec();
    bytes.extend_from_slice(&[7, 0, 0]);
    torn.bytes = Bytes::from(bytes);

    let config = || small_segments(BrokerConfig::default());
    let mut recovery = Recovery::new(config(), Instant::ZERO);
    let error = recovery.handle_segment(torn.clone(), false).unwrap_err();
    assert!(
        matches!(&error, RecoveryError::Segment { source: ScanError::Corrupt { .. }, .. }),
        "{error:?}"
    );

    let mut recovery = Recovery::new(config(), Instant::ZERO);
    recovery.handle_segment(torn, true).expect("a torn tail in the newest segment");
    let (_, report) = recovery.finish(None, false).expect("recovery");
    let cut = report.truncation.expect("the torn tail is to be cut");
    assert_eq!((cut.valid_len, cut.dropped_bytes), (image.segments[0].bytes.len() as u64, 3));
}

/// A driver that hands over a segment after the one it said was the newest has a bug.
#[test]
#[should_panic(expected = "handed over after the newest")]
fn no_segment_after_the_newest() {
    let image = backlog(40);
    let mut recovery = Recovery::new(small_segments(BrokerConfig::default()), Instant::ZERO);
    recovery.handle_segment(image.segments[0].clone(), true).unwrap();
    let _ = recovery.handle_segment(image.segments[1].clone(), false);
}
