//! The built-in alert rules, driven: every `alerts.evaluation_interval_ms` the broker task
//! takes a snapshot of the broker (`Broker::alert_snapshot`) with the storage worker's sync
//! latencies, feeds the core's
//! [`Evaluator`], logs each transition, publishes the alerts for `/api/alerts` and
//! `/metrics`, and hands firing and resolved alerts to the webhooks (`webhook.rs`), which send
//! them off the broker task.

pub mod payload;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use chute_core::alerts::{AlertState, AlertView, Evaluator, Transition};
use chute_core::{Broker, Instant};
use futures::channel::mpsc;
use futures::SinkExt;

use crate::config::alerts::{AlertsSettings, ReceiverSettings};
use crate::event_loop::LoopEvent;
use crate::runtime::Runtime;
use crate::storage_worker::StorageMetrics;
use webhook::{ReceiverCounters, Webhook};

/// What the admin endpoint shows of the alerts: written by the broker task after each
/// evaluation, read by `/api/alerts` and `/metrics`.
#[derive(Debug, Default)]
pub struct AlertBoard {
    alerts: Mutex<Vec<AlertView>>,
    /// By receiver name; kept across reloads so the counters keep counting.
    receivers: Mutex<BTreeMap<String, Arc<ReceiverCounters>>>,
}

impl AlertBoard {
    /// Every alert that is not inactive.
    pub fn alerts(&self) -> Vec<AlertView> {
        self.alerts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Each receiver configured now, with its counters.
    pub fn receivers(&self) -> Vec<(String, Arc<ReceiverCounters>)> {
        let receivers = self.receivers.lock().unwrap_or_else(PoisonError::into_inner);
        receivers.iter().map(|(name, counters)| (name.clone(), counters.clone())).collect()
    }
}

/// The broker task's side of the alerts.
pub struct Alerting<R: Runtime> {
    runtime: R,
    evaluator: Evaluator,
    webhooks: Vec<(ReceiverSettings, Webhook)>,
    board: Arc<AlertBoard>,
    storage: Arc<StorageMetrics>,
    /// Read by the ticking task; a reload sets it.
    interval_ms: Arc<AtomicU32>,
}

impl<R: Runtime> Alerting<R> {
    /// Starts the receivers' tasks and the task that asks for evaluations.
    pub fn start(
        runtime: R,
        settings: &AlertsSettings,
        board: Arc<AlertBoard>,
        storage: Arc<StorageMetrics>,
        events: mpsc::Sender<LoopEvent>,
    ) -> Alerting<R> {
        let interval_ms = Arc::new(AtomicU32::new(settings.evaluation_interval_ms));
        runtime.spawn(tick_loop(runtime.clone(), interval_ms.clone(), events));
        let mut alerting = Alerting {
            runtime,
            evaluator: Evaluator::new(settings.rules()),
            webhooks: Vec::new(),
            board,
            storage,
            interval_ms,
        };
        alerting.set_receivers(&settings.receivers);
        alerting
    }

    /// One evaluation of `broker`, at `now`.
    pub fn evaluate(&mut self, now: Instant, broker: &Broker) {
        let snapshot = broker.alert_snapshot(now, self.storage.sync_latency());
        let transitions = self.evaluator.evaluate(now, &snapshot);
        self.publish(transitions);
    }

    /// Applies a reloaded `[alerts]`: unchanged rules keep their alerts, unchanged receivers
    /// their queues and breakers.
    pub fn reconfigure(&mut self, settings: &AlertsSettings, now_unix_ms: u64) {
        self.interval_ms.store(settings.evaluation_interval_ms, Ordering::Relaxed);
        let transitions = self.evaluator.set_rules(settings.rules(), now_unix_ms);
        self.set_receivers(&settings.receivers);
        self.publish(transitions);
    }

    /// Keeps the webhooks whose settings did not change, starts the new ones and stops the
    /// rest.
    fn set_receivers(&mut self, receivers: &[ReceiverSettings]) {
        let mut old = std::mem::take(&mut self.webhooks);
        let mut counters = self.board.receivers.lock().unwrap_or_else(PoisonError::into_inner);
        for settings in receivers {
            let webhook = match old.iter().position(|(kept, _)| kept == settings) {
                Some(index) => old.swap_remove(index).1,
                None => {
                    let shared = counters.entry(settings.name.clone()).or_default().clone();
                    Webhook::start(&self.runtime, settings, shared)
                }
            };
            self.webhooks.push((settings.clone(), webhook));
        }
        counters.retain(|name, _| receivers.iter().any(|r| &r.name == name));
    }

    /// Logs the transitions, shows the alerts, and notifies the receivers of alerts that
    /// started firing or resolved.
    fn publish(&self, transitions: Vec<Transition>) {
        // Shown first, so whoever hears of a transition finds it at `/api/alerts`.
        *self.board.alerts.lock().unwrap_or_else(PoisonError::into_inner) = self.evaluator.alerts();
        for transition in &transitions {
            log_transition(transition);
            let alert = &transition.alert;
            if matches!(alert.state, AlertState::Firing | AlertState::Resolved) {
                for (settings, webhook) in &self.webhooks {
                    let body = payload::body(&settings.name, alert);
                    webhook.notify(Bytes::from(body.to_string()));
                }
            }
        }
    }
}

/// Asks the broker task for an evaluation every interval, until the task is gone.
async fn tick_loop<R: Runtime>(
    runtime: R,
    interval_ms: Arc<AtomicU32>,
    mut events: mpsc::Sender<LoopEvent>,
) {
    loop {
        let interval = Duration::from_millis(interval_ms.load(Ordering::Relaxed).into());
        runtime.sleep_until(StdInstant::now() + interval).await;
        if events.send(LoopEvent::EvaluateAlerts).await.is_err() {
            return;
        }
    }
}

/// One structured line per transition: warn when an alert fires, info otherwise.
fn log_transition(transition: &Transition) {
    let alert = &transition.alert;
    // A broker-wide rule has no queue: the field is left out of the line rather than empty.
    let queue = alert.queue.as_deref();
    let value = alert.value.map_or_else(|| "none".to_string(), |v| v.to_string());
    let (from, to) = (transition.from.as_str(), alert.state.as_str());
    let severity = alert.severity.to_string();
    let summary = alert.annotations.get("summary").map_or("", String::as_str);
    if alert.state == AlertState::Firing {
        tracing::warn!(rule = %alert.rule, queue, from, to, %value, threshold = alert.threshold, %severity, "alert {}: {summary}", to);
    } else {
        tracing::info!(rule = %alert.rule, queue, from, to, %value, threshold = alert.threshold, %severity, "alert {}", to);
    }
}

/// An alert as `/api/alerts` shows it.
pub fn alert_json(alert: &AlertView) -> serde_json::Value {
    serde_json::json!({
        "rule": alert.rule,
        "kind": alert.kind,
        "queue": alert.queue,
        "state": alert.state,
        "since": payload::rfc3339(alert.since_unix_ms),
        "fired_at": alert.fired_unix_ms.map(payload::rfc3339),
        "value": alert.value,
        "threshold": alert.threshold,
        "severity": alert.severity,
        "labels": alert.labels,
        "annotations": alert.annotations,
    })
}
