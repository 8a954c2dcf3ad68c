//! The simulated disk and the storage worker in front of it.
//!
//! The worker behaves like `chute-server`'s (docs/STORAGE.md §7.2): it carries requests out in
//! order, one at a time, each completing after a latency; `CreateSegment` first syncs every
//! written segment and the directory; `Sync` makes every written byte and every directory change
//! durable; a failed fsync is reported once and the worker stops.
//!
//! Each file has the bytes written to it and the length a sync covered. Directory changes
//! (creates, deletes) since the last sync are pending: a machine crash keeps a prefix of them, in
//! order (journaling file systems persist directory operations in order), and undoes the rest.
//! Then each file keeps its synced bytes plus a random prefix of its unsynced tail: none of it,
//! all of it, or a torn part of it. A process crash keeps everything written, and may tear the
//! write in progress.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use chute_core::storage::format::{
    parse_segment_file_name, scan_segment, segment_file_name, SEGMENT_HEADER_LEN,
};
use chute_core::storage::io::{StorageDone, StorageRequest};
use chute_core::storage::recovery::{SegmentFile, Truncation};

use crate::rng::SimRng;

#[derive(Clone, Debug, Default)]
pub struct SimFile {
    pub data: Vec<u8>,
    /// Bytes a sync covered.
    pub synced_len: usize,
}

#[derive(Clone, Debug)]
enum DirOp {
    Created(u64),
    Deleted(u64, SimFile),
}

/// What recovery must find in the files, by the simulator's own reading of the format
/// (docs/STORAGE.md §4-5, §10.2), written independently of the core's scanner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedRecovery {
    /// Valid records in all segments.
    pub records: u64,
    /// (segment, bytes to keep) when the newest segment ends in a torn tail.
    pub truncation: Option<(u64, u64)>,
}

/// Largest `len` a record may have (docs/STORAGE.md §14).
const RECORD_LEN_MAX: usize = 32 * 1024 * 1024;

/// The length of the valid record at `pos`, if one starts there.
fn valid_record(data: &[u8], pos: usize) -> Option<usize> {
    let header = data.get(pos..pos + 9)?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > RECORD_LEN_MAX || header[8] == 0 {
        return None;
    }
    let kind_and_body = data.get(pos + 8..pos + 8 + len)?;
    let computed = crc32c::crc32c_append(crc32c::crc32c(&header[0..4]), kind_and_body);
    (computed == crc).then_some(8 + len)
}

/// What a crash did to the disk, for the trace.
#[derive(Clone, Copy, Debug, Default)]
pub struct CrashDamage {
    pub dir_ops_lost: u32,
    pub torn_bytes: u64,
}

#[derive(Debug, Default)]
pub struct Disk {
    pub files: BTreeMap<u64, SimFile>,
    dir_pending: Vec<DirOp>,
    queue: VecDeque<StorageRequest>,
    /// The front request is being carried out.
    busy: bool,
    /// The request in progress will fail (an fsync error).
    failing: bool,
    /// The worker reported a failure and carries out nothing more.
    stopped: bool,
    pub syncs: u64,
    pub appends: u64,
}

impl Disk {
    // ---- the worker ----

    /// Queues a request; returns whether the worker is idle and should be started.
    pub fn push(&mut self, request: StorageRequest) -> bool {
        if self.stopped {
            return false;
        }
        self.queue.push_back(request);
        !self.busy
    }

    /// Starts the next request, if the worker is idle; returns how long it takes (ns).
    /// `fail_per_mille` is the chance that an fsync fails.
    pub fn start(&mut self, rng: &mut SimRng, fail_per_mille: u32) -> Option<u64> {
        if self.busy || self.stopped {
            return None;
        }
        let request = self.queue.front()?;
        self.busy = true;
        let latency_ns = match request {
            StorageRequest::Append { bytes, .. } => {
                rng.range(20_000, 150_000) + bytes.len() as u64 * 2
            }
            StorageRequest::Sync { .. } => {
                self.failing = rng.chance(fail_per_mille);
                if rng.chance(30) {
                    rng.range(8_000_000, 30_000_000)
                } else {
                    rng.range(300_000, 4_000_000)
                }
            }
            // Creating a segment syncs everything before it.
            StorageRequest::CreateSegment { .. } => rng.range(300_000, 3_000_000),
            StorageRequest::DeleteSegment { .. } => rng.range(50_000, 300_000),
        };
        Some(latency_ns)
    }

