//! The on-disk format of the log: segment files of checksummed records, and the scan that
//! recovery runs over each segment to tell valid records, a torn tail and corruption apart.
//!
//! This module only encodes and decodes bytes. The driver reads and writes the files; what a
//! record's body means (a postcard-encoded publish, ack, declaration, ...) is decided elsewhere.
//!
//! # Segment file
//!
//! A segment is a 24-byte header followed by records, back to back, with no padding:
//!
//! ```text
//! offset  size  field
//!      0     8  magic      b"CHUTELOG"
//!      8     4  version    u32 LE, 1
//!     12     4  flags      u32 LE, 0 (no flags are defined; any other value is refused)
//!     16     8  base_lsn   u64 LE, the LSN of the first byte after the header
//!     24     .  records
//! ```
//!
//! A sealed segment (encryption at rest, [`super::seal`]) has version 2 and its key id in place
//! of the flags; its record framing and scan are the same, over the sealed bytes.
//!
//! LSNs (log sequence numbers) are byte positions in one log that runs across all segments: a
//! record's LSN is `base_lsn + (its file offset - 24)`, and a segment that follows another
//! starts at the LSN just past the other's last record. The header is not checksummed, so
//! `base_lsn` is not protected against bit rot: the driver names each segment file after its
//! base LSN and must treat a file whose `base_lsn` differs from its name as corrupt.
//!
//! # Record
//!
//! ```text
//! offset  size  field
//!      0     4  len   u32 LE, the number of bytes of kind + body: 1 ..= RECORD_LEN_MAX
//!      4     4  crc   u32 LE, crc32c over the 4 len bytes, then kind and body
//!      8     1  kind  u8, 1 ..= 255; 0 is reserved so that zero-filled space is never a record
//!      9   len-1 body  opaque here
//! ```
//!
//! A record takes `8 + len` bytes (`RECORD_HEADER_LEN + body.len()`). The checksum covers the
//! length field too, so a flipped bit in `len` is caught instead of sending the scan off into
//! the middle of another record. It is computed when the record is encoded, before the bytes
//! leave [`append_record`], and verified by [`scan_segment`] on every read.
//!
//! # Scan: valid records, torn tail, corruption
//!
//! A record at offset `X` is *valid* when its 9 header bytes are in the file, `1 <= len <=
//! RECORD_LEN_MAX`, all `8 + len` bytes are in the file, `kind != 0` and the crc matches.
//! [`scan_segment`] walks valid records from offset 24. At the first position `X` that does
//! not hold a valid record:
//!
//! - `X` is the end of the file: the segment ends cleanly.
//! - The segment is not the newest one: it is corrupt at `X` ([`ScanError::Corrupt`]). Only
//!   the newest segment can have been written to when the broker stopped (a segment is synced
//!   before the next one is started).
//! - The segment is the newest one, and a valid record starts at some offset after `X`: the
//!   segment is corrupt at `X`. A crash cuts a write short; it does not leave a bad record
//!   with good ones after it, so the broker refuses to start rather than drop records that may
//!   have been confirmed. This errs on the side of stopping: a crash during a write that spans
//!   several pages can, on some file systems, persist a later page without an earlier one, and
//!   that too is reported as corruption.
//! - The segment is the newest one and no valid record starts anywhere after `X`: the bytes
//!   from `X` on are a torn tail, the remains of the last write (or preallocated zeroes). The
//!   driver truncates the file to `X` ([`SegmentScan::valid_len`]) and appends from there.
//!
//! The header must hold the magic, and version 1 with flags 0 or version 2 with a key id other
//! than 0 ([`ScanError::BadHeader`] otherwise),
//! with one exception for a file that was being created when the broker stopped: if the newest
//! segment is shorter than the header, and its bytes are empty or a prefix of a header (the
//! magic, version 1 and flags 0 as far as they go; any `base_lsn` bytes), the scan returns
//! `valid_len == 0` and `torn_tail == Some(file length)`: nothing in the file is kept, and the
//! driver deletes it (or rewrites its header) before appending. `base_lsn` is then unknown and
//! reported as 0; see [`SegmentScan::next_lsn`].

