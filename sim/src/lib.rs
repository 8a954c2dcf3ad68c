//! # chute-sim
//!
//! A deterministic simulator for chute, in the manner of FoundationDB's simulator and
//! TigerBeetle's VOPR: the real broker core (`chute_core::Broker`, its log format and its
//! recovery) and many real client sessions (`chute_core::client::Session`) run on simulated
//! time, a simulated network and a simulated disk, with faults drawn from a seed, and every run
//! is checked against invariants. The same seed replays the same run, bit for bit.
//!
//! ```
//! use chute_sim::{Outcome, SimConfig, Simulation};
//!
//! let summary = Simulation::new(SimConfig::new(42).fault_phase_ms(1_000)).run().unwrap();
//! assert!(matches!(summary.outcome, Outcome::Drained | Outcome::CorruptionDetected { .. }));
//! // Same seed, same run.
//! let again = Simulation::new(SimConfig::new(42).fault_phase_ms(1_000)).run().unwrap();
//! assert_eq!(summary.trace_hash, again.trace_hash);
//! ```
//!
//! ## The world
//!
//! - Time jumps from event to event (an event queue keyed by time and sequence number); nothing
//!   sleeps. All randomness comes from one SplitMix64 seeded with the run's seed.
//! - Network (`net.rs`): per direction, bytes are cut into random chunks delivered in
//!   order after a random latency; a bounded window stands for the socket buffers, so the
//!   broker's `Flushed` accounting and backpressure are exercised. Faults: resets, partitions
//!   that heal (then flow, or reset), consumers that stop reading.
//! - Disk: segment files with written and synced lengths, write and fsync latency, a worker
//!   that carries requests out one at a time in order; fsync failures (the broker must halt);
//!   process crashes (written bytes survive, the write in progress may tear) and machine
//!   crashes (only synced bytes and directory changes survive, the unsynced tail may tear);
//!   bit flips in synced data, which recovery must refuse.
//! - The broker restarts through `Recovery`, one segment at a time as the server hands them
//!   over, on whatever the crash left, and the truncation it asks for is applied.
//!
//! ## Invariants
//!
//! Checked as the run goes, and at its end (see `oracle.rs` for how each is known):
//! no confirmed message is lost; nothing is delivered that was never published (ids and
//! payloads checked); nothing is first delivered before it is as durable as its queue promises;
//! first deliveries are FIFO per queue, priority and group, within one broker incarnation;
//! attempts never exceed `attempts_max` and never go down; every dead-letter entry has a true
//! reason and history; dedup holds; the bytes the broker emitted and the network has not taken
//! stay within `connection_outbound_bytes_max` plus a frame; recovery refuses every injected
//! corruption, accepts every log nothing corrupted, and cuts exactly the torn tail; after the
//! faults stop, every queue drains. With users (the default), probers logged in as users of
//! their own are refused, with `not-authorized` and their connection left open, exactly what
//! the simulator's own checker refuses under the users tables in force (reloads narrow them
//! and remove users, whose connections must close), and a refused publish is never stored,
//! delivered or confirmed (`probers.rs`).
//!
//! ## Reusing it
//!
//! [`SimConfig`] is a builder: tests in other crates can run seeds with their own workload and
//! fault mix (`Faults::none()` for a calm run) and assert on the [`Summary`].

mod actors;
mod config;
mod disk;
mod driver;
mod events;
mod net;
mod oracle;
mod probers;
mod report;
mod rng;
mod topology;
mod trace;
mod users;
mod world;

use std::panic::{catch_unwind, AssertUnwindSafe};

pub use config::{Faults, SimConfig, Workload};
pub use report::{Failure, Outcome, Stats, Summary};
pub use rng::SimRng;
pub use trace::{TraceEvent, TraceLine};

/// One run of the simulator.
pub struct Simulation {
    config: SimConfig,
}

impl Simulation {
    pub fn new(config: SimConfig) -> Simulation {
        Simulation { config }
    }

    /// Runs to the end: `Ok` when every invariant held, `Err` with the broken one (a panic in
    /// the core, such as a failed assertion, is a failure too).
    pub fn run(self) -> Result<Summary, Failure> {
        #[cfg(feature = "mutants")]
        chute_core::mutants::set(self.config.mutant);
        let seed = self.config.seed;
        let mut world = world::World::new(self.config);
        let result = catch_unwind(AssertUnwindSafe(|| world.run_events()));
        #[cfg(feature = "mutants")]
        chute_core::mutants::set(None);
        match result {
            Ok(()) => world.finish(),
            Err(panic) => {
                let detail = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic without a message".into());
                Err(world.failure_report(seed, "panic", detail))
            }
        }
    }
}

/// The names of the planted bugs this build can run with (empty without the `mutants`
/// feature).
pub fn mutant_names() -> Vec<&'static str> {
    #[cfg(feature = "mutants")]
    {
        chute_core::mutants::Mutant::ALL.iter().map(|m| m.name()).collect()
    }
    #[cfg(not(feature = "mutants"))]
    {
        Vec::new()
    }
}
