//! Recovery on arbitrary segment files.
//!
//! Input layout: `[control, seal, len1 (u16 LE), len2 (u16 LE), data...]`.
//! - `control % 3 + 1` files: the first takes `len1` bytes of `data`, the second `len2` (when
//!   there are three), the last the rest.
//! - Bits 2, 3, 4 of `control`: file 1, 2, 3 starts with a valid segment header (from
//!   `segment_header`), whose base LSN follows the previous file as if all its bytes were
//!   records, and is named after it. Other files are named `raw-N.log`, a name recovery does
//!   not check. Bit 5 starts the first header at a large base LSN instead of 0.
//! - Bit 6: each file's bytes (after its header) are chunks `[kind, len, body (len bytes)]`
//!   that the target frames as records with valid checksums, so that well-formed records
//!   with any body, in any order, reach record decoding and `Recovery`.
//! - Bit 7: the data directory has a manifest, a valid one naming the first and last file's
//!   base LSNs and a durable end `len2` bytes past the last base (which the log may or may not
//!   reach), with its slot's bytes XORed by `len1`'s low byte (0 leaves it valid).
//! - `seal` bit 0: encryption at rest with a fixed test key (id 1): headers are sealed ones
//!   (format version 2), framed records (bit 6) are sealed after a seal marker, with valid
//!   checksums, and recovery has the key. Bit 1: one bit of one sealed record's body (chosen by
//!   bits 2-7) is flipped and its checksum made to match again.
//!
//! Properties:
//! - `scan_segment`, `recover_log` and `Recovery` (segments handed over one at a time, as a
//!   server does) never panic, and a recovered broker runs (its timers fire for an hour)
//!   without panicking, on an in-memory disk holding what recovery left, which refuses any
//!   request a real disk would (an append in the wrong place, a segment created twice);
//! - every record `scan_segment` returns passed its checksum: re-framing its kind and body with
//!   `append_record` gives exactly the bytes of the file at its offset; the records are back to
//!   back from the header to `valid_len`, and a torn tail is the rest of the file;
//! - `Recovery` succeeds exactly when `recover_log` does, and neither's result holds any
//!   segment's buffer (payloads and header values are copied out of it);
//! - cutting the torn tail recovery reports (or deleting a file with a torn header) and
//!   recovering again gives the same state, with nothing left to cut;
//! - a sealed record whose body was changed (checksum fixed) is never accepted: recovery fails;
//! - `walk_published` (how a cold run is read back) never panics on a file's bytes after its
//!   header, and on a clean segment in clear walks every `Published` record the scan found,
//!   in order, ending where the file does.

#![no_main]

use bytes::{Bytes, BytesMut};
use chute_core::ids::Lsn;
use chute_core::storage::format::{
    append_record, append_sealed_record_with, scan_segment, segment_file_name, segment_header_for,
    SEGMENT_HEADER_LEN,
};
use chute_core::storage::manifest::Manifest;
use chute_core::storage::read::{walk_published, SegmentKeys};
use chute_core::storage::records::kind;
use chute_core::storage::recovery::{
    recover_log, LogImage, RecoveredLog, RecoveryError, SegmentFile,
};
use chute_core::storage::seal::{Keyring, SEAL_KIND};
use chute_core::test_util::MemDisk;
use chute_core::{Broker, BrokerConfig, Input, Instant, Output, Recovery, RecoveryReport};
use libfuzzer_sys::fuzz_target;

/// The test key of sealed mode; the salts' seed is fixed too (a server's is random).
fn keyring() -> Keyring {
    Keyring::new([(1, [0x5a; 32])], [0xc3; 16]).expect("one key")
}

