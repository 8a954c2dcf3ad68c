use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::ids::Lsn;

const BASE: u64 = 1_000;

/// A segment starting at LSN `BASE` holding `records`.
fn segment(records: &[(u8, &[u8])]) -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(&segment_header(Lsn(BASE)));
    for (kind, body) in records {
        append_record(&mut out, *kind, body);
    }
    out
}

/// Record bytes with a length, kind and crc of the test's choosing. `crc: None` computes the
/// right crc for the bytes given, so a test can build a record that is wrong in one way only.
fn raw_record(len: u32, kind: u8, body: &[u8], crc: Option<u32>) -> Vec<u8> {
    let mut kind_and_body = vec![kind];
    kind_and_body.extend_from_slice(body);
    let crc = crc.unwrap_or_else(|| record_crc(len.to_le_bytes(), &kind_and_body));
    let mut out = Vec::new();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&kind_and_body);
    out
}

fn scan(bytes: &[u8], is_last: bool) -> Result<SegmentScan, ScanError> {
    scan_segment(&Bytes::copy_from_slice(bytes), is_last)
}

fn corrupt_offset(result: Result<SegmentScan, ScanError>) -> (u64, String) {
    match result {
        Err(ScanError::Corrupt { offset, reason }) => (offset, reason),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn bad_header_reason(result: Result<SegmentScan, ScanError>) -> String {
    match result {
        Err(ScanError::BadHeader { reason }) => reason,
        other => panic!("expected BadHeader, got {other:?}"),
    }
}

fn kinds_and_bodies(scan: &SegmentScan) -> Vec<(u8, Vec<u8>)> {
    scan.records.iter().map(|r| (r.kind, r.body.to_vec())).collect()
}

// ---- encoding ----

#[test]
fn header_is_magic_version_flags_base_lsn() {
    let header = segment_header(Lsn(0x0102_0304_0506_0708));
    assert_eq!(&header[0..8], b"CHUTELOG");
    assert_eq!(&header[8..12], &[1, 0, 0, 0]);
    assert_eq!(&header[12..16], &[0, 0, 0, 0]);
    assert_eq!(&header[16..24], &[8, 7, 6, 5, 4, 3, 2, 1]);
}

/// The layout the module documents, byte for byte, with the crc covering len, kind and body.
#[test]
fn record_is_len_crc_kind_body() {
    let mut out = BytesMut::new();
    let written = append_record(&mut out, 7, b"hello");
    assert_eq!(written, RECORD_HEADER_LEN + 5);
    assert_eq!(out.len(), written);
    assert_eq!(&out[0..4], &6u32.to_le_bytes());
    let mut covered = 6u32.to_le_bytes().to_vec();
    covered.push(7);
    covered.extend_from_slice(b"hello");
    assert_eq!(&out[4..8], &crc32c::crc32c(&covered).to_le_bytes());
    assert_eq!(out[8], 7);
    assert_eq!(&out[9..], b"hello");
}

#[test]
fn append_record_with_writes_the_same_bytes_as_append_record() {
    let mut copied = BytesMut::from(&b"prefix"[..]);
    let mut direct = copied.clone();
    let a = append_record(&mut copied, 42, b"some body bytes");
    let b = append_record_with(&mut direct, 42, |out| {
        out.extend_from_slice(b"some ");
        out.extend_from_slice(b"body bytes");
    });
    assert_eq!(a, b);
    assert_eq!(copied, direct);
}

#[test]
fn an_empty_body_makes_a_nine_byte_record() {
    let mut out = BytesMut::new();
    assert_eq!(append_record(&mut out, 1, b""), RECORD_HEADER_LEN);
    assert_eq!(&out[0..4], &1u32.to_le_bytes());
}

#[test]
#[should_panic(expected = "kind 0 is reserved")]
fn appending_kind_zero_is_a_bug() {
    append_record(&mut BytesMut::new(), 0, b"x");
}

#[test]
#[should_panic(expected = "exceeds RECORD_LEN_MAX")]
fn appending_a_record_over_the_limit_is_a_bug() {
    let body = vec![0u8; RECORD_LEN_MAX as usize];
    append_record_with(&mut BytesMut::new(), 1, |out| out.extend_from_slice(&body));
}

// ---- clean segments ----

#[test]
fn clean_segment_yields_every_record_with_its_lsn() {
    let bytes = segment(&[(1, b"a"), (2, b""), (255, b"third")]);
    let scan = scan(&bytes, false).unwrap();
    assert_eq!(scan.base_lsn, Lsn(BASE));
    let lsns: Vec<u64> = scan.records.iter().map(|r| r.lsn.0).collect();
    assert_eq!(lsns, vec![BASE, BASE + 10, BASE + 19]);
    assert_eq!(
        kinds_and_bodies(&scan),
        vec![(1, b"a".to_vec()), (2, vec![]), (255, b"third".to_vec())]
    );
    assert_eq!(scan.valid_len, bytes.len() as u64);
    assert_eq!(scan.torn_tail, None);
    assert_eq!(scan.next_lsn(), Some(Lsn(BASE + 33)));
}

#[test]
fn header_only_segment_is_clean_and_empty() {
    for is_last in [false, true] {
        let scan = scan(&segment_header(Lsn(5)), is_last).unwrap();
        assert_eq!(scan.base_lsn, Lsn(5));
        assert!(scan.records.is_empty());
        assert_eq!(scan.valid_len, 24);
        assert_eq!(scan.torn_tail, None);
        assert_eq!(scan.next_lsn(), Some(Lsn(5)));
    }
}

/// Bodies are slices of the segment's buffer, not copies: recovery of a large log must not
/// double its memory.
#[test]
fn bodies_share_the_segment_buffer() {
    let bytes = segment(&[(1, b"zero-copy body")]).freeze();
    let scan = scan_segment(&bytes, true).unwrap();
    let body = &scan.records[0].body;
    let range = bytes.as_ptr_range();
    assert!(range.contains(&body.as_ptr()));
    assert_eq!(body.as_ptr(), bytes[24 + RECORD_HEADER_LEN..].as_ptr());
}

// ---- header ----

/// A crash while the newest segment was being created leaves an empty file or part of a header.
/// Nothing is lost: no record can have been written after an incomplete header.
#[test]
fn a_partial_header_in_the_newest_segment_is_a_torn_tail() {
    let header = segment_header(Lsn(u64::MAX));
    for len in 0..SEGMENT_HEADER_LEN {
        let scan = scan(&header[..len], true).unwrap();
        assert_eq!(scan.valid_len, 0, "prefix of {len} bytes");
        assert_eq!(scan.torn_tail, Some(len as u64));
        assert!(scan.records.is_empty());
        assert_eq!(scan.next_lsn(), None);
    }
}

#[test]
fn a_partial_header_in_an_older_segment_is_a_bad_header() {
    let header = segment_header(Lsn(3));
    for len in 0..SEGMENT_HEADER_LEN {
        let reason = bad_header_reason(scan(&header[..len], false));
        assert!(reason.contains("shorter than the 24-byte header"), "{reason}");
    }
}

#[test]
fn a_short_file_that_is_not_a_header_prefix_is_a_bad_header() {
    for bytes in [&b"CHUTEXX"[..], &[0u8; 10][..], &b"CHUTELOG\x03"[..]] {
        bad_header_reason(scan(bytes, true));
    }
    // Flags are part of the prefix check too.
    let mut header = segment_header(Lsn(0));
    header[13] = 1;
    bad_header_reason(scan(&header[..14], true));
}

#[test]
fn wrong_magic_version_or_flags_is_a_bad_header_even_in_the_newest_segment() {
    let cases: [(usize, u8, &str); 3] = [
        (0, b'X', "magic"),
        (8, 3, "format version 3 is not supported"),
        (15, 0x80, "flags 0x80000000"),
    ];
    for (at, byte, expected) in cases {
        let mut bytes = segment(&[(1, b"x")]);
        bytes[at] = byte;
        for is_last in [false, true] {
            let reason = bad_header_reason(scan(&bytes, is_last));
            assert!(reason.contains(expected), "{reason}");
        }
    }
}

/// A sealed segment's header names its key in place of the flags; 0 is never a key.
#[test]
fn a_sealed_header_names_its_key_and_key_zero_is_a_bad_header() {
    let mut bytes = segment_header_for(Lsn(BASE), Some(7)).to_vec();
    let scanned = scan(&bytes, false).unwrap();
    assert_eq!((scanned.base_lsn, scanned.key_id), (Lsn(BASE), Some(7)));
    assert_eq!(scan(&segment_header(Lsn(BASE)), false).unwrap().key_id, None);
    bytes[12] = 0;
    let reason = bad_header_reason(scan(&bytes, true));
    assert!(reason.contains("names key id 0"), "{reason}");
    // A sealed header cut short while being created is a torn creation, whatever its key.
    let torn = segment_header_for(Lsn(BASE), Some(7));
    assert_eq!(scan(&torn[..14], true).unwrap().valid_len, 0);
}

/// A zero-filled file is not a header being written (the magic is written first), so it is not
/// taken for a torn tail.
#[test]
fn a_zero_filled_header_is_a_bad_header() {
    bad_header_reason(scan(&[0u8; 4096], true));
}

/// LSNs of every record must be representable; a corrupt base LSN must not overflow them.
#[test]
fn a_base_lsn_without_room_for_the_file_is_a_bad_header() {
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&segment_header(Lsn(u64::MAX - 5)));
    append_record(&mut bytes, 1, b"0123456789");
    let reason = bad_header_reason(scan(&bytes, true));
    assert!(reason.contains("no room"), "{reason}");
    // Exactly enough room is fine.
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&segment_header(Lsn(LSN_END_MAX - 19)));
    append_record(&mut bytes, 1, b"0123456789");
    let scanned = scan(&bytes, true).unwrap();
    assert_eq!(scanned.records[0].lsn, Lsn(LSN_END_MAX - 19));
    assert_eq!(scanned.next_lsn(), Some(Lsn(LSN_END_MAX)));
    // A header alone at the very end of the positions, which recovery's checkpoint would
    // overflow (found by the log_recovery fuzz target), is refused.
    let reason = bad_header_reason(scan(&segment_header(Lsn(u64::MAX)), true));
    assert!(reason.contains("no room"), "{reason}");
}

