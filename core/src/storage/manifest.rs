//! The manifest: a small file beside the segments that says where the log begins and how far
//! it was durable, so that recovery can tell a log that was cut short (its newest segment
//! deleted or emptied, its oldest one deleted, its newest one cut inside records that were
//! synced) from one that simply ends where a crash stopped it.
//!
//! # File
//!
//! Two slots of [`MANIFEST_SLOT_LEN`] bytes, A at offset 0 and B at offset 64. A manifest with
//! sequence number `n` is written to slot `n % 2` and synced, so the other slot always holds
//! the previous one intact: a write torn by a crash costs one update, never both. Recovery
//! takes the valid slot with the higher sequence number.
//!
//! ```text
//! offset  size  field
//!      0     8  magic            b"CHUTEMAN"
//!      8     4  version          u32 LE, 1
//!     12     4  flags            u32 LE, 0
//!     16     8  sequence         u64 LE, one more than the manifest before
//!     24     8  oldest_base_lsn  u64 LE, the oldest segment the log still needs
//!     32     8  newest_base_lsn  u64 LE, the newest segment created
//!     40     8  durable_lsn      u64 LE, every log byte before it was synced
//!     48    12  reserved         zeros
//!     60     4  crc              u32 LE, crc32c of bytes 0..60
//! ```
//!
//! # When it is written
//!
//! The broker writes a manifest when it creates a segment (naming it newest, after its header
//! is durable and before any record in it can be), before it deletes segments (naming the new
//! oldest first, so a crash between the two leaves an extra old file rather than a missing
//! one), at most every `storage.manifest_interval_ms` after a sync moved the durable end, and
//! when a graceful stop has synced everything.

use super::format::segment_file_name;
use crate::ids::Lsn;

/// Bytes of one slot.
pub const MANIFEST_SLOT_LEN: usize = 64;
/// The first 8 bytes of a valid slot.
pub const MANIFEST_MAGIC: [u8; 8] = *b"CHUTEMAN";
/// The slot format this code writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// The manifest's file name in the data directory.
pub const MANIFEST_FILE_NAME: &str = "manifest";

const CRC_OFFSET: usize = 60;

/// What a manifest says about the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Higher is newer; the slot is `sequence % 2`.
    pub sequence: u64,
    pub oldest_base_lsn: Lsn,
    pub newest_base_lsn: Lsn,
    pub durable_lsn: Lsn,
}

/// Why the manifest file could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("holds no valid slot (both checksums fail or the file is too short)")]
    NoValidSlot,
    #[error("slot version {0} is not one this build reads")]
    UnknownVersion(u32),
}

impl Manifest {
    /// The slot bytes of this manifest.
    pub fn encode(&self) -> [u8; MANIFEST_SLOT_LEN] {
        let mut slot = [0u8; MANIFEST_SLOT_LEN];
        slot[0..8].copy_from_slice(&MANIFEST_MAGIC);
        slot[8..12].copy_from_slice(&MANIFEST_VERSION.to_le_bytes());
        slot[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        slot[24..32].copy_from_slice(&self.oldest_base_lsn.0.to_le_bytes());
        slot[32..40].copy_from_slice(&self.newest_base_lsn.0.to_le_bytes());
        slot[40..48].copy_from_slice(&self.durable_lsn.0.to_le_bytes());
        let crc = crc32c::crc32c(&slot[..CRC_OFFSET]);
        slot[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(decode_slot(&slot), Ok(Some(*self)), "a slot reads back as written");
        slot
    }

    /// Where in the file this manifest's slot lies.
    pub fn slot_offset(&self) -> u64 {
        (self.sequence % 2) * MANIFEST_SLOT_LEN as u64
    }

    /// The newest valid manifest in a manifest file's bytes.
    pub fn decode_file(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let slots = bytes.chunks_exact(MANIFEST_SLOT_LEN).take(2);
        let mut newest: Option<Manifest> = None;
        for slot in slots {
            if let Some(manifest) = decode_slot(slot)? {
                if newest.is_none_or(|n| manifest.sequence > n.sequence) {
                    newest = Some(manifest);
                }
            }
        }
        newest.ok_or(ManifestError::NoValidSlot)
    }

    /// The manifest that follows this one, with the given contents.
    pub fn next(&self, oldest_base_lsn: Lsn, newest_base_lsn: Lsn, durable_lsn: Lsn) -> Manifest {
        assert!(oldest_base_lsn <= newest_base_lsn, "oldest segment after the newest");
        assert!(durable_lsn >= self.durable_lsn, "the durable end moved back");
        // Saturating: only a forged manifest gets near the end, and must not panic recovery.
        let sequence = self.sequence.saturating_add(1);
        Manifest { sequence, oldest_base_lsn, newest_base_lsn, durable_lsn }
    }
}

/// A slot's manifest, `None` when the slot is not valid (never written, or torn).
fn decode_slot(slot: &[u8]) -> Result<Option<Manifest>, ManifestError> {
    let field = |at: usize| u64::from_le_bytes(slot[at..at + 8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(slot[CRC_OFFSET..].try_into().expect("4 bytes"));
    if slot[0..8] != MANIFEST_MAGIC || crc32c::crc32c(&slot[..CRC_OFFSET]) != crc {
        return Ok(None);
    }
    let version = u32::from_le_bytes(slot[8..12].try_into().expect("4 bytes"));
    if version != MANIFEST_VERSION {
        return Err(ManifestError::UnknownVersion(version));
    }
    Ok(Some(Manifest {
        sequence: field(16),
        oldest_base_lsn: Lsn(field(24)),
        newest_base_lsn: Lsn(field(32)),
        durable_lsn: Lsn(field(40)),
    }))
}

/// The log recovered from the segments ends earlier, or starts later, than the manifest says
/// it did: records that were durable are gone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogCutShort {
    #[error(
        "the newest segment {file} is missing or holds no valid header, though the manifest \
         names it (it was deleted, emptied or replaced)"
    )]
    NewestSegmentMissing { file: String },
    #[error(
        "the oldest segment {file} is missing, though the manifest says the log still needs it"
    )]
    OldestSegmentMissing { file: String },
    #[error(
        "the log ends at position {end_lsn}, but everything up to {durable_lsn} was synced \
         ({missing_bytes} bytes of synced records are gone from the newest segment {file})"
    )]
    SyncedRecordsMissing { file: String, end_lsn: Lsn, durable_lsn: Lsn, missing_bytes: u64 },
}

