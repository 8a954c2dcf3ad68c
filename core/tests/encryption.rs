//! Encryption at rest (docs/STORAGE.md §16): sealed segments hide what they hold, recover
//! whole with the right key, are refused with a missing or wrong key, detect a changed body,
//! mix with segments in clear, and move to a new key by rotation and compaction.

mod support;

use bytes::{Bytes, BytesMut};
use chute_core::client::Response;
use chute_core::ids::Lsn;
use chute_core::storage::format::{scan_segment, segment_header_for, SEGMENT_HEADER_LEN};
use chute_core::storage::records::{Counters, Record};
use chute_core::storage::recovery::{recover_log, LogImage, RecoveryError};
use chute_core::storage::seal::{Keyring, SealError, SEAL_KIND};
use chute_core::{Broker, BrokerConfig, Instant};
use chute_protocol::{Destination, PublishMessage, QueueOptions};
use support::{payload, small_segments, Net};

const KEY_1: [u8; 32] = [0x11; 32];
const KEY_2: [u8; 32] = [0x22; 32];

fn keyring(keys: &[(u32, [u8; 32])], salt_seed: u8) -> Keyring {
    Keyring::new(keys.iter().copied(), [salt_seed; 16]).unwrap()
}

fn sealed_config(keys: &[(u32, [u8; 32])], salt_seed: u8) -> BrokerConfig {
    BrokerConfig { keyring: keyring(keys, salt_seed), ..BrokerConfig::default() }
}

/// Declares `jobs` and publishes `payloads` to it, each with the message id `id-<payload>`.
fn publish_with_ids(net: &mut Net, payloads: &[&str]) {
    let conn = net.connect();
    assert!(matches!(net.declare(conn, "jobs", QueueOptions::default()), Response::Declared(_)));
    for p in payloads {
        let mut message = PublishMessage::new(Bytes::copy_from_slice(p.as_bytes()));
        message.id = Some(format!("id-{p}"));
        net.client(conn).publish(&Destination::Queue("jobs".into()), false, message).unwrap();
    }
    net.pump();
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn all_bytes(image: &LogImage) -> Vec<u8> {
    image.segments.iter().flat_map(|s| s.bytes.to_vec()).collect()
}

fn recovered_payloads(config: BrokerConfig, image: &LogImage) -> Vec<String> {
    let (mut net, _) = Net::recovered(config, image);
    let conn = net.connect();
    net.subscribe(conn, "jobs", 100);
    net.deliveries(conn).iter().map(|d| payload(d).to_string()).collect()
}

/// With a key, no payload, message id, queue name or consumer's reason is in the files, and a
/// restart with the same key brings every message back.
#[test]
fn sealed_segments_hide_their_contents_and_recover_whole() {
    let mut net = Net::with_config(sealed_config(&[(1, KEY_1)], 1));
    publish_with_ids(&mut net, &["secret-payload-1", "secret-payload-2"]);
    let conn = net.connect();
    net.subscribe(conn, "jobs", 1);
    let tag = net.deliveries(conn)[0].tag;
    net.client(conn).nack(tag, Some(60_000), Some("card-declined-reason".into())).unwrap();
    net.pump();
    net.advance(30);
    let image = net.disk.after_process_crash();
    let bytes = all_bytes(&image);
    for needle in ["secret-payload", "id-secret", "card-declined", "jobs"] {
        assert!(!contains(&bytes, needle.as_bytes()), "{needle:?} is in the sealed log");
    }
    let (mut net, report) = Net::recovered(sealed_config(&[(1, KEY_1)], 2), &image);
    assert_eq!(report.messages, 2);
    let conn = net.connect();
    net.subscribe(conn, "jobs", 10);
    assert_eq!(payload(&net.deliveries(conn)[0]), "secret-payload-2");
}

/// A key missing from the configuration, or another key under the segment's key id, refuses
/// recovery, naming the segment file and the key id.
#[test]
fn a_missing_or_wrong_key_refuses_recovery_naming_segment_and_key() {
    let mut net = Net::with_config(sealed_config(&[(2, KEY_2)], 1));
    publish_with_ids(&mut net, &["m"]);
    let image = net.disk.after_process_crash();
    let missing = recover_log(&image, &keyring(&[(1, KEY_1)], 0)).unwrap_err();
    assert!(
        matches!(
            &missing,
            RecoveryError::Sealed { source: SealError::MissingKey { key_id: 2 }, .. }
        ),
        "{missing:?}"
    );
    let text = missing.to_string();
    assert!(
        text.contains("segment 00000000000000000000.log") && text.contains("key id 2"),
        "{text}"
    );
    assert!(recover_log(&image, &Keyring::default()).is_err(), "no keys at all");
    let wrong = recover_log(&image, &keyring(&[(2, KEY_1)], 0)).unwrap_err();
    assert!(
        matches!(&wrong, RecoveryError::Sealed { source: SealError::WrongKey { key_id: 2 }, .. }),
        "{wrong:?}"
    );
    assert!(wrong.to_string().contains("is not that key"), "{wrong}");
}

/// A changed sealed body whose checksum was made to match again is refused as forged, never
/// decrypted into something else (the crc alone is not a defence against a writer).
#[test]
fn a_changed_sealed_body_with_a_matching_crc_is_refused() {
    let mut net = Net::with_config(sealed_config(&[(1, KEY_1)], 1));
    publish_with_ids(&mut net, &["payload"]);
    let mut image = net.disk.after_process_crash();
    let file = &mut image.segments[0];
    let scan = scan_segment(&file.bytes, true).unwrap();
    let record = scan.records.iter().find(|r| r.kind == 4).expect("a Published record");
    let start = SEGMENT_HEADER_LEN + record.lsn.bytes_since(scan.base_lsn) as usize;
    let mut bytes = file.bytes.to_vec();
    bytes[start + 12] ^= 0x01;
    let len = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap()) as usize;
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&bytes[start..start + 4]),
        &bytes[start + 8..start + 8 + len],
    );
    bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    file.bytes = Bytes::from(bytes);
    let error = recover_log(&image, &keyring(&[(1, KEY_1)], 0)).unwrap_err();
    assert!(
        matches!(error, RecoveryError::Sealed { lsn, source: SealError::Forged { key_id: 1 }, .. } if lsn == record.lsn),
        "{error:?}"
    );
}

