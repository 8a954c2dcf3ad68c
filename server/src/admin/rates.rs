//! Rates per second of counters the broker only reports as totals, for the overview and the
//! connection list.
//!
//! Samples are taken when someone asks (a sampler running every second would cost a walk of
//! every queue each second, whether anyone looks or not). A rate spans from the newest kept
//! sample at least [`RATE_INTERVAL_MIN`] old to now; a counter that sample lacks (a connection
//! accepted since, or no sample at all yet) counts from zero at the moment it started, which
//! the caller says. A few samples are kept: one per [`RATE_INTERVAL_MIN`] over the last
//! [`RATE_HISTORY`], and always the newest, so occasional requests still get a rate over the
//! time since the previous one.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The shortest span a rate is computed over: shorter ones jump with every batch.
pub const RATE_INTERVAL_MIN: Duration = Duration::from_secs(1);
/// How long samples are kept (the newest one always is).
pub const RATE_HISTORY: Duration = Duration::from_secs(10);

/// Counters by key, sampled now and then.
#[derive(Debug)]
pub struct Rates<K> {
    samples: VecDeque<Sample<K>>,
}

impl<K> Default for Rates<K> {
    fn default() -> Rates<K> {
        Rates { samples: VecDeque::new() }
    }
}

#[derive(Debug)]
struct Sample<K> {
    at: Instant,
    totals: BTreeMap<K, u64>,
}

/// A counter's rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Per second, to two decimals.
    pub per_second: f64,
    /// The span it was measured over.
    pub interval_ms: u64,
}

impl<K: Ord + Clone> Rates<K> {
    /// Records `totals` as read at `now` and returns each one's rate. `started` says when a
    /// counter was zero, for a counter the base sample lacks.
    pub fn record(
        &mut self,
        now: Instant,
        totals: BTreeMap<K, u64>,
        started: impl Fn(&K) -> Instant,
    ) -> BTreeMap<K, Rate> {
        let base = self.samples.iter().rev().find(|sample| sample.at + RATE_INTERVAL_MIN <= now);
        let rates = totals
            .iter()
            .map(|(key, total)| {
                let (since, then) =
                    match base.and_then(|base| Some((base.at, *base.totals.get(key)?))) {
                        Some(known) => known,
                        None => (started(key), 0),
                    };
                (
                    key.clone(),
                    rate(total.saturating_sub(then), now.saturating_duration_since(since)),
                )
            })
            .collect();
        self.keep(now, totals);
        rates
    }

    /// Keeps this sample if the newest kept one is [`RATE_INTERVAL_MIN`] old, and forgets
    /// those older than [`RATE_HISTORY`] but the newest.
    fn keep(&mut self, now: Instant, totals: BTreeMap<K, u64>) {
        let due = self.samples.back().is_none_or(|newest| newest.at + RATE_INTERVAL_MIN <= now);
        if due {
            self.samples.push_back(Sample { at: now, totals });
        }
        while self.samples.len() > 1 && self.samples[0].at + RATE_HISTORY < now {
            self.samples.pop_front();
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.samples.len()
    }
}

fn rate(count: u64, interval: Duration) -> Rate {
    let interval_ms = interval.as_millis() as u64;
    let per_second = if interval.is_zero() { 0.0 } else { count as f64 / interval.as_secs_f64() };
    Rate { per_second: (per_second * 100.0).round() / 100.0, interval_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(values: &[(&'static str, u64)]) -> BTreeMap<&'static str, u64> {
        values.iter().copied().collect()
    }

    /// With no sample yet, a rate counts from the moment the counter started at zero.
    #[test]
    fn the_first_rate_counts_from_the_start() {
        let start = Instant::now();
        let mut rates = Rates::default();
        let now = start + Duration::from_secs(4);
        let got = rates.record(now, totals(&[("published", 10)]), |_| start);
        assert_eq!(got["published"], Rate { per_second: 2.5, interval_ms: 4000 });
    }

    /// Later rates span from the newest sample at least a second old: what happened before
    /// it does not count.
    #[test]
    fn later_rates_span_the_last_interval() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut rates = Rates::default();
        rates.record(at(10_000), totals(&[("published", 1_000)]), |_| start);
        let got = rates.record(at(12_000), totals(&[("published", 1_010)]), |_| start);
        assert_eq!(got["published"], Rate { per_second: 5.0, interval_ms: 2000 });
        // Half a second later, the base is still the sample two and a half seconds back.
        let got = rates.record(at(12_500), totals(&[("published", 1_030)]), |_| start);
        assert_eq!(got["published"], Rate { per_second: 12.0, interval_ms: 2500 });
    }

    /// A counter the base sample lacks (a new connection) counts from its own start.
    #[test]
    fn a_new_counter_counts_from_its_own_start() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut rates = Rates::default();
        rates.record(at(1_000), totals(&[("old", 5)]), |_| start);
        let started = |key: &&str| if *key == "new" { at(2_500) } else { start };
        let got = rates.record(at(3_000), totals(&[("old", 5), ("new", 4)]), started);
        assert_eq!(got["old"].per_second, 0.0);
        assert_eq!(got["new"], Rate { per_second: 8.0, interval_ms: 500 });
    }

    /// A total that went down (a deleted queue took its counters along) is a rate of zero,
    /// not an overflow.
    #[test]
    fn a_shrinking_total_is_no_negative_rate() {
        let start = Instant::now();
        let mut rates = Rates::default();
        rates.record(start + Duration::from_secs(1), totals(&[("acked", 50)]), |_| start);
        let got = rates.record(start + Duration::from_secs(3), totals(&[("acked", 20)]), |_| start);
        assert_eq!(got["acked"].per_second, 0.0);
    }

    /// However often it is asked, the sampler keeps about one sample a second for the last
    /// ten seconds, and always the newest.
    #[test]
    fn samples_are_bounded() {
        let start = Instant::now();
        let mut rates = Rates::default();
        for ms in (0..60_000).step_by(10) {
            rates.record(start + Duration::from_millis(ms), totals(&[("x", ms)]), |_| start);
        }
        assert!(rates.kept() <= 12, "{} samples kept", rates.kept());
        let later = start + Duration::from_secs(600);
        let got = rates.record(later, totals(&[("x", 59_990 + 5_400)]), |_| start);
        assert_eq!(got["x"].interval_ms, 600_000 - 59_000, "from the newest kept sample");
    }
}
