//! Token buckets for publish rate limits, in exact integer arithmetic.
//!
//! The balance is kept in nanotokens (tokens × 10^9). One nanosecond refills exactly
//! `per_second` nanotokens, so refilling never rounds, however the elapsed time is sliced,
//! and the instant at which tokens become available is exact to the nanosecond.

use chute_protocol::{RateLimit, RateLimitPolicy};

use crate::time::Instant;

const NANOTOKENS_PER_TOKEN: i128 = 1_000_000_000;

/// Why a [`TokenBucket::try_take`] was refused, and when to try again. Ordered by how long
/// the wait is, `Never` last, so the binding one of several buckets is their `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refill {
    /// The earliest instant at which the tokens asked for will be there, if nobody takes any
    /// before (saturating at the end of time).
    At(Instant),
    /// Never: more than `burst` tokens were asked for at once, or the bucket does not refill
    /// (`per_second` 0). Waiting cannot help; the caller must ask for less or fail.
    Never,
}

/// A bucket of `burst` tokens refilled at `per_second` tokens a second. It starts full.
///
/// `per_second` 0 means nothing ever refills: the bucket grants its first `burst` tokens and
/// then refuses forever (queue validation may forbid such a limit; the bucket stays total).
/// Inputs must carry a non-decreasing `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    limit: RateLimit,
    /// Tokens × 10^9 as of `updated_at`; at most `burst` tokens, never negative.
    nanotokens: i128,
    updated_at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Instant) -> TokenBucket {
        TokenBucket { limit, nanotokens: nanotokens(limit.burst), updated_at: now }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// What the caller does when the bucket is empty: pause the publisher or refuse.
    pub fn policy(&self) -> RateLimitPolicy {
        self.limit.policy
    }

    /// Takes `n` tokens if the bucket holds them; otherwise takes nothing and says when they
    /// will be there.
    pub fn try_take(&mut self, now: Instant, n: u32) -> Result<(), Refill> {
        self.refill(now);
        match self.shortfall(now, self.nanotokens, n) {
            Some(refill) => Err(refill),
            None => {
                self.nanotokens -= nanotokens(n);
                Ok(())
            }
        }
    }

    /// When [`try_take`](Self::try_take) of `n` would succeed, without taking anything:
    /// `None` if at `now`. A caller that must take from several buckets or none asks each
    /// first, then takes from all.
    pub fn refill_time(&self, now: Instant, n: u32) -> Option<Refill> {
        self.shortfall(now, self.nanotokens_at(now), n)
    }

    /// Whole tokens in the bucket at `now` (0 while in debt).
    pub fn available(&self, now: Instant) -> u64 {
        let tokens = self.nanotokens_at(now).max(0) / NANOTOKENS_PER_TOKEN;
        u64::try_from(tokens).expect("at most burst tokens")
    }

    fn refill(&mut self, now: Instant) {
        self.nanotokens = self.nanotokens_at(now);
        self.updated_at = now;
    }

    /// The balance at `now`: the balance at `updated_at` plus the refill since, up to
    /// `burst`. No overflow: the refill is below 2^64 ns × 2^32 per ns, and the balance is at
    /// most 2^62 above zero.
    fn nanotokens_at(&self, now: Instant) -> i128 {
        assert!(now >= self.updated_at, "time went backwards: {now:?} < {:?}", self.updated_at);
        let elapsed_ns = i128::from(now.as_nanos() - self.updated_at.as_nanos());
        let refilled = self.nanotokens + elapsed_ns * i128::from(self.limit.per_second);
        refilled.min(nanotokens(self.limit.burst))
    }

    /// Why `n` tokens cannot be taken at `now`, when the balance is `nanotokens_now`; `None`
    /// if they can.
    fn shortfall(&self, now: Instant, nanotokens_now: i128, n: u32) -> Option<Refill> {
        if n > self.limit.burst {
            return Some(Refill::Never);
        }
        let wanted = nanotokens(n);
        (nanotokens_now < wanted).then(|| self.refill_at(now, wanted - nanotokens_now))
    }

    /// When `missing` more nanotokens will have refilled, counting from `now`. Rounded up: at
    /// that nanosecond they are there, one nanosecond earlier they are not.
    fn refill_at(&self, now: Instant, missing: i128) -> Refill {
        debug_assert!(missing > 0);
        // `per_second` tokens a second is `per_second` nanotokens a nanosecond.
        let nanotokens_per_ns = i128::from(self.limit.per_second);
        if nanotokens_per_ns == 0 {
            return Refill::Never;
        }
        let wait_ns = (missing + nanotokens_per_ns - 1) / nanotokens_per_ns;
        let wait_ns = u64::try_from(wait_ns).unwrap_or(u64::MAX);
        Refill::At(Instant::from_nanos(now.as_nanos().saturating_add(wait_ns)))
    }
}