/// A log written in clear, then with a key: the broker starts a sealed segment at once (no
/// record of the second run is in clear), and both kinds of segment recover together.
#[test]
fn a_mixed_directory_recovers_and_seals_from_the_first_restart() {
    let mut net = Net::new();
    publish_with_ids(&mut net, &["plain-one"]);
    let image = net.disk.after_process_crash();
    let (mut net, _) = Net::recovered(sealed_config(&[(1, KEY_1)], 1), &image);
    let conn = net.connect();
    let message = PublishMessage::new(Bytes::from_static(b"sealed-two"));
    net.client(conn).publish(&Destination::Queue("jobs".into()), false, message).unwrap();
    net.pump();
    let image = net.disk.after_process_crash();
    let keys: Vec<_> = image
        .segments
        .iter()
        .map(|s| scan_segment(&s.bytes, false).map(|scan| scan.key_id).unwrap_or(None))
        .collect();
    assert_eq!(keys, [None, Some(1)], "the clear segment, then a sealed one");
    assert!(!contains(&image.segments[1].bytes, b"sealed-two"));
    let payloads = recovered_payloads(sealed_config(&[(1, KEY_1)], 2), &image);
    assert_eq!(payloads, ["plain-one", "sealed-two"]);
}

/// Appends resumed in a sealed segment after a restart start with a new seal marker and a new
/// salt, so a record written where a torn one was cut never shares a nonce with it.
#[test]
fn appends_resumed_in_a_sealed_segment_get_a_new_salt() {
    let mut net = Net::with_config(sealed_config(&[(1, KEY_1)], 7));
    publish_with_ids(&mut net, &["a"]);
    let mut image = net.disk.after_process_crash();
    // A torn write at the end, cut by recovery; the next record goes where it was.
    let mut bytes = image.segments[0].bytes.to_vec();
    bytes.extend_from_slice(&[0x40, 0, 0, 0, 0xde]);
    image.segments[0].bytes = Bytes::from(bytes);
    // Each start has fresh random bytes for its salts (the driver's): here another seed.
    let (mut net, report) = Net::recovered(sealed_config(&[(1, KEY_1)], 8), &image);
    assert!(report.truncation.is_some());
    publish_with_ids(&mut net, &["b"]);
    let image = net.disk.after_process_crash();
    assert_eq!(image.segments.len(), 1, "appends resumed in the same segment");
    let scan = scan_segment(&image.segments[0].bytes, true).unwrap();
    let salts: Vec<_> = scan
        .records
        .iter()
        .filter(|r| r.kind == SEAL_KIND)
        .map(|r| r.body[..16].to_vec())
        .collect();
    assert_eq!(salts.len(), 2, "one marker per run of appends");
    assert_ne!(salts[0], salts[1]);
    assert_eq!(recovered_payloads(sealed_config(&[(1, KEY_1)], 9), &image), ["a", "b"]);
}

