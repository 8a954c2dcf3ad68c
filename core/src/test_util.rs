//! Support for driving the core without a file system: one in-memory disk, shared by the core's
//! tests and benches, the simulator and the fuzz targets.
//!
//! Only with the `test-util` cargo feature, which dev-dependencies, `chute-sim` and the fuzz
//! targets turn on; a server build never has it.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::ids::Lsn;
use crate::storage::failure::{OsError, StorageFailure};
use crate::storage::format::{
    parse_segment_file_name, scan_segment, segment_file_name, SEGMENT_HEADER_LEN,
};
use crate::storage::io::{StorageDone, StorageRequest};
use crate::storage::recovery::{LogImage, RecoveryError, SegmentFile, Truncation};
use crate::{Broker, BrokerConfig, Input, Instant, Recovery, RecoveryReport};

/// The segment files of one data directory, in memory, behind a storage worker that behaves
/// like the server's (docs/STORAGE.md §7.2) with instant I/O: `CreateSegment` first syncs
/// every written segment; `Sync` makes every written byte and every directory change durable;
/// a failed request is reported once and the worker carries out nothing more.
///
/// Each file has the bytes written to it and the length a sync covered. Directory changes
/// (creates, deletes) since the last sync are pending. A process crash keeps every written
/// byte; a machine crash keeps a prefix of the pending directory changes (journaling file
/// systems persist them in order) and undoes the rest, then each file keeps its synced bytes
/// and a part of its unsynced tail, as [`CrashChoices`] decide.
///
/// Faults are carried out here and decided by the caller: [`fail`](MemDisk::fail),
/// [`torn_write`](MemDisk::torn_write), [`machine_crash`](MemDisk::machine_crash) and
/// [`flip_bit`](MemDisk::flip_bit). When a request completes (latency) is the caller's business
/// too: [`apply`](MemDisk::apply) carries one out whenever it is called.
#[derive(Clone, Debug, Default)]
pub struct MemDisk {
    files: BTreeMap<Lsn, MemFile>,
    /// Directory changes since the last sync, oldest first.
    dir_pending: Vec<DirOp>,
    /// A request failed: it was reported, and nothing more is carried out until a crash.
    failed: bool,
    /// The buffer of the last segment whose deletion a sync made durable, emptied, for the
    /// next segment created: a long run (the core benchmark) then writes into memory it has
    /// rather than faulting in fresh pages for every segment, which cost it a quarter of its
    /// throughput.
    spare: Vec<u8>,
    /// `Sync` requests carried out.
    pub syncs: u64,
    /// `Append` requests carried out.
    pub appends: u64,
    /// The manifest file: both slots, as written (each write is synced at once).
    manifest: Option<Vec<u8>>,
}

/// One segment file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemFile {
    data: Vec<u8>,
    /// Bytes a sync covered.
    synced_len: usize,
}

impl MemFile {
    /// Every byte written.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// How many of them a sync covered.
    pub fn synced_len(&self) -> usize {
        self.synced_len
    }
}

#[derive(Clone, Debug)]
enum DirOp {
    Created(Lsn),
    Deleted(Lsn, MemFile),
}

/// What a machine crash keeps of what no sync covered. A simulator draws these from its seed;
/// [`LoseUnsynced`] keeps nothing.
pub trait CrashChoices {
    /// How many of the `pending` directory changes since the last sync survive (a prefix: the
    /// oldest ones).
    fn dir_ops_kept(&mut self, pending: usize) -> usize;

    /// How many of a file's `unsynced` bytes survive. Asked for every file, oldest segment
    /// first, after the directory changes were settled, even when `unsynced` is 0.
    fn unsynced_bytes_kept(&mut self, unsynced: usize) -> usize;
}

/// A machine crash that keeps exactly what the last sync covered.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoseUnsynced;

impl CrashChoices for LoseUnsynced {
    fn dir_ops_kept(&mut self, _pending: usize) -> usize {
        0
    }

    fn unsynced_bytes_kept(&mut self, _unsynced: usize) -> usize {
        0
    }
}

