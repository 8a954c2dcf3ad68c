//! The data directory: its lock, and reading the log for recovery, one segment at a time.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chute_core::storage::format::parse_segment_file_name;
use chute_core::storage::manifest::MANIFEST_FILE_NAME;
use chute_core::storage::recovery::{SegmentFile, Truncation};

/// Holds the data directory's lock for as long as it lives, so two brokers never share it.
pub struct DataDir {
    pub path: PathBuf,
    _lock: File,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    #[error("cannot use data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("data directory {path} is in use by another chute broker (it holds {path}/LOCK)")]
    Locked { path: PathBuf },
}

impl DataDir {
    /// Creates the directory if needed and takes its lock.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        let io = |source| DataDirError::Io { path: path.to_path_buf(), source };
        std::fs::create_dir_all(path).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("LOCK"))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked { path: path.to_path_buf() })
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
        }
        Ok(DataDir { path: path.to_path_buf(), _lock: lock })
    }

    /// The segment files' names, oldest first, for recovery to read one at a time
    /// ([`read_segment`](DataDir::read_segment)); the directory is synced first, so the
    /// files listed stay listed after a machine crash.
    pub fn segment_names(&self) -> Result<Vec<String>, DataDirError> {
        let io = |source| DataDirError::Io { path: self.path.clone(), source };
        let mut names: Vec<String> = std::fs::read_dir(&self.path)
            .map_err(io)?
            .filter_map(|entry| entry.ok().and_then(|e| e.file_name().into_string().ok()))
            .filter(|name| parse_segment_file_name(name).is_some())
            .collect();
        // Zero-padded to one width, so names sort in log order.
        names.sort();
        File::open(&self.path).and_then(|dir| dir.sync_all()).map_err(io)?;
        Ok(names)
    }

    /// One segment file, read whole, for recovery's `handle_segment`.
    pub fn read_segment(&self, name: &str) -> Result<SegmentFile, DataDirError> {
        let io = |source| DataDirError::Io { path: self.path.clone(), source };
        let path = self.path.join(name);
        let bytes = std::fs::read(&path).map_err(io)?;
        // Recovery treats what it read as durable; after a process crash part of it may still
        // be only in the page cache, so make it so.
        File::open(&path).and_then(|file| file.sync_data()).map_err(io)?;
        Ok(SegmentFile { name: name.to_string(), bytes: Bytes::from(bytes) })
    }

    /// The manifest file's bytes, if there is one (a data directory written before manifests
    /// existed has none).
    pub fn read_manifest(&self) -> Result<Option<Vec<u8>>, DataDirError> {
        match std::fs::read(self.path.join(MANIFEST_FILE_NAME)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DataDirError::Io { path: self.path.clone(), source }),
        }
    }

    /// Cuts a torn tail (or removes a segment with no whole header) and makes it durable.
    pub fn truncate(&self, truncation: &Truncation) -> Result<(), DataDirError> {
        let io = |source| DataDirError::Io { path: self.path.clone(), source };
        let path = self.path.join(&truncation.file);
        if truncation.valid_len == 0 {
            std::fs::remove_file(&path).map_err(io)?;
        } else {
            let file = OpenOptions::new().write(true).open(&path).map_err(io)?;
            file.set_len(truncation.valid_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        File::open(&self.path).and_then(|dir| dir.sync_all()).map_err(io)
    }
}
