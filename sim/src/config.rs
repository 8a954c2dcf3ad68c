//! What a run simulates: its seed, its actors, its workload and its faults.
//!
//! ```
//! use chute_sim::{Faults, SimConfig, Simulation};
//!
//! let config = SimConfig::new(7).publishers(2).consumers(3).fault_phase_ms(2_000);
//! let summary = Simulation::new(config).run().expect("invariants hold");
//! assert!(summary.sim_ms > 0);
//!
//! // No faults at all: a plain functional run.
//! let calm = SimConfig::new(7).faults(Faults::none());
//! Simulation::new(calm).run().expect("invariants hold");
//! ```

/// Rates of the faults injected during the fault phase. Rates are mean intervals in simulated
/// milliseconds (`None` disables the fault) or per-mille chances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Mean time between broker crashes.
    pub crash_every_ms: Option<u64>,
    /// Share of crashes that are machine crashes (only synced bytes survive, the last write may
    /// tear, directory changes since the last sync may be lost); the rest are process crashes.
    pub machine_crash_per_mille: u32,
    /// Mean time between connection resets (a random live connection).
    pub reset_every_ms: Option<u64>,
    /// Mean time between partitions (a random connection's traffic held, then delivered or
    /// reset).
    pub partition_every_ms: Option<u64>,
    /// Longest partition.
    pub partition_ms_max: u64,
    /// Mean time between consumer stalls (a consumer stops reading for a while).
    pub stall_every_ms: Option<u64>,
    pub stall_ms_max: u64,
    /// Mean time between resource alarms (a memory reading above the threshold, then one
    /// below it after up to `alarm_ms_max`): publishers are held meanwhile.
    pub alarm_every_ms: Option<u64>,
    pub alarm_ms_max: u64,
    /// Chance that an fsync fails (the broker must halt; the simulator then crashes and
    /// restarts it).
    pub fsync_failure_per_mille: u32,
    /// Chance that a read of evicted payloads fails: half of them with EIO, half short (the
    /// broker must halt; the simulator then crashes and restarts it).
    pub read_failure_per_mille: u32,
    /// Chance, per restart, that a bit of synced data flipped while the broker was down
    /// (recovery must refuse the log; the run then ends as "corruption detected").
    pub bit_flip_per_mille: u32,
    /// Chance, per restart, that an operator lost part of the log while the broker was down:
    /// the newest segment deleted or emptied, the oldest deleted, or the newest cut inside
    /// records the manifest says were synced. Recovery must refuse (the run then ends as "loss
    /// detected"), or lose nothing confirmed.
    pub segment_loss_per_mille: u32,
    /// Time the broker stays down after a crash.
    pub downtime_ms_max: u64,
    /// Mean time between users-file reloads (with users): a user's permissions narrowed, or
    /// now and then the user removed.
    pub reload_every_ms: Option<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            crash_every_ms: Some(2_500),
            machine_crash_per_mille: 500,
            reset_every_ms: Some(700),
            partition_every_ms: Some(1_500),
            partition_ms_max: 1_500,
            stall_every_ms: Some(1_500),
            stall_ms_max: 700,
            alarm_every_ms: Some(1_500),
            alarm_ms_max: 600,
            fsync_failure_per_mille: 1,
            read_failure_per_mille: 2,
            bit_flip_per_mille: 15,
            segment_loss_per_mille: 15,
            downtime_ms_max: 200,
            reload_every_ms: Some(1_500),
        }
    }
}

impl Faults {
    /// No faults: a functional run on a perfect network and disk (latencies and chunking stay).
    pub fn none() -> Faults {
        Faults {
            crash_every_ms: None,
            machine_crash_per_mille: 0,
            reset_every_ms: None,
            partition_every_ms: None,
            partition_ms_max: 0,
            stall_every_ms: None,
            stall_ms_max: 0,
            alarm_every_ms: None,
            alarm_ms_max: 0,
            fsync_failure_per_mille: 0,
            read_failure_per_mille: 0,
            bit_flip_per_mille: 0,
            segment_loss_per_mille: 0,
            downtime_ms_max: 0,
            reload_every_ms: None,
        }
    }
}

