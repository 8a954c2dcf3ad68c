//! The payload reader: a thread of its own that serves the broker's `Read` requests (payloads
//! of queued messages that left memory, docs/STORAGE.md §17) with `pread`, apart from the
//! storage worker, so that a read never waits behind an fsync and an fsync never waits behind
//! a read.
//!
//! On Linux it also tells the kernel how it reads (`posix_fadvise`, docs/STORAGE.md §17.2):
//! a segment is read forward (`SEQUENTIAL`), and what was read from a segment the log has
//! moved past leaves the page cache (`DONTNEED`), so that draining a cold backlog does not
//! push the segment being written out of it.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::{Bytes, BytesMut};
use chute_core::ids::Lsn;
use chute_core::storage::failure::OsError;
use chute_core::storage::format::{segment_file_name, SEGMENT_HEADER_LEN};
use chute_core::storage::io::{StorageDone, StorageRequest};

/// Segment files kept open between reads. A deleted segment's open file still reads (the
/// broker never reads a segment it deleted, but a stale read may be in flight), and the cap
/// keeps a reader that walked many segments from holding their space on disk for long.
const OPEN_FILES_MAX: usize = 16;

/// The largest folio the page cache builds from a file (a PMD, 2 MiB on x86-64 with 4 KiB
/// pages): a range dropped from the page cache loses only the folios wholly inside it.
const FOLIO_BYTES_MAX: u64 = 2 << 20;

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
    files: BTreeMap<Lsn, Segment>,
}

/// An open segment file.
struct Segment {
    file: File,
    /// A newer segment follows it: the log appends no more to it, so its pages are read at
    /// most once more each (a redelivery aside), and what was read can leave the page cache.
    /// Once true, for good; until then checked after each read.
    closed: bool,
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
        let file = &self.segment(base_lsn)?.file;
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
        self.release(base_lsn, offset, filled as u64);
        Ok(buffer.freeze())
    }

    fn segment(&mut self, base_lsn: Lsn) -> std::io::Result<&Segment> {
        if !self.files.contains_key(&base_lsn) {
            if self.files.len() >= OPEN_FILES_MAX {
                self.files.pop_first();
            }
            let file = File::open(self.dir.join(segment_file_name(base_lsn)))?;
            // Reads of a segment go forward through it: the broker reads a queue's evicted
            // payloads in delivery order, up to 1 MiB at a time. SEQUENTIAL doubles the
            // kernel's readahead for this file, so the next read is more often already on its
            // way. A redelivery's read of one record lands anywhere, and costs at most a
            // larger readahead window than it needed.
            advise(&file, 0, 0, Advice::Sequential);
            self.files.insert(base_lsn, Segment { file, closed: false });
        }
        Ok(&self.files[&base_lsn])
    }

    /// After a read of `len` bytes at `offset`: drops them from the page cache if the segment
    /// is closed. They were read to be delivered, and a message is read back at most once
    /// unless it is redelivered; left cached, a drain of a cold backlog would fill the page
    /// cache with pages nobody reads again and push out the newest segment's, which consumers
    /// just behind the payload cache read back. The newest segment is left alone: its pages
    /// are the hot log, and the other queues' records that lie between the payloads read are
    /// likely to be read soon. The price: another queue's records in the range dropped, read
    /// later from the same old segment, come from the disk; and a redelivered message's too.
    ///
    /// The kernel drops only the folios that lie wholly inside the range, and a sequential
    /// read builds folios of up to 2 MiB, so the bytes of a 1 MiB read would mostly stay. The
    /// range therefore starts at the 2 MiB boundary at or below `offset`: that covers the folio
    /// the read before ended in (the folio this one ends in goes with the next read). It does
    /// not reach past the read, where the readahead for the next one lies.
    fn release(&mut self, base_lsn: Lsn, offset: u64, len: u64) {
        let Some(segment) = self.files.get_mut(&base_lsn) else { return };
        if !segment.closed {
            segment.closed = has_successor(&self.dir, base_lsn, &segment.file);
        }
        if segment.closed && len > 0 {
            let start = offset - offset % FOLIO_BYTES_MAX;
            advise(&segment.file, start, offset + len - start, Advice::DontNeed);
        }
    }
}

