//! Reloading the configuration (SIGHUP, `POST /api/reload`), all or nothing: the file and the
//! environment are read again (the command line's settings stay on top, as at the start), the
//! result is checked whole, and only a configuration with no problem at all is applied.
//! Settings bound at the start (addresses, the data directory) cannot change: a reload that
//! changes one is refused whole, naming the key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::channel::{mpsc, oneshot};
use futures::SinkExt;

use super::check::{self, Problem, Sources};
use super::file::ConfigFile;
use crate::event_loop::LoopEvent;
use crate::logging::LogControl;

/// Settings a running server cannot change: a reload that changes one is refused.
pub const RESTART_KEYS: [&str; 9] = [
    "server.listen",
    "server.admin_listen",
    "server.data_dir",
    "tls.listen",
    "tls.admin",
    "audit.file",
    "audit.queue_max",
    "audit.when_full",
    // Keys are read at the start only: the log seals with the keyring it started with.
    "storage.encryption",
];

/// What a reload changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// `key: old -> new`, one per changed setting, in key order.
    pub changed: Vec<String>,
    /// Renamed keys still in use.
    pub warnings: Vec<String>,
}

/// Why nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration has problems (one line each), or changes a restart-only key.
    #[error("configuration not reloaded, nothing changed: {}", .0.join("; "))]
    Refused(Vec<String>),
    /// The broker task is gone (the server is stopping).
    #[error("the server is stopping")]
    Unavailable,
}

impl ReloadOutcome {
    /// The answer of `POST /api/reload`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "reloaded": true, "changed": self.changed, "warnings": self.warnings })
    }
}

impl ReloadError {
    pub fn to_json(&self) -> serde_json::Value {
        let problems = match self {
            ReloadError::Refused(problems) => problems.clone(),
            ReloadError::Unavailable => vec![self.to_string()],
        };
        serde_json::json!({ "reloaded": false, "problems": problems })
    }
}

/// Asks the broker task to reload and waits for its answer: for the admin endpoint.
pub async fn request_reload(
    events: &mut mpsc::Sender<LoopEvent>,
) -> Result<ReloadOutcome, ReloadError> {
    let (reply_tx, reply_rx) = oneshot::channel();
    events.send(LoopEvent::Reload(reply_tx)).await.map_err(|_| ReloadError::Unavailable)?;
    reply_rx.await.map_err(|_| ReloadError::Unavailable)?
}

/// Counters of reloads, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReloadCounters {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// Unix time in seconds of the last successful load, the start's included.
    pub last_success_unix_s: AtomicU64,
}

impl ReloadCounters {
    fn success_now(&self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.last_success_unix_s.store(now, Ordering::Relaxed);
    }
}

/// The broker task's part in reloads: where the configuration comes from, what runs now.
pub struct Reloader {
    sources: Sources,
    running: ConfigFile,
    log: Option<LogControl>,
    counters: std::sync::Arc<ReloadCounters>,
}

impl Reloader {
    /// `running` was loaded from `sources` at the start.
    pub fn new(
        sources: Sources,
        running: ConfigFile,
        log: Option<LogControl>,
        counters: std::sync::Arc<ReloadCounters>,
    ) -> Reloader {
        counters.success_now();
        Reloader { sources, running, log, counters }
    }