/// What a machine crash did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashDamage {
    pub dir_ops_lost: u32,
    pub torn_bytes: u64,
}

/// What a sync in flight covers (see [`MemDisk::begin_sync`]).
#[derive(Clone, Debug)]
pub struct SyncPoint {
    lens: Vec<(Lsn, usize)>,
    dir_ops: usize,
}

/// A request a real disk would refuse: the broker asked for something wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemDiskError {
    #[error("CreateSegment for existing {}", segment_file_name(*.0))]
    SegmentExists(Lsn),
    #[error("Append to missing {}", segment_file_name(*.0))]
    AppendToMissing(Lsn),
    #[error("Append to {} ends at {end_lsn}, but the file would end at {file_end_lsn}", segment_file_name(*base_lsn))]
    AppendMisplaced { base_lsn: Lsn, end_lsn: Lsn, file_end_lsn: Lsn },
    #[error("DeleteSegment of missing {}", segment_file_name(*.0))]
    DeleteMissing(Lsn),
    #[error("truncation of unknown file {0}")]
    TruncateUnknown(String),
    #[error("truncation of missing file {0}")]
    TruncateMissing(String),
}

impl MemDisk {
    /// The disk a broker recovered from `files` leaves: those files (named as the data
    /// directory names them, or not), the torn tail recovery reported cut, and everything
    /// synced, as the server syncs what recovery read.
    ///
    /// # Panics
    ///
    /// If a file kept has no valid segment header: recovery would have refused it.
    pub fn recovered_from(image: &LogImage, truncation: Option<&Truncation>) -> MemDisk {
        let mut disk = MemDisk {
            manifest: image.manifest.as_deref().map(<[u8]>::to_vec),
            ..MemDisk::default()
        };
        let files = &image.segments;
        for (index, file) in files.iter().enumerate() {
            let is_last = index + 1 == files.len();
            let mut bytes = file.bytes.clone();
            // Only the newest segment is ever cut.
            if let Some(cut) = truncation.filter(|t| is_last && t.file == file.name) {
                if cut.valid_len == 0 {
                    continue;
                }
                bytes.truncate(cut.valid_len as usize);
            }
            let scan = scan_segment(&bytes, is_last)
                .unwrap_or_else(|err| panic!("{} was recovered from: {err}", file.name));
            let synced_len = bytes.len();
            disk.files.insert(scan.base_lsn, MemFile { data: bytes.to_vec(), synced_len });
        }
        disk
    }

    // ---- the worker ----

    /// Carries out one request at once; returns the report the worker sends, if any. After a
    /// failure ([`fail`](MemDisk::fail)) nothing is carried out until a crash.
    pub fn apply(&mut self, request: &StorageRequest) -> Result<Option<StorageDone>, MemDiskError> {
        if self.failed {
            return Ok(None);
        }
        match request {
            StorageRequest::CreateSegment { base_lsn, header } => {
                // Only the newest segment may end in unsynced bytes (recovery allows a torn tail
                // there only), so the worker syncs the others first.
                self.sync_all();
                if self.files.contains_key(base_lsn) {
                    return Err(MemDiskError::SegmentExists(*base_lsn));
                }
                let mut data = std::mem::take(&mut self.spare);
                data.extend_from_slice(header);
                self.files.insert(*base_lsn, MemFile { data, synced_len: 0 });
                self.dir_pending.push(DirOp::Created(*base_lsn));
                Ok(None)
            }
            StorageRequest::Append { base_lsn, end_lsn, bytes } => {
                self.appends += 1;
                let file =
                    self.files.get_mut(base_lsn).ok_or(MemDiskError::AppendToMissing(*base_lsn))?;
                let file_end_lsn =
                    base_lsn.plus((file.data.len() - SEGMENT_HEADER_LEN + bytes.len()) as u64);
                if file_end_lsn != *end_lsn {
                    let (base_lsn, end_lsn) = (*base_lsn, *end_lsn);
                    return Err(MemDiskError::AppendMisplaced { base_lsn, end_lsn, file_end_lsn });
                }
                file.data.extend_from_slice(bytes);
                Ok(Some(StorageDone::Written { through: *end_lsn }))
            }
            StorageRequest::Sync { through } => {
                self.syncs += 1;
                self.sync_all();
                Ok(Some(StorageDone::Synced { through: *through }))
            }
            StorageRequest::DeleteSegment { base_lsn } => {
                let file =
                    self.files.remove(base_lsn).ok_or(MemDiskError::DeleteMissing(*base_lsn))?;
                self.dir_pending.push(DirOp::Deleted(*base_lsn, file));
                Ok(None)
            }
            StorageRequest::WriteManifest { slot_offset, slot } => {
                self.sync_created();
                let manifest = self.manifest.get_or_insert_with(Vec::new);
                let at = *slot_offset as usize;
                if manifest.len() < at + slot.len() {
                    manifest.resize(at + slot.len(), 0);
                }
                manifest[at..at + slot.len()].copy_from_slice(slot);
                Ok(None)
            }
            StorageRequest::Read { id, base_lsn, offset, len } => {
                Ok(Some(StorageDone::Read { id: *id, result: self.read(*base_lsn, *offset, *len) }))
            }
        }
    }

