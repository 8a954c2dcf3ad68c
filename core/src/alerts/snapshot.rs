//! What the rules look at: a few numbers per queue and for the whole broker, taken by
//! [`Broker::alert_snapshot`](crate::Broker::alert_snapshot) with the driver's storage metrics.

/// The broker at one evaluation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The wall clock when it was taken, in Unix ms: alerts' `since` is on it.
    pub unix_ms: u64,
    /// Every queue, in name order.
    pub queues: Vec<QueueSnapshot>,
    pub alarm_memory: bool,
    pub alarm_disk: bool,
    pub storage_failed: bool,
    /// Storage sync latencies since the start.
    pub sync_latency: SyncLatencyBuckets,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    pub name: String,
    pub ready: u64,
    pub consumers: u64,
    pub breakers_open: u64,
    /// How long the oldest ready message has waited since it was published.
    pub oldest_ready_age_ms: Option<u64>,
    /// Counters since the queue was created or the broker started.
    pub dead_lettered_total: u64,
    pub refused_total: u64,
}

/// A latency histogram: `counts[i]` observations at most `bounds_us[i]` (and above the
/// bound before), and one more count past the last bound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncLatencyBuckets {
    /// Increasing upper bounds, in µs.
    pub bounds_us: Vec<u64>,
    /// `bounds_us.len() + 1` counts (or none at all: no histogram).
    pub counts: Vec<u64>,
}
