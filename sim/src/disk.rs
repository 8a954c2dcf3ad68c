//! The simulated disk and the storage worker in front of it.
//!
//! The disk is chute-core's in-memory disk (`test_util::MemDisk`), which behaves like
//! `chute-server`'s worker (docs/STORAGE.md §7.2) and carries out the faults. This file keeps
//! the worker's timing and the fault *decisions*, all drawn from the run's seed: requests are
//! carried out in order, one at a time, each completing after a latency, except that a sync
//! runs beside the writes that follow it, as the server's syncer thread does (it covers what
//! was written when it began; a new segment or a manifest write waits for it); an fsync may fail
//! (reported once, then the worker stops); a process crash keeps everything written and may
//! tear the write in progress; a machine crash keeps a prefix of the directory changes since
//! the last sync, and of each file's unsynced tail none, all or a torn part.

use std::collections::{BTreeMap, VecDeque};
use std::io::ErrorKind;

use bytes::Bytes;
use chute_core::ids::Lsn;
use chute_core::storage::failure::OsError;
use chute_core::storage::format::{scan_segment, SEGMENT_HEADER_LEN};
use chute_core::storage::io::{ReadId, StorageDone, StorageRequest};
use chute_core::storage::manifest::Manifest;
use chute_core::storage::recovery::{RecoveryError, Truncation};
use chute_core::test_util::{CrashChoices, CrashDamage, MemDisk, MemDiskError, SyncPoint};
use chute_core::{Broker, BrokerConfig, Instant, RecoveryReport};

use crate::rng::SimRng;

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

/// A machine crash's choices, drawn from the run's seed: a prefix of the pending directory
/// changes, and of each file's unsynced tail none, all or a random part.
impl CrashChoices for SimRng {
    fn dir_ops_kept(&mut self, pending: usize) -> usize {
        self.range(0, pending as u64) as usize
    }

    fn unsynced_bytes_kept(&mut self, unsynced: usize) -> usize {
        match self.below(3) {
            0 => 0,
            1 => unsynced,
            _ => self.range(0, unsynced as u64) as usize,
        }
    }
}

/// Part of the log an operator lost while the broker was down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentLoss {
    DeletedNewest(Lsn),
    EmptiedNewest(Lsn),
    DeletedOldest(Lsn),
    /// The newest segment cut to `keep` bytes, inside what the manifest says was synced.
    CutNewest {
        base: Lsn,
        keep: u64,
    },
}

/// The simulated storage worker: its queue and timing in front of the in-memory disk.
#[derive(Debug, Default)]
pub struct Disk {
    pub mem: MemDisk,
    queue: VecDeque<StorageRequest>,
    /// The front request is being carried out.
    busy: bool,
    /// The sync in flight beside the writes.
    sync: Option<InFlightSync>,
    /// Reads in flight, served apart from the ordered requests.
    reads: BTreeMap<ReadId, StorageRequest>,
}

#[derive(Debug)]
struct InFlightSync {
    point: SyncPoint,
    through: Lsn,
    /// It will fail (an fsync error).
    failing: bool,
}

/// What [`Disk::start`] set going, with how long each takes (ns).
#[derive(Debug, Default)]
pub struct Started {
    pub write_ns: Option<u64>,
    pub sync_ns: Option<u64>,
}

impl Disk {
    // ---- the worker ----

    /// Queues a request; returns whether the worker is idle and should be started.
    pub fn push(&mut self, request: StorageRequest) -> bool {
        if self.mem.has_failed() {
            return false;
        }
        self.queue.push_back(request);
        !self.busy
    }

    /// Starts what can start: a sync at the front goes beside the writes (when none is in
    /// flight), then the next request, if the worker is idle and it need not wait for the sync.
    /// `fail_per_mille` is the chance that an fsync fails.
    pub fn start(&mut self, rng: &mut SimRng, fail_per_mille: u32) -> Started {
        let mut started = Started::default();
        if self.busy || self.mem.has_failed() {
            return started;
        }
        if let Some(StorageRequest::Sync { through }) = self.queue.front() {
            if self.sync.is_some() {
                return started;
            }
            let through = *through;
            self.queue.pop_front();
            let failing = rng.chance(fail_per_mille);
            self.sync = Some(InFlightSync { point: self.mem.begin_sync(), through, failing });
            started.sync_ns = Some(if rng.chance(30) {
                rng.range(8_000_000, 30_000_000)
            } else {
                rng.range(300_000, 4_000_000)
            });
        }
        let Some(request) = self.queue.front() else { return started };
        let latency_ns = match request {
            StorageRequest::Append { bytes, .. } => {
                rng.range(20_000, 150_000) + bytes.len() as u64 * 2
            }
            // The core asks for one sync at a time; a second would wait for the first.
            StorageRequest::Sync { .. } => return started,
            // Both make earlier segments durable first: they wait for the sync in flight.
            StorageRequest::CreateSegment { .. } | StorageRequest::WriteManifest { .. }
                if self.sync.is_some() =>
            {
                return started
            }
            // Creating a segment syncs everything before it.
            StorageRequest::CreateSegment { .. } => rng.range(300_000, 3_000_000),
            StorageRequest::DeleteSegment { .. } => rng.range(50_000, 300_000),
            // A small write and its fsync, after syncing any segment created before it.
            StorageRequest::WriteManifest { .. } => rng.range(200_000, 2_000_000),
            StorageRequest::Read { .. } => unreachable!("reads are served apart (push_read)"),
        };
        self.busy = true;
        started.write_ns = Some(latency_ns);
        started
    }