use bytes::{BufMut, Bytes, BytesMut};

use super::seal::{KeyId, Sealer, TAG_LEN};
use crate::ids::Lsn;

#[cfg(test)]
mod tests;

/// The first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CHUTELOG";
/// The format of segments written in clear. This code reads it and [`SEALED_FORMAT_VERSION`].
pub const FORMAT_VERSION: u32 = 1;
/// The format of sealed segments (encryption at rest): the header's `flags` field holds the
/// key id, and records follow the rules of [`super::seal`].
pub const SEALED_FORMAT_VERSION: u32 = 2;
/// Magic, version, flags (key id in a sealed segment), base LSN.
pub const SEGMENT_HEADER_LEN: usize = 24;
/// len (4), crc (4), kind (1): the bytes of a record that precede its body.
pub const RECORD_HEADER_LEN: usize = 9;
/// The largest `len` (kind + body) a record may have. It bounds what a corrupt length field can
/// make the scan look at, and sits above the largest frame the protocol carries (16 MiB) so any
/// publishable message fits in one record.
pub const RECORD_LEN_MAX: u32 = 32 * 1024 * 1024;

/// The furthest a recovered log may end. Past it a corrupt or forged base LSN would leave the
/// broker no room to append its startup checkpoint; 4 EiB short of `u64::MAX` is centuries of
/// writing at any disk's speed.
pub const LSN_END_MAX: u64 = u64::MAX - (1 << 62);

/// Bytes of a record before the part that `len` counts (len and crc).
const LEN_CRC_LEN: usize = 8;

/// Digits of a segment file's name: a `u64` in decimal, zero-padded so that names sort in log
/// order.
const SEGMENT_NAME_DIGITS: usize = 20;
const SEGMENT_NAME_SUFFIX: &str = ".log";

/// The file name of the segment whose first record has LSN `base_lsn`: `{base_lsn:020}.log`.
pub fn segment_file_name(base_lsn: Lsn) -> String {
    format!("{:0width$}{SEGMENT_NAME_SUFFIX}", base_lsn.0, width = SEGMENT_NAME_DIGITS)
}

/// The base LSN a segment file's name gives, or `None` when the name is not a segment's:
/// exactly 20 ASCII digits (a `u64`) followed by `.log`. Recovery reads only such files and
/// leaves any other alone.
pub fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_NAME_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// The header of a segment in clear whose first record will have LSN `base_lsn`.
pub fn segment_header(base_lsn: Lsn) -> [u8; SEGMENT_HEADER_LEN] {
    segment_header_for(base_lsn, None)
}

/// The header of a segment whose first record will have LSN `base_lsn`: sealed under `key_id`
/// (format version 2), or in clear (version 1).
pub fn segment_header_for(base_lsn: Lsn, key_id: Option<KeyId>) -> [u8; SEGMENT_HEADER_LEN] {
    assert_ne!(key_id, Some(0), "key id 0 is never a key");
    let version = if key_id.is_some() { SEALED_FORMAT_VERSION } else { FORMAT_VERSION };
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&version.to_le_bytes());
    header[12..16].copy_from_slice(&key_id.unwrap_or(0).to_le_bytes());
    header[16..24].copy_from_slice(&base_lsn.0.to_le_bytes());
    header
}

/// Appends one record to `out`; returns its length in bytes (header included). The checksum is
/// computed before the bytes leave this function.
///
/// # Panics
///
/// If `kind` is 0 or `1 + body.len()` exceeds [`RECORD_LEN_MAX`]: the caller chooses kinds and
/// bounds record sizes (the broker's payload limit is far below it), so either is a bug.
pub fn append_record(out: &mut BytesMut, kind: u8, body: &[u8]) -> usize {
    assert!(
        body.len() < RECORD_LEN_MAX as usize,
        "record body of {} bytes exceeds RECORD_LEN_MAX",
        body.len()
    );
    out.reserve(RECORD_HEADER_LEN + body.len());
    append_record_with(out, kind, |out| out.extend_from_slice(body))
}

