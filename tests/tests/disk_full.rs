//! Fail-stop when the disk fills up: the data directory sits on a small tmpfs, a client
//! publishes until a write fails, and the broker must halt rather than confirm what it could
//! not store (with the disk alarm off: the halt is the last line of defence). With the disk
//! alarm on, publishers are blocked before the disk fills and consumers drain through it.
//! Every test runs against both `chuted` (tokio) and `chuted-smol`.
//!
//! Mounting needs root (or CAP_SYS_ADMIN); where `mount` fails the tests say so and pass
//! without checking anything.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chute_client::{
    Confirmation, ConnectOptions, Connection, ErrorCode, PublishError, QueueOptions,
};
use chute_tests::{labelled_payload, take_ready, within, Server, ServerBinary};
use futures::executor::block_on;
use futures::StreamExt;

const TMPFS_SIZE: &str = "2m";
/// Several segments fit on the tmpfs, so the failing write may be an append or the creation
/// of a segment, and recovery reads more than one.
const SEGMENT_BYTES_MAX: &str = "262144";
const QUEUE: &str = "fill";
const PAYLOAD_BYTES: usize = 4096;
/// Far more than fits: 2 MiB hold about 500 of these payloads.
const MESSAGES_MAX: u64 = 10_000;
const PUBLISH_WINDOW: usize = 64;
const TIMEOUT: Duration = Duration::from_secs(60);

/// A client publishes 4 KiB messages with confirms into a 2 MiB data directory until the disk
/// is full. Then:
/// - the client is told `storage-failed` (its connection is closed with that code, and its
///   unconfirmed publishes fail with it);
/// - once one publish failed, none after it was confirmed;
/// - the server exits by itself, with a non-zero status, and its log says the disk is full;
/// - started again on a copy of the data directory with room to spare, the server recovers
///   every confirmed message, nothing that was never published, nothing twice, and takes new
///   publishes.
fn full_disk_halts_the_broker_and_keeps_every_confirmed_message(binary: ServerBinary) {
    let tmpfs = match Tmpfs::mount(TMPFS_SIZE) {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            println!("SKIPPED {}: cannot mount a tmpfs ({why}); run as root", binary.name());
            return;
        }
    };
    let data_dir = tmpfs.path().join("data");
    // The disk alarm would block the publisher before the disk fills (the test below).
    let args = ["--segment-bytes-max", SEGMENT_BYTES_MAX, "--set", "alarms.disk_free_low_bytes=0"];
    let mut server = Server::start_in(binary, &data_dir, &args);
    let url = server.url();
    let filled = within("publishing until the disk is full", TIMEOUT, move || block_on(fill(&url)));

    assert!(
        filled.failed_at.is_some(),
        "{} messages of {PAYLOAD_BYTES} bytes into a {TMPFS_SIZE} tmpfs, and none failed",
        filled.published.len()
    );
    assert!(!filled.confirmed.is_empty(), "nothing was confirmed before the disk filled up");
    assert_eq!(
        filled.closed_code,
        Some(ErrorCode::STORAGE_FAILED),
        "why the client's connection closed; server log:\n{}",
        server.log()
    );
    for (id, error) in &filled.failures {
        let code = match error {
            PublishError::Unconfirmed { code, .. } | PublishError::Refused { code, .. } => *code,
            other => panic!("{id}: {other:?}"),
        };
        assert_eq!(code, ErrorCode::STORAGE_FAILED, "{id}: {error}");
    }
    let status = server.wait(TIMEOUT);
    assert!(!status.success(), "a broker whose disk is full exited with {status:?}");
    let log = server.log();
    assert!(log.contains("storage failed"), "the log does not say why it stopped:\n{log}");
    assert!(log.contains("No space left on device"), "the log does not name the cause:\n{log}");

    // Recovery needs room to cut the torn tail and write its checkpoint: give it a copy.
    let roomy = tempfile::tempdir().expect("temp dir");
    let copy = roomy.path().join("data");
    copy_dir(&data_dir, &copy);
    drop(tmpfs);
    let server = Server::start_in(binary, &copy, &[]);
    let url = server.url();
    let present = within("draining the recovered queue", TIMEOUT, move || block_on(drain(&url)));

    let published: HashSet<&String> = filled.published.iter().collect();
    let mut seen = HashSet::new();
    for id in &present {
        assert!(published.contains(id), "recovered {id}, which was never published");
        assert!(seen.insert(id), "recovered {id} twice");
    }
    let lost: Vec<&String> = filled.confirmed.iter().filter(|id| !seen.contains(id)).collect();
    assert!(lost.is_empty(), "confirmed but not recovered: {lost:?}\n{}", server.log());
    let cut = server.log().contains("cutting a torn write");
    println!(
        "{}: published {}, confirmed {}, failed {} (from {}), recovered {}; torn tail cut: {cut}",
        binary.name(),
        filled.published.len(),
        filled.confirmed.len(),
        filled.failures.len(),
        filled.failed_at.as_deref().unwrap_or("-"),
        present.len(),
    );
    assert!(server.stop().success());
}

