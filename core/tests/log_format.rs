//! Properties of the log's segment format: what a crash (a cut at any byte) or bit rot (a flip
//! of any bit) does to a segment, as seen by recovery's scan.

use bytes::{Bytes, BytesMut};
use chute_core::ids::Lsn;
use chute_core::storage::format::{
    append_record, scan_segment, segment_header, RawRecord, ScanError, LSN_END_MAX,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// A segment as written, with the file offset at which each record starts and ends.
struct Written {
    bytes: Bytes,
    records: Vec<RawRecord>,
    /// `(start, end)` file offsets of each record.
    spans: Vec<(usize, usize)>,
}

fn write_segment(base_lsn: u64, records: &[(u8, Vec<u8>)]) -> Written {
    let mut out = BytesMut::new();
    out.extend_from_slice(&segment_header(Lsn(base_lsn)));
    let mut written = Vec::new();
    let mut spans = Vec::new();
    for (kind, body) in records {
        let start = out.len();
        let len = append_record(&mut out, *kind, body);
        assert_eq!(len, RECORD_HEADER_LEN + body.len());
        written.push(RawRecord {
            lsn: Lsn(base_lsn + (start - SEGMENT_HEADER_LEN) as u64),
            kind: *kind,
            body: Bytes::copy_from_slice(body),
        });
        spans.push((start, out.len()));
    }
    Written { bytes: out.freeze(), records: written, spans }
}

fn records_strategy() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    proptest::collection::vec((1u8..=255, proptest::collection::vec(any::<u8>(), 0..300)), 0..20)
}

/// Base LSNs with room for any segment these tests write.
fn base_lsn_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 0..u64::MAX / 2]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// A crash may leave any prefix of what was written. The scan of the newest segment keeps
    /// exactly the records that are wholly inside it and marks the rest as a torn tail.
    #[test]
    fn any_prefix_keeps_exactly_the_whole_records(
        base_lsn in base_lsn_strategy(),
        records in records_strategy(),
        cut in any::<Index>(),
    ) {
        let written = write_segment(base_lsn, &records);
        let cut = cut.index(written.bytes.len() + 1);
        let scan = scan_segment(&written.bytes.slice(..cut), true).unwrap();

        if cut < SEGMENT_HEADER_LEN {
            prop_assert!(scan.records.is_empty());
            prop_assert_eq!(scan.valid_len, 0);
            prop_assert_eq!(scan.torn_tail, Some(cut as u64));
            return Ok(());
        }
        let whole = written.spans.iter().take_while(|(_, end)| *end <= cut).count();
        let valid_len = written.spans[..whole].last().map_or(SEGMENT_HEADER_LEN, |s| s.1);
        prop_assert_eq!(scan.base_lsn, Lsn(base_lsn));
        prop_assert_eq!(&scan.records, &written.records[..whole]);
        prop_assert_eq!(scan.valid_len, valid_len as u64);
        prop_assert_eq!(scan.torn_tail, (cut > valid_len).then(|| (cut - valid_len) as u64));
        prop_assert_eq!(scan.next_lsn(), Some(Lsn(base_lsn + (valid_len - SEGMENT_HEADER_LEN) as u64)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Bit rot never turns into a different record. A flipped bit in the header's magic,
    /// version or flags is a bad header; in a record, it is corruption at that record, except
    /// in the last record of the newest segment, which cannot be told from a torn write and is
    /// dropped as a torn tail (it was never followed by anything the broker wrote after it).
    ///
    /// The base LSN is the one field no checksum covers (see the module documentation of
    /// `storage::format`): a flip there shifts every LSN, and the driver catches it by checking
    /// the base LSN against the segment's file name. This test pins that behaviour down.
    #[test]
    fn a_flipped_bit_never_yields_a_different_record(
        base_lsn in base_lsn_strategy(),
        records in records_strategy(),
        bit in any::<Index>(),
        is_last in any::<bool>(),
    ) {
        let written = write_segment(base_lsn, &records);
        let bit = bit.index(written.bytes.len() * 8);
        let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
        let mut flipped = written.bytes.to_vec();
        flipped[byte] ^= mask;
        let result = scan_segment(&Bytes::from(flipped), is_last);

        if byte < 16 {
            prop_assert!(matches!(result, Err(ScanError::BadHeader { .. })), "{:?}", result);
        } else if byte < SEGMENT_HEADER_LEN {
            let new_base = base_lsn ^ (u64::from(mask) << (8 * (byte - 16)));
            match result {
                Err(ScanError::BadHeader { .. }) => {
                    let records_len = (written.bytes.len() - SEGMENT_HEADER_LEN) as u64;
                    // Refused only when the flipped base leaves no room for the file's
                    // records and the log's growth.
                    let end = new_base.checked_add(records_len);
                    prop_assert!(end.is_none_or(|end| end > LSN_END_MAX));
                }
                Ok(scan) => {
                    prop_assert_eq!(scan.base_lsn, Lsn(new_base));
                    prop_assert_eq!(scan.records.len(), written.records.len());
                    for (got, original) in scan.records.iter().zip(&written.records) {
                        prop_assert_eq!(got.lsn.0, original.lsn.0 - base_lsn + new_base);
                        prop_assert_eq!((got.kind, &got.body), (original.kind, &original.body));
                    }
                }
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        } else {
            let k = written.spans.iter().position(|(_, end)| byte < *end).unwrap();
            let start = written.spans[k].0;
            let last = k + 1 == written.records.len();
            match result {
                Ok(scan) => {
                    prop_assert!(is_last && last, "a flip in record {} was accepted", k);
                    prop_assert_eq!(&scan.records, &written.records[..k]);
                    prop_assert_eq!(scan.valid_len, start as u64);
                    prop_assert_eq!(scan.torn_tail, Some((written.bytes.len() - start) as u64));
                }
                Err(ScanError::Corrupt { offset, .. }) => {
                    prop_assert!(!(is_last && last), "the newest segment's last record");
                    prop_assert_eq!(offset, start as u64);
                }
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever follows a valid header, the scan does not panic, and what it returns adds up:
    /// records lie inside the valid part, and valid part plus torn tail is the whole file.
    #[test]
    fn arbitrary_bytes_after_a_header_scan_without_panicking(
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
        is_last in any::<bool>(),
    ) {
        let mut bytes = segment_header(Lsn(7)).to_vec();
        bytes.extend_from_slice(&tail);
        let file_len = bytes.len() as u64;
        if let Ok(scan) = scan_segment(&Bytes::from(bytes), is_last) {
            prop_assert_eq!(scan.valid_len + scan.torn_tail.unwrap_or(0), file_len);
            prop_assert!(is_last || scan.torn_tail.is_none());
            let mut next_lsn = 7;
            for record in &scan.records {
                prop_assert_eq!(record.lsn, Lsn(next_lsn));
                prop_assert_ne!(record.kind, 0);
                next_lsn += (RECORD_HEADER_LEN + record.body.len()) as u64;
            }
            prop_assert_eq!(scan.next_lsn(), Some(Lsn(next_lsn)));
        }
    }
}
