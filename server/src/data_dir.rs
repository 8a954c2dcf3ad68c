//! The data directory: its lock, and reading the log for recovery.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chute_core::storage::format::parse_segment_file_name;
use chute_core::storage::manifest::MANIFEST_FILE_NAME;
use chute_core::storage::recovery::{LogImage, SegmentFile, Truncation};

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

    /// What recovery needs: every segment file, oldest first, read whole, and the manifest.
    pub fn read_log(&self, accept_data_loss: bool) -> Result<LogImage, DataDirError> {
        let io = |source| DataDirError::Io { path: self.path.clone(), source };
        let segments = self.read_segments()?;
        let manifest = match std::fs::read(self.path.join(MANIFEST_FILE_NAME)) {
            Ok(bytes) => Some(Bytes::from(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(io(err)),
        };
        Ok(LogImage { segments, manifest, accept_data_loss })
    }

    /// Every segment file, oldest first, read whole.
    fn read_segments(&self) -> Result<Vec<SegmentFile>, DataDirError> {
        let io = |source| DataDirError::Io { path: self.path.clone(), source };
        let mut names: Vec<String> = std::fs::read_dir(&self.path)
            .map_err(io)?
            .filter_map(|entry| entry.ok().and_then(|e| e.file_name().into_string().ok()))
            .filter(|name| parse_segment_file_name(name).is_some())
            .collect();
        // Zero-padded to one width, so names sort in log order.
        names.sort();
        File::open(&self.path).and_then(|dir| dir.sync_all()).map_err(io)?;
        names
            .into_iter()
            .map(|name| {
                let path = self.path.join(&name);
                let bytes = std::fs::read(&path).map_err(io)?;
                // Recovery treats what it read as durable; after a process crash part of it may
                // still be only in the page cache, so make it so.
                File::open(&path).and_then(|file| file.sync_data()).map_err(io)?;
                Ok(SegmentFile { name, bytes: Bytes::from(bytes) })
            })
            .collect()
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