fuzz_target!(|input: &[u8]| {
    let [control, seal, a, b, c, d, data @ ..] = input else {
        return;
    };
    let sealed = seal & 1 != 0;
    let keyring = if sealed { keyring() } else { Keyring::default() };
    let lens = [u16::from_le_bytes([*a, *b]), u16::from_le_bytes([*c, *d])];
    let (mut files, sealed_bodies) = split_files(*control, sealed, lens, data);
    let tampered = seal & 2 != 0 && tamper(&mut files, &sealed_bodies, seal >> 2);

    for (index, file) in files.iter().enumerate() {
        check_scan(file, index + 1 == files.len());
    }

    let image =
        LogImage { manifest: manifest(*control, lens, &files), ..LogImage::segments(files) };
    let recovered = recover_log(&image, &keyring);
    assert!(
        !(tampered && recovered.is_ok()),
        "a sealed record with a changed body (checksum fixed) was accepted"
    );
    let config = BrokerConfig { keyring: keyring.clone(), ..BrokerConfig::default() };
    let broker = recover_streaming(config, &image);
    assert_eq!(
        recovered.is_ok(),
        broker.is_ok(),
        "recover_log: {:?}, Recovery: {:?}",
        recovered.as_ref().err(),
        broker.as_ref().err()
    );
    // Nothing recovery keeps refers to a segment's buffer: each is the image's alone again.
    for file in &image.segments {
        assert!(
            file.bytes.is_empty() || file.bytes.is_unique(),
            "what recovery kept still holds {}'s buffer",
            file.name
        );
    }
    let Ok(recovered) = recovered else { return };
    check_idempotent(&image, &recovered, &keyring);

    // The recovered broker must run, on the disk recovery leaves: drain what it asks for, then
    // let its timers fire.
    let (mut broker, report) = broker.expect("checked above");
    let mut disk = MemDisk::recovered_from(&image, report.truncation.as_ref());
    drain(&mut broker, &mut disk, Instant::ZERO);
    let mut now = Instant::ZERO;
    let end = Instant::from_millis(3_600_000);
    for _ in 0..1_000 {
        let Some(at) = broker.poll_timeout().filter(|at| *at <= end) else { break };
        now = now.max(at);
        broker.handle_input(now, Input::Timeout);
        drain(&mut broker, &mut disk, now);
    }
});

/// Recovers a broker as a server does, through `Recovery`: one segment handed over at a time,
/// oldest first, then the manifest.
fn recover_streaming(
    config: BrokerConfig,
    image: &LogImage,
) -> Result<(Broker, RecoveryReport), RecoveryError> {
    let mut recovery = Recovery::new(config, Instant::ZERO);
    let count = image.segments.len();
    for (index, file) in image.segments.iter().enumerate() {
        recovery.handle_segment(file.clone(), index + 1 == count)?;
    }
    recovery.finish(image.manifest.as_deref(), image.accept_data_loss)
}

/// Where a sealed record's body lies: (file, offset of the record, offset of its body, end).
type SealedBody = (usize, usize, usize, usize);

fn split_files(
    control: u8,
    sealed: bool,
    lens: [u16; 2],
    data: &[u8],
) -> (Vec<SegmentFile>, Vec<SealedBody>) {
    let count = usize::from(control % 3) + 1;
    let mut rest = data;
    let mut next_lsn: u64 = if control & 0x20 != 0 { 1 << 40 } else { 0 };
    let mut files = Vec::with_capacity(count);
    let mut sealed_bodies = Vec::new();
    for index in 0..count {
        // Every file but the last takes its length from the input; the last takes the rest.
        let limit = if index + 1 == count { None } else { lens.get(index) };
        let take = limit.map_or(rest.len(), |len| usize::from(*len).min(rest.len()));
        let (body, tail) = rest.split_at(take);
        rest = tail;
        let framed;
        let body = match (control & 0x40 != 0, sealed) {
            (true, true) => {
                let (records, bodies) = frame_sealed_records(body, Lsn(next_lsn));
                let in_file = |offset: usize| offset + SEGMENT_HEADER_LEN;
                sealed_bodies.extend(
                    bodies.iter().map(|(r, b, e)| (index, in_file(*r), in_file(*b), in_file(*e))),
                );
                framed = records;
                &framed[..]
            }
            (true, false) => {
                framed = frame_records(body);
                &framed[..]
            }
            (false, _) => body,
        };
        let (name, bytes) = if control & (0x04 << index) != 0 {
            let key_id = sealed.then_some(1);
            let mut bytes = BytesMut::from(&segment_header_for(Lsn(next_lsn), key_id)[..]);
            bytes.extend_from_slice(body);
            (segment_file_name(Lsn(next_lsn)), bytes.freeze())
        } else {
            (format!("raw-{index}.log"), Bytes::copy_from_slice(body))
        };
        // Where the next segment would start if every byte after a header were a record.
        next_lsn += bytes.len().saturating_sub(SEGMENT_HEADER_LEN) as u64;
        files.push(SegmentFile { name, bytes });
    }
    // Bodies of files without a header are not where the sealing put them.
    sealed_bodies.retain(|(index, ..)| control & (0x04 << index) != 0);
    (files, sealed_bodies)
}