// ---- torn tails ----

fn assert_torn(bytes: &[u8], valid_len: usize, records: usize) {
    let scan = scan(bytes, true).unwrap();
    assert_eq!(scan.records.len(), records);
    assert_eq!(scan.valid_len, valid_len as u64);
    assert_eq!(scan.torn_tail, Some((bytes.len() - valid_len) as u64));
    // The same bytes in an older segment are corruption at the same place.
    let (offset, reason) = corrupt_offset(self::scan(bytes, false));
    assert_eq!(offset, valid_len as u64);
    assert!(reason.contains("newest segment"), "{reason}");
}

#[test]
fn a_torn_record_header_is_a_torn_tail() {
    let whole = segment(&[(1, b"first"), (2, b"second")]);
    let first_end = 24 + RECORD_HEADER_LEN + 5;
    for cut in first_end + 1..first_end + RECORD_HEADER_LEN {
        assert_torn(&whole[..cut], first_end, 1);
    }
}

#[test]
fn a_torn_body_is_a_torn_tail() {
    let whole = segment(&[(1, b"first"), (2, b"second")]);
    let first_end = 24 + RECORD_HEADER_LEN + 5;
    for cut in first_end + RECORD_HEADER_LEN..whole.len() {
        assert_torn(&whole[..cut], first_end, 1);
    }
}