    /// Loads and checks the configuration again, then hands it to `apply` (the broker task's
    /// own settings, which may still refuse it: then nothing changed), then to the log. Logs
    /// the outcome and counts it. `apply` returns what it changed beyond the settings' values
    /// (`tls.certificate: ...`: files re-read though their paths did not change).
    pub fn reload(
        &mut self,
        apply: impl FnOnce(&ConfigFile) -> Result<Vec<String>, String>,
    ) -> Result<ReloadOutcome, ReloadError> {
        let result = self.try_reload(apply);
        match &result {
            Ok(outcome) => {
                self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                self.counters.success_now();
                for warning in &outcome.warnings {
                    tracing::warn!("{warning}");
                }
                match outcome.changed.is_empty() {
                    true => tracing::info!("configuration reloaded: nothing changed"),
                    false => tracing::info!(
                        changed = %outcome.changed.join(", "),
                        "configuration reloaded"
                    ),
                }
            }
            Err(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                match error {
                    ReloadError::Refused(problems) => {
                        for problem in problems {
                            tracing::error!("configuration problem: {problem}");
                        }
                        let count = problems.len();
                        tracing::error!(
                            problems = count,
                            "configuration not reloaded, nothing changed"
                        );
                    }
                    ReloadError::Unavailable => tracing::error!("{error}"),
                }
            }
        }
        result
    }

    /// `apply` may name changes of its own (what the files the configuration points at now
    /// hold), which follow the keys' in the answer.
    fn try_reload(
        &mut self,
        apply: impl FnOnce(&ConfigFile) -> Result<Vec<String>, String>,
    ) -> Result<ReloadOutcome, ReloadError> {
        let refused = |problems: Vec<Problem>| {
            ReloadError::Refused(problems.iter().map(ToString::to_string).collect())
        };
        let loaded = check::load(&self.sources).map_err(refused)?;
        let changes = changed_values(&self.running, &loaded.config);
        let restarts: Vec<Problem> = changes
            .iter()
            .filter(|(key, _, _)| RESTART_KEYS.contains(&key.as_str()))
            .map(|(key, old, new)| {
                let message = format!("{key} needs a restart (running {old}, new {new})");
                Problem::new(loaded.origin(key), message)
            })
            .collect();
        if !restarts.is_empty() {
            return Err(refused(restarts));
        }
        let applied = apply(&loaded.config).map_err(|reason| ReloadError::Refused(vec![reason]))?;
        if let Some(log) = &mut self.log {
            // The filter was checked; the log layer is there for the process's life.
            if let Err(error) = log.apply(&loaded.config.log) {
                tracing::warn!(%error, "the log settings could not be changed");
            }
        }
        self.running = loaded.config;
        let changed = changes
            .into_iter()
            .map(|(key, old, new)| format!("{key}: {old} -> {new}"))
            .chain(applied)
            .collect();
        Ok(ReloadOutcome { changed, warnings: loaded.warnings })
    }
}

/// `(key, old, new)` for every setting whose value differs, in key order.
fn changed_values(old: &ConfigFile, new: &ConfigFile) -> Vec<(String, String, String)> {
    let (old, new) = (flatten(old), flatten(new));
    new.iter()
        .filter(|(key, value)| old.get(*key) != Some(value))
        .map(|(key, value)| {
            let before = old.get(key).map_or("unset".to_string(), ToString::to_string);
            (key.clone(), before, value.to_string())
        })
        .collect()
}