    /// Finishes the request in progress. `Err` when the broker asked for something a real disk
    /// would refuse (a driver-visible bug).
    pub fn complete(&mut self) -> Result<(StorageRequest, Option<StorageDone>), String> {
        assert!(self.busy, "no storage request in progress");
        self.busy = false;
        let request = self.queue.pop_front().expect("request in progress");
        if std::mem::take(&mut self.failing) {
            self.stopped = true;
            self.queue.clear();
            let done = StorageDone::Failed {
                request: "fdatasync".into(),
                error: "Input/output error (os error 5, simulated)".into(),
            };
            return Ok((request, Some(done)));
        }
        let done = self.apply(&request)?;
        Ok((request, done))
    }

    fn apply(&mut self, request: &StorageRequest) -> Result<Option<StorageDone>, String> {
        match request {
            StorageRequest::CreateSegment { base_lsn, header } => {
                self.sync_all();
                if self.files.contains_key(base_lsn) {
                    return Err(format!(
                        "CreateSegment for existing {}",
                        segment_file_name(*base_lsn)
                    ));
                }
                let file = SimFile { data: header.to_vec(), synced_len: 0 };
                self.files.insert(*base_lsn, file);
                self.dir_pending.push(DirOp::Created(*base_lsn));
                Ok(None)
            }
            StorageRequest::Append { base_lsn, end_lsn, bytes } => {
                self.appends += 1;
                let Some(file) = self.files.get_mut(base_lsn) else {
                    return Err(format!("Append to missing {}", segment_file_name(*base_lsn)));
                };
                let expected = file.data.len() - SEGMENT_HEADER_LEN + bytes.len();
                if *base_lsn + expected as u64 != *end_lsn {
                    return Err(format!(
                        "Append to {} ends at {end_lsn}, but the file would end at {}",
                        segment_file_name(*base_lsn),
                        *base_lsn + expected as u64
                    ));
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
                let Some(file) = self.files.remove(base_lsn) else {
                    return Err(format!(
                        "DeleteSegment of missing {}",
                        segment_file_name(*base_lsn)
                    ));
                };
                self.dir_pending.push(DirOp::Deleted(*base_lsn, file));
                Ok(None)
            }
        }
    }

    fn sync_all(&mut self) {
        for file in self.files.values_mut() {
            file.synced_len = file.data.len();
        }
        self.dir_pending.clear();
    }

    // ---- crashes ----

    /// The broker process died: everything written survives (it is in the page cache); the
    /// request in progress may have been carried out in part.
    pub fn process_crash(&mut self, rng: &mut SimRng) -> CrashDamage {
        self.interrupt(rng);
        CrashDamage::default()
    }

    /// The machine died: only synced bytes and directory changes are certain to survive.
    pub fn machine_crash(&mut self, rng: &mut SimRng) -> CrashDamage {
        self.interrupt(rng);
        let mut damage = CrashDamage::default();
        let kept = rng.range(0, self.dir_pending.len() as u64) as usize;
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
            let keep = match rng.below(3) {
                0 => 0,
                1 => unsynced,
                _ => rng.range(0, unsynced as u64) as usize,
            };
            damage.torn_bytes += (unsynced - keep) as u64;
            file.data.truncate(file.synced_len + keep);
        }
        damage
    }

    /// The request in progress when the broker died is carried out in part, or not at all; the
    /// requests behind it are lost with the process.
    fn interrupt(&mut self, rng: &mut SimRng) {
        if self.busy {
            if let Some(request) = self.queue.pop_front() {
                match request {
                    StorageRequest::Append { base_lsn, bytes, .. } => {
                        let keep = rng.range(0, bytes.len() as u64) as usize;
                        if let Some(file) = self.files.get_mut(&base_lsn) {
                            file.data.extend_from_slice(&bytes[..keep]);
                        }
                    }
                    other if rng.chance(500) && !self.failing => {
                        let _ = self.apply(&other);
                    }
                    _ => {}
                }
            }
        }
        self.queue.clear();
        self.busy = false;
        self.failing = false;
        self.stopped = false;
    }