/// Chunks `[kind, len, body]` framed as sealed records after a seal marker, as a broker writes
/// a sealed segment starting at `base_lsn`; also where each sealed body lies (offsets of the
/// record, of its body and of its end, from the first record).
fn frame_sealed_records(
    mut chunks: &[u8],
    base_lsn: Lsn,
) -> (BytesMut, Vec<(usize, usize, usize)>) {
    let sealer = keyring().sealer(1, 0).expect("key 1");
    let mut out = BytesMut::new();
    append_record(&mut out, SEAL_KIND, &sealer.marker_body(base_lsn));
    let mut bodies = Vec::new();
    while let [kind, len, rest @ ..] = chunks {
        let (body, tail) = rest.split_at(usize::from(*len).min(rest.len()));
        // A marker in the middle is framed in clear, as the broker writes one after a restart.
        let kind = (*kind).max(1);
        let start = out.len();
        let lsn = base_lsn.plus(start as u64);
        if kind == SEAL_KIND {
            append_record(&mut out, kind, body);
        } else {
            append_sealed_record_with(&mut out, kind, lsn, &sealer, |out| {
                out.extend_from_slice(body)
            });
            bodies.push((start, start + 9, out.len()));
        }
        chunks = tail;
    }
    (out, bodies)
}

/// Flips one bit of one sealed record's body (ciphertext or tag) and makes its checksum match
/// again; returns whether there was one to change.
fn tamper(files: &mut [SegmentFile], sealed_bodies: &[SealedBody], selector: u8) -> bool {
    if sealed_bodies.is_empty() {
        return false;
    }
    let (index, record, body, end) = sealed_bodies[usize::from(selector) % sealed_bodies.len()];
    let mut bytes = files[index].bytes.to_vec();
    let at = body + usize::from(selector) * 7 % (end - body);
    bytes[at] ^= 1 << (selector % 8);
    // Framed again: the same length, and a checksum over the changed body.
    let mut reframed = BytesMut::new();
    append_record(&mut reframed, bytes[record + 8], &bytes[body..end]);
    bytes[record..end].copy_from_slice(&reframed);
    files[index].bytes = Bytes::from(bytes);
    true
}

