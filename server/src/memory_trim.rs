//! Handing freed heap back to the system. glibc keeps the pages it freed mapped (resident)
//! and reuses them; after a burst of thousands of connections, each with its buffers on
//! whichever arena its thread used, that is hundreds of MB nobody uses (docs/BENCHMARKS.md,
//! "Connection churn soak"). `malloc_trim(0)` returns the free pages of every arena.
//!
//! It walks the whole heap, so it runs only after many connections have gone, at most once
//! every `server.memory_trim_interval_ms`, on the resource measuring tick
//! (`alarms.check_interval_ms`): never on the hot path.

use std::time::{Duration, Instant};

/// Connections that must have closed since the last trim (counted from the most open at once)
/// before the next one: a few clients coming and going free too little to be worth a walk of
/// the heap.
pub const CONNECTIONS_CLOSED_MIN: u64 = 100;

/// Decides when to trim, from the number of open connections on each tick.
#[derive(Debug)]
pub struct TrimSchedule {
    /// The least time between two trims; zero turns trimming off.
    interval: Duration,
    /// The most connections open at once since the last trim.
    connections_peak: u64,
    last_trim: Option<Instant>,
}

impl TrimSchedule {
    pub fn new(interval_ms: u32) -> TrimSchedule {
        TrimSchedule {
            interval: Duration::from_millis(interval_ms.into()),
            connections_peak: 0,
            last_trim: None,
        }
    }

    /// A reload's new interval; what was counted since the last trim stays.
    pub fn set_interval_ms(&mut self, interval_ms: u32) {
        self.interval = Duration::from_millis(interval_ms.into());
    }

    /// `connections` are open now (each accept says so: a burst that comes and goes between
    /// two ticks still counts).
    pub fn saw_connections(&mut self, connections: u64) {
        self.connections_peak = self.connections_peak.max(connections);
    }

    /// Whether to trim now, with `connections` open: at least [`CONNECTIONS_CLOSED_MIN`] fewer
    /// than at the peak since the last trim, and the interval passed since it. A yes counts as
    /// the trim done.
    pub fn due(&mut self, now: Instant, connections: u64) -> bool {
        self.saw_connections(connections);
        let closed = self.connections_peak - connections;
        let rested = self.last_trim.is_none_or(|last| now.duration_since(last) >= self.interval);
        if self.interval.is_zero() || closed < CONNECTIONS_CLOSED_MIN || !rested {
            return false;
        }
        self.last_trim = Some(now);
        self.connections_peak = connections;
        true
    }
}

/// Returns the allocator's free pages to the system (glibc only; elsewhere nothing).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator Rust uses here (the
    // system allocator, glibc's); it touches no memory that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn trims_after_many_connections_closed() {
        let start = Instant::now();
        let mut schedule = TrimSchedule::new(10_000);
        assert!(!schedule.due(start, 0), "nothing closed yet");
        assert!(!schedule.due(start + SECOND, 1_000));
        assert!(!schedule.due(start + 2 * SECOND, 901), "99 closed: fewer than the minimum");
        assert!(schedule.due(start + 3 * SECOND, 900), "100 closed");
        assert!(!schedule.due(start + 4 * SECOND, 900), "nothing closed since");
    }

    #[test]
    fn a_peak_between_ticks_counts() {
        let start = Instant::now();
        let mut schedule = TrimSchedule::new(10_000);
        assert!(!schedule.due(start, 0));
        schedule.saw_connections(300);
        assert!(schedule.due(start + SECOND, 0));
    }

    #[test]
    fn trims_at_most_once_per_interval() {
        let start = Instant::now();
        let mut schedule = TrimSchedule::new(10_000);
        schedule.due(start, 500);
        assert!(schedule.due(start + SECOND, 0));
        schedule.due(start + 2 * SECOND, 500);
        assert!(!schedule.due(start + 3 * SECOND, 0), "2 s after the last trim");
        assert!(!schedule.due(start + 10 * SECOND, 0), "9 s after it");
        assert!(schedule.due(start + 11 * SECOND, 0), "10 s after it, the peak still counted");
    }

    #[test]
    fn an_interval_of_zero_turns_it_off_and_a_reload_turns_it_on() {
        let start = Instant::now();
        let mut schedule = TrimSchedule::new(0);
        schedule.due(start, 5_000);
        assert!(!schedule.due(start + SECOND, 0));
        schedule.set_interval_ms(1_000);
        assert!(schedule.due(start + 2 * SECOND, 0), "the closed connections still count");
    }
}
