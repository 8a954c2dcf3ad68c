//! What the broker asks of its storage worker, and what the worker reports back.
//!
//! The worker (a thread in the server, a simulated disk in chute-sim) carries requests out in
//! the order given. A `Sync` covers every `Append` before it, in every segment. `Read`s are the
//! exception: they are served apart (in the server, on a thread of their own, so that a read
//! never waits behind an fsync nor an fsync behind a read) and complete in any order, each
//! named by its id.

use bytes::Bytes;

use super::failure::{OsError, StorageFailure};
use crate::ids::Lsn;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageRequest {
    /// Create the segment file for `base_lsn` and write `header` into it. The directory entry
    /// is made durable by the next `Sync`.
    CreateSegment { base_lsn: Lsn, header: Bytes },
    /// Append `bytes` to the segment `base_lsn`; they end at log position `end_lsn`.
    Append { base_lsn: Lsn, end_lsn: Lsn, bytes: Bytes },
    /// fdatasync every segment written since the last sync, and the directory if segments were
    /// created or deleted since; then report `Synced { through }`. A worker may first carry out
    /// appends queued after the sync and report a `through` past the one asked for.
    Sync { through: Lsn },
    /// Delete the segment file `base_lsn`; its removal is made durable by the next `Sync`.
    DeleteSegment { base_lsn: Lsn },
    /// Make every segment created before this request durable (its file and the directory
    /// entry), then write `slot` at `slot_offset` of the manifest file (creating the file, and
    /// making its directory entry durable, the first time) and sync it before carrying out
    /// the next request. Reports nothing; a failure is `Failed`.
    WriteManifest { slot_offset: u64, slot: Bytes },
    /// Read `len` bytes at file offset `offset` of the segment `base_lsn` (a payload of a
    /// queued message whose bytes left memory), and report `Read { id, .. }` with what the file
    /// holds there: fewer bytes when it ends sooner. Only ever asked of records the broker
    /// knows are synced.
    Read { id: ReadId, base_lsn: Lsn, offset: u64, len: u32 },
}

/// Names a `Read` and its completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageDone {
    /// Every `Append` up to `through` is written (in the page cache, not yet synced).
    Written { through: Lsn },
    /// Every `Append` up to `through` is on disk: at least the `through` of the `Sync` it
    /// answers, or further if the worker took later appends into the same sync.
    Synced { through: Lsn },
    /// A request failed. The broker halts: after a failed write or fsync the page cache cannot
    /// be trusted, and only recovery from disk can.
    Failed(StorageFailure),
    /// A `Read` was carried out: the bytes read (fewer than asked when the file ends sooner),
    /// or the operating system's error. Unlike `Failed`, the worker goes on: whether a failed
    /// read matters (its message may be gone by now) is for the broker to judge.
    Read { id: ReadId, result: Result<Bytes, OsError> },
}
