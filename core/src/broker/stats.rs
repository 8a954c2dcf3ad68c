//! A snapshot of the whole broker for operators: the admin endpoint's metrics and health.

use chute_protocol::{QueueCounters, QueueStats};

use super::payloads::PayloadCacheStats;
use super::Broker;
use crate::alerts::{QueueSnapshot, Snapshot, SyncLatencyBuckets};
use crate::ids::QueueId;
use crate::policy::alarm::Resource;
use crate::policy::breaker::BreakerView;
use crate::queue::PublishRefusals;
use crate::storage::failure::StorageFailure;
use crate::storage::seal::KeyId;
use crate::time::Instant;

/// What the broker holds and has done, at one instant. Built by [`Broker::stats`]; plain data,
/// so the driver can hand it to another task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerStats {
    /// Open connections, including ones still in the handshake.
    pub connections: u64,
    /// Every queue, in name order.
    pub queues: Vec<QueueStats>,
    /// What alert rules and operators need beyond `queues`, one per entry of `queues`, in the
    /// same order. Kept apart because `QueueStats` is a wire type.
    pub queue_health: Vec<QueueHealth>,
    /// The queues' counters added up. Counters of deleted queues are gone with them, and all of
    /// them restart from zero with the process.
    pub totals: QueueCounters,
    /// Log segments on disk (or being created).
    pub log_segments: u64,
    /// Record bytes in those segments (segment headers not counted).
    pub log_bytes: u64,
    /// Log segments by the key they are sealed with (`None`: in clear), in key order: a key
    /// may be removed from the configuration once no segment uses it.
    pub log_segments_by_key: Vec<(Option<KeyId>, u64)>,
    /// Bytes held for frames that are still arriving, on every connection together.
    pub partial_frames_bytes: u64,
    /// Why storage failed, once it did: the broker then serves nothing.
    pub halted: Option<StorageFailure>,
    /// A graceful stop has begun.
    pub shutting_down: bool,
    /// Lame duck: clients were told to go away, and the broker stops when the window ends.
    pub draining: bool,
    pub auth: AuthCounters,
    /// Resource alarms raised now.
    pub alarm_memory: bool,
    pub alarm_disk: bool,
    /// Connections holding a publish for a resource alarm.
    pub connections_blocked: u64,
    pub payload_cache: PayloadCacheStats,
}

/// A queue's health, beside its [`QueueStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueHealth {
    /// When the head of the ready line (the oldest of each priority level's first message) was
    /// published (Unix ms); `None` with nothing ready. See `Ready::oldest_published_unix_ms`.
    pub oldest_ready_published_unix_ms: Option<u64>,
    /// Consumers subscribed, all of them (`QueueStats::consumers` lists one page).
    pub consumers: u64,
    /// Consumers whose circuit breaker is open now.
    pub breakers_open: u64,
    /// Publishes refused since the queue was created or recovered.
    pub refusals: PublishRefusals,
}

/// Logins and refusals since the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthCounters {
    pub logins_succeeded: u64,
    /// Logins that failed: wrong or unusable credentials.
    pub logins_failed: u64,
    /// Logins refused unread, the source having failed too often.
    pub logins_blocked: u64,
    /// Requests refused with `not-authorized`.
    pub denied: u64,
}

impl Broker {
    /// A snapshot for operators. It costs a walk over every queue and its consumers: meant for
    /// a scrape every few seconds, not for every input.
    pub fn stats(&self) -> BrokerStats {
        let queues: Vec<QueueStats> =
            self.queue_ids.values().map(|id| self.queue_stats(*id)).collect();
        let queue_health =
            self.queue_ids.values().map(|id| self.queue_health(*id, self.now)).collect();
        let mut totals = QueueCounters::default();
        for queue in &queues {
            add_counters(&mut totals, &queue.counters);
        }
        let (log_segments, log_bytes) =
            self.log_segments().fold((0, 0), |(count, bytes), (base, state)| {
                (count + 1, bytes + state.end_lsn.bytes_since(base))
            });
        let mut by_key = std::collections::BTreeMap::new();
        for (_, state) in self.log_segments() {
            *by_key.entry(state.key_id).or_insert(0) += 1;
        }
        BrokerStats {
            connections: self.connections.len() as u64,
            queues,
            queue_health,
            totals,
            log_segments,
            log_bytes,
            log_segments_by_key: by_key.into_iter().collect(),
            partial_frames_bytes: self.partial.held_bytes,
            halted: self.halted.clone(),
            shutting_down: self.shutting_down,
            draining: self.drain_ends_at.is_some(),
            auth: self.auth.counters,
            alarm_memory: self.alarm_raised(Resource::Memory),
            alarm_disk: self.alarm_raised(Resource::Disk),
            connections_blocked: self.blocked_connection_count(),
            payload_cache: self.payload_cache_stats(),
        }
    }

