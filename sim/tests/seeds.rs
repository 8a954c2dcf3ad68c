//! A handful of seeds of the default workload pass every invariant. The long searches live in
//! `.ci/run` (release build, hundreds of seeds) and in `chute-sim --seeds A..B`.

use chute_sim::{Faults, Outcome, SimConfig, Simulation};

/// Every fault kind shows up across a few default seeds, and the invariants hold.
#[test]
fn default_seeds_pass_with_faults() {
    let mut crashes = 0;
    let mut checked = 0;
    for seed in 0..4 {
        let summary = match Simulation::new(SimConfig::new(seed)).run() {
            Ok(summary) => summary,
            Err(failure) => panic!("{failure}"),
        };
        let stats = &summary.stats;
        crashes += stats.process_crashes + stats.machine_crashes;
        checked += stats.fifo_checked;
        assert!(stats.confirmed > 0 && stats.acks > 0, "{}", summary.line());
    }
    assert!(crashes > 0, "no crash in four default seeds");
    assert!(checked > 0, "no first delivery was FIFO-checked");
}

/// Probers (users with permissions of their own) are refused and allowed, the users file is
/// reloaded under them, and every invariant holds.
#[test]
fn probers_meet_refusals_permissions_and_reloads() {
    let (mut denied, mut allowed, mut reloads) = (0, 0, 0);
    for seed in 0..3 {
        let summary = Simulation::new(SimConfig::new(seed)).run().unwrap_or_else(|f| panic!("{f}"));
        denied += summary.stats.denied;
        allowed += summary.stats.probes_allowed;
        reloads += summary.stats.reloads;
    }
    assert!(denied > 0 && allowed > 0 && reloads > 0, "{denied} {allowed} {reloads}");
}

/// Without faults every run drains, and nothing is lost or refused.
#[test]
fn calm_runs_drain() {
    for seed in 0..2 {
        let config = SimConfig::new(seed).faults(Faults::none()).fault_phase_ms(2_000);
        let summary = Simulation::new(config).run().unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(summary.outcome, Outcome::Drained);
        assert_eq!(summary.stats.published, summary.stats.confirmed);
        assert_eq!(summary.stats.process_crashes + summary.stats.machine_crashes, 0);
    }
}

/// A run with only publishers and the liveness-phase drainers (no consumers during faults)
/// still accounts for every message.
#[test]
fn no_consumers_until_the_drain() {
    let config = SimConfig::new(9).consumers(0).fault_phase_ms(1_500);
    Simulation::new(config).run().unwrap_or_else(|f| panic!("{f}"));
}