#[test]
fn a_crc_mismatch_in_the_last_record_is_a_torn_tail() {
    let mut bytes = segment(&[(1, b"first"), (2, b"second")]);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert_torn(&bytes, 24 + RECORD_HEADER_LEN + 5, 1);
}

/// Preallocated space reads as zeroes: len 0, then kind 0, never a record.
#[test]
fn a_zero_filled_tail_is_a_torn_tail() {
    let mut bytes = segment(&[(1, b"first")]).to_vec();
    let end = bytes.len();
    bytes.resize(end + 64 * 1024, 0);
    assert_torn(&bytes, end, 1);
}

#[test]
fn a_record_of_length_zero_at_the_end_is_a_torn_tail() {
    let mut bytes = segment(&[(1, b"first")]).to_vec();
    let end = bytes.len();
    bytes.extend_from_slice(&raw_record(0, 1, b"", None)[..8]);
    bytes.extend_from_slice(&[5, 6, 7]);
    assert_torn(&bytes, end, 1);
}

#[test]
fn a_record_of_kind_zero_at_the_end_is_a_torn_tail() {
    let mut bytes = segment(&[(1, b"first")]).to_vec();
    let end = bytes.len();
    bytes.extend_from_slice(&raw_record(4, 0, b"abc", None));
    assert_torn(&bytes, end, 1);
}