    /// What a sync started now covers: each file's bytes so far and the directory changes so
    /// far. A worker that writes while its sync runs (the server's) finishes it with
    /// [`finish_sync`](MemDisk::finish_sync), which makes only these durable.
    pub fn begin_sync(&self) -> SyncPoint {
        let lens = self.files.iter().map(|(base, file)| (*base, file.data.len())).collect();
        SyncPoint { lens, dir_ops: self.dir_pending.len() }
    }

    /// Completes a sync begun at `point`, reporting it as `through`.
    pub fn finish_sync(&mut self, point: &SyncPoint, through: Lsn) -> Option<StorageDone> {
        if self.failed {
            return None;
        }
        self.syncs += 1;
        for (base, len) in &point.lens {
            if let Some(file) = self.files.get_mut(base) {
                file.synced_len = file.synced_len.max((*len).min(file.data.len()));
            }
        }
        let covered = point.dir_ops.min(self.dir_pending.len());
        for op in self.dir_pending.drain(..covered) {
            if let DirOp::Deleted(_, file) = op {
                self.spare = file.data;
                self.spare.clear();
            }
        }
        Some(StorageDone::Synced { through })
    }

    /// What a `pread` of `len` bytes at `offset` of segment `base_lsn` returns: fewer bytes
    /// where the file ends sooner, an error where there is no such file.
    pub fn read(&self, base_lsn: Lsn, offset: u64, len: u32) -> Result<Bytes, OsError> {
        let Some(file) = self.files.get(&base_lsn) else {
            let message = "No such file or directory (os error 2)";
            return Err(OsError::new(std::io::ErrorKind::NotFound, message));
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(file.data.len());
        let end = start.saturating_add(len as usize).min(file.data.len());
        Ok(Bytes::copy_from_slice(&file.data[start..end]))
    }

    /// What a worker does before writing the manifest: the segments created since the last
    /// sync, and the directory, become durable.
    fn sync_created(&mut self) {
        for op in std::mem::take(&mut self.dir_pending) {
            if let DirOp::Created(base) = op {
                if let Some(file) = self.files.get_mut(&base) {
                    file.synced_len = file.data.len();
                }
            }
        }
    }

    /// A manifest write cut short by a crash: `bytes`, a prefix of a slot, reach the file at
    /// `slot_offset` (if the manifest exists: a first write goes in whole or not at all).
    pub fn torn_manifest_write(&mut self, slot_offset: u64, bytes: &[u8]) {
        if let Some(manifest) = self.manifest.as_mut() {
            let at = slot_offset as usize;
            if manifest.len() < at + bytes.len() {
                manifest.resize(at + bytes.len(), 0);
            }
            manifest[at..at + bytes.len()].copy_from_slice(bytes);
        }
    }

    /// The manifest file's bytes, if there is one.
    pub fn manifest(&self) -> Option<&[u8]> {
        self.manifest.as_deref()
    }

    /// Removes a segment file, as an operator's `rm` would (durably, behind the broker's back).
    pub fn remove_file(&mut self, base_lsn: Lsn) {
        self.files.remove(&base_lsn);
    }

    /// Cuts a segment file to `len` bytes, durably, behind the broker's back.
    pub fn truncate_file(&mut self, base_lsn: Lsn, len: usize) {
        if let Some(file) = self.files.get_mut(&base_lsn) {
            file.data.truncate(len);
            file.synced_len = file.synced_len.min(len);
        }
    }

    /// The manifest file's bytes, for a test or a simulator to damage.
    pub fn manifest_mut(&mut self) -> Option<&mut Vec<u8>> {
        self.manifest.as_mut()
    }

    /// Carries out `request` and hands `broker` the report, as a driver does.
    ///
    /// # Panics
    ///
    /// If a real disk would refuse the request ([`MemDiskError`]): a bug in the broker.
    pub fn carry_out(&mut self, request: &StorageRequest, broker: &mut Broker, now: Instant) {
        let done = self.apply(request).unwrap_or_else(|err| panic!("the broker asked: {err}"));
        if let Some(done) = done {
            broker.handle_input(now, Input::Storage(done));
        }
    }

    /// `request` fails with `error` instead of being carried out (a failed fsync, a full disk):
    /// returns the report, and the worker carries out nothing more until a crash.
    pub fn fail(&mut self, request: &StorageRequest, error: OsError) -> StorageDone {
        self.failed = true;
        StorageDone::Failed(StorageFailure::new(request, error))
    }

    /// Whether a request failed: the worker stopped.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// A write cut short by a crash: `bytes`, a prefix of an `Append`'s, reach segment
    /// `base_lsn` (if it exists), and nothing is reported.
    pub fn torn_write(&mut self, base_lsn: Lsn, bytes: &[u8]) {
        if let Some(file) = self.files.get_mut(&base_lsn) {
            file.data.extend_from_slice(bytes);
        }
    }

    fn sync_all(&mut self) {
        for file in self.files.values_mut() {
            file.synced_len = file.data.len();
        }
        for op in self.dir_pending.drain(..) {
            if let DirOp::Deleted(_, file) = op {
                self.spare = file.data;
                self.spare.clear();
            }
        }
    }

    // ---- crashes ----

    /// The broker process died: everything written survives (it is in the page cache). The
    /// next process starts with a worker that has not failed.
    pub fn process_crash(&mut self) {
        self.failed = false;
    }

    /// The machine died: synced bytes and directory changes survive, and what else `choices`
    /// keep of the rest.
    pub fn machine_crash(&mut self, choices: &mut impl CrashChoices) -> CrashDamage {
        self.failed = false;
        let mut damage = CrashDamage::default();
        let kept = choices.dir_ops_kept(self.dir_pending.len()).min(self.dir_pending.len());
        for op in self.dir_pending.drain(kept..).rev() {
            damage.dir_ops_lost += 1;
            match op {
                DirOp::Created(base) => {
                    self.files.remove(&base);
                }
                DirOp::Deleted(base, file) => {
                    self.files.insert(base, file);
                }
            }
        }
        self.dir_pending.clear();
        for file in self.files.values_mut() {
            let unsynced = file.data.len() - file.synced_len;
            let keep = choices.unsynced_bytes_kept(unsynced).min(unsynced);
            damage.torn_bytes += (unsynced - keep) as u64;
            file.data.truncate(file.synced_len + keep);
        }
        damage
    }

    /// Bit rot: flips bit `bit` (0..8) of byte `offset` of segment `base_lsn`. Returns false
    /// when there is no such byte.
    pub fn flip_bit(&mut self, base_lsn: Lsn, offset: usize, bit: u8) -> bool {
        let Some(byte) = self.files.get_mut(&base_lsn).and_then(|f| f.data.get_mut(offset)) else {
            return false;
        };
        *byte ^= 1 << (bit % 8);
        true
    }

    // ---- recovery ----

    /// The segment files by base LSN.
    pub fn files(&self) -> &BTreeMap<Lsn, MemFile> {
        &self.files
    }

    /// The segment files as recovery reads them, oldest first.
    pub fn segment_files(&self) -> Vec<SegmentFile> {
        self.files
            .iter()
            .map(|(base, file)| SegmentFile {
                name: segment_file_name(*base),
                bytes: Bytes::copy_from_slice(&file.data),
            })
            .collect()
    }

    /// Recovers a broker from this disk as a server does, through [`Recovery`]: one segment
    /// at a time, oldest first, each a fresh copy of the file's bytes that is handed over and
    /// dropped before the next is made, then the manifest. `accept_data_loss` is the
    /// operator's `--accept-data-loss`.
    pub fn recover(
        &self,
        config: BrokerConfig,
        now: Instant,
        accept_data_loss: bool,
    ) -> Result<(Broker, RecoveryReport), RecoveryError> {
        let mut recovery = Recovery::new(config, now);
        let count = self.files.len();
        for (index, (base, file)) in self.files.iter().enumerate() {
            let name = segment_file_name(*base);
            let segment = SegmentFile { name, bytes: Bytes::copy_from_slice(&file.data) };
            recovery.handle_segment(segment, index + 1 == count)?;
        }
        recovery.finish(self.manifest.as_deref(), accept_data_loss)
    }

    /// The data directory as recovery reads it, whole: the segments and the manifest.
    pub fn image(&self) -> LogImage {
        LogImage {
            segments: self.segment_files(),
            manifest: self.manifest.as_deref().map(Bytes::copy_from_slice),
            accept_data_loss: false,
        }
    }

    /// The data directory a process crash now would leave: everything written.
    pub fn after_process_crash(&self) -> LogImage {
        self.image()
    }

    /// The data directory a machine crash now would leave, keeping nothing a sync did not
    /// cover.
    pub fn after_machine_crash(&self) -> LogImage {
        let mut crashed = self.clone();
        crashed.machine_crash(&mut LoseUnsynced);
        crashed.image()
    }

    /// Recovery succeeded on [`segment_files`](MemDisk::segment_files): cut the torn tail it
    /// found, then (as the server does) sync what it read, so everything on disk is durable.
    pub fn recovered(&mut self, truncation: Option<&Truncation>) -> Result<(), MemDiskError> {
        if let Some(truncation) = truncation {
            let base = parse_segment_file_name(&truncation.file)
                .ok_or_else(|| MemDiskError::TruncateUnknown(truncation.file.clone()))?;
            let file = self
                .files
                .get_mut(&base)
                .ok_or_else(|| MemDiskError::TruncateMissing(truncation.file.clone()))?;
            if truncation.valid_len == 0 {
                self.files.remove(&base);
            } else {
                file.data.truncate(truncation.valid_len as usize);
            }
        }
        self.sync_all();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::format::segment_header;

    fn create(base_lsn: u64) -> StorageRequest {
        let base_lsn = Lsn(base_lsn);
        StorageRequest::CreateSegment {
            base_lsn,
            header: Bytes::copy_from_slice(&segment_header(base_lsn)),
        }
    }

    fn append(base_lsn: u64, end_lsn: u64, len: usize) -> StorageRequest {
        let (base_lsn, end_lsn) = (Lsn(base_lsn), Lsn(end_lsn));
        StorageRequest::Append { base_lsn, end_lsn, bytes: Bytes::from(vec![7; len]) }
    }

    fn lens(disk: &MemDisk) -> Vec<(u64, usize)> {
        disk.files().iter().map(|(base, file)| (base.0, file.data().len())).collect()
    }

    /// A machine crash keeps what the last sync covered: unsynced bytes go, a segment created
    /// since comes undone, and one deleted since is back.
    #[test]
    fn machine_crash_keeps_only_what_a_sync_covered() {
        let mut disk = MemDisk::default();
        disk.apply(&create(0)).unwrap();
        disk.apply(&append(0, 10, 10)).unwrap();
        disk.apply(&StorageRequest::Sync { through: Lsn(10) }).unwrap();
        disk.apply(&append(0, 15, 5)).unwrap();
        let files = disk.after_machine_crash().segments;
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].bytes.len(), SEGMENT_HEADER_LEN + 10);

        disk.apply(&create(15)).unwrap(); // syncs segment 0 whole first
        disk.apply(&StorageRequest::DeleteSegment { base_lsn: Lsn(0) }).unwrap();
        assert_eq!(lens(&disk), [(15, SEGMENT_HEADER_LEN)]);
        let damage = disk.machine_crash(&mut LoseUnsynced);
        assert_eq!(damage, CrashDamage { dir_ops_lost: 2, torn_bytes: 0 });
        assert_eq!(lens(&disk), [(0, SEGMENT_HEADER_LEN + 15)]);
    }

