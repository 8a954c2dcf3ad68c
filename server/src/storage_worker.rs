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
use std::sync::mpsc;

use chute_core::storage::io::{StorageDone, StorageRequest};

/// The file name of the segment starting at `base_lsn`; names sort in log order.
pub fn segment_file_name(base_lsn: u64) -> String {
    format!("{base_lsn:020}.log")
}

pub struct StorageWorker {
    dir: PathBuf,
    files: BTreeMap<u64, File>,
    /// Segments written since the last sync.
    dirty: BTreeSet<u64>,
    /// A segment was created or deleted since the last sync: the directory needs one too.
    dir_dirty: bool,
}

impl StorageWorker {
    pub fn new(dir: &Path) -> StorageWorker {
        StorageWorker {
            dir: dir.to_path_buf(),
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
                self.files.insert(base_lsn, file);
                self.dirty.insert(base_lsn);
                self.dir_dirty = true;
                Ok(None)
            }
            StorageRequest::Append { base_lsn, end_lsn, bytes } => {
                self.file(base_lsn)?.write_all(&bytes)?;
                self.dirty.insert(base_lsn);
                Ok(Some(StorageDone::Written { through: end_lsn }))
            }
            StorageRequest::Sync { through } => {
                self.sync_dirty()?;
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