#[test]
fn a_record_longer_than_the_maximum_at_the_end_is_a_torn_tail() {
    let mut bytes = segment(&[(1, b"first")]).to_vec();
    let end = bytes.len();
    bytes.extend_from_slice(&raw_record(RECORD_LEN_MAX + 1, 1, b"abc", None));
    assert_torn(&bytes, end, 1);
}

/// The common torn write: the length made it to disk, the rest of the record did not.
#[test]
fn a_length_past_the_end_followed_by_nothing_valid_is_a_torn_tail() {
    let mut bytes = segment(&[(1, b"first")]).to_vec();
    let end = bytes.len();
    bytes.extend_from_slice(&raw_record(1000, 3, &[0xAB; 100], None));
    assert_torn(&bytes, end, 1);
}

/// A hostile length is compared with the file before anything else happens: no huge
/// allocation, no panic.
#[test]
fn a_huge_length_in_a_short_file_is_harmless() {
    for len in [u32::MAX, RECORD_LEN_MAX, RECORD_LEN_MAX + 1] {
        let mut bytes = segment_header(Lsn(0)).to_vec();
        bytes.extend_from_slice(&raw_record(len, 1, b"x", None));
        assert_torn(&bytes, 24, 0);
    }
}

// ---- corruption ----

/// A bad record followed by a good one cannot be a torn write: the broker must refuse to start,
/// and the operator is told where the damage is.
#[test]
fn a_crc_mismatch_followed_by_a_good_record_is_corruption_at_the_bad_record() {
    let mut bytes = segment(&[(1, b"first"), (2, b"second"), (3, b"third")]);
    let second = 24 + RECORD_HEADER_LEN + 5;
    let third = second + RECORD_HEADER_LEN + 6;
    bytes[second + RECORD_HEADER_LEN] ^= 0x20; // a bit in the body of "second"
    for is_last in [true, false] {
        let (offset, reason) = corrupt_offset(scan(&bytes, is_last));
        assert_eq!(offset, second as u64);
        assert!(reason.contains("checksum mismatch"), "{reason}");
        if is_last {
            assert!(
                reason.contains(&format!("valid record follows at offset {third}")),
                "{reason}"
            );
        }
    }
}