/// Every setting by key path, its value as JSON (`null` when unset).
fn flatten(config: &ConfigFile) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut keys = std::collections::BTreeMap::new();
    let serde_json::Value::Object(top) = serde_json::to_value(config).expect("serializes") else {
        return keys;
    };
    for (name, value) in top {
        match value {
            serde_json::Value::Object(section) => {
                keys.extend(section.into_iter().map(|(key, v)| (format!("{name}.{key}"), v)));
            }
            value => {
                keys.insert(name, value);
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use super::*;

    struct Fixture {
        file: tempfile::NamedTempFile,
        reloader: Reloader,
        counters: Arc<ReloadCounters>,
    }

    fn fixture(text: &str) -> Fixture {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), text).unwrap();
        let sources = Sources { file: Some(file.path().into()), flags: Vec::new() };
        let running = check::load_from(&sources, &[]).unwrap().config;
        let counters = Arc::new(ReloadCounters::default());
        let reloader = Reloader::new(sources, running, None, counters.clone());
        Fixture { file, reloader, counters }
    }

    impl Fixture {
        fn rewrite(&mut self, text: &str) {
            let mut file = std::fs::File::create(self.file.path()).unwrap();
            file.write_all(text.as_bytes()).unwrap();
        }
    }

    #[test]
    fn a_valid_change_is_applied_and_reported() {
        let mut fixture = fixture("[limits]\nconnections_max = 100\n");
        fixture.rewrite("[limits]\nconnections_max = 5\n");
        let mut applied = None;
        let outcome = fixture
            .reloader
            .reload(|config| {
                applied = Some(config.limits.connections_max);
                Ok(vec!["tls.certificate: a -> b".into()])
            })
            .unwrap();
        assert_eq!(applied, Some(5));
        assert_eq!(
            outcome.changed,
            ["limits.connections_max: 100 -> 5", "tls.certificate: a -> b"]
        );
        assert_eq!(fixture.reloader.running.limits.connections_max, 5);
        assert_eq!(fixture.counters.succeeded.load(Ordering::Relaxed), 1);
        assert!(fixture.counters.last_success_unix_s.load(Ordering::Relaxed) > 0);
    }

    /// An invalid file changes nothing: `apply` is not called, and every problem is named.
    #[test]
    fn an_invalid_file_changes_nothing() {
        let mut fixture = fixture("[limits]\nconnections_max = 100\n");
        fixture.rewrite("[limits]\nconnections_max = 5\nqueues_max = 0\ncredit_max = \"x\"\n");
        let error = fixture.reloader.reload(|_| panic!("applied an invalid configuration"));
        let Err(ReloadError::Refused(problems)) = error else { panic!("{error:?}") };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains(":4:1: limits.credit_max: invalid type"), "{problems:?}");
        assert!(
            problems[1].contains(":3:1: limits.queues_max = 0 is out of range"),
            "{problems:?}"
        );
        assert_eq!(fixture.reloader.running.limits.connections_max, 100);
        assert_eq!(fixture.counters.failed.load(Ordering::Relaxed), 1);
    }

    /// A restart-only key refuses the whole reload, naming the key; the rest is not applied.
    #[test]
    fn a_restart_only_key_refuses_the_whole_reload() {
        let mut fixture = fixture("[server]\nlisten = \"127.0.0.1:4770\"\n");
        fixture.rewrite("[server]\nlisten = \"127.0.0.1:4999\"\n[limits]\nconnections_max = 5\n");
        let error = fixture.reloader.reload(|_| panic!("applied a refused reload")).unwrap_err();
        let ReloadError::Refused(problems) = &error else { panic!("{error:?}") };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].ends_with(":2:1: server.listen needs a restart (running \"127.0.0.1:4770\", new \"127.0.0.1:4999\")"),
            "{problems:?}"
        );
        assert_eq!(fixture.reloader.running.limits.connections_max, 10_000);
    }

    /// Keys for encryption at rest are read at the start only: a reload that adds one is
    /// refused, naming the table.
    #[test]
    fn an_encryption_key_change_needs_a_restart() {
        let mut fixture = fixture("");
        fixture.rewrite("[storage.encryption]\nkey_file = \"/etc/chute/data.key\"\n");
        let error = fixture.reloader.reload(|_| panic!("applied a refused reload")).unwrap_err();
        let ReloadError::Refused(problems) = &error else { panic!("{error:?}") };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("storage.encryption needs a restart"), "{problems:?}");
    }

    /// What the broker task refuses also leaves everything as it was.
    #[test]
    fn a_refusal_by_the_broker_changes_nothing() {
        let mut fixture = fixture("");
        fixture.rewrite("[limits]\nconnections_max = 5\n");
        let error = fixture.reloader.reload(|_| Err("no".into())).unwrap_err();
        assert_eq!(error, ReloadError::Refused(vec!["no".into()]));
        assert_eq!(fixture.reloader.running.limits.connections_max, 10_000);
    }
}
