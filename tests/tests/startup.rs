//! Server startup: clear errors for bad addresses and busy ports, and a clean stop that leaves
//! the next start nothing to cut.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use chute_core::storage::format::{parse_segment_file_name, scan_segment};
use chute_tests::{binary_path, Server, ServerBinary};

fn port_in_use_is_reported(binary: ServerBinary) {
    let first = Server::start(binary);
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(binary_path(binary.name()))
        .args(["--listen", &first.addr.to_string(), "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains(&format!("cannot listen on {}", first.addr)), "{message}");
    assert!(message.contains("in use"), "{message}");
}

#[test]
fn port_in_use_is_reported_tokio() {
    port_in_use_is_reported(ServerBinary::Tokio);
}

#[test]
fn port_in_use_is_reported_smol() {
    port_in_use_is_reported(ServerBinary::Smol);
}

#[test]
fn bad_listen_address_is_refused() {
    for binary in ServerBinary::ALL {
        let output = Command::new(binary_path(binary.name()))
            .args(["--listen", "not-an-address"])
            .output()
            .unwrap();
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("invalid socket address"));
    }
}

/// The newest segment file in `data_dir` (by name, that is by base LSN).
fn newest_segment(data_dir: &Path) -> PathBuf {
    let newest = std::fs::read_dir(data_dir)
        .expect("data directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| Some((parse_segment_file_name(&name)?, name)))
        .max()
        .map(|(_, name)| name);
    data_dir.join(newest.expect("a segment file"))
}

/// A graceful stop leaves the newest segment ending at its last record: the storage worker
/// cuts the zeros it keeps ahead of the records before the process exits, so the next start
/// has nothing to cut.
fn a_graceful_stop_leaves_no_preallocated_zeros(binary: ServerBinary) {
    let scratch = tempfile::tempdir().expect("temp dir");
    let data_dir = scratch.path().join("data");
    let server = Server::start_in(binary, &data_dir, &[]);
    assert!(server.stop().success());
    let bytes = std::fs::read(newest_segment(&data_dir)).expect("read the newest segment");
    let len = bytes.len();
    let scan = scan_segment(&Bytes::from(bytes), true).expect("a segment that scans");
    assert_eq!(scan.torn_tail, None, "{len} bytes, {} of them records", scan.valid_len);
}

#[test]
fn a_graceful_stop_leaves_no_preallocated_zeros_tokio() {
    a_graceful_stop_leaves_no_preallocated_zeros(ServerBinary::Tokio);
}

#[test]
fn a_graceful_stop_leaves_no_preallocated_zeros_smol() {
    a_graceful_stop_leaves_no_preallocated_zeros(ServerBinary::Smol);
}