/// Appends one record whose body `write_body` writes straight into `out` (so a postcard body
/// needs no intermediate buffer); len and crc are patched in afterwards. Returns the record's
/// length in bytes (header included).
///
/// `write_body` must only append to `out`: the record's header is already in the buffer when
/// it runs.
///
/// # Panics
///
/// If `kind` is 0, if the body makes `len` exceed [`RECORD_LEN_MAX`], or if `write_body`
/// shortened `out`.
pub fn append_record_with(
    out: &mut BytesMut,
    kind: u8,
    write_body: impl FnOnce(&mut BytesMut),
) -> usize {
    let start = start_record(out, kind, write_body);
    finish_record(out, start)
}

/// As [`append_record_with`], for a record of a sealed segment: the body `write_body` writes is
/// sealed in place under `sealer` for the record's position `lsn` (docs/STORAGE.md §16), and
/// the crc covers what is on disk (the sealed body and its tag), so a torn write is still told
/// by the crc alone. Returns the record's length in bytes (header included).
///
/// # Panics
///
/// As [`append_record_with`].
pub fn append_sealed_record_with(
    out: &mut BytesMut,
    kind: u8,
    lsn: Lsn,
    sealer: &Sealer,
    write_body: impl FnOnce(&mut BytesMut),
) -> usize {
    let start = start_record(out, kind, write_body);
    let len = record_len(out.len() - start - LEN_CRC_LEN + TAG_LEN);
    let mut aad = [0u8; 5];
    aad[..4].copy_from_slice(&len.to_le_bytes());
    aad[4] = kind;
    sealer.seal(lsn, &aad, out, start + RECORD_HEADER_LEN);
    finish_record(out, start)
}

/// Writes a record's header (len and crc left zero) and its body; returns where it starts.
fn start_record(out: &mut BytesMut, kind: u8, write_body: impl FnOnce(&mut BytesMut)) -> usize {
    assert_ne!(kind, 0, "record kind 0 is reserved");
    let start = out.len();
    out.put_bytes(0, LEN_CRC_LEN);
    out.put_u8(kind);
    write_body(out);
    assert!(out.len() >= start + RECORD_HEADER_LEN, "write_body removed bytes it did not write");
    debug_assert_eq!(out[start + LEN_CRC_LEN], kind, "write_body overwrote the kind");
    start
}

/// `len` for a record of `len` bytes of kind and body.
fn record_len(len: usize) -> u32 {
    u32::try_from(len)
        .ok()
        .filter(|&len| len <= RECORD_LEN_MAX)
        .unwrap_or_else(|| panic!("record of {len} bytes (kind + body) exceeds RECORD_LEN_MAX"))
}

/// Patches `len` and `crc` into the record that starts at `start` and ends at `out`'s end.
fn finish_record(out: &mut BytesMut, start: usize) -> usize {
    let len_bytes = record_len(out.len() - start - LEN_CRC_LEN).to_le_bytes();
    let crc = record_crc(len_bytes, &out[start + LEN_CRC_LEN..]);
    out[start..start + 4].copy_from_slice(&len_bytes);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// crc32c over the len field, then kind and body.
fn record_crc(len_bytes: [u8; 4], kind_and_body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len_bytes), kind_and_body)
}

/// One valid record, as found by [`scan_segment`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    pub lsn: Lsn,
    pub kind: u8,
    /// A slice of the scanned segment's bytes: no copy.
    pub body: Bytes,
}

/// The valid record at offset `pos` of `bytes` (part of a segment file, as a read returned
/// it), by the same checks [`scan_segment`] makes; `lsn` is the record's log position. A record
/// that does not start there or runs past the bytes is refused with the reason. Never panics.
pub fn record_at(bytes: &Bytes, pos: usize, lsn: Lsn) -> Result<RawRecord, String> {
    if pos > bytes.len() {
        return Err(format!("the read ended {} bytes before the record", pos - bytes.len()));
    }
    let len = check_record(bytes, pos).map_err(|fault| fault.to_string())?;
    let (kind, body) =
        (bytes[pos + LEN_CRC_LEN], bytes.slice(pos + RECORD_HEADER_LEN..pos + LEN_CRC_LEN + len));
    Ok(RawRecord { lsn, kind, body })
}