#[test]
fn full_disk_halts_the_broker_and_keeps_every_confirmed_message_tokio() {
    full_disk_halts_the_broker_and_keeps_every_confirmed_message(ServerBinary::Tokio);
}

#[test]
fn full_disk_halts_the_broker_and_keeps_every_confirmed_message_smol() {
    full_disk_halts_the_broker_and_keeps_every_confirmed_message(ServerBinary::Smol);
}

/// With the disk alarm on (1 MiB of the 2 MiB tmpfs), a publisher is blocked before the disk
/// fills: its last publishes are held, not refused nor confirmed; the broker does not halt; a
/// consumer drains every confirmed message meanwhile and its acks are written into the
/// headroom; the server stops cleanly.
fn the_disk_alarm_blocks_publishers_before_the_disk_fills(binary: ServerBinary) {
    let tmpfs = match Tmpfs::mount(TMPFS_SIZE) {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            println!("SKIPPED {}: cannot mount a tmpfs ({why}); run as root", binary.name());
            return;
        }
    };
    let args = [
        "--segment-bytes-max",
        SEGMENT_BYTES_MAX,
        "--set",
        "alarms.disk_free_low_bytes=1048576",
        "--set",
        "alarms.check_interval_ms=20",
    ];
    let server = Server::start_in(binary, &tmpfs.path().join("data"), &args);
    let url = server.url();
    let confirmed = within("publishing until blocked", TIMEOUT, move || {
        block_on(async {
            let connection = Connection::connect(&url).await.expect("connect");
            connection.declare_queue(QUEUE, QueueOptions::default()).await.expect("declare");
            let mut events = connection.events();
            let mut confirmed = 0u64;
            for n in 0..MESSAGES_MAX {
                let payload = labelled_payload(&format!("m-{n}"), PAYLOAD_BYTES);
                let confirmation = connection.publish(QUEUE, payload).await.expect("publish");
                let answered = futures::future::select(confirmation, events.next()).await;
                match answered {
                    futures::future::Either::Left((result, _)) => {
                        result.expect("confirmed, never refused");
                        confirmed += 1;
                    }
                    futures::future::Either::Right((event, _)) => {
                        if matches!(event, Some(chute_client::ConnectionEvent::Blocked { .. })) {
                            return (confirmed, connection);
                        }
                    }
                }
            }
            panic!("{MESSAGES_MAX} messages into a {TMPFS_SIZE} tmpfs and never blocked");
        })
    });
    let (confirmed, publisher) = confirmed;
    assert!(confirmed > 0, "blocked before anything was stored");
    let url = server.url();
    let drained = within("draining while blocked", TIMEOUT, move || {
        block_on(async {
            let consumer = Connection::connect(&url).await.expect("a consumer connects");
            take_ready(&consumer, QUEUE, confirmed).await.len() as u64
        })
    });
    assert_eq!(drained, confirmed, "every confirmed message is delivered while blocked");
    let log = server.log();
    assert!(log.contains("disk alarm raised"), "{log}");
    assert!(!log.contains("storage failed"), "the broker halted:\n{log}");
    drop(publisher);
    assert!(server.stop().success(), "the server stops cleanly:\n{log}");
    drop(tmpfs);
}

#[test]
fn the_disk_alarm_blocks_publishers_before_the_disk_fills_tokio() {
    the_disk_alarm_blocks_publishers_before_the_disk_fills(ServerBinary::Tokio);
}