#[test]
fn invalid_headers_followed_by_a_good_record_are_corruption() {
    let bad_records = [
        ("length 0", raw_record(0, 1, b"", None)),
        ("kind 0", raw_record(4, 0, b"abc", None)),
        ("exceeds the maximum", raw_record(RECORD_LEN_MAX + 1, 1, b"abc", None)),
        ("past the end", raw_record(u32::MAX >> 8, 1, b"abc", None)),
    ];
    for (expected, bad) in bad_records {
        let mut bytes = segment(&[(1, b"first")]).to_vec();
        let at = bytes.len();
        bytes.extend_from_slice(&bad);
        let good_at = bytes.len();
        bytes.extend_from_slice(&raw_record(3, 9, b"ok", None));
        let (offset, reason) = corrupt_offset(scan(&bytes, true));
        assert_eq!(offset, at as u64, "{expected}");
        assert!(reason.contains(expected), "{reason}");
        assert!(reason.contains(&format!("offset {good_at}")), "{reason}");
    }
}

/// The good record after the damage need not start where the bad record said it would end: the
/// search tries every offset.
#[test]
fn a_good_record_at_an_unaligned_offset_after_garbage_is_found() {
    let mut bytes = segment(&[]).to_vec();
    bytes.extend_from_slice(&[0xFF, 0x13, 0x37, 0x00, 0x42, 0x99, 0x01]);
    let good_at = bytes.len();
    bytes.extend_from_slice(&raw_record(6, 200, b"hello", None));
    bytes.extend_from_slice(&[0; 100]);
    let (offset, reason) = corrupt_offset(scan(&bytes, true));
    assert_eq!(offset, 24);
    assert!(reason.contains(&format!("offset {good_at}")), "{reason}");
}

/// Candidates longer than `DIRECT_CRC_LEN_MAX` are checked through prefix crcs; the answer must
/// not change.
#[test]
fn a_large_good_record_after_garbage_is_found_and_a_large_bad_one_is_not() {
    let body: Vec<u8> = (0..DIRECT_CRC_LEN_MAX * 3 + 17).map(|i| (i * 31 % 251) as u8).collect();
    let mut bytes = segment(&[(1, b"first")]).to_vec();
    let bad_at = bytes.len();
    // len 0x04030201: over the maximum.
    bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    let good_at = bytes.len();
    let mut good = BytesMut::new();
    append_record(&mut good, 77, &body);
    bytes.extend_from_slice(&good);

    let (offset, reason) = corrupt_offset(scan(&bytes, true));
    assert_eq!(offset, bad_at as u64);
    assert!(reason.contains(&format!("offset {good_at}")), "{reason}");

    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    assert_torn(&bytes, bad_at, 1);
}

#[test]
fn errors_read_as_operator_messages() {
    let err = ScanError::Corrupt { offset: 4096, reason: "checksum mismatch".into() };
    assert_eq!(
        format!("segment 00000000000000001000.log is {err}"),
        "segment 00000000000000001000.log is corrupt at offset 4096: checksum mismatch"
    );
    let err = bad_header_reason(scan(b"GIF89a...", true));
    assert!(err.contains("does not start like a segment header"), "{err}");
}

// ---- prefixes and scale ----

/// Every prefix of a small segment: what a crash after any number of bytes leaves behind.
#[test]
fn every_prefix_keeps_exactly_the_whole_records() {
    let records: [(u8, &[u8]); 4] = [(1, b""), (2, b"ab"), (3, &[0; 20]), (4, b"last one")];
    let whole = segment(&records);
    let mut ends = vec![24];
    for (_, body) in records {
        ends.push(ends.last().unwrap() + RECORD_HEADER_LEN + body.len());
    }
    for cut in 0..=whole.len() {
        let scan = scan(&whole[..cut], true).unwrap();
        if cut < 24 {
            assert_eq!((scan.valid_len, scan.torn_tail), (0, Some(cut as u64)));
            continue;
        }
        let whole_records = ends.iter().filter(|&&end| end <= cut).count() - 1;
        let valid_len = ends[whole_records];
        assert_eq!(scan.records.len(), whole_records, "cut at {cut}");
        assert_eq!(scan.valid_len, valid_len as u64);
        let torn = (cut > valid_len).then(|| (cut - valid_len) as u64);
        assert_eq!(scan.torn_tail, torn);
    }
}

