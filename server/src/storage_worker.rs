//! The storage worker: a thread that owns the segment files. It carries out the broker's
//! storage requests in order, batches what is queued, and reports progress back.
//!
//! At most one sync is ever requested at a time, and it covers every append before it: the
//! broker's group commit. The worker hands it to a thread of its own (`syncer.rs`) and goes
//! on writing. A failed write or sync is reported once and the worker stops: after a failed
//! fsync the page cache cannot be trusted (the broker halts; recovery reads the disk).
//!
//! While syncs are small, the newest segment is kept zero-filled ahead of the write position
//! ([`PREALLOCATE_BYTES`], [`PREALLOCATE_SYNC_BYTES_MAX`]): an fdatasync after an append that
//! grows the file must also commit the new size and block allocation through the file
//! system's journal, while one after an overwrite of blocks that already exist only writes
//! data, which on this machine's disk takes about half as long.
//! Recovery reads the zeros as the newest segment's torn tail and cuts them; a segment is cut
//! to its records before the next one is started and when the worker stops, so older segments
//! never end in zeros.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use chute_core::alerts::SyncLatencyBuckets;
use chute_core::ids::Lsn;
use chute_core::storage::format::{segment_file_name, SEGMENT_HEADER_LEN};
use chute_core::storage::io::{StorageDone, StorageRequest};
use chute_core::storage::manifest::MANIFEST_FILE_NAME;
use prometheus_client::metrics::histogram::Histogram;

use crate::syncer::{Reporter, SyncJob, Syncer};

/// What the storage worker has done, shared with the admin endpoint, which reads it without
/// asking the worker. Relaxed atomics: each number is right on its own, though a scrape may
/// catch one a moment ahead of another.
#[derive(Debug)]
pub struct StorageMetrics {
    /// Sync requests carried out: one group commit each (fdatasync of the segments written
    /// since the last one, and of the directory if its entries changed).
    pub syncs: AtomicU64,
    pub appends: AtomicU64,
    /// Bytes written to segment files: records and segment headers.
    pub bytes_written: AtomicU64,
    /// How long each of those syncs took.
    pub sync_seconds: Histogram,
    /// The same observations by bucket (`SYNC_SECONDS_BUCKETS`, then one past the last):
    /// prometheus-client does not show its buckets, and the alert rule on sync latency needs
    /// them.
    sync_buckets: [AtomicU64; SYNC_SECONDS_BUCKETS.len() + 1],
}

/// Upper bounds of the sync latency buckets, in seconds: from a fast NVMe flush (50 µs) to a
/// disk in trouble (1 s).
pub const SYNC_SECONDS_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

impl Default for StorageMetrics {
    fn default() -> StorageMetrics {
        StorageMetrics {
            syncs: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            sync_seconds: Histogram::new(SYNC_SECONDS_BUCKETS),
            sync_buckets: Default::default(),
        }
    }
}

