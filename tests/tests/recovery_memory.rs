//! Recovery holds one segment of the log in memory at a time, not the whole log: a restart's
//! peak resident memory is the recovered messages plus one segment (docs/STORAGE.md §14).

use chute_tests::{chute, for_both_servers, segment_files, stderr, Server, ServerBinary};

/// 12,000 messages of 4 KiB: 48 MiB of payload, all of it still queued at the restart.
const MESSAGES: &str = "12000";
const SIZE: &str = "4096";
/// Segments of 1 MiB, so the log is about fifty of them.
const SEGMENT_BYTES: &str = "1048576";

fn a_restart_holds_one_segment_at_a_time(binary: ServerBinary) {
    let data = tempfile::tempdir().expect("temp dir");
    let args = ["--segment-bytes-max", SEGMENT_BYTES];
    let server = Server::start_in(binary, data.path(), &args);
    let declared = chute(&server, &["queue", "declare", "backlog"], None);
    assert!(declared.status.success(), "{}", stderr(&declared));
    let published =
        chute(&server, &["publish", "backlog", "--count", MESSAGES, "--size", SIZE], None);
    assert!(published.status.success(), "{}", stderr(&published));
    server.stop();
    let log_bytes: u64 = segment_files(data.path())
        .iter()
        .map(|path| std::fs::metadata(path).expect("segment").len())
        .sum();
    assert!(log_bytes > 48_000_000, "the log holds the backlog: {log_bytes} bytes");

    let server = Server::start_in(binary, data.path(), &args);
    // The recovered messages (about the log's size) and the server itself, but not the log a
    // second time: reading every segment at once peaked at about twice the log (debug build,
    // log of 49.6 MB: 117 MB read at once, 68 MB one segment at a time).
    let peak = server.memory_bytes("VmHWM");
    assert!(
        peak < log_bytes * 3 / 2,
        "recovery peaked at {peak} bytes of resident memory for a log of {log_bytes}"
    );
    let health = chute(&server, &["queue", "list"], None);
    assert!(health.status.success(), "{}", stderr(&health));
    server.stop();
}

for_both_servers!(a_restart_holds_one_segment_at_a_time);
