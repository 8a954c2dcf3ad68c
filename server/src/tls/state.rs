//! The broker task's part in TLS: the material in use, and reloading it all or nothing.
//!
//! A configuration reload (SIGHUP, `POST /api/reload`) re-reads the files even when the
//! configuration did not change ([`TlsState::prepare`], then [`TlsState::commit`] once the
//! rest of the configuration is accepted too). A change of the files seen by the watcher
//! ([`super::watch`]) re-reads them with the running settings ([`TlsState::reload_files`]).
//! Either way the new material is checked whole before it is swapped in; a bad one is
//! refused, logged and counted, and the old one keeps serving.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::acceptor::{Live, TlsAcceptor};
use super::counters::TlsCounters;
use super::material::{CertificateSummary, Files, Material, MaterialProblem};
use super::watch::{WatchPlan, Watcher};
use crate::config::TlsSettings;

/// Checked material and the configuration built from it, not yet in use.
pub struct Prepared {
    settings: TlsSettings,
    material: Material,
    live: Live,
}

pub struct TlsState {
    acceptor: Arc<TlsAcceptor>,
    settings: TlsSettings,
    files: Files,
    certificate: CertificateSummary,
    client_ca_count: usize,
    /// The files as they were when reading them last failed: a watcher's wake-up with the
    /// same contents is not tried (and logged, and counted) again.
    refused: Option<Files>,
    counters: Arc<TlsCounters>,
    watcher: Option<Watcher>,
}

impl TlsState {
    /// Loads the material `settings` names; the server cannot start without it.
    pub fn start(
        settings: &TlsSettings,
        counters: Arc<TlsCounters>,
    ) -> Result<TlsState, Vec<MaterialProblem>> {
        let material = Material::load(settings)?;
        let live = live(settings, &material).map_err(|problem| vec![problem])?;
        counters
            .certificate_expiry_unix_s
            .store(material.certificate.not_after_unix_s, Ordering::Relaxed);
        tracing::info!(certificate = %material.certificate, "TLS certificate loaded");
        Ok(TlsState {
            acceptor: Arc::new(TlsAcceptor::new(live, counters.clone())),
            settings: settings.clone(),
            files: material.files,
            certificate: material.certificate,
            client_ca_count: material.client_ca_count,
            refused: None,
            counters,
            watcher: None,
        })
    }

    pub fn acceptor(&self) -> Arc<TlsAcceptor> {
        self.acceptor.clone()
    }

    /// Starts watching the files (and polling them), as the settings say; `wake` is called
    /// from the watcher's thread when they may have changed.
    pub fn watch(&mut self, wake: impl Fn() + Send + 'static) {
        match Watcher::spawn(self.watch_plan(), wake) {
            Ok(watcher) => self.watcher = Some(watcher),
            Err(error) => {
                tracing::warn!(%error, "cannot start the TLS file watcher; reload with SIGHUP")
            }
        }
    }

    fn watch_plan(&self) -> WatchPlan {
        let settings = &self.settings;
        let paths = [&settings.cert_file, &settings.key_file, &settings.client_ca_file];
        WatchPlan {
            files: paths.into_iter().flatten().cloned().collect(),
            watch_directories: settings.watch_files,
            poll: (settings.reload_poll_ms > 0)
                .then(|| Duration::from_millis(settings.reload_poll_ms.into())),
        }
    }

    /// Reads and checks the files `settings` names and builds the configuration from them,
    /// changing nothing yet. A refusal is logged by the caller and counted here.
    pub fn prepare(&self, settings: &TlsSettings) -> Result<Prepared, String> {
        let prepared = Material::load(settings)
            .and_then(|material| {
                let live = live(settings, &material).map_err(|problem| vec![problem])?;
                Ok(Prepared { settings: settings.clone(), material, live })
            })
            .map_err(|problems| {
                TlsCounters::add(&self.counters.certificate_reloads_failed);
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                format!("{} (the TLS certificate in use stays)", lines.join("; "))
            })?;
        Ok(prepared)
    }

    /// Puts `prepared` in use for new handshakes; returns what changed in the files (the
    /// settings' own changes are the reload's to tell).
    pub fn commit(&mut self, prepared: Prepared) -> Vec<String> {
        let Prepared { settings, material, live } = prepared;
        let mut changed = Vec::new();
        if material.files.cert != self.files.cert || material.files.key != self.files.key {
            changed
                .push(format!("tls.certificate: {} -> {}", self.certificate, material.certificate));
        }
        if material.files.client_ca != self.files.client_ca {
            let (old, new) = (self.client_ca_count, material.client_ca_count);
            changed
                .push(format!("tls.client_ca: {old} -> {new} CA certificates (the file changed)"));
        }
        if !changed.is_empty() {
            TlsCounters::add(&self.counters.certificate_reloads_ok);
        }
        self.acceptor.swap(live);
        self.counters
            .certificate_expiry_unix_s
            .store(material.certificate.not_after_unix_s, Ordering::Relaxed);
        let plan_changed = settings != self.settings;
        self.settings = settings;
        self.files = material.files;
        self.certificate = material.certificate;
        self.client_ca_count = material.client_ca_count;
        self.refused = None;
        if plan_changed {
            if let Some(watcher) = &self.watcher {
                watcher.replan(self.watch_plan());
            }
        }
        changed
    }

    /// The watcher saw the files change (or may have): reads them again with the running
    /// settings, and swaps them in if they changed and pass every check. Logs the outcome.
    pub fn reload_files(&mut self) {
        let files = match Files::read(&self.settings) {
            Ok(files) => files,
            Err(problems) => return self.refuse_from_watcher(None, &problems),
        };
        if files == self.files || self.refused.as_ref() == Some(&files) {
            return;
        }
        match Material::check(&self.settings, files.clone(), super::material::unix_now_s()) {
            Err(problems) => self.refuse_from_watcher(Some(files), &problems),
            Ok(material) => match live(&self.settings, &material) {
                Err(problem) => self.refuse_from_watcher(Some(files), &[problem]),
                Ok(live) => {
                    let settings = self.settings.clone();
                    let changed = self.commit(Prepared { settings, material, live });
                    tracing::info!(changed = %changed.join(", "), "TLS files changed: reloaded");
                }
            },
        }
    }

    /// Counts and logs a refusal, once per content of the files (a file that cannot be read
    /// is tried again at the next wake-up).
    fn refuse_from_watcher(&mut self, files: Option<Files>, problems: &[MaterialProblem]) {
        TlsCounters::add(&self.counters.certificate_reloads_failed);
        for problem in problems {
            tracing::error!("TLS problem: {problem}");
        }
        tracing::error!("TLS files changed but not reloaded: the certificate in use stays");
        self.refused = files;
    }
}

/// The handshakes' configuration from checked material.
fn live(settings: &TlsSettings, material: &Material) -> Result<Live, MaterialProblem> {
    Ok(Live {
        client: material.client_config(settings)?,
        admin: material.admin_config(),
        identity: settings.client_identity,
        handshake_timeout: Duration::from_millis(settings.handshake_timeout_ms.into()),
        handshakes_max: settings.handshakes_max as usize,
    })
}
