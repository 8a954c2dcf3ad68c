//! The manifest: recovery refuses a log that ends earlier, or starts later, than the manifest
//! says it was durable, and accepts the loss only when the operator says so.

mod support;

use bytes::Bytes;
use chute_core::storage::manifest::{LogCutShort, MANIFEST_SLOT_LEN};
use chute_core::storage::recovery::{LogImage, ManifestCheck, RecoveryError};
use chute_core::{Broker, BrokerConfig, Instant};
use chute_protocol::QueueOptions;
use support::{small_segments, Net};

/// A broker with confirmed messages in several segments, shut down gracefully (so the
/// manifest names exactly where the log ends).
fn stopped_with_segments() -> Net {
    let mut net = Net::with_config(small_segments(BrokerConfig::default()));
    let conn = net.connect();
    net.declare(conn, "jobs", QueueOptions::default());
    let body = "x".repeat(1000);
    for _ in 0..30 {
        net.publish(conn, "jobs", &[body.as_str(); 20]);
    }
    assert_eq!(net.confirmed(conn).len(), 600);
    assert!(net.disk.files().len() >= 3, "{} segments", net.disk.files().len());
    let now = net.now;
    net.broker.shutdown(now);
    net.pump();
    assert!(net.broker.is_drained());
    net
}

fn cut_short(image: &LogImage) -> LogCutShort {
    match Broker::recover(small_segments(BrokerConfig::default()), Instant::ZERO, image) {
        Err(RecoveryError::CutShort(cut)) => cut,
        Err(other) => panic!("refused for another reason: {other}"),
        Ok((_, report)) => panic!("recovered a log cut short: {report:?}"),
    }
}

/// Deleting the newest segment, or emptying it, is refused with the file named; the flag that
/// accepts the loss recovers what is left, and the next start agrees with the new end.
#[test]
fn a_missing_or_emptied_newest_segment_is_refused() {
    let net = stopped_with_segments();
    let mut deleted = net.disk.image();
    let newest = deleted.segments.pop().unwrap().name;
    let cut = cut_short(&deleted);
    assert_eq!(cut, LogCutShort::NewestSegmentMissing { file: newest.clone() });
    let refusal = RecoveryError::CutShort(cut).to_string();
    assert!(refusal.contains(&newest) && refusal.contains("--accept-data-loss"), "{refusal}");

    let mut emptied = net.disk.image();
    emptied.segments.last_mut().unwrap().bytes = Bytes::new();
    assert!(matches!(cut_short(&emptied), LogCutShort::NewestSegmentMissing { .. }));

    deleted.accept_data_loss = true;
    let (recovered, report) = Net::recovered(small_segments(BrokerConfig::default()), &deleted);
    assert!(matches!(report.manifest, ManifestCheck::LossAccepted(_)), "{report:?}");
    let kept = recovered.broker.queue_depth("jobs").unwrap();
    assert!(kept < 600, "{kept}");
    let (again, report) =
        Net::recovered(small_segments(BrokerConfig::default()), &recovered.disk.image());
    assert_eq!(report.manifest, ManifestCheck::Agrees);
    assert_eq!(again.broker.queue_depth("jobs"), Some(kept));
}

/// A newest segment cut inside records that were synced (here: all of them, after a graceful
/// stop) is refused, with how much is missing.
#[test]
fn a_newest_segment_cut_inside_synced_records_is_refused() {
    let net = stopped_with_segments();
    let mut image = net.disk.image();
    let last = image.segments.last_mut().unwrap();
    last.bytes = last.bytes.slice(..last.bytes.len() - 100);
    let cut = cut_short(&image);
    assert!(
        matches!(cut, LogCutShort::SyncedRecordsMissing { missing_bytes, .. } if missing_bytes > 0),
        "{cut:?}"
    );
}

/// A deleted oldest segment, which the log still needed, is refused too.
#[test]
fn a_missing_oldest_segment_is_refused() {
    let net = stopped_with_segments();
    let mut image = net.disk.image();
    let oldest = image.segments.remove(0).name;
    assert_eq!(cut_short(&image), LogCutShort::OldestSegmentMissing { file: oldest });
}

/// The manifest's two slots: a torn write of the newer one leaves the older in force.
#[test]
fn a_torn_manifest_slot_falls_back_to_the_other() {
    let net = stopped_with_segments();
    let mut image = net.disk.image();
    let mut manifest = image.manifest.take().unwrap().to_vec();
    assert_eq!(manifest.len(), 2 * MANIFEST_SLOT_LEN);
    let newer = chute_core::storage::manifest::Manifest::decode_file(&manifest).unwrap();
    let at = newer.slot_offset() as usize + 30;
    manifest[at] ^= 0xff;
    image.manifest = Some(Bytes::from(manifest));
    let (_, report) = Net::recovered(small_segments(BrokerConfig::default()), &image);
    assert_eq!(report.manifest, ManifestCheck::Agrees, "the older slot still agrees");
}

/// A data directory from before manifests recovers as it is, and gets one.
#[test]
fn a_log_without_a_manifest_recovers_and_gets_one() {
    let net = stopped_with_segments();
    let mut image = net.disk.image();
    image.manifest = None;
    let (recovered, report) = Net::recovered(small_segments(BrokerConfig::default()), &image);
    assert_eq!(report.manifest, ManifestCheck::Absent);
    assert_eq!(recovered.broker.queue_depth("jobs"), Some(600));
    let mut deleted = recovered.disk.image();
    assert!(deleted.manifest.is_some(), "written at recovery");
    deleted.segments.pop();
    assert!(matches!(cut_short(&deleted), LogCutShort::NewestSegmentMissing { .. }));
}
