//! The storage worker: a thread that owns the segment files. It carries out the broker's
//! storage requests in order, batches what is queued, and reports progress back.
//!
//! At most one sync is ever requested at a time, and it covers every append before it: the
//! broker's group commit. A failed write or sync is reported once and the worker stops: after
//! a failed fsync the page cache cannot be trusted (the broker halts; recovery reads the disk).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use chute_core::storage::io::{StorageDone, StorageRequest};
use prometheus_client::metrics::histogram::Histogram;

/// The file name of the segment starting at `base_lsn`; names sort in log order.
pub fn segment_file_name(base_lsn: u64) -> String {
    format!("{base_lsn:020}.log")
}

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
        }
    }
}

impl StorageMetrics {
    fn wrote(&self, bytes: usize) {
        self.bytes_written.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

pub struct StorageWorker {
    dir: PathBuf,
    metrics: Arc<StorageMetrics>,
    files: BTreeMap<u64, File>,
    /// Segments written since the last sync.
    dirty: BTreeSet<u64>,
    /// A segment was created or deleted since the last sync: the directory needs one too.
    dir_dirty: bool,
}

impl StorageWorker {
    pub fn new(dir: &Path, metrics: Arc<StorageMetrics>) -> StorageWorker {
        StorageWorker {
            dir: dir.to_path_buf(),
            metrics,
            files: BTreeMap::new(),
            dirty: BTreeSet::new(),
            dir_dirty: false,
        }
    }

    /// Runs on its own thread until the broker hangs up or a request fails.
    pub fn spawn(
        self,
        requests: mpsc::Receiver<StorageRequest>,
        report: impl FnMut(StorageDone) + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("chute-storage".into())
            .spawn(move || self.run(requests, report))
    }

    fn run(
        mut self,
        requests: mpsc::Receiver<StorageRequest>,
        mut report: impl FnMut(StorageDone),
    ) {
        while let Ok(first) = requests.recv() {
            // Take what is already queued too: one report for a run of appends.
            let mut written = None;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                let label = describe(&request);
                match self.carry_out(request) {
                    Ok(Some(StorageDone::Written { through })) => written = Some(through),
                    Ok(Some(synced)) => {
                        if let Some(through) = written.take() {
                            report(StorageDone::Written { through });
                        }
                        report(synced);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(request = %label, %error, "storage failed");
                        report(StorageDone::Failed { request: label, error: error.to_string() });
                        return;
                    }
                }
                next = requests.try_recv().ok();
            }
            if let Some(through) = written {
                report(StorageDone::Written { through });
            }
        }
    }

    fn carry_out(&mut self, request: StorageRequest) -> std::io::Result<Option<StorageDone>> {
        match request {
            StorageRequest::CreateSegment { base_lsn, header } => {
                // The segments before it are made durable first: recovery allows a torn tail
                // only in the newest segment, so no older one may end in unsynced bytes.
                self.sync_dirty()?;
                let path = self.dir.join(segment_file_name(base_lsn));
                let mut file = OpenOptions::new().create_new(true).append(true).open(&path)?;
                file.write_all(&header)?;
                self.metrics.wrote(header.len());
                self.files.insert(base_lsn, file);
                self.dirty.insert(base_lsn);
                self.dir_dirty = true;
                Ok(None)
            }
            StorageRequest::Append { base_lsn, end_lsn, bytes } => {
                self.file(base_lsn)?.write_all(&bytes)?;
                self.metrics.appends.fetch_add(1, Ordering::Relaxed);
                self.metrics.wrote(bytes.len());
                self.dirty.insert(base_lsn);
                Ok(Some(StorageDone::Written { through: end_lsn }))
            }
            StorageRequest::Sync { through } => {
                let started = Instant::now();
                self.sync_dirty()?;
                self.metrics.sync_seconds.observe(started.elapsed().as_secs_f64());
                self.metrics.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(Some(StorageDone::Synced { through }))
            }
            StorageRequest::DeleteSegment { base_lsn } => {
                self.files.remove(&base_lsn);
                self.dirty.remove(&base_lsn);
                std::fs::remove_file(self.dir.join(segment_file_name(base_lsn)))?;
                self.dir_dirty = true;
                Ok(None)
            }
        }
    }

    /// fdatasync every segment written since the last sync, and the directory if its entries
    /// changed.
    fn sync_dirty(&mut self) -> std::io::Result<()> {
        for base in std::mem::take(&mut self.dirty) {
            if let Some(file) = self.files.get(&base) {
                file.sync_data()?;
            }
        }
        if std::mem::take(&mut self.dir_dirty) {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// The open segment, opening an existing file (a segment recovery resumed) on first use.
    fn file(&mut self, base_lsn: u64) -> std::io::Result<&mut File> {
        if !self.files.contains_key(&base_lsn) {
            let path = self.dir.join(segment_file_name(base_lsn));
            let file = OpenOptions::new().append(true).open(path)?;
            self.files.insert(base_lsn, file);
        }
        Ok(self.files.get_mut(&base_lsn).expect("just inserted"))
    }
}

fn describe(request: &StorageRequest) -> String {
    match request {
        StorageRequest::CreateSegment { base_lsn, .. } => {
            format!("create segment {}", segment_file_name(*base_lsn))
        }
        StorageRequest::Append { base_lsn, bytes, .. } => {
            format!("write {} bytes to {}", bytes.len(), segment_file_name(*base_lsn))
        }
        StorageRequest::Sync { .. } => "fdatasync".to_string(),
        StorageRequest::DeleteSegment { base_lsn } => {
            format!("delete segment {}", segment_file_name(*base_lsn))
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// Appends, bytes and syncs are counted as the worker carries them out, and every sync is
    /// timed.
    #[test]
    fn metrics_count_what_was_carried_out() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(StorageMetrics::default());
        let (requests, requests_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let worker = StorageWorker::new(dir.path(), metrics.clone())
            .spawn(requests_rx, move |report| done_tx.send(report).unwrap())
            .unwrap();
        let header = Bytes::from_static(b"HEAD");
        requests.send(StorageRequest::CreateSegment { base_lsn: 0, header }).unwrap();
        for end_lsn in [3, 6] {
            let bytes = Bytes::from_static(b"abc");
            requests.send(StorageRequest::Append { base_lsn: 0, end_lsn, bytes }).unwrap();
        }
        requests.send(StorageRequest::Sync { through: 6 }).unwrap();
        while !matches!(done.recv().unwrap(), StorageDone::Synced { through: 6 }) {}
        drop(requests);
        worker.join().unwrap();

        assert_eq!(metrics.appends.load(Ordering::Relaxed), 2);
        assert_eq!(metrics.bytes_written.load(Ordering::Relaxed), 4 + 3 + 3);
        assert_eq!(metrics.syncs.load(Ordering::Relaxed), 1);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("sync_seconds", "", metrics.sync_seconds.clone());
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("sync_seconds_count 1\n"), "{text}");
    }
}
