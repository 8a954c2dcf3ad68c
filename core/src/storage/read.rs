//! Reading payloads back from the log: where a message's record is, and what the bytes of a
//! `Read` completion hold, parsed purely with the checks recovery makes (docs/STORAGE.md §17).

use bytes::Bytes;

use super::format::{record_at, RawRecord, RECORD_HEADER_LEN, RECORD_LEN_MAX, SEGMENT_HEADER_LEN};
use super::records::{kind, Published, Record};
use super::recovery::record_aad;
use super::seal::{KeyId, Keyring, MARKER_BODY_LEN};
use crate::ids::Lsn;

/// Where a message's latest `Published` record is in its segment file: its offset and its
/// length (header included), 8 bytes, so that the payload can leave memory and be read back.
/// Unknown (`len == 0`) for messages that are not logged, or whose record lies past 4 GiB into
/// a segment (`storage.segment_bytes_max` above 4 GiB): their payloads stay in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordAt {
    pub offset: u32,
    pub len: u32,
}

impl RecordAt {
    pub const UNKNOWN: RecordAt = RecordAt { offset: 0, len: 0 };

    /// The record from log position `start` to `end` in the segment that starts at `base`.
    pub fn new(base: Lsn, start: Lsn, end: Lsn) -> RecordAt {
        let offset = start.bytes_since(base) + SEGMENT_HEADER_LEN as u64;
        match (u32::try_from(offset), u32::try_from(end.bytes_since(start))) {
            (Ok(offset), Ok(len)) => RecordAt { offset, len },
            _ => RecordAt::UNKNOWN,
        }
    }

    pub fn is_known(self) -> bool {
        self.len > 0
    }

    /// The file offset just past the record.
    pub fn end(self) -> u64 {
        u64::from(self.offset) + u64::from(self.len)
    }

    /// The record's log position, in the segment that starts at `base`.
    pub fn lsn(self, base: Lsn) -> Lsn {
        base.plus(u64::from(self.offset).saturating_sub(SEGMENT_HEADER_LEN as u64))
    }

    /// The log position just past the record: it is durable once the log is synced this far.
    pub fn end_lsn(self, base: Lsn) -> Lsn {
        self.lsn(base).plus(u64::from(self.len))
    }
}

/// What opening a sealed segment's records needs: its key id and seal markers (oldest first),
/// and the keys.
#[derive(Clone, Copy, Debug)]
pub struct SegmentKeys<'a> {
    pub key_id: Option<KeyId>,
    pub markers: &'a [(Lsn, [u8; MARKER_BODY_LEN])],
    pub keyring: &'a Keyring,
}

/// The payload of message `seq`, whose record is `at` in the segment starting at `base_lsn`,
/// from `bytes`, what a read at file offset `read_offset` of that segment returned. Refuses,
/// with the reason, anything but a valid `Published` record of exactly that length holding that
/// message: a short read, a checksum mismatch, a seal that does not open, another record. The
/// payload is copied out, so it does not keep the read's whole buffer alive.
pub fn payload_in(
    bytes: &Bytes,
    read_offset: u64,
    base_lsn: Lsn,
    seq: u64,
    at: RecordAt,
    keys: SegmentKeys<'_>,
) -> Result<Bytes, String> {
    let pos = u64::from(at.offset)
        .checked_sub(read_offset)
        .ok_or_else(|| format!("the record starts before the read (at {read_offset})"))?;
    let pos = usize::try_from(pos).map_err(|_| "the record is beyond the read".to_string())?;
    let raw = record_at(bytes, pos, at.lsn(base_lsn))?;
    let len = raw.body.len() + super::format::RECORD_HEADER_LEN;
    if len != at.len as usize {
        return Err(format!("the record there is {len} bytes, not the {} expected", at.len));
    }
    let body = open(&raw, keys)?;
    match Record::decode(raw.kind, &body) {
        Ok(Record::Published(published)) if published.message.seq == seq => {
            Ok(Bytes::copy_from_slice(&published.message.payload))
        }
        Ok(Record::Published(published)) => Err(format!(
            "the record there holds message {}, not message {seq}",
            published.message.seq
        )),
        Ok(_) => Err(format!("the record there (kind {}) is not a publish", raw.kind)),
        Err(error) => Err(error.to_string()),
    }
}