    /// A segment created into a deleted segment's buffer starts with its own header only.
    #[test]
    fn a_reused_buffer_holds_nothing_of_the_deleted_segment() {
        let mut disk = MemDisk::default();
        disk.apply(&create(0)).unwrap();
        disk.apply(&append(0, 10, 10)).unwrap();
        disk.apply(&create(10)).unwrap();
        disk.apply(&StorageRequest::DeleteSegment { base_lsn: Lsn(0) }).unwrap();
        disk.apply(&StorageRequest::Sync { through: Lsn(10) }).unwrap();
        disk.apply(&create(20)).unwrap();
        assert_eq!(disk.files()[&Lsn(20)].data(), &segment_header(Lsn(20))[..]);
    }

    /// After a failure the worker does nothing more; a crash starts a fresh one.
    #[test]
    fn a_failed_request_stops_the_worker_until_a_crash() {
        let mut disk = MemDisk::default();
        disk.apply(&create(0)).unwrap();
        let sync = StorageRequest::Sync { through: Lsn(0) };
        let eio = OsError::new(std::io::ErrorKind::Other, "Input/output error");
        let done = disk.fail(&sync, eio.clone());
        let expected = StorageDone::Failed(StorageFailure::Sync { through: Lsn(0), error: eio });
        assert_eq!(done, expected);
        assert_eq!(disk.apply(&append(0, 4, 4)), Ok(None));
        assert_eq!(lens(&disk), [(0, SEGMENT_HEADER_LEN)]);
        disk.process_crash();
        assert!(disk.apply(&append(0, 4, 4)).unwrap().is_some());
    }

