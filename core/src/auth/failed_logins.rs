//! Failed logins per source: past a burst, a source's further attempts are refused before
//! any credential is looked at, until its budget refills. With the fixed delay before each
//! refusal, guessing passwords from one address is slow, and from many is bounded by
//! `failure_sources_max` in memory.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chute_protocol::{RateLimit, RateLimitPolicy};

use super::AuthConfig;
use crate::policy::token_bucket::{Refill, TokenBucket};
use crate::time::Instant;

/// Whom failures are counted against: an IPv4 address, or an IPv6 /64 (one host usually
/// holds a whole /64, and would otherwise have 2^64 fresh budgets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    V4(u32),
    V6Prefix(u64),
}

impl Source {
    pub fn of(addr: IpAddr) -> Source {
        match addr {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(u32::from(v4)),
                None => Source::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// One token bucket per source that failed recently. A failure costs `refill_ms` tokens of a
/// bucket refilled at one token a millisecond and holding `burst × refill_ms`: `burst`
/// failures at once, then one more every `refill_ms` (the token bucket counts whole tokens a
/// second, so the millisecond is its unit here).
#[derive(Debug)]
pub struct FailedLogins {
    buckets: BTreeMap<Source, TokenBucket>,
    limit: RateLimit,
    cost: u32,
    sources_max: usize,
}

impl FailedLogins {
    pub fn new(config: &AuthConfig) -> FailedLogins {
        let burst = config.failed_logins_burst.saturating_mul(config.failed_login_refill_ms);
        FailedLogins {
            buckets: BTreeMap::new(),
            limit: RateLimit { per_second: 1000, burst, policy: RateLimitPolicy::Reject },
            cost: config.failed_login_refill_ms,
            sources_max: config.failure_sources_max as usize,
        }
    }

    /// Until when `source` may not try again, if it has used up its failures.
    pub fn blocked_until(&self, now: Instant, source: Source) -> Option<Instant> {
        let bucket = self.buckets.get(&source)?;
        match bucket.refill_time(now, self.cost)? {
            Refill::At(at) => Some(at),
            Refill::Never => unreachable!("the cost is at most the burst and the bucket refills"),
        }
    }

    /// Counts a failure against `source`.
    pub fn record(&mut self, now: Instant, source: Source) {
        if !self.buckets.contains_key(&source) && self.buckets.len() >= self.sources_max {
            self.make_room(now);
        }
        let limit = self.limit;
        let bucket = self.buckets.entry(source).or_insert_with(|| TokenBucket::new(limit, now));
        // Several connections from one source may fail at once, past its budget: the bucket
        // is then empty, and the source blocked, either way.
        let _ = bucket.try_take(now, self.cost);
        assert!(self.buckets.len() <= self.sources_max.max(1));
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Forgets the sources whose budget has refilled (they hold nothing a fresh entry would
    /// not); if none has, the one closest to refilled, which is the least suspicious.
    fn make_room(&mut self, now: Instant) {
        let full = u64::from(self.limit.burst);
        self.buckets.retain(|_, bucket| bucket.available(now) < full);
        if self.buckets.len() >= self.sources_max {
            let fullest = self.buckets.iter().max_by_key(|(_, bucket)| bucket.available(now));
            let fullest = *fullest.expect("sources_max is at least 1").0;
            self.buckets.remove(&fullest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(burst: u32, refill_ms: u32, sources_max: u32) -> AuthConfig {
        AuthConfig {
            failed_logins_burst: burst,
            failed_login_refill_ms: refill_ms,
            failure_sources_max: sources_max,
            ..AuthConfig::default()
        }
    }

    fn at_ms(ms: u64) -> Instant {
        Instant::ZERO.plus_ms(ms)
    }

    fn v4(last: u8) -> Source {
        Source::of(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn a_source_is_blocked_after_its_burst_and_freed_by_the_refill() {
        let mut failed = FailedLogins::new(&config(3, 1000, 100));
        for _ in 0..3 {
            assert_eq!(failed.blocked_until(at_ms(0), v4(1)), None);
            failed.record(at_ms(0), v4(1));
        }
        assert_eq!(failed.blocked_until(at_ms(0), v4(1)), Some(at_ms(1000)));
        assert_eq!(failed.blocked_until(at_ms(0), v4(2)), None, "other sources are not");
        assert_eq!(failed.blocked_until(at_ms(1000), v4(1)), None);
        failed.record(at_ms(1000), v4(1));
        assert_eq!(failed.blocked_until(at_ms(1500), v4(1)), Some(at_ms(2000)));
    }

    #[test]
    fn ipv6_hosts_count_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Source::of(mapped), v4(1));
    }

    #[test]
    fn memory_is_bounded_and_suspects_are_kept_longest() {
        let mut failed = FailedLogins::new(&config(2, 1000, 3));
        failed.record(at_ms(0), v4(1));
        failed.record(at_ms(0), v4(1));
        failed.record(at_ms(0), v4(2));
        failed.record(at_ms(0), v4(3));
        failed.record(at_ms(0), v4(4));
        assert_eq!(failed.len(), 3);
        assert!(failed.blocked_until(at_ms(0), v4(1)).is_some(), "the blocked source stays");
        // Once refilled, entries carry nothing and go first.
        failed.record(at_ms(10_000), v4(5));
        assert_eq!(failed.len(), 1);
    }
}
