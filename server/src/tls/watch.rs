//! Noticing that the certificate files changed, without a signal: a thread watches their
//! directories (inotify through `notify`; any event there counts, debounced, since editors and
//! Kubernetes replace files by renames and symlink swaps rather than writing them) and polls
//! their contents every `tls.reload_poll_ms` (inotify misses some changes: a Secret mounted
//! with `subPath`, network filesystems). Either way it only wakes the broker task, which
//! re-reads, checks and swaps ([`super::state::TlsState::reload_files`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::Watcher as _;

/// Events closer together than this are one change: a rotation writes several files.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// How long the thread sleeps when it has nothing to poll.
const IDLE: Duration = Duration::from_secs(3600);

/// What to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchPlan {
    pub files: Vec<PathBuf>,
    /// Watch the files' directories (`tls.watch_files`).
    pub watch_directories: bool,
    /// Compare the files' contents this often (`tls.reload_poll_ms`), if at all.
    pub poll: Option<Duration>,
}

enum Message {
    /// Something happened in a watched directory.
    Changed,
    Replan(WatchPlan),
    /// The [`Watcher`] was dropped.
    Stop,
}

/// The watcher thread; it ends when this is dropped.
pub struct Watcher {
    messages: mpsc::Sender<Message>,
}

impl Watcher {
    pub fn spawn(plan: WatchPlan, wake: impl Fn() + Send + 'static) -> std::io::Result<Watcher> {
        let (messages, inbox) = mpsc::channel();
        let events = messages.clone();
        std::thread::Builder::new()
            .name("chute-tls-watch".into())
            .spawn(move || run(plan, events, inbox, wake))?;
        Ok(Watcher { messages })
    }

    /// Watch and poll as `plan` says from now on (a reload changed the settings).
    pub fn replan(&self, plan: WatchPlan) {
        let _ = self.messages.send(Message::Replan(plan));
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // The channel alone would not tell the thread: notify's callback holds a sender too.
        let _ = self.messages.send(Message::Stop);
    }
}

fn run(
    plan: WatchPlan,
    events: mpsc::Sender<Message>,
    inbox: mpsc::Receiver<Message>,
    wake: impl Fn(),
) {
    let on_event = move |event: notify::Result<notify::Event>| {
        // Reading the files (this thread's polls, the broker's reloads) is an event too, and
        // must not wake anyone, or every reload would cause the next.
        let changed = event.is_ok_and(|event| !matches!(event.kind, notify::EventKind::Access(_)));
        if changed {
            let _ = events.send(Message::Changed);
        }
    };
    let mut notifier = match notify::recommended_watcher(on_event) {
        Ok(notifier) => Some(notifier),
        Err(error) => {
            tracing::warn!(%error, "cannot watch the TLS files' directories; polling only");
            None
        }
    };
    let mut watched = BTreeSet::new();
    let mut plan = plan;
    let mut seen = contents(&plan.files);
    let mut next_poll = plan.poll.map(|every| Instant::now() + every);
    rewatch(notifier.as_mut(), &mut watched, &plan);
    loop {
        let wait = next_poll.map_or(IDLE, |at| at.saturating_duration_since(Instant::now()));
        let mut message = inbox.recv_timeout(wait);
        if let Ok(Message::Changed) = message {
            // Let the rest of a rotation land, then look once.
            message = loop {
                match inbox.recv_timeout(DEBOUNCE) {
                    Ok(Message::Changed) => continue,
                    other => break other,
                }
            };
            seen = contents(&plan.files);
            wake();
            if let Err(mpsc::RecvTimeoutError::Timeout) = message {
                continue;
            }
        }
        match message {
            Ok(Message::Changed) => unreachable!("taken by the debounce above"),
            Ok(Message::Replan(new)) => {
                plan = new;
                rewatch(notifier.as_mut(), &mut watched, &plan);
                seen = contents(&plan.files);
                next_poll = plan.poll.map(|every| Instant::now() + every);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = contents(&plan.files);
                if now != seen {
                    seen = now;
                    wake();
                }
                next_poll = plan.poll.map(|every| Instant::now() + every);
            }
            Ok(Message::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Each file's contents, `None` where it cannot be read.
fn contents(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    files.iter().map(|path| std::fs::read(path).ok()).collect()
}

/// Watches the directories of `plan`'s files (when it says so), and no others.
fn rewatch(
    notifier: Option<&mut notify::RecommendedWatcher>,
    watched: &mut BTreeSet<PathBuf>,
    plan: &WatchPlan,
) {
    let Some(notifier) = notifier else { return };
    let wanted: BTreeSet<PathBuf> = match plan.watch_directories {
        true => plan.files.iter().map(|file| directory_of(file)).collect(),
        false => BTreeSet::new(),
    };
    for gone in watched.difference(&wanted) {
        let _ = notifier.unwatch(gone);
    }
    for new in wanted.difference(watched) {
        if let Err(error) = notifier.watch(new, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(directory = %new.display(), %error, "cannot watch a TLS file's directory; polling only");
        }
    }
    *watched = wanted;
}

fn directory_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    fn counting() -> (Arc<AtomicUsize>, impl Fn() + Send + 'static) {
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = wakes.clone();
        (wakes, move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what} did not happen");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polling alone notices a change of contents, and only a change.
    #[test]
    fn polling_wakes_on_a_change_of_contents() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cert.pem");
        std::fs::write(&file, "one").unwrap();
        let (wakes, wake) = counting();
        let plan = WatchPlan {
            files: vec![file.clone()],
            watch_directories: false,
            poll: Some(Duration::from_millis(20)),
        };
        let _watcher = Watcher::spawn(plan, wake).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(wakes.load(Ordering::SeqCst), 0, "nothing changed");
        std::fs::write(&file, "two").unwrap();
        wait_until("a wake-up", || wakes.load(Ordering::SeqCst) == 1);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "one change, one wake-up");
    }

    /// Dropping the watcher ends its thread (which drops its wake-up).
    #[test]
    fn dropping_the_watcher_ends_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (wakes, wake) = counting();
        let plan = WatchPlan {
            files: vec![dir.path().join("cert.pem")],
            watch_directories: true,
            poll: None,
        };
        let watcher = Watcher::spawn(plan, wake).unwrap();
        assert_eq!(Arc::strong_count(&wakes), 2, "the thread holds the wake-up");
        drop(watcher);
        wait_until("the thread's end", || Arc::strong_count(&wakes) == 1);
    }

    /// A watched directory's events wake once per burst, without polling.
    #[test]
    fn directory_events_wake_once_per_burst() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cert.pem");
        std::fs::write(&file, "one").unwrap();
        let (wakes, wake) = counting();
        let plan = WatchPlan { files: vec![file.clone()], watch_directories: true, poll: None };
        let _watcher = Watcher::spawn(plan, wake).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        for text in ["two", "three", "four"] {
            std::fs::write(&file, text).unwrap();
        }
        wait_until("a wake-up", || wakes.load(Ordering::SeqCst) >= 1);
        std::thread::sleep(DEBOUNCE * 2);
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "one burst, one wake-up");
        // Reading the files, as a reload does, is no change.
        std::fs::read(&file).unwrap();
        std::thread::sleep(DEBOUNCE * 2);
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "a read wakes nobody");
    }
}
