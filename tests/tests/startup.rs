//! Server startup: clear errors for bad addresses and busy ports, a log that is written
//! before anyone is served, and a clean stop that leaves the next start nothing to cut.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chute_core::storage::format::scan_segment;
use chute_tests::{binary_path, newest_segment, Server, ServerBinary};

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

/// `chuted --tokio-threads N` (or `CHUTE_TOKIO_THREADS`) is a flag like the server's others:
/// listed in `--help`, checked by clap (a bad value exits 2 with one line naming the flag),
/// and used: a server with two threads serves. `chuted-smol` has no such flag.
#[test]
fn tokio_threads_is_a_checked_flag() {
    let chuted = binary_path("chuted");
    let help = Command::new(&chuted).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--tokio-threads <N>") && help.contains("CHUTE_TOKIO_THREADS"), "{help}");

    let by_flag = |value: &str| Command::new(&chuted).args(["--tokio-threads", value]).output();
    let by_env = Command::new(&chuted).env("CHUTE_TOKIO_THREADS", "0").output();
    for output in [by_flag("0"), by_flag("x"), by_env] {
        let output = output.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("chuted: error: invalid value")
                && stderr.contains("'--tokio-threads <N>'"),
            "{stderr}"
        );
    }

    let server = Server::start_with_args(ServerBinary::Tokio, &["--tokio-threads", "2"]);
    let connection = futures::executor::block_on(chute_client::Connection::connect(&server.url()));
    assert!(connection.is_ok(), "{:?}", connection.err());
    assert!(server.stop().success());

    let smol = Command::new(binary_path("chuted-smol")).args(["--tokio-threads", "2"]).output();
    assert_eq!(smol.unwrap().status.code(), Some(2));
}

/// The whole records in the newest segment (its preallocated zeros, if any, are a torn tail to
/// the scan and hold none).
fn newest_segment_records(data_dir: &Path) -> usize {
    let bytes = std::fs::read(newest_segment(data_dir)).expect("read the newest segment");
    scan_segment(&Bytes::from(bytes), true).expect("a segment that scans").records.len()
}

/// The server writes and syncs its startup checkpoint before it says it listens
/// (docs/STORAGE.md §10.1): by the time the listening line is printed, a new log's first
/// segment holds its checkpoint, and a restarted log's newest segment a fresh one.
fn the_checkpoint_is_on_disk_before_the_listening_line(binary: ServerBinary) {
    let scratch = tempfile::tempdir().expect("temp dir");
    let data_dir = scratch.path().join("data");

    let server = Server::start_in(binary, &data_dir, &[]);
    let new_log = newest_segment_records(&data_dir);
    assert!(new_log >= 1, "a new log's checkpoint is not on disk:\n{}", server.log());
    assert!(server.stop().success());

    let stopped = newest_segment_records(&data_dir);
    let server = Server::start_in(binary, &data_dir, &[]);
    let restarted = newest_segment_records(&data_dir);
    assert!(
        restarted > stopped,
        "no fresh checkpoint on disk after a restart ({stopped} records before, {restarted} \
         after):\n{}",
        server.log()
    );
    assert!(server.stop().success());
}

#[test]
fn the_checkpoint_is_on_disk_before_the_listening_line_tokio() {
    the_checkpoint_is_on_disk_before_the_listening_line(ServerBinary::Tokio);
}

#[test]
fn the_checkpoint_is_on_disk_before_the_listening_line_smol() {
    the_checkpoint_is_on_disk_before_the_listening_line(ServerBinary::Smol);
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

/// A file the server cannot open for writing, for as long as this lives. `chmod 0444` is
/// enough for an ordinary user, but root ignores file modes: as root the file gets the
/// immutable attribute (`chattr +i`, ext4 and most local file systems), which stops root too.
/// Undone on drop, so that the directory can be removed.
struct Unwritable {
    path: PathBuf,
    immutable: bool,
}

impl Unwritable {
    fn make(path: &Path) -> Result<Unwritable, String> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // The server made the file, as the user the tests run as.
        let as_root = std::fs::metadata(path).map_err(|e| e.to_string())?.uid() == 0;
        if as_root {
            let output = Command::new("chattr").arg("+i").arg(path).output();
            match output {
                Ok(output) if output.status.success() => {}
                Ok(output) => return Err(String::from_utf8_lossy(&output.stderr).into_owned()),
                Err(error) => return Err(format!("cannot run chattr: {error}")),
            }
        } else {
            let read_only = std::fs::Permissions::from_mode(0o444);
            std::fs::set_permissions(path, read_only).map_err(|e| e.to_string())?;
        }
        Ok(Unwritable { path: path.to_path_buf(), immutable: as_root })
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if self.immutable {
            let _ = Command::new("chattr").arg("-i").arg(&self.path).status();
        }
    }
}

/// A log that cannot be written stops the server as it starts, with one line naming the data
/// directory and the error, before it ever says it listens; not ten minutes later at its first
/// client. (The newest segment is made unwritable; appending the startup checkpoint to it is
/// the first write.)
fn an_unwritable_log_stops_the_server_at_start(binary: ServerBinary) {
    let scratch = tempfile::tempdir().expect("temp dir");
    let data_dir = scratch.path().join("data");
    assert!(Server::start_in(binary, &data_dir, &[]).stop().success());
    let newest = newest_segment(&data_dir);
    let _unwritable = match Unwritable::make(&newest) {
        Ok(unwritable) => unwritable,
        Err(why) => {
            println!(
                "SKIPPED {}: cannot make {} unwritable: {why}",
                binary.name(),
                newest.display()
            );
            return;
        }
    };

    let mut child = Command::new(binary_path(binary.name()))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir"])
        .arg(&data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let status = wait_or_kill(&mut child, Duration::from_secs(20));
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read stdout");
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");

    let status = status
        .unwrap_or_else(|| panic!("the server did not stop; stdout:\n{stdout}\nstderr:\n{stderr}"));
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stdout.contains("listening on"), "it said it listens:\n{stdout}");
    let file = newest.file_name().unwrap().to_string_lossy().into_owned();
    let prefix = format!("{}: cannot write to the log in {}: ", binary.name(), data_dir.display());
    let line = stderr.lines().find(|line| line.starts_with(&prefix));
    let line = line.unwrap_or_else(|| panic!("no line starting {prefix:?}:\n{stderr}"));
    assert!(line.contains(&file) && line.contains("(os error"), "{line}");
}

#[test]
fn an_unwritable_log_stops_the_server_at_start_tokio() {
    an_unwritable_log_stops_the_server_at_start(ServerBinary::Tokio);
}

#[test]
fn an_unwritable_log_stops_the_server_at_start_smol() {
    an_unwritable_log_stops_the_server_at_start(ServerBinary::Smol);
}

/// Waits for `child` to exit; kills it and returns `None` if it is still running after
/// `timeout`.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
