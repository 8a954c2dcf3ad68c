//! A bounded, non-blocking log writer: a log call hands its line to a writer thread through a
//! bounded channel and returns at once. When the channel is full (stderr or a pipe is slower
//! than the logging), the line is dropped and counted instead: the broker task must never
//! wait on a terminal, a full pipe or a stalled journal.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Lines that may wait for the writer thread; beyond them lines are dropped.
pub const LOG_LINES_QUEUED_MAX: usize = 8192;
/// How long the last lines may take to be written when the server exits.
pub const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

enum Message {
    /// One formatted event (tracing's fmt layer writes each event in one `write`).
    Line(Vec<u8>),
    /// Write everything before this, then answer.
    Flush(mpsc::Sender<()>),
}

/// The writer the log layer holds; cheap to clone.
#[derive(Clone)]
pub struct NonBlocking {
    lines: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

/// Owns the writer thread: flushes it on [`WriterGuard::flush`] and on drop.
pub struct WriterGuard {
    lines: SyncSender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl NonBlocking {
    /// A writer of at most `lines_max` waiting lines onto `out`, written by a thread of its
    /// own; lines dropped are added to `dropped`.
    pub fn new(
        out: impl Write + Send + 'static,
        lines_max: usize,
        dropped: Arc<AtomicU64>,
    ) -> io::Result<(NonBlocking, WriterGuard)> {
        let (lines, received) = mpsc::sync_channel(lines_max);
        let thread = std::thread::Builder::new()
            .name("chute-log".into())
            .spawn(move || write_lines(out, received))?;
        let guard = WriterGuard { lines: lines.clone(), thread: Some(thread) };
        Ok((NonBlocking { lines, dropped }, guard))
    }
}

impl Write for NonBlocking {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.lines.try_send(Message::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for NonBlocking {
    type Writer = NonBlocking;

    fn make_writer(&'a self) -> NonBlocking {
        self.clone()
    }
}

impl WriterGuard {
    /// Waits, at most [`LOG_FLUSH_TIMEOUT`], until every line handed over so far is written:
    /// before the process prints its last line or exits.
    pub fn flush(&self) {
        let deadline = Instant::now() + LOG_FLUSH_TIMEOUT;
        let (done_tx, done_rx) = mpsc::channel();
        let mut message = Message::Flush(done_tx);
        loop {
            match self.lines.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Full(_)) => return,
            }
        }
        let _ = done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.flush();
        // The thread ends once every sender is gone; the log layer still holds one, so it is
        // left to the process exit rather than joined.
        drop(self.thread.take());
    }
}

/// The writer thread: writes lines as they come, in batches when they come faster than one
/// at a time, and flushes whenever it has caught up.
fn write_lines(out: impl Write, received: Receiver<Message>) {
    let mut out = io::BufWriter::new(out);
    while let Ok(message) = received.recv() {
        let mut next = Some(message);
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Message::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = received.try_recv().ok();
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A writer that blocks in its first write until released, recording what it wrote.
    struct Stalled {
        entered: mpsc::Sender<()>,
        release: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(release) = self.release.lock().unwrap().take() {
                let _ = self.entered.send(());
                let _ = release.recv();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// While the output is stalled, a writer never blocks: lines beyond the bounded queue are
    /// dropped and counted; those queued are written once the output moves again.
    #[test]
    fn a_stalled_output_drops_and_counts_lines_without_blocking() {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let stalled = Stalled {
            entered: entered_tx,
            release: Arc::new(Mutex::new(Some(release_rx))),
            written: written.clone(),
        };
        let dropped = Arc::new(AtomicU64::new(0));
        let (mut writer, guard) = NonBlocking::new(stalled, 2, dropped.clone()).unwrap();
        writer.write_all(b"line 0\n").unwrap();
        entered_rx.recv().unwrap();
        let started = Instant::now();
        for line in 1..10 {
            writer.write_all(format!("line {line}\n").as_bytes()).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(1), "a write waited for the output");
        // Line 0 is in the stalled write, lines 1 and 2 fill the queue, 3 to 9 are dropped.
        assert_eq!(dropped.load(Ordering::Relaxed), 7);
        release_tx.send(()).unwrap();
        guard.flush();
        assert_eq!(*written.lock().unwrap(), b"line 0\nline 1\nline 2\n");
    }
}