    /// Finishes the sync in flight: it makes durable what was written when it began, or fails
    /// (and the worker stops).
    pub fn complete_sync(&mut self) -> Option<StorageDone> {
        let sync = self.sync.take().expect("a sync in flight");
        if sync.failing {
            // The write in progress still completes (reporting nothing: the disk has failed).
            self.queue.truncate(usize::from(self.busy));
            let eio = OsError::new(ErrorKind::Other, "Input/output error (os error 5, simulated)");
            return Some(self.mem.fail(&StorageRequest::Sync { through: sync.through }, eio));
        }
        self.mem.finish_sync(&sync.point, sync.through)
    }

    /// Finishes the request in progress. `Err` when the broker asked for something a real disk
    /// would refuse (a driver-visible bug).
    pub fn complete(&mut self) -> Result<(StorageRequest, Option<StorageDone>), MemDiskError> {
        assert!(self.busy, "no storage request in progress");
        self.busy = false;
        let request = self.queue.pop_front().expect("request in progress");
        let done = self.mem.apply(&request)?;
        Ok((request, done))
    }

    // ---- reads ----

    /// Takes a read; returns how long it takes (ns): a page-cache hit or a trip to the disk.
    pub fn push_read(&mut self, id: ReadId, request: StorageRequest, rng: &mut SimRng) -> u64 {
        self.reads.insert(id, request);
        if rng.chance(300) {
            rng.range(200_000, 5_000_000)
        } else {
            rng.range(5_000, 60_000)
        }
    }

    /// Carries out read `id` against the files as they are now (a segment deleted meanwhile
    /// is missing). With `fail_per_mille`, the read fails: EIO, or fewer bytes than the file
    /// holds (a short read).
    pub fn complete_read(
        &mut self,
        id: ReadId,
        rng: &mut SimRng,
        fail_per_mille: u32,
    ) -> Option<StorageDone> {
        let StorageRequest::Read { base_lsn, offset, len, .. } = self.reads.remove(&id)? else {
            unreachable!("only reads are kept as reads")
        };
        if self.mem.has_failed() {
            return None;
        }
        let mut result = self.mem.read(base_lsn, offset, len);
        if rng.chance(fail_per_mille) {
            result = match result {
                Ok(bytes) if rng.chance(500) && !bytes.is_empty() => {
                    let keep = rng.below(bytes.len() as u64) as usize;
                    Ok(bytes.slice(..keep))
                }
                _ => Err(OsError::new(
                    ErrorKind::Other,
                    "Input/output error (os error 5, simulated)",
                )),
            };
        }
        Some(StorageDone::Read { id, result })
    }

    // ---- crashes ----

    /// The broker process died: everything written survives (it is in the page cache); the
    /// request in progress may have been carried out in part.
    pub fn process_crash(&mut self, rng: &mut SimRng) -> CrashDamage {
        self.interrupt(rng);
        self.mem.process_crash();
        CrashDamage::default()
    }

    /// The machine died: only synced bytes and directory changes are certain to survive.
    pub fn machine_crash(&mut self, rng: &mut SimRng) -> CrashDamage {
        self.interrupt(rng);
        self.mem.machine_crash(rng)
    }

    /// The request in progress when the broker died is carried out in part, or not at all; the
    /// requests behind it are lost with the process.
    fn interrupt(&mut self, rng: &mut SimRng) {
        if self.busy {
            if let Some(request) = self.queue.pop_front() {
                match request {
                    StorageRequest::Append { base_lsn, bytes, .. } => {
                        let keep = rng.range(0, bytes.len() as u64) as usize;
                        self.mem.torn_write(base_lsn, &bytes[..keep]);
                    }
                    StorageRequest::WriteManifest { slot_offset, slot } => {
                        let keep = rng.range(0, slot.len() as u64) as usize;
                        self.mem.torn_manifest_write(slot_offset, &slot[..keep]);
                    }
                    other if rng.chance(500) => {
                        let _ = self.mem.apply(&other);
                    }
                    _ => {}
                }
            }
        }
        // The fsync in flight may have finished just before the end.
        if let Some(sync) = self.sync.take() {
            if !sync.failing && rng.chance(500) {
                let _ = self.mem.finish_sync(&sync.point, sync.through);
            }
        }
        self.queue.clear();
        self.reads.clear();
        self.busy = false;
    }

    // ---- recovery ----

    /// Recovers a broker from what is on disk, one segment at a time, as the server does.
    pub fn recover(
        &self,
        config: BrokerConfig,
        now: Instant,
    ) -> Result<(Broker, RecoveryReport), RecoveryError> {
        self.mem.recover(config, now, false)
    }