impl StorageMetrics {
    fn wrote(&self, bytes: usize) {
        self.bytes_written.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts a sync that took `seconds`, in the histogram and in its buckets.
    pub fn observe_sync(&self, seconds: f64) {
        self.sync_seconds.observe(seconds);
        let bucket = SYNC_SECONDS_BUCKETS.iter().position(|bound| seconds <= *bound);
        let index = bucket.unwrap_or(SYNC_SECONDS_BUCKETS.len());
        self.sync_buckets[index].fetch_add(1, Ordering::Relaxed);
    }

    /// The sync latencies so far, for the alert rules.
    pub fn sync_latency(&self) -> SyncLatencyBuckets {
        SyncLatencyBuckets {
            bounds_us: SYNC_SECONDS_BUCKETS.iter().map(|s| (s * 1e6).round() as u64).collect(),
            counts: self.sync_buckets.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
        }
    }
}

/// How far ahead of the newest record the segment file is zero-filled. Each extension costs
/// one slower sync (the new blocks are allocated then), so it is large enough to make that
/// rare, and small enough to write in a moment and to matter little on a nearly full disk.
pub const PREALLOCATE_BYTES: u64 = 1024 * 1024;

/// Preallocation pays when syncs are small (a few messages each: the journal commit of a
/// growing file is most of their time) and costs when they are large: the zeros are written
/// to disk too, doubling the bytes a busy log writes (W1 was 10 % slower with it). So the
/// zone is only extended while syncs cover at most this many bytes on average.
pub const PREALLOCATE_SYNC_BYTES_MAX: u64 = 16 * 1024;

/// Zeros to fill preallocated space from.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// An open segment file and where its records end.
struct Segment {
    /// Shared with the syncer while it syncs the file.
    file: Arc<File>,
    /// File offset just past the last record written.
    data_end: u64,
    /// File length: records, then zeros.
    file_len: u64,
    /// Whether to keep zeros ahead of the records: cleared when filling failed (a nearly full
    /// disk), so appends go on without it.
    preallocate: bool,
}

pub struct StorageWorker {
    dir: PathBuf,
    metrics: Arc<StorageMetrics>,
    /// Preallocation never grows a file past this, the broker's segment size limit.
    segment_bytes_max: u64,
    files: BTreeMap<Lsn, Segment>,
    /// Segments written since the last sync.
    dirty: BTreeSet<Lsn>,
    /// A segment was created or deleted since the last sync: the directory needs one too.
    dir_dirty: bool,
    /// Segments created since their header was last made durable.
    created: BTreeSet<Lsn>,
    /// The manifest file, once opened.
    manifest: Option<File>,
    /// Bytes appended since the last sync, and a moving average of the bytes each sync
    /// covered (each new sync weighs a quarter): preallocation pays while it is small (see
    /// [`PREALLOCATE_SYNC_BYTES_MAX`]). An average, because under load a big sync is often
    /// followed by a small one (what arrived while the big one's report travelled).
    bytes_since_sync: u64,
    sync_bytes_avg: u64,
    /// Tests hold syncs back with it, to see what happens while one is in flight.
    sync_hold: Option<Arc<crate::syncer::SyncHold>>,
}

impl StorageWorker {
    pub fn new(dir: &Path, metrics: Arc<StorageMetrics>, segment_bytes_max: u64) -> StorageWorker {
        StorageWorker {
            dir: dir.to_path_buf(),
            metrics,
            segment_bytes_max,
            files: BTreeMap::new(),
            dirty: BTreeSet::new(),
            dir_dirty: false,
            created: BTreeSet::new(),
            manifest: None,
            bytes_since_sync: 0,
            sync_bytes_avg: 0,
            sync_hold: None,
        }
    }

    /// Runs on its own thread (and its syncs on another) until the broker hangs up or a
    /// request fails.
    pub fn spawn(
        self,
        requests: mpsc::Receiver<StorageRequest>,
        report: impl FnMut(StorageDone) + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let reporter = Reporter::new(report);
        let syncer = Syncer::spawn(self.metrics.clone(), reporter.clone(), self.sync_hold.clone())?;
        std::thread::Builder::new()
            .name("chute-storage".into())
            .spawn(move || self.run(requests, &reporter, &syncer))
    }

    fn run(
        mut self,
        requests: mpsc::Receiver<StorageRequest>,
        reporter: &Reporter,
        syncer: &Syncer,
    ) {
        while let Ok(first) = requests.recv() {
            // Take what is already queued too: one report for a run of appends.
            let mut written = None;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                if reporter.has_failed() {
                    return;
                }
                let mut after = None;
                if let StorageRequest::Sync { through } = request {
                    // Appends that queued up behind the sync ride along with it: a publish
                    // that arrived while the broker was asking for this sync is then not
                    // left waiting for a sync of its own.
                    loop {
                        match requests.try_recv() {
                            Ok(append @ StorageRequest::Append { .. }) => {
                                if !self.step(append, &mut written, reporter, syncer) {
                                    return;
                                }
                            }
                            Ok(other) => {
                                after = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let through = written.unwrap_or(through).max(through);
                    if !self.step(StorageRequest::Sync { through }, &mut written, reporter, syncer)
                    {
                        return;
                    }
                } else if !self.step(request, &mut written, reporter, syncer) {
                    return;
                }
                next = after.or_else(|| requests.try_recv().ok());
            }
            if let Some(through) = written {
                reporter.report(StorageDone::Written { through });
            }
        }
        // The broker hung up: leave no zeros behind, so a clean stop needs no cut at start-up.
        syncer.wait_idle();
        if let Err(error) = self.trim_all().and_then(|()| self.sync_dirty()) {
            tracing::warn!(%error, "could not cut preallocated space at the end of the log");
        }
    }

    /// Carries out one request; appends are reported together (`written`), a sync by the
    /// syncer. Returns false when the request failed: that was reported, and the worker stops.
    fn step(
        &mut self,
        request: StorageRequest,
        written: &mut Option<Lsn>,
        reporter: &Reporter,
        syncer: &Syncer,
    ) -> bool {
        match request {
            StorageRequest::CreateSegment { .. } | StorageRequest::WriteManifest { .. } => {
                // Both make earlier segments durable first, and the sync in flight may hold
                // some of them.
                syncer.wait_idle();
                if reporter.has_failed() {
                    return false;
                }
            }
            // Written now, synced later: what waits only for the write (deliveries from
            // `interval` queues) need not wait for the fsync.
            StorageRequest::Sync { .. } => {
                if let Some(through) = written.take() {
                    reporter.report(StorageDone::Written { through });
                }
            }
            _ => {}
        }
        match self.carry_out(&request, syncer) {
            Ok(Some(StorageDone::Written { through })) => *written = Some(through),
            Ok(_) => {}
            Err(error) => {
                reporter.fail(&request, &error);
                return false;
            }
        }
        true
    }

    /// Hands the group commit to the syncer: the segments written since the last one, the
    /// directory if its entries changed.
    fn hand_over_sync(&mut self, through: Lsn, syncer: &Syncer) {
        let files = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|base| self.files.get(&base).map(|segment| segment.file.clone()))
            .collect();
        let dir = std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone());
        let covered = std::mem::take(&mut self.bytes_since_sync);
        self.sync_bytes_avg = self.sync_bytes_avg - self.sync_bytes_avg / 4 + covered / 4;
        syncer.start(SyncJob { through, files, dir });
    }

