//! The payload reader: a thread of its own that serves the broker's `Read` requests (payloads
//! of queued messages that left memory, docs/STORAGE.md §17) with `pread`, apart from the
//! storage worker, so that a read never waits behind an fsync and an fsync never waits behind
//! a read.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::{Bytes, BytesMut};
use chute_core::ids::Lsn;
use chute_core::storage::failure::OsError;
use chute_core::storage::format::segment_file_name;
use chute_core::storage::io::{StorageDone, StorageRequest};

/// Segment files kept open between reads. A deleted segment's open file still reads (the
/// broker never reads a segment it deleted, but a stale read may be in flight), and the cap
/// keeps a reader that walked many segments from holding their space on disk for long.
const OPEN_FILES_MAX: usize = 16;

/// Where the event loop sends storage requests: reads to the payload reader, everything else,
/// in order, to the storage worker.
#[derive(Clone, Debug)]
pub struct StorageSender {
    pub worker: mpsc::Sender<StorageRequest>,
    pub reader: mpsc::Sender<StorageRequest>,
}

impl StorageSender {
    /// Hands `request` to the thread that serves it. Fails only when that thread has stopped
    /// (the worker after a failure, which halts the broker anyway).
    pub fn send(&self, request: StorageRequest) -> Result<(), mpsc::SendError<StorageRequest>> {
        match request {
            StorageRequest::Read { .. } => self.reader.send(request),
            request => self.worker.send(request),
        }
    }
}

pub struct PayloadReader {
    dir: PathBuf,
    files: BTreeMap<Lsn, File>,
}

impl PayloadReader {
    pub fn new(dir: &Path) -> PayloadReader {
        PayloadReader { dir: dir.to_path_buf(), files: BTreeMap::new() }
    }

    /// Runs on its own thread until the broker hangs up.
    pub fn spawn(
        mut self,
        requests: mpsc::Receiver<StorageRequest>,
        mut report: impl FnMut(StorageDone) + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name("chute-reads".into()).spawn(move || {
            while let Ok(request) = requests.recv() {
                let StorageRequest::Read { id, base_lsn, offset, len } = request else {
                    continue;
                };
                let result = self.read(base_lsn, offset, len).map_err(|e| OsError::from(&e));
                report(StorageDone::Read { id, result });
            }
        })
    }

    /// `len` bytes at `offset` of the segment, or fewer where the file ends sooner.
    fn read(&mut self, base_lsn: Lsn, offset: u64, len: u32) -> std::io::Result<Bytes> {
        let file = self.file(base_lsn)?;
        let mut buffer = BytesMut::zeroed(len as usize);
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read_at(&mut buffer[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        buffer.truncate(filled);
        Ok(buffer.freeze())
    }

    fn file(&mut self, base_lsn: Lsn) -> std::io::Result<&File> {
        if !self.files.contains_key(&base_lsn) {
            if self.files.len() >= OPEN_FILES_MAX {
                self.files.pop_first();
            }
            let file = File::open(self.dir.join(segment_file_name(base_lsn)))?;
            self.files.insert(base_lsn, file);
        }
        Ok(&self.files[&base_lsn])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chute_core::storage::io::ReadId;

    /// A read returns the bytes at its offset, fewer where the file ends, and the OS's error
    /// for a segment that is not there; each completion names its read.
    #[test]
    fn reads_bytes_at_an_offset_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(segment_file_name(Lsn(0))), b"0123456789").unwrap();
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let reader = PayloadReader::new(dir.path()).spawn(rx, move |d| done_tx.send(d).unwrap());
        let read = |id, base_lsn, offset, len| StorageRequest::Read {
            id: ReadId(id),
            base_lsn: Lsn(base_lsn),
            offset,
            len,
        };
        tx.send(read(1, 0, 2, 3)).unwrap();
        tx.send(read(2, 0, 8, 5)).unwrap();
        tx.send(read(3, 99, 0, 1)).unwrap();
        drop(tx);
        reader.unwrap().join().unwrap();
        let done: Vec<StorageDone> = done_rx.iter().collect();
        assert_eq!(
            done[0],
            StorageDone::Read { id: ReadId(1), result: Ok(Bytes::from_static(b"234")) }
        );
        assert_eq!(
            done[1],
            StorageDone::Read { id: ReadId(2), result: Ok(Bytes::from_static(b"89")) }
        );
        assert!(
            matches!(&done[2], StorageDone::Read { id: ReadId(3), result: Err(e) } if e.kind == std::io::ErrorKind::NotFound)
        );
    }
}