    // ---- recovery ----

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

    /// Recovery succeeded: cut the torn tail it found, then (as the server does) sync what it
    /// read, so everything on disk is durable.
    pub fn recovered(&mut self, truncation: Option<&Truncation>) -> Result<(), String> {
        if let Some(truncation) = truncation {
            let base = parse_segment_file_name(&truncation.file)
                .ok_or_else(|| format!("truncation of unknown file {}", truncation.file))?;
            let file = self
                .files
                .get_mut(&base)
                .ok_or_else(|| format!("truncation of missing file {}", truncation.file))?;
            if truncation.valid_len == 0 {
                self.files.remove(&base);
            } else {
                file.data.truncate(truncation.valid_len as usize);
            }
        }
        self.sync_all();
        Ok(())
    }

    /// What recovery must report for these files when nothing corrupted them: every valid
    /// record kept, and only a torn tail of the newest segment cut.
    pub fn expected_recovery(&self) -> ExpectedRecovery {
        let mut expected = ExpectedRecovery { records: 0, truncation: None };
        let newest = self.files.keys().next_back().copied();
        for (base, file) in &self.files {
            let data = &file.data;
            if data.len() < SEGMENT_HEADER_LEN {
                expected.truncation = Some((*base, 0));
                continue;
            }
            let mut pos = SEGMENT_HEADER_LEN;
            while let Some(len) = valid_record(data, pos) {
                expected.records += 1;
                pos += len;
            }
            if pos < data.len() && Some(*base) == newest {
                expected.truncation = Some((*base, pos as u64));
            }
        }
        expected
    }

    /// The log position just past the last whole record the files hold, by the simulator's own
    /// reading (scan of the newest segment): what a crash kept of the log.
    pub fn kept_end_lsn(&self) -> Option<u64> {
        let (_, newest) = self.files.iter().next_back()?;
        let bytes = Bytes::copy_from_slice(&newest.data);
        match scan_segment(&bytes, true) {
            Ok(scan) => match scan.next_lsn() {
                Some(end) => Some(end),
                // The newest file holds no whole header: the one before it ends the log.
                None => {
                    let (_, previous) = self.files.iter().nth_back(1)?;
                    let bytes = Bytes::copy_from_slice(&previous.data);
                    scan_segment(&bytes, false).ok()?.next_lsn()
                }
            },
            Err(_) => None,
        }
    }

    /// Flips one bit of synced data, anywhere but in the last valid record of the newest segment:
    /// recovery cannot tell damage there from a torn write and cuts it off as one (the limit
    /// docs/STORAGE.md §10.2 documents), so a flip there would be a lost record, not a detected
    /// corruption. Returns (segment, offset, bit).
    pub fn flip_bit(&mut self, rng: &mut SimRng) -> Option<(u64, u64, u8)> {
        let newest = *self.files.keys().next_back()?;
        let mut ranges: Vec<(u64, usize, usize)> = Vec::new();
        for (base, file) in &self.files {
            let end = file.synced_len.min(file.data.len());
            if *base != newest {
                ranges.push((*base, 0, end));
                continue;
            }
            let bytes = Bytes::copy_from_slice(&file.data);
            let Ok(scan) = scan_segment(&bytes, true) else { continue };
            // Neither the last valid record nor anything after it (a torn tail, cut all the
            // same) may flip.
            let end = match scan.records.last() {
                Some(last) => (SEGMENT_HEADER_LEN + (last.lsn - scan.base_lsn) as usize).min(end),
                None => end.min(SEGMENT_HEADER_LEN),
            };
            ranges.push((*base, 0, end));
        }
        ranges.retain(|(_, start, end)| start < end);
        let total: usize = ranges.iter().map(|(_, start, end)| end - start).sum();
        if total == 0 {
            return None;
        }
        let mut pick = rng.below(total as u64) as usize;
        for (base, start, end) in ranges {
            if pick < end - start {
                let offset = start + pick;
                let bit = rng.below(8) as u8;
                self.files.get_mut(&base).expect("file exists").data[offset] ^= 1 << bit;
                return Some((base, offset as u64, bit));
            }
            pick -= end - start;
        }
        None
    }
}
