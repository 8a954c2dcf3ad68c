//! The audit log: one JSON object per line (`audit.file`), written by a thread of its own so
//! that the broker never waits for the disk, through a bounded queue (`audit.queue_max`).
//! When the queue is full (the writer cannot keep up, or the disk fails), `audit.when_full`
//! decides: `block` stops the broker from reading client requests until the writer catches up
//! (nothing happens that is not recorded), `drop-and-count` drops the event and counts it
//! (`chute_audit_dropped_total`). The file is reopened on a reload (SIGHUP), for logrotate.
//! docs/SECURITY.md lists every event and field.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use chute_core::auth::AuditEvent;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use serde_json::json;

use crate::config::file::{AuditSettings, WhenFull};

/// How long the writer waits before trying a failed write again (`block` only).
const WRITE_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What `/metrics` shows of the audit log.
#[derive(Debug, Default)]
pub struct AuditCounters {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
}

/// An event and when it happened.
struct Line {
    at: SystemTime,
    event: AuditEvent,
}

/// The broker task's end of the audit log. Off without `audit.file`.
pub struct AuditLog {
    sink: Option<Sink>,
}

struct Sink {
    tx: mpsc::Sender<Line>,
    /// `block` only: events the queue had no room for, in order, waiting to go in. While any
    /// wait, the broker reads no client requests.
    overflow: VecDeque<Line>,
    when_full: WhenFull,
    counters: Arc<AuditCounters>,
    reopen: Arc<AtomicBool>,
}

/// For tasks other than the broker's (the admin API): records events through the same queue.
#[derive(Clone)]
pub struct AuditHandle {
    tx: Option<mpsc::Sender<Line>>,
    when_full: WhenFull,
    counters: Arc<AuditCounters>,
}

impl AuditLog {
    pub fn off() -> AuditLog {
        AuditLog { sink: None }
    }