/// Rotation: with key 2 first and key 1 kept, new segments are sealed with 2 at once; the old
/// segment is read with 1 until compaction has copied its live messages forward and it is
/// deleted, after which no segment uses key 1 (what `key_ids_in_use` reports) and the log
/// recovers without it.
#[test]
fn rotation_seals_new_segments_with_the_new_key_and_compaction_retires_the_old() {
    let mut net = Net::with_config(small_segments(sealed_config(&[(1, KEY_1)], 1)));
    let conn = net.connect();
    for queue in ["jobs", "keep"] {
        assert!(matches!(net.declare(conn, queue, QueueOptions::default()), Response::Declared(_)));
    }
    net.publish(conn, "keep", &["long-lived"]);
    let image = net.disk.after_process_crash();
    let rotated = small_segments(sealed_config(&[(2, KEY_2), (1, KEY_1)], 2));
    let (mut net, _) = Net::recovered(rotated.clone(), &image);
    assert!(key_ids(&net).contains(&Some(2)));
    assert!(key_ids(&net).contains(&Some(1)));
    let conn = net.connect();
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
    assert_eq!(key_ids(&net), [Some(2)].into(), "key 1 is no longer used");
    let image = net.disk.after_process_crash();
    let (mut net, report) = Net::recovered(small_segments(sealed_config(&[(2, KEY_2)], 3)), &image);
    assert_eq!(report.messages, 1);
    let conn = net.connect();
    net.subscribe(conn, "keep", 1);
    assert_eq!(payload(&net.deliveries(conn)[0]), "long-lived");
}

/// Turning encryption off with the old key kept for reading: new records go to a segment in
/// clear at once, and the sealed one is still read.
#[test]
fn a_sealed_log_recovers_in_clear_when_no_key_is_current() {
    let mut net = Net::with_config(sealed_config(&[(1, KEY_1)], 1));
    publish_with_ids(&mut net, &["one"]);
    let image = net.disk.after_process_crash();
    let reading_only = BrokerConfig {
        keyring: Keyring::new([(1, KEY_1)], [0; 16]).unwrap().reading_only(),
        ..BrokerConfig::default()
    };
    let (net, report) = Net::recovered(reading_only.clone(), &image);
    assert_eq!(report.messages, 1);
    assert_eq!(key_ids(&net), [Some(1), None].into());
}

/// The hex vector of docs/STORAGE.md §16.4: a sealed segment's header, its seal marker and a
/// sealed `Counters` record, for a fixed key and salt.
#[test]
fn the_sealed_segment_vector_of_storage_md_holds() {
    let doc = include_str!("../../docs/STORAGE.md");
    let section = doc.split("### 16.4").nth(1).expect("STORAGE.md has §16.4");
    let block = section.split("```text").nth(1).unwrap().split("```").next().unwrap();
    let expected: Vec<u8> = block
        .lines()
        .flat_map(|line| line.split("  ").next().unwrap_or("").split_whitespace())
        .map(|byte| u8::from_str_radix(byte, 16).expect("a hex byte"))
        .collect();
    let key: [u8; 32] = std::array::from_fn(|i| i as u8);
    let ring = Keyring::new([(1, key)], [0xa5; 16]).unwrap();
    let sealer = ring.sealer(1, 0).unwrap();
    let mut segment = BytesMut::from(&segment_header_for(Lsn(0), Some(1))[..]);
    chute_core::storage::format::append_record(
        &mut segment,
        SEAL_KIND,
        &sealer.marker_body(Lsn(0)),
    );
    let lsn = Lsn((segment.len() - SEGMENT_HEADER_LEN) as u64);
    Record::<&[u8]>::Counters(Counters { next_queue_id: 1, next_message_seq: 1 }).encode_sealed(
        &mut segment,
        lsn,
        &sealer,
    );
    assert_eq!(hex(&segment), hex(&expected));
    let image = LogImage::segments(vec![chute_core::storage::recovery::SegmentFile {
        name: "00000000000000000000.log".into(),
        bytes: segment.freeze(),
    }]);
    assert!(recover_log(&image, &ring).is_ok());
    let _ = Broker::recover(
        BrokerConfig { keyring: ring, ..BrokerConfig::default() },
        Instant::ZERO,
        &image,
    )
    .unwrap();
}

/// The keys the broker's segments are sealed with (`None`: in clear).
fn key_ids(net: &Net) -> std::collections::BTreeSet<Option<u32>> {
    net.broker.log_segments().map(|(_, segment)| segment.key_id).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x} ")).collect()
}

/// A newest segment in clear with no records, when a key is now configured: it gets a harmless
/// `Counters` record, so the sealed segment after it has a name of its own.
#[test]
fn an_empty_newest_segment_in_clear_is_followed_by_a_sealed_one() {
    let image = LogImage::segments(vec![chute_core::storage::recovery::SegmentFile {
        name: "00000000000000000000.log".into(),
        bytes: Bytes::copy_from_slice(&segment_header_for(Lsn(0), None)),
    }]);
    let (net, _) = Net::recovered(sealed_config(&[(1, KEY_1)], 1), &image);
    let image = net.disk.after_process_crash();
    // The segment in clear held nothing live and is gone once the new checkpoint is synced.
    let newest = image.segments.last().unwrap();
    assert_eq!(newest.name, "00000000000000000011.log");
    assert_eq!(scan_segment(&newest.bytes, true).unwrap().key_id, Some(1));
    recover_log(&image, &keyring(&[(1, KEY_1)], 0)).unwrap();
}