fn nanotokens(tokens: u32) -> i128 {
    i128::from(tokens) * NANOTOKENS_PER_TOKEN
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bucket(per_second: u32, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket::new(RateLimit { per_second, burst, policy: RateLimitPolicy::Pause }, now)
    }

    fn ns(nanos: u64) -> Instant {
        Instant::from_nanos(nanos)
    }

    #[test]
    fn starts_full() {
        let mut full = bucket(10, 5, ns(7));
        assert_eq!(full.available(ns(7)), 5);
        assert_eq!(full.try_take(ns(7), 5), Ok(()));
        assert_eq!(full.available(ns(7)), 0);
    }

    /// At 3 tokens a second a token takes 333,333,333⅓ ns: it is there at ...334, not ...333.
    #[test]
    fn refusal_names_the_exact_nanosecond() {
        let mut empty = bucket(3, 1, ns(0));
        empty.try_take(ns(0), 1).unwrap();
        assert_eq!(empty.try_take(ns(0), 1), Err(Refill::At(ns(333_333_334))));
        assert_eq!(empty.try_take(ns(333_333_333), 1), Err(Refill::At(ns(333_333_334))));
        assert_eq!(empty.try_take(ns(333_333_334), 1), Ok(()));
    }

    /// A refused take leaves the balance alone, so a smaller take can still succeed.
    #[test]
    fn refusal_takes_nothing() {
        let mut bucket = bucket(1, 5, ns(0));
        bucket.try_take(ns(0), 3).unwrap();
        assert_eq!(bucket.try_take(ns(0), 4), Err(Refill::At(ns(2_000_000_000))));
        assert_eq!(bucket.try_take(ns(0), 2), Ok(()));
    }

    /// However long the bucket sits, it holds at most `burst`.
    #[test]
    fn waiting_never_saves_more_than_burst() {
        let mut bucket = bucket(1_000, 5, ns(0));
        bucket.try_take(ns(0), 5).unwrap();
        let hour_later = Instant::from_millis(3_600_000);
        assert_eq!(bucket.available(hour_later), 5);
        assert_eq!(bucket.try_take(hour_later, 5), Ok(()));
        assert_eq!(bucket.try_take(hour_later, 1), Err(Refill::At(ns(3_600_001_000_000))));
    }

    #[test]
    fn more_than_burst_at_once_never_succeeds() {
        let mut bucket = bucket(1_000, 5, ns(0));
        assert_eq!(bucket.try_take(ns(0), 6), Err(Refill::Never));
        assert_eq!(bucket.try_take(Instant::from_millis(3_600_000), 6), Err(Refill::Never));
    }

    #[test]
    fn zero_rate_grants_burst_then_never_refills() {
        let mut bucket = bucket(0, 2, ns(0));
        assert_eq!(bucket.try_take(ns(0), 2), Ok(()));
        assert_eq!(bucket.try_take(ns(u64::MAX), 1), Err(Refill::Never));
        assert_eq!(bucket.available(ns(u64::MAX)), 0);
    }

    #[test]
    fn extreme_limits_do_not_overflow() {
        let mut bucket = bucket(u32::MAX, u32::MAX, ns(0));
        assert_eq!(bucket.try_take(ns(0), u32::MAX), Ok(()));
        assert_eq!(bucket.available(ns(u64::MAX)), u64::from(u32::MAX));
        assert_eq!(bucket.try_take(ns(u64::MAX), u32::MAX), Ok(()));
        assert_eq!(bucket.try_take(ns(u64::MAX), 1), Err(Refill::At(Instant::NEVER)));
    }

    /// Asking does not take: `refill_time` answers what `try_take` would, and leaves the
    /// tokens where they are.
    #[test]
    fn refill_time_predicts_without_taking() {
        let mut bucket = bucket(2, 1, ns(0));
        assert_eq!(bucket.refill_time(ns(0), 1), None);
        assert_eq!(bucket.refill_time(ns(0), 1), None);
        bucket.try_take(ns(0), 1).unwrap();
        assert_eq!(bucket.refill_time(ns(0), 1), Some(Refill::At(ns(500_000_000))));
        assert_eq!(bucket.refill_time(ns(0), 2), Some(Refill::Never));
    }

    /// The longest wait among several buckets is their `max`.
    #[test]
    fn refills_order_by_wait_with_never_last() {
        assert!(Refill::At(ns(1)) < Refill::At(ns(2)));
        assert!(Refill::At(ns(u64::MAX)) < Refill::Never);
    }

    #[test]
    #[should_panic(expected = "time went backwards")]
    fn time_going_backwards_is_a_bug() {
        let mut bucket = bucket(1, 1, ns(10));
        let _ = bucket.try_take(ns(9), 1);
    }

    fn any_limit() -> impl Strategy<Value = (u32, u32)> {
        let per_second = prop_oneof![0..=5u32, 1..=1_000u32, 1..=u32::MAX];
        let burst = prop_oneof![0..=5u32, 0..=100u32];
        (per_second, burst)
    }

    fn any_steps() -> impl Strategy<Value = Vec<(u64, u32)>> {
        let advance_ns = prop_oneof![Just(0u64), 0..=1_000u64, 0..=3_000_000_000u64];
        proptest::collection::vec((advance_ns, 0..=110u32), 0..60)
    }

    /// Whether every window from one grant to a later one (both included) granted at most
    /// `burst` tokens plus the refill over its length, in exact integers. The window from the
    /// bucket's creation is one of these, starting from a grant of 0 tokens.
    fn windows_within_limit(grants: &[(u64, u32)], per_second: u32, burst: u32) -> bool {
        (0..grants.len()).all(|first| {
            let mut granted_tokens = 0u128;
            grants[first..].iter().all(|&(at_ns, n)| {
                granted_tokens += u128::from(n);
                let window_ns = u128::from(at_ns - grants[first].0);
                let allowed =
                    u128::from(burst) * 1_000_000_000 + u128::from(per_second) * window_ns;
                granted_tokens * 1_000_000_000 <= allowed
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// In every window of time, never more than `burst + per_second × window` is granted,
        /// and every refusal names the exact nanosecond at which the same take succeeds.
        #[test]
        fn grants_are_bounded_and_refusals_exact(
            (per_second, burst) in any_limit(),
            start_ns in 0..=u64::MAX / 2,
            steps in any_steps(),
        ) {
            let start = ns(start_ns);
            let mut bucket = bucket(per_second, burst, start);
            let mut now = start;
            // (when, tokens) of every successful take.
            let mut grants: Vec<(u64, u32)> = vec![(start_ns, 0)];
            for (advance_ns, n) in steps {
                now = ns(now.as_nanos() + advance_ns);
                let predicted = bucket.refill_time(now, n);
                let taken = bucket.try_take(now, n);
                prop_assert_eq!(taken.err(), predicted);
                match taken {
                    Ok(()) => grants.push((now.as_nanos(), n)),
                    Err(Refill::At(at)) => {
                        prop_assert!(at > now);
                        let mut early = bucket.clone();
                        prop_assert!(early.try_take(ns(at.as_nanos() - 1), n).is_err());
                        let mut on_time = bucket.clone();
                        prop_assert_eq!(on_time.try_take(at, n), Ok(()));
                    }
                    Err(Refill::Never) => prop_assert!(n > burst || per_second == 0),
                }
            }
            prop_assert!(windows_within_limit(&grants, per_second, burst));
        }
    }
}