    /// How many segment files recovery reads.
    pub fn segment_count(&self) -> usize {
        self.mem.files().len()
    }

    /// Recovery succeeded: cut the torn tail it found, then (as the server does) sync what it
    /// read, so everything on disk is durable.
    pub fn recovered(&mut self, truncation: Option<&Truncation>) -> Result<(), MemDiskError> {
        self.mem.recovered(truncation)
    }

    /// What recovery must report for these files when nothing corrupted them: every valid
    /// record kept, and only a torn tail of the newest segment cut.
    pub fn expected_recovery(&self) -> ExpectedRecovery {
        let mut expected = ExpectedRecovery { records: 0, truncation: None };
        let files = self.mem.files();
        let newest = files.keys().next_back().copied();
        for (base, file) in files {
            let data = file.data();
            if data.len() < SEGMENT_HEADER_LEN {
                expected.truncation = Some((base.0, 0));
                continue;
            }
            let mut pos = SEGMENT_HEADER_LEN;
            while let Some(len) = valid_record(data, pos) {
                expected.records += 1;
                pos += len;
            }
            if pos < data.len() && Some(*base) == newest {
                expected.truncation = Some((base.0, pos as u64));
            }
        }
        expected
    }

    /// The log position just past the last whole record the files hold, by the simulator's own
    /// reading (scan of the newest segment): what a crash kept of the log.
    pub fn kept_end_lsn(&self) -> Option<u64> {
        let files = self.mem.files();
        let (_, newest) = files.iter().next_back()?;
        let bytes = Bytes::copy_from_slice(newest.data());
        match scan_segment(&bytes, true) {
            Ok(scan) => match scan.next_lsn() {
                Some(end) => Some(end.0),
                // The newest file holds no whole header: the one before it ends the log.
                None => {
                    let (_, previous) = files.iter().nth_back(1)?;
                    let bytes = Bytes::copy_from_slice(previous.data());
                    scan_segment(&bytes, false).ok()?.next_lsn().map(|end| end.0)
                }
            },
            Err(_) => None,
        }
    }

    /// An operator's mistake while the broker is down: the newest segment deleted or
    /// emptied, the oldest deleted (when there are two or more), or the newest cut inside
    /// records the manifest says were synced. Returns what was done, `None` when the disk has
    /// nothing to lose that way.
    pub fn lose_segment_data(&mut self, rng: &mut SimRng) -> Option<SegmentLoss> {
        let files = self.mem.files();
        let newest = *files.keys().next_back()?;
        let oldest = *files.keys().next()?;
        let durable_lsn = self
            .mem
            .manifest()
            .and_then(|bytes| Manifest::decode_file(bytes).ok())
            .map_or(Lsn::ZERO, |m| m.durable_lsn);
        let loss = match rng.below(4) {
            0 => SegmentLoss::DeletedNewest(newest),
            1 => SegmentLoss::EmptiedNewest(newest),
            2 if oldest != newest => SegmentLoss::DeletedOldest(oldest),
            _ if durable_lsn > newest => {
                let synced_records = durable_lsn.bytes_since(newest);
                let keep = SEGMENT_HEADER_LEN as u64 + rng.range(0, synced_records - 1);
                SegmentLoss::CutNewest { base: newest, keep }
            }
            _ => return None,
        };
        match loss {
            SegmentLoss::DeletedNewest(base) | SegmentLoss::DeletedOldest(base) => {
                self.mem.remove_file(base)
            }
            SegmentLoss::EmptiedNewest(base) => self.mem.truncate_file(base, 0),
            SegmentLoss::CutNewest { base, keep } => self.mem.truncate_file(base, keep as usize),
        }
        Some(loss)
    }

    /// Flips one bit of synced data, anywhere but in the last valid record of the newest segment:
    /// recovery cannot tell damage there from a torn write and cuts it off as one (the limit
    /// docs/STORAGE.md §10.2 documents), so a flip there would be a lost record, not a detected
    /// corruption. Returns (segment, offset, bit).
    pub fn flip_bit(&mut self, rng: &mut SimRng) -> Option<(Lsn, u64, u8)> {
        let files = self.mem.files();
        let newest = *files.keys().next_back()?;
        let mut ranges: Vec<(Lsn, usize, usize)> = Vec::new();
        for (base, file) in files {
            let end = file.synced_len().min(file.data().len());
            if *base != newest {
                ranges.push((*base, 0, end));
                continue;
            }
            let bytes = Bytes::copy_from_slice(file.data());
            let Ok(scan) = scan_segment(&bytes, true) else { continue };
            // Neither the last valid record nor anything after it (a torn tail, cut all the
            // same) may flip.
            let end = match scan.records.last() {
                Some(last) => {
                    (SEGMENT_HEADER_LEN + last.lsn.bytes_since(scan.base_lsn) as usize).min(end)
                }
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
                assert!(self.mem.flip_bit(base, offset, bit), "the byte picked exists");
                return Some((base, offset as u64, bit));
            }
            pick -= end - start;
        }
        None
    }
}
