//! The core's own clock. The driver picks an epoch (usually process start) and passes the
//! nanoseconds since then with every input; the core never reads a clock itself.

use std::ops::{Add, Sub};
use std::time::Duration;

/// Nanoseconds since a driver-chosen epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);
    /// Later than any real instant: "never".
    pub const NEVER: Instant = Instant(u64::MAX);

    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    pub fn from_millis(ms: u64) -> Instant {
        Instant(ms.saturating_mul(1_000_000))
    }

    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// `self + ms`, saturating at the end of time.
    pub fn plus_ms(self, ms: u64) -> Instant {
        Instant(self.0.saturating_add(ms.saturating_mul(1_000_000)))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX)))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

/// Converts core instants to wall-clock milliseconds, from the epoch the driver configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// Unix time in ms at `Instant::ZERO`.
    pub epoch_unix_ms: u64,
}

impl WallClock {
    pub fn unix_ms(self, now: Instant) -> u64 {
        self.epoch_unix_ms.saturating_add(now.as_millis())
    }

    /// The instant at which the wall clock reads `unix_ms` (`Instant::ZERO` if before it).
    pub fn instant_at(self, unix_ms: u64) -> Instant {
        Instant::from_millis(unix_ms.saturating_sub(self.epoch_unix_ms))
    }
}
