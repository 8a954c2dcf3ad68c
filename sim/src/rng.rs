//! The simulator's one source of randomness: SplitMix64, seeded from the run's seed.
//!
//! Every random choice in a run (latencies, chunk sizes, faults, workload, the broker's own
//! jitter seed) is drawn from one `SimRng` in one order, so a seed replays bit for bit. It uses
//! integer arithmetic only, so the sequence is the same on every platform.

use chute_core::rng::Rng;

#[derive(Clone, Debug)]
pub struct SimRng {
    /// The core's generator (SplitMix64), which the broker's jitter uses too.
    inner: Rng,
}

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        // Mixed so that seeds 0, 1, 2... start far apart.
        SimRng { inner: Rng::new(seed ^ 0x6A09_E667_F3BC_C908) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `0..n`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.inner.below_inclusive(n - 1)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "empty range {low}..={high}");
        low + self.below(high - low + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }

    /// An index into a non-empty slice.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Roughly exponential with mean `mean` (a sum of two uniform draws, skewed short): enough
    /// for inter-arrival times, and integer-only.
    pub fn interval(&mut self, mean: u64) -> u64 {
        let mean = mean.max(1);
        if self.chance(700) {
            self.range(0, mean)
        } else {
            self.range(mean, mean * 3)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SimRng::new(7);
        let mut b = SimRng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn ranges_are_inclusive_and_bounded() {
        let mut rng = SimRng::new(1);
        let draws: Vec<u64> = (0..1000).map(|_| rng.range(3, 5)).collect();
        assert!(draws.iter().all(|d| (3..=5).contains(d)));
        assert!(draws.contains(&3) && draws.contains(&5));
    }
}