#[test]
fn the_disk_alarm_blocks_publishers_before_the_disk_fills_smol() {
    the_disk_alarm_blocks_publishers_before_the_disk_fills(ServerBinary::Smol);
}

/// What the publishing client saw.
struct Filled {
    /// In publish order.
    published: Vec<String>,
    confirmed: Vec<String>,
    failures: Vec<(String, PublishError)>,
    /// The first publish that failed.
    failed_at: Option<String>,
    closed_code: Option<ErrorCode>,
}

/// Publishes `m-{n}` with confirms until one fails, then collects the answers to the rest.
/// Asserts that the confirmed publishes come before every failed one.
async fn fill(url: &str) -> Filled {
    // A connection that does not reconnect, to see the halt as the server reports it.
    let options = ConnectOptions::without_reconnect();
    let connection = Connection::connect_with(url, options).await.expect("connect");
    connection.declare_queue(QUEUE, QueueOptions::default()).await.expect("declare");
    let mut filled = Filled {
        published: Vec::new(),
        confirmed: Vec::new(),
        failures: Vec::new(),
        failed_at: None,
        closed_code: None,
    };
    let mut pending: std::collections::VecDeque<(String, Confirmation)> = Default::default();
    // A publish the client refused to send (the connection is closed) comes after every
    // pending one.
    let mut not_sent = None;
    for n in 0..MESSAGES_MAX {
        let id = format!("m-{n}");
        match connection.publish(QUEUE, labelled_payload(&id, PAYLOAD_BYTES)).await {
            Ok(confirmation) => {
                filled.published.push(id.clone());
                pending.push_back((id, confirmation));
            }
            Err(error) => {
                not_sent = Some((id, Err(error)));
                break;
            }
        }
        if pending.len() > PUBLISH_WINDOW {
            let (id, confirmation) = pending.pop_front().expect("pending");
            filled.settle(id, confirmation.await);
            if filled.failed_at.is_some() {
                break;
            }
        }
    }
    for (id, confirmation) in pending {
        filled.settle(id, confirmation.await);
    }
    if let Some((id, result)) = not_sent {
        filled.settle(id, result);
    }
    // The server closes the connection when it halts; wait for the client to notice.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while connection.closed_reason().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    filled.closed_code = connection.closed_reason().and_then(|reason| reason.code());
    filled
}

impl Filled {
    fn settle(&mut self, id: String, result: Result<(), PublishError>) {
        match result {
            Ok(()) => {
                assert!(
                    self.failed_at.is_none(),
                    "{id} was confirmed after {} failed",
                    self.failed_at.as_deref().unwrap_or("?")
                );
                self.confirmed.push(id);
            }
            Err(error) => {
                self.failed_at.get_or_insert(id.clone());
                self.failures.push((id, error));
            }
        }
    }
}

/// Takes every message in the queue, acking each; returns their ids. Then checks that the
/// recovered broker takes new publishes.
async fn drain(url: &str) -> Vec<String> {
    let connection = Connection::connect(url).await.expect("connect after recovery");
    let stats = connection.queue_stats(QUEUE).await.expect("the queue was recovered");
    let present = take_ready(&connection, QUEUE, stats.ready).await;
    connection.publish(QUEUE, "after recovery").await.expect("publish").await.expect("confirm");
    connection.close().await;
    present
}

/// Copies the files of a flat directory (the data directory has no subdirectories).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the data directory") {
        let entry = entry.expect("directory entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a file");
    }
}

/// A tmpfs mounted for one test; unmounted on drop, also when the test fails.
struct Tmpfs {
    mount_point: PathBuf,
    // Dropped after the unmount: removes the empty mount point.
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mount_point = parent.path().join("tmpfs");
        std::fs::create_dir(&mount_point).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount_point)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            return Err(stderr.lines().next().unwrap_or("mount failed").to_string());
        }
        Ok(Tmpfs { mount_point, _parent: parent })
    }

    fn path(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.mount_point).status();
        if !unmounted.is_ok_and(|status| status.success()) {
            // Busy (a server that outlived a panic?): detach it now, it goes when freed.
            let _ = Command::new("umount").arg("-l").arg(&self.mount_point).status();
        }
    }
}