/// Checks what recovery found (the base of the oldest and newest segment kept, and where the
/// valid records end) against the manifest.
pub fn check_log_against(
    manifest: &Manifest,
    oldest_kept: Option<Lsn>,
    newest_kept: Option<Lsn>,
    end_lsn: Lsn,
) -> Result<(), LogCutShort> {
    // Recovery keeps segments in log order (each starts where the one before it ends).
    assert!(oldest_kept <= newest_kept, "the oldest segment kept is newer than the newest");
    assert!(
        newest_kept.is_none_or(|newest| newest <= end_lsn),
        "the log ends before its newest segment"
    );
    if newest_kept.is_none_or(|newest| newest < manifest.newest_base_lsn) {
        let file = segment_file_name(manifest.newest_base_lsn);
        return Err(LogCutShort::NewestSegmentMissing { file });
    }
    if oldest_kept.is_none_or(|oldest| oldest > manifest.oldest_base_lsn) {
        let file = segment_file_name(manifest.oldest_base_lsn);
        return Err(LogCutShort::OldestSegmentMissing { file });
    }
    if end_lsn < manifest.durable_lsn {
        return Err(LogCutShort::SyncedRecordsMissing {
            file: segment_file_name(newest_kept.expect("checked above")),
            end_lsn,
            durable_lsn: manifest.durable_lsn,
            missing_bytes: manifest.durable_lsn.bytes_since(end_lsn),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(sequence: u64) -> Manifest {
        Manifest {
            sequence,
            oldest_base_lsn: Lsn(0),
            newest_base_lsn: Lsn(4096),
            durable_lsn: Lsn(5000),
        }
    }

    fn file(slots: &[[u8; MANIFEST_SLOT_LEN]]) -> Vec<u8> {
        slots.concat()
    }

    /// The slot with the higher sequence number wins, whichever slot it is in.
    #[test]
    fn the_newer_slot_wins() {
        let (a, b) = (manifest(4), manifest(5));
        assert_eq!(Manifest::decode_file(&file(&[a.encode(), b.encode()])), Ok(b));
        let c = manifest(6);
        assert_eq!(Manifest::decode_file(&file(&[c.encode(), b.encode()])), Ok(c));
        assert_eq!((a.slot_offset(), b.slot_offset()), (0, 64));
    }

    /// A torn write of one slot leaves the other one in force.
    #[test]
    fn a_torn_slot_falls_back_to_the_other() {
        let mut torn = manifest(6).encode();
        torn[33] ^= 0x40;
        assert_eq!(Manifest::decode_file(&file(&[torn, manifest(5).encode()])), Ok(manifest(5)));
        let empty = [0u8; MANIFEST_SLOT_LEN];
        assert_eq!(Manifest::decode_file(&file(&[manifest(1).encode()])), Ok(manifest(1)));
        assert_eq!(Manifest::decode_file(&file(&[empty, torn])), Err(ManifestError::NoValidSlot));
        assert_eq!(Manifest::decode_file(&[1, 2, 3]), Err(ManifestError::NoValidSlot));
    }

    /// The encoding is the documented one.
    #[test]
    fn encoding_vector() {
        let slot = Manifest {
            sequence: 2,
            oldest_base_lsn: Lsn(1),
            newest_base_lsn: Lsn(3),
            durable_lsn: Lsn(7),
        }
        .encode();
        assert_eq!(&slot[0..8], b"CHUTEMAN");
        assert_eq!(slot[8..24], [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!((slot[24], slot[32], slot[40]), (1, 3, 7));
        assert!(slot[48..60].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_log_cut_short_is_named() {
        let m = manifest(3);
        assert_eq!(check_log_against(&m, Some(Lsn(0)), Some(Lsn(4096)), Lsn(5000)), Ok(()));
        assert_eq!(check_log_against(&m, Some(Lsn(0)), Some(Lsn(8192)), Lsn(9000)), Ok(()));
        assert!(matches!(
            check_log_against(&m, Some(Lsn(0)), Some(Lsn(0)), Lsn(4000)),
            Err(LogCutShort::NewestSegmentMissing { .. })
        ));
        assert!(matches!(
            check_log_against(&m, Some(Lsn(2048)), Some(Lsn(4096)), Lsn(5000)),
            Err(LogCutShort::OldestSegmentMissing { .. })
        ));
        let err = check_log_against(&m, Some(Lsn(0)), Some(Lsn(4096)), Lsn(4500)).unwrap_err();
        assert!(err.to_string().contains("500 bytes of synced records"), "{err}");
    }
}