    fn carry_out(
        &mut self,
        request: &StorageRequest,
        syncer: &Syncer,
    ) -> std::io::Result<Option<StorageDone>> {
        match *request {
            StorageRequest::CreateSegment { base_lsn, ref header } => {
                // The segments before it are made durable first: recovery allows a torn tail
                // only in the newest segment, so no older one may end in unsynced bytes.
                // Their preallocated zeros are cut first, as only the newest may end in any.
                self.trim_all()?;
                self.sync_dirty()?;
                let path = self.dir.join(segment_file_name(base_lsn));
                let file = Arc::new(OpenOptions::new().create_new(true).write(true).open(&path)?);
                file.write_all_at(header, 0)?;
                self.metrics.wrote(header.len());
                let data_end = header.len() as u64;
                let segment = Segment { file, data_end, file_len: data_end, preallocate: true };
                self.files.insert(base_lsn, segment);
                self.dirty.insert(base_lsn);
                self.created.insert(base_lsn);
                self.dir_dirty = true;
                Ok(None)
            }
            StorageRequest::Append { base_lsn, end_lsn, ref bytes } => {
                let offset =
                    SEGMENT_HEADER_LEN as u64 + end_lsn.bytes_since(base_lsn) - bytes.len() as u64;
                let (segment_bytes_max, preallocate) =
                    (self.segment_bytes_max, self.sync_bytes_avg <= PREALLOCATE_SYNC_BYTES_MAX);
                let segment = self.segment(base_lsn)?;
                segment.file.write_all_at(bytes, offset)?;
                segment.data_end = offset + bytes.len() as u64;
                segment.file_len = segment.file_len.max(segment.data_end);
                if preallocate {
                    segment.preallocate_ahead(segment_bytes_max);
                }
                self.bytes_since_sync += bytes.len() as u64;
                self.metrics.appends.fetch_add(1, Ordering::Relaxed);
                self.metrics.wrote(bytes.len());
                self.dirty.insert(base_lsn);
                Ok(Some(StorageDone::Written { through: end_lsn }))
            }
            StorageRequest::Sync { through } => {
                self.hand_over_sync(through, syncer);
                Ok(None)
            }
            StorageRequest::DeleteSegment { base_lsn } => {
                self.files.remove(&base_lsn);
                self.dirty.remove(&base_lsn);
                self.created.remove(&base_lsn);
                std::fs::remove_file(self.dir.join(segment_file_name(base_lsn)))?;
                self.dir_dirty = true;
                Ok(None)
            }
            StorageRequest::WriteManifest { slot_offset, ref slot } => {
                self.write_manifest(slot_offset, slot)?;
                Ok(None)
            }
            // The event loop hands reads to the payload reader (`StorageSender`).
            StorageRequest::Read { .. } => unreachable!("a read sent to the storage worker"),
        }
    }

