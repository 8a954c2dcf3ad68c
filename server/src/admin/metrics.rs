//! `/metrics`: the Prometheus text format (version 0.0.4), encoded by `prometheus-client`.
//!
//! A registry is built afresh for every scrape from a broker snapshot, the storage worker's
//! counters and `/proc/self`. Building it costs little next to the snapshot, and a deleted
//! queue's series disappear with it instead of lingering in a long-lived registry.
//!
//! The names are an interface (`chute bench` and dashboards read them): change them only
//! together with their readers. `prometheus-client` appends `_total` to counters, so counters
//! are registered without it.

use std::sync::atomic::{AtomicU64, Ordering};

use chute_core::{BrokerStats, PayloadCacheStats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use super::process::ProcessStats;
use crate::counters::ServerCounters;
use crate::storage_worker::StorageMetrics;
use crate::tls::TlsCounters;

/// The `Content-Type` of what [`encode`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueStateLabels {
    queue: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

type U64Gauge = Gauge<u64, AtomicU64>;

/// The metrics page. Broker metrics are left out when there is no snapshot (recovering, or
/// the broker task did not answer); process metrics that could not be read are left out too.
pub fn encode(
    broker: Option<&BrokerStats>,
    storage: &StorageMetrics,
    process: &ProcessStats,
    counters: &ServerCounters,
    now_unix_ms: u64,
) -> String {
    let mut registry = Registry::default();
    registry.register("chute_up", "1 while the server process runs", ConstGauge::new(1u64));
    register_server(&mut registry, counters);
    register_tls(&mut registry, &counters.tls);
    register_storage(&mut registry, storage);
    register_process(&mut registry, process);
    if let Some(stats) = broker {
        register_broker(&mut registry, stats);
        register_queue_health(&mut registry, stats, now_unix_ms);
    }
    register_alerts(&mut registry, &counters.alerts);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

fn register_server(registry: &mut Registry, counters: &ServerCounters) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let reloads = results(load(&counters.reloads.succeeded), load(&counters.reloads.failed));
    registry.register(
        "chute_config_reloads",
        "Configuration reloads (SIGHUP, POST /api/reload), by result",
        reloads,
    );
    registry.register(
        "chute_config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful configuration load, the start's included",
        ConstGauge::new(load(&counters.reloads.last_success_unix_s)),
    );
    registry.register(
        "chute_log_lines_dropped",
        "Log lines dropped because the log output could not keep up",
        ConstCounter::new(load(&counters.log_lines_dropped)),
    );
    let audit = &counters.audit;
    let audit_counters = [
        ("chute_audit_events_written", "Audit events written to the audit log", &audit.written),
        (
            "chute_audit_dropped",
            "Audit events dropped: the writer's queue was full (when_full = drop-and-count) or its write failed",
            &audit.dropped,
        ),
        ("chute_audit_write_errors", "Failed writes to the audit log", &audit.write_errors),
    ];
    for (name, help, counter) in audit_counters {
        registry.register(name, help, ConstCounter::new(load(counter)));
    }
}

/// A counter family with one series per label set, counted as given.
fn labelled<
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
>(
    series: impl IntoIterator<Item = (L, u64)>,
) -> Family<L, Counter> {
    let family = Family::<L, Counter>::default();
    for (labels, count) in series {
        family.get_or_create(&labels).inc_by(count);
    }
    family
}

/// `{result="ok"}` and `{result="failed"}`.
fn results(ok: u64, failed: u64) -> Family<ResultLabels, Counter> {
    labelled([(ResultLabels { result: "ok" }, ok), (ResultLabels { result: "failed" }, failed)])
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The TLS series; the certificate's expiry only once one is loaded (TLS in use).
fn register_tls(registry: &mut Registry, tls: &TlsCounters) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    registry.register(
        "chute_tls_handshakes",
        "TLS handshakes of the client listener completed",
        ConstCounter::new(load(&tls.handshakes)),
    );
    let failed = labelled([
        (ReasonLabels { reason: "timeout" }, load(&tls.handshakes_timed_out)),
        (
            ReasonLabels { reason: "client_certificate" },
            load(&tls.handshakes_client_certificate_refused),
        ),
        (ReasonLabels { reason: "error" }, load(&tls.handshakes_failed_other)),
    ]);
    registry.register(
        "chute_tls_handshakes_failed",
        "TLS handshakes of the client listener that failed: timeout (tls.handshake_timeout_ms), client_certificate (missing or not verified), error (anything else)",
        failed,
    );
    registry.register(
        "chute_tls_handshakes_refused",
        "TCP connections to the TLS listener closed at once: tls.handshakes_max handshakes were running",
        ConstCounter::new(load(&tls.handshakes_refused_over_limit)),
    );
    registry.register(
        "chute_tls_handshakes_in_progress",
        "TLS handshakes of the client listener running now",
        ConstGauge::new(load(&tls.handshakes_in_progress)),
    );
    let reloads = results(load(&tls.certificate_reloads_ok), load(&tls.certificate_reloads_failed));
    registry.register(
        "chute_tls_certificate_reloads",
        "Reloads of the TLS certificate, key or client CAs: ok (changed files swapped in), failed (refused; the old ones stay)",
        reloads,
    );
    let expiry = tls.certificate_expiry_unix_s.load(Ordering::Relaxed);
    if expiry > 0 {
        registry.register(
            "chute_tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the serving TLS certificate expires",
            ConstGauge::new(expiry),
        );
    }
}

fn register_storage(registry: &mut Registry, storage: &StorageMetrics) {
    let load = |counter: &AtomicU64| ConstCounter::new(counter.load(Ordering::Relaxed));
    registry.register(
        "chute_storage_syncs",
        "Group commits carried out (fdatasync of the segments written since the last one)",
        load(&storage.syncs),
    );
    registry.register("chute_storage_appends", "Appends to the log", load(&storage.appends));
    registry.register(
        "chute_storage_bytes_written",
        "Bytes written to log segments",
        load(&storage.bytes_written),
    );
    registry.register(
        "chute_storage_sync_seconds",
        "Time each group commit took",
        storage.sync_seconds.clone(),
    );
}

fn register_process(registry: &mut Registry, process: &ProcessStats) {
    if let Some(seconds) = process.cpu_seconds {
        registry.register(
            "chute_process_cpu_seconds",
            "User and system CPU time of the server process",
            ConstCounter::new(seconds),
        );
    }
    if let Some(bytes) = process.resident_bytes {
        registry.register(
            "chute_process_resident_memory_bytes",
            "Resident memory of the server process",
            ConstGauge::new(bytes),
        );
    }
    if let Some(bytes) = process.resident_peak_bytes {
        registry.register(
            "chute_process_resident_memory_peak_bytes",
            "Peak resident memory of the server process",
            ConstGauge::new(bytes),
        );
    }
}

/// The payload cache (docs/STORAGE.md §17): what it holds against its limit, and the reads
/// that bring evicted payloads back.
fn register_payload_cache(registry: &mut Registry, cache: &PayloadCacheStats) {
    registry.register(
        "chute_payload_cache_limit_bytes",
        "storage.payload_cache_bytes: payload bytes of queued messages held in memory before the coldest leave it",
        gauge(cache.cache_bytes),
    );
    registry.register(
        "chute_payload_cache_held_bytes",
        "Payload bytes of queued messages held in memory now (read back and not yet delivered included)",
        gauge(cache.held_bytes),
    );
    registry.register(
        "chute_payload_evicted_bytes",
        "Payload bytes that left memory for the log, since the start",
        ConstCounter::new(cache.evicted_bytes_total),
    );
    registry.register(
        "chute_payload_reads",
        "Reads of payloads from the log, since the start",
        ConstCounter::new(cache.reads_total),
    );
    registry.register(
        "chute_payload_read_bytes",
        "Bytes those reads spanned",
        ConstCounter::new(cache.read_bytes_total),
    );
    registry.register(
        "chute_payload_reads_in_flight",
        "Reads of payloads from the log not yet answered",
        gauge(cache.reads_in_flight),
    );
    registry.register(
        "chute_payload_cold_messages",
        "Ready messages held only in the log, payload and metadata, in cold runs",
        gauge(cache.cold_messages),
    );
    registry.register(
        "chute_payload_cold_runs",
        "Cold runs: stretches of a queue's line held as where their records are",
        gauge(cache.cold_runs),
    );
}

fn register_broker(registry: &mut Registry, stats: &BrokerStats) {
    registry.register("chute_connections", "Open client connections", gauge(stats.connections));
    registry.register("chute_queues", "Queues", gauge(stats.queues.len() as u64));
    let auth = &stats.auth;
    let logins = Family::<ResultLabels, Counter>::default();
    let outcomes = [
        ("ok", auth.logins_succeeded),
        ("failed", auth.logins_failed),
        ("blocked", auth.logins_blocked),
    ];
    for (result, count) in outcomes {
        logins.get_or_create(&ResultLabels { result }).inc_by(count);
    }
    registry.register(
        "chute_auth_logins",
        "Client logins by result: ok, failed (wrong or unusable credentials), blocked (the source failed too often)",
        logins,
    );
    registry.register(
        "chute_auth_denied",
        "Requests refused with not-authorized",
        ConstCounter::new(auth.denied),
    );
    let alarms = Family::<ResourceLabels, U64Gauge>::default();
    for (resource, raised) in [("memory", stats.alarm_memory), ("disk", stats.alarm_disk)] {
        alarms.get_or_create(&ResourceLabels { resource }).set(raised.into());
    }
    registry.register(
        "chute_alarm_active",
        "1 while the resource alarm is raised (publishes are held), else 0",
        alarms,
    );
    register_payload_cache(registry, &stats.payload_cache);
    registry.register(
        "chute_connections_blocked",
        "Connections holding a publish for a resource alarm (not read until it clears)",
        gauge(stats.connections_blocked),
    );
    registry.register(
        "chute_partial_frames_bytes",
        "Bytes held for client frames still arriving, all connections together",
        gauge(stats.partial_frames_bytes),
    );
    let totals = &stats.totals;
    let counters = [
        ("chute_messages_published", "Messages accepted into queues", totals.published),
        ("chute_messages_delivered", "Deliveries to consumers", totals.delivered),
        ("chute_messages_acked", "Deliveries acked", totals.acked),
        ("chute_messages_nacked", "Deliveries nacked", totals.nacked),
        (
            "chute_messages_dead_lettered",
            "Messages moved to a dead-letter queue",
            totals.dead_lettered,
        ),
    ];
    for (name, help, value) in counters {
        let help = format!("{help}, summed over the queues that exist");
        registry.register(name, help, ConstCounter::new(value));
    }
    registry.register("chute_log_segments", "Log segment files", gauge(stats.log_segments));
    registry.register(
        "chute_log_bytes",
        "Record bytes in the log segments",
        gauge(stats.log_bytes),
    );

    let by_key = Family::<KeyLabels, U64Gauge>::default();
    for (key, count) in &stats.log_segments_by_key {
        by_key.get_or_create(&KeyLabels { key: super::json::key_label(*key) }).set(*count);
    }
    registry.register(
        "chute_log_segments_by_key",
        "Log segment files by the key they are sealed with (none: in clear)",
        by_key,
    );

    let messages = Family::<QueueStateLabels, U64Gauge>::default();
    let bytes = Family::<QueueLabels, U64Gauge>::default();
    for queue in &stats.queues {
        let states = [
            ("ready", queue.ready),
            ("delayed", queue.delayed),
            ("in_flight", queue.in_flight),
            ("group_blocked", queue.group_blocked),
        ];
        for (state, count) in states {
            let labels = QueueStateLabels { queue: queue.name.clone(), state };
            messages.get_or_create(&labels).set(count);
        }
        bytes.get_or_create(&QueueLabels { queue: queue.name.clone() }).set(queue.bytes);
    }
    registry.register("chute_queue_messages", "Messages a queue holds, by state", messages);
    registry.register("chute_queue_bytes", "Payload bytes a queue holds", bytes);
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueReasonLabels {
    queue: String,
    reason: &'static str,
}

/// What the alert rules (and `deploy/prometheus/chute-alerts.yml`) look at per queue.
/// `now_unix_ms`: the scrape's wall clock, which the messages' publish times are on.
fn register_queue_health(registry: &mut Registry, stats: &BrokerStats, now_unix_ms: u64) {
    let consumers = Family::<QueueLabels, U64Gauge>::default();
    let breakers_open = Family::<QueueLabels, U64Gauge>::default();
    let oldest_age = Family::<QueueLabels, Gauge<f64, AtomicU64>>::default();
    let dead_lettered = Family::<QueueLabels, Counter>::default();
    let refused = Family::<QueueReasonLabels, Counter>::default();
    for (queue, health) in stats.queues.iter().zip(&stats.queue_health) {
        let labels = QueueLabels { queue: queue.name.clone() };
        consumers.get_or_create(&labels).set(health.consumers);
        breakers_open.get_or_create(&labels).set(health.breakers_open);
        let age_ms = health
            .oldest_ready_published_unix_ms
            .map_or(0, |published| now_unix_ms.saturating_sub(published));
        oldest_age.get_or_create(&labels).set(age_ms as f64 / 1_000.0);
        dead_lettered.get_or_create(&labels).inc_by(queue.counters.dead_lettered);
        let reasons = [
            ("queue_full", health.refusals.queue_full),
            ("rate_limited", health.refusals.rate_limited),
        ];
        for (reason, count) in reasons {
            refused
                .get_or_create(&QueueReasonLabels { queue: queue.name.clone(), reason })
                .inc_by(count);
        }
    }
    registry.register("chute_queue_consumers", "Consumers subscribed to a queue", consumers);
    registry.register(
        "chute_queue_consumer_breakers_open",
        "A queue's consumers whose circuit breaker is open",
        breakers_open,
    );
    registry.register(
        "chute_queue_oldest_ready_age_seconds",
        "How long the head of a queue's ready line (the oldest of each priority's first message) has waited since it was published; 0 with nothing ready",
        oldest_age,
    );
    registry.register(
        "chute_queue_dead_lettered",
        "Messages a queue moved to its dead-letter queue, since it was created or the server started",
        dead_lettered,
    );
    registry.register(
        "chute_publish_refused",
        "Publishes a queue refused, by reason: queue_full (full, overflow = reject-publish), rate_limited (a reject rate limit had no token)",
        refused,
    );
    registry.register(
        "chute_storage_failed",
        "1 once storage has failed and the broker halted, else 0",
        gauge(stats.halted.is_some().into()),
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    rule: String,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceiverLabels {
    receiver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceiverOutcomeLabels {
    receiver: String,
    outcome: &'static str,
}

/// The alerts standing (`chute_alerts_firing`) and what the webhooks did.
fn register_alerts(registry: &mut Registry, board: &crate::alerts::AlertBoard) {
    let firing = Family::<AlertLabels, U64Gauge>::default();
    for alert in board.alerts() {
        let labels = AlertLabels {
            rule: alert.rule.clone(),
            queue: alert.queue.clone().unwrap_or_default(),
        };
        firing
            .get_or_create(&labels)
            .set((alert.state == chute_core::alerts::AlertState::Firing).into());
    }
    registry.register(
        "chute_alerts_firing",
        "1 while the built-in alert rule fires for the queue (empty for broker-wide rules); 0 while pending or resolved",
        firing,
    );
    let outcomes = Family::<ReceiverOutcomeLabels, Counter>::default();
    let dropped = Family::<ReceiverLabels, Counter>::default();
    for (receiver, counters) in board.receivers() {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counts = [
            ("delivered", load(&counters.delivered)),
            ("retried", load(&counters.retried)),
            ("failed", load(&counters.failed)),
        ];
        for (outcome, count) in counts {
            outcomes
                .get_or_create(&ReceiverOutcomeLabels { receiver: receiver.clone(), outcome })
                .inc_by(count);
        }
        dropped.get_or_create(&ReceiverLabels { receiver }).inc_by(load(&counters.dropped));
    }
    registry.register(
        "chute_alert_notifications",
        "Alert webhook notifications by outcome: delivered (2xx), retried (an attempt failed and was retried), failed (given up after attempts_max)",
        outcomes,
    );
    registry.register(
        "chute_alert_notifications_dropped",
        "Alert webhook notifications dropped from a full receiver queue (the oldest first)",
        dropped,
    );
}

fn gauge(value: u64) -> ConstGauge<u64> {
    ConstGauge::new(value)
}

#[cfg(test)]
mod tests {
    use chute_core::policy::alarm::ResourceReading;
    use chute_core::{Broker, BrokerConfig, Instant};
    use chute_protocol::QueueOptions;

    use super::*;

    /// The value of the series `name` (with its labels, as written), if the page has it.
    fn value(page: &str, series: &str) -> Option<f64> {
        page.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    fn snapshot() -> BrokerStats {
        let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
        let short_of_disk =
            ResourceReading { rss_bytes: 0, memory_total_bytes: 0, disk_free_bytes: 0 };
        broker.handle_input(Instant::ZERO, chute_core::Input::Resources(short_of_disk));
        broker.declare_queue("jobs", QueueOptions::default(), false).unwrap();
        while broker.poll_output().is_some() {}
        broker.stats()
    }

    /// Every documented series is on the page, under exactly its documented name.
    #[test]
    fn names_are_exactly_the_documented_ones() {
        let storage = StorageMetrics::default();
        storage.syncs.store(3, Ordering::Relaxed);
        storage.observe_sync(0.000_2);
        let process = ProcessStats {
            cpu_seconds: Some(1.5),
            resident_bytes: Some(4096),
            resident_peak_bytes: Some(8192),
        };
        let counters = ServerCounters::default();
        counters.reloads.succeeded.store(2, Ordering::Relaxed);
        counters.reloads.failed.store(1, Ordering::Relaxed);
        counters.reloads.last_success_unix_s.store(1_700_000_000, Ordering::Relaxed);
        counters.log_lines_dropped.store(5, Ordering::Relaxed);
        counters.tls.handshakes.store(6, Ordering::Relaxed);
        counters.tls.handshakes_timed_out.store(1, Ordering::Relaxed);
        counters.tls.handshakes_client_certificate_refused.store(2, Ordering::Relaxed);
        counters.tls.handshakes_failed_other.store(3, Ordering::Relaxed);
        counters.tls.handshakes_refused_over_limit.store(4, Ordering::Relaxed);
        counters.tls.certificate_reloads_ok.store(7, Ordering::Relaxed);
        counters.tls.certificate_reloads_failed.store(8, Ordering::Relaxed);
        counters.tls.certificate_expiry_unix_s.store(1_900_000_000, Ordering::Relaxed);
        let page = encode(Some(&snapshot()), &storage, &process, &counters, 0);
        let expected = [
            ("chute_up", 1.0),
            ("chute_config_reloads_total{result=\"ok\"}", 2.0),
            ("chute_config_reloads_total{result=\"failed\"}", 1.0),
            ("chute_config_last_reload_success_timestamp_seconds", 1_700_000_000.0),
            ("chute_log_lines_dropped_total", 5.0),
            ("chute_audit_dropped_total", 0.0),
            ("chute_auth_logins_total{result=\"failed\"}", 0.0),
            ("chute_tls_handshakes_total", 6.0),
            ("chute_tls_handshakes_failed_total{reason=\"timeout\"}", 1.0),
            ("chute_tls_handshakes_failed_total{reason=\"client_certificate\"}", 2.0),
            ("chute_tls_handshakes_failed_total{reason=\"error\"}", 3.0),
            ("chute_tls_handshakes_refused_total", 4.0),
            ("chute_tls_handshakes_in_progress", 0.0),
            ("chute_tls_certificate_reloads_total{result=\"ok\"}", 7.0),
            ("chute_tls_certificate_reloads_total{result=\"failed\"}", 8.0),
            ("chute_tls_certificate_expiry_timestamp_seconds", 1_900_000_000.0),
            ("chute_storage_syncs_total", 3.0),
            ("chute_storage_appends_total", 0.0),
            ("chute_storage_bytes_written_total", 0.0),
            ("chute_storage_sync_seconds_count", 1.0),
            ("chute_storage_sync_seconds_bucket{le=\"0.00025\"}", 1.0),
            ("chute_storage_sync_seconds_bucket{le=\"0.0001\"}", 0.0),
            ("chute_process_cpu_seconds_total", 1.5),
            ("chute_process_resident_memory_bytes", 4096.0),
            ("chute_process_resident_memory_peak_bytes", 8192.0),
            ("chute_connections", 0.0),
            ("chute_queues", 1.0),
            ("chute_partial_frames_bytes", 0.0),
            ("chute_alarm_active{resource=\"memory\"}", 0.0),
            ("chute_alarm_active{resource=\"disk\"}", 1.0),
            ("chute_connections_blocked", 0.0),
            ("chute_payload_cache_limit_bytes", 268_435_456.0),
            ("chute_payload_cache_held_bytes", 0.0),
            ("chute_payload_evicted_bytes_total", 0.0),
            ("chute_payload_reads_total", 0.0),
            ("chute_payload_read_bytes_total", 0.0),
            ("chute_payload_reads_in_flight", 0.0),
            ("chute_payload_cold_messages", 0.0),
            ("chute_payload_cold_runs", 0.0),
            ("chute_messages_published_total", 0.0),
            ("chute_messages_delivered_total", 0.0),
            ("chute_messages_acked_total", 0.0),
            ("chute_messages_nacked_total", 0.0),
            ("chute_messages_dead_lettered_total", 0.0),
            ("chute_log_segments", 1.0),
            ("chute_log_segments_by_key{key=\"none\"}", 1.0),
            ("chute_queue_messages{queue=\"jobs\",state=\"ready\"}", 0.0),
            ("chute_queue_messages{queue=\"jobs\",state=\"delayed\"}", 0.0),
            ("chute_queue_messages{queue=\"jobs\",state=\"in_flight\"}", 0.0),
            ("chute_queue_messages{queue=\"jobs\",state=\"group_blocked\"}", 0.0),
            ("chute_queue_bytes{queue=\"jobs\"}", 0.0),
            ("chute_queue_consumers{queue=\"jobs\"}", 0.0),
            ("chute_queue_consumer_breakers_open{queue=\"jobs\"}", 0.0),
            ("chute_queue_oldest_ready_age_seconds{queue=\"jobs\"}", 0.0),
            ("chute_queue_dead_lettered_total{queue=\"jobs\"}", 0.0),
            ("chute_publish_refused_total{queue=\"jobs\",reason=\"queue_full\"}", 0.0),
            ("chute_publish_refused_total{queue=\"jobs\",reason=\"rate_limited\"}", 0.0),
            ("chute_storage_failed", 0.0),
        ];
        for (series, want) in expected {
            assert_eq!(value(&page, series), Some(want), "{series} in\n{page}");
        }
        assert!(value(&page, "chute_log_bytes").unwrap() > 0.0, "{page}");
        assert!(page.contains("# TYPE chute_storage_syncs_total counter"), "{page}");
    }

    /// Without a snapshot (recovering), the process and storage metrics are still served.
    #[test]
    fn without_a_broker_only_process_and_storage_remain() {
        let page = encode(
            None,
            &StorageMetrics::default(),
            &ProcessStats::default(),
            &ServerCounters::default(),
            0,
        );
        assert_eq!(value(&page, "chute_up"), Some(1.0));
        assert_eq!(value(&page, "chute_storage_syncs_total"), Some(0.0));
        assert!(!page.contains("chute_queues"), "{page}");
        assert!(!page.contains("chute_process_cpu"), "{page}");
        assert!(
            !page.contains("chute_tls_certificate_expiry"),
            "no certificate, no expiry: {page}"
        );
    }
}