/// What [`scan_segment`] found in a segment that is not corrupt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    /// From the header; 0 when the header itself is torn (`valid_len == 0`).
    pub base_lsn: Lsn,
    /// The key a sealed segment's records are sealed with (format version 2); `None` for a
    /// segment in clear, or a torn header.
    pub key_id: Option<KeyId>,
    /// Every valid record, in file order.
    pub records: Vec<RawRecord>,
    /// The bytes of the file that hold the header and whole valid records: at least
    /// [`SEGMENT_HEADER_LEN`], or 0 when the header itself is torn and the file holds nothing
    /// worth keeping.
    pub valid_len: u64,
    /// `Some(bytes dropped)` when the file must be truncated to `valid_len` because it ends in
    /// a torn write; always `None` for a segment that is not the newest. `Some(0)` for an empty
    /// newest file (`valid_len == 0`): there is nothing to cut, but the file has no header and
    /// must be deleted or rewritten all the same.
    pub torn_tail: Option<u64>,
}

impl SegmentScan {
    /// The LSN the next record appended to this segment (after truncating any torn tail) gets,
    /// or `None` when the header is torn and the base LSN is unknown (the driver knows it from
    /// the file's name, or from the end of the previous segment).
    pub fn next_lsn(&self) -> Option<Lsn> {
        let records_len = self.valid_len.checked_sub(SEGMENT_HEADER_LEN as u64)?;
        // Cannot overflow: the scan refuses a base_lsn with no room for the file's bytes.
        Some(self.base_lsn.plus(records_len))
    }
}

/// Why a segment cannot be used. The broker refuses to start on either: it reports
/// `"segment {name} is {error}"` and leaves the file for the operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    #[error("not a chute log segment: {reason}")]
    BadHeader { reason: String },
    /// `offset` is a byte offset in the file (not an LSN), where the first bad record starts.
    #[error("corrupt at offset {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
}

/// Reads one segment file: its header, its valid records, and whether it ends in a torn tail
/// (see the [module documentation](self) for the exact rules).
///
/// `is_last` says whether this is the newest segment, the only one where a torn tail is legal.
/// Never panics, whatever the bytes; allocates only for the list of records found.
pub fn scan_segment(bytes: &Bytes, is_last: bool) -> Result<SegmentScan, ScanError> {
    let data: &[u8] = bytes;
    let file_len = data.len();
    if file_len < SEGMENT_HEADER_LEN {
        if is_last && is_header_prefix(data) {
            return Ok(SegmentScan {
                base_lsn: Lsn::ZERO,
                key_id: None,
                records: Vec::new(),
                valid_len: 0,
                torn_tail: Some(file_len as u64),
            });
        }
        let reason = if is_last {
            format!("the file is {file_len} bytes and does not start like a segment header")
        } else {
            format!(
                "the file is {file_len} bytes, shorter than the {SEGMENT_HEADER_LEN}-byte header"
            )
        };
        return Err(ScanError::BadHeader { reason });
    }
    let (base_lsn, key_id) = parse_header(data)?;

    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    loop {
        if pos == file_len {
            return Ok(SegmentScan {
                base_lsn,
                key_id,
                records,
                valid_len: file_len as u64,
                torn_tail: None,
            });
        }
        let fault = match check_record(data, pos) {
            Ok(len) => {
                let end = pos + LEN_CRC_LEN + len;
                debug_assert!(end <= file_len, "check_record let a record run past the file");
                records.push(RawRecord {
                    // parse_header checked that every offset in the file has an LSN.
                    lsn: base_lsn.plus((pos - SEGMENT_HEADER_LEN) as u64),
                    kind: data[pos + LEN_CRC_LEN],
                    body: bytes.slice(pos + RECORD_HEADER_LEN..end),
                });
                pos = end;
                continue;
            }
            Err(fault) => fault,
        };
        if !is_last {
            return Err(ScanError::Corrupt {
                offset: pos as u64,
                reason: format!("{fault} (only the newest segment can have a torn tail)"),
            });
        }
        if let Some(next) = find_valid_record(data, pos + 1) {
            return Err(ScanError::Corrupt {
                offset: pos as u64,
                reason: format!("{fault}, yet a valid record follows at offset {next}"),
            });
        }
        debug_assert!(pos < file_len, "a torn tail holds at least one byte");
        return Ok(SegmentScan {
            base_lsn,
            key_id,
            records,
            valid_len: pos as u64,
            torn_tail: Some((file_len - pos) as u64),
        });
    }
}