/// A segment of realistic size scans without trouble (no timing asserted).
#[test]
fn ten_thousand_records_of_256_bytes_scan_back() {
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&segment_header(Lsn(0)));
    for i in 0..10_000u32 {
        let body = [(i % 251) as u8; 256 - RECORD_HEADER_LEN];
        assert_eq!(append_record(&mut bytes, (i % 255 + 1) as u8, &body), 256);
    }
    let bytes = bytes.freeze();
    let scan = scan_segment(&bytes, false).unwrap();
    assert_eq!(scan.records.len(), 10_000);
    assert_eq!(scan.valid_len, 24 + 256 * 10_000);
    assert_eq!(scan.records[9_999].lsn, Lsn(256 * 9_999));
    assert_eq!(scan.records[9_999].kind, (9_999 % 255 + 1) as u8);
    assert_eq!(scan.records[9_999].body[0], (9_999 % 251) as u8);
}

// ---- the crc arithmetic behind the forward search ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn shift_crc_agrees_with_crc32c_combine(
        a in any::<u32>(),
        b in any::<u32>(),
        len in any::<u32>(),
    ) {
        prop_assert_eq!(shift_crc(a, len) ^ b, crc32c::crc32c_combine(a, b, len as usize));
    }

    #[test]
    fn span_crc_prefix_agrees_with_hashing(
        data in proptest::collection::vec(any::<u8>(), 0..3 * SPAN_CRC_STRIDE),
        start_seed in any::<usize>(),
        end_seed in any::<usize>(),
    ) {
        let start = start_seed % (data.len() + 1);
        let end = start + end_seed % (data.len() - start + 1);
        let spans = SpanCrc::new(&data, start);
        prop_assert_eq!(spans.prefix(end), crc32c::crc32c(&data[start..end]));
    }

    /// The forward search's crc through prefix crcs gives the same verdict as hashing.
    #[test]
    fn span_crc_checks_records_like_hashing(
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
        body_len in DIRECT_CRC_LEN_MAX..DIRECT_CRC_LEN_MAX + 2 * SPAN_CRC_STRIDE,
        flip in proptest::option::of(any::<usize>()),
    ) {
        let mut data = garbage.clone();
        let record_at = data.len();
        let mut record = BytesMut::new();
        append_record(&mut record, 1, &vec![0x5A; body_len]);
        data.extend_from_slice(&record);
        if let Some(flip) = flip {
            let bit = flip % ((data.len() - record_at) * 8);
            data[record_at + bit / 8] ^= 1 << (bit % 8);
        }
        let expected = (0..=data.len().saturating_sub(RECORD_HEADER_LEN))
            .find(|&pos| check_record(&data, pos).is_ok());
        prop_assert_eq!(find_valid_record(&data, 0), expected);
    }
}

/// Names are 20 zero-padded digits and `.log`, so they sort in log order, and read back to the
/// same base LSN; anything else is not a segment's name.
#[test]
fn segment_file_names_round_trip_and_nothing_else_parses() {
    assert_eq!(segment_file_name(Lsn(0)), "00000000000000000000.log");
    assert_eq!(segment_file_name(Lsn(67_108_877)), "00000000000067108877.log");
    for base in [0, 1, 67_108_877, u64::MAX] {
        assert_eq!(parse_segment_file_name(&segment_file_name(Lsn(base))), Some(Lsn(base)));
    }
    assert!(segment_file_name(Lsn(9)) < segment_file_name(Lsn(10)), "names sort in log order");
    for name in [
        "LOCK",
        "0.log",
        "0000000000000000000.log",   // 19 digits
        "000000000000000000000.log", // 21 digits
        "+0000000000000000001.log",
        "0000000000000000000a.log",
        "00000000000000000000.tmp",
        "99999999999999999999.log", // 20 digits, but no u64
        "00000000000000000000.log.bak",
    ] {
        assert_eq!(parse_segment_file_name(name), None, "{name}");
    }
}
