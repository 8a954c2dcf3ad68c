//! What a run reports: a summary when every invariant held, a failure when one broke.

use std::fmt;

use crate::trace::TraceLine;

/// How a passing run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Faults stopped, and every queue drained with every confirmed message accounted for.
    Drained,
    /// A bit flipped in synced data and recovery refused the log, naming the damage: the
    /// correct reaction, and the end of the run (nothing can be checked past a refused start).
    CorruptionDetected { error: String },
    /// Part of the log was lost while the broker was down and recovery refused it, naming
    /// what is missing (the manifest's check): the correct reaction, and the end of the run.
    LossDetected { error: String },
}

/// Counts of what happened in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub published: u64,
    pub confirmed: u64,
    pub deliveries: u64,
    pub acks: u64,
    pub nacks: u64,
    pub rejects: u64,
    pub touches: u64,
    pub holds: u64,
    pub connections: u64,
    pub process_crashes: u64,
    pub machine_crashes: u64,
    pub fsync_failures: u64,
    /// Reads of evicted payloads completed, and those that failed (EIO or short).
    pub reads: u64,
    pub read_failures: u64,
    pub bit_flips: u64,
    pub segment_losses: u64,
    pub resets: u64,
    pub partitions: u64,
    pub stalls: u64,
    pub syncs: u64,
    pub fifo_checked: u64,
    pub dead_letters_audited: u64,
    /// The most bytes the broker had emitted and the network had not taken, on any connection.
    pub outbox_bytes_max: u64,
    /// Torn tails recovery cut.
    pub truncations: u64,
    /// Confirmed messages on `Interval` queues a machine crash was allowed to lose.
    pub lost_allowed: u64,
    /// First deliveries whose dispatch order was unknown (not FIFO-checked).
    pub fifo_unordered: u64,
    /// Dead letters audited, by reason: max-attempts, rejected, expired.
    pub dead_max_attempts: u64,
    pub dead_rejected: u64,
    pub dead_expired: u64,
    /// From the clients' sessions: publishes sent again on a new connection, settles of
    /// deliveries whose connection was gone, breaker openings and the publishes it refused.
    pub republished: u64,
    pub void_settles: u64,
    pub breaker_opens: u64,
    pub breaker_rejections: u64,
    /// Operations of probers the broker refused with `not-authorized`, the ones it allowed,
    /// and users-file reloads.
    pub denied: u64,
    pub probes_allowed: u64,
    pub reloads: u64,
}

#[derive(Clone, Debug)]
pub struct Summary {
    pub seed: u64,
    pub outcome: Outcome,
    /// Simulated time the run covered.
    pub sim_ms: u64,
    /// Hash of every trace event: equal for two runs of one seed, or the run is not
    /// deterministic.
    pub trace_hash: u64,
    pub events: u64,
    pub stats: Stats,
    /// Every trace line, when the config asked for the full trace.
    pub trace: Vec<TraceLine>,
}

impl Summary {
    /// One line for the terminal.
    pub fn line(&self) -> String {
        let s = &self.stats;
        let outcome = match &self.outcome {
            Outcome::Drained => "PASS drained".to_string(),
            Outcome::CorruptionDetected { .. } => "PASS corruption-detected".to_string(),
            Outcome::LossDetected { .. } => "PASS loss-detected".to_string(),
        };
        format!(
            "seed {} {outcome} sim {:.1}s trace {:016x} events {} | published {} confirmed {} \
             delivered {} acked {} nacked {} rejected {} dlq-audited {} ({}m {}r {}e) fifo-checked {} (+{} unordered) | \
             crashes {}p+{}m fsync-failures {} reads {} ({} failed) flips {} losses {} truncations {} lost-allowed {} resets {} \
             partitions {} stalls {} syncs {} outbox-max {} | clients: connections {} \
             republished {} void-settles {} breaker-opens {} ({} refused) | users: denied {} \
             allowed {} reloads {}",
            self.seed,
            self.sim_ms as f64 / 1000.0,
            self.trace_hash,
            self.events,
            s.published,
            s.confirmed,
            s.deliveries,
            s.acks,
            s.nacks,
            s.rejects,
            s.dead_letters_audited,
            s.dead_max_attempts,
            s.dead_rejected,
            s.dead_expired,
            s.fifo_checked,
            s.fifo_unordered,
            s.process_crashes,
            s.machine_crashes,
            s.fsync_failures,
            s.reads,
            s.read_failures,
            s.bit_flips,
            s.segment_losses,
            s.truncations,
            s.lost_allowed,
            s.resets,
            s.partitions,
            s.stalls,
            s.syncs,
            s.outbox_bytes_max,
            s.connections,
            s.republished,
            s.void_settles,
            s.breaker_opens,
            s.breaker_rejections,
            s.denied,
            s.probes_allowed,
            s.reloads,
        )
    }
}

/// A broken invariant (or a panic in the core), with what is needed to reproduce it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub seed: u64,
    /// The invariant's short name (`lost-confirmed`, `fifo`, `attempts-max`, ...).
    pub invariant: &'static str,
    pub detail: String,
    /// Simulated time of the failure.
    pub at_ms: u64,
    pub trace_hash: u64,
    /// The end of the trace (all of it with the full trace on).
    pub trace: Vec<TraceLine>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} FAIL [{}] at {:.3}s: {}",
            self.seed,
            self.invariant,
            self.at_ms as f64 / 1000.0,
            self.detail
        )?;
        if !self.trace.is_empty() {
            writeln!(f, "last {} trace events:", self.trace.len())?;
            for line in &self.trace {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}