/// Whether `data` (shorter than a header) could be the start of a header whose write was cut
/// short: magic, version and flags as far as they go (a sealed segment's key id in place of
/// the flags may be anything); the base LSN may be anything.
fn is_header_prefix(data: &[u8]) -> bool {
    debug_assert!(data.len() < SEGMENT_HEADER_LEN, "a whole header is parsed, not guessed at");
    let prefix_of = |expected: &[u8]| {
        let n = data.len().min(expected.len());
        data[..n] == expected[..n]
    };
    prefix_of(&segment_header(Lsn::ZERO)[..16])
        || prefix_of(&segment_header_for(Lsn::ZERO, Some(1))[..12])
}

/// The base LSN of a segment whose file starts with a full header, and its key id if it is
/// sealed.
fn parse_header(data: &[u8]) -> Result<(Lsn, Option<KeyId>), ScanError> {
    assert!(data.len() >= SEGMENT_HEADER_LEN, "parse_header needs a whole header");
    let bad = |reason: String| Err(ScanError::BadHeader { reason });
    let magic = &data[0..8];
    if magic != SEGMENT_MAGIC {
        return bad(format!(
            "the magic is {magic:02x?} (\"{}\"), expected \"CHUTELOG\"",
            magic.escape_ascii()
        ));
    }
    let version = u32_le(data, 8);
    let flags = u32_le(data, 12);
    let key_id = match version {
        FORMAT_VERSION if flags != 0 => {
            return bad(format!("flags {flags:#010x} are not supported (expected 0)"));
        }
        FORMAT_VERSION => None,
        SEALED_FORMAT_VERSION if flags == 0 => {
            return bad("a sealed segment (version 2) names key id 0".to_string());
        }
        SEALED_FORMAT_VERSION => Some(flags),
        _ => {
            return bad(format!(
                "format version {version} is not supported (this build reads versions \
                 {FORMAT_VERSION} and {SEALED_FORMAT_VERSION})"
            ));
        }
    };
    let base_lsn = u64::from_le_bytes(data[16..24].try_into().expect("8 bytes"));
    let records_len = (data.len() - SEGMENT_HEADER_LEN) as u64;
    if base_lsn.checked_add(records_len).is_none_or(|end| end > LSN_END_MAX) {
        return bad(format!(
            "base LSN {base_lsn} leaves no room for the file's {records_len} bytes of records \
             and the log's growth (positions end at {LSN_END_MAX})"
        ));
    }
    Ok((Lsn(base_lsn), key_id))
}