/// Whether a newer segment follows the segment `base_lsn`. Segments cover consecutive LSNs
/// and one is cut to its records before the next is started (docs/STORAGE.md §3, §7.2), so
/// the next one's base is this one's base plus its length less its header. The newest segment
/// is longer than its records (zeros preallocated ahead) and has no file after it. An error
/// answers `false`: the bytes read then stay cached, as they would without the hint.
fn has_successor(dir: &Path, base_lsn: Lsn, file: &File) -> bool {
    let Ok(metadata) = file.metadata() else { return false };
    let Some(records) = metadata.len().checked_sub(SEGMENT_HEADER_LEN as u64) else {
        return false;
    };
    let Some(next) = base_lsn.0.checked_add(records) else { return false };
    dir.join(segment_file_name(Lsn(next))).exists()
}

#[derive(Clone, Copy, Debug)]
enum Advice {
    Sequential,
    DontNeed,
}

/// `posix_fadvise` on Linux, nothing elsewhere. Advice is a hint: a failure changes only what
/// the page cache holds, never what a read returns, so it is ignored.
fn advise(file: &File, offset: u64, len: u64, advice: Advice) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return;
        };
        let advice = match advice {
            Advice::Sequential => libc::POSIX_FADV_SEQUENTIAL,
            Advice::DontNeed => libc::POSIX_FADV_DONTNEED,
        };
        // SAFETY: posix_fadvise touches no memory of ours, and the descriptor is open for as
        // long as `file` is borrowed.
        let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, advice) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len, advice);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chute_core::storage::format::segment_header;
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

    /// A segment is closed once the segment that starts where its records end exists; the
    /// newest (zeros preallocated past its records, nothing after it) is not.
    #[test]
    fn a_segment_is_closed_once_the_next_one_exists() {
        let dir = tempfile::tempdir().unwrap();
        let segment = |base: u64, records: usize, zeros: usize| {
            let mut bytes = segment_header(Lsn(base)).to_vec();
            bytes.resize(SEGMENT_HEADER_LEN + records + zeros, 7);
            bytes[SEGMENT_HEADER_LEN + records..].fill(0);
            let path = dir.path().join(segment_file_name(Lsn(base)));
            std::fs::write(&path, bytes).unwrap();
            File::open(path).unwrap()
        };
        let first = segment(1000, 50, 0);
        let newest = segment(1050, 30, 4096);
        assert!(has_successor(dir.path(), Lsn(1000), &first));
        assert!(!has_successor(dir.path(), Lsn(1050), &newest));
    }

    /// Reads of a closed segment (whose bytes the reader then drops from the page cache) answer
    /// the same bytes as any other; the reader learns that the segment is closed from the file
    /// that follows it, created after the reader first read the segment.
    #[test]
    fn reads_of_a_closed_segment_answer_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let write = |base: u64, records: &[u8]| {
            let mut bytes = segment_header(Lsn(base)).to_vec();
            bytes.extend_from_slice(records);
            std::fs::write(dir.path().join(segment_file_name(Lsn(base))), bytes).unwrap();
        };
        write(0, b"0123456789");
        let mut reader = PayloadReader::new(dir.path());
        let at = |offset: usize| (SEGMENT_HEADER_LEN + offset) as u64;
        assert_eq!(&reader.read(Lsn(0), at(2), 3).unwrap()[..], b"234");
        assert!(!reader.files[&Lsn(0)].closed, "the newest segment");
        write(10, b"abc");
        assert_eq!(&reader.read(Lsn(0), at(5), 10).unwrap()[..], b"56789");
        assert!(reader.files[&Lsn(0)].closed, "a segment follows it now");
        assert_eq!(&reader.read(Lsn(0), at(0), 4).unwrap()[..], b"0123", "read again");
        assert_eq!(&reader.read(Lsn(10), at(1), 2).unwrap()[..], b"bc");
        assert!(!reader.files[&Lsn(10)].closed);
    }
}
