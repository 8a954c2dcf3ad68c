//! Runs that once failed, kept so the bugs they found stay fixed. Each names what it found.
//! (A seed's run depends on the simulator's workload generator too: if that changes, these
//! still have to pass, but may no longer reach the old bug; the README lists the bugs.)

use chute_sim::{SimConfig, Simulation};

/// A publish whose `Published` record started a new segment put its id in that segment's
/// checkpoint ahead of the record; a machine crash kept the checkpoint and tore off the record,
/// and after the restart the dedup window swallowed the publisher's retry: a confirmed message
/// that was never stored. (Fixed in `core/src/broker/publish.rs`: log, then remember the id.)
#[test]
fn dedup_id_never_outlives_its_record() {
    let configs = [
        SimConfig::new(5011).consumers(0).fault_phase_ms(4_000),
        SimConfig::new(3218).publishers(4).consumers(8).fault_phase_ms(6_000),
    ];
    for config in configs {
        Simulation::new(config).run().unwrap_or_else(|f| panic!("{f}"));
    }
}
