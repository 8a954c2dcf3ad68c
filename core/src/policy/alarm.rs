//! Resource alarms: when the process's memory or the data directory's free space crosses a
//! threshold, the broker stops reading publishes (see `broker/alarms.rs`). This file holds the
//! pure part: the thresholds, a reading, and whether an alarm is raised after it.
//!
//! Hysteresis: an alarm is raised at its threshold and cleared only once the reading is back
//! past it by [`HYSTERESIS_PERCENT`]. Readings come once a second; without a gap, a reading
//! hovering at the threshold would raise and clear the alarm every second, and every clear lets
//! each blocked publisher through with a frame's worth of publishes, and sends a
//! `Blocked`/`Unblocked` pair to each. The gap is small because RSS falls slowly once memory is
//! freed (the allocator keeps some), and a wide gap could keep publishers blocked long after
//! consumers drained what held the memory.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How far past its threshold a reading must come back before an alarm clears, in percent of
/// the threshold.
pub const HYSTERESIS_PERCENT: u64 = 5;

/// The smallest default free-space threshold: 1 GiB.
pub const DISK_FREE_LOW_BYTES_MIN_DEFAULT: u64 = 1 << 30;

/// A fraction in `0.0..=1.0` (of physical memory). A newtype so the configuration can compare
/// equal: two fractions are equal when their bits are.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fraction(pub f64);

impl PartialEq for Fraction {
    fn eq(&self, other: &Fraction) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Fraction {}

/// `[alarms]`: the thresholds of the memory and disk alarms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmConfig {
    /// The process's resident memory (RSS) at which the memory alarm is raised. Unset:
    /// `memory_high_fraction` of the machine's physical memory.
    pub memory_high_bytes: Option<u64>,
    /// Used when `memory_high_bytes` is unset: this fraction of physical memory (RabbitMQ's
    /// `vm_memory_high_watermark`, whose default this is).
    pub memory_high_fraction: Fraction,
    /// Free space on the data directory's file system below which the disk alarm is raised.
    /// Unset: the larger of 1 GiB and two log segments (`storage.segment_bytes_max`). What is
    /// left below it is the room consumers' acks and dead letters write into while publishers
    /// wait. 0 turns the disk alarm off.
    pub disk_free_low_bytes: Option<u64>,
    /// How often the driver measures and passes a reading to the broker.
    pub check_interval_ms: u32,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            memory_high_bytes: None,
            memory_high_fraction: Fraction(0.4),
            disk_free_low_bytes: None,
            check_interval_ms: 1_000,
        }
    }
}

impl AlarmConfig {
    /// The memory threshold in bytes, given the machine's physical memory (0 when unknown).
    /// `None`: no threshold (a fraction of unknown memory).
    pub fn memory_high_bytes(&self, memory_total_bytes: u64) -> Option<u64> {
        if let Some(bytes) = self.memory_high_bytes {
            return Some(bytes);
        }
        (memory_total_bytes > 0)
            .then_some((memory_total_bytes as f64 * self.memory_high_fraction.0) as u64)
    }

    /// The free-space threshold in bytes, given the size of a log segment.
    pub fn disk_free_low_bytes(&self, segment_bytes_max: u64) -> u64 {
        self.disk_free_low_bytes.unwrap_or_else(|| {
            DISK_FREE_LOW_BYTES_MIN_DEFAULT.max(segment_bytes_max.saturating_mul(2))
        })
    }
}

/// What the driver measured, every `check_interval_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceReading {
    /// The process's resident set size.
    pub rss_bytes: u64,
    /// The machine's physical memory (or the container's limit); 0 when unknown.
    pub memory_total_bytes: u64,
    /// Space available to the broker on the data directory's file system.
    pub disk_free_bytes: u64,
}

/// What an alarm watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Memory,
    Disk,
}

impl Resource {
    pub const ALL: [Resource; 2] = [Resource::Memory, Resource::Disk];

    /// The name clients (`Blocked.reason`), logs and metrics use.
    pub fn label(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::Disk => "disk",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Whether the memory alarm is raised after a reading: at or above `high_bytes`; once raised,
/// until the reading falls below `high_bytes` less the hysteresis.
pub fn memory_alarm(raised: bool, rss_bytes: u64, high_bytes: Option<u64>) -> bool {
    let Some(high_bytes) = high_bytes else { return false };
    let clear_below = high_bytes - high_bytes / 100 * HYSTERESIS_PERCENT;
    if raised {
        rss_bytes >= clear_below
    } else {
        rss_bytes >= high_bytes
    }
}

/// Whether the disk alarm is raised after a reading: below `low_bytes`; once raised, until
/// free space comes back above `low_bytes` plus the hysteresis.
pub fn disk_alarm(raised: bool, free_bytes: u64, low_bytes: u64) -> bool {
    let clear_at = low_bytes.saturating_add(low_bytes / 100 * HYSTERESIS_PERCENT);
    if raised {
        free_bytes < clear_at
    } else {
        free_bytes < low_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_alarm_is_raised_at_the_threshold_and_cleared_below_the_gap() {
        let high = Some(1_000_000);
        assert!(!memory_alarm(false, 999_999, high));
        assert!(memory_alarm(false, 1_000_000, high));
        assert!(memory_alarm(true, 999_999, high), "within the gap it stays raised");
        assert!(memory_alarm(true, 950_000, high));
        assert!(!memory_alarm(true, 949_999, high));
        assert!(!memory_alarm(false, u64::MAX, None), "no threshold, no alarm");
    }

    #[test]
    fn disk_alarm_is_raised_below_the_threshold_and_cleared_above_the_gap() {
        let low = 1_000_000;
        assert!(!disk_alarm(false, 1_000_000, low));
        assert!(disk_alarm(false, 999_999, low));
        assert!(disk_alarm(true, 1_000_000, low), "within the gap it stays raised");
        assert!(disk_alarm(true, 1_049_999, low));
        assert!(!disk_alarm(true, 1_050_000, low));
        assert!(!disk_alarm(false, 0, 0), "0 turns it off");
    }

    #[test]
    fn thresholds_default_as_documented() {
        let config = AlarmConfig::default();
        assert_eq!(config.memory_high_bytes(10_000), Some(4_000));
        assert_eq!(config.memory_high_bytes(0), None);
        let explicit = AlarmConfig { memory_high_bytes: Some(7), ..AlarmConfig::default() };
        assert_eq!(explicit.memory_high_bytes(0), Some(7));
        assert_eq!(config.disk_free_low_bytes(64 << 20), 1 << 30);
        assert_eq!(config.disk_free_low_bytes(1 << 30), 2 << 30);
    }
}
