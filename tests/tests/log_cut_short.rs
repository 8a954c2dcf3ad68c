//! A log that lost its newest segment (deleted, or emptied) is refused at start with the file
//! named, instead of starting with confirmed messages silently gone; `--accept-data-loss`
//! starts once with what is left.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chute_tests::{
    binary_path, chute, newest_segment, segment_files, stdout, Server, ServerBinary,
};

/// A stopped server whose queue `jobs` holds 2,000 confirmed messages over several segments.
fn log_with_confirmed_messages(binary: ServerBinary, data_dir: &Path) {
    let server = Server::start_in(binary, data_dir, &["--segment-bytes-max", "65536"]);
    assert!(chute(&server, &["queue", "declare", "jobs"], None).status.success());
    let published = chute(&server, &["publish", "jobs", "--count", "2000", "--size", "200"], None);
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    assert!(server.stop().success());
    let segments = segment_files(data_dir).len();
    assert!(segments >= 3, "{segments} segments");
}

/// Starts the server on `data_dir` with `extra` flags; returns its exit code (`None` if it was
/// still running after a few seconds, when it was stopped) and what it printed on stderr.
fn start_once(binary: ServerBinary, data_dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(binary_path(binary.name()))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (code, stderr)
}

fn refused_then_accepted(binary: ServerBinary, damage: impl FnOnce(&Path)) {
    let scratch = tempfile::tempdir().expect("temp dir");
    let data_dir = scratch.path().join("data");
    log_with_confirmed_messages(binary, &data_dir);
    let newest = newest_segment(&data_dir);
    damage(&newest);

    let (code, stderr) = start_once(binary, &data_dir, &[]);
    assert_eq!(code, Some(1), "it started on a log cut short:\n{stderr}");
    let file = newest.file_name().unwrap().to_string_lossy().into_owned();
    let line = stderr.lines().find(|l| l.starts_with(binary.name())).unwrap_or_default();
    assert!(
        line.contains("cannot recover the log")
            && line.contains(&file)
            && line.contains("--accept-data-loss"),
        "{stderr}"
    );

    let server = Server::start_in(binary, &data_dir, &["--accept-data-loss"]);
    assert!(server.log().contains("data loss accepted"), "{}", server.log());
    let stats = chute(&server, &["queue", "stats", "jobs", "--json"], None);
    let stats: serde_json::Value = serde_json::from_str(&stdout(&stats)).expect("json");
    let ready = stats["ready"].as_u64().expect("ready");
    assert!(ready < 2000, "{ready} messages: nothing was lost?");
    assert!(server.stop().success());

    // The manifest now names the new end: the next start is a plain one.
    let server = Server::start_in(binary, &data_dir, &[]);
    assert!(server.stop().success());
}

fn deleted_newest_segment(binary: ServerBinary) {
    refused_then_accepted(binary, |newest| std::fs::remove_file(newest).unwrap());
}

fn emptied_newest_segment(binary: ServerBinary) {
    refused_then_accepted(binary, |newest| {
        std::fs::OpenOptions::new().write(true).open(newest).unwrap().set_len(0).unwrap()
    });
}

#[test]
fn a_deleted_newest_segment_is_refused_tokio() {
    deleted_newest_segment(ServerBinary::Tokio);
}

#[test]
fn a_deleted_newest_segment_is_refused_smol() {
    deleted_newest_segment(ServerBinary::Smol);
}

#[test]
fn an_emptied_newest_segment_is_refused_tokio() {
    emptied_newest_segment(ServerBinary::Tokio);
}

#[test]
fn an_emptied_newest_segment_is_refused_smol() {
    emptied_newest_segment(ServerBinary::Smol);
}
