//! How a storage request failed: which operation, on what, and what the operating system said.
//! The broker halts on any of them (docs/STORAGE.md §12); the texts are the operator's.

use std::fmt;
use std::io;

use chute_protocol::ErrorCode;

use super::format::segment_file_name;
use super::io::StorageRequest;
use super::manifest::MANIFEST_FILE_NAME;
use crate::ids::Lsn;

/// An operating system error, kept as its kind and its text rather than as an `io::Error`, so
/// that a failure can be cloned and compared (the simulator and the tests do both).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsError {
    pub kind: io::ErrorKind,
    /// The error's own text, e.g. `No space left on device (os error 28)`.
    pub message: String,
}

impl OsError {
    pub fn new(kind: io::ErrorKind, message: impl Into<String>) -> OsError {
        OsError { kind, message: message.into() }
    }
}

impl From<&io::Error> for OsError {
    fn from(error: &io::Error) -> OsError {
        OsError { kind: error.kind(), message: error.to_string() }
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A storage request that failed. One variant per request kind, naming what it was about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageFailure {
    /// Creating the segment file that starts at `base_lsn`, or writing its header.
    #[error("create segment {} failed: {error}", segment_file_name(*base_lsn))]
    CreateSegment { base_lsn: Lsn, error: OsError },
    /// Writing `bytes` bytes of records that end at `end_lsn` to the segment at `base_lsn`.
    #[error("write {bytes} bytes to {} failed: {error}", segment_file_name(*base_lsn))]
    Write { base_lsn: Lsn, end_lsn: Lsn, bytes: u64, error: OsError },
    /// The fdatasync of the segments (or of the directory) meant to make the log durable
    /// through `through`.
    #[error("fdatasync failed: {error}")]
    Sync { through: Lsn, error: OsError },
    /// Deleting the segment file that starts at `base_lsn`.
    #[error("delete segment {} failed: {error}", segment_file_name(*base_lsn))]
    DeleteSegment { base_lsn: Lsn, error: OsError },
    /// Writing or syncing the manifest (or making the segments it names durable first).
    #[error("write the manifest ({MANIFEST_FILE_NAME}) failed: {error}")]
    WriteManifest { error: OsError },
    /// Reading back the record at file offset `offset` of the segment at `base_lsn` (a queued
    /// message's payload): the read failed, came back short, or the record there is not the
    /// valid, expected one. The record was synced and confirmed, so this is lost data.
    #[error("read of {} at offset {offset} failed: {error}", segment_file_name(*base_lsn))]
    Read { base_lsn: Lsn, offset: u64, error: OsError },
}

impl StorageFailure {
    /// The failure of `request` with `error`.
    pub fn new(request: &StorageRequest, error: OsError) -> StorageFailure {
        match *request {
            StorageRequest::CreateSegment { base_lsn, .. } => {
                StorageFailure::CreateSegment { base_lsn, error }
            }
            StorageRequest::Append { base_lsn, end_lsn, ref bytes } => {
                StorageFailure::Write { base_lsn, end_lsn, bytes: bytes.len() as u64, error }
            }
            StorageRequest::Sync { through } => StorageFailure::Sync { through, error },
            StorageRequest::DeleteSegment { base_lsn } => {
                StorageFailure::DeleteSegment { base_lsn, error }
            }
            StorageRequest::WriteManifest { .. } => StorageFailure::WriteManifest { error },
            StorageRequest::Read { base_lsn, offset, .. } => {
                StorageFailure::Read { base_lsn, offset, error }
            }
        }
    }

    /// What the operating system said.
    pub fn error(&self) -> &OsError {
        match self {
            StorageFailure::CreateSegment { error, .. }
            | StorageFailure::Write { error, .. }
            | StorageFailure::Sync { error, .. }
            | StorageFailure::DeleteSegment { error, .. }
            | StorageFailure::WriteManifest { error }
            | StorageFailure::Read { error, .. } => error,
        }
    }

    /// The wire code clients are closed with once the broker halted on it.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::STORAGE_FAILED
    }

    /// The line a halted broker gives its clients, its operator and its exit: docs/STORAGE.md
    /// §12's `storage failed, broker halted: <request> failed: <error>`.
    pub fn halt_message(&self) -> String {
        format!("storage failed, broker halted: {self}")
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn eio() -> OsError {
        OsError::from(&io::Error::from_raw_os_error(5))
    }

    fn failure_of(request: StorageRequest) -> StorageFailure {
        StorageFailure::new(&request, eio())
    }

    /// Each request kind names its operation and the file it was about, then the OS's text
    /// (docs/STORAGE.md §12 and §13 quote these lines).
    #[test]
    fn display_names_the_operation_its_file_and_the_os_error() {
        let header = Bytes::from_static(b"h");
        let cases = [
            (
                StorageRequest::CreateSegment { base_lsn: Lsn(64), header },
                "create segment 00000000000000000064.log failed: ",
            ),
            (
                StorageRequest::Append {
                    base_lsn: Lsn(64),
                    end_lsn: Lsn(75),
                    bytes: Bytes::from_static(b"eleven byte"),
                },
                "write 11 bytes to 00000000000000000064.log failed: ",
            ),
            (StorageRequest::Sync { through: Lsn(9) }, "fdatasync failed: "),
            (
                StorageRequest::DeleteSegment { base_lsn: Lsn(0) },
                "delete segment 00000000000000000000.log failed: ",
            ),
            (
                StorageRequest::WriteManifest { slot_offset: 0, slot: Bytes::new() },
                "write the manifest (manifest) failed: ",
            ),
        ];
        for (request, prefix) in cases {
            let text = failure_of(request).to_string();
            assert!(text.starts_with(prefix), "{text}");
            assert!(text.ends_with("(os error 5)"), "{text}");
        }
    }

    /// The request's position and size are kept, not only the text.
    #[test]
    fn a_failed_append_keeps_where_it_was_going() {
        let request = StorageRequest::Append {
            base_lsn: Lsn(64),
            end_lsn: Lsn(75),
            bytes: Bytes::from_static(b"eleven byte"),
        };
        let expected =
            StorageFailure::Write { base_lsn: Lsn(64), end_lsn: Lsn(75), bytes: 11, error: eio() };
        assert_eq!(failure_of(request), expected);
    }

    /// A full disk keeps its kind, so a driver can tell it from a broken one.
    #[test]
    fn the_os_error_keeps_its_kind() {
        let full = io::Error::from_raw_os_error(28);
        let failure =
            StorageFailure::new(&StorageRequest::Sync { through: Lsn(1) }, (&full).into());
        assert_eq!(failure.error().kind, io::ErrorKind::StorageFull);
        assert!(failure.to_string().contains("No space left on device"), "{failure}");
    }

    #[test]
    fn halting_tells_clients_storage_failed() {
        let failure = failure_of(StorageRequest::Sync { through: Lsn(1) });
        assert_eq!(failure.code(), ErrorCode::STORAGE_FAILED);
        let message = failure.halt_message();
        assert!(message.starts_with("storage failed, broker halted: fdatasync failed: "));
    }
}
