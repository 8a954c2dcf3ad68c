//! The bounded samples rate rules look back over: a counter's increase over a window, and a
//! histogram's 99th percentile over a window.

use std::collections::VecDeque;

use crate::time::Instant;

/// The most samples a history keeps. Samples closer together than `window / (this − 2)` are
/// not kept (the newest value is always passed in), so a history covers its window whatever
/// the evaluation interval.
pub const HISTORY_SAMPLES_MAX: usize = 64;

/// Samples of one value: at most [`HISTORY_SAMPLES_MAX`], the oldest at or before the start
/// of the window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Samples<T> {
    samples: VecDeque<(Instant, T)>,
}

impl<T: Clone> Samples<T> {
    /// Records `value` at `now` (unless a sample is too recent) and returns the baseline: the
    /// newest sample at or before `now − window_ms`, or the oldest one if none is that old.
    /// `None` the first time.
    fn record(&mut self, now: Instant, value: &T, window_ms: u64) -> Option<T> {
        let window_start =
            Instant::from_nanos(now.as_nanos().saturating_sub(window_ms.saturating_mul(1_000_000)));
        // Drop what lies before the newest sample at or before the start of the window.
        while self.samples.len() >= 2 && self.samples[1].0 <= window_start {
            self.samples.pop_front();
        }
        let baseline = self.samples.front().map(|(_, v)| v.clone());
        let spacing_ms = window_ms / (HISTORY_SAMPLES_MAX as u64 - 2);
        let due = self
            .samples
            .back()
            .is_none_or(|(at, _)| now.saturating_since(*at).as_millis() as u64 >= spacing_ms);
        if due {
            if self.samples.len() == HISTORY_SAMPLES_MAX {
                self.samples.pop_front();
            }
            self.samples.push_back((now, value.clone()));
        }
        debug_assert!(self.samples.len() <= HISTORY_SAMPLES_MAX);
        baseline
    }
}

/// A counter's recent samples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterHistory(Samples<u64>);

impl CounterHistory {
    /// How much the counter grew over the last `window_ms`, `value` being its value at `now`;
    /// `None` without an earlier sample. A counter that went down was reset (a queue deleted
    /// and declared again, a restart): its whole value counts as the increase, as Prometheus'
    /// `increase()` reads it.
    pub fn increase(&mut self, now: Instant, value: u64, window_ms: u64) -> Option<u64> {
        let baseline = self.0.record(now, &value, window_ms)?;
        Some(if value >= baseline { value - baseline } else { value })
    }

    pub fn len(&self) -> usize {
        self.0.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.samples.is_empty()
    }
}

/// A histogram's recent samples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramHistory(Samples<Vec<u64>>);

impl HistogramHistory {
    /// The upper bound of the bucket the 99th percentile of the observations of the last
    /// `window_ms` falls in, given the histogram's counts now (`bounds.len() + 1` of them, the
    /// last past every bound; reported as the last bound + 1). `None` without an earlier
    /// sample or without observations in the window.
    pub fn p99(
        &mut self,
        now: Instant,
        bounds: &[u64],
        counts: &[u64],
        window_ms: u64,
    ) -> Option<u64> {
        let counts = counts.to_vec();
        let baseline = self.0.record(now, &counts, window_ms)?;
        if baseline.len() != counts.len() || counts.len() != bounds.len() + 1 {
            return None;
        }
        let reset = counts.iter().zip(&baseline).any(|(now, before)| now < before);
        let deltas: Vec<u64> = match reset {
            true => counts,
            false => counts.iter().zip(&baseline).map(|(now, before)| now - before).collect(),
        };
        let total: u64 = deltas.iter().sum();
        if total == 0 {
            return None;
        }
        // The smallest bucket holding at least 99 % of the observations (rounded up).
        let rank = total - total / 100;
        let mut seen = 0;
        for (index, count) in deltas.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(
                    bounds
                        .get(index)
                        .copied()
                        .unwrap_or_else(|| bounds.last().map_or(1, |b| b + 1)),
                );
            }
        }
        unreachable!("the counts add up to the total")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_s(s: u64) -> Instant {
        Instant::from_millis(s * 1_000)
    }

    /// The increase is measured against the sample at the start of the window.
    #[test]
    fn increase_over_the_window() {
        let mut history = CounterHistory::default();
        assert_eq!(history.increase(at_s(0), 10, 60_000), None, "no baseline yet");
        assert_eq!(history.increase(at_s(30), 15, 60_000), Some(5));
        assert_eq!(history.increase(at_s(60), 20, 60_000), Some(10));
        // At 90 s the window starts at 30 s: the baseline is the sample of 30 s.
        assert_eq!(history.increase(at_s(90), 20, 60_000), Some(5));
        assert_eq!(history.increase(at_s(150), 20, 60_000), Some(0), "no growth in the window");
    }

    #[test]
    fn a_reset_counts_its_whole_value() {
        let mut history = CounterHistory::default();
        history.increase(at_s(0), 100, 60_000);
        assert_eq!(history.increase(at_s(5), 3, 60_000), Some(3));
    }

    /// However often it is fed, a history stays bounded.
    #[test]
    fn history_is_bounded() {
        let mut history = CounterHistory::default();
        for ms in 0..100_000 {
            history.increase(Instant::from_millis(ms), ms, 3_600_000);
        }
        assert!(history.len() <= HISTORY_SAMPLES_MAX, "{}", history.len());
        let mut dense = CounterHistory::default();
        for s in 0..1_000 {
            dense.increase(at_s(s), s, 10_000);
        }
        assert!(dense.len() <= 12, "only the window is kept: {}", dense.len());
    }

    /// The 99th percentile of the window's observations, by bucket bound.
    #[test]
    fn p99_of_the_window() {
        let bounds = [100, 1_000, 10_000];
        let mut history = HistogramHistory::default();
        assert_eq!(history.p99(at_s(0), &bounds, &[1_000, 0, 0, 0], 60_000), None);
        assert_eq!(history.p99(at_s(5), &bounds, &[1_000, 0, 0, 0], 60_000), None, "no syncs");
        // 98 fast, 2 slow: the 99th percentile is slow.
        assert_eq!(history.p99(at_s(10), &bounds, &[1_098, 0, 2, 0], 60_000), Some(10_000));
        // 990 fast and 10 very slow over the window: 99 % are fast.
        assert_eq!(history.p99(at_s(15), &bounds, &[1_990, 0, 0, 10], 60_000), Some(100));
        let mut past = HistogramHistory::default();
        past.p99(at_s(0), &bounds, &[0, 0, 0, 0], 60_000);
        assert_eq!(past.p99(at_s(1), &bounds, &[0, 0, 0, 5], 60_000), Some(10_001));
    }
}
