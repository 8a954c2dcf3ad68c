//! The same seed replays the same run, bit for bit: the property every failure report relies
//! on (a failing seed is only useful if it fails again, the same way, under `--trace`).

use chute_sim::{SimConfig, Simulation};

fn config(seed: u64) -> SimConfig {
    SimConfig::new(seed).fault_phase_ms(2_000)
}

/// Two runs of a seed produce the same trace hash and the same number of events.
#[test]
fn a_seed_replays_bit_for_bit() {
    for seed in [0, 1, 7, 12_345] {
        let first = Simulation::new(config(seed)).run().expect("invariants hold");
        let second = Simulation::new(config(seed)).run().expect("invariants hold");
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
        assert_eq!(first.events, second.events, "seed {seed}");
        assert_eq!(first.stats, second.stats, "seed {seed}");
    }
}

/// Different seeds explore different runs (the hash is not a constant).
#[test]
fn different_seeds_differ() {
    let a = Simulation::new(config(1)).run().expect("invariants hold");
    let b = Simulation::new(config(2)).run().expect("invariants hold");
    assert_ne!(a.trace_hash, b.trace_hash);
}

/// The full trace is a view of the same run: asking for it changes nothing else.
#[test]
fn tracing_does_not_change_the_run() {
    let plain = Simulation::new(config(3)).run().expect("invariants hold");
    let traced = Simulation::new(config(3).full_trace(true)).run().expect("invariants hold");
    assert_eq!(plain.trace_hash, traced.trace_hash);
    assert_eq!(traced.trace.len() as u64, traced.events);
}