/// What clients do. Chances are per mille.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Mean time between a publisher's bursts, and the largest burst.
    pub publish_every_ms: u64,
    pub burst_max: u64,
    /// Chance that a message goes to a topic (fanned out by bindings) rather than a queue.
    pub topic_per_mille: u32,
    /// Chance that a message to `work` carries a group key.
    pub group_per_mille: u32,
    /// Chance that a message to `delayed` is delayed, and that it has a TTL of its own.
    pub delay_per_mille: u32,
    pub message_ttl_per_mille: u32,
    /// Chance of a payload of a few KiB (most are tens to hundreds of bytes).
    pub large_payload_per_mille: u32,
    /// What a consumer does with a delivery during the fault phase; the rest is acked.
    pub nack_per_mille: u32,
    pub reject_per_mille: u32,
    pub touch_per_mille: u32,
    /// Keeps the delivery past its lease (then acks it late).
    pub hold_per_mille: u32,
    /// Closes or drops its connection after this delivery.
    pub disconnect_per_mille: u32,
    /// Longest time a consumer takes to process a delivery.
    pub processing_ms_max: u64,
    /// Largest credit a consumer subscribes with.
    pub credit_max: u32,
    /// The liveness phase's drainer subscribes to every queue on one connection, instead of
    /// one connection per queue. Off by default: it trips a known liveness bug in the core (a
    /// queue whose dispatch stopped at a connection's outbound bound is not dispatched again
    /// when that connection drains; see sim/README.md).
    pub shared_drainer: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            publish_every_ms: 40,
            burst_max: 4,
            topic_per_mille: 250,
            group_per_mille: 300,
            delay_per_mille: 500,
            message_ttl_per_mille: 300,
            large_payload_per_mille: 20,
            nack_per_mille: 60,
            reject_per_mille: 20,
            touch_per_mille: 40,
            hold_per_mille: 30,
            disconnect_per_mille: 5,
            processing_ms_max: 40,
            credit_max: 32,
            shared_drainer: false,
        }
    }
}

/// One simulated run. Build with [`SimConfig::new`] and the setters; every field has a
/// default sized so that a run takes well under a second of wall time in release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    pub seed: u64,
    pub publishers: usize,
    pub consumers: usize,
    /// Users with permissions of their own, one prober each (at most
    /// `users::USERS_MAX`); 0 runs the broker without users (nothing checked).
    pub users: usize,
    pub workload: Workload,
    pub faults: Faults,
    /// Simulated time during which clients publish and faults are injected.
    pub fault_phase_ms: u64,
    /// Simulated time after the fault phase in which every queue must drain: no faults, no new
    /// publishes, consumers ack everything (dead-letter queues included).
    pub liveness_phase_ms: u64,
    /// The broker's `storage.segment_bytes_max`: small (the minimum, 64 KiB) by default, so
    /// that rotation, checkpoints, compaction and segment deletion happen in every run.
    pub segment_bytes_max: u64,
    /// Keep every trace line (for `--trace`), not just the tail a failure report shows.
    pub full_trace: bool,
    /// Encryption at rest: the broker seals its segments under a key drawn from the seed, so
    /// that recovery opens sealed records after every crash and torn write.
    pub encryption: bool,
    /// The planted bug to run with (see `chute_core::mutants`).
    #[cfg(feature = "mutants")]
    pub mutant: Option<chute_core::mutants::Mutant>,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            publishers: 3,
            consumers: 4,
            users: 3,
            workload: Workload::default(),
            faults: Faults::default(),
            fault_phase_ms: 5_000,
            liveness_phase_ms: 15_000,
            segment_bytes_max: 64 * 1024,
            full_trace: false,
            encryption: false,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }

    pub fn encryption(mut self, on: bool) -> SimConfig {
        self.encryption = on;
        self
    }

    pub fn seed(mut self, seed: u64) -> SimConfig {
        self.seed = seed;
        self
    }

    pub fn publishers(mut self, publishers: usize) -> SimConfig {
        self.publishers = publishers;
        self
    }

    pub fn consumers(mut self, consumers: usize) -> SimConfig {
        self.consumers = consumers;
        self
    }

    pub fn users(mut self, users: usize) -> SimConfig {
        self.users = users;
        self
    }

    pub fn workload(mut self, workload: Workload) -> SimConfig {
        self.workload = workload;
        self
    }

    pub fn faults(mut self, faults: Faults) -> SimConfig {
        self.faults = faults;
        self
    }

    pub fn fault_phase_ms(mut self, ms: u64) -> SimConfig {
        self.fault_phase_ms = ms;
        self
    }

    pub fn liveness_phase_ms(mut self, ms: u64) -> SimConfig {
        self.liveness_phase_ms = ms;
        self
    }

    pub fn segment_bytes_max(mut self, bytes: u64) -> SimConfig {
        self.segment_bytes_max = bytes;
        self
    }

    pub fn full_trace(mut self, full: bool) -> SimConfig {
        self.full_trace = full;
        self
    }

    #[cfg(feature = "mutants")]
    pub fn mutant(mut self, mutant: Option<chute_core::mutants::Mutant>) -> SimConfig {
        self.mutant = mutant;
        self
    }
}