    /// Makes the segments created since the last sync durable (file and directory entry), so
    /// the manifest never names a segment a crash could take back, then writes and syncs the
    /// manifest's slot.
    fn write_manifest(&mut self, slot_offset: u64, slot: &[u8]) -> std::io::Result<()> {
        for base in std::mem::take(&mut self.created) {
            if let Some(segment) = self.files.get(&base) {
                segment.file.sync_data()?;
            }
        }
        if self.dir_dirty {
            File::open(&self.dir)?.sync_all()?;
            self.dir_dirty = false;
        }
        match &self.manifest {
            Some(manifest) => {
                manifest.write_all_at(slot, slot_offset)?;
                manifest.sync_data()?;
            }
            None => self.manifest = Some(self.create_or_open_manifest(slot_offset, slot)?),
        }
        self.metrics.wrote(slot.len());
        Ok(())
    }

    /// Opens the manifest to update it in place; a data directory without one gets it whole
    /// (written aside, synced, renamed into place), so a crash never leaves an empty or torn
    /// manifest that recovery would have to refuse.
    fn create_or_open_manifest(&self, slot_offset: u64, slot: &[u8]) -> std::io::Result<File> {
        let path = self.dir.join(MANIFEST_FILE_NAME);
        if path.exists() {
            let file = OpenOptions::new().write(true).open(&path)?;
            file.write_all_at(slot, slot_offset)?;
            file.sync_data()?;
            return Ok(file);
        }
        let staged = self.dir.join(format!("{MANIFEST_FILE_NAME}.new"));
        let file = OpenOptions::new().create(true).truncate(true).write(true).open(&staged)?;
        file.write_all_at(slot, slot_offset)?;
        file.sync_data()?;
        std::fs::rename(&staged, &path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(file)
    }

    /// fdatasync every segment written since the last sync, and the directory if its entries
    /// changed.
    fn sync_dirty(&mut self) -> std::io::Result<()> {
        for base in std::mem::take(&mut self.dirty) {
            if let Some(segment) = self.files.get(&base) {
                segment.file.sync_data()?;
            }
        }
        if std::mem::take(&mut self.dir_dirty) {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Cuts every open segment's preallocated zeros (only the newest has any).
    fn trim_all(&mut self) -> std::io::Result<()> {
        for (base, segment) in &mut self.files {
            if segment.file_len > segment.data_end {
                segment.file.set_len(segment.data_end)?;
                segment.file_len = segment.data_end;
                segment.preallocate = false;
                self.dirty.insert(*base);
            }
        }
        Ok(())
    }

    /// The open segment, opening an existing file (a segment recovery resumed) on first use.
    fn segment(&mut self, base_lsn: Lsn) -> std::io::Result<&mut Segment> {
        if !self.files.contains_key(&base_lsn) {
            let path = self.dir.join(segment_file_name(base_lsn));
            let file = Arc::new(OpenOptions::new().write(true).open(path)?);
            let file_len = file.metadata()?.len();
            let segment = Segment { file, data_end: file_len, file_len, preallocate: true };
            self.files.insert(base_lsn, segment);
        }
        Ok(self.files.get_mut(&base_lsn).expect("just inserted"))
    }
}

impl Segment {
    /// Keeps at least half of [`PREALLOCATE_BYTES`] of zeros past the records, up to the
    /// segment size limit. Filling is an optimisation: when it fails (the disk is nearly full)
    /// the zeros written are cut again and the segment goes on without them, and the append
    /// that needs the space fails on its own.
    fn preallocate_ahead(&mut self, segment_bytes_max: u64) {
        let wanted_end = (self.data_end + PREALLOCATE_BYTES).min(segment_bytes_max);
        if !self.preallocate || self.file_len >= wanted_end.saturating_sub(PREALLOCATE_BYTES / 2) {
            return;
        }
        if let Err(error) = self.fill_zeros(wanted_end) {
            tracing::warn!(%error, "cannot preallocate log space; appending without it");
            self.preallocate = false;
            if self.file.set_len(self.data_end).is_ok() {
                self.file_len = self.data_end;
            }
        }
    }

    fn fill_zeros(&mut self, end: u64) -> std::io::Result<()> {
        while self.file_len < end {
            let chunk_bytes = (end - self.file_len).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..chunk_bytes], self.file_len)?;
            self.file_len += chunk_bytes as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// A worker on a temporary directory, fed and watched from the test.
    struct Harness {
        dir: tempfile::TempDir,
        metrics: Arc<StorageMetrics>,
        requests: mpsc::Sender<StorageRequest>,
        done: mpsc::Receiver<StorageDone>,
        worker: std::thread::JoinHandle<()>,
    }

    impl Harness {
        fn start() -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let metrics = Arc::new(StorageMetrics::default());
            let (requests, requests_rx) = mpsc::channel();
            let (done_tx, done) = mpsc::channel();
            let worker = StorageWorker::new(dir.path(), metrics.clone(), 64 << 20)
                .spawn(requests_rx, move |report| done_tx.send(report).unwrap())
                .unwrap();
            Harness { dir, metrics, requests, done, worker }
        }

        fn send(&self, request: StorageRequest) {
            self.requests.send(request).unwrap();
        }

        fn create(&self, base_lsn: u64) {
            let base_lsn = Lsn(base_lsn);
            self.send(StorageRequest::CreateSegment { base_lsn, header: header(base_lsn) });
        }

        /// Asks for a sync and waits until it is done.
        fn sync(&self, through: u64) {
            let through = Lsn(through);
            self.send(StorageRequest::Sync { through });
            while !matches!(self.done.recv().unwrap(), StorageDone::Synced { .. }) {}
        }

        fn segment_bytes(&self, base_lsn: u64) -> Vec<u8> {
            segment_bytes(self.dir.path(), base_lsn)
        }

        /// Hangs up, waits for the worker to finish, and hands over the directory.
        fn stop(self) -> tempfile::TempDir {
            drop(self.requests);
            self.worker.join().unwrap();
            self.dir
        }
    }

    fn segment_bytes(dir: &Path, base_lsn: u64) -> Vec<u8> {
        std::fs::read(dir.join(segment_file_name(Lsn(base_lsn)))).unwrap()
    }

    fn header(base_lsn: Lsn) -> Bytes {
        Bytes::copy_from_slice(&chute_core::storage::format::segment_header(base_lsn))
    }

    fn append(base_lsn: u64, end_lsn: u64, fill: u8) -> StorageRequest {
        let bytes = Bytes::from(vec![fill; 100]);
        StorageRequest::Append { base_lsn: Lsn(base_lsn), end_lsn: Lsn(end_lsn), bytes }
    }

    /// Appends, bytes and syncs are counted as the worker carries them out, and every sync is
    /// timed.
    #[test]
    fn metrics_count_what_was_carried_out() {
        let worker = Harness::start();
        worker.create(0);
        worker.send(append(0, 100, 1));
        worker.send(append(0, 200, 2));
        worker.sync(200);
        let metrics = worker.metrics.clone();
        worker.stop();

        assert_eq!(metrics.appends.load(Ordering::Relaxed), 2);
        let written = metrics.bytes_written.load(Ordering::Relaxed);
        assert_eq!(written, SEGMENT_HEADER_LEN as u64 + 200, "zeros are not counted");
        assert_eq!(metrics.syncs.load(Ordering::Relaxed), 1);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("sync_seconds", "", metrics.sync_seconds.clone());
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("sync_seconds_count 1\n"), "{text}");
        let latency = metrics.sync_latency();
        assert_eq!(latency.bounds_us[..3], [50, 100, 250]);
        assert_eq!(latency.counts.len(), latency.bounds_us.len() + 1);
        assert_eq!(latency.counts.iter().sum::<u64>(), 1, "the sync is in one bucket");
    }

    /// The newest segment is zero-filled ahead of its records, and the zeros are cut when the
    /// next segment starts (an older segment never ends in zeros) and when the worker stops.
    #[test]
    fn preallocated_zeros_are_cut_at_rotation_and_at_stop() {
        let worker = Harness::start();
        worker.create(0);
        worker.send(append(0, 100, 0xA1));
        worker.send(append(0, 200, 0xA2));
        worker.sync(200);

        let first = worker.segment_bytes(0);
        let records_end = SEGMENT_HEADER_LEN + 200;
        assert!(first.len() as u64 >= PREALLOCATE_BYTES / 2, "{} bytes", first.len());
        assert!(first[SEGMENT_HEADER_LEN..records_end].iter().all(|&b| b == 0xA1 || b == 0xA2));
        assert!(first[records_end..].iter().all(|&b| b == 0));

        worker.create(200);
        worker.send(append(200, 300, 0xB1));
        worker.sync(300);
        let first = worker.segment_bytes(0);
        assert_eq!(first.len(), records_end, "the older segment keeps only its records");
        assert!(worker.segment_bytes(200).len() > SEGMENT_HEADER_LEN + 100);

        let second = segment_bytes(worker.stop().path(), 200);
        assert_eq!(second.len(), SEGMENT_HEADER_LEN + 100, "a clean stop leaves no zeros");
        assert_eq!(&second[..SEGMENT_HEADER_LEN], &header(Lsn(200))[..]);
        assert!(second[SEGMENT_HEADER_LEN..].iter().all(|&b| b == 0xB1));
    }

    /// Preallocation stops while syncs are large (it would write every byte twice): once the
    /// zone from the first small syncs is used up, the file ends at its records.
    #[test]
    fn large_syncs_stop_preallocation() {
        let worker = Harness::start();
        worker.create(0);
        let chunk = 128 * 1024;
        for round in 1..=20u64 {
            let bytes = Bytes::from(vec![7; chunk as usize]);
            let end_lsn = round * chunk;
            worker.send(StorageRequest::Append { base_lsn: Lsn(0), end_lsn: Lsn(end_lsn), bytes });
            worker.sync(end_lsn);
        }
        let records_end = SEGMENT_HEADER_LEN as u64 + 20 * chunk;
        assert_eq!(worker.segment_bytes(0).len() as u64, records_end);
        worker.stop();
    }

    /// Appends queued behind a sync are written before it and covered by it: the sync reaches
    /// as far as they do, and they are reported written at once, before the fsync.
    #[test]
    fn appends_queued_behind_a_sync_ride_along() {
        let dir = tempfile::tempdir().unwrap();
        let (requests, requests_rx) = mpsc::channel();
        requests
            .send(StorageRequest::CreateSegment { base_lsn: Lsn(0), header: header(Lsn(0)) })
            .unwrap();
        requests.send(append(0, 100, 1)).unwrap();
        requests.send(StorageRequest::Sync { through: Lsn(100) }).unwrap();
        requests.send(append(0, 200, 2)).unwrap();
        requests.send(append(0, 300, 3)).unwrap();
        drop(requests);
        let (done_tx, done) = mpsc::channel();
        let metrics = Arc::new(StorageMetrics::default());
        StorageWorker::new(dir.path(), metrics.clone(), 64 << 20)
            .spawn(requests_rx, move |report| done_tx.send(report).unwrap())
            .unwrap()
            .join()
            .unwrap();
        let reports: Vec<String> = done.iter().map(|d| format!("{d:?}")).collect();
        assert_eq!(reports, ["Written { through: Lsn(300) }", "Synced { through: Lsn(300) }"]);
        assert_eq!(metrics.syncs.load(Ordering::Relaxed), 1);
    }

    /// While a sync is in flight the worker goes on writing: an append behind it is reported
    /// written before the sync is done, and a segment is started only after it (recovery allows
    /// unsynced bytes in the newest segment only).
    #[test]
    fn appends_go_on_while_a_sync_is_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let (started, sync_started) = mpsc::channel();
        let hold = Arc::new(crate::syncer::SyncHold {
            started: std::sync::Mutex::new(started),
            gate: std::sync::Mutex::new(()),
        });
        let held = hold.gate.lock().unwrap();
        let (requests, requests_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let mut worker = StorageWorker::new(dir.path(), Arc::default(), 64 << 20);
        worker.sync_hold = Some(hold.clone());
        let thread =
            worker.spawn(requests_rx, move |report| done_tx.send(report).unwrap()).unwrap();
        let send = |request| requests.send(request).unwrap();
        send(StorageRequest::CreateSegment { base_lsn: Lsn(0), header: header(Lsn(0)) });
        send(append(0, 100, 1));
        send(StorageRequest::Sync { through: Lsn(100) });
        let next = |done: &mpsc::Receiver<StorageDone>| {
            format!("{:?}", done.recv_timeout(std::time::Duration::from_secs(10)).unwrap())
        };
        sync_started.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(next(&done), "Written { through: Lsn(100) }", "reported before the fsync");
        send(append(0, 200, 2));
        assert_eq!(next(&done), "Written { through: Lsn(200) }", "not held up by the fsync");
        send(StorageRequest::CreateSegment { base_lsn: Lsn(200), header: header(Lsn(200)) });
        send(append(200, 300, 3));
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(done.try_recv().is_err(), "the new segment waits for the sync in flight");
        drop(held);
        assert_eq!(next(&done), "Synced { through: Lsn(100) }");
        assert_eq!(next(&done), "Written { through: Lsn(300) }");
        drop(requests);
        thread.join().unwrap();
        assert_eq!(segment_bytes(dir.path(), 0).len(), SEGMENT_HEADER_LEN + 200);
    }
}