    /// What the alert rules look at, at `now` (the driver's clock: the broker's own stands
    /// still while no input comes, and ages must grow all the same). A few numbers per queue,
    /// without the walk over every message that [`stats`](Self::stats) makes: this runs on
    /// the broker task every evaluation interval.
    pub fn alert_snapshot(&self, now: Instant, sync_latency: SyncLatencyBuckets) -> Snapshot {
        let now_unix_ms = self.config.wall_clock().unix_ms(now);
        let queues = self
            .queue_ids
            .iter()
            .map(|(name, id)| {
                let queue = &self.queues[id];
                let health = self.queue_health(*id, now);
                QueueSnapshot {
                    name: name.clone(),
                    ready: queue.ready_len(),
                    consumers: health.consumers,
                    breakers_open: health.breakers_open,
                    oldest_ready_age_ms: health
                        .oldest_ready_published_unix_ms
                        .map(|published| now_unix_ms.saturating_sub(published)),
                    dead_lettered_total: queue.counters.dead_lettered,
                    refused_total: health.refusals.queue_full + health.refusals.rate_limited,
                }
            })
            .collect();
        Snapshot {
            unix_ms: now_unix_ms,
            queues,
            alarm_memory: self.alarm_raised(Resource::Memory),
            alarm_disk: self.alarm_raised(Resource::Disk),
            storage_failed: self.halted.is_some(),
            sync_latency,
        }
    }

    fn queue_health(&self, id: QueueId, now: Instant) -> QueueHealth {
        let queue = &self.queues[&id];
        let breakers_open = queue
            .consumers()
            .iter()
            .filter(|key| {
                let subscription = &self.connections[&key.conn].subscriptions[&key.subscription];
                matches!(subscription.breaker.state(now), BreakerView::Open { .. })
            })
            .count();
        QueueHealth {
            oldest_ready_published_unix_ms: queue.oldest_ready_published_unix_ms(),
            consumers: queue.consumers().len() as u64,
            breakers_open: breakers_open as u64,
            refusals: queue.refusals,
        }
    }

    /// The stats of the named queue, as a `QueueStats` request would answer them.
    pub fn queue_stats_by_name(&self, name: &str) -> Option<QueueStats> {
        self.queue_ids.get(name).map(|id| self.queue_stats(*id))
    }
}

fn add_counters(total: &mut QueueCounters, queue: &QueueCounters) {
    // Destructured so that a new counter cannot be forgotten here.
    let QueueCounters {
        published,
        delivered,
        acked,
        nacked,
        rejected,
        redelivered,
        timed_out,
        expired,
        dead_lettered,
        deduplicated,
        dropped,
    } = queue;
    total.published += published;
    total.delivered += delivered;
    total.acked += acked;
    total.nacked += nacked;
    total.rejected += rejected;
    total.redelivered += redelivered;
    total.timed_out += timed_out;
    total.expired += expired;
    total.dead_lettered += dead_lettered;
    total.deduplicated += deduplicated;
    total.dropped += dropped;
}

#[cfg(test)]
mod tests {
    use chute_protocol::QueueOptions;

    use crate::{Broker, BrokerConfig, Instant};

    fn broker() -> Broker {
        let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
        while broker.poll_output().is_some() {}
        broker
    }

    /// A new broker reports its first segment, no queues, and that it is serving.
    #[test]
    fn new_broker_is_empty_and_serving() {
        let stats = broker().stats();
        assert_eq!(stats.connections, 0);
        assert!(stats.queues.is_empty());
        assert_eq!(stats.totals, Default::default());
        assert_eq!(stats.log_segments, 1);
        assert_eq!(stats.halted, None);
        assert!(!stats.shutting_down);
    }

    /// Queues are listed in name order, and their declarations are log bytes.
    #[test]
    fn queues_are_listed_by_name() {
        let mut broker = broker();
        let before = broker.stats().log_bytes;
        for name in ["b", "a"] {
            broker.declare_queue(name, QueueOptions::default(), false).unwrap();
        }
        let stats = broker.stats();
        let names: Vec<&str> = stats.queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(stats.log_bytes > before);
        assert_eq!(broker.queue_stats_by_name("a").unwrap().ready, 0);
        assert_eq!(broker.queue_stats_by_name("missing"), None);
    }

    #[test]
    fn shutdown_is_reported() {
        let mut broker = broker();
        broker.shutdown(Instant::ZERO);
        assert!(broker.stats().shutting_down);
    }
}