    /// Opens the file (appending; created readable by the owner only) and starts the writer.
    pub fn open(
        settings: &AuditSettings,
        counters: Arc<AuditCounters>,
    ) -> std::io::Result<AuditLog> {
        let Some(path) = settings.file.clone() else { return Ok(AuditLog::off()) };
        let file = open_file(&path)?;
        let (tx, rx) = mpsc::channel(settings.queue_max as usize);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            path,
            out: BufWriter::new(file),
            when_full: settings.when_full,
            counters: counters.clone(),
            reopen: reopen.clone(),
        };
        std::thread::Builder::new().name("chuted-audit".into()).spawn(move || writer.run(rx))?;
        let sink =
            Sink { tx, overflow: VecDeque::new(), when_full: settings.when_full, counters, reopen };
        Ok(AuditLog { sink: Some(sink) })
    }

    pub fn handle(&self) -> AuditHandle {
        match &self.sink {
            Some(sink) => AuditHandle {
                tx: Some(sink.tx.clone()),
                when_full: sink.when_full,
                counters: sink.counters.clone(),
            },
            None => AuditHandle {
                tx: None,
                when_full: WhenFull::DropAndCount,
                counters: Arc::default(),
            },
        }
    }

    pub fn record(&mut self, event: AuditEvent) {
        let Some(sink) = &mut self.sink else { return };
        let line = Line { at: SystemTime::now(), event };
        if !sink.overflow.is_empty() {
            return sink.overflow.push_back(line);
        }
        match sink.tx.try_send(line) {
            Ok(()) => {}
            Err(error) if error.is_full() && sink.when_full == WhenFull::Block => {
                sink.overflow.push_back(error.into_inner());
            }
            Err(_) => {
                sink.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events are waiting for room: the broker must not take new requests.
    pub fn backed_up(&self) -> bool {
        self.sink.as_ref().is_some_and(|sink| !sink.overflow.is_empty())
    }

    /// Moves waiting events into the queue as it makes room; ready once none wait.
    pub fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(sink) = &mut self.sink else { return Poll::Ready(()) };
        while !sink.overflow.is_empty() {
            match sink.tx.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let line = sink.overflow.pop_front().expect("not empty");
                    if sink.tx.start_send(line).is_err() {
                        sink.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // The writer is gone; nothing will ever make room.
                Poll::Ready(Err(_)) => {
                    let lost = sink.overflow.len() as u64;
                    sink.counters.dropped.fetch_add(lost, Ordering::Relaxed);
                    sink.overflow.clear();
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }

    /// Reopens the file before the next write (after logrotate moved it away).
    pub fn reopen(&self) {
        if let Some(sink) = &self.sink {
            sink.reopen.store(true, Ordering::Relaxed);
        }
    }
}

impl AuditHandle {
    /// Records `event`; under `block`, waits for room.
    pub async fn record(&self, event: AuditEvent) {
        let Some(tx) = &self.tx else { return };
        let line = Line { at: SystemTime::now(), event };
        let mut tx = tx.clone();
        let sent = match self.when_full {
            WhenFull::Block => tx.send(line).await.is_ok(),
            WhenFull::DropAndCount => tx.try_send(line).is_ok(),
        };
        if !sent {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn open_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path)
}

struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    when_full: WhenFull,
    counters: Arc<AuditCounters>,
    reopen: Arc<AtomicBool>,
}

impl Writer {
    /// Writes what arrives, a batch at a time, flushing after each batch; ends when every
    /// sender is gone.
    fn run(mut self, mut rx: mpsc::Receiver<Line>) {
        while let Some(first) = futures::executor::block_on(rx.next()) {
            if self.reopen.swap(false, Ordering::Relaxed) {
                self.reopen_file();
            }
            self.write(&first);
            while let Ok(line) = rx.try_recv() {
                self.write(&line);
            }
            if let Err(error) = self.out.flush() {
                self.failed(&error);
            }
        }
        let _ = self.out.flush();
    }

    fn write(&mut self, line: &Line) {
        let mut text = render(line);
        text.push('\n');
        loop {
            match self.out.write_all(text.as_bytes()) {
                Ok(()) => {
                    self.counters.written.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(error) => {
                    self.failed(&error);
                    if self.when_full == WhenFull::DropAndCount {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    // `block`: hold the event until the disk takes it; the queue fills
                    // behind it and the broker stops taking requests.
                    std::thread::sleep(WRITE_RETRY_PAUSE);
                    self.reopen_file();
                }
            }
        }
    }

    fn failed(&mut self, error: &std::io::Error) {
        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(path = %self.path.display(), %error, "cannot write the audit log");
    }

    fn reopen_file(&mut self) {
        let _ = self.out.flush();
        match open_file(&self.path) {
            Ok(file) => self.out = BufWriter::new(file),
            Err(error) => self.failed(&error),
        }
    }
}

/// One line: every field always present (null when it does not apply), so a reader can
/// rely on the shape.
fn render(line: &Line) -> String {
    let event = &line.event;
    let time = humantime::format_rfc3339_millis(line.at).to_string();
    json!({
        "time": time,
        "event": event.kind.label(),
        "user": event.user,
        "peer": event.peer.map(|peer| peer.to_string()),
        "conn": event.conn.map(|conn| conn.0),
        "resource": event.resource,
        "result": event.outcome.label(),
        "detail": event.detail,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use chute_core::auth::{AuditKind, AuditOutcome};
    use chute_core::ConnId;

    use super::*;

    fn event(kind: AuditKind) -> AuditEvent {
        AuditEvent {
            kind,
            conn: Some(ConnId(3)),
            user: Some("alice".into()),
            peer: Some("10.0.0.1:5000".parse().unwrap()),
            resource: Some("jobs".into()),
            outcome: AuditOutcome::Ok,
            detail: String::new(),
        }
    }

    #[test]
    fn a_line_has_every_field() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let text = render(&Line { at, event: event(AuditKind::QueueDeclared) });
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(value["event"], "queue-declared");
        assert_eq!(value["user"], "alice");
        assert_eq!(value["peer"], "10.0.0.1:5000");
        assert_eq!(value["conn"], 3);
        assert_eq!(value["resource"], "jobs");
        assert_eq!(value["result"], "ok");
        assert_eq!(value.as_object().unwrap().len(), 8);
    }

    fn settings(path: &Path, queue_max: u32, when_full: WhenFull) -> AuditSettings {
        AuditSettings { file: Some(path.to_path_buf()), queue_max, when_full }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn wait_until(mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn events_reach_the_file_in_order_and_a_reopen_follows_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let counters = Arc::new(AuditCounters::default());
        let mut log =
            AuditLog::open(&settings(&path, 64, WhenFull::Block), counters.clone()).unwrap();
        log.record(event(AuditKind::ConnectionAccepted));
        log.record(event(AuditKind::QueueDeclared));
        wait_until(|| counters.written.load(Ordering::Relaxed) == 2);
        let events: Vec<_> = lines(&path).iter().map(|l| l["event"].clone()).collect();
        assert_eq!(events, ["connection-accepted", "queue-declared"]);

        std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
        log.reopen();
        log.record(event(AuditKind::QueueDeleted));
        wait_until(|| counters.written.load(Ordering::Relaxed) == 3);
        assert_eq!(lines(&path).len(), 1, "the new file has the new event");
    }

    /// With the writer stuck, `drop-and-count` counts what it drops, and `block` keeps every
    /// event and says it is backed up.
    #[test]
    fn a_full_queue_drops_and_counts_or_backs_up() {
        for when_full in [WhenFull::DropAndCount, WhenFull::Block] {
            let counters = Arc::new(AuditCounters::default());
            let (tx, _rx_never_read) = mpsc::channel(1);
            let sink = Sink {
                tx,
                overflow: VecDeque::new(),
                when_full,
                counters: counters.clone(),
                reopen: Arc::default(),
            };
            let mut log = AuditLog { sink: Some(sink) };
            for _ in 0..5 {
                log.record(event(AuditKind::QueueDeclared));
            }
            match when_full {
                // The channel holds its buffer (1) plus one per sender (1).
                WhenFull::DropAndCount => {
                    assert_eq!(counters.dropped.load(Ordering::Relaxed), 3);
                    assert!(!log.backed_up());
                }
                WhenFull::Block => {
                    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
                    assert!(log.backed_up());
                    assert_eq!(log.sink.as_ref().unwrap().overflow.len(), 3);
                }
            }
        }
    }
}
