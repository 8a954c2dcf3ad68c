//! Retry delays: exponential growth from a base, capped, with optional full jitter.

use chute_protocol::BackoffPolicy;

use crate::rng::Rng;

/// Fractional bits of the fixed-point delay. 64 is the most that cannot overflow a `u128`: a
/// delay of at most `u32::MAX` ms times a factor of at most `u32::MAX` percent stays below
/// 2^128. So many bits keep the rounding error below 2^-25 ms even after thousands of steps.
const FRACTION_BITS: u32 = 64;

/// How long to wait before retrying a message whose attempt number `failed_attempt` (1-based:
/// the attempt that just failed) failed.
///
/// Without jitter this is [`capped_delay_ms`]. With jitter it is a uniform draw from
/// `[0, capped_delay_ms]` ("full jitter"): consumers that failed together, say because a
/// database went down, then retry spread over the whole window instead of together.
///
/// Draws exactly one number from `rng` when `policy.jitter` is set and none otherwise, so a
/// replay with the same seed stays in step.
pub fn retry_delay_ms(policy: &BackoffPolicy, failed_attempt: u32, rng: &mut Rng) -> u64 {
    let capped_ms = capped_delay_ms(policy, failed_attempt);
    if policy.jitter {
        rng.below_inclusive(capped_ms)
    } else {
        capped_ms
    }
}

