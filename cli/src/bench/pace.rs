//! Fixed-rate publishing (W3), as the peer harness does it on tokio: message `i` is due at
//! `start + i / rate`, and the producer sleeps on a 1 ms timer, so at 2,000 msg/s each tick
//! sends the two messages that fell due in it. Each message is stamped when actually sent; how
//! far a send fell behind its due time is the send lag.

use std::time::{Duration, Instant};

/// Granularity of tokio's timer, which the peer harness sleeps on.
pub const TICK: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start: Instant,
    rate_per_s: f64,
}

impl Schedule {
    pub fn new(start: Instant, rate_per_s: f64) -> Schedule {
        assert!(rate_per_s.is_finite() && rate_per_s > 0.0, "rate {rate_per_s}");
        Schedule { start, rate_per_s }
    }

    /// When message `i` (0-based, of this producer) is due.
    pub fn due(&self, i: u64) -> Instant {
        // Whole nanoseconds, rounded, so that due times land exactly on ticks where they should.
        self.start + Duration::from_nanos((i as f64 * 1e9 / self.rate_per_s).round() as u64)
    }

    /// The timer tick at which a producer waiting for message `i` wakes: its due time rounded
    /// up to the next whole tick since the start (tokio rounds a sleep's deadline up the same
    /// way).
    pub fn wake_at(&self, i: u64) -> Instant {
        let since_start = self.due(i) - self.start;
        let tick_ns = TICK.as_nanos();
        let ticks = since_start.as_nanos().div_ceil(tick_ns);
        self.start + Duration::from_nanos((ticks * tick_ns) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At 2,000 msg/s message 2k is due on tick k and message 2k+1 half a tick later, so it
    /// waits for tick k+1 together with message 2k+2: two messages per tick.
    #[test]
    fn two_thousand_per_second_sends_two_per_tick() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 2000.0);
        let ms = |n: u64| start + Duration::from_millis(n);
        assert_eq!(schedule.due(0), ms(0));
        assert_eq!(schedule.due(1), start + Duration::from_micros(500));
        assert_eq!(schedule.wake_at(1), ms(1));
        assert_eq!(schedule.wake_at(2), ms(1));
        assert_eq!(schedule.wake_at(3), ms(2));
        assert_eq!(schedule.due(20_000), start + Duration::from_secs(10));
    }
}