/// The manifest bit 7 asks for (see the module docs).
fn manifest(control: u8, lens: [u16; 2], files: &[SegmentFile]) -> Option<Bytes> {
    if control & 0x80 == 0 {
        return None;
    }
    let base = |file: &SegmentFile| {
        file.bytes.get(16..24).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let oldest = files.first().map_or(0, base);
    let newest = files.last().map_or(0, base).max(oldest);
    let durable_lsn = newest.saturating_add(u64::from(lens[1]));
    let manifest = Manifest {
        sequence: 1,
        oldest_base_lsn: Lsn(oldest),
        newest_base_lsn: Lsn(newest),
        durable_lsn: Lsn(durable_lsn),
    };
    let mut slot = manifest.encode();
    let flip = lens[0].to_le_bytes()[0];
    for byte in slot.iter_mut().step_by(7) {
        *byte ^= flip;
    }
    let mut file = vec![0u8; manifest.slot_offset() as usize];
    file.extend_from_slice(&slot);
    Some(Bytes::from(file))
}

/// Chunks `[kind, len, body]` framed as records (kind 0, which no record may have, becomes 1).
fn frame_records(mut chunks: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    while let [kind, len, rest @ ..] = chunks {
        let (body, tail) = rest.split_at(usize::from(*len).min(rest.len()));
        append_record(&mut out, (*kind).max(1), body);
        chunks = tail;
    }
    out
}

/// Every record the scan returns is exactly the framing of its kind and body, back to back.
fn check_scan(file: &SegmentFile, is_last: bool) {
    check_walk(file);
    let Ok(scan) = scan_segment(&file.bytes, is_last) else { return };
    let len = file.bytes.len() as u64;
    match scan.torn_tail {
        Some(torn) => assert!(is_last && scan.valid_len + torn == len, "{scan:?} of {len} bytes"),
        None => assert_eq!(scan.valid_len, len),
    }
    if scan.valid_len == 0 {
        assert!(scan.records.is_empty());
        return;
    }
    let mut offset = SEGMENT_HEADER_LEN;
    for record in &scan.records {
        assert_eq!(
            record.lsn,
            scan.base_lsn.plus((offset - SEGMENT_HEADER_LEN) as u64),
            "records are back to back"
        );
        let mut framed = BytesMut::new();
        let framed_len = append_record(&mut framed, record.kind, &record.body);
        let in_file = file.bytes.get(offset..offset + framed_len);
        assert_eq!(
            in_file,
            Some(&framed[..]),
            "record at offset {offset} of {} is not its own framing",
            file.name
        );
        offset += framed_len;
    }
    assert_eq!(offset as u64, scan.valid_len, "the records end where the valid part does");
}

/// Recovering again after carrying out the truncation gives the same state.
fn check_idempotent(image: &LogImage, recovered: &RecoveredLog, keyring: &Keyring) {
    let Some(truncation) = &recovered.truncation else { return };
    let mut cut = image.clone();
    let last = cut.segments.last_mut().expect("a truncation names a file");
    assert_eq!(last.name, truncation.file, "only the newest segment is cut");
    if truncation.valid_len == 0 {
        cut.segments.pop();
    } else {
        last.bytes = last.bytes.slice(..truncation.valid_len as usize);
    }
    let again = recover_log(&cut, keyring).expect("the cut log recovers");
    assert_eq!(again.truncation, None, "nothing left to cut");
    let mut expected = recovered.clone();
    expected.truncation = None;
    assert_eq!(again, expected, "cutting the torn tail changed what was recovered");
}

fn drain(broker: &mut Broker, disk: &mut MemDisk, now: Instant) {
    while let Some(output) = broker.poll_output() {
        if let Output::Storage(request) = output {
            disk.carry_out(&request, broker, now);
        }
    }
}

/// Walks a file's records as a read of a cold run does, from just past the header.
fn check_walk(file: &SegmentFile) {
    let Some(records) = file.bytes.get(SEGMENT_HEADER_LEN..) else { return };
    let keyring = Keyring::default();
    let keys = SegmentKeys { key_id: None, markers: &[], keyring: &keyring };
    let bytes = file.bytes.slice(SEGMENT_HEADER_LEN..);
    let mut walked = Vec::new();
    let base = Lsn(0);
    let walk = walk_published(&bytes, SEGMENT_HEADER_LEN as u64, base, keys, |at, _| {
        walked.push(at.offset as usize);
        true
    });
    let Ok(scan) = scan_segment(&file.bytes, false) else { return };
    if scan.key_id.is_some() || scan.torn_tail.is_some() || records.is_empty() {
        return;
    }
    let published: Vec<usize> = scan
        .records
        .iter()
        .filter(|r| r.kind == kind::Published)
        .map(|r| SEGMENT_HEADER_LEN + r.lsn.bytes_since(scan.base_lsn) as usize)
        .collect();
    match walk {
        Ok(end) => {
            assert_eq!(walked, published, "the walk and the scan found other publishes");
            assert_eq!(end.next_offset, file.bytes.len() as u64, "the walk stopped early");
        }
        // A publish whose body does not decode: the walk stops there, recovery refuses it.
        Err((offset, _)) => assert!(published.contains(&(offset as usize)), "{walk:?}"),
    }
}