fn u32_le(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

/// Why the bytes at some offset are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
enum RecordFault {
    #[error("torn record header ({have} of {RECORD_HEADER_LEN} bytes before the end of the file)")]
    TornHeader { have: usize },
    #[error("record length 0 (a record holds at least its kind byte)")]
    LenZero,
    #[error("record length {len} exceeds the maximum of {RECORD_LEN_MAX}")]
    LenTooLarge { len: u32 },
    #[error("record length {len} runs past the end of the file ({left} bytes after the crc)")]
    PastEnd { len: u32, left: usize },
    #[error("record kind 0 (reserved: zero-filled space)")]
    KindZero,
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch { stored: u32, computed: u32 },
}

/// Every check but the checksum, cheapest first. Returns `len` (kind + body bytes). Never
/// reads past `data` and never trusts `len` before comparing it with what is left.
fn check_plausible(data: &[u8], pos: usize) -> Result<usize, RecordFault> {
    let have = data.len() - pos;
    if have < RECORD_HEADER_LEN {
        return Err(RecordFault::TornHeader { have });
    }
    let len = u32_le(data, pos);
    if len == 0 {
        return Err(RecordFault::LenZero);
    }
    if len > RECORD_LEN_MAX {
        return Err(RecordFault::LenTooLarge { len });
    }
    let left = have - LEN_CRC_LEN;
    if len as usize > left {
        return Err(RecordFault::PastEnd { len, left });
    }
    if data[pos + LEN_CRC_LEN] == 0 {
        return Err(RecordFault::KindZero);
    }
    Ok(len as usize)
}

/// Whether a valid record starts at `pos`; returns its `len` (kind + body bytes).
fn check_record(data: &[u8], pos: usize) -> Result<usize, RecordFault> {
    let len = check_plausible(data, pos)?;
    let len_bytes: [u8; 4] = data[pos..pos + 4].try_into().expect("4 bytes");
    let stored = u32_le(data, pos + 4);
    let computed = record_crc(len_bytes, &data[pos + LEN_CRC_LEN..pos + LEN_CRC_LEN + len]);
    if stored != computed {
        return Err(RecordFault::CrcMismatch { stored, computed });
    }
    Ok(len)
}

/// Above this `len`, the forward search checks a candidate's crc through [`SpanCrc`] instead of
/// hashing its bytes: the shift costs about as much as hashing a few KiB.
const DIRECT_CRC_LEN_MAX: usize = 4 * SPAN_CRC_STRIDE;

/// The first offset at or after `from` where a valid record starts (same test as
/// [`check_record`]), if any.
///
/// Cost: one pass over `data[from..]` with a few comparisons per offset; a crc only at offsets
/// that pass every other check (len in range and within the file, kind not 0). On zero-filled
/// or partly written tails such offsets are rare. On random bytes (a torn record whose body is
/// compressed or encrypted) they are not: about `remaining / 2^32` of offsets have a plausible
/// len, and hashing each candidate's bytes grows with the cube of the tail (measured, release
/// build: 1.6 s for a torn 8 MiB record, 17 s for 16 MiB, minutes for 32 MiB). So a candidate
/// longer than [`DIRECT_CRC_LEN_MAX`] is checked through prefix crcs ([`SpanCrc`], built on
/// first need in one pass over the tail) at the cost of at most two strides of hashing and one
/// GF(2) shift: 45 ms for 8 MiB, 0.1 s for 16 MiB, 0.4 s for 32 MiB.
fn find_valid_record(data: &[u8], from: usize) -> Option<usize> {
    let mut span_crc: Option<SpanCrc<'_>> = None;
    let last_start = data.len().checked_sub(RECORD_HEADER_LEN)?;
    for pos in from..=last_start {
        let Ok(len) = check_plausible(data, pos) else {
            continue;
        };
        let len_bytes: [u8; 4] = data[pos..pos + 4].try_into().expect("4 bytes");
        let stored = u32_le(data, pos + 4);
        let body_start = pos + LEN_CRC_LEN;
        let body_end = body_start + len;
        let computed = if len <= DIRECT_CRC_LEN_MAX {
            record_crc(len_bytes, &data[body_start..body_end])
        } else {
            let spans = span_crc.get_or_insert_with(|| SpanCrc::new(data, from));
            // crc(len_bytes ++ B) = shift(crc(len_bytes), |B|) ^ crc(B), and
            // crc(B) = prefix(end) ^ shift(prefix(start), |B|); shifting is linear, so both
            // shifts fold into one.
            let folded = crc32c::crc32c(&len_bytes) ^ spans.prefix(body_start);
            shift_crc(folded, u32::from_le_bytes(len_bytes)) ^ spans.prefix(body_end)
        };
        if computed == stored {
            return Some(pos);
        }
    }
    None
}

/// Distance between the saved prefix crcs of [`SpanCrc`].
const SPAN_CRC_STRIDE: usize = 4096;

/// The crc32c of `data[start..p]` for every `p` that is a multiple of `SPAN_CRC_STRIDE` bytes
/// past `start`, so that the crc of any prefix costs less than one stride of hashing.
struct SpanCrc<'a> {
    data: &'a [u8],
    start: usize,
    /// `marks[i]` = crc32c of `data[start..start + i * SPAN_CRC_STRIDE]`.
    marks: Vec<u32>,
}