/// `min(max_ms, base_ms × (factor_percent / 100)^(failed_attempt − 1))`, rounded down: the
/// delay without jitter, and the upper bound of the jittered one.
///
/// Integer arithmetic only, so every platform computes the same delay. The product is kept in
/// fixed point with [`FRACTION_BITS`] fractional bits, which makes it exact whenever the true
/// value is a whole number of ms (e.g. factor 200) and otherwise at most 1 ms low, only when
/// the true value lies within 2^-25 ms above a whole number.
///
/// Multiplying stops as soon as the delay exceeds `max_ms`, so any `failed_attempt` up to
/// `u32::MAX` is cheap: at most about 2,230 steps (factor 101 %, base 1 ms, max `u32::MAX`
/// ms), usually a handful. `failed_attempt` 0 is treated as 1. A `factor_percent` below 100 is
/// refused by queue validation; here it counts as 100 (a constant delay), which keeps the
/// function total and the delay from shrinking.
pub fn capped_delay_ms(policy: &BackoffPolicy, failed_attempt: u32) -> u64 {
    let base_ms = u64::from(policy.base_ms);
    let max_ms = u64::from(policy.max_ms);
    let growths = failed_attempt.saturating_sub(1);
    if base_ms == 0 || growths == 0 || policy.factor_percent <= 100 {
        return base_ms.min(max_ms);
    }
    let max_fixed = u128::from(max_ms) << FRACTION_BITS;
    let mut delay_fixed = u128::from(base_ms) << FRACTION_BITS;
    for _ in 0..growths {
        if delay_fixed > max_fixed {
            break;
        }
        // Below 2^96 times a factor below 2^32: cannot overflow.
        delay_fixed = delay_fixed * u128::from(policy.factor_percent) / 100;
    }
    let delay_ms = (delay_fixed >> FRACTION_BITS).min(u128::from(max_ms));
    u64::try_from(delay_ms).expect("capped at a u32")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    // Named, because proptest's prelude also exports an `Rng` (rand's trait).
    use crate::rng::Rng;

    fn policy(base_ms: u32, factor_percent: u32, max_ms: u32, jitter: bool) -> BackoffPolicy {
        BackoffPolicy { base_ms, factor_percent, max_ms, jitter }
    }

    fn delays_ms(policy: &BackoffPolicy, seed: u64, attempts: u32) -> Vec<u64> {
        let mut rng = Rng::new(seed);
        (1..=attempts).map(|attempt| retry_delay_ms(policy, attempt, &mut rng)).collect()
    }

    /// The default-like policy doubles from 1 s until the 60 s cap and then stays there.
    #[test]
    fn doubles_until_the_cap() {
        let doubling = policy(1_000, 200, 60_000, false);
        assert_eq!(
            delays_ms(&doubling, 0, 9),
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]
        );
    }

    /// A fractional factor compounds on the exact value, not on a rounded one: 1 ms at 150 %
    /// must still grow (1, 1.5, 2.25, 3.375, ...), where rounding each step would stay at 1.
    #[test]
    fn fractional_factor_compounds_exactly() {
        let slow = policy(1, 150, 1_000, false);
        let expected = [1, 1, 2, 3, 5, 7, 11, 17, 25, 38];
        let actual: Vec<u64> = (1..=10).map(|attempt| capped_delay_ms(&slow, attempt)).collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn factor_100_is_a_constant_delay() {
        let constant = policy(500, 100, 60_000, false);
        for attempt in [1, 2, 50, u32::MAX] {
            assert_eq!(capped_delay_ms(&constant, attempt), 500);
        }
    }

    #[test]
    fn factor_below_100_counts_as_constant() {
        assert_eq!(capped_delay_ms(&policy(500, 50, 60_000, false), 10), 500);
        assert_eq!(capped_delay_ms(&policy(500, 0, 60_000, false), 10), 500);
    }

    #[test]
    fn huge_attempts_saturate_at_the_cap() {
        for factor_percent in [101, 200, 1_000, u32::MAX] {
            let steep = policy(1, factor_percent, u32::MAX, false);
            assert_eq!(capped_delay_ms(&steep, u32::MAX), u64::from(u32::MAX));
        }
    }

    #[test]
    fn base_above_the_cap_is_capped_from_the_first_attempt() {
        assert_eq!(capped_delay_ms(&policy(10_000, 200, 3_000, false), 1), 3_000);
    }

    #[test]
    fn attempt_zero_counts_as_the_first() {
        let doubling = policy(1_000, 200, 60_000, false);
        assert_eq!(capped_delay_ms(&doubling, 0), capped_delay_ms(&doubling, 1));
    }

    /// Replay depends on this: the same seed gives the same delays.
    #[test]
    fn jitter_is_reproducible_from_the_seed() {
        let jittered = policy(1_000, 200, 60_000, true);
        assert_eq!(delays_ms(&jittered, 42, 20), delays_ms(&jittered, 42, 20));
        assert_ne!(delays_ms(&jittered, 1, 20), delays_ms(&jittered, 2, 20));
    }

    /// Jitter takes one draw per call, so a caller's later draws do not depend on whether
    /// the delay was capped, zero, or large.
    #[test]
    fn jitter_takes_exactly_one_draw() {
        let mut used = Rng::new(9);
        let mut fresh = Rng::new(9);
        retry_delay_ms(&policy(0, 200, 0, true), 3, &mut used);
        fresh.next_u64();
        assert_eq!(used.next_u64(), fresh.next_u64());

        let mut untouched = Rng::new(9);
        retry_delay_ms(&policy(1_000, 200, 60_000, false), 3, &mut untouched);
        assert_eq!(untouched.next_u64(), Rng::new(9).next_u64());
    }

    /// Full jitter spreads over the whole window, both ends included in reach.
    #[test]
    fn full_jitter_covers_the_window() {
        let jittered = policy(1_000, 200, 60_000, true);
        let mut rng = Rng::new(3);
        let draws: Vec<u64> = (0..2_000).map(|_| retry_delay_ms(&jittered, 3, &mut rng)).collect();
        assert!(draws.iter().all(|&d| d <= 4_000));
        assert!(draws.iter().any(|&d| d < 100) && draws.iter().any(|&d| d > 3_900));
    }

    /// The range the true value of `capped_delay_ms` must fall in: exact (u128 rationals)
    /// while numerator and denominator fit, otherwise from f64 logarithms with a tolerance.
    fn reference_ms(policy: &BackoffPolicy, failed_attempt: u32) -> std::ops::RangeInclusive<u64> {
        let base = u128::from(policy.base_ms);
        let max = u128::from(policy.max_ms);
        let growths = failed_attempt.saturating_sub(1);
        if base == 0 || growths == 0 || policy.factor_percent <= 100 {
            let exact = u64::try_from(base.min(max)).unwrap();
            return exact..=exact;
        }
        let (mut numerator, mut denominator) = (base, 1u128);
        for _ in 0..growths {
            let next = numerator.checked_mul(u128::from(policy.factor_percent));
            match (next, denominator.checked_mul(100)) {
                (Some(n), Some(d)) => (numerator, denominator) = (n, d),
                _ => return reference_f64_ms(policy, growths),
            }
            if numerator / denominator > max {
                let max = u64::from(policy.max_ms);
                return max..=max;
            }
        }
        let floor = u64::try_from(numerator / denominator).unwrap();
        let remainder = numerator % denominator;
        // Within 2^-24 ms above a whole number, fixed point may land just below it.
        let near_whole = remainder != 0 && (remainder << 24) < denominator;
        if near_whole {
            floor.saturating_sub(1)..=floor
        } else {
            floor..=floor
        }
    }

    fn reference_f64_ms(policy: &BackoffPolicy, growths: u32) -> std::ops::RangeInclusive<u64> {
        let ratio = f64::from(policy.factor_percent) / 100.0;
        let log = f64::from(policy.base_ms).ln() + f64::from(growths) * ratio.ln();
        let value = log.exp();
        let max = u64::from(policy.max_ms);
        // `as` saturates, so an infinite value becomes u64::MAX and then the cap.
        let low = ((value * (1.0 - 1e-9)).floor() as u64).min(max);
        let high = ((value * (1.0 + 1e-9)).floor() as u64).min(max);
        low..=high
    }

    fn any_policy() -> impl Strategy<Value = BackoffPolicy> {
        (
            prop_oneof![0..=10_000u32, any::<u32>()],
            prop_oneof![100..=400u32, 100..=u32::MAX],
            prop_oneof![0..=100_000u32, any::<u32>()],
            any::<bool>(),
        )
            .prop_map(|(base_ms, factor_percent, max_ms, jitter)| {
                policy(base_ms, factor_percent, max_ms, jitter)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Every delay is within the cap and the unjittered value; without jitter it is the
        /// reference value.
        #[test]
        fn delay_is_bounded_and_matches_the_reference(
            policy in any_policy(),
            failed_attempt in prop_oneof![1..=64u32, any::<u32>()],
            seed in any::<u64>(),
        ) {
            let capped_ms = capped_delay_ms(&policy, failed_attempt);
            let delay_ms = retry_delay_ms(&policy, failed_attempt, &mut Rng::new(seed));
            prop_assert!(delay_ms <= capped_ms);
            prop_assert!(capped_ms <= u64::from(policy.max_ms));
            if !policy.jitter {
                prop_assert_eq!(delay_ms, capped_ms);
            }
            let reference = reference_ms(&policy, failed_attempt);
            prop_assert!(reference.contains(&capped_ms), "{capped_ms} not in {reference:?}");
        }

        /// More failures never shorten the unjittered delay.
        #[test]
        fn delay_never_shrinks(policy in any_policy(), failed_attempt in 1..u32::MAX) {
            prop_assert!(
                capped_delay_ms(&policy, failed_attempt)
                    <= capped_delay_ms(&policy, failed_attempt + 1)
            );
        }
    }
}