/// The body of `raw` in clear: as it is in a segment in clear; in a sealed one, opened under
/// the salt of the seal marker before it, as recovery opens it.
fn open(raw: &RawRecord, keys: SegmentKeys<'_>) -> Result<Bytes, String> {
    let Some(key_id) = keys.key_id else { return Ok(raw.body.clone()) };
    let (marker_lsn, marker) = keys
        .markers
        .iter()
        .rev()
        .find(|(lsn, _)| *lsn < raw.lsn)
        .ok_or_else(|| "no seal marker precedes the record".to_string())?;
    let sealer =
        keys.keyring.open_marker(key_id, *marker_lsn, marker).map_err(|e| e.to_string())?;
    sealer.open(raw.lsn, &record_aad(raw), &raw.body).map_err(|e| e.to_string())
}

/// Where a walk over a read's records stopped: the file offset of the first record the read
/// did not hold whole (the next read starts there) and, when the read held that record's
/// length, its length in bytes (the next read must be at least that long; 0 if unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkEnd {
    pub next_offset: u64,
    pub next_record_len: u64,
}

/// Walks the whole records in `bytes`, what a read at file offset `read_offset` (a record
/// boundary) of the segment starting at `base_lsn` returned, in file order. Each is checked as
/// recovery checks it; each `Published` record is opened, decoded and handed to `visit` with
/// where it is, other kinds are skipped. The walk ends where the bytes end (mid-record, or at a
/// header too short to tell) or when `visit` returns false (then just past that record).
/// Refuses, with the record's offset and the reason, a record that fails a check or does not
/// decode.
pub fn walk_published(
    bytes: &Bytes,
    read_offset: u64,
    base_lsn: Lsn,
    keys: SegmentKeys<'_>,
    mut visit: impl FnMut(RecordAt, Published) -> bool,
) -> Result<WalkEnd, (u64, String)> {
    // The bytes a record whose header says `len` takes: its length and crc, then `len`.
    const LEN_CRC_LEN: u64 = RECORD_HEADER_LEN as u64 - 1;
    let mut pos = 0usize;
    loop {
        let offset = read_offset + pos as u64;
        let Some(header) = bytes.get(pos..pos + 4) else {
            return Ok(WalkEnd { next_offset: offset, next_record_len: 0 });
        };
        let whole_len = LEN_CRC_LEN + u64::from(u32::from_le_bytes(header.try_into().expect("4")));
        let plausible = whole_len <= LEN_CRC_LEN + u64::from(RECORD_LEN_MAX);
        if plausible && whole_len > (bytes.len() - pos) as u64 {
            return Ok(WalkEnd { next_offset: offset, next_record_len: whole_len });
        }
        let since_base = offset
            .checked_sub(SEGMENT_HEADER_LEN as u64)
            .ok_or_else(|| (offset, "the read starts inside the segment's header".to_string()))?;
        let lsn = base_lsn.plus(since_base);
        let raw = record_at(bytes, pos, lsn).map_err(|reason| (offset, reason))?;
        let at = RecordAt::new(base_lsn, lsn, lsn.plus(whole_len));
        pos += RECORD_HEADER_LEN + raw.body.len();
        if raw.kind != kind::Published {
            continue;
        }
        let body = open(&raw, keys).map_err(|reason| (offset, reason))?;
        let published = match Record::decode(raw.kind, &body) {
            Ok(Record::Published(published)) => published,
            Ok(_) => unreachable!("a record of the publish kind decodes as one"),
            Err(error) => return Err((offset, error.to_string())),
        };
        if !visit(at, published) {
            return Ok(WalkEnd { next_offset: read_offset + pos as u64, next_record_len: 0 });
        }
    }
}