impl<'a> SpanCrc<'a> {
    fn new(data: &'a [u8], start: usize) -> SpanCrc<'a> {
        let tail = &data[start..];
        let mut marks = Vec::with_capacity(tail.len() / SPAN_CRC_STRIDE + 1);
        let mut crc = 0;
        marks.push(crc);
        for chunk in tail.chunks_exact(SPAN_CRC_STRIDE) {
            crc = crc32c::crc32c_append(crc, chunk);
            marks.push(crc);
        }
        SpanCrc { data, start, marks }
    }

    /// crc32c of `data[start..end]`.
    fn prefix(&self, end: usize) -> u32 {
        assert!(self.start <= end && end <= self.data.len(), "a prefix outside the span");
        let i = (end - self.start) / SPAN_CRC_STRIDE;
        let mark_end = self.start + i * SPAN_CRC_STRIDE;
        crc32c::crc32c_append(self.marks[i], &self.data[mark_end..end])
    }
}

// ---- GF(2) arithmetic for crc32c, as in zlib's crc32_combine ----
//
// A crc is a polynomial over GF(2) modulo the Castagnoli polynomial, stored bit-reflected (the
// top bit is x^0). Appending `n` bytes to a message multiplies its crc by x^(8n) before the new
// bytes' crc is added in, which is what lets the crc of a span be recovered from two prefix
// crcs. The `crc32c` crate's own `crc32c_combine` does the same with 32x32 matrices, about fifty
// times slower; this is on the recovery path for torn tails of random bytes (see
// `find_valid_record`).

/// The Castagnoli polynomial, bit-reflected.
const CASTAGNOLI_REFLECTED: u32 = 0x82F6_3B78;

/// `a * b` modulo the polynomial.
const fn mul_mod_p(a: u32, mut b: u32) -> u32 {
    if a == 0 {
        return 0;
    }
    let mut m = 1u32 << 31;
    let mut product = 0;
    loop {
        if a & m != 0 {
            product ^= b;
            if a & (m - 1) == 0 {
                return product;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ CASTAGNOLI_REFLECTED } else { b >> 1 };
    }
}

/// `X_POW_2K[k]` = x^(2^k) modulo the polynomial, for every `k` that [`shift_crc`] needs: a
/// shift by a `u32` number of bytes is a power of x below 2^35.
const X_POW_2K: [u32; 35] = {
    let mut table = [0u32; 35];
    table[0] = 1 << 30; // x^1
    let mut k = 1;
    while k < table.len() {
        table[k] = mul_mod_p(table[k - 1], table[k - 1]);
        k += 1;
    }
    table
};

/// `crc * x^(8 * len)`: what `crc(A)` contributes to `crc(A ++ B)` when `B` is `len` bytes
/// long, so that `crc(A ++ B) = shift_crc(crc(A), len) ^ crc(B)`.
fn shift_crc(crc: u32, len: u32) -> u32 {
    let mut power = 1u32 << 31; // x^0
    let mut n = len;
    let mut k = 3; // 8 * len = len * 2^3
    while n != 0 {
        if n & 1 != 0 {
            power = mul_mod_p(X_POW_2K[k], power);
        }
        n >>= 1;
        k += 1;
    }
    mul_mod_p(power, crc)
}