    /// Requests a real disk would refuse are errors, not silently carried out.
    #[test]
    fn impossible_requests_are_refused() {
        let mut disk = MemDisk::default();
        assert_eq!(disk.apply(&append(0, 4, 4)), Err(MemDiskError::AppendToMissing(Lsn(0))));
        disk.apply(&create(0)).unwrap();
        assert_eq!(disk.apply(&create(0)), Err(MemDiskError::SegmentExists(Lsn(0))));
        let misplaced = MemDiskError::AppendMisplaced {
            base_lsn: Lsn(0),
            end_lsn: Lsn(9),
            file_end_lsn: Lsn(4),
        };
        assert_eq!(disk.apply(&append(0, 9, 4)), Err(misplaced));
        let delete = StorageRequest::DeleteSegment { base_lsn: Lsn(5) };
        assert_eq!(disk.apply(&delete), Err(MemDiskError::DeleteMissing(Lsn(5))));
    }

    /// A disk rebuilt from what recovery read applies the cut and keys files by their headers,
    /// whatever they were called.
    #[test]
    fn recovered_from_cuts_the_torn_tail() {
        let mut disk = MemDisk::default();
        disk.apply(&create(0)).unwrap();
        disk.apply(&append(0, 6, 6)).unwrap();
        let mut image = disk.image();
        image.segments[0].name = "renamed.log".into();
        let cut = Truncation {
            file: "renamed.log".into(),
            valid_len: (SEGMENT_HEADER_LEN + 2) as u64,
            dropped_bytes: 4,
            only_zeros: false,
        };
        let disk = MemDisk::recovered_from(&image, Some(&cut));
        assert_eq!(lens(&disk), [(0, SEGMENT_HEADER_LEN + 2)]);
        assert_eq!(disk.files()[&Lsn(0)].synced_len(), SEGMENT_HEADER_LEN + 2);
    }
}
